//! Adapters for the domain's storage ports.
//!
//! - [`embedded::SqliteStore`]: the single-machine store (SQLite), with a sweeper that
//!   physically deletes expired rows.
//! - [`aws::AwsStore`]: DynamoDB (one table, TTL on `expires_at`) and S3.
//!
//! Both pass the same conformance suite (`tests/conformance`), and both report what they
//! physically hold through [`Introspect`], so a test can hold them to the data inventory.

pub mod aws;
pub mod embedded;
pub mod system;

use async_trait::async_trait;
use aula_domain::ports::{BoxError, StoreError};
use std::collections::{BTreeMap, BTreeSet};

pub use aws::{AwsConfig, AwsStore};
pub use embedded::SqliteStore;
pub use system::{RandomIds, SystemClock};

/// What a store physically holds, by record kind name: the set of field names seen.
pub type StoredFields = BTreeMap<String, BTreeSet<String>>;

/// Lets tests look at the stored representation, to hold it to the data inventory.
#[async_trait]
pub trait Introspect {
    async fn stored_fields(&self) -> Result<StoredFields, StoreError>;
    /// Whether any stored value (in any table, item, key or object) contains `needle`,
    /// leaving out the record kinds in `skip`: the scan behind "after erasure nothing of
    /// them remains".
    async fn contains_text(
        &self,
        needle: &str,
        skip: &[aula_domain::inventory::RecordKind],
    ) -> Result<bool, StoreError>;
}

pub(crate) fn backend<E>(doing: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: Into<BoxError>,
{
    move |e| StoreError::Backend {
        doing,
        source: e.into(),
    }
}

pub(crate) fn corrupt<E: std::fmt::Display>(kind: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Corrupt {
        kind,
        reason: e.to_string(),
    }
}
