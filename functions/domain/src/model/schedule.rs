//! Scheduled meetings and the forecast types built from them (the arithmetic is in
//! [`crate::services::forecast`]).

use crate::{Expiry, ModeratorId, ParseError, RoomId, ScheduleId, Span, Timestamp};
use serde::{Deserialize, Serialize};

/// The most participants a teacher may announce for one meeting (a node seats 500; a
/// bigger room gets a whole node).
pub const MAX_EXPECTED_PARTICIPANTS: u32 = 1000;

/// Seats placement reserves for a room nothing tells the size of (no scheduled meeting, no
/// setting, no earlier meeting): a class and its teacher. A room the forecast counts is
/// scheduled, so it reserves its announced size instead.
pub const CLASS_SEATS: u32 = 16;

/// Seats a held reservation grows by when every seat is taken and one more comes: an
/// unplanned room of 17 holds 20.
pub const GROW_SEATS: u32 = 4;

/// Checks an announced number of participants (a room's setting or a scheduled meeting's).
pub fn check_expected_participants(n: u32) -> Result<u32, ParseError> {
    if (1..=MAX_EXPECTED_PARTICIPANTS).contains(&n) {
        Ok(n)
    } else {
        Err(ParseError::Invalid {
            field: "expected participants",
            reason: "must be between 1 and 1000",
        })
    }
}

/// A meeting a teacher has scheduled in one of their rooms: when it begins, how long it
/// lasts and how many are expected. Placement reserves that many seats when it begins, and
/// the operator's forecast (and the fleet's scheduled scaling) counts it. No names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduledMeeting {
    pub id: ScheduleId,
    pub room_id: RoomId,
    pub owner: ModeratorId,
    pub starts_at: Timestamp,
    /// How long it is planned to last.
    pub minutes: u32,
    pub expected_participants: u32,
    pub created_at: Timestamp,
    pub expires_at: Expiry,
}

impl ScheduledMeeting {
    /// The shortest and longest meeting one may schedule, and the default (a school lesson).
    pub const MIN_MINUTES: u32 = 5;
    pub const MAX_MINUTES: u32 = 600;
    pub const DEFAULT_MINUTES: u32 = 45;
    /// A meeting's seats are reserved for it from this long before it begins (teachers
    /// open the room early; a class arrives before the bell).
    pub const EARLY: Span = Span::seconds(30 * 60);

    pub fn ends_at(&self) -> Timestamp {
        self.starts_at
            .plus(Span::seconds(i64::from(self.minutes) * 60))
    }

    /// Whether a meeting of the room at `now` is this one: from [`Self::EARLY`] before it
    /// begins until it is to end.
    pub fn covers(&self, now: Timestamp) -> bool {
        self.starts_at.minus(Self::EARLY) <= now && now < self.ends_at()
    }

    /// Checks a planned length in minutes.
    pub fn check_minutes(m: u32) -> Result<u32, ParseError> {
        if (Self::MIN_MINUTES..=Self::MAX_MINUTES).contains(&m) {
            Ok(m)
        } else {
            Err(ParseError::Invalid {
                field: "minutes",
                reason: "must be between 5 and 600",
            })
        }
    }
}

/// How a forecast counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForecastPolicy {
    /// Participants a media node takes at most (`AULA_NODE_CAPACITY`, the fleet's
    /// `NodeCapacity`).
    pub node_capacity: u32,
    /// Nodes kept spare for nodes that drain or fail, as a share in tenths of the nodes the
    /// seats fill (1: a tenth more, as infra/README.md sizes the exam morning).
    pub spare_tenths: u32,
}

impl Default for ForecastPolicy {
    fn default() -> Self {
        ForecastPolicy {
            node_capacity: 500,
            spare_tenths: 1,
        }
    }
}

impl ForecastPolicy {
    /// `filled` nodes and the spare share of them, rounded up.
    pub fn with_spare(&self, filled: u32) -> u32 {
        filled.saturating_add(filled.saturating_mul(self.spare_tenths).div_ceil(10))
    }

    /// Nodes for `rooms` meetings of `seats` each: the forecast's count for them in closed
    /// form (packing rooms of one size puts `capacity / seats` whole rooms on every node),
    /// the one rule infra/README.md sizes a morning with:
    /// `rooms.div_ceil(capacity / seats)` plus a tenth.
    pub fn nodes_for_rooms(&self, rooms: u32, seats: u32) -> u32 {
        let capacity = self.node_capacity.max(1);
        let per_node = capacity / seats.clamp(1, capacity);
        self.with_spare(rooms.div_ceil(per_node))
    }
}

/// One slot of a forecast: what the schedule asks for at some time in `[starts_at,
/// starts_at + slot)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastSlot {
    pub starts_at: Timestamp,
    /// Scheduled meetings on during the slot (or whose seats are reserved already: from
    /// [`ScheduledMeeting::EARLY`] before they begin).
    pub meetings: u32,
    pub expected_participants: u64,
    /// Seats placement reserves for them: each meeting's expected participants, a meeting
    /// bigger than a node taking a whole node (it cannot be split).
    pub seats: u64,
    /// Media nodes that hold those seats (each meeting on one node, packed largest first),
    /// plus the spare share.
    pub nodes: u32,
}
