//! The order's life, as pure decisions: given an order and what happened,
//! change the order and say which commands to send. No I/O here; the
//! handlers load, decide, then store the order and its effects together.
//!
//! ```text
//! NEW ──stock reserved──▶ RESERVED ──paid──────────────────────────▶ PAID
//!  │                         │  └─deadline passed─▶ RESERVED, closing ─┘ paid in time
//!  │                         │                        │
//!  ├─out of stock──▶ CANCELLED ◀─┤ customer /          │ closed unpaid /
//!  └─customer─────▶ CANCELLED    │ payment failed      │ grace ran out
//!                                ◀─────────────────────┘
//! ```
//! At the deadline the order is not cancelled on its own clock: it asks the
//! payment service to close the checkout session, and is cancelled only when
//! the provider confirms the session closed unpaid. A payment the provider
//! accepted before it closed makes the order PAID, however late its news
//! arrives, within a grace period. Only a payment that lands on a CANCELLED
//! order is refunded.

use std::time::Duration;

use shop_shared::domain::{
    CancelReason, Order, OrderLine, OrderStatus, RefundState, TimelineEntry, TimelineEvent,
};
use shop_shared::events::{
    CheckoutDelayed, CheckoutExpired, CheckoutReady, CreatePayment, OrderRef, OrderState,
    PaymentCommand, PaymentFailed, PaymentRefunded, PaymentSucceeded, PlaceOrder, RefundFailed,
    RefundPayment, ReserveStock, StockCommand, StockRejected, StockReserved,
};
use shop_shared::money::{Currency, line_amount};
use shop_shared::time::Timestamp;
use uuid::Uuid;

/// An order as the order service stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub idempotency_key: String,
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
    pub currency: Option<Currency>,
    /// The sum of the priced lines, in minor units of `currency`; known once reserved.
    pub total: Option<i64>,
    pub pay_until: Option<Timestamp>,
    /// Set when the deadline passed with a checkout session open: the
    /// session is being closed, and a payment made in time may settle
    /// until then. Past it, the order is cancelled.
    pub settle_by: Option<Timestamp>,
    pub checkout_url: Option<String>,
    pub checkout_session_id: Option<String>,
    pub refunded: bool,
    pub lines: Vec<OrderLine>,
    pub timeline: Vec<TimelineEntry>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

/// A command the order service sends because of a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Stock(StockCommand),
    Payment(PaymentCommand),
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do: a duplicate, or news that no longer matters.
    Unchanged,
    /// The order changed; send these commands.
    Changed(Vec<Effect>),
    /// The request cannot be honoured; the order is as it was.
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The order is PAID or CANCELLED already.
    NotCancellable(OrderStatus),
    /// The command names another customer's order.
    NotOwner,
}

/// Whether a cancelled order's checkout session still has to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    Open,
    /// The provider reported it closed.
    Closed,
}

impl OrderRecord {
    /// A new order for `command`, and the reservation to ask for.
    pub fn place(command: &PlaceOrder, now: Timestamp) -> (OrderRecord, Vec<Effect>) {
        let order = OrderRecord {
            id: command.order_id,
            customer_id: command.customer_id,
            idempotency_key: command.idempotency_key.clone(),
            status: OrderStatus::New,
            cancel_reason: None,
            currency: None,
            total: None,
            pay_until: None,
            settle_by: None,
            checkout_url: None,
            checkout_session_id: None,
            refunded: false,
            lines: command
                .lines
                .iter()
                .map(|line| OrderLine {
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                    name: None,
                    unit_price: None,
                    amount: None,
                })
                .collect(),
            timeline: vec![TimelineEntry {
                at: now,
                event: TimelineEvent::Created,
                detail: None,
            }],
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let reserve = Effect::Stock(StockCommand::ReserveStock(ReserveStock {
            order_id: order.id,
            lines: command.lines.clone(),
        }));
        (order, vec![reserve])
    }

    /// The stock service reserved every line: RESERVED until `now + ttl`.
    pub fn stock_reserved(
        &mut self,
        event: &StockReserved,
        ttl: Duration,
        now: Timestamp,
    ) -> Decision {
        if self.status != OrderStatus::New {
            // A duplicate, or the order was cancelled while NEW: its release
            // was sent then and follows this reservation on the same key.
            return Decision::Unchanged;
        }
        let mut total: i64 = 0;
        for line in &mut self.lines {
            let Some(priced) = event.lines.iter().find(|priced| priced.sku == line.sku) else {
                continue;
            };
            let amount = u32::try_from(line.quantity)
                .ok()
                .and_then(|quantity| line_amount(priced.unit_price, quantity));
            line.name = Some(priced.name.clone());
            line.unit_price = Some(priced.unit_price);
            line.amount = amount;
            total = total.saturating_add(amount.unwrap_or(i64::MAX));
        }
        let pay_until = now.plus(ttl);
        self.status = OrderStatus::Reserved;
        self.currency = Some(event.currency);
        self.total = Some(total);
        self.pay_until = Some(pay_until);
        self.record(
            now,
            TimelineEvent::Reserved,
            Some(format!("pay until {pay_until}")),
        );
        let lines = event.lines.clone();
        Decision::Changed(vec![Effect::Payment(PaymentCommand::CreatePayment(
            CreatePayment {
                order_id: self.id,
                customer_id: self.customer_id,
                currency: event.currency,
                amount: total,
                lines,
                pay_until,
            },
        ))])
    }

    /// Some line could not be reserved, so none was.
    pub fn stock_rejected(&mut self, event: &StockRejected, now: Timestamp) -> Decision {
        if self.status != OrderStatus::New {
            return Decision::Unchanged;
        }
        self.status = OrderStatus::Cancelled;
        let detail = if event.unavailable.is_empty() {
            self.cancel_reason = Some(CancelReason::ProductWithdrawn);
            format!("withdrawn from sale: {}", event.withdrawn.join(", "))
        } else {
            self.cancel_reason = Some(CancelReason::OutOfStock);
            let mut detail = format!("not enough stock of {}", event.unavailable.join(", "));
            if !event.withdrawn.is_empty() {
                detail.push_str(&format!(
                    "; withdrawn from sale: {}",
                    event.withdrawn.join(", ")
                ));
            }
            detail
        };
        self.record(now, TimelineEvent::Cancelled, Some(detail));
        Decision::Changed(Vec::new())
    }

    /// The payment provider opened a checkout session.
    pub fn checkout_ready(&mut self, event: &CheckoutReady, now: Timestamp) -> Decision {
        if self.status != OrderStatus::Reserved || self.checkout_url.is_some() {
            return Decision::Unchanged;
        }
        self.checkout_url = Some(event.checkout_url.clone());
        self.checkout_session_id = Some(event.session_id.clone());
        self.record(now, TimelineEvent::CheckoutReady, None);
        Decision::Changed(Vec::new())
    }

    /// The customer paid. On time: PAID, and the reserved units are sold.
    /// Too late (the order was cancelled meanwhile): refund.
    pub fn payment_succeeded(&mut self, event: &PaymentSucceeded, now: Timestamp) -> Decision {
        match self.status {
            OrderStatus::Reserved => {
                self.status = OrderStatus::Paid;
                self.pay_until = None;
                self.settle_by = None;
                self.record(now, TimelineEvent::Paid, None);
                Decision::Changed(vec![Effect::Stock(StockCommand::CommitStock(OrderRef {
                    order_id: self.id,
                }))])
            }
            OrderStatus::Cancelled if !self.refunded => {
                let reason = format!(
                    "payment of session {} arrived after the order was cancelled",
                    event.session_id
                );
                if self.refund_state().is_none() {
                    self.record(now, TimelineEvent::RefundRequested, Some(reason.clone()));
                }
                Decision::Changed(vec![Effect::Payment(PaymentCommand::RefundPayment(
                    RefundPayment {
                        order_id: self.id,
                        reason,
                    },
                ))])
            }
            _ => Decision::Unchanged,
        }
    }

    /// The provider could not take the payment: the order is cancelled and
    /// its stock released.
    pub fn payment_failed(&mut self, event: &PaymentFailed, now: Timestamp) -> Decision {
        if !matches!(self.status, OrderStatus::New | OrderStatus::Reserved) {
            return Decision::Unchanged;
        }
        self.status = OrderStatus::Cancelled;
        self.cancel_reason = Some(CancelReason::PaymentFailed);
        self.pay_until = None;
        self.settle_by = None;
        self.record(now, TimelineEvent::Cancelled, Some(event.reason.clone()));
        Decision::Changed(vec![Effect::Stock(StockCommand::ReleaseStock(OrderRef {
            order_id: self.id,
        }))])
    }

    /// A late payment was given back.
    pub fn payment_refunded(&mut self, event: &PaymentRefunded, now: Timestamp) -> Decision {
        if self.refunded {
            return Decision::Unchanged;
        }
        self.refunded = true;
        let detail = format!("{} refunded", event.currency.format(event.amount));
        self.record(now, TimelineEvent::Refunded, Some(detail));
        Decision::Changed(Vec::new())
    }

    /// The payment provider cannot open a checkout session yet (it is
    /// unavailable; the payment service keeps trying): a RESERVED order
    /// without a checkout page says so until it gets one.
    pub fn checkout_delayed(&mut self, event: &CheckoutDelayed, now: Timestamp) -> Decision {
        if self.status != OrderStatus::Reserved
            || self.checkout_url.is_some()
            || self.checkout_delay().is_some()
        {
            return Decision::Unchanged;
        }
        self.record(
            now,
            TimelineEvent::CheckoutDelayed,
            Some(event.reason.clone()),
        );
        Decision::Changed(Vec::new())
    }

    /// The provider did not give a late payment back: the refund is pending
    /// (the payment service tries again) or, once it stopped trying, failed.
    pub fn refund_failed(&mut self, event: &RefundFailed, now: Timestamp) -> Decision {
        if self.refunded {
            return Decision::Unchanged;
        }
        let kind = if event.retry_at.is_some() {
            TimelineEvent::RefundRefused
        } else {
            TimelineEvent::RefundFailed
        };
        self.record(now, kind, Some(event.reason.clone()));
        Decision::Changed(Vec::new())
    }

    /// What the provider answered while no checkout page could be opened,
    /// as long as the order waits for one.
    fn checkout_delay(&self) -> Option<String> {
        if self.status != OrderStatus::Reserved || self.checkout_url.is_some() {
            return None;
        }
        self.timeline
            .iter()
            .rev()
            .find(|entry| entry.event == TimelineEvent::CheckoutDelayed)
            .map(|entry| entry.detail.clone().unwrap_or_default())
    }

    /// Where the refund of a late payment stands, read from the timeline,
    /// while it has not gone through.
    fn refund_state(&self) -> Option<RefundState> {
        if self.refunded {
            return None;
        }
        let mut state = None;
        for entry in &self.timeline {
            state = match entry.event {
                TimelineEvent::RefundRequested => Some(RefundState::Pending { reason: None }),
                TimelineEvent::RefundRefused => Some(RefundState::Pending {
                    reason: entry.detail.clone(),
                }),
                TimelineEvent::RefundFailed => Some(RefundState::Failed {
                    reason: entry.detail.clone().unwrap_or_default(),
                }),
                TimelineEvent::Refunded => None,
                _ => state,
            };
        }
        state
    }

    /// The customer cancels.
    pub fn cancel_by_customer(&mut self, customer_id: Uuid, now: Timestamp) -> Decision {
        if customer_id != self.customer_id {
            return Decision::Refused(Refusal::NotOwner);
        }
        self.cancel(CancelReason::ByCustomer, now)
    }

    /// When the deadline sweep acts on this order next: its pay-until
    /// deadline, then the end of its grace period. `None` once it is not
    /// RESERVED.
    pub fn due_at(&self) -> Option<Timestamp> {
        if self.status != OrderStatus::Reserved {
            return None;
        }
        self.settle_by.or(self.pay_until)
    }

    /// The deadline sweep's decision at `now`.
    ///
    /// - The pay-until deadline passed and a checkout session was offered:
    ///   the payment service is asked to close it ([`PaymentCommand::ExpireCheckout`]);
    ///   a payment made in time may settle until `now + grace`.
    /// - It passed and no session was ever offered (the provider was
    ///   unavailable throughout): cancelled, `PROVIDER_UNAVAILABLE`.
    /// - The grace period ran out without news of the session: cancelled,
    ///   `NOT_PAID`; the session is closed, and a payment that still
    ///   arrives is refunded.
    pub fn deadline(&mut self, now: Timestamp, grace: Duration) -> Decision {
        if self.status != OrderStatus::Reserved {
            return Decision::Unchanged;
        }
        match (self.settle_by, self.pay_until) {
            (Some(settle_by), _) if settle_by <= now => self.cancel(CancelReason::NotPaid, now),
            (None, Some(deadline)) if deadline <= now => {
                if self.checkout_session_id.is_none() {
                    return self.cancel(CancelReason::ProviderUnavailable, now);
                }
                let settle_by = now.plus(grace);
                self.settle_by = Some(settle_by);
                self.record(
                    now,
                    TimelineEvent::DeadlinePassed,
                    Some(format!(
                        "closing the checkout session; a payment made in time still counts until {settle_by}"
                    )),
                );
                Decision::Changed(vec![Effect::Payment(PaymentCommand::ExpireCheckout(
                    OrderRef { order_id: self.id },
                ))])
            }
            _ => Decision::Unchanged,
        }
    }

    /// The provider confirmed the checkout session closed unpaid: nobody
    /// can pay any more, so the order is cancelled (`NOT_PAID`) and its
    /// stock released.
    pub fn checkout_expired(&mut self, _event: &CheckoutExpired, now: Timestamp) -> Decision {
        if self.status != OrderStatus::Reserved {
            return Decision::Unchanged;
        }
        // The session is closed already; only the stock has to come back.
        self.cancel_with(CancelReason::NotPaid, Session::Closed, now)
    }

    /// Cancels the order; a reserved order's checkout session is closed too.
    fn cancel(&mut self, reason: CancelReason, now: Timestamp) -> Decision {
        self.cancel_with(reason, Session::Open, now)
    }

    /// Cancels the order, releasing its stock, and closing its checkout
    /// session when the order was reserved and `session` is still open.
    fn cancel_with(&mut self, reason: CancelReason, session: Session, now: Timestamp) -> Decision {
        let was = self.status;
        if was.is_final() {
            return Decision::Refused(Refusal::NotCancellable(was));
        }
        self.status = OrderStatus::Cancelled;
        self.cancel_reason = Some(reason);
        self.pay_until = None;
        self.settle_by = None;
        self.record(
            now,
            TimelineEvent::Cancelled,
            Some(reason.describe().to_owned()),
        );
        let order_id = self.id;
        // From NEW the reservation may still be on its way; the release
        // follows it on the same key, so whatever was reserved comes back.
        let mut effects = vec![Effect::Stock(StockCommand::ReleaseStock(OrderRef {
            order_id,
        }))];
        if was == OrderStatus::Reserved && session == Session::Open {
            effects.push(Effect::Payment(PaymentCommand::CancelPayment(OrderRef {
                order_id,
            })));
        }
        Decision::Changed(effects)
    }

    fn record(&mut self, now: Timestamp, event: TimelineEvent, detail: Option<String>) {
        self.updated_at = now;
        self.version += 1;
        self.timeline.push(TimelineEntry {
            at: now,
            event,
            detail,
        });
    }

    /// The order as its customer sees it.
    pub fn view(&self) -> Order {
        Order {
            id: self.id,
            status: self.status,
            cancel_reason: self.cancel_reason,
            lines: self.lines.clone(),
            currency: self.currency,
            total: self.total,
            pay_until: self.pay_until,
            checkout_url: self.checkout_url.clone(),
            refunded: self.refunded,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
            timeline: self.timeline.clone(),
            checkout_delay: self.checkout_delay(),
            refund: self.refund_state(),
        }
    }

    /// The snapshot published on `orders.v1` after every change.
    pub fn state(&self) -> OrderState {
        OrderState {
            customer_id: self.customer_id,
            checkout_session_id: self.checkout_session_id.clone(),
            order: self.view(),
        }
    }
}

#[cfg(test)]
mod tests {
    use shop_shared::events::{LineItem, PricedLine};

    use super::*;

    const TTL: Duration = Duration::from_secs(300);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(1_800_000_000_000 + seconds * 1000)
    }

    fn placed() -> OrderRecord {
        let command = PlaceOrder {
            order_id: Uuid::from_u128(7),
            customer_id: Uuid::from_u128(1),
            idempotency_key: "k".into(),
            lines: vec![
                LineItem {
                    sku: "SKU-001".into(),
                    quantity: 2,
                },
                LineItem {
                    sku: "SKU-002".into(),
                    quantity: 1,
                },
            ],
        };
        OrderRecord::place(&command, at(0)).0
    }

    fn reserved() -> OrderRecord {
        let mut order = placed();
        let decision = order.stock_reserved(&priced(&order), TTL, at(1));
        assert!(matches!(decision, Decision::Changed(_)));
        order
    }

    fn priced(order: &OrderRecord) -> StockReserved {
        StockReserved {
            order_id: order.id,
            currency: Currency::EUR,
            lines: vec![
                PricedLine {
                    sku: "SKU-001".into(),
                    name: "MacBook Pro".into(),
                    quantity: 2,
                    unit_price: 450_000,
                },
                PricedLine {
                    sku: "SKU-002".into(),
                    name: "iPhone 16".into(),
                    quantity: 1,
                    unit_price: 110_000,
                },
            ],
        }
    }

    fn paid_event(order: &OrderRecord) -> PaymentSucceeded {
        PaymentSucceeded {
            order_id: order.id,
            session_id: "cs_1".into(),
            amount: 1_010_000,
            currency: Currency::EUR,
        }
    }

    #[test]
    fn placing_an_order_stores_it_new_and_asks_to_reserve_every_line() {
        let command = PlaceOrder {
            order_id: Uuid::from_u128(7),
            customer_id: Uuid::from_u128(1),
            idempotency_key: "k".into(),
            lines: vec![LineItem {
                sku: "SKU-001".into(),
                quantity: 2,
            }],
        };
        let (order, effects) = OrderRecord::place(&command, at(0));
        assert_eq!(order.status, OrderStatus::New);
        assert_eq!(order.timeline.len(), 1);
        assert_eq!(
            effects,
            vec![Effect::Stock(StockCommand::ReserveStock(ReserveStock {
                order_id: order.id,
                lines: command.lines.clone(),
            }))]
        );
    }

    #[test]
    fn reservation_prices_lines_sets_total_and_deadline_and_asks_for_payment() {
        let mut order = placed();
        let decision = order.stock_reserved(&priced(&order), TTL, at(1));
        assert_eq!(order.status, OrderStatus::Reserved);
        assert_eq!(order.total, Some(2 * 450_000 + 110_000));
        assert_eq!(order.lines[0].amount, Some(900_000));
        assert_eq!(order.lines[1].name.as_deref(), Some("iPhone 16"));
        assert_eq!(order.pay_until, Some(at(301)));
        let Decision::Changed(effects) = decision else {
            panic!("{decision:?}")
        };
        let [Effect::Payment(PaymentCommand::CreatePayment(create))] = effects.as_slice() else {
            panic!("{effects:?}")
        };
        assert_eq!(create.amount, 1_010_000);
        assert_eq!(create.pay_until, at(301));
        assert_eq!(
            order.stock_reserved(&priced(&order), TTL, at(2)),
            Decision::Unchanged
        );
    }

    #[test]
    fn rejected_reservation_cancels_out_of_stock_once() {
        let mut order = placed();
        let rejected = StockRejected {
            order_id: order.id,
            unavailable: vec!["SKU-002".into()],
            withdrawn: Vec::new(),
        };
        assert_eq!(
            order.stock_rejected(&rejected, at(1)),
            Decision::Changed(vec![])
        );
        assert_eq!(order.status, OrderStatus::Cancelled);
        assert_eq!(order.cancel_reason, Some(CancelReason::OutOfStock));
        assert_eq!(order.stock_rejected(&rejected, at(2)), Decision::Unchanged);
    }

    #[test]
    fn an_order_racing_a_withdrawal_is_cancelled_for_that_not_as_sold_out() {
        let mut order = placed();
        let rejected = StockRejected {
            order_id: order.id,
            unavailable: Vec::new(),
            withdrawn: vec!["SKU-002".into()],
        };
        order.stock_rejected(&rejected, at(1));
        assert_eq!(order.cancel_reason, Some(CancelReason::ProductWithdrawn));
        assert_eq!(
            order
                .timeline
                .last()
                .and_then(|entry| entry.detail.as_deref()),
            Some("withdrawn from sale: SKU-002")
        );
    }

    #[test]
    fn paying_a_reserved_order_sells_its_stock() {
        let mut order = reserved();
        let decision = order.payment_succeeded(&paid_event(&order), at(10));
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(
            decision,
            Decision::Changed(vec![Effect::Stock(StockCommand::CommitStock(OrderRef {
                order_id: order.id
            }))])
        );
        assert_eq!(
            order.payment_succeeded(&paid_event(&order), at(11)),
            Decision::Unchanged
        );
        assert_eq!(
            order.cancel_by_customer(order.customer_id, at(12)),
            Decision::Refused(Refusal::NotCancellable(OrderStatus::Paid))
        );
    }

    const GRACE: Duration = Duration::from_secs(60);

    /// A reserved order whose checkout session was offered.
    fn offered() -> OrderRecord {
        let mut order = reserved();
        let ready = CheckoutReady {
            order_id: order.id,
            session_id: "cs_1".into(),
            checkout_url: "https://pay/cs_1".into(),
        };
        assert!(matches!(
            order.checkout_ready(&ready, at(2)),
            Decision::Changed(_)
        ));
        order
    }

    fn expired_event(order: &OrderRecord) -> CheckoutExpired {
        CheckoutExpired {
            order_id: order.id,
            session_id: "cs_1".into(),
        }
    }

    #[test]
    fn given_an_offered_session_when_the_deadline_passes_then_the_session_is_closed_before_anything_is_cancelled()
     {
        let mut order = offered();
        assert_eq!(order.deadline(at(300), GRACE), Decision::Unchanged);
        assert_eq!(order.due_at(), Some(at(301)));
        let decision = order.deadline(at(301), GRACE);
        assert_eq!(
            decision,
            Decision::Changed(vec![Effect::Payment(PaymentCommand::ExpireCheckout(
                OrderRef { order_id: order.id }
            ))])
        );
        assert_eq!(order.status, OrderStatus::Reserved);
        assert_eq!(order.cancel_reason, None);
        assert_eq!(order.due_at(), Some(at(361)));
        assert_eq!(
            order.timeline.last().map(|entry| entry.event),
            Some(TimelineEvent::DeadlinePassed)
        );
        // The sweep finding it again before the grace ends changes nothing.
        assert_eq!(order.deadline(at(330), GRACE), Decision::Unchanged);
    }

    #[test]
    fn given_a_closing_session_when_the_provider_confirms_it_closed_unpaid_then_the_order_is_cancelled_and_its_stock_released()
     {
        let mut order = offered();
        order.deadline(at(301), GRACE);
        let decision = order.checkout_expired(&expired_event(&order), at(302));
        assert_eq!(order.status, OrderStatus::Cancelled);
        assert_eq!(order.cancel_reason, Some(CancelReason::NotPaid));
        assert_eq!(order.due_at(), None);
        assert_eq!(
            decision,
            Decision::Changed(vec![Effect::Stock(StockCommand::ReleaseStock(OrderRef {
                order_id: order.id
            }))])
        );
        assert_eq!(
            order.checkout_expired(&expired_event(&order), at(303)),
            Decision::Unchanged
        );
    }

    #[test]
    fn given_a_closing_session_when_a_payment_made_in_time_arrives_then_the_order_is_paid_and_nothing_refunded()
     {
        let mut order = offered();
        order.deadline(at(301), GRACE);
        let decision = order.payment_succeeded(&paid_event(&order), at(340));
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(
            decision,
            Decision::Changed(vec![Effect::Stock(StockCommand::CommitStock(OrderRef {
                order_id: order.id
            }))])
        );
        assert_eq!(order.due_at(), None);
        assert_eq!(order.deadline(at(400), GRACE), Decision::Unchanged);
    }

    #[test]
    fn given_a_closing_session_when_the_grace_runs_out_then_the_order_is_cancelled_and_the_session_closed()
     {
        let mut order = offered();
        order.deadline(at(301), GRACE);
        assert_eq!(order.deadline(at(360), GRACE), Decision::Unchanged);
        let decision = order.deadline(at(361), GRACE);
        assert_eq!(order.status, OrderStatus::Cancelled);
        assert_eq!(order.cancel_reason, Some(CancelReason::NotPaid));
        assert_eq!(
            decision,
            Decision::Changed(vec![
                Effect::Stock(StockCommand::ReleaseStock(OrderRef { order_id: order.id })),
                Effect::Payment(PaymentCommand::CancelPayment(OrderRef {
                    order_id: order.id
                })),
            ])
        );
    }

    #[test]
    fn given_no_session_ever_offered_when_the_deadline_passes_then_the_reason_says_the_provider_was_unavailable()
     {
        let mut order = reserved();
        let decision = order.deadline(at(301), GRACE);
        assert_eq!(order.status, OrderStatus::Cancelled);
        assert_eq!(order.cancel_reason, Some(CancelReason::ProviderUnavailable));
        assert_eq!(
            decision,
            Decision::Changed(vec![
                Effect::Stock(StockCommand::ReleaseStock(OrderRef { order_id: order.id })),
                Effect::Payment(PaymentCommand::CancelPayment(OrderRef {
                    order_id: order.id
                })),
            ])
        );
    }

    #[test]
    fn payment_after_cancellation_is_refunded_and_the_order_stays_cancelled() {
        let mut order = offered();
        order.deadline(at(301), GRACE);
        order.checkout_expired(&expired_event(&order), at(302));
        let decision = order.payment_succeeded(&paid_event(&order), at(401));
        assert_eq!(order.status, OrderStatus::Cancelled);
        let Decision::Changed(effects) = decision else {
            panic!("{decision:?}")
        };
        assert!(matches!(
            effects.as_slice(),
            [Effect::Payment(PaymentCommand::RefundPayment(_))]
        ));
        let refunded = PaymentRefunded {
            order_id: order.id,
            amount: 1_010_000,
            currency: Currency::EUR,
        };
        assert!(matches!(
            order.payment_refunded(&refunded, at(402)),
            Decision::Changed(_)
        ));
        assert!(order.refunded);
        assert_eq!(
            order.payment_succeeded(&paid_event(&order), at(403)),
            Decision::Unchanged
        );
    }

    #[test]
    fn a_delayed_checkout_is_shown_once_until_the_checkout_page_comes() {
        let mut order = reserved();
        let delayed = CheckoutDelayed {
            order_id: order.id,
            reason: "payment provider unavailable: HTTP 503".into(),
        };
        assert_eq!(
            order.checkout_delayed(&delayed, at(2)),
            Decision::Changed(vec![])
        );
        assert_eq!(
            order.view().checkout_delay.as_deref(),
            Some("payment provider unavailable: HTTP 503")
        );
        assert_eq!(
            order.checkout_delayed(&delayed, at(3)),
            Decision::Unchanged,
            "said once"
        );
        order.checkout_ready(
            &CheckoutReady {
                order_id: order.id,
                session_id: "cs_1".into(),
                checkout_url: "http://x/checkout/cs_1".into(),
            },
            at(4),
        );
        let view = order.view();
        assert_eq!(view.checkout_delay, None);
        assert_eq!(
            view.timeline.last().map(|entry| entry.event),
            Some(TimelineEvent::CheckoutReady)
        );
        // Once cancelled there is nothing to wait for.
        let mut cancelled = reserved();
        cancelled.checkout_delayed(&delayed, at(2));
        cancelled.cancel_by_customer(cancelled.customer_id, at(3));
        assert_eq!(cancelled.view().checkout_delay, None);
    }

    #[test]
    fn a_refused_refund_is_pending_while_retried_failed_when_given_up_and_gone_once_refunded() {
        let mut order = reserved();
        order.cancel_by_customer(order.customer_id, at(400));
        order.payment_succeeded(&paid_event(&order), at(401));
        assert_eq!(
            order.view().refund,
            Some(RefundState::Pending { reason: None })
        );
        let order_id = order.id;
        let refused = |retry_at: Option<Timestamp>| RefundFailed {
            order_id,
            reason: "charge disputed".into(),
            retry_at,
        };
        let retrying = refused(Some(at(402)));
        assert!(matches!(
            order.refund_failed(&retrying, at(401)),
            Decision::Changed(_)
        ));
        assert_eq!(
            order.view().refund,
            Some(RefundState::Pending {
                reason: Some("charge disputed".into())
            })
        );
        let given_up = refused(None);
        order.refund_failed(&given_up, at(500));
        assert_eq!(
            order.view().refund,
            Some(RefundState::Failed {
                reason: "charge disputed".into()
            })
        );
        order.payment_refunded(
            &PaymentRefunded {
                order_id: order.id,
                amount: 1_010_000,
                currency: Currency::EUR,
            },
            at(600),
        );
        let view = order.view();
        assert!(view.refunded);
        assert_eq!(view.refund, None);
        assert_eq!(order.refund_failed(&given_up, at(601)), Decision::Unchanged);
        let events: Vec<_> = view.timeline.iter().map(|entry| entry.event).collect();
        assert_eq!(
            events[events.len() - 4..],
            [
                TimelineEvent::RefundRequested,
                TimelineEvent::RefundRefused,
                TimelineEvent::RefundFailed,
                TimelineEvent::Refunded
            ]
        );
    }

    #[test]
    fn only_the_owner_cancels_and_a_new_order_releases_what_may_be_reserved() {
        let mut order = placed();
        assert_eq!(
            order.cancel_by_customer(Uuid::from_u128(99), at(1)),
            Decision::Refused(Refusal::NotOwner)
        );
        assert_eq!(order.status, OrderStatus::New);
        let decision = order.cancel_by_customer(order.customer_id, at(1));
        assert_eq!(
            decision,
            Decision::Changed(vec![Effect::Stock(StockCommand::ReleaseStock(OrderRef {
                order_id: order.id
            }))])
        );
        assert_eq!(order.cancel_reason, Some(CancelReason::ByCustomer));
        // The reservation that was on its way changes nothing now.
        assert_eq!(
            order.stock_reserved(&priced(&order), TTL, at(2)),
            Decision::Unchanged
        );
    }

    #[test]
    fn failed_payment_cancels_and_releases() {
        let mut order = reserved();
        let failed = PaymentFailed {
            order_id: order.id,
            reason: "card declined".into(),
        };
        let decision = order.payment_failed(&failed, at(5));
        assert_eq!(order.cancel_reason, Some(CancelReason::PaymentFailed));
        assert!(matches!(decision, Decision::Changed(effects) if effects.len() == 1));
    }

    #[test]
    fn every_change_grows_the_version_and_the_timeline() {
        let mut order = reserved();
        let before = order.version;
        order.checkout_ready(
            &CheckoutReady {
                order_id: order.id,
                session_id: "cs_1".into(),
                checkout_url: "http://x/checkout/cs_1".into(),
            },
            at(2),
        );
        assert_eq!(order.version, before + 1);
        let events: Vec<_> = order.timeline.iter().map(|entry| entry.event).collect();
        assert_eq!(
            events,
            vec![
                TimelineEvent::Created,
                TimelineEvent::Reserved,
                TimelineEvent::CheckoutReady
            ]
        );
    }
}
