//! The order service's table: one row per order, its lines and timeline
//! as JSON documents in the row, read and written a batch of orders at a
//! time.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use shop_shared::domain::{OrderLine, TimelineEntry};
use shop_shared::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::domain::OrderRecord;
use crate::db::batch;
use crate::db::{Db, StoreError, Tx, parse_column};

const ORDER_COLUMNS: &str = "id, customer_id, idempotency_key, status, cancel_reason, currency,
    total, pay_until, checkout_url, checkout_session_id, refunded, created_at, updated_at, version,
    lines, timeline, settle_by, due_at";
const COLUMN_COUNT: usize = 18;

/// An order line as the `lines` document stores it.
#[derive(Serialize, Deserialize)]
struct StoredLine {
    sku: String,
    quantity: i64,
    name: Option<String>,
    /// In minor units.
    unit_price: Option<i64>,
}

/// A timeline entry as the `timeline` document stores it.
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    event: String,
    /// Milliseconds since the Unix epoch.
    at: i64,
    detail: Option<String>,
}

fn lines_document(order: &OrderRecord) -> String {
    let lines: Vec<StoredLine> = order
        .lines
        .iter()
        .map(|line| StoredLine {
            sku: line.sku.clone(),
            quantity: line.quantity,
            name: line.name.clone(),
            unit_price: line.unit_price,
        })
        .collect();
    serde_json::to_string(&lines).unwrap_or_else(|_| "[]".into())
}

fn timeline_document(order: &OrderRecord) -> String {
    let entries: Vec<StoredEntry> = order
        .timeline
        .iter()
        .map(|entry| StoredEntry {
            event: entry.event.as_str().to_owned(),
            at: entry.at.as_millis(),
            detail: entry.detail.clone(),
        })
        .collect();
    serde_json::to_string(&entries).unwrap_or_else(|_| "[]".into())
}

fn decode_error(column: &str, error: serde_json::Error) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(error),
    }
}

/// Binds the columns of [`ORDER_COLUMNS`] for `order`.
fn bind_order<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    order: &'q OrderRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
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
        .bind(lines_document(order))
        .bind(timeline_document(order))
        .bind(order.settle_by.map(Timestamp::as_millis))
        .bind(order.due_at().map(Timestamp::as_millis))
}

/// Claims the ids of new orders: inserts their rows unless an order with
/// the id exists already (a retried place command), and returns the ids
/// inserted now.
///
/// # Errors
///
/// The insert failed.
pub async fn insert_new(tx: &mut Tx, orders: &[&OrderRecord]) -> Result<HashSet<Uuid>, StoreError> {
    let mut inserted = HashSet::with_capacity(orders.len());
    for range in batch::chunks(orders.len()) {
        let sql = format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES {}
             ON CONFLICT (id) DO NOTHING RETURNING id",
            batch::values(range.len(), COLUMN_COUNT, tx.placeholders())
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for order in &orders[range] {
            insert = bind_order(insert, order);
        }
        for row in insert.fetch_all(&mut **tx).await? {
            let id: String = row.try_get("id")?;
            inserted.insert(parse_column(&id, "id")?);
        }
    }
    Ok(inserted)
}

/// Writes `orders` as they are now, whole, in as few statements as can be.
///
/// # Errors
///
/// The upsert failed.
pub async fn write(tx: &mut Tx, orders: &[&OrderRecord]) -> Result<(), StoreError> {
    for range in batch::chunks(orders.len()) {
        let sql = format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES {}
             ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                cancel_reason = excluded.cancel_reason, currency = excluded.currency,
                total = excluded.total, pay_until = excluded.pay_until,
                checkout_url = excluded.checkout_url,
                checkout_session_id = excluded.checkout_session_id,
                refunded = excluded.refunded, updated_at = excluded.updated_at,
                version = excluded.version, lines = excluded.lines,
                timeline = excluded.timeline, settle_by = excluded.settle_by,
                due_at = excluded.due_at",
            batch::values(range.len(), COLUMN_COUNT, tx.placeholders())
        );
        let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for order in &orders[range] {
            upsert = bind_order(upsert, order);
        }
        upsert.execute(&mut **tx).await?;
    }

    Ok(())
}

/// Loads the orders among `ids` that exist, inside `tx`, locking their rows
/// (in id order, so concurrent transactions cannot deadlock) where the
/// dialect can.
///
/// # Errors
///
/// The select failed or a row cannot be read.
pub async fn load_many(
    tx: &mut Tx,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, OrderRecord>, StoreError> {
    let lock = tx.for_update();
    let rows = batch::fetch_in(tx, ids.iter().map(Uuid::to_string), |list| {
        format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id IN ({list}) ORDER BY id{lock}")
    })
    .await?;
    rows.iter()
        .map(|row| {
            let order = order_from_row(row)?;
            Ok((order.id, order))
        })
        .collect()
}

fn order_from_row(row: &AnyRow) -> Result<OrderRecord, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let customer: String = row.try_get("customer_id")?;
    let status: String = row.try_get("status")?;
    let reason: Option<String> = row.try_get("cancel_reason")?;
    let currency: Option<String> = row.try_get("currency")?;
    let refunded: i64 = row.try_get("refunded")?;
    let pay_until: Option<i64> = row.try_get("pay_until")?;
    let settle_by: Option<i64> = row.try_get("settle_by")?;
    let lines: String = row.try_get("lines")?;
    let lines: Vec<StoredLine> =
        serde_json::from_str(&lines).map_err(|error| decode_error("lines", error))?;
    let timeline: String = row.try_get("timeline")?;
    let timeline: Vec<StoredEntry> =
        serde_json::from_str(&timeline).map_err(|error| decode_error("timeline", error))?;
    let timeline = timeline
        .into_iter()
        .map(|entry| {
            Ok(TimelineEntry {
                at: Timestamp::from_millis(entry.at),
                event: parse_column(&entry.event, "timeline")?,
                detail: entry.detail,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
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
        settle_by: settle_by.map(Timestamp::from_millis),
        checkout_url: row.try_get("checkout_url")?,
        checkout_session_id: row.try_get("checkout_session_id")?,
        refunded: refunded != 0,
        lines: lines
            .into_iter()
            .map(|line| OrderLine {
                amount: line
                    .unit_price
                    .and_then(|price| price.checked_mul(line.quantity)),
                sku: line.sku,
                quantity: line.quantity,
                name: line.name,
                unit_price: line.unit_price,
            })
            .collect(),
        timeline,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        version: row.try_get("version")?,
    })
}

/// Ids of RESERVED orders due at or before `now` (their pay-until deadline
/// or the end of their grace period, see [`OrderRecord::due_at`]), earliest
/// first, locked for this transaction where the dialect can (other
/// instances skip them).
///
/// # Errors
///
/// The select failed or an id cannot be read.
pub async fn expired(tx: &mut Tx, now: Timestamp, limit: i64) -> Result<Vec<Uuid>, StoreError> {
    let sql = format!(
        "SELECT id FROM orders WHERE status = 'RESERVED' AND due_at <= $1
         ORDER BY due_at LIMIT $2{}",
        tx.for_update_skip_locked()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now.as_millis())
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            Ok(parse_column(&id, "id")?)
        })
        .collect()
}

/// When the earliest RESERVED order falls due.
///
/// # Errors
///
/// The select failed.
pub async fn next_deadline(db: &Db) -> Result<Option<Timestamp>, StoreError> {
    let next: Option<i64> =
        sqlx::query_scalar("SELECT MIN(due_at) FROM orders WHERE status = 'RESERVED'")
            .fetch_one(db.pool())
            .await?;
    Ok(next.map(Timestamp::from_millis))
}

#[cfg(test)]
mod tests {
    use shop_shared::domain::{OrderStatus, TimelineEvent};

    use super::*;
    use crate::service::Service;

    #[tokio::test]
    async fn orders_stored_before_documents_keep_their_lines_and_timeline() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = Db::sqlite(&dir.path().join("order.sqlite"))
            .await
            .expect("database");
        // The schema as version 1 left it, holding one order.
        for sql in [
            include_str!("../../../migrations/common/0001_outbox_inbox.sqlite.sql"),
            include_str!("../../../migrations/order/0001_orders.sql"),
            "CREATE TABLE schema_migrations (scope TEXT NOT NULL, version BIGINT NOT NULL,
                name TEXT NOT NULL, applied_at BIGINT NOT NULL, PRIMARY KEY (scope, version));
             INSERT INTO schema_migrations VALUES ('common', 1, '0001_outbox_inbox', 0),
                ('order', 1, '0001_orders', 0);
             INSERT INTO orders (id, customer_id, idempotency_key, status, currency, total,
                pay_until, refunded, created_at, updated_at, version)
             VALUES ('6ffcdd21-0000-4000-8000-000000000001',
                '0fa1cf64-0000-4000-8000-000000000001', 'key-1', 'RESERVED', 'EUR', 1010000,
                1795000300000, 0, 1795000000000, 1795000001000, 2);
             INSERT INTO order_lines VALUES
                ('6ffcdd21-0000-4000-8000-000000000001', 1, 'SKU-002', 1, 'iPhone 16', 110000),
                ('6ffcdd21-0000-4000-8000-000000000001', 0, 'SKU-001', 2, 'MacBook Pro', 450000);
             INSERT INTO order_timeline VALUES
                ('6ffcdd21-0000-4000-8000-000000000001', 1, 'reserved', 1795000001000,
                 'pay until then'),
                ('6ffcdd21-0000-4000-8000-000000000001', 0, 'created', 1795000000000, NULL);",
        ] {
            sqlx::raw_sql(sql)
                .execute(db.pool())
                .await
                .expect("old schema");
        }

        db.migrate(Service::Order).await.expect("migrates");

        let id: Uuid = "6ffcdd21-0000-4000-8000-000000000001"
            .parse()
            .expect("uuid");
        let mut tx = db.begin().await.expect("transaction");
        let orders = load_many(&mut tx, &[id]).await.expect("loads");
        let order = &orders[&id];
        assert_eq!(order.status, OrderStatus::Reserved);
        let lines: Vec<(&str, i64, Option<i64>)> = order
            .lines
            .iter()
            .map(|line| (line.sku.as_str(), line.quantity, line.amount))
            .collect();
        assert_eq!(
            lines,
            vec![("SKU-001", 2, Some(900_000)), ("SKU-002", 1, Some(110_000))]
        );
        assert_eq!(order.lines[1].name.as_deref(), Some("iPhone 16"));
        let timeline: Vec<(TimelineEvent, Option<&str>)> = order
            .timeline
            .iter()
            .map(|entry| (entry.event, entry.detail.as_deref()))
            .collect();
        assert_eq!(
            timeline,
            vec![
                (TimelineEvent::Created, None),
                (TimelineEvent::Reserved, Some("pay until then"))
            ]
        );
        assert_eq!(
            order.timeline[1].at,
            Timestamp::from_millis(1_795_000_001_000)
        );

        // Saved and loaded again, the order is unchanged.
        write(&mut tx, &[order]).await.expect("writes");
        let again = load_many(&mut tx, &[id]).await.expect("loads");
        assert_eq!(&again[&id], order);
    }
}
