//! The media fleet as the portal sees it: the registry's nodes, which node each room is
//! placed on with the seats reserved there, and the admission queue rooms wait in when
//! every node is full.

use crate::{Expiry, NodeId, RoomId, Timestamp, retention};
use serde::{Deserialize, Serialize};

/// A media node as the registry knows it. Its record dies seconds after its last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaNode {
    pub id: NodeId,
    /// Where clients reach the node's signalling (e.g. `wss://node-3.example:443`).
    pub address: String,
    /// How many participants the node takes at most.
    pub capacity: u32,
    /// Participants connected, as the node's last heartbeat reported them.
    pub load: u32,
    /// Seats reserved on the node for placed rooms (see [`Placement::seats`]). The store
    /// owns this figure: a heartbeat's `put_node` leaves it as it is, and only reserving
    /// and releasing seats changes it, under the condition that it stays within `capacity`.
    #[serde(default)]
    pub reserved: u32,
    pub last_heartbeat: Timestamp,
    pub expires_at: Expiry,
}

impl MediaNode {
    /// The node's health check: `/healthz` on the host of its signalling address, over
    /// HTTP(S) as the address is WS(S) (nodes and the portal serve both on one listener).
    /// `None` for an address of another scheme.
    pub fn health_url(&self) -> Option<String> {
        let (scheme, rest) = self.address.split_once("://")?;
        let http = match scheme.to_ascii_lowercase().as_str() {
            "ws" => "http",
            "wss" => "https",
            _ => return None,
        };
        let host = rest
            .split(['/', '?', '#'])
            .next()
            .filter(|h| !h.is_empty())?;
        Some(format!("{http}://{host}/healthz"))
    }
}

/// Which media node a room's meetings run on, and the seats reserved for it there. A room
/// stays on its node while that node lives; the record is renewed with every join grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub room_id: RoomId,
    pub node_id: NodeId,
    pub placed_at: Timestamp,
    /// Seats reserved for the room on its node (counted in the node's `reserved`); 0 once
    /// its meeting ended or the reservation lapsed.
    pub seats: u32,
    /// The participants holding one of those seats (a join grant was issued to them), at
    /// most `seats`, in no particular order.
    pub holders: Vec<String>,
    /// When a seat was last taken: a reservation nobody uses lapses after this.
    pub reserved_at: Timestamp,
    pub expires_at: Expiry,
}

/// The admission queue's counters: one record, no personal data. Rooms refused seats
/// because every node is full are numbered in the order they were refused (a
/// [`RoomTicket`] each); the counters say how far the queue has moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionQueue {
    /// The highest ticket number issued.
    pub issued: u64,
    /// The mark: every place up to it has been let in (or was passed over as given up).
    pub admitted_through: u64,
    /// Places above the mark already let in, ascending: a room the window let in before
    /// one ahead of it (several fit at once), or whose classmate had placed it meanwhile.
    /// The mark moves over them once the places before them are let in, so a room let in
    /// early never lets a later room pass one that still waits.
    pub entered: Vec<u64>,
    /// When a place was last let in.
    pub moved_at: Timestamp,
    /// When a waiting pupil first saw a free seat after the mark last moved (earlier than
    /// `moved_at`, or `None`: nobody has since). From then on the front may be rooms whose
    /// pupils gave up.
    pub capacity_seen_at: Option<Timestamp>,
    pub expires_at: Expiry,
}

impl AdmissionQueue {
    /// A queue nobody used: nothing issued, nothing waiting.
    pub fn empty(now: Timestamp) -> Self {
        AdmissionQueue {
            issued: 0,
            admitted_through: 0,
            entered: Vec::new(),
            moved_at: now,
            capacity_seen_at: None,
            expires_at: retention::admission_queue_expiry(now),
        }
    }

    /// Places before `number` not let in yet: rooms that wait (or gave up and have not
    /// lapsed from the count).
    pub fn ahead_of(&self, number: u64) -> u64 {
        let between = number.saturating_sub(self.admitted_through.saturating_add(1));
        let early = self
            .entered
            .iter()
            .filter(|e| **e > self.admitted_through && **e < number)
            .count() as u64;
        between.saturating_sub(early)
    }

    /// Places let in so far: a new place has `issued + 1 - let_in_count() - 1` ahead.
    pub fn let_in_count(&self) -> u64 {
        self.admitted_through
            .saturating_add(self.entered.len() as u64)
    }

    /// The mark and the early places after the room at `number` is let in; `None` if that
    /// changes nothing (it was let in already). `passing`: the room was let in past places
    /// whose rooms stopped asking, so the mark jumps to it and those places are given up.
    pub fn letting_in(&self, number: u64, passing: bool) -> Option<(u64, Vec<u64>)> {
        if number <= self.admitted_through || self.entered.contains(&number) {
            return None;
        }
        let mut entered = self.entered.clone();
        if !passing && number > self.admitted_through.saturating_add(1) {
            let at = entered.partition_point(|e| *e < number);
            entered.insert(at, number);
            return Some((self.admitted_through, entered));
        }
        let mut mark = number;
        entered.retain(|e| *e > mark);
        while entered.first() == Some(&(mark + 1)) {
            mark += 1;
            entered.remove(0);
        }
        Some((mark, entered))
    }
}

/// A room's place in the admission queue: every pupil of the room waits on it, and the
/// whole class enters once the room gets its seats. Lives while its pupils keep asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomTicket {
    pub room_id: RoomId,
    pub number: u64,
    /// How many places lay ahead when it was taken.
    pub first_ahead: u64,
    pub issued_at: Timestamp,
    pub expires_at: Expiry,
}

impl RoomTicket {
    /// The place numbered `number`, taken now while `let_in` places before it had been
    /// let in ([`AdmissionQueue::let_in_count`]).
    pub fn taken(room_id: RoomId, number: u64, let_in: u64, now: Timestamp) -> Self {
        RoomTicket {
            room_id,
            number,
            first_ahead: number.saturating_sub(let_in.saturating_add(1)),
            issued_at: now,
            expires_at: retention::room_ticket_expiry(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn queue(through: u64, entered: &[u64]) -> AdmissionQueue {
        AdmissionQueue {
            issued: 10,
            admitted_through: through,
            entered: entered.to_vec(),
            ..AdmissionQueue::empty(Timestamp::from_millis(0))
        }
    }

    #[test]
    fn a_room_let_in_early_waits_above_the_mark_and_does_not_let_later_rooms_pass_the_front() {
        // Place 3 goes in while 1 and 2 still wait: 4 still has both ahead.
        let q = queue(0, &[]);
        let (mark, entered) = q.letting_in(3, false).expect("changed");
        assert_eq!((mark, entered.clone()), (0, vec![3]));
        let q = queue(mark, &entered);
        assert_eq!(q.ahead_of(4), 2);
        assert_eq!(q.ahead_of(1), 0);
        // 1 goes in: the mark moves to 1; 2 goes in: it moves over 3 too.
        let (mark, entered) = q.letting_in(1, false).expect("changed");
        assert_eq!((mark, entered.clone()), (1, vec![3]));
        let q = queue(mark, &entered);
        assert_eq!(q.ahead_of(4), 1);
        assert_eq!(q.letting_in(2, false), Some((3, vec![])));
        assert_eq!(q.letting_in(3, false), None, "let in already");
    }

    #[test]
    fn a_room_let_in_past_rooms_that_gave_up_moves_the_mark_to_it() {
        let q = queue(2, &[6]);
        assert_eq!(q.letting_in(5, true), Some((6, vec![])));
        assert_eq!(q.letting_in(4, true), Some((4, vec![6])));
        assert_eq!(q.letting_in(2, true), None);
        assert_eq!(q.let_in_count(), 3);
    }

    #[test]
    fn a_nodes_health_check_is_on_the_host_of_its_signalling_address() {
        let node = |address: &str| MediaNode {
            id: NodeId::from_uuid(Uuid::from_u128(1)),
            address: address.into(),
            capacity: 1,
            load: 0,
            reserved: 0,
            last_heartbeat: Timestamp::from_secs(0),
            expires_at: Expiry::at(Timestamp::from_secs(15)),
        };
        assert_eq!(
            node("wss://node-3.media.example/media")
                .health_url()
                .as_deref(),
            Some("https://node-3.media.example/healthz")
        );
        assert_eq!(
            node("ws://127.0.0.1:4711/media").health_url().as_deref(),
            Some("http://127.0.0.1:4711/healthz")
        );
        assert_eq!(
            node("WSS://node.example:8443").health_url().as_deref(),
            Some("https://node.example:8443/healthz")
        );
        assert_eq!(node("https://node.example/media").health_url(), None);
        assert_eq!(node("ws:///media").health_url(), None);
    }
}
