//! The gateway's durable customer-orders projection: the newest snapshot
//! of every order, kept in the gateway's own database (`gateway.sqlite` in
//! embedded mode, schema `shop_gateway` in distributed mode) by the
//! `gateway` consumer group of `orders.v1`, which all gateway instances
//! share. A customer's order list and a single order are read from here, so
//! a gateway holds in memory only what is live, and starts without
//! replaying history.
//!
//! Writes are idempotent: a snapshot replaces the stored one only when its
//! version is newer, so a redelivered or reordered snapshot changes nothing.
//!
//! The same group keeps the catalogue's audit log from `catalog.events.v1`
//! (table `catalog_audit`), which operators read with `list_audit`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use shop_shared::catalog::AuditEntry;
use shop_shared::events::{CatalogEvent, CatalogOutcome, Envelope, OrderEvent, OrderState, topic};
use sqlx::Row;
use uuid::Uuid;

use super::read_model::ReadModel;
use crate::bus::{Handler, HandlerError, Record};
use crate::db::{Db, StoreError, batch};

/// Most orders a customer's list holds: the newest ones. A customer's
/// open orders (those holding units) are few, bounded by the hold limit.
pub const MAX_LISTED_ORDERS: usize = 1000;

/// The customer-orders table. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Projection {
    db: Db,
}

impl Projection {
    pub fn new(db: Db) -> Self {
        Projection { db }
    }

    /// Stores each snapshot unless an equal or newer version of its order
    /// is stored already; all in one transaction.
    ///
    /// # Errors
    ///
    /// The database failed; nothing of the batch is stored then.
    pub async fn store(&self, states: &[Arc<OrderState>]) -> Result<(), StoreError> {
        // One row per order in a statement: PostgreSQL refuses to update a
        // row twice in one INSERT … ON CONFLICT.
        let mut newest: HashMap<Uuid, &OrderState> = HashMap::new();
        for state in states {
            let slot = newest.entry(state.order.id).or_insert(state);
            if state.order.version > slot.order.version {
                *slot = state;
            }
        }
        let mut rows: Vec<&OrderState> = newest.into_values().collect();
        // A fixed order, so concurrent writers lock rows in the same order.
        rows.sort_by_key(|state| state.order.id);
        let mut tx = self.db.begin().await?;
        let style = tx.placeholders();
        for range in batch::chunks(rows.len()) {
            let sql = format!(
                "INSERT INTO customer_orders (order_id, customer_id, created_at, version, held, state)
                 VALUES {}
                 ON CONFLICT (order_id) DO UPDATE SET
                     version = excluded.version, held = excluded.held, state = excluded.state
                 WHERE customer_orders.version < excluded.version",
                batch::values(range.len(), 6, style)
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for state in &rows[range] {
                insert = insert
                    .bind(state.order.id.to_string())
                    .bind(state.customer_id.to_string())
                    .bind(state.order.created_at.as_millis())
                    .bind(state.order.version)
                    .bind(held_by(state) as i64)
                    .bind(serde_json::to_string(state).unwrap_or_default());
            }
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Stores audit entries; one stored already (a redelivery) is left
    /// alone.
    ///
    /// # Errors
    ///
    /// The database failed; nothing is stored then.
    pub async fn store_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        for entry in entries {
            sqlx::query(
                "INSERT INTO catalog_audit (command_id, sku, at, version, entry)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (command_id) DO NOTHING",
            )
            .bind(entry.command_id.to_string())
            .bind(&entry.sku)
            .bind(entry.at.as_millis())
            .bind(entry.version)
            .bind(serde_json::to_string(entry).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// The newest `limit` audit entries, of `sku` only when given, newest
    /// first.
    ///
    /// # Errors
    ///
    /// The database failed, or a stored entry cannot be read.
    pub async fn audit(
        &self,
        sku: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let filter = if sku.is_some() { "WHERE sku = $1" } else { "" };
        let sql = format!(
            "SELECT entry FROM catalog_audit {filter}
             ORDER BY at DESC, version DESC, command_id DESC LIMIT {limit}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(sku) = sku {
            query = query.bind(sku);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter()
            .map(|row| {
                let entry: String = row.try_get("entry")?;
                serde_json::from_str(&entry)
                    .map_err(|error| StoreError::corrupt("catalog_audit.entry", error.to_string()))
            })
            .collect()
    }

    /// Order `id`, whoever's it is.
    ///
    /// # Errors
    ///
    /// The database failed, or the stored snapshot cannot be read.
    pub async fn order(&self, id: Uuid) -> Result<Option<OrderState>, StoreError> {
        let row = sqlx::query("SELECT state FROM customer_orders WHERE order_id = $1")
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|row| decode(&row)).transpose()
    }

    /// `customer`'s newest orders, at most [`MAX_LISTED_ORDERS`], newest
    /// first.
    ///
    /// # Errors
    ///
    /// The database failed, or a stored snapshot cannot be read.
    pub async fn customer_orders(&self, customer: Uuid) -> Result<Vec<OrderState>, StoreError> {
        let sql = format!(
            "SELECT state FROM customer_orders WHERE customer_id = $1
             ORDER BY created_at DESC, order_id DESC LIMIT {MAX_LISTED_ORDERS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customer.to_string())
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(decode).collect()
    }

    /// `customer`'s orders that hold units (`NEW`, `RESERVED`): order id,
    /// version and units held, read without decoding the orders.
    ///
    /// # Errors
    ///
    /// The database failed, or a stored id cannot be read.
    pub async fn holdings(&self, customer: Uuid) -> Result<Vec<(Uuid, i64, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT order_id, version, held FROM customer_orders
             WHERE customer_id = $1 AND held > 0",
        )
        .bind(customer.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("order_id")?;
                let version: i64 = row.try_get("version")?;
                let held: i64 = row.try_get("held")?;
                Ok((
                    crate::db::parse_column(&id, "order_id")?,
                    version,
                    u64::try_from(held).unwrap_or(0),
                ))
            })
            .collect()
    }
}

/// The units `state`'s order holds: its lines' while `NEW` or `RESERVED`,
/// none once paid or cancelled.
pub fn held_by(state: &OrderState) -> u64 {
    if state.order.status.is_final() {
        return 0;
    }
    state
        .order
        .lines
        .iter()
        .map(|line| u64::try_from(line.quantity).unwrap_or(0))
        .sum()
}

fn decode(row: &sqlx::any::AnyRow) -> Result<OrderState, StoreError> {
    let state: String = row.try_get("state")?;
    serde_json::from_str(&state)
        .map_err(|error| StoreError::corrupt("customer_orders.state", error.to_string()))
}

/// Keeps the projection from `orders.v1` and the audit log from
/// `catalog.events.v1`, as a member of the `gateway` consumer group; tells
/// the read model what is stored, so it can forget the snapshots it kept
/// only until then.
pub struct ProjectionHandler {
    pub projection: Projection,
    pub model: ReadModel,
}

#[async_trait]
impl Handler for ProjectionHandler {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
        let mut states = Vec::with_capacity(batch.len());
        let mut audit = Vec::new();
        for record in batch {
            match &*record.topic {
                topic::ORDERS => {
                    let OrderEvent::OrderUpdated(state) =
                        Envelope::<OrderEvent>::from_json(&record.payload)?.message;
                    states.push(Arc::new(state));
                }
                topic::CATALOG_EVENTS => {
                    let CatalogEvent::CatalogChangeDecided(outcome) =
                        Envelope::<CatalogEvent>::from_json(&record.payload)?.message;
                    if let CatalogOutcome::Changed(changed) = outcome {
                        audit.push(changed.entry);
                    }
                }
                other => {
                    return Err(HandlerError::Malformed(format!(
                        "the gateway's projection does not read {other}"
                    )));
                }
            }
        }
        self.projection.store_audit(&audit).await?;
        if !states.is_empty() {
            self.projection.store(&states).await?;
            self.model.stored(&states);
        }
        Ok(())
    }
}
