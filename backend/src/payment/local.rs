//! The local checkout: a hosted checkout page served by the backend, for
//! offline demos and tests. It stands in for Stripe Checkout and behaves
//! like it where the payment service can tell:
//!
//! - sessions have ids, a URL, line items, an expiry and success/cancel URLs
//!   with `{CHECKOUT_SESSION_ID}` filled in;
//! - the page takes Stripe's public test cards (4242 4242 4242 4242
//!   succeeds; 4000 0000 0000 0002 is declined, and so on), and a declined
//!   card leaves the session open for another try;
//! - two cards of its own stand for delayed payment methods: the session
//!   completes unpaid, and the money follows (4000 0000 0000 1000) or fails
//!   (4000 0000 0000 2008) a few seconds later;
//! - sessions expire, when the order is cancelled or shortly after its
//!   deadline, with a `checkout.session.expired` event;
//! - every event (`checkout.session.completed`, `…async_payment_succeeded`,
//!   `…async_payment_failed`, `…expired`) goes to the same path Stripe would
//!   call, signed as Stripe signs, from a durable queue that retries with
//!   backoff until the endpoint answers 2xx.
//!
//! Submitting the page is a plain form `POST` to the checkout URL with
//! `card_number`, `expiry`, `cvc` and `name`, so a script can pay with curl:
//! a payment answers `303 See Other` to the success URL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use shop_shared::domain::short_id;
use shop_shared::events::{CreatePayment, PricedLine};
use shop_shared::money::Currency;
use shop_shared::time::Timestamp;
use sqlx::Row;
use tokio::sync::Notify;
use uuid::Uuid;

use super::provider::{CheckoutSession, PaymentProvider, ProviderError};
use super::signature;
use super::store::PaymentRecord;
use crate::db::batch;
use crate::db::{Db, parse_column};
use crate::http::html::{escape, page};
use crate::secrets::Secret;
use crate::tasks::{Shutdown, Spawner};

/// How long a delayed payment takes to settle.
pub const DELAYED_SETTLEMENT: Duration = Duration::from_secs(3);
/// How long after its deadline an unpaid session expires by itself (the
/// order service's own deadline sweep normally closes it first).
const EXPIRY_GRACE: Duration = Duration::from_secs(30);

/// Where the local checkout lives and whom it tells.
#[derive(Clone, Debug)]
pub struct LocalCheckoutConfig {
    /// Base URL of the checkout pages as browsers reach them.
    pub public_url: String,
    /// Base URL of the gateway's payment-return pages.
    pub return_url: String,
    /// Where webhooks are delivered (the payment service's `/stripe/webhook`).
    pub webhook_url: String,
    pub webhook_secret: Secret,
}

/// The local checkout provider and its pages. Cheap to clone.
#[derive(Clone)]
pub struct LocalCheckout {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    config: LocalCheckoutConfig,
    wake_delivery: Notify,
    http: reqwest::Client,
}

impl LocalCheckout {
    pub fn new(db: Db, config: LocalCheckoutConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        LocalCheckout {
            inner: Arc::new(Inner {
                db,
                config,
                wake_delivery: Notify::new(),
                http,
            }),
        }
    }

    /// `GET` and `POST /checkout/{session_id}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/checkout/{session_id}", get(show).post(pay))
            .with_state(self.clone())
    }

    /// Starts the webhook delivery queue.
    pub fn spawn_delivery(&self, spawner: &Spawner) {
        let checkout = self.clone();
        let shutdown = spawner.shutdown().clone();
        spawner.spawn("local-checkout-webhooks", async move {
            checkout.deliver_webhooks(shutdown).await;
            Ok(())
        });
    }
}

#[async_trait]
impl PaymentProvider for LocalCheckout {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn create_session(
        &self,
        request: &CreatePayment,
        requested_at: Timestamp,
    ) -> Result<CheckoutSession, ProviderError> {
        let mut sessions = self.create_sessions(&[(request, requested_at)]).await;
        sessions.pop().unwrap_or_else(|| {
            Err(ProviderError::Unavailable(
                "the local checkout opened no session".into(),
            ))
        })
    }

    /// Opens the sessions in a few statements; an order that has a session
    /// already gets it back.
    async fn create_sessions(
        &self,
        requests: &[(&CreatePayment, Timestamp)],
    ) -> Vec<Result<CheckoutSession, ProviderError>> {
        match self.open_sessions(requests).await {
            Ok(sessions) => sessions.into_iter().map(Ok).collect(),
            Err(error) => {
                let reason = error.to_string();
                requests
                    .iter()
                    .map(|_| Err(ProviderError::Unavailable(reason.clone())))
                    .collect()
            }
        }
    }

    async fn expire_session(&self, session_id: &str) -> Result<(), ProviderError> {
        self.expire(Some(session_id)).await.map_err(unavailable)?;
        Ok(())
    }

    async fn refund(&self, payment: &PaymentRecord) -> Result<(), ProviderError> {
        // No money moved; the refund is recorded by the payment service.
        tracing::info!(order_id = %payment.order_id, session_id = %payment.session_id, "local checkout refund");
        Ok(())
    }
}

fn unavailable(error: sqlx::Error) -> ProviderError {
    ProviderError::Unavailable(error.to_string())
}

/// A session as the page and its events need it.
#[derive(Debug, Clone)]
struct Session {
    id: String,
    order_id: Uuid,
    amount: i64,
    currency: Currency,
    lines: Vec<PricedLine>,
    status: String,
    /// `paid`, or `unpaid` while a delayed payment settles.
    payment_status: String,
    /// A delayed payment failed.
    failed: bool,
    payment_intent: Option<String>,
    success_url: String,
    expires_at: Timestamp,
}

impl Session {
    fn is_expired(&self, now: Timestamp) -> bool {
        self.status == "expired" || (self.status == "open" && now >= self.expires_at)
    }

    fn success_url(&self) -> String {
        self.success_url.replace("{CHECKOUT_SESSION_ID}", &self.id)
    }
}

impl LocalCheckout {
    async fn open_sessions(
        &self,
        requests: &[(&CreatePayment, Timestamp)],
    ) -> Result<Vec<CheckoutSession>, sqlx::Error> {
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
                let return_page = format!(
                    "{}/orders/{}/return?session_id={{CHECKOUT_SESSION_ID}}",
                    config.return_url.trim_end_matches('/'),
                    request.order_id
                );
                upsert = upsert
                    .bind(format!("cs_local_{}", random_hex(12)))
                    .bind(request.order_id.to_string())
                    .bind(request.amount)
                    .bind(request.currency.to_string())
                    .bind(serde_json::to_string(&request.lines).unwrap_or_else(|_| "[]".into()))
                    .bind("open")
                    .bind(return_page.clone())
                    .bind(return_page)
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
                    sqlx::Error::Protocol(format!(
                        "no checkout session came back for order {}",
                        request.order_id
                    ))
                })?;
                let url = format!("{}/checkout/{id}", config.public_url.trim_end_matches('/'));
                Ok(CheckoutSession { id, url })
            })
            .collect()
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, sqlx::Error> {
        let mut connection = self.inner.db.pool().acquire().await?;
        read_session(&mut connection, id).await
    }

    /// Completes the session and queues its events, in one transaction:
    /// `checkout.session.completed`, paid at once, or unpaid followed by the
    /// delayed outcome. False if the session stopped being payable meanwhile.
    async fn complete(
        &self,
        session: &Session,
        settlement: Settlement,
    ) -> Result<bool, sqlx::Error> {
        let now = Timestamp::now();
        let payment_intent = format!("pi_local_{}", random_hex(12));
        let paid = settlement == Settlement::Now;
        let mut tx = self.inner.db.begin().await?;
        let updated = sqlx::query(
            "UPDATE local_checkout_sessions
             SET status = 'complete', payment_status = $2, payment_intent = $3, completed_at = $4
             WHERE id = $1 AND status = 'open' AND expires_at > $4",
        )
        .bind(&session.id)
        .bind(if paid { "paid" } else { "unpaid" })
        .bind(&payment_intent)
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut completed = session.clone();
        completed.status = "complete".into();
        completed.payment_status = if paid { "paid" } else { "unpaid" }.into();
        completed.payment_intent = Some(payment_intent);
        enqueue(&mut tx, "checkout.session.completed", &completed, now).await?;
        let later = now.plus(DELAYED_SETTLEMENT);
        match settlement {
            Settlement::Now => {}
            Settlement::Later { succeeds } => {
                let (kind, stored) = if succeeds {
                    completed.payment_status = "paid".into();
                    ("checkout.session.async_payment_succeeded", SETTLES_PAID)
                } else {
                    ("checkout.session.async_payment_failed", SETTLES_FAILED)
                };
                enqueue(&mut tx, kind, &completed, later).await?;
                sqlx::query("UPDATE local_checkout_sessions SET payment_status = $2 WHERE id = $1")
                    .bind(&session.id)
                    .bind(stored)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        self.inner.wake_delivery.notify_one();
        tracing::info!(order_id = %session.order_id, session_id = %session.id, ?settlement, "local checkout completed");
        Ok(true)
    }

    /// Expires open sessions, each with a `checkout.session.expired` event
    /// queued in the same transaction: session `id` if given (the order was
    /// cancelled), otherwise every open session past its deadline and grace.
    async fn expire(&self, id: Option<&str>) -> Result<usize, sqlx::Error> {
        let now = Timestamp::now();
        let cutoff = now.as_millis() - EXPIRY_GRACE.as_millis() as i64;
        let mut tx = self.inner.db.begin().await?;
        let ids: Vec<String> = match id {
            Some(id) => {
                sqlx::query_scalar("SELECT id FROM local_checkout_sessions WHERE id = $1 AND status = 'open'")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query_scalar(
                    "SELECT id FROM local_checkout_sessions WHERE status = 'open' AND expires_at <= $1 LIMIT 100",
                )
                .bind(cutoff)
                .fetch_all(&mut *tx)
                .await?
            }
        };
        let mut expired = 0;
        for id in &ids {
            let updated =
                sqlx::query("UPDATE local_checkout_sessions SET status = 'expired' WHERE id = $1 AND status = 'open'")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            if updated.rows_affected() == 1
                && let Some(session) = read_session(&mut tx, id).await?
            {
                enqueue(&mut tx, "checkout.session.expired", &session, now).await?;
                expired += 1;
            }
        }
        tx.commit().await?;
        if expired > 0 {
            self.inner.wake_delivery.notify_one();
            tracing::info!(expired, "local checkout sessions expired");
        }
        Ok(expired)
    }

    /// Delivers queued webhooks until shutdown, as Stripe does: signed at
    /// each attempt, retried with growing delays until a 2xx answer.
    async fn deliver_webhooks(&self, shutdown: Shutdown) {
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
    async fn deliver_due(&self) -> Result<Duration, sqlx::Error> {
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
        let timestamp = Timestamp::now().as_millis() / 1000;
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

/// Stored `payment_status` of a delayed payment until it settles: `unpaid`
/// until [`DELAYED_SETTLEMENT`] after completion, then paid or failed.
const SETTLES_PAID: &str = "settles:paid";
const SETTLES_FAILED: &str = "settles:failed";

/// The payment status of a completed session at `now`, from what is stored:
/// (`paid` or `unpaid` as Stripe reports it, whether the payment failed).
fn settled(stored: &str, completed_at: Option<i64>, now: Timestamp) -> (String, bool) {
    let settled =
        completed_at.is_some_and(|at| Timestamp::from_millis(at).plus(DELAYED_SETTLEMENT) <= now);
    match stored {
        SETTLES_PAID if settled => ("paid".into(), false),
        SETTLES_FAILED if settled => ("unpaid".into(), true),
        SETTLES_PAID | SETTLES_FAILED => ("unpaid".into(), false),
        other => (other.to_owned(), false),
    }
}

/// When a payment settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settlement {
    /// A card: paid at checkout.
    Now,
    /// A delayed payment method: settles (or fails) a moment later.
    Later { succeeds: bool },
}

/// The event of type `kind` about `session`, as Stripe would send it.
fn event(event_id: &str, kind: &str, session: &Session, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": now.as_millis() / 1000,
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
                "payment_status": session.payment_status,
                "status": session.status,
                "success_url": session.success_url,
                "expires_at": session.expires_at.as_millis() / 1000,
            }
        }
    })
}

/// Queues event `kind` about `session` for delivery at `due`.
async fn enqueue(
    tx: &mut crate::db::Tx,
    kind: &str,
    session: &Session,
    due: Timestamp,
) -> Result<(), sqlx::Error> {
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

async fn read_session(
    connection: &mut sqlx::AnyConnection,
    id: &str,
) -> Result<Option<Session>, sqlx::Error> {
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
    let stored: String = row.try_get("payment_status")?;
    let (payment_status, failed) = settled(&stored, row.try_get("completed_at")?, Timestamp::now());
    Ok(Some(Session {
        id: row.try_get("id")?,
        order_id: parse_column(&order_id, "order_id")?,
        amount: row.try_get("amount")?,
        currency: parse_column(&currency, "currency")?,
        lines: serde_json::from_str(&lines).map_err(|error| sqlx::Error::Decode(error.into()))?,
        status: row.try_get("status")?,
        payment_status,
        failed,
        payment_intent: row.try_get("payment_intent")?,
        success_url: row.try_get("success_url")?,
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
    }))
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The OS random source failing is not recoverable in any useful way;
    // fall back to a time-based id, which is still unique enough here.
    if getrandom::fill(&mut buffer).is_err() {
        return format!("{:x}", Timestamp::now().as_millis());
    }
    hex::encode(buffer)
}

/// The card form as posted. Every field is optional so that a missing one
/// gets a clear message instead of a generic rejection.
#[derive(Debug, Default, Deserialize)]
pub struct CardForm {
    #[serde(default)]
    pub card_number: String,
    #[serde(default)]
    pub expiry: String,
    #[serde(default)]
    pub cvc: String,
    #[serde(default)]
    pub name: String,
}

/// What the card network says about a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardOutcome {
    Approved,
    /// A stand-in for a delayed payment method (local checkout only).
    Delayed {
        succeeds: bool,
    },
    Declined(&'static str),
}

/// Checks the form and answers as Stripe's test mode does for its test
/// cards. `Err` is a message about a field the customer must fix.
pub fn check_card(form: &CardForm, today: (i32, u32)) -> Result<CardOutcome, String> {
    let number: String = form
        .card_number
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if number.is_empty() {
        return Err("Enter a card number.".into());
    }
    if !number.bytes().all(|b| b.is_ascii_digit())
        || !(12..=19).contains(&number.len())
        || !luhn(&number)
    {
        return Err("Your card number is invalid.".into());
    }
    let (month, year) = parse_expiry(&form.expiry).ok_or("Enter the expiry date as MM/YY.")?;
    if (year, month) < today {
        return Err("Your card's expiration date is in the past.".into());
    }
    let cvc = form.cvc.trim();
    if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Your card's security code is incomplete.".into());
    }
    if form.name.trim().is_empty() {
        return Err("Enter the name on the card.".into());
    }
    Ok(match number.as_str() {
        "4242424242424242" | "4000056655665556" | "5555555555554444" | "2223003122003222"
        | "5200828282828210" | "378282246310005" | "6011111111111117" => CardOutcome::Approved,
        "4000000000001000" => CardOutcome::Delayed { succeeds: true },
        "4000000000002008" => CardOutcome::Delayed { succeeds: false },
        "4000000000000002" => CardOutcome::Declined("Your card was declined."),
        "4000000000009995" => CardOutcome::Declined("Your card has insufficient funds."),
        "4000000000009987" => CardOutcome::Declined("Your card was declined (lost card)."),
        "4000000000009979" => CardOutcome::Declined("Your card was declined (stolen card)."),
        "4000000000000069" => CardOutcome::Declined("Your card has expired."),
        "4000000000000127" => CardOutcome::Declined("Your card's security code is incorrect."),
        "4000000000000119" => {
            CardOutcome::Declined("An error occurred while processing your card. Try again.")
        }
        _ => CardOutcome::Declined(
            "Your card was declined. This is a test checkout: use a Stripe test card such as 4242 4242 4242 4242.",
        ),
    })
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Reads `MM/YY`, `MM / YY`, `MM/YYYY` or `MMYY` as (month, full year).
fn parse_expiry(text: &str) -> Option<(u32, i32)> {
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    let (month, year) = match digits.len() {
        4 => (&digits[..2], format!("20{}", &digits[2..])),
        6 => (&digits[..2], digits[2..].to_owned()),
        _ => return None,
    };
    let month: u32 = month.parse().ok()?;
    let year: i32 = year.parse().ok()?;
    (1..=12).contains(&month).then_some((month, year))
}

/// Today's (year, month) in UTC.
fn today() -> (i32, u32) {
    let text = Timestamp::now().to_string();
    let year = text.get(..4).and_then(|y| y.parse().ok()).unwrap_or(2026);
    let month = text.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    (year, month)
}

async fn show(State(checkout): State<LocalCheckout>, Path(session_id): Path<String>) -> Response {
    match checkout.session(&session_id).await {
        Ok(Some(session)) => render(&session, None, &CardForm::default()),
        Ok(None) => not_found(),
        Err(error) => server_error(error),
    }
}

async fn pay(
    State(checkout): State<LocalCheckout>,
    Path(session_id): Path<String>,
    Form(form): Form<CardForm>,
) -> Response {
    let session = match checkout.session(&session_id).await {
        Ok(Some(session)) => session,
        Ok(None) => return not_found(),
        Err(error) => return server_error(error),
    };
    if session.status != "open" || session.is_expired(Timestamp::now()) {
        return render(&session, None, &form);
    }
    match check_card(&form, today()) {
        Err(message) => render_with(&session, StatusCode::UNPROCESSABLE_ENTITY, &message, &form),
        Ok(CardOutcome::Declined(message)) => {
            tracing::info!(order_id = %session.order_id, "local checkout: card declined");
            render_with(&session, StatusCode::PAYMENT_REQUIRED, message, &form)
        }
        Ok(outcome @ (CardOutcome::Approved | CardOutcome::Delayed { .. })) => {
            let settlement = match outcome {
                CardOutcome::Delayed { succeeds } => Settlement::Later { succeeds },
                _ => Settlement::Now,
            };
            match checkout.complete(&session, settlement).await {
                Ok(true) => Redirect::to(&session.success_url()).into_response(),
                Ok(false) => match checkout.session(&session_id).await {
                    Ok(Some(session)) => render(&session, None, &form),
                    Ok(None) => not_found(),
                    Err(error) => server_error(error),
                },
                Err(error) => server_error(error),
            }
        }
    }
}

fn render_with(session: &Session, status: StatusCode, message: &str, form: &CardForm) -> Response {
    let mut response = render(session, Some(message), form);
    *response.status_mut() = status;
    response
}

/// The checkout page for `session` in whatever state it is.
fn render(session: &Session, error: Option<&str>, form: &CardForm) -> Response {
    let order = short_id(&session.order_id);
    let mut rows = String::new();
    for line in &session.lines {
        let amount = line.unit_price.saturating_mul(line.quantity);
        rows.push_str(&format!(
            "<tr><td>{} × {}</td><td class=\"amount\">{}</td></tr>",
            line.quantity,
            escape(&line.name),
            escape(&session.currency.format(amount))
        ));
    }
    rows.push_str(&format!(
        "<tr class=\"total\"><td>Total</td><td class=\"amount\" id=\"total\">{}</td></tr>",
        escape(&session.currency.format(session.amount))
    ));
    let summary = format!("<h1>Pay order {order}</h1><table>{rows}</table>");
    let now = Timestamp::now();
    let (status, body) = if session.status == "complete" && session.failed {
        (
            StatusCode::OK,
            format!(
                "{summary}<p class=\"status\" id=\"state\">Payment failed</p><p>The payment did not go through, so nothing was charged and the order was cancelled. <a href=\"{}\">See the order</a>.</p>",
                escape(&session.success_url())
            ),
        )
    } else if session.status == "complete" && session.payment_status == "unpaid" {
        (
            StatusCode::OK,
            format!(
                "{summary}<p class=\"status\" id=\"state\">Processing</p><p>The payment is being confirmed; this takes a few seconds. <a href=\"{}\">Follow the order</a>.</p>",
                escape(&session.success_url())
            ),
        )
    } else if session.status == "complete" {
        (
            StatusCode::OK,
            format!(
                "{summary}<p class=\"status\" id=\"state\">Paid</p><p>This order is paid. <a href=\"{}\">See the order</a>.</p>",
                escape(&session.success_url())
            ),
        )
    } else if session.is_expired(now) {
        (
            StatusCode::GONE,
            format!(
                "{summary}<p class=\"status\" id=\"state\">Expired</p><p>This checkout has expired: the order was cancelled or its deadline to pay passed. Nothing was charged.</p>"
            ),
        )
    } else {
        let error = error
            .map(|message| {
                format!(
                    "<p class=\"error\" id=\"error\" role=\"alert\">{}</p>",
                    escape(message)
                )
            })
            .unwrap_or_default();
        (
            StatusCode::OK,
            format!(
                r#"{summary}{error}
<form method="post" id="pay">
  <label for="card_number">Card number</label>
  <input id="card_number" name="card_number" inputmode="numeric" autocomplete="cc-number" placeholder="4242 4242 4242 4242" value="{number}" required>
  <label for="expiry">Expiry (MM/YY)</label>
  <input id="expiry" name="expiry" autocomplete="cc-exp" placeholder="12/34" value="{expiry}" required>
  <label for="cvc">CVC</label>
  <input id="cvc" name="cvc" inputmode="numeric" autocomplete="cc-csc" placeholder="123" required>
  <label for="name">Name on card</label>
  <input id="name" name="name" autocomplete="cc-name" value="{name}" required>
  <button type="submit" id="submit">Pay {total}</button>
</form>
<p class="note">Local test checkout: no money moves. 4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined;
4000 0000 0000 1000 and 4000 0000 0000 2008 act as delayed payment methods that settle, or fail, a few seconds later.
Any future expiry and any CVC. Pay before {deadline}.</p>"#,
                number = escape(&form.card_number),
                expiry = escape(&form.expiry),
                name = escape(&form.name),
                total = escape(&session.currency.format(session.amount)),
                deadline = escape(&session.expires_at.to_string()),
            ),
        )
    };
    (status, Html(page(&format!("Pay order {order}"), &body))).into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page(
            "No such checkout",
            "<h1>No such checkout</h1><p>This checkout link is not known here.</p>",
        )),
    )
        .into_response()
}

fn server_error(error: sqlx::Error) -> Response {
    tracing::error!(%error, "local checkout page failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(page(
            "Something went wrong",
            "<h1>Something went wrong</h1><p>Try again in a moment.</p>",
        )),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(number: &str, expiry: &str) -> CardForm {
        CardForm {
            card_number: number.into(),
            expiry: expiry.into(),
            cvc: "123".into(),
            name: "Ada Lovelace".into(),
        }
    }

    const TODAY: (i32, u32) = (2026, 11);

    #[test]
    fn stripe_test_cards_succeed_or_decline_as_documented() {
        assert_eq!(
            check_card(&form("4242 4242 4242 4242", "12/34"), TODAY),
            Ok(CardOutcome::Approved)
        );
        assert_eq!(
            check_card(&form("4000 0000 0000 0002", "12/34"), TODAY),
            Ok(CardOutcome::Declined("Your card was declined."))
        );
        assert!(matches!(
            check_card(&form("4000000000009995", "1234"), TODAY),
            Ok(CardOutcome::Declined(message)) if message.contains("insufficient")
        ));
    }

    #[test]
    fn malformed_card_details_are_refused_with_a_reason() {
        assert!(check_card(&form("", "12/34"), TODAY).is_err());
        assert!(
            check_card(&form("4242 4242 4242 4241", "12/34"), TODAY).is_err(),
            "Luhn"
        );
        assert!(
            check_card(&form("4242424242424242", "13/34"), TODAY).is_err(),
            "month 13"
        );
        assert!(
            check_card(&form("4242424242424242", "10/26"), TODAY).is_err(),
            "expired"
        );
        assert!(
            check_card(&form("4242424242424242", "11/26"), TODAY).is_ok(),
            "this month is fine"
        );
        let mut no_cvc = form("4242424242424242", "12/34");
        no_cvc.cvc = "1".into();
        assert!(check_card(&no_cvc, TODAY).is_err());
        let mut no_name = form("4242424242424242", "12/34");
        no_name.name = " ".into();
        assert!(check_card(&no_name, TODAY).is_err());
    }

    #[test]
    fn expiry_accepts_the_usual_spellings() {
        assert_eq!(parse_expiry("12/34"), Some((12, 2034)));
        assert_eq!(parse_expiry("12 / 2034"), Some((12, 2034)));
        assert_eq!(parse_expiry("0129"), Some((1, 2029)));
        assert_eq!(parse_expiry("1/2"), None);
    }

    #[test]
    fn delayed_payments_read_unpaid_until_they_settle() {
        let completed = Timestamp::from_millis(1_000_000);
        let before = completed.plus(DELAYED_SETTLEMENT - Duration::from_millis(1));
        let after = completed.plus(DELAYED_SETTLEMENT);
        let at = Some(completed.as_millis());
        assert_eq!(settled(SETTLES_PAID, at, before), ("unpaid".into(), false));
        assert_eq!(settled(SETTLES_PAID, at, after), ("paid".into(), false));
        assert_eq!(
            settled(SETTLES_FAILED, at, before),
            ("unpaid".into(), false)
        );
        assert_eq!(settled(SETTLES_FAILED, at, after), ("unpaid".into(), true));
        assert_eq!(settled("paid", at, before), ("paid".into(), false));
        assert_eq!(settled("unpaid", None, after), ("unpaid".into(), false));
    }

    #[test]
    fn webhook_retries_back_off_up_to_ten_minutes() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(3), Duration::from_secs(8));
        assert_eq!(retry_delay(40), Duration::from_secs(600));
    }
}
