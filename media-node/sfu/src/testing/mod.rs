//! A meeting in memory, for tests and the forwarding bench (cargo feature `test-support`):
//! the real [`Sfu`] and real `rtc` client peer connections (one per participant and
//! direction, as browsers have), signalling with the protocol's own messages, and datagrams
//! handed between the clients and the SFU on a simulated clock. ICE, DTLS and SRTP really
//! run; only the sockets and the wall clock are missing, so what happens when never depends
//! on the machine's speed or load (the libraries' own randomness, keys and ICE tie-breakers,
//! aside).
//!
//! [`Meeting::progress`] is the one step (after str0m's `tests/common.rs`): everything due
//! now happens, then the clock moves on to the next thing anyone waits for. Clients behave
//! like the web client: they answer subscribe offers, send a camera (one stream or three
//! simulcast layers) at 30 frames per second and a microphone at 50 packets per second from
//! the moment their publish connection is up, and send a keyframe (on every layer) at the
//! next frame after a keyframe request. Every call into the SFU is in `sfu_io`.

mod client;
mod endpoint;
mod sfu_io;

use client::Publisher;
pub use client::{Camera, Client, Content, Publish, Received, SIMULCAST_RIDS, content, payload};
pub use endpoint::{Endpoint, SFU_ADDR, client_addr, client_pc};

use crate::media::MediaError;
use crate::protocol::{ClientMessage, ServerMessage};
use crate::{ConnId, Entropy, Joining, Output, Sfu, SfuConfig, Stats};
use aula_domain::services::GrantRole;
use aula_domain::{Participant, RoomId, RoomSettings};
use bytes::BytesMut;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::RTCRtpTransceiverId;
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
    /// Bytes of a video packet's payload on the only or full layer; simulcast's smaller
    /// layers get a quarter of the one above (as a browser's bitrates go).
    pub video_payload: usize,
    pub audio_payload: usize,
    /// Keep every packet the clients receive (see [`Client::received`]); without, only the
    /// intact ones are counted.
    pub record: bool,
    /// Where each subscriber's downlink estimate starts (`SfuConfig::initial_estimate_bps`).
    pub initial_estimate_bps: u64,
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
            initial_estimate_bps: crate::media::INITIAL_ESTIMATE_BPS as u64,
        }
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
    /// Downlinks with a bandwidth cap, by the client connection's address.
    links: HashMap<SocketAddr, Link>,
}

/// A capped link towards a client, as `tc tbf` makes one: datagrams leave one after another
/// at the rate, and one that would wait longer than the queue allows is dropped.
struct Link {
    bits_per_second: u64,
    queue: Duration,
    busy_until: Instant,
    /// In flight, each with its arrival time (in order: the link sends one at a time).
    in_flight: VecDeque<(Instant, SocketAddr, BytesMut)>,
    dropped: u64,
}

impl Link {
    fn send(&mut self, now: Instant, delay: Duration, to: SocketAddr, data: BytesMut) {
        let start = self.busy_until.max(now);
        if start - now > self.queue {
            self.dropped += 1;
            return;
        }
        let bits = data.len() as u64 * 8;
        self.busy_until =
            start + Duration::from_micros(bits * 1_000_000 / self.bits_per_second.max(1));
        self.in_flight
            .push_back((self.busy_until + delay, to, data));
    }
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
                initial_estimate_bps: config.initial_estimate_bps,
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
            links: HashMap::new(),
        }
    }

    /// Caps the client's downlink (what its subscribe connection receives) at this rate with
    /// a queue of `queue`, as `tc tbf` does; `None` lifts the cap. The client must have its
    /// subscribe connection.
    pub fn cap_downlink(
        &mut self,
        who: Who,
        cap: Option<(u64, Duration)>,
    ) -> Result<(), HarnessError> {
        let Some(addr) = self.clients[who.0].subscribe.as_ref().map(|e| e.local) else {
            return fail(format!("{who:?} has no subscribe connection to cap"));
        };
        match cap {
            Some((bits_per_second, queue)) => {
                let now = self.now;
                let link = self.links.entry(addr).or_insert(Link {
                    bits_per_second,
                    queue,
                    busy_until: now,
                    in_flight: VecDeque::new(),
                    dropped: 0,
                });
                link.bits_per_second = bits_per_second;
                link.queue = queue;
            }
            None => {
                // What is in flight still arrives.
                if let Some(link) = self.links.remove(&addr) {
                    self.to_clients.extend(link.in_flight);
                    self.to_clients.make_contiguous().sort_by_key(|x| x.0);
                }
            }
        }
        Ok(())
    }

    /// Datagrams the client's capped downlink dropped.
    pub fn downlink_dropped(&self, who: Who) -> u64 {
        self.clients[who.0]
            .subscribe
            .as_ref()
            .and_then(|e| self.links.get(&e.local))
            .map_or(0, |l| l.dropped)
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
        let ssrcs = [self.ssrc(), self.ssrc(), self.ssrc(), self.ssrc()];
        let (publisher, sdp, tracks) =
            Publisher::offer(now, addr, &format!("client-{}", who.0), what, ssrcs)?;
        let c = &mut self.clients[who.0];
        if let Some(old) = c.publish.take() {
            self.addrs.remove(&old.ep.local);
        }
        self.addrs.insert(addr, (who.0, true));
        c.publish = Some(publisher);
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

    /// The browser stops (or resumes) sending one simulcast layer of its camera, as Chrome
    /// does when CPU or uplink runs short. A resumed layer starts with a keyframe.
    pub fn stop_layer(&mut self, who: Who, layer: u8, stopped: bool) {
        if let Some(p) = self.clients[who.0].publish.as_mut() {
            if stopped {
                p.stopped_layers.insert(layer);
            } else if p.stopped_layers.remove(&layer) {
                p.keyframe_due = true;
            }
        }
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
            self.links
                .values()
                .filter_map(|l| l.in_flight.front().map(|x| x.0))
                .min(),
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
            let mut due = Vec::new();
            for link in self.links.values_mut() {
                while let Some((_, to, data)) = pop_due(&mut link.in_flight, self.now) {
                    due.push((to, data));
                }
            }
            for (to, data) in due {
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
                    let delay = self.config.network_delay;
                    match self.links.get_mut(&to) {
                        Some(link) => link.send(self.now, delay, to, data),
                        None => self.to_clients.push_back((self.now + delay, to, data)),
                    }
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
