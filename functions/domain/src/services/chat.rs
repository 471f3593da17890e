//! Chat: one room chat per room and private conversations between two of its participants.
//! Only participants read the room chat; only the two parties read a private one.

use super::rooms::Participation;
use super::{Aula, Caller, ServiceError, ServiceResult};
use crate::ports::{ChatPage, Posted};
use crate::retention;
use crate::{
    Admission, ChatBody, ChatMessage, Conversation, IdempotencyKey, MessageId, Participant, RoomId,
};

/// A message as a participant sends it.
#[derive(Debug, Clone)]
pub struct NewPost {
    /// `None` for the room chat, or the other party of a private conversation.
    pub to: Option<Participant>,
    pub body: ChatBody,
    pub idempotency_key: IdempotencyKey,
}

/// The most messages one history page holds.
pub const MAX_PAGE: usize = 100;

/// A page of history with who asked, for rendering "mine" and "theirs".
pub type ChatView = ChatPage;

impl Aula {
    /// The conversation the caller means: the room chat, or their private conversation with
    /// `with`, who must belong to the room.
    async fn conversation(
        &self,
        p: &Participation,
        with: Option<Participant>,
    ) -> ServiceResult<Conversation> {
        let Some(other) = with else {
            return Ok(Conversation::Room);
        };
        let belongs = match other {
            Participant::Moderator(id) => id == p.room.owner,
            Participant::Guest(id) => self
                .store
                .guest(p.room.id, id, self.now())
                .await?
                .is_some_and(|g| g.admission != Admission::Denied),
        };
        if !belongs {
            return Err(ServiceError::NotFound("the participant"));
        }
        Ok(Conversation::private(p.me, other)?)
    }

    #[tracing::instrument(skip_all, fields(room = %room))]
    pub async fn post(
        &self,
        caller: &Caller,
        room: RoomId,
        post: NewPost,
    ) -> ServiceResult<Posted> {
        let p = self.participation(caller, room).await?;
        let conversation = self.conversation(&p, post.to).await?;
        let now = self.now();
        let message = ChatMessage {
            id: self.ids.message_id(now),
            room_id: room,
            conversation,
            author: p.me,
            body: post.body,
            idempotency_key: post.idempotency_key,
            expires_at: retention::history_expiry(now),
        };
        let posted = self.store.post_message(&message).await?;
        if now.minus(retention::TOUCH_EVERY) > p.room.last_used_at {
            let mut r = p.room;
            r.touch(now);
            self.store.update_room(&r, now).await?;
        }
        Ok(posted)
    }

    /// A page of the room chat (`with: None`) or of the caller's private conversation
    /// with `with`, newest first.
    pub async fn history(
        &self,
        caller: &Caller,
        room: RoomId,
        with: Option<Participant>,
        before: Option<MessageId>,
        limit: usize,
    ) -> ServiceResult<ChatView> {
        let p = self.participation(caller, room).await?;
        let conversation = self.conversation(&p, with).await?;
        Ok(self
            .store
            .history(
                room,
                &conversation,
                before,
                limit.clamp(1, MAX_PAGE),
                self.now(),
            )
            .await?)
    }

    /// Deletes a message: its author may, and the room's moderator may in the room chat.
    #[tracing::instrument(skip_all, fields(room = %room))]
    pub async fn delete_message(
        &self,
        caller: &Caller,
        room: RoomId,
        with: Option<Participant>,
        id: MessageId,
    ) -> ServiceResult<()> {
        let p = self.participation(caller, room).await?;
        let conversation = self.conversation(&p, with).await?;
        let message = self
            .store
            .message(room, &conversation, id, self.now())
            .await?
            .ok_or(ServiceError::NotFound("the message"))?;
        if message.author != p.me && !p.owner {
            return Err(ServiceError::Forbidden);
        }
        self.store.delete_message(room, &conversation, id).await?;
        Ok(())
    }
}
