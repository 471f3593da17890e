//! The admission queue: its counters (one row) and the waiting rooms' places, changed in
//! single statements or transactions (every call holds the one connection).

use super::codec::db;
use super::{Cached, SqliteStore};
use async_trait::async_trait;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{OptionalExtension, params};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS admission_queue (
    queue TEXT PRIMARY KEY,
    issued INTEGER NOT NULL,
    admitted_through INTEGER NOT NULL,
    -- places above the mark let in early: a JSON array of numbers, ascending
    entered TEXT NOT NULL DEFAULT '[]',
    moved_at INTEGER NOT NULL,
    capacity_seen_at INTEGER,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS room_ticket (
    room_id TEXT PRIMARY KEY,
    number INTEGER NOT NULL,
    first_ahead INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"#;

const QUEUE: &str = "media";

/// Databases made before places could be let in early: the queue lives minutes (a day at
/// most), so it is dropped rather than converted; waiting rooms queue again at their next
/// poll.
pub(super) fn migrate(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    let tables: i64 = c.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'admission_queue'",
        [],
        |r| r.get(0),
    )?;
    let current: i64 = c.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('admission_queue') WHERE name = 'entered'",
        [],
        |r| r.get(0),
    )?;
    if tables > 0 && current == 0 {
        c.execute_batch("DROP TABLE admission_queue; DROP TABLE IF EXISTS room_ticket")?;
    }
    Ok(())
}

fn queue_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AdmissionQueue> {
    let entered: String = r.get("entered")?;
    Ok(AdmissionQueue {
        issued: to_u64(r.get("issued")?),
        admitted_through: to_u64(r.get("admitted_through")?),
        entered: serde_json::from_str(&entered).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })?,
        moved_at: Timestamp::from_millis(r.get("moved_at")?),
        capacity_seen_at: r
            .get::<_, Option<i64>>("capacity_seen_at")?
            .map(Timestamp::from_millis),
        expires_at: Expiry::from_epoch_secs(r.get("expires_at")?),
    })
}

/// Creates the row if it is missing or expired (a queue nobody used for a day starts again).
fn fresh_row(c: &rusqlite::Connection, now: Timestamp) -> rusqlite::Result<()> {
    c.cached_exec(
        "DELETE FROM admission_queue WHERE queue = ?1 AND expires_at * 1000 <= ?2",
        params![QUEUE, now.millis()],
    )?;
    c.cached_exec(
        "INSERT OR IGNORE INTO admission_queue (queue, issued, admitted_through, moved_at, expires_at)
         VALUES (?1, 0, 0, ?2, ?3)",
        params![
            QUEUE,
            now.millis(),
            retention::admission_queue_expiry(now).epoch_secs()
        ],
    )?;
    Ok(())
}

/// The room's live place, its lifetime renewed (its pupils are still asking).
fn renewed_ticket(
    c: &rusqlite::Connection,
    room: RoomId,
    now: Timestamp,
) -> rusqlite::Result<Option<RoomTicket>> {
    let expires = retention::room_ticket_expiry(now);
    c.cached_row(
        "UPDATE room_ticket SET expires_at = ?3
         WHERE room_id = ?1 AND expires_at * 1000 > ?2
         RETURNING number, first_ahead, issued_at",
        params![room.to_string(), now.millis(), expires.epoch_secs()],
        |r| {
            Ok(RoomTicket {
                room_id: room,
                number: to_u64(r.get(0)?),
                first_ahead: to_u64(r.get(1)?),
                issued_at: Timestamp::from_millis(r.get(2)?),
                expires_at: expires,
            })
        },
    )
    .optional()
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[async_trait]
impl AdmissionQueueStore for SqliteStore {
    async fn admission_queue(&self, now: Timestamp) -> StoreResult<AdmissionQueue> {
        self.read_point("reading the admission queue", move |c| {
            let row = c
                .cached_row(
                    "SELECT * FROM admission_queue WHERE queue = ?1 AND expires_at * 1000 > ?2",
                    params![QUEUE, now.millis()],
                    queue_from_row,
                )
                .optional()
                .map_err(db("reading the admission queue"))?;
            Ok(row.unwrap_or_else(|| AdmissionQueue::empty(now)))
        })
        .await
    }

    async fn room_ticket(&self, room: RoomId, now: Timestamp) -> StoreResult<Option<RoomTicket>> {
        self.run("reading a room's place in the queue", move |c| {
            renewed_ticket(c, room, now).map_err(db("reading a room's place in the queue"))
        })
        .await
    }

    async fn take_room_ticket(
        &self,
        room: RoomId,
        let_in: u64,
        now: Timestamp,
    ) -> StoreResult<RoomTicket> {
        self.run("queueing a room", move |c| {
            let tx = c.transaction().map_err(db("queueing a room"))?;
            if let Some(t) = renewed_ticket(&tx, room, now).map_err(db("queueing a room"))? {
                return Ok(t);
            }
            fresh_row(&tx, now).map_err(db("queueing a room"))?;
            let n: i64 = tx
                .cached_row(
                    "UPDATE admission_queue SET issued = issued + 1, expires_at = ?2
                     WHERE queue = ?1 RETURNING issued",
                    params![
                        QUEUE,
                        retention::admission_queue_expiry(now).epoch_secs()
                    ],
                    |r| r.get(0),
                )
                .map_err(db("queueing a room"))?;
            let number = to_u64(n);
            let ticket = RoomTicket::taken(room, number, let_in, now);
            tx.cached_exec(
                "INSERT OR REPLACE INTO room_ticket (room_id, number, first_ahead, issued_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    room.to_string(),
                    n,
                    i64::try_from(ticket.first_ahead).unwrap_or(i64::MAX),
                    now.millis(),
                    ticket.expires_at.epoch_secs()
                ],
            )
            .map_err(db("queueing a room"))?;
            tx.commit().map_err(db("queueing a room"))?;
            Ok(ticket)
        })
        .await
    }

    async fn room_admitted(
        &self,
        ticket: &RoomTicket,
        passing: bool,
        now: Timestamp,
    ) -> StoreResult<()> {
        let t = *ticket;
        let number = i64::try_from(t.number).unwrap_or(i64::MAX);
        let doing = "letting a room in from the queue";
        self.run(doing, move |c| {
            let tx = c.transaction().map_err(db(doing))?;
            tx.cached_exec(
                "DELETE FROM room_ticket WHERE room_id = ?1 AND number = ?2",
                params![t.room_id.to_string(), number],
            )
            .map_err(db(doing))?;
            let queue = tx
                .cached_row(
                    "SELECT * FROM admission_queue WHERE queue = ?1 AND expires_at * 1000 > ?2",
                    params![QUEUE, now.millis()],
                    queue_from_row,
                )
                .optional()
                .map_err(db(doing))?;
            if let Some((mark, entered)) = queue.and_then(|q| q.letting_in(t.number, passing)) {
                let entered = serde_json::to_string(&entered).map_err(crate::backend(doing))?;
                tx.cached_exec(
                    // `capacity_seen_at` is cleared: a free seat seen before counts no more.
                    "UPDATE admission_queue
                     SET admitted_through = ?2, entered = ?3, moved_at = ?4,
                         capacity_seen_at = NULL, expires_at = ?5
                     WHERE queue = ?1",
                    params![
                        QUEUE,
                        i64::try_from(mark).unwrap_or(i64::MAX),
                        entered,
                        now.millis(),
                        retention::admission_queue_expiry(now).epoch_secs()
                    ],
                )
                .map_err(db(doing))?;
            }
            tx.commit().map_err(db(doing))?;
            Ok(())
        })
        .await
    }

    async fn capacity_seen(&self, now: Timestamp) -> StoreResult<()> {
        self.run("noting a free seat", move |c| {
            c.cached_exec(
                "UPDATE admission_queue SET capacity_seen_at = ?2
                 WHERE queue = ?1 AND expires_at * 1000 > ?2
                   AND (capacity_seen_at IS NULL OR capacity_seen_at < moved_at)",
                params![QUEUE, now.millis()],
            )
            .map_err(db("noting a free seat"))?;
            Ok(())
        })
        .await
    }
}
