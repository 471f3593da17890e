use aula_store::{AwsStore, SqliteStore};

/// A SQLite store in a file of its own, opened as the portal opens it (one writer and the
/// read-only connections beside it); the file goes with the returned directory.
pub fn embedded() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store =
        SqliteStore::open(&dir.path().join("aula.sqlite3")).expect("the SQLite store opens");
    (dir, store)
}

/// The AWS adapter at the local endpoint. Tests share its table and buckets; every case
/// makes its own random ids, so cases never see each other's records.
pub async fn dynamodb() -> AwsStore {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.") || endpoint.starts_with("http://localhost"),
        "The DynamoDB conformance tests need the local AWS endpoint: run `./scripts/test` \
         (or `eval \"$(localstack/start.sh)\"` first). AWS_ENDPOINT_URL is {endpoint:?}; \
         these tests never talk to real AWS."
    );
    AwsStore::from_env().await
}
