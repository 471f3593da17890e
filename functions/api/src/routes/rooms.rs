//! The rooms function: a moderator's rooms and their settings, invite links, past meetings,
//! the lobby, and the join grant for the room's media node.

use super::{R, parse_opt};
use crate::extract::{Body, Path};
use crate::types::*;
use crate::{ApiResult, ApiState};
use aula_domain::services::{self, Caller, RoomChanges};
use aula_domain::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use utoipa_axum::routes;

pub fn router() -> R {
    R::new()
        .routes(routes!(list_rooms, create_room))
        .routes(routes!(get_room, update_room, delete_room))
        .routes(routes!(rotate_invite))
        .routes(routes!(meetings))
        .routes(routes!(participants))
        .routes(routes!(lobby))
        .routes(routes!(admit))
        .routes(routes!(deny))
        .routes(routes!(join_grant))
        .routes(routes!(my_schedule))
        .routes(routes!(schedule_meeting))
        .routes(routes!(delete_scheduled))
}

fn room_out(st: &ApiState, r: Room) -> RoomOut {
    RoomOut {
        invite_url: format!(
            "{}/j/{}",
            st.config.public_url.trim_end_matches('/'),
            r.invite_token.as_str()
        ),
        id: r.id,
        name: r.name,
        settings: r.settings,
        created_at: r.created_at,
        last_used_at: r.last_used_at,
        expires_at: r.expires_at,
    }
}

#[utoipa::path(
    get,
    path = "/api/rooms",
    tag = "rooms",
    summary = "The caller's rooms.",
    responses((status = 200, body = RoomsOut))
)]
async fn list_rooms(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<RoomsOut>> {
    let rooms: Vec<_> = st
        .aula
        .my_rooms(&caller)
        .await?
        .into_iter()
        .map(|r| room_out(&st, r))
        .collect();
    Ok(Json(RoomsOut { rooms }))
}

#[utoipa::path(
    post,
    path = "/api/rooms",
    tag = "rooms",
    summary = "Creates a room.",
    request_body = RoomIn,
    responses((status = 201, body = RoomOut))
)]
async fn create_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<RoomIn>,
) -> ApiResult<Response> {
    let name = RoomName::parse(&input.name)?;
    let settings = input.settings.apply(RoomSettings::default());
    let room = st.aula.create_room(&caller, name, settings).await?;
    Ok((StatusCode::CREATED, Json(room_out(&st, room))).into_response())
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}",
    tag = "rooms",
    summary = "A room.",
    params(RoomPath),
    responses((status = 200, description = "the owner gets RoomOut, an admitted guest RoomView", body = RoomOut))
)]
/// The owner gets the whole room (with the invite link); an admitted guest its name and
/// settings.
async fn get_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Response> {
    if matches!(caller, Caller::Moderator { .. }) {
        return Ok(Json(room_out(&st, st.aula.room(&caller, room).await?)).into_response());
    }
    Ok(Json(st.aula.room_view(&caller, room).await?).into_response())
}

#[utoipa::path(
    patch,
    path = "/api/rooms/{room}",
    tag = "rooms",
    summary = "Renames or configures a room.",
    request_body = RoomPatch,
    params(RoomPath),
    responses((status = 200, body = RoomOut))
)]
async fn update_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
    Body(input): Body<RoomPatch>,
) -> ApiResult<Json<RoomOut>> {
    let name = parse_opt(input.name, RoomName::parse)?;
    let settings = match input.settings {
        Some(s) => Some(s.apply(st.aula.room(&caller, room).await?.settings)),
        None => None,
    };
    let updated = st
        .aula
        .update_room(&caller, room, RoomChanges { name, settings })
        .await?;
    Ok(Json(room_out(&st, updated)))
}

#[utoipa::path(
    delete,
    path = "/api/rooms/{room}",
    tag = "rooms",
    summary = "Deletes a room with its chats, meetings and guests.",
    params(RoomPath),
    responses((status = 204))
)]
async fn delete_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<StatusCode> {
    st.aula.delete_room(&caller, room).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/invite",
    tag = "rooms",
    summary = "A new invite link; the old one stops working.",
    params(RoomPath),
    responses((status = 200, body = RoomOut))
)]
async fn rotate_invite(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Json<RoomOut>> {
    let r = st.aula.rotate_invite(&caller, room).await?;
    Ok(Json(room_out(&st, r)))
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}/meetings",
    tag = "rooms",
    summary = "Past meetings of a room, newest first.",
    params(RoomPath),
    responses((status = 200, body = MeetingsOut))
)]
async fn meetings(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Json<MeetingsOut>> {
    let meetings = st.aula.meetings(&caller, room).await?;
    Ok(Json(MeetingsOut { meetings }))
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}/participants",
    tag = "rooms",
    summary = "The room's moderator and guests.",
    params(RoomPath),
    responses((status = 200, body = services::Participants))
)]
async fn participants(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Response> {
    Ok(Json(st.aula.participants(&caller, room).await?).into_response())
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}/lobby",
    tag = "rooms",
    summary = "Guests waiting in the lobby.",
    params(RoomPath),
    responses((status = 200, body = LobbyOut))
)]
async fn lobby(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Json<LobbyOut>> {
    let waiting: Vec<_> = st
        .aula
        .lobby(&caller, room)
        .await?
        .iter()
        .map(GuestOut::from)
        .collect();
    Ok(Json(LobbyOut { waiting }))
}

async fn set_admission(
    st: ApiState,
    caller: Caller,
    GuestPath { room, guest }: GuestPath,
    a: Admission,
) -> ApiResult<Json<GuestOut>> {
    let g = st.aula.set_admission(&caller, room, guest, a).await?;
    Ok(Json(GuestOut::from(&g)))
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/guests/{guest}/admit",
    tag = "rooms",
    summary = "Lets a waiting guest in.",
    params(GuestPath),
    responses((status = 200, body = GuestOut))
)]
async fn admit(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(guest): Path<GuestPath>,
) -> ApiResult<Json<GuestOut>> {
    set_admission(st, caller, guest, Admission::Admitted).await
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/guests/{guest}/deny",
    tag = "rooms",
    summary = "Denies or removes a guest; their grant is refused from then on.",
    params(GuestPath),
    responses((status = 200, body = GuestOut))
)]
async fn deny(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(guest): Path<GuestPath>,
) -> ApiResult<Json<GuestOut>> {
    set_admission(st, caller, guest, Admission::Denied).await
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/join",
    tag = "rooms",
    summary = "A short join grant for the room's media node, or, when every node is full, the room's place in the admission queue (202 with Retry-After: ask again then). Rooms enter in the order they were queued; teachers never queue behind pupils.",
    params(RoomPath),
    request_body = JoinGrantIn,
    responses(
        (status = 200, body = GrantOut),
        (status = 202, body = QueuedOut, description = "every media node is full: a place in the queue")
    )
)]
async fn join_grant(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
    Body(input): Body<JoinGrantIn>,
) -> ApiResult<Response> {
    let grant = st.aula.join_grant(&caller, room).await?;
    let now = st.aula.clock.now();
    let node_url = match &st.config.media_node_url {
        Some(url) => url.clone(),
        None => {
            let entry = st
                .aula
                .admit(
                    grant.room,
                    &grant.participant.to_string(),
                    grant.role == services::GrantRole::Moderator,
                    grant.settings.expected_participants,
                    services::PlacementPolicy::default(),
                    input.unreachable.as_deref(),
                )
                .await?;
            match entry {
                services::Entry::Placed(node) => node.address,
                services::Entry::Queued(q) => {
                    let mut response = (
                        StatusCode::ACCEPTED,
                        Json(QueuedOut {
                            place: q.ticket,
                            position: q.position,
                            estimate_secs: q.estimate_secs,
                            retry_after_secs: q.retry_after_secs,
                        }),
                    )
                        .into_response();
                    crate::error::retry_after(&mut response, q.retry_after_secs);
                    return Ok(response);
                }
            }
        }
    };
    let (token, expires) = st.tokens.join(&grant, now)?;
    let ice_servers = st.config.turn.as_ref().map_or_else(Vec::new, |turn| {
        turn.ice_servers(&node_url, u64::try_from(expires.epoch_secs()).unwrap_or(0))
    });
    Ok(Json(GrantOut {
        ice_servers,
        grant: token,
        expires_at: expires,
        node_url,
        participant: grant.participant,
        role: grant.role,
        lobby: grant.lobby,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/api/schedule",
    tag = "rooms",
    summary = "The caller's scheduled meetings in all their rooms, earliest first (each is kept until the day after it was to end).",
    responses((status = 200, body = ScheduledOut))
)]
async fn my_schedule(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ScheduledOut>> {
    let scheduled = st.aula.my_schedule(&caller).await?;
    Ok(Json(ScheduledOut { scheduled }))
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/schedule",
    tag = "rooms",
    summary = "Schedules a meeting of the room: seats for the expected participants are reserved from half an hour before it begins, and it counts in the operator's forecast.",
    params(RoomPath),
    request_body = ScheduleIn,
    responses((status = 201, body = ScheduledMeeting))
)]
async fn schedule_meeting(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
    Body(input): Body<ScheduleIn>,
) -> ApiResult<(StatusCode, Json<ScheduledMeeting>)> {
    let plan = st
        .aula
        .schedule_meeting(
            &caller,
            room,
            services::NewSchedule {
                starts_at: Timestamp::from_millis(input.starts_at),
                minutes: input.minutes,
                expected_participants: input.expected_participants,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

#[utoipa::path(
    delete,
    path = "/api/rooms/{room}/schedule/{schedule}",
    tag = "rooms",
    summary = "Deletes a scheduled meeting of the room.",
    params(SchedulePath),
    responses((status = 204))
)]
async fn delete_scheduled(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(SchedulePath { room, schedule }): Path<SchedulePath>,
) -> ApiResult<StatusCode> {
    st.aula.delete_scheduled(&caller, room, schedule).await?;
    Ok(StatusCode::NO_CONTENT)
}
