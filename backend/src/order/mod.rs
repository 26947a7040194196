//! The order service: owns orders and their lines; runs the order's life
//! from NEW to PAID or CANCELLED, including the pay-until deadline.
//!
//! - [`domain`]: the pure state machine.
//! - [`handler`]: the consumer of commands and of stock and payment events.
//! - [`expiry`]: the durable deadline sweep.
//! - [`store`]: the tables.

pub mod domain;
pub mod expiry;
pub mod handler;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use shop_shared::events::topic;

use crate::bus::{Bus, Subscription, SubscriptionHandle};
use crate::db::outbox::spawn_relay;
use crate::db::{Db, Service};
use crate::tasks::Spawner;

/// The consumer group of the order service.
pub const GROUP: &str = "order";

/// Starts the order service on `db` and `bus`.
pub async fn start(
    db: Db,
    bus: Arc<dyn Bus>,
    pay_ttl: Duration,
    spawner: &Spawner,
) -> anyhow::Result<SubscriptionHandle> {
    db.migrate(Service::Order).await?;
    let relay = spawn_relay("order", db.clone(), bus.clone(), spawner);
    let handler = handler::OrderHandler {
        db: db.clone(),
        relay: relay.clone(),
        pay_ttl,
    };
    let subscription = bus
        .subscribe(
            Subscription::group(
                GROUP,
                &[
                    topic::ORDER_COMMANDS,
                    topic::STOCK_EVENTS,
                    topic::PAYMENT_EVENTS,
                ],
            ),
            Arc::new(handler),
        )
        .await?;
    spawner.spawn(
        "order-expiry-sweep",
        expiry::run(db, relay, spawner.shutdown().clone()),
    );
    Ok(subscription)
}
