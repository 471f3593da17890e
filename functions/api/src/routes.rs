//! The handlers. Each parses its input into domain types, asks the services, and shapes
//! the answer; permissions are the services' business.

use crate::ApiState;
use crate::error::{ApiError, ApiResult};
use crate::identity::{GUEST_COOKIE, SESSION_COOKIE, cookie, removal, set_cookie};
use aula_domain::ports::Posted;
use aula_domain::services::{
    AccountView, Caller, DisclosureRequest, NewModerator, NewPost, Password, ProfileChanges,
    RoomChanges,
};
use aula_domain::*;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

type R = Router<ApiState>;

/// JSON in, with our error shape when it is not.
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(Body(v))
    }
}

fn parse_opt<T>(
    v: Option<String>,
    f: impl FnOnce(&str) -> Result<T, ParseError>,
) -> ApiResult<Option<T>> {
    v.map(|s| f(&s)).transpose().map_err(ApiError::from)
}

// ---- auth ---------------------------------------------------------------------------

pub fn auth() -> R {
    R::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/register", post(register))
        .route("/api/me", get(me))
        .route("/api/me/password", post(change_password))
        .route("/api/join/{token}", post(join))
        .route("/api/guest", get(guest_status))
}

#[derive(Deserialize)]
struct LoginIn {
    email: String,
    password: String,
}

fn client_address(headers: &axum::http::HeaderMap) -> services::ClientAddress {
    // Behind API Gateway/CloudFront the client is the first X-Forwarded-For hop.
    let xff = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|s| s.trim().to_owned());
    services::ClientAddress(xff.unwrap_or_else(|| "direct".to_owned()))
}

async fn login(
    State(st): State<ApiState>,
    headers: axum::http::HeaderMap,
    Body(input): Body<LoginIn>,
) -> ApiResult<Response> {
    let from = client_address(&headers);
    let (m, session) = st
        .aula
        .login(&input.email, &Password::offered(&input.password), &from)
        .await?;
    let now = st.aula.clock.now();
    let token = st.tokens.session(m.id, session.id, now).map_err(|_| {
        ApiError::from(services::ServiceError::Internal(
            "signing the session failed",
        ))
    })?;
    let mut response = Json(json!({ "account": AccountView::from(&m) })).into_response();
    set_cookie(
        &mut response,
        &cookie(SESSION_COOKIE, token, st.tokens.lifetimes.session),
    );
    Ok(response)
}

async fn logout(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    st.aula.logout(&caller).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &removal(SESSION_COOKIE));
    Ok(response)
}

#[derive(Deserialize)]
struct ProfileIn {
    last_name: String,
    first_name: String,
    email: String,
    federal_state: String,
    organisation: String,
}

impl ProfileIn {
    fn parse(self) -> ApiResult<NewModerator> {
        Ok(NewModerator {
            last_name: PersonName::parse(&self.last_name)?,
            first_name: PersonName::parse(&self.first_name)?,
            email: Email::parse(&self.email)?,
            federal_state: FederalState::parse(&self.federal_state)?,
            organisation: Organisation::parse(&self.organisation)?,
        })
    }
}

#[derive(Deserialize)]
struct RegisterIn {
    #[serde(flatten)]
    profile: ProfileIn,
    password: String,
}

async fn register(
    State(st): State<ApiState>,
    Body(input): Body<RegisterIn>,
) -> ApiResult<Response> {
    let password = Password::new_password(&input.password)?;
    let m = st.aula.register(input.profile.parse()?, &password).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "account": AccountView::from(&m) })),
    )
        .into_response())
}

async fn me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<AccountView>> {
    Ok(Json(AccountView::from(&st.aula.me(&caller).await?)))
}

#[derive(Deserialize)]
struct PasswordIn {
    current: String,
    new: String,
}

async fn change_password(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<PasswordIn>,
) -> ApiResult<StatusCode> {
    let new = Password::new_password(&input.new)?;
    st.aula
        .change_password(&caller, &Password::offered(&input.current), &new)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct JoinIn {
    nickname: String,
}

#[derive(Serialize)]
struct GuestOut {
    id: GuestId,
    room: RoomId,
    nickname: Nickname,
    admission: Admission,
}

impl From<&Guest> for GuestOut {
    fn from(g: &Guest) -> Self {
        GuestOut {
            id: g.id,
            room: g.room_id,
            nickname: g.nickname.clone(),
            admission: g.admission,
        }
    }
}

async fn join(
    State(st): State<ApiState>,
    Path(token): Path<String>,
    Body(input): Body<JoinIn>,
) -> ApiResult<Response> {
    let token = InviteToken::parse(&token).map_err(|_| ApiError::not_found())?;
    let guest = st
        .aula
        .join_by_invite(&token, Nickname::parse(&input.nickname)?)
        .await?;
    let now = st.aula.clock.now();
    let grant = st.tokens.guest(guest.id, guest.room_id, now).map_err(|_| {
        ApiError::from(services::ServiceError::Internal(
            "signing the guest grant failed",
        ))
    })?;
    let mut response = (
        StatusCode::CREATED,
        Json(json!({ "guest": GuestOut::from(&guest), "token": grant })),
    )
        .into_response();
    set_cookie(
        &mut response,
        &cookie(GUEST_COOKIE, grant, st.tokens.lifetimes.guest),
    );
    Ok(response)
}

async fn guest_status(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<GuestOut>> {
    Ok(Json(GuestOut::from(&st.aula.guest_status(&caller).await?)))
}

// ---- rooms --------------------------------------------------------------------------

pub fn rooms() -> R {
    R::new()
        .route("/api/rooms", get(list_rooms).post(create_room))
        .route(
            "/api/rooms/{room}",
            get(get_room).patch(update_room).delete(delete_room),
        )
        .route("/api/rooms/{room}/invite", post(rotate_invite))
        .route("/api/rooms/{room}/meetings", get(meetings))
        .route("/api/rooms/{room}/participants", get(participants))
        .route("/api/rooms/{room}/lobby", get(lobby))
        .route("/api/rooms/{room}/guests/{guest}/admit", post(admit))
        .route("/api/rooms/{room}/guests/{guest}/deny", post(deny))
        .route("/api/rooms/{room}/join", post(join_grant))
}

#[derive(Serialize)]
struct RoomOut {
    id: RoomId,
    name: RoomName,
    settings: RoomSettings,
    invite_url: String,
    created_at: Timestamp,
    last_used_at: Timestamp,
    expires_at: Expiry,
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

fn room_id(raw: &str) -> ApiResult<RoomId> {
    RoomId::parse(raw).map_err(|_| ApiError::not_found())
}

#[derive(Deserialize, Default)]
struct SettingsIn {
    lobby: Option<bool>,
    guests_may_share_screen: Option<bool>,
    guests_may_send_video: Option<bool>,
    mute_on_join: Option<bool>,
}

impl SettingsIn {
    fn apply(self, mut s: RoomSettings) -> RoomSettings {
        s.lobby = self.lobby.unwrap_or(s.lobby);
        s.guests_may_share_screen = self
            .guests_may_share_screen
            .unwrap_or(s.guests_may_share_screen);
        s.guests_may_send_video = self
            .guests_may_send_video
            .unwrap_or(s.guests_may_send_video);
        s.mute_on_join = self.mute_on_join.unwrap_or(s.mute_on_join);
        s
    }
}

#[derive(Deserialize)]
struct RoomIn {
    name: String,
    #[serde(default)]
    settings: SettingsIn,
}

async fn list_rooms(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<serde_json::Value>> {
    let rooms: Vec<_> = st
        .aula
        .my_rooms(&caller)
        .await?
        .into_iter()
        .map(|r| room_out(&st, r))
        .collect();
    Ok(Json(json!({ "rooms": rooms })))
}

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

/// The owner gets the whole room (with the invite link); an admitted guest its name and
/// settings.
async fn get_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> ApiResult<Response> {
    let room = room_id(&room)?;
    if matches!(caller, Caller::Moderator { .. }) {
        return Ok(Json(room_out(&st, st.aula.room(&caller, room).await?)).into_response());
    }
    Ok(Json(st.aula.room_view(&caller, room).await?).into_response())
}

#[derive(Deserialize)]
struct RoomPatch {
    name: Option<String>,
    settings: Option<SettingsIn>,
}

async fn update_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    Body(input): Body<RoomPatch>,
) -> ApiResult<Json<RoomOut>> {
    let room = room_id(&room)?;
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

async fn delete_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> ApiResult<StatusCode> {
    st.aula.delete_room(&caller, room_id(&room)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_invite(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> ApiResult<Json<RoomOut>> {
    let r = st.aula.rotate_invite(&caller, room_id(&room)?).await?;
    Ok(Json(room_out(&st, r)))
}

async fn meetings(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let meetings = st.aula.meetings(&caller, room_id(&room)?).await?;
    Ok(Json(json!({ "meetings": meetings })))
}

async fn participants(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(st.aula.participants(&caller, room_id(&room)?).await?).into_response())
}

async fn lobby(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let waiting: Vec<_> = st
        .aula
        .lobby(&caller, room_id(&room)?)
        .await?
        .iter()
        .map(GuestOut::from)
        .collect();
    Ok(Json(json!({ "waiting": waiting })))
}

async fn set_admission(
    st: ApiState,
    caller: Caller,
    room: String,
    guest: String,
    a: Admission,
) -> ApiResult<Json<GuestOut>> {
    let guest = GuestId::parse(&guest).map_err(|_| ApiError::not_found())?;
    let g = st
        .aula
        .set_admission(&caller, room_id(&room)?, guest, a)
        .await?;
    Ok(Json(GuestOut::from(&g)))
}

async fn admit(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((room, guest)): Path<(String, String)>,
) -> ApiResult<Json<GuestOut>> {
    set_admission(st, caller, room, guest, Admission::Admitted).await
}

async fn deny(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((room, guest)): Path<(String, String)>,
) -> ApiResult<Json<GuestOut>> {
    set_admission(st, caller, room, guest, Admission::Denied).await
}

async fn join_grant(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let grant = st.aula.join_grant(&caller, room_id(&room)?).await?;
    let (token, expires) = st.tokens.join(&grant, st.aula.clock.now()).map_err(|_| {
        ApiError::from(services::ServiceError::Internal(
            "signing the join grant failed",
        ))
    })?;
    Ok(Json(json!({
        "grant": token,
        "expires_at": expires,
        "node_url": st.config.media_node_url,
        "participant": grant.participant,
        "role": grant.role,
    })))
}

// ---- chat ---------------------------------------------------------------------------

pub fn chat() -> R {
    R::new()
        .route("/api/rooms/{room}/chat", get(history).post(post_message))
        .route(
            "/api/rooms/{room}/chat/{message}",
            axum::routing::delete(delete_message),
        )
}

#[derive(Serialize)]
struct MessageOut {
    id: MessageId,
    conversation: Conversation,
    author: Participant,
    body: ChatBody,
    posted_at: Timestamp,
}

impl From<ChatMessage> for MessageOut {
    fn from(m: ChatMessage) -> Self {
        MessageOut {
            posted_at: m.posted_at(),
            id: m.id,
            conversation: m.conversation,
            author: m.author,
            body: m.body,
        }
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    with: Option<String>,
    before: Option<String>,
    limit: Option<usize>,
}

async fn history(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let with = parse_opt(q.with, Participant::parse)?;
    let before = parse_opt(q.before, MessageId::parse)?;
    let page = st
        .aula
        .history(
            &caller,
            room_id(&room)?,
            with,
            before,
            q.limit.unwrap_or(50),
        )
        .await?;
    let messages: Vec<MessageOut> = page.messages.into_iter().map(MessageOut::from).collect();
    Ok(Json(json!({ "messages": messages, "older": page.older })))
}

#[derive(Deserialize)]
struct PostIn {
    to: Option<String>,
    body: String,
    idempotency_key: String,
}

async fn post_message(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    Body(input): Body<PostIn>,
) -> ApiResult<Response> {
    let post = NewPost {
        to: parse_opt(input.to, Participant::parse)?,
        body: ChatBody::parse(&input.body)?,
        idempotency_key: IdempotencyKey::parse(&input.idempotency_key)?,
    };
    let posted = st.aula.post(&caller, room_id(&room)?, post).await?;
    let status = match posted {
        Posted::New(_) => StatusCode::CREATED,
        Posted::Duplicate(_) => StatusCode::OK,
    };
    let message = match posted {
        Posted::New(m) | Posted::Duplicate(m) => MessageOut::from(m),
    };
    Ok((status, Json(message)).into_response())
}

#[derive(Deserialize)]
struct WithQuery {
    with: Option<String>,
}

async fn delete_message(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((room, message)): Path<(String, String)>,
    Query(q): Query<WithQuery>,
) -> ApiResult<StatusCode> {
    let id = MessageId::parse(&message).map_err(|_| ApiError::not_found())?;
    let with = parse_opt(q.with, Participant::parse)?;
    st.aula
        .delete_message(&caller, room_id(&room)?, with, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- privacy (data-subject requests) ------------------------------------------------

pub fn privacy() -> R {
    R::new()
        .route("/api/me", axum::routing::patch(correct_me).delete(erase_me))
        .route("/api/me/export", get(export_me))
        .route("/api/me/restrict", post(restrict_me))
        .route(
            "/api/admin/moderators",
            get(admin_list).post(admin_provision),
        )
        .route(
            "/api/admin/moderators/{id}/export",
            post(admin_export_moderator),
        )
        .route("/api/admin/moderators/{id}/restrict", post(admin_restrict))
        .route(
            "/api/admin/moderators/{id}/unrestrict",
            post(admin_unrestrict),
        )
        .route(
            "/api/admin/moderators/{id}/erase",
            post(admin_erase_moderator),
        )
        .route("/api/admin/rooms/{room}/export", post(admin_export_room))
        .route("/api/admin/rooms/{room}/erase", post(admin_erase_room))
        .route("/api/admin/disclosure", post(admin_disclosure))
        .route("/api/admin/audit", get(admin_audit))
}

/// An export as a download.
fn attachment<T: Serialize>(name: &str, body: &T) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    let mut response = Json(body).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

#[derive(Deserialize)]
struct CorrectionIn {
    last_name: Option<String>,
    first_name: Option<String>,
    email: Option<String>,
    federal_state: Option<String>,
    organisation: Option<String>,
}

async fn correct_me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<CorrectionIn>,
) -> ApiResult<Json<AccountView>> {
    let changes = ProfileChanges {
        last_name: parse_opt(input.last_name, PersonName::parse)?,
        first_name: parse_opt(input.first_name, PersonName::parse)?,
        email: parse_opt(input.email, Email::parse)?,
        federal_state: parse_opt(input.federal_state, FederalState::parse)?,
        organisation: parse_opt(input.organisation, Organisation::parse)?,
    };
    Ok(Json(AccountView::from(
        &st.aula.correct_me(&caller, changes).await?,
    )))
}

async fn export_me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let export = st.aula.export_me(&caller).await?;
    Ok(attachment("aula-export.json", &export))
}

async fn restrict_me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    st.aula.restrict_me(&caller).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &removal(SESSION_COOKIE));
    Ok(response)
}

#[derive(Deserialize)]
struct EraseIn {
    password: String,
}

async fn erase_me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<EraseIn>,
) -> ApiResult<Response> {
    st.aula
        .erase_me(&caller, &Password::offered(&input.password))
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &removal(SESSION_COOKIE));
    Ok(response)
}

#[derive(Deserialize)]
struct ReasonIn {
    reason: String,
}

fn moderator_id(raw: &str) -> ApiResult<ModeratorId> {
    ModeratorId::parse(raw).map_err(|_| ApiError::not_found())
}

async fn admin_list(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(
        json!({ "moderators": st.aula.list_moderators(&caller).await? }),
    ))
}

#[derive(Deserialize)]
struct ProvisionIn {
    #[serde(flatten)]
    profile: ProfileIn,
    #[serde(default)]
    admin: bool,
}

async fn admin_provision(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<ProvisionIn>,
) -> ApiResult<Response> {
    let role = if input.admin {
        Role::Admin
    } else {
        Role::Moderator
    };
    let (m, password) = st
        .aula
        .provision_moderator(&caller, input.profile.parse()?, role)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "account": AccountView::from(&m), "initial_password": password.expose() })),
    )
        .into_response())
}

async fn admin_export_moderator(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Response> {
    let export = st
        .aula
        .admin_export_moderator(
            &caller,
            moderator_id(&id)?,
            &AuditReason::parse(&input.reason)?,
        )
        .await?;
    Ok(attachment("aula-moderator-export.json", &export))
}

async fn admin_restrict(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Json<AccountView>> {
    let reason = AuditReason::parse(&input.reason)?;
    Ok(Json(
        st.aula
            .admin_set_restricted(&caller, moderator_id(&id)?, true, &reason)
            .await?,
    ))
}

async fn admin_unrestrict(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Json<AccountView>> {
    let reason = AuditReason::parse(&input.reason)?;
    Ok(Json(
        st.aula
            .admin_set_restricted(&caller, moderator_id(&id)?, false, &reason)
            .await?,
    ))
}

async fn admin_erase_moderator(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<StatusCode> {
    let reason = AuditReason::parse(&input.reason)?;
    st.aula
        .admin_erase_moderator(&caller, moderator_id(&id)?, &reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn admin_export_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Response> {
    let reason = AuditReason::parse(&input.reason)?;
    let export = st
        .aula
        .admin_export_room(&caller, room_id(&room)?, &reason)
        .await?;
    Ok(attachment("aula-room-export.json", &export))
}

async fn admin_erase_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(room): Path<String>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<StatusCode> {
    let reason = AuditReason::parse(&input.reason)?;
    st.aula
        .admin_erase_room(&caller, room_id(&room)?, &reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct DisclosureIn {
    moderator: Option<String>,
    room: Option<String>,
    access_log_from: Option<i64>,
    access_log_until: Option<i64>,
    reason: String,
}

async fn admin_disclosure(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<DisclosureIn>,
) -> ApiResult<Response> {
    let access_log = match (input.access_log_from, input.access_log_until) {
        (Some(from), Some(until)) => {
            Some((Timestamp::from_millis(from), Timestamp::from_millis(until)))
        }
        (None, None) => None,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "give both access_log_from and access_log_until, or neither",
            ));
        }
    };
    let req = DisclosureRequest {
        moderator: parse_opt(input.moderator, ModeratorId::parse)?,
        room: parse_opt(input.room, RoomId::parse)?,
        access_log,
        reason: AuditReason::parse(&input.reason)?,
    };
    let disclosure = st.aula.authority_disclosure(&caller, req).await?;
    Ok(attachment("aula-disclosure.json", &disclosure))
}

#[derive(Deserialize)]
struct SpanQuery {
    from: i64,
    until: i64,
}

async fn admin_audit(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SpanQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let entries = st
        .aula
        .audit_log(
            &caller,
            Timestamp::from_millis(q.from),
            Timestamp::from_millis(q.until),
        )
        .await?;
    Ok(Json(json!({ "entries": entries })))
}
