//! Attempt counters, one row per key and window.

use super::codec::db;
use super::{Cached, SqliteStore};
use async_trait::async_trait;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{OptionalExtension, params};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS rate_counter (
    key TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);
"#;

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn hit(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        expires_at: Expiry,
    ) -> StoreResult<u32> {
        let key = key.clone();
        self.run("counting an attempt", move |c| {
            c.cached_row(
                "INSERT INTO rate_counter (key, window_start, count, expires_at) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1
                 RETURNING count",
                params![key.as_str(), window_start.millis(), expires_at.epoch_secs()],
                |r| r.get(0),
            )
            .map_err(db("counting an attempt"))
        })
        .await
    }

    async fn attempts(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        let key = key.clone();
        self.read_point("reading attempts", move |c| {
            c.cached_row(
                "SELECT count FROM rate_counter WHERE key = ?1 AND window_start = ?2 AND expires_at * 1000 > ?3",
                params![key.as_str(), window_start.millis(), now.millis()],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(db("reading attempts"))
        })
        .await
    }

    async fn clear(&self, key: &RateKey, window_start: Timestamp) -> StoreResult<()> {
        let key = key.clone();
        self.run("clearing attempts", move |c| {
            c.cached_exec(
                "DELETE FROM rate_counter WHERE key = ?1 AND window_start = ?2",
                params![key.as_str(), window_start.millis()],
            )
            .map(|_| ())
            .map_err(db("clearing attempts"))
        })
        .await
    }

    async fn hit_below(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        limit: u32,
        expires_at: Expiry,
    ) -> StoreResult<Option<u32>> {
        if limit == 0 {
            return Ok(None);
        }
        let key = key.clone();
        self.run("counting an attempt", move |c| {
            // At the limit the update's WHERE fails and nothing is returned (or written).
            c.cached_row(
                "INSERT INTO rate_counter (key, window_start, count, expires_at) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1 WHERE count < ?4
                 RETURNING count",
                params![key.as_str(), window_start.millis(), expires_at.epoch_secs(), limit],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("counting an attempt"))
        })
        .await
    }

    async fn unhit(&self, key: &RateKey, window_start: Timestamp) -> StoreResult<()> {
        let key = key.clone();
        self.run("taking back an attempt", move |c| {
            c.cached_exec(
                "UPDATE rate_counter SET count = count - 1 WHERE key = ?1 AND window_start = ?2 AND count > 0",
                params![key.as_str(), window_start.millis()],
            )
            .map(|_| ())
            .map_err(db("taking back an attempt"))
        })
        .await
    }
}
