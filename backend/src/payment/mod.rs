//! The payment service: owns payments; opens checkout sessions with a
//! provider, verifies the provider's webhooks, and reports payments as
//! succeeded, failed or refunded.
//!
//! - [`provider`]: the provider seam; [`local`]: the local checkout.
//! - [`handler`]: the consumer of payment commands.
//! - [`webhook`]: `POST /stripe/webhook`; [`signature`]: Stripe's scheme.
//! - [`store`]: the tables.

pub mod handler;
pub mod local;
pub mod provider;
pub mod signature;
pub mod store;
pub mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use shop_shared::events::topic;

use crate::app::Runtime;
use crate::bus::Subscription;
use crate::db::outbox::{RelayHandle, spawn_relay};
use crate::db::{Db, Service};
use crate::metrics::{GaugeSource, Metrics, Sample};
use crate::secrets::Secret;
use provider::PaymentProvider;

/// The consumer group of the payment service.
pub const GROUP: &str = "payment";

/// What the payment service's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct PaymentService {
    pub db: Db,
    pub relay: RelayHandle,
    pub provider: Arc<dyn PaymentProvider>,
    pub webhook_secret: Secret,
    pub metrics: Metrics,
}

/// What a started payment service contributes to its process.
pub struct Started {
    /// `POST /stripe/webhook`.
    pub routes: Router,
    pub gauges: GaugeSource,
}

/// Starts the payment service with `provider`.
pub async fn start(
    runtime: &Runtime,
    db: Db,
    provider: Arc<dyn PaymentProvider>,
    webhook_secret: Secret,
) -> anyhow::Result<Started> {
    let (bus, spawner) = (&runtime.bus, &runtime.spawner);
    db.migrate(Service::Payment).await?;
    let relay = spawn_relay("payment", db.clone(), bus.clone(), spawner);
    let service = PaymentService {
        db: db.clone(),
        relay,
        provider,
        webhook_secret,
        metrics: runtime.metrics.clone(),
    };
    bus.subscribe(
        Subscription::group(GROUP, &[topic::PAYMENT_COMMANDS]),
        Arc::new(handler::PaymentHandler {
            service: service.clone(),
        }),
    )
    .await?;
    let routes = Router::new()
        .route("/stripe/webhook", post(webhook::receive))
        .with_state(service);
    Ok(Started {
        routes,
        gauges: gauges(db),
    })
}

/// Payments by status, read when metrics are scraped.
fn gauges(db: Db) -> GaugeSource {
    Arc::new(move || {
        let db = db.clone();
        Box::pin(async move {
            let counts = store::count_by_status(&db).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot count payments for metrics");
                Vec::new()
            });
            counts
                .into_iter()
                .map(|(status, count)| Sample {
                    name: "shop_payments",
                    help: "Payments by status.",
                    labels: vec![("status", status)],
                    value: count as f64,
                })
                .collect()
        })
    })
}
