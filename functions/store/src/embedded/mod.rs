//! The embedded store for the single-machine portal: SQLite through `rusqlite`.
//!
//! One table per record kind, named after the kind, with one column per declared field.
//! Every read filters `expires_at` against the caller's `now`; [`SqliteStore::sweep`]
//! physically deletes what has expired (the portal runs it every minute).
//!
//! # Where things are
//! One module per aggregate, each with its tables, its row codecs and its ports:
//! `accounts` (moderators, sessions), `rooms` (rooms, guests, meetings), `chat`,
//! `logs` (access log, audit log), `nodes` (media node registry, room placement),
//! `rate_limit`, `queue` (the admission queue's counters) and `objects`; `codec` holds what they share (column parsing, error
//! mapping). This module opens the database, runs every call on the blocking pool, and holds
//! what makes erasure reach the disk: `secure_delete`, and `run_forgetting`, which truncates
//! the write-ahead log after a change that removes personal data. The scan for tests is in
//! `introspect` (feature `test-support`).

mod accounts;
mod chat;
mod codec;
#[cfg(feature = "test-support")]
mod introspect;
mod logs;
mod nodes;
mod objects;
mod queue;
mod rate_limit;
mod rooms;

use crate::backend;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{Connection, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Every table, created if missing when the store opens.
const SCHEMA: [&str; 8] = [
    accounts::SCHEMA,
    rooms::SCHEMA,
    chat::SCHEMA,
    logs::SCHEMA,
    nodes::SCHEMA,
    rate_limit::SCHEMA,
    objects::SCHEMA,
    queue::SCHEMA,
];

/// Tables that hold expiring records, for the sweeper.
const EXPIRING_TABLES: [RecordKind; 13] = [
    RecordKind::Placement,
    RecordKind::AdmissionQueue,
    RecordKind::RoomTicket,
    RecordKind::Session,
    RecordKind::Audit,
    RecordKind::RateCounter,
    RecordKind::Room,
    RecordKind::Guest,
    RecordKind::Meeting,
    RecordKind::ChatMessage,
    RecordKind::AccessLog,
    RecordKind::MediaNode,
    RecordKind::Object,
];

/// SQLite behind a mutex; each call runs on Tokio's blocking pool.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

/// What one sweep deleted, per record kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub deleted: Vec<(RecordKind, usize)>,
}

impl SweepReport {
    pub fn total(&self) -> usize {
        self.deleted.iter().map(|(_, n)| n).sum()
    }
}

impl SqliteStore {
    /// Opens (and creates or migrates) the database file.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path).map_err(backend("opening the embedded database"))?;
        Self::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> StoreResult<Self> {
        let conn =
            Connection::open_in_memory().map_err(backend("opening the embedded database"))?;
        Self::init(conn)
    }

    fn init(conn: Connection) -> StoreResult<Self> {
        // WAL lets the sweeper and requests interleave; NORMAL sync is safe with WAL.
        // secure_delete: a deleted row's bytes are overwritten with zeros in its page (and
        // freed pages are zeroed), so erased data cannot be read back from the file.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "secure_delete", "ON"))
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.pragma_update(None, "foreign_keys", "ON"))
            .and_then(|_| conn.busy_timeout(std::time::Duration::from_secs(5)))
            .and_then(|_| nodes::migrate(&conn))
            .and_then(|_| {
                SCHEMA
                    .iter()
                    .try_for_each(|tables| conn.execute_batch(tables))
            })
            .and_then(|_| accounts::migrate(&conn))
            .map_err(backend("creating the embedded schema"))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T, F>(&self, doing: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves SQLite itself consistent (each statement
            // is atomic), so a poisoned mutex is safe to keep using.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(backend(doing))?
    }

    /// Like `run`, for a change that removes or overwrites personal data: afterwards the
    /// write-ahead log is checkpointed and truncated to zero bytes. The WAL holds the old
    /// versions of every page it has seen, so without this an erased name stays readable
    /// in `aula.sqlite3-wal` until SQLite happens to overwrite that part of the file.
    async fn run_forgetting<T, F>(&self, doing: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        self.run(doing, move |c| {
            let out = f(c)?;
            forget_old_page_versions(c)?;
            Ok(out)
        })
        .await
    }

    /// Physically deletes every record whose expiry is at or before `now`.
    #[tracing::instrument(skip_all, fields(now = %now))]
    pub async fn sweep(&self, now: Timestamp) -> StoreResult<SweepReport> {
        self.run("sweeping expired records", move |c| {
            let tx = c
                .transaction()
                .map_err(backend("sweeping expired records"))?;
            let mut report = SweepReport::default();
            for kind in EXPIRING_TABLES {
                let n = tx
                    .execute(
                        &format!("DELETE FROM {} WHERE expires_at * 1000 <= ?1", kind.name()),
                        params![now.millis()],
                    )
                    .map_err(backend("sweeping expired records"))?;
                if n > 0 {
                    report.deleted.push((kind, n));
                }
            }
            tx.commit().map_err(backend("sweeping expired records"))?;
            if report.total() > 0 {
                forget_old_page_versions(c)?;
            }
            Ok(report)
        })
        .await
    }
}

/// Copies every page of the write-ahead log into the database file and truncates the log.
/// One connection behind a mutex means no reader holds an old snapshot, so the checkpoint
/// completes; if it ever reports busy, the next erasure or sweep truncates the log.
fn forget_old_page_versions(c: &Connection) -> StoreResult<()> {
    let busy: i64 = c
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
        .map_err(backend("truncating the write-ahead log"))?;
    if busy != 0 {
        tracing::warn!("the write-ahead log could not be truncated now (busy)");
    }
    Ok(())
}
