//! What one subscriber's downlink carries: given its bandwidth estimate (GCC on the browser's
//! TWCC feedback, see `media.rs`), which layer of each video it gets, or whether a video is
//! paused. Pure: no calls into `rtc`, no clock; the SFU calls [`Allocator::allocate`] every
//! [`ALLOCATION_INTERVAL`] with the estimate and what each video's layers cost now.
//!
//! In the spirit of Jitsi Videobridge's bandwidth allocation and mediasoup's consumer layers:
//! audio first and always (it is never paused: its cost is taken off the estimate before any
//! video is placed); then the videos in priority order (screen shares, the active speaker,
//! then the grid by last-N order), each first at its smallest flowing layer, then raised
//! towards the layer the layout wants while the estimate allows. A video whose smallest layer
//! does not fit is paused. A layer never counts as cheaper than a smaller one that flows (a
//! layer measured from its first packets, or one Chrome is only starting, can read a few
//! kbit/s): with such costs the allocator once "saved" by moving a camera to its empty top
//! layer and paused another on a link with a 1.6 Mbit/s estimate.
//!
//! Decreases apply at once. Increases are probes: the estimate GCC gives grows by itself
//! (8 % a second) while the node sends less than it, so it says little about what the link
//! carries beyond what was really sent. An increase may therefore add at most half of what is
//! sent now plus [`PROBE_STEP_BPS`], and the next one waits [`PROBE_HOLD`]; an increase the
//! estimate does not survive (it falls below what was allocated) doubles that wait, up to
//! [`PROBE_HOLD_MAX`]. A paused video is resumed by such a probe when the estimate recovers.
//! Probing limits increases only: a video that flows (or has just appeared) keeps its
//! smallest layer whenever the estimate carries it, hold or not.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How often the SFU allocates (with the active speaker decision).
pub(crate) const ALLOCATION_INTERVAL: Duration = Duration::from_millis(400);
/// The share of the estimate the allocator hands out: GCC's estimate is what the path carried
/// at best, and the rates of layers vary from second to second (a keyframe is several frames).
const HEADROOM: f64 = 0.9;
/// What an increase may add beyond half of what is allocated now: enough to resume the
/// smallest layer of a camera (about 150 kbit/s in Chrome).
pub(crate) const PROBE_STEP_BPS: u64 = 200_000;
/// The time between increases while they succeed.
pub(crate) const PROBE_HOLD: Duration = Duration::from_secs(1);
/// The longest time between increases after repeated failures.
pub(crate) const PROBE_HOLD_MAX: Duration = Duration::from_secs(8);

/// What a subscriber gets of one video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Not allocated (yet): the layout decides.
    Unlimited,
    /// At most this layer (an index into the source's layers, 0 the smallest).
    Layer(usize),
    /// Nothing: the downlink does not carry even its smallest layer.
    Paused,
}

/// One video a subscriber could get.
#[derive(Debug, Clone)]
pub(crate) struct Want<K> {
    pub(crate) key: K,
    /// Lower first: 0 for a screen share, 1 for the active speaker, then the grid.
    pub(crate) rank: usize,
    /// The layer the layout wants (an index into `rates`).
    pub(crate) desired: usize,
    /// What each layer costs now, bits per second, smallest layer first; `None`: it does
    /// not flow (the publisher stopped sending it).
    pub(crate) rates: Vec<Option<u64>>,
}

/// One subscriber's allocation and its probing state.
#[derive(Debug)]
pub(crate) struct Allocator<K> {
    grants: HashMap<K, Grant>,
    /// When the last increase was made, and what the allocation then cost (audio included).
    increased: Option<(Instant, u64)>,
    hold: Duration,
}

impl<K> Default for Allocator<K> {
    fn default() -> Self {
        Allocator {
            grants: HashMap::new(),
            increased: None,
            hold: PROBE_HOLD,
        }
    }
}

impl<K: Copy + Eq + Hash> Allocator<K> {
    /// The grant of a video (`Unlimited` before the first allocation that saw it).
    pub(crate) fn grant(&self, key: &K) -> Grant {
        self.grants.get(key).copied().unwrap_or(Grant::Unlimited)
    }

    /// Allocates `estimate` (bits per second) to `audio` (what the subscriber's audio costs
    /// now) and the videos. Returns the videos whose grant changed, with the new grant.
    pub(crate) fn allocate(
        &mut self,
        now: Instant,
        estimate: u64,
        audio: u64,
        wants: &[Want<K>],
    ) -> Vec<(K, Grant)> {
        let budget = ((estimate as f64 * HEADROOM) as u64).saturating_sub(audio);
        let paused: Vec<bool> = wants
            .iter()
            .map(|w| self.grant(&w.key) == Grant::Paused)
            .collect();
        let current: u64 = wants
            .iter()
            .map(|w| cost(w, self.grant(&w.key)))
            .sum::<u64>();
        let first = self.grants.is_empty();
        // A probe that the estimate did not survive: wait longer before the next.
        if let Some((at, allocated)) = self.increased
            && now.saturating_duration_since(at) < self.hold * 2
            && (estimate as f64 * HEADROOM) < allocated as f64
        {
            self.hold = (self.hold * 2).min(PROBE_HOLD_MAX);
            // The wait runs from the failed probe; nothing left to check of it.
            self.increased = Some((at, 0));
        }
        let may_increase = self
            .increased
            .is_none_or(|(at, _)| now.saturating_duration_since(at) >= self.hold);
        let ceiling = if first {
            // Nothing sent yet to learn from: the initial estimate is all there is.
            budget
        } else if may_increase {
            budget.min(current + current / 2 + PROBE_STEP_BPS)
        } else {
            budget.min(current)
        };
        let fitted = fit(budget, ceiling, wants, &paused);
        let new_cost: u64 = wants.iter().zip(&fitted).map(|(w, g)| cost(w, *g)).sum();
        if !first && new_cost > current {
            if self
                .increased
                .is_some_and(|(at, _)| now.saturating_duration_since(at) >= self.hold * 2)
            {
                // The last probe held: the next may come sooner again.
                self.hold = PROBE_HOLD;
            }
            self.increased = Some((now, new_cost + audio));
        }
        let mut changed = Vec::new();
        let mut grants = HashMap::with_capacity(wants.len());
        for (w, g) in wants.iter().zip(fitted) {
            if self.grant(&w.key) != g {
                changed.push((w.key, g));
            }
            grants.insert(w.key, g);
        }
        self.grants = grants;
        changed
    }
}

/// What the videos cost together at the layers the layout wants (those that flow).
pub(crate) fn wanted<K>(wants: &[Want<K>]) -> u64 {
    wants.iter().map(|w| cost(w, Grant::Unlimited)).sum()
}

/// What layer `l` of a video costs: its measured rate, but never less than a smaller
/// flowing layer's. A layer that has just started (its rate is measured from nothing) or
/// that carries few frames must not look cheaper than the one below it: the allocator would
/// "raise" a video to it to free budget, and pause another for a saving that is not real.
fn cost_at<K>(w: &Want<K>, l: usize) -> u64 {
    w.rates
        .iter()
        .take(l + 1)
        .filter_map(|r| *r)
        .max()
        .unwrap_or(0)
}

/// What a grant of a video costs now.
fn cost<K>(w: &Want<K>, g: Grant) -> u64 {
    let at = match g {
        Grant::Paused => return 0,
        Grant::Unlimited => w.desired,
        Grant::Layer(i) => i.min(w.desired),
    };
    layer_at_most(w, at).map_or(0, |(l, _)| cost_at(w, l))
}

/// The largest flowing layer up to `i`, else the smallest flowing one, with its rate.
fn layer_at_most<K>(w: &Want<K>, i: usize) -> Option<(usize, u64)> {
    let flowing = |(l, r): (usize, &Option<u64>)| r.map(|r| (l, r));
    w.rates
        .iter()
        .enumerate()
        .take(i + 1)
        .filter_map(flowing)
        .next_back()
        .or_else(|| w.rates.iter().enumerate().find_map(flowing))
}

/// The grants that fit `budget`, in the order of `wants`: every video in priority order at
/// its smallest flowing layer (or paused), then each raised in priority order towards its
/// desired layer while the rest of the budget allows and the total stays within `ceiling`
/// (the probing limit on increases). Only a video that is `paused` now needs the ceiling to
/// get its smallest layer back: one that flows (or is new) keeps it while the budget carries
/// it. A probe hold limits increases; it must not pause a camera the estimate has room for.
fn fit<K>(budget: u64, ceiling: u64, wants: &[Want<K>], paused: &[bool]) -> Vec<Grant> {
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|&i| wants[i].rank);
    let mut grants = vec![Grant::Paused; wants.len()];
    let mut left = budget;
    let mut total = 0;
    for &i in &order {
        let w = &wants[i];
        match w
            .rates
            .iter()
            .enumerate()
            .find_map(|(l, r)| r.map(|r| (l, r)))
        {
            // Nothing flows: nothing to pay for, nothing to pause.
            None => grants[i] = Grant::Layer(w.desired),
            Some((l, r)) if r <= left && (!paused[i] || total + r <= ceiling) => {
                left -= r;
                total += r;
                grants[i] = Grant::Layer(l);
            }
            Some(_) => {}
        }
    }
    let limit = ceiling.max(total);
    for &i in &order {
        let w = &wants[i];
        let Grant::Layer(mut at) = grants[i] else {
            continue;
        };
        if w.rates.get(at).copied().flatten().is_none() {
            continue;
        }
        let mut paid = cost_at(w, at);
        for l in (at + 1)..=w.desired.min(w.rates.len().saturating_sub(1)) {
            if w.rates[l].is_none() {
                continue;
            }
            let extra = cost_at(w, l) - paid;
            if extra > left || total + extra > limit {
                break;
            }
            left -= extra;
            total += extra;
            paid += extra;
            at = l;
        }
        grants[i] = Grant::Layer(at);
    }
    grants
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chrome's camera layers (180p, 360p, 720p), roughly.
    const CAMERA: [u64; 3] = [150_000, 500_000, 1_500_000];
    const AUDIO: u64 = 3 * 40_000;

    fn camera(key: u8, rank: usize) -> Want<u8> {
        Want {
            key,
            rank,
            desired: 2,
            rates: CAMERA.iter().map(|r| Some(*r)).collect(),
        }
    }

    /// The speaker (1, wanted sharp), then two grid tiles (2 and 3, wanted at the middle
    /// layer): a meeting of four seen by one pupil.
    fn meeting() -> Vec<Want<u8>> {
        let mut grid = [camera(2, 2), camera(3, 3)];
        for w in &mut grid {
            w.desired = 1;
        }
        let mut v = vec![camera(1, 1)];
        v.extend(grid);
        v
    }

    fn grants(a: &Allocator<u8>) -> [Grant; 3] {
        [a.grant(&1), a.grant(&2), a.grant(&3)]
    }

    /// Runs allocations every interval for `d` at a fixed estimate.
    fn run(a: &mut Allocator<u8>, at: &mut Instant, d: Duration, estimate: u64) {
        let end = *at + d;
        while *at < end {
            a.allocate(*at, estimate, AUDIO, &meeting());
            *at += ALLOCATION_INTERVAL;
        }
    }

    #[test]
    fn a_fast_link_gets_what_the_layout_wants() {
        let mut a = Allocator::default();
        let mut now = Instant::now();
        run(&mut a, &mut now, Duration::from_secs(1), 5_000_000);
        assert_eq!(
            grants(&a),
            [Grant::Layer(2), Grant::Layer(1), Grant::Layer(1)]
        );
    }

    #[test]
    fn when_the_estimate_drops_the_grid_is_lowered_before_the_speaker_and_audio_is_kept() {
        let mut a = Allocator::default();
        let mut now = Instant::now();
        run(&mut a, &mut now, Duration::from_secs(1), 5_000_000);
        // 1.2 Mbit/s: audio, the speaker's middle layer, the grid's smallest.
        let changed = a.allocate(now, 1_200_000, AUDIO, &meeting());
        assert_eq!(
            grants(&a),
            [Grant::Layer(1), Grant::Layer(0), Grant::Layer(0)]
        );
        assert_eq!(changed.len(), 3, "lowered at once, not over several rounds");
        // 700 kbit/s: everyone at the smallest layer.
        a.allocate(now, 700_000, AUDIO, &meeting());
        assert_eq!(
            grants(&a),
            [Grant::Layer(0), Grant::Layer(0), Grant::Layer(0)]
        );
        // 550 kbit/s: the last grid tile is paused, then the next; at 150 kbit/s all video,
        // never audio (its cost is reserved before any video: no budget is left for video).
        a.allocate(now, 550_000, AUDIO, &meeting());
        assert_eq!(
            grants(&a),
            [Grant::Layer(0), Grant::Layer(0), Grant::Paused]
        );
        a.allocate(now, 400_000, AUDIO, &meeting());
        assert_eq!(grants(&a), [Grant::Layer(0), Grant::Paused, Grant::Paused]);
        a.allocate(now, 150_000, AUDIO, &meeting());
        assert_eq!(grants(&a), [Grant::Paused; 3]);
    }

    #[test]
    fn when_the_estimate_recovers_videos_resume_one_probe_at_a_time_in_priority_order() {
        let mut a = Allocator::default();
        let mut now = Instant::now();
        run(&mut a, &mut now, Duration::from_secs(1), 5_000_000);
        run(&mut a, &mut now, Duration::from_secs(2), 150_000);
        assert_eq!(grants(&a), [Grant::Paused; 3]);
        // The estimate is back: the first probe resumes the speaker's smallest layer only.
        a.allocate(now, 5_000_000, AUDIO, &meeting());
        assert_eq!(grants(&a), [Grant::Layer(0), Grant::Paused, Grant::Paused]);
        // Nothing more until the probe has held.
        now += ALLOCATION_INTERVAL;
        a.allocate(now, 5_000_000, AUDIO, &meeting());
        assert_eq!(grants(&a), [Grant::Layer(0), Grant::Paused, Grant::Paused]);
        // Then further, until everything the layout wants flows again.
        let mut rounds = 0;
        while grants(&a) != [Grant::Layer(2), Grant::Layer(1), Grant::Layer(1)] {
            now += ALLOCATION_INTERVAL;
            a.allocate(now, 5_000_000, AUDIO, &meeting());
            rounds += 1;
            assert!(rounds < 40, "did not recover: {:?}", grants(&a));
        }
    }

    #[test]
    fn a_probe_the_estimate_does_not_survive_is_undone_and_the_next_one_waits_longer() {
        let mut a = Allocator::default();
        let mut now = Instant::now();
        run(&mut a, &mut now, Duration::from_secs(1), 5_000_000);
        run(&mut a, &mut now, Duration::from_secs(2), 550_000);
        assert_eq!(
            grants(&a),
            [Grant::Layer(0), Grant::Layer(0), Grant::Paused]
        );
        // The estimate looks better (GCC climbs while little is sent): a probe resumes 3.
        a.allocate(now, 700_000, AUDIO, &meeting());
        assert_eq!(a.grant(&3), Grant::Layer(0));
        // The link did not carry it: the estimate falls and 3 is paused again at once.
        now += ALLOCATION_INTERVAL;
        a.allocate(now, 550_000, AUDIO, &meeting());
        assert_eq!(a.grant(&3), Grant::Paused);
        // The estimate looks better again: no probe for longer than after a success.
        let mut waited = Duration::ZERO;
        while a.grant(&3) == Grant::Paused {
            now += ALLOCATION_INTERVAL;
            waited += ALLOCATION_INTERVAL;
            a.allocate(now, 700_000, AUDIO, &meeting());
            assert!(waited < PROBE_HOLD_MAX * 2, "never probed again");
        }
        assert!(waited > PROBE_HOLD, "probed again after {waited:?}");
    }

    /// The failure a loopback meeting of three showed: the estimate was 1.6 Mbit/s and
    /// climbing, and yet a guest's camera was paused at another guest. A publisher's top
    /// layer measured a few kbit/s (Chrome had not started it yet), less than its smallest;
    /// the allocator moved the video there to "save", and the camera that joined meanwhile
    /// found no room in a probe hold that counted the current cost as those few kbit/s.
    #[test]
    fn a_clean_link_never_pauses_a_camera_even_when_a_larger_layer_measures_cheaper() {
        let mut a = Allocator::default();
        let mut now = Instant::now();
        let teacher = |top: u64| Want {
            key: 1,
            rank: 2,
            desired: 2,
            rates: vec![Some(129_000), None, Some(top)],
        };
        // The teacher's camera alone, its top layer starting, with a probe just made.
        a.allocate(now, 1_500_000, 30_000, &[teacher(0).clone()]);
        a.allocate(now, 1_550_000, 30_000, &[teacher(2_800)]);
        // A guest's camera arrives during the probe hold; its top layer is padding-thin too.
        for round in 0..50u64 {
            now += ALLOCATION_INTERVAL;
            let guest = Want {
                key: 2,
                rank: 3,
                desired: 2,
                rates: vec![Some(111_000 + round * 500), None, Some(3_700)],
            };
            a.allocate(
                now,
                1_600_000 + round * 10_000,
                60_000,
                &[teacher(2_800), guest],
            );
            assert_ne!(
                a.grant(&1),
                Grant::Paused,
                "teacher paused in round {round}"
            );
            assert_ne!(a.grant(&2), Grant::Paused, "guest paused in round {round}");
        }
    }

    /// Whatever the measured rates of the layers do from one allocation to the next (layers
    /// starting and stopping, keyframes, a larger layer cheaper than a smaller one), a
    /// camera that flows is never paused while the estimate carries every camera's smallest
    /// layer (one that was paused comes back by probing, tested above).
    #[test]
    fn no_camera_is_paused_while_the_estimate_carries_every_smallest_layer() {
        let mut a = Allocator::default();
        let mut now = Instant::now();
        // A small linear congruential generator: the same "random" rates on every run.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |below: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % below
        };
        for round in 0..2_000 {
            let wants: Vec<Want<u8>> = (1..=4u8)
                .map(|key| Want {
                    key,
                    rank: usize::from(key),
                    desired: if key == 1 { 2 } else { 1 },
                    rates: (0..3)
                        .map(|_| (next(5) > 0).then(|| 1_000 + next(600_000)))
                        .collect(),
                })
                .collect();
            let smallest: u64 = wants
                .iter()
                .filter_map(|w| w.rates.iter().find_map(|r| *r))
                .sum();
            let audio = 90_000;
            // Sometimes plenty, sometimes just enough, sometimes not.
            let estimate = ((smallest + audio) as f64 / HEADROOM) as u64 + next(3) * 400_000
                - if next(4) == 0 {
                    300_000.min(smallest)
                } else {
                    0
                };
            let before: Vec<Grant> = wants.iter().map(|w| a.grant(&w.key)).collect();
            a.allocate(now, estimate, audio, &wants);
            if ((estimate as f64 * HEADROOM) as u64).saturating_sub(audio) >= smallest {
                for (w, was) in wants.iter().zip(before) {
                    if was != Grant::Paused && w.rates.iter().any(Option::is_some) {
                        assert_ne!(
                            a.grant(&w.key),
                            Grant::Paused,
                            "round {round}: {key} paused at {estimate} bit/s for {smallest} bit/s of smallest layers",
                            key = w.key
                        );
                    }
                }
            }
            now += ALLOCATION_INTERVAL;
        }
    }

    #[test]
    fn a_layer_that_does_not_flow_is_neither_paid_for_nor_granted() {
        let mut a = Allocator::default();
        let mut w = camera(1, 1);
        // The publisher's uplink dropped its full layer.
        w.rates[2] = None;
        a.allocate(Instant::now(), 5_000_000, AUDIO, std::slice::from_ref(&w));
        assert_eq!(a.grant(&1), Grant::Layer(1));
        // A camera that sends nothing yet is not paused (there is nothing to resume).
        let mut idle = camera(2, 2);
        idle.rates = vec![None; 3];
        let mut b = Allocator::default();
        b.allocate(Instant::now(), 100_000, AUDIO, &[idle]);
        assert_eq!(b.grant(&2), Grant::Layer(2));
    }

    #[test]
    fn when_the_speaker_changes_the_new_one_gets_the_bandwidth_within_the_same_allocation() {
        let mut a = Allocator::default();
        let mut now = Instant::now();
        run(&mut a, &mut now, Duration::from_secs(2), 2_600_000);
        assert_eq!(
            grants(&a),
            [Grant::Layer(2), Grant::Layer(1), Grant::Layer(0)]
        );
        // 3 speaks now: sharp, and 1 becomes a grid tile, in one allocation (no probe
        // needed: the total stays what it was).
        let mut wants = meeting();
        wants[0].rank = 3;
        wants[0].desired = 1;
        wants[2].rank = 1;
        wants[2].desired = 2;
        now += ALLOCATION_INTERVAL;
        a.allocate(now, 2_600_000, AUDIO, &wants);
        assert_eq!(a.grant(&3), Grant::Layer(2));
        assert_ne!(a.grant(&1), Grant::Layer(2));
    }
}
