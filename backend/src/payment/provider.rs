//! The seam between the payment service and a payment provider: the local
//! checkout (default) or Stripe Checkout.
//!
//! Every call must be safe to repeat: the service calls again after a crash
//! or a redelivered command, so providers key their work by order.

use async_trait::async_trait;
use shop_shared::events::CreatePayment;
use shop_shared::time::Timestamp;

pub use super::domain::CheckoutSession;
use super::domain::PaymentRecord;
pub use super::domain::{SessionClosed, SessionReport};

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying: the provider was unreachable, rate-limited us, or
    /// failed on its side.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request; retrying will not help. The reason
    /// is shown to the customer.
    #[error("payment provider refused: {0}")]
    Refused(String),
}

/// Where a checkout sends the customer back: the gateway's payment-return
/// page of the order, with the checkout session's id filled in by the
/// provider (`{CHECKOUT_SESSION_ID}`, Stripe's template). `success` (after
/// paying) carries `checkout=complete`, so that the page says the payment
/// is being confirmed rather than waited for; `cancel` (leaving the
/// checkout) does not. `base` is the gateway's public URL.
pub struct ReturnUrls {
    pub success: String,
    pub cancel: String,
}

impl ReturnUrls {
    pub fn of(base: &str, order_id: &str) -> ReturnUrls {
        let cancel = format!(
            "{}/orders/{order_id}/return?session_id={{CHECKOUT_SESSION_ID}}",
            base.trim_end_matches('/')
        );
        ReturnUrls {
            success: format!("{cancel}&checkout=complete"),
            cancel,
        }
    }
}

#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Short name stored with each payment (`local`, `stripe`).
    fn name(&self) -> &'static str;

    /// Opens (or returns the already opened) checkout session of an order
    /// that asked for payment at `requested_at`. Every call for one order
    /// passes the same arguments, so a provider can derive all it sends
    /// from them and repeat a request exactly.
    async fn create_session(
        &self,
        request: &CreatePayment,
        requested_at: Timestamp,
    ) -> Result<CheckoutSession, ProviderError>;

    /// [`PaymentProvider::create_session`] for several orders (distinct
    /// ones), in order; providers that can do it in one go do.
    async fn create_sessions(
        &self,
        requests: &[(&CreatePayment, Timestamp)],
    ) -> Vec<Result<CheckoutSession, ProviderError>> {
        let mut sessions = Vec::with_capacity(requests.len());
        for (request, requested_at) in requests {
            sessions.push(self.create_session(request, *requested_at).await);
        }
        sessions
    }

    /// Closes a session so it takes no payment any more (Stripe: expire
    /// it), and says how it closed: unpaid, or completed by the customer
    /// before it could be closed. Closing a closed session answers how it
    /// closed then.
    async fn close_session(&self, session_id: &str) -> Result<SessionClosed, ProviderError>;

    /// [`PaymentProvider::close_session`] for several sessions (distinct
    /// ones), in order; providers that can do it in one go do.
    async fn close_sessions(
        &self,
        session_ids: &[String],
    ) -> Vec<Result<SessionClosed, ProviderError>> {
        let mut closed = Vec::with_capacity(session_ids.len());
        for session_id in session_ids {
            closed.push(self.close_session(session_id).await);
        }
        closed
    }

    /// Gives a captured payment back.
    async fn refund(&self, payment: &PaymentRecord) -> Result<(), ProviderError>;

    /// [`PaymentProvider::refund`] again, after the provider definitely
    /// refused `refusals` earlier attempts. A provider that keeps a refused
    /// request's answer under its idempotency key (Stripe does) sends this
    /// one under a key of its own; with `refusals` 0 it is the first
    /// attempt's request exactly. By default the same as `refund`.
    async fn refund_again(
        &self,
        payment: &PaymentRecord,
        refusals: u32,
    ) -> Result<(), ProviderError> {
        let _ = refusals;
        self.refund(payment).await
    }
}
