//! The order service's consumer: commands from the gateway and events from
//! the stock and payment services, applied to orders.
//!
//! A batch is one transaction: the messages whose event ids were not
//! applied before are applied in order to the orders they name, loaded
//! together; the changed orders, their snapshots on `orders.v1` and the
//! commands they cause (outbox) are written together. A batch costs a few
//! statements however many messages it holds.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use shop_shared::domain::OrderLines;
use shop_shared::events::{
    CancelOrder, Envelope, OrderCommand, OrderEvent, PaymentEvent, PlaceOrder, StockEvent, topic,
};
use shop_shared::time::Timestamp;
use uuid::Uuid;

use super::domain::{Decision, Effect, OrderRecord};
use super::store;
use crate::bus::{HandlerError, Record};
use crate::db::{StoreError, Tx};
use crate::messaging::UnitOfWork;
use crate::messaging::outbox::Outgoing;

/// The order service's unit of work.
pub struct OrderHandler {
    pub pay_ttl: Duration,
}

#[async_trait]
impl UnitOfWork for OrderHandler {
    type Message = Message;
    type Prepared = ();

    fn decode(&self, record: &Record) -> Result<(Uuid, Message), HandlerError> {
        Message::decode(record)
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        messages: Vec<Message>,
        _prepared: (),
        outgoing: &mut Outgoing,
    ) -> Result<(), HandlerError> {
        let now = Timestamp::now();
        let mut placed = Vec::new();
        for message in &messages {
            if let Message::Place(command) = message {
                validate(command).map_err(HandlerError::Malformed)?;
                placed.push(OrderRecord::place(command, now));
            }
        }
        let new: Vec<&OrderRecord> = placed.iter().map(|(order, _)| order).collect();
        let claimed = store::insert_new(tx, &new).await?;
        let known: Vec<Uuid> = messages.iter().filter_map(Message::order_id).collect();
        let mut work = Orders::load(tx, &known).await?;
        let mut placed = placed.into_iter();
        for message in messages {
            match message {
                Message::Place(_) => {
                    let Some((order, effects)) = placed.next() else {
                        continue;
                    };
                    if claimed.contains(&order.id) && !work.contains(order.id) {
                        work.place(order, effects);
                    } else {
                        tracing::debug!(order_id = %order.id, "order exists already; place command ignored");
                    }
                }
                Message::Cancel(command) => work.decide(command.order_id, |order| {
                    order.cancel_by_customer(command.customer_id, now)
                })?,
                Message::Stock(event) => match event {
                    StockEvent::StockReserved(event) => work.decide(event.order_id, |order| {
                        order.stock_reserved(&event, self.pay_ttl, now)
                    })?,
                    StockEvent::StockRejected(event) => {
                        work.decide(event.order_id, |order| order.stock_rejected(&event, now))?
                    }
                },
                Message::Payment(event) => {
                    match event {
                        PaymentEvent::CheckoutReady(event) => {
                            work.decide(event.order_id, |order| order.checkout_ready(&event, now))?
                        }
                        PaymentEvent::PaymentSucceeded(event) => work
                            .decide(event.order_id, |order| order.payment_succeeded(&event, now))?,
                        PaymentEvent::PaymentFailed(event) => {
                            work.decide(event.order_id, |order| order.payment_failed(&event, now))?
                        }
                        PaymentEvent::PaymentRefunded(event) => work
                            .decide(event.order_id, |order| order.payment_refunded(&event, now))?,
                        PaymentEvent::CheckoutExpired(event) => work
                            .decide(event.order_id, |order| order.checkout_expired(&event, now))?,
                        PaymentEvent::CheckoutDelayed(event) => work
                            .decide(event.order_id, |order| order.checkout_delayed(&event, now))?,
                        PaymentEvent::RefundFailed(event) => {
                            work.decide(event.order_id, |order| order.refund_failed(&event, now))?
                        }
                    }
                }
            }
        }
        outgoing.append(work.write(tx).await?);
        Ok(())
    }
}

/// A message the order service applies.
pub enum Message {
    Place(PlaceOrder),
    Cancel(CancelOrder),
    Stock(StockEvent),
    Payment(PaymentEvent),
}

impl Message {
    /// The message in `record` with its event id.
    fn decode(record: &Record) -> Result<(Uuid, Message), HandlerError> {
        Ok(match &*record.topic {
            topic::ORDER_COMMANDS => {
                let envelope = Envelope::<OrderCommand>::from_json(&record.payload)?;
                let message = match envelope.message {
                    OrderCommand::PlaceOrder(command) => Message::Place(command),
                    OrderCommand::CancelOrder(command) => Message::Cancel(command),
                };
                (envelope.id, message)
            }
            topic::STOCK_EVENTS => {
                let envelope = Envelope::<StockEvent>::from_json(&record.payload)?;
                (envelope.id, Message::Stock(envelope.message))
            }
            topic::PAYMENT_EVENTS => {
                let envelope = Envelope::<PaymentEvent>::from_json(&record.payload)?;
                (envelope.id, Message::Payment(envelope.message))
            }
            other => {
                return Err(HandlerError::Malformed(format!(
                    "the order service does not read topic {other}"
                )));
            }
        })
    }

    /// The existing order this message is about (none for a new order).
    fn order_id(&self) -> Option<Uuid> {
        match self {
            Message::Place(_) => None,
            Message::Cancel(command) => Some(command.order_id),
            Message::Stock(StockEvent::StockReserved(event)) => Some(event.order_id),
            Message::Stock(StockEvent::StockRejected(event)) => Some(event.order_id),
            Message::Payment(PaymentEvent::CheckoutReady(event)) => Some(event.order_id),
            Message::Payment(PaymentEvent::PaymentSucceeded(event)) => Some(event.order_id),
            Message::Payment(PaymentEvent::PaymentFailed(event)) => Some(event.order_id),
            Message::Payment(PaymentEvent::PaymentRefunded(event)) => Some(event.order_id),
            Message::Payment(PaymentEvent::CheckoutExpired(event)) => Some(event.order_id),
            Message::Payment(PaymentEvent::CheckoutDelayed(event)) => Some(event.order_id),
            Message::Payment(PaymentEvent::RefundFailed(event)) => Some(event.order_id),
        }
    }
}

/// The orders one transaction works on: loaded together, changed in
/// memory one decision at a time, and written back together with the
/// messages their changes cause.
pub struct Orders {
    orders: HashMap<Uuid, OrderRecord>,
    /// Ids in the order they first changed, so writes are deterministic.
    changed: Vec<Uuid>,
    outgoing: Outgoing,
}

/// A message or a deadline named an order this service does not have.
#[derive(Debug, thiserror::Error)]
#[error("message about unknown order {0}")]
pub struct UnknownOrder(pub Uuid);

impl From<UnknownOrder> for HandlerError {
    fn from(error: UnknownOrder) -> HandlerError {
        HandlerError::Failed(error.into())
    }
}

impl Orders {
    /// Loads the orders among `ids` that exist, locking them where the
    /// dialect can.
    ///
    /// # Errors
    ///
    /// As [`store::load_many`].
    pub async fn load(tx: &mut Tx, ids: &[Uuid]) -> Result<Orders, StoreError> {
        let orders = store::load_many(tx, ids).await?;
        Ok(Orders {
            orders,
            changed: Vec::new(),
            outgoing: Outgoing::default(),
        })
    }

    fn contains(&self, id: Uuid) -> bool {
        self.orders.contains_key(&id)
    }

    /// Adds a new order, whose row [`store::insert_new`] wrote as it is,
    /// and sends what placing it causes. The row is written again only if
    /// a later message of the transaction changes the order.
    #[tracing::instrument(name = "order", skip_all, fields(order_id = %order.id))]
    fn place(&mut self, order: OrderRecord, effects: Vec<Effect>) {
        tracing::info!(order_id = %order.id, customer_id = %order.customer_id, "order placed");
        publish(&mut self.outgoing, &order, effects);
        self.orders.insert(order.id, order);
    }

    /// Applies `decide` to order `id`, as changed so far in this
    /// transaction, and sends what the change causes.
    ///
    /// # Errors
    ///
    /// [`UnknownOrder`] when `id` was not loaded.
    #[tracing::instrument(name = "order", skip_all, fields(order_id = %id))]
    pub fn decide(
        &mut self,
        id: Uuid,
        decide: impl FnOnce(&mut OrderRecord) -> Decision,
    ) -> Result<(), UnknownOrder> {
        let Some(order) = self.orders.get_mut(&id) else {
            return Err(UnknownOrder(id));
        };
        let mut after = order.clone();
        match decide(&mut after) {
            Decision::Unchanged => {}
            Decision::Refused(refusal) => {
                tracing::info!(order_id = %id, ?refusal, "order command refused");
            }
            Decision::Changed(effects) => {
                tracing::info!(
                    order_id = %id,
                    status = %after.status,
                    reason = after.cancel_reason.map(|reason| reason.as_str()),
                    "order changed"
                );
                publish(&mut self.outgoing, &after, effects);
                *order = after;
                if !self.changed.contains(&id) {
                    self.changed.push(id);
                }
            }
        }
        Ok(())
    }

    /// Writes every changed order inside `tx`; returns the messages their
    /// changes cause, for the outbox.
    ///
    /// # Errors
    ///
    /// As [`store::write`].
    pub async fn write(self, tx: &mut Tx) -> Result<Outgoing, StoreError> {
        let changed: Vec<&OrderRecord> = self
            .changed
            .iter()
            .filter_map(|id| self.orders.get(id))
            .collect();
        store::write(tx, &changed).await?;
        Ok(self.outgoing)
    }
}

/// Sends the order's new snapshot and its effects.
fn publish(outgoing: &mut Outgoing, order: &OrderRecord, effects: Vec<Effect>) {
    let correlation = order.id.to_string();
    outgoing.push(OrderEvent::OrderUpdated(order.state()), &correlation);
    for effect in effects {
        match effect {
            Effect::Stock(command) => outgoing.push(command, &correlation),
            Effect::Payment(command) => outgoing.push(command, &correlation),
        }
    }
}

/// The gateway checks all of this; a command that still breaks it was not
/// sent by a gateway and is dead-lettered.
fn validate(command: &PlaceOrder) -> Result<(), String> {
    OrderLines::parse(&command.lines)
        .map(drop)
        .map_err(|error| error.to_string())
}
