//! The payment service: owns payments; opens checkout sessions with a
//! provider, verifies the provider's webhooks, and reports payments as
//! succeeded, failed or refunded.
//!
//! - [`domain`]: the pure payment, its status, and what commands and
//!   webhooks do to it.
//! - [`provider`]: the provider seam; [`local`]: the local checkout;
//!   [`stripe`]: Stripe Checkout.
//! - [`handler`]: the unit of work applied to payment commands.
//! - [`refunds`]: refunds that did not go through at once, retried by a
//!   durable sweep with growing pauses.
//! - [`webhook`]: `POST /stripe/webhook`; [`signature`]: Stripe's scheme.
//! - [`store`]: the tables.

pub mod domain;
pub mod handler;
pub mod local;
pub mod provider;
pub mod refunds;
pub mod signature;
pub mod store;
pub mod stripe;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use shop_shared::events::topic;

use crate::bus::Subscription;
use crate::config::StripeArgs;
use crate::db::Db;
use crate::messaging::Transactional;
use crate::messaging::outbox::{RelayHandle, start_relay};
use crate::messaging::retention::{KeepFor, Prunable};
use crate::metrics::{self, GaugeSource, Metrics};
use crate::runtime::Runtime;
use crate::secrets::Secret;
use crate::service::Service;
use local::{LocalCheckout, LocalCheckoutConfig};
use provider::PaymentProvider;

/// What the payment service forgets after a while
/// ([`crate::messaging::retention`]): delivered local webhooks, checkout
/// sessions long past their expiry, finished refund retries and checkout
/// delays, and Stripe event ids once Stripe no longer retries them.
pub const PRUNABLE: &[Prunable] = &[
    Prunable {
        table: "webhook_events",
        delete: "DELETE FROM webhook_events WHERE event_id IN
                 (SELECT event_id FROM webhook_events WHERE received_at < $1 LIMIT 2000)",
        keep_for: KeepFor::Bookkeeping {
            at_least: STRIPE_RETRIES_FOR,
        },
    },
    Prunable {
        table: "local_webhook_deliveries",
        delete: "DELETE FROM local_webhook_deliveries WHERE event_id IN
                 (SELECT event_id FROM local_webhook_deliveries
                  WHERE delivered_at IS NOT NULL AND delivered_at < $1 LIMIT 2000)",
        keep_for: KeepFor::BOOKKEEPING,
    },
    Prunable {
        table: "local_checkout_sessions",
        delete: "DELETE FROM local_checkout_sessions WHERE id IN
                 (SELECT id FROM local_checkout_sessions WHERE expires_at < $1 LIMIT 2000)",
        keep_for: KeepFor::BOOKKEEPING,
    },
    Prunable {
        table: "refund_retries",
        delete: "DELETE FROM refund_retries WHERE order_id IN
                 (SELECT order_id FROM refund_retries
                  WHERE status <> 'PENDING' AND updated_at < $1 LIMIT 2000)",
        keep_for: KeepFor::BOOKKEEPING,
    },
    Prunable {
        table: "checkout_delays",
        delete: "DELETE FROM checkout_delays WHERE order_id IN
                 (SELECT order_id FROM checkout_delays WHERE created_at < $1 LIMIT 2000)",
        keep_for: KeepFor::BOOKKEEPING,
    },
];

/// How long Stripe retries delivering an event: "for up to 3 days"
/// (docs.stripe.com/webhooks, automatic retries).
const STRIPE_RETRIES_FOR: Duration = Duration::from_secs(3 * 24 * 3600);

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

/// The provider a configuration asks for.
pub struct Choice {
    pub provider: Arc<dyn PaymentProvider>,
    /// The secret webhooks are verified with.
    pub webhook_secret: Secret,
    /// The local checkout, whose pages and webhook deliveries the process
    /// must serve, when it is the provider.
    pub local: Option<LocalCheckout>,
}

/// Stripe Checkout when both Stripe keys are set, the local checkout
/// otherwise.
///
/// # Errors
///
/// Only one of the two Stripe keys is set, or the Stripe client cannot be
/// built.
pub fn choose(stripe: &StripeArgs, db: &Db, local: LocalCheckoutConfig) -> anyhow::Result<Choice> {
    match stripe.keys().map_err(anyhow::Error::msg)? {
        Some((secret_key, webhook_secret)) => {
            let provider = stripe::StripeProvider::new(&stripe::StripeConfig {
                secret_key,
                api_base: stripe.stripe_api_base.clone(),
                return_url: local.return_url.clone(),
            })?;
            tracing::info!(api = %stripe.stripe_api_base, mode = stripe.mode(), "payments go through Stripe Checkout");
            Ok(Choice {
                provider: Arc::new(provider),
                webhook_secret,
                local: None,
            })
        }
        None => {
            tracing::info!(pages = %local.public_url, "payments go through the local checkout");
            let webhook_secret = local.webhook_secret.clone();
            let checkout = LocalCheckout::new(db.clone(), local);
            Ok(Choice {
                provider: Arc::new(checkout.clone()),
                webhook_secret,
                local: Some(checkout),
            })
        }
    }
}

/// Starts the payment service with `provider`.
///
/// # Errors
///
/// The schema could not be migrated, the outbox relay could not start, or
/// the bus refused the subscription.
pub async fn start(
    runtime: &Runtime,
    db: Db,
    provider: Arc<dyn PaymentProvider>,
    webhook_secret: Secret,
) -> anyhow::Result<Started> {
    let (bus, spawner) = (&runtime.bus, &runtime.spawner);
    db.migrate(Service::Payment).await?;
    let relay = start_relay(Service::Payment, db.clone(), bus.clone(), spawner).await?;
    let service = PaymentService {
        db: db.clone(),
        relay,
        provider,
        webhook_secret,
        metrics: runtime.metrics.clone(),
    };
    let consumer = Transactional {
        db: db.clone(),
        relay: service.relay.clone(),
        unit: handler::PaymentHandler {
            service: service.clone(),
        },
    };
    bus.subscribe(
        Subscription::group(Service::Payment.group(), &[topic::PAYMENT_COMMANDS]),
        Arc::new(consumer),
    )
    .await?;
    spawner.spawn(
        "payment-refund-sweep",
        refunds::run(service.clone(), spawner.shutdown().clone()),
    );
    let (queue, queued) = webhook::WebhookQueue::new();
    let (batches, shutdown) = (service.clone(), spawner.shutdown().clone());
    spawner.spawn("payment-webhooks", async move {
        webhook::run_batches(batches, queued, shutdown).await;
        Ok(())
    });
    let routes = Router::new()
        .route("/stripe/webhook", post(webhook::receive))
        .with_state(webhook::Webhooks { service, queue });
    Ok(Started {
        routes,
        gauges: metrics::combine(vec![
            metrics::rows_by(
                db.clone(),
                "payments",
                "status",
                "shop_payments",
                "Payments by status.",
            ),
            metrics::rows_by(
                db,
                "refund_retries",
                "status",
                "shop_refund_retries",
                "Refunds retried after a first failure, by status (PENDING, REFUNDED, FAILED: given up, to be refunded by hand).",
            ),
        ]),
    })
}
