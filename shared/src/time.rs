//! Points in time: milliseconds since the Unix epoch inside the system,
//! RFC 3339 strings (`2026-11-24T10:00:00.000Z`) on every wire.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with millisecond precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, rounded down: how Stripe writes
    /// times (`created`, `expires_at`, the `t=` of a webhook signature).
    pub const fn as_unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The instant `seconds` after the Unix epoch.
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Timestamp(seconds.saturating_mul(1000))
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.max(0) as u64)
    }

    /// This instant moved forward by `duration`, saturating.
    pub fn plus(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// How long from `now` until this instant; zero once it has passed.
    pub fn remaining_from(self, now: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(now.0).max(0) as u64)
    }

    /// Reads an RFC 3339 timestamp (`2026-11-24T10:00:00Z`, with or without
    /// fractions of a second).
    ///
    /// # Errors
    ///
    /// [`TimestampError`] when the text is not an RFC 3339 timestamp.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        humantime::parse_rfc3339_weak(text.trim_end_matches('Z').trim_end_matches('z'))
            .map(Timestamp::from)
            .map_err(|_| TimestampError(text.to_owned()))
    }
}

/// Time left before `deadline` as a clock: `4:59`, `1:02:03`, or
/// `expired`. The last second shows as `0:01`, not `0:00`.
pub fn countdown(deadline: Timestamp, now: Timestamp) -> String {
    let left = deadline.remaining_from(now);
    if left.is_zero() {
        return "expired".to_owned();
    }
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

/// A string that is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 timestamp such as 2026-11-24T10:00:00Z")]
pub struct TimestampError(String);

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let millis = match time.duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Timestamp(millis)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_round_down_and_come_back_whole() {
        assert_eq!(
            Timestamp::from_millis(1_795_000_000_999).as_unix_seconds(),
            1_795_000_000
        );
        assert_eq!(Timestamp::from_millis(-1).as_unix_seconds(), -1);
        assert_eq!(
            Timestamp::from_unix_seconds(1_795_000_000),
            Timestamp::from_millis(1_795_000_000_000)
        );
    }

    #[test]
    fn round_trips_through_rfc3339_with_milliseconds() {
        let stamp = Timestamp::from_millis(1_795_000_000_123);
        let text = stamp.to_string();
        assert_eq!(text, "2026-11-18T11:06:40.123Z");
        assert_eq!(Timestamp::parse(&text), Ok(stamp));
        let json = serde_json::to_string(&stamp).expect("serializes");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).ok(), Some(stamp));
    }

    #[test]
    fn remaining_time_never_goes_negative() {
        let now = Timestamp::from_millis(10_000);
        assert_eq!(
            Timestamp::from_millis(12_500).remaining_from(now),
            Duration::from_millis(2_500)
        );
        assert_eq!(
            Timestamp::from_millis(9_000).remaining_from(now),
            Duration::ZERO
        );
    }

    #[test]
    fn countdowns_read_like_clocks() {
        let now = Timestamp::from_millis(1_000_000);
        assert_eq!(countdown(now.plus(Duration::from_secs(299)), now), "4:59");
        assert_eq!(
            countdown(now.plus(Duration::from_millis(300_500)), now),
            "5:01"
        );
        assert_eq!(
            countdown(now.plus(Duration::from_secs(3723)), now),
            "1:02:03"
        );
        assert_eq!(countdown(now, now), "expired");
    }

    #[test]
    fn refuses_text_that_is_not_a_timestamp() {
        assert!(Timestamp::parse("yesterday").is_err());
        assert!(serde_json::from_str::<Timestamp>("\"2026-13-01T00:00:00Z\"").is_err());
    }
}
