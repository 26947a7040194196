//! The stock service: owns products, their quantities and reservations;
//! reserves all-or-nothing, releases, sells, and prices orders.
//!
//! - [`catalog`]: the catalogue seeded on first start.
//! - [`reservation`]: the pure all-or-nothing decision.
//! - [`handler`]: the consumer of stock commands.
//! - [`store`]: the tables.

pub mod catalog;
pub mod handler;
pub mod reservation;
pub mod store;

use std::sync::Arc;

use shop_shared::events::{ProductEvent, topic};

use crate::bus::{Bus, Subscription, SubscriptionHandle};
use crate::db::outbox::{self, spawn_relay};
use crate::db::{Db, Service};
use crate::tasks::Spawner;
use catalog::CatalogProduct;

/// The consumer group of the stock service.
pub const GROUP: &str = "stock";

/// Starts the stock service. `catalog` is the file's products, if one was
/// given: they are added (or their names and prices updated). Without one,
/// an empty database gets the reference shop.
pub async fn start(
    db: Db,
    bus: Arc<dyn Bus>,
    catalog: Option<Vec<CatalogProduct>>,
    spawner: &Spawner,
) -> anyhow::Result<SubscriptionHandle> {
    db.migrate(Service::Stock).await?;
    seed(&db, catalog).await?;
    // Publish the catalogue before anyone reads it.
    outbox::flush(&db, bus.as_ref()).await?;
    let relay = spawn_relay("stock", db.clone(), bus.clone(), spawner);
    let handler = handler::StockHandler { db, relay };
    Ok(bus
        .subscribe(
            Subscription::group(GROUP, &[topic::STOCK_COMMANDS]),
            Arc::new(handler),
        )
        .await?)
}

/// Seeds the catalogue and republishes every product, so read models that
/// start empty learn the whole catalogue.
async fn seed(db: &Db, catalog: Option<Vec<CatalogProduct>>) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let products = match catalog {
        Some(products) => Some(products),
        None if store::is_empty(&mut tx).await? => Some(catalog::default_catalog()),
        None => None,
    };
    if let Some(products) = products {
        let added = store::seed(&mut tx, &products).await?;
        tracing::info!(added, listed = products.len(), "catalogue seeded");
    }
    tx.commit().await?;
    // Read before opening the transaction: SQLite pools hold one connection.
    let all = store::all(db).await?;
    let mut tx = db.begin().await?;
    for product in all {
        outbox::push(
            &mut tx,
            ProductEvent::ProductUpdated(product.view()),
            &product.sku,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
