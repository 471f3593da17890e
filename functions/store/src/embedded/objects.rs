//! Objects (exports, log archives) as rows with their body.

use super::codec::{col, db, expiry, read_err, ts};
use super::{Cached, SqliteStore};
use async_trait::async_trait;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{OptionalExtension, Row, params};

pub(super) const SCHEMA: &str = r#"
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

#[async_trait]
impl ObjectStore for SqliteStore {
    async fn put_object(&self, o: &StoredObject) -> StoreResult<()> {
        let o = o.clone();
        self.run("storing an object", move |c| {
            c.cached_exec(
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
        self.read("reading an object", move |c| {
            c.cached_row(
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
        self.read("listing objects", move |c| {
            let mut st = c
                .prepare_cached(
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
            c.cached_exec(
                "DELETE FROM object WHERE class = ?1 AND key = ?2",
                params![class.as_str(), key.as_str()],
            )
            .map(|_| ())
            .map_err(db("deleting an object"))
        })
        .await
    }
}
