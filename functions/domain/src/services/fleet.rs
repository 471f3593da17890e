//! The fleet planner: turns the forecast of the coming hours into the media fleet's floor.
//! Run every evening and once early in the morning (an EventBridge schedule in
//! template.yaml), it reads the forecast and puts two named one-time actions on the fleet's
//! Auto Scaling group: raise its minimum to the nodes the busiest slot needs when that busy
//! stretch begins (the forecast counts a meeting from [`crate::ScheduledMeeting::EARLY`], 30
//! minutes, before it begins), and lower it back to the configured minimum when the stretch
//! ends. Scaling on load alone would lag the bell by the minutes a node takes to boot.
//!
//! Nodes needed (the forecast's rule, [`crate::services::forecast`]): every meeting on one
//! node, reserving its expected participants (a meeting bigger than a node takes a whole
//! node), packed largest first onto nodes of `NodeCapacity`, plus a tenth spare, rounded up:
//! `nodes = packed + ceil(packed / 10)`; for rooms all of size `s`,
//! `packed = ceil(rooms / floor(capacity / s))`. The floor is then kept within the group's
//! configured minimum and maximum.

use super::schedule::stored_forecast;
use super::{ForecastPolicy, ForecastSlot, ServiceError};
use crate::ports::{FleetError, FleetScaler, ScheduleStore};
use crate::{Span, Timestamp};

/// The group's configured bounds (the media stack's `MinNodes` and `MaxNodes`), and its
/// school-day floor (`ExamMorningMinNodes`; 0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetBounds {
    pub min_nodes: u32,
    pub max_nodes: u32,
    pub school_day_nodes: u32,
}

/// The media stack keeps `school_day_nodes` warm from 06:30 to 14:00 Berlin time on weekdays
/// with recurring actions of its own (infra/media-nodes.yaml, `ExamMorningScaleUp` and
/// `ExamMorningRelease`; a test holds the two to the same times). The planner's actions set
/// the same minimum, so they respect that floor: a raise never sets less, and a lower inside
/// the window goes back to it, not below (else a peak at 8:00 would end the floor at 8:30).
pub const SCHOOL_DAY_ZONE: chrono_tz::Tz = chrono_tz::Europe::Berlin;
pub const SCHOOL_DAY_FROM: (u32, u32) = (6, 30);
pub const SCHOOL_DAY_UNTIL: (u32, u32) = (14, 0);

impl FleetBounds {
    /// The minimum the group's own actions keep at `t`.
    pub fn floor_at(&self, t: Timestamp) -> u32 {
        use chrono::{Datelike, Timelike};
        let Some(local) = chrono::DateTime::from_timestamp_millis(t.millis())
            .map(|utc| utc.with_timezone(&SCHOOL_DAY_ZONE))
        else {
            return self.min_nodes;
        };
        let minute = local.hour() * 60 + local.minute();
        let from = SCHOOL_DAY_FROM.0 * 60 + SCHOOL_DAY_FROM.1;
        let until = SCHOOL_DAY_UNTIL.0 * 60 + SCHOOL_DAY_UNTIL.1;
        let weekday = local.weekday().number_from_monday() <= 5;
        if weekday && (from..until).contains(&minute) {
            self.min_nodes.max(self.school_day_nodes)
        } else {
            self.min_nodes
        }
    }
}

/// What the planner puts on the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetPlan {
    /// When the floor goes up: the start of the busy stretch around the peak.
    pub raise_at: Timestamp,
    /// The floor from then on: the peak's nodes, at most the group's maximum.
    pub nodes: u32,
    /// The nodes the peak asks for; more than `nodes` when the maximum caps it.
    pub wanted: u32,
    /// When the floor goes back down: the end of that stretch.
    pub lower_at: Timestamp,
    /// The floor then: the group's minimum, or its school-day floor inside that window.
    pub floor: u32,
}

/// The names of the planner's scheduled actions: putting an action of the same name again
/// replaces it, so a second run moves the same two actions instead of adding more.
pub const RAISE_ACTION: &str = "aula-planner-raise";
pub const LOWER_ACTION: &str = "aula-planner-lower";

/// How far ahead the planner looks: from an evening run (18:00) to past noon, so the
/// morning's peak is seen whole.
pub const PLANNING_HORIZON: Span = Span::seconds(18 * 3600);

/// The forecast's slot for planning: the floor moves at quarter hours.
pub const PLANNING_SLOT_MINUTES: u32 = 15;

/// The plan for `slots` (consecutive, each `slot` long), or `None` when no slot asks for
/// more than the group's minimum. Only the busy stretch around the peak (the slots next to
/// it that need more than the minimum) is raised: a small evening meeting before a large
/// morning does not keep the fleet up all night. An action cannot start in the past, so a
/// stretch already begun is raised a minute after `now`.
pub fn plan(
    slots: &[ForecastSlot],
    slot: Span,
    bounds: FleetBounds,
    now: Timestamp,
) -> Option<FleetPlan> {
    let floor = bounds.min_nodes;
    let peak = slots
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| a.nodes.cmp(&b.nodes).then(j.cmp(i)))
        .filter(|(_, s)| s.nodes > floor)
        .map(|(i, _)| i)?;
    let busy = |i: &usize| slots[*i].nodes > floor;
    let first = (0..peak).rev().take_while(busy).last().unwrap_or(peak);
    let last = (peak + 1..slots.len())
        .take_while(busy)
        .last()
        .unwrap_or(peak);
    let wanted = slots[peak].nodes;
    let soonest = now.plus(Span::seconds(60));
    let raise_at = slots[first].starts_at.max(soonest);
    let lower_at = slots[last].starts_at.plus(slot).max(soonest.plus(slot));
    Some(FleetPlan {
        raise_at,
        nodes: wanted
            .max(bounds.floor_at(raise_at))
            .min(bounds.max_nodes.max(floor)),
        wanted,
        lower_at,
        floor: bounds.floor_at(lower_at),
    })
}

/// Why a planner run failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("reading the forecast failed")]
    Forecast(#[from] ServiceError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// One planner run at `now`: the forecast of the next [`PLANNING_HORIZON`] from `store`,
/// the plan for it put on the group through `fleet` (or the planner's actions removed when
/// nothing needs more than the minimum, so a meeting deleted since the last run raises
/// nothing). Running it twice leaves the same two actions.
#[tracing::instrument(skip_all)]
pub async fn plan_fleet(
    store: &dyn ScheduleStore,
    fleet: &dyn FleetScaler,
    now: Timestamp,
    bounds: FleetBounds,
    policy: ForecastPolicy,
) -> Result<Option<FleetPlan>, PlanError> {
    let slot = Span::seconds(i64::from(PLANNING_SLOT_MINUTES) * 60);
    let from = Timestamp::from_millis(now.millis() - now.millis().rem_euclid(slot.millis()));
    let slots = stored_forecast(
        store,
        now,
        from,
        from.plus(PLANNING_HORIZON),
        PLANNING_SLOT_MINUTES,
        policy,
    )
    .await?;
    let Some(p) = plan(&slots, slot, bounds, now) else {
        fleet.remove(RAISE_ACTION).await?;
        fleet.remove(LOWER_ACTION).await?;
        tracing::info!("no scheduled peak above the fleet's minimum");
        return Ok(None);
    };
    if p.wanted > p.nodes {
        tracing::warn!(
            wanted = p.wanted,
            max = bounds.max_nodes,
            "the forecast needs more nodes than the fleet's maximum: raised to the maximum"
        );
    }
    fleet.put_floor(RAISE_ACTION, p.raise_at, p.nodes).await?;
    fleet.put_floor(LOWER_ACTION, p.lower_at, p.floor).await?;
    tracing::info!(
        nodes = p.nodes,
        raise_at = %p.raise_at.to_rfc3339(),
        lower_at = %p.lower_at.to_rfc3339(),
        "fleet floor scheduled"
    );
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduledMeeting;
    use crate::services::forecast;
    use crate::testing::{BELL, scheduled};
    const SLOT: Span = Span::seconds(15 * 60);
    const BOUNDS: FleetBounds = FleetBounds {
        min_nodes: 2,
        max_nodes: 100,
        school_day_nodes: 0,
    };

    fn at(minutes: i64) -> Timestamp {
        BELL.plus(Span::seconds(minutes * 60))
    }

    fn rooms(
        first: u128,
        n: u128,
        starts_at: Timestamp,
        minutes: u32,
        size: u32,
    ) -> Vec<ScheduledMeeting> {
        (first..first + n)
            .map(|i| scheduled(i, starts_at, minutes, size))
            .collect()
    }

    /// The planner's view from the evening before: 18:00 Berlin to noon.
    fn planned(plans: &[ScheduledMeeting], bounds: FleetBounds) -> Option<FleetPlan> {
        let evening = at(-14 * 60);
        let slots = forecast(
            plans,
            evening,
            evening.plus(PLANNING_HORIZON),
            SLOT,
            ForecastPolicy::default(),
        );
        plan(&slots, SLOT, bounds, evening)
    }

    #[test]
    fn a_morning_with_nothing_scheduled_raises_nothing() {
        assert_eq!(planned(&[], BOUNDS), None);
    }

    #[test]
    fn a_meeting_the_minimum_already_holds_raises_nothing() {
        // 30 seats: one node, plus one spare: the two nodes the group keeps anyway.
        assert_eq!(planned(&rooms(0, 1, BELL, 45, 30), BOUNDS), None);
    }

    #[test]
    fn an_exam_morning_of_2000_rooms_of_16_raises_the_floor_to_72_nodes_from_half_past_seven() {
        let p = planned(&rooms(0, 2000, BELL, 90, 16), BOUNDS).expect("a plan");
        assert_eq!(p.nodes, 72, "65 packed nodes and a tenth spare");
        assert_eq!(p.raise_at, at(-30));
        assert_eq!(p.lower_at, at(90), "back to the minimum when the exam ends");
        assert_eq!(p.floor, 2);
    }

    #[test]
    fn on_a_school_day_the_planner_lowers_to_the_stacks_school_day_floor_and_never_raises_below_it()
    {
        let school = FleetBounds {
            school_day_nodes: 20,
            ..BOUNDS
        };
        // Tuesday: the exam ends at 9:30 Berlin, inside the floor's 6:30-14:00.
        let p = planned(&rooms(0, 2000, BELL, 90, 16), school).expect("a plan");
        assert_eq!(
            (p.nodes, p.floor),
            (72, 20),
            "down to the school-day floor, not to 2"
        );
        // A morning that needs 11 nodes does not take the floor from 20 down to 11 at 7:30.
        let p = planned(&rooms(0, 300, BELL, 45, 16), school).expect("a plan");
        assert_eq!((p.wanted, p.nodes, p.floor), (11, 20, 20));
        // An afternoon lesson ending at 15:00 Berlin, and a Saturday's exam ending at 9:30,
        // go back to the minimum.
        let saturday = BELL.plus(Span::days(4));
        for (starts_at, minutes) in [(at(6 * 60), 60), (saturday, 90)] {
            let from = starts_at.minus(Span::seconds(4 * 3600));
            let slots = forecast(
                &rooms(0, 2000, starts_at, minutes, 16),
                from,
                starts_at.plus(Span::seconds(4 * 3600)),
                SLOT,
                ForecastPolicy::default(),
            );
            let p = plan(&slots, SLOT, school, from).expect("a plan");
            assert_eq!(p.floor, 2, "lowered at {}", p.lower_at);
        }
    }

    #[test]
    fn meetings_spread_over_the_morning_are_raised_for_once_to_the_busiest_slot() {
        // 600 rooms at 8:00 (45 min), 1,200 at 8:45 while the first ones end, 300 at 10:00.
        let mut plans = rooms(0, 600, BELL, 45, 16);
        plans.extend(rooms(1000, 1200, at(45), 45, 16));
        plans.extend(rooms(3000, 300, at(120), 45, 16));
        let p = planned(&plans, BOUNDS).expect("a plan");
        // At 8:15-8:45 the second wave's seats are held while the first is still on:
        // 1,800 rooms of 16, 31 to a node: 59 nodes and 6 spare.
        assert_eq!(p.nodes, 65);
        assert_eq!(p.raise_at, at(-30));
        assert_eq!(
            p.lower_at,
            at(165),
            "after the last wave, not after the first"
        );
    }

    #[test]
    fn a_small_evening_meeting_does_not_keep_the_fleet_up_overnight() {
        let mut plans = rooms(0, 2000, BELL, 90, 16);
        plans.extend(rooms(5000, 200, at(-12 * 60), 60, 16));
        let p = planned(&plans, BOUNDS).expect("a plan");
        assert_eq!(p.raise_at, at(-30), "raised for the morning, not at 20:00");
    }

    #[test]
    fn the_floor_never_goes_above_the_groups_maximum() {
        let capped = FleetBounds {
            max_nodes: 40,
            ..BOUNDS
        };
        let p = planned(&rooms(0, 2000, BELL, 90, 16), capped).expect("a plan");
        assert_eq!((p.nodes, p.wanted), (40, 72));
    }

    #[test]
    fn a_stretch_already_begun_is_raised_a_minute_from_now() {
        let slots = forecast(
            &rooms(0, 2000, BELL, 90, 16),
            at(-15),
            at(60),
            SLOT,
            ForecastPolicy::default(),
        );
        let p = plan(&slots, SLOT, BOUNDS, at(-10)).expect("a plan");
        assert_eq!(p.raise_at, at(-9));
        assert_eq!(p.lower_at, at(60), "the last slot read ends the stretch");
    }
}
