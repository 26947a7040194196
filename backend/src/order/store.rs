//! The order service's tables: orders, their lines and their timelines.

use shop_shared::domain::{OrderLine, TimelineEntry};
use shop_shared::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::domain::OrderRecord;
use crate::db::{Db, Tx, parse_column};

/// Stores a new order. Returns false, changing nothing, when an order with
/// this id exists already (a retried place command).
pub async fn insert(tx: &mut Tx, order: &OrderRecord) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO orders (id, customer_id, idempotency_key, status, cancel_reason, currency,
            total, pay_until, checkout_url, checkout_session_id, refunded, created_at,
            updated_at, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(order.id.to_string())
    .bind(order.customer_id.to_string())
    .bind(&order.idempotency_key)
    .bind(order.status.as_str())
    .bind(order.cancel_reason.map(|reason| reason.as_str()))
    .bind(order.currency.map(|currency| currency.to_string()))
    .bind(order.total)
    .bind(order.pay_until.map(Timestamp::as_millis))
    .bind(order.checkout_url.as_deref())
    .bind(order.checkout_session_id.as_deref())
    .bind(i64::from(order.refunded))
    .bind(order.created_at.as_millis())
    .bind(order.updated_at.as_millis())
    .bind(order.version)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    for (index, line) in order.lines.iter().enumerate() {
        sqlx::query(
            "INSERT INTO order_lines (order_id, line_no, sku, quantity, name, unit_price)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(order.id.to_string())
        .bind(index as i64)
        .bind(&line.sku)
        .bind(line.quantity)
        .bind(line.name.as_deref())
        .bind(line.unit_price)
        .execute(&mut **tx)
        .await?;
    }
    insert_timeline(tx, order, 0).await?;
    Ok(true)
}

/// Writes the changes from `before` to `after` (the same order).
pub async fn save(
    tx: &mut Tx,
    before: &OrderRecord,
    after: &OrderRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET status = $2, cancel_reason = $3, currency = $4, total = $5,
            pay_until = $6, checkout_url = $7, checkout_session_id = $8, refunded = $9,
            updated_at = $10, version = $11
         WHERE id = $1",
    )
    .bind(after.id.to_string())
    .bind(after.status.as_str())
    .bind(after.cancel_reason.map(|reason| reason.as_str()))
    .bind(after.currency.map(|currency| currency.to_string()))
    .bind(after.total)
    .bind(after.pay_until.map(Timestamp::as_millis))
    .bind(after.checkout_url.as_deref())
    .bind(after.checkout_session_id.as_deref())
    .bind(i64::from(after.refunded))
    .bind(after.updated_at.as_millis())
    .bind(after.version)
    .execute(&mut **tx)
    .await?;
    if before.lines != after.lines {
        for (index, line) in after.lines.iter().enumerate() {
            sqlx::query(
                "UPDATE order_lines SET name = $3, unit_price = $4
                 WHERE order_id = $1 AND line_no = $2",
            )
            .bind(after.id.to_string())
            .bind(index as i64)
            .bind(line.name.as_deref())
            .bind(line.unit_price)
            .execute(&mut **tx)
            .await?;
        }
    }
    insert_timeline(tx, after, before.timeline.len()).await
}

async fn insert_timeline(tx: &mut Tx, order: &OrderRecord, from: usize) -> Result<(), sqlx::Error> {
    for (seq, entry) in order.timeline.iter().enumerate().skip(from) {
        sqlx::query(
            "INSERT INTO order_timeline (order_id, seq, event, at, detail)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(order.id.to_string())
        .bind(seq as i64)
        .bind(entry.event.as_str())
        .bind(entry.at.as_millis())
        .bind(entry.detail.as_deref())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

const ORDER_COLUMNS: &str = "id, customer_id, idempotency_key, status, cancel_reason, currency,
    total, pay_until, checkout_url, checkout_session_id, refunded, created_at, updated_at, version";

/// Loads order `id` inside `tx`, locking its row where the dialect can.
pub async fn load(db: &Db, tx: &mut Tx, id: Uuid) -> Result<Option<OrderRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1{}",
        db.for_update()
    );
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let mut order = order_from_row(&row)?;
    let lines = sqlx::query(
        "SELECT sku, quantity, name, unit_price FROM order_lines WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    for row in lines {
        let quantity: i64 = row.try_get("quantity")?;
        let unit_price: Option<i64> = row.try_get("unit_price")?;
        order.lines.push(OrderLine {
            sku: row.try_get("sku")?,
            quantity,
            name: row.try_get("name")?,
            unit_price,
            amount: unit_price.and_then(|price| price.checked_mul(quantity)),
        });
    }
    let timeline = sqlx::query(
        "SELECT event, at, detail FROM order_timeline WHERE order_id = $1 ORDER BY seq",
    )
    .bind(id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    for row in timeline {
        let event: String = row.try_get("event")?;
        order.timeline.push(TimelineEntry {
            at: Timestamp::from_millis(row.try_get("at")?),
            event: parse_column(&event, "event")?,
            detail: row.try_get("detail")?,
        });
    }
    Ok(Some(order))
}

fn order_from_row(row: &AnyRow) -> Result<OrderRecord, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let customer: String = row.try_get("customer_id")?;
    let status: String = row.try_get("status")?;
    let reason: Option<String> = row.try_get("cancel_reason")?;
    let currency: Option<String> = row.try_get("currency")?;
    let refunded: i64 = row.try_get("refunded")?;
    let pay_until: Option<i64> = row.try_get("pay_until")?;
    Ok(OrderRecord {
        id: parse_column(&id, "id")?,
        customer_id: parse_column(&customer, "customer_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        status: parse_column(&status, "status")?,
        cancel_reason: reason
            .map(|reason| parse_column(&reason, "cancel_reason"))
            .transpose()?,
        currency: currency
            .map(|code| parse_column(&code, "currency"))
            .transpose()?,
        total: row.try_get("total")?,
        pay_until: pay_until.map(Timestamp::from_millis),
        checkout_url: row.try_get("checkout_url")?,
        checkout_session_id: row.try_get("checkout_session_id")?,
        refunded: refunded != 0,
        lines: Vec::new(),
        timeline: Vec::new(),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        version: row.try_get("version")?,
    })
}

/// Ids of RESERVED orders whose deadline is at or before `now`, oldest
/// deadline first, locked for this transaction where the dialect can (other
/// instances skip them).
pub async fn expired(
    db: &Db,
    tx: &mut Tx,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let sql = format!(
        "SELECT id FROM orders WHERE status = 'RESERVED' AND pay_until <= $1
         ORDER BY pay_until LIMIT $2{}",
        db.for_update_skip_locked()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now.as_millis())
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            parse_column(&id, "id")
        })
        .collect()
}

/// The earliest deadline of any RESERVED order.
pub async fn next_deadline(db: &Db) -> Result<Option<Timestamp>, sqlx::Error> {
    let next: Option<i64> =
        sqlx::query_scalar("SELECT MIN(pay_until) FROM orders WHERE status = 'RESERVED'")
            .fetch_one(db.pool())
            .await?;
    Ok(next.map(Timestamp::from_millis))
}

/// How many orders have each status.
pub async fn count_by_status(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query("SELECT status, COUNT(*) AS n FROM orders GROUP BY status ORDER BY status")
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| Ok((row.try_get("status")?, row.try_get("n")?)))
        .collect()
}
