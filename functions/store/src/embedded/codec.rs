//! What the aggregates share: columns parsed into domain types (a value that does not parse
//! is `Corrupt`), and SQLite errors mapped to the store's errors.

use crate::{backend, corrupt};
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::Row;

pub(super) fn db(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    backend(doing)
}

pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Reads a column and parses it into a domain type; parse failures become `Corrupt`.
pub(super) fn col<T, R>(
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

pub(super) fn ts(row: &Row<'_>, name: &str) -> rusqlite::Result<Timestamp> {
    row.get::<_, i64>(name).map(Timestamp::from_millis)
}

pub(super) fn expiry(row: &Row<'_>) -> rusqlite::Result<Expiry> {
    row.get::<_, i64>("expires_at").map(Expiry::from_epoch_secs)
}

/// Maps a row-conversion failure to `Corrupt`, anything else to `Backend`.
pub(super) fn read_err(
    kind: &'static str,
    doing: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| match e {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            corrupt(kind)(e)
        }
        other => backend(doing)(other),
    }
}
