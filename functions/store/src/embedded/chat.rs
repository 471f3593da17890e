//! Chat messages; the idempotency key is a unique column of the message itself.

use super::codec::{col, db, expiry, read_err};
use super::{Cached, SqliteStore};
use async_trait::async_trait;
use aula_domain::ports::*;
use aula_domain::*;
use rusqlite::{OptionalExtension, Row, params};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS chat_message (
    id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    conversation TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, conversation, id),
    UNIQUE (room_id, author, idempotency_key)
);
"#;

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        id: col(row, "id", |s: String| MessageId::parse(&s))?,
        room_id: col(row, "room_id", |s: String| RoomId::parse(&s))?,
        conversation: col(row, "conversation", |s: String| Conversation::parse(&s))?,
        author: col(row, "author", |s: String| Participant::parse(&s))?,
        body: col(row, "body", |s: String| ChatBody::parse(&s))?,
        idempotency_key: col(row, "idempotency_key", |s: String| {
            IdempotencyKey::parse(&s)
        })?,
        expires_at: expiry(row)?,
    })
}

#[async_trait]
impl ChatStore for SqliteStore {
    async fn post_message(&self, m: &ChatMessage) -> StoreResult<Posted> {
        let m = m.clone();
        self.run("posting a message", move |c| {
            let tx = c.transaction().map_err(db("posting a message"))?;
            let now = m.posted_at();
            // An expired earlier post with the same key no longer counts.
            let earlier = tx
                .cached_row(
                    "SELECT * FROM chat_message WHERE room_id = ?1 AND author = ?2 AND idempotency_key = ?3",
                    params![m.room_id.to_string(), m.author.to_string(), m.idempotency_key.as_str()],
                    message_from_row,
                )
                .optional()
                .map_err(read_err("chat message", "posting a message"))?;
            let outcome = match earlier {
                Some(e) if e.expires_at.is_live_at(now) => Posted::Duplicate(e),
                stale => {
                    if let Some(e) = stale {
                        tx.cached_exec(
                            "DELETE FROM chat_message WHERE room_id = ?1 AND conversation = ?2 AND id = ?3",
                            params![e.room_id.to_string(), e.conversation.to_string(), e.id.to_string()],
                        )
                        .map_err(db("posting a message"))?;
                    }
                    tx.cached_exec(
                        "INSERT INTO chat_message (id, room_id, conversation, author, body, idempotency_key, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            m.id.to_string(),
                            m.room_id.to_string(),
                            m.conversation.to_string(),
                            m.author.to_string(),
                            m.body.as_str(),
                            m.idempotency_key.as_str(),
                            m.expires_at.epoch_secs(),
                        ],
                    )
                    .map_err(db("posting a message"))?;
                    Posted::New(m)
                }
            };
            tx.commit().map_err(db("posting a message"))?;
            Ok(outcome)
        })
        .await
    }

    async fn message(
        &self,
        room: RoomId,
        conversation: &Conversation,
        id: MessageId,
        now: Timestamp,
    ) -> StoreResult<Option<ChatMessage>> {
        let conversation = conversation.to_string();
        self.read_point("reading a message", move |c| {
            c.cached_row(
                "SELECT * FROM chat_message WHERE room_id = ?1 AND conversation = ?2 AND id = ?3
                 AND expires_at * 1000 > ?4",
                params![room.to_string(), conversation, id.to_string(), now.millis()],
                message_from_row,
            )
            .optional()
            .map_err(read_err("chat message", "reading a message"))
        })
        .await
    }

    async fn history(
        &self,
        room: RoomId,
        conversation: &Conversation,
        before: Option<MessageId>,
        limit: usize,
        now: Timestamp,
    ) -> StoreResult<ChatPage> {
        let conversation = conversation.to_string();
        let limit = limit.clamp(1, 1000);
        self.read("reading chat history", move |c| {
            // Ids sort in posting order; "~" sorts after every id, so no cursor means "newest".
            let before = before.map_or_else(|| "~".to_owned(), |b| b.to_string());
            let mut st = c
                .prepare_cached(
                    "SELECT * FROM chat_message WHERE room_id = ?1 AND conversation = ?2 AND id < ?3
                     AND expires_at * 1000 > ?4 ORDER BY id DESC LIMIT ?5",
                )
                .map_err(db("reading chat history"))?;
            let mut messages: Vec<ChatMessage> = st
                .query_map(
                    params![
                        room.to_string(),
                        conversation,
                        before,
                        now.millis(),
                        (limit + 1) as i64
                    ],
                    message_from_row,
                )
                .and_then(|rows| rows.collect())
                .map_err(read_err("chat message", "reading chat history"))?;
            let older = if messages.len() > limit {
                messages.truncate(limit);
                messages.last().map(|m| m.id)
            } else {
                None
            };
            Ok(ChatPage { messages, older })
        })
        .await
    }

    async fn delete_message(
        &self,
        room: RoomId,
        conversation: &Conversation,
        id: MessageId,
    ) -> StoreResult<()> {
        let conversation = conversation.to_string();
        self.run_forgetting("deleting a message", move |c| {
            c.cached_exec(
                "DELETE FROM chat_message WHERE room_id = ?1 AND conversation = ?2 AND id = ?3",
                params![room.to_string(), conversation, id.to_string()],
            )
            .map(|_| ())
            .map_err(db("deleting a message"))
        })
        .await
    }

    async fn messages_of_room(
        &self,
        room: RoomId,
        now: Timestamp,
    ) -> StoreResult<Vec<ChatMessage>> {
        self.read("reading a room's messages", move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT * FROM chat_message WHERE room_id = ?1 AND expires_at * 1000 > ?2 ORDER BY id, conversation",
                )
                .map_err(db("reading a room's messages"))?;
            st.query_map(params![room.to_string(), now.millis()], message_from_row)
                .and_then(|rows| rows.collect())
                .map_err(read_err("chat message", "reading a room's messages"))
        })
        .await
    }
}
