//! The words both clients show people: an order's status with why it was
//! cancelled, the events of its timeline, and times in the user's own
//! time zone, in words where that reads better ("in 4 min", "today 14:05").
//!
//! `shop` and `shop-tui` use these so that the same order reads the same
//! in both; the wire keeps the internal names (`NOT_PAID`,
//! `checkout_ready`) for scripts.

use shop_shared::domain::{CancelReason, Order, OrderStatus, RefundState, TimelineEvent};
use shop_shared::time::Timestamp;
use time::{OffsetDateTime, UtcOffset};

/// Why an order was cancelled, in a word or two; the long form is
/// [`CancelReason::describe`].
pub fn cancel_reason(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::OutOfStock => "sold out",
        CancelReason::ProductWithdrawn => "withdrawn",
        CancelReason::NotPaid => "unpaid",
        CancelReason::ByCustomer => "by you",
        CancelReason::PaymentFailed => "payment failed",
        CancelReason::ProviderUnavailable => "no checkout",
    }
}

/// An order's status for a table: `PAID`, `CANCELLED (unpaid)`,
/// `CANCELLED (unpaid, refund pending)`, `RESERVED (waiting for provider)`.
pub fn status(order: &Order) -> String {
    match order.status {
        OrderStatus::Cancelled => {
            let mut why: Vec<&str> = order.cancel_reason.map(cancel_reason).into_iter().collect();
            match &order.refund {
                _ if order.refunded => why.push("refunded"),
                Some(RefundState::Pending { .. }) => why.push("refund pending"),
                Some(RefundState::Failed { .. }) => why.push("refund failed"),
                None => {}
            }
            if why.is_empty() {
                "CANCELLED".to_owned()
            } else {
                format!("CANCELLED ({})", why.join(", "))
            }
        }
        OrderStatus::Reserved if order.checkout_delay.is_some() => {
            "RESERVED (waiting for provider)".to_owned()
        }
        status => status.to_string(),
    }
}

/// What happened to an order, for its timeline.
pub fn event(event: TimelineEvent) -> &'static str {
    match event {
        TimelineEvent::Created => "order placed",
        TimelineEvent::Reserved => "items reserved",
        TimelineEvent::CheckoutReady => "checkout page ready",
        TimelineEvent::Paid => "paid",
        TimelineEvent::Cancelled => "cancelled",
        TimelineEvent::Refunded => "payment refunded",
        TimelineEvent::DeadlinePassed => "payment deadline passed",
        TimelineEvent::CheckoutDelayed => "checkout delayed",
        TimelineEvent::RefundRequested => "refund requested",
        TimelineEvent::RefundRefused => "refund refused, retrying",
        TimelineEvent::RefundFailed => "refund failed",
    }
}

/// The detail of a timeline entry, safe to show: every time the shop wrote
/// in RFC 3339 (`pay until 2026-11-18T11:10:39.000Z`, `… still counts until
/// 2026-11-18T11:15:39.000Z`) in `clock`'s zone instead (`pay until today
/// 12:10`).
pub fn detail(text: &str, clock: Clock, now: Timestamp) -> String {
    let words: Vec<String> = text
        .split(' ')
        .map(|word| {
            let bare = word.trim_end_matches([',', ';', '.', ')']);
            match Timestamp::parse(bare) {
                Ok(at) if bare.contains('T') && bare.ends_with('Z') => {
                    format!("{}{}", clock.when(at, now, false), &word[bare.len()..])
                }
                _ => word.to_owned(),
            }
        })
        .collect();
    crate::text::visible(&words.join(" ")).into_owned()
}

/// `in 4 min`, `in 45 s`, `2 min ago`, `now`: how far `at` is from `now`.
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    let ahead = at >= now;
    let seconds = if ahead {
        at.remaining_from(now)
    } else {
        now.remaining_from(at)
    }
    .as_secs();
    let span = match seconds {
        0 => return "now".to_owned(),
        1..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", (seconds + 30) / 60),
        _ => {
            let minutes = (seconds + 30) / 60;
            match minutes % 60 {
                0 => format!("{} h", minutes / 60),
                rest => format!("{} h {rest} min", minutes / 60),
            }
        }
    };
    if ahead {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// The user's time zone, as an offset from UTC read once at start-up.
///
/// The offset comes from the C library (`TZ`, else `/etc/localtime`). It
/// can only be read safely while the process has one thread, so
/// [`Clock::local`] must be called first thing in `main`; when it cannot
/// be read, times are shown in UTC and labelled so. A change of offset
/// while a client runs (summer time) is not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    offset: UtcOffset,
    /// The offset is UTC because the local one was unknown: say so.
    labelled: bool,
}

impl Clock {
    /// The local time zone, or UTC (labelled) when it cannot be read.
    pub fn local() -> Clock {
        match UtcOffset::current_local_offset() {
            Ok(offset) => Clock {
                offset,
                labelled: false,
            },
            Err(_) => Clock {
                offset: UtcOffset::UTC,
                labelled: true,
            },
        }
    }

    /// A zone `seconds` east of UTC (clamped to ±25 h), unlabelled.
    pub fn fixed(seconds: i32) -> Clock {
        Clock {
            offset: UtcOffset::from_whole_seconds(seconds.clamp(-89_999, 89_999))
                .unwrap_or(UtcOffset::UTC),
            labelled: false,
        }
    }

    fn local_time(&self, at: Timestamp) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(at.as_unix_seconds())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(self.offset)
    }

    fn label(&self) -> &'static str {
        if self.labelled { " UTC" } else { "" }
    }

    /// `14:05:07`: the time of day of `at`, for lines that happen now.
    pub fn time_of_day(&self, at: Timestamp) -> String {
        let time = self.local_time(at);
        format!(
            "{:02}:{:02}:{:02}{}",
            time.hour(),
            time.minute(),
            time.second(),
            self.label()
        )
    }

    /// `today 14:05`, `yesterday 23:50`, `tomorrow 00:10`, or
    /// `18 Nov 2026 14:05` further away; seconds with `seconds`.
    pub fn when(&self, at: Timestamp, now: Timestamp, seconds: bool) -> String {
        let time = self.local_time(at);
        let days = (time.date() - self.local_time(now).date()).whole_days();
        let day = match days {
            0 => "today".to_owned(),
            -1 => "yesterday".to_owned(),
            1 => "tomorrow".to_owned(),
            _ => format!(
                "{} {} {}",
                time.day(),
                &time.month().to_string()[..3],
                time.year()
            ),
        };
        let clock = if seconds {
            format!(
                "{:02}:{:02}:{:02}",
                time.hour(),
                time.minute(),
                time.second()
            )
        } else {
            format!("{:02}:{:02}", time.hour(), time.minute())
        };
        format!("{day} {clock}{}", self.label())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2026-11-18 11:06:40 UTC.
    const NOW: Timestamp = Timestamp::from_millis(1_795_000_000_000);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(NOW.as_millis() + seconds * 1000)
    }

    #[test]
    fn relative_times_read_as_words() {
        assert_eq!(relative(at(239), NOW), "in 4 min");
        assert_eq!(relative(at(45), NOW), "in 45 s");
        assert_eq!(relative(at(-120), NOW), "2 min ago");
        assert_eq!(relative(NOW.plus(Duration::from_millis(400)), NOW), "now");
        assert_eq!(relative(at(2 * 3600 + 5 * 60), NOW), "in 2 h 5 min");
    }

    #[test]
    fn times_are_in_the_users_zone_and_say_which_day() {
        let paris = Clock::fixed(3600);
        assert_eq!(paris.when(at(0), NOW, false), "today 12:06");
        assert_eq!(paris.time_of_day(at(7)), "12:06:47");
        assert_eq!(paris.when(at(13 * 3600), NOW, false), "tomorrow 01:06");
        assert_eq!(
            Clock::fixed(0).when(at(-12 * 3600), NOW, true),
            "yesterday 23:06:40"
        );
        assert_eq!(paris.when(at(-3 * 86_400), NOW, false), "15 Nov 2026 12:06");
        let unknown = Clock {
            offset: UtcOffset::UTC,
            labelled: true,
        };
        assert_eq!(unknown.when(at(0), NOW, false), "today 11:06 UTC");
    }

    #[test]
    fn cancelled_orders_say_why_in_words() {
        let order: Order = serde_json::from_value(serde_json::json!({
            "id": "0b5e6f1a-7c2d-5e3f-9a4b-6c7d8e9f0a1b", "status": "CANCELLED",
            "cancel_reason": "NOT_PAID", "lines": [], "currency": "EUR", "total": 450000,
            "pay_until": null, "checkout_url": null, "refunded": false,
            "created_at": "2026-11-24T10:00:00.000Z", "updated_at": "2026-11-24T10:00:00.000Z",
            "version": 3, "timeline": []
        }))
        .expect("an order");
        assert_eq!(status(&order), "CANCELLED (unpaid)");
        let mut pending = order.clone();
        pending.refund = Some(RefundState::Pending { reason: None });
        assert_eq!(status(&pending), "CANCELLED (unpaid, refund pending)");
        assert_eq!(event(TimelineEvent::CheckoutReady), "checkout page ready");
    }

    #[test]
    fn details_show_deadlines_in_the_users_zone_and_nothing_raw() {
        let paris = Clock::fixed(3600);
        assert_eq!(
            detail("pay until 2026-11-18T11:10:39.000Z", paris, NOW),
            "pay until today 12:10"
        );
        assert_eq!(
            detail(
                "closing the checkout session; a payment made in time still counts until 2026-11-18T11:15:39.000Z",
                paris,
                NOW
            ),
            "closing the checkout session; a payment made in time still counts until today 12:15"
        );
        assert_eq!(
            detail("card\x1b[31m declined", paris, NOW),
            "card␛[31m declined"
        );
    }
}
