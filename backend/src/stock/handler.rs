//! The stock service's unit of work: reserve, release and commit stock for
//! orders, at most once per order, publishing each product's new quantity.
//! A batch of commands is one transaction of a few statements: the
//! products and orders it names are loaded into a [`StockBook`] (products
//! locked in sku order, so concurrent reservations cannot deadlock), the
//! commands applied to it, and the changes written back with one guarded
//! update, so concurrency can never oversell.

use async_trait::async_trait;
use shop_shared::events::{Envelope, StockCommand};
use uuid::Uuid;

use super::domain::{OrderStock, Published, ReserveOutcome, StockBook};
use super::store;
use crate::bus::{HandlerError, Record};
use crate::db::{StoreError, Tx};
use crate::messaging::UnitOfWork;
use crate::messaging::outbox::Outgoing;
use crate::metrics::Metrics;

pub struct StockHandler {
    pub metrics: Metrics,
}

#[async_trait]
impl UnitOfWork for StockHandler {
    type Message = StockCommand;
    type Prepared = ();

    fn decode(&self, record: &Record) -> Result<(Uuid, StockCommand), HandlerError> {
        let envelope = Envelope::<StockCommand>::from_json(&record.payload)?;
        Ok((envelope.id, envelope.message))
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        commands: Vec<StockCommand>,
        _prepared: (),
        outgoing: &mut Outgoing,
    ) -> Result<(), HandlerError> {
        let mut book = load(tx, &commands).await?;
        for command in &commands {
            self.apply_command(&mut book, command)?;
        }
        let changes = book.into_changes();
        store::set_order_states(tx, &changes.states).await?;
        store::add_reservations(tx, &changes.new_reservations).await?;
        if !store::apply(tx, &changes.deltas).await? {
            // The rows are locked (or SQLite has one writer), so the guard
            // cannot fail after the decisions; if it does, roll everything
            // back and try again.
            return Err(HandlerError::Transient(anyhow::anyhow!(
                "stock changed while reserving"
            )));
        }
        for (order_id, message) in changes.published {
            let correlation = order_id.to_string();
            match message {
                Published::Stock(event) => outgoing.push(event, &correlation),
                Published::Product(event) => outgoing.push(event, &correlation),
            }
        }
        Ok(())
    }
}

impl StockHandler {
    /// Applies one command to the book, in a span naming its order.
    #[tracing::instrument(name = "stock", skip_all, fields(order_id = %order_of(command)))]
    fn apply_command(
        &self,
        book: &mut StockBook,
        command: &StockCommand,
    ) -> Result<(), HandlerError> {
        match command {
            StockCommand::ReserveStock(command) => match book.reserve(command) {
                ReserveOutcome::Reserved => {
                    tracing::info!(order_id = %command.order_id, lines = command.lines.len(), "stock reserved");
                    self.metrics.reservation("reserved");
                }
                ReserveOutcome::Rejected => {
                    tracing::info!(order_id = %command.order_id, "reservation rejected: not enough stock");
                    self.metrics.reservation("rejected");
                }
                ReserveOutcome::AlreadyDecided => {}
            },
            StockCommand::ReleaseStock(order) => {
                if book.release(order.order_id).map_err(failed)? {
                    tracing::info!(order_id = %order.order_id, "stock released");
                }
            }
            StockCommand::CommitStock(order) => {
                if book.commit(order.order_id).map_err(failed)? {
                    tracing::info!(order_id = %order.order_id, "stock sold");
                }
            }
        }
        Ok(())
    }
}

/// The book of the products and orders `commands` name.
async fn load(tx: &mut Tx, commands: &[StockCommand]) -> Result<StockBook, StoreError> {
    let order_ids: Vec<Uuid> = commands.iter().map(order_of).collect();
    let states = store::order_states(tx, &order_ids).await?;
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
    let products = store::products(tx, &skus).await?;
    Ok(StockBook::new(products, states, reservations))
}

fn failed(error: super::domain::StockError) -> HandlerError {
    HandlerError::Failed(error.into())
}

fn order_of(command: &StockCommand) -> Uuid {
    match command {
        StockCommand::ReserveStock(command) => command.order_id,
        StockCommand::ReleaseStock(order) | StockCommand::CommitStock(order) => order.order_id,
    }
}
