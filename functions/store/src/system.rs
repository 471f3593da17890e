//! The production implementations of the clock and id ports.

use aula_domain::ids::IdGenerator;
use aula_domain::{Clock, Timestamp};
use rand::RngCore;

/// Reads the system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_millis(now)
    }
}

/// Random ids and tokens from the operating system's CSPRNG (via `rand`'s thread RNG,
/// which is seeded from it and reseeds itself).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn uuid(&self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.random_16()).into_uuid()
    }
    fn random_16(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        b
    }
}
