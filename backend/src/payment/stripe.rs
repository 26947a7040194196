//! The Stripe provider: Stripe Checkout through async-stripe.
//!
//! - One Checkout Session per RESERVED order, in `payment` mode, with a line
//!   item per order line (`price_data`: currency, unit amount in minor
//!   units, product name; quantity), the order id as `client_reference_id`
//!   and in `metadata`, and success and cancel URLs on the gateway's
//!   payment-return page with `{CHECKOUT_SESSION_ID}`.
//! - Every call carries an `Idempotency-Key` derived from the order (or
//!   session), so a redelivered command or a retry never does the work twice.
//! - Network errors, 429 and 5xx are retried with backoff and the same key,
//!   and so is an error answer that is not Stripe's JSON (an HTML page from
//!   a proxy or gateway in front of the API): the provider is unavailable,
//!   it did not refuse. Any other error ends the attempt with Stripe's
//!   message.
//! - Stripe refuses `expires_at` under 30 minutes away, while our pay-until
//!   deadline may be sooner: the session expires at the later of the two and
//!   is expired through the API as soon as the order is cancelled. Every
//!   parameter derives from the command, so a redelivered command repeats
//!   the first request exactly and gets Stripe's saved answer back.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use std::future::Future;

use async_trait::async_trait;
use shop_shared::events::CreatePayment;
use shop_shared::time::Timestamp;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ExpireCheckoutSession, ProductData, RetrieveCheckoutSession,
};
use stripe_core::refund::CreateRefund;
use stripe_shared::CheckoutSessionStatus;

use super::domain::PaymentRecord;
use super::provider::{
    CheckoutSession, PaymentProvider, ProviderError, ReturnUrls, SessionClosed, SessionReport,
};
use crate::secrets::Secret;

/// The shortest session, counted from when the order asked for payment.
/// Stripe wants `expires_at` at least 30 minutes after it receives the
/// request; counting from the request of the order instead of from each
/// attempt keeps every retry and redelivery identical (Stripe refuses an
/// idempotency key reused with other parameters), and the margin leaves 10
/// minutes for the command to arrive and for retries.
pub const MIN_SESSION_LIFETIME: Duration = Duration::from_secs(40 * 60);
/// Stripe's maximum.
pub const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Attempts at one call before giving up for now.
const ATTEMPTS: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(200);

/// How to reach Stripe.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secret_key: Secret,
    /// `https://api.stripe.com`, or a stand-in for tests.
    pub api_base: String,
    /// Base URL of the gateway's payment-return pages.
    pub return_url: String,
}

/// Stripe Checkout.
pub struct StripeProvider {
    client: Client,
    return_url: String,
}

impl StripeProvider {
    /// A Stripe Checkout client for `config`.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Refused`] when the API base is not a URL the client can
    /// use.
    pub fn new(config: &StripeConfig) -> Result<StripeProvider, ProviderError> {
        let base = format!("{}/", config.api_base.trim_end_matches('/'));
        let client = ClientBuilder::new(config.secret_key.expose())
            .url(base)
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|error| {
                ProviderError::Refused(format!("cannot set up the Stripe client: {error}"))
            })?;
        Ok(StripeProvider {
            client,
            return_url: config.return_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends a request with idempotency `key` (none for a read, which
    /// Stripe does not key), retrying what is worth retrying with the same
    /// key. `send` sends it once with the strategy
    /// it is given.
    async fn send<T, F, Fut>(
        &self,
        what: &str,
        key: Option<&str>,
        send: F,
    ) -> Result<T, ProviderError>
    where
        F: Fn(RequestStrategy) -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        let key = key
            .map(IdempotencyKey::new)
            .transpose()
            .map_err(|error| ProviderError::Refused(error.to_string()))?;
        let mut pause = FIRST_PAUSE;
        let mut attempt = 1;
        loop {
            let strategy = match &key {
                Some(key) => RequestStrategy::Idempotent(key.clone()),
                None => RequestStrategy::Once,
            };
            let outcome = send(strategy).await;
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let reason = describe(&error);
            if !is_transient(&error) {
                tracing::warn!(what, %reason, "Stripe refused");
                return Err(ProviderError::Refused(reason));
            }
            if attempt >= ATTEMPTS {
                tracing::warn!(what, %reason, attempts = attempt, "Stripe still failing; giving up for now");
                return Err(ProviderError::Unavailable(reason));
            }
            tracing::info!(what, %reason, attempt, ?pause, "Stripe call failed; retrying with the same idempotency key");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
            attempt += 1;
        }
    }
}

/// What async-stripe reports for an error answer (a status other than
/// 2xx) whose body is not a Stripe error object, such as the HTML page of a
/// proxy, load balancer or CDN answering 502, 503 or 504 in front of the
/// API (`send_inner` in async-stripe's `hyper/client.rs`; the status itself
/// is dropped there). Stripe's API answers every error in JSON, so such an
/// answer says the way to Stripe failed, not that Stripe refused.
const FOREIGN_ERROR_ANSWERS: &[&str] = &[
    "error deserializing Stripe error",
    "Response was not valid UTF-8",
];

/// Whether `error` is an error answer that did not come from Stripe's API.
fn is_foreign_error_answer(error: &StripeError) -> bool {
    matches!(error, StripeError::JSONDeserialize(message) if FOREIGN_ERROR_ANSWERS.contains(&message.as_str()))
}

/// Network trouble, rate limits, Stripe's own failures and error pages
/// from something in front of Stripe pass; anything else (a 4xx, or a
/// success whose body is not what was asked for) will fail the same way
/// again.
fn is_transient(error: &StripeError) -> bool {
    match error {
        StripeError::Stripe(_, status) => *status == 429 || *status == 409 || *status >= 500,
        StripeError::ClientError(_) | StripeError::Timeout => true,
        StripeError::JSONDeserialize(_) => is_foreign_error_answer(error),
        StripeError::ConfigError(_) => false,
    }
}

/// Stripe's message for people, without the noise.
fn describe(error: &StripeError) -> String {
    if is_foreign_error_answer(error) {
        return "an error answer that is not Stripe's (an HTML page from a proxy or gateway in front of the API)".into();
    }
    match error {
        StripeError::Stripe(details, status) => {
            let message = details
                .message
                .clone()
                .unwrap_or_else(|| "no message".into());
            match &details.code {
                Some(code) => format!("{message} ({code}, HTTP {status})"),
                None => format!("{message} (HTTP {status})"),
            }
        }
        other => other.to_string(),
    }
}

/// When the session of an order payable until `pay_until`, which asked
/// for payment at `requested_at`, may expire: the deadline, or the earliest
/// Stripe accepts if that is later. The shop expires it through the API as
/// soon as the order is cancelled.
pub fn session_expiry(pay_until: Timestamp, requested_at: Timestamp) -> Timestamp {
    let earliest = requested_at.plus(MIN_SESSION_LIFETIME);
    let latest = requested_at.plus(MAX_SESSION_LIFETIME);
    pay_until.max(earliest).min(latest)
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn create_session(
        &self,
        request: &CreatePayment,
        requested_at: Timestamp,
    ) -> Result<CheckoutSession, ProviderError> {
        let order_id = request.order_id.to_string();
        let currency =
            stripe_types::Currency::from_str(&request.currency.as_str().to_ascii_lowercase())
                .unwrap_or_else(|never| match never {});
        let line_items: Vec<CreateCheckoutSessionLineItems> = request
            .lines
            .iter()
            .map(|line| {
                let mut price = CreateCheckoutSessionLineItemsPriceData::new(currency.clone());
                price.unit_amount = Some(line.unit_price);
                price.product_data = Some(ProductData::new(line.name.clone()));
                let mut item = CreateCheckoutSessionLineItems::new();
                item.price_data = Some(price);
                item.quantity = Some(line.quantity.max(0) as u64);
                item
            })
            .collect();
        let back = ReturnUrls::of(&self.return_url, &order_id);
        let expires_at = session_expiry(request.pay_until, requested_at).as_unix_seconds();
        let metadata = HashMap::from([("order_id".to_owned(), order_id.clone())]);
        let create = CreateCheckoutSession::new()
            .mode(stripe_shared::CheckoutSessionMode::Payment)
            .line_items(line_items)
            .client_reference_id(order_id.clone())
            .metadata(metadata)
            .success_url(back.success)
            .cancel_url(back.cancel)
            .expires_at(expires_at);
        let key = format!("shop-checkout-{order_id}");
        let session = self
            .send("create checkout session", Some(&key), |strategy| {
                create
                    .customize()
                    .request_strategy(strategy)
                    .send(&self.client)
            })
            .await?;
        let url = session.url.ok_or_else(|| {
            ProviderError::Refused("Stripe returned a checkout session without a URL".into())
        })?;
        Ok(CheckoutSession {
            id: session.id.to_string(),
            url,
        })
    }

    /// Expires the session; when Stripe refuses because it is not open any
    /// more, retrieves it to learn whether it was paid or expired
    /// (<https://docs.stripe.com/api/checkout/sessions/expire>: "A Checkout
    /// Session can only be expired when it's in the open state").
    async fn close_session(&self, session_id: &str) -> Result<SessionClosed, ProviderError> {
        let expire = ExpireCheckoutSession::new(session_id);
        let key = format!("shop-expire-{session_id}");
        let expired = self
            .send("expire checkout session", Some(&key), |strategy| {
                expire
                    .customize()
                    .request_strategy(strategy)
                    .send(&self.client)
            })
            .await;
        match expired {
            Ok(_) => return Ok(SessionClosed::Unpaid),
            Err(ProviderError::Refused(reason)) => {
                tracing::info!(session_id, %reason, "checkout session not expired: it is closed already");
            }
            Err(error) => return Err(error),
        }
        let retrieve = RetrieveCheckoutSession::new(session_id);
        let session = self
            .send("retrieve checkout session", None, |strategy| {
                retrieve
                    .customize()
                    .request_strategy(strategy)
                    .send(&self.client)
            })
            .await?;
        match session.status {
            Some(CheckoutSessionStatus::Expired) => Ok(SessionClosed::Unpaid),
            Some(CheckoutSessionStatus::Complete) => Ok(SessionClosed::Completed(SessionReport {
                session_id: session.id.to_string(),
                payment_status: Some(session.payment_status.as_str().to_owned()),
                amount_total: session.amount_total,
                currency: session.currency.map(|currency| currency.to_string()),
                payment_intent: session.payment_intent.map(|intent| intent.id().to_string()),
            })),
            other => Err(ProviderError::Unavailable(format!(
                "Stripe refused to expire session {session_id} but reports it {}",
                other
                    .as_ref()
                    .map_or("without a status", |status| status.as_str())
            ))),
        }
    }

    async fn refund(&self, payment: &PaymentRecord) -> Result<(), ProviderError> {
        self.refund_again(payment, 0).await
    }

    /// Stripe saves a refused request's answer under its idempotency key
    /// and replays it for a day: after a refusal, the next attempt goes
    /// under `shop-refund-<order>-<refusals>`. An attempt whose outcome is
    /// unknown is repeated under its key, so a refund is never made twice.
    async fn refund_again(
        &self,
        payment: &PaymentRecord,
        refusals: u32,
    ) -> Result<(), ProviderError> {
        let Some(payment_intent) = payment.payment_ref.clone() else {
            return Err(ProviderError::Refused(format!(
                "order {} has no payment intent to refund",
                payment.order_id
            )));
        };
        let metadata = HashMap::from([("order_id".to_owned(), payment.order_id.to_string())]);
        let refund = CreateRefund::new()
            .payment_intent(payment_intent)
            .metadata(metadata);
        let key = match refusals {
            0 => format!("shop-refund-{}", payment.order_id),
            n => format!("shop-refund-{}-{n}", payment.order_id),
        };
        self.send("refund", Some(&key), |strategy| {
            refund
                .customize()
                .request_strategy(strategy)
                .send(&self.client)
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_page_from_in_front_of_stripe_is_unavailability_not_a_refusal() {
        for message in FOREIGN_ERROR_ANSWERS {
            let error = StripeError::JSONDeserialize((*message).to_owned());
            assert!(is_transient(&error), "{message}");
            assert!(describe(&error).contains("not Stripe's"), "{message}");
        }
        // A success whose body does not read is not retried.
        let unreadable = StripeError::JSONDeserialize("missing field `id`".into());
        assert!(!is_transient(&unreadable));
        assert!(!is_transient(&StripeError::ConfigError("bad".into())));
    }

    #[test]
    fn sessions_live_at_least_40_minutes_from_the_request_and_at_most_a_day() {
        let now = Timestamp::from_millis(1_000_000_000);
        assert_eq!(
            session_expiry(now.plus(Duration::from_secs(300)), now),
            now.plus(MIN_SESSION_LIFETIME)
        );
        let later = now.plus(Duration::from_secs(3 * 3600));
        assert_eq!(session_expiry(later, now), later);
        assert_eq!(
            session_expiry(now.plus(Duration::from_secs(48 * 3600)), now),
            now.plus(MAX_SESSION_LIFETIME)
        );
    }
}
