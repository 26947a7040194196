//! The payment service's tables: one payment per order, the webhook
//! events already handled, the orders told their checkout is delayed, and
//! the refunds retried after a first failure.

use std::collections::{HashMap, HashSet};

use shop_shared::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::domain::{PaymentRecord, PaymentStatus};
use super::refunds::RefundRetry;
use crate::db::batch;
use crate::db::{Db, StoreError, Tx, parse_column};

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

/// The payments of `order_ids` as they are now, read through the pool
/// without locking: for decisions made before a transaction.
///
/// # Errors
///
/// The select failed or a row cannot be read.
pub async fn by_orders(
    db: &Db,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, PaymentRecord>, StoreError> {
    let mut connection = db.pool().acquire().await?;
    let rows = batch::fetch_in(
        &mut connection,
        order_ids.iter().map(Uuid::to_string),
        |list| format!("SELECT {COLUMNS} FROM payments WHERE order_id IN ({list})"),
    )
    .await?;
    keyed_by_order(&rows)
}

/// The payments of `order_ids`, locked for `tx` (in order id order) where
/// the dialect can.
///
/// # Errors
///
/// The select failed or a row cannot be read.
pub async fn by_orders_locked(
    tx: &mut Tx,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, PaymentRecord>, StoreError> {
    let lock = tx.for_update();
    let rows = batch::fetch_in(tx, order_ids.iter().map(Uuid::to_string), |list| {
        format!("SELECT {COLUMNS} FROM payments WHERE order_id IN ({list}) ORDER BY order_id{lock}")
    })
    .await?;
    keyed_by_order(&rows)
}

fn keyed_by_order(rows: &[AnyRow]) -> Result<HashMap<Uuid, PaymentRecord>, StoreError> {
    rows.iter()
        .map(|row| {
            let payment = from_row(row)?;
            Ok((payment.order_id, payment))
        })
        .collect()
}

/// The payment of checkout session `session_id`, locked where the dialect can.
///
/// # Errors
///
/// The select failed or the row cannot be read.
pub async fn by_session(
    tx: &mut Tx,
    session_id: &str,
) -> Result<Option<PaymentRecord>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payments WHERE session_id = $1{}",
        tx.for_update()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(session_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Stores new payments, except for orders that have one already; returns
/// the orders whose payment was stored now.
///
/// # Errors
///
/// The insert failed.
pub async fn insert_many(
    tx: &mut Tx,
    payments: &[PaymentRecord],
) -> Result<HashSet<Uuid>, StoreError> {
    let now = Timestamp::now().as_millis();
    let mut inserted = HashSet::with_capacity(payments.len());
    for range in batch::chunks(payments.len()) {
        let sql = format!(
            "INSERT INTO payments (order_id, customer_id, provider, session_id, checkout_url,
                status, amount, currency, payment_ref, created_at, updated_at)
             VALUES {}
             ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
            batch::values(range.len(), 11, tx.placeholders())
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
///
/// # Errors
///
/// The update failed.
pub async fn set_status(
    tx: &mut Tx,
    order_id: Uuid,
    status: PaymentStatus,
    payment_ref: Option<&str>,
) -> Result<(), StoreError> {
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
///
/// # Errors
///
/// The insert failed.
pub async fn record_webhook(
    tx: &mut Tx,
    event_id: &str,
    event_type: &str,
) -> Result<bool, StoreError> {
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
///
/// # Errors
///
/// The select failed.
pub async fn webhook_seen(tx: &mut Tx, event_id: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM webhook_events WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

/// Records that the provider could not open a checkout session for these
/// orders (with its answer); returns the orders recorded now, which the
/// order service has not heard about yet.
///
/// # Errors
///
/// The insert failed.
pub async fn insert_checkout_delays(
    tx: &mut Tx,
    delays: &[(Uuid, String)],
) -> Result<HashSet<Uuid>, StoreError> {
    let now = Timestamp::now().as_millis();
    let mut inserted = HashSet::with_capacity(delays.len());
    for (order_id, reason) in delays {
        let recorded: Option<String> = sqlx::query_scalar(
            "INSERT INTO checkout_delays (order_id, reason, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
        )
        .bind(order_id.to_string())
        .bind(reason)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        if recorded.is_some() {
            inserted.insert(*order_id);
        }
    }
    Ok(inserted)
}

const RETRY_COLUMNS: &str = "order_id, status, attempts, refusals, next_attempt_at, last_error";

fn retry_from_row(row: &AnyRow) -> Result<RefundRetry, sqlx::Error> {
    let order_id: String = row.try_get("order_id")?;
    let status: String = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    let refusals: i64 = row.try_get("refusals")?;
    Ok(RefundRetry {
        order_id: parse_column(&order_id, "order_id")?,
        status: parse_column(&status, "status")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        refusals: u32::try_from(refusals).unwrap_or(u32::MAX),
        next_attempt_at: Timestamp::from_millis(row.try_get("next_attempt_at")?),
        last_error: row.try_get("last_error")?,
    })
}

/// The orders among `order_ids` whose refund is retried by the sweep (in
/// any state): a refund command for them changes nothing.
///
/// # Errors
///
/// The select failed or a row cannot be read.
pub async fn refund_retried(db: &Db, order_ids: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
    let mut connection = db.pool().acquire().await?;
    let rows = batch::fetch_in(
        &mut connection,
        order_ids.iter().map(Uuid::to_string),
        |list| format!("SELECT order_id FROM refund_retries WHERE order_id IN ({list})"),
    )
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("order_id")?;
            Ok(parse_column(&id, "order_id")?)
        })
        .collect()
}

/// Stores a refund retried from now on, unless the order has one already;
/// returns whether it was stored now.
///
/// # Errors
///
/// The insert failed.
pub async fn insert_refund_retry(tx: &mut Tx, retry: &RefundRetry) -> Result<bool, StoreError> {
    let now = Timestamp::now().as_millis();
    let stored: Option<String> = sqlx::query_scalar(
        "INSERT INTO refund_retries (order_id, status, attempts, refusals, next_attempt_at,
            last_error, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
    )
    .bind(retry.order_id.to_string())
    .bind(retry.status.as_str())
    .bind(i64::from(retry.attempts))
    .bind(i64::from(retry.refusals))
    .bind(retry.next_attempt_at.as_millis())
    .bind(&retry.last_error)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(stored.is_some())
}

/// Saves a retried refund as it is now.
///
/// # Errors
///
/// The update failed.
pub async fn save_refund_retry(tx: &mut Tx, retry: &RefundRetry) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE refund_retries SET status = $2, attempts = $3, refusals = $4,
            next_attempt_at = $5, last_error = $6, updated_at = $7
         WHERE order_id = $1",
    )
    .bind(retry.order_id.to_string())
    .bind(retry.status.as_str())
    .bind(i64::from(retry.attempts))
    .bind(i64::from(retry.refusals))
    .bind(retry.next_attempt_at.as_millis())
    .bind(&retry.last_error)
    .bind(Timestamp::now().as_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Pending refunds whose next attempt is due at `now`, the most overdue
/// first.
///
/// # Errors
///
/// The select failed or a row cannot be read.
pub async fn due_refund_retries(
    db: &Db,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<RefundRetry>, StoreError> {
    let sql = format!(
        "SELECT {RETRY_COLUMNS} FROM refund_retries
         WHERE status = 'PENDING' AND next_attempt_at <= $1
         ORDER BY next_attempt_at LIMIT $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now.as_millis())
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    Ok(rows.iter().map(retry_from_row).collect::<Result<_, _>>()?)
}

/// Claims `retry` for an attempt by this instance: moves its next attempt
/// to `until` unless another instance claimed it first. Returns whether
/// this one did; an attempt that ends without saving (a crash) is tried
/// again once `until` passes.
///
/// # Errors
///
/// The update failed.
pub async fn claim_refund_retry(
    db: &Db,
    retry: &RefundRetry,
    until: Timestamp,
) -> Result<bool, StoreError> {
    let claimed = sqlx::query(
        "UPDATE refund_retries SET next_attempt_at = $3
         WHERE order_id = $1 AND status = 'PENDING' AND next_attempt_at = $2",
    )
    .bind(retry.order_id.to_string())
    .bind(retry.next_attempt_at.as_millis())
    .bind(until.as_millis())
    .execute(db.pool())
    .await?;
    Ok(claimed.rows_affected() == 1)
}
