//! Identifiers. Ids are random (made by the [`IdGenerator`] port), parsed at the edge,
//! and never guessable; ids of different things are different types.

use crate::{ParseError, Timestamp};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_uuid(u: Uuid) -> Self {
                $name(u)
            }
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                // Only the canonical lowercase hyphenated form, so one id has one spelling.
                let u = Uuid::try_parse(s).map_err(|_| ParseError::Invalid {
                    field: $field,
                    reason: "not an id",
                })?;
                if u.hyphenated().to_string() != s {
                    return Err(ParseError::Invalid { field: $field, reason: "not an id" });
                }
                Ok($name(u))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, ParseError> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }
    };
}

uuid_id!(
    /// A moderator's (teacher's or admin's) account.
    ModeratorId,
    "moderator id"
);
uuid_id!(
    /// A room.
    RoomId,
    "room id"
);
uuid_id!(
    /// A guest of one room.
    GuestId,
    "guest id"
);
uuid_id!(
    /// A past (or running) meeting of a room.
    MeetingId,
    "meeting id"
);
uuid_id!(
    /// A meeting a teacher has scheduled.
    ScheduleId,
    "schedule id"
);
/// A media node: a UUID (a node started by hand, or in-process in the local portal) or the
/// EC2 instance ARN of a fleet node (whose role may write only the registry item named by
/// its own ARN). Stored inline so it stays `Copy` like the other ids.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String))]
pub struct NodeId(Inline);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Inline {
    len: u8,
    bytes: [u8; NodeId::MAX_LEN],
}

impl NodeId {
    /// Longer than any instance ARN (about 80 characters in the longest partition).
    pub const MAX_LEN: usize = 112;

    pub fn from_uuid(u: Uuid) -> Self {
        Self::inline(&u.hyphenated().to_string())
    }

    fn inline(s: &str) -> Self {
        let mut bytes = [0u8; Self::MAX_LEN];
        let len = s.len().min(Self::MAX_LEN);
        bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        NodeId(Inline {
            len: len as u8,
            bytes,
        })
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let canonical_uuid = Uuid::try_parse(s).is_ok_and(|u| u.hyphenated().to_string() == s);
        if canonical_uuid || is_instance_arn(s) {
            Ok(Self::inline(s))
        } else {
            Err(ParseError::Invalid {
                field: "node id",
                reason: "neither an id nor an EC2 instance ARN",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from a parsed, ASCII string.
        std::str::from_utf8(&self.0.bytes[..usize::from(self.0.len)]).unwrap_or("")
    }
}

/// `arn:<partition>:ec2:<region>:<12-digit account>:instance/i-<8 or 17 hex digits>`.
fn is_instance_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return false;
    };
    let instance = resource.strip_prefix("instance/i-").unwrap_or_default();
    *arn == "arn"
        && matches!(*partition, "aws" | "aws-cn" | "aws-us-gov")
        && *service == "ec2"
        && !region.is_empty()
        && region.len() <= 32
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && (instance.len() == 8 || instance.len() == 17)
        && instance
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.as_str())
    }
}
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl FromStr for NodeId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}
impl TryFrom<String> for NodeId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}
impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.as_str().to_owned()
    }
}
uuid_id!(
    /// One access-log entry.
    AccessLogId,
    "access log id"
);

uuid_id!(
    /// A moderator's login session (revoked by deleting it).
    SessionId,
    "session id"
);
uuid_id!(
    /// One audit-log entry.
    AuditId,
    "audit id"
);

/// A chat message's id. It carries the instant the message was posted, so that ids sort
/// in posting order and the id alone locates the message in its conversation; it doubles
/// as the cursor for history pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId {
    posted_at: Timestamp,
    nonce: Uuid,
}

impl MessageId {
    pub const fn new(posted_at: Timestamp, nonce: Uuid) -> Self {
        MessageId { posted_at, nonce }
    }
    pub const fn posted_at(&self) -> Timestamp {
        self.posted_at
    }
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const BAD: ParseError = ParseError::Invalid {
            field: "message id",
            reason: "not a message id",
        };
        let (ms, nonce) = s.split_once('-').ok_or(BAD)?;
        if ms.len() != 15 || !ms.bytes().all(|b| b.is_ascii_digit()) || nonce.len() != 32 {
            return Err(BAD);
        }
        let ms: i64 = ms.parse().map_err(|_| BAD)?;
        let nonce = Uuid::try_parse(nonce).map_err(|_| BAD)?;
        let id = MessageId::new(Timestamp::from_millis(ms), nonce);
        if id.to_string() != s {
            return Err(BAD);
        }
        Ok(id)
    }
}

impl fmt::Display for MessageId {
    // Fixed-width milliseconds, so the string order is the posting order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:015}-{}",
            self.posted_at.millis().max(0),
            self.nonce.simple()
        )
    }
}
impl FromStr for MessageId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}
impl TryFrom<String> for MessageId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}
impl From<MessageId> for String {
    fn from(id: MessageId) -> String {
        id.to_string()
    }
}

/// The secret part of a room's invite link (`/j/<token>`): 128 random bits, base64url.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String))]
pub struct InviteToken(String);

impl InviteToken {
    /// Characters in a token: 16 bytes in base64url without padding.
    pub const LEN: usize = 22;
    /// Builds a token from 16 random bytes (the id generator's job).
    pub fn from_random(bytes: [u8; 16]) -> Self {
        InviteToken(URL_SAFE_NO_PAD.encode(bytes))
    }
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() == Self::LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            Ok(InviteToken(s.to_owned()))
        } else {
            Err(ParseError::Invalid {
                field: "invite link",
                reason: "not an invite token",
            })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for InviteToken {
    // The token admits people to a room: keep it out of debug output and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteToken(..)")
    }
}
impl TryFrom<String> for InviteToken {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}
impl From<InviteToken> for String {
    fn from(t: InviteToken) -> String {
        t.0
    }
}

/// A client-chosen key that makes a retried chat post land only once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String))]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 64;
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const FIELD: &str = "idempotency key";
        if s.len() < Self::MIN_LEN {
            return Err(ParseError::TooShort {
                field: FIELD,
                min: Self::MIN_LEN,
            });
        }
        if s.len() > Self::MAX_LEN {
            return Err(ParseError::TooLong {
                field: FIELD,
                max: Self::MAX_LEN,
            });
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ParseError::Invalid {
                field: FIELD,
                reason: "only letters, digits, '-' and '_'",
            });
        }
        Ok(IdempotencyKey(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for IdempotencyKey {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}
impl From<IdempotencyKey> for String {
    fn from(k: IdempotencyKey) -> String {
        k.0
    }
}

/// The id-generation port: random ids and tokens come from outside the domain.
pub trait IdGenerator: Send + Sync {
    fn uuid(&self) -> Uuid;
    fn random_16(&self) -> [u8; 16];

    fn moderator_id(&self) -> ModeratorId {
        ModeratorId::from_uuid(self.uuid())
    }
    fn room_id(&self) -> RoomId {
        RoomId::from_uuid(self.uuid())
    }
    fn guest_id(&self) -> GuestId {
        GuestId::from_uuid(self.uuid())
    }
    fn meeting_id(&self) -> MeetingId {
        MeetingId::from_uuid(self.uuid())
    }
    fn schedule_id(&self) -> ScheduleId {
        ScheduleId::from_uuid(self.uuid())
    }
    fn node_id(&self) -> NodeId {
        NodeId::from_uuid(self.uuid())
    }
    fn access_log_id(&self) -> AccessLogId {
        AccessLogId::from_uuid(self.uuid())
    }
    fn session_id(&self) -> SessionId {
        SessionId::from_uuid(self.uuid())
    }
    fn audit_id(&self) -> AuditId {
        AuditId::from_uuid(self.uuid())
    }
    fn message_id(&self, posted_at: Timestamp) -> MessageId {
        MessageId::new(posted_at, self.uuid())
    }
    fn invite_token(&self) -> InviteToken {
        InviteToken::from_random(self.random_16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_their_canonical_form() {
        let s = "0b7e4a0c-58a4-4c4f-9d55-2f1c7e0a9b11";
        assert_eq!(RoomId::parse(s).map(|r| r.to_string()), Ok(s.to_owned()));
        for bad in [
            "",
            "0B7E4A0C-58A4-4C4F-9D55-2F1C7E0A9B11",
            "0b7e4a0c58a44c4f9d552f1c7e0a9b11",
            "{0b7e4a0c-58a4-4c4f-9d55-2f1c7e0a9b11}",
            "room-1",
            &"a".repeat(10_000),
        ] {
            assert!(RoomId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn message_ids_sort_in_posting_order_and_round_trip() {
        let a = MessageId::new(Timestamp::from_millis(999), Uuid::from_u128(u128::MAX));
        let b = MessageId::new(Timestamp::from_millis(1_000), Uuid::from_u128(0));
        assert!(a.to_string() < b.to_string());
        assert!(a < b);
        assert_eq!(MessageId::parse(&a.to_string()), Ok(a));
        for bad in [
            "",
            "1-2",
            "000000000001000-zz",
            "00000000000100x-00000000000000000000000000000000",
        ] {
            assert!(MessageId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn invite_tokens_are_22_url_safe_characters_and_hidden_from_debug_output() {
        let t = InviteToken::from_random([0xfb; 16]);
        assert_eq!(t.as_str().len(), 22);
        assert_eq!(InviteToken::parse(t.as_str()), Ok(t.clone()));
        assert!(!format!("{t:?}").contains(t.as_str()));
        assert!(InviteToken::parse("short").is_err());
        assert!(InviteToken::parse("aaaaaaaaaaaaaaaaaaaa/=").is_err());
    }

    #[test]
    fn idempotency_keys_refuse_short_long_and_odd_keys() {
        assert!(IdempotencyKey::parse("abcd-1234").is_ok());
        assert!(IdempotencyKey::parse("abc").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(65)).is_err());
        assert!(IdempotencyKey::parse("abcd 1234").is_err());
    }

    #[test]
    fn a_node_is_named_by_an_id_or_by_its_ec2_instance_arn() {
        let arn = "arn:aws:ec2:eu-central-1:123456789012:instance/i-0abc123def4567890";
        assert_eq!(
            NodeId::parse(arn).map(|n| n.to_string()),
            Ok(arn.to_owned())
        );
        let id = Uuid::from_u128(7);
        assert_eq!(NodeId::parse(&id.to_string()), Ok(NodeId::from_uuid(id)));
        for bad in [
            "",
            "i-0abc123def4567890",
            "arn:aws:ec2:eu-central-1:123456789012:instance/i-0ABC123DEF4567890",
            "arn:aws:ec2:eu-central-1:1234:instance/i-0abc123def4567890",
            "arn:aws:s3:::bucket",
            "arn:aws:ec2:eu-central-1:123456789012:volume/vol-0abc123def4567890",
            "00000000-0000-0000-0000-00000000000A",
        ] {
            assert!(NodeId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
