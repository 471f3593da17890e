//! The handlers. Each parses its input into domain types, asks the services, and shapes
//! the answer; permissions are the services' business.

use crate::ApiState;
use crate::contract::{self, Refusals};
use crate::error::{ApiError, ApiResult};
use crate::identity::{
    DEVICE_COOKIE, GUEST_COOKIE, SESSION_COOKIE, cookie, device_cookie, removal, set_cookie,
};
use crate::tokens::RelayedMessage;
use aula_domain::ports::Posted;
use aula_domain::services::{
    AccountView, Caller, DisclosureRequest, NewModerator, NewPost, Password, ProfileChanges,
    RoomChanges,
};
use aula_domain::*;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type R = OpenApiRouter<ApiState>;

/// A JSON object in, with our error shape when it is not. Only an object: serde would
/// also read a struct from an array of its fields in order (`[null, null]`), which the
/// document does not allow.
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = Json::<serde_json::Value>::from_request(req, state).await?;
        let shape = |message: String| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_json", message)
        };
        if !v.is_object() {
            return Err(shape("the body must be a JSON object".to_owned()));
        }
        serde_json::from_value(v)
            .map(Body)
            .map_err(|e| shape(format!("the body does not fit: {e}")))
    }
}

/// Path segments as axum's `Path`, refused in our error shape: a segment that does not
/// even decode (e.g. `%FF`) names nothing, so 404 like an unknown id.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    axum::extract::Path<T>:
        FromRequestParts<S, Rejection = axum::extract::rejection::PathRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(v) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(v))
    }
}

/// Query parameters as axum's `Query`, refused in our error shape (400 `invalid_input`).
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    axum::extract::Query<T>:
        FromRequestParts<S, Rejection = axum::extract::rejection::QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(v))
    }
}

// ---- path parameters (their schemas are the ids' formats) ---------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct RoomPath {
    #[param(schema_with = contract::room_id)]
    room: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct GuestPath {
    #[param(schema_with = contract::room_id)]
    room: String,
    #[param(schema_with = contract::guest_id)]
    guest: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct MessagePath {
    #[param(schema_with = contract::room_id)]
    room: String,
    #[param(schema_with = contract::message_id)]
    message: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct AccountPath {
    #[param(schema_with = contract::moderator_id)]
    id: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct InvitePath {
    #[param(schema_with = contract::invite_token)]
    token: String,
}

fn parse_opt<T>(
    v: Option<String>,
    f: impl FnOnce(&str) -> Result<T, ParseError>,
) -> ApiResult<Option<T>> {
    v.map(|s| f(&s)).transpose().map_err(ApiError::from)
}

// ---- typed answers (for the OpenAPI document) ------------------------------------

#[derive(Serialize, ToSchema)]
struct AccountOut {
    account: AccountView,
}

#[derive(Serialize, ToSchema)]
struct JoinOut {
    guest: GuestOut,
    /// The guest grant: send as `Authorization: Bearer …` (it is also set as a cookie).
    token: String,
}

#[derive(Serialize, ToSchema)]
struct RoomsOut {
    rooms: Vec<RoomOut>,
}

#[derive(Serialize, ToSchema)]
struct MeetingsOut {
    meetings: Vec<Meeting>,
}

#[derive(Serialize, ToSchema)]
struct LobbyOut {
    waiting: Vec<GuestOut>,
}

#[derive(Serialize, ToSchema)]
struct GrantOut {
    /// The join grant (EdDSA JWT, audience `aula:room:<id>`) for the media node.
    grant: String,
    expires_at: Timestamp,
    node_url: String,
    participant: Participant,
    role: services::GrantRole,
    /// The holder knocks: the node keeps them in its lobby until a moderator admits them.
    lobby: bool,
}

#[derive(Serialize, ToSchema)]
struct HistoryOut {
    /// Newest first.
    messages: Vec<MessageOut>,
    /// Pass as `before` for the next, older page.
    older: Option<MessageId>,
}

#[derive(Serialize, ToSchema)]
struct ModeratorsOut {
    moderators: Vec<AccountView>,
}

#[derive(Serialize, ToSchema)]
struct ProvisionOut {
    account: AccountView,
    /// Shown once, to hand over; only its hash is stored.
    initial_password: String,
}

#[derive(Serialize, ToSchema)]
struct AuditOut {
    entries: Vec<AuditEntry>,
}

// ---- auth ---------------------------------------------------------------------------

pub fn auth() -> R {
    R::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(register))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(join))
        .routes(routes!(guest_status))
        .routes(routes!(privacy_notice))
}

#[derive(Serialize, ToSchema)]
struct FieldOut {
    name: &'static str,
    meaning: &'static str,
}

#[derive(Serialize, ToSchema)]
struct RecordOut {
    kind: &'static str,
    description: &'static str,
    /// Whose data it is: moderator, guest, participants, visitor or nobody.
    subject: String,
    /// The only purposes the data serves.
    purposes: Vec<String>,
    /// `until_erased`, `after_last_use`, `after_creation` or `after_heartbeat`.
    retention: String,
    /// The span of `retention`, in seconds (none for `until_erased`).
    retention_seconds: Option<i64>,
    fields: Vec<FieldOut>,
}

#[derive(Serialize, ToSchema)]
struct PrivacyOut {
    contacts: crate::PrivacyContacts,
    /// Where the data is processed.
    location: String,
    /// Deleted and expired records are physically removed from the live store at once
    /// (the embedded store overwrites them; DynamoDB removes expired items within about two
    /// days and never serves them); backups hold them for at most this many days.
    backup_days: Option<u32>,
    /// Every kind of record the portal stores, from its data inventory.
    records: Vec<RecordOut>,
    /// Everything the portal keeps in the browser (cookies and local storage).
    browser_storage: Vec<BrowserItemOut>,
}

#[derive(Serialize, ToSchema)]
struct BrowserItemOut {
    name: &'static str,
    /// `cookie` (set by the server, HttpOnly, Secure, SameSite) or `local_storage`.
    storage: String,
    description: &'static str,
    purposes: Vec<String>,
    /// How long the browser keeps it (none: until the user clears local storage).
    lifetime_seconds: Option<i64>,
}

fn name_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(o)) => o
            .get("rule")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

#[utoipa::path(
    get,
    path = "/api/privacy",
    tag = "auth",
    summary = "What the portal stores, why and for how long, and whom to ask: the privacy page's content, from the data inventory and the deployment's contacts.",
    responses((status = 200, body = PrivacyOut), Refusals)
)]
async fn privacy_notice(State(st): State<ApiState>) -> Json<PrivacyOut> {
    use aula_domain::inventory::{INVENTORY, Retention};
    let records = INVENTORY
        .iter()
        .map(|spec| {
            let retention_seconds = match spec.retention {
                Retention::UntilErased => None,
                Retention::AfterLastUse { seconds }
                | Retention::AfterCreation { seconds }
                | Retention::AfterHeartbeat { seconds } => Some(seconds),
            };
            RecordOut {
                kind: spec.kind.name(),
                description: spec.description,
                subject: name_of(&spec.subject),
                purposes: spec.purposes.iter().map(name_of).collect(),
                retention: name_of(&spec.retention),
                retention_seconds,
                fields: spec
                    .fields
                    .iter()
                    .map(|f| FieldOut {
                        name: f.name,
                        meaning: f.meaning,
                    })
                    .collect(),
            }
        })
        .collect();
    let browser_storage = aula_domain::inventory::BROWSER_STORAGE
        .iter()
        .map(|b| BrowserItemOut {
            name: b.name,
            storage: name_of(&b.storage),
            description: b.description,
            purposes: b.purposes.iter().map(name_of).collect(),
            lifetime_seconds: b.lifetime_seconds,
        })
        .collect();
    Json(PrivacyOut {
        contacts: st.config.contacts.clone(),
        location: st.config.processing.location.clone(),
        backup_days: st.config.processing.backup_days,
        records,
        browser_storage,
    })
}

#[derive(Deserialize, ToSchema)]
struct LoginIn {
    #[schema(schema_with = contract::email)]
    email: String,
    #[schema(schema_with = contract::password)]
    password: String,
}

fn client_address(peer: Option<Extension<crate::PeerAddress>>) -> services::ClientAddress {
    match peer {
        Some(Extension(p)) => match p.0.parse::<std::net::IpAddr>() {
            Ok(ip) => services::ClientAddress::of(ip),
            Err(_) => services::ClientAddress(p.0),
        },
        None => services::ClientAddress("unknown".to_owned()),
    }
}

#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    summary = "Logs a moderator in. Failures are throttled per account and source with doubling waits; a browser with the `aula_device` cookie of an earlier login to this account is exempt from the limits aimed at strangers (429 with Retry-After).",
    request_body = LoginIn,
    responses((status = 200, description = "logged in; sets the `aula_session` cookie and renews the `aula_device` cookie", body = AccountOut), Refusals)
)]
async fn login(
    State(st): State<ApiState>,
    peer: Option<Extension<crate::PeerAddress>>,
    jar: axum_extra::extract::CookieJar,
    Body(input): Body<LoginIn>,
) -> ApiResult<Response> {
    let from = client_address(peer);
    let device = jar.get(DEVICE_COOKIE).map(|c| c.value().to_owned());
    let services::LoggedIn {
        moderator: m,
        session,
        device,
    } = st
        .aula
        .login(
            &input.email,
            &Password::offered(&input.password),
            &from,
            device.as_deref(),
        )
        .await?;
    let now = st.aula.clock.now();
    let token = st.tokens.session(m.id, session.id, now).map_err(|_| {
        ApiError::from(services::ServiceError::Internal(
            "signing the session failed",
        ))
    })?;
    let mut response = Json(AccountOut {
        account: AccountView::from(&m),
    })
    .into_response();
    set_cookie(
        &mut response,
        &cookie(SESSION_COOKIE, token, st.tokens.lifetimes.session),
    );
    set_cookie(
        &mut response,
        &device_cookie(device.as_str().to_owned(), retention::KNOWN_DEVICE),
    );
    Ok(response)
}

#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "auth",
    summary = "Logs out: the session is deleted on the server and the cookie removed.",
    responses((status = 204, description = "logged out; the session is revoked"), Refusals)
)]
async fn logout(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    st.aula.logout(&caller).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &removal(SESSION_COOKIE));
    Ok(response)
}

#[derive(Deserialize, ToSchema)]
struct ProfileIn {
    #[schema(schema_with = contract::person_name)]
    last_name: String,
    #[schema(schema_with = contract::person_name)]
    first_name: String,
    #[schema(schema_with = contract::email)]
    email: String,
    #[schema(schema_with = contract::federal_state)]
    federal_state: String,
    #[schema(schema_with = contract::organisation)]
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

#[derive(Deserialize, ToSchema)]
struct RegisterIn {
    #[serde(flatten)]
    profile: ProfileIn,
    #[schema(schema_with = contract::new_password)]
    password: String,
}

#[utoipa::path(
    post,
    path = "/api/auth/register",
    tag = "auth",
    summary = "Self-registration, where the deployment enables it.",
    request_body = RegisterIn,
    responses((status = 201, body = AccountOut), Refusals)
)]
async fn register(
    State(st): State<ApiState>,
    Body(input): Body<RegisterIn>,
) -> ApiResult<Response> {
    let password = Password::new_password(&input.password)?;
    let m = st.aula.register(input.profile.parse()?, &password).await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountOut {
            account: AccountView::from(&m),
        }),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/me",
    tag = "auth",
    summary = "The logged-in moderator.",
    responses((status = 200, body = AccountView), Refusals)
)]
async fn me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<AccountView>> {
    Ok(Json(AccountView::from(&st.aula.me(&caller).await?)))
}

#[derive(Deserialize, ToSchema)]
struct PasswordIn {
    #[schema(schema_with = contract::password)]
    current: String,
    #[schema(schema_with = contract::new_password)]
    new: String,
}

#[utoipa::path(
    post,
    path = "/api/me/password",
    tag = "auth",
    summary = "Changes the password (at least 10 characters).",
    request_body = PasswordIn,
    responses((status = 204), Refusals)
)]
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

#[derive(Deserialize, ToSchema)]
struct JoinIn {
    #[schema(schema_with = contract::nickname)]
    nickname: String,
}

#[derive(Serialize, ToSchema)]
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

#[utoipa::path(
    post,
    path = "/api/join/{token}",
    tag = "auth",
    summary = "A guest opens an invite link with a nickname.",
    request_body = JoinIn,
    params(InvitePath),
    responses((status = 201, description = "joined (or waiting in the lobby); sets the `aula_guest` cookie", body = JoinOut), Refusals)
)]
async fn join(
    State(st): State<ApiState>,
    Path(InvitePath { token }): Path<InvitePath>,
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
        Json(JoinOut {
            guest: GuestOut::from(&guest),
            token: grant.clone(),
        }),
    )
        .into_response();
    set_cookie(
        &mut response,
        &cookie(GUEST_COOKIE, grant, st.tokens.lifetimes.guest),
    );
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/guest",
    tag = "auth",
    summary = "The calling guest and their lobby status.",
    responses((status = 200, body = GuestOut), Refusals)
)]
async fn guest_status(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<GuestOut>> {
    Ok(Json(GuestOut::from(&st.aula.guest_status(&caller).await?)))
}

// ---- rooms --------------------------------------------------------------------------

pub fn rooms() -> R {
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
}

#[derive(Serialize, ToSchema)]
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

#[derive(Deserialize, Default, ToSchema)]
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

#[derive(Deserialize, ToSchema)]
struct RoomIn {
    #[schema(schema_with = contract::room_name)]
    name: String,
    #[serde(default)]
    settings: SettingsIn,
}

#[utoipa::path(
    get,
    path = "/api/rooms",
    tag = "rooms",
    summary = "The caller's rooms.",
    responses((status = 200, body = RoomsOut), Refusals)
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
    responses((status = 201, body = RoomOut), Refusals)
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
    responses((status = 200, description = "the owner gets RoomOut, an admitted guest RoomView", body = RoomOut), Refusals)
)]
/// The owner gets the whole room (with the invite link); an admitted guest its name and
/// settings.
async fn get_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Response> {
    let room = room_id(&room)?;
    if matches!(caller, Caller::Moderator { .. }) {
        return Ok(Json(room_out(&st, st.aula.room(&caller, room).await?)).into_response());
    }
    Ok(Json(st.aula.room_view(&caller, room).await?).into_response())
}

#[derive(Deserialize, ToSchema)]
struct RoomPatch {
    #[schema(schema_with = contract::room_name_or_null)]
    name: Option<String>,
    settings: Option<SettingsIn>,
}

#[utoipa::path(
    patch,
    path = "/api/rooms/{room}",
    tag = "rooms",
    summary = "Renames or configures a room.",
    request_body = RoomPatch,
    params(RoomPath),
    responses((status = 200, body = RoomOut), Refusals)
)]
async fn update_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
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

#[utoipa::path(
    delete,
    path = "/api/rooms/{room}",
    tag = "rooms",
    summary = "Deletes a room with its chats, meetings and guests.",
    params(RoomPath),
    responses((status = 204), Refusals)
)]
async fn delete_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<StatusCode> {
    st.aula.delete_room(&caller, room_id(&room)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/invite",
    tag = "rooms",
    summary = "A new invite link; the old one stops working.",
    params(RoomPath),
    responses((status = 200, body = RoomOut), Refusals)
)]
async fn rotate_invite(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Json<RoomOut>> {
    let r = st.aula.rotate_invite(&caller, room_id(&room)?).await?;
    Ok(Json(room_out(&st, r)))
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}/meetings",
    tag = "rooms",
    summary = "Past meetings of a room, newest first.",
    params(RoomPath),
    responses((status = 200, body = MeetingsOut), Refusals)
)]
async fn meetings(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Json<MeetingsOut>> {
    let meetings = st.aula.meetings(&caller, room_id(&room)?).await?;
    Ok(Json(MeetingsOut { meetings }))
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}/participants",
    tag = "rooms",
    summary = "The room's moderator and guests.",
    params(RoomPath),
    responses((status = 200, body = services::Participants), Refusals)
)]
async fn participants(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Response> {
    Ok(Json(st.aula.participants(&caller, room_id(&room)?).await?).into_response())
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}/lobby",
    tag = "rooms",
    summary = "Guests waiting in the lobby.",
    params(RoomPath),
    responses((status = 200, body = LobbyOut), Refusals)
)]
async fn lobby(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Json<LobbyOut>> {
    let waiting: Vec<_> = st
        .aula
        .lobby(&caller, room_id(&room)?)
        .await?
        .iter()
        .map(GuestOut::from)
        .collect();
    Ok(Json(LobbyOut { waiting }))
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

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/guests/{guest}/admit",
    tag = "rooms",
    summary = "Lets a waiting guest in.",
    params(GuestPath),
    responses((status = 200, body = GuestOut), Refusals)
)]
async fn admit(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(GuestPath { room, guest }): Path<GuestPath>,
) -> ApiResult<Json<GuestOut>> {
    set_admission(st, caller, room, guest, Admission::Admitted).await
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/guests/{guest}/deny",
    tag = "rooms",
    summary = "Denies or removes a guest; their grant is refused from then on.",
    params(GuestPath),
    responses((status = 200, body = GuestOut), Refusals)
)]
async fn deny(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(GuestPath { room, guest }): Path<GuestPath>,
) -> ApiResult<Json<GuestOut>> {
    set_admission(st, caller, room, guest, Admission::Denied).await
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/join",
    tag = "rooms",
    summary = "A short join grant for the room's media node.",
    params(RoomPath),
    responses((status = 200, body = GrantOut), Refusals)
)]
async fn join_grant(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
) -> ApiResult<Json<GrantOut>> {
    let grant = st.aula.join_grant(&caller, room_id(&room)?).await?;
    let (token, expires) = st.tokens.join(&grant, st.aula.clock.now()).map_err(|_| {
        ApiError::from(services::ServiceError::Internal(
            "signing the join grant failed",
        ))
    })?;
    let node_url = match &st.config.media_node_url {
        Some(url) => url.clone(),
        None => {
            st.aula
                .place(grant.room, services::PlacementPolicy::default())
                .await?
                .address
        }
    };
    Ok(Json(GrantOut {
        grant: token,
        expires_at: expires,
        node_url,
        participant: grant.participant,
        role: grant.role,
        lobby: grant.lobby,
    }))
}

// ---- chat ---------------------------------------------------------------------------

pub fn chat() -> R {
    R::new()
        .routes(routes!(history, post_message))
        .routes(routes!(delete_message))
}

#[derive(Serialize, ToSchema)]
struct MessageOut {
    id: MessageId,
    conversation: Conversation,
    author: Participant,
    body: ChatBody,
    posted_at: Timestamp,
}

/// A stored message, and the token that lets the media node deliver it live.
#[derive(Serialize, ToSchema)]
struct PostedOut {
    #[serde(flatten)]
    message: MessageOut,
    /// Hand this to the media node (`chat` frame); valid for a minute, only from the author.
    relay: String,
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    #[param(schema_with = contract::participant)]
    with: Option<String>,
    #[param(schema_with = contract::message_id)]
    before: Option<String>,
    #[param(schema_with = contract::page_limit)]
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}/chat",
    tag = "chat",
    summary = "A page of the room chat, or of the private conversation with `with`.",
    params(RoomPath, HistoryQuery),
    responses((status = 200, body = HistoryOut), Refusals)
)]
async fn history(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<HistoryOut>> {
    let with = parse_opt(q.with, Participant::parse)?;
    let before = parse_opt(q.before, MessageId::parse)?;
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
        .history(&caller, room_id(&room)?, with, before, limit)
        .await?;
    let messages: Vec<MessageOut> = page.messages.into_iter().map(MessageOut::from).collect();
    Ok(Json(HistoryOut {
        messages,
        older: page.older,
    }))
}

#[derive(Deserialize, ToSchema)]
struct PostIn {
    #[schema(schema_with = contract::participant_or_null)]
    to: Option<String>,
    #[schema(schema_with = contract::chat_body)]
    body: String,
    #[schema(schema_with = contract::idempotency_key)]
    idempotency_key: String,
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/chat",
    tag = "chat",
    summary = "Posts to the room chat or privately (`to`); a retry with the same `idempotency_key` stores nothing new.",
    request_body = PostIn,
    params(RoomPath),
    responses((status = 201, description = "stored", body = PostedOut), (status = 200, description = "a retry: the message the first post stored", body = PostedOut), Refusals)
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
    let posted = st.aula.post(&caller, room_id(&room)?, post).await?;
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
        .chat_relay(m.room_id, relayed, st.aula.clock.now())
        .map_err(|_| {
            ApiError::from(services::ServiceError::Internal(
                "signing the chat relay token failed",
            ))
        })?;
    let message = PostedOut {
        message: MessageOut::from(m),
        relay,
    };
    Ok((status, Json(message)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WithQuery {
    #[param(schema_with = contract::participant)]
    with: Option<String>,
}

#[utoipa::path(
    delete,
    path = "/api/rooms/{room}/chat/{message}",
    tag = "chat",
    summary = "Deletes a message (its author, or the room's moderator).",
    params(MessagePath, WithQuery),
    responses((status = 204), Refusals)
)]
async fn delete_message(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(MessagePath { room, message }): Path<MessagePath>,
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
        .routes(routes!(correct_me, erase_me))
        .routes(routes!(export_me))
        .routes(routes!(restrict_me))
        .routes(routes!(admin_list, admin_provision))
        .routes(routes!(admin_export_moderator))
        .routes(routes!(admin_restrict))
        .routes(routes!(admin_unrestrict))
        .routes(routes!(admin_erase_moderator))
        .routes(routes!(admin_export_room))
        .routes(routes!(admin_erase_room))
        .routes(routes!(admin_disclosure))
        .routes(routes!(admin_audit))
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

#[derive(Deserialize, ToSchema)]
struct CorrectionIn {
    #[schema(schema_with = contract::person_name_or_null)]
    last_name: Option<String>,
    #[schema(schema_with = contract::person_name_or_null)]
    first_name: Option<String>,
    #[schema(schema_with = contract::email_or_null)]
    email: Option<String>,
    #[schema(schema_with = contract::federal_state_or_null)]
    federal_state: Option<String>,
    #[schema(schema_with = contract::organisation_or_null)]
    organisation: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/api/me",
    tag = "privacy",
    summary = "Corrects the caller's profile (Art. 16).",
    request_body = CorrectionIn,
    responses((status = 200, body = AccountView), Refusals)
)]
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

#[utoipa::path(
    get,
    path = "/api/me/export",
    tag = "privacy",
    summary = "Everything stored about the caller (Art. 15).",
    responses((status = 200, description = "a JSON download", body = services::ModeratorExport), Refusals)
)]
async fn export_me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let export = st.aula.export_me(&caller).await?;
    Ok(attachment("aula-export.json", &export))
}

#[utoipa::path(
    post,
    path = "/api/me/restrict",
    tag = "privacy",
    summary = "Blocks the caller's account (Art. 18); an admin lifts it.",
    responses((status = 204), Refusals)
)]
async fn restrict_me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    st.aula.restrict_me(&caller).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &removal(SESSION_COOKIE));
    Ok(response)
}

#[derive(Deserialize, ToSchema)]
struct EraseIn {
    #[schema(schema_with = contract::password)]
    password: String,
}

#[utoipa::path(
    delete,
    path = "/api/me",
    tag = "privacy",
    summary = "Erases the caller's account and everything it owns (Art. 17).",
    request_body = EraseIn,
    responses((status = 204), Refusals)
)]
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
    set_cookie(
        &mut response,
        &device_cookie(String::new(), aula_domain::Span::seconds(0)),
    );
    Ok(response)
}

#[derive(Deserialize, ToSchema)]
struct ReasonIn {
    #[schema(schema_with = contract::reason)]
    reason: String,
}

fn moderator_id(raw: &str) -> ApiResult<ModeratorId> {
    ModeratorId::parse(raw).map_err(|_| ApiError::not_found())
}

#[utoipa::path(
    get,
    path = "/api/admin/moderators",
    tag = "privacy",
    summary = "All accounts (admins).",
    responses((status = 200, body = ModeratorsOut), Refusals)
)]
async fn admin_list(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ModeratorsOut>> {
    Ok(Json(ModeratorsOut {
        moderators: st.aula.list_moderators(&caller).await?,
    }))
}

#[derive(Deserialize, ToSchema)]
struct ProvisionIn {
    #[serde(flatten)]
    profile: ProfileIn,
    #[serde(default)]
    admin: bool,
}

#[utoipa::path(
    post,
    path = "/api/admin/moderators",
    tag = "privacy",
    summary = "Creates an account (admins); audited.",
    request_body = ProvisionIn,
    responses((status = 201, body = ProvisionOut), Refusals)
)]
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
        Json(ProvisionOut {
            account: AccountView::from(&m),
            initial_password: password.expose().to_owned(),
        }),
    )
        .into_response())
}

#[utoipa::path(
    post,
    path = "/api/admin/moderators/{id}/export",
    tag = "privacy",
    summary = "Exports an account's data (admins); audited.",
    request_body = ReasonIn,
    params(AccountPath),
    responses((status = 200, body = services::ModeratorExport), Refusals)
)]
async fn admin_export_moderator(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(AccountPath { id }): Path<AccountPath>,
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

#[utoipa::path(
    post,
    path = "/api/admin/moderators/{id}/restrict",
    tag = "privacy",
    summary = "Blocks an account (admins); audited.",
    request_body = ReasonIn,
    params(AccountPath),
    responses((status = 200, body = AccountView), Refusals)
)]
async fn admin_restrict(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(AccountPath { id }): Path<AccountPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Json<AccountView>> {
    let reason = AuditReason::parse(&input.reason)?;
    Ok(Json(
        st.aula
            .admin_set_restricted(&caller, moderator_id(&id)?, true, &reason)
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/admin/moderators/{id}/unrestrict",
    tag = "privacy",
    summary = "Lifts a block (admins); audited.",
    request_body = ReasonIn,
    params(AccountPath),
    responses((status = 200, body = AccountView), Refusals)
)]
async fn admin_unrestrict(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(AccountPath { id }): Path<AccountPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Json<AccountView>> {
    let reason = AuditReason::parse(&input.reason)?;
    Ok(Json(
        st.aula
            .admin_set_restricted(&caller, moderator_id(&id)?, false, &reason)
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/admin/moderators/{id}/erase",
    tag = "privacy",
    summary = "Erases an account with everything it owns (admins); audited.",
    request_body = ReasonIn,
    params(AccountPath),
    responses((status = 204), Refusals)
)]
async fn admin_erase_moderator(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(AccountPath { id }): Path<AccountPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<StatusCode> {
    let reason = AuditReason::parse(&input.reason)?;
    st.aula
        .admin_erase_moderator(&caller, moderator_id(&id)?, &reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/admin/rooms/{room}/export",
    tag = "privacy",
    summary = "Exports a room: chats, meetings, guests' nicknames (admins); audited.",
    request_body = ReasonIn,
    params(RoomPath),
    responses((status = 200, body = services::RoomExport), Refusals)
)]
async fn admin_export_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<Response> {
    let reason = AuditReason::parse(&input.reason)?;
    let export = st
        .aula
        .admin_export_room(&caller, room_id(&room)?, &reason)
        .await?;
    Ok(attachment("aula-room-export.json", &export))
}

#[utoipa::path(
    post,
    path = "/api/admin/rooms/{room}/erase",
    tag = "privacy",
    summary = "Erases a room with its chats, meetings and guests (admins); audited.",
    request_body = ReasonIn,
    params(RoomPath),
    responses((status = 204), Refusals)
)]
async fn admin_erase_room(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(RoomPath { room }): Path<RoomPath>,
    Body(input): Body<ReasonIn>,
) -> ApiResult<StatusCode> {
    let reason = AuditReason::parse(&input.reason)?;
    st.aula
        .admin_erase_room(&caller, room_id(&room)?, &reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
struct DisclosureIn {
    #[schema(schema_with = contract::moderator_id_or_null)]
    moderator: Option<String>,
    #[schema(schema_with = contract::room_id_or_null)]
    room: Option<String>,
    /// Access-log entries from this instant (milliseconds since the epoch); alone: up to now.
    #[schema(schema_with = contract::millis_or_null)]
    access_log_from: Option<i64>,
    /// Access-log entries before this instant; alone: the longest span before it (31 days).
    #[schema(schema_with = contract::millis_or_null)]
    access_log_until: Option<i64>,
    #[schema(schema_with = contract::reason)]
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/admin/disclosure",
    tag = "privacy",
    summary = "The export for an authority's legal request (admins); audited.",
    request_body = DisclosureIn,
    responses((status = 200, body = services::Disclosure), Refusals)
)]
async fn admin_disclosure(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<DisclosureIn>,
) -> ApiResult<Response> {
    // One end alone is a range too (a contract a schema can state): up to now, or the
    // longest span the store returns before `until`.
    let access_log = match (input.access_log_from, input.access_log_until) {
        (None, None) => None,
        (from, until) => {
            let until = until.map_or_else(|| st.aula.clock.now(), Timestamp::from_millis);
            let from = from.map_or_else(
                || until.minus(aula_domain::ports::MAX_ACCESS_LOG_SPAN),
                Timestamp::from_millis,
            );
            Some((from, until))
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SpanQuery {
    /// From this instant on: milliseconds since the epoch (UTC).
    from: i64,
    /// Up to this instant: milliseconds since the epoch (UTC).
    until: i64,
}

#[utoipa::path(
    get,
    path = "/api/admin/audit",
    tag = "privacy",
    summary = "The audit log (admins). It cannot be changed or deleted.",
    params(SpanQuery),
    responses((status = 200, body = AuditOut), Refusals)
)]
async fn admin_audit(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SpanQuery>,
) -> ApiResult<Json<AuditOut>> {
    let entries = st
        .aula
        .audit_log(
            &caller,
            Timestamp::from_millis(q.from),
            Timestamp::from_millis(q.until),
        )
        .await?;
    Ok(Json(AuditOut { entries }))
}
