//! The stock service's tables: products with their quantities, and the
//! reservations of each order.

use std::collections::HashMap;

use shop_shared::catalog::{AuditEntry, CatalogChange};
use shop_shared::events::CatalogOutcome;
use shop_shared::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::catalog::CatalogProduct;
use super::domain::{Delta, OrderStock, ProductStock, Reserved};
use crate::db::batch;
use crate::db::{Db, StoreError, Tx, parse_column};

const PRODUCT_COLUMNS: &str = "sku, name, description, category, image_url, unit_price, currency, \
     available, reserved, sold, written_off, received, withdrawn_at, version";

fn product_from_row(row: &AnyRow) -> Result<ProductStock, sqlx::Error> {
    let currency: String = row.try_get("currency")?;
    let withdrawn_at: Option<i64> = row.try_get("withdrawn_at")?;
    Ok(ProductStock {
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        category: row.try_get("category")?,
        image_url: row.try_get("image_url")?,
        unit_price: row.try_get("unit_price")?,
        currency: parse_column(&currency, "currency")?,
        available: row.try_get("available")?,
        reserved: row.try_get("reserved")?,
        sold: row.try_get("sold")?,
        written_off: row.try_get("written_off")?,
        received: row.try_get("received")?,
        withdrawn_at: withdrawn_at.map(Timestamp::from_millis),
        version: row.try_get("version")?,
    })
}

/// Every product, by sku.
///
/// # Errors
///
/// The select failed or a row cannot be read.
pub async fn all(db: &Db) -> Result<Vec<ProductStock>, StoreError> {
    let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY sku");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await?;
    Ok(rows
        .iter()
        .map(product_from_row)
        .collect::<Result<_, _>>()?)
}

/// The products among `skus`, locked for this transaction in sku order
/// (so concurrent transactions cannot deadlock) where the dialect can.
///
/// # Errors
///
/// The select failed or a row cannot be read.
pub async fn products(
    tx: &mut Tx,
    skus: &[&str],
) -> Result<HashMap<String, ProductStock>, StoreError> {
    let lock = tx.for_update();
    let rows = batch::fetch_in(tx, skus.iter().map(|sku| (*sku).to_owned()), |list| {
        format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku IN ({list}) ORDER BY sku{lock}")
    })
    .await?;
    rows.iter()
        .map(|row| {
            let product = product_from_row(row)?;
            Ok((product.sku.clone(), product))
        })
        .collect()
}

/// Applies `deltas` with one guarded update: a product changes only if
/// neither its available nor its reserved units would go below zero (the
/// guard that makes overselling impossible). Returns false, having changed
/// nothing the caller may keep, if any guard refused; the caller rolls back.
///
/// # Errors
///
/// The update failed.
pub async fn apply(tx: &mut Tx, deltas: &[(String, Delta)]) -> Result<bool, StoreError> {
    let style = tx.placeholders();
    for range in batch::chunks(deltas.len()) {
        let rows = (0..range.len())
            .map(|row| {
                let n = |column: usize| style.nth(row * 7 + column);
                format!(
                    "(CAST({} AS TEXT), CAST({} AS BIGINT), CAST({} AS BIGINT), \
                     CAST({} AS BIGINT), CAST({} AS BIGINT), CAST({} AS BIGINT), \
                     CAST({} AS BIGINT))",
                    n(0),
                    n(1),
                    n(2),
                    n(3),
                    n(4),
                    n(5),
                    n(6)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH delta (sku, available, reserved, sold, written_off, received, versions)
                AS (VALUES {rows})
             UPDATE products SET available = products.available + delta.available,
                reserved = products.reserved + delta.reserved,
                sold = products.sold + delta.sold,
                written_off = products.written_off + delta.written_off,
                received = products.received + delta.received,
                version = products.version + delta.versions
             FROM delta
             WHERE products.sku = delta.sku
               AND products.available + delta.available >= 0
               AND products.reserved + delta.reserved >= 0"
        );
        let mut update = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (sku, delta) in &deltas[range.clone()] {
            update = update
                .bind(sku.as_str())
                .bind(delta.available)
                .bind(delta.reserved)
                .bind(delta.sold)
                .bind(delta.written_off)
                .bind(delta.received)
                .bind(delta.versions);
        }
        let updated = update.execute(&mut **tx).await?;
        if updated.rows_affected() != range.len() as u64 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Where the service stands with each of `order_ids` it has seen, locked
/// where the dialect can.
///
/// # Errors
///
/// The select failed or a row cannot be read.
pub async fn order_states(
    tx: &mut Tx,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, OrderStock>, StoreError> {
    let lock = tx.for_update();
    let rows = batch::fetch_in(tx, order_ids.iter().map(Uuid::to_string), |list| {
        format!(
            "SELECT order_id, state FROM stock_orders WHERE order_id IN ({list}) ORDER BY order_id{lock}"
        )
    })
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("order_id")?;
            let state: String = row.try_get("state")?;
            Ok((
                parse_column(&id, "order_id")?,
                parse_column(&state, "state")?,
            ))
        })
        .collect()
}

/// Records where the service stands with each order.
///
/// # Errors
///
/// The upsert failed.
pub async fn set_order_states(
    tx: &mut Tx,
    states: &[(Uuid, OrderStock)],
) -> Result<(), StoreError> {
    let now = Timestamp::now().as_millis();
    for range in batch::chunks(states.len()) {
        let sql = format!(
            "INSERT INTO stock_orders (order_id, state, updated_at) VALUES {}
             ON CONFLICT (order_id)
             DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            batch::values(range.len(), 3, tx.placeholders())
        );
        let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (order_id, state) in &states[range] {
            upsert = upsert
                .bind(order_id.to_string())
                .bind(state.as_str())
                .bind(now);
        }
        upsert.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Stores new reservation lines.
///
/// # Errors
///
/// The insert failed.
pub async fn add_reservations(
    tx: &mut Tx,
    reservations: &[(Uuid, Reserved)],
) -> Result<(), StoreError> {
    for range in batch::chunks(reservations.len()) {
        let sql = format!(
            "INSERT INTO reservations (order_id, sku, quantity, unit_price) VALUES {}",
            batch::values(range.len(), 4, tx.placeholders())
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (order_id, line) in &reservations[range] {
            insert = insert
                .bind(order_id.to_string())
                .bind(line.sku.clone())
                .bind(line.quantity)
                .bind(line.unit_price);
        }
        insert.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The reservation lines of each of `order_ids`, by sku.
///
/// # Errors
///
/// The select failed or a row cannot be read.
pub async fn reservations(
    tx: &mut Tx,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Reserved>>, StoreError> {
    let rows = batch::fetch_in(tx, order_ids.iter().map(Uuid::to_string), |list| {
        format!(
            "SELECT order_id, sku, quantity, unit_price FROM reservations
             WHERE order_id IN ({list}) ORDER BY order_id, sku"
        )
    })
    .await?;
    let mut reservations: HashMap<Uuid, Vec<Reserved>> = HashMap::new();
    for row in rows {
        let id: String = row.try_get("order_id")?;
        reservations
            .entry(parse_column(&id, "order_id")?)
            .or_default()
            .push(Reserved {
                sku: row.try_get("sku")?,
                quantity: row.try_get("quantity")?,
                unit_price: row.try_get("unit_price")?,
            });
    }
    Ok(reservations)
}

/// Adds the catalogue's products, which a new shop starts with; a sku
/// the shop has already is left alone. Returns how many were added.
///
/// # Errors
///
/// An insert failed.
pub async fn seed(tx: &mut Tx, catalog: &[CatalogProduct]) -> Result<usize, StoreError> {
    let mut added = 0;
    for product in catalog {
        added += insert_product(tx, &ProductStock::from(product), Existing::Keep).await?;
    }
    Ok(added)
}

/// Stores products operators added, as the book first holds them.
///
/// # Errors
///
/// The insert failed (a sku stored already: the caller retries the batch).
pub async fn add_products(tx: &mut Tx, products: &[ProductStock]) -> Result<(), StoreError> {
    for product in products {
        insert_product(tx, product, Existing::Fail).await?;
    }
    Ok(())
}

/// What inserting a sku the shop has already does.
#[derive(Clone, Copy)]
enum Existing {
    /// Leaves the stored product alone and inserts nothing.
    Keep,
    /// Fails the insert.
    Fail,
}

/// Inserts `product`; returns how many rows were inserted (0 or 1).
async fn insert_product(
    tx: &mut Tx,
    product: &ProductStock,
    existing: Existing,
) -> Result<usize, StoreError> {
    let sql = format!(
        "INSERT INTO products (sku, name, description, category, image_url, unit_price, currency,
                               available, reserved, sold, written_off, received, withdrawn_at, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14){}",
        match existing {
            Existing::Keep => " ON CONFLICT (sku) DO NOTHING",
            Existing::Fail => "",
        }
    );
    let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&product.sku)
        .bind(&product.name)
        .bind(&product.description)
        .bind(&product.category)
        .bind(product.image_url.clone())
        .bind(product.unit_price)
        .bind(product.currency.to_string())
        .bind(product.available)
        .bind(product.reserved)
        .bind(product.sold)
        .bind(product.written_off)
        .bind(product.received)
        .bind(product.withdrawn_at.map(Timestamp::as_millis))
        .bind(product.version)
        .execute(&mut **tx)
        .await?;
    Ok(inserted.rows_affected() as usize)
}

/// Writes the descriptive fields (name, description, category, image,
/// price, withdrawal) of `products`; quantities and versions move through
/// [`apply`].
///
/// # Errors
///
/// The update failed.
pub async fn describe(tx: &mut Tx, products: &[ProductStock]) -> Result<(), StoreError> {
    for product in products {
        sqlx::query(
            "UPDATE products SET name = $2, description = $3, category = $4, image_url = $5,
                 unit_price = $6, withdrawn_at = $7
             WHERE sku = $1",
        )
        .bind(&product.sku)
        .bind(&product.name)
        .bind(&product.description)
        .bind(&product.category)
        .bind(product.image_url.clone())
        .bind(product.unit_price)
        .bind(product.withdrawn_at.map(Timestamp::as_millis))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The operator commands among `ids` decided before: the change as asked
/// and what came of it.
///
/// # Errors
///
/// The select failed or a stored row cannot be read.
pub async fn decided(
    tx: &mut Tx,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, (CatalogChange, CatalogOutcome)>, StoreError> {
    let rows = batch::fetch_in(tx, ids.iter().map(Uuid::to_string), |list| {
        format!(
            "SELECT command_id, change, outcome FROM catalog_commands WHERE command_id IN ({list})"
        )
    })
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("command_id")?;
            let change: String = row.try_get("change")?;
            let outcome: String = row.try_get("outcome")?;
            let corrupt = |error: serde_json::Error| {
                StoreError::corrupt("catalog_commands", error.to_string())
            };
            Ok((
                parse_column(&id, "command_id")?,
                (
                    serde_json::from_str(&change).map_err(corrupt)?,
                    serde_json::from_str(&outcome).map_err(corrupt)?,
                ),
            ))
        })
        .collect()
}

/// Records decided operator commands and the audit records of the applied
/// ones.
///
/// # Errors
///
/// An insert failed.
pub async fn record_catalog(
    tx: &mut Tx,
    decided: &[(Uuid, CatalogChange, CatalogOutcome)],
    audit: &[AuditEntry],
) -> Result<(), StoreError> {
    let now = Timestamp::now().as_millis();
    for (id, change, outcome) in decided {
        sqlx::query(
            "INSERT INTO catalog_commands (command_id, change, outcome, decided_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(serde_json::to_string(change).unwrap_or_default())
        .bind(serde_json::to_string(outcome).unwrap_or_default())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    for entry in audit {
        sqlx::query(
            "INSERT INTO catalog_audit (command_id, operator, at, sku, action, changes, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(entry.command_id.to_string())
        .bind(&entry.operator)
        .bind(entry.at.as_millis())
        .bind(&entry.sku)
        .bind(&entry.action)
        .bind(serde_json::to_string(&entry.changes).unwrap_or_default())
        .bind(&entry.reason)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The currencies of the products on sale, as ISO 4217 codes in order.
///
/// # Errors
///
/// The query failed.
pub async fn currencies(tx: &mut Tx) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT DISTINCT currency FROM products ORDER BY currency")
            .fetch_all(&mut **tx)
            .await?,
    )
}

/// Whether the database is empty of products (first start).
///
/// # Errors
///
/// The count failed.
pub async fn is_empty(tx: &mut Tx) -> Result<bool, StoreError> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
        .fetch_one(&mut **tx)
        .await?;
    Ok(count == 0)
}
