//! Which media node a room's meetings run on, and a seat there for everyone who gets a join
//! grant. A room's expected size (its scheduled meeting's, its setting, its last meetings'
//! peak, or a default: see [`Seating::expected`]) is reserved on a
//! node when its first grant is issued, in one conditional write with the node's reserved
//! seats, so the reservations on a node never add up to more than its capacity however
//! many grants are issued at once. Every grant takes one of the room's seats (a holder
//! keeps theirs across retries); when all are held the reservation grows if the node has
//! room, and otherwise the caller is refused with `NoCapacity` instead of being handed a
//! node that would turn them away. The node gives the seats back when the meeting ends, or
//! when the reservation lapses unused.
//!
//! A room stays on its node while that node lives; a new room goes to the less loaded of
//! two live nodes picked at random ("power of two random choices"). A client that could not
//! reach its node says so; if that node's heartbeat has also gone quiet for
//! [`retention::NODE_SUSPECT_AFTER`], or its health check goes unanswered (a killed node
//! refuses at once, a hung one times out), the room moves at once instead of waiting until
//! the node's registry entry expires. A node that answers stays: one client's word (its
//! own network may be what failed) takes no healthy node out of service.

use super::{Aula, ServiceError, ServiceResult};
use crate::ports::Reserved;
use crate::retention;
use crate::{MediaNode, Placement, RoomId, Timestamp};

/// How placement sizes reservations and refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementPolicy {
    /// Seats reserved for a room no earlier meeting tells the size of (a class).
    pub default_seats: u32,
    /// Seats a reservation grows by when every seat is held and one more comes.
    pub grow_seats: u32,
    /// What `Retry-After` says when every node is full.
    pub retry_after_secs: u64,
}

impl Default for PlacementPolicy {
    fn default() -> Self {
        PlacementPolicy {
            default_seats: crate::CLASS_SEATS,
            grow_seats: crate::GROW_SEATS,
            retry_after_secs: 15,
        }
    }
}

/// How many earlier meetings' peaks size a room's reservation.
const PEAKS_CONSIDERED: usize = 3;

/// How many random pairs to try before calling the cluster full.
const ATTEMPTS: usize = 4;

/// A node's load as placement sees it: its seats reserved or, if more, its participants
/// connected (participants of a room whose reservation lapsed still count).
fn committed(n: &MediaNode) -> u32 {
    n.reserved.max(n.load)
}

/// Seats not yet committed on the given nodes, summed.
pub(super) fn free_seats(nodes: &[MediaNode]) -> u64 {
    nodes
        .iter()
        .map(|n| u64::from(n.capacity.saturating_sub(committed(n))))
        .sum()
}

/// What placing a room came to.
enum Reservation {
    Placed(MediaNode),
    /// A concurrent request placed the room first, here.
    Taken(Placement),
    /// No node had room for it.
    Full,
}

/// What one admission has read from the store about a room's seating. The queue and
/// placement both need the live nodes, the room's placement and its expected size; a join
/// grant reads each once (the grant is on the path a class waits on at 8:00).
pub(super) struct Seating {
    room: RoomId,
    now: Timestamp,
    /// The room's own setting, carried on the room record the caller has read already.
    setting: Option<u32>,
    nodes: Option<Vec<MediaNode>>,
    placement: Option<Option<Placement>>,
    expected: Option<u32>,
    /// This admission reserved the room's seats (rather than taking one in its placement).
    reserved_here: bool,
}

impl Seating {
    /// `setting`: the room's expected participants as its teacher set them, if any.
    pub(super) fn new(room: RoomId, now: Timestamp, setting: Option<u32>) -> Self {
        Seating {
            room,
            now,
            setting,
            nodes: None,
            placement: None,
            expected: None,
            reserved_here: false,
        }
    }

    /// Reads the live nodes and the room's placement at once (each only if not read yet):
    /// every grant needs both, and the loaded store answers each in a round trip.
    pub(super) async fn read(&mut self, aula: &Aula) -> ServiceResult<()> {
        if self.nodes.is_none() && self.placement.is_none() {
            let (nodes, placement) = futures_util::future::try_join(
                aula.store.live_nodes(self.now),
                aula.store.placement(self.room, self.now),
            )
            .await?;
            self.nodes = Some(nodes);
            self.placement = Some(placement);
        }
        Ok(())
    }

    pub(super) async fn nodes(&mut self, aula: &Aula) -> ServiceResult<&[MediaNode]> {
        if self.nodes.is_none() {
            self.nodes = Some(aula.store.live_nodes(self.now).await?);
        }
        Ok(self.nodes.as_deref().unwrap_or_default())
    }

    /// The room's placement as first read (a concurrent change is found by the write's
    /// condition, after which [`Seating::forget_placement`] makes the next call read again).
    pub(super) async fn placement(&mut self, aula: &Aula) -> ServiceResult<Option<&Placement>> {
        if self.placement.is_none() {
            self.placement = Some(aula.store.placement(self.room, self.now).await?);
        }
        Ok(self.placement.as_ref().and_then(Option::as_ref))
    }

    /// The room's placement as found since the first read: by our refused write (a
    /// concurrent request placed the room) or by reading it again.
    pub(super) fn placement_read(&mut self, p: Option<Placement>) {
        self.placement = Some(p);
    }

    pub(super) fn room(&self) -> RoomId {
        self.room
    }

    /// Whether this admission placed the room (reserved its seats) itself.
    pub(super) fn reserved_here(&self) -> bool {
        self.reserved_here
    }

    /// The seats to reserve for the room: the expected participants of its scheduled
    /// meeting on now (from half an hour before it begins), else what the teacher set for
    /// the room, else the highest peak of its last meetings, else the policy's default.
    /// Read only when a reservation is made (once per meeting), never for a pupil who
    /// takes a seat in one.
    pub(super) async fn expected(
        &mut self,
        aula: &Aula,
        policy: PlacementPolicy,
    ) -> ServiceResult<u32> {
        if let Some(e) = self.expected {
            return Ok(e);
        }
        // Without a setting the last meetings may be needed too: read them alongside.
        let (room, now, setting) = (self.room, self.now, self.setting);
        let (plans, meetings) =
            futures_util::future::try_join(aula.store.scheduled_of_room(room, now), async move {
                match setting {
                    Some(_) => Ok(Vec::new()),
                    None => aula.store.meetings_of(room, now).await,
                }
            })
            .await?;
        if let Some(e) = super::schedule::scheduled_size(&plans, self.now).or(self.setting) {
            let e = e.max(1);
            self.expected = Some(e);
            return Ok(e);
        }
        let peak = meetings
            .iter()
            .filter(|m| m.ended_at.is_some())
            .take(PEAKS_CONSIDERED)
            .map(|m| m.peak_participants)
            .max();
        let e = peak.unwrap_or(policy.default_seats).max(1);
        self.expected = Some(e);
        Ok(e)
    }
}

impl Aula {
    /// The node the room's meetings run on, with a seat there for `holder` (the grant's
    /// participant), placing the room if it has no live node. `unreachable`: the address
    /// of a node the caller could not reach (or that stopped answering); it is passed over
    /// when its heartbeat is quiet too. `NoCapacity` when no seat can be had.
    pub async fn place(
        &self,
        room: RoomId,
        holder: &str,
        policy: PlacementPolicy,
        unreachable: Option<&str>,
    ) -> ServiceResult<MediaNode> {
        let mut seating = Seating::new(room, self.now(), None);
        self.place_seated(&mut seating, holder, policy, unreachable)
            .await
    }

    /// [`Aula::place`] with what the caller has already read.
    #[tracing::instrument(skip_all, fields(room = %seating.room))]
    pub(super) async fn place_seated(
        &self,
        seating: &mut Seating,
        holder: &str,
        policy: PlacementPolicy,
        unreachable: Option<&str>,
    ) -> ServiceResult<MediaNode> {
        let (room, now) = (seating.room, seating.now);
        seating.read(self).await?;
        let mut nodes = seating.nodes(self).await?.to_vec();
        let mut passed_over = None;
        if let Some(address) = unreachable
            && let Some(reported) = nodes.iter().find(|n| n.address == address)
        {
            let gone = if now.minus(retention::NODE_SUSPECT_AFTER) > reported.last_heartbeat {
                tracing::warn!(node = %reported.id, "a client reports the node unreachable and its heartbeat is quiet: passed over");
                true
            } else if !self
                .probe_reading_expected(seating, reported, policy)
                .await?
            {
                tracing::warn!(node = %reported.id, "a client reports the node unreachable and it does not answer its health check: passed over");
                true
            } else {
                tracing::info!(node = %reported.id, "a client reports the node unreachable, but it answers its health check: kept");
                false
            };
            if gone {
                let id = reported.id;
                nodes.retain(|n| n.id != id);
                passed_over = Some(id);
            }
        }
        let full = || {
            tracing::info!("no seat for a join grant: every node is full");
            ServiceError::NoCapacity {
                retry_after_secs: policy.retry_after_secs,
            }
        };
        // A concurrent request may place the room between our read and our write: then its
        // placement is the one to take a seat in, read again.
        let mut refreshed = false;
        for _ in 0..3 {
            let current = seating.placement(self).await?.cloned();
            // Placed meanwhile on a node that registered after our read (the fleet grows
            // at 8:00): read the registry again rather than move the room off it.
            if let Some(p) = &current
                && !refreshed
                && Some(p.node_id) != passed_over
                && !nodes.iter().any(|n| n.id == p.node_id)
            {
                refreshed = true;
                nodes = self.store.live_nodes(now).await?;
                nodes.retain(|n| Some(n.id) != passed_over);
            }
            if let Some(p) = &current
                && let Some(node) = nodes.iter().find(|n| n.id == p.node_id)
            {
                // A released reservation (the last meeting ended) is made again at the
                // room's size; a held one grows by a few seats.
                let grow = if p.seats == 0 {
                    seating.expected(self, policy).await?.min(node.capacity)
                } else {
                    policy.grow_seats
                };
                return if self
                    .store
                    .take_seat(room, node.id, holder, grow, node.capacity, now)
                    .await?
                {
                    Ok(node.clone())
                } else {
                    Err(full())
                };
            }
            let replacing = current.map(|p| p.node_id);
            let expected = seating.expected(self, policy).await?;
            match self
                .reserve_somewhere(room, holder, expected, &nodes, replacing)
                .await?
            {
                Reservation::Placed(node) => {
                    seating.reserved_here = true;
                    return Ok(node);
                }
                // Another grant placed the room first: take a seat in its placement (no
                // second try at placing, which would lose the same way).
                Reservation::Taken(winner) => seating.placement_read(Some(winner)),
                // Every node looked full, perhaps because a classmate's grant placed the
                // room meanwhile (its seats are among those counted): then take one there.
                Reservation::Full => {
                    let now_placed = self.store.placement(room, now).await?;
                    match now_placed {
                        Some(p) if Some(p.node_id) != replacing => seating.placement_read(Some(p)),
                        _ => return Err(full()),
                    }
                }
            }
        }
        Err(ServiceError::Internal("a concurrent placement vanished"))
    }

    /// Whether the reported node answers its health check. The room's expected size is
    /// read meanwhile: a node that does not answer loses the room, which is then placed
    /// at that size elsewhere.
    async fn probe_reading_expected(
        &self,
        seating: &mut Seating,
        reported: &MediaNode,
        policy: PlacementPolicy,
    ) -> ServiceResult<bool> {
        let (answers, expected) = futures_util::future::join(
            self.probe.answers(reported),
            seating.expected(self, policy),
        )
        .await;
        expected?;
        Ok(answers)
    }

    /// Reserves the room's seats on the less loaded of two random nodes with room for them,
    /// trying a few pairs.
    async fn reserve_somewhere(
        &self,
        room: RoomId,
        holder: &str,
        expected: u32,
        nodes: &[MediaNode],
        replacing: Option<crate::NodeId>,
    ) -> ServiceResult<Reservation> {
        let now = self.now();
        // A room bigger than a node gets a whole node; it cannot be split. A node without a
        // seat (a portal whose in-process node takes no rooms registers with capacity 0) is
        // never open: a reservation of no seats there would fit, and nobody could join.
        let seats_on = |n: &MediaNode| expected.min(n.capacity);
        let mut known = nodes.to_vec();
        for attempt in 0..ATTEMPTS {
            let open: Vec<&MediaNode> = known
                .iter()
                .filter(|n| {
                    seats_on(n) > 0
                        && u64::from(committed(n)) + u64::from(seats_on(n)) <= u64::from(n.capacity)
                })
                .collect();
            let Some((a, b)) = self.two_of(open.len()) else {
                break;
            };
            let (x, y) = (open[a], open[b]);
            let node = if committed(y) < committed(x) { y } else { x };
            let placement = Placement {
                room_id: room,
                node_id: node.id,
                placed_at: now,
                seats: seats_on(node),
                holders: vec![holder.to_owned()],
                reserved_at: now,
                expires_at: retention::placement_expiry(now),
            };
            match self
                .store
                .reserve(&placement, node.capacity, replacing, now)
                .await?
            {
                Reserved::Placed => {
                    tracing::info!(node = %node.id, seats = placement.seats, "room placed");
                    return Ok(Reservation::Placed(node.clone()));
                }
                Reserved::Taken(winner) => return Ok(Reservation::Taken(winner)),
                // The registry's figure was behind a concurrent reservation: read the
                // nodes' seats again (only those the caller may use) and pick another pair.
                Reserved::NodeFull => {
                    tracing::debug!(attempt, node = %node.id, "the node filled up meanwhile");
                    known = self
                        .store
                        .live_nodes(now)
                        .await?
                        .into_iter()
                        .filter(|n| nodes.iter().any(|o| o.id == n.id))
                        .collect();
                }
            }
        }
        tracing::warn!(nodes = nodes.len(), "no media node can take a new room");
        Ok(Reservation::Full)
    }

    /// Two different indices below `n` (the same one twice when `n` is 1), or `None`.
    fn two_of(&self, n: usize) -> Option<(usize, usize)> {
        if n == 0 {
            return None;
        }
        let r = self.ids.random_16();
        let x = u64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]);
        let y = u64::from_le_bytes([r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]]);
        let n64 = n as u64;
        let a = (x % n64) as usize;
        if n == 1 {
            return Some((0, 0));
        }
        // The second pick skips the first, so the two are always different.
        let b = ((a as u64 + 1 + y % (n64 - 1)) % n64) as usize;
        Some((a, b))
    }
}
