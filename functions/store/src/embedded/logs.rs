//! The access log and the audit log.

use super::codec::{col, db, expiry, read_err, ts};
use super::{Cached, SqliteStore};
use crate::backend;
use async_trait::async_trait;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{Row, params};
use std::sync::Arc;

pub(super) const SCHEMA: &str = r#"
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
"#;

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
impl AccessLogStore for SqliteStore {
    /// Entries wait in a list; whoever gets the writer first writes every waiting entry in
    /// one transaction (group commit), so a burst of requests costs a few transactions, not
    /// one each, and the others find their entry written and return.
    async fn append_access_log(&self, e: &AccessLogEntry) -> StoreResult<()> {
        self.pending_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
        let pending = Arc::clone(&self.pending_log);
        self.run("writing the access log", move |c| {
            let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
            if batch.is_empty() {
                return Ok(());
            }
            let tx = c.transaction().map_err(db("writing the access log"))?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO access_log (id, time, method, url, status, bytes_sent, referrer, user_agent, host_id, forwarded_for, cookies, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    )
                    .map_err(db("writing the access log"))?;
                for e in &batch {
                    let cookies = serde_json::to_string(&e.cookies)
                        .map_err(backend("writing the access log"))?;
                    insert
                        .execute(params![
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
                        ])
                        .map_err(db("writing the access log"))?;
                }
            }
            tx.commit().map_err(db("writing the access log"))
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
        self.read("reading the access log", move |c| {
            let mut st = c
                .prepare_cached(
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
impl AuditStore for SqliteStore {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        let e = e.clone();
        self.run("writing the audit log", move |c| {
            c.cached_exec(
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
        self.read("reading the audit log", move |c| {
            let mut st = c
                .prepare_cached(
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
