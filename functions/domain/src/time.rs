//! Time as the domain sees it: instants in milliseconds since the Unix epoch, read through
//! the [`Clock`] port so that tests can move time (an item 6 months + 1 s old must be gone).

use serde::{Deserialize, Serialize};
use std::fmt;

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = i64))]
pub struct Timestamp(i64);

/// A span of time in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(i64);

impl Span {
    pub const MILLISECOND: Span = Span(1);
    pub const fn seconds(s: i64) -> Self {
        Span(s * 1000)
    }
    pub const fn days(d: i64) -> Self {
        Span(d * 24 * 3600 * 1000)
    }
    pub const fn millis(self) -> i64 {
        self.0
    }
    pub const fn whole_seconds(self) -> i64 {
        self.0 / 1000
    }
}

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s * 1000)
    }
    pub const fn millis(self) -> i64 {
        self.0
    }
    /// Whole seconds since the epoch, rounded up, so that an expiry stored as a DynamoDB TTL
    /// (epoch seconds) never falls before the instant it was computed from.
    pub const fn epoch_secs_ceil(self) -> i64 {
        self.0.div_euclid(1000) + if self.0.rem_euclid(1000) > 0 { 1 } else { 0 }
    }
    pub const fn epoch_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    pub const fn plus(self, span: Span) -> Self {
        Timestamp(self.0.saturating_add(span.0))
    }
    pub const fn minus(self, span: Span) -> Self {
        Timestamp(self.0.saturating_sub(span.0))
    }
    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T08:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => format!("@{}ms", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The clock port. Production reads the system clock; tests set the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// An expiry instant: the moment from which a record must never be served again.
/// A record is live strictly before it, expired at and after it. It is kept in whole
/// seconds, rounded up, because that is what DynamoDB's TTL attribute holds; so every store
/// keeps the same value and an expiry is never earlier than the instant it was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = i64))]
pub struct Expiry(i64);

impl Expiry {
    pub const fn at(t: Timestamp) -> Self {
        Expiry(t.epoch_secs_ceil())
    }
    pub const fn from_epoch_secs(secs: i64) -> Self {
        Expiry(secs)
    }
    pub const fn instant(self) -> Timestamp {
        Timestamp::from_secs(self.0)
    }
    pub const fn is_live_at(self, now: Timestamp) -> bool {
        now.millis() < self.0.saturating_mul(1000)
    }
    /// The TTL attribute value: epoch seconds.
    pub const fn epoch_secs(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_is_live_before_and_expired_from_its_instant_on() {
        let e = Expiry::at(Timestamp::from_secs(100));
        assert!(e.is_live_at(Timestamp::from_millis(99_999)));
        assert!(!e.is_live_at(Timestamp::from_secs(100)));
        assert!(!e.is_live_at(Timestamp::from_secs(101)));
    }

    #[test]
    fn ttl_seconds_never_round_an_expiry_earlier() {
        assert_eq!(Expiry::at(Timestamp::from_millis(1_001)).epoch_secs(), 2);
        assert_eq!(Expiry::at(Timestamp::from_millis(1_000)).epoch_secs(), 1);
        assert_eq!(Expiry::at(Timestamp::from_millis(-1)).epoch_secs(), 0);
    }

    #[test]
    fn timestamps_print_as_utc_rfc3339() {
        assert_eq!(
            Timestamp::from_millis(1_795_766_400_123).to_rfc3339(),
            "2026-11-27T08:00:00.123Z"
        );
    }
}
