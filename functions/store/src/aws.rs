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

use crate::{Introspect, StoredFields, backend, corrupt};
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, Put, TransactWriteItem, WriteRequest,
};
use std::collections::{BTreeSet, HashMap};

type Item = HashMap<String, AttributeValue>;

/// Attributes that only address an item; they repeat declared fields, never add data.
const KEY_ATTRIBUTES: [&str; 7] = ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "kind"];
const ACCESS_LOG_SHARDS: u8 = 8;

/// Where the AWS resources are; read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub table: String,
    pub export_bucket: String,
    pub log_bucket: String,
}

impl AwsConfig {
    /// `AULA_TABLE`, `AULA_EXPORT_BUCKET`, `AULA_LOG_BUCKET`, with the local defaults.
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        AwsConfig {
            table: var("AULA_TABLE", "aula"),
            export_bucket: var("AULA_EXPORT_BUCKET", "aula-exports"),
            log_bucket: var("AULA_LOG_BUCKET", "aula-log-archive"),
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
        // Path-style addressing for a local endpoint (moto, LocalStack); real S3 prefers
        // virtual-hosted style.
        let s3_conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        AwsStore {
            ddb: aws_sdk_dynamodb::Client::new(sdk),
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

    async fn get(&self, pk: String, sk: &str, doing: &'static str) -> StoreResult<Option<Item>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.cfg.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend(doing))?;
        Ok(out.item)
    }

    async fn put(&self, item: Item, doing: &'static str) -> StoreResult<()> {
        self.ddb
            .put_item()
            .table_name(&self.cfg.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(backend(doing))?;
        Ok(())
    }

    async fn delete(&self, pk: String, sk: &str, doing: &'static str) -> StoreResult<()> {
        self.ddb
            .delete_item()
            .table_name(&self.cfg.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .send()
            .await
            .map_err(backend(doing))?;
        Ok(())
    }

    /// Every item of one partition whose sort key lies in `[lo, hi]` (all pages), in order;
    /// the whole partition when `range` is `None`.
    async fn query_range(
        &self,
        pk: String,
        range: Option<(String, String)>,
        forward: bool,
        doing: &'static str,
    ) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut q = self
                .ddb
                .query()
                .table_name(&self.cfg.table)
                .expression_attribute_values(":pk", s(pk.clone()))
                .scan_index_forward(forward)
                .consistent_read(true)
                .set_exclusive_start_key(start);
            q = match &range {
                Some((lo, hi)) => q
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", s(lo.clone()))
                    .expression_attribute_values(":hi", s(hi.clone())),
                None => q.key_condition_expression("pk = :pk"),
            };
            let out = q.send().await.map_err(backend(doing))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Every item of one partition of a global secondary index (all pages), in sort order.
    async fn query_index(
        &self,
        index: &str,
        pk: String,
        doing: &'static str,
    ) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.cfg.table)
                .index_name(index)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", format!("{index}pk"))
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend(doing))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Deletes items by key, 25 per request, retrying what DynamoDB leaves unprocessed.
    async fn delete_all(&self, items: &[Item], doing: &'static str) -> StoreResult<()> {
        for chunk in items.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    let key: Item = item
                        .iter()
                        .filter(|(k, _)| *k == "pk" || *k == "sk")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    DeleteRequest::builder()
                        .set_key(Some(key))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(backend(doing))
                })
                .collect::<StoreResult<_>>()?;
            for attempt in 0u32.. {
                let out = self
                    .ddb
                    .batch_write_item()
                    .request_items(&self.cfg.table, requests)
                    .send()
                    .await
                    .map_err(backend(doing))?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.cfg.table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt >= 8 {
                    return Err(StoreError::Backend {
                        doing,
                        source: "DynamoDB left deletes unprocessed after 8 retries".into(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
        }
        Ok(())
    }

    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        doing: &'static str,
    ) -> StoreResult<bool> {
        match self
            .ddb
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_transaction_canceled_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend(doing)(e)),
        }
    }

    fn put_item(&self, item: Item, condition: Option<&str>) -> StoreResult<TransactWriteItem> {
        self.put_item_if(item, condition.unwrap_or_default(), [])
    }

    /// A transactional put, conditional when `condition` is not empty.
    fn put_item_if<const N: usize>(
        &self,
        item: Item,
        condition: &str,
        values: [(&str, AttributeValue); N],
    ) -> StoreResult<TransactWriteItem> {
        let values: Item = values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let put = Put::builder()
            .table_name(&self.cfg.table)
            .set_item(Some(item))
            .set_condition_expression((!condition.is_empty()).then(|| condition.to_owned()))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .build()
            .map_err(backend("building a transaction"))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete_item(&self, pk: String, sk: &str) -> StoreResult<TransactWriteItem> {
        let del = Delete::builder()
            .table_name(&self.cfg.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .build()
            .map_err(backend("building a transaction"))?;
        Ok(TransactWriteItem::builder().delete(del).build())
    }
}

// ---- attribute helpers ------------------------------------------------------------

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}
/// The sort-key range of every key that starts with `p` ("~" sorts after every key character used).
fn prefix(p: &str) -> Option<(String, String)> {
    Some((p.to_owned(), format!("{p}~")))
}
fn padded(t: Timestamp) -> String {
    format!("{:015}", t.millis().max(0))
}

fn item<const N: usize>(kind: RecordKind, attrs: [(&str, AttributeValue); N]) -> Item {
    let mut m: Item = attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    m.insert("kind".into(), s(kind.name()));
    m
}

/// Reads typed fields out of an item; anything missing or malformed is `Corrupt`.
struct Fields<'a> {
    item: &'a Item,
    kind: &'static str,
}

impl<'a> Fields<'a> {
    fn of(item: &'a Item, kind: RecordKind) -> Self {
        Fields {
            item,
            kind: kind.name(),
        }
    }
    fn corrupt(&self, what: String) -> StoreError {
        corrupt(self.kind)(what)
    }
    fn opt_str(&self, name: &str) -> StoreResult<Option<&'a str>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.corrupt(format!("{name} is not a string"))),
        }
    }
    fn str(&self, name: &str) -> StoreResult<&'a str> {
        self.opt_str(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }
    fn parse<T>(
        &self,
        name: &str,
        f: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> StoreResult<T> {
        f(self.str(name)?).map_err(|e| self.corrupt(format!("{name}: {e}")))
    }
    fn opt_num<T: std::str::FromStr>(&self, name: &str) -> StoreResult<Option<T>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| self.corrupt(format!("{name} is not a number in range"))),
            Some(_) => Err(self.corrupt(format!("{name} is not a number"))),
        }
    }
    fn num<T: std::str::FromStr>(&self, name: &str) -> StoreResult<T> {
        self.opt_num(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }
    fn ts(&self, name: &str) -> StoreResult<Timestamp> {
        self.num(name).map(Timestamp::from_millis)
    }
    fn expiry(&self) -> StoreResult<Expiry> {
        self.num("expires_at").map(Expiry::from_epoch_secs)
    }
    fn bool(&self, name: &str) -> StoreResult<bool> {
        match self.item.get(name) {
            Some(AttributeValue::Bool(v)) => Ok(*v),
            _ => Err(self.corrupt(format!("{name} is not a boolean"))),
        }
    }
}

/// Whether an item may be served at `now`. Items without an expiry never expire.
fn is_live(item: &Item, now: Timestamp) -> bool {
    match item.get("expires_at") {
        Some(AttributeValue::N(v)) => v
            .parse::<i64>()
            .is_ok_and(|secs| Expiry::from_epoch_secs(secs).is_live_at(now)),
        Some(_) => false,
        None => true,
    }
}

// ---- records <-> items ---------------------------------------------------------------

fn moderator_pk(id: ModeratorId) -> String {
    format!("MOD#{id}")
}
fn email_pk(email: &Email) -> String {
    format!("EMAIL#{email}")
}
fn room_pk(id: RoomId) -> String {
    format!("ROOM#{id}")
}
fn message_sk(conversation: &Conversation, id: MessageId) -> String {
    format!("MSG#{conversation}#{id}")
}
fn idempotency_sk(author: Participant, key: &IdempotencyKey) -> String {
    format!("IDEMP#{author}#{}", key.as_str())
}

fn moderator_item(m: &Moderator) -> Item {
    item(
        RecordKind::Moderator,
        [
            ("pk", s(moderator_pk(m.id))),
            ("sk", s("PROFILE")),
            ("gsi1pk", s("MODERATORS")),
            ("gsi1sk", s(m.email.as_str())),
            ("id", s(m.id.to_string())),
            ("last_name", s(m.last_name.as_str())),
            ("first_name", s(m.first_name.as_str())),
            ("email", s(m.email.as_str())),
            ("federal_state", s(m.federal_state.code())),
            ("organisation", s(m.organisation.as_str())),
            ("role", s(m.role.as_str())),
            ("status", s(m.status.as_str())),
            ("password_hash", s(m.password_hash.as_str())),
            ("created_at", n(m.created_at.millis())),
        ],
    )
}

fn moderator_from(i: &Item) -> StoreResult<Moderator> {
    let f = Fields::of(i, RecordKind::Moderator);
    Ok(Moderator {
        id: f.parse("id", ModeratorId::parse)?,
        last_name: f.parse("last_name", PersonName::parse)?,
        first_name: f.parse("first_name", PersonName::parse)?,
        email: f.parse("email", Email::parse)?,
        federal_state: f.parse("federal_state", FederalState::parse)?,
        organisation: f.parse("organisation", Organisation::parse)?,
        role: f.parse("role", Role::parse)?,
        status: f.parse("status", AccountStatus::parse)?,
        password_hash: f.parse("password_hash", PasswordHash::parse)?,
        created_at: f.ts("created_at")?,
    })
}

fn email_claim_item(email: &Email, id: ModeratorId) -> Item {
    item(
        RecordKind::ModeratorEmail,
        [
            ("pk", s(email_pk(email))),
            ("sk", s("EMAIL")),
            ("email", s(email.as_str())),
            ("moderator_id", s(id.to_string())),
        ],
    )
}

fn room_item(r: &Room) -> Item {
    item(
        RecordKind::Room,
        [
            ("pk", s(room_pk(r.id))),
            ("sk", s("ROOM")),
            ("gsi1pk", s(format!("OWNER#{}", r.owner))),
            ("gsi1sk", s(format!("{}#{}", padded(r.created_at), r.id))),
            ("gsi2pk", s(format!("INVITE#{}", r.invite_token.as_str()))),
            ("gsi2sk", s("ROOM")),
            ("id", s(r.id.to_string())),
            ("owner", s(r.owner.to_string())),
            ("name", s(r.name.as_str())),
            ("lobby", b(r.settings.lobby)),
            (
                "guests_may_share_screen",
                b(r.settings.guests_may_share_screen),
            ),
            ("guests_may_send_video", b(r.settings.guests_may_send_video)),
            ("mute_on_join", b(r.settings.mute_on_join)),
            ("invite_token", s(r.invite_token.as_str())),
            ("created_at", n(r.created_at.millis())),
            ("last_used_at", n(r.last_used_at.millis())),
            ("expires_at", n(r.expires_at.epoch_secs())),
        ],
    )
}

fn room_from(i: &Item) -> StoreResult<Room> {
    let f = Fields::of(i, RecordKind::Room);
    Ok(Room {
        id: f.parse("id", RoomId::parse)?,
        owner: f.parse("owner", ModeratorId::parse)?,
        name: f.parse("name", RoomName::parse)?,
        settings: RoomSettings {
            lobby: f.bool("lobby")?,
            guests_may_share_screen: f.bool("guests_may_share_screen")?,
            guests_may_send_video: f.bool("guests_may_send_video")?,
            mute_on_join: f.bool("mute_on_join")?,
        },
        invite_token: f.parse("invite_token", InviteToken::parse)?,
        created_at: f.ts("created_at")?,
        last_used_at: f.ts("last_used_at")?,
        expires_at: f.expiry()?,
    })
}

fn guest_item(g: &Guest) -> Item {
    item(
        RecordKind::Guest,
        [
            ("pk", s(room_pk(g.room_id))),
            ("sk", s(format!("GUEST#{}", g.id))),
            ("id", s(g.id.to_string())),
            ("room_id", s(g.room_id.to_string())),
            ("nickname", s(g.nickname.as_str())),
            ("admission", s(g.admission.as_str())),
            ("created_at", n(g.created_at.millis())),
            ("last_used_at", n(g.last_used_at.millis())),
            ("expires_at", n(g.expires_at.epoch_secs())),
        ],
    )
}

fn guest_from(i: &Item) -> StoreResult<Guest> {
    let f = Fields::of(i, RecordKind::Guest);
    Ok(Guest {
        id: f.parse("id", GuestId::parse)?,
        room_id: f.parse("room_id", RoomId::parse)?,
        nickname: f.parse("nickname", Nickname::parse)?,
        admission: f.parse("admission", Admission::parse)?,
        created_at: f.ts("created_at")?,
        last_used_at: f.ts("last_used_at")?,
        expires_at: f.expiry()?,
    })
}

fn meeting_item(m: &Meeting) -> Item {
    let mut i = item(
        RecordKind::Meeting,
        [
            ("pk", s(room_pk(m.room_id))),
            (
                "sk",
                s(format!("MEETING#{}#{}", padded(m.started_at), m.id)),
            ),
            ("id", s(m.id.to_string())),
            ("room_id", s(m.room_id.to_string())),
            ("started_at", n(m.started_at.millis())),
            ("peak_participants", n(m.peak_participants)),
            ("expires_at", n(m.expires_at.epoch_secs())),
        ],
    );
    if let Some(end) = m.ended_at {
        i.insert("ended_at".into(), n(end.millis()));
    }
    i
}

fn meeting_from(i: &Item) -> StoreResult<Meeting> {
    let f = Fields::of(i, RecordKind::Meeting);
    Ok(Meeting {
        id: f.parse("id", MeetingId::parse)?,
        room_id: f.parse("room_id", RoomId::parse)?,
        started_at: f.ts("started_at")?,
        ended_at: f.opt_num("ended_at")?.map(Timestamp::from_millis),
        peak_participants: f.num("peak_participants")?,
        expires_at: f.expiry()?,
    })
}

fn message_item(m: &ChatMessage) -> Item {
    item(
        RecordKind::ChatMessage,
        [
            ("pk", s(room_pk(m.room_id))),
            ("sk", s(message_sk(&m.conversation, m.id))),
            ("id", s(m.id.to_string())),
            ("room_id", s(m.room_id.to_string())),
            ("conversation", s(m.conversation.to_string())),
            ("author", s(m.author.to_string())),
            ("body", s(m.body.as_str())),
            ("idempotency_key", s(m.idempotency_key.as_str())),
            ("expires_at", n(m.expires_at.epoch_secs())),
        ],
    )
}

fn message_from(i: &Item) -> StoreResult<ChatMessage> {
    let f = Fields::of(i, RecordKind::ChatMessage);
    Ok(ChatMessage {
        id: f.parse("id", MessageId::parse)?,
        room_id: f.parse("room_id", RoomId::parse)?,
        conversation: f.parse("conversation", Conversation::parse)?,
        author: f.parse("author", Participant::parse)?,
        body: f.parse("body", ChatBody::parse)?,
        idempotency_key: f.parse("idempotency_key", IdempotencyKey::parse)?,
        expires_at: f.expiry()?,
    })
}

fn idempotency_item(m: &ChatMessage) -> Item {
    item(
        RecordKind::ChatIdempotency,
        [
            ("pk", s(room_pk(m.room_id))),
            ("sk", s(idempotency_sk(m.author, &m.idempotency_key))),
            ("room_id", s(m.room_id.to_string())),
            ("author", s(m.author.to_string())),
            ("idempotency_key", s(m.idempotency_key.as_str())),
            ("message_id", s(format!("{}#{}", m.conversation, m.id))),
            ("expires_at", n(m.expires_at.epoch_secs())),
        ],
    )
}

fn access_log_pk(e: &AccessLogEntry) -> String {
    let shard = e.id.to_string().as_bytes().first().copied().unwrap_or(0) % ACCESS_LOG_SHARDS;
    format!("ACCESSLOG#{}#{shard}", day(e.time))
}

fn day(t: Timestamp) -> String {
    // The RFC 3339 form starts with the UTC date.
    t.to_rfc3339().chars().take(10).collect()
}

fn access_log_item(e: &AccessLogEntry) -> StoreResult<Item> {
    let cookies = serde_json::to_string(&e.cookies).map_err(backend("writing the access log"))?;
    let mut i = item(
        RecordKind::AccessLog,
        [
            ("pk", s(access_log_pk(e))),
            ("sk", s(format!("{}#{}", padded(e.time), e.id))),
            ("id", s(e.id.to_string())),
            ("time", n(e.time.millis())),
            ("method", s(e.method.as_str())),
            ("url", s(e.url.as_str())),
            ("status", n(e.status)),
            ("bytes_sent", n(e.bytes_sent)),
            ("host_id", s(e.host_id.as_str())),
            ("cookies", s(cookies)),
            ("expires_at", n(e.expires_at.epoch_secs())),
        ],
    );
    for (name, value) in [
        ("referrer", &e.referrer),
        ("user_agent", &e.user_agent),
        ("forwarded_for", &e.forwarded_for),
    ] {
        if let Some(v) = value {
            i.insert(name.into(), s(v.as_str()));
        }
    }
    Ok(i)
}

fn access_log_from(i: &Item) -> StoreResult<AccessLogEntry> {
    let f = Fields::of(i, RecordKind::AccessLog);
    Ok(AccessLogEntry {
        id: f.parse("id", AccessLogId::parse)?,
        time: f.ts("time")?,
        method: f.str("method")?.to_owned(),
        url: f.str("url")?.to_owned(),
        status: f.num("status")?,
        bytes_sent: f.num("bytes_sent")?,
        referrer: f.opt_str("referrer")?.map(str::to_owned),
        user_agent: f.opt_str("user_agent")?.map(str::to_owned),
        host_id: f.str("host_id")?.to_owned(),
        forwarded_for: f.opt_str("forwarded_for")?.map(str::to_owned),
        cookies: serde_json::from_str(f.str("cookies")?)
            .map_err(|e| f.corrupt(format!("cookies: {e}")))?,
        expires_at: f.expiry()?,
    })
}

fn node_item(nd: &MediaNode) -> Item {
    item(
        RecordKind::MediaNode,
        [
            ("pk", s(format!("NODE#{}", nd.id))),
            ("sk", s("NODE")),
            ("gsi1pk", s("NODES")),
            ("gsi1sk", s(nd.id.to_string())),
            ("id", s(nd.id.to_string())),
            ("address", s(nd.address.as_str())),
            ("capacity", n(nd.capacity)),
            ("load", n(nd.load)),
            ("last_heartbeat", n(nd.last_heartbeat.millis())),
            ("expires_at", n(nd.expires_at.epoch_secs())),
        ],
    )
}

fn node_from(i: &Item) -> StoreResult<MediaNode> {
    let f = Fields::of(i, RecordKind::MediaNode);
    Ok(MediaNode {
        id: f.parse("id", NodeId::parse)?,
        address: f.str("address")?.to_owned(),
        capacity: f.num("capacity")?,
        load: f.num("load")?,
        last_heartbeat: f.ts("last_heartbeat")?,
        expires_at: f.expiry()?,
    })
}

fn live<T>(
    items: Vec<Item>,
    now: Timestamp,
    from: fn(&Item) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    items.iter().filter(|i| is_live(i, now)).map(from).collect()
}

// ---- ports --------------------------------------------------------------------------

const EMAIL_TAKEN: StoreError = StoreError::Conflict {
    what: "an account with this email",
};

#[async_trait]
impl ModeratorStore for AwsStore {
    #[tracing::instrument(skip_all, fields(moderator = %m.id))]
    async fn create_moderator(&self, m: &Moderator) -> StoreResult<()> {
        let ok = self
            .transact(
                vec![
                    self.put_item(moderator_item(m), Some("attribute_not_exists(pk)"))?,
                    self.put_item(
                        email_claim_item(&m.email, m.id),
                        Some("attribute_not_exists(pk)"),
                    )?,
                ],
                "creating a moderator",
            )
            .await?;
        if ok { Ok(()) } else { Err(EMAIL_TAKEN) }
    }

    async fn moderator(&self, id: ModeratorId) -> StoreResult<Option<Moderator>> {
        self.get(moderator_pk(id), "PROFILE", "reading a moderator")
            .await?
            .as_ref()
            .map(moderator_from)
            .transpose()
    }

    async fn moderator_by_email(&self, email: &Email) -> StoreResult<Option<Moderator>> {
        let Some(claim) = self
            .get(email_pk(email), "EMAIL", "reading a moderator")
            .await?
        else {
            return Ok(None);
        };
        let id = Fields::of(&claim, RecordKind::ModeratorEmail)
            .parse("moderator_id", ModeratorId::parse)?;
        Ok(self.moderator(id).await?.filter(|m| &m.email == email))
    }

    #[tracing::instrument(skip_all, fields(moderator = %m.id))]
    async fn update_moderator(&self, m: &Moderator) -> StoreResult<()> {
        let Some(current) = self.moderator(m.id).await? else {
            return Err(StoreError::NotFound {
                what: "the account",
            });
        };
        let mut writes = vec![self.put_item(moderator_item(m), Some("attribute_exists(pk)"))?];
        if current.email != m.email {
            writes.push(self.delete_item(email_pk(&current.email), "EMAIL")?);
            writes.push(self.put_item(
                email_claim_item(&m.email, m.id),
                Some("attribute_not_exists(pk)"),
            )?);
        }
        if self.transact(writes, "updating a moderator").await? {
            Ok(())
        } else if self.moderator(m.id).await?.is_none() {
            Err(StoreError::NotFound {
                what: "the account",
            })
        } else {
            Err(EMAIL_TAKEN)
        }
    }

    #[tracing::instrument(skip_all, fields(moderator = %id))]
    async fn delete_moderator(&self, id: ModeratorId) -> StoreResult<()> {
        self.delete_sessions_of(id).await?;
        let items = self
            .query_range(moderator_pk(id), None, true, "deleting a moderator")
            .await?;
        let current = items
            .iter()
            .find(|i| matches!(i.get("sk"), Some(AttributeValue::S(sk)) if sk == "PROFILE"))
            .map(moderator_from)
            .transpose()?;
        if let Some(m) = current {
            // The claim goes only while it still names this account.
            let claim = self
                .get(email_pk(&m.email), "EMAIL", "deleting a moderator")
                .await?;
            let ours = claim.as_ref().is_some_and(|c| {
                matches!(c.get("moderator_id"), Some(AttributeValue::S(v)) if *v == id.to_string())
            });
            if ours {
                self.delete(email_pk(&m.email), "EMAIL", "deleting a moderator")
                    .await?;
            }
        }
        self.delete_all(&items, "deleting a moderator").await
    }

    async fn list_moderators(&self) -> StoreResult<Vec<Moderator>> {
        let items = self
            .query_index("gsi1", "MODERATORS".into(), "listing moderators")
            .await?;
        items.iter().map(moderator_from).collect()
    }
}

#[async_trait]
impl RoomStore for AwsStore {
    #[tracing::instrument(skip_all, fields(room = %r.id))]
    async fn create_room(&self, r: &Room) -> StoreResult<()> {
        let ok = self
            .transact(
                vec![self.put_item(room_item(r), Some("attribute_not_exists(pk)"))?],
                "creating a room",
            )
            .await?;
        if ok {
            Ok(())
        } else {
            Err(StoreError::Conflict { what: "the room" })
        }
    }

    async fn room(&self, id: RoomId, now: Timestamp) -> StoreResult<Option<Room>> {
        match self.get(room_pk(id), "ROOM", "reading a room").await? {
            Some(i) if is_live(&i, now) => room_from(&i).map(Some),
            _ => Ok(None),
        }
    }

    async fn room_by_invite(
        &self,
        token: &InviteToken,
        now: Timestamp,
    ) -> StoreResult<Option<Room>> {
        // The index is eventually consistent: confirm against the room itself, so a
        // rotated-away token never admits anyone.
        let hits = self
            .query_index(
                "gsi2",
                format!("INVITE#{}", token.as_str()),
                "finding a room by invite",
            )
            .await?;
        for hit in hits {
            let id = Fields::of(&hit, RecordKind::Room).parse("id", RoomId::parse)?;
            if let Some(room) = self.room(id, now).await?
                && &room.invite_token == token
            {
                return Ok(Some(room));
            }
        }
        Ok(None)
    }

    async fn rooms_of(&self, owner: ModeratorId, now: Timestamp) -> StoreResult<Vec<Room>> {
        let items = self
            .query_index("gsi1", format!("OWNER#{owner}"), "listing rooms")
            .await?;
        live(items, now, room_from)
    }

    #[tracing::instrument(skip_all, fields(room = %r.id))]
    async fn update_room(&self, r: &Room, now: Timestamp) -> StoreResult<()> {
        let result = self
            .ddb
            .put_item()
            .table_name(&self.cfg.table)
            .set_item(Some(room_item(r)))
            .condition_expression("attribute_exists(pk) AND expires_at > :now")
            .expression_attribute_values(":now", n(now.epoch_secs()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::NotFound { what: "the room" })
            }
            Err(e) => Err(backend("updating a room")(e)),
        }
    }

    #[tracing::instrument(skip_all, fields(room = %id))]
    async fn delete_room(&self, id: RoomId) -> StoreResult<()> {
        // Everything of the room shares its partition; the room item (sk `ROOM`) sorts
        // after `GUEST#`, `IDEMP#`, `MEETING#` and `MSG#`, so it goes last.
        let items = self
            .query_range(room_pk(id), None, true, "deleting a room")
            .await?;
        self.delete_all(&items, "deleting a room").await
    }
}

#[async_trait]
impl GuestStore for AwsStore {
    async fn put_guest(&self, g: &Guest) -> StoreResult<()> {
        self.put(guest_item(g), "saving a guest").await
    }

    async fn guest(&self, room: RoomId, id: GuestId, now: Timestamp) -> StoreResult<Option<Guest>> {
        match self
            .get(room_pk(room), &format!("GUEST#{id}"), "reading a guest")
            .await?
        {
            Some(i) if is_live(&i, now) => guest_from(&i).map(Some),
            _ => Ok(None),
        }
    }

    async fn guests_of(&self, room: RoomId, now: Timestamp) -> StoreResult<Vec<Guest>> {
        let items = self
            .query_range(room_pk(room), prefix("GUEST#"), true, "listing guests")
            .await?;
        let mut guests = live(items, now, guest_from)?;
        guests.sort_by_key(|g| (g.created_at, g.id));
        Ok(guests)
    }

    async fn delete_guest(&self, room: RoomId, id: GuestId) -> StoreResult<()> {
        self.delete(room_pk(room), &format!("GUEST#{id}"), "deleting a guest")
            .await
    }
}

#[async_trait]
impl MeetingStore for AwsStore {
    async fn put_meeting(&self, m: &Meeting) -> StoreResult<()> {
        self.put(meeting_item(m), "saving a meeting").await
    }

    async fn meetings_of(&self, room: RoomId, now: Timestamp) -> StoreResult<Vec<Meeting>> {
        let items = self
            .query_range(room_pk(room), prefix("MEETING#"), false, "listing meetings")
            .await?;
        live(items, now, meeting_from)
    }
}

#[async_trait]
impl ChatStore for AwsStore {
    #[tracing::instrument(skip_all, fields(room = %m.room_id))]
    async fn post_message(&self, m: &ChatMessage) -> StoreResult<Posted> {
        let now = m.posted_at();
        // The marker claims (room, author, key); an expired marker no longer counts.
        let claim = self.put_item_if(
            idempotency_item(m),
            "attribute_not_exists(pk) OR expires_at <= :now",
            [(":now", n(now.epoch_secs()))],
        )?;
        let writes = vec![claim, self.put_item(message_item(m), None)?];
        if self.transact(writes, "posting a message").await? {
            return Ok(Posted::New(m.clone()));
        }
        let sk = idempotency_sk(m.author, &m.idempotency_key);
        let marker = self
            .get(room_pk(m.room_id), &sk, "posting a message")
            .await?
            .ok_or_else(|| corrupt("chat idempotency")("the marker vanished during a retry"))?;
        let target = Fields::of(&marker, RecordKind::ChatIdempotency).str("message_id")?;
        let original = self
            .get(
                room_pk(m.room_id),
                &format!("MSG#{target}"),
                "posting a message",
            )
            .await?
            .filter(|i| is_live(i, now))
            .ok_or_else(|| corrupt("chat message")("an idempotency marker without its message"))?;
        message_from(&original).map(Posted::Duplicate)
    }

    async fn message(
        &self,
        room: RoomId,
        conversation: &Conversation,
        id: MessageId,
        now: Timestamp,
    ) -> StoreResult<Option<ChatMessage>> {
        match self
            .get(
                room_pk(room),
                &message_sk(conversation, id),
                "reading a message",
            )
            .await?
        {
            Some(i) if is_live(&i, now) => message_from(&i).map(Some),
            _ => Ok(None),
        }
    }

    async fn history(
        &self,
        room: RoomId,
        conversation: &Conversation,
        before: Option<MessageId>,
        limit: usize,
        now: Timestamp,
    ) -> StoreResult<ChatPage> {
        let limit = limit.clamp(1, 1000);
        let lo = format!("MSG#{conversation}#");
        let hi = match before {
            Some(b) => message_sk(conversation, b),
            None => format!("MSG#{conversation}#~"),
        };
        let hi_excl = hi.clone();
        let mut messages = Vec::with_capacity(limit + 1);
        let mut start = None;
        'pages: loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.cfg.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(room_pk(room)))
                .expression_attribute_values(":lo", s(lo.clone()))
                .expression_attribute_values(":hi", s(hi.clone()))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend("reading chat history"))?;
            for i in out.items.unwrap_or_default() {
                let is_cursor =
                    matches!(i.get("sk"), Some(AttributeValue::S(sk)) if *sk == hi_excl);
                if is_cursor || !is_live(&i, now) {
                    continue;
                }
                messages.push(message_from(&i)?);
                if messages.len() > limit {
                    break 'pages;
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let older = if messages.len() > limit {
            messages.truncate(limit);
            messages.last().map(|m| m.id)
        } else {
            None
        };
        Ok(ChatPage { messages, older })
    }

    async fn delete_message(
        &self,
        room: RoomId,
        conversation: &Conversation,
        id: MessageId,
    ) -> StoreResult<()> {
        let sk = message_sk(conversation, id);
        let Some(i) = self.get(room_pk(room), &sk, "deleting a message").await? else {
            return Ok(());
        };
        let m = message_from(&i)?;
        // The marker goes too, as in the embedded store: a later post with the key is new.
        self.transact(
            vec![
                self.delete_item(room_pk(room), &sk)?,
                self.delete_item(room_pk(room), &idempotency_sk(m.author, &m.idempotency_key))?,
            ],
            "deleting a message",
        )
        .await?;
        Ok(())
    }

    async fn messages_of_room(
        &self,
        room: RoomId,
        now: Timestamp,
    ) -> StoreResult<Vec<ChatMessage>> {
        let items = self
            .query_range(
                room_pk(room),
                prefix("MSG#"),
                true,
                "reading a room's messages",
            )
            .await?;
        let mut messages = live(items, now, message_from)?;
        messages.sort_by(|a, b| {
            (a.id, a.conversation.to_string()).cmp(&(b.id, b.conversation.to_string()))
        });
        Ok(messages)
    }
}

#[async_trait]
impl AccessLogStore for AwsStore {
    async fn append_access_log(&self, e: &AccessLogEntry) -> StoreResult<()> {
        self.put(access_log_item(e)?, "writing the access log")
            .await
    }

    async fn access_log_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AccessLogEntry>> {
        let until = until.min(from.plus(MAX_ACCESS_LOG_SPAN));
        if until <= from {
            return Ok(Vec::new());
        }
        let lo = padded(from);
        let hi = padded(until);
        let mut entries = Vec::new();
        let mut d = from;
        let last_day = day(until.minus(Span::MILLISECOND));
        loop {
            let today = day(d);
            for shard in 0..ACCESS_LOG_SHARDS {
                let items = self
                    .query_range(
                        format!("ACCESSLOG#{today}#{shard}"),
                        Some((lo.clone(), hi.clone())),
                        true,
                        "reading the access log",
                    )
                    .await?;
                for e in live(items, now, access_log_from)? {
                    if e.time >= from && e.time < until {
                        entries.push(e);
                    }
                }
            }
            if today >= last_day {
                break;
            }
            d = d.plus(Span::days(1));
        }
        entries.sort_by_key(|e| (e.time, e.id));
        Ok(entries)
    }
}

#[async_trait]
impl NodeRegistryStore for AwsStore {
    async fn put_node(&self, nd: &MediaNode) -> StoreResult<()> {
        self.put(node_item(nd), "registering a media node").await
    }

    async fn live_nodes(&self, now: Timestamp) -> StoreResult<Vec<MediaNode>> {
        let items = self
            .query_index("gsi1", "NODES".into(), "listing media nodes")
            .await?;
        live(items, now, node_from)
    }

    async fn remove_node(&self, id: NodeId) -> StoreResult<()> {
        self.delete(format!("NODE#{id}"), "NODE", "removing a media node")
            .await
    }
}

const META_CREATED: &str = "created-at";
const META_EXPIRES: &str = "expires-at";

#[async_trait]
impl ObjectStore for AwsStore {
    async fn put_object(&self, o: &StoredObject) -> StoreResult<()> {
        self.s3
            .put_object()
            .bucket(self.bucket(o.class))
            .key(o.key.as_str())
            .content_type(&o.content_type)
            .metadata(META_CREATED, o.created_at.millis().to_string())
            .metadata(META_EXPIRES, o.expires_at.epoch_secs().to_string())
            .body(o.body.clone().into())
            .send()
            .await
            .map_err(backend("storing an object"))?;
        Ok(())
    }

    async fn get_object(
        &self,
        class: ObjectClass,
        key: &ObjectKey,
        now: Timestamp,
    ) -> StoreResult<Option<StoredObject>> {
        let out = match self
            .s3
            .get_object()
            .bucket(self.bucket(class))
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(backend("reading an object")(e)),
        };
        let meta = out.metadata.clone().unwrap_or_default();
        let Some((created_at, expires_at)) = object_times(&meta) else {
            return Err(corrupt("object")(
                "missing created-at or expires-at metadata",
            ));
        };
        if !expires_at.is_live_at(now) {
            return Ok(None);
        }
        let content_type = out.content_type.clone().unwrap_or_default();
        let body = out
            .body
            .collect()
            .await
            .map_err(backend("reading an object"))?
            .into_bytes()
            .to_vec();
        Ok(Some(StoredObject {
            class,
            key: key.clone(),
            content_type,
            body,
            created_at,
            expires_at,
        }))
    }

    async fn list_objects(
        &self,
        class: ObjectClass,
        prefix: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<ObjectKey>> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(self.bucket(class))
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(backend("listing objects"))?;
            for obj in page.contents.unwrap_or_default() {
                let Some(key) = obj.key.as_deref().and_then(|k| ObjectKey::parse(k).ok()) else {
                    continue;
                };
                // Listing carries no metadata: ask for the expiry of each candidate.
                let head = self
                    .s3
                    .head_object()
                    .bucket(self.bucket(class))
                    .key(key.as_str())
                    .send()
                    .await
                    .map_err(backend("listing objects"))?;
                let meta = head.metadata.unwrap_or_default();
                if object_times(&meta).is_some_and(|(_, e)| e.is_live_at(now)) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete_object(&self, class: ObjectClass, key: &ObjectKey) -> StoreResult<()> {
        self.s3
            .delete_object()
            .bucket(self.bucket(class))
            .key(key.as_str())
            .send()
            .await
            .map_err(backend("deleting an object"))?;
        Ok(())
    }
}

fn object_times(meta: &HashMap<String, String>) -> Option<(Timestamp, Expiry)> {
    let created = meta
        .get(META_CREATED)?
        .parse()
        .ok()
        .map(Timestamp::from_millis)?;
    let expires = meta
        .get(META_EXPIRES)?
        .parse()
        .ok()
        .map(Expiry::from_epoch_secs)?;
    Some((created, expires))
}

fn session_pk(id: SessionId) -> String {
    format!("SESSION#{id}")
}

fn session_item(x: &Session) -> Item {
    item(
        RecordKind::Session,
        [
            ("pk", s(session_pk(x.id))),
            ("sk", s("SESSION")),
            ("gsi1pk", s(format!("SESSIONS#{}", x.moderator_id))),
            ("gsi1sk", s(x.id.to_string())),
            ("id", s(x.id.to_string())),
            ("moderator_id", s(x.moderator_id.to_string())),
            ("role", s(x.role.as_str())),
            ("created_at", n(x.created_at.millis())),
            ("expires_at", n(x.expires_at.epoch_secs())),
        ],
    )
}

fn session_from(i: &Item) -> StoreResult<Session> {
    let f = Fields::of(i, RecordKind::Session);
    Ok(Session {
        id: f.parse("id", SessionId::parse)?,
        moderator_id: f.parse("moderator_id", ModeratorId::parse)?,
        role: f.parse("role", Role::parse)?,
        created_at: f.ts("created_at")?,
        expires_at: f.expiry()?,
    })
}

fn month(t: Timestamp) -> String {
    t.to_rfc3339().chars().take(7).collect()
}

fn audit_item(e: &AuditEntry) -> Item {
    item(
        RecordKind::Audit,
        [
            ("pk", s(format!("AUDIT#{}", month(e.time)))),
            ("sk", s(format!("{}#{}", padded(e.time), e.id))),
            ("id", s(e.id.to_string())),
            ("time", n(e.time.millis())),
            ("actor", s(e.actor.to_string())),
            ("action", s(e.action.as_str())),
            ("target", s(e.target.as_str())),
            ("reason", s(e.reason.as_str())),
            ("expires_at", n(e.expires_at.epoch_secs())),
        ],
    )
}

fn audit_from(i: &Item) -> StoreResult<AuditEntry> {
    let f = Fields::of(i, RecordKind::Audit);
    Ok(AuditEntry {
        id: f.parse("id", AuditId::parse)?,
        time: f.ts("time")?,
        actor: f.parse("actor", ModeratorId::parse)?,
        action: f.parse("action", AuditAction::parse)?,
        target: f.str("target")?.to_owned(),
        reason: f.parse("reason", AuditReason::parse)?,
        expires_at: f.expiry()?,
    })
}

fn rate_pk(key: &RateKey) -> String {
    format!("RATE#{}", key.as_str())
}

#[async_trait]
impl SessionStore for AwsStore {
    async fn put_session(&self, x: &Session) -> StoreResult<()> {
        self.put(session_item(x), "saving a session").await
    }

    async fn session(
        &self,
        moderator: ModeratorId,
        id: SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Session>> {
        match self
            .get(session_pk(id), "SESSION", "reading a session")
            .await?
        {
            Some(i) if is_live(&i, now) => {
                Ok(Some(session_from(&i)?).filter(|x| x.moderator_id == moderator))
            }
            _ => Ok(None),
        }
    }

    async fn delete_session(&self, moderator: ModeratorId, id: SessionId) -> StoreResult<()> {
        if self
            .session(moderator, id, Timestamp::from_millis(0))
            .await?
            .is_some()
        {
            self.delete(session_pk(id), "SESSION", "deleting a session")
                .await?;
        }
        Ok(())
    }

    async fn delete_sessions_of(&self, moderator: ModeratorId) -> StoreResult<()> {
        let items = self
            .query_index("gsi1", format!("SESSIONS#{moderator}"), "deleting sessions")
            .await?;
        self.delete_all(&items, "deleting sessions").await
    }
}

#[async_trait]
impl RateLimitStore for AwsStore {
    async fn hit(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        expires_at: Expiry,
    ) -> StoreResult<u32> {
        // ADD is atomic, so concurrent attempts are all counted.
        let out = self
            .ddb
            .update_item()
            .table_name(&self.cfg.table)
            .key("pk", s(rate_pk(key)))
            .key("sk", s(padded(window_start)))
            .update_expression("ADD #count :one SET #kind = :kind, #key = :key, window_start = :ws, expires_at = :exp")
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#key", "key")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":kind", s(RecordKind::RateCounter.name()))
            .expression_attribute_values(":key", s(key.as_str()))
            .expression_attribute_values(":ws", n(window_start.millis()))
            .expression_attribute_values(":exp", n(expires_at.epoch_secs()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(backend("counting an attempt"))?;
        let attrs = out.attributes.unwrap_or_default();
        Fields::of(&attrs, RecordKind::RateCounter).num("count")
    }

    async fn attempts(
        &self,
        key: &RateKey,
        window_start: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        match self
            .get(rate_pk(key), &padded(window_start), "reading attempts")
            .await?
        {
            Some(i) if is_live(&i, now) => Fields::of(&i, RecordKind::RateCounter).num("count"),
            _ => Ok(0),
        }
    }

    async fn clear(&self, key: &RateKey, window_start: Timestamp) -> StoreResult<()> {
        self.delete(rate_pk(key), &padded(window_start), "clearing attempts")
            .await
    }
}

fn placement_item(p: &Placement) -> Item {
    item(
        RecordKind::Placement,
        [
            ("pk", s(room_pk(p.room_id))),
            ("sk", s("PLACEMENT")),
            ("gsi1pk", s(format!("PLACED#{}", p.node_id))),
            (
                "gsi1sk",
                s(format!("{}#{}", padded(p.placed_at), p.room_id)),
            ),
            ("room_id", s(p.room_id.to_string())),
            ("node_id", s(p.node_id.to_string())),
            ("placed_at", n(p.placed_at.millis())),
            ("expires_at", n(p.expires_at.epoch_secs())),
        ],
    )
}

fn placement_from(i: &Item) -> StoreResult<Placement> {
    let f = Fields::of(i, RecordKind::Placement);
    Ok(Placement {
        room_id: f.parse("room_id", RoomId::parse)?,
        node_id: f.parse("node_id", NodeId::parse)?,
        placed_at: f.ts("placed_at")?,
        expires_at: f.expiry()?,
    })
}

#[async_trait]
impl PlacementStore for AwsStore {
    async fn placement(&self, room: RoomId, now: Timestamp) -> StoreResult<Option<Placement>> {
        match self
            .get(room_pk(room), "PLACEMENT", "reading a placement")
            .await?
        {
            Some(i) if is_live(&i, now) => placement_from(&i).map(Some),
            _ => Ok(None),
        }
    }

    async fn put_placement(
        &self,
        p: &Placement,
        replacing: Option<NodeId>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let result = self
            .ddb
            .put_item()
            .table_name(&self.cfg.table)
            .set_item(Some(placement_item(p)))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at <= :now OR node_id = :replacing",
            )
            .expression_attribute_values(":now", n(now.epoch_secs()))
            .expression_attribute_values(
                ":replacing",
                s(replacing.map(|r| r.to_string()).unwrap_or_default()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend("placing a room")(e)),
        }
    }

    async fn placed_on_since(
        &self,
        node: NodeId,
        since: Timestamp,
        now: Timestamp,
    ) -> StoreResult<u32> {
        let mut count = 0u32;
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.cfg.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :pk AND gsi1sk >= :since")
                .expression_attribute_values(":pk", s(format!("PLACED#{node}")))
                .expression_attribute_values(":since", s(padded(since)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend("counting placements"))?;
            let live = out
                .items
                .unwrap_or_default()
                .iter()
                .filter(|i| is_live(i, now))
                .count();
            count = count.saturating_add(u32::try_from(live).unwrap_or(u32::MAX));
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(count);
            }
        }
    }
}

/// The audit log may be read over at most this span.
const MAX_AUDIT_SPAN: Span = Span::days(400);

#[async_trait]
impl AuditStore for AwsStore {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        self.put(audit_item(e), "writing the audit log").await
    }

    async fn audit_between(
        &self,
        from: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Vec<AuditEntry>> {
        let until = until.min(from.plus(MAX_AUDIT_SPAN));
        let mut months: Vec<String> = Vec::new();
        let mut d = from;
        while d < until {
            let m = month(d);
            if months.last() != Some(&m) {
                months.push(m);
            }
            d = d.plus(Span::days(1));
        }
        let last = month(until.minus(Span::MILLISECOND));
        if until > from && months.last() != Some(&last) {
            months.push(last);
        }
        let mut entries = Vec::new();
        for m in months {
            let items = self
                .query_range(
                    format!("AUDIT#{m}"),
                    Some((padded(from), padded(until))),
                    true,
                    "reading the audit log",
                )
                .await?;
            entries.extend(
                live(items, now, audit_from)?
                    .into_iter()
                    .filter(|e| e.time >= from && e.time < until),
            );
        }
        entries.sort_by_key(|e| (e.time, e.id));
        Ok(entries)
    }
}

#[async_trait]
impl Introspect for AwsStore {
    /// Scans the whole table and lists, per `kind`, every attribute name seen (less the
    /// key attributes); S3 objects report their metadata names under `object`.
    async fn stored_fields(&self) -> StoreResult<StoredFields> {
        let mut out = StoredFields::new();
        let mut start = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(&self.cfg.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend("scanning the table"))?;
            for i in page.items.unwrap_or_default() {
                let kind = match i.get("kind") {
                    Some(AttributeValue::S(k)) => k.clone(),
                    _ => "(no kind)".to_owned(),
                };
                let fields: BTreeSet<String> = i
                    .keys()
                    .filter(|k| !KEY_ATTRIBUTES.contains(&k.as_str()))
                    .cloned()
                    .collect();
                out.entry(kind).or_default().extend(fields);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        for class in [ObjectClass::Export, ObjectClass::LogArchive] {
            let listing = self
                .s3
                .list_objects_v2()
                .bucket(self.bucket(class))
                .send()
                .await
                .map_err(backend("listing objects"))?;
            for obj in listing.contents.unwrap_or_default() {
                let Some(key) = obj.key else { continue };
                let head = self
                    .s3
                    .head_object()
                    .bucket(self.bucket(class))
                    .key(&key)
                    .send()
                    .await
                    .map_err(backend("listing objects"))?;
                let fields = out.entry(RecordKind::Object.name().to_owned()).or_default();
                // The bucket is the class; key, body and content type are the object itself.
                fields.extend(["class", "key", "body", "content_type"].map(String::from));
                fields.extend(
                    head.metadata
                        .unwrap_or_default()
                        .into_keys()
                        .map(|k| k.replace('-', "_")),
                );
            }
        }
        Ok(out)
    }

    async fn contains_text(&self, needle: &str, skip: &[RecordKind]) -> StoreResult<bool> {
        let skipped = |item: &Item| matches!(item.get("kind"), Some(AttributeValue::S(k)) if skip.iter().any(|s| s.name() == k));
        let mut start = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(&self.cfg.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend("scanning the table"))?;
            for item in page.items.unwrap_or_default() {
                if !skipped(&item) && format!("{item:?}").contains(needle) {
                    return Ok(true);
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        for class in [ObjectClass::Export, ObjectClass::LogArchive] {
            if class == ObjectClass::LogArchive && skip.contains(&RecordKind::AccessLog) {
                continue;
            }
            let mut pages = self
                .s3
                .list_objects_v2()
                .bucket(self.bucket(class))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(backend("listing objects"))?;
                for obj in page.contents.unwrap_or_default() {
                    let Some(key) = obj.key else { continue };
                    if key.contains(needle) {
                        return Ok(true);
                    }
                    let body = self
                        .s3
                        .get_object()
                        .bucket(self.bucket(class))
                        .key(&key)
                        .send()
                        .await
                        .map_err(backend("reading an object"))?
                        .body
                        .collect()
                        .await
                        .map_err(backend("reading an object"))?
                        .into_bytes();
                    if String::from_utf8_lossy(&body).contains(needle) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}
