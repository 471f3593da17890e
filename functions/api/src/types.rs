//! The request and response types: what goes over the wire, as the OpenAPI document shows
//! it, by function. Path and query parameters are typed as the domain's ids, so a malformed
//! one is refused by the extractor (`extract.rs`) before a handler runs; body fields stay
//! strings the handlers parse, so that each refusal names the field. The schemas of those
//! strings come from `contract.rs`.

use crate::ApiResult;
use crate::contract;
use aula_domain::services::{self, AccountView, NewModerator};
use aula_domain::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// ---- path and query parameters -------------------------------------------------
// Typed as the domain's ids: one that does not parse names nothing (404), a query parameter
// that does not parse is refused (400), both in the error shape. Their schemas are the ids'
// formats.

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RoomPath {
    #[param(schema_with = contract::room_id)]
    pub room: RoomId,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GuestPath {
    #[param(schema_with = contract::room_id)]
    pub room: RoomId,
    #[param(schema_with = contract::guest_id)]
    pub guest: GuestId,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessagePath {
    #[param(schema_with = contract::room_id)]
    pub room: RoomId,
    #[param(schema_with = contract::message_id)]
    pub message: MessageId,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AccountPath {
    #[param(schema_with = contract::moderator_id)]
    pub id: ModeratorId,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InvitePath {
    #[param(schema_with = contract::invite_token)]
    pub token: InviteToken,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[param(schema_with = contract::participant)]
    pub with: Option<Participant>,
    #[param(schema_with = contract::message_id)]
    pub before: Option<MessageId>,
    #[param(schema_with = contract::page_limit)]
    pub limit: Option<usize>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WithQuery {
    #[param(schema_with = contract::participant)]
    pub with: Option<Participant>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SchedulePath {
    #[param(schema_with = contract::room_id)]
    pub room: RoomId,
    #[param(schema_with = contract::schedule_id)]
    pub schedule: ScheduleId,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastQuery {
    /// From this instant on: milliseconds since the epoch (UTC).
    pub from: i64,
    /// Up to this instant (at most a day after `from`): milliseconds since the epoch (UTC).
    pub until: i64,
    /// Minutes per slot: 15 or 30 (default 30).
    pub slot: Option<u32>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SpanQuery {
    /// From this instant on: milliseconds since the epoch (UTC).
    pub from: i64,
    /// Up to this instant: milliseconds since the epoch (UTC).
    pub until: i64,
}

// ---- auth (and the privacy page) ------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct FieldOut {
    pub name: &'static str,
    pub meaning: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct RecordOut {
    pub kind: &'static str,
    pub description: &'static str,
    /// Whose data it is: moderator, guest, participants, visitor or nobody.
    pub subject: String,
    /// The only purposes the data serves.
    pub purposes: Vec<String>,
    /// `until_erased`, `after_last_use`, `after_creation` or `after_heartbeat`.
    pub retention: String,
    /// The span of `retention`, in seconds (none for `until_erased`).
    pub retention_seconds: Option<i64>,
    pub fields: Vec<FieldOut>,
}

#[derive(Serialize, ToSchema)]
pub struct PrivacyOut {
    pub contacts: crate::PrivacyContacts,
    /// Where the data is processed.
    pub location: String,
    /// Deleted and expired records are physically removed from the live store at once
    /// (the embedded store overwrites them; DynamoDB removes expired items within about two
    /// days and never serves them); backups hold them for at most this many days.
    pub backup_days: Option<u32>,
    /// Every kind of record the portal stores, from its data inventory.
    pub records: Vec<RecordOut>,
    /// Everything the portal keeps in the browser (cookies and local storage).
    pub browser_storage: Vec<BrowserItemOut>,
}

#[derive(Serialize, ToSchema)]
pub struct BrowserItemOut {
    pub name: &'static str,
    /// `cookie` (set by the server, HttpOnly, Secure, SameSite) or `local_storage`.
    pub storage: String,
    pub description: &'static str,
    pub purposes: Vec<String>,
    /// How long the browser keeps it (none: until the user clears local storage).
    pub lifetime_seconds: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginIn {
    #[schema(schema_with = contract::email)]
    pub email: String,
    #[schema(schema_with = contract::password)]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ProfileIn {
    #[schema(schema_with = contract::person_name)]
    pub last_name: String,
    #[schema(schema_with = contract::person_name)]
    pub first_name: String,
    #[schema(schema_with = contract::email)]
    pub email: String,
    #[schema(schema_with = contract::federal_state)]
    pub federal_state: String,
    #[schema(schema_with = contract::organisation)]
    pub organisation: String,
}

impl ProfileIn {
    pub fn parse(self) -> ApiResult<NewModerator> {
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
pub struct RegisterIn {
    #[serde(flatten)]
    pub profile: ProfileIn,
    #[schema(schema_with = contract::new_password)]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordIn {
    #[schema(schema_with = contract::password)]
    pub current: String,
    #[schema(schema_with = contract::new_password)]
    pub new: String,
}

#[derive(Deserialize, ToSchema)]
pub struct JoinIn {
    #[schema(schema_with = contract::nickname)]
    pub nickname: String,
}

#[derive(Serialize, ToSchema)]
pub struct GuestOut {
    pub id: GuestId,
    pub room: RoomId,
    pub nickname: Nickname,
    pub admission: Admission,
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

#[derive(Serialize, ToSchema)]
pub struct AccountOut {
    pub account: AccountView,
}

#[derive(Serialize, ToSchema)]
pub struct JoinOut {
    pub guest: GuestOut,
    /// The guest grant: send as `Authorization: Bearer …` (it is also set as a cookie).
    pub token: String,
}

// ---- rooms ----------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct RoomOut {
    pub id: RoomId,
    pub name: RoomName,
    pub settings: RoomSettings,
    pub invite_url: String,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    pub expires_at: Expiry,
}

#[derive(Deserialize, Default, ToSchema)]
pub struct SettingsIn {
    pub lobby: Option<bool>,
    pub guests_may_share_screen: Option<bool>,
    pub guests_may_send_video: Option<bool>,
    pub mute_on_join: Option<bool>,
    /// How many the teacher expects in the room's meetings (seats are reserved for them);
    /// 0 clears it (then the last meetings' peak decides).
    #[schema(minimum = 0, maximum = 1000)]
    pub expected_participants: Option<u32>,
}

impl SettingsIn {
    pub fn apply(self, mut s: RoomSettings) -> RoomSettings {
        s.lobby = self.lobby.unwrap_or(s.lobby);
        s.guests_may_share_screen = self
            .guests_may_share_screen
            .unwrap_or(s.guests_may_share_screen);
        s.guests_may_send_video = self
            .guests_may_send_video
            .unwrap_or(s.guests_may_send_video);
        s.mute_on_join = self.mute_on_join.unwrap_or(s.mute_on_join);
        match self.expected_participants {
            Some(0) => s.expected_participants = None,
            Some(n) => s.expected_participants = Some(n),
            None => {}
        }
        s
    }
}

#[derive(Deserialize, ToSchema)]
pub struct RoomIn {
    #[schema(schema_with = contract::room_name)]
    pub name: String,
    #[serde(default)]
    pub settings: SettingsIn,
}

#[derive(Deserialize, ToSchema)]
pub struct RoomPatch {
    #[schema(schema_with = contract::room_name_or_null)]
    pub name: Option<String>,
    pub settings: Option<SettingsIn>,
}

#[derive(Serialize, ToSchema)]
pub struct RoomsOut {
    pub rooms: Vec<RoomOut>,
}

#[derive(Serialize, ToSchema)]
pub struct MeetingsOut {
    pub meetings: Vec<Meeting>,
}

/// A meeting to schedule in the room.
#[derive(Deserialize, ToSchema)]
pub struct ScheduleIn {
    /// When it begins: milliseconds since the epoch (UTC); not over already, at most a
    /// year ahead.
    pub starts_at: i64,
    /// How long it lasts, in minutes (5–600; default 45).
    #[schema(minimum = 5, maximum = 600)]
    pub minutes: Option<u32>,
    /// How many are expected (the teacher included): seats are reserved for them.
    #[schema(minimum = 1, maximum = 1000)]
    pub expected_participants: u32,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduledOut {
    /// Earliest first.
    pub scheduled: Vec<ScheduledMeeting>,
}

#[derive(Serialize, ToSchema)]
pub struct ForecastOut {
    pub slot_minutes: u32,
    /// Participants a media node takes at most, as the forecast counts nodes.
    pub node_capacity: u32,
    pub slots: Vec<services::ForecastSlot>,
}

#[derive(Serialize, ToSchema)]
pub struct LobbyOut {
    pub waiting: Vec<GuestOut>,
}

#[derive(Deserialize, ToSchema)]
pub struct JoinGrantIn {
    /// The `node_url` of an earlier grant that the client could not reach or that stopped
    /// answering: the room moves if that node's heartbeat has gone quiet too.
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub unreachable: Option<String>,
}

/// Every media node is full: the caller's room waits in the admission queue; ask again
/// after `retry_after_secs` (also in `Retry-After`). The room keeps its place while its
/// participants keep asking (a minute).
#[derive(Serialize, ToSchema)]
pub struct QueuedOut {
    /// The room's place number; absent for a teacher, who does not queue behind pupils.
    pub place: Option<u64>,
    /// 1 at the front; at most the true position (rooms that gave up count until their
    /// place lapses).
    pub position: u64,
    /// Seconds until the room gets its seats, at the pace its place has moved so far;
    /// absent until it has moved.
    pub estimate_secs: Option<u64>,
    pub retry_after_secs: u64,
}

#[derive(Serialize, ToSchema)]
pub struct GrantOut {
    /// The join grant (EdDSA JWT, audience `aula:room:<id>`) for the media node.
    pub grant: String,
    pub expires_at: Timestamp,
    pub node_url: String,
    pub participant: Participant,
    pub role: services::GrantRole,
    /// The holder knocks: the node keeps them in its lobby until a moderator admits them.
    pub lobby: bool,
    /// ICE servers for the peer connections (`RTCConfiguration.iceServers`): TURN over UDP,
    /// TCP and TLS with credentials that expire with the grant. Empty where the deployment
    /// runs no TURN server.
    pub ice_servers: Vec<crate::turn::IceServer>,
}

// ---- chat -----------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct MessageOut {
    pub id: MessageId,
    pub conversation: Conversation,
    pub author: Participant,
    pub body: ChatBody,
    pub posted_at: Timestamp,
}

/// A stored message, and the token that lets the media node deliver it live.
#[derive(Serialize, ToSchema)]
pub struct PostedOut {
    #[serde(flatten)]
    pub message: MessageOut,
    /// Hand this to the media node (`chat` frame); valid for a minute, only from the author.
    pub relay: String,
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

#[derive(Deserialize, ToSchema)]
pub struct PostIn {
    #[schema(schema_with = contract::participant_or_null)]
    pub to: Option<String>,
    #[schema(schema_with = contract::chat_body)]
    pub body: String,
    #[schema(schema_with = contract::idempotency_key)]
    pub idempotency_key: String,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryOut {
    /// Newest first.
    pub messages: Vec<MessageOut>,
    /// Pass as `before` for the next, older page.
    pub older: Option<MessageId>,
}

// ---- privacy: the caller's own data ---------------------------------------------

#[derive(Deserialize, ToSchema)]
pub struct CorrectionIn {
    #[schema(schema_with = contract::person_name_or_null)]
    pub last_name: Option<String>,
    #[schema(schema_with = contract::person_name_or_null)]
    pub first_name: Option<String>,
    #[schema(schema_with = contract::email_or_null)]
    pub email: Option<String>,
    #[schema(schema_with = contract::federal_state_or_null)]
    pub federal_state: Option<String>,
    #[schema(schema_with = contract::organisation_or_null)]
    pub organisation: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct EraseIn {
    #[schema(schema_with = contract::password)]
    pub password: String,
}

// ---- privacy: admins ------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
pub struct ReasonIn {
    #[schema(schema_with = contract::reason)]
    pub reason: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ProvisionIn {
    #[serde(flatten)]
    pub profile: ProfileIn,
    #[serde(default)]
    pub admin: bool,
}

/// A list of teachers to create, as a spreadsheet exports it.
#[derive(Deserialize, ToSchema)]
pub struct ImportIn {
    /// One teacher per line: last name, first name, email, Bundesland (name or code),
    /// organisation; separated by `;` or `,` (the first line decides), fields may be quoted.
    /// A header line is recognised and skipped. At most 200 teachers.
    #[schema(max_length = 200000)]
    pub csv: String,
    /// Only check: nothing is created, the answer says what would happen to each line.
    #[serde(default)]
    pub dry_run: bool,
}

/// Why a line of a list was not (or would not be) created.
#[derive(Serialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImportProblem {
    /// Not five fields.
    Columns,
    LastName,
    FirstName,
    Email,
    FederalState,
    Organisation,
    /// The same email came earlier in the list.
    DuplicateInFile,
    /// An account with this email exists already.
    EmailTaken,
}

/// What became of one line.
#[derive(Serialize, ToSchema)]
pub struct ImportLine {
    /// The line number in the uploaded text (1 = the first line).
    pub line: u64,
    pub email: Option<String>,
    /// None: created (or, in a dry run, would be).
    pub problem: Option<ImportProblem>,
    /// The parser's explanation, for `problem`s of a field.
    pub detail: Option<String>,
    pub account: Option<AccountView>,
    /// Shown once, to hand over; only its hash is stored.
    pub initial_password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportOut {
    pub dry_run: bool,
    /// Lines without a problem (created, or that would be).
    pub valid: usize,
    pub lines: Vec<ImportLine>,
}

#[derive(Deserialize, ToSchema)]
pub struct DisclosureIn {
    #[schema(schema_with = contract::moderator_id_or_null)]
    pub moderator: Option<String>,
    #[schema(schema_with = contract::room_id_or_null)]
    pub room: Option<String>,
    /// Access-log entries from this instant (milliseconds since the epoch); alone: up to now.
    #[schema(schema_with = contract::millis_or_null)]
    pub access_log_from: Option<i64>,
    /// Access-log entries before this instant; alone: the longest span before it (31 days).
    #[schema(schema_with = contract::millis_or_null)]
    pub access_log_until: Option<i64>,
    #[schema(schema_with = contract::reason)]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ModeratorsOut {
    pub moderators: Vec<AccountView>,
}

#[derive(Serialize, ToSchema)]
pub struct ProvisionOut {
    pub account: AccountView,
    /// Shown once, to hand over; only its hash is stored.
    pub initial_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditOut {
    pub entries: Vec<AuditEntry>,
}
