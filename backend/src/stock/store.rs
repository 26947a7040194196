//! The stock service's tables: products with their quantities, and the
//! reservations of each order.

use std::collections::HashMap;

use shop_shared::domain::Product;
use shop_shared::money::Currency;
use shop_shared::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::catalog::CatalogProduct;
use crate::db::batch::{self, Placeholders};
use crate::db::{Db, Tx, parse_column};

/// A product row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRow {
    pub sku: String,
    pub name: String,
    pub unit_price: i64,
    pub currency: Currency,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
    pub version: i64,
}

impl ProductRow {
    pub fn view(&self) -> Product {
        Product {
            sku: self.sku.clone(),
            name: self.name.clone(),
            unit_price: self.unit_price,
            currency: self.currency,
            available: self.available,
            version: self.version,
        }
    }
}

/// Where the stock service stands with one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStock {
    Reserved,
    Rejected,
    Released,
    Committed,
}

impl OrderStock {
    fn as_str(self) -> &'static str {
        match self {
            OrderStock::Reserved => "RESERVED",
            OrderStock::Rejected => "REJECTED",
            OrderStock::Released => "RELEASED",
            OrderStock::Committed => "COMMITTED",
        }
    }

    fn parse(text: &str) -> Result<Self, sqlx::Error> {
        match text {
            "RESERVED" => Ok(OrderStock::Reserved),
            "REJECTED" => Ok(OrderStock::Rejected),
            "RELEASED" => Ok(OrderStock::Released),
            "COMMITTED" => Ok(OrderStock::Committed),
            other => Err(sqlx::Error::Decode(
                format!("unknown stock order state {other}").into(),
            )),
        }
    }
}

const PRODUCT_COLUMNS: &str = "sku, name, unit_price, currency, available, reserved, sold, version";

fn product_from_row(row: &AnyRow) -> Result<ProductRow, sqlx::Error> {
    let currency: String = row.try_get("currency")?;
    Ok(ProductRow {
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        unit_price: row.try_get("unit_price")?,
        currency: parse_column(&currency, "currency")?,
        available: row.try_get("available")?,
        reserved: row.try_get("reserved")?,
        sold: row.try_get("sold")?,
        version: row.try_get("version")?,
    })
}

/// Every product, by sku.
pub async fn all(db: &Db) -> Result<Vec<ProductRow>, sqlx::Error> {
    let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY sku");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(product_from_row)
        .collect()
}

/// The products among `skus`, locked for this transaction in sku order
/// (so concurrent transactions cannot deadlock) where the dialect can.
pub async fn products(
    db: &Db,
    tx: &mut Tx,
    skus: &[&str],
) -> Result<HashMap<String, ProductRow>, sqlx::Error> {
    let mut skus = skus.to_vec();
    skus.sort_unstable();
    skus.dedup();
    let mut products = HashMap::with_capacity(skus.len());
    for range in batch::chunks(skus.len()) {
        let sql = format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE sku IN ({}) ORDER BY sku{}",
            batch::in_list(range.len(), Placeholders::of(tx)),
            db.for_update()
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql));
        for sku in &skus[range] {
            select = select.bind(*sku);
        }
        for row in select.fetch_all(&mut **tx).await? {
            let product = product_from_row(&row)?;
            products.insert(product.sku.clone(), product);
        }
    }
    Ok(products)
}

/// A change to one product's quantities, made by a batch of orders. The
/// three deltas sum to zero: units only move between available, reserved
/// and sold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
    /// How many visible changes (the version moves by this much).
    pub versions: i64,
}

/// Applies `deltas` with one guarded update: a product changes only if
/// neither its available nor its reserved units would go below zero (the
/// guard that makes overselling impossible). Returns false, having changed
/// nothing the caller may keep, if any guard refused; the caller rolls back.
pub async fn apply(tx: &mut Tx, deltas: &[(&str, &Delta)]) -> Result<bool, sqlx::Error> {
    let style = Placeholders::of(tx);
    for range in batch::chunks(deltas.len()) {
        let rows = (0..range.len())
            .map(|row| {
                let n = |column: usize| style.nth(row * 5 + column);
                format!(
                    "(CAST({} AS TEXT), CAST({} AS BIGINT), CAST({} AS BIGINT), \
                     CAST({} AS BIGINT), CAST({} AS BIGINT))",
                    n(0),
                    n(1),
                    n(2),
                    n(3),
                    n(4)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH delta (sku, available, reserved, sold, versions) AS (VALUES {rows})
             UPDATE products SET available = products.available + delta.available,
                reserved = products.reserved + delta.reserved,
                sold = products.sold + delta.sold,
                version = products.version + delta.versions
             FROM delta
             WHERE products.sku = delta.sku
               AND products.available + delta.available >= 0
               AND products.reserved + delta.reserved >= 0"
        );
        let mut update = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (sku, delta) in &deltas[range.clone()] {
            update = update
                .bind(*sku)
                .bind(delta.available)
                .bind(delta.reserved)
                .bind(delta.sold)
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
pub async fn order_states(
    db: &Db,
    tx: &mut Tx,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, OrderStock>, sqlx::Error> {
    let mut ids: Vec<String> = order_ids.iter().map(Uuid::to_string).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut states = HashMap::with_capacity(ids.len());
    for range in batch::chunks(ids.len()) {
        let sql = format!(
            "SELECT order_id, state FROM stock_orders WHERE order_id IN ({}) ORDER BY order_id{}",
            batch::in_list(range.len(), Placeholders::of(tx)),
            db.for_update()
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &ids[range] {
            select = select.bind(id);
        }
        for row in select.fetch_all(&mut **tx).await? {
            let id: String = row.try_get("order_id")?;
            let state: String = row.try_get("state")?;
            states.insert(parse_column(&id, "order_id")?, OrderStock::parse(&state)?);
        }
    }
    Ok(states)
}

/// Records where the service stands with each order.
pub async fn set_order_states(
    tx: &mut Tx,
    states: &[(Uuid, OrderStock)],
) -> Result<(), sqlx::Error> {
    let now = Timestamp::now().as_millis();
    for range in batch::chunks(states.len()) {
        let sql = format!(
            "INSERT INTO stock_orders (order_id, state, updated_at) VALUES {}
             ON CONFLICT (order_id)
             DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            batch::values(range.len(), 3, Placeholders::of(tx))
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

/// One line of an order's reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: i64,
}

pub async fn add_reservations(
    tx: &mut Tx,
    reservations: &[(Uuid, Reserved)],
) -> Result<(), sqlx::Error> {
    for range in batch::chunks(reservations.len()) {
        let sql = format!(
            "INSERT INTO reservations (order_id, sku, quantity, unit_price) VALUES {}",
            batch::values(range.len(), 4, Placeholders::of(tx))
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
pub async fn reservations(
    tx: &mut Tx,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Reserved>>, sqlx::Error> {
    let mut ids: Vec<String> = order_ids.iter().map(Uuid::to_string).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut reservations: HashMap<Uuid, Vec<Reserved>> = HashMap::new();
    for range in batch::chunks(ids.len()) {
        let sql = format!(
            "SELECT order_id, sku, quantity, unit_price FROM reservations
             WHERE order_id IN ({}) ORDER BY order_id, sku",
            batch::in_list(range.len(), Placeholders::of(tx))
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &ids[range] {
            select = select.bind(id);
        }
        for row in select.fetch_all(&mut **tx).await? {
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
    }
    Ok(reservations)
}

/// Adds catalogue products that are missing, and updates names and prices
/// of those present. Quantities of existing products are left alone: only a
/// restock may change them. Returns how many products were added.
pub async fn seed(tx: &mut Tx, catalog: &[CatalogProduct]) -> Result<usize, sqlx::Error> {
    let mut added = 0;
    for product in catalog {
        let inserted = sqlx::query(
            "INSERT INTO products (sku, name, unit_price, currency, available, reserved, sold, restocked, version)
             VALUES ($1, $2, $3, $4, $5, 0, 0, $5, 1)
             ON CONFLICT (sku) DO NOTHING",
        )
        .bind(&product.sku)
        .bind(&product.name)
        .bind(product.unit_price)
        .bind(product.currency.to_string())
        .bind(product.stock)
        .execute(&mut **tx)
        .await?;
        if inserted.rows_affected() == 1 {
            added += 1;
            continue;
        }
        sqlx::query(
            "UPDATE products SET name = $2, unit_price = $3, currency = $4, version = version + 1
             WHERE sku = $1 AND (name <> $2 OR unit_price <> $3 OR currency <> $4)",
        )
        .bind(&product.sku)
        .bind(&product.name)
        .bind(product.unit_price)
        .bind(product.currency.to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(added)
}

/// Whether the database is empty of products (first start).
pub async fn is_empty(tx: &mut Tx) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
        .fetch_one(&mut **tx)
        .await?;
    Ok(count == 0)
}
