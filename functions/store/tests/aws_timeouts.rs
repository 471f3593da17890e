//! A DynamoDB endpoint that stops answering (an outage, a network that drops packets) must
//! not hang a caller: the store gives up with an error the API answers as 503, and the
//! client can say so and retry. The endpoint here accepts connections and never replies.

use aula_domain::Clock;
use aula_domain::ports::NodeRegistryStore;
use aula_store::{AwsConfig, AwsStore};
use std::time::Duration;

#[tokio::test]
async fn a_store_call_to_an_endpoint_that_never_answers_fails_instead_of_hanging() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let endpoint = format!("http://{}", silent.local_addr().expect("its address"));
    // Accept every connection and hold it open without a byte of answer.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-central-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let store = AwsStore::new(
        &sdk,
        AwsConfig {
            call_timeout: Duration::from_secs(3),
            ..AwsConfig::from_env()
        },
    );
    // Far above the store's limit (3 s here, 10 s by default): only a hang reaches it.
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        store.live_nodes(aula_store::SystemClock.now()),
    )
    .await;
    let answer = outcome.expect("the call returned instead of waiting for the endpoint");
    assert!(answer.is_err(), "a silent endpoint is an error: {answer:?}");
}
