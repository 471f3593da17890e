//! Adapters for the domain's storage ports.
//!
//! - [`embedded::SqliteStore`]: the single-machine store (SQLite), with a sweeper that
//!   physically deletes expired rows.
//! - [`aws::AwsStore`]: DynamoDB (one table, TTL on `expires_at`) and S3.
//!
//! Both pass the same conformance suite (`tests/conformance`), and both report what they
//! physically hold through `Introspect`, so a test can hold them to the data inventory.
//!
//! Each adapter is a cargo feature, `aws` and `sqlite`, so a Lambda function links no
//! SQLite and a binary names the stores it can run on. `test-support` adds `Introspect`,
//! the whole-store scan only tests make.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "sqlite")]
pub mod embedded;
pub mod system;

#[cfg(any(feature = "aws", feature = "sqlite", feature = "test-support"))]
use aula_domain::ports::StoreError;

#[cfg(feature = "aws")]
pub use aws::{AwsConfig, AwsStore};
#[cfg(feature = "sqlite")]
pub use embedded::SqliteStore;
pub use system::{RandomIds, SystemClock};

/// What a store physically holds, by record kind name: the set of field names seen.
#[cfg(feature = "test-support")]
pub type StoredFields = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// Lets tests look at the stored representation, to hold it to the data inventory. Both
/// implementations read every record, so production code never has this (feature
/// `test-support`).
#[cfg(feature = "test-support")]
#[async_trait::async_trait]
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

#[cfg(any(feature = "aws", feature = "sqlite"))]
pub(crate) fn backend<E>(doing: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: Into<aula_domain::ports::BoxError>,
{
    move |e| StoreError::Backend {
        doing,
        source: e.into(),
    }
}

#[cfg(any(feature = "aws", feature = "sqlite"))]
pub(crate) fn corrupt<E: std::fmt::Display>(kind: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Corrupt {
        kind,
        reason: e.to_string(),
    }
}
