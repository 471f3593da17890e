//! How long each kind of data lives, as promised in the privacy notice (BRIEF promise 7).
//! Every expiring record carries the instant computed here; stores never serve a record
//! at or after that instant, whether or not they have physically deleted it yet.

use crate::{Expiry, Span, Timestamp};

/// History data (chats, meetings, rooms and guests unused): 6 months, counted as 183 days
/// so the figure is the same in every month and for every store.
pub const HISTORY: Span = Span::days(183);

/// A room in use is touched (its six-month expiry pushed on) at most this often, so chatting
/// and guests joining do not write the room every time; the expiry is then at most a day early.
pub const TOUCH_EVERY: Span = Span::days(1);
/// Access-log entries and their archive: 30 days.
pub const ACCESS_LOG: Span = Span::days(30);
/// A data export waiting for download.
pub const EXPORT: Span = Span::days(1);
/// A login session lives this long after it was last renewed (idle timeout).
pub const SESSION: Span = Span::seconds(12 * 3600);
/// The audit log of admin actions: one year, so that actions can be accounted for.
pub const AUDIT: Span = Span::days(365);
/// A room's placement on a media node outlives its last join grant by this much.
pub const PLACEMENT: Span = Span::seconds(12 * 3600);
/// The window of the per-address login limit: its counters live this long.
pub const RATE_WINDOW: Span = Span::seconds(15 * 60);
/// The window of the per-account and per-(account, source) login throttles: a slow
/// attacker's waits keep growing for a day; no counter lives longer.
pub const THROTTLE_WINDOW: Span = Span::days(1);
/// How long a guest's grant (and its cookie) lasts.
pub const GUEST_GRANT: Span = Span::seconds(12 * 3600);
/// How long a browser keeps the known-device cookie after its last login there.
pub const KNOWN_DEVICE: Span = Span::days(90);
/// A media node that stops renewing its heartbeat is considered dead after this.
pub const NODE_HEARTBEAT: Span = Span::seconds(15);
/// A node renews its heartbeat every second; one whose last heartbeat is older than this
/// is presumed dead or hung once a client reports it unreachable (a client's word alone
/// never takes a node with a fresh heartbeat out of service).
pub const NODE_SUSPECT_AFTER: Span = Span::seconds(3);

/// Seats reserved for a room with no meeting on its node go back this long after a seat
/// was last taken. Longer than a join grant lives (2 min), so a node never sees a valid
/// grant whose seat has lapsed.
pub const RESERVATION_LAPSE: Span = Span::seconds(180);

pub fn history_expiry(last_use: Timestamp) -> Expiry {
    Expiry::at(last_use.plus(HISTORY))
}
pub fn access_log_expiry(at: Timestamp) -> Expiry {
    Expiry::at(at.plus(ACCESS_LOG))
}
pub fn export_expiry(at: Timestamp) -> Expiry {
    Expiry::at(at.plus(EXPORT))
}
pub fn session_expiry(at: Timestamp) -> Expiry {
    Expiry::at(at.plus(SESSION))
}
pub fn audit_expiry(at: Timestamp) -> Expiry {
    Expiry::at(at.plus(AUDIT))
}
/// The admission queue's counters live this long after their last change: a queue nobody
/// used for a day starts again from 1.
pub const ADMISSION_QUEUE: Span = Span::days(1);
pub fn admission_queue_expiry(at: Timestamp) -> Expiry {
    Expiry::at(at.plus(ADMISSION_QUEUE))
}
/// A room's place in the queue lapses this long after its pupils last asked (they ask every
/// 2–10 s while they wait): a class that gave up leaves the queue within a minute.
pub const ROOM_TICKET: Span = Span::seconds(60);
pub fn room_ticket_expiry(at: Timestamp) -> Expiry {
    Expiry::at(at.plus(ROOM_TICKET))
}
pub fn placement_expiry(at: Timestamp) -> Expiry {
    Expiry::at(at.plus(PLACEMENT))
}
pub fn rate_expiry(window_start: Timestamp) -> Expiry {
    Expiry::at(window_start.plus(RATE_WINDOW))
}
/// A scheduled meeting is kept this long after it was to end: through its day, for the
/// forecast and for placement, and not longer.
pub const SCHEDULE: Span = Span::days(1);
pub fn schedule_expiry(ends_at: Timestamp) -> Expiry {
    Expiry::at(ends_at.plus(SCHEDULE))
}
pub fn heartbeat_expiry(at: Timestamp) -> Expiry {
    Expiry::at(at.plus(NODE_HEARTBEAT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lives_six_months_to_the_second() {
        let posted = Timestamp::from_secs(1_790_000_000);
        let e = history_expiry(posted);
        assert!(e.is_live_at(posted.plus(HISTORY).minus(Span::seconds(1))));
        assert!(!e.is_live_at(posted.plus(HISTORY).plus(Span::seconds(1))));
        assert_eq!(HISTORY.whole_seconds(), 183 * 86_400);
    }
}
