//! The signalling protocol between a browser (or test client) and a media node: JSON text
//! frames over one WebSocket, each an object with a `type`. Version 1; the client names the
//! version in `join` and the node refuses versions it does not speak.
//!
//! A session: the client sends `join` with the grant the functions issued; the node answers
//! `welcome` (or `lobby` for a knocking guest). The client offers its media on the
//! *publish* peer connection (`publish_offer` → `publish_answer`); the node offers the
//! others' media on the *subscribe* peer connection (`subscribe_offer` → `subscribe_answer`)
//! and offers again whenever tracks come or go. Each side only ever offers on its own
//! connection, so offers never collide.

use aula_domain::services::GrantRole;
use aula_domain::{Participant, RoomId, RoomSettings};
use serde::{Deserialize, Serialize};

pub const PROTOCOL_VERSION: u32 = 1;
/// Larger frames are refused without being parsed. An SDP offer of a 30-person class is
/// well under this.
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// What a client's track carries; the client names it for each `mid` it publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Microphone,
    Camera,
    Screen,
}

impl Source {
    pub fn is_audio(self) -> bool {
        self == Source::Microphone
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedTrack {
    pub mid: String,
    pub source: Source,
}

/// Which of the client's two peer connections a candidate belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    Publish,
    Subscribe,
}

/// A frame from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// The first frame: the join grant from `POST /api/rooms/{room}/join`.
    Join {
        v: u32,
        room: RoomId,
        grant: String,
    },
    PublishOffer {
        sdp: String,
        tracks: Vec<PublishedTrack>,
        /// The offer is from a new publish connection that replaces the old one (the old one
        /// is closed). Browsers sending simulcast do this instead of renegotiating: after a
        /// renegotiation `rtc` forgets which stream is which layer, and browsers no longer
        /// name the layers in their packets.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        restart: bool,
    },
    SubscribeAnswer {
        sdp: String,
    },
    Candidate {
        connection: Connection,
        candidate: String,
    },
    /// Turns one's own microphone off or on (also after a moderator muted one).
    SetMuted {
        muted: bool,
    },
    RaiseHand {
        raised: bool,
    },
    /// A message the chat function stored and signed (`relay` of its response).
    Chat {
        relay: String,
    },
    /// The subscriber lost video of this participant and asks for a fresh keyframe.
    RequestKeyframe {
        participant: Participant,
    },
    Admit {
        participant: Participant,
    },
    Deny {
        participant: Participant,
    },
    Mute {
        participant: Participant,
    },
    Remove {
        participant: Participant,
    },
    /// Lowers someone's raised hand (the teacher took the question, or lowers all at once).
    LowerHand {
        participant: Participant,
    },
    EndMeeting,
    Leave,
    /// Asks for a `pong`. A hung node closes nothing and its WebSocket stays open, so a
    /// page that has heard nothing from its node for a few seconds gives it up.
    Ping,
}

/// Someone in the meeting, as the others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub participant: Participant,
    pub name: String,
    pub role: GrantRole,
    pub muted: bool,
    pub hand_raised: bool,
    pub sharing_screen: bool,
}

/// Which remote participant and source a `mid` of the subscribe connection carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedTrack {
    pub mid: String,
    pub participant: Participant,
    pub source: Source,
}

/// A connection's quality as the node sees it (see `ServerMessage::ConnectionQuality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Good,
    /// Some loss, or the downlink carries less than half of what the layout wants.
    Fair,
    /// Heavy loss, or a video paused for lack of downlink.
    Poor,
}

/// Why the node closed the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Farewell {
    /// A moderator removed you; this grant is refused from now on.
    Removed,
    /// A moderator turned your knock down.
    Denied,
    /// A moderator ended the meeting for everyone.
    Ended,
    /// You joined again elsewhere (another tab or a reconnect).
    Replaced,
}

/// A frame from the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        v: u32,
        you: Participant,
        role: GrantRole,
        settings: RoomSettings,
        participants: Vec<PeerInfo>,
        /// Video of at most this many recent speakers is forwarded.
        last_n: usize,
    },
    /// You knocked; a moderator has been told. Wait for `welcome` (admitted) or a farewell.
    Lobby,
    /// To moderators: someone is knocking.
    Knock {
        participant: Participant,
        name: String,
    },
    /// To moderators: a knock was answered or withdrawn.
    KnockEnded {
        participant: Participant,
    },
    ParticipantJoined {
        peer: PeerInfo,
    },
    ParticipantUpdated {
        peer: PeerInfo,
    },
    ParticipantLeft {
        participant: Participant,
    },
    PublishAnswer {
        sdp: String,
    },
    SubscribeOffer {
        sdp: String,
        tracks: Vec<ForwardedTrack>,
    },
    /// A moderator muted you: the node no longer forwards your audio until you unmute.
    Muted {
        by: Participant,
    },
    /// The loudest speaker, and whose video is forwarded (the last N speakers).
    Speakers {
        active: Option<Participant>,
        video: Vec<Participant>,
    },
    Chat {
        message: aula_domain::RelayedMessage,
    },
    /// A video you get is paused (`paused: true`) because your connection does not carry
    /// even its smallest layer next to the audio and the videos before it, or resumed.
    VideoPaused {
        participant: Participant,
        source: Source,
        paused: bool,
    },
    /// How well a participant's connection carries the meeting, from the node's view (loss
    /// on the way to the node and back, the downlink estimate against what the layout
    /// wants, paused video). To moderators about everyone, to each participant about
    /// themselves; when it changes, at most every 2 s per participant. Until the first
    /// one a connection counts as good.
    ConnectionQuality {
        participant: Participant,
        quality: Quality,
        /// The node paused a video for them: their connection does not carry it.
        video_paused: bool,
    },
    /// The node is shutting down: get a new grant and join again (you will be placed on
    /// another node).
    Move,
    /// The answer to `ping`, from the media loop (so a stuck loop is noticed too).
    Pong,
    Bye {
        reason: Farewell,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Machine-readable reasons in `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, an unknown type, a missing field, or too large.
    BadFrame,
    /// The node speaks another protocol version.
    UnsupportedVersion,
    /// The grant is invalid, expired, for another room, or refused.
    BadGrant,
    /// Send `join` first (or only once).
    NotJoined,
    /// Only a moderator may do that.
    Forbidden,
    /// The room's settings do not allow it (e.g. a guest sharing the screen).
    NotAllowed,
    /// The SDP or candidate could not be applied.
    BadSdp,
    /// The chat token is invalid, expired, or not yours.
    BadChat,
    /// The chat message was already delivered: a relay token delivers its message once.
    AlreadyDelivered,
    /// No such participant in this meeting.
    UnknownParticipant,
    /// The node is draining and takes no new participants.
    Draining,
    /// The node is full.
    Full,
}

/// Parses a text frame, refusing oversized ones before looking inside.
pub fn parse_client_frame(frame: &str) -> Result<ClientMessage, (ErrorCode, String)> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err((
            ErrorCode::BadFrame,
            format!("frames are at most {MAX_FRAME_BYTES} bytes"),
        ));
    }
    serde_json::from_str(frame).map_err(|e| (ErrorCode::BadFrame, e.to_string()))
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising our own enum of strings, numbers and ids cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }
}
