//! The data inventory: every kind of record Aula stores, its fields, whose data it is,
//! why it is kept and for how long. It is the single source for the privacy page and the
//! data export, and the adapters' tests fail when a store holds a field not declared here.

use crate::retention;
use serde::Serialize;

/// The kinds of stored record. `name()` is the value of the `kind` attribute in DynamoDB
/// and the table name in the embedded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Moderator,
    ModeratorEmail,
    Room,
    Guest,
    Meeting,
    ChatMessage,
    ChatIdempotency,
    AccessLog,
    MediaNode,
    Object,
    Session,
    Audit,
    RateCounter,
    Placement,
    AdmissionQueue,
    RoomTicket,
    ScheduledMeeting,
}

/// Whose personal data a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Moderator,
    Guest,
    /// Participants of a room: moderators and guests.
    Participants,
    /// Anyone who sends a request to the portal.
    Visitor,
    /// No personal data (infrastructure).
    Nobody,
}

/// The purposes the privacy notice allows (promise 6). There is no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    OperatingTheService,
    AbuseDetectionAndAttackDefence,
    FaultAnalysis,
    DisclosureToAuthoritiesOnLegalRequest,
}

/// How long a record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Retention {
    /// Until the account is erased (by its owner or an admin).
    UntilErased,
    /// A fixed span after the record's last use (its `expires_at` moves with each use).
    AfterLastUse { seconds: i64 },
    /// A fixed span after the record was written.
    AfterCreation { seconds: i64 },
    /// Seconds after the last heartbeat.
    AfterHeartbeat { seconds: i64 },
    /// A fixed span after the scheduled end of what the record plans.
    AfterScheduledEnd { seconds: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FieldSpec {
    pub name: &'static str,
    pub meaning: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RecordSpec {
    pub kind: RecordKind,
    pub description: &'static str,
    pub subject: Subject,
    pub purposes: &'static [Purpose],
    pub retention: Retention,
    pub fields: &'static [FieldSpec],
}

impl RecordKind {
    pub const ALL: [RecordKind; 17] = [
        RecordKind::Moderator,
        RecordKind::ModeratorEmail,
        RecordKind::Room,
        RecordKind::Guest,
        RecordKind::Meeting,
        RecordKind::ChatMessage,
        RecordKind::ChatIdempotency,
        RecordKind::AccessLog,
        RecordKind::MediaNode,
        RecordKind::Object,
        RecordKind::Session,
        RecordKind::Audit,
        RecordKind::RateCounter,
        RecordKind::Placement,
        RecordKind::AdmissionQueue,
        RecordKind::RoomTicket,
        RecordKind::ScheduledMeeting,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::Moderator => "moderator",
            RecordKind::ModeratorEmail => "moderator_email",
            RecordKind::Room => "room",
            RecordKind::Guest => "guest",
            RecordKind::Meeting => "meeting",
            RecordKind::ChatMessage => "chat_message",
            RecordKind::ChatIdempotency => "chat_idempotency",
            RecordKind::AccessLog => "access_log",
            RecordKind::MediaNode => "media_node",
            RecordKind::Object => "object",
            RecordKind::Session => "session",
            RecordKind::Audit => "audit",
            RecordKind::RateCounter => "rate_counter",
            RecordKind::Placement => "placement",
            RecordKind::AdmissionQueue => "admission_queue",
            RecordKind::RoomTicket => "room_ticket",
            RecordKind::ScheduledMeeting => "scheduled_meeting",
        }
    }

    pub fn from_name(name: &str) -> Option<RecordKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn spec(self) -> &'static RecordSpec {
        // INVENTORY lists the kinds in `ALL` order; the test below keeps it so.
        &INVENTORY[self as usize]
    }

    pub fn declares(self, field: &str) -> bool {
        self.spec().fields.iter().any(|f| f.name == field)
    }
}

const fn f(name: &'static str, meaning: &'static str) -> FieldSpec {
    FieldSpec { name, meaning }
}

const EXPIRES_AT: FieldSpec = f(
    "expires_at",
    "when the record is deleted; it is never served from then on",
);
const HISTORY: Retention = Retention::AfterLastUse {
    seconds: retention::HISTORY.whole_seconds(),
};
const OPERATION: &[Purpose] = &[Purpose::OperatingTheService];

/// Every record Aula stores, in [`RecordKind::ALL`] order.
pub const INVENTORY: &[RecordSpec] = &[
    RecordSpec {
        kind: RecordKind::Moderator,
        description: "a moderator's (teacher's) or admin's account",
        subject: Subject::Moderator,
        purposes: &[
            Purpose::OperatingTheService,
            Purpose::DisclosureToAuthoritiesOnLegalRequest,
        ],
        retention: Retention::UntilErased,
        fields: &[
            f("id", "random account id"),
            f("last_name", "last name"),
            f("first_name", "first name"),
            f("email", "email address, used to log in"),
            f(
                "federal_state",
                "federal state (one of the 16 Bundesländer)",
            ),
            f("organisation", "school, institute or authority"),
            f("role", "moderator or admin"),
            f("status", "active or restricted (blocked)"),
            f(
                "password_hash",
                "Argon2id hash of the password (never the password)",
            ),
            f(
                "must_change_password",
                "whether the password was handed over by someone else and must be changed at the next login",
            ),
            f("created_at", "when the account was created"),
        ],
    },
    RecordSpec {
        kind: RecordKind::ModeratorEmail,
        description: "the claim that keeps one account per email address",
        subject: Subject::Moderator,
        purposes: OPERATION,
        retention: Retention::UntilErased,
        fields: &[
            f("email", "email address"),
            f("moderator_id", "the account that holds the address"),
        ],
    },
    RecordSpec {
        kind: RecordKind::Room,
        description: "a moderator's room with its settings and invite link",
        subject: Subject::Moderator,
        purposes: OPERATION,
        retention: HISTORY,
        fields: &[
            f("id", "random room id"),
            f("owner", "the moderator who owns the room"),
            f("name", "the room's name"),
            f("lobby", "whether guests wait in a lobby"),
            f("guests_may_share_screen", "setting"),
            f("guests_may_send_video", "setting"),
            f("mute_on_join", "setting"),
            f(
                "expected_participants",
                "how many the teacher expects in the room's meetings (seats reserved for it)",
            ),
            f("invite_token", "the secret of the invite link"),
            f("created_at", "when the room was created"),
            f("last_used_at", "when the room was last used"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::Guest,
        description: "a guest of a room: the self-chosen nickname only",
        subject: Subject::Guest,
        purposes: OPERATION,
        retention: HISTORY,
        fields: &[
            f("id", "random guest id"),
            f("room_id", "the room the guest joined"),
            f("nickname", "the self-chosen nickname"),
            f("admission", "waiting in the lobby, admitted or denied"),
            f("created_at", "when the guest first joined"),
            f("last_used_at", "when the guest last joined"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::Meeting,
        description: "a past meeting of a room: times and peak participant count, no names",
        subject: Subject::Nobody,
        purposes: &[Purpose::OperatingTheService, Purpose::FaultAnalysis],
        retention: HISTORY,
        fields: &[
            f("id", "random meeting id"),
            f("room_id", "the room"),
            f("started_at", "when the first participant joined"),
            f("ended_at", "when the last participant left"),
            f("peak_participants", "the most participants at once"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::ChatMessage,
        description: "a message in a room chat or a private conversation of two participants",
        subject: Subject::Participants,
        purposes: OPERATION,
        retention: Retention::AfterCreation {
            seconds: retention::HISTORY.whole_seconds(),
        },
        fields: &[
            f("id", "message id, including when it was posted"),
            f("room_id", "the room"),
            f(
                "conversation",
                "the room chat or the two parties of a private conversation",
            ),
            f("author", "the participant who wrote it"),
            f("body", "the text"),
            f(
                "idempotency_key",
                "the sender's key that keeps a retried post from being stored twice",
            ),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::ChatIdempotency,
        description: "the marker that makes a retried chat post land only once",
        subject: Subject::Participants,
        purposes: OPERATION,
        retention: Retention::AfterCreation {
            seconds: retention::HISTORY.whole_seconds(),
        },
        fields: &[
            f("room_id", "the room"),
            f("author", "the participant who posted"),
            f("idempotency_key", "the sender's key"),
            f("message_id", "the message the key produced"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::AccessLog,
        description: "one entry per HTTP request",
        subject: Subject::Visitor,
        purposes: &[
            Purpose::AbuseDetectionAndAttackDefence,
            Purpose::FaultAnalysis,
            Purpose::DisclosureToAuthoritiesOnLegalRequest,
        ],
        retention: Retention::AfterCreation {
            seconds: retention::ACCESS_LOG.whole_seconds(),
        },
        fields: &[
            f("id", "random entry id"),
            f("time", "date and time of the request"),
            f("method", "request method"),
            f("url", "requested URL"),
            f("status", "response status"),
            f("bytes_sent", "bytes sent"),
            f("referrer", "referrer"),
            f("user_agent", "user agent"),
            f("host_id", "internal id of the host that answered"),
            f("forwarded_for", "X-Forwarded-For"),
            f(
                "cookies",
                "names of the request cookies, with at most a keyed hash of a value, never the value",
            ),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::MediaNode,
        description: "a media node's registration and heartbeat",
        subject: Subject::Nobody,
        purposes: OPERATION,
        retention: Retention::AfterHeartbeat {
            seconds: retention::NODE_HEARTBEAT.whole_seconds(),
        },
        fields: &[
            f("id", "node id"),
            f("address", "where clients reach the node"),
            f("capacity", "participants the node takes at most"),
            f("load", "participants connected"),
            f(
                "reserved",
                "seats reserved for the rooms placed on the node",
            ),
            f("last_heartbeat", "when the node last reported"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::Object,
        description: "a stored file: a data export waiting for download (1 day) or an access-log archive (30 days)",
        subject: Subject::Participants,
        purposes: &[
            Purpose::OperatingTheService,
            Purpose::AbuseDetectionAndAttackDefence,
            Purpose::DisclosureToAuthoritiesOnLegalRequest,
        ],
        retention: Retention::AfterCreation {
            seconds: retention::ACCESS_LOG.whole_seconds(),
        },
        fields: &[
            f("class", "export or log archive"),
            f("key", "the object's name"),
            f("content_type", "media type"),
            f("body", "the content"),
            f("created_at", "when it was written"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::Session,
        description: "a moderator's login session; logging out or a restriction deletes it",
        subject: Subject::Moderator,
        purposes: &[
            Purpose::OperatingTheService,
            Purpose::AbuseDetectionAndAttackDefence,
        ],
        retention: Retention::AfterLastUse {
            seconds: retention::SESSION.whole_seconds(),
        },
        fields: &[
            f("id", "random session id"),
            f("moderator_id", "the account"),
            f("role", "the account's role"),
            f(
                "must_change_password",
                "whether the password was handed over and must be changed before anything else",
            ),
            f("created_at", "when the login happened"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::Audit,
        description: "an admin's action on someone's data: who, what, when and why; admins cannot erase it",
        subject: Subject::Moderator,
        purposes: &[
            Purpose::DisclosureToAuthoritiesOnLegalRequest,
            Purpose::AbuseDetectionAndAttackDefence,
        ],
        retention: Retention::AfterCreation {
            seconds: retention::AUDIT.whole_seconds(),
        },
        fields: &[
            f("id", "random entry id"),
            f("time", "when"),
            f("actor", "the admin who acted"),
            f("action", "what was done"),
            f("target", "the record acted on"),
            f("reason", "why, as the admin gave it"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::RateCounter,
        description: "a count of failed logins in a window (login throttling): per account and source for a day, per address for 15 minutes; keyed by a keyed hash of the email, address or device cookie, never the value",
        subject: Subject::Visitor,
        purposes: &[Purpose::AbuseDetectionAndAttackDefence],
        retention: Retention::AfterCreation {
            seconds: retention::THROTTLE_WINDOW.whole_seconds(),
        },
        fields: &[
            f("key", "keyed hash of what is counted"),
            f("window_start", "start of the window"),
            f("count", "attempts in the window"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::Placement,
        description: "which media node a room's meetings run on and the seats reserved for it there; the seat holders are cleared when the meeting ends",
        subject: Subject::Participants,
        purposes: OPERATION,
        retention: Retention::AfterLastUse {
            seconds: retention::PLACEMENT.whole_seconds(),
        },
        fields: &[
            f("room_id", "the room"),
            f("node_id", "the media node"),
            f(
                "placed_at",
                "when the room was placed (or the placement last renewed)",
            ),
            f("seats", "seats reserved for the room on the node"),
            f(
                "holders",
                "the participant ids that were granted a seat in the current meeting",
            ),
            f("reserved_at", "when a seat was last taken"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::AdmissionQueue,
        description: "the admission queue's counters when every media node is full: how many places were handed out to rooms and the highest let in",
        subject: Subject::Nobody,
        purposes: OPERATION,
        retention: Retention::AfterLastUse {
            seconds: retention::ADMISSION_QUEUE.whole_seconds(),
        },
        fields: &[
            f("queue", "which queue (there is one: the media nodes')"),
            f("issued", "the highest place number handed out"),
            f(
                "admitted_through",
                "the place number up to which every place was let in",
            ),
            f("entered", "place numbers above that already let in"),
            f("moved_at", "when a place was last let in"),
            f(
                "capacity_seen_at",
                "when a waiting page first saw a free seat since then",
            ),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::RoomTicket,
        description: "a room's place in the admission queue while every media node is full: the room and its number, nothing about who waits",
        subject: Subject::Nobody,
        purposes: OPERATION,
        retention: Retention::AfterLastUse {
            seconds: retention::ROOM_TICKET.whole_seconds(),
        },
        fields: &[
            f("room_id", "the room"),
            f("number", "its place number"),
            f(
                "first_ahead",
                "places ahead when it was taken (for the estimate)",
            ),
            f("issued_at", "when it was taken"),
            EXPIRES_AT,
        ],
    },
    RecordSpec {
        kind: RecordKind::ScheduledMeeting,
        description: "a meeting a teacher has scheduled in a room: when, how long and how many are expected (seats are reserved for it, and it counts in the operator's forecast); no names",
        subject: Subject::Moderator,
        purposes: OPERATION,
        retention: Retention::AfterScheduledEnd {
            seconds: retention::SCHEDULE.whole_seconds(),
        },
        fields: &[
            f("id", "random id"),
            f("room_id", "the room"),
            f("owner", "the teacher who scheduled it"),
            f("starts_at", "when it begins"),
            f("minutes", "how long it is planned to last"),
            f("expected_participants", "how many are expected"),
            f("created_at", "when it was scheduled"),
            EXPIRES_AT,
        ],
    },
];

/// Where in the browser an item lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BrowserStorage {
    /// Set by the server, HttpOnly (scripts cannot read it), Secure, SameSite.
    Cookie,
    /// Written by the frontend's scripts (`localStorage`).
    LocalStorage,
}

/// One thing Aula keeps in the browser (promise 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BrowserItem {
    pub name: &'static str,
    pub storage: BrowserStorage,
    pub description: &'static str,
    pub purposes: &'static [Purpose],
    /// How long the browser keeps it, in seconds; `None` for local storage, which stays
    /// until the user clears it.
    pub lifetime_seconds: Option<i64>,
}

/// Everything Aula keeps in the browser: the privacy page lists it. Never a password.
pub const BROWSER_STORAGE: &[BrowserItem] = &[
    BrowserItem {
        name: "aula_session",
        storage: BrowserStorage::Cookie,
        description: "a teacher's login session (a signed session id); logging out ends it",
        purposes: &[
            Purpose::OperatingTheService,
            Purpose::AbuseDetectionAndAttackDefence,
        ],
        lifetime_seconds: Some(retention::SESSION.whole_seconds()),
    },
    BrowserItem {
        name: "aula_guest",
        storage: BrowserStorage::Cookie,
        description: "a guest's admission to one room (a signed guest id)",
        purposes: OPERATION,
        lifetime_seconds: Some(retention::GUEST_GRANT.whole_seconds()),
    },
    BrowserItem {
        name: "aula_device",
        storage: BrowserStorage::Cookie,
        description: "known device: set at a successful login, a random number with a keyed hash that ties it to the account (no email, nothing stored on the server); a device that has it is not held up by the login limits that strangers' failed attempts set off; sent only to the login",
        purposes: &[Purpose::AbuseDetectionAndAttackDefence],
        lifetime_seconds: Some(retention::KNOWN_DEVICE.whole_seconds()),
    },
    BrowserItem {
        name: "aula.lang",
        storage: BrowserStorage::LocalStorage,
        description: "the chosen language",
        purposes: OPERATION,
        lifetime_seconds: None,
    },
    BrowserItem {
        name: "aula.nickname",
        storage: BrowserStorage::LocalStorage,
        description: "the nickname last used to join, to suggest it again; removed when an account is erased in this browser",
        purposes: OPERATION,
        lifetime_seconds: None,
    },
    BrowserItem {
        name: "aula.chat.<person>.<room>",
        storage: BrowserStorage::LocalStorage,
        description: "per person: a cache of the room's recent chat messages; a message the server no longer has leaves it the next time the meeting opens, nothing older than the server's retention is kept, and it is emptied at logout and erasure",
        purposes: OPERATION,
        lifetime_seconds: Some(retention::HISTORY.whole_seconds()),
    },
    BrowserItem {
        name: "aula.meetings.<room>",
        storage: BrowserStorage::LocalStorage,
        description: "per room: the list of past meetings (teachers); replaced by the server's list whenever it answers, emptied at logout, erasure and when the room is deleted",
        purposes: OPERATION,
        lifetime_seconds: Some(retention::HISTORY.whole_seconds()),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_keeps_no_password_and_every_cookie_is_declared() {
        let cookies: Vec<_> = BROWSER_STORAGE
            .iter()
            .filter(|b| b.storage == BrowserStorage::Cookie)
            .map(|b| b.name)
            .collect();
        assert_eq!(cookies, ["aula_session", "aula_guest", "aula_device"]);
        for b in BROWSER_STORAGE {
            assert!(!b.name.contains("pass") && !b.description.contains("password"));
        }
        let device = BROWSER_STORAGE
            .iter()
            .find(|b| b.name == "aula_device")
            .expect("declared");
        assert_eq!(device.lifetime_seconds, Some(90 * 24 * 3600));
        assert_eq!(device.purposes, &[Purpose::AbuseDetectionAndAttackDefence]);
    }

    #[test]
    fn every_record_kind_is_declared_once_in_order() {
        assert_eq!(INVENTORY.len(), RecordKind::ALL.len());
        for (i, kind) in RecordKind::ALL.into_iter().enumerate() {
            assert_eq!(INVENTORY[i].kind, kind);
            assert_eq!(RecordKind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn guests_are_stored_with_a_nickname_and_no_contact_or_real_name() {
        let guest = RecordKind::Guest.spec();
        assert!(RecordKind::Guest.declares("nickname"));
        for forbidden in ["email", "first_name", "last_name", "ip", "user_agent"] {
            assert!(!guest.fields.iter().any(|f| f.name == forbidden));
        }
    }

    #[test]
    fn moderators_are_stored_with_the_notices_fields_and_a_credential_only() {
        let names: Vec<_> = RecordKind::Moderator
            .spec()
            .fields
            .iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "id",
                "last_name",
                "first_name",
                "email",
                "federal_state",
                "organisation",
                "role",
                "status",
                "password_hash",
                "must_change_password",
                "created_at"
            ]
        );
    }

    #[test]
    fn history_lives_183_days_and_access_logs_30() {
        assert_eq!(
            RecordKind::Room.spec().retention,
            Retention::AfterLastUse {
                seconds: 183 * 86_400
            }
        );
        assert_eq!(
            RecordKind::AccessLog.spec().retention,
            Retention::AfterCreation {
                seconds: 30 * 86_400
            }
        );
    }

    #[test]
    fn every_expiring_record_declares_its_expiry() {
        for spec in INVENTORY {
            let expires = spec.retention != Retention::UntilErased;
            assert_eq!(spec.kind.declares("expires_at"), expires, "{:?}", spec.kind);
        }
    }
}
