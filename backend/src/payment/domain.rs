//! The payment service's domain, pure: a payment and its status, what each
//! command asks of the provider, and how each provider webhook moves a
//! payment, tested without a database or a provider.
//!
//! ```text
//!            create ─► OPEN ──completed (paid)───────────► PAID ──refund──► REFUNDED
//!                        │ └─completed (unpaid) ─► OPEN ──async succeeded─┘
//!                        │                              └─async failed──► FAILED
//!                        ├──cancel (session closed) ───► CANCELLED
//!                        └──expired (by the provider) ─► EXPIRED
//! ```
//!
//! Event types and fields follow Stripe Checkout
//! (<https://docs.stripe.com/api/events/types#event_types-checkout.session.completed>):
//! `payment_status` is `unpaid` on a completed session whose delayed payment
//! method settles later, with `checkout.session.async_payment_succeeded` or
//! `..._failed`.

use std::str::FromStr;

use shop_shared::domain::UnknownName;
use shop_shared::events::{
    CheckoutExpired, CheckoutReady, CreatePayment, PaymentEvent, PaymentFailed, PaymentRefunded,
    PaymentSucceeded,
};
use shop_shared::money::Currency;
use shop_shared::time::Timestamp;
use uuid::Uuid;

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// The checkout session takes payment.
    Open,
    Paid,
    /// The order no longer takes payment; the session was closed.
    Cancelled,
    /// The provider could not take the payment.
    Failed,
    /// Paid too late and given back.
    Refunded,
    /// The provider closed the session unpaid.
    Expired,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Open => "OPEN",
            PaymentStatus::Paid => "PAID",
            PaymentStatus::Cancelled => "CANCELLED",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Refunded => "REFUNDED",
            PaymentStatus::Expired => "EXPIRED",
        }
    }

    /// Whether the money question is answered: paid, failed, or given back.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            PaymentStatus::Paid | PaymentStatus::Refunded | PaymentStatus::Failed
        )
    }
}

impl FromStr for PaymentStatus {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "OPEN" => Ok(PaymentStatus::Open),
            "PAID" => Ok(PaymentStatus::Paid),
            "CANCELLED" => Ok(PaymentStatus::Cancelled),
            "FAILED" => Ok(PaymentStatus::Failed),
            "REFUNDED" => Ok(PaymentStatus::Refunded),
            "EXPIRED" => Ok(PaymentStatus::Expired),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

/// A hosted checkout page the customer pays on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

/// The payment of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    /// The provider's short name (`local`, `stripe`).
    pub provider: String,
    pub session_id: String,
    pub checkout_url: String,
    pub status: PaymentStatus,
    /// In minor units of `currency`.
    pub amount: i64,
    pub currency: Currency,
    /// The provider's payment (a Stripe PaymentIntent), once known.
    pub payment_ref: Option<String>,
}

/// What a cancel or refund asks of the provider, decided before the call
/// is made (opening a session is decided by [`create`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderCall {
    /// Close the open session, so it takes no payment.
    ExpireSession { session_id: String },
    /// Give the captured payment back.
    Refund,
}

/// What a create command comes to, given the order's payment (if any).
#[derive(Debug, Clone, PartialEq)]
pub enum Create {
    /// Ask the provider for a session.
    Open,
    /// The order has a payment already: a redelivered command.
    Exists,
    /// Nobody could pay a session opened now: the deadline passed while the
    /// provider was unavailable. None is opened; the order's own deadline
    /// sweep cancels the order, saying the provider was unavailable.
    TooLate,
}

/// Decides a create command at `now`.
pub fn create(payment: Option<&PaymentRecord>, command: &CreatePayment, now: Timestamp) -> Create {
    if payment.is_some() {
        Create::Exists
    } else if now >= command.pay_until {
        Create::TooLate
    } else {
        Create::Open
    }
}

/// The new payment of a session the provider opened, and the event that
/// offers it to the customer.
pub fn opened(
    command: &CreatePayment,
    provider: &str,
    session: &CheckoutSession,
) -> (PaymentRecord, PaymentEvent) {
    let payment = PaymentRecord {
        order_id: command.order_id,
        customer_id: command.customer_id,
        provider: provider.to_owned(),
        session_id: session.id.clone(),
        checkout_url: session.url.clone(),
        status: PaymentStatus::Open,
        amount: command.amount,
        currency: command.currency,
        payment_ref: None,
    };
    let event = PaymentEvent::CheckoutReady(CheckoutReady {
        order_id: command.order_id,
        session_id: session.id.clone(),
        checkout_url: session.url.clone(),
    });
    (payment, event)
}

/// The event telling the order service that the provider refused to open
/// a session.
pub fn refused(order_id: Uuid, reason: &str) -> PaymentEvent {
    PaymentEvent::PaymentFailed(PaymentFailed {
        order_id,
        reason: format!("the payment provider refused the payment: {reason}"),
    })
}

impl PaymentRecord {
    /// The order was cancelled, or its deadline passed: an open session must
    /// be closed with the provider. `None` when there is nothing to close.
    pub fn cancel_call(&self) -> Option<ProviderCall> {
        (self.status == PaymentStatus::Open).then(|| ProviderCall::ExpireSession {
            session_id: self.session_id.clone(),
        })
    }

    /// A payment came after its order was cancelled: a captured payment
    /// must be given back. `None` when nothing was captured.
    pub fn refund_call(&self) -> Option<ProviderCall> {
        (self.status == PaymentStatus::Paid).then_some(ProviderCall::Refund)
    }

    /// The money went back: PAID becomes REFUNDED, and the order service
    /// hears of it. `None`, changing nothing, when it was not paid.
    pub fn refund(&mut self) -> Option<PaymentEvent> {
        self.refund_call()?;
        self.status = PaymentStatus::Refunded;
        Some(PaymentEvent::PaymentRefunded(PaymentRefunded {
            order_id: self.order_id,
            amount: self.amount,
            currency: self.currency,
        }))
    }
}

/// How the provider answered a request to close a checkout session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionClosed {
    /// The session took no payment and takes none any more.
    Unpaid,
    /// The customer completed the session before it could be closed: paid,
    /// or paid with a delayed method that is still settling. As the
    /// session's completion webhook would say.
    Completed(SessionReport),
}

/// What closing a session did to its payment: its new status and
/// provider payment, and what the order service hears.
#[derive(Debug, Clone, PartialEq)]
pub struct Closing {
    pub status: PaymentStatus,
    pub payment_ref: Option<String>,
    pub event: Option<PaymentEvent>,
}

/// Why a session is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseFor {
    /// The order was cancelled (by its customer, or its payment failed).
    Cancel,
    /// The order's deadline passed: the order waits for the answer.
    Deadline,
}

impl PaymentRecord {
    /// The session closed as `closed` says, for `why`.
    ///
    /// - Unpaid: an open payment becomes CANCELLED (the order was
    ///   cancelled) or EXPIRED (its deadline passed), and at the deadline
    ///   the order hears [`CheckoutExpired`], so it can be cancelled.
    /// - Completed: exactly as the session's `checkout.session.completed`
    ///   webhook would have it: PAID with [`PaymentSucceeded`], or waiting
    ///   for a delayed payment to settle. The webhook, when it comes, finds
    ///   the payment settled and changes nothing.
    pub fn closed(&self, closed: &SessionClosed, why: CloseFor) -> Closing {
        let unchanged = Closing {
            status: self.status,
            payment_ref: self.payment_ref.clone(),
            event: None,
        };
        match closed {
            SessionClosed::Unpaid => {
                let status = match (self.status, why) {
                    (PaymentStatus::Open, CloseFor::Cancel) => PaymentStatus::Cancelled,
                    (PaymentStatus::Open, CloseFor::Deadline) => PaymentStatus::Expired,
                    (status, _) => status,
                };
                let event = (why == CloseFor::Deadline
                    && !matches!(status, PaymentStatus::Paid | PaymentStatus::Refunded))
                .then(|| {
                    PaymentEvent::CheckoutExpired(CheckoutExpired {
                        order_id: self.order_id,
                        session_id: self.session_id.clone(),
                    })
                });
                Closing {
                    status,
                    event,
                    ..unchanged
                }
            }
            SessionClosed::Completed(report) => {
                match self.webhook(WebhookKind::Completed, report) {
                    WebhookDecision::Ignore(_) => unchanged,
                    WebhookDecision::AwaitSettlement { payment_ref } => Closing {
                        payment_ref: payment_ref.or(unchanged.payment_ref),
                        ..unchanged
                    },
                    WebhookDecision::Settle {
                        status,
                        payment_ref,
                        event,
                    } => Closing {
                        status,
                        payment_ref: payment_ref.or(unchanged.payment_ref),
                        event: Some(event),
                    },
                }
            }
        }
    }
}

/// The Checkout Session events this service acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    /// `checkout.session.completed`: paid, or unpaid while a delayed
    /// payment method settles.
    Completed,
    /// `checkout.session.async_payment_succeeded`.
    AsyncSucceeded,
    /// `checkout.session.async_payment_failed`.
    AsyncFailed,
    /// `checkout.session.expired`.
    Expired,
}

impl WebhookKind {
    /// The kind of a Stripe event type; `None` for types this service
    /// ignores.
    pub fn from_type(kind: &str) -> Option<WebhookKind> {
        match kind {
            "checkout.session.completed" => Some(WebhookKind::Completed),
            "checkout.session.async_payment_succeeded" => Some(WebhookKind::AsyncSucceeded),
            "checkout.session.async_payment_failed" => Some(WebhookKind::AsyncFailed),
            "checkout.session.expired" => Some(WebhookKind::Expired),
            _ => None,
        }
    }
}

/// What a webhook's Checkout Session says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionReport {
    pub session_id: String,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: Option<String>,
    /// In minor units.
    pub amount_total: Option<i64>,
    /// Lower case, as Stripe sends it.
    pub currency: Option<String>,
    pub payment_intent: Option<String>,
}

/// What a webhook does to a payment.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookDecision {
    /// Nothing for this shop to do; acknowledged, as Stripe expects.
    Ignore(&'static str),
    /// A delayed payment completed the session unpaid: remember the
    /// provider's payment and wait for its outcome.
    AwaitSettlement { payment_ref: Option<String> },
    /// The payment moves to `status` and the order service hears `event`.
    Settle {
        status: PaymentStatus,
        payment_ref: Option<String>,
        event: PaymentEvent,
    },
}

impl PaymentRecord {
    /// Decides what webhook `kind` about `session` does to this payment.
    pub fn webhook(&self, kind: WebhookKind, session: &SessionReport) -> WebhookDecision {
        let succeeds = match kind {
            WebhookKind::Completed if session.payment_status.as_deref() == Some("unpaid") => {
                return WebhookDecision::AwaitSettlement {
                    payment_ref: session.payment_intent.clone(),
                };
            }
            WebhookKind::Completed | WebhookKind::AsyncSucceeded => true,
            WebhookKind::AsyncFailed => false,
            WebhookKind::Expired => {
                if self.status != PaymentStatus::Open {
                    // Closed on our request (the order was cancelled) or settled.
                    return WebhookDecision::Ignore("session_already_closed");
                }
                // Nobody paid before the session closed: the order is
                // cancelled as unpaid, as when the shop closes it itself.
                return WebhookDecision::Settle {
                    status: PaymentStatus::Expired,
                    payment_ref: None,
                    event: PaymentEvent::CheckoutExpired(CheckoutExpired {
                        order_id: self.order_id,
                        session_id: self.session_id.clone(),
                    }),
                };
            }
        };
        if self.status.is_settled() {
            return WebhookDecision::Ignore("payment_already_settled");
        }
        if !succeeds {
            return WebhookDecision::Settle {
                status: PaymentStatus::Failed,
                payment_ref: None,
                event: self.failed("the payment did not go through after checkout"),
            };
        }
        let currency_matches = session
            .currency
            .as_deref()
            .is_none_or(|currency| currency.eq_ignore_ascii_case(self.currency.as_str()));
        if session
            .amount_total
            .is_some_and(|amount| amount != self.amount)
            || !currency_matches
        {
            return WebhookDecision::Ignore("amount_mismatch");
        }
        WebhookDecision::Settle {
            status: PaymentStatus::Paid,
            payment_ref: session.payment_intent.clone(),
            event: PaymentEvent::PaymentSucceeded(PaymentSucceeded {
                order_id: self.order_id,
                session_id: session.session_id.clone(),
                amount: self.amount,
                currency: self.currency,
            }),
        }
    }

    fn failed(&self, reason: &str) -> PaymentEvent {
        PaymentEvent::PaymentFailed(PaymentFailed {
            order_id: self.order_id,
            reason: reason.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: Uuid = Uuid::from_u128(1);

    fn command(pay_until: i64) -> CreatePayment {
        CreatePayment {
            order_id: ORDER,
            customer_id: Uuid::from_u128(2),
            amount: 4_500,
            currency: Currency::EUR,
            pay_until: Timestamp::from_millis(pay_until),
            lines: Vec::new(),
        }
    }

    fn payment(status: PaymentStatus) -> PaymentRecord {
        let session = CheckoutSession {
            id: "cs_1".into(),
            url: "https://pay/cs_1".into(),
        };
        let (mut payment, _) = opened(&command(10_000), "local", &session);
        payment.status = status;
        payment
    }

    fn report(payment_status: &str) -> SessionReport {
        SessionReport {
            session_id: "cs_1".into(),
            payment_status: Some(payment_status.into()),
            amount_total: Some(4_500),
            currency: Some("eur".into()),
            payment_intent: Some("pi_1".into()),
        }
    }

    #[test]
    fn given_no_payment_when_create_comes_before_the_deadline_then_a_session_is_asked_for() {
        let decision = create(None, &command(10_000), Timestamp::from_millis(9_999));
        assert_eq!(decision, Create::Open);
    }

    #[test]
    fn given_no_payment_when_create_comes_at_the_deadline_then_no_session_is_opened() {
        assert_eq!(
            create(None, &command(10_000), Timestamp::from_millis(10_000)),
            Create::TooLate
        );
    }

    #[test]
    fn given_a_payment_when_create_comes_again_then_no_second_session_is_opened() {
        let existing = payment(PaymentStatus::Open);
        let decision = create(Some(&existing), &command(10_000), Timestamp::from_millis(0));
        assert_eq!(decision, Create::Exists);
    }

    #[test]
    fn when_a_session_is_opened_then_the_payment_is_open_for_the_amount_and_checkout_ready_goes_out()
     {
        let session = CheckoutSession {
            id: "cs_9".into(),
            url: "https://pay/cs_9".into(),
        };
        let (payment, event) = opened(&command(10_000), "stripe", &session);
        assert_eq!(payment.status, PaymentStatus::Open);
        assert_eq!((payment.amount, payment.currency), (4_500, Currency::EUR));
        assert_eq!(payment.provider, "stripe");
        assert_eq!(
            event,
            PaymentEvent::CheckoutReady(CheckoutReady {
                order_id: ORDER,
                session_id: "cs_9".into(),
                checkout_url: "https://pay/cs_9".into(),
            })
        );
        let PaymentEvent::PaymentFailed(failed) = refused(ORDER, "card country") else {
            panic!("failed")
        };
        assert!(failed.reason.contains("refused") && failed.reason.contains("card country"));
    }

    #[test]
    fn given_an_open_payment_when_cancelled_then_the_session_is_closed_and_it_is_cancelled() {
        let open = payment(PaymentStatus::Open);
        assert_eq!(
            open.cancel_call(),
            Some(ProviderCall::ExpireSession {
                session_id: "cs_1".into()
            })
        );
        let closing = open.closed(&SessionClosed::Unpaid, CloseFor::Cancel);
        assert_eq!(closing.status, PaymentStatus::Cancelled);
        assert_eq!(closing.event, None, "the cancelled order needs no news");
    }

    #[test]
    fn given_a_payment_no_longer_open_when_cancelled_then_nothing_is_called_or_changed() {
        for status in [
            PaymentStatus::Paid,
            PaymentStatus::Cancelled,
            PaymentStatus::Failed,
            PaymentStatus::Refunded,
            PaymentStatus::Expired,
        ] {
            let settled = payment(status);
            assert_eq!(settled.cancel_call(), None, "{status:?}");
            let closing = settled.closed(&SessionClosed::Unpaid, CloseFor::Cancel);
            assert_eq!(closing.status, status);
            assert_eq!(closing.event, None);
        }
    }

    #[test]
    fn given_an_open_payment_when_its_deadline_closes_the_session_unpaid_then_the_order_hears_it_expired()
     {
        let open = payment(PaymentStatus::Open);
        let closing = open.closed(&SessionClosed::Unpaid, CloseFor::Deadline);
        assert_eq!(closing.status, PaymentStatus::Expired);
        assert_eq!(
            closing.event,
            Some(PaymentEvent::CheckoutExpired(CheckoutExpired {
                order_id: ORDER,
                session_id: "cs_1".into(),
            }))
        );
    }

    #[test]
    fn given_a_session_paid_before_its_deadline_when_it_is_closed_then_the_payment_succeeds_without_waiting_for_the_webhook()
     {
        let open = payment(PaymentStatus::Open);
        let closing = open.closed(
            &SessionClosed::Completed(report("paid")),
            CloseFor::Deadline,
        );
        assert_eq!(closing.status, PaymentStatus::Paid);
        assert_eq!(closing.payment_ref.as_deref(), Some("pi_1"));
        assert!(
            matches!(closing.event, Some(PaymentEvent::PaymentSucceeded(ref paid)) if paid.amount == 4_500),
            "{closing:?}"
        );
        // The completion webhook arriving afterwards changes nothing.
        let mut paid = open.clone();
        paid.status = closing.status;
        assert_eq!(
            paid.webhook(WebhookKind::Completed, &report("paid")),
            WebhookDecision::Ignore("payment_already_settled")
        );
    }

    #[test]
    fn given_a_delayed_payment_settling_when_the_session_is_closed_then_the_order_hears_nothing_yet()
     {
        let open = payment(PaymentStatus::Open);
        let closing = open.closed(
            &SessionClosed::Completed(report("unpaid")),
            CloseFor::Deadline,
        );
        assert_eq!(closing.status, PaymentStatus::Open);
        assert_eq!(closing.payment_ref.as_deref(), Some("pi_1"));
        assert_eq!(closing.event, None, "the order waits for the settlement");
    }

    #[test]
    fn given_a_paid_payment_when_refunded_then_it_is_refunded_and_the_order_hears_the_amount() {
        let mut paid = payment(PaymentStatus::Paid);
        assert_eq!(paid.refund_call(), Some(ProviderCall::Refund));
        assert_eq!(
            paid.refund(),
            Some(PaymentEvent::PaymentRefunded(PaymentRefunded {
                order_id: ORDER,
                amount: 4_500,
                currency: Currency::EUR,
            }))
        );
        assert_eq!(paid.status, PaymentStatus::Refunded);
        assert_eq!(paid.refund(), None, "a refund happens once");
    }

    #[test]
    fn given_an_unpaid_payment_when_refunded_then_nothing_is_given_back() {
        let mut open = payment(PaymentStatus::Open);
        assert_eq!(open.refund_call(), None);
        assert_eq!(open.refund(), None);
        assert_eq!(open.status, PaymentStatus::Open);
    }

    #[test]
    fn given_an_open_payment_when_completed_paid_then_it_is_paid_with_the_providers_reference() {
        let decision =
            payment(PaymentStatus::Open).webhook(WebhookKind::Completed, &report("paid"));
        let WebhookDecision::Settle {
            status,
            payment_ref,
            event: PaymentEvent::PaymentSucceeded(succeeded),
        } = decision
        else {
            panic!("settled: {decision:?}")
        };
        assert_eq!(status, PaymentStatus::Paid);
        assert_eq!(payment_ref.as_deref(), Some("pi_1"));
        assert_eq!(
            (succeeded.amount, succeeded.session_id.as_str()),
            (4_500, "cs_1")
        );
    }

    #[test]
    fn given_an_open_payment_when_completed_unpaid_then_it_waits_for_the_delayed_outcome() {
        let decision =
            payment(PaymentStatus::Open).webhook(WebhookKind::Completed, &report("unpaid"));
        assert_eq!(
            decision,
            WebhookDecision::AwaitSettlement {
                payment_ref: Some("pi_1".into())
            }
        );
    }

    #[test]
    fn given_an_open_payment_when_the_delayed_payment_settles_then_it_is_paid_or_failed() {
        let open = payment(PaymentStatus::Open);
        assert!(matches!(
            open.webhook(WebhookKind::AsyncSucceeded, &report("paid")),
            WebhookDecision::Settle {
                status: PaymentStatus::Paid,
                ..
            }
        ));
        let WebhookDecision::Settle {
            status: PaymentStatus::Failed,
            event: PaymentEvent::PaymentFailed(failed),
            ..
        } = open.webhook(WebhookKind::AsyncFailed, &report("unpaid"))
        else {
            panic!("failed")
        };
        assert!(failed.reason.contains("did not go through"));
    }

    #[test]
    fn given_a_settled_payment_when_another_outcome_comes_then_it_is_ignored() {
        for status in [
            PaymentStatus::Paid,
            PaymentStatus::Refunded,
            PaymentStatus::Failed,
        ] {
            for kind in [
                WebhookKind::Completed,
                WebhookKind::AsyncSucceeded,
                WebhookKind::AsyncFailed,
            ] {
                assert_eq!(
                    payment(status).webhook(kind, &report("paid")),
                    WebhookDecision::Ignore("payment_already_settled"),
                    "{status:?} {kind:?}"
                );
            }
        }
    }

    #[test]
    fn given_an_open_payment_when_paid_a_different_amount_or_currency_then_it_is_not_counted() {
        let open = payment(PaymentStatus::Open);
        let mut short = report("paid");
        short.amount_total = Some(4_499);
        assert_eq!(
            open.webhook(WebhookKind::Completed, &short),
            WebhookDecision::Ignore("amount_mismatch")
        );
        let mut dollars = report("paid");
        dollars.currency = Some("usd".into());
        assert_eq!(
            open.webhook(WebhookKind::Completed, &dollars),
            WebhookDecision::Ignore("amount_mismatch")
        );
    }

    #[test]
    fn given_an_open_payment_when_the_provider_expires_the_session_then_the_order_hears_it_closed_unpaid()
     {
        let decision =
            payment(PaymentStatus::Open).webhook(WebhookKind::Expired, &report("unpaid"));
        assert_eq!(
            decision,
            WebhookDecision::Settle {
                status: PaymentStatus::Expired,
                payment_ref: None,
                event: PaymentEvent::CheckoutExpired(CheckoutExpired {
                    order_id: ORDER,
                    session_id: "cs_1".into(),
                }),
            }
        );
    }

    #[test]
    fn given_a_closed_or_settled_payment_when_expired_comes_then_it_is_ignored() {
        for status in [PaymentStatus::Cancelled, PaymentStatus::Paid] {
            assert_eq!(
                payment(status).webhook(WebhookKind::Expired, &report("unpaid")),
                WebhookDecision::Ignore("session_already_closed")
            );
        }
    }

    #[test]
    fn stripe_event_types_map_to_kinds_and_statuses_to_their_stored_names() {
        assert_eq!(
            WebhookKind::from_type("checkout.session.completed"),
            Some(WebhookKind::Completed)
        );
        assert_eq!(WebhookKind::from_type("charge.refunded"), None);
        for status in [
            PaymentStatus::Open,
            PaymentStatus::Paid,
            PaymentStatus::Cancelled,
            PaymentStatus::Failed,
            PaymentStatus::Refunded,
            PaymentStatus::Expired,
        ] {
            assert_eq!(status.as_str().parse::<PaymentStatus>(), Ok(status));
        }
    }
}
