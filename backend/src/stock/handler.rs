//! The stock service's unit of work: reserve, release and commit stock for
//! orders, at most once per order, and apply operators' catalogue changes
//! at most once per command, publishing each product's new snapshot.
//! A batch of commands is one transaction of a few statements: the
//! products and orders it names are loaded into a [`StockBook`] (products
//! locked in sku order, so concurrent reservations cannot deadlock), the
//! commands applied to it, and the changes written back with one guarded
//! update, so concurrency can never oversell.

use async_trait::async_trait;
use shop_shared::events::{
    CatalogCommand, CatalogEvent, CatalogOutcome, ChangeCatalog, Envelope, StockCommand, topic,
};
use shop_shared::money::Currency;
use shop_shared::time::Timestamp;
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

/// What the stock service reads: orders' stock commands and operators'
/// catalogue changes.
pub enum Input {
    Order(StockCommand),
    Catalog(ChangeCatalog),
}

#[async_trait]
impl UnitOfWork for StockHandler {
    type Message = Input;
    type Prepared = ();

    fn decode(&self, record: &Record) -> Result<(Uuid, Input), HandlerError> {
        if &*record.topic == topic::CATALOG_COMMANDS {
            let envelope = Envelope::<CatalogCommand>::from_json(&record.payload)?;
            let CatalogCommand::ChangeCatalog(change) = envelope.message;
            return Ok((envelope.id, Input::Catalog(change)));
        }
        let envelope = Envelope::<StockCommand>::from_json(&record.payload)?;
        Ok((envelope.id, Input::Order(envelope.message)))
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        inputs: Vec<Input>,
        _prepared: (),
        outgoing: &mut Outgoing,
    ) -> Result<(), HandlerError> {
        let (mut commands, mut changes) = (Vec::new(), Vec::new());
        for input in inputs {
            match input {
                Input::Order(command) => commands.push(command),
                Input::Catalog(change) => changes.push(change),
            }
        }
        let mut book = load(tx, &commands, &changes).await?;
        // Operators' changes first: a restock serves the orders of the
        // same batch.
        if !changes.is_empty() {
            let currency = shop_currency(tx).await?;
            let now = Timestamp::now();
            for change in &changes {
                self.apply_change(&mut book, change, currency, now);
            }
        }
        for command in &commands {
            self.apply_command(&mut book, command)?;
        }
        let changes = book.into_changes();
        store::add_products(tx, &changes.added).await?;
        store::describe(tx, &changes.described).await?;
        store::record_catalog(tx, &changes.decided, &changes.audit).await?;
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
                Published::Catalog(outcome) => {
                    outgoing.push(CatalogEvent::CatalogChangeDecided(outcome), &correlation);
                }
            }
        }
        Ok(())
    }
}

impl StockHandler {
    /// Applies one operator's change to the book, in a span naming it.
    #[tracing::instrument(name = "catalog", skip_all, fields(command_id = %change.command_id, sku = change.change.sku()))]
    fn apply_change(
        &self,
        book: &mut StockBook,
        change: &ChangeCatalog,
        currency: Currency,
        now: Timestamp,
    ) {
        match book.change_catalog(change, currency, now) {
            CatalogOutcome::Changed(changed) => {
                tracing::info!(
                    operator = %change.operator,
                    action = change.change.action(),
                    fields = changed.entry.changes.len(),
                    "catalogue changed"
                );
                self.metrics
                    .catalog_change(change.change.action(), "applied");
            }
            CatalogOutcome::Refused(refused) => {
                tracing::info!(
                    operator = %change.operator,
                    action = change.change.action(),
                    code = %refused.code,
                    "catalogue change refused"
                );
                self.metrics
                    .catalog_change(change.change.action(), refused.code.as_str());
            }
        }
    }

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

/// The currency the shop sells in: that of its products (a shop has one,
/// since an order's lines are paid together), EUR for a shop without any.
async fn shop_currency(tx: &mut Tx) -> Result<Currency, StoreError> {
    let codes = store::currencies(tx).await?;
    Ok(codes
        .first()
        .and_then(|code| Currency::new(code).ok())
        .unwrap_or(Currency::EUR))
}

/// The book of the products and orders `commands` name, and of the
/// products and earlier decisions operators' `changes` name.
async fn load(
    tx: &mut Tx,
    commands: &[StockCommand],
    changes: &[ChangeCatalog],
) -> Result<StockBook, StoreError> {
    let command_ids: Vec<Uuid> = changes.iter().map(|change| change.command_id).collect();
    let decided = store::decided(tx, &command_ids).await?;
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
    skus.extend(changes.iter().map(|change| change.change.sku()));
    skus.sort_unstable();
    skus.dedup();
    let products = store::products(tx, &skus).await?;
    Ok(StockBook::new(products, states, reservations).with_decided(decided))
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
