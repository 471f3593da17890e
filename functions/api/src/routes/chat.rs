//! The chat function: history pages of the room chat and of private conversations, posting
//! (once per idempotency key, with a relay token for live delivery by the media node), and
//! deleting.

use super::{R, parse_opt};
use crate::extract::{Body, Path, Query};
use crate::types::*;
use crate::{ApiError, ApiResult, ApiState};
use aula_domain::ports::Posted;
use aula_domain::services::{self, Caller, NewPost};
use aula_domain::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use utoipa_axum::routes;

pub fn router() -> R {
    R::new()
        .routes(routes!(history, post_message))
        .routes(routes!(delete_message))
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}/chat",
    tag = "chat",
    summary = "A page of the room chat, or of the private conversation with `with`.",
    params(RoomPath, HistoryQuery),
    responses((status = 200, body = HistoryOut))
)]
async fn history(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<HistoryOut>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=services::MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("limit is 1 to {} messages", services::MAX_PAGE),
        ));
    }
    let page = st
        .aula
        .history(&caller, room, q.with, q.before, limit)
        .await?;
    let messages: Vec<MessageOut> = page.messages.into_iter().map(MessageOut::from).collect();
    Ok(Json(HistoryOut {
        messages,
        older: page.older,
    }))
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/chat",
    tag = "chat",
    summary = "Posts to the room chat or privately (`to`); a retry with the same `idempotency_key` stores nothing new.",
    request_body = PostIn,
    params(RoomPath),
    responses((status = 201, description = "stored", body = PostedOut), (status = 200, description = "a retry: the message the first post stored", body = PostedOut))
)]
async fn post_message(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
    Body(input): Body<PostIn>,
) -> ApiResult<Response> {
    let post = NewPost {
        to: parse_opt(input.to, Participant::parse)?,
        body: ChatBody::parse(&input.body)?,
        idempotency_key: IdempotencyKey::parse(&input.idempotency_key)?,
    };
    let posted = st.aula.post(&caller, room, post).await?;
    let status = match posted {
        Posted::New(_) => StatusCode::CREATED,
        Posted::Duplicate(_) => StatusCode::OK,
    };
    let m = match posted {
        Posted::New(m) | Posted::Duplicate(m) => m,
    };
    let relayed = RelayedMessage {
        id: m.id,
        conversation: m.conversation,
        author: m.author,
        body: m.body.clone(),
        posted_at: m.posted_at(),
    };
    let relay = st
        .tokens
        .chat_relay(m.room_id, relayed, st.aula.clock.now())?;
    let message = PostedOut {
        message: MessageOut::from(m),
        relay,
    };
    Ok((status, Json(message)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/rooms/{room}/chat/{message}",
    tag = "chat",
    summary = "Deletes a message (its author, or the room's moderator).",
    params(MessagePath, WithQuery),
    responses((status = 204))
)]
async fn delete_message(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(MessagePath { room, message }): Path<MessagePath>,
    Query(q): Query<WithQuery>,
) -> ApiResult<StatusCode> {
    st.aula
        .delete_message(&caller, room, q.with, message)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
