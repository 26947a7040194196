//! The payment service's tables: one payment per order, and the webhook
//! events already handled.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use shop_shared::money::Currency;
use shop_shared::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::db::batch::{self, Placeholders};
use crate::db::{Db, Tx, parse_column};

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// The checkout session takes payment.
    Open,
    Paid,
    /// The order no longer takes payment; the session was closed.
    Cancelled,
    /// The provider could not take the payment.
    Failed,
    /// Paid too late and given back.
    Refunded,
    /// The provider closed the session unpaid.
    Expired,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Open => "OPEN",
            PaymentStatus::Paid => "PAID",
            PaymentStatus::Cancelled => "CANCELLED",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Refunded => "REFUNDED",
            PaymentStatus::Expired => "EXPIRED",
        }
    }
}

impl FromStr for PaymentStatus {
    type Err = shop_shared::domain::UnknownName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "OPEN" => Ok(PaymentStatus::Open),
            "PAID" => Ok(PaymentStatus::Paid),
            "CANCELLED" => Ok(PaymentStatus::Cancelled),
            "FAILED" => Ok(PaymentStatus::Failed),
            "REFUNDED" => Ok(PaymentStatus::Refunded),
            "EXPIRED" => Ok(PaymentStatus::Expired),
            other => Err(shop_shared::domain::UnknownName(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub provider: String,
    pub session_id: String,
    pub checkout_url: String,
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: Currency,
    /// The provider's payment (a Stripe PaymentIntent), once paid.
    pub payment_ref: Option<String>,
}

const COLUMNS: &str = "order_id, customer_id, provider, session_id, checkout_url, status, amount, currency, payment_ref";

fn from_row(row: &AnyRow) -> Result<PaymentRecord, sqlx::Error> {
    let order_id: String = row.try_get("order_id")?;
    let customer_id: String = row.try_get("customer_id")?;
    let status: String = row.try_get("status")?;
    let currency: String = row.try_get("currency")?;
    Ok(PaymentRecord {
        order_id: parse_column(&order_id, "order_id")?,
        customer_id: parse_column(&customer_id, "customer_id")?,
        provider: row.try_get("provider")?,
        session_id: row.try_get("session_id")?,
        checkout_url: row.try_get("checkout_url")?,
        status: parse_column(&status, "status")?,
        amount: row.try_get("amount")?,
        currency: parse_column(&currency, "currency")?,
        payment_ref: row.try_get("payment_ref")?,
    })
}

/// The payments of `order_ids`: read as they are now through the pool, or,
/// inside `tx`, locked (in order id order) where the dialect can.
pub async fn by_orders(
    db: &Db,
    mut tx: Option<&mut Tx>,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, PaymentRecord>, sqlx::Error> {
    let mut ids: Vec<String> = order_ids.iter().map(Uuid::to_string).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut payments = HashMap::with_capacity(ids.len());
    for range in batch::chunks(ids.len()) {
        let lock = if tx.is_some() { db.for_update() } else { "" };
        let sql = format!(
            "SELECT {COLUMNS} FROM payments WHERE order_id IN ({}) ORDER BY order_id{lock}",
            batch::in_list(range.len(), db.placeholders())
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &ids[range] {
            select = select.bind(id);
        }
        let rows = match tx.as_deref_mut() {
            Some(tx) => select.fetch_all(&mut **tx).await?,
            None => select.fetch_all(db.pool()).await?,
        };
        for row in rows {
            let payment = from_row(&row)?;
            payments.insert(payment.order_id, payment);
        }
    }
    Ok(payments)
}

/// The payment of checkout session `session_id`, locked where the dialect can.
pub async fn by_session(
    db: &Db,
    tx: &mut Tx,
    session_id: &str,
) -> Result<Option<PaymentRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payments WHERE session_id = $1{}",
        db.for_update()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(session_id)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Stores new payments, except for orders that have one already; returns
/// the orders whose payment was stored now.
pub async fn insert_many(
    tx: &mut Tx,
    payments: &[PaymentRecord],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let now = Timestamp::now().as_millis();
    let mut inserted = HashSet::with_capacity(payments.len());
    for range in batch::chunks(payments.len()) {
        let sql = format!(
            "INSERT INTO payments (order_id, customer_id, provider, session_id, checkout_url,
                status, amount, currency, payment_ref, created_at, updated_at)
             VALUES {}
             ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
            batch::values(range.len(), 11, Placeholders::of(tx))
        );
        let mut insert = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for payment in &payments[range] {
            insert = insert
                .bind(payment.order_id.to_string())
                .bind(payment.customer_id.to_string())
                .bind(payment.provider.clone())
                .bind(payment.session_id.clone())
                .bind(payment.checkout_url.clone())
                .bind(payment.status.as_str())
                .bind(payment.amount)
                .bind(payment.currency.to_string())
                .bind(payment.payment_ref.clone())
                .bind(now)
                .bind(now);
        }
        for order_id in insert.fetch_all(&mut **tx).await? {
            inserted.insert(parse_column(&order_id, "order_id")?);
        }
    }
    Ok(inserted)
}

/// Sets the status (and, when given, the provider's payment reference).
pub async fn set_status(
    tx: &mut Tx,
    order_id: Uuid,
    status: PaymentStatus,
    payment_ref: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET status = $2, payment_ref = COALESCE($3, payment_ref), updated_at = $4
         WHERE order_id = $1",
    )
    .bind(order_id.to_string())
    .bind(status.as_str())
    .bind(payment_ref)
    .bind(Timestamp::now().as_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records a webhook event id; false if it was handled before.
pub async fn record_webhook(
    tx: &mut Tx,
    event_id: &str,
    event_type: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO webhook_events (event_id, event_type, received_at) VALUES ($1, $2, $3)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(event_type)
    .bind(Timestamp::now().as_millis())
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Whether webhook event `event_id` was handled before.
pub async fn webhook_seen(tx: &mut Tx, event_id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM webhook_events WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

/// Which of the bus messages `event_ids` were applied already.
pub async fn processed(db: &Db, event_ids: &[Uuid]) -> Result<HashSet<Uuid>, sqlx::Error> {
    let mut ids: Vec<String> = event_ids.iter().map(Uuid::to_string).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut applied = HashSet::new();
    for range in batch::chunks(ids.len()) {
        let sql = format!(
            "SELECT event_id FROM processed_messages WHERE event_id IN ({})",
            batch::in_list(range.len(), db.placeholders())
        );
        let mut select = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for id in &ids[range] {
            select = select.bind(id);
        }
        for id in select.fetch_all(db.pool()).await? {
            applied.insert(parse_column(&id, "event_id")?);
        }
    }
    Ok(applied)
}

/// How many payments have each status.
pub async fn count_by_status(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query("SELECT status, COUNT(*) AS n FROM payments GROUP BY status ORDER BY status")
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| Ok((row.try_get("status")?, row.try_get("n")?)))
        .collect()
}
