//! The stock service: owns products, their quantities and reservations;
//! reserves all-or-nothing, releases, sells, and prices orders.
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
        Subscription::group(Service::Stock.group(), &[topic::STOCK_COMMANDS]),
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

/// A shop sells in one currency: an order's lines are priced and paid
/// together, so a catalogue in another currency than the products already
/// on sale (`selling`, their codes) is refused before anything changes.
///
/// # Errors
///
/// The catalogue's currency differs from what the shop sells, or the shop
/// already sells in several (a data directory of an earlier version).
fn one_currency(selling: &[String], catalog: &[CatalogProduct]) -> anyhow::Result<()> {
    let Some(wanted) = catalog.first().map(|product| product.currency.to_string()) else {
        return Ok(());
    };
    let other: Vec<&str> = selling
        .iter()
        .map(String::as_str)
        .filter(|code| *code != wanted)
        .collect();
    if other.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the catalogue is in {wanted}, but this shop already sells in {}: a shop has one \
         currency, since an order's lines are paid together. Keep the catalogue's currency \
         as {}, or start a shop in {wanted} on a new data directory",
        selling.join(" and "),
        selling.join(" and ")
    )
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
        one_currency(&store::currencies(&mut tx).await?, &products)?;
        let added = store::seed(&mut tx, &products).await?;
        tracing::info!(added, listed = products.len(), "catalogue seeded");
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

#[cfg(test)]
mod tests {
    use super::*;
    use shop_shared::money::Currency;

    fn in_currency(code: &str) -> Vec<CatalogProduct> {
        vec![CatalogProduct {
            sku: "MUG".into(),
            name: "Mug".into(),
            unit_price: 1_250,
            currency: Currency::new(code).expect("a currency"),
            stock: 3,
        }]
    }

    #[test]
    fn a_catalogue_in_another_currency_than_the_shop_sells_in_is_refused() {
        assert!(one_currency(&[], &in_currency("USD")).is_ok());
        assert!(one_currency(&["EUR".into()], &in_currency("EUR")).is_ok());
        let refused = one_currency(&["EUR".into()], &in_currency("USD"))
            .expect_err("EUR shop, USD catalogue")
            .to_string();
        assert!(
            refused.starts_with("the catalogue is in USD, but this shop already sells in EUR"),
            "{refused}"
        );
        assert!(one_currency(&["EUR".into(), "USD".into()], &in_currency("EUR")).is_err());
    }
}
