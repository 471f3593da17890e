//! Chat messages and their idempotency markers, in the room's partition. Message ids start
//! with the posting time, so a conversation's sort keys are in posting order.

use super::AwsStore;
use super::codec::{Fields, Item, is_live, item, live, n, prefix, s};
use super::rooms::room_pk;
use crate::{backend, corrupt};
use async_trait::async_trait;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;
use aws_sdk_dynamodb::types::AttributeValue;

fn message_sk(conversation: &Conversation, id: MessageId) -> String {
    format!("MSG#{conversation}#{id}")
}
fn idempotency_sk(author: Participant, key: &IdempotencyKey) -> String {
    format!("IDEMP#{author}#{}", key.as_str())
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
