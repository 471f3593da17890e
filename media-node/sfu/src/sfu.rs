//! The SFU as a state machine. Input ([`Input`]): signalling frames from connections
//! (already parsed; grants and chat tokens already verified by the node), UDP datagrams, and
//! timeouts, each with an explicit `now`. Output ([`Output`]): datagrams to send, frames to
//! send, connections to close, and meeting starts and ends to record. No sockets, no clock,
//! no randomness of its own.
//!
//! Where each part of the state lives:
//! - `room.rs`: rooms and membership, the lobby, moderation, chat, broadcasts, speakers;
//! - `participant.rs`: a participant and its publish/subscribe negotiation states;
//! - `forwarder.rs`: what each subscriber gets of a packet (layers, last N, splicing,
//!   audio level), pure;
//! - `fanout.rs`: a published packet to the room's subscribers, the batch written on
//!   several cores, keyframe requests;
//! - `peer.rs`: the peer connections and every call into `rtc`, demultiplexing the one UDP
//!   port, timers, events.

use crate::media::MediaError;
use crate::participant::Member;
use crate::peer::Peers;
use crate::protocol::{ClientMessage, ErrorCode, ServerMessage};
use crate::room::Room;
use aula_domain::services::GrantRole;
use aula_domain::{Participant, RelayedMessage, RoomId, RoomSettings};
use bytes::BytesMut;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

/// A signalling connection (one WebSocket), numbered by the node.
pub type ConnId = u64;
/// A peer connection (each participant has up to two).
pub(crate) type PeerId = u64;

#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The node's UDP address as browsers reach it (its ICE host candidate).
    pub candidate: SocketAddr,
    /// Video of at most this many recent speakers is forwarded; audio of everyone.
    pub last_n: usize,
    /// Participants (lobby included) the node takes at most.
    pub capacity: u32,
    /// Threads that write forwarded packets into subscribers' connections; 1 writes them
    /// on the caller's thread.
    pub fanout_threads: usize,
    /// Where a subscriber's downlink estimate starts, bits per second, before the browser's
    /// feedback says more (`media::INITIAL_ESTIMATE_BPS`; the forwarding bench, whose links
    /// are in memory, starts higher).
    pub initial_estimate_bps: u64,
}

/// Secrets for ICE credentials, from the node's random source.
pub trait Entropy: Send {
    /// A fresh random string of `len` letters and digits.
    fn token(&mut self, len: usize) -> String;
    fn ssrc(&mut self) -> u32;
}

/// Someone whose grant the node verified.
#[derive(Debug, Clone)]
pub struct Joining {
    pub room: RoomId,
    pub participant: Participant,
    pub name: String,
    pub role: GrantRole,
    pub settings: RoomSettings,
    /// A knocking guest.
    pub lobby: bool,
}

#[derive(Debug)]
pub enum Output {
    Transmit {
        to: SocketAddr,
        data: BytesMut,
    },
    Signal {
        conn: ConnId,
        message: ServerMessage,
    },
    /// Close the signalling connection (after the frames queued for it).
    Close {
        conn: ConnId,
    },
    MeetingStarted {
        room: RoomId,
    },
    MeetingEnded {
        room: RoomId,
        peak_participants: u32,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindStats {
    pub received_packets: u64,
    pub lost_packets: u64,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub rooms: usize,
    pub participants: usize,
    pub waiting: usize,
    pub audio: KindStats,
    pub video: KindStats,
    pub keyframe_requests: u64,
}

impl Stats {
    /// The figure placement and auto-scaling use.
    pub fn load(&self) -> u32 {
        u32::try_from(self.participants + self.waiting).unwrap_or(u32::MAX)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("{1}")]
    Refused(ErrorCode, &'static str),
    #[error(transparent)]
    Media(#[from] MediaError),
}

impl From<rtc::shared::error::Error> for SfuError {
    fn from(e: rtc::shared::error::Error) -> Self {
        SfuError::Media(MediaError(e))
    }
}

/// Everything the SFU reacts to. Each comes with the `now` it happened at, given to
/// [`Sfu::handle_input`].
#[derive(Debug)]
pub enum Input<'a> {
    /// Someone with a verified grant joins (or knocks) on a signalling connection.
    Join { conn: ConnId, joining: Joining },
    /// A frame from a joined connection (`join` and `chat` are the node's: it verifies them).
    Message {
        conn: ConnId,
        message: ClientMessage,
    },
    /// A verified chat message from `conn`: delivered live to whoever may read it.
    Chat {
        conn: ConnId,
        message: RelayedMessage,
    },
    /// The connection is gone (closed by the client, or by the node after a farewell).
    Leave { conn: ConnId },
    /// A datagram from the node's UDP socket.
    Datagram { from: SocketAddr, data: &'a [u8] },
    /// The time [`Sfu::poll_timeout`] named has come.
    Timeout,
    /// Stop taking participants and ask everyone to move to another node.
    Drain,
}

pub struct Sfu {
    pub(crate) config: SfuConfig,
    pub(crate) entropy: Box<dyn Entropy>,
    /// Who is on each signalling connection (room.rs, participant.rs).
    pub(crate) members: HashMap<ConnId, Member>,
    pub(crate) by_participant: HashMap<(RoomId, Participant), ConnId>,
    pub(crate) rooms: HashMap<RoomId, Room>,
    /// When the earliest empty room is due to be forgotten.
    pub(crate) next_forget: Option<Instant>,
    pub(crate) next_speaker_tick: Option<Instant>,
    /// When bandwidth was last allocated (with the speaker decision).
    pub(crate) last_allocation: Option<Instant>,
    /// The peer connections (peer.rs): a field of its own, so forwarding reads a room and
    /// changes members while it queues packets for the connections.
    pub(crate) peers: Peers,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) stats: Stats,
    pub(crate) draining: bool,
}

impl Sfu {
    pub fn new(config: SfuConfig, entropy: Box<dyn Entropy>) -> Self {
        Sfu {
            peers: Peers::new(config.fanout_threads),
            config,
            entropy,
            members: HashMap::new(),
            by_participant: HashMap::new(),
            rooms: HashMap::new(),
            next_forget: None,
            next_speaker_tick: None,
            last_allocation: None,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            draining: false,
        }
    }

    pub fn config(&self) -> &SfuConfig {
        &self.config
    }

    /// The one way in: what happened, and when.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Join { conn, joining } => self.join_room(now, conn, joining),
            Input::Message { conn, message } => self.on_message(now, conn, message),
            Input::Chat { conn, message } => self.on_chat(conn, message),
            Input::Leave { conn } => self.leave_room(now, conn),
            Input::Datagram { from, data } => self.on_datagram(now, from, data),
            Input::Timeout => self.on_timeout(now),
            Input::Drain => self.start_draining(),
        }
    }

    // Shorthands for callers that hold one kind of input.

    /// [`Input::Join`].
    pub fn join(&mut self, now: Instant, conn: ConnId, joining: Joining) {
        self.handle_input(now, Input::Join { conn, joining });
    }

    /// [`Input::Leave`].
    pub fn leave(&mut self, now: Instant, conn: ConnId) {
        self.handle_input(now, Input::Leave { conn });
    }

    /// [`Input::Message`].
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: ClientMessage) {
        self.handle_input(now, Input::Message { conn, message });
    }

    /// [`Input::Chat`] (chat needs no time).
    pub fn relay_chat(&mut self, conn: ConnId, message: RelayedMessage) {
        self.on_chat(conn, message);
    }

    /// [`Input::Datagram`].
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.handle_input(now, Input::Datagram { from, data });
    }

    /// [`Input::Timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_input(now, Input::Timeout);
    }

    /// [`Input::Drain`] (draining needs no time).
    pub fn drain(&mut self) {
        self.start_draining();
    }

    /// The next thing to do. Packets forwarded since the last call are written into the
    /// subscribers' connections first, as one batch: a driver that hands in every datagram
    /// it already has before polling lets the fan-out work on many packets at once.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(at) = self.peers.fanout_at.take() {
            self.deliver(at);
        }
        self.outputs.pop_front()
    }

    /// When [`Input::Timeout`] should come next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let peer = self.peers.next_deadline();
        match (peer, self.next_speaker_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.participants = self.members.values().filter(|m| m.in_meeting).count();
        s.waiting = self.members.len() - s.participants;
        s.rooms = self.rooms.values().filter(|r| r.meeting).count();
        s
    }

    /// The participant a connection joined as, once it has.
    pub fn participant_of(&self, conn: ConnId) -> Option<(RoomId, Participant)> {
        self.members.get(&conn).map(|m| (m.room, m.participant))
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Rooms the node holds state for: those with someone in them and those emptied within
    /// the last hour (a removed guest stays refused for that long).
    pub fn rooms_held(&self) -> usize {
        self.rooms.len()
    }

    pub(crate) fn signal(&mut self, conn: ConnId, message: ServerMessage) {
        self.outputs.push_back(Output::Signal { conn, message });
    }

    pub(crate) fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        self.signal(conn, ServerMessage::error(code, message));
    }

    pub(crate) fn close(&mut self, conn: ConnId) {
        self.outputs.push_back(Output::Close { conn });
    }
}
