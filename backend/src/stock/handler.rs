//! The stock service's consumer: reserve, release and commit stock for
//! orders, at most once per order, publishing each product's new quantity.
//! A batch of commands is one transaction of a few statements.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use shop_shared::events::{
    Envelope, ProductEvent, ReserveStock, StockCommand, StockEvent, StockRejected, StockReserved,
};
use uuid::Uuid;

use super::reservation::{self, Reservation};
use super::store::{self, Delta, OrderStock, ProductRow, Reserved};
use crate::bus::{Handler, HandlerError, Record};
use crate::db::outbox::{Outgoing, RelayHandle, Written};
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
        let commands = batch
            .iter()
            .map(|record| {
                let envelope = Envelope::<StockCommand>::from_json(&record.payload)?;
                Ok((envelope.id, envelope.message))
            })
            .collect::<Result<Vec<_>, HandlerError>>()?;
        let mut tx = self.db.begin().await?;
        let ids: Vec<Uuid> = commands.iter().map(|(id, _)| *id).collect();
        let mut fresh = inbox::first_time_many(&mut tx, &ids).await?;
        // Apply each command once: the first time its id appears.
        let commands: Vec<StockCommand> = commands
            .into_iter()
            .filter_map(|(id, command)| fresh.remove(&id).then_some(command))
            .collect();
        let mut stock = Stock::load(&self.db, &mut tx, &commands).await?;
        for command in &commands {
            match command {
                StockCommand::ReserveStock(command) => stock.reserve(command, &self.metrics),
                StockCommand::ReleaseStock(order) => stock.release(order.order_id)?,
                StockCommand::CommitStock(order) => stock.commit(order.order_id)?,
            }
        }
        let written = stock.write(&mut tx).await?;
        self.relay.commit(tx, written).await?;
        Ok(())
    }
}

/// The products and orders one transaction works on: loaded together
/// (products locked in sku order, so concurrent reservations cannot
/// deadlock), changed in memory one command at a time, and written back
/// with one guarded update, so concurrency can never oversell.
struct Stock {
    products: HashMap<String, ProductRow>,
    deltas: HashMap<String, Delta>,
    states: HashMap<Uuid, OrderStock>,
    /// Orders whose state changed, in the order they first changed.
    changed: Vec<Uuid>,
    reservations: HashMap<Uuid, Vec<Reserved>>,
    new_reservations: Vec<(Uuid, Reserved)>,
    outgoing: Outgoing,
}

impl Stock {
    async fn load(db: &Db, tx: &mut Tx, commands: &[StockCommand]) -> Result<Stock, sqlx::Error> {
        let order_ids: Vec<Uuid> = commands.iter().map(order_of).collect();
        let states = store::order_states(db, tx, &order_ids).await?;
        let holding: Vec<Uuid> = commands
            .iter()
            .filter(|command| !matches!(command, StockCommand::ReserveStock(_)))
            .map(order_of)
            .filter(|id| states.get(id) == Some(&OrderStock::Reserved))
            .collect();
        let reservations = store::reservations(tx, &holding).await?;
        let mut skus: Vec<&str> = Vec::new();
        for command in commands {
            if let StockCommand::ReserveStock(command) = command {
                skus.extend(command.lines.iter().map(|line| line.sku.as_str()));
            }
        }
        skus.extend(
            reservations
                .values()
                .flatten()
                .map(|line| line.sku.as_str()),
        );
        let products = store::products(db, tx, &skus).await?;
        Ok(Stock {
            products,
            deltas: HashMap::new(),
            states,
            changed: Vec::new(),
            reservations,
            new_reservations: Vec::new(),
            outgoing: Outgoing::default(),
        })
    }

    fn set_state(&mut self, order_id: Uuid, state: OrderStock) {
        if self.states.insert(order_id, state) != Some(state) && !self.changed.contains(&order_id) {
            self.changed.push(order_id);
        }
    }

    /// Moves units of `sku` between available, reserved and sold, and sends
    /// the product's new quantity when the available units changed.
    fn change(&mut self, order_id: Uuid, sku: &str, moved: Delta) -> Result<(), HandlerError> {
        let Some(product) = self.products.get_mut(sku) else {
            return Err(HandlerError::Failed(anyhow::anyhow!(
                "order {order_id} holds units of {sku}, which is not in the catalogue"
            )));
        };
        if product.available + moved.available < 0 || product.reserved + moved.reserved < 0 {
            return Err(HandlerError::Failed(anyhow::anyhow!(
                "order {order_id} moves more units of {sku} than there are"
            )));
        }
        product.available += moved.available;
        product.reserved += moved.reserved;
        product.sold += moved.sold;
        product.version += moved.versions;
        let view = (moved.available != 0).then(|| product.view());
        let delta = self.deltas.entry(sku.to_owned()).or_default();
        delta.available += moved.available;
        delta.reserved += moved.reserved;
        delta.sold += moved.sold;
        delta.versions += moved.versions;
        if let Some(view) = view {
            self.outgoing
                .push(ProductEvent::ProductUpdated(view), &order_id.to_string());
        }
        Ok(())
    }

    /// Reserves every line or none, at most once per order.
    fn reserve(&mut self, command: &ReserveStock, metrics: &Metrics) {
        let order_id = command.order_id;
        if self.states.contains_key(&order_id) {
            // Reserved, rejected or released before: reserve at most once.
            return;
        }
        let correlation = order_id.to_string();
        match reservation::decide(&command.lines, &self.products) {
            Reservation::Reject { unavailable } => {
                self.set_state(order_id, OrderStock::Rejected);
                tracing::info!(%order_id, ?unavailable, "reservation rejected: not enough stock");
                metrics.reservation("rejected");
                let event = StockEvent::StockRejected(StockRejected {
                    order_id,
                    unavailable,
                });
                self.outgoing.push(event, &correlation);
            }
            Reservation::Accept {
                currency,
                mut lines,
            } => {
                self.set_state(order_id, OrderStock::Reserved);
                lines.sort_by(|a, b| a.sku.cmp(&b.sku));
                for line in &lines {
                    let taken = Delta {
                        available: -line.quantity,
                        reserved: line.quantity,
                        sold: 0,
                        versions: 1,
                    };
                    // The decision saw enough units of every line.
                    let _ = self.change(order_id, &line.sku, taken);
                    let reserved = Reserved {
                        sku: line.sku.clone(),
                        quantity: line.quantity,
                        unit_price: line.unit_price,
                    };
                    self.reservations
                        .entry(order_id)
                        .or_default()
                        .push(reserved.clone());
                    self.new_reservations.push((order_id, reserved));
                }
                tracing::info!(%order_id, lines = lines.len(), "stock reserved");
                metrics.reservation("reserved");
                let event = StockEvent::StockReserved(StockReserved {
                    order_id,
                    currency,
                    lines,
                });
                self.outgoing.push(event, &correlation);
            }
        }
    }

    /// Gives an order's reserved units back. An order never reserved is
    /// marked released, so a reservation arriving late is not taken.
    fn release(&mut self, order_id: Uuid) -> Result<(), HandlerError> {
        match self.states.get(&order_id) {
            Some(OrderStock::Reserved) => {}
            None => {
                self.set_state(order_id, OrderStock::Released);
                return Ok(());
            }
            Some(_) => return Ok(()),
        }
        for line in self
            .reservations
            .get(&order_id)
            .cloned()
            .unwrap_or_default()
        {
            let back = Delta {
                available: line.quantity,
                reserved: -line.quantity,
                sold: 0,
                versions: 1,
            };
            self.change(order_id, &line.sku, back)?;
        }
        self.set_state(order_id, OrderStock::Released);
        tracing::info!(%order_id, "stock released");
        Ok(())
    }

    /// Turns an order's reserved units into sold ones.
    fn commit(&mut self, order_id: Uuid) -> Result<(), HandlerError> {
        if self.states.get(&order_id) != Some(&OrderStock::Reserved) {
            return Ok(());
        }
        for line in self
            .reservations
            .get(&order_id)
            .cloned()
            .unwrap_or_default()
        {
            let sold = Delta {
                available: 0,
                reserved: -line.quantity,
                sold: line.quantity,
                versions: 0,
            };
            self.change(order_id, &line.sku, sold)?;
        }
        self.set_state(order_id, OrderStock::Committed);
        tracing::info!(%order_id, "stock sold");
        Ok(())
    }

    /// Writes the changes and the messages, inside `tx`.
    async fn write(self, tx: &mut Tx) -> Result<Written, HandlerError> {
        let states: Vec<(Uuid, OrderStock)> = self
            .changed
            .iter()
            .filter_map(|id| self.states.get(id).map(|state| (*id, *state)))
            .collect();
        store::set_order_states(tx, &states).await?;
        store::add_reservations(tx, &self.new_reservations).await?;
        let mut deltas: Vec<(&str, &Delta)> = self
            .deltas
            .iter()
            .map(|(sku, delta)| (sku.as_str(), delta))
            .collect();
        deltas.sort_by_key(|(sku, _)| *sku);
        if !store::apply(tx, &deltas).await? {
            // The rows are locked (or SQLite has one writer), so the guard
            // cannot fail after the decisions; if it does, roll everything
            // back and try again.
            return Err(HandlerError::Transient(anyhow::anyhow!(
                "stock changed while reserving"
            )));
        }
        Ok(self.outgoing.write(tx).await?)
    }
}

fn order_of(command: &StockCommand) -> Uuid {
    match command {
        StockCommand::ReserveStock(command) => command.order_id,
        StockCommand::ReleaseStock(order) | StockCommand::CommitStock(order) => order.order_id,
    }
}
