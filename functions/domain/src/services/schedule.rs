//! Scheduled meetings and the forecast built from them. A teacher schedules a meeting of a
//! room (when, how long, how many are expected); placement reserves that many seats for
//! the room while the meeting is on, and the operator sees, per slot of tomorrow morning,
//! how many meetings, participants, seats and media nodes the schedule asks for. The same
//! forecast drives the fleet's scheduled scaling (the planner).

use super::{Aula, Caller, ServiceError, ServiceResult};
pub use crate::model::schedule::{ForecastPolicy, ForecastSlot};
use crate::ports::ScheduleStore;
use crate::{
    ParseError, RoomId, ScheduleId, ScheduledMeeting, Span, Timestamp, check_expected_participants,
    retention,
};

/// What a teacher fills in to schedule a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSchedule {
    pub starts_at: Timestamp,
    /// `None`: [`ScheduledMeeting::DEFAULT_MINUTES`].
    pub minutes: Option<u32>,
    pub expected_participants: u32,
}

/// How far ahead a meeting may be scheduled.
pub const SCHEDULE_AHEAD: Span = Span::days(366);

/// Instants outside 1970–2999 are refused before any arithmetic on them.
const LATEST_MILLIS: i64 = 32_503_680_000_000;

fn plausible(field: &'static str, t: Timestamp) -> Result<Timestamp, ParseError> {
    if (0..=LATEST_MILLIS).contains(&t.millis()) {
        Ok(t)
    } else {
        Err(ParseError::Invalid {
            field,
            reason: "not a time between 1970 and 2999",
        })
    }
}

/// The longest forecast, so that the meetings it reads (those beginning up to the longest
/// meeting before it) stay within [`crate::ports::MAX_SCHEDULE_SPAN`].
pub const MAX_FORECAST: Span = Span::days(1);

/// The forecast for `[from, until)` in slots of `slot`: pure arithmetic over `plans`.
pub fn forecast(
    plans: &[ScheduledMeeting],
    from: Timestamp,
    until: Timestamp,
    slot: Span,
    policy: ForecastPolicy,
) -> Vec<ForecastSlot> {
    let capacity = policy.node_capacity.max(1);
    let step = slot.millis().max(1);
    let mut slots = Vec::new();
    let mut at = from;
    while at < until {
        let end = Timestamp::from_millis(at.millis().saturating_add(step));
        // A meeting holds its seats from EARLY before it begins until it is to end.
        let on: Vec<&ScheduledMeeting> = plans
            .iter()
            .filter(|p| p.starts_at.minus(ScheduledMeeting::EARLY) < end && p.ends_at() > at)
            .collect();
        let mut seats: Vec<u32> = on
            .iter()
            .map(|p| p.expected_participants.min(capacity))
            .collect();
        let filled = pack(&mut seats, capacity);
        slots.push(ForecastSlot {
            starts_at: at,
            meetings: u32::try_from(on.len()).unwrap_or(u32::MAX),
            expected_participants: on.iter().map(|p| u64::from(p.expected_participants)).sum(),
            seats: seats.iter().map(|&s| u64::from(s)).sum(),
            nodes: policy.with_spare(filled),
        });
        at = end;
    }
    slots
}

/// Nodes of `capacity` that hold reservations of `seats` each on one node: first fit,
/// largest first (within 11/9 of the fewest possible).
fn pack(seats: &mut [u32], capacity: u32) -> u32 {
    seats.sort_unstable_by(|a, b| b.cmp(a));
    let mut free: Vec<u32> = Vec::new();
    for &s in seats.iter() {
        match free.iter_mut().find(|f| **f >= s) {
            Some(f) => *f -= s,
            None => free.push(capacity - s),
        }
    }
    u32::try_from(free.len()).unwrap_or(u32::MAX)
}

/// The expected participants of the room's scheduled meeting on at `now` (the largest, if
/// several overlap).
pub(super) fn scheduled_size(plans: &[ScheduledMeeting], now: Timestamp) -> Option<u32> {
    plans
        .iter()
        .filter(|p| p.covers(now))
        .map(|p| p.expected_participants)
        .max()
}

impl Aula {
    /// Schedules a meeting of the caller's room.
    #[tracing::instrument(skip_all, fields(room = %room))]
    pub async fn schedule_meeting(
        &self,
        caller: &Caller,
        room: RoomId,
        new: NewSchedule,
    ) -> ServiceResult<ScheduledMeeting> {
        let r = self.owned_room(caller, room).await?;
        let now = self.now();
        plausible("starts_at", new.starts_at)?;
        let minutes = ScheduledMeeting::check_minutes(
            new.minutes.unwrap_or(ScheduledMeeting::DEFAULT_MINUTES),
        )?;
        let expected = check_expected_participants(new.expected_participants)?;
        let ends_at = new.starts_at.plus(Span::seconds(i64::from(minutes) * 60));
        if ends_at <= now {
            return Err(ParseError::Invalid {
                field: "starts_at",
                reason: "the meeting would be over already",
            }
            .into());
        }
        if new.starts_at > now.plus(SCHEDULE_AHEAD) {
            return Err(ParseError::Invalid {
                field: "starts_at",
                reason: "at most a year ahead",
            }
            .into());
        }
        let plan = ScheduledMeeting {
            id: self.ids.schedule_id(),
            room_id: r.id,
            owner: r.owner,
            starts_at: new.starts_at,
            minutes,
            expected_participants: expected,
            created_at: now,
            expires_at: retention::schedule_expiry(ends_at),
        };
        self.store.put_scheduled(&plan).await?;
        tracing::info!(schedule = %plan.id, expected, "meeting scheduled");
        Ok(plan)
    }

    /// The caller's scheduled meetings in all their rooms, earliest first.
    pub async fn my_schedule(&self, caller: &Caller) -> ServiceResult<Vec<ScheduledMeeting>> {
        let owner = Self::moderator_id(caller)?;
        Ok(self.store.scheduled_of(owner, self.now()).await?)
    }

    /// Deletes one of the caller's scheduled meetings.
    #[tracing::instrument(skip_all, fields(room = %room, schedule = %id))]
    pub async fn delete_scheduled(
        &self,
        caller: &Caller,
        room: RoomId,
        id: ScheduleId,
    ) -> ServiceResult<()> {
        let r = self.owned_room(caller, room).await?;
        let plans = self.store.scheduled_of_room(r.id, self.now()).await?;
        let plan = plans
            .into_iter()
            .find(|p| p.id == id)
            .ok_or(ServiceError::NotFound("the scheduled meeting"))?;
        self.store.delete_scheduled(&plan).await?;
        Ok(())
    }

    /// The forecast of `[from, until)` in slots of `slot` minutes (15 or 30), for admins
    /// (and the planner, which calls [`Aula::schedule_forecast`]).
    pub async fn forecast(
        &self,
        caller: &Caller,
        from: Timestamp,
        until: Timestamp,
        slot_minutes: u32,
        policy: ForecastPolicy,
    ) -> ServiceResult<Vec<ForecastSlot>> {
        Self::admin_id(caller)?;
        self.schedule_forecast(from, until, slot_minutes, policy)
            .await
    }

    /// [`Aula::forecast`] without a caller.
    pub async fn schedule_forecast(
        &self,
        from: Timestamp,
        until: Timestamp,
        slot_minutes: u32,
        policy: ForecastPolicy,
    ) -> ServiceResult<Vec<ForecastSlot>> {
        stored_forecast(
            self.store.as_ref(),
            self.now(),
            from,
            until,
            slot_minutes,
            policy,
        )
        .await
    }
}

/// The forecast of `[from, until)` from the meetings scheduled in `store`: what the admin
/// page shows and the fleet planner (which has no caller and no other port) acts on.
pub async fn stored_forecast(
    store: &dyn ScheduleStore,
    now: Timestamp,
    from: Timestamp,
    until: Timestamp,
    slot_minutes: u32,
    policy: ForecastPolicy,
) -> ServiceResult<Vec<ForecastSlot>> {
    plausible("from", from)?;
    plausible("until", until)?;
    if slot_minutes != 15 && slot_minutes != 30 {
        return Err(ParseError::Invalid {
            field: "slot",
            reason: "15 or 30 minutes",
        }
        .into());
    }
    if until <= from || until.minus(MAX_FORECAST) > from {
        return Err(ParseError::Invalid {
            field: "until",
            reason: "after from, and at most a day after it",
        }
        .into());
    }
    // Meetings that began before `from` may still be on (up to the longest meeting);
    // those beginning up to EARLY after `until` already hold seats in its last slot.
    let longest = Span::seconds(i64::from(ScheduledMeeting::MAX_MINUTES) * 60);
    let plans = store
        .scheduled_between(
            from.minus(longest),
            until.plus(ScheduledMeeting::EARLY),
            now,
        )
        .await?;
    Ok(forecast(
        &plans,
        from,
        until,
        Span::seconds(i64::from(slot_minutes) * 60),
        policy,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{BELL, scheduled};

    fn at(minutes: i64) -> Timestamp {
        BELL.plus(Span::seconds(minutes * 60))
    }

    #[test]
    fn a_meeting_of_thirty_at_eight_fills_the_slots_from_half_an_hour_before_until_its_end() {
        let plans = [scheduled(1, BELL, 45, 30)];
        let slots = forecast(
            &plans,
            at(-60),
            at(90),
            Span::seconds(15 * 60),
            ForecastPolicy::default(),
        );
        assert_eq!(slots.len(), 10);
        let on: Vec<_> = slots.iter().map(|s| s.meetings).collect();
        // 7:00 7:15 | 7:30 7:45 8:00 8:15 8:30 | 8:45 9:00 9:15
        assert_eq!(on, [0, 0, 1, 1, 1, 1, 1, 0, 0, 0]);
        let busy = slots[4];
        assert_eq!(busy.starts_at, BELL);
        assert_eq!(busy.expected_participants, 30);
        assert_eq!(busy.seats, 30);
        assert_eq!(busy.nodes, 2, "one node for the seats and one spare");
        assert_eq!(slots[0].nodes, 0, "no meeting, no node");
    }

    #[test]
    fn an_exam_morning_of_2000_rooms_of_16_needs_65_nodes_and_a_tenth_more() {
        let plans: Vec<_> = (0..2000).map(|n| scheduled(n, BELL, 90, 16)).collect();
        let slots = forecast(
            &plans,
            BELL,
            at(30),
            Span::seconds(30 * 60),
            ForecastPolicy::default(),
        );
        assert_eq!(slots.len(), 1);
        let s = slots[0];
        assert_eq!(s.meetings, 2000);
        assert_eq!(s.seats, 32_000);
        // 31 rooms of 16 fit in 500 seats: 2,000 rooms take 65 nodes, plus 7 spare.
        assert_eq!(s.nodes, 65 + 7);
    }

    #[test]
    fn the_sizing_guides_arithmetic_counts_the_nodes_the_forecast_shows() {
        // infra/README.md: 2,000 rooms scheduled with 16 or with 17, or unplanned rooms of
        // 17 that grew from 16 to 20 seats.
        let policy = ForecastPolicy::default();
        for (seats, nodes) in [
            (16, 72),
            (17, 76),
            (crate::CLASS_SEATS + crate::GROW_SEATS, 88),
        ] {
            let plans: Vec<_> = (0..2000).map(|n| scheduled(n, BELL, 90, seats)).collect();
            let s = forecast(&plans, BELL, at(30), Span::seconds(30 * 60), policy)[0];
            assert_eq!(s.nodes, nodes, "rooms of {seats}");
            assert_eq!(
                policy.nodes_for_rooms(2000, seats),
                nodes,
                "rooms of {seats}"
            );
        }
    }

    #[test]
    fn a_meeting_bigger_than_a_node_takes_a_whole_node_and_is_not_split() {
        let plans = [
            scheduled(1, BELL, 45, 800),
            scheduled(2, BELL, 45, 300),
            scheduled(3, BELL, 45, 300),
        ];
        let policy = ForecastPolicy {
            node_capacity: 500,
            spare_tenths: 0,
        };
        let s = forecast(&plans, BELL, at(15), Span::seconds(15 * 60), policy)[0];
        assert_eq!(s.expected_participants, 1400);
        assert_eq!(s.seats, 500 + 300 + 300);
        assert_eq!(s.nodes, 3, "two rooms of 300 do not share a node of 500");
    }

    #[test]
    fn a_meetings_size_counts_for_its_room_from_half_an_hour_before_until_its_end() {
        let plans = [scheduled(1, BELL, 45, 30), scheduled(2, at(45), 45, 12)];
        assert_eq!(scheduled_size(&plans, at(-31)), None);
        assert_eq!(scheduled_size(&plans, at(-30)), Some(30));
        assert_eq!(scheduled_size(&plans, at(20)), Some(30), "both: the larger");
        assert_eq!(scheduled_size(&plans, at(50)), Some(12));
        assert_eq!(scheduled_size(&plans, at(90)), None);
        assert_eq!(plans[0].ends_at(), at(45));
    }
}
