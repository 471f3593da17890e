//! The records Aula keeps. Each one is declared, with its purpose and retention, in
//! [`crate::inventory`]; nothing is stored that is not declared there.

use crate::retention;
use crate::{
    AccessLogId, AuditId, AuditReason, ChatBody, Email, Expiry, FederalState, GuestId,
    IdempotencyKey, InviteToken, MeetingId, MessageId, ModeratorId, Nickname, Organisation,
    ParseError, PersonName, RoomId, RoomName, SessionId, Timestamp,
};
use serde::{Deserialize, Serialize};
use std::fmt;

pub mod nodes;
pub mod schedule;
pub use nodes::{AdmissionQueue, MediaNode, Placement, RoomTicket};
pub use schedule::{
    CLASS_SEATS, GROW_SEATS, MAX_EXPECTED_PARTICIPANTS, ScheduledMeeting,
    check_expected_participants,
};

/// What a moderator account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// A teacher: holds meetings in their own rooms.
    Moderator,
    /// School or ministry data-protection staff: answers data-subject requests.
    Admin,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "moderator" => Ok(Role::Moderator),
            "admin" => Ok(Role::Admin),
            _ => Err(ParseError::Invalid {
                field: "role",
                reason: "not a role",
            }),
        }
    }
}

/// Whether an account may be used. A restricted (blocked) account keeps its data but
/// cannot log in (GDPR Art. 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AccountStatus {
    Active,
    Restricted,
}

impl AccountStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Restricted => "restricted",
        }
    }
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "active" => Ok(AccountStatus::Active),
            "restricted" => Ok(AccountStatus::Restricted),
            _ => Err(ParseError::Invalid {
                field: "status",
                reason: "not an account status",
            }),
        }
    }
}

/// An Argon2id hash in PHC string form. Never the password; never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn parse(phc: &str) -> Result<Self, ParseError> {
        if phc.starts_with("$argon2id$") && phc.len() < 512 && !phc.chars().any(char::is_control) {
            Ok(PasswordHash(phc.to_owned()))
        } else {
            Err(ParseError::Invalid {
                field: "password hash",
                reason: "not an Argon2id PHC string",
            })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// A teacher's or admin's account: exactly the fields the privacy notice names, plus the
/// credential and the state the account is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moderator {
    pub id: ModeratorId,
    pub last_name: PersonName,
    pub first_name: PersonName,
    pub email: Email,
    pub federal_state: FederalState,
    pub organisation: Organisation,
    pub role: Role,
    pub status: AccountStatus,
    pub password_hash: PasswordHash,
    /// Set while the password is one somebody else handed over (provisioned, bootstrapped,
    /// reset by the operator): the portal asks for a new one before anything else.
    #[serde(default)]
    pub must_change_password: bool,
    pub created_at: Timestamp,
}

/// Per-room settings a moderator chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomSettings {
    /// Guests wait in a lobby until a moderator admits them.
    pub lobby: bool,
    pub guests_may_share_screen: bool,
    pub guests_may_send_video: bool,
    pub mute_on_join: bool,
    /// How many take part in the room's meetings, as its teacher expects: the seats a
    /// media node reserves for the room when no scheduled meeting says otherwise.
    /// `None`: not set (the last meetings' peak decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub expected_participants: Option<u32>,
}

impl RoomSettings {
    /// Refuses settings no room may have.
    pub fn check(&self) -> Result<(), ParseError> {
        if let Some(n) = self.expected_participants {
            check_expected_participants(n)?;
        }
        Ok(())
    }
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            lobby: false,
            guests_may_share_screen: true,
            guests_may_send_video: true,
            mute_on_join: false,
            expected_participants: None,
        }
    }
}

/// A moderator's room. It expires 6 months after it was last used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Room {
    pub id: RoomId,
    pub owner: ModeratorId,
    pub name: RoomName,
    pub settings: RoomSettings,
    pub invite_token: InviteToken,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    pub expires_at: Expiry,
}

impl Room {
    /// Marks the room as used now, which pushes its expiry 6 months out.
    pub fn touch(&mut self, now: Timestamp) {
        if now > self.last_used_at {
            self.last_used_at = now;
            self.expires_at = retention::history_expiry(now);
        }
    }
}

/// Where a guest stands with a room that has a lobby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Admission {
    /// Knocked; waits for a moderator.
    Waiting,
    Admitted,
    Denied,
}

impl Admission {
    pub const fn as_str(self) -> &'static str {
        match self {
            Admission::Waiting => "waiting",
            Admission::Admitted => "admitted",
            Admission::Denied => "denied",
        }
    }
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "waiting" => Ok(Admission::Waiting),
            "admitted" => Ok(Admission::Admitted),
            "denied" => Ok(Admission::Denied),
            _ => Err(ParseError::Invalid {
                field: "admission",
                reason: "not an admission state",
            }),
        }
    }
}

/// A guest of one room: a nickname and nothing else (promise 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Guest {
    pub id: GuestId,
    pub room_id: RoomId,
    pub nickname: Nickname,
    pub admission: Admission,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    pub expires_at: Expiry,
}

/// A meeting held in a room: when, and how many took part at most. No names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Meeting {
    pub id: MeetingId,
    pub room_id: RoomId,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub peak_participants: u32,
    pub expires_at: Expiry,
}

/// Someone who can write in a room's chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Participant {
    Moderator(ModeratorId),
    Guest(GuestId),
}

impl Participant {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s.split_once(':') {
            Some(("m", id)) => ModeratorId::parse(id).map(Participant::Moderator),
            Some(("g", id)) => GuestId::parse(id).map(Participant::Guest),
            _ => Err(ParseError::Invalid {
                field: "participant",
                reason: "not a participant reference",
            }),
        }
    }
}
impl fmt::Display for Participant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Participant::Moderator(id) => write!(f, "m:{id}"),
            Participant::Guest(id) => write!(f, "g:{id}"),
        }
    }
}
impl TryFrom<String> for Participant {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}
impl From<Participant> for String {
    fn from(p: Participant) -> String {
        p.to_string()
    }
}

/// Which chat of a room a message belongs to: the room chat, or the private conversation
/// of two participants (stored in one canonical order, so both parties see one thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Conversation {
    Room,
    Private(Participant, Participant),
}

impl Conversation {
    /// The private conversation between `a` and `b`; refuses a conversation with oneself.
    pub fn private(a: Participant, b: Participant) -> Result<Self, ParseError> {
        if a == b {
            return Err(ParseError::Invalid {
                field: "conversation",
                reason: "a private conversation needs two different participants",
            });
        }
        Ok(if a < b {
            Conversation::Private(a, b)
        } else {
            Conversation::Private(b, a)
        })
    }
    pub fn includes(&self, p: Participant) -> bool {
        match self {
            Conversation::Room => true,
            Conversation::Private(a, b) => *a == p || *b == p,
        }
    }
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s == "room" {
            return Ok(Conversation::Room);
        }
        let bad = ParseError::Invalid {
            field: "conversation",
            reason: "not a conversation",
        };
        let rest = s.strip_prefix("p/").ok_or(bad.clone())?;
        let (a, b) = rest.split_once('/').ok_or(bad.clone())?;
        let c = Conversation::private(Participant::parse(a)?, Participant::parse(b)?)?;
        if c.to_string() != s {
            return Err(bad);
        }
        Ok(c)
    }
}
impl fmt::Display for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conversation::Room => f.write_str("room"),
            Conversation::Private(a, b) => write!(f, "p/{a}/{b}"),
        }
    }
}
impl TryFrom<String> for Conversation {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}
impl From<Conversation> for String {
    fn from(c: Conversation) -> String {
        c.to_string()
    }
}

/// A chat message. It outlives the meeting and expires 6 months after it was posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatMessage {
    pub id: MessageId,
    pub room_id: RoomId,
    pub conversation: Conversation,
    pub author: Participant,
    pub body: ChatBody,
    pub idempotency_key: IdempotencyKey,
    pub expires_at: Expiry,
}

/// A stored chat message as the media node relays it live. The chat function signs it
/// after storing it, so a client can hand it to the node but cannot forge or alter one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedMessage {
    pub id: MessageId,
    pub conversation: Conversation,
    pub author: Participant,
    pub body: ChatBody,
    pub posted_at: Timestamp,
}

impl ChatMessage {
    pub fn posted_at(&self) -> Timestamp {
        self.id.posted_at()
    }
}

/// A request cookie as the access log records it: the name, and at most a keyed hash of
/// the value (never the value, so a log cannot leak a session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoggedCookie {
    pub name: String,
    pub keyed_hash: Option<String>,
}

/// One access-log entry with exactly the fields of the privacy notice (promise 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessLogEntry {
    pub id: AccessLogId,
    pub time: Timestamp,
    pub method: String,
    pub url: String,
    pub status: u16,
    pub bytes_sent: u64,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    pub host_id: String,
    pub forwarded_for: Option<String>,
    pub cookies: Vec<LoggedCookie>,
    pub expires_at: Expiry,
}

/// A moderator's login session. The session cookie names it; deleting it logs out
/// everywhere that cookie is used, at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub moderator_id: ModeratorId,
    /// The account's role when the session began, so a session check needs only this record.
    pub role: Role,
    /// The account's password was handed over (initial, set by an admin, reset by the
    /// operator) when the session began: until it is changed, the session may only change
    /// it, read the account and its data, and log out. Carried here so that the check
    /// needs no read of the account.
    #[serde(default)]
    pub must_change_password: bool,
    pub created_at: Timestamp,
    pub expires_at: Expiry,
}

/// What an admin did. Every admin action on someone's data is written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AuditAction {
    ProvisionModerator,
    ExportModerator,
    RestrictModerator,
    UnrestrictModerator,
    EraseModerator,
    ExportRoom,
    EraseRoom,
    AuthorityDisclosure,
    ResetPassword,
}

impl AuditAction {
    pub const ALL: [AuditAction; 9] = [
        AuditAction::ProvisionModerator,
        AuditAction::ExportModerator,
        AuditAction::RestrictModerator,
        AuditAction::UnrestrictModerator,
        AuditAction::EraseModerator,
        AuditAction::ExportRoom,
        AuditAction::EraseRoom,
        AuditAction::AuthorityDisclosure,
        AuditAction::ResetPassword,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::ProvisionModerator => "provision_moderator",
            AuditAction::ExportModerator => "export_moderator",
            AuditAction::RestrictModerator => "restrict_moderator",
            AuditAction::UnrestrictModerator => "unrestrict_moderator",
            AuditAction::EraseModerator => "erase_moderator",
            AuditAction::ExportRoom => "export_room",
            AuditAction::EraseRoom => "erase_room",
            AuditAction::AuthorityDisclosure => "authority_disclosure",
            AuditAction::ResetPassword => "reset_password",
        }
    }
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(ParseError::Invalid {
                field: "audit action",
                reason: "not an audit action",
            })
    }
}

/// One entry of the audit log: who did what to whose data, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: AuditId,
    pub time: Timestamp,
    pub actor: ModeratorId,
    pub action: AuditAction,
    /// The record acted on, e.g. `moderator:<id>` or `room:<id>`.
    pub target: String,
    pub reason: AuditReason,
    pub expires_at: Expiry,
}

/// A counter of attempts in one fixed window, for rate limits and lockout. The key is a
/// keyed hash of what is counted (an email, an address), never the value itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateKey(String);

impl RateKey {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:".contains(&b))
        {
            Ok(RateKey(s.to_owned()))
        } else {
            Err(ParseError::Invalid {
                field: "rate key",
                reason: "not a rate key",
            })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which bucket an object belongs to; each class has its own retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectClass {
    /// A data-subject export waiting for download.
    Export,
    /// Archived access-log entries.
    LogArchive,
}

impl ObjectClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            ObjectClass::Export => "export",
            ObjectClass::LogArchive => "log_archive",
        }
    }
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "export" => Ok(ObjectClass::Export),
            "log_archive" => Ok(ObjectClass::LogArchive),
            _ => Err(ParseError::Invalid {
                field: "object class",
                reason: "not an object class",
            }),
        }
    }
    pub fn expiry(self, created: Timestamp) -> Expiry {
        match self {
            ObjectClass::Export => retention::export_expiry(created),
            ObjectClass::LogArchive => retention::access_log_expiry(created),
        }
    }
}

/// An object key: slash-separated segments of letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = !s.is_empty()
            && s.len() <= 512
            && s.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            });
        if ok {
            Ok(ObjectKey(s.to_owned()))
        } else {
            Err(ParseError::Invalid {
                field: "object key",
                reason: "not a valid object key",
            })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for ObjectKey {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}
impl From<ObjectKey> for String {
    fn from(k: ObjectKey) -> String {
        k.0
    }
}

/// A stored object as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub class: ObjectClass,
    pub key: ObjectKey,
    pub content_type: String,
    pub body: Vec<u8>,
    pub created_at: Timestamp,
    pub expires_at: Expiry,
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn guest(n: u128) -> Participant {
        Participant::Guest(GuestId::from_uuid(Uuid::from_u128(n)))
    }

    #[test]
    fn a_private_conversation_is_the_same_whoever_starts_it() {
        let ab = Conversation::private(guest(1), guest(2));
        let ba = Conversation::private(guest(2), guest(1));
        assert_eq!(ab, ba);
        let c = ab.expect("two participants");
        assert!(c.includes(guest(1)) && c.includes(guest(2)) && !c.includes(guest(3)));
        assert_eq!(Conversation::parse(&c.to_string()), Ok(c));
    }

    #[test]
    fn nobody_has_a_private_conversation_with_themselves() {
        assert!(Conversation::private(guest(1), guest(1)).is_err());
    }

    #[test]
    fn conversations_parse_only_their_canonical_spelling() {
        assert_eq!(Conversation::parse("room"), Ok(Conversation::Room));
        let c = Conversation::private(guest(1), guest(2)).expect("two participants");
        let Conversation::Private(a, b) = c else {
            panic!("expected a private conversation")
        };
        assert!(Conversation::parse(&format!("p/{b}/{a}")).is_err());
        for bad in ["", "p/", "p/x/y", "Room", "p/g:1/g:2"] {
            assert!(Conversation::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn touching_a_room_pushes_its_expiry_six_months_from_the_last_use() {
        let t0 = Timestamp::from_secs(1_000);
        let mut room = Room {
            id: RoomId::from_uuid(Uuid::from_u128(1)),
            owner: ModeratorId::from_uuid(Uuid::from_u128(2)),
            name: RoomName::parse("Klasse 7b Mathe").expect("valid name"),
            settings: RoomSettings::default(),
            invite_token: InviteToken::from_random([1; 16]),
            created_at: t0,
            last_used_at: t0,
            expires_at: retention::history_expiry(t0),
        };
        let later = Timestamp::from_secs(5_000);
        room.touch(later);
        assert_eq!(room.expires_at, retention::history_expiry(later));
        room.touch(t0);
        assert_eq!(
            room.last_used_at, later,
            "a late, older touch never shortens the life"
        );
    }

    #[test]
    fn object_keys_refuse_traversal_and_odd_characters() {
        assert!(ObjectKey::parse("exports/abc/2026-11-27.json").is_ok());
        for bad in ["", "/abs", "a//b", "../etc", "a/./b", "a b", "a/ä"] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn password_hashes_must_be_argon2id_and_never_print() {
        let h = PasswordHash::parse("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").expect("phc");
        assert!(!format!("{h:?}").contains("argon2id"));
        assert!(PasswordHash::parse("secret").is_err());
    }
}
