//! The auth function's real binary under a Lambda runtime emulator (`cargo lambda watch
//! --only-lambda-apis`, from the PyPI package cargo-lambda), invoked with an API Gateway
//! HTTP API event, against DynamoDB at the local endpoint: the same path as in AWS, from
//! the runtime API to the table, with the keys read from a Secrets Manager secret.

use aula_api::crypto::{Argon2Passwords, random_bytes};
use aula_domain::ids::IdGenerator;
use aula_domain::ports::{AccessLogStore, ModeratorStore};
use aula_domain::services::{Password, PasswordHasher};
use aula_domain::*;
use aula_store::{AwsStore, RandomIds};
use aula_tokens::generate_ed25519_pkcs8;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the emulator did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn the_auth_function_logs_a_teacher_in_under_the_lambda_runtime() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127."),
        "needs the local AWS endpoint (run ./scripts/test)"
    );
    let cargo_lambda = std::env::var("AULA_CARGO_LAMBDA")
        .expect("AULA_CARGO_LAMBDA names the cargo-lambda binary (./scripts/test installs it)");

    // A teacher in the table, as an admin would have provisioned them.
    let store = AwsStore::from_env().await;
    let password = Password::new_password("Korrekt-Pferd-Batterie").expect("password");
    let email = format!("lambda-{}@schule.example.de", RandomIds.uuid().simple());
    let teacher = Moderator {
        id: RandomIds.moderator_id(),
        last_name: PersonName::parse("Schmidt").expect("name"),
        first_name: PersonName::parse("Anna").expect("name"),
        email: Email::parse(&email).expect("email"),
        federal_state: FederalState::Sachsen,
        organisation: Organisation::parse("Oberschule Mitte").expect("organisation"),
        role: Role::Moderator,
        status: AccountStatus::Active,
        password_hash: Argon2Passwords.hash(&password).expect("hash"),
        must_change_password: false,
        created_at: Timestamp::from_secs(1_795_766_400),
    };
    store
        .create_moderator(&teacher)
        .await
        .expect("the teacher exists");

    // The keys in a Secrets Manager secret, as the template deploys them.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(format!("aula-test/keys-{}", RandomIds.uuid().simple()))
        .secret_string(
            json!({
                "signing_key": STANDARD.encode(generate_ed25519_pkcs8().expect("key")),
                "hash_secret": STANDARD.encode(random_bytes::<32>().expect("secret")),
            })
            .to_string(),
        )
        .send()
        .await
        .expect("the key secret exists");
    let secret_arn = secret.arn().expect("an ARN").to_owned();

    let port = free_port();
    let _emulator = Killed(
        Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo lambda watch starts"),
    );
    wait_for_port(port);
    let _function = Killed(
        Command::new(env!("CARGO_BIN_EXE_aula-auth"))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test-stream")
            .env("AULA_SECRETS_ARN", &secret_arn)
            .env_remove("AULA_SIGNING_KEY")
            .env_remove("AULA_HASH_SECRET")
            .env("AULA_PUBLIC_URL", "https://aula.example")
            .env(
                "AULA_SUPERVISORY_AUTHORITY",
                "Landesbeauftragte für Datenschutz (Test)",
            )
            .env("AULA_DATA_PROTECTION_OFFICER", "dsb@ministerium.example")
            .env("AULA_MEDIA_NODE_URL", "wss://node.aula.example")
            .stdout(Stdio::null())
            .spawn()
            .expect("the function binary starts"),
    );

    let body = json!({ "email": email, "password": password.expose() }).to_string();
    let event = json!({
        "version": "2.0",
        "routeKey": "POST /api/auth/login",
        "rawPath": "/api/auth/login",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "user-agent": "lambda-test/1.0",
            "x-forwarded-for": "198.51.100.9"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "aula",
            "domainName": "aula.example",
            "domainPrefix": "aula",
            "http": {
                "method": "POST",
                "path": "/api/auth/login",
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.9",
                "userAgent": "lambda-test/1.0"
            },
            "requestId": "req-1",
            "routeKey": "POST /api/auth/login",
            "stage": "$default",
            "time": "27/Nov/2026:09:00:00 +0000",
            "timeEpoch": 1_795_770_000_000_i64
        },
        "body": body,
        "isBase64Encoded": false
    });
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/2015-03-31/functions/_/invocations");
    // The function may still be starting: the emulator holds the invocation until it polls.
    let response: Value = tokio::time::timeout(Duration::from_secs(60), async {
        client
            .post(&url)
            .json(&event)
            .send()
            .await
            .expect("invoked")
            .json()
            .await
            .expect("JSON")
    })
    .await
    .expect("the function answers within 60 s");

    assert_eq!(response["statusCode"], 200, "{response}");
    let cookies = response["cookies"]
        .as_array()
        .expect("cookies in the v2 response");
    let session = cookies
        .iter()
        .filter_map(Value::as_str)
        .find(|c| c.starts_with("aula_session="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(
            session.contains(attribute),
            "{attribute} missing: {session}"
        );
    }
    let answer: Value =
        serde_json::from_str(response["body"].as_str().expect("body")).expect("json");
    assert_eq!(answer["account"]["email"], email);

    // The function wrote its access-log entry to the table.
    let now = Timestamp::from_millis(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis(),
        )
        .expect("fits"),
    );
    let entries = store
        .access_log_between(
            now.minus(Span::seconds(300)),
            now.plus(Span::seconds(5)),
            now,
        )
        .await
        .expect("access log");
    let entry = entries
        .iter()
        .find(|e| e.url == "/api/auth/login" && e.host_id == "_/test-stream" && e.status == 200)
        .expect("an access-log entry from the function");
    assert_eq!(entry.forwarded_for.as_deref(), Some("198.51.100.9"));
    assert_eq!(entry.user_agent.as_deref(), Some("lambda-test/1.0"));
}
