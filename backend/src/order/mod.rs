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

use crate::app::Runtime;
use crate::bus::Subscription;
use crate::db::outbox::start_relay;
use crate::db::{Db, Service};
use crate::metrics::{GaugeSource, Sample};

/// The consumer group of the order service.
pub const GROUP: &str = "order";

/// Starts the order service on `db`; returns its gauges.
pub async fn start(runtime: &Runtime, db: Db, pay_ttl: Duration) -> anyhow::Result<GaugeSource> {
    let (bus, spawner) = (&runtime.bus, &runtime.spawner);
    db.migrate(Service::Order).await?;
    let relay = start_relay("order", db.clone(), bus.clone(), spawner).await?;
    let handler = handler::OrderHandler {
        db: db.clone(),
        relay: relay.clone(),
        pay_ttl,
    };
    bus.subscribe(
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
        expiry::run(db.clone(), relay, spawner.shutdown().clone()),
    );
    Ok(gauges(db))
}

/// Orders by status, read when metrics are scraped.
fn gauges(db: Db) -> GaugeSource {
    Arc::new(move || {
        let db = db.clone();
        Box::pin(async move {
            let counts = store::count_by_status(&db).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot count orders for metrics");
                Vec::new()
            });
            counts
                .into_iter()
                .map(|(status, count)| Sample {
                    name: "shop_orders",
                    help: "Orders by status.",
                    labels: vec![("status", status)],
                    value: count as f64,
                })
                .collect()
        })
    })
}
