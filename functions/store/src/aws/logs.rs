//! The access log (`ACCESSLOG#<day>#<shard>`, eight shards per day so a busy day spreads
//! its writes) and the audit log (`AUDIT#<month>`).

use super::AwsStore;
use super::codec::{Fields, Item, item, live, n, padded, s};
use crate::backend;
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;

const ACCESS_LOG_SHARDS: u8 = 8;

fn access_log_pk(e: &AccessLogEntry) -> String {
    let shard = e.id.to_string().as_bytes().first().copied().unwrap_or(0) % ACCESS_LOG_SHARDS;
    format!("ACCESSLOG#{}#{shard}", day(e.time))
}

pub(super) fn day(t: Timestamp) -> String {
    // The RFC 3339 form starts with the UTC date.
    t.to_rfc3339().chars().take(10).collect()
}

fn access_log_item(e: &AccessLogEntry) -> StoreResult<Item> {
    let cookies = serde_json::to_string(&e.cookies).map_err(backend("writing the access log"))?;
    let mut i = item(
        RecordKind::AccessLog,
        [
            ("pk", s(access_log_pk(e))),
            ("sk", s(format!("{}#{}", padded(e.time), e.id))),
            ("id", s(e.id.to_string())),
            ("time", n(e.time.millis())),
            ("method", s(e.method.as_str())),
            ("url", s(e.url.as_str())),
            ("status", n(e.status)),
            ("bytes_sent", n(e.bytes_sent)),
            ("host_id", s(e.host_id.as_str())),
            ("cookies", s(cookies)),
            ("expires_at", n(e.expires_at.epoch_secs())),
        ],
    );
    for (name, value) in [
        ("referrer", &e.referrer),
        ("user_agent", &e.user_agent),
        ("forwarded_for", &e.forwarded_for),
    ] {
        if let Some(v) = value {
            i.insert(name.into(), s(v.as_str()));
        }
    }
    Ok(i)
}

fn access_log_from(i: &Item) -> StoreResult<AccessLogEntry> {
    let f = Fields::of(i, RecordKind::AccessLog);
    Ok(AccessLogEntry {
        id: f.parse("id", AccessLogId::parse)?,
        time: f.ts("time")?,
        method: f.str("method")?.to_owned(),
        url: f.str("url")?.to_owned(),
        status: f.num("status")?,
        bytes_sent: f.num("bytes_sent")?,
        referrer: f.opt_str("referrer")?.map(str::to_owned),
        user_agent: f.opt_str("user_agent")?.map(str::to_owned),
        host_id: f.str("host_id")?.to_owned(),
        forwarded_for: f.opt_str("forwarded_for")?.map(str::to_owned),
        cookies: serde_json::from_str(f.str("cookies")?)
            .map_err(|e| f.corrupt(format!("cookies: {e}")))?,
        expires_at: f.expiry()?,
    })
}

fn month(t: Timestamp) -> String {
    t.to_rfc3339().chars().take(7).collect()
}

fn audit_item(e: &AuditEntry) -> Item {
    item(
        RecordKind::Audit,
        [
            ("pk", s(format!("AUDIT#{}", month(e.time)))),
            ("sk", s(format!("{}#{}", padded(e.time), e.id))),
            ("id", s(e.id.to_string())),
            ("time", n(e.time.millis())),
            ("actor", s(e.actor.to_string())),
            ("action", s(e.action.as_str())),
            ("target", s(e.target.as_str())),
            ("reason", s(e.reason.as_str())),
            ("expires_at", n(e.expires_at.epoch_secs())),
        ],
    )
}

fn audit_from(i: &Item) -> StoreResult<AuditEntry> {
    let f = Fields::of(i, RecordKind::Audit);
    Ok(AuditEntry {
        id: f.parse("id", AuditId::parse)?,
        time: f.ts("time")?,
        actor: f.parse("actor", ModeratorId::parse)?,
        action: f.parse("action", AuditAction::parse)?,
        target: f.str("target")?.to_owned(),
        reason: f.parse("reason", AuditReason::parse)?,
        expires_at: f.expiry()?,
    })
}

#[async_trait]
impl AccessLogStore for AwsStore {
    async fn append_access_log(&self, e: &AccessLogEntry) -> StoreResult<()> {
        self.put(access_log_item(e)?, "writing the access log")
            .await
    }

    async fn access_log_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AccessLogEntry>> {
        let until = until.min(from.plus(MAX_ACCESS_LOG_SPAN));
        if until <= from {
            return Ok(Vec::new());
        }
        let lo = padded(from);
        let hi = padded(until);
        let mut entries = Vec::new();
        let mut d = from;
        let last_day = day(until.minus(Span::MILLISECOND));
        loop {
            let today = day(d);
            for shard in 0..ACCESS_LOG_SHARDS {
                let items = self
                    .query_range(
                        format!("ACCESSLOG#{today}#{shard}"),
                        Some((lo.clone(), hi.clone())),
                        true,
                        "reading the access log",
                    )
                    .await?;
                for e in live(items, now, access_log_from)? {
                    if e.time >= from && e.time < until {
                        entries.push(e);
                    }
                }
            }
            if today >= last_day {
                break;
            }
            d = d.plus(Span::days(1));
        }
        entries.sort_by_key(|e| (e.time, e.id));
        Ok(entries)
    }
}

/// The audit log may be read over at most this span.
const MAX_AUDIT_SPAN: Span = Span::days(400);

#[async_trait]
impl AuditStore for AwsStore {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        self.put(audit_item(e), "writing the audit log").await
    }

    async fn audit_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEntry>> {
        let until = until.min(from.plus(MAX_AUDIT_SPAN));
        let mut months: Vec<String> = Vec::new();
        let mut d = from;
        while d < until {
            let m = month(d);
            if months.last() != Some(&m) {
                months.push(m);
            }
            d = d.plus(Span::days(1));
        }
        let last = month(until.minus(Span::MILLISECOND));
        if until > from && months.last() != Some(&last) {
            months.push(last);
        }
        let mut entries = Vec::new();
        for m in months {
            let items = self
                .query_range(
                    format!("AUDIT#{m}"),
                    Some((padded(from), padded(until))),
                    true,
                    "reading the audit log",
                )
                .await?;
            entries.extend(
                live(items, now, audit_from)?
                    .into_iter()
                    .filter(|e| e.time >= from && e.time < until),
            );
        }
        entries.sort_by_key(|e| (e.time, e.id));
        Ok(entries)
    }
}
