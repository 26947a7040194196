//! The provider webhook endpoint, `POST /stripe/webhook`, shared by the
//! local checkout and Stripe.
//!
//! The signature is checked first; a forged, altered or stale request gets a
//! 400 with a typed error and changes nothing. A valid event is processed at
//! most once per event id, in one transaction with its effects, and answered
//! with 200 quickly. Events that do not concern this shop (an unknown
//! session, an unhandled type, a second payment of the same session) are
//! acknowledged with 200 and ignored, as Stripe expects, also changing
//! nothing.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use shop_shared::events::{PaymentEvent, PaymentFailed, PaymentSucceeded};
use shop_shared::time::Timestamp;

use super::PaymentService;
use super::signature::{self, TOLERANCE};
use super::store::{self, PaymentStatus};
use crate::db::outbox;

/// The parts of a Stripe event this service reads.
#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// The parts of a Checkout Session this service reads.
#[derive(Debug, Deserialize)]
struct SessionObject {
    id: String,
    #[serde(default)]
    payment_status: Option<String>,
    #[serde(default)]
    amount_total: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    payment_intent: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

/// What became of a valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Processed,
    /// This event id was handled before.
    Duplicate,
    /// Valid, but nothing for this shop to do.
    Ignored(&'static str),
}

pub async fn receive(
    State(service): State<PaymentService>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (outcome, response) = answer(&service, &headers, &body).await;
    service.metrics.webhook(outcome);
    response
}

/// The response to a webhook, with a short name of its outcome for metrics.
async fn answer(
    service: &PaymentService,
    headers: &HeaderMap,
    body: &[u8],
) -> (&'static str, Response) {
    let header = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    let now = Timestamp::now().as_millis() / 1000;
    if let Err(error) = signature::verify(
        header,
        body,
        service.webhook_secret.expose(),
        now,
        TOLERANCE,
    ) {
        tracing::warn!(code = error.code(), %error, "webhook refused");
        return (error.code(), refuse(error.code(), &error.to_string()));
    }
    let event: Event = match serde_json::from_slice(body) {
        Ok(event) => event,
        Err(error) => {
            let message = format!("the event is not a Stripe event: {error}");
            return ("malformed_event", refuse("malformed_event", &message));
        }
    };
    match process(service, &event).await {
        Ok(outcome) => {
            tracing::info!(event_id = %event.id, event_type = %event.kind, ?outcome, "webhook handled");
            let (name, reason) = match outcome {
                Outcome::Processed => ("processed", None),
                Outcome::Duplicate => ("duplicate", None),
                Outcome::Ignored(reason) => ("ignored", Some(reason)),
            };
            let body = Json(json!({ "received": true, "outcome": name, "reason": reason }));
            (
                reason.unwrap_or(name),
                (StatusCode::OK, body).into_response(),
            )
        }
        Err(ProcessError::Malformed(message)) => {
            ("malformed_event", refuse("malformed_event", &message))
        }
        Err(ProcessError::Storage(error)) => {
            tracing::error!(event_id = %event.id, %error, "webhook could not be stored; the provider will retry");
            let body =
                Json(json!({ "error": { "type": "unavailable", "message": "try again later" } }));
            (
                "unavailable",
                (StatusCode::SERVICE_UNAVAILABLE, body).into_response(),
            )
        }
    }
}

fn refuse(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": { "type": code, "message": message } })),
    )
        .into_response()
}

#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// What an event asks of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The money is in.
    Succeed,
    /// The money will not come.
    Fail,
    /// The session closed without payment.
    Expire,
}

async fn process(service: &PaymentService, event: &Event) -> Result<Outcome, ProcessError> {
    let step = match event.kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => Step::Succeed,
        "checkout.session.async_payment_failed" => Step::Fail,
        "checkout.session.expired" => Step::Expire,
        _ => return Ok(Outcome::Ignored("unhandled_event_type")),
    };
    let session: SessionObject =
        serde_json::from_value(event.data.object.clone()).map_err(|error| {
            ProcessError::Malformed(format!("data.object is not a checkout session: {error}"))
        })?;
    let db = &service.db;
    let mut tx = db.begin().await?;
    if store::webhook_seen(&mut tx, &event.id).await? {
        return Ok(Outcome::Duplicate);
    }
    let Some(payment) = store::by_session(db, &mut tx, &session.id).await? else {
        return Ok(Outcome::Ignored("unknown_session"));
    };
    if let Some(order_id) = session.metadata.get("order_id")
        && order_id != &payment.order_id.to_string()
    {
        return Ok(Outcome::Ignored("order_mismatch"));
    }
    let correlation = payment.order_id.to_string();
    match step {
        Step::Succeed
            if event.kind == "checkout.session.completed"
                && session.payment_status.as_deref() == Some("unpaid") =>
        {
            // A delayed payment method: the money comes (or not) with an
            // async_payment_* event later.
            if !store::record_webhook(&mut tx, &event.id, &event.kind).await? {
                return Ok(Outcome::Duplicate);
            }
            store::set_status(
                &mut tx,
                payment.order_id,
                payment.status,
                session.payment_intent.as_deref(),
            )
            .await?;
            tx.commit().await?;
            return Ok(Outcome::Processed);
        }
        Step::Succeed | Step::Fail
            if matches!(
                payment.status,
                PaymentStatus::Paid | PaymentStatus::Refunded | PaymentStatus::Failed
            ) =>
        {
            return Ok(Outcome::Ignored("payment_already_settled"));
        }
        Step::Expire if payment.status != PaymentStatus::Open => {
            // Closed on our request (the order was cancelled) or settled.
            return Ok(Outcome::Ignored("session_already_closed"));
        }
        _ => {}
    }
    let currency_matches = session
        .currency
        .as_deref()
        .is_none_or(|currency| currency.eq_ignore_ascii_case(payment.currency.as_str()));
    if step == Step::Succeed
        && (session
            .amount_total
            .is_some_and(|amount| amount != payment.amount)
            || !currency_matches)
    {
        tracing::error!(order_id = %payment.order_id, session_id = %session.id, "paid amount differs from the order total");
        return Ok(Outcome::Ignored("amount_mismatch"));
    }
    if !store::record_webhook(&mut tx, &event.id, &event.kind).await? {
        return Ok(Outcome::Duplicate);
    }
    let event = match step {
        Step::Succeed => {
            store::set_status(
                &mut tx,
                payment.order_id,
                PaymentStatus::Paid,
                session.payment_intent.as_deref(),
            )
            .await?;
            PaymentEvent::PaymentSucceeded(PaymentSucceeded {
                order_id: payment.order_id,
                session_id: session.id.clone(),
                amount: payment.amount,
                currency: payment.currency,
            })
        }
        Step::Fail => {
            store::set_status(&mut tx, payment.order_id, PaymentStatus::Failed, None).await?;
            PaymentEvent::PaymentFailed(PaymentFailed {
                order_id: payment.order_id,
                reason: "the payment did not go through after checkout".into(),
            })
        }
        Step::Expire => {
            store::set_status(&mut tx, payment.order_id, PaymentStatus::Expired, None).await?;
            PaymentEvent::PaymentFailed(PaymentFailed {
                order_id: payment.order_id,
                reason: "the checkout session expired before payment".into(),
            })
        }
    };
    let written = outbox::push(&mut tx, event, &correlation).await?;
    service.relay.commit(tx, written).await?;
    Ok(Outcome::Processed)
}
