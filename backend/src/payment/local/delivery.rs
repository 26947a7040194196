//! Webhook delivery: every event goes to the payment service's
//! `/stripe/webhook` as Stripe would send it, signed at each attempt, from
//! a durable queue that retries with backoff until the endpoint answers
//! 2xx.

use std::time::Duration;

use axum::http::header;
use shop_shared::time::Timestamp;
use sqlx::Row;

use super::LocalCheckout;
use super::sessions::{Session, random_hex};
use crate::db::{StoreError, Tx};
use crate::payment::signature;
use crate::tasks::Shutdown;

impl LocalCheckout {
    /// Delivers queued webhooks until shutdown, as Stripe does: signed at
    /// each attempt, retried with growing delays until a 2xx answer.
    pub(super) async fn deliver_webhooks(&self, shutdown: Shutdown) {
        loop {
            if let Err(error) = self.expire(None).await {
                tracing::warn!(%error, "local checkout cannot expire old sessions");
            }
            let pause = match self.deliver_due().await {
                Ok(pause) => pause,
                Err(error) => {
                    tracing::warn!(%error, "local checkout cannot read its webhook queue");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.inner.wake_delivery.notified() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.triggered() => return,
            }
        }
    }

    /// Delivers every due webhook; returns how long until the next is due.
    async fn deliver_due(&self) -> Result<Duration, StoreError> {
        let db = &self.inner.db;
        let now = Timestamp::now().as_millis();
        let due = sqlx::query(
            "SELECT event_id, payload, attempts, next_attempt_at FROM local_webhook_deliveries
             WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT 20",
        )
        .bind(now)
        .fetch_all(db.pool())
        .await?;
        for row in due {
            let event_id: String = row.try_get("event_id")?;
            let payload: String = row.try_get("payload")?;
            let attempts: i64 = row.try_get("attempts")?;
            let due_at: i64 = row.try_get("next_attempt_at")?;
            // Lease the delivery so that another instance does not send it too.
            let lease = now + 30_000;
            let claimed = sqlx::query(
                "UPDATE local_webhook_deliveries SET next_attempt_at = $3
                 WHERE event_id = $1 AND next_attempt_at = $2 AND delivered_at IS NULL",
            )
            .bind(&event_id)
            .bind(due_at)
            .bind(lease)
            .execute(db.pool())
            .await?;
            if claimed.rows_affected() != 1 {
                continue;
            }
            match self.send(&payload).await {
                Ok(()) => {
                    sqlx::query("UPDATE local_webhook_deliveries SET delivered_at = $2, attempts = $3 WHERE event_id = $1")
                        .bind(&event_id)
                        .bind(Timestamp::now().as_millis())
                        .bind(attempts + 1)
                        .execute(db.pool())
                        .await?;
                }
                Err(error) => {
                    let delay = retry_delay(attempts + 1);
                    tracing::warn!(%event_id, attempt = attempts + 1, %error, ?delay, "webhook delivery failed; will retry");
                    sqlx::query(
                        "UPDATE local_webhook_deliveries SET attempts = $2, next_attempt_at = $3, last_error = $4
                         WHERE event_id = $1",
                    )
                    .bind(&event_id)
                    .bind(attempts + 1)
                    .bind(Timestamp::now().plus(delay).as_millis())
                    .bind(&error)
                    .execute(db.pool())
                    .await?;
                }
            }
        }
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM local_webhook_deliveries WHERE delivered_at IS NULL",
        )
        .fetch_one(db.pool())
        .await?;
        let now = Timestamp::now();
        Ok(next.map_or(Duration::from_secs(5), |next| {
            Timestamp::from_millis(next)
                .remaining_from(now)
                .min(Duration::from_secs(5))
        }))
    }

    async fn send(&self, payload: &str) -> Result<(), String> {
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
            .body(payload.to_owned())
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
    use super::*;

    #[test]
    fn webhook_retries_back_off_up_to_ten_minutes() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(3), Duration::from_secs(8));
        assert_eq!(retry_delay(40), Duration::from_secs(600));
    }
}
