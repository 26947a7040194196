//! Webhook delivery: every event goes to the payment service's
//! `/stripe/webhook` as Stripe would send it, signed at each attempt, from
//! a durable queue that retries with backoff until the endpoint answers
//! 2xx.
//!
//! The queue keeps up with payments however fast they come: up to
//! [`CONCURRENCY`] deliveries are in flight at once over reused
//! connections, due deliveries are claimed and their outcomes recorded a
//! batch per statement, and a new payment wakes the queue at once. A
//! claimed delivery is leased to this instance for [`LEASE`], so that
//! another instance sharing the table does not send it too; a lease that
//! runs out (the instance died mid-send) makes it due again, so every
//! event is delivered at least once.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::header;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use shop_shared::time::Timestamp;
use sqlx::Row;
use tokio::time::Instant;

use super::LocalCheckout;
use super::sessions::{Session, random_hex};
use crate::db::batch::Placeholders;
use crate::db::{StoreError, Tx};
use crate::payment::signature;
use crate::tasks::Shutdown;

/// Deliveries in flight at once. Each is a request to the payment service,
/// which processes the webhooks that arrive together in one transaction,
/// so more in flight make bigger batches rather than a longer wait; the
/// number bounds what a slow endpoint holds open, and stays below the
/// default per-address connection cap (100) that the deliveries, coming
/// from this machine, share with local clients. At full speed with half
/// the orders paid, 32 left the queue seconds behind (docs/performance.md).
pub(super) const CONCURRENCY: usize = 64;
/// How long a claimed delivery belongs to this instance: well above the
/// HTTP client's timeout, so that a delivery is never sent twice at once.
const LEASE: Duration = Duration::from_secs(30);
/// How often sessions past their deadline and grace are expired.
const EXPIRY_SWEEP: Duration = Duration::from_secs(1);
/// Longest wait between looks at the queue: another instance may have
/// queued deliveries without waking this one.
const IDLE_LOOK: Duration = Duration::from_secs(5);
/// Shortest wait between looks when nothing could be claimed, so that a
/// delivery due this very moment, but leased elsewhere, costs no busy loop.
const MIN_LOOK: Duration = Duration::from_millis(5);
/// How long to wait before trying again after the queue could not be read.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// A delivery claimed from the queue, to send now.
struct Claimed {
    event_id: String,
    payload: String,
    /// Attempts made before this one.
    attempts: i64,
}

/// How one attempt went.
enum Attempt {
    Delivered {
        event_id: String,
    },
    Failed {
        event_id: String,
        /// Attempts made, this one included.
        attempts: i64,
        error: String,
    },
}

impl Attempt {
    fn event_id(&self) -> &str {
        match self {
            Attempt::Delivered { event_id } | Attempt::Failed { event_id, .. } => event_id,
        }
    }
}

impl LocalCheckout {
    /// Delivers queued webhooks until shutdown, as Stripe does: signed at
    /// each attempt, retried with growing delays until a 2xx answer.
    pub(super) async fn deliver_webhooks(&self, shutdown: Shutdown) {
        let mut sending = FuturesUnordered::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut finished: Vec<Attempt> = Vec::new();
        // Whether due deliveries may wait unclaimed; otherwise the queue is
        // looked at again at `next_look`.
        let mut look = true;
        let mut next_look = Instant::now();
        let mut next_sweep = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_sweep {
                if let Err(error) = self.expire_lapsed().await {
                    tracing::warn!(%error, "local checkout cannot expire old sessions");
                }
                next_sweep = now + EXPIRY_SWEEP;
            }
            let room = CONCURRENCY - sending.len();
            if (look || now >= next_look) && room > 0 {
                match self.claim(room).await {
                    Ok(claimed) => {
                        look = claimed.len() == room;
                        for delivery in claimed {
                            in_flight.insert(delivery.event_id.clone());
                            sending.push(self.attempt(delivery));
                        }
                        if !look {
                            next_look = match self.next_due().await {
                                Ok(wait) => Instant::now() + wait.max(MIN_LOOK),
                                Err(error) => {
                                    tracing::warn!(%error, "local checkout cannot read its webhook queue");
                                    Instant::now() + STORE_RETRY
                                }
                            };
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "local checkout cannot claim webhooks to deliver");
                        look = false;
                        next_look = Instant::now() + STORE_RETRY;
                    }
                }
            }
            // A full batch in flight looks at the queue again only once one
            // of them is done.
            let look_at = if sending.len() < CONCURRENCY {
                next_look.min(next_sweep)
            } else {
                next_sweep
            };
            tokio::select! {
                Some(attempt) = sending.next(), if !sending.is_empty() => {
                    finished.push(attempt);
                    // Everything else that is done too goes in the same batch.
                    while let Some(Some(attempt)) = sending.next().now_or_never() {
                        finished.push(attempt);
                    }
                }
                () = self.inner.wake_delivery.notified() => look = true,
                () = tokio::time::sleep_until(look_at) => {}
                () = shutdown.triggered() => {
                    self.record(&mut finished, &mut in_flight).await;
                    self.release(&in_flight).await;
                    return;
                }
            }
            self.record(&mut finished, &mut in_flight).await;
        }
    }

    /// Leases up to `limit` due deliveries to this instance, oldest first,
    /// in one statement. A delivery is due once its next attempt's time has
    /// come and it has been held back for the configured webhook delay.
    async fn claim(&self, limit: usize) -> Result<Vec<Claimed>, StoreError> {
        let db = &self.inner.db;
        let now = Timestamp::now();
        let held_since = now
            .as_millis()
            .saturating_sub(millis(self.inner.config.webhook_delay));
        let sql = format!(
            "UPDATE local_webhook_deliveries SET next_attempt_at = $1
             WHERE event_id IN (
                 SELECT event_id FROM local_webhook_deliveries
                 WHERE delivered_at IS NULL AND next_attempt_at <= $2 AND created_at <= $3
                 ORDER BY next_attempt_at LIMIT $4{}
             ) AND delivered_at IS NULL AND next_attempt_at <= $2
             RETURNING event_id, payload, attempts",
            db.dialect().for_update_skip_locked()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.plus(LEASE).as_millis())
            .bind(now.as_millis())
            .bind(held_since)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(db.pool())
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Claimed {
                    event_id: row.try_get("event_id")?,
                    payload: row.try_get("payload")?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// How long until the next queued delivery is due (a retry, a delayed
    /// settlement, one held back, or a lease that runs out), at most
    /// [`IDLE_LOOK`].
    async fn next_due(&self) -> Result<Duration, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN next_attempt_at > created_at + $1 THEN next_attempt_at
                             ELSE created_at + $1 END)
             FROM local_webhook_deliveries WHERE delivered_at IS NULL",
        )
        .bind(millis(self.inner.config.webhook_delay))
        .fetch_one(self.inner.db.pool())
        .await?;
        Ok(next.map_or(IDLE_LOOK, |next| {
            Timestamp::from_millis(next)
                .remaining_from(Timestamp::now())
                .min(IDLE_LOOK)
        }))
    }

    /// Sends one claimed delivery, signed now.
    async fn attempt(&self, delivery: Claimed) -> Attempt {
        let Claimed {
            event_id,
            payload,
            attempts,
        } = delivery;
        match self.send(payload).await {
            Ok(()) => Attempt::Delivered { event_id },
            Err(error) => Attempt::Failed {
                event_id,
                attempts: attempts + 1,
                error,
            },
        }
    }

    /// Records the outcomes of `finished` attempts, a statement for the
    /// delivered ones and one for the failed; empties it. An outcome that
    /// cannot be recorded is left to its lease: the delivery is sent again
    /// once the lease runs out, which webhook receivers take in their stride.
    async fn record(&self, finished: &mut Vec<Attempt>, in_flight: &mut HashSet<String>) {
        if finished.is_empty() {
            return;
        }
        for attempt in finished.iter() {
            in_flight.remove(attempt.event_id());
        }
        let (delivered, failed): (Vec<Attempt>, Vec<Attempt>) = finished
            .drain(..)
            .partition(|attempt| matches!(attempt, Attempt::Delivered { .. }));
        if let Err(error) = self.record_delivered(&delivered).await {
            tracing::warn!(%error, count = delivered.len(), "local checkout cannot record delivered webhooks; they will be sent again");
        }
        if let Err(error) = self.record_failed(&failed).await {
            tracing::warn!(%error, count = failed.len(), "local checkout cannot record failed webhooks; they will be retried");
        }
    }

    async fn record_delivered(&self, delivered: &[Attempt]) -> Result<(), StoreError> {
        let db = &self.inner.db;
        let style = db.placeholders();
        let now = Timestamp::now().as_millis();
        for chunk in delivered.chunks(crate::db::batch::MAX_ROWS) {
            let sql = format!(
                "UPDATE local_webhook_deliveries SET delivered_at = {}, attempts = attempts + 1
                 WHERE event_id IN ({})",
                style.nth(0),
                numbered(style, 1, chunk.len()),
            );
            let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for attempt in chunk {
                update = update.bind(attempt.event_id().to_owned());
            }
            update.execute(db.pool()).await?;
        }
        Ok(())
    }

    async fn record_failed(&self, failed: &[Attempt]) -> Result<(), StoreError> {
        let db = &self.inner.db;
        let style = db.placeholders();
        for chunk in failed.chunks(crate::db::batch::MAX_ROWS) {
            // Each delivery has its own next attempt and error: CASE picks
            // them by event id. Placeholders go in order of appearance.
            let mut index = 0;
            let mut next_case = String::new();
            let mut error_case = String::new();
            for case in [&mut next_case, &mut error_case] {
                for _ in chunk {
                    case.push_str(&format!(
                        " WHEN {} THEN {}",
                        style.nth(index),
                        style.nth(index + 1)
                    ));
                    index += 2;
                }
            }
            let sql = format!(
                "UPDATE local_webhook_deliveries SET attempts = attempts + 1,
                    next_attempt_at = CASE event_id{next_case} END,
                    last_error = CASE event_id{error_case} END
                 WHERE event_id IN ({}) AND delivered_at IS NULL",
                numbered(style, index, chunk.len()),
            );
            let mut update = sqlx::query(sqlx::AssertSqlSafe(sql));
            let now = Timestamp::now();
            for attempt in chunk {
                if let Attempt::Failed {
                    event_id,
                    attempts,
                    error,
                } = attempt
                {
                    let delay = retry_delay(*attempts);
                    tracing::warn!(%event_id, attempt = attempts, %error, ?delay, "webhook delivery failed; will retry");
                    update = update
                        .bind(event_id.clone())
                        .bind(now.plus(delay).as_millis());
                }
            }
            for attempt in chunk {
                if let Attempt::Failed {
                    event_id, error, ..
                } = attempt
                {
                    update = update.bind(event_id.clone()).bind(error.clone());
                }
            }
            for attempt in chunk {
                update = update.bind(attempt.event_id().to_owned());
            }
            update.execute(db.pool()).await?;
        }
        Ok(())
    }

    /// Gives back the leases of deliveries still in flight at shutdown, so
    /// that the next start sends them at once instead of after the lease.
    async fn release(&self, in_flight: &HashSet<String>) {
        if in_flight.is_empty() {
            return;
        }
        let db = &self.inner.db;
        let style = db.placeholders();
        let ids: Vec<&String> = in_flight.iter().collect();
        for chunk in ids.chunks(crate::db::batch::MAX_ROWS) {
            let sql = format!(
                "UPDATE local_webhook_deliveries SET next_attempt_at = {}
                 WHERE event_id IN ({}) AND delivered_at IS NULL",
                style.nth(0),
                numbered(style, 1, chunk.len()),
            );
            let mut update =
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(Timestamp::now().as_millis());
            for id in chunk {
                update = update.bind((*id).clone());
            }
            if let Err(error) = update.execute(db.pool()).await {
                tracing::warn!(%error, "local checkout cannot give back its webhook leases; they run out by themselves");
                return;
            }
        }
    }

    async fn send(&self, payload: String) -> Result<(), String> {
        let config = &self.inner.config;
        let timestamp = Timestamp::now().as_unix_seconds();
        let signature = signature::header(
            config.webhook_secret.expose(),
            timestamp,
            payload.as_bytes(),
        );
        let response = self
            .inner
            .http
            .post(&config.webhook_url)
            .header("Stripe-Signature", signature)
            .header(header::CONTENT_TYPE, "application/json")
            .body(payload)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            Err(format!(
                "{status}: {}",
                body.chars().take(300).collect::<String>()
            ))
        }
    }
}

/// `count` placeholders for an `IN (…)` list, the first being the
/// statement's `first`th (from 0).
fn numbered(style: Placeholders, first: usize, count: usize) -> String {
    (first..first + count)
        .map(|index| style.nth(index))
        .collect::<Vec<_>>()
        .join(", ")
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Stripe's retry schedule, compressed for a local demo: 1 s, 2 s, 4 s, …
/// up to 10 minutes.
fn retry_delay(attempts: i64) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 10) as u32).min(Duration::from_secs(600))
}

/// The event of type `kind` about `session`, as Stripe would send it.
fn event(event_id: &str, kind: &str, session: &Session, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": now.as_unix_seconds(),
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": kind,
        "data": {
            "object": {
                "id": session.id,
                "object": "checkout.session",
                "amount_total": session.amount,
                "currency": session.currency.as_str().to_ascii_lowercase(),
                "client_reference_id": session.order_id.to_string(),
                "metadata": { "order_id": session.order_id.to_string() },
                "mode": "payment",
                "payment_intent": session.payment_intent,
                "payment_status": session.state.stripe_payment_status(),
                "status": session.state.stripe_status(),
                "success_url": session.success_url,
                "expires_at": session.expires_at.as_unix_seconds(),
            }
        }
    })
}

/// Queues event `kind` about `session` for delivery at `due`.
pub(super) async fn enqueue(
    tx: &mut Tx,
    kind: &str,
    session: &Session,
    due: Timestamp,
) -> Result<(), StoreError> {
    let event_id = format!("evt_local_{}", random_hex(12));
    let payload = event(&event_id, kind, session, Timestamp::now());
    sqlx::query(
        "INSERT INTO local_webhook_deliveries (event_id, payload, attempts, next_attempt_at, created_at)
         VALUES ($1, $2, 0, $3, $4)",
    )
    .bind(&event_id)
    .bind(payload.to_string())
    .bind(due.as_millis())
    .bind(Timestamp::now().as_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;
    use crate::db::Db;
    use crate::payment::local::LocalCheckoutConfig;
    use crate::secrets::Secret;
    use crate::service::Service;

    const SECRET: &str = "whsec_delivery_test";

    #[test]
    fn webhook_retries_back_off_up_to_ten_minutes() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(3), Duration::from_secs(8));
        assert_eq!(retry_delay(40), Duration::from_secs(600));
    }

    /// Event ids as a webhook endpoint received them, correctly signed.
    #[derive(Clone, Default)]
    struct Received(Arc<Mutex<HashMap<String, usize>>>);

    impl Received {
        fn counts(&self) -> HashMap<String, usize> {
            self.0.lock().expect("not poisoned").clone()
        }
    }

    /// Answers 500 to the first attempt of every tenth event, 200 otherwise.
    async fn endpoint(
        State(received): State<Received>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let header = headers
            .get("stripe-signature")
            .and_then(|value| value.to_str().ok());
        let now = Timestamp::now().as_unix_seconds();
        if signature::verify(header, &body, SECRET, now, signature::TOLERANCE).is_err() {
            return StatusCode::BAD_REQUEST;
        }
        let event: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        let id = event["id"].as_str().expect("an id").to_owned();
        let mut received = received.0.lock().expect("not poisoned");
        let count = received.entry(id.clone()).or_default();
        *count += 1;
        if *count == 1 && id.ends_with('0') {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }

    #[tokio::test]
    async fn two_instances_drain_a_backlog_once_each_retrying_failures() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("payment.sqlite");
        let db = Db::sqlite(&path).await.expect("database");
        db.migrate(Service::Payment).await.expect("migrated");
        let backlog = 300;
        for index in 0..backlog {
            sqlx::query(
                "INSERT INTO local_webhook_deliveries (event_id, payload, attempts, next_attempt_at, created_at)
                 VALUES ($1, $2, 0, $3, $3)",
            )
            .bind(format!("evt_{index}"))
            .bind(serde_json::json!({ "id": format!("evt_{index}") }).to_string())
            .bind(Timestamp::now().as_millis())
            .execute(db.pool())
            .await
            .expect("queued");
        }

        let received = Received::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bound");
        let address = listener.local_addr().expect("address");
        let app = Router::new()
            .route("/stripe/webhook", post(endpoint))
            .with_state(received.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let config = LocalCheckoutConfig {
            public_url: "http://127.0.0.1:1".into(),
            return_url: "http://127.0.0.1:1".into(),
            webhook_url: format!("http://{address}/stripe/webhook"),
            webhook_tls: None,
            webhook_secret: Secret::new(SECRET),
            webhook_delay: Duration::ZERO,
        };
        let (trigger, shutdown) = Shutdown::new();
        let mut instances = Vec::new();
        for _ in 0..2 {
            // Each instance has a pool of its own on the same file, as two
            // payment services share one database.
            let db = Db::sqlite(&path).await.expect("database");
            let checkout = LocalCheckout::new(db, config.clone());
            let shutdown = shutdown.clone();
            instances.push(tokio::spawn(async move {
                checkout.deliver_webhooks(shutdown).await;
            }));
        }

        let undelivered = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM local_webhook_deliveries WHERE delivered_at IS NULL",
            )
            .fetch_one(db.pool())
            .await
            .expect("counted")
        };
        let drained = tokio::time::timeout(Duration::from_secs(60), async {
            while undelivered().await > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        trigger.trigger();
        for instance in instances {
            instance.await.expect("the delivery task ends on shutdown");
        }
        server.abort();
        assert!(drained.is_ok(), "{} left undelivered", undelivered().await);

        let counts = received.counts();
        assert_eq!(counts.len(), backlog, "every event arrived");
        for (id, count) in &counts {
            let expected = if id.ends_with('0') { 2 } else { 1 };
            assert_eq!(*count, expected, "{id} arrived {count} times");
        }
        let retried: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT attempts, last_error FROM local_webhook_deliveries WHERE event_id = 'evt_10'",
        )
        .fetch_all(db.pool())
        .await
        .expect("read");
        assert_eq!(retried.len(), 1);
        assert_eq!(
            retried[0].0, 2,
            "a failed attempt and the one that delivered"
        );
        assert!(
            retried[0]
                .1
                .as_deref()
                .is_some_and(|error| error.starts_with("500")),
            "{retried:?}"
        );
    }
}
