//! How well a participant's connection carries the meeting, as the node sees it: the share
//! of what they publish that never arrived at the node (gaps in sequence numbers, before
//! any retransmission fills them: what the node asks again for), the share of what the node
//! sent them that their browser's transport-wide feedback reports lost, whether their
//! downlink estimate carries what their layout wants, and whether the node paused a video
//! for them. Moderators see it on every tile and each participant on their own.
//!
//! Pure: no clock of its own; the SFU feeds a [`QualityMeter`] a [`Sample`] every
//! allocation interval. A mark that flickers tells a teacher nothing, so a worse level is
//! reported only once it has held for [`WORSEN_AFTER`], a better one once it has held for
//! [`IMPROVE_AFTER`], and reports of one participant are at least [`REPORT_INTERVAL`] apart.

use crate::protocol::Quality;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Reports of one participant's quality are at least this far apart.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// A worse level is reported once it has held this long: at least the loss window, so a
/// moment of loss (a burst shorter than the window) is no bad connection.
pub(crate) const WORSEN_AFTER: Duration = Duration::from_secs(2);
/// A better level is reported once it has held this long: a link that recovers for a
/// moment between losses is still a bad one.
pub(crate) const IMPROVE_AFTER: Duration = Duration::from_secs(6);
/// Loss is measured over this window.
const WINDOW: Duration = Duration::from_secs(2);
/// Fewer packets than this in the window say nothing about loss (an audio-only participant
/// with DTX sends under 3 a second while silent).
const MIN_PACKETS: u64 = 40;
/// Loss at or above which the connection is "mäßig" (NACK and FEC repair it, but not
/// without stutter) and "schlecht". At 2 % the clean links of a browser test on a loaded
/// machine read "mäßig" now and then: a few packets reported late in a 2 s window.
const FAIR_LOSS: f64 = 0.04;
const POOR_LOSS: f64 = 0.08;
/// The downlink carries less than this share of what the participant's layout wants: the
/// videos come smaller than their tiles ("mäßig").
const FAIR_SHARE: f64 = 0.5;

/// What is reported of a participant's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub quality: Quality,
    /// The node paused at least one video for them: their downlink does not carry it.
    pub video_paused: bool,
}

impl Report {
    pub const GOOD: Report = Report {
        quality: Quality::Good,
        video_paused: false,
    };

    /// Worse is larger: good, fair, poor, poor with video paused.
    fn severity(self) -> u8 {
        match (self.quality, self.video_paused) {
            (Quality::Good, _) => 0,
            (Quality::Fair, _) => 1,
            (Quality::Poor, false) => 2,
            (Quality::Poor, true) => 3,
        }
    }
}

/// Counters since the participant's connections began (they only grow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Packets they published that reached the node, and sequence numbers that did not
    /// (when first missed).
    pub(crate) up_received: u64,
    pub(crate) up_missed: u64,
    /// Packets the node sent them that their feedback reported on, and of those lost.
    pub(crate) down_reported: u64,
    pub(crate) down_lost: u64,
}

/// What the node knows of a participant's connection at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) counts: Counts,
    /// Their downlink estimate and what their layout wants (audio and each video at the
    /// layer its tile wants), bits per second; `None` while they get nothing.
    pub(crate) downlink: Option<(u64, u64)>,
    pub(crate) video_paused: bool,
}

/// One participant's reported quality and the hysteresis around it.
#[derive(Debug)]
pub(crate) struct QualityMeter {
    history: VecDeque<(Instant, Counts)>,
    reported: Report,
    last_report: Option<Instant>,
    /// Since when the assessment has been worse than the report, and the least severe
    /// assessment since then: what the report moves to.
    worse: Option<(Instant, Report)>,
    /// Since when it has been better: then the report moves to what it is now.
    better: Option<Instant>,
}

impl Default for QualityMeter {
    fn default() -> Self {
        QualityMeter {
            history: VecDeque::new(),
            reported: Report::GOOD,
            last_report: None,
            worse: None,
            better: None,
        }
    }
}

/// Lost out of all, over the window; `None` with too few packets to tell.
fn share(lost: u64, all: u64) -> Option<f64> {
    (all >= MIN_PACKETS).then(|| lost as f64 / all as f64)
}

impl QualityMeter {
    /// What is reported now (good until something worse held).
    pub(crate) fn reported(&self) -> Report {
        self.reported
    }

    /// Takes a sample; returns the new report when it changed.
    pub(crate) fn sample(&mut self, now: Instant, s: Sample) -> Option<Report> {
        let now_assessed = self.assess(now, s);
        let reported = self.reported.severity();
        let severity = now_assessed.severity();
        if severity > reported {
            self.better = None;
            let (since, least) = self.worse.get_or_insert((now, now_assessed));
            if severity < least.severity() {
                *least = now_assessed;
            }
            let (since, least) = (*since, *least);
            if now.saturating_duration_since(since) >= WORSEN_AFTER {
                return self.report(now, least);
            }
        } else if severity < reported {
            self.worse = None;
            let since = *self.better.get_or_insert(now);
            if now.saturating_duration_since(since) >= IMPROVE_AFTER {
                return self.report(now, now_assessed);
            }
        } else {
            self.worse = None;
            self.better = None;
        }
        None
    }

    fn report(&mut self, now: Instant, r: Report) -> Option<Report> {
        if self
            .last_report
            .is_some_and(|t| now.saturating_duration_since(t) < REPORT_INTERVAL)
        {
            return None;
        }
        self.reported = r;
        self.last_report = Some(now);
        self.worse = None;
        self.better = None;
        Some(r)
    }

    /// The level the sample shows, loss measured over [`WINDOW`].
    fn assess(&mut self, now: Instant, s: Sample) -> Report {
        self.history.push_back((now, s.counts));
        while self.history.len() > 1
            && self
                .history
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > WINDOW)
        {
            self.history.pop_front();
        }
        let first = self.history.front().map_or(s.counts, |(_, c)| *c);
        let c = s.counts;
        let up_missed = c.up_missed.saturating_sub(first.up_missed);
        let up_received = c.up_received.saturating_sub(first.up_received);
        let up = share(up_missed, up_missed + up_received);
        let down = share(
            c.down_lost.saturating_sub(first.down_lost),
            c.down_reported.saturating_sub(first.down_reported),
        );
        let loss = up.into_iter().chain(down).fold(0.0, f64::max);
        let short = s
            .downlink
            .is_some_and(|(estimate, wanted)| (estimate as f64) < wanted as f64 * FAIR_SHARE);
        let quality = if s.video_paused || loss >= POOR_LOSS {
            Quality::Poor
        } else if loss >= FAIR_LOSS || short {
            Quality::Fair
        } else {
            Quality::Good
        };
        Report {
            quality,
            video_paused: s.video_paused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(400);

    /// A participant sending and getting 100 packets a second each way, `up` and `down`
    /// of them lost, fed to the meter every 400 ms.
    struct Link {
        meter: QualityMeter,
        now: Instant,
        counts: Counts,
        up: f64,
        down: f64,
        downlink: Option<(u64, u64)>,
        paused: bool,
        reports: Vec<(Duration, Report)>,
        start: Instant,
    }

    impl Link {
        fn new() -> Self {
            let now = Instant::now();
            Link {
                meter: QualityMeter::default(),
                now,
                counts: Counts::default(),
                up: 0.0,
                down: 0.0,
                downlink: Some((2_000_000, 1_200_000)),
                paused: false,
                reports: Vec::new(),
                start: now,
            }
        }

        fn run(&mut self, seconds: f64) {
            let ticks = (seconds / TICK.as_secs_f64()).round() as usize;
            for _ in 0..ticks {
                self.now += TICK;
                let n = 40.0;
                let up_missed = (n * self.up).round() as u64;
                self.counts.up_missed += up_missed;
                self.counts.up_received += 40 - up_missed;
                self.counts.down_reported += 40;
                self.counts.down_lost += (n * self.down).round() as u64;
                let sample = Sample {
                    counts: self.counts,
                    downlink: self.downlink,
                    video_paused: self.paused,
                };
                if let Some(r) = self.meter.sample(self.now, sample) {
                    self.reports.push((self.now - self.start, r));
                }
            }
        }

        fn quality(&self) -> Quality {
            self.meter.reported().quality
        }
    }

    #[test]
    fn a_clean_link_stays_good_and_nothing_is_reported() {
        let mut l = Link::new();
        l.run(30.0);
        assert_eq!(l.quality(), Quality::Good);
        assert!(l.reports.is_empty(), "{:?}", l.reports);
    }

    #[test]
    fn loss_on_the_way_to_the_node_or_back_makes_the_mark_fair_or_poor() {
        let mut up = Link::new();
        up.up = 0.05;
        up.run(4.0);
        assert_eq!(up.quality(), Quality::Fair, "5 % of what they send is lost");
        let mut down = Link::new();
        down.down = 0.15;
        down.run(4.0);
        assert_eq!(
            down.quality(),
            Quality::Poor,
            "15 % of what they get is lost"
        );
    }

    #[test]
    fn a_downlink_that_carries_less_than_half_of_what_the_layout_wants_is_fair() {
        let mut l = Link::new();
        l.downlink = Some((500_000, 1_500_000));
        l.run(4.0);
        assert_eq!(l.quality(), Quality::Fair);
    }

    #[test]
    fn a_paused_video_makes_the_mark_poor_and_says_so() {
        let mut l = Link::new();
        l.paused = true;
        l.run(4.0);
        assert_eq!(
            l.meter.reported(),
            Report {
                quality: Quality::Poor,
                video_paused: true
            }
        );
    }

    #[test]
    fn a_moment_of_loss_does_not_change_the_mark() {
        let mut l = Link::new();
        l.run(5.0);
        l.down = 0.5;
        l.run(0.4);
        l.down = 0.0;
        l.run(10.0);
        assert!(l.reports.is_empty(), "{:?}", l.reports);
    }

    #[test]
    fn the_mark_worsens_within_a_few_seconds_and_recovers_only_after_the_link_held() {
        let mut l = Link::new();
        l.run(5.0);
        l.up = 0.2;
        l.run(7.0);
        let (at, first) = l.reports[0];
        assert_ne!(first.quality, Quality::Good);
        assert!(at <= Duration::from_secs(8), "first reported at {at:?}");
        assert_eq!(l.quality(), Quality::Poor);
        l.up = 0.0;
        // Loss leaves the 2 s window, then the better level must hold for 6 s.
        l.run(5.0);
        assert_eq!(l.quality(), Quality::Poor, "not yet: {:?}", l.reports);
        l.run(10.0);
        assert_eq!(l.quality(), Quality::Good);
        let steps: Vec<Quality> = l.reports.iter().map(|(_, r)| r.quality).collect();
        assert_eq!(steps, [Quality::Fair, Quality::Poor, Quality::Good]);
    }

    #[test]
    fn a_link_that_keeps_flapping_stays_marked_poor_instead_of_flickering() {
        let mut l = Link::new();
        for i in 0..30 {
            l.paused = i % 2 == 0;
            l.run(2.4);
        }
        assert_eq!(
            l.reports.len(),
            1,
            "one change to poor, no flicker: {:?}",
            l.reports
        );
        assert_eq!(l.quality(), Quality::Poor);
    }

    #[test]
    fn changes_of_one_participant_are_reported_at_most_every_two_seconds() {
        let mut l = Link::new();
        l.down = 0.05;
        l.run(4.0);
        assert_eq!(l.quality(), Quality::Fair);
        l.paused = true;
        l.run(0.8);
        assert_eq!(
            l.quality(),
            Quality::Fair,
            "the pause has not held long enough yet"
        );
        l.run(2.0);
        assert_eq!(l.quality(), Quality::Poor);
        for w in l.reports.windows(2) {
            assert!(w[1].0 - w[0].0 >= REPORT_INTERVAL, "{:?}", l.reports);
        }
    }

    #[test]
    fn a_participant_who_sends_and_gets_almost_nothing_is_not_judged_by_a_few_packets() {
        let mut meter = QualityMeter::default();
        let start = Instant::now();
        for i in 1..=20u64 {
            // A silent microphone: 2 packets a second, one of them missing now and then.
            let counts = Counts {
                up_received: i,
                up_missed: i / 3,
                ..Counts::default()
            };
            let s = Sample {
                counts,
                downlink: None,
                video_paused: false,
            };
            assert_eq!(meter.sample(start + TICK * i as u32, s), None);
        }
    }
}
