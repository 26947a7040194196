//! Refunds that did not go through at the first attempt.
//!
//! A late payment is refunded when its `RefundPayment` command arrives. When
//! the provider refuses (a disputed charge, a balance too low) or cannot be
//! reached, the refund is not failed and dead-lettered: it becomes a
//! [`RefundRetry`], a row of its own that this module's sweep tries again
//! with growing pauses, and the order service hears of it (`RefundFailed`),
//! so the customer sees "refund pending" with the provider's answer. After
//! [`MAX_ATTEMPTS`] the sweep stops and the refund is FAILED: the customer
//! sees "refund failed", `/metrics` counts it, and a person must act.
//!
//! Each definite refusal moves the next attempt to a new idempotency key
//! (the provider keeps a refused request's answer under its key); an
//! attempt whose outcome is unknown (unavailable) is repeated under the
//! same key, so the money can never go back twice.

use std::str::FromStr;
use std::time::Duration;

use shop_shared::domain::UnknownName;
use shop_shared::events::{PaymentEvent, RefundFailed};
use shop_shared::time::Timestamp;
use uuid::Uuid;

use super::PaymentService;
use super::domain::PaymentStatus;
use super::provider::ProviderError;
use super::store;
use crate::messaging::outbox::Outgoing;
use crate::tasks::Shutdown;

/// Attempts (the first included) before the sweep gives a refund up.
/// With [`FIRST_PAUSE`] doubling up to [`MAX_PAUSE`], about 13 hours.
pub const MAX_ATTEMPTS: u32 = 24;
/// The pause after the first failed attempt; it doubles after each.
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause between two attempts.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);
/// How long an instance holds a refund it is trying, so another instance
/// does not try it at the same time.
const CLAIM: Duration = Duration::from_secs(60);
/// Most refunds tried in one sweep.
const BATCH: i64 = 50;
/// Longest sleep between sweeps.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Where a retried refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryStatus {
    /// The sweep tries again at `next_attempt_at`.
    Pending,
    /// An attempt went through.
    Refunded,
    /// The sweep gave up; a person must give the money back.
    Failed,
}

impl RetryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryStatus::Pending => "PENDING",
            RetryStatus::Refunded => "REFUNDED",
            RetryStatus::Failed => "FAILED",
        }
    }
}

impl FromStr for RetryStatus {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "PENDING" => Ok(RetryStatus::Pending),
            "REFUNDED" => Ok(RetryStatus::Refunded),
            "FAILED" => Ok(RetryStatus::Failed),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// A refund that did not go through at the first attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRetry {
    pub order_id: Uuid,
    pub status: RetryStatus,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Of those, the ones the provider definitely refused; the next attempt
    /// goes under an idempotency key of its own.
    pub refusals: u32,
    pub next_attempt_at: Timestamp,
    /// What the provider answered last, for the customer.
    pub last_error: String,
}

/// The pause after `attempts` failed attempts.
pub fn pause_after(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    FIRST_PAUSE.saturating_mul(1 << doublings).min(MAX_PAUSE)
}

impl RefundRetry {
    /// The refund of `order_id` failed at its first attempt with `error`:
    /// it is retried, and the order service hears why.
    pub fn start(
        order_id: Uuid,
        error: &ProviderError,
        now: Timestamp,
    ) -> (RefundRetry, PaymentEvent) {
        let mut retry = RefundRetry {
            order_id,
            status: RetryStatus::Pending,
            attempts: 0,
            refusals: 0,
            next_attempt_at: now,
            last_error: String::new(),
        };
        // The first failure always has news: `last_error` was empty.
        let event = retry.failed(error, now).unwrap_or_else(|| retry.event());
        (retry, event)
    }

    /// Another attempt failed with `error`: the next one is scheduled, or,
    /// after [`MAX_ATTEMPTS`], the refund is given up. Returns the event
    /// the order service hears: when the provider's answer changed, and
    /// when the sweep gives up.
    pub fn failed(&mut self, error: &ProviderError, now: Timestamp) -> Option<PaymentEvent> {
        self.attempts += 1;
        if matches!(error, ProviderError::Refused(_)) {
            self.refusals += 1;
        }
        let reason = error.to_string();
        let news = reason != self.last_error;
        self.last_error = reason;
        if self.attempts >= MAX_ATTEMPTS {
            self.status = RetryStatus::Failed;
            return Some(self.event());
        }
        self.next_attempt_at = now.plus(pause_after(self.attempts));
        news.then(|| self.event())
    }

    /// An attempt went through.
    pub fn succeeded(&mut self) {
        self.status = RetryStatus::Refunded;
    }

    fn event(&self) -> PaymentEvent {
        PaymentEvent::RefundFailed(RefundFailed {
            order_id: self.order_id,
            reason: self.last_error.clone(),
            retry_at: (self.status == RetryStatus::Pending).then_some(self.next_attempt_at),
        })
    }
}

/// Runs the sweep until `shutdown`.
///
/// # Errors
///
/// Never while running: a failed sweep is logged and tried again after a
/// pause; returns when `shutdown` comes.
pub async fn run(service: PaymentService, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let pause = match sweep(&service).await {
            Ok(true) => Duration::ZERO,
            Ok(false) => {
                backoff = Duration::from_millis(100);
                MAX_SLEEP
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "refund sweep failed; retrying"
                );
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        if !shutdown.sleep(pause).await {
            return Ok(());
        }
    }
}

/// Tries the refunds that are due. Returns true when the batch was full.
async fn sweep(service: &PaymentService) -> anyhow::Result<bool> {
    let now = Timestamp::now();
    let due = store::due_refund_retries(&service.db, now, BATCH).await?;
    for retry in &due {
        if store::claim_refund_retry(&service.db, retry, now.plus(CLAIM)).await? {
            try_again(service, retry.clone()).await?;
        }
    }
    Ok(due.len() as i64 == BATCH)
}

/// Tries one refund again and records the outcome.
#[tracing::instrument(name = "payment", skip_all, fields(order_id = %retry.order_id))]
async fn try_again(service: &PaymentService, mut retry: RefundRetry) -> anyhow::Result<()> {
    let order_id = retry.order_id;
    let payments = store::by_orders(&service.db, &[order_id]).await?;
    let outcome = match payments.get(&order_id) {
        Some(payment) if payment.refund_call().is_some() => {
            service.provider.refund_again(payment, retry.refusals).await
        }
        // Refunded meanwhile, or nothing to give back.
        _ => Ok(()),
    };
    let now = Timestamp::now();
    let mut tx = service.db.begin().await?;
    let mut current = store::by_orders_locked(&mut tx, &[order_id]).await?;
    let mut outgoing = Outgoing::default();
    let correlation = order_id.to_string();
    match &outcome {
        Ok(()) => {
            retry.succeeded();
            if let Some(payment) = current.get_mut(&order_id)
                && let Some(event) = payment.refund()
            {
                store::set_status(&mut tx, order_id, PaymentStatus::Refunded, None).await?;
                outgoing.push(event, &correlation);
                tracing::info!(%order_id, attempts = retry.attempts + 1, "late payment refunded after retries");
            }
        }
        Err(error) => {
            service.metrics.refund_failed(failure_outcome(error));
            if let Some(event) = retry.failed(error, now) {
                outgoing.push(event, &correlation);
            }
            if retry.status == RetryStatus::Failed {
                tracing::error!(%order_id, %error, attempts = retry.attempts, "refund given up; the money must be given back by hand");
            } else {
                tracing::warn!(%order_id, %error, attempts = retry.attempts, next = %retry.next_attempt_at, "refund failed again; retrying later");
            }
        }
    }
    store::save_refund_retry(&mut tx, &retry).await?;
    service.relay.commit_outgoing(tx, outgoing).await?;
    Ok(())
}

/// The `outcome` label of `shop_refund_failures_total` for `error`.
pub fn failure_outcome(error: &ProviderError) -> &'static str {
    match error {
        ProviderError::Refused(_) => "refused",
        ProviderError::Unavailable(_) => "unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: Uuid = Uuid::from_u128(3);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000 + seconds * 1000)
    }

    fn refused(reason: &str) -> ProviderError {
        ProviderError::Refused(reason.into())
    }

    fn retry_at(event: &PaymentEvent) -> Option<Timestamp> {
        match event {
            PaymentEvent::RefundFailed(failed) => failed.retry_at,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pauses_double_from_a_second_up_to_an_hour() {
        let pauses: Vec<u64> = (1..=4).map(|n| pause_after(n).as_secs()).collect();
        assert_eq!(pauses, vec![1, 2, 4, 8]);
        assert_eq!(pause_after(13), MAX_PAUSE);
        assert_eq!(pause_after(u32::MAX), MAX_PAUSE);
    }

    #[test]
    fn a_first_refusal_is_retried_and_the_order_hears_why_and_when() {
        let (retry, event) = RefundRetry::start(ORDER, &refused("charge disputed"), at(0));
        assert_eq!(retry.status, RetryStatus::Pending);
        assert_eq!((retry.attempts, retry.refusals), (1, 1));
        assert_eq!(retry.next_attempt_at, at(1));
        let PaymentEvent::RefundFailed(failed) = &event else {
            panic!("{event:?}")
        };
        assert_eq!(failed.order_id, ORDER);
        assert!(
            failed.reason.contains("charge disputed"),
            "{}",
            failed.reason
        );
        assert_eq!(failed.retry_at, Some(at(1)));
    }

    #[test]
    fn the_same_answer_again_is_not_news_but_another_answer_is() {
        let (mut retry, _) = RefundRetry::start(ORDER, &refused("charge disputed"), at(0));
        assert_eq!(retry.failed(&refused("charge disputed"), at(1)), None);
        assert_eq!(retry.next_attempt_at, at(3));
        let unavailable = ProviderError::Unavailable("HTTP 503".into());
        let event = retry.failed(&unavailable, at(3)).expect("news");
        assert_eq!(retry_at(&event), Some(at(7)));
        assert_eq!(
            (retry.attempts, retry.refusals),
            (3, 2),
            "an unknown outcome keeps the key"
        );
    }

    #[test]
    fn after_the_last_attempt_the_refund_is_given_up_and_the_order_hears_it() {
        let (mut retry, _) = RefundRetry::start(ORDER, &refused("no"), at(0));
        for n in 2..MAX_ATTEMPTS {
            assert_eq!(retry.failed(&refused("no"), at(i64::from(n))), None);
            assert_eq!(retry.status, RetryStatus::Pending);
        }
        let event = retry.failed(&refused("no"), at(99)).expect("given up");
        assert_eq!(retry.status, RetryStatus::Failed);
        assert_eq!(retry_at(&event), None);
    }

    #[test]
    fn statuses_use_their_stored_names() {
        for status in [
            RetryStatus::Pending,
            RetryStatus::Refunded,
            RetryStatus::Failed,
        ] {
            assert_eq!(status.as_str().parse::<RetryStatus>(), Ok(status));
        }
    }
}
