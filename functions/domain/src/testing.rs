//! What the domain's unit tests share: a school morning and scheduled meetings on it.

use crate::{ModeratorId, RoomId, ScheduleId, ScheduledMeeting, Span, Timestamp, retention};
use uuid::Uuid;

/// 2027-03-02 07:00 UTC (08:00 in Berlin), a Tuesday: the first lesson's bell.
pub const BELL: Timestamp = Timestamp::from_secs(1_803_970_800);

/// Scheduled meeting `n` (its own room, one teacher owns them all), scheduled the day before
/// the bell: `expected` participants from `starts_at` for `minutes`.
pub fn scheduled(n: u128, starts_at: Timestamp, minutes: u32, expected: u32) -> ScheduledMeeting {
    ScheduledMeeting {
        id: ScheduleId::from_uuid(Uuid::from_u128(n)),
        room_id: RoomId::from_uuid(Uuid::from_u128(1_000_000 + n)),
        owner: ModeratorId::from_uuid(Uuid::from_u128(2_000_000)),
        starts_at,
        minutes,
        expected_participants: expected,
        created_at: BELL.minus(Span::days(1)),
        expires_at: retention::schedule_expiry(starts_at),
    }
}
