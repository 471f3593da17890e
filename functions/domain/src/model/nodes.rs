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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionQueue {
    /// The highest ticket number issued.
    pub issued: u64,
    /// The highest ticket number admitted to a node.
    pub admitted_through: u64,
    /// When `admitted_through` last moved.
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
            moved_at: now,
            capacity_seen_at: None,
            expires_at: retention::admission_queue_expiry(now),
        }
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
    /// The place numbered `number`, taken now while places up to `admitted_through` were
    /// already let in.
    pub fn taken(room_id: RoomId, number: u64, admitted_through: u64, now: Timestamp) -> Self {
        RoomTicket {
            room_id,
            number,
            first_ahead: number.saturating_sub(admitted_through.saturating_add(1)),
            issued_at: now,
            expires_at: retention::room_ticket_expiry(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

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
