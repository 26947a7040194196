//! The stock service's tables: products with their quantities, and the
//! reservations of each order.

use shop_shared::domain::Product;
use shop_shared::money::Currency;
use shop_shared::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::catalog::CatalogProduct;
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

/// One product, locked for this transaction where the dialect can.
pub async fn product(db: &Db, tx: &mut Tx, sku: &str) -> Result<Option<ProductRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE sku = $1{}",
        db.for_update()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(sku)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(product_from_row)
        .transpose()
}

/// Moves `quantity` units of `sku` from available to reserved, only if that
/// many are available (the guard that makes overselling impossible).
/// Returns the product after the change, or `None` if the guard refused.
pub async fn reserve(
    tx: &mut Tx,
    sku: &str,
    quantity: i64,
) -> Result<Option<ProductRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE products SET available = available - $2, reserved = reserved + $2, version = version + 1
         WHERE sku = $1 AND available >= $2
         RETURNING {PRODUCT_COLUMNS}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(sku)
        .bind(quantity)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(product_from_row)
        .transpose()
}

/// Moves reserved units back to available.
pub async fn release(
    tx: &mut Tx,
    sku: &str,
    quantity: i64,
) -> Result<Option<ProductRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE products SET available = available + $2, reserved = reserved - $2, version = version + 1
         WHERE sku = $1 AND reserved >= $2
         RETURNING {PRODUCT_COLUMNS}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(sku)
        .bind(quantity)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(product_from_row)
        .transpose()
}

/// Moves reserved units to sold.
pub async fn sell(tx: &mut Tx, sku: &str, quantity: i64) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE products SET reserved = reserved - $2, sold = sold + $2
         WHERE sku = $1 AND reserved >= $2",
    )
    .bind(sku)
    .bind(quantity)
    .execute(&mut **tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Where the service stands with `order_id`, locked where the dialect can.
pub async fn order_state(
    db: &Db,
    tx: &mut Tx,
    order_id: Uuid,
) -> Result<Option<OrderStock>, sqlx::Error> {
    let sql = format!(
        "SELECT state FROM stock_orders WHERE order_id = $1{}",
        db.for_update()
    );
    let state: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(order_id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    state.as_deref().map(OrderStock::parse).transpose()
}

pub async fn set_order_state(
    tx: &mut Tx,
    order_id: Uuid,
    state: OrderStock,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stock_orders (order_id, state, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    )
    .bind(order_id.to_string())
    .bind(state.as_str())
    .bind(Timestamp::now().as_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn add_reservation(
    tx: &mut Tx,
    order_id: Uuid,
    sku: &str,
    quantity: i64,
    unit_price: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reservations (order_id, sku, quantity, unit_price) VALUES ($1, $2, $3, $4)",
    )
    .bind(order_id.to_string())
    .bind(sku)
    .bind(quantity)
    .bind(unit_price)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The (sku, quantity) reserved for `order_id`, by sku.
pub async fn reservations(tx: &mut Tx, order_id: Uuid) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query("SELECT sku, quantity FROM reservations WHERE order_id = $1 ORDER BY sku")
        .bind(order_id.to_string())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("sku")?, row.try_get("quantity")?)))
        .collect()
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
