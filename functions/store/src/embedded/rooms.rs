//! Rooms, their guests and their meetings. Deleting a room deletes everything of it.

use super::codec::{col, db, expiry, is_unique_violation, read_err, ts};
use super::{Cached, SqliteStore, forget_old_page_versions};
use crate::backend;
use async_trait::async_trait;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{OptionalExtension, Row, params};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS room (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    lobby INTEGER NOT NULL,
    guests_may_share_screen INTEGER NOT NULL,
    guests_may_send_video INTEGER NOT NULL,
    mute_on_join INTEGER NOT NULL,
    expected_participants INTEGER,
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
CREATE TABLE IF NOT EXISTS scheduled_meeting (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    minutes INTEGER NOT NULL,
    expected_participants INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS scheduled_by_room ON scheduled_meeting (room_id, starts_at);
CREATE INDEX IF NOT EXISTS scheduled_by_owner ON scheduled_meeting (owner, starts_at);
CREATE INDEX IF NOT EXISTS scheduled_by_start ON scheduled_meeting (starts_at);
"#;

/// Databases created before a room had an expected size get the column (SQLite's `CREATE
/// TABLE IF NOT EXISTS` leaves an old table as it was).
pub(super) fn migrate(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    let has: bool = c.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('room') WHERE name = 'expected_participants'",
        [],
        |row| row.get(0),
    )?;
    if !has {
        c.execute_batch("ALTER TABLE room ADD COLUMN expected_participants INTEGER")?;
    }
    Ok(())
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
            expected_participants: row.get("expected_participants")?,
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

fn scheduled_from_row(row: &Row<'_>) -> rusqlite::Result<ScheduledMeeting> {
    Ok(ScheduledMeeting {
        id: col(row, "id", |s: String| ScheduleId::parse(&s))?,
        room_id: col(row, "room_id", |s: String| RoomId::parse(&s))?,
        owner: col(row, "owner", |s: String| ModeratorId::parse(&s))?,
        starts_at: ts(row, "starts_at")?,
        minutes: row.get("minutes")?,
        expected_participants: row.get("expected_participants")?,
        created_at: ts(row, "created_at")?,
        expires_at: expiry(row)?,
    })
}

impl SqliteStore {
    async fn scheduled_where(
        &self,
        condition: &'static str,
        arg: String,
        now: Timestamp,
    ) -> StoreResult<Vec<ScheduledMeeting>> {
        self.read("listing scheduled meetings", move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT * FROM scheduled_meeting WHERE {condition} AND expires_at * 1000 > ?2 ORDER BY starts_at, id"
                ))
                .map_err(db("listing scheduled meetings"))?;
            st.query_map(params![arg, now.millis()], scheduled_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("scheduled meeting", "listing scheduled meetings"))
        })
        .await
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn put_scheduled(&self, p: &ScheduledMeeting) -> StoreResult<()> {
        let p = p.clone();
        self.run("saving a scheduled meeting", move |c| {
            c.cached_exec(
                "INSERT OR REPLACE INTO scheduled_meeting (id, room_id, owner, starts_at, minutes, expected_participants, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    p.id.to_string(),
                    p.room_id.to_string(),
                    p.owner.to_string(),
                    p.starts_at.millis(),
                    p.minutes,
                    p.expected_participants,
                    p.created_at.millis(),
                    p.expires_at.epoch_secs(),
                ],
            )
            .map(|_| ())
            .map_err(db("saving a scheduled meeting"))
        })
        .await
    }

    async fn scheduled_of_room(
        &self,
        room: RoomId,
        now: Timestamp,
    ) -> StoreResult<Vec<ScheduledMeeting>> {
        self.scheduled_where("room_id = ?1", room.to_string(), now)
            .await
    }

    async fn scheduled_of(
        &self,
        owner: ModeratorId,
        now: Timestamp,
    ) -> StoreResult<Vec<ScheduledMeeting>> {
        self.scheduled_where("owner = ?1", owner.to_string(), now)
            .await
    }

    async fn scheduled_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<ScheduledMeeting>> {
        let until = until.min(from.plus(MAX_SCHEDULE_SPAN));
        self.read("listing scheduled meetings", move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT * FROM scheduled_meeting WHERE starts_at >= ?1 AND starts_at < ?2
                     AND expires_at * 1000 > ?3 ORDER BY starts_at, id",
                )
                .map_err(db("listing scheduled meetings"))?;
            st.query_map(
                params![from.millis(), until.millis(), now.millis()],
                scheduled_from_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(read_err("scheduled meeting", "listing scheduled meetings"))
        })
        .await
    }

    async fn delete_scheduled(&self, p: &ScheduledMeeting) -> StoreResult<()> {
        let id = p.id.to_string();
        self.run_forgetting("deleting a scheduled meeting", move |c| {
            c.cached_exec("DELETE FROM scheduled_meeting WHERE id = ?1", params![id])
                .map(|_| ())
                .map_err(db("deleting a scheduled meeting"))
        })
        .await
    }
}

#[async_trait]
impl RoomStore for SqliteStore {
    async fn create_room(&self, r: &Room) -> StoreResult<()> {
        let r = r.clone();
        self.run("creating a room", move |c| {
            c.cached_exec(
                "INSERT INTO room (id, owner, name, lobby, guests_may_share_screen, guests_may_send_video, mute_on_join, invite_token, created_at, last_used_at, expires_at, expected_participants)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
                    r.settings.expected_participants,
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
        self.read_point("reading a room", move |c| {
            c.cached_row(
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
        self.read_point("reading a room", move |c| {
            c.cached_row(
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
        self.read("listing rooms", move |c| {
            let mut st = c
                .prepare_cached("SELECT * FROM room WHERE owner = ?1 AND expires_at * 1000 > ?2 ORDER BY created_at, id")
                .map_err(db("listing rooms"))?;
            st.query_map(params![owner.to_string(), now.millis()], room_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("room", "listing rooms"))
        })
        .await
    }

    async fn update_room(&self, r: &Room, now: Timestamp) -> StoreResult<()> {
        let r = r.clone();
        self.run("updating a room", move |c| {
            // A new name or invite link overwrites what the old one was: the log's copy of
            // the old page goes too. A touch (last use) replaces nothing anyone said, and
            // truncating the log on every guest's join would serialise the morning rush.
            let before: Option<(String, String)> = c
                .cached_row(
                    "SELECT name, invite_token FROM room WHERE id = ?1",
                    params![r.id.to_string()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(db("updating a room"))?;
            let n = c
                .cached_exec(
                    "UPDATE room SET name = ?2, lobby = ?3, guests_may_share_screen = ?4, guests_may_send_video = ?5,
                     mute_on_join = ?6, invite_token = ?7, last_used_at = ?8, expires_at = ?9,
                     expected_participants = ?11
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
                        r.settings.expected_participants,
                    ],
                )
                .map_err(db("updating a room"))?;
            if n == 0 {
                return Err(StoreError::NotFound { what: "the room" });
            }
            let replaced = before.is_some_and(|(name, invite)| {
                name != r.name.as_str() || invite != r.invite_token.as_str()
            });
            if replaced {
                forget_old_page_versions(c)?;
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
                "DELETE FROM scheduled_meeting WHERE room_id = ?1",
                "DELETE FROM placement WHERE room_id = ?1",
                "DELETE FROM room WHERE id = ?1",
            ] {
                tx.cached_exec(sql, params![id])
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
            c.cached_exec(
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
        self.read_point("reading a guest", move |c| {
            c.cached_row(
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
        self.read("listing guests", move |c| {
            let mut st = c
                .prepare_cached("SELECT * FROM guest WHERE room_id = ?1 AND expires_at * 1000 > ?2 ORDER BY created_at, id")
                .map_err(db("listing guests"))?;
            st.query_map(params![room.to_string(), now.millis()], guest_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("guest", "listing guests"))
        })
        .await
    }

    async fn delete_guest(&self, room: RoomId, id: GuestId) -> StoreResult<()> {
        self.run_forgetting("deleting a guest", move |c| {
            c.cached_exec(
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
            c.cached_exec(
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
        self.read("listing meetings", move |c| {
            let mut st = c
                .prepare_cached(
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
