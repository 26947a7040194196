//! `--orders FILE`: one CSV line per measured order that reached RESERVED,
//! to see where the slow ones waited. Each line says when the order was
//! due and how long after that the backend stamped it created, reserved and
//! checkout ready (the first entries of its timeline) and the customer saw
//! it.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use shop_shared::domain::{Order, TimelineEvent};
use tokio::time::Instant;

/// The columns of the file.
pub const HEADER: &str = "due_ms,created_ms,reserved_ms,checkout_ready_ms,seen_ms";

/// When the backend stamped an order's first steps: its wall clock, in
/// milliseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamps {
    pub created: Option<i64>,
    pub reserved: Option<i64>,
    pub checkout_ready: Option<i64>,
}

impl Stamps {
    pub fn of(order: &Order) -> Stamps {
        let first = |event: TimelineEvent| {
            order
                .timeline
                .iter()
                .find(|entry| entry.event == event)
                .map(|entry| entry.at.as_millis())
        };
        Stamps {
            created: first(TimelineEvent::Created),
            reserved: first(TimelineEvent::Reserved),
            checkout_ready: first(TimelineEvent::CheckoutReady),
        }
    }
}

/// One order's way to RESERVED.
#[derive(Debug, Clone)]
pub struct Trace {
    pub due: Instant,
    pub seen: Instant,
    pub stamps: Stamps,
}

/// The wall clock read together with the monotonic one, to set the
/// backend's stamps beside this process's instants.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    wall_ms: f64,
}

impl Clock {
    pub fn now() -> Clock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            instant: Instant::now(),
            wall_ms: wall.as_secs_f64() * 1000.0,
        }
    }

    /// `instant` on the wall clock, in milliseconds since the epoch.
    fn wall_ms(&self, instant: Instant) -> f64 {
        self.wall_ms + millis_between(self.instant, instant)
    }
}

/// Milliseconds from `from` to `to`, negative when `to` is earlier.
fn millis_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1000.0
    } else {
        -((from - to).as_secs_f64() * 1000.0)
    }
}

/// Writes `traces` as CSV, the earliest due first: `due_ms` counts from
/// `start`, every other column from when the order was due. The backend's
/// stamps are whole milliseconds of its own clock: they line up with this
/// one to a millisecond when both run on one machine.
pub fn write(
    out: &mut impl Write,
    traces: &mut [Trace],
    start: Instant,
    clock: Clock,
) -> io::Result<()> {
    traces.sort_by_key(|trace| trace.due);
    writeln!(out, "{HEADER}")?;
    for trace in traces.iter() {
        let due_wall = clock.wall_ms(trace.due);
        let after = |stamp: Option<i64>| {
            stamp.map_or_else(String::new, |ms| format!("{:.1}", ms as f64 - due_wall))
        };
        writeln!(
            out,
            "{:.1},{},{},{},{:.1}",
            millis_between(start, trace.due),
            after(trace.stamps.created),
            after(trace.stamps.reserved),
            after(trace.stamps.checkout_ready),
            millis_between(trace.due, trace.seen),
        )?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_are_in_due_order_and_count_from_when_each_order_was_due() {
        let clock = Clock::now();
        let start = clock.instant;
        let at = |ms: u64| start + Duration::from_millis(ms);
        let wall = |ms: u64| (clock.wall_ms + ms as f64).round() as i64;
        let mut traces = vec![
            Trace {
                due: at(20),
                seen: at(27),
                stamps: Stamps {
                    created: Some(wall(21)),
                    reserved: Some(wall(23)),
                    checkout_ready: Some(wall(25)),
                },
            },
            Trace {
                due: at(10),
                seen: at(15),
                stamps: Stamps::default(),
            },
        ];
        let mut out = Vec::new();
        write(&mut out, &mut traces, start, clock).expect("written");
        let text = String::from_utf8(out).expect("UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines[1], "10.0,,,,5.0");
        let second: Vec<f64> = lines[2]
            .split(',')
            .map(|field| field.parse().expect("number"))
            .collect();
        assert_eq!(second[0], 20.0);
        // The stamps are whole milliseconds: within one of the truth.
        for (column, expected) in [(1, 1.0), (2, 3.0), (3, 5.0)] {
            assert!(
                (second[column] - expected).abs() <= 1.0,
                "column {column}: {text}"
            );
        }
        assert_eq!(second[4], 7.0);
    }
}
