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

use crate::bus::{Bus, Subscription, SubscriptionHandle};
use crate::db::outbox::{RelayHandle, spawn_relay};
use crate::db::{Db, Service};
use crate::secrets::Secret;
use crate::tasks::Spawner;
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
}

/// Starts the payment service; returns its subscription and its HTTP
/// routes (the webhook).
pub async fn start(
    db: Db,
    bus: Arc<dyn Bus>,
    provider: Arc<dyn PaymentProvider>,
    webhook_secret: Secret,
    spawner: &Spawner,
) -> anyhow::Result<(SubscriptionHandle, Router)> {
    db.migrate(Service::Payment).await?;
    let relay = spawn_relay("payment", db.clone(), bus.clone(), spawner);
    let service = PaymentService {
        db,
        relay,
        provider,
        webhook_secret,
    };
    let subscription = bus
        .subscribe(
            Subscription::group(GROUP, &[topic::PAYMENT_COMMANDS]),
            Arc::new(handler::PaymentHandler {
                service: service.clone(),
            }),
        )
        .await?;
    let routes = Router::new()
        .route("/stripe/webhook", post(webhook::receive))
        .with_state(service);
    Ok((subscription, routes))
}
