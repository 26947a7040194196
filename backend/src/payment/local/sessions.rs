//! Checkout sessions: their states, typed, and their rows.

use std::collections::{HashMap, HashSet};

use shop_shared::events::{CreatePayment, PricedLine};
use shop_shared::money::Currency;
use shop_shared::time::Timestamp;
use sqlx::Row;
use uuid::Uuid;

use super::delivery::enqueue;
use super::{DELAYED_SETTLEMENT, EXPIRY_GRACE, LocalCheckout};
use crate::db::{StoreError, Tx, batch, parse_column};
use crate::payment::provider::{CheckoutSession, ReturnUrls, SessionClosed, SessionReport};

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionState {
    /// Takes payment until it expires.
    Open,
    /// Closed unpaid: the order was cancelled, or its deadline passed.
    Expired,
    /// Paid: by card at checkout, or a delayed payment that settled.
    Paid,
    /// Completed with a delayed payment method, unpaid until
    /// [`DELAYED_SETTLEMENT`] after completion; then paid if `succeeds`,
    /// failed otherwise.
    Settling { succeeds: bool },
    /// A delayed payment that failed.
    Failed,
    /// Paid, then refunded: the payment reached a cancelled order.
    Refunded,
}

/// Stored `payment_status` of a paid session whose payment was refunded
/// (Stripe keeps such a session `paid`: the refund belongs to the payment).
const REFUNDED: &str = "refunded";
/// Stored `payment_status` of a delayed payment: what it settles to.
const SETTLES_PAID: &str = "settles:paid";
const SETTLES_FAILED: &str = "settles:failed";

impl SessionState {
    /// The state stored as `status` and `payment_status`, at `now`, of a
    /// session completed at `completed_at`: a delayed payment settles by
    /// the clock.
    fn read(
        status: &str,
        payment_status: &str,
        completed_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<SessionState, StoreError> {
        let settled = completed_at.is_some_and(|at| at.plus(DELAYED_SETTLEMENT) <= now);
        Ok(match (status, payment_status) {
            ("open", _) => SessionState::Open,
            ("expired", _) => SessionState::Expired,
            ("complete", "paid") => SessionState::Paid,
            ("complete", REFUNDED) => SessionState::Refunded,
            ("complete", SETTLES_PAID) if settled => SessionState::Paid,
            ("complete", SETTLES_FAILED) if settled => SessionState::Failed,
            ("complete", SETTLES_PAID) => SessionState::Settling { succeeds: true },
            ("complete", SETTLES_FAILED) => SessionState::Settling { succeeds: false },
            (status, payment_status) => {
                return Err(StoreError::corrupt(
                    "status",
                    format!("no session state is stored as {status}/{payment_status}"),
                ));
            }
        })
    }

    /// The `payment_status` column of a completed session in this state.
    fn stored_payment_status(self) -> &'static str {
        match self {
            SessionState::Paid => "paid",
            SessionState::Refunded => REFUNDED,
            SessionState::Settling { succeeds: true } => SETTLES_PAID,
            SessionState::Settling { succeeds: false } | SessionState::Failed => SETTLES_FAILED,
            SessionState::Open | SessionState::Expired => "unpaid",
        }
    }

    /// Stripe's `status` of the session: `open`, `complete` or `expired`.
    pub(super) fn stripe_status(self) -> &'static str {
        match self {
            SessionState::Open => "open",
            SessionState::Expired => "expired",
            SessionState::Paid
            | SessionState::Refunded
            | SessionState::Settling { .. }
            | SessionState::Failed => "complete",
        }
    }

    /// Stripe's `payment_status` of the session: `paid` or `unpaid`.
    pub(super) fn stripe_payment_status(self) -> &'static str {
        match self {
            SessionState::Paid | SessionState::Refunded => "paid",
            _ => "unpaid",
        }
    }
}

/// A session as the page and its events need it.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) id: String,
    pub(super) order_id: Uuid,
    /// In minor units of `currency`.
    pub(super) amount: i64,
    pub(super) currency: Currency,
    pub(super) lines: Vec<PricedLine>,
    pub(super) state: SessionState,
    pub(super) payment_intent: Option<String>,
    pub(super) success_url: String,
    pub(super) expires_at: Timestamp,
}

impl Session {
    /// Whether a card may be taken now.
    pub(super) fn takes_payment(&self, now: Timestamp) -> bool {
        self.state == SessionState::Open && now < self.expires_at
    }

    pub(super) fn is_expired(&self, now: Timestamp) -> bool {
        self.state == SessionState::Expired
            || (self.state == SessionState::Open && now >= self.expires_at)
    }

    pub(super) fn success_url(&self) -> String {
        self.success_url.replace("{CHECKOUT_SESSION_ID}", &self.id)
    }

    /// What the session says, as its webhooks would.
    pub(super) fn report(&self) -> SessionReport {
        SessionReport {
            session_id: self.id.clone(),
            payment_status: Some(self.state.stripe_payment_status().to_owned()),
            amount_total: Some(self.amount),
            currency: Some(self.currency.as_str().to_ascii_lowercase()),
            payment_intent: self.payment_intent.clone(),
        }
    }
}

impl LocalCheckout {
    /// Opens a session for each request; an order that has one already
    /// gets it back.
    pub(super) async fn open_sessions(
        &self,
        requests: &[(&CreatePayment, Timestamp)],
    ) -> Result<Vec<CheckoutSession>, StoreError> {
        let config = &self.inner.config;
        let now = Timestamp::now().as_millis();
        let mut ids: HashMap<Uuid, String> = HashMap::with_capacity(requests.len());
        for range in batch::chunks(requests.len()) {
            let sql = format!(
                "INSERT INTO local_checkout_sessions (id, order_id, amount, currency, line_items,
                    status, success_url, cancel_url, expires_at, created_at)
                 VALUES {}
                 ON CONFLICT (order_id) DO UPDATE SET order_id = excluded.order_id
                 RETURNING order_id, id",
                batch::values(range.len(), 10, self.inner.db.placeholders())
            );
            let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (request, _) in &requests[range] {
                let back = ReturnUrls::of(&config.return_url, &request.order_id.to_string());
                upsert = upsert
                    .bind(format!("cs_local_{}", random_hex(12)))
                    .bind(request.order_id.to_string())
                    .bind(request.amount)
                    .bind(request.currency.to_string())
                    .bind(serde_json::to_string(&request.lines).unwrap_or_else(|_| "[]".into()))
                    .bind(SessionState::Open.stripe_status())
                    .bind(back.success)
                    .bind(back.cancel)
                    .bind(request.pay_until.as_millis())
                    .bind(now);
            }
            for row in upsert.fetch_all(self.inner.db.pool()).await? {
                let order_id: String = row.try_get("order_id")?;
                ids.insert(parse_column(&order_id, "order_id")?, row.try_get("id")?);
            }
        }
        requests
            .iter()
            .map(|(request, _)| {
                let id = ids.get(&request.order_id).cloned().ok_or_else(|| {
                    StoreError::corrupt(
                        "id",
                        format!(
                            "no checkout session came back for order {}",
                            request.order_id
                        ),
                    )
                })?;
                let url = format!("{}/checkout/{id}", config.public_url.trim_end_matches('/'));
                Ok(CheckoutSession { id, url })
            })
            .collect()
    }

    pub(super) async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let mut connection = self.inner.db.pool().acquire().await?;
        read_session(&mut connection, id).await
    }

    /// Completes the session and queues its events, in one transaction:
    /// `checkout.session.completed`, paid at once, or unpaid followed by the
    /// delayed outcome. False if the session stopped being payable meanwhile.
    pub(super) async fn complete(
        &self,
        session: &Session,
        settlement: Settlement,
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let payment_intent = format!("pi_local_{}", random_hex(12));
        let state = match settlement {
            Settlement::Now => SessionState::Paid,
            Settlement::Later { succeeds } => SessionState::Settling { succeeds },
        };
        let mut tx = self.inner.db.begin().await?;
        let updated = sqlx::query(
            "UPDATE local_checkout_sessions
             SET status = $2, payment_status = $3, payment_intent = $4, completed_at = $5
             WHERE id = $1 AND status = $6 AND expires_at > $5",
        )
        .bind(&session.id)
        .bind(state.stripe_status())
        .bind(state.stored_payment_status())
        .bind(&payment_intent)
        .bind(now.as_millis())
        .bind(SessionState::Open.stripe_status())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut completed = session.clone();
        completed.state = state;
        completed.payment_intent = Some(payment_intent);
        enqueue(&mut tx, "checkout.session.completed", &completed, now).await?;
        if let SessionState::Settling { succeeds } = state {
            let kind = if succeeds {
                completed.state = SessionState::Paid;
                "checkout.session.async_payment_succeeded"
            } else {
                completed.state = SessionState::Failed;
                "checkout.session.async_payment_failed"
            };
            enqueue(&mut tx, kind, &completed, now.plus(DELAYED_SETTLEMENT)).await?;
        }
        tx.commit().await?;
        self.inner.wake_delivery.notify_one();
        tracing::info!(order_id = %session.order_id, session_id = %session.id, ?settlement, "local checkout completed");
        Ok(true)
    }

    /// Closes sessions `ids` in one transaction, as Stripe's expire call
    /// does each: an open session expires (its `checkout.session.expired`
    /// event queued with it), and a session the customer completed first
    /// says so. The answers are in the order of `ids`.
    pub(super) async fn close(&self, ids: &[String]) -> Result<Vec<SessionClosed>, StoreError> {
        let mut tx = self.inner.db.begin().await?;
        let expired = self.expire_in(&mut tx, ids, Timestamp::now()).await?;
        let mut closed = Vec::with_capacity(ids.len());
        for id in ids {
            if expired.contains(id) {
                closed.push(SessionClosed::Unpaid);
                continue;
            }
            let session = read_session(&mut tx, id).await?;
            closed.push(session.map_or(SessionClosed::Unpaid, Session::closed));
        }
        tx.commit().await?;
        if !expired.is_empty() {
            self.inner.wake_delivery.notify_one();
            tracing::debug!(expired = expired.len(), "local checkout sessions closed");
        }
        Ok(closed)
    }

    /// Expires the open sessions among `ids` inside `tx`, queueing a
    /// `checkout.session.expired` event for each; returns those it expired.
    async fn expire_in(
        &self,
        tx: &mut Tx,
        ids: &[String],
        now: Timestamp,
    ) -> Result<HashSet<String>, StoreError> {
        let mut expired = HashSet::new();
        for id in ids {
            let updated = sqlx::query(
                "UPDATE local_checkout_sessions SET status = 'expired' WHERE id = $1 AND status = 'open'",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
            if updated.rows_affected() == 1
                && let Some(session) = read_session(tx, id).await?
            {
                enqueue(tx, "checkout.session.expired", &session, now).await?;
                expired.insert(id.clone());
            }
        }
        Ok(expired)
    }
}

impl Session {
    /// How this session, found not open when it was to be closed, had closed.
    fn closed(self) -> SessionClosed {
        match self.state {
            // `Open` cannot be read after `expire`: no session reopens.
            SessionState::Open | SessionState::Expired => SessionClosed::Unpaid,
            SessionState::Paid
            | SessionState::Refunded
            | SessionState::Settling { .. }
            | SessionState::Failed => SessionClosed::Completed(self.report()),
        }
    }
}

impl LocalCheckout {
    /// Marks the paid session `id` refunded, so that its page says so.
    /// False if it is not a completed session.
    pub(super) async fn refunded(&self, id: &str) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE local_checkout_sessions SET payment_status = $2 WHERE id = $1 AND status = $3",
        )
        .bind(id)
        .bind(SessionState::Refunded.stored_payment_status())
        .bind(SessionState::Refunded.stripe_status())
        .execute(self.inner.db.pool())
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Expires every open session past its deadline and grace, each with a
    /// `checkout.session.expired` event queued in the same transaction, at
    /// most 100 at a time; returns how many it expired.
    pub(super) async fn expire_lapsed(&self) -> Result<usize, StoreError> {
        let now = Timestamp::now();
        let cutoff = now.as_millis() - EXPIRY_GRACE.as_millis() as i64;
        let mut tx = self.inner.db.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(LAPSED_SESSIONS)
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
        let expired = self.expire_in(&mut tx, &ids, now).await?.len();
        tx.commit().await?;
        if expired > 0 {
            self.inner.wake_delivery.notify_one();
            tracing::info!(expired, "local checkout sessions expired");
        }
        Ok(expired)
    }
}

/// Open sessions past a cutoff ($1, milliseconds since the epoch), found
/// through the index of open sessions only (payment migration 0005), so
/// that the sweep costs the same however many closed sessions are kept.
const LAPSED_SESSIONS: &str =
    "SELECT id FROM local_checkout_sessions WHERE status = 'open' AND expires_at <= $1 LIMIT 100";

/// When a payment settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settlement {
    /// A card: paid at checkout.
    Now,
    /// A delayed payment method: settles (or fails) a moment later.
    Later { succeeds: bool },
}

async fn read_session(
    connection: &mut sqlx::AnyConnection,
    id: &str,
) -> Result<Option<Session>, StoreError> {
    let row = sqlx::query(
        "SELECT id, order_id, amount, currency, line_items, status, payment_status, payment_intent,
            success_url, expires_at, completed_at
         FROM local_checkout_sessions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *connection)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let order_id: String = row.try_get("order_id")?;
    let currency: String = row.try_get("currency")?;
    let lines: String = row.try_get("line_items")?;
    let status: String = row.try_get("status")?;
    let payment_status: String = row.try_get("payment_status")?;
    let completed_at: Option<i64> = row.try_get("completed_at")?;
    let state = SessionState::read(
        &status,
        &payment_status,
        completed_at.map(Timestamp::from_millis),
        Timestamp::now(),
    )?;
    Ok(Some(Session {
        id: row.try_get("id")?,
        order_id: parse_column(&order_id, "order_id")?,
        amount: row.try_get("amount")?,
        currency: parse_column(&currency, "currency")?,
        lines: serde_json::from_str(&lines)
            .map_err(|error| StoreError::corrupt("line_items", error.to_string()))?,
        state,
        payment_intent: row.try_get("payment_intent")?,
        success_url: row.try_get("success_url")?,
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
    }))
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The OS random source failing is not recoverable in any useful way;
    // fall back to a time-based id, which is still unique enough here.
    if getrandom::fill(&mut buffer).is_err() {
        return format!("{:x}", Timestamp::now().as_millis());
    }
    hex::encode(buffer)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_lapsed_session_sweep_reads_only_open_sessions() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = crate::db::Db::sqlite(&dir.path().join("payment.sqlite"))
            .await
            .expect("database");
        db.migrate(crate::Service::Payment).await.expect("migrated");
        let sql = format!("EXPLAIN QUERY PLAN {}", LAPSED_SESSIONS.replace("$1", "0"));
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(db.pool())
            .await
            .expect("planned")
            .iter()
            .map(|row| row.get::<String, _>(3))
            .collect();
        // Not the index of every session's expiry, which grows with the
        // sessions kept for their retention.
        assert_eq!(
            plan,
            [
                "SEARCH local_checkout_sessions USING INDEX local_checkout_sessions_open_by_expiry (expires_at<?)"
            ],
        );
    }

    #[test]
    fn delayed_payments_read_unpaid_until_they_settle() {
        let completed = Timestamp::from_millis(1_000_000);
        let before = completed.plus(DELAYED_SETTLEMENT - Duration::from_millis(1));
        let after = completed.plus(DELAYED_SETTLEMENT);
        let read = |stored: &str, at: Option<Timestamp>, now: Timestamp| {
            let state = SessionState::read("complete", stored, at, now).expect("known state");
            (state.stripe_payment_status(), state == SessionState::Failed)
        };
        let at = Some(completed);
        assert_eq!(read(SETTLES_PAID, at, before), ("unpaid", false));
        assert_eq!(read(SETTLES_PAID, at, after), ("paid", false));
        assert_eq!(read(SETTLES_FAILED, at, before), ("unpaid", false));
        assert_eq!(read(SETTLES_FAILED, at, after), ("unpaid", true));
        assert_eq!(read("paid", at, before), ("paid", false));
    }

    #[test]
    fn every_state_is_read_back_as_it_was_stored() {
        let long_ago = Some(Timestamp::from_millis(0));
        let now = Timestamp::from_millis(1_000_000_000);
        for state in [
            SessionState::Open,
            SessionState::Expired,
            SessionState::Paid,
            SessionState::Failed,
            SessionState::Refunded,
        ] {
            let read = SessionState::read(
                state.stripe_status(),
                state.stored_payment_status(),
                long_ago,
                now,
            );
            assert_eq!(read.ok(), Some(state));
        }
        let settling = SessionState::Settling { succeeds: true };
        let read = SessionState::read(
            settling.stripe_status(),
            settling.stored_payment_status(),
            Some(now),
            now,
        );
        assert_eq!(read.ok(), Some(settling));
        assert!(SessionState::read("complete", "chargeback", None, now).is_err());
        assert_eq!(settling.stripe_status(), "complete");
        assert_eq!(SessionState::Expired.stripe_status(), "expired");
    }
}
