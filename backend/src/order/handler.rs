//! The order service's consumer: commands from the gateway and events from
//! the stock and payment services, applied to orders.
//!
//! A batch is one transaction: for each record, skip it if its event id was
//! applied before; otherwise load the order, decide, and store the order,
//! its snapshot on `orders.v1` and the commands it causes (outbox).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shop_shared::domain::{MAX_LINES, MAX_QUANTITY, is_valid_sku};
use shop_shared::events::{
    Envelope, OrderCommand, OrderEvent, PaymentEvent, PlaceOrder, StockEvent, topic,
};
use shop_shared::time::Timestamp;
use uuid::Uuid;

use super::domain::{Decision, Effect, OrderRecord};
use super::store;
use crate::bus::{Handler, HandlerError, Record};
use crate::db::outbox::{self, RelayHandle};
use crate::db::{Db, Tx, inbox};

pub struct OrderHandler {
    pub db: Db,
    pub relay: RelayHandle,
    pub pay_ttl: Duration,
}

#[async_trait]
impl Handler for OrderHandler {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
        let mut tx = self.db.begin().await?;
        for record in batch {
            self.apply(&mut tx, record).await?;
        }
        tx.commit().await?;
        self.relay.wake();
        Ok(())
    }
}

impl OrderHandler {
    async fn apply(&self, tx: &mut Tx, record: &Record) -> Result<(), HandlerError> {
        let now = Timestamp::now();
        match &*record.topic {
            topic::ORDER_COMMANDS => {
                let envelope = Envelope::<OrderCommand>::from_json(&record.payload)?;
                if !inbox::first_time(tx, envelope.id).await? {
                    return Ok(());
                }
                match envelope.message {
                    OrderCommand::PlaceOrder(command) => self.place(tx, &command, now).await,
                    OrderCommand::CancelOrder(command) => {
                        self.decide(tx, command.order_id, |order| {
                            order.cancel_by_customer(command.customer_id, now)
                        })
                        .await
                    }
                }
            }
            topic::STOCK_EVENTS => {
                let envelope = Envelope::<StockEvent>::from_json(&record.payload)?;
                if !inbox::first_time(tx, envelope.id).await? {
                    return Ok(());
                }
                match envelope.message {
                    StockEvent::StockReserved(event) => {
                        self.decide(tx, event.order_id, |order| {
                            order.stock_reserved(&event, self.pay_ttl, now)
                        })
                        .await
                    }
                    StockEvent::StockRejected(event) => {
                        self.decide(tx, event.order_id, |order| {
                            order.stock_rejected(&event, now)
                        })
                        .await
                    }
                }
            }
            topic::PAYMENT_EVENTS => {
                let envelope = Envelope::<PaymentEvent>::from_json(&record.payload)?;
                if !inbox::first_time(tx, envelope.id).await? {
                    return Ok(());
                }
                match envelope.message {
                    PaymentEvent::CheckoutReady(event) => {
                        self.decide(tx, event.order_id, |order| {
                            order.checkout_ready(&event, now)
                        })
                        .await
                    }
                    PaymentEvent::PaymentSucceeded(event) => {
                        self.decide(tx, event.order_id, |order| {
                            order.payment_succeeded(&event, now)
                        })
                        .await
                    }
                    PaymentEvent::PaymentFailed(event) => {
                        self.decide(tx, event.order_id, |order| {
                            order.payment_failed(&event, now)
                        })
                        .await
                    }
                    PaymentEvent::PaymentRefunded(event) => {
                        self.decide(tx, event.order_id, |order| {
                            order.payment_refunded(&event, now)
                        })
                        .await
                    }
                }
            }
            other => Err(HandlerError::Malformed(format!(
                "the order service does not read topic {other}"
            ))),
        }
    }

    async fn place(
        &self,
        tx: &mut Tx,
        command: &PlaceOrder,
        now: Timestamp,
    ) -> Result<(), HandlerError> {
        validate(command).map_err(HandlerError::Malformed)?;
        let (order, effects) = OrderRecord::place(command, now);
        if !store::insert(tx, &order).await? {
            tracing::debug!(order_id = %order.id, "order exists already; place command ignored");
            return Ok(());
        }
        tracing::info!(order_id = %order.id, customer_id = %order.customer_id, "order placed");
        publish(tx, &order, effects).await
    }

    /// Loads the order, applies `decide`, and stores what changed.
    async fn decide(
        &self,
        tx: &mut Tx,
        order_id: Uuid,
        decide: impl FnOnce(&mut OrderRecord) -> Decision,
    ) -> Result<(), HandlerError> {
        let Some(before) = store::load(&self.db, tx, order_id).await? else {
            return Err(HandlerError::Failed(anyhow::anyhow!(
                "message about unknown order {order_id}"
            )));
        };
        apply_decision(tx, before, decide).await
    }
}

/// Applies `decide` to `before` and stores the result. Shared by the
/// consumer and the expiry sweep.
pub async fn apply_decision(
    tx: &mut Tx,
    before: OrderRecord,
    decide: impl FnOnce(&mut OrderRecord) -> Decision,
) -> Result<(), HandlerError> {
    let mut after = before.clone();
    match decide(&mut after) {
        Decision::Unchanged => Ok(()),
        Decision::Refused(refusal) => {
            tracing::info!(order_id = %before.id, ?refusal, "order command refused");
            Ok(())
        }
        Decision::Changed(effects) => {
            store::save(tx, &before, &after).await?;
            tracing::info!(
                order_id = %after.id,
                status = %after.status,
                reason = after.cancel_reason.map(|reason| reason.as_str()),
                "order changed"
            );
            publish(tx, &after, effects).await
        }
    }
}

/// Writes the order's new snapshot and its effects to the outbox.
async fn publish(
    tx: &mut Tx,
    order: &OrderRecord,
    effects: Vec<Effect>,
) -> Result<(), HandlerError> {
    let correlation = order.id.to_string();
    outbox::push(tx, OrderEvent::OrderUpdated(order.state()), &correlation).await?;
    for effect in effects {
        match effect {
            Effect::Stock(command) => outbox::push(tx, command, &correlation).await?,
            Effect::Payment(command) => outbox::push(tx, command, &correlation).await?,
        }
    }
    Ok(())
}

/// The gateway checks all of this; a command that still breaks it was not
/// sent by a gateway and is dead-lettered.
fn validate(command: &PlaceOrder) -> Result<(), String> {
    if command.lines.is_empty() || command.lines.len() > MAX_LINES {
        return Err(format!(
            "an order has 1 to {MAX_LINES} lines, not {}",
            command.lines.len()
        ));
    }
    let mut skus = std::collections::HashSet::new();
    for line in &command.lines {
        if !is_valid_sku(&line.sku) || !skus.insert(line.sku.as_str()) {
            return Err(format!("invalid or repeated sku {:?}", line.sku));
        }
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            return Err(format!(
                "quantity {} of {} is outside 1..={MAX_QUANTITY}",
                line.quantity, line.sku
            ));
        }
    }
    Ok(())
}
