//! Per-customer limits on placing orders, checked by the gateway before a
//! `PlaceOrder` command reaches the bus, so a refused order changes
//! nothing: no order is stored and no stock moves.
//!
//! - The **hold limit** bounds the units one customer holds at once in
//!   unpaid (`NEW` or `RESERVED`) orders. Every gateway instance reads all
//!   of `orders.v1` into its read model, so each one sees a customer's
//!   orders whichever instance placed them; orders this instance has sent
//!   but not yet seen stored count as [`Hold`]s, so concurrent commands on
//!   one instance cannot slip past the limit together.
//! - The **order rate** bounds orders placed per customer per minute, with
//!   `governor`'s keyed GCRA limiter: a burst of the whole minute's quota,
//!   then one more every `60 / rate` seconds. Its state lives in this
//!   instance's memory; [`OrderLimits::forget_idle`] drops the customers
//!   whose quota is full again, so only those who ordered within the last
//!   minute take memory.
//!
//! See `docs/security.md` for what holds across several gateway instances.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use shop_shared::protocol::ErrorCode;
use shop_shared::sync::lock;
use uuid::Uuid;

use super::Refusal;

/// How often [`OrderLimits::forget_idle`] should run.
pub const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

/// The two limits' settings; `None` switches a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Most units one customer may hold in unpaid orders at once.
    pub hold_limit: Option<NonZeroU32>,
    /// Most orders one customer may place per minute (on one gateway).
    pub orders_per_minute: Option<NonZeroU32>,
}

type Limiter<C> =
    RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limits of one gateway instance. Shared by its connections.
pub struct OrderLimits<C: Clock = DefaultClock> {
    hold_limit: Option<u64>,
    /// Units of orders sent to the order service and not yet in the read
    /// model, per customer; an entry lives only while such an order does.
    pending: Mutex<HashMap<Uuid, u64>>,
    rate: Option<(NonZeroU32, Limiter<C>)>,
}

impl OrderLimits<DefaultClock> {
    pub fn new(settings: LimitSettings) -> Self {
        OrderLimits::with_clock(settings, DefaultClock::default())
    }
}

impl<C: Clock> OrderLimits<C> {
    /// Limits that read the time from `clock` (tests pass a fake one).
    pub fn with_clock(settings: LimitSettings, clock: C) -> Self {
        OrderLimits {
            hold_limit: settings.hold_limit.map(|limit| u64::from(limit.get())),
            pending: Mutex::default(),
            rate: settings.orders_per_minute.map(|rate| {
                let limiter = RateLimiter::new(
                    Quota::per_minute(rate),
                    DefaultKeyedStateStore::default(),
                    clock,
                );
                (rate, limiter)
            }),
        }
    }

    /// Whether a hold limit applies: without one, what a customer holds
    /// need not be counted.
    pub fn limits_holdings(&self) -> bool {
        self.hold_limit.is_some()
    }

    /// Admits an order of `units` units by `customer`, who holds `held`
    /// units in unpaid orders the read model knows of: counts it against
    /// both limits. The returned [`Hold`] keeps its units counted until
    /// dropped, which the caller does once the order is in the read model
    /// (or was never stored).
    ///
    /// # Errors
    ///
    /// `hold_limit` when `held`, the units of this customer's orders in
    /// flight and `units` add up to more than the hold limit; `rate_limited`
    /// when the customer has used this minute's orders, with the seconds to
    /// wait. A refused order counts against neither limit.
    pub fn admit(&self, customer: Uuid, held: u64, units: u64) -> Result<Hold<'_, C>, Refusal> {
        let hold = self.hold(customer, held, units)?;
        if let Some((rate, limiter)) = &self.rate
            && let Err(not_until) = limiter.check_key(&customer)
        {
            let wait = not_until.wait_time_from(limiter.clock().now());
            // Whole seconds, rounded up: "0 seconds" would be a lie.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(Refusal::new(
                ErrorCode::RateLimited,
                format!(
                    "a customer may place at most {rate} orders a minute; wait {seconds} s \
                     and place the order again"
                ),
            ));
        }
        Ok(hold)
    }

    fn hold(&self, customer: Uuid, held: u64, units: u64) -> Result<Hold<'_, C>, Refusal> {
        if let Some(limit) = self.hold_limit {
            let mut pending = lock(&self.pending);
            let held = held + pending.get(&customer).copied().unwrap_or(0);
            if held.saturating_add(units) > limit {
                let room = limit.saturating_sub(held);
                return Err(Refusal::new(
                    ErrorCode::HoldLimit,
                    format!(
                        "a customer may hold at most {limit} units in unpaid orders at once; \
                         you hold {held}, so this order of {units} would go {over} over \
                         ({room} more fit). Pay or cancel an unpaid order, or order fewer units",
                        over = held + units - limit,
                    ),
                ));
            }
            *pending.entry(customer).or_insert(0) += units;
        }
        Ok(Hold {
            limits: self,
            customer,
            units: if self.hold_limit.is_some() { units } else { 0 },
        })
    }

    /// Forgets the customers whose order rate is back to a full minute's
    /// quota: they are indistinguishable from customers never seen, so the
    /// limiter holds only those who ordered within the last minute.
    pub fn forget_idle(&self) {
        if let Some((_, limiter)) = &self.rate {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Customers the rate limiter holds state for.
    pub fn rate_limited_customers(&self) -> usize {
        self.rate.as_ref().map_or(0, |(_, limiter)| limiter.len())
    }

    /// Customers with orders in flight, counted against the hold limit.
    pub fn customers_in_flight(&self) -> usize {
        lock(&self.pending).len()
    }
}

/// An admitted order's units, counted against its customer's hold limit
/// until dropped.
pub struct Hold<'a, C: Clock = DefaultClock> {
    limits: &'a OrderLimits<C>,
    customer: Uuid,
    units: u64,
}

impl<C: Clock> Drop for Hold<'_, C> {
    fn drop(&mut self) {
        if self.units == 0 {
            return;
        }
        let mut pending = lock(&self.limits.pending);
        if let Some(units) = pending.get_mut(&self.customer) {
            *units = units.saturating_sub(self.units);
            if *units == 0 {
                pending.remove(&self.customer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limits(hold: u32, rate: u32) -> (OrderLimits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let settings = LimitSettings {
            hold_limit: NonZeroU32::new(hold),
            orders_per_minute: NonZeroU32::new(rate),
        };
        (OrderLimits::with_clock(settings, clock.clone()), clock)
    }

    fn code<T>(result: Result<T, Refusal>) -> Option<ErrorCode> {
        result.err().map(|refusal| refusal.code)
    }

    #[test]
    fn orders_in_flight_count_against_the_hold_limit_until_dropped() {
        let (limits, _) = limits(10, 0);
        let alice = Uuid::from_u128(1);
        let first = limits.admit(alice, 2, 5).expect("7 of 10");
        assert_eq!(
            code(limits.admit(alice, 2, 4)),
            Some(ErrorCode::HoldLimit),
            "2 held + 5 in flight + 4 > 10"
        );
        let second = limits.admit(alice, 2, 3).expect("exactly 10");
        assert!(
            limits.admit(Uuid::from_u128(2), 0, 10).is_ok(),
            "another customer's hold is their own"
        );
        drop((first, second));
        assert_eq!(
            limits.customers_in_flight(),
            0,
            "no entry outlives its orders"
        );
        assert!(limits.admit(alice, 2, 8).is_ok());
    }

    #[test]
    fn the_hold_refusal_says_the_limit_what_is_held_and_how_to_get_under_it() {
        let (limits, _) = limits(100, 0);
        let refusal = limits
            .admit(Uuid::from_u128(1), 90, 20)
            .err()
            .expect("110 > 100");
        assert_eq!(
            refusal.message,
            "a customer may hold at most 100 units in unpaid orders at once; you hold 90, \
             so this order of 20 would go 10 over (10 more fit). Pay or cancel an unpaid \
             order, or order fewer units"
        );
    }

    #[test]
    fn the_rate_limit_refuses_past_a_minutes_quota_and_says_how_long_to_wait() {
        let (limits, clock) = limits(0, 3);
        let alice = Uuid::from_u128(1);
        for _ in 0..3 {
            drop(limits.admit(alice, 0, 1).expect("within the quota"));
        }
        let refusal = limits.admit(alice, 0, 1).err().expect("a fourth order");
        assert_eq!(refusal.code, ErrorCode::RateLimited);
        assert_eq!(
            refusal.message,
            "a customer may place at most 3 orders a minute; wait 20 s and place the order again"
        );
        assert!(
            limits.admit(Uuid::from_u128(2), 0, 1).is_ok(),
            "another customer has a quota of their own"
        );
        clock.advance(Duration::from_secs(20));
        assert!(limits.admit(alice, 0, 1).is_ok(), "one more after 60 / 3 s");
    }

    #[test]
    fn a_refused_order_uses_no_quota() {
        let (limits, _) = limits(5, 1);
        let alice = Uuid::from_u128(1);
        assert_eq!(code(limits.admit(alice, 5, 1)), Some(ErrorCode::HoldLimit));
        assert!(limits.admit(alice, 0, 1).is_ok(), "the quota was unused");
        assert_eq!(
            code(limits.admit(alice, 0, 1)),
            Some(ErrorCode::RateLimited)
        );
        assert_eq!(
            code(limits.admit(alice, 0, 5)),
            Some(ErrorCode::RateLimited),
            "5 units fit the hold limit: the refusals before released theirs"
        );
        assert_eq!(limits.customers_in_flight(), 0);
    }

    #[test]
    fn customers_who_stopped_ordering_are_forgotten() {
        let (limits, clock) = limits(0, 30);
        for n in 0..1_000 {
            drop(limits.admit(Uuid::from_u128(n), 0, 1).expect("first order"));
        }
        let busy = Uuid::from_u128(5_000);
        for _ in 0..30 {
            drop(limits.admit(busy, 0, 1).expect("within the quota"));
        }
        assert_eq!(limits.rate_limited_customers(), 1_001);
        clock.advance(Duration::from_secs(59));
        limits.forget_idle();
        assert_eq!(
            limits.rate_limited_customers(),
            1,
            "only the customer still short of a full quota is kept"
        );
        clock.advance(Duration::from_secs(60));
        limits.forget_idle();
        assert_eq!(limits.rate_limited_customers(), 0);
    }

    #[test]
    fn limits_switched_off_refuse_nothing() {
        let (limits, _) = limits(0, 0);
        for _ in 0..100 {
            assert!(limits.admit(Uuid::from_u128(1), 1_000_000, 1_000).is_ok());
        }
        assert_eq!(limits.customers_in_flight(), 0);
    }
}
