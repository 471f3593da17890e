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
//! mapping). This module opens the database, runs calls on the blocking pool (a lookup by key
//! runs at once when a reader is idle), caches prepared statements, and holds
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
use std::sync::{Arc, Condvar, Mutex};

/// Statements through the connection's statement cache. Parsing and planning a statement
/// cost about as much as running one of the point reads and writes a join makes, and the
/// same few dozen statements run on every request.
pub(super) trait Cached {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;

    fn cached_exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn cached_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    fn cached_exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

/// Room for every distinct statement the store runs (about 70), so none is parsed twice.
const STATEMENT_CACHE: usize = 128;

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
const EXPIRING_TABLES: [RecordKind; 14] = [
    RecordKind::Placement,
    RecordKind::ScheduledMeeting,
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

/// SQLite with one writer and a few read-only connections (WAL lets readers run beside
/// the writer, each on the last committed state); calls run on Tokio's blocking pool,
/// except lookups by key on an idle reader (see `read_point`).
/// At 8:00 most calls are reads (a pupil's grant reads four records and writes one), and
/// one connection behind a mutex made every one of them wait for the others.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
    /// Access-log entries not yet written (see `append_access_log`).
    pending_log: Arc<Mutex<Vec<AccessLogEntry>>>,
}

/// Read-only connections, handed out one per call.
struct Readers {
    count: usize,
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

impl Readers {
    fn new(connections: Vec<Connection>) -> Readers {
        Readers {
            count: connections.len(),
            idle: Mutex::new(connections),
            returned: Condvar::new(),
        }
    }

    /// An idle connection if there is one now.
    fn try_take(&self) -> Option<Reader<'_>> {
        let conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
        Some(Reader {
            from: self,
            conn: Some(conn),
        })
    }

    /// An idle connection, waiting for one to come back if all are in use.
    fn take(&self) -> Reader<'_> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = idle.pop() {
                return Reader {
                    from: self,
                    conn: Some(c),
                };
            }
            idle = self.returned.wait(idle).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A connection taken from [`Readers`]; it goes back when dropped (also if the call panics).
struct Reader<'a> {
    from: &'a Readers,
    conn: Option<Connection>,
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.from
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
            self.from.returned.notify_one();
        }
    }
}

/// How many read-only connections the store opens: reads are short, and the blocking pool
/// runs them beside the writer; more than the cores would only wait for a core.
fn reader_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
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
        let mut store = Self::init(conn)?;
        let mut readers = Vec::new();
        for _ in 0..reader_count() {
            let r = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .and_then(|r| {
                r.busy_timeout(std::time::Duration::from_secs(5))?;
                r.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Ok(r)
            })
            .map_err(backend("opening the embedded database for reading"))?;
            readers.push(r);
        }
        store.readers = Arc::new(Readers::new(readers));
        Ok(store)
    }

    /// A private in-memory database (tests). It has no read-only connections (another
    /// connection would open another database): reads use the writer.
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
            .map(|_| conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE))
            .and_then(|_| nodes::migrate(&conn))
            .and_then(|_| queue::migrate(&conn))
            .and_then(|_| {
                SCHEMA
                    .iter()
                    .try_for_each(|tables| conn.execute_batch(tables))
            })
            .and_then(|_| accounts::migrate(&conn))
            .and_then(|_| rooms::migrate(&conn))
            .map_err(backend("creating the embedded schema"))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(Readers::new(Vec::new())),
            pending_log: Arc::default(),
        })
    }

    /// Like `run`, for a call that only reads: on a read-only connection when the store has
    /// them, so reads neither wait for the writer nor for each other.
    async fn read<T, F>(&self, doing: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        if self.readers.count == 0 {
            return self.run(doing, f).await;
        }
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let mut conn = readers.take();
            f(&mut conn)
        })
        .await
        .map_err(backend(doing))?
    }

    /// Like `read`, for a lookup of one record by its key (tens of microseconds): it runs
    /// at once on the calling thread when a reader is idle. Handing each of a join's
    /// lookups to the blocking pool and back cost more than the lookup (two thread
    /// wake-ups each; a quarter of the portal's CPU at 600 pupils/s went to futex calls).
    async fn read_point<T, F>(&self, doing: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        match self.readers.try_take() {
            Some(mut conn) => f(&mut conn),
            None => self.read(doing, f).await,
        }
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
                    .cached_exec(
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
pub(super) fn forget_old_page_versions(c: &Connection) -> StoreResult<()> {
    let busy: i64 = c
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
        .map_err(backend("truncating the write-ahead log"))?;
    if busy != 0 {
        tracing::warn!("the write-ahead log could not be truncated now (busy)");
    }
    Ok(())
}
