//! The stock service's consumer: reserve, release and commit stock for
//! orders, at most once per order, publishing each product's new quantity.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use shop_shared::events::{
    Envelope, ProductEvent, ReserveStock, StockCommand, StockEvent, StockRejected, StockReserved,
};
use uuid::Uuid;

use super::reservation::{self, Reservation};
use super::store::{self, OrderStock};
use crate::bus::{Handler, HandlerError, Record};
use crate::db::outbox::{self, RelayHandle};
use crate::db::{Db, Tx, inbox};
use crate::metrics::Metrics;

pub struct StockHandler {
    pub db: Db,
    pub relay: RelayHandle,
    pub metrics: Metrics,
}

#[async_trait]
impl Handler for StockHandler {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
        let mut tx = self.db.begin().await?;
        for record in batch {
            let envelope = Envelope::<StockCommand>::from_json(&record.payload)?;
            if !inbox::first_time(&mut tx, envelope.id).await? {
                continue;
            }
            match &envelope.message {
                StockCommand::ReserveStock(command) => self.reserve(&mut tx, command).await?,
                StockCommand::ReleaseStock(order) => self.release(&mut tx, order.order_id).await?,
                StockCommand::CommitStock(order) => self.commit(&mut tx, order.order_id).await?,
            }
        }
        tx.commit().await?;
        self.relay.wake();
        Ok(())
    }
}

impl StockHandler {
    /// Reserves every line or none. Rows are locked in sku order, so
    /// concurrent reservations cannot deadlock; each line is then taken with
    /// a guarded update, so concurrency can never oversell.
    async fn reserve(&self, tx: &mut Tx, command: &ReserveStock) -> Result<(), HandlerError> {
        let order_id = command.order_id;
        if store::order_state(&self.db, tx, order_id).await?.is_some() {
            // Reserved, rejected or released before: reserve at most once.
            return Ok(());
        }
        let mut skus: Vec<&str> = command.lines.iter().map(|line| line.sku.as_str()).collect();
        skus.sort_unstable();
        skus.dedup();
        let mut products = HashMap::new();
        for sku in skus {
            if let Some(product) = store::product(&self.db, tx, sku).await? {
                products.insert(sku.to_owned(), product);
            }
        }
        let correlation = order_id.to_string();
        match reservation::decide(&command.lines, &products) {
            Reservation::Reject { unavailable } => {
                store::set_order_state(tx, order_id, OrderStock::Rejected).await?;
                tracing::info!(%order_id, ?unavailable, "reservation rejected: not enough stock");
                self.metrics.reservation("rejected");
                let event = StockEvent::StockRejected(StockRejected {
                    order_id,
                    unavailable,
                });
                outbox::push(tx, event, &correlation).await?;
            }
            Reservation::Accept {
                currency,
                mut lines,
            } => {
                store::set_order_state(tx, order_id, OrderStock::Reserved).await?;
                lines.sort_by(|a, b| a.sku.cmp(&b.sku));
                for line in &lines {
                    let Some(product) = store::reserve(tx, &line.sku, line.quantity).await? else {
                        // The rows are locked (or SQLite has one writer), so the
                        // guard cannot fail after the decision; if it does,
                        // roll everything back and try again.
                        return Err(HandlerError::Transient(anyhow::anyhow!(
                            "stock of {} changed while reserving",
                            line.sku
                        )));
                    };
                    store::add_reservation(tx, order_id, &line.sku, line.quantity, line.unit_price)
                        .await?;
                    outbox::push(
                        tx,
                        ProductEvent::ProductUpdated(product.view()),
                        &correlation,
                    )
                    .await?;
                }
                tracing::info!(%order_id, lines = lines.len(), "stock reserved");
                self.metrics.reservation("reserved");
                let event = StockEvent::StockReserved(StockReserved {
                    order_id,
                    currency,
                    lines,
                });
                outbox::push(tx, event, &correlation).await?;
            }
        }
        Ok(())
    }

    /// Gives an order's reserved units back. An order never reserved is
    /// marked released, so a reservation arriving late is not taken.
    async fn release(&self, tx: &mut Tx, order_id: Uuid) -> Result<(), HandlerError> {
        match store::order_state(&self.db, tx, order_id).await? {
            Some(OrderStock::Reserved) => {}
            None => {
                store::set_order_state(tx, order_id, OrderStock::Released).await?;
                return Ok(());
            }
            Some(_) => return Ok(()),
        }
        let correlation = order_id.to_string();
        for (sku, quantity) in store::reservations(tx, order_id).await? {
            let Some(product) = store::release(tx, &sku, quantity).await? else {
                return Err(HandlerError::Failed(anyhow::anyhow!(
                    "order {order_id} holds {quantity} of {sku}, but fewer are reserved"
                )));
            };
            outbox::push(
                tx,
                ProductEvent::ProductUpdated(product.view()),
                &correlation,
            )
            .await?;
        }
        store::set_order_state(tx, order_id, OrderStock::Released).await?;
        tracing::info!(%order_id, "stock released");
        Ok(())
    }

    /// Turns an order's reserved units into sold ones.
    async fn commit(&self, tx: &mut Tx, order_id: Uuid) -> Result<(), HandlerError> {
        if store::order_state(&self.db, tx, order_id).await? != Some(OrderStock::Reserved) {
            return Ok(());
        }
        for (sku, quantity) in store::reservations(tx, order_id).await? {
            if !store::sell(tx, &sku, quantity).await? {
                return Err(HandlerError::Failed(anyhow::anyhow!(
                    "order {order_id} holds {quantity} of {sku}, but fewer are reserved"
                )));
            }
        }
        store::set_order_state(tx, order_id, OrderStock::Committed).await?;
        tracing::info!(%order_id, "stock sold");
        Ok(())
    }
}
