//! The AWS adapter: DynamoDB for records, S3 for objects.
//!
//! # Table design (one table, `AULA_TABLE`, default `aula`)
//!
//! | kind               | pk                           | sk                              | gsi1pk / gsi1sk                  | gsi2pk / gsi2sk      |
//! |--------------------|------------------------------|---------------------------------|----------------------------------|----------------------|
//! | `moderator`        | `MOD#<id>`                   | `PROFILE`                       | `MODERATORS` / `<email>`         |                      |
//! | `moderator_email`  | `EMAIL#<email>`              | `EMAIL`                         |                                  |                      |
//! | `room`             | `ROOM#<id>`                  | `ROOM`                          | `OWNER#<owner>` / `<created>#<id>` | `INVITE#<token>` / `ROOM` |
//! | `guest`            | `ROOM#<room>`                | `GUEST#<id>`                    |                                  |                      |
//! | `meeting`          | `ROOM#<room>`                | `MEETING#<started>#<id>`        |                                  |                      |
//! | `chat_message`     | `ROOM#<room>`                | `MSG#<conversation>#<message id>` |                                |                      |
//! | `chat_idempotency` | `ROOM#<room>`                | `IDEMP#<author>#<key>`          |                                  |                      |
//! | `access_log`       | `ACCESSLOG#<yyyy-mm-dd>#<shard 0-7>` | `<time>#<id>`           |                                  |                      |
//! | `media_node`       | `NODE#<id>`                  | `NODE`                          | `NODES` / `<id>`                 |                      |
//! | `session`          | `SESSION#<id>`               | `SESSION`                       | `SESSIONS#<moderator>` / `<id>`  |                      |
//! | `audit`            | `AUDIT#<yyyy-mm>`            | `<time>#<id>`                   |                                  |                      |
//! | `rate_counter`     | `RATE#<key>`                 | `<window start>`                |                                  |                      |
//! | `placement`        | `ROOM#<room>`                | `PLACEMENT`                     | `PLACED#<node>` / `<placed>#<room>` |                   |
//! | `scheduled_meeting`| `ROOM#<room>`                | `PLAN#<starts>#<id>`            | `PLANS#<owner>` / `<starts>#<id>` | `PLANDAY#<yyyy-mm-dd>` / `<starts>#<id>` |
//!
//! A session is its own partition and carries the account's role, so checking a session
//! cookie reads that one item and nothing of the account: the chat function's IAM policy
//! needs no access to accounts at all. Everything about a room lives in its partition, so deleting a room is one query and a
//! batch of deletes. Message ids start with the posting time, so a conversation's sort keys
//! are in posting order and a page is one range query. Times in keys are 15-digit
//! milliseconds. Every item has `kind`; expiring items have `expires_at` in epoch seconds,
//! the table's TTL attribute. DynamoDB deletes expired items lazily (typically within two
//! days), so **every read checks `expires_at` against `now`** and drops what has expired.
//! Uniqueness (one account per email, one post per idempotency key) is enforced with
//! conditional writes inside transactions.
//!
//! Objects live in S3, one bucket per [`ObjectClass`]; their expiry is object metadata that
//! reads check (lifecycle rules delete them, lazily too).
//!
//! # Where things are
//! One module per aggregate, each with its keys, its item codecs and its ports:
//! `accounts` (moderators, email claims, sessions), `rooms` (rooms, guests, meetings),
//! `chat` (messages and idempotency markers), `logs` (access log, audit log), `nodes`
//! (the media node registry and room placement), `rate_limit` (attempt counters) and
//! `objects` (S3). They build on `table` (the DynamoDB requests: get, put, paged queries,
//! batch deletes, transactions) and `codec` (attribute values to typed fields, and the
//! expiry check every read makes). The whole-table scan for tests is in `introspect`
//! (feature `test-support`).

mod accounts;
mod chat;
mod codec;
#[cfg(feature = "test-support")]
mod introspect;
mod logs;
mod nodes;
mod objects;
mod queue;
mod rate_limit;
mod rooms;
mod table;

use aula_domain::ObjectClass;
use std::time::Duration;

/// Where the AWS resources are; read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub table: String,
    pub export_bucket: String,
    pub log_bucket: String,
    /// How long one DynamoDB call may take in all, retries included (S3 gets six times as
    /// long: exports and log archives are uploads).
    pub call_timeout: Duration,
}

impl AwsConfig {
    /// `AULA_TABLE`, `AULA_EXPORT_BUCKET`, `AULA_LOG_BUCKET`, `AULA_AWS_CALL_SECONDS`
    /// (default 10), with the local defaults.
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        AwsConfig {
            table: var("AULA_TABLE", "aula"),
            export_bucket: var("AULA_EXPORT_BUCKET", "aula-exports"),
            log_bucket: var("AULA_LOG_BUCKET", "aula-log-archive"),
            call_timeout: Duration::from_secs(
                var("AULA_AWS_CALL_SECONDS", "10")
                    .parse()
                    .unwrap_or(10)
                    .max(1),
            ),
        }
    }
}

#[derive(Clone)]
pub struct AwsStore {
    ddb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    cfg: AwsConfig,
}

impl AwsStore {
    pub fn new(sdk: &aws_config::SdkConfig, cfg: AwsConfig) -> Self {
        // Without timeouts the SDK waits as long as the endpoint does: during an outage a
        // join hung until the endpoint came back. Only the whole call is bounded, not each
        // attempt: a retry after a slow write that did land would meet its own condition
        // (a conflict for an account that was just created), so a slow answer is waited
        // for, within the call's limit. Connecting is bounded (nothing was sent yet).
        let timeouts = |call: Duration| {
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(call)
                .build()
        };
        let ddb_conf = aws_sdk_dynamodb::config::Builder::from(sdk)
            .timeout_config(timeouts(cfg.call_timeout))
            .build();
        // Path-style addressing for a local endpoint (moto, LocalStack); real S3 prefers
        // virtual-hosted style.
        let s3_conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .timeout_config(timeouts(cfg.call_timeout * 6))
            .build();
        AwsStore {
            ddb: aws_sdk_dynamodb::Client::from_conf(ddb_conf),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            cfg,
        }
    }

    /// Loads credentials, region and `AWS_ENDPOINT_URL` from the environment.
    pub async fn from_env() -> Self {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        Self::new(&sdk, AwsConfig::from_env())
    }

    pub fn config(&self) -> &AwsConfig {
        &self.cfg
    }

    fn bucket(&self, class: ObjectClass) -> &str {
        match class {
            ObjectClass::Export => &self.cfg.export_bucket,
            ObjectClass::LogArchive => &self.cfg.log_bucket,
        }
    }
}
