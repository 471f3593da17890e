use aula_store::{AwsStore, SqliteStore};

/// A private in-memory SQLite store.
pub fn embedded() -> SqliteStore {
    SqliteStore::open_in_memory().expect("an in-memory SQLite store opens")
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
