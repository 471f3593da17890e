//! Who is speaking, from the audio level header extension (RFC 6464) the browsers send:
//! the active speaker (its high simulcast layer is forwarded) and the last N speakers (only
//! their video is forwarded, as the state portals do for large classes).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// RFC 6464 levels are -dBov: 0 is the loudest, 127 silence. Speech is usually above -50 dBov.
const SPEECH_LEVEL: u8 = 50;
/// How often the active speaker may change; shorter flips the grid at every cough.
pub const DECISION_INTERVAL: Duration = Duration::from_millis(400);
/// The new speaker has to be this much louder (smoothed, in dB) than the current one.
const HYSTERESIS_DB: f32 = 6.0;
/// Smoothing of the level per audio packet (50 per second).
const ALPHA: f32 = 0.1;

#[derive(Debug, Clone, Copy, Default)]
struct Level {
    /// Smoothed loudness in dB above silence (0 = silent, 127 = loudest).
    loudness: f32,
}

/// The speaker state of one room.
#[derive(Debug)]
pub struct Speakers<K> {
    levels: HashMap<K, Level>,
    /// Most recent speaker first; newcomers go to the end.
    recency: Vec<K>,
    active: Option<K>,
    next_decision: Option<Instant>,
}

impl<K: Copy + Eq + Hash> Default for Speakers<K> {
    fn default() -> Self {
        Speakers {
            levels: HashMap::new(),
            recency: Vec::new(),
            active: None,
            next_decision: None,
        }
    }
}

impl<K: Copy + Eq + Hash> Speakers<K> {
    pub fn join(&mut self, who: K) {
        if !self.recency.contains(&who) {
            self.recency.push(who);
        }
    }

    pub fn leave(&mut self, who: K) {
        self.recency.retain(|k| *k != who);
        self.levels.remove(&who);
        if self.active == Some(who) {
            self.active = None;
        }
    }

    /// One audio packet's level (`None` when the packet had no extension).
    pub fn level(&mut self, who: K, level: u8, voice: bool) {
        let loudness = if voice || level <= SPEECH_LEVEL {
            127.0 - f32::from(level.min(127))
        } else {
            0.0
        };
        let l = self.levels.entry(who).or_default();
        l.loudness += ALPHA * (loudness - l.loudness);
    }

    /// Silence from a muted participant: they cannot stay the active speaker.
    pub fn silence(&mut self, who: K) {
        self.levels.remove(&who);
    }

    /// Re-evaluates at most every [`DECISION_INTERVAL`]; returns true when the active
    /// speaker changed.
    pub fn decide(&mut self, now: Instant) -> bool {
        if self.next_decision.is_some_and(|t| now < t) {
            return false;
        }
        self.next_decision = Some(now + DECISION_INTERVAL);
        let threshold = 127.0 - f32::from(SPEECH_LEVEL);
        let loudest = self
            .levels
            .iter()
            .filter(|(_, l)| l.loudness >= threshold)
            .max_by(|a, b| a.1.loudness.total_cmp(&b.1.loudness))
            .map(|(k, l)| (*k, l.loudness));
        let Some((candidate, loudness)) = loudest else {
            return false;
        };
        if self.active == Some(candidate) {
            return false;
        }
        let current = self
            .active
            .and_then(|a| self.levels.get(&a))
            .map_or(0.0, |l| l.loudness);
        if current >= threshold && loudness < current + HYSTERESIS_DB {
            return false;
        }
        self.active = Some(candidate);
        self.recency.retain(|k| *k != candidate);
        self.recency.insert(0, candidate);
        true
    }

    pub fn active(&self) -> Option<K> {
        self.active
    }

    /// Whose video is forwarded: the `n` most recent speakers (then in order of joining).
    pub fn last_n(&self, n: usize) -> impl Iterator<Item = K> + '_ {
        self.recency.iter().copied().take(n)
    }

    pub fn is_in_last_n(&self, who: K, n: usize) -> bool {
        self.recency.iter().take(n).any(|k| *k == who)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speak(s: &mut Speakers<u8>, who: u8, level: u8, packets: usize) {
        for _ in 0..packets {
            s.level(who, level, true);
        }
    }

    #[test]
    fn the_loudest_voice_becomes_the_active_speaker_and_moves_to_the_front() {
        let t0 = Instant::now();
        let mut s = Speakers::default();
        for who in 1..=4 {
            s.join(who);
        }
        speak(&mut s, 3, 20, 50);
        speak(&mut s, 2, 120, 50);
        assert!(s.decide(t0));
        assert_eq!(s.active(), Some(3));
        assert_eq!(s.last_n(2).collect::<Vec<_>>(), vec![3, 1]);
    }

    #[test]
    fn a_cough_does_not_take_the_floor_from_the_speaker() {
        let t0 = Instant::now();
        let mut s = Speakers::default();
        s.join(1);
        s.join(2);
        speak(&mut s, 1, 25, 50);
        assert!(s.decide(t0));
        speak(&mut s, 2, 24, 3);
        speak(&mut s, 1, 25, 3);
        assert!(!s.decide(t0 + DECISION_INTERVAL));
        assert_eq!(s.active(), Some(1));
    }

    #[test]
    fn only_the_last_n_speakers_keep_their_video() {
        let t0 = Instant::now();
        let mut s = Speakers::default();
        for who in 1..=30 {
            s.join(who);
        }
        for (i, who) in [30u8, 29, 28].into_iter().enumerate() {
            speak(&mut s, who, 10, 100);
            assert!(s.decide(t0 + DECISION_INTERVAL * (i as u32 + 1)));
            s.silence(who);
        }
        assert!(s.is_in_last_n(28, 20));
        assert!(s.is_in_last_n(30, 20));
        assert_eq!(s.last_n(20).count(), 20);
        assert!(!s.is_in_last_n(18, 20), "pushed out by three speakers");
    }

    #[test]
    fn decisions_wait_for_the_interval() {
        let t0 = Instant::now();
        let mut s = Speakers::default();
        s.join(1);
        s.join(2);
        speak(&mut s, 1, 10, 50);
        assert!(s.decide(t0));
        s.silence(1);
        speak(&mut s, 2, 10, 50);
        assert!(!s.decide(t0 + Duration::from_millis(100)));
        assert!(s.decide(t0 + DECISION_INTERVAL));
        assert_eq!(s.active(), Some(2));
    }
}
