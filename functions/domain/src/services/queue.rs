//! The admission queue: when every media node is full, a class gets a numbered place
//! instead of a refusal, and the class refused first enters first when seats free up.
//!
//! The unit that needs capacity is a room (its reservation), so the queue holds rooms: the
//! first pupil of a room refused a seat takes the room's place ([`RoomTicket`]), classmates
//! arriving later wait on the same place, and when the room gets its seats the whole class
//! enters through them. The store keeps two counters (places handed out, and the mark up
//! to which every place was let in) with the few places above the mark let in early, and
//! one small record per waiting room; a poll reads them and writes nothing unless the
//! room's place needs renewing.
//!
//! A room may try for seats once fewer places lie ahead of it than rooms of its size fit in
//! the free seats, so several may go in at once and out of order; one let in early is
//! noted above the mark, and the mark moves over it only once every place before it is in,
//! so a later room never passes one that still waits. A class that gave up leaves a gap:
//! a free seat nobody in the window takes for [`STALL`] widens the window again, and a
//! room let in through the widened part moves the mark past the gap.
//!
//! Teachers never queue behind pupils: a moderator asks for seats directly (the room's
//! reservation is normally made with the teacher's grant), and so does a pupil whose room
//! already holds a seat for them or has one free: neither takes a seat another room waits for.

use super::{Aula, PlacementPolicy, ServiceError, ServiceResult};
use crate::services::placement::{Seating, free_seats};
use crate::{MediaNode, Placement, RoomId, RoomTicket, Span, Timestamp};

/// A free seat the front does not take for this long means rooms at the front were
/// abandoned: the front asks every [`FRONT_POLL_SECS`] seconds, so this is several polls.
pub const STALL: Span = Span::seconds(8);

/// How often the front of the queue asks again.
pub const FRONT_POLL_SECS: u64 = 2;

/// How often the back of the queue asks again (the farther back, the rarer, up to this).
pub const BACK_POLL_SECS: u64 = 10;

/// What a pupil (or teacher) waiting for a seat is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// The room's place number; `None` for a teacher, who asks again without queueing.
    pub ticket: Option<u64>,
    /// 1 at the front. Rooms that gave up count until their place lapses, so this is at
    /// most the true position.
    pub position: u64,
    /// Seconds until the room gets its seats, at the pace its place has moved so far;
    /// `None` until it has moved.
    pub estimate_secs: Option<u64>,
    /// When to ask again (the client spreads it further).
    pub retry_after_secs: u64,
}

/// Seats on a node, or a place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Placed(MediaNode),
    Queued(Queued),
}

impl Aula {
    /// A seat for `holder` on the node of `room`, or the room's place in the queue.
    /// `moderator`: the room's teacher. `expected`: the room's expected participants as
    /// its settings say (from the room record the grant has read).
    pub async fn admit(
        &self,
        room: RoomId,
        holder: &str,
        moderator: bool,
        expected: Option<u32>,
        policy: PlacementPolicy,
        unreachable: Option<&str>,
    ) -> ServiceResult<Entry> {
        let now = self.now();
        let mut seating = Seating::new(room, now, expected);
        seating.read(self).await?;
        let holds_seat = !moderator && has_seat_for(seating.placement(self).await?, holder);
        if moderator || holds_seat {
            match self
                .place_seated(&mut seating, holder, policy, unreachable)
                .await
            {
                Ok(node) => {
                    self.placed_anew(&seating, now).await?;
                    return Ok(Entry::Placed(node));
                }
                Err(ServiceError::NoCapacity { .. }) if moderator => {
                    return Ok(Entry::Queued(Queued {
                        ticket: None,
                        position: 1,
                        estimate_secs: None,
                        retry_after_secs: FRONT_POLL_SECS,
                    }));
                }
                Err(ServiceError::NoCapacity { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let queue = self.store.admission_queue(now).await?;
        let ticket = match self.store.room_ticket(room, now).await? {
            Some(t) => t,
            None => {
                // Nobody waiting: try at once, and queue only if refused.
                if queue.issued <= queue.admitted_through {
                    match self
                        .place_seated(&mut seating, holder, policy, unreachable)
                        .await
                    {
                        Ok(node) => {
                            self.placed_anew(&seating, now).await?;
                            return Ok(Entry::Placed(node));
                        }
                        Err(ServiceError::NoCapacity { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                let t = self
                    .store
                    .take_room_ticket(room, queue.let_in_count(), now)
                    .await?;
                // A classmate may have placed the room since we read it (its grant read the
                // queue empty): then the class is in, and the place is let go at once.
                let fresh = self.store.placement(room, now).await?;
                if has_seat_for(fresh.as_ref(), holder) {
                    seating.placement_read(fresh);
                    match self
                        .place_seated(&mut seating, holder, policy, unreachable)
                        .await
                    {
                        Ok(node) => {
                            self.store.room_admitted(&t, false, now).await?;
                            return Ok(Entry::Placed(node));
                        }
                        Err(ServiceError::NoCapacity { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                tracing::info!(room = %room, place = t.number, "room queued for seats");
                t
            }
        };
        let ahead = queue.ahead_of(ticket.number);
        let nodes = seating.nodes(self).await?;
        let free = free_seats(nodes);
        // A room bigger than a node gets a whole node (placement never splits it).
        let largest = nodes.iter().map(|n| n.capacity).max().unwrap_or(0);
        let size = u64::from(seating.expected(self, policy).await?.min(largest)).max(1);
        if free >= size {
            let seen = queue.capacity_seen_at.filter(|at| *at >= queue.moved_at);
            if seen.is_none() {
                self.store.capacity_seen(now).await?;
            }
            let stalls = seen.map_or(0, |at| {
                u64::try_from((now.millis() - at.millis()) / STALL.millis()).unwrap_or(0)
            });
            let fit = free / size;
            let window = fit.saturating_mul(1 + stalls);
            if ahead < window {
                match self
                    .place_seated(&mut seating, holder, policy, unreachable)
                    .await
                {
                    Ok(node) => {
                        // Let in past rooms ahead only because they let free seats stand.
                        let passing = ahead >= fit;
                        self.store.room_admitted(&ticket, passing, now).await?;
                        tracing::info!(room = %room, place = ticket.number, "room admitted from the queue");
                        return Ok(Entry::Placed(node));
                    }
                    Err(ServiceError::NoCapacity { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Entry::Queued(Queued {
            ticket: Some(ticket.number),
            position: ahead + 1,
            estimate_secs: estimate(&ticket, ahead, now),
            retry_after_secs: retry_after(ahead),
        }))
    }
}

/// Whether the room's reservation counts a seat for the holder, or has one free: taking it
/// uses no seat another room waits for.
fn has_seat_for(p: Option<&Placement>, holder: &str) -> bool {
    p.is_some_and(|p| {
        p.seats > 0
            && (p.holders.iter().any(|h| h == holder)
                || (p.holders.len() as u64) < u64::from(p.seats))
    })
}

impl Aula {
    /// After this admission placed the room itself, a place a classmate took for the room
    /// meanwhile (having read the room unplaced) is let go: nobody waits on it, and the
    /// mark must not stop before it.
    async fn placed_anew(&self, seating: &Seating, now: Timestamp) -> ServiceResult<()> {
        if seating.reserved_here()
            && let Some(t) = self.store.room_ticket(seating.room(), now).await?
        {
            self.store.room_admitted(&t, false, now).await?;
        }
        Ok(())
    }
}

/// Seconds until the room's turn at the pace its place has moved so far.
fn estimate(ticket: &RoomTicket, ahead: u64, now: Timestamp) -> Option<u64> {
    let moved = ticket.first_ahead.checked_sub(ahead).filter(|m| *m > 0)?;
    let waited_ms = u64::try_from(now.millis() - ticket.issued_at.millis()).ok()?;
    Some((ahead + 1).saturating_mul(waited_ms) / moved / 1000)
}

/// The front asks often, the back rarely: a long queue does not poll the store in step.
fn retry_after(ahead: u64) -> u64 {
    (FRONT_POLL_SECS + ahead / 25).min(BACK_POLL_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Expiry;

    #[test]
    fn a_place_that_has_not_moved_has_no_estimate_and_one_that_moved_extrapolates_its_pace() {
        let t = RoomTicket {
            room_id: RoomId::from_uuid(uuid::Uuid::from_u128(7)),
            number: 40,
            first_ahead: 39,
            issued_at: Timestamp::from_millis(0),
            expires_at: Expiry::from_epoch_secs(60),
        };
        assert_eq!(estimate(&t, 39, Timestamp::from_millis(30_000)), None);
        // 10 places in 20 s: the remaining 29 (and our own) take 60 s.
        assert_eq!(estimate(&t, 29, Timestamp::from_millis(20_000)), Some(60));
    }

    #[test]
    fn the_front_of_the_queue_asks_every_two_seconds_and_the_back_at_most_every_ten() {
        assert_eq!(retry_after(0), 2);
        assert_eq!(retry_after(24), 2);
        assert_eq!(retry_after(100), 6);
        assert_eq!(retry_after(10_000), 10);
    }
}
