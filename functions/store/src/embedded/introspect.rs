//! What tests read to hold the store to the data inventory (feature `test-support`).

use super::SqliteStore;
use super::codec::db;
use crate::{Introspect, StoredFields};
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;

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
