//! Accounts: moderators (the email is unique) and their sessions.

use super::codec::{col, db, expiry, is_unique_violation, read_err, ts};
use super::{Cached, SqliteStore};
use crate::backend;
use async_trait::async_trait;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{OptionalExtension, Row, params};

pub(super) const SCHEMA: &str = r#"
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
    must_change_password INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS session (
    id TEXT PRIMARY KEY,
    moderator_id TEXT NOT NULL,
    role TEXT NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS session_by_moderator ON session (moderator_id);
"#;

/// Databases created before a column existed get it added (SQLite's `CREATE TABLE IF NOT
/// EXISTS` leaves an old table as it was).
pub(super) fn migrate(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    for table in ["moderator", "session"] {
        let has: bool = c.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = 'must_change_password'",
            [table],
            |row| row.get(0),
        )?;
        if !has {
            c.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0"
            ))?;
        }
    }
    Ok(())
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
        must_change_password: row.get("must_change_password")?,
        created_at: ts(row, "created_at")?,
    })
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: col(row, "id", |s: String| SessionId::parse(&s))?,
        moderator_id: col(row, "moderator_id", |s: String| ModeratorId::parse(&s))?,
        role: col(row, "role", |s: String| Role::parse(&s))?,
        must_change_password: row.get("must_change_password")?,
        created_at: ts(row, "created_at")?,
        expires_at: expiry(row)?,
    })
}

#[async_trait]
impl ModeratorStore for SqliteStore {
    async fn create_moderator(&self, m: &Moderator) -> StoreResult<()> {
        let m = m.clone();
        self.run("creating a moderator", move |c| {
            c.cached_exec(
                "INSERT INTO moderator (id, last_name, first_name, email, federal_state, organisation, role, status, password_hash, created_at, must_change_password)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
                    m.must_change_password,
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
        self.read_point("reading a moderator", move |c| {
            c.cached_row(
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
        self.read_point("reading a moderator", move |c| {
            c.cached_row(
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
                .cached_exec(
                    "UPDATE moderator SET last_name = ?2, first_name = ?3, email = ?4, federal_state = ?5,
                     organisation = ?6, role = ?7, status = ?8, password_hash = ?9,
                     must_change_password = ?10 WHERE id = ?1",
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
                        m.must_change_password,
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
                tx.cached_exec(sql, params![id.to_string()])
                    .map_err(db("deleting a moderator"))?;
            }
            tx.commit().map_err(db("deleting a moderator"))
        })
        .await
    }

    async fn list_moderators(&self) -> StoreResult<Vec<Moderator>> {
        self.read("listing moderators", |c| {
            let mut st = c
                .prepare_cached("SELECT * FROM moderator ORDER BY email")
                .map_err(db("listing moderators"))?;
            st.query_map([], moderator_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("moderator", "listing moderators"))
        })
        .await
    }

    async fn restrict_keeping_admin(
        &self,
        id: ModeratorId,
        keeper: ModeratorId,
    ) -> StoreResult<bool> {
        if id == keeper {
            return Ok(false);
        }
        self.run("restricting an admin", move |c| {
            // One statement: the keeper's check and the write cannot be split by another call.
            let n = c
                .cached_exec(
                    "UPDATE moderator SET status = ?3 WHERE id = ?1 AND EXISTS
                     (SELECT 1 FROM moderator WHERE id = ?2 AND role = ?4 AND status = ?5)",
                    params![
                        id.to_string(),
                        keeper.to_string(),
                        AccountStatus::Restricted.as_str(),
                        Role::Admin.as_str(),
                        AccountStatus::Active.as_str(),
                    ],
                )
                .map_err(db("restricting an admin"))?;
            if n == 1 {
                return Ok(true);
            }
            let exists: bool = c
                .cached_row(
                    "SELECT COUNT(*) > 0 FROM moderator WHERE id = ?1",
                    params![id.to_string()],
                    |r| r.get(0),
                )
                .map_err(db("restricting an admin"))?;
            if exists {
                Ok(false)
            } else {
                Err(StoreError::NotFound {
                    what: "the account",
                })
            }
        })
        .await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn put_session(&self, s: &Session) -> StoreResult<()> {
        let s = s.clone();
        self.run("saving a session", move |c| {
            c.cached_exec(
                "INSERT INTO session (id, moderator_id, role, created_at, expires_at, must_change_password)
                 VALUES (?1, ?2, ?5, ?3, ?4, ?6)
                 ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at,
                 must_change_password = excluded.must_change_password",
                params![s.id.to_string(), s.moderator_id.to_string(), s.created_at.millis(), s.expires_at.epoch_secs(),
                    s.role.as_str(), s.must_change_password],
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
        self.read_point("reading a session", move |c| {
            c.cached_row(
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
            c.cached_exec(
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
            c.cached_exec(
                "DELETE FROM session WHERE moderator_id = ?1",
                params![moderator.to_string()],
            )
            .map(|_| ())
            .map_err(db("deleting sessions"))
        })
        .await
    }

    async fn delete_sessions_except(
        &self,
        moderator: ModeratorId,
        keep: SessionId,
    ) -> StoreResult<()> {
        self.run("deleting the other sessions", move |c| {
            c.cached_exec(
                "DELETE FROM session WHERE moderator_id = ?1 AND id <> ?2",
                params![moderator.to_string(), keep.to_string()],
            )
            .map(|_| ())
            .map_err(db("deleting the other sessions"))
        })
        .await
    }
}
