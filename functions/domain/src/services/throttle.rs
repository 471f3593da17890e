//! Login throttling that an attacker cannot aim at someone else (OWASP's authentication and
//! credential-stuffing guidance):
//!
//! - **per account and source**: a source is the known-device cookie when the browser has
//!   one for this account, otherwise the client address. A few failures cost nothing; after
//!   that each further attempt of that source on that account waits twice as long as the
//!   previous one (1 s, 2 s, 4 s, … up to a cap). Nobody else's failures count here, so a
//!   teacher is never slowed by an attacker elsewhere.
//! - **per account, from anywhere**: beyond a ceiling, *unknown* sources are slowed too (so a
//!   botnet with many addresses gains little), but never blocked for longer than a short cap;
//!   known devices pass.
//! - **per address**: only failures count, with a threshold a school NAT (hundreds of people
//!   behind one address, mostly typing the right password) never reaches; past it, unknown
//!   devices behind that address wait for the window to end. Known devices pass.
//!
//! Waits are enforced with slots: with `d` the current wait, time is cut into slots of
//! length `d` and each slot admits one attempt, claimed with the store's atomic counter, so
//! parallel attempts cannot slip through together. A failure is also recorded in the slot
//! of the next (doubled) wait, so the attempt right after it waits out that slot. Only
//! keyed hashes reach the store; counters die with their window or slot.

use crate::ports::{RateLimitStore, StoreResult};
use crate::retention::{RATE_WINDOW, THROTTLE_WINDOW};
use crate::{Expiry, RateKey, Span, Timestamp};

/// The limits. The defaults suit a school behind one NAT address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures one source may make on one account within the window before it waits.
    pub free_failures_per_source: u32,
    /// The longest wait of one source on one account.
    pub max_source_wait: Span,
    /// Failures on one account from anywhere within the window before unknown sources wait.
    pub account_ceiling: u32,
    /// The longest wait that ceiling imposes: it slows, it never locks out.
    pub max_account_wait: Span,
    /// Failures from one address within the window before unknown devices behind it wait
    /// for the window's end.
    pub max_failures_per_address: u32,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            free_failures_per_source: 3,
            // Powers of two seconds, so every slot of a longer wait starts where one of a
            // shorter wait ends, and a retry that waits as told is never told less.
            max_source_wait: Span::seconds(1024),
            account_ceiling: 10,
            max_account_wait: Span::seconds(64),
            // Hundreds of teachers behind one address with a typo each stay well below it;
            // a credential-stuffing run from that address reaches it within minutes.
            max_failures_per_address: 300,
        }
    }
}

/// The counters one login attempt touches (keyed hashes, never the email or address).
#[derive(Debug, Clone)]
pub struct AttemptKeys {
    /// This account from this source (known device or address).
    pub pair: RateKey,
    /// This account from anywhere.
    pub account: RateKey,
    /// This address, whatever the account.
    pub address: RateKey,
    /// The browser showed a valid known-device cookie for this account.
    pub known_device: bool,
}

/// Whether an attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    Wait { retry_after_secs: u64 },
}

/// The wait after `failures` failures when the first `free` cost nothing: 1 s, 2 s, 4 s, …
/// up to `max`.
pub fn backoff(failures: u32, free: u32, max: Span) -> Option<Span> {
    let beyond = failures.checked_sub(free).filter(|&n| n > 0)?;
    let secs = 1_i64
        .checked_shl(beyond - 1)
        .filter(|&s| s > 0 && s < i64::MAX / 1000);
    let wait = secs.map_or(max, Span::seconds);
    Some(if wait.millis() > max.millis() {
        max
    } else {
        wait
    })
}

/// The slot of length `d` that holds `now`: its start and end.
pub fn slot(now: Timestamp, d: Span) -> (Timestamp, Timestamp) {
    let len = d.millis().max(1);
    let start = Timestamp::from_millis(now.millis().div_euclid(len) * len);
    (start, Timestamp::from_millis(start.millis() + len))
}

/// The per-address window that holds `now`.
pub fn address_window(now: Timestamp) -> Timestamp {
    slot(now, RATE_WINDOW).0
}

/// The per-account and per-source window that holds `now`.
pub fn throttle_window(now: Timestamp) -> Timestamp {
    slot(now, THROTTLE_WINDOW).0
}

fn secs_until(now: Timestamp, end: Timestamp) -> u64 {
    u64::try_from(end.millis() - now.millis())
        .unwrap_or(0)
        .div_ceil(1000)
        .max(1)
}

fn slot_key(base: &RateKey, d: Span) -> StoreResult<RateKey> {
    // "<purpose>:<hash>" becomes "<purpose>-slot<seconds>:<hash>": slots of different
    // lengths never share a counter.
    let (purpose, hash) = base
        .as_str()
        .split_once(':')
        .unwrap_or(("rate", base.as_str()));
    RateKey::parse(&format!("{purpose}-slot{}:{hash}", d.whole_seconds())).map_err(|e| {
        crate::ports::StoreError::Corrupt {
            kind: "rate key",
            reason: e.to_string(),
        }
    })
}

pub struct Throttle<'a> {
    pub store: &'a dyn RateLimitStore,
    pub policy: &'a ThrottlePolicy,
}

impl Throttle<'_> {
    /// Claims a slot of the wait `d` for this attempt; `Some(seconds)` when the slot is
    /// taken (by a recorded failure or a parallel attempt).
    async fn claim(&self, key: &RateKey, d: Span, now: Timestamp) -> StoreResult<Option<u64>> {
        let (start, end) = slot(now, d);
        let used = self
            .store
            .hit(&slot_key(key, d)?, start, Expiry::at(end))
            .await?;
        Ok((used > 1).then(|| secs_until(now, end)))
    }

    /// Records that the slot of the wait `d` holding `now` is used.
    async fn mark(&self, key: &RateKey, d: Span, now: Timestamp) -> StoreResult<()> {
        let (start, end) = slot(now, d);
        self.store
            .hit(&slot_key(key, d)?, start, Expiry::at(end))
            .await
            .map(|_| ())
    }

    /// Asked before the password is checked. An unknown device's attempt is counted
    /// against its address here, before the check, in one conditional write: parallel
    /// attempts cannot all pass a count that none of them has raised yet, so a flood stops
    /// at the limit. A right password gives the count back (`succeeded`).
    pub async fn check(&self, keys: &AttemptKeys, now: Timestamp) -> StoreResult<Verdict> {
        let p = self.policy;
        if !keys.known_device {
            let window = address_window(now);
            let counted = self
                .store
                .hit_below(
                    &keys.address,
                    window,
                    p.max_failures_per_address,
                    Expiry::at(window.plus(RATE_WINDOW)),
                )
                .await?;
            if counted.is_none() {
                return Ok(Verdict::Wait {
                    retry_after_secs: secs_until(now, window.plus(RATE_WINDOW)),
                });
            }
        }
        let verdict = self.check_account(keys, now).await?;
        if verdict != Verdict::Proceed && !keys.known_device {
            // Not tried after all: the address's count goes back.
            self.store.unhit(&keys.address, address_window(now)).await?;
        }
        Ok(verdict)
    }

    async fn check_account(&self, keys: &AttemptKeys, now: Timestamp) -> StoreResult<Verdict> {
        let p = self.policy;
        let day = throttle_window(now);
        let pair = self.store.attempts(&keys.pair, day, now).await?;
        if let Some(d) = backoff(pair, p.free_failures_per_source, p.max_source_wait)
            && let Some(retry_after_secs) = self.claim(&keys.pair, d, now).await?
        {
            return Ok(Verdict::Wait { retry_after_secs });
        }
        if !keys.known_device {
            let account = self.store.attempts(&keys.account, day, now).await?;
            if let Some(d) = backoff(account, p.account_ceiling, p.max_account_wait)
                && let Some(retry_after_secs) = self.claim(&keys.account, d, now).await?
            {
                return Ok(Verdict::Wait { retry_after_secs });
            }
        }
        Ok(Verdict::Proceed)
    }

    /// Counts a wrong password (or an unknown email: the same).
    pub async fn failed(&self, keys: &AttemptKeys, now: Timestamp) -> StoreResult<()> {
        let p = self.policy;
        let day = throttle_window(now);
        let day_expiry = Expiry::at(day.plus(THROTTLE_WINDOW));
        let pair = self.store.hit(&keys.pair, day, day_expiry).await?;
        if let Some(d) = backoff(pair, p.free_failures_per_source, p.max_source_wait) {
            self.mark(&keys.pair, d, now).await?;
        }
        let account = self.store.hit(&keys.account, day, day_expiry).await?;
        if !keys.known_device
            && let Some(d) = backoff(account, p.account_ceiling, p.max_account_wait)
        {
            self.mark(&keys.account, d, now).await?;
        }
        if keys.known_device {
            // An unknown device's failure was counted by `check` already.
            let window = address_window(now);
            self.store
                .hit(&keys.address, window, Expiry::at(window.plus(RATE_WINDOW)))
                .await?;
        }
        Ok(())
    }

    /// After a right password this source starts afresh on this account, and the attempt
    /// `check` counted against the address is taken back (a school's teachers logging in
    /// never fill it). The account's count stays: it measures attacks, not this user.
    pub async fn succeeded(&self, keys: &AttemptKeys, now: Timestamp) -> StoreResult<()> {
        if !keys.known_device {
            self.store.unhit(&keys.address, address_window(now)).await?;
        }
        self.store.clear(&keys.pair, throttle_window(now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::StoreResult;
    use async_trait::async_trait;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// The rate-limit port in memory, with the adapters' semantics (a counter per key and
    /// window start, invisible once expired).
    #[derive(Default)]
    struct Counters(Mutex<HashMap<(String, i64), (u32, Expiry)>>);

    #[async_trait]
    impl RateLimitStore for Counters {
        async fn hit(&self, key: &RateKey, ws: Timestamp, exp: Expiry) -> StoreResult<u32> {
            let mut m = self.0.lock().expect("lock");
            let e = m
                .entry((key.as_str().to_owned(), ws.millis()))
                .or_insert((0, exp));
            e.0 += 1;
            Ok(e.0)
        }
        async fn attempts(&self, key: &RateKey, ws: Timestamp, now: Timestamp) -> StoreResult<u32> {
            let m = self.0.lock().expect("lock");
            Ok(m.get(&(key.as_str().to_owned(), ws.millis()))
                .filter(|(_, exp)| exp.is_live_at(now))
                .map_or(0, |(n, _)| *n))
        }
        async fn clear(&self, key: &RateKey, ws: Timestamp) -> StoreResult<()> {
            self.0
                .lock()
                .expect("lock")
                .remove(&(key.as_str().to_owned(), ws.millis()));
            Ok(())
        }
        async fn hit_below(
            &self,
            key: &RateKey,
            ws: Timestamp,
            limit: u32,
            exp: Expiry,
        ) -> StoreResult<Option<u32>> {
            let mut m = self.0.lock().expect("lock");
            let e = m
                .entry((key.as_str().to_owned(), ws.millis()))
                .or_insert((0, exp));
            if e.0 >= limit {
                return Ok(None);
            }
            e.0 += 1;
            Ok(Some(e.0))
        }
        async fn unhit(&self, key: &RateKey, ws: Timestamp) -> StoreResult<()> {
            if let Some(e) = self
                .0
                .lock()
                .expect("lock")
                .get_mut(&(key.as_str().to_owned(), ws.millis()))
            {
                e.0 = e.0.saturating_sub(1);
            }
            Ok(())
        }
    }

    /// Runs a future of the in-memory port, which never waits.
    fn ready<T>(f: impl std::future::Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the in-memory port never waits"),
        }
    }

    fn keys(account: &str, source: &str, address: &str, known_device: bool) -> AttemptKeys {
        let k = |s: &str| RateKey::parse(s).expect("key");
        AttemptKeys {
            pair: k(&format!("login-pair:{account}-{source}")),
            account: k(&format!("login-account:{account}")),
            address: k(&format!("login-address:{address}")),
            known_device,
        }
    }

    struct World {
        store: Counters,
        policy: ThrottlePolicy,
        now: Timestamp,
    }

    impl World {
        fn new() -> Self {
            World {
                store: Counters::default(),
                policy: ThrottlePolicy::default(),
                // The start of a day, so an attack of hours stays in one throttle window.
                now: throttle_window(Timestamp::from_millis(1_800_000_000_000)),
            }
        }
        fn throttle(&self) -> Throttle<'_> {
            Throttle {
                store: &self.store,
                policy: &self.policy,
            }
        }
        /// One attempt with a wrong password: `Err(retry_after)` when it had to wait.
        fn fail(&self, k: &AttemptKeys) -> Result<(), u64> {
            match ready(self.throttle().check(k, self.now)).expect("check") {
                Verdict::Wait { retry_after_secs } => Err(retry_after_secs),
                Verdict::Proceed => {
                    ready(self.throttle().failed(k, self.now)).expect("count");
                    Ok(())
                }
            }
        }
        fn may_try(&self, k: &AttemptKeys) -> Verdict {
            ready(self.throttle().check(k, self.now)).expect("check")
        }
        fn wait(&mut self, secs: u64) {
            self.now = self
                .now
                .plus(Span::seconds(i64::try_from(secs).expect("small")));
        }
    }

    #[test]
    fn waits_double_after_the_free_failures_and_stop_at_the_cap() {
        let max = Span::seconds(1024);
        let waits: Vec<_> = (0..16)
            .map(|n| backoff(n, 3, max).map(Span::whole_seconds))
            .collect();
        assert_eq!(&waits[..4], &[None, None, None, None]);
        assert_eq!(
            &waits[4..9],
            &[Some(1), Some(2), Some(4), Some(8), Some(16)]
        );
        assert_eq!(waits[14], Some(1024));
        assert_eq!(waits[15], Some(1024));
        assert_eq!(backoff(u32::MAX, 3, max), Some(max));
    }

    #[test]
    fn an_attacker_retrying_as_told_waits_longer_and_longer() {
        let mut w = World::new();
        let attacker = keys("teacher", "addr-attacker", "attacker", false);
        let mut told = Vec::new();
        let mut failures = 0;
        while failures < 50 {
            match w.fail(&attacker) {
                Ok(()) => failures += 1,
                Err(retry) => {
                    told.push(retry);
                    w.wait(retry);
                }
            }
        }
        assert!(
            told.windows(2).all(|p| p[0] <= p[1]),
            "never shorter: {told:?}"
        );
        assert!(told.first() < told.last(), "{told:?}");
        assert!(
            *told.last().expect("told") >= 1000,
            "after 50 failures each try waits a quarter of an hour: {told:?}"
        );
    }

    #[test]
    fn a_second_attempt_right_after_a_throttled_failure_waits() {
        let w = World::new();
        let k = keys("teacher", "addr-a", "a", false);
        for _ in 0..4 {
            w.fail(&k).expect("the free failures and the first slot");
        }
        assert!(matches!(w.may_try(&k), Verdict::Wait { .. }));
        // Parallel attempts in one slot: only one is admitted.
        let mut w2 = World::new();
        for _ in 0..4 {
            w2.fail(&k).expect("free");
        }
        w2.wait(60);
        let admitted = (0..10)
            .filter(|_| w2.may_try(&k) == Verdict::Proceed)
            .count();
        assert_eq!(admitted, 1);
    }

    #[test]
    fn the_teachers_known_device_passes_while_an_attacker_hammers_the_account() {
        let mut w = World::new();
        let attacker = keys("teacher", "addr-attacker", "attacker", false);
        let mut failures = 0;
        while failures < 50 {
            match w.fail(&attacker) {
                Ok(()) => failures += 1,
                Err(retry) => w.wait(retry),
            }
        }
        let device = keys("teacher", "device-1", "school", true);
        assert_eq!(w.may_try(&device), Verdict::Proceed);
        // A teacher on a new device is only slowed, by at most the account cap.
        let new_device = keys("teacher", "addr-school", "school", false);
        match w.may_try(&new_device) {
            Verdict::Proceed => {}
            Verdict::Wait { retry_after_secs } => {
                assert!(retry_after_secs <= 64, "{retry_after_secs}");
                w.wait(retry_after_secs);
                assert_eq!(w.may_try(&new_device), Verdict::Proceed);
            }
        }
    }

    #[test]
    fn two_hundred_people_behind_one_address_with_typos_are_never_held_up() {
        let w = World::new();
        for i in 0..200 {
            let k = keys(&format!("user{i}"), "addr-nat", "nat", false);
            // Every one mistypes once; every fifth twice.
            let typos = if i % 5 == 0 { 2 } else { 1 };
            for _ in 0..typos {
                w.fail(&k).expect("a typo is answered, not throttled");
            }
            assert_eq!(w.may_try(&k), Verdict::Proceed, "user {i}");
            ready(w.throttle().succeeded(&k, w.now)).expect("clear");
        }
    }

    #[test]
    fn a_credential_stuffing_flood_from_one_address_is_stopped_until_the_window_ends() {
        let w = World::new();
        let mut refused = None;
        for i in 0..1000 {
            let k = keys(&format!("victim{i}"), "addr-bot", "bot", false);
            if let Err(retry) = w.fail(&k) {
                refused = Some((i, retry));
                break;
            }
        }
        let (at, retry) = refused.expect("the flood is stopped");
        assert_eq!(at, 300);
        assert!((1..=900).contains(&retry));
        // The address's own known devices still get in.
        let device = keys("teacher", "device-9", "bot", true);
        assert_eq!(w.may_try(&device), Verdict::Proceed);
    }

    #[test]
    fn parallel_attempts_from_one_address_stop_at_its_limit_and_right_passwords_do_not_count() {
        let w = World::new();
        let limit = w.policy.max_failures_per_address;
        for i in 0..limit - 5 {
            w.fail(&keys(&format!("victim{i}"), "addr-bot", "bot", false))
                .expect("below the limit");
        }
        // A flood: 50 attempts checked before any of them is answered.
        let flood: Vec<_> = (0..50)
            .map(|i| keys(&format!("flood{i}"), "addr-bot", "bot", false))
            .collect();
        let admitted: Vec<_> = flood
            .iter()
            .filter(|k| w.may_try(k) == Verdict::Proceed)
            .collect();
        assert_eq!(admitted.len(), 5, "only up to the limit");
        for k in &admitted {
            ready(w.throttle().failed(k, w.now)).expect("count");
        }
        let counted = ready(
            w.store
                .attempts(&flood[0].address, address_window(w.now), w.now),
        )
        .expect("read");
        assert_eq!(counted, limit);

        // Behind another address, right passwords leave the count where it was.
        let school = keys("teacher", "addr-school", "school", false);
        for _ in 0..3 {
            assert_eq!(w.may_try(&school), Verdict::Proceed);
            ready(w.throttle().succeeded(&school, w.now)).expect("succeeded");
        }
        let counted = ready(
            w.store
                .attempts(&school.address, address_window(w.now), w.now),
        )
        .expect("read");
        assert_eq!(counted, 0);
    }

    #[test]
    fn a_success_starts_the_source_afresh() {
        let mut w = World::new();
        let k = keys("teacher", "addr-a", "a", false);
        for _ in 0..5 {
            match w.fail(&k) {
                Ok(()) => {}
                Err(r) => w.wait(r),
            }
        }
        w.wait(60);
        assert_eq!(w.may_try(&k), Verdict::Proceed);
        ready(w.throttle().succeeded(&k, w.now)).expect("clear");
        for _ in 0..3 {
            w.fail(&k).expect("free again");
        }
    }
}
