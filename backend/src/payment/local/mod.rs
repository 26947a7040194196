//! The local checkout: a hosted checkout page served by the backend, for
//! offline demos and tests. It stands in for Stripe Checkout and behaves
//! like it where the payment service can tell:
//!
//! - sessions have ids, a URL, line items, an expiry and success/cancel URLs
//!   with `{CHECKOUT_SESSION_ID}` filled in;
//! - the page takes Stripe's public test cards (4242 4242 4242 4242
//!   succeeds; 4000 0000 0000 0002 is declined, and so on), and a declined
//!   card leaves the session open for another try;
//! - two cards of its own stand for delayed payment methods: the session
//!   completes unpaid, and the money follows (4000 0000 0000 1000) or fails
//!   (4000 0000 0000 2008) a few seconds later;
//! - sessions expire, when the order is cancelled or shortly after its
//!   deadline, with a `checkout.session.expired` event;
//! - every event (`checkout.session.completed`, `…async_payment_succeeded`,
//!   `…async_payment_failed`, `…expired`) goes to the same path Stripe would
//!   call, signed as Stripe signs, from a durable queue that retries with
//!   backoff until the endpoint answers 2xx.
//!
//! Submitting the page is a plain form `POST` to the checkout URL with
//! `card_number`, `expiry`, `cvc` and `name`, so a script can pay with curl:
//! a payment answers `303 See Other` to the success URL.
//!
//! - [`sessions`]: checkout sessions, their typed states and storage.
//! - [`delivery`]: the durable, signed webhook queue.
//! - [`card`]: the test card rules.
//! - [`pages`]: the checkout page and its form.

mod card;
mod delivery;
mod pages;
mod sessions;

pub use card::{CardForm, CardOutcome, check_card};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::routing::get;
use shop_shared::events::CreatePayment;
use shop_shared::time::Timestamp;
use tokio::sync::Notify;

use super::domain::PaymentRecord;
use super::provider::{CheckoutSession, PaymentProvider, ProviderError, SessionClosed};
use crate::db::{Db, StoreError};
use crate::secrets::Secret;
use crate::tasks::Spawner;

/// How long a delayed payment takes to settle.
pub const DELAYED_SETTLEMENT: Duration = Duration::from_secs(3);
/// How long after its deadline an unpaid session expires by itself (the
/// order service's own deadline sweep normally closes it first).
const EXPIRY_GRACE: Duration = Duration::from_secs(30);

/// Where the local checkout lives and whom it tells.
#[derive(Clone, Debug)]
pub struct LocalCheckoutConfig {
    /// Base URL of the checkout pages as browsers reach them.
    pub public_url: String,
    /// Base URL of the gateway's payment-return pages.
    pub return_url: String,
    /// Where webhooks are delivered (the payment service's `/stripe/webhook`).
    pub webhook_url: String,
    /// When `webhook_url` is this process itself serving TLS: how to reach
    /// it and trust it.
    pub webhook_tls: Option<WebhookTls>,
    pub webhook_secret: Secret,
    /// Every webhook is held back until this long after it was queued: a
    /// test hook that makes delivery lag on purpose. Zero in normal use.
    pub webhook_delay: Duration,
}

/// Delivering webhooks to this process over TLS: the certificate it
/// serves, the only one trusted (whoever issued it, whichever host it
/// names).
#[derive(Debug, Clone)]
pub struct WebhookTls {
    pub certificate: rustls_pki_types::CertificateDer<'static>,
}

/// The local checkout provider and its pages. Cheap to clone.
#[derive(Clone)]
pub struct LocalCheckout {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    config: LocalCheckoutConfig,
    wake_delivery: Notify,
    http: reqwest::Client,
}

impl LocalCheckout {
    pub fn new(db: Db, config: LocalCheckoutConfig) -> Self {
        // One client for every delivery, so that connections to the
        // webhook endpoint are kept and reused: as many as are in flight.
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(delivery::CONCURRENCY)
            .tcp_nodelay(true);
        if let Some(own) = &config.webhook_tls {
            http =
                http.tls_backend_preconfigured(crate::http::tls::pinned(own.certificate.clone()));
        }
        let http = http.build().unwrap_or_else(|error| {
            tracing::error!(%error, "cannot configure the webhook client; delivering with the defaults");
            reqwest::Client::new()
        });
        LocalCheckout {
            inner: Arc::new(Inner {
                db,
                config,
                wake_delivery: Notify::new(),
                http,
            }),
        }
    }

    /// `GET` and `POST /checkout/{session_id}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/checkout/{session_id}", get(pages::show).post(pages::pay))
            .with_state(self.clone())
    }

    /// Starts the webhook delivery queue.
    pub fn spawn_delivery(&self, spawner: &Spawner) {
        let checkout = self.clone();
        let shutdown = spawner.shutdown().clone();
        spawner.spawn("local-checkout-webhooks", async move {
            checkout.deliver_webhooks(shutdown).await;
            Ok(())
        });
    }
}

#[async_trait]
impl PaymentProvider for LocalCheckout {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn create_session(
        &self,
        request: &CreatePayment,
        requested_at: Timestamp,
    ) -> Result<CheckoutSession, ProviderError> {
        let mut sessions = self.create_sessions(&[(request, requested_at)]).await;
        sessions.pop().unwrap_or_else(|| {
            Err(ProviderError::Unavailable(
                "the local checkout opened no session".into(),
            ))
        })
    }

    /// Opens the sessions in a few statements; an order that has a session
    /// already gets it back.
    async fn create_sessions(
        &self,
        requests: &[(&CreatePayment, Timestamp)],
    ) -> Vec<Result<CheckoutSession, ProviderError>> {
        match self.open_sessions(requests).await {
            Ok(sessions) => sessions.into_iter().map(Ok).collect(),
            Err(error) => {
                let reason = error.to_string();
                requests
                    .iter()
                    .map(|_| Err(ProviderError::Unavailable(reason.clone())))
                    .collect()
            }
        }
    }

    async fn close_session(&self, session_id: &str) -> Result<SessionClosed, ProviderError> {
        let ids = [session_id.to_owned()];
        let mut closed = self.close(&ids).await.map_err(unavailable)?;
        Ok(closed.pop().unwrap_or(SessionClosed::Unpaid))
    }

    async fn close_sessions(
        &self,
        session_ids: &[String],
    ) -> Vec<Result<SessionClosed, ProviderError>> {
        match self.close(session_ids).await {
            Ok(closed) => closed.into_iter().map(Ok).collect(),
            Err(error) => {
                let error = unavailable(error);
                session_ids.iter().map(|_| Err(error.clone())).collect()
            }
        }
    }

    async fn refund(&self, payment: &PaymentRecord) -> Result<(), ProviderError> {
        // No money moved; the session remembers the refund so that its page
        // tells the truth, and the payment service records it.
        let marked = self
            .refunded(&payment.session_id)
            .await
            .map_err(unavailable)?;
        tracing::info!(order_id = %payment.order_id, session_id = %payment.session_id, marked, "local checkout refund");
        Ok(())
    }
}

fn unavailable(error: StoreError) -> ProviderError {
    ProviderError::Unavailable(error.to_string())
}
