//! A meeting in memory, for tests and the forwarding bench (cargo feature `test-support`):
//! the real [`Sfu`] and real `rtc` client peer connections (one per participant and
//! direction, as browsers have), signalling with the protocol's own messages, and datagrams
//! handed between the clients and the SFU on a simulated clock. ICE, DTLS and SRTP really
//! run; only the sockets and the wall clock are missing, so every run is the same.
//!
//! [`Meeting::progress`] is the one step (after str0m's `tests/common.rs`): everything due
//! now happens, then the clock moves on to the next thing anyone waits for. Clients behave
//! like the web client: they answer subscribe offers, send a camera (one stream or three
//! simulcast layers) at 30 frames per second and a microphone at 50 packets per second from
//! the moment their publish connection is up, and send a keyframe (on every layer) at the
//! next frame after a keyframe request. Every call into the SFU is in `sfu_io`.

mod endpoint;
mod sfu_io;

pub use endpoint::{Endpoint, SFU_ADDR, client_addr, client_pc};

use crate::media::{self, AUDIO_LEVEL_URI, MediaError, OPUS_PT, VP8_PT};
use crate::protocol::{ClientMessage, PublishedTrack, ServerMessage, Source};
use crate::{ConnId, Entropy, Joining, Output, Sfu, SfuConfig, Stats};
use aula_domain::services::GrantRole;
use aula_domain::{Participant, RoomId, RoomSettings};
use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Rtc(#[from] rtc::shared::error::Error),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("{0}")]
    Harness(String),
}

fn fail<T>(what: impl Into<String>) -> Result<T, HarnessError> {
    Err(HarnessError::Harness(what.into()))
}

/// A participant of a [`Meeting`], in order of joining.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Who(pub usize);

impl Who {
    fn conn(self) -> ConnId {
        self.0 as ConnId + 1
    }
}

#[derive(Debug, Clone)]
pub struct MeetingConfig {
    pub last_n: usize,
    /// One-way delay of datagrams between a client and the SFU.
    pub network_delay: Duration,
    /// One-way delay of a signalling frame (the WebSocket and a browser's time to act on it).
    pub signalling_delay: Duration,
    /// Video packets per frame and layer.
    pub packets_per_frame: usize,
    pub video_payload: usize,
    pub audio_payload: usize,
    /// Keep every packet the clients receive (see [`Client::received`]); without, only the
    /// intact ones are counted.
    pub record: bool,
}

impl Default for MeetingConfig {
    fn default() -> Self {
        MeetingConfig {
            last_n: 20,
            network_delay: Duration::from_millis(5),
            signalling_delay: Duration::from_millis(20),
            packets_per_frame: 3,
            video_payload: 1_000,
            audio_payload: 100,
            record: true,
        }
    }
}

/// What a participant publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub microphone: bool,
    pub camera: Camera,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Camera {
    Off,
    /// One stream.
    Single,
    /// Three layers, rids `q`, `h`, `f` (the web client's quarter, half and full size).
    Simulcast,
}

pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

/// What a payload says about itself: the harness writes every payload so that a receiver
/// can tell which stream and packet it is, and whether it arrived intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    /// The simulcast layer it was sent on (0 = smallest; 0 without simulcast).
    pub layer: u8,
    /// The packet's number on its stream (0 = the first packet sent).
    pub index: u64,
    /// The first packet of a video frame.
    pub frame_start: bool,
    /// The first packet of a keyframe.
    pub keyframe: bool,
}

const HEADER: usize = 11;

/// A payload: a VP8 payload descriptor (start of partition on a frame's first packet), the
/// VP8 frame header's key frame bit, the layer, the packet's index, and a pattern derived
/// from them.
pub fn payload(c: Content, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(HEADER)];
    p[0] = if c.frame_start { 0x10 } else { 0x00 };
    // The inverse key frame flag: 0 on a keyframe.
    p[1] = if c.keyframe { 0x00 } else { 0x01 };
    p[2] = c.layer;
    p[3..HEADER].copy_from_slice(&c.index.to_be_bytes());
    for (j, b) in p.iter_mut().enumerate().skip(HEADER) {
        *b = filler(c, j);
    }
    p
}

fn filler(c: Content, j: usize) -> u8 {
    (c.index.wrapping_mul(31) as usize)
        .wrapping_add(j)
        .wrapping_add(usize::from(c.layer)) as u8
}

/// The content of an intact payload (None: damaged, or not the harness's).
pub fn content(p: &[u8]) -> Option<Content> {
    let head = p.get(..HEADER)?;
    let c = Content {
        layer: head[2],
        index: u64::from_be_bytes(head[3..HEADER].try_into().ok()?),
        frame_start: head[0] == 0x10,
        keyframe: head[0] == 0x10 && head[1] == 0x00,
    };
    let intact = p
        .iter()
        .enumerate()
        .skip(HEADER)
        .all(|(j, b)| *b == filler(c, j));
    intact.then_some(c)
}

/// An RTP packet a client received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub from: Participant,
    pub source: Source,
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// None: the payload was damaged.
    pub content: Option<Content>,
}

/// One stream a publisher sends: a track's only stream, or one simulcast layer.
struct Stream {
    sender: RTCRtpSenderId,
    ssrc: u32,
    layer: u8,
    rid: Option<&'static str>,
    seq: u16,
    /// Each layer has its own timestamp base, as its own encoder would.
    ts_base: u32,
    sent: u64,
}

/// Header extension ids the publish connection negotiated.
#[derive(Default)]
struct Extensions {
    mid: Option<u8>,
    rid: Option<u8>,
    audio_level: Option<u8>,
}

struct Publisher {
    ep: Endpoint,
    microphone: Option<Stream>,
    camera: Vec<Stream>,
    camera_mid: Option<String>,
    ext: Extensions,
    keyframe_due: bool,
    next_frame: Instant,
    next_audio: Instant,
    frames: u32,
    audio_packets: u32,
    keyframe_requests: u64,
}

/// A participant's browser, as the SFU sees it.
pub struct Client {
    pub participant: Participant,
    conn: ConnId,
    publish: Option<Publisher>,
    subscribe: Option<Endpoint>,
    frames: Vec<ServerMessage>,
    /// What each `mid` of the subscribe connection carries (from the offers' `tracks`).
    tracks: HashMap<String, (Participant, Source)>,
    ssrc_mid: HashMap<u32, String>,
    received: Vec<Received>,
    intact: HashSet<(Participant, Source, u8, u64)>,
    speaking: bool,
    /// The node closed the signalling connection.
    closed: bool,
}

impl Client {
    /// Every frame the node sent this client, oldest first.
    pub fn frames(&self) -> &[ServerMessage] {
        &self.frames
    }

    /// Every RTP packet the subscribe connection received, in order (when recording).
    pub fn received(&self) -> &[Received] {
        &self.received
    }

    /// Packets received from one participant's source.
    pub fn received_from(&self, who: Participant, source: Source) -> Vec<&Received> {
        self.received
            .iter()
            .filter(|r| r.from == who && r.source == source)
            .collect()
    }

    /// Distinct packets that arrived intact, from everyone.
    pub fn intact(&self) -> u64 {
        self.intact.len() as u64
    }

    /// RTP packets the publish connection sent, on all its streams.
    pub fn sent(&self) -> u64 {
        self.publish.as_ref().map_or(0, |p| {
            p.microphone.iter().chain(&p.camera).map(|s| s.sent).sum()
        })
    }

    /// Keyframe requests (PLI) the publish connection received.
    pub fn keyframe_requests(&self) -> u64 {
        self.publish.as_ref().map_or(0, |p| p.keyframe_requests)
    }

    /// Both directions that exist are up (DTLS done).
    pub fn connected(&self) -> bool {
        self.publish.as_ref().is_none_or(|p| p.ep.connected())
            && self.subscribe.as_ref().is_none_or(Endpoint::connected)
    }

    pub fn closed(&self) -> bool {
        self.closed
    }
}

/// The time spent in the SFU's calls, for the bench: CPU by the clock it is given (the
/// thread's CPU clock), wall time by the real clock. Nothing else in the harness reads it.
pub struct Meter {
    cpu_clock: fn() -> Duration,
    /// All SFU calls.
    pub cpu: Duration,
    pub wall: Duration,
    /// Of `cpu`, the forwarding path: a publisher's datagrams in and everything the SFU
    /// outputs after them (the fan-out into subscribers' connections happens there).
    pub forwarding: Duration,
    /// Timed calls, and of them those on the forwarding path.
    pub blocks: u64,
    pub forwarding_blocks: u64,
}

impl Meter {
    pub fn new(cpu_clock: fn() -> Duration) -> Self {
        Meter {
            cpu_clock,
            cpu: Duration::ZERO,
            wall: Duration::ZERO,
            forwarding: Duration::ZERO,
            blocks: 0,
            forwarding_blocks: 0,
        }
    }
}

/// Datagrams through the SFU's port.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wire {
    pub sfu_in: u64,
    pub sfu_out: u64,
}

struct Counter(u64);

impl Entropy for Counter {
    fn token(&mut self, len: usize) -> String {
        self.0 += 1;
        format!("{:0>len$}", self.0, len = len)
    }
    fn ssrc(&mut self) -> u32 {
        self.0 += 1;
        0x5000_0000 + self.0 as u32
    }
}

pub struct Meeting {
    sfu: Sfu,
    config: MeetingConfig,
    room: RoomId,
    start: Instant,
    now: Instant,
    clients: Vec<Client>,
    /// Which client connection a made-up address belongs to (true: publish).
    addrs: HashMap<SocketAddr, (usize, bool)>,
    next_addr: usize,
    next_ssrc: u32,
    /// In flight, each with its arrival time; the delays are fixed, so each queue is in
    /// order of arrival.
    to_sfu: VecDeque<(Instant, SocketAddr, BytesMut)>,
    to_clients: VecDeque<(Instant, SocketAddr, BytesMut)>,
    frames_to_sfu: VecDeque<(Instant, ConnId, ClientMessage)>,
    frames_to_clients: VecDeque<(Instant, ConnId, ServerMessage)>,
    meter: Option<Meter>,
    wire: Wire,
}

impl Meeting {
    pub fn new(config: MeetingConfig) -> Self {
        let start = Instant::now();
        let sfu = Sfu::new(
            SfuConfig {
                candidate: SFU_ADDR,
                last_n: config.last_n,
                capacity: 1_000,
                // On the caller's thread: deterministic, and the bench's CPU clock sees it.
                fanout_threads: 1,
            },
            Box::new(Counter(0)),
        );
        Meeting {
            sfu,
            config,
            room: RoomId::from_uuid(uuid_of(1)),
            start,
            now: start,
            clients: Vec::new(),
            addrs: HashMap::new(),
            next_addr: 0,
            next_ssrc: 0x1000_0000,
            to_sfu: VecDeque::new(),
            to_clients: VecDeque::new(),
            frames_to_sfu: VecDeque::new(),
            frames_to_clients: VecDeque::new(),
            meter: None,
            wire: Wire::default(),
        }
    }

    /// Times the SFU's calls from now on (replacing an earlier meter).
    pub fn measure(&mut self, meter: Meter) {
        self.meter = Some(meter);
        self.wire = Wire::default();
    }

    pub fn meter(&self) -> Option<&Meter> {
        self.meter.as_ref()
    }

    pub fn wire(&self) -> Wire {
        self.wire
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Simulated time since the meeting was set up.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn client(&self, who: Who) -> &Client {
        &self.clients[who.0]
    }

    pub fn clients(&self) -> impl Iterator<Item = (Who, &Client)> {
        self.clients.iter().enumerate().map(|(i, c)| (Who(i), c))
    }

    pub fn stats(&self) -> Stats {
        sfu_io::stats(&self.sfu)
    }

    /// Someone joins the meeting (their grant verified, no lobby, default room settings).
    pub fn join(&mut self, participant: Participant) -> Who {
        let who = Who(self.clients.len());
        self.clients.push(Client {
            participant,
            conn: who.conn(),
            publish: None,
            subscribe: None,
            frames: Vec::new(),
            tracks: HashMap::new(),
            ssrc_mid: HashMap::new(),
            received: Vec::new(),
            intact: HashSet::new(),
            speaking: false,
            closed: false,
        });
        let joining = Joining {
            room: self.room,
            participant,
            name: participant.to_string(),
            role: match participant {
                Participant::Moderator(_) => GrantRole::Moderator,
                Participant::Guest(_) => GrantRole::Guest,
            },
            settings: RoomSettings::default(),
            lobby: false,
        };
        let now = self.now;
        self.sfu_call(false, |s| sfu_io::join(s, now, who.conn(), joining));
        who
    }

    /// A frame from the client to the node (delivered after the signalling delay).
    pub fn send(&mut self, who: Who, message: ClientMessage) {
        let at = self.now + self.config.signalling_delay;
        self.frames_to_sfu
            .push_back((at, self.clients[who.0].conn, message));
    }

    /// The client closes its signalling connection (and with it its peer connections).
    pub fn leave(&mut self, who: Who) {
        let now = self.now;
        let conn = self.clients[who.0].conn;
        self.sfu_call(false, |s| sfu_io::leave(s, now, conn));
        let c = &mut self.clients[who.0];
        c.closed = true;
        c.publish = None;
        c.subscribe = None;
    }

    /// Opens a publish connection and offers `what` on it; with `restart`, a new connection
    /// replacing the current one (what the web client does when its camera changes).
    pub fn publish(&mut self, who: Who, what: Publish, restart: bool) -> Result<(), HarnessError> {
        let addr = client_addr(self.next_addr)?;
        self.next_addr += 1;
        let now = self.now;
        let stream = format!("client-{}", who.0);
        let mut pc = client_pc(now, addr)?;
        let mut microphone = None;
        let mut published = Vec::new();
        if what.microphone {
            let ssrc = self.ssrc();
            let sender = pc.add_track(media::track(
                stream.clone(),
                format!("{stream}-microphone"),
                "microphone".into(),
                RtpCodecKind::Audio,
                ssrc,
            ))?;
            microphone = Some(Stream::new(sender, ssrc, 0, None));
            published.push((sender, Source::Microphone));
        }
        let mut camera = Vec::new();
        let layers: &[&'static str] = match what.camera {
            Camera::Off => &[],
            Camera::Single => &[""],
            Camera::Simulcast => &SIMULCAST_RIDS,
        };
        if !layers.is_empty() {
            let ssrcs: Vec<u32> = layers.iter().map(|_| self.ssrc()).collect();
            let codings = layers
                .iter()
                .zip(&ssrcs)
                .map(|(rid, ssrc)| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: (*rid).to_owned(),
                        ssrc: Some(*ssrc),
                        ..Default::default()
                    },
                    codec: media::vp8(),
                    ..Default::default()
                })
                .collect();
            let sender = pc.add_track(MediaStreamTrack::new(
                stream.clone(),
                format!("{stream}-camera"),
                "camera".into(),
                RtpCodecKind::Video,
                codings,
            ))?;
            for (i, (rid, ssrc)) in layers.iter().zip(ssrcs).enumerate() {
                let rid = (!rid.is_empty()).then_some(*rid);
                camera.push(Stream::new(sender, ssrc, i as u8, rid));
            }
            published.push((sender, Source::Camera));
        }
        let offer = pc.create_offer(None)?;
        pc.set_local_description(now, offer)?;
        let Some(sdp) = pc.local_description().map(|d| d.sdp) else {
            return fail("no publish offer");
        };
        let mut tracks = Vec::new();
        let mut camera_mid = None;
        for (sender, source) in published {
            let tid = RTCRtpTransceiverId::from(sender);
            let Some(mid) = pc.rtp_transceiver(tid).and_then(|t| t.mid().clone()) else {
                return fail("a published track without a mid");
            };
            if source == Source::Camera {
                camera_mid = Some(mid.clone());
            }
            tracks.push(PublishedTrack { mid, source });
        }
        let c = &mut self.clients[who.0];
        if let Some(old) = c.publish.take() {
            self.addrs.remove(&old.ep.local);
        }
        self.addrs.insert(addr, (who.0, true));
        c.publish = Some(Publisher {
            ep: Endpoint::new(pc, now, addr, SFU_ADDR),
            microphone,
            camera,
            camera_mid,
            ext: Extensions::default(),
            keyframe_due: true,
            next_frame: now,
            next_audio: now,
            frames: 0,
            audio_packets: 0,
            keyframe_requests: 0,
        });
        self.send(
            who,
            ClientMessage::PublishOffer {
                sdp,
                tracks,
                restart,
            },
        );
        Ok(())
    }

    /// Whether the microphone carries speech (a loud audio level) or silence.
    pub fn set_speaking(&mut self, who: Who, speaking: bool) {
        self.clients[who.0].speaking = speaking;
    }

    fn ssrc(&mut self) -> u32 {
        self.next_ssrc += 1;
        self.next_ssrc
    }

    /// Runs the simulated clock for `d`.
    pub fn run_for(&mut self, d: Duration) -> Result<(), HarnessError> {
        let until = self.now + d;
        while self.now < until {
            self.progress(Some(until))?;
        }
        self.settle()
    }

    /// Runs until `done` holds, for at most `limit` of simulated time.
    pub fn run_until(
        &mut self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&Meeting) -> bool,
    ) -> Result<(), HarnessError> {
        let until = self.now + limit;
        loop {
            self.settle()?;
            if done(self) {
                return Ok(());
            }
            if self.now >= until {
                return fail(format!("not within {limit:?} of simulated time: {what}"));
            }
            self.progress(Some(until))?;
        }
    }

    /// One step: everything due now, then the clock to the next thing anyone waits for
    /// (at least 1 ms on, so a peer asking for `now` again cannot stall it; at most `until`).
    pub fn progress(&mut self, until: Option<Instant>) -> Result<(), HarnessError> {
        self.settle()?;
        let next = self.next_event();
        let step = self.now + Duration::from_millis(1);
        let mut to = next.map_or(step, |n| n.max(step));
        if let Some(u) = until {
            to = to.min(u);
        }
        self.now = to.max(self.now);
        Ok(())
    }

    fn next_event(&mut self) -> Option<Instant> {
        let sfu = self.sfu_call(false, sfu_io::next_timeout);
        let wire = [
            self.to_sfu.front().map(|x| x.0),
            self.to_clients.front().map(|x| x.0),
            self.frames_to_sfu.front().map(|x| x.0),
            self.frames_to_clients.front().map(|x| x.0),
        ];
        let clients = self.clients.iter().flat_map(|c| {
            let p = c.publish.as_ref();
            [
                p.and_then(|p| p.ep.deadline()),
                p.filter(|p| p.ep.connected() && !p.camera.is_empty())
                    .map(|p| p.next_frame),
                p.filter(|p| p.ep.connected() && p.microphone.is_some())
                    .map(|p| p.next_audio),
                c.subscribe.as_ref().and_then(Endpoint::deadline),
            ]
        });
        std::iter::once(sfu)
            .chain(wire)
            .chain(clients)
            .flatten()
            .min()
    }

    /// Everything due at `now`, until nothing more is.
    fn settle(&mut self) -> Result<(), HarnessError> {
        for _ in 0..100_000 {
            let mut busy = false;
            busy |= self.media()?;
            busy |= self.timers()?;
            while let Some((_, conn, m)) = pop_due(&mut self.frames_to_sfu, self.now) {
                busy = true;
                let now = self.now;
                self.sfu_call(false, |s| sfu_io::message(s, now, conn, m));
                self.drain_sfu(false)?;
            }
            while let Some((_, from, data)) = pop_due(&mut self.to_sfu, self.now) {
                busy = true;
                let publisher = self.addrs.get(&from).is_some_and(|(_, p)| *p);
                let now = self.now;
                self.wire.sfu_in += 1;
                self.sfu_call(publisher, |s| sfu_io::datagram(s, now, from, &data));
                self.drain_sfu(publisher)?;
            }
            while let Some((_, conn, m)) = pop_due(&mut self.frames_to_clients, self.now) {
                busy = true;
                self.client_frame(conn, m)?;
            }
            while let Some((_, to, data)) = pop_due(&mut self.to_clients, self.now) {
                busy = true;
                self.client_datagram(to, &data)?;
            }
            if !busy {
                return Ok(());
            }
        }
        fail("datagrams kept bouncing at one instant")
    }

    fn sfu_call<T>(&mut self, forwarding: bool, f: impl FnOnce(&mut Sfu) -> T) -> T {
        let Some(m) = self.meter.as_mut() else {
            return f(&mut self.sfu);
        };
        let cpu = (m.cpu_clock)();
        let wall = Instant::now();
        let r = f(&mut self.sfu);
        m.wall += wall.elapsed();
        let spent = (m.cpu_clock)().saturating_sub(cpu);
        m.cpu += spent;
        if forwarding {
            m.forwarding += spent;
            m.forwarding_blocks += 1;
        }
        m.blocks += 1;
        r
    }

    /// What the SFU wants done: datagrams onto the wire, frames to the clients.
    fn drain_sfu(&mut self, forwarding: bool) -> Result<(), HarnessError> {
        loop {
            let Some(out) = self.sfu_call(forwarding, sfu_io::output) else {
                return Ok(());
            };
            match out {
                Output::Transmit { to, data } => {
                    self.wire.sfu_out += 1;
                    self.to_clients
                        .push_back((self.now + self.config.network_delay, to, data));
                }
                Output::Signal { conn, message } => self.frames_to_clients.push_back((
                    self.now + self.config.signalling_delay,
                    conn,
                    message,
                )),
                Output::Close { conn } => {
                    // As the node: the WebSocket closes after its last frames, then the SFU
                    // hears that the connection is gone.
                    let now = self.now;
                    self.sfu_call(false, |s| sfu_io::leave(s, now, conn));
                    if let Some(c) = self.clients.iter_mut().find(|c| c.conn == conn) {
                        c.closed = true;
                    }
                }
                Output::MeetingStarted { .. } | Output::MeetingEnded { .. } => {}
            }
        }
    }

    /// The SFU's timers and the clients' connections' timers that are due.
    fn timers(&mut self) -> Result<bool, HarnessError> {
        let mut busy = false;
        let now = self.now;
        if self
            .sfu_call(false, sfu_io::next_timeout)
            .is_some_and(|t| t <= now)
        {
            busy = true;
            self.sfu_call(false, |s| sfu_io::timeout(s, now));
            self.drain_sfu(false)?;
        }
        for i in 0..self.clients.len() {
            for publish in [true, false] {
                let c = &mut self.clients[i];
                let ep = if publish {
                    c.publish.as_mut().map(|p| &mut p.ep)
                } else {
                    c.subscribe.as_mut()
                };
                if let Some(ep) = ep
                    && ep.deadline().is_some_and(|d| d <= now)
                {
                    busy = true;
                    ep.timeout(now)?;
                    self.poll_client(i, publish)?;
                }
            }
        }
        Ok(busy)
    }

    /// Frames and audio packets that are due, from every connected publisher.
    fn media(&mut self) -> Result<bool, HarnessError> {
        let now = self.now;
        let mut busy = false;
        for i in 0..self.clients.len() {
            let speaking = self.clients[i].speaking;
            let Some(p) = self.clients[i].publish.as_mut() else {
                continue;
            };
            if !p.ep.connected() {
                continue;
            }
            let mut sent = false;
            if !p.camera.is_empty() && p.next_frame <= now {
                p.send_frame(now, &self.config)?;
                p.next_frame += Duration::from_micros(33_333);
                sent = true;
            }
            if p.microphone.is_some() && p.next_audio <= now {
                p.send_audio(now, &self.config, speaking)?;
                p.next_audio += Duration::from_millis(20);
                sent = true;
            }
            if sent {
                busy = true;
                self.poll_client(i, true)?;
            }
        }
        Ok(busy)
    }

    fn client_datagram(&mut self, to: SocketAddr, data: &[u8]) -> Result<(), HarnessError> {
        // Datagrams for a connection that was replaced or closed are lost, as on a network.
        let Some(&(i, publish)) = self.addrs.get(&to) else {
            return Ok(());
        };
        let now = self.now;
        let c = &mut self.clients[i];
        let ep = if publish {
            c.publish.as_mut().map(|p| &mut p.ep)
        } else {
            c.subscribe.as_mut()
        };
        let Some(ep) = ep.filter(|ep| ep.local == to) else {
            return Ok(());
        };
        ep.receive(now, data)?;
        self.poll_client(i, publish)
    }

    /// Drains one of a client's connections: its datagrams onto the wire, what it received
    /// recorded or acted on.
    fn poll_client(&mut self, i: usize, publish: bool) -> Result<(), HarnessError> {
        let now = self.now;
        let mut out = Vec::new();
        let mut received = Vec::new();
        let mut events = Vec::new();
        let c = &mut self.clients[i];
        let ep = if publish {
            c.publish.as_mut().map(|p| &mut p.ep)
        } else {
            c.subscribe.as_mut()
        };
        let Some(ep) = ep else {
            return Ok(());
        };
        ep.poll(now, &mut out, &mut received, &mut events)?;
        let from = ep.local;
        let at = now + self.config.network_delay;
        self.to_sfu.extend(out.into_iter().map(|d| (at, from, d)));
        if publish {
            if let Some(p) = c.publish.as_mut() {
                for m in received {
                    p.feedback(&m);
                }
            }
            return Ok(());
        }
        for ev in events {
            if let RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) = ev
                && let Some(sub) = c.subscribe.as_mut()
            {
                let tid = RTCRtpTransceiverId::from(init.receiver_id);
                if let Some(mid) = sub.pc.rtp_transceiver(tid).and_then(|t| t.mid().clone()) {
                    c.ssrc_mid.insert(init.ssrc, mid);
                }
            }
        }
        for m in received {
            if let RTCMessage::RtpPacket(_, packet) = m {
                c.record(now, &packet, self.config.record);
            }
        }
        Ok(())
    }

    /// A frame from the node, acted on as the web client does.
    fn client_frame(&mut self, conn: ConnId, m: ServerMessage) -> Result<(), HarnessError> {
        let Some(i) = self.clients.iter().position(|c| c.conn == conn) else {
            return Ok(());
        };
        let now = self.now;
        match &m {
            ServerMessage::PublishAnswer { sdp } => {
                if let Some(p) = self.clients[i].publish.as_mut() {
                    p.ep.pc
                        .set_remote_description(now, RTCSessionDescription::answer(sdp.clone())?)?;
                    p.learn_extensions();
                    self.poll_client(i, true)?;
                }
            }
            ServerMessage::SubscribeOffer { sdp, tracks } => {
                if self.clients[i].closed {
                    return Ok(());
                }
                if self.clients[i].subscribe.is_none() {
                    let addr = client_addr(self.next_addr)?;
                    self.next_addr += 1;
                    self.addrs.insert(addr, (i, false));
                    self.clients[i].subscribe =
                        Some(Endpoint::new(client_pc(now, addr)?, now, addr, SFU_ADDR));
                }
                let c = &mut self.clients[i];
                for t in tracks {
                    c.tracks.insert(t.mid.clone(), (t.participant, t.source));
                }
                let Some(sub) = c.subscribe.as_mut() else {
                    return Ok(());
                };
                sub.pc
                    .set_remote_description(now, RTCSessionDescription::offer(sdp.clone())?)?;
                let answer = sub.pc.create_answer(None)?;
                sub.pc.set_local_description(now, answer)?;
                let Some(answer) = sub.pc.local_description().map(|d| d.sdp) else {
                    return fail("no subscribe answer");
                };
                self.send(Who(i), ClientMessage::SubscribeAnswer { sdp: answer });
                self.poll_client(i, false)?;
            }
            _ => {}
        }
        self.clients[i].frames.push(m);
        Ok(())
    }
}

fn pop_due<T, U>(q: &mut VecDeque<(Instant, T, U)>, now: Instant) -> Option<(Instant, T, U)> {
    if q.front().is_some_and(|x| x.0 <= now) {
        q.pop_front()
    } else {
        None
    }
}

fn uuid_of(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}

impl Stream {
    fn new(sender: RTCRtpSenderId, ssrc: u32, layer: u8, rid: Option<&'static str>) -> Self {
        Stream {
            sender,
            ssrc,
            layer,
            rid,
            seq: 1_000u16.wrapping_mul(u16::from(layer) + 1),
            ts_base: 0x0100_0000u32.wrapping_mul(u32::from(layer) + 1),
            sent: 0,
        }
    }
}

impl Publisher {
    /// The ids the answer gave the extensions the publisher writes.
    fn learn_extensions(&mut self) {
        let mut ids = |sender: RTCRtpSenderId| -> Vec<(String, u8)> {
            self.ep
                .pc
                .rtp_sender(sender)
                .map(|mut s| {
                    s.get_parameters()
                        .rtp_parameters
                        .header_extensions
                        .iter()
                        .filter_map(|e| Some((e.uri.clone(), u8::try_from(e.id).ok()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let find =
            |ids: &[(String, u8)], uri: &str| ids.iter().find(|(u, _)| u == uri).map(|(_, id)| *id);
        if let Some(s) = self.camera.first() {
            let v = ids(s.sender);
            self.ext.mid = find(&v, rtc::sdp::extmap::SDES_MID_URI);
            self.ext.rid = find(&v, rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI);
        }
        if let Some(s) = &self.microphone {
            let a = ids(s.sender);
            self.ext.audio_level = find(&a, AUDIO_LEVEL_URI);
        }
    }

    /// A keyframe request makes the next frame a keyframe, on every layer.
    fn feedback(&mut self, m: &RTCMessage) {
        if let RTCMessage::RtcpPacket(_, packets) = m {
            for p in packets {
                if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>()
                    && self.camera.iter().any(|s| s.ssrc == pli.media_ssrc)
                {
                    self.keyframe_requests += 1;
                    self.keyframe_due = true;
                }
            }
        }
    }

    fn send_frame(&mut self, now: Instant, config: &MeetingConfig) -> Result<(), HarnessError> {
        let keyframe = std::mem::take(&mut self.keyframe_due);
        let frame = self.frames;
        self.frames += 1;
        let per_frame = config.packets_per_frame.max(1);
        for layer in 0..self.camera.len() {
            for j in 0..per_frame {
                let s = &mut self.camera[layer];
                let c = Content {
                    layer: s.layer,
                    index: s.sent,
                    frame_start: j == 0,
                    keyframe: keyframe && j == 0,
                };
                let mut header = rtc::rtp::header::Header {
                    version: 2,
                    marker: j + 1 == per_frame,
                    payload_type: VP8_PT,
                    sequence_number: s.seq,
                    timestamp: s.ts_base.wrapping_add(frame.wrapping_mul(3_000)),
                    ssrc: s.ssrc,
                    ..Default::default()
                };
                // Simulcast layers are told apart by mid and rid (the SDP names no SSRCs).
                if let (Some(rid), Some(rid_id), Some(mid_id), Some(mid)) =
                    (s.rid, self.ext.rid, self.ext.mid, &self.camera_mid)
                {
                    header.set_extension(mid_id, Bytes::from(mid.clone().into_bytes()))?;
                    header.set_extension(rid_id, Bytes::from_static(rid.as_bytes()))?;
                }
                s.seq = s.seq.wrapping_add(1);
                s.sent += 1;
                let packet = rtc::rtp::Packet {
                    header,
                    payload: payload(c, config.video_payload).into(),
                };
                let sender = s.sender;
                write(&mut self.ep, sender, now, packet)?;
            }
        }
        Ok(())
    }

    fn send_audio(
        &mut self,
        now: Instant,
        config: &MeetingConfig,
        speaking: bool,
    ) -> Result<(), HarnessError> {
        let n = self.audio_packets;
        self.audio_packets += 1;
        let level_id = self.ext.audio_level;
        let Some(s) = self.microphone.as_mut() else {
            return Ok(());
        };
        let mut header = rtc::rtp::header::Header {
            version: 2,
            payload_type: OPUS_PT,
            sequence_number: s.seq,
            timestamp: s.ts_base.wrapping_add(n.wrapping_mul(960)),
            ssrc: s.ssrc,
            ..Default::default()
        };
        if let Some(id) = level_id {
            // RFC 6464: voice flag and -dBov (speech loud, silence 127).
            let level = if speaking { 0x80 | 10 } else { 127 };
            header.set_extension(id, Bytes::copy_from_slice(&[level]))?;
        }
        let c = Content {
            layer: 0,
            index: s.sent,
            frame_start: false,
            keyframe: false,
        };
        s.seq = s.seq.wrapping_add(1);
        s.sent += 1;
        let packet = rtc::rtp::Packet {
            header,
            payload: payload(c, config.audio_payload).into(),
        };
        let sender = s.sender;
        write(&mut self.ep, sender, now, packet)
    }
}

fn write(
    ep: &mut Endpoint,
    sender: RTCRtpSenderId,
    now: Instant,
    packet: rtc::rtp::Packet,
) -> Result<(), HarnessError> {
    let Some(mut s) = ep.pc.rtp_sender(sender) else {
        return fail("the publisher's sender is gone");
    };
    s.write_rtp(now, packet)?;
    Ok(())
}

impl Client {
    fn record(&mut self, now: Instant, packet: &rtc::rtp::Packet, keep: bool) {
        let ssrc = packet.header.ssrc;
        let Some(&(from, source)) = self
            .ssrc_mid
            .get(&ssrc)
            .and_then(|mid| self.tracks.get(mid))
        else {
            return;
        };
        let content = content(&packet.payload);
        if let Some(c) = content {
            self.intact.insert((from, source, c.layer, c.index));
        }
        if keep {
            self.received.push(Received {
                at: now,
                from,
                source,
                ssrc,
                seq: packet.header.sequence_number,
                timestamp: packet.header.timestamp,
                marker: packet.header.marker,
                content,
            });
        }
    }
}
