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

use crate::bus::Subscription;
use crate::db::Db;
use crate::messaging::Transactional;
use crate::messaging::outbox::start_relay;
use crate::metrics::{self, GaugeSource};
use crate::runtime::Runtime;
use crate::service::Service;

/// Starts the order service on `db`, with `pay_ttl` for customers to pay
/// a reserved order and `settle_grace` after it for a payment made in time
/// to arrive; returns its gauges.
///
/// # Errors
///
/// The schema could not be migrated, the outbox relay could not start, or
/// the bus refused the subscription.
pub async fn start(
    runtime: &Runtime,
    db: Db,
    pay_ttl: Duration,
    settle_grace: Duration,
) -> anyhow::Result<GaugeSource> {
    let (bus, spawner) = (&runtime.bus, &runtime.spawner);
    db.migrate(Service::Order).await?;
    let relay = start_relay(Service::Order, db.clone(), bus.clone(), spawner).await?;
    let consumer = Transactional {
        db: db.clone(),
        relay: relay.clone(),
        unit: handler::OrderHandler { pay_ttl },
    };
    bus.subscribe(
        Subscription::group(
            Service::Order.group(),
            &[
                topic::ORDER_COMMANDS,
                topic::STOCK_EVENTS,
                topic::PAYMENT_EVENTS,
            ],
        ),
        Arc::new(consumer),
    )
    .await?;
    spawner.spawn(
        "order-expiry-sweep",
        expiry::run(db.clone(), relay, settle_grace, spawner.shutdown().clone()),
    );
    Ok(metrics::rows_by(
        db,
        "orders",
        "status",
        "shop_orders",
        "Orders by status.",
    ))
}
