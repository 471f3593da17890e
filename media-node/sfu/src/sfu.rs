//! The SFU as a state machine. Input: signalling frames from connections (already parsed;
//! grants and chat tokens already verified by the node), UDP datagrams, and timeouts, each
//! with an explicit `now`. Output: datagrams to send, frames to send, connections to close,
//! and meeting starts and ends to record. No sockets, no clock, no randomness of its own.
//!
//! Every participant has two peer connections: *publish* (the client offers its tracks,
//! the node answers) and *subscribe* (the node offers the others' tracks, the client
//! answers). All of them share the node's one UDP port: STUN is routed by the ICE username
//! fragment (unique per connection), everything else by the source address that ICE
//! validated.

use crate::media::{self, AUDIO_LEVEL_URI, MediaError};
use crate::protocol::{
    ClientMessage, Connection, ErrorCode, Farewell, ForwardedTrack, PeerInfo, PublishedTrack,
    ServerMessage, Source,
};
use crate::rewrite::{LossCounter, Splicer, Verdict, vp8_is_keyframe};
use crate::speakers::{self, Speakers};
use aula_domain::services::GrantRole;
use aula_domain::{Conversation, Participant, RelayedMessage, RoomId, RoomSettings};
use bytes::BytesMut;
use rayon::prelude::*;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverId};
use rtc::sansio::Protocol;
use rtc::shared::marshal::Unmarshal;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::message::{BINDING_REQUEST, Message, is_stun_message};
use rtc::stun::textattrs::TextAttribute;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A signalling connection (one WebSocket), numbered by the node.
pub type ConnId = u64;
type PeerId = u64;

/// Keyframe requests to one publisher's source are sent at most this often.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);
/// Rooms nobody is in are forgotten after this (their removed list with them: by then the
/// grants of removed participants have long expired, and the functions refuse new ones).
const FORGET_EMPTY_ROOM_AFTER: Duration = Duration::from_secs(3600);
/// A packet fanned out to at least this many subscribers' connections is encrypted on all
/// cores; below it, waking other threads costs more than it saves.
const PARALLEL_FANOUT: usize = 4;

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

struct Peer {
    pc: RTCPeerConnection,
    conn: ConnId,
    ufrag: String,
    addrs: Vec<SocketAddr>,
    deadline: Option<Instant>,
    /// DTLS is up: media written before this would be dropped (a lost first keyframe
    /// leaves the subscriber's decoder waiting).
    connected: bool,
}

impl Peer {
    /// Writes forwarded packets into this connection and collects what it sends.
    fn write(&mut self, now: Instant, writes: Vec<Write>) -> Written {
        let mut written = Written::default();
        for w in writes {
            let bytes = w.packet.payload.len() as u64;
            let ok = self
                .pc
                .rtp_sender(w.sender)
                .is_some_and(|mut s| s.write_rtp(now, w.packet).is_ok());
            if ok {
                let counts = &mut written.forwarded[usize::from(!w.audio)];
                counts.0 += 1;
                counts.1 += bytes;
            }
        }
        self.drain(written)
    }

    /// The datagrams the connection queued and when it next needs a timeout.
    fn drain(&mut self, mut written: Written) -> Written {
        while let Some(out) = self.pc.poll_write() {
            written
                .datagrams
                .push((out.transport.peer_addr, out.message));
        }
        written.deadline = self.pc.poll_timeout();
        written
    }
}

/// One layer (simulcast) or the only stream of a published source.
#[derive(Debug, Clone)]
struct Incoming {
    source: Source,
    rid: Option<String>,
    receiver: RTCRtpReceiverId,
    audio_level_id: Option<u8>,
}

struct Outgoing {
    sender: RTCRtpSenderId,
    kind: RtpCodecKind,
    ssrc: u32,
    splicer: Splicer,
    /// Known once the subscriber answered the offer that carries this track.
    bound: bool,
    payload_type: Option<u8>,
    audio_level_id: Option<u8>,
}

struct Member {
    room: RoomId,
    participant: Participant,
    name: String,
    role: GrantRole,
    settings: RoomSettings,
    in_meeting: bool,
    muted: bool,
    hand_raised: bool,
    publish: Option<PeerId>,
    subscribe: Option<PeerId>,
    /// What the client said each of its published `mid`s carries.
    published: HashMap<String, Source>,
    incoming: HashMap<u32, Incoming>,
    loss: HashMap<u32, LossCounter>,
    last_keyframe_request: HashMap<Source, Instant>,
    outgoing: HashMap<(Participant, Source), Outgoing>,
    out_by_ssrc: HashMap<u32, (Participant, Source)>,
    awaiting_answer: bool,
    renegotiate: bool,
}

impl Member {
    fn info(&self) -> PeerInfo {
        PeerInfo {
            participant: self.participant,
            name: self.name.clone(),
            role: self.role,
            muted: self.muted,
            hand_raised: self.hand_raised,
            sharing_screen: self.published.values().any(|s| *s == Source::Screen),
        }
    }

    fn is_moderator(&self) -> bool {
        self.role == GrantRole::Moderator
    }

    fn sources(&self) -> HashSet<Source> {
        self.published.values().copied().collect()
    }

    /// The layers of a source, lowest quality first (by the usual rid names).
    fn layers(&self, source: Source) -> Vec<u32> {
        let mut layers: Vec<(u8, u32)> = self
            .incoming
            .iter()
            .filter(|(_, i)| i.source == source)
            .map(|(ssrc, i)| (rid_rank(i.rid.as_deref()), *ssrc))
            .collect();
        layers.sort_unstable();
        layers.into_iter().map(|(_, s)| s).collect()
    }
}

/// The simulcast layer (0 = smallest) a grid tile gets: few people get big tiles and a
/// sharp picture; a class gets thumbnails, so 20 cameras fit anyone's downlink.
fn grid_layer(layers: usize, participants: usize) -> usize {
    let top = layers.saturating_sub(1);
    match participants {
        0..=4 => top,
        5..=9 => top.min(1),
        _ => 0,
    }
}

fn rid_rank(rid: Option<&str>) -> u8 {
    match rid {
        None => 0,
        Some("q" | "l" | "low" | "0") => 1,
        Some("h" | "m" | "mid" | "1") => 2,
        Some("f" | "hi" | "high" | "2") => 3,
        Some(_) => 4,
    }
}

#[derive(Default)]
struct RoomState {
    /// In order of joining.
    members: Vec<ConnId>,
    speakers: Speakers<Participant>,
    meeting: bool,
    peak: u32,
    /// Refused from now on: removed by a moderator or turned down in the lobby.
    removed: HashSet<Participant>,
    /// Guests of a meeting a moderator ended: they may come back once a moderator is in.
    ended_guests: HashSet<Participant>,
    empty_since: Option<Instant>,
}

pub struct Sfu {
    config: SfuConfig,
    entropy: Box<dyn Entropy>,
    members: HashMap<ConnId, Member>,
    by_participant: HashMap<(RoomId, Participant), ConnId>,
    rooms: HashMap<RoomId, RoomState>,
    /// When the earliest empty room is due to be forgotten.
    next_forget: Option<Instant>,
    /// Boxed: the fan-out moves peers out of the map and back, a pointer each.
    peers: HashMap<PeerId, Box<Peer>>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    next_peer: PeerId,
    next_speaker_tick: Option<Instant>,
    outputs: std::collections::VecDeque<Output>,
    /// Runs a wide fan-out on several cores; None: on the caller's thread.
    pool: Option<rayon::ThreadPool>,
    /// Packets forward() queued for subscribers' connections, written by deliver().
    fanout: Vec<Write>,
    /// The time of the newest input that queued one.
    fanout_at: Option<Instant>,
    stats: Stats,
    draining: bool,
}

/// One forwarded packet for one subscriber's connection.
struct Write {
    peer: PeerId,
    sender: RTCRtpSenderId,
    packet: rtc::rtp::Packet,
    audio: bool,
}

/// What writing a batch to one connection produced.
#[derive(Default)]
struct Written {
    datagrams: Vec<(SocketAddr, BytesMut)>,
    deadline: Option<Instant>,
    /// Packets and payload bytes written: audio, video.
    forwarded: [(u64, u64); 2],
}

impl Sfu {
    pub fn new(config: SfuConfig, entropy: Box<dyn Entropy>) -> Self {
        let pool = (config.fanout_threads > 1)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(config.fanout_threads)
                    .thread_name(|i| format!("aula-fanout-{i}"))
                    .build()
                    .inspect_err(
                        |e| tracing::warn!(error = %e, "no fan-out threads; forwarding on one"),
                    )
                    .ok()
            })
            .flatten();
        Sfu {
            pool,
            config,
            entropy,
            members: HashMap::new(),
            by_participant: HashMap::new(),
            rooms: HashMap::new(),
            next_forget: None,
            peers: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            timers: BinaryHeap::new(),
            next_peer: 1,
            next_speaker_tick: None,
            outputs: Default::default(),
            fanout: Vec::new(),
            fanout_at: None,
            stats: Stats::default(),
            draining: false,
        }
    }

    pub fn config(&self) -> &SfuConfig {
        &self.config
    }

    // ---- output side ------------------------------------------------------------------

    /// The next thing to do. Packets forwarded since the last call are written into the
    /// subscribers' connections first, as one batch: a driver that hands in every datagram
    /// it already has before polling lets the fan-out work on many packets at once.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(at) = self.fanout_at.take() {
            self.deliver(at);
        }
        self.outputs.pop_front()
    }

    /// When [`Sfu::handle_timeout`] should be called next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop timer entries that no longer match their peer's deadline.
        while let Some(Reverse((at, peer))) = self.timers.peek().copied() {
            match self.peers.get(&peer) {
                Some(p) if p.deadline == Some(at) => break,
                _ => {
                    self.timers.pop();
                }
            }
        }
        let peer = self.timers.peek().map(|Reverse((at, _))| *at);
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

    fn signal(&mut self, conn: ConnId, message: ServerMessage) {
        self.outputs.push_back(Output::Signal { conn, message });
    }

    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        self.signal(conn, ServerMessage::error(code, message));
    }

    fn room_members(&self, room: RoomId) -> Vec<ConnId> {
        self.rooms
            .get(&room)
            .map(|r| r.members.clone())
            .unwrap_or_default()
    }

    /// Sends to everyone in the meeting (not the lobby) of a room.
    fn broadcast(&mut self, room: RoomId, except: Option<ConnId>, message: &ServerMessage) {
        for conn in self.room_members(room) {
            if Some(conn) == except {
                continue;
            }
            if self.members.get(&conn).is_some_and(|m| m.in_meeting) {
                self.signal(conn, message.clone());
            }
        }
    }

    fn tell_moderators(&mut self, room: RoomId, message: &ServerMessage) {
        for conn in self.room_members(room) {
            if self
                .members
                .get(&conn)
                .is_some_and(|m| m.in_meeting && m.is_moderator())
            {
                self.signal(conn, message.clone());
            }
        }
    }

    // ---- joining and leaving ----------------------------------------------------------

    /// Someone with a verified grant joins (or knocks).
    pub fn join(&mut self, now: Instant, conn: ConnId, j: Joining) {
        if self.members.contains_key(&conn) {
            return self.refuse(conn, ErrorCode::NotJoined, "this connection already joined");
        }
        if self.draining {
            self.refuse(
                conn,
                ErrorCode::Draining,
                "this media node is shutting down",
            );
            return self.outputs.push_back(Output::Close { conn });
        }
        // Only a join that is let in makes room state: a refused one must leave nothing
        // behind (a full node would otherwise collect a room for every refusal).
        let room = self.rooms.get(&j.room);
        if room.is_some_and(|r| r.removed.contains(&j.participant)) {
            let bye = if j.lobby {
                Farewell::Denied
            } else {
                Farewell::Removed
            };
            self.signal(conn, ServerMessage::Bye { reason: bye });
            return self.outputs.push_back(Output::Close { conn });
        }
        let moderator_present = room.is_some_and(|r| {
            r.members.iter().any(|c| {
                self.members
                    .get(c)
                    .is_some_and(|m| m.in_meeting && m.is_moderator())
            })
        });
        if j.role == GrantRole::Guest
            && room.is_some_and(|r| r.ended_guests.contains(&j.participant))
            && !moderator_present
        {
            self.signal(
                conn,
                ServerMessage::Bye {
                    reason: Farewell::Ended,
                },
            );
            return self.outputs.push_back(Output::Close { conn });
        }
        if let Some(old) = self.by_participant.get(&(j.room, j.participant)).copied() {
            // The same person again (a reload, another tab): the newest connection wins.
            self.signal(
                old,
                ServerMessage::Bye {
                    reason: Farewell::Replaced,
                },
            );
            self.outputs.push_back(Output::Close { conn: old });
            self.leave(now, old);
        } else if self.stats().load() >= self.config.capacity {
            self.refuse(conn, ErrorCode::Full, "this media node is full");
            return self.outputs.push_back(Output::Close { conn });
        }
        let room = self.rooms.entry(j.room).or_default();
        room.members.push(conn);
        room.empty_since = None;
        if j.role == GrantRole::Moderator {
            room.ended_guests.clear();
        }
        let lobby = j.lobby && j.role == GrantRole::Guest;
        let muted = j.settings.mute_on_join && j.role == GrantRole::Guest;
        self.by_participant.insert((j.room, j.participant), conn);
        self.members.insert(
            conn,
            Member {
                room: j.room,
                participant: j.participant,
                name: j.name.clone(),
                role: j.role,
                settings: j.settings,
                in_meeting: false,
                muted,
                hand_raised: false,
                publish: None,
                subscribe: None,
                published: HashMap::new(),
                incoming: HashMap::new(),
                loss: HashMap::new(),
                last_keyframe_request: HashMap::new(),
                outgoing: HashMap::new(),
                out_by_ssrc: HashMap::new(),
                awaiting_answer: false,
                renegotiate: false,
            },
        );
        tracing::info!(room = %j.room, participant = %j.participant, lobby, "joined");
        if lobby {
            self.signal(conn, ServerMessage::Lobby);
            self.tell_moderators(
                j.room,
                &ServerMessage::Knock {
                    participant: j.participant,
                    name: j.name,
                },
            );
        } else {
            self.enter_meeting(now, conn);
        }
    }

    fn enter_meeting(&mut self, now: Instant, conn: ConnId) {
        let Some(m) = self.members.get_mut(&conn) else {
            return;
        };
        m.in_meeting = true;
        let (room_id, me, role, settings) = (m.room, m.participant, m.role, m.settings);
        let info = m.info();
        let others: Vec<PeerInfo> = self
            .room_members(room_id)
            .iter()
            .filter(|c| **c != conn)
            .filter_map(|c| self.members.get(c))
            .filter(|o| o.in_meeting)
            .map(Member::info)
            .collect();
        let knocking: Vec<(Participant, String)> = self
            .room_members(room_id)
            .iter()
            .filter_map(|c| self.members.get(c))
            .filter(|o| !o.in_meeting)
            .map(|o| (o.participant, o.name.clone()))
            .collect();
        let room = self.rooms.entry(room_id).or_default();
        room.speakers.join(me);
        let started = !room.meeting;
        room.meeting = true;
        let count = others.len() as u32 + 1;
        room.peak = room.peak.max(count);
        if started {
            room.peak = count;
            self.outputs
                .push_back(Output::MeetingStarted { room: room_id });
        }
        self.signal(
            conn,
            ServerMessage::Welcome {
                v: crate::protocol::PROTOCOL_VERSION,
                you: me,
                role,
                settings,
                participants: others,
                last_n: self.config.last_n,
            },
        );
        // Everyone (the newcomer too) learns whose video is forwarded now.
        self.announce_speakers(room_id);
        if role == GrantRole::Moderator {
            for (participant, name) in knocking {
                self.signal(conn, ServerMessage::Knock { participant, name });
            }
        }
        self.broadcast(
            room_id,
            Some(conn),
            &ServerMessage::ParticipantJoined { peer: info },
        );
        // The newcomer sees everyone already publishing.
        self.renegotiate(now, conn);
    }

    /// The connection is gone (closed by the client, or by the node after a farewell).
    pub fn leave(&mut self, now: Instant, conn: ConnId) {
        let Some(m) = self.members.remove(&conn) else {
            return;
        };
        tracing::info!(room = %m.room, participant = %m.participant, "left");
        self.by_participant.remove(&(m.room, m.participant));
        for peer in [m.publish, m.subscribe].into_iter().flatten() {
            self.close_peer(peer);
        }
        let room_id = m.room;
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.retain(|c| *c != conn);
            room.speakers.leave(m.participant);
        }
        if m.in_meeting {
            self.broadcast(
                room_id,
                None,
                &ServerMessage::ParticipantLeft {
                    participant: m.participant,
                },
            );
            self.announce_speakers(room_id);
            for other in self.room_members(room_id) {
                let Some(o) = self.members.get_mut(&other) else {
                    continue;
                };
                let gone: Vec<(Participant, Source)> = o
                    .outgoing
                    .keys()
                    .filter(|(p, _)| *p == m.participant)
                    .copied()
                    .collect();
                if !gone.is_empty() {
                    self.renegotiate(now, other);
                }
            }
        } else {
            self.tell_moderators(
                room_id,
                &ServerMessage::KnockEnded {
                    participant: m.participant,
                },
            );
        }
        let room_empty = {
            let members = &self.members;
            self.rooms.get(&room_id).is_some_and(|r| {
                !r.members
                    .iter()
                    .any(|c| members.get(c).is_some_and(|m| m.in_meeting))
            })
        };
        if let Some(room) = self.rooms.get_mut(&room_id) {
            if room_empty && room.meeting {
                room.meeting = false;
                self.outputs.push_back(Output::MeetingEnded {
                    room: room_id,
                    peak_participants: room.peak,
                });
                room.peak = 0;
            }
            if room.members.is_empty() {
                room.empty_since = Some(now);
                let forget_at = now + FORGET_EMPTY_ROOM_AFTER;
                self.next_forget = Some(self.next_forget.map_or(forget_at, |t| t.min(forget_at)));
            }
        }
    }

    fn farewell(&mut self, now: Instant, conn: ConnId, reason: Farewell) {
        self.signal(conn, ServerMessage::Bye { reason });
        self.outputs.push_back(Output::Close { conn });
        self.leave(now, conn);
    }

    /// Stops taking participants and asks everyone to move to another node.
    pub fn drain(&mut self) {
        self.draining = true;
        let conns: Vec<ConnId> = self.members.keys().copied().collect();
        for conn in conns {
            self.signal(conn, ServerMessage::Move);
        }
    }

    // ---- signalling -------------------------------------------------------------------

    /// A frame from a joined connection (`join` and `chat` are the node's: it verifies them).
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: ClientMessage) {
        let Some(m) = self.members.get(&conn) else {
            return self.refuse(conn, ErrorCode::NotJoined, "send join first");
        };
        let (in_meeting, moderator, room) = (m.in_meeting, m.is_moderator(), m.room);
        let result = match message {
            ClientMessage::Join { .. } => Err(SfuError::Refused(
                ErrorCode::NotJoined,
                "this connection already joined",
            )),
            ClientMessage::Chat { .. } => Ok(()),
            ClientMessage::Leave => {
                self.outputs.push_back(Output::Close { conn });
                self.leave(now, conn);
                Ok(())
            }
            _ if !in_meeting => Err(SfuError::Refused(
                ErrorCode::NotAllowed,
                "wait until a moderator admits you",
            )),
            ClientMessage::PublishOffer {
                sdp,
                tracks,
                restart,
            } => self.publish(now, conn, sdp, tracks, restart),
            ClientMessage::SubscribeAnswer { sdp } => self.subscribe_answer(now, conn, sdp),
            ClientMessage::Candidate {
                connection,
                candidate,
            } => self.remote_candidate(conn, connection, candidate),
            ClientMessage::SetMuted { muted } => {
                self.update(conn, |m| m.muted = muted);
                Ok(())
            }
            ClientMessage::RaiseHand { raised } => {
                self.update(conn, |m| m.hand_raised = raised);
                Ok(())
            }
            ClientMessage::RequestKeyframe { participant } => {
                if let Some(p) = self.by_participant.get(&(room, participant)).copied() {
                    self.request_keyframe(now, p, Source::Camera, false);
                    self.request_keyframe(now, p, Source::Screen, false);
                }
                Ok(())
            }
            _ if !moderator => Err(SfuError::Refused(
                ErrorCode::Forbidden,
                "only a moderator may do that",
            )),
            ClientMessage::Admit { participant } => {
                self.lobby_member(room, participant).map(|target| {
                    self.tell_moderators(room, &ServerMessage::KnockEnded { participant });
                    self.enter_meeting(now, target);
                })
            }
            ClientMessage::Deny { participant } => {
                self.lobby_member(room, participant).map(|target| {
                    self.rooms
                        .entry(room)
                        .or_default()
                        .removed
                        .insert(participant);
                    self.farewell(now, target, Farewell::Denied);
                })
            }
            ClientMessage::Mute { participant } => {
                self.guest_member(room, participant).map(|target| {
                    let by = self.members.get(&conn).map(|m| m.participant);
                    self.update(target, |m| m.muted = true);
                    if let Some(by) = by {
                        self.signal(target, ServerMessage::Muted { by });
                    }
                })
            }
            ClientMessage::Remove { participant } => {
                self.guest_member(room, participant).map(|target| {
                    self.rooms
                        .entry(room)
                        .or_default()
                        .removed
                        .insert(participant);
                    self.farewell(now, target, Farewell::Removed);
                })
            }
            ClientMessage::EndMeeting => {
                self.end_meeting(now, room);
                Ok(())
            }
        };
        if let Err(e) = result {
            let (code, text) = match &e {
                SfuError::Refused(code, text) => (*code, (*text).to_owned()),
                SfuError::Media(e) => (ErrorCode::BadSdp, e.to_string()),
            };
            self.signal(
                conn,
                ServerMessage::Error {
                    code,
                    message: text,
                },
            );
        }
    }

    fn lobby_member(&self, room: RoomId, p: Participant) -> Result<ConnId, SfuError> {
        self.by_participant
            .get(&(room, p))
            .copied()
            .filter(|c| self.members.get(c).is_some_and(|m| !m.in_meeting))
            .ok_or(SfuError::Refused(
                ErrorCode::UnknownParticipant,
                "nobody by that name is knocking",
            ))
    }

    fn guest_member(&self, room: RoomId, p: Participant) -> Result<ConnId, SfuError> {
        self.by_participant
            .get(&(room, p))
            .copied()
            .filter(|c| {
                self.members
                    .get(c)
                    .is_some_and(|m| m.role == GrantRole::Guest)
            })
            .ok_or(SfuError::Refused(
                ErrorCode::UnknownParticipant,
                "no such guest in this meeting",
            ))
    }

    fn update(&mut self, conn: ConnId, change: impl FnOnce(&mut Member)) {
        let Some(m) = self.members.get_mut(&conn) else {
            return;
        };
        change(m);
        let (room, info) = (m.room, m.info());
        if info.muted
            && let Some(r) = self.rooms.get_mut(&room)
        {
            r.speakers.silence(info.participant);
        }
        self.broadcast(
            room,
            None,
            &ServerMessage::ParticipantUpdated { peer: info },
        );
    }

    fn end_meeting(&mut self, now: Instant, room: RoomId) {
        for conn in self.room_members(room) {
            if let Some(m) = self.members.get(&conn)
                && m.role == GrantRole::Guest
            {
                let p = m.participant;
                self.rooms.entry(room).or_default().ended_guests.insert(p);
            }
            self.farewell(now, conn, Farewell::Ended);
        }
    }

    /// A verified chat message from `conn`: delivered live to whoever may read it.
    pub fn relay_chat(&mut self, conn: ConnId, message: RelayedMessage) {
        let Some(m) = self.members.get(&conn) else {
            return self.refuse(conn, ErrorCode::NotJoined, "send join first");
        };
        if !m.in_meeting || m.participant != message.author {
            return self.refuse(conn, ErrorCode::BadChat, "not your message to deliver");
        }
        let room = m.room;
        let frame = ServerMessage::Chat {
            message: message.clone(),
        };
        match message.conversation {
            Conversation::Room => self.broadcast(room, None, &frame),
            Conversation::Private(a, b) => {
                for p in [a, b] {
                    if let Some(c) = self.by_participant.get(&(room, p)).copied()
                        && self.members.get(&c).is_some_and(|m| m.in_meeting)
                    {
                        self.signal(c, frame.clone());
                    }
                }
            }
        }
    }

    // ---- peer connections --------------------------------------------------------------

    fn new_peer(&mut self, now: Instant, conn: ConnId) -> Result<PeerId, SfuError> {
        let ufrag = self.entropy.token(16);
        let pwd = self.entropy.token(32);
        let pc = media::peer_connection(now, &ufrag, &pwd, self.config.candidate)?;
        let id = self.next_peer;
        self.next_peer += 1;
        self.by_ufrag.insert(ufrag.clone(), id);
        self.peers.insert(
            id,
            Box::new(Peer {
                pc,
                conn,
                ufrag,
                addrs: Vec::new(),
                deadline: None,
                connected: false,
            }),
        );
        Ok(id)
    }

    fn close_peer(&mut self, id: PeerId) {
        let Some(mut p) = self.peers.remove(&id) else {
            return;
        };
        let _ = p.pc.close();
        while let Some(out) = p.pc.poll_write() {
            self.outputs.push_back(Output::Transmit {
                to: out.transport.peer_addr,
                data: out.message,
            });
        }
        self.by_ufrag.remove(&p.ufrag);
        for a in p.addrs {
            if self.by_addr.get(&a) == Some(&id) {
                self.by_addr.remove(&a);
            }
        }
    }

    fn publish(
        &mut self,
        now: Instant,
        conn: ConnId,
        sdp: String,
        tracks: Vec<PublishedTrack>,
        restart: bool,
    ) -> Result<(), SfuError> {
        let m = &self.members[&conn];
        if m.role == GrantRole::Guest {
            if !m.settings.guests_may_share_screen
                && tracks.iter().any(|t| t.source == Source::Screen)
            {
                return Err(SfuError::Refused(
                    ErrorCode::NotAllowed,
                    "guests may not share their screen in this room",
                ));
            }
            if !m.settings.guests_may_send_video
                && tracks.iter().any(|t| t.source == Source::Camera)
            {
                return Err(SfuError::Refused(
                    ErrorCode::NotAllowed,
                    "guests may not send video in this room",
                ));
            }
        }
        let peer = match m.publish {
            Some(p) if !restart => p,
            old => {
                if let Some(old) = old {
                    // Its streams end here; the new connection's arrive under new SSRCs and
                    // reach the same subscribers' tracks (spliced at their first keyframe).
                    self.close_peer(old);
                    if let Some(m) = self.members.get_mut(&conn) {
                        m.incoming.clear();
                        m.loss.clear();
                    }
                }
                let p = self.new_peer(now, conn)?;
                if let Some(m) = self.members.get_mut(&conn) {
                    m.publish = Some(p);
                }
                p
            }
        };
        let answer = {
            let pc = &mut self
                .peers
                .get_mut(&peer)
                .ok_or(SfuError::Refused(ErrorCode::BadSdp, "no connection"))?
                .pc;
            let offer = RTCSessionDescription::offer(sdp)?;
            pc.set_remote_description(now, offer)?;
            let answer = pc.create_answer(None)?;
            pc.set_local_description(now, answer)?;
            pc.local_description()
                .map(|d| d.sdp)
                .ok_or(SfuError::Refused(ErrorCode::BadSdp, "no answer"))?
        };
        let before = self.members[&conn].sources();
        if let Some(m) = self.members.get_mut(&conn) {
            m.published = tracks.into_iter().map(|t| (t.mid, t.source)).collect();
            let kept: HashSet<Source> = m.sources();
            m.incoming.retain(|_, i| kept.contains(&i.source));
        }
        self.signal(conn, ServerMessage::PublishAnswer { sdp: answer });
        self.pump(now, peer);
        let after = self.members[&conn].sources();
        if before != after {
            self.update(conn, |_| {});
            for other in self.room_members(self.members[&conn].room) {
                if other != conn {
                    self.renegotiate(now, other);
                }
            }
        }
        Ok(())
    }

    /// Brings a subscriber's forwarded tracks in line with what the others publish, and
    /// offers the result (or notes that it must, once the pending offer is answered).
    fn renegotiate(&mut self, now: Instant, conn: ConnId) {
        if let Err(e) = self.try_renegotiate(now, conn) {
            tracing::warn!(error = %e, "renegotiating a subscriber failed");
            self.refuse(conn, ErrorCode::BadSdp, "the node could not offer media");
        }
    }

    fn try_renegotiate(&mut self, now: Instant, conn: ConnId) -> Result<(), SfuError> {
        let Some(m) = self.members.get(&conn) else {
            return Ok(());
        };
        if !m.in_meeting {
            return Ok(());
        }
        if m.awaiting_answer {
            if let Some(m) = self.members.get_mut(&conn) {
                m.renegotiate = true;
            }
            return Ok(());
        }
        let room = m.room;
        let mut wanted: HashSet<(Participant, Source)> = HashSet::new();
        for other in self.room_members(room) {
            if other == conn {
                continue;
            }
            if let Some(o) = self.members.get(&other).filter(|o| o.in_meeting) {
                for s in o.sources() {
                    wanted.insert((o.participant, s));
                }
            }
        }
        let m = &self.members[&conn];
        let have: HashSet<(Participant, Source)> = m.outgoing.keys().copied().collect();
        if wanted == have {
            return Ok(());
        }
        if wanted.is_empty() && m.subscribe.is_none() {
            return Ok(());
        }
        let peer = match m.subscribe {
            Some(p) => p,
            None => {
                let p = self.new_peer(now, conn)?;
                if let Some(m) = self.members.get_mut(&conn) {
                    m.subscribe = Some(p);
                }
                p
            }
        };
        let gone: Vec<(Participant, Source)> = have.difference(&wanted).copied().collect();
        let mut new: Vec<(Participant, Source)> = wanted.difference(&have).copied().collect();
        new.sort_by_key(|(p, s)| (p.to_string(), *s as u8));
        let ssrcs: Vec<u32> = new.iter().map(|_| self.entropy.ssrc()).collect();
        let (Some(m), Some(p)) = (self.members.get_mut(&conn), self.peers.get_mut(&peer)) else {
            return Ok(());
        };
        for key in gone {
            if let Some(out) = m.outgoing.remove(&key) {
                m.out_by_ssrc.remove(&out.ssrc);
                p.pc.remove_track(out.sender)?;
            }
        }
        for (key, ssrc) in new.into_iter().zip(ssrcs) {
            let (participant, source) = key;
            let kind = if source.is_audio() {
                RtpCodecKind::Audio
            } else {
                RtpCodecKind::Video
            };
            // msid ids are SDP tokens: no ':' or '/'. Clients map mids through the
            // `tracks` of the offer; the ids only have to be unique.
            // Microphone and camera share a stream (browsers keep them in sync).
            let stream = participant.to_string().replace(':', "-");
            let stream_id = if source == Source::Screen {
                format!("{stream}-screen")
            } else {
                stream.clone()
            };
            let track = media::track(
                stream_id,
                format!("{stream}-{}", source_name(source)),
                source_name(source).to_owned(),
                kind,
                ssrc,
            );
            let sender = p.pc.add_track(track)?;
            m.out_by_ssrc.insert(ssrc, key);
            m.outgoing.insert(
                key,
                Outgoing {
                    sender,
                    kind,
                    ssrc,
                    splicer: Splicer::default(),
                    bound: false,
                    payload_type: None,
                    audio_level_id: None,
                },
            );
        }
        let offer = p.pc.create_offer(None)?;
        p.pc.set_local_description(now, offer)?;
        let sdp =
            p.pc.local_description()
                .map(|d| d.sdp)
                .ok_or(SfuError::Refused(ErrorCode::BadSdp, "no offer"))?;
        let mut tracks = Vec::new();
        for ((participant, source), out) in &m.outgoing {
            let tid = RTCRtpTransceiverId::from(out.sender);
            if let Some(mid) = p.pc.rtp_transceiver(tid).and_then(|t| t.mid().clone()) {
                tracks.push(ForwardedTrack {
                    mid,
                    participant: *participant,
                    source: *source,
                });
            }
        }
        tracks.sort_by(|a, b| a.mid.cmp(&b.mid));
        m.awaiting_answer = true;
        m.renegotiate = false;
        self.signal(conn, ServerMessage::SubscribeOffer { sdp, tracks });
        self.pump(now, peer);
        Ok(())
    }

    fn subscribe_answer(
        &mut self,
        now: Instant,
        conn: ConnId,
        sdp: String,
    ) -> Result<(), SfuError> {
        let m = self
            .members
            .get_mut(&conn)
            .ok_or(SfuError::Refused(ErrorCode::NotJoined, "not joined"))?;
        let peer = m.subscribe.ok_or(SfuError::Refused(
            ErrorCode::BadSdp,
            "there is no offer to answer",
        ))?;
        if !m.awaiting_answer {
            return Err(SfuError::Refused(
                ErrorCode::BadSdp,
                "there is no offer to answer",
            ));
        }
        let p = self
            .peers
            .get_mut(&peer)
            .ok_or(SfuError::Refused(ErrorCode::BadSdp, "no connection"))?;
        p.pc.set_remote_description(now, RTCSessionDescription::answer(sdp)?)?;
        m.awaiting_answer = false;
        let mut fresh_video = Vec::new();
        for ((participant, source), out) in m.outgoing.iter_mut() {
            if out.bound {
                continue;
            }
            out.bound = true;
            if let Some(mut sender) = p.pc.rtp_sender(out.sender) {
                let params = sender.get_parameters();
                let mime = if out.kind == RtpCodecKind::Audio {
                    "audio/opus"
                } else {
                    "video/vp8"
                };
                out.payload_type = params
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
                    .map(|c| c.payload_type);
                out.audio_level_id = params
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == AUDIO_LEVEL_URI)
                    .and_then(|e| u8::try_from(e.id).ok());
            }
            if !source.is_audio() {
                fresh_video.push((*participant, *source));
            }
        }
        let (room, again) = (m.room, m.renegotiate);
        let connected = p.connected;
        self.pump(now, peer);
        // New video for a connected subscriber starts with a keyframe (a subscriber not yet
        // connected gets them all when its DTLS is up).
        if connected {
            for (participant, source) in fresh_video {
                if let Some(p) = self.by_participant.get(&(room, participant)).copied() {
                    self.request_keyframe(now, p, source, false);
                }
            }
        }
        if again {
            self.renegotiate(now, conn);
        }
        Ok(())
    }

    fn remote_candidate(
        &mut self,
        conn: ConnId,
        connection: Connection,
        candidate: String,
    ) -> Result<(), SfuError> {
        let m = &self.members[&conn];
        let peer = match connection {
            Connection::Publish => m.publish,
            Connection::Subscribe => m.subscribe,
        };
        let Some(p) = peer.and_then(|p| self.peers.get_mut(&p)) else {
            return Ok(());
        };
        if candidate.is_empty() {
            return Ok(());
        }
        p.pc.add_remote_candidate(RTCIceCandidateInit {
            candidate,
            ..Default::default()
        })?;
        Ok(())
    }

    // ---- media ------------------------------------------------------------------------

    /// A datagram from the node's UDP socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let peer = if is_stun_message(data) {
            match self.stun_peer(data) {
                Some(p) => Some(p),
                None => self.by_addr.get(&from).copied(),
            }
        } else {
            self.by_addr.get(&from).copied()
        };
        let Some(peer) = peer else {
            return;
        };
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let _ = p.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.config.candidate,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        });
        self.pump(now, peer);
    }

    /// The peer a STUN binding request is for, by the username `<our ufrag>:<theirs>`.
    fn stun_peer(&self, data: &[u8]) -> Option<PeerId> {
        let mut m = Message {
            raw: data.to_vec(),
            ..Default::default()
        };
        m.decode().ok()?;
        if m.typ != BINDING_REQUEST {
            return None;
        }
        let username = TextAttribute::get_from_as(&m, ATTR_USERNAME).ok()?;
        let ours = username.text.split(':').next()?;
        self.by_ufrag.get(ours).copied()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, peer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            if p.deadline != Some(at) {
                continue;
            }
            p.deadline = None;
            if let Err(e) = p.pc.handle_timeout(now) {
                let conn = p.conn;
                tracing::warn!(error = %e, conn, "a peer connection failed");
                self.media_failed(now, conn);
                continue;
            }
            self.pump(now, peer);
        }
        if self.next_speaker_tick.is_some_and(|t| t <= now) {
            self.speaker_tick(now);
        }
        self.forget_empty_rooms(now);
    }

    fn speaker_tick(&mut self, now: Instant) {
        let mut changed = Vec::new();
        for (id, room) in &mut self.rooms {
            if room.meeting && room.speakers.decide(now) {
                changed.push((
                    *id,
                    room.speakers.active(),
                    room.speakers.last_n(self.config.last_n).collect::<Vec<_>>(),
                ));
            }
        }
        for (room, active, video) in changed {
            self.broadcast(room, None, &ServerMessage::Speakers { active, video });
        }
        self.next_speaker_tick = if self.rooms.values().any(|r| r.meeting) {
            Some(now + speakers::DECISION_INTERVAL)
        } else {
            None
        };
    }

    fn announce_speakers(&mut self, room: RoomId) {
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        let frame = ServerMessage::Speakers {
            active: r.speakers.active(),
            video: r.speakers.last_n(self.config.last_n).collect(),
        };
        self.broadcast(room, None, &frame);
    }

    /// Drops rooms empty for an hour. Runs on every timeout, so it looks at the rooms only
    /// when the earliest of them is due (`next_forget`), not on every call.
    fn forget_empty_rooms(&mut self, now: Instant) {
        if self.next_forget.is_none_or(|t| now < t) {
            return;
        }
        self.rooms.retain(|_, r| {
            r.empty_since
                .is_none_or(|t| now.saturating_duration_since(t) < FORGET_EMPTY_ROOM_AFTER)
        });
        self.next_forget = self
            .rooms
            .values()
            .filter_map(|r| r.empty_since)
            .min()
            .map(|t| t + FORGET_EMPTY_ROOM_AFTER);
    }

    /// Rooms the node holds state for: those with someone in them and those emptied within
    /// the last hour (a removed guest stays refused for that long).
    pub fn rooms_held(&self) -> usize {
        self.rooms.len()
    }

    fn media_failed(&mut self, now: Instant, conn: ConnId) {
        self.refuse(
            conn,
            ErrorCode::BadSdp,
            "the media connection failed; join again",
        );
        self.outputs.push_back(Output::Close { conn });
        self.leave(now, conn);
    }

    /// Drains a peer connection: datagrams out, events, received media; re-arms its timer.
    fn pump(&mut self, now: Instant, peer: PeerId) {
        let mut events = Vec::new();
        let mut messages = Vec::new();
        let conn = {
            let Some(p) = self.peers.get_mut(&peer) else {
                return;
            };
            while let Some(ev) = p.pc.poll_event() {
                events.push(ev);
            }
            while let Some(msg) = p.pc.poll_read() {
                messages.push(msg.message);
            }
            p.conn
        };
        for ev in events {
            self.peer_event(now, peer, conn, ev);
        }
        for msg in messages {
            match msg {
                RTCMessage::RtpPacket(_, packet) => self.forward(now, conn, packet),
                RTCMessage::RtcpPacket(_, packets) => {
                    self.feedback(now, conn, &packets);
                }
                _ => {}
            }
        }
        self.flush(peer);
    }

    /// Sends what a peer connection queued and re-arms its timer.
    fn flush(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let written = p.drain(Written::default());
        self.absorb(peer, written);
    }

    /// Queues a connection's datagrams and re-arms its timer.
    fn absorb(&mut self, peer: PeerId, written: Written) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for (to, data) in written.datagrams {
            // The connection only answers (and sends to) addresses that passed ICE's
            // integrity check: from then on, datagrams from there are this peer's.
            if !p.addrs.contains(&to) {
                p.addrs.push(to);
                self.by_addr.insert(to, peer);
            }
            self.outputs.push_back(Output::Transmit { to, data });
        }
        if written.deadline != p.deadline {
            p.deadline = written.deadline;
            if let Some(at) = written.deadline {
                self.timers.push(Reverse((at, peer)));
            }
        }
    }

    /// Writes what forward() queued into the subscribers' connections. SRTP and the
    /// interceptors cost most of a forwarded packet and every connection is independent,
    /// so a wide fan-out runs on all cores: the connections leave the map for the moment,
    /// each is written by one thread, and they come back in the order they left.
    fn deliver(&mut self, now: Instant) {
        if self.fanout.is_empty() {
            return;
        }
        let mut batches: Vec<(PeerId, Box<Peer>, Vec<Write>)> = Vec::new();
        let mut index: HashMap<PeerId, usize> = HashMap::new();
        for w in std::mem::take(&mut self.fanout) {
            if let Some(&i) = index.get(&w.peer) {
                batches[i].2.push(w);
            } else if let Some(p) = self.peers.remove(&w.peer) {
                index.insert(w.peer, batches.len());
                batches.push((w.peer, p, vec![w]));
            }
        }
        let write = |(_, peer, writes): &mut (PeerId, Box<Peer>, Vec<Write>)| {
            peer.write(now, std::mem::take(writes))
        };
        let results: Vec<Written> = match &self.pool {
            Some(pool) if batches.len() >= PARALLEL_FANOUT => {
                pool.install(|| batches.par_iter_mut().map(write).collect())
            }
            _ => batches.iter_mut().map(write).collect(),
        };
        for ((id, peer, _), written) in batches.into_iter().zip(results) {
            for (i, (packets, bytes)) in written.forwarded.iter().enumerate() {
                let st = if i == 0 {
                    &mut self.stats.audio
                } else {
                    &mut self.stats.video
                };
                st.forwarded_packets += packets;
                st.forwarded_bytes += bytes;
            }
            self.peers.insert(id, peer);
            self.absorb(id, written);
        }
    }

    fn peer_event(&mut self, now: Instant, peer: PeerId, conn: ConnId, ev: RTCPeerConnectionEvent) {
        match ev {
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                let Some(m) = self.members.get_mut(&conn) else {
                    return;
                };
                if m.publish != Some(peer) {
                    return;
                }
                let tid = RTCRtpTransceiverId::from(init.receiver_id);
                let mid = p.pc.rtp_transceiver(tid).and_then(|t| t.mid().clone());
                let (kind, audio_level_id) = match p.pc.rtp_receiver(init.receiver_id) {
                    Some(mut r) => {
                        let kind = r.track().kind();
                        let id = r
                            .get_parameters()
                            .rtp_parameters
                            .header_extensions
                            .iter()
                            .find(|e| e.uri == AUDIO_LEVEL_URI)
                            .and_then(|e| u8::try_from(e.id).ok());
                        (kind, id)
                    }
                    None => return,
                };
                let source = mid
                    .and_then(|mid| m.published.get(&mid).copied())
                    .unwrap_or(if kind == RtpCodecKind::Audio {
                        Source::Microphone
                    } else {
                        Source::Camera
                    });
                m.incoming.insert(
                    init.ssrc,
                    Incoming {
                        source,
                        rid: init.rid,
                        receiver: init.receiver_id,
                        audio_level_id,
                    },
                );
                if self.next_speaker_tick.is_none() {
                    self.next_speaker_tick = Some(now + speakers::DECISION_INTERVAL);
                }
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Connected,
            ) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.connected = true;
                }
                // A subscriber's media can flow now: every video it gets starts with a
                // fresh keyframe.
                let Some(m) = self.members.get(&conn) else {
                    return;
                };
                if m.subscribe != Some(peer) {
                    return;
                }
                let room = m.room;
                let video: Vec<(Participant, Source)> = m
                    .outgoing
                    .keys()
                    .filter(|(_, s)| !s.is_audio())
                    .copied()
                    .collect();
                for (participant, source) in video {
                    if let Some(p) = self.by_participant.get(&(room, participant)).copied() {
                        self.request_keyframe(now, p, source, true);
                    }
                }
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                RTCIceConnectionState::Failed,
            )
            | RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Failed,
            ) => self.media_failed(now, conn),
            _ => {}
        }
    }

    /// RTP from a publisher, to everyone in the room who should get it.
    fn forward(&mut self, now: Instant, from: ConnId, packet: rtc::rtp::Packet) {
        let Some(m) = self.members.get_mut(&from) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let Some(incoming) = m.incoming.get(&ssrc).cloned() else {
            return;
        };
        let loss = m.loss.entry(ssrc).or_default();
        let lost_before = loss.lost;
        loss.packet(packet.header.sequence_number);
        let newly_lost = loss.lost.saturating_sub(lost_before);
        let audio = incoming.source.is_audio();
        let kind_stats = if audio {
            &mut self.stats.audio
        } else {
            &mut self.stats.video
        };
        kind_stats.received_packets += 1;
        kind_stats.lost_packets += newly_lost;
        let (room_id, publisher, muted) = (m.room, m.participant, m.muted);
        let mut level = None;
        if audio {
            if muted {
                return;
            }
            if let Some(id) = incoming.audio_level_id
                && let Some(mut raw) = packet.header.get_extension(id)
                && let Ok(l) = AudioLevelExtension::unmarshal(&mut raw)
            {
                level = Some(l);
                if let Some(room) = self.rooms.get_mut(&room_id) {
                    room.speakers.level(publisher, l.level, l.voice);
                }
            }
        }
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        if incoming.source == Source::Camera
            && !room.speakers.is_in_last_n(publisher, self.config.last_n)
        {
            return;
        }
        let layers = if audio {
            vec![ssrc]
        } else {
            self.members[&from].layers(incoming.source)
        };
        let single = layers.len() <= 1;
        let wanted_layer = if single {
            ssrc
        } else if room.speakers.active() == Some(publisher) || incoming.source == Source::Screen {
            layers[layers.len() - 1]
        } else {
            layers[grid_layer(layers.len(), room.members.len())]
        };
        let keyframe = audio || vp8_is_keyframe(&packet.payload);
        let mut need_keyframe = false;
        let key = (publisher, incoming.source);
        for conn in room.members.clone() {
            if conn == from {
                continue;
            }
            let Some(s) = self.members.get_mut(&conn) else {
                continue;
            };
            if !s.in_meeting {
                continue;
            }
            let ready = s
                .subscribe
                .and_then(|sub| self.peers.get(&sub))
                .is_some_and(|p| p.connected);
            let Some(out) = s.outgoing.get_mut(&key) else {
                continue;
            };
            if !out.bound || !ready {
                continue;
            }
            let Some(pt) = out.payload_type else {
                continue;
            };
            // A new selection asks for a keyframe; so does every packet of the selected layer
            // while the switch still waits for one (request_keyframe keeps it to one request
            // per source and 300 ms). Asking only once lost requests to the window when several
            // subscribers arrived within it: the later ones stayed without video (issue 13.1).
            // Audio is selected too (its only stream), or the splicer drops every packet.
            let selected = out.splicer.select(wanted_layer);
            if !audio && (selected || (!keyframe && out.splicer.waits_for_keyframe_of(ssrc))) {
                need_keyframe = true;
            }
            let Verdict::Forward { seq, timestamp } = out.splicer.packet(
                ssrc,
                packet.header.sequence_number,
                packet.header.timestamp,
                keyframe,
            ) else {
                continue;
            };
            let mut p = packet.clone();
            p.header.ssrc = out.ssrc;
            p.header.payload_type = pt;
            p.header.sequence_number = seq;
            p.header.timestamp = timestamp;
            p.header.extension = false;
            p.header.extensions.clear();
            if let (Some(id), Some(l)) = (out.audio_level_id, level) {
                let mut ext = [0u8; 1];
                ext[0] = (u8::from(l.voice) << 7) | (l.level & 0x7f);
                let _ = p
                    .header
                    .set_extension(id, bytes::Bytes::copy_from_slice(&ext));
            }
            let Some(sub) = s.subscribe else {
                continue;
            };
            self.fanout_at = Some(now);
            self.fanout.push(Write {
                peer: sub,
                sender: out.sender,
                packet: p,
                audio,
            });
        }
        if need_keyframe {
            self.request_keyframe(now, from, incoming.source, false);
        }
    }

    /// Keyframe requests from a subscriber, to the publishers of what they asked about.
    fn feedback(&mut self, now: Instant, conn: ConnId, packets: &[Box<dyn rtc::rtcp::Packet>]) {
        let Some(m) = self.members.get(&conn) else {
            return;
        };
        let room = m.room;
        let mut wanted = Vec::new();
        for p in packets {
            let any = p.as_any();
            let ssrcs: Vec<u32> = if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                vec![pli.media_ssrc]
            } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                fir.fir.iter().map(|e| e.ssrc).collect()
            } else {
                Vec::new()
            };
            for ssrc in ssrcs {
                if let Some(key) = m.out_by_ssrc.get(&ssrc) {
                    wanted.push(*key);
                }
            }
        }
        for (participant, source) in wanted {
            if let Some(p) = self.by_participant.get(&(room, participant)).copied() {
                self.request_keyframe(now, p, source, false);
            }
        }
    }

    /// Asks a publisher for a keyframe of a source (all its layers), at most every 300 ms
    /// unless `now_or_never`: a subscriber whose media just started cannot wait for the next
    /// window (a browser asks for nothing before it has received anything).
    fn request_keyframe(
        &mut self,
        now: Instant,
        publisher: ConnId,
        source: Source,
        now_or_never: bool,
    ) {
        let Some(m) = self.members.get_mut(&publisher) else {
            return;
        };
        if !now_or_never
            && m.last_keyframe_request
                .get(&source)
                .is_some_and(|t| now.saturating_duration_since(*t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        let Some(peer) = m.publish else {
            return;
        };
        let targets: Vec<(u32, RTCRtpReceiverId)> = m
            .incoming
            .iter()
            .filter(|(_, i)| i.source == source)
            .map(|(ssrc, i)| (*ssrc, i.receiver))
            .collect();
        if targets.is_empty() {
            return;
        }
        m.last_keyframe_request.insert(source, now);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for (ssrc, receiver) in targets {
            if let Some(mut r) = p.pc.rtp_receiver(receiver) {
                let _ = r.write_rtcp(
                    now,
                    vec![Box::new(PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc: ssrc,
                    })],
                );
                self.stats.keyframe_requests += 1;
            }
        }
        self.flush(peer);
    }
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Microphone => "microphone",
        Source::Camera => "camera",
        Source::Screen => "screen",
    }
}

#[cfg(test)]
mod tests {
    use super::grid_layer;

    #[test]
    fn an_oral_exam_sees_everyone_sharp_and_a_class_gets_thumbnails() {
        assert_eq!(grid_layer(3, 3), 2, "three people: the full picture");
        assert_eq!(grid_layer(3, 8), 1, "a small group: the middle layer");
        assert_eq!(grid_layer(3, 30), 0, "a class: thumbnails");
        assert_eq!(grid_layer(2, 8), 1);
        assert_eq!(grid_layer(1, 30), 0);
    }
}
