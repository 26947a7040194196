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
use shop_shared::time::Timestamp;

use super::PaymentService;
use super::domain::{SessionReport, WebhookDecision, WebhookKind};
use super::signature::{self, TOLERANCE};
use super::store;
use crate::db::StoreError;
use crate::messaging::outbox::Outgoing;

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
    /// In minor units.
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
/// Runs in a span that names the event and, once known, its order.
#[tracing::instrument(
    name = "webhook",
    skip_all,
    fields(event_id = tracing::field::Empty, order_id = tracing::field::Empty)
)]
async fn answer(
    service: &PaymentService,
    headers: &HeaderMap,
    body: &[u8],
) -> (&'static str, Response) {
    let header = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    let now = Timestamp::now().as_unix_seconds();
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
    tracing::Span::current().record("event_id", event.id.as_str());
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
    Storage(#[from] StoreError),
}

async fn process(service: &PaymentService, event: &Event) -> Result<Outcome, ProcessError> {
    let Some(kind) = WebhookKind::from_type(&event.kind) else {
        return Ok(Outcome::Ignored("unhandled_event_type"));
    };
    let session: SessionObject =
        serde_json::from_value(event.data.object.clone()).map_err(|error| {
            ProcessError::Malformed(format!("data.object is not a checkout session: {error}"))
        })?;
    let mut tx = service.db.begin().await?;
    if store::webhook_seen(&mut tx, &event.id).await? {
        return Ok(Outcome::Duplicate);
    }
    let Some(payment) = store::by_session(&mut tx, &session.id).await? else {
        return Ok(Outcome::Ignored("unknown_session"));
    };
    tracing::Span::current().record("order_id", tracing::field::display(payment.order_id));
    if let Some(order_id) = session.metadata.get("order_id")
        && order_id != &payment.order_id.to_string()
    {
        return Ok(Outcome::Ignored("order_mismatch"));
    }
    let report = SessionReport {
        session_id: session.id,
        payment_status: session.payment_status,
        amount_total: session.amount_total,
        currency: session.currency,
        payment_intent: session.payment_intent,
    };
    let (status, payment_ref, published) = match payment.webhook(kind, &report) {
        WebhookDecision::Ignore(reason) => {
            if reason == "amount_mismatch" {
                tracing::error!(order_id = %payment.order_id, session_id = %report.session_id, "paid amount differs from the order total");
            }
            return Ok(Outcome::Ignored(reason));
        }
        WebhookDecision::AwaitSettlement { payment_ref } => (payment.status, payment_ref, None),
        WebhookDecision::Settle {
            status,
            payment_ref,
            event,
        } => (status, payment_ref, Some(event)),
    };
    if !store::record_webhook(&mut tx, &event.id, &event.kind).await? {
        return Ok(Outcome::Duplicate);
    }
    store::set_status(&mut tx, payment.order_id, status, payment_ref.as_deref()).await?;
    let mut outgoing = Outgoing::default();
    if let Some(published) = published {
        outgoing.push(published, &payment.order_id.to_string());
    }
    service.relay.commit_outgoing(tx, outgoing).await?;
    Ok(Outcome::Processed)
}
