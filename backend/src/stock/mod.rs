//! The stock service: owns products, their quantities and reservations;
//! reserves all-or-nothing, releases, sells, and prices orders; applies
//! operators' catalogue changes and keeps their audit log.
//!
//! - [`catalog`]: the catalogue seeded on first start.
//! - [`domain`]: the pure quantities, per-order lifecycle and the
//!   all-or-nothing reservation decision.
//! - [`handler`]: the unit of work applied to stock commands.
//! - [`store`]: the tables.

pub mod catalog;
pub mod domain;
pub mod handler;
pub mod store;

use std::sync::Arc;

use shop_shared::events::{ProductEvent, topic};

use crate::bus::Subscription;
use crate::db::Db;
use crate::messaging::Transactional;
use crate::messaging::outbox::{self, start_relay};
use crate::metrics::{self, GaugeSource, Sample};
use crate::runtime::Runtime;
use crate::service::Service;
use catalog::CatalogProduct;

/// Starts the stock service. `catalog` is the file's products, if one was
/// given: they are added (or their names and prices updated). Without one,
/// an empty database gets the reference shop.
///
/// # Errors
///
/// The schema could not be migrated, the catalogue not seeded or
/// published, or the bus refused the subscription.
pub async fn start(
    runtime: &Runtime,
    db: Db,
    catalog: Option<Vec<CatalogProduct>>,
) -> anyhow::Result<GaugeSource> {
    let (bus, spawner) = (&runtime.bus, &runtime.spawner);
    db.migrate(Service::Stock).await?;
    seed(&db, catalog).await?;
    // Publish the catalogue before anyone reads it.
    outbox::flush(&db, bus.as_ref()).await?;
    let relay = start_relay(Service::Stock, db.clone(), bus.clone(), spawner).await?;
    let consumer = Transactional {
        db: db.clone(),
        relay,
        unit: handler::StockHandler {
            metrics: runtime.metrics.clone(),
        },
    };
    bus.subscribe(
        Subscription::group(
            Service::Stock.group(),
            &[topic::STOCK_COMMANDS, topic::CATALOG_COMMANDS],
        ),
        Arc::new(consumer),
    )
    .await?;
    Ok(gauges(db))
}

/// Units available, reserved and sold per product, read when scraped.
fn gauges(db: Db) -> GaugeSource {
    metrics::source(move || {
        let db = db.clone();
        async move {
            let products = store::all(&db).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read stock for metrics");
                Vec::new()
            });
            let mut samples = Vec::with_capacity(products.len() * 3);
            for product in products {
                for (name, help, value) in [
                    (
                        "shop_stock_available",
                        "Units available to reserve, by sku.",
                        product.available,
                    ),
                    (
                        "shop_stock_reserved",
                        "Units reserved by unpaid orders, by sku.",
                        product.reserved,
                    ),
                    ("shop_stock_sold", "Units sold, by sku.", product.sold),
                ] {
                    samples.push(Sample {
                        name,
                        help,
                        labels: vec![("sku", product.sku.clone())],
                        value: value as f64,
                    });
                }
            }
            samples
        }
    })
}

/// Seeds a new shop (one without products) with the catalogue file's
/// products, or the reference shop's, and republishes every product, so
/// read models that start empty learn the whole catalogue. A shop that has
/// products is never seeded again: operators change it while it runs, and
/// a restart must not undo that or reset stock.
async fn seed(db: &Db, catalog: Option<Vec<CatalogProduct>>) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    if store::is_empty(&mut tx).await? {
        let products = catalog.unwrap_or_else(catalog::default_catalog);
        let added = store::seed(&mut tx, &products).await?;
        tracing::info!(added, "catalogue seeded");
    } else if catalog.is_some() {
        tracing::warn!(
            "the catalogue file is not applied: it seeds a new shop only, and this shop has \
             products; change them while the shop runs with `shop admin`"
        );
    }
    tx.commit().await?;
    // Read before opening the transaction: SQLite pools hold one connection.
    let all = store::all(db).await?;
    let mut tx = db.begin().await?;
    for product in all {
        // Published by the flush after the seed.
        let _ = outbox::push(
            &mut tx,
            ProductEvent::ProductUpdated(product.view()),
            &product.sku,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
