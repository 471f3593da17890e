//! The embedded store for the single-machine portal: SQLite through `rusqlite`.
//!
//! One table per record kind, named after the kind, with one column per declared field.
//! Every read filters `expires_at` against the caller's `now`; [`SqliteStore::sweep`]
//! physically deletes what has expired (the portal runs it every minute).

use crate::{Introspect, StoredFields, backend, corrupt};
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS moderator (
    id TEXT PRIMARY KEY,
    last_name TEXT NOT NULL,
    first_name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    federal_state TEXT NOT NULL,
    organisation TEXT NOT NULL,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS room (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    lobby INTEGER NOT NULL,
    guests_may_share_screen INTEGER NOT NULL,
    guests_may_send_video INTEGER NOT NULL,
    mute_on_join INTEGER NOT NULL,
    invite_token TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS room_by_owner ON room (owner, created_at);
CREATE TABLE IF NOT EXISTS guest (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    nickname TEXT NOT NULL,
    admission TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS guest_by_room ON guest (room_id);
CREATE TABLE IF NOT EXISTS meeting (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    peak_participants INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS meeting_by_room ON meeting (room_id, started_at);
CREATE TABLE IF NOT EXISTS chat_message (
    id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    conversation TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, conversation, id),
    UNIQUE (room_id, author, idempotency_key)
);
CREATE TABLE IF NOT EXISTS access_log (
    id TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    status INTEGER NOT NULL,
    bytes_sent INTEGER NOT NULL,
    referrer TEXT,
    user_agent TEXT,
    host_id TEXT NOT NULL,
    forwarded_for TEXT,
    cookies TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS access_log_by_time ON access_log (time);
CREATE TABLE IF NOT EXISTS media_node (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    load INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS session (
    id TEXT PRIMARY KEY,
    moderator_id TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS session_by_moderator ON session (moderator_id);
CREATE TABLE IF NOT EXISTS audit (
    id TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time);
CREATE TABLE IF NOT EXISTS rate_counter (
    key TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE TABLE IF NOT EXISTS placement (
    room_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    placed_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS placement_by_node ON placement (node_id, placed_at);
CREATE TABLE IF NOT EXISTS object (
    class TEXT NOT NULL,
    key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (class, key)
);
"#;

/// Tables that hold expiring records, for the sweeper.
const EXPIRING_TABLES: [RecordKind; 11] = [
    RecordKind::Placement,
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
            .and_then(|_| conn.execute_batch(SCHEMA))
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

fn db(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    backend(doing)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Reads a column and parses it into a domain type; parse failures become `Corrupt`.
fn col<T, R>(
    row: &Row<'_>,
    name: &str,
    parse: impl FnOnce(R) -> Result<T, ParseError>,
) -> rusqlite::Result<T>
where
    R: rusqlite::types::FromSql,
{
    let raw: R = row.get(name)?;
    parse(raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn ts(row: &Row<'_>, name: &str) -> rusqlite::Result<Timestamp> {
    row.get::<_, i64>(name).map(Timestamp::from_millis)
}

fn expiry(row: &Row<'_>) -> rusqlite::Result<Expiry> {
    row.get::<_, i64>("expires_at").map(Expiry::from_epoch_secs)
}

fn moderator_from_row(row: &Row<'_>) -> rusqlite::Result<Moderator> {
    Ok(Moderator {
        id: col(row, "id", |s: String| ModeratorId::parse(&s))?,
        last_name: col(row, "last_name", |s: String| PersonName::parse(&s))?,
        first_name: col(row, "first_name", |s: String| PersonName::parse(&s))?,
        email: col(row, "email", |s: String| Email::parse(&s))?,
        federal_state: col(row, "federal_state", |s: String| FederalState::parse(&s))?,
        organisation: col(row, "organisation", |s: String| Organisation::parse(&s))?,
        role: col(row, "role", |s: String| Role::parse(&s))?,
        status: col(row, "status", |s: String| AccountStatus::parse(&s))?,
        password_hash: col(row, "password_hash", |s: String| PasswordHash::parse(&s))?,
        created_at: ts(row, "created_at")?,
    })
}

fn room_from_row(row: &Row<'_>) -> rusqlite::Result<Room> {
    Ok(Room {
        id: col(row, "id", |s: String| RoomId::parse(&s))?,
        owner: col(row, "owner", |s: String| ModeratorId::parse(&s))?,
        name: col(row, "name", |s: String| RoomName::parse(&s))?,
        settings: RoomSettings {
            lobby: row.get("lobby")?,
            guests_may_share_screen: row.get("guests_may_share_screen")?,
            guests_may_send_video: row.get("guests_may_send_video")?,
            mute_on_join: row.get("mute_on_join")?,
        },
        invite_token: col(row, "invite_token", |s: String| InviteToken::parse(&s))?,
        created_at: ts(row, "created_at")?,
        last_used_at: ts(row, "last_used_at")?,
        expires_at: expiry(row)?,
    })
}

fn guest_from_row(row: &Row<'_>) -> rusqlite::Result<Guest> {
    Ok(Guest {
        id: col(row, "id", |s: String| GuestId::parse(&s))?,
        room_id: col(row, "room_id", |s: String| RoomId::parse(&s))?,
        nickname: col(row, "nickname", |s: String| Nickname::parse(&s))?,
        admission: col(row, "admission", |s: String| Admission::parse(&s))?,
        created_at: ts(row, "created_at")?,
        last_used_at: ts(row, "last_used_at")?,
        expires_at: expiry(row)?,
    })
}

fn meeting_from_row(row: &Row<'_>) -> rusqlite::Result<Meeting> {
    Ok(Meeting {
        id: col(row, "id", |s: String| MeetingId::parse(&s))?,
        room_id: col(row, "room_id", |s: String| RoomId::parse(&s))?,
        started_at: ts(row, "started_at")?,
        ended_at: row
            .get::<_, Option<i64>>("ended_at")?
            .map(Timestamp::from_millis),
        peak_participants: row.get("peak_participants")?,
        expires_at: expiry(row)?,
    })
}

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        id: col(row, "id", |s: String| MessageId::parse(&s))?,
        room_id: col(row, "room_id", |s: String| RoomId::parse(&s))?,
        conversation: col(row, "conversation", |s: String| Conversation::parse(&s))?,
        author: col(row, "author", |s: String| Participant::parse(&s))?,
        body: col(row, "body", |s: String| ChatBody::parse(&s))?,
        idempotency_key: col(row, "idempotency_key", |s: String| {
            IdempotencyKey::parse(&s)
        })?,
        expires_at: expiry(row)?,
    })
}

fn access_log_from_row(row: &Row<'_>) -> rusqlite::Result<AccessLogEntry> {
    let cookies: String = row.get("cookies")?;
    let cookies = serde_json::from_str(&cookies).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(AccessLogEntry {
        id: col(row, "id", |s: String| AccessLogId::parse(&s))?,
        time: ts(row, "time")?,
        method: row.get("method")?,
        url: row.get("url")?,
        status: row.get("status")?,
        bytes_sent: row
            .get::<_, i64>("bytes_sent")
            .map(|b| u64::try_from(b).unwrap_or(0))?,
        referrer: row.get("referrer")?,
        user_agent: row.get("user_agent")?,
        host_id: row.get("host_id")?,
        forwarded_for: row.get("forwarded_for")?,
        cookies,
        expires_at: expiry(row)?,
    })
}

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<MediaNode> {
    Ok(MediaNode {
        id: col(row, "id", |s: String| NodeId::parse(&s))?,
        address: row.get("address")?,
        capacity: row.get("capacity")?,
        load: row.get("load")?,
        last_heartbeat: ts(row, "last_heartbeat")?,
        expires_at: expiry(row)?,
    })
}

fn object_from_row(row: &Row<'_>) -> rusqlite::Result<StoredObject> {
    Ok(StoredObject {
        class: col(row, "class", |s: String| ObjectClass::parse(&s))?,
        key: col(row, "key", |s: String| ObjectKey::parse(&s))?,
        content_type: row.get("content_type")?,
        body: row.get("body")?,
        created_at: ts(row, "created_at")?,
        expires_at: expiry(row)?,
    })
}

/// Maps a row-conversion failure to `Corrupt`, anything else to `Backend`.
fn read_err(kind: &'static str, doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| match e {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            corrupt(kind)(e)
        }
        other => backend(doing)(other),
    }
}

#[async_trait]
impl ModeratorStore for SqliteStore {
    async fn create_moderator(&self, m: &Moderator) -> StoreResult<()> {
        let m = m.clone();
        self.run("creating a moderator", move |c| {
            c.execute(
                "INSERT INTO moderator (id, last_name, first_name, email, federal_state, organisation, role, status, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    m.id.to_string(),
                    m.last_name.as_str(),
                    m.first_name.as_str(),
                    m.email.as_str(),
                    m.federal_state.code(),
                    m.organisation.as_str(),
                    m.role.as_str(),
                    m.status.as_str(),
                    m.password_hash.as_str(),
                    m.created_at.millis(),
                ],
            )
            .map(|_| ())
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict { what: "an account with this email" }
                } else {
                    backend("creating a moderator")(e)
                }
            })
        })
        .await
    }

    async fn moderator(&self, id: ModeratorId) -> StoreResult<Option<Moderator>> {
        self.run("reading a moderator", move |c| {
            c.query_row(
                "SELECT * FROM moderator WHERE id = ?1",
                params![id.to_string()],
                moderator_from_row,
            )
            .optional()
            .map_err(read_err("moderator", "reading a moderator"))
        })
        .await
    }

    async fn moderator_by_email(&self, email: &Email) -> StoreResult<Option<Moderator>> {
        let email = email.clone();
        self.run("reading a moderator", move |c| {
            c.query_row(
                "SELECT * FROM moderator WHERE email = ?1",
                params![email.as_str()],
                moderator_from_row,
            )
            .optional()
            .map_err(read_err("moderator", "reading a moderator"))
        })
        .await
    }

    async fn update_moderator(&self, m: &Moderator) -> StoreResult<()> {
        let m = m.clone();
        self.run_forgetting("updating a moderator", move |c| {
            let n = c
                .execute(
                    "UPDATE moderator SET last_name = ?2, first_name = ?3, email = ?4, federal_state = ?5,
                     organisation = ?6, role = ?7, status = ?8, password_hash = ?9 WHERE id = ?1",
                    params![
                        m.id.to_string(),
                        m.last_name.as_str(),
                        m.first_name.as_str(),
                        m.email.as_str(),
                        m.federal_state.code(),
                        m.organisation.as_str(),
                        m.role.as_str(),
                        m.status.as_str(),
                        m.password_hash.as_str(),
                    ],
                )
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict { what: "an account with this email" }
                    } else {
                        backend("updating a moderator")(e)
                    }
                })?;
            if n == 0 {
                return Err(StoreError::NotFound { what: "the account" });
            }
            Ok(())
        })
        .await
    }

    async fn delete_moderator(&self, id: ModeratorId) -> StoreResult<()> {
        self.run_forgetting("deleting a moderator", move |c| {
            let tx = c.transaction().map_err(db("deleting a moderator"))?;
            for sql in [
                "DELETE FROM session WHERE moderator_id = ?1",
                "DELETE FROM moderator WHERE id = ?1",
            ] {
                tx.execute(sql, params![id.to_string()])
                    .map_err(db("deleting a moderator"))?;
            }
            tx.commit().map_err(db("deleting a moderator"))
        })
        .await
    }

    async fn list_moderators(&self) -> StoreResult<Vec<Moderator>> {
        self.run("listing moderators", |c| {
            let mut st = c
                .prepare("SELECT * FROM moderator ORDER BY email")
                .map_err(db("listing moderators"))?;
            st.query_map([], moderator_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("moderator", "listing moderators"))
        })
        .await
    }
}

#[async_trait]
impl RoomStore for SqliteStore {
    async fn create_room(&self, r: &Room) -> StoreResult<()> {
        let r = r.clone();
        self.run("creating a room", move |c| {
            c.execute(
                "INSERT INTO room (id, owner, name, lobby, guests_may_share_screen, guests_may_send_video, mute_on_join, invite_token, created_at, last_used_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.id.to_string(),
                    r.owner.to_string(),
                    r.name.as_str(),
                    r.settings.lobby,
                    r.settings.guests_may_share_screen,
                    r.settings.guests_may_send_video,
                    r.settings.mute_on_join,
                    r.invite_token.as_str(),
                    r.created_at.millis(),
                    r.last_used_at.millis(),
                    r.expires_at.epoch_secs(),
                ],
            )
            .map(|_| ())
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict { what: "the room" }
                } else {
                    backend("creating a room")(e)
                }
            })
        })
        .await
    }

    async fn room(&self, id: RoomId, now: Timestamp) -> StoreResult<Option<Room>> {
        self.run("reading a room", move |c| {
            c.query_row(
                "SELECT * FROM room WHERE id = ?1 AND expires_at * 1000 > ?2",
                params![id.to_string(), now.millis()],
                room_from_row,
            )
            .optional()
            .map_err(read_err("room", "reading a room"))
        })
        .await
    }

    async fn room_by_invite(
        &self,
        token: &InviteToken,
        now: Timestamp,
    ) -> StoreResult<Option<Room>> {
        let token = token.clone();
        self.run("reading a room", move |c| {
            c.query_row(
                "SELECT * FROM room WHERE invite_token = ?1 AND expires_at * 1000 > ?2",
                params![token.as_str(), now.millis()],
                room_from_row,
            )
            .optional()
            .map_err(read_err("room", "reading a room"))
        })
        .await
    }

    async fn rooms_of(&self, owner: ModeratorId, now: Timestamp) -> StoreResult<Vec<Room>> {
        self.run("listing rooms", move |c| {
            let mut st = c
                .prepare("SELECT * FROM room WHERE owner = ?1 AND expires_at * 1000 > ?2 ORDER BY created_at, id")
                .map_err(db("listing rooms"))?;
            st.query_map(params![owner.to_string(), now.millis()], room_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("room", "listing rooms"))
        })
        .await
    }

    async fn update_room(&self, r: &Room, now: Timestamp) -> StoreResult<()> {
        let r = r.clone();
        self.run_forgetting("updating a room", move |c| {
            let n = c
                .execute(
                    "UPDATE room SET name = ?2, lobby = ?3, guests_may_share_screen = ?4, guests_may_send_video = ?5,
                     mute_on_join = ?6, invite_token = ?7, last_used_at = ?8, expires_at = ?9
                     WHERE id = ?1 AND expires_at * 1000 > ?10",
                    params![
                        r.id.to_string(),
                        r.name.as_str(),
                        r.settings.lobby,
                        r.settings.guests_may_share_screen,
                        r.settings.guests_may_send_video,
                        r.settings.mute_on_join,
                        r.invite_token.as_str(),
                        r.last_used_at.millis(),
                        r.expires_at.epoch_secs(),
                        now.millis(),
                    ],
                )
                .map_err(db("updating a room"))?;
            if n == 0 {
                return Err(StoreError::NotFound { what: "the room" });
            }
            Ok(())
        })
        .await
    }

    async fn delete_room(&self, id: RoomId) -> StoreResult<()> {
        self.run_forgetting("deleting a room", move |c| {
            let tx = c.transaction().map_err(db("deleting a room"))?;
            let id = id.to_string();
            for sql in [
                "DELETE FROM chat_message WHERE room_id = ?1",
                "DELETE FROM guest WHERE room_id = ?1",
                "DELETE FROM meeting WHERE room_id = ?1",
                "DELETE FROM placement WHERE room_id = ?1",
                "DELETE FROM room WHERE id = ?1",
            ] {
                tx.execute(sql, params![id])
                    .map_err(db("deleting a room"))?;
            }
            tx.commit().map_err(db("deleting a room"))
        })
        .await
    }
}

#[async_trait]
impl GuestStore for SqliteStore {
    async fn put_guest(&self, g: &Guest) -> StoreResult<()> {
        let g = g.clone();
        self.run("saving a guest", move |c| {
            c.execute(
                "INSERT INTO guest (id, room_id, nickname, admission, created_at, last_used_at, expires_at)
                 VALUES (?1, ?2, ?3, ?7, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET nickname = excluded.nickname, admission = excluded.admission,
                   last_used_at = excluded.last_used_at, expires_at = excluded.expires_at",
                params![
                    g.id.to_string(),
                    g.room_id.to_string(),
                    g.nickname.as_str(),
                    g.created_at.millis(),
                    g.last_used_at.millis(),
                    g.expires_at.epoch_secs(),
                    g.admission.as_str(),
                ],
            )
            .map(|_| ())
            .map_err(db("saving a guest"))
        })
        .await
    }

    async fn guest(&self, room: RoomId, id: GuestId, now: Timestamp) -> StoreResult<Option<Guest>> {
        self.run("reading a guest", move |c| {
            c.query_row(
                "SELECT * FROM guest WHERE id = ?1 AND room_id = ?2 AND expires_at * 1000 > ?3",
                params![id.to_string(), room.to_string(), now.millis()],
                guest_from_row,
            )
            .optional()
            .map_err(read_err("guest", "reading a guest"))
        })
        .await
    }

    async fn guests_of(&self, room: RoomId, now: Timestamp) -> StoreResult<Vec<Guest>> {
        self.run("listing guests", move |c| {
            let mut st = c
                .prepare("SELECT * FROM guest WHERE room_id = ?1 AND expires_at * 1000 > ?2 ORDER BY created_at, id")
                .map_err(db("listing guests"))?;
            st.query_map(params![room.to_string(), now.millis()], guest_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("guest", "listing guests"))
        })
        .await
    }

    async fn delete_guest(&self, room: RoomId, id: GuestId) -> StoreResult<()> {
        self.run_forgetting("deleting a guest", move |c| {
            c.execute(
                "DELETE FROM guest WHERE id = ?1 AND room_id = ?2",
                params![id.to_string(), room.to_string()],
            )
            .map(|_| ())
            .map_err(db("deleting a guest"))
        })
        .await
    }
}

#[async_trait]
impl MeetingStore for SqliteStore {
    async fn put_meeting(&self, m: &Meeting) -> StoreResult<()> {
        let m = m.clone();
        self.run("saving a meeting", move |c| {
            c.execute(
                "INSERT INTO meeting (id, room_id, started_at, ended_at, peak_participants, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at,
                   peak_participants = excluded.peak_participants, expires_at = excluded.expires_at",
                params![
                    m.id.to_string(),
                    m.room_id.to_string(),
                    m.started_at.millis(),
                    m.ended_at.map(Timestamp::millis),
                    m.peak_participants,
                    m.expires_at.epoch_secs(),
                ],
            )
            .map(|_| ())
            .map_err(db("saving a meeting"))
        })
        .await
    }

    async fn meetings_of(&self, room: RoomId, now: Timestamp) -> StoreResult<Vec<Meeting>> {
        self.run("listing meetings", move |c| {
            let mut st = c
                .prepare(
                    "SELECT * FROM meeting WHERE room_id = ?1 AND expires_at * 1000 > ?2
                     ORDER BY started_at DESC, id DESC",
                )
                .map_err(db("listing meetings"))?;
            st.query_map(params![room.to_string(), now.millis()], meeting_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("meeting", "listing meetings"))
        })
        .await
    }
}

#[async_trait]
impl ChatStore for SqliteStore {
    async fn post_message(&self, m: &ChatMessage) -> StoreResult<Posted> {
        let m = m.clone();
        self.run("posting a message", move |c| {
            let tx = c.transaction().map_err(db("posting a message"))?;
            let now = m.posted_at();
            // An expired earlier post with the same key no longer counts.
            let earlier = tx
                .query_row(
                    "SELECT * FROM chat_message WHERE room_id = ?1 AND author = ?2 AND idempotency_key = ?3",
                    params![m.room_id.to_string(), m.author.to_string(), m.idempotency_key.as_str()],
                    message_from_row,
                )
                .optional()
                .map_err(read_err("chat message", "posting a message"))?;
            let outcome = match earlier {
                Some(e) if e.expires_at.is_live_at(now) => Posted::Duplicate(e),
                stale => {
                    if let Some(e) = stale {
                        tx.execute(
                            "DELETE FROM chat_message WHERE room_id = ?1 AND conversation = ?2 AND id = ?3",
                            params![e.room_id.to_string(), e.conversation.to_string(), e.id.to_string()],
                        )
                        .map_err(db("posting a message"))?;
                    }
                    tx.execute(
                        "INSERT INTO chat_message (id, room_id, conversation, author, body, idempotency_key, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            m.id.to_string(),
                            m.room_id.to_string(),
                            m.conversation.to_string(),
                            m.author.to_string(),
                            m.body.as_str(),
                            m.idempotency_key.as_str(),
                            m.expires_at.epoch_secs(),
                        ],
                    )
                    .map_err(db("posting a message"))?;
                    Posted::New(m)
                }
            };
            tx.commit().map_err(db("posting a message"))?;
            Ok(outcome)
        })
        .await
    }

    async fn message(
        &self,
        room: RoomId,
        conversation: &Conversation,
        id: MessageId,
        now: Timestamp,
    ) -> StoreResult<Option<ChatMessage>> {
        let conversation = conversation.to_string();
        self.run("reading a message", move |c| {
            c.query_row(
                "SELECT * FROM chat_message WHERE room_id = ?1 AND conversation = ?2 AND id = ?3
                 AND expires_at * 1000 > ?4",
                params![room.to_string(), conversation, id.to_string(), now.millis()],
                message_from_row,
            )
            .optional()
            .map_err(read_err("chat message", "reading a message"))
        })
        .await
    }

    async fn history(
        &self,
        room: RoomId,
        conversation: &Conversation,
        before: Option<MessageId>,
        limit: usize,
        now: Timestamp,
    ) -> StoreResult<ChatPage> {
        let conversation = conversation.to_string();
        let limit = limit.clamp(1, 1000);
        self.run("reading chat history", move |c| {
            // Ids sort in posting order; "~" sorts after every id, so no cursor means "newest".
            let before = before.map_or_else(|| "~".to_owned(), |b| b.to_string());
            let mut st = c
                .prepare(
                    "SELECT * FROM chat_message WHERE room_id = ?1 AND conversation = ?2 AND id < ?3
                     AND expires_at * 1000 > ?4 ORDER BY id DESC LIMIT ?5",
                )
                .map_err(db("reading chat history"))?;
            let mut messages: Vec<ChatMessage> = st
                .query_map(
                    params![
                        room.to_string(),
                        conversation,
                        before,
                        now.millis(),
                        (limit + 1) as i64
                    ],
                    message_from_row,
                )
                .and_then(|rows| rows.collect())
                .map_err(read_err("chat message", "reading chat history"))?;
            let older = if messages.len() > limit {
                messages.truncate(limit);
                messages.last().map(|m| m.id)
            } else {
                None
            };
            Ok(ChatPage { messages, older })
        })
        .await
    }

    async fn delete_message(
        &self,
        room: RoomId,
        conversation: &Conversation,
        id: MessageId,
    ) -> StoreResult<()> {
        let conversation = conversation.to_string();
        self.run_forgetting("deleting a message", move |c| {
            c.execute(
                "DELETE FROM chat_message WHERE room_id = ?1 AND conversation = ?2 AND id = ?3",
                params![room.to_string(), conversation, id.to_string()],
            )
            .map(|_| ())
            .map_err(db("deleting a message"))
        })
        .await
    }

    async fn messages_of_room(
        &self,
        room: RoomId,
        now: Timestamp,
    ) -> StoreResult<Vec<ChatMessage>> {
        self.run("reading a room's messages", move |c| {
            let mut st = c
                .prepare(
                    "SELECT * FROM chat_message WHERE room_id = ?1 AND expires_at * 1000 > ?2 ORDER BY id, conversation",
                )
                .map_err(db("reading a room's messages"))?;
            st.query_map(params![room.to_string(), now.millis()], message_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("chat message", "reading a room's messages"))
        })
        .await
    }
}

#[async_trait]
impl AccessLogStore for SqliteStore {
    async fn append_access_log(&self, e: &AccessLogEntry) -> StoreResult<()> {
        let e = e.clone();
        let cookies =
            serde_json::to_string(&e.cookies).map_err(backend("writing the access log"))?;
        self.run("writing the access log", move |c| {
            c.execute(
                "INSERT INTO access_log (id, time, method, url, status, bytes_sent, referrer, user_agent, host_id, forwarded_for, cookies, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    e.id.to_string(),
                    e.time.millis(),
                    e.method,
                    e.url,
                    e.status,
                    i64::try_from(e.bytes_sent).unwrap_or(i64::MAX),
                    e.referrer,
                    e.user_agent,
                    e.host_id,
                    e.forwarded_for,
                    cookies,
                    e.expires_at.epoch_secs(),
                ],
            )
            .map(|_| ())
            .map_err(db("writing the access log"))
        })
        .await
    }

    async fn access_log_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AccessLogEntry>> {
        let until = until.min(from.plus(MAX_ACCESS_LOG_SPAN));
        self.run("reading the access log", move |c| {
            let mut st = c
                .prepare(
                    "SELECT * FROM access_log WHERE time >= ?1 AND time < ?2 AND expires_at * 1000 > ?3
                     ORDER BY time, id",
                )
                .map_err(db("reading the access log"))?;
            st.query_map(params![from.millis(), until.millis(), now.millis()], access_log_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("access log entry", "reading the access log"))
        })
        .await
    }
}

#[async_trait]
impl NodeRegistryStore for SqliteStore {
    async fn put_node(&self, n: &MediaNode) -> StoreResult<()> {
        let n = n.clone();
        self.run("registering a media node", move |c| {
            c.execute(
                "INSERT INTO media_node (id, address, capacity, load, last_heartbeat, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET address = excluded.address, capacity = excluded.capacity,
                   load = excluded.load, last_heartbeat = excluded.last_heartbeat, expires_at = excluded.expires_at",
                params![
                    n.id.to_string(),
                    n.address,
                    n.capacity,
                    n.load,
                    n.last_heartbeat.millis(),
                    n.expires_at.epoch_secs(),
                ],
            )
            .map(|_| ())
            .map_err(db("registering a media node"))
        })
        .await
    }

    async fn live_nodes(&self, now: Timestamp) -> StoreResult<Vec<MediaNode>> {
        self.run("listing media nodes", move |c| {
            let mut st = c
                .prepare("SELECT * FROM media_node WHERE expires_at * 1000 > ?1 ORDER BY id")
                .map_err(db("listing media nodes"))?;
            st.query_map(params![now.millis()], node_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("media node", "listing media nodes"))
        })
        .await
    }

    async fn remove_node(&self, id: NodeId) -> StoreResult<()> {
        self.run("removing a media node", move |c| {
            c.execute(
                "DELETE FROM media_node WHERE id = ?1",
                params![id.to_string()],
            )
            .map(|_| ())
            .map_err(db("removing a media node"))
        })
        .await
    }
}

#[async_trait]
impl ObjectStore for SqliteStore {
    async fn put_object(&self, o: &StoredObject) -> StoreResult<()> {
        let o = o.clone();
        self.run("storing an object", move |c| {
            c.execute(
                "INSERT INTO object (class, key, content_type, body, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (class, key) DO UPDATE SET content_type = excluded.content_type,
                   body = excluded.body, created_at = excluded.created_at, expires_at = excluded.expires_at",
                params![
                    o.class.as_str(),
                    o.key.as_str(),
                    o.content_type,
                    o.body,
                    o.created_at.millis(),
                    o.expires_at.epoch_secs(),
                ],
            )
            .map(|_| ())
            .map_err(db("storing an object"))
        })
        .await
    }

    async fn get_object(
        &self,
        class: ObjectClass,
        key: &ObjectKey,
        now: Timestamp,
    ) -> StoreResult<Option<StoredObject>> {
        let key = key.clone();
        self.run("reading an object", move |c| {
            c.query_row(
                "SELECT * FROM object WHERE class = ?1 AND key = ?2 AND expires_at * 1000 > ?3",
                params![class.as_str(), key.as_str(), now.millis()],
                object_from_row,
            )
            .optional()
            .map_err(read_err("object", "reading an object"))
        })
        .await
    }

    async fn list_objects(
        &self,
        class: ObjectClass,
        prefix: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<ObjectKey>> {
        let prefix = prefix.to_owned();
        self.run("listing objects", move |c| {
            let mut st = c
                .prepare(
                    "SELECT key FROM object WHERE class = ?1 AND substr(key, 1, length(?2)) = ?2
                     AND expires_at * 1000 > ?3 ORDER BY key",
                )
                .map_err(db("listing objects"))?;
            st.query_map(params![class.as_str(), prefix, now.millis()], |row| {
                col(row, "key", |s: String| ObjectKey::parse(&s))
            })
            .and_then(|rows| rows.collect())
            .map_err(read_err("object", "listing objects"))
        })
        .await
    }

    async fn delete_object(&self, class: ObjectClass, key: &ObjectKey) -> StoreResult<()> {
        let key = key.clone();
        self.run_forgetting("deleting an object", move |c| {
            c.execute(
                "DELETE FROM object WHERE class = ?1 AND key = ?2",
                params![class.as_str(), key.as_str()],
            )
            .map(|_| ())
            .map_err(db("deleting an object"))
        })
        .await
    }
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: col(row, "id", |s: String| SessionId::parse(&s))?,
        moderator_id: col(row, "moderator_id", |s: String| ModeratorId::parse(&s))?,
        role: col(row, "role", |s: String| Role::parse(&s))?,
        created_at: ts(row, "created_at")?,
        expires_at: expiry(row)?,
    })
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: col(row, "id", |s: String| AuditId::parse(&s))?,
        time: ts(row, "time")?,
        actor: col(row, "actor", |s: String| ModeratorId::parse(&s))?,
        action: col(row, "action", |s: String| AuditAction::parse(&s))?,
        target: row.get("target")?,
        reason: col(row, "reason", |s: String| AuditReason::parse(&s))?,
        expires_at: expiry(row)?,
    })
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn put_session(&self, s: &Session) -> StoreResult<()> {
        let s = s.clone();
        self.run("saving a session", move |c| {
            c.execute(
                "INSERT INTO session (id, moderator_id, role, created_at, expires_at) VALUES (?1, ?2, ?5, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
                params![s.id.to_string(), s.moderator_id.to_string(), s.created_at.millis(), s.expires_at.epoch_secs(),
                    s.role.as_str()],
            )
            .map(|_| ())
            .map_err(db("saving a session"))
        })
        .await
    }

    async fn session(
        &self,
        moderator: ModeratorId,
        id: SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Session>> {
        self.run("reading a session", move |c| {
            c.query_row(
                "SELECT * FROM session WHERE id = ?1 AND moderator_id = ?2 AND expires_at * 1000 > ?3",
                params![id.to_string(), moderator.to_string(), now.millis()],
                session_from_row,
            )
            .optional()
            .map_err(read_err("session", "reading a session"))
        })
        .await
    }

    async fn delete_session(&self, moderator: ModeratorId, id: SessionId) -> StoreResult<()> {
        self.run("deleting a session", move |c| {
            c.execute(
                "DELETE FROM session WHERE id = ?1 AND moderator_id = ?2",
                params![id.to_string(), moderator.to_string()],
            )
            .map(|_| ())
            .map_err(db("deleting a session"))
        })
        .await
    }

    async fn delete_sessions_of(&self, moderator: ModeratorId) -> StoreResult<()> {
        self.run("deleting sessions", move |c| {
            c.execute(
                "DELETE FROM session WHERE moderator_id = ?1",
                params![moderator.to_string()],
            )
            .map(|_| ())
            .map_err(db("deleting sessions"))
        })
        .await
    }
}

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
            c.query_row(
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
        self.run("reading attempts", move |c| {
            c.query_row(
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
            c.execute(
                "DELETE FROM rate_counter WHERE key = ?1 AND window_start = ?2",
                params![key.as_str(), window_start.millis()],
            )
            .map(|_| ())
            .map_err(db("clearing attempts"))
        })
        .await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        let e = e.clone();
        self.run("writing the audit log", move |c| {
            c.execute(
                "INSERT INTO audit (id, time, actor, action, target, reason, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    e.id.to_string(),
                    e.time.millis(),
                    e.actor.to_string(),
                    e.action.as_str(),
                    e.target,
                    e.reason.as_str(),
                    e.expires_at.epoch_secs(),
                ],
            )
            .map(|_| ())
            .map_err(db("writing the audit log"))
        })
        .await
    }

    async fn audit_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEntry>> {
        self.run("reading the audit log", move |c| {
            let mut st = c
                .prepare(
                    "SELECT * FROM audit WHERE time >= ?1 AND time < ?2 AND expires_at * 1000 > ?3 ORDER BY time, id",
                )
                .map_err(db("reading the audit log"))?;
            st.query_map(params![from.millis(), until.millis(), now.millis()], audit_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("audit entry", "reading the audit log"))
        })
        .await
    }
}

fn placement_from_row(row: &Row<'_>) -> rusqlite::Result<Placement> {
    Ok(Placement {
        room_id: col(row, "room_id", |s: String| RoomId::parse(&s))?,
        node_id: col(row, "node_id", |s: String| NodeId::parse(&s))?,
        placed_at: ts(row, "placed_at")?,
        expires_at: expiry(row)?,
    })
}

#[async_trait]
impl PlacementStore for SqliteStore {
    async fn placement(&self, room: RoomId, now: Timestamp) -> StoreResult<Option<Placement>> {
        self.run("reading a placement", move |c| {
            c.query_row(
                "SELECT * FROM placement WHERE room_id = ?1 AND expires_at * 1000 > ?2",
                params![room.to_string(), now.millis()],
                placement_from_row,
            )
            .optional()
            .map_err(read_err("placement", "reading a placement"))
        })
        .await
    }

    async fn put_placement(
        &self,
        p: &Placement,
        replacing: Option<NodeId>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let p = p.clone();
        self.run("placing a room", move |c| {
            // One statement, so the check and the write cannot interleave with another.
            let n = c
                .execute(
                    "INSERT INTO placement (room_id, node_id, placed_at, expires_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (room_id) DO UPDATE SET node_id = excluded.node_id,
                       placed_at = excluded.placed_at, expires_at = excluded.expires_at
                     WHERE placement.expires_at * 1000 <= ?5 OR placement.node_id = ?6",
                    params![
                        p.room_id.to_string(),
                        p.node_id.to_string(),
                        p.placed_at.millis(),
                        p.expires_at.epoch_secs(),
                        now.millis(),
                        replacing.map(|n| n.to_string()).unwrap_or_default(),
                    ],
                )
                .map_err(db("placing a room"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn placed_on_since(
        &self,
        node: NodeId,
        since: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        self.run("counting placements", move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM placement WHERE node_id = ?1 AND placed_at >= ?2 AND expires_at * 1000 > ?3",
                params![node.to_string(), since.millis(), now.millis()],
                |r| r.get(0),
            )
            .map_err(db("counting placements"))
        })
        .await
    }
}

#[async_trait]
impl Introspect for SqliteStore {
    /// The columns of every table, keyed by table (= record kind) name.
    async fn stored_fields(&self) -> StoreResult<StoredFields> {
        self.run("reading the schema", |c| {
            let mut out = StoredFields::new();
            let tables: Vec<String> = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .and_then(|mut st| st.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()))
                .map_err(db("reading the schema"))?;
            for table in tables {
                let cols: Vec<String> = c
                    .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .and_then(|mut st| st.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()))
                    .map_err(db("reading the schema"))?;
                out.insert(table, cols.into_iter().collect());
            }
            Ok(out)
        })
        .await
    }

    async fn contains_text(&self, needle: &str, skip: &[RecordKind]) -> StoreResult<bool> {
        let needle = needle.to_owned();
        let skip: Vec<&'static str> = skip.iter().map(|k| k.name()).collect();
        self.run("scanning the store", move |c| {
            let tables: Vec<String> = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .and_then(|mut st| st.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()))
                .map_err(db("scanning the store"))?;
            for table in tables.into_iter().filter(|t| !skip.contains(&t.as_str())) {
                let mut st = c
                    .prepare(&format!("SELECT * FROM {table}"))
                    .map_err(db("scanning the store"))?;
                let columns = st.column_count();
                let mut rows = st.query([]).map_err(db("scanning the store"))?;
                while let Some(row) = rows.next().map_err(db("scanning the store"))? {
                    for i in 0..columns {
                        let text = match row.get_ref(i).map_err(db("scanning the store"))? {
                            rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                                String::from_utf8_lossy(t).into_owned()
                            }
                            rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                            _ => continue,
                        };
                        if text.contains(&needle) {
                            return Ok(true);
                        }
                    }
                }
            }
            Ok(false)
        })
        .await
    }
}
