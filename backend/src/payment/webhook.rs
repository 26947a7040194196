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
use tokio::sync::{mpsc, oneshot};

use crate::db::{StoreError, Tx};
use crate::messaging::outbox::Outgoing;
use crate::tasks::Shutdown;

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
    State(webhooks): State<Webhooks>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (outcome, response) = answer(&webhooks, &headers, &body).await;
    webhooks.service.metrics.webhook(outcome);
    response
}

/// What `POST /stripe/webhook` needs: the service (secret, metrics) and the
/// queue its events are processed from. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    pub service: PaymentService,
    pub queue: WebhookQueue,
}

/// The response to a webhook, with a short name of its outcome for metrics.
/// Runs in a span that names the event.
#[tracing::instrument(name = "webhook", skip_all, fields(event_id = tracing::field::Empty))]
async fn answer(webhooks: &Webhooks, headers: &HeaderMap, body: &[u8]) -> (&'static str, Response) {
    let header = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    let now = Timestamp::now().as_unix_seconds();
    if let Err(error) = signature::verify(
        header,
        body,
        webhooks.service.webhook_secret.expose(),
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
    let outcome = match Received::read(event) {
        Ok(Some(received)) => webhooks.queue.process(received).await,
        Ok(None) => Ok(Outcome::Ignored("unhandled_event_type")),
        Err(message) => return ("malformed_event", refuse("malformed_event", &message)),
    };
    match outcome {
        Ok(outcome) => {
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
        Err(error) => {
            tracing::error!(%error, "webhook could not be stored; the provider will retry");
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

/// A valid event of a type this service handles, read.
#[derive(Debug)]
pub struct Received {
    id: String,
    /// The event's `type`, as recorded.
    kind_name: String,
    kind: WebhookKind,
    session: SessionObject,
}

impl Received {
    /// `None` for an event type this service does not handle.
    fn read(event: Event) -> Result<Option<Received>, String> {
        let Some(kind) = WebhookKind::from_type(&event.kind) else {
            return Ok(None);
        };
        let session: SessionObject = serde_json::from_value(event.data.object)
            .map_err(|error| format!("data.object is not a checkout session: {error}"))?;
        Ok(Some(Received {
            id: event.id,
            kind_name: event.kind,
            kind,
            session,
        }))
    }
}

/// How many events at most share one transaction.
const BATCH: usize = 64;
/// How many events may wait for their batch; a request beyond waits to
/// queue (the connection limits bound how many can wait).
const QUEUED: usize = 1024;

/// Why an event could not be processed now: the store failed, or the
/// service is stopping. The provider retries either.
#[derive(Debug, thiserror::Error)]
pub enum Unprocessed {
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("the payment service is stopping")]
    Stopping,
}

type Reply = oneshot::Sender<Result<Outcome, Unprocessed>>;

/// Events on their way to [`run_batches`], which processes those that
/// wait together in one transaction. Cheap to clone.
#[derive(Clone)]
pub struct WebhookQueue {
    sender: mpsc::Sender<(Received, Reply)>,
}

impl WebhookQueue {
    /// A queue, and what [`run_batches`] takes from it.
    pub fn new() -> (WebhookQueue, mpsc::Receiver<(Received, Reply)>) {
        let (sender, receiver) = mpsc::channel(QUEUED);
        (WebhookQueue { sender }, receiver)
    }

    /// Processes `received` in the next batch and returns its outcome.
    async fn process(&self, received: Received) -> Result<Outcome, Unprocessed> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send((received, reply))
            .await
            .map_err(|_| Unprocessed::Stopping)?;
        outcome.await.unwrap_or(Err(Unprocessed::Stopping))
    }
}

/// Takes queued events until shutdown: every event waiting when a batch
/// begins (up to [`BATCH`]) goes in one transaction ([`process_batch`]
/// says in which order). When that transaction fails, each of its events is tried again in
/// a transaction of its own, so that one event the store refuses does not
/// hold back the others.
pub async fn run_batches(
    service: PaymentService,
    mut queue: mpsc::Receiver<(Received, Reply)>,
    shutdown: Shutdown,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let count = tokio::select! {
            count = queue.recv_many(&mut batch, BATCH) => count,
            () = shutdown.triggered() => return,
        };
        if count == 0 {
            return;
        }
        let events: Vec<&Received> = batch.iter().map(|(received, _)| received).collect();
        match process_batch(&service, &events).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) if batch.len() == 1 => {
                if let Some((_, reply)) = batch.pop() {
                    let _ = reply.send(Err(error.into()));
                }
            }
            Err(error) => {
                tracing::warn!(%error, events = batch.len(), "a batch of webhooks failed; trying each alone");
                for (received, reply) in batch.drain(..) {
                    let outcome = process_batch(&service, &[&received]).await;
                    let _ = reply.send(
                        outcome
                            .map(|mut outcomes| outcomes.pop().unwrap_or(Outcome::Duplicate))
                            .map_err(Unprocessed::from),
                    );
                }
            }
        }
    }
}

/// Processes `events` in one transaction, taken in [`lock_order`]; their
/// outcomes in the order of `events`.
async fn process_batch(
    service: &PaymentService,
    events: &[&Received],
) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = service.db.begin().await?;
    let mut outgoing = Outgoing::default();
    let mut outcomes = vec![Outcome::Duplicate; events.len()];
    for index in lock_order(events) {
        outcomes[index] = process(&mut tx, events[index], &mut outgoing).await?;
    }
    if outcomes.contains(&Outcome::Processed) {
        service.relay.commit_outgoing(tx, outgoing).await?;
    }
    Ok(outcomes)
}

/// The order in which a batch takes `events` (indices into it): by the
/// order their sessions were created for (the `order_id` the payment
/// service put in each session's metadata), then by session id, those of
/// one session in the order they came.
///
/// Each event locks its order's payment, and the consumer's batches lock
/// payments in order id order too ([`store::by_orders_locked`]): taken in
/// any other order, a batch of webhooks and a batch of messages about the
/// same orders (sessions expiring at their deadline, for instance) could
/// each hold a payment the other waits for, and PostgreSQL would abort one
/// of them as a deadlock.
fn lock_order(events: &[&Received]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|index| {
        let session = &events[*index].session;
        (session.metadata.get("order_id"), &session.id)
    });
    order
}

/// Decides what `event` does and writes it in `tx`, adding what it
/// publishes to `outgoing`. Runs in a span naming the event and its order.
#[tracing::instrument(
    name = "webhook",
    skip_all,
    fields(event_id = %event.id, order_id = tracing::field::Empty)
)]
async fn process(
    tx: &mut Tx,
    event: &Received,
    outgoing: &mut Outgoing,
) -> Result<Outcome, StoreError> {
    let outcome = decide(tx, event, outgoing).await?;
    tracing::info!(event_type = %event.kind_name, ?outcome, "webhook handled");
    Ok(outcome)
}

async fn decide(
    tx: &mut Tx,
    event: &Received,
    outgoing: &mut Outgoing,
) -> Result<Outcome, StoreError> {
    let session = &event.session;
    if store::webhook_seen(tx, &event.id).await? {
        return Ok(Outcome::Duplicate);
    }
    let Some(payment) = store::by_session(tx, &session.id).await? else {
        return Ok(Outcome::Ignored("unknown_session"));
    };
    tracing::Span::current().record("order_id", tracing::field::display(payment.order_id));
    if let Some(order_id) = session.metadata.get("order_id")
        && order_id != &payment.order_id.to_string()
    {
        return Ok(Outcome::Ignored("order_mismatch"));
    }
    let report = SessionReport {
        session_id: session.id.clone(),
        payment_status: session.payment_status.clone(),
        amount_total: session.amount_total,
        currency: session.currency.clone(),
        payment_intent: session.payment_intent.clone(),
    };
    let (status, payment_ref, published) = match payment.webhook(event.kind, &report) {
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
    if !store::record_webhook(tx, &event.id, &event.kind_name).await? {
        return Ok(Outcome::Duplicate);
    }
    store::set_status(tx, payment.order_id, status, payment_ref.as_deref()).await?;
    if let Some(published) = published {
        outgoing.push(published, &payment.order_id.to_string());
    }
    Ok(Outcome::Processed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expired(event_id: &str, session_id: &str, order_id: Option<&str>) -> Received {
        Received {
            id: event_id.to_owned(),
            kind_name: "checkout.session.expired".to_owned(),
            kind: WebhookKind::Expired,
            session: SessionObject {
                id: session_id.to_owned(),
                payment_status: Some("unpaid".to_owned()),
                amount_total: Some(1_000),
                currency: Some("eur".to_owned()),
                payment_intent: None,
                metadata: order_id
                    .map(|order_id| HashMap::from([("order_id".to_owned(), order_id.to_owned())]))
                    .unwrap_or_default(),
            },
        }
    }

    #[test]
    fn a_batch_locks_payments_in_order_id_order_as_the_consumer_does() {
        // Session ids that sort the other way round from their orders' ids.
        let first = "00000000-0000-0000-0000-000000000001";
        let second = "00000000-0000-0000-0000-000000000002";
        let events = [
            expired("evt_1", "cs_a", Some(second)),
            expired("evt_2", "cs_b", Some(first)),
            expired("evt_3", "cs_a", Some(second)),
        ];
        let events: Vec<&Received> = events.iter().collect();
        assert_eq!(
            lock_order(&events),
            vec![1, 0, 2],
            "order id first; the events of one session in the order they came"
        );
    }

    #[test]
    fn events_without_an_order_in_their_metadata_go_first_by_session_id() {
        let events = [
            expired("evt_1", "cs_b", None),
            expired(
                "evt_2",
                "cs_c",
                Some("00000000-0000-0000-0000-000000000001"),
            ),
            expired("evt_3", "cs_a", None),
        ];
        let events: Vec<&Received> = events.iter().collect();
        assert_eq!(lock_order(&events), vec![2, 0, 1]);
    }
}
