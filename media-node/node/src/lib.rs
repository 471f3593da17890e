//! The media node: drives the SFU core ([`aula_sfu::Sfu`]) with one UDP socket, WebSocket
//! signalling and timers; registers itself in the node registry and renews its heartbeat;
//! records meetings; serves Prometheus metrics; drains on shutdown.
//!
//! The same node runs as its own binary on a media host and in-process in `aula serve`.

pub mod http;
pub mod metrics;
mod signalling;

use aula_domain::ids::IdGenerator;
use aula_domain::ports::{MeetingStore, NodeRegistryStore, PlacementStore};
use aula_domain::{Clock, MediaNode as NodeRecord, Meeting, NodeId, RoomId, retention};
use aula_sfu::protocol::ServerMessage;
use aula_sfu::{ConnId, Entropy, Input, Output, Sfu, SfuConfig};
use aula_tokens::JoinVerifier;
use axum::Router;
use axum::routing::get;
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

pub use metrics::Metrics;

/// What the node's ports need of the store: the registry, the meeting records and the
/// seats reserved for its rooms (it gives them back).
pub trait NodeStore: NodeRegistryStore + MeetingStore + PlacementStore + Send + Sync {}
impl<T: NodeRegistryStore + MeetingStore + PlacementStore + Send + Sync + ?Sized> NodeStore for T {}

/// How often a node renews its registry heartbeat. Placement passes over a reported node
/// whose heartbeat is 3 s old (`retention::NODE_SUSPECT_AFTER`): renew well within that.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Where the UDP socket binds (all media of all meetings uses this one port).
    pub udp_bind: SocketAddr,
    /// The address browsers send media to (the ICE host candidate): the public address of
    /// the host and the UDP port. Defaults to the bound address when that is specific.
    pub public_udp: Option<SocketAddr>,
    /// Where clients reach the signalling (`wss://…/media`), as registered for placement.
    pub signalling_url: String,
    pub capacity: u32,
    pub last_n: usize,
    /// Threads that encrypt forwarded packets for subscribers (1: the media loop's own).
    pub fanout_threads: usize,
    /// How long a draining node waits for its meetings to move before it exits.
    pub drain_timeout: Duration,
    pub heartbeat_every: Duration,
    /// Frames waiting for one client's WebSocket: a client that lets more pile up (it
    /// stopped reading) is dropped from its meeting instead of growing the node's memory.
    pub outbound_frames: usize,
}

/// Frames one WebSocket may have waiting by default: a full room's worth of joins,
/// chat and moderation frames several times over (a client reading normally has a few).
pub const OUTBOUND_FRAMES: usize = 512;

/// Commands from all WebSockets waiting for the media loop: when it is full, sessions wait
/// and stop reading their sockets, so clients feel TCP back-pressure and memory stays put.
const COMMAND_QUEUE: usize = 1024;

impl NodeConfig {
    pub fn local(id: NodeId, signalling_url: String) -> Self {
        NodeConfig {
            id,
            udp_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_udp: None,
            signalling_url,
            capacity: 500,
            last_n: 20,
            fanout_threads: 2,
            drain_timeout: Duration::from_secs(30),
            heartbeat_every: HEARTBEAT_EVERY,
            outbound_frames: OUTBOUND_FRAMES,
        }
    }
}

/// The ports the node uses.
#[derive(Clone)]
pub struct NodeDeps {
    pub store: Arc<dyn NodeStore>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    pub verifier: JoinVerifier,
}

pub(crate) enum Command {
    Open {
        conn: ConnId,
        frames: mpsc::Sender<Outbound>,
        /// Set when the media loop drops the client for not reading its frames.
        dropped: Arc<AtomicBool>,
    },
    /// Input for the SFU from a WebSocket or the node (joins, frames, chat, closes and
    /// draining); datagrams and timeouts come from the media loop itself.
    Sfu(Input<'static>),
}

/// What the media loop sends to one WebSocket.
#[derive(Debug)]
pub(crate) enum Outbound {
    Frame(String),
    Close,
}

/// A running media node.
#[derive(Clone)]
pub struct MediaNode {
    commands: mpsc::Sender<Command>,
    delivered: Arc<Mutex<Delivered>>,
    deps: NodeDeps,
    metrics: Metrics,
    udp: SocketAddr,
    next_conn: Arc<AtomicU64>,
    empty: watch::Receiver<bool>,
    /// Set once draining starts: the health check then says so (see [`MediaNode::draining`]).
    draining: Arc<AtomicBool>,
    config: NodeConfig,
}

struct RandomEntropy;

impl Entropy for RandomEntropy {
    fn token(&mut self, len: usize) -> String {
        rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(len)
            .map(char::from)
            .collect()
    }
    fn ssrc(&mut self) -> u32 {
        rand::rng().random()
    }
}

impl MediaNode {
    /// Binds the UDP port, starts the media loop and the registry heartbeat.
    pub async fn start(config: NodeConfig, deps: NodeDeps) -> anyhow::Result<MediaNode> {
        use anyhow::Context as _;
        let socket = UdpSocket::bind(config.udp_bind)
            .await
            .with_context(|| format!("binding the media port {}", config.udp_bind))?;
        let bound = socket.local_addr().context("reading the media port")?;
        let candidate = match config.public_udp {
            Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), bound.port()),
            Some(a) => a,
            None if bound.ip().is_unspecified() => anyhow::bail!(
                "the media port is bound to {bound}: set the public address browsers reach it at"
            ),
            None => bound,
        };
        let sfu = Sfu::new(
            SfuConfig {
                candidate,
                last_n: config.last_n,
                fanout_threads: config.fanout_threads,
                initial_estimate_bps: aula_sfu::media::INITIAL_ESTIMATE_BPS as u64,
                capacity: config.capacity,
            },
            Box::new(RandomEntropy),
        );
        let sender = spawn_sender(&socket)?;
        let metrics = Metrics::new(config.capacity);
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let (empty_tx, empty) = watch::channel(true);
        let (load_tx, load_rx) = watch::channel(0u32);
        let (drain_tx, drain_rx) = watch::channel(false);
        let (rooms_tx, rooms_rx) = watch::channel(HashSet::new());
        let media = MediaLoop {
            node_id: config.id,
            live_rooms: rooms_tx,
            sfu,
            socket,
            sender,
            commands: rx,
            conns: HashMap::new(),
            meetings: HashMap::new(),
            deps: deps.clone(),
            metrics: metrics.clone(),
            empty: empty_tx,
            load: load_tx,
            draining: drain_tx,
        };
        tokio::spawn(media.run());
        tokio::spawn(heartbeat(config.clone(), deps.clone(), load_rx, drain_rx));
        tokio::spawn(lapse_reservations(config.id, deps.clone(), rooms_rx));
        tracing::info!(node = %config.id, udp = %candidate, signalling = %config.signalling_url, "media node started");
        Ok(MediaNode {
            commands,
            delivered: Arc::new(Mutex::new(Delivered::default())),
            deps,
            metrics,
            udp: candidate,
            next_conn: Arc::new(AtomicU64::new(1)),
            empty,
            draining: Arc::new(AtomicBool::new(false)),
            config,
        })
    }

    /// The UDP address media flows to.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// `/media`, the signalling WebSocket (the caller adds the security headers with the
    /// rest of its routes).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/media", get(signalling::upgrade))
            .with_state(self.clone())
    }

    /// `/metrics` (Prometheus), for a private listener only: it tells anyone who can read
    /// it how many meetings run here.
    pub fn metrics_router(&self) -> Router {
        let metrics = self.metrics.clone();
        let router = Router::new().route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.encode() }
            }),
        );
        http::security_headers(router, http::API_CONTENT_SECURITY_POLICY.to_owned())
    }

    /// Stops taking rooms, asks every client to move, and returns once the node is empty
    /// or the drain timeout passed.
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        let _ = self.commands.send(Command::Sfu(Input::Drain)).await;
        let mut empty = self.empty.clone();
        let wait = empty.wait_for(|e| *e);
        let _ = tokio::time::timeout(self.config.drain_timeout, wait).await;
    }

    /// Whether the node drains: it takes no rooms and its clients are moving away. Its health
    /// check fails from then on, so a portal asked about it (a moving client names the node
    /// it leaves) places nobody here while the registry still lists it.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn connection_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits while the media loop's queue is full (see [`COMMAND_QUEUE`]).
    pub(crate) async fn send(&self, c: Command) {
        let _ = self.commands.send(c).await;
    }

    /// Whether the message `id`, whose relay token expires at `expires` (epoch seconds),
    /// is delivered now: false when it already was (a replayed token).
    pub(crate) fn first_delivery(
        &self,
        id: aula_domain::MessageId,
        expires: i64,
        now: i64,
    ) -> bool {
        // A poisoned lock only means another session panicked mid-insert; the map is whole.
        let mut d = self
            .delivered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        d.first(id, expires, now)
    }

    pub(crate) fn deps(&self) -> &NodeDeps {
        &self.deps
    }
}

/// Datagrams handed to the SFU before it writes what they forward: enough to spread a
/// batch over the cores, few enough that the first waits well under a millisecond.
const RECEIVE_BATCH: usize = 16;

struct MediaLoop {
    sfu: Sfu,
    socket: UdpSocket,
    sender: std::sync::mpsc::SyncSender<(aula_sfu::Datagram, SocketAddr)>,
    commands: mpsc::Receiver<Command>,
    /// Each connection's frames, and its flag for being dropped as a slow reader.
    conns: HashMap<ConnId, (mpsc::Sender<Outbound>, Arc<AtomicBool>)>,
    meetings: HashMap<RoomId, Meeting>,
    node_id: NodeId,
    /// The rooms with a meeting here, for the sweep of unused reservations.
    live_rooms: watch::Sender<HashSet<RoomId>>,
    deps: NodeDeps,
    metrics: Metrics,
    empty: watch::Sender<bool>,
    load: watch::Sender<u32>,
    draining: watch::Sender<bool>,
}

impl MediaLoop {
    async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.flush().await;
            let deadline = self
                .sfu
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => return,
                },
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        let now = Instant::now();
                        self.sfu.handle_input(now, Input::Datagram { from, data: &buf[..n] });
                        // Whatever else already waits goes into the same fan-out batch.
                        for _ in 1..RECEIVE_BATCH {
                            let Ok((n, from)) = self.socket.try_recv_from(&mut buf) else {
                                break;
                            };
                            self.sfu.handle_input(now, Input::Datagram { from, data: &buf[..n] });
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "receiving a datagram failed"),
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.sfu.handle_input(Instant::now(), Input::Timeout);
                }
                _ = tick.tick() => self.observe(),
            }
        }
    }

    fn observe(&mut self) {
        let stats = self.sfu.stats();
        self.metrics.observe(&stats, *self.draining.borrow());
        let _ = self.load.send(stats.load());
        self.observe_membership();
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Open {
                conn,
                frames,
                dropped,
            } => {
                self.conns.insert(conn, (frames, dropped));
            }
            Command::Sfu(input) => {
                match &input {
                    Input::Leave { conn } => {
                        self.conns.remove(conn);
                    }
                    Input::Drain => {
                        let _ = self.draining.send(true);
                    }
                    _ => {}
                }
                self.sfu.handle_input(now, input);
            }
        }
        self.observe_membership();
    }

    /// Tells drain whether the node is empty, as soon as a command changes it.
    fn observe_membership(&mut self) {
        let empty = self.sfu.is_empty();
        if *self.empty.borrow() != empty {
            let _ = self.empty.send(empty);
        }
    }

    async fn flush(&mut self) {
        while let Some(out) = self.sfu.poll_output() {
            match out {
                Output::Transmit { to, data } => {
                    // The system calls run on the sender thread, not in this loop; when it
                    // falls behind, datagrams are dropped as a full network would.
                    let _ = self.sender.try_send((data, to));
                }
                Output::Signal { conn, message } => {
                    let Some((c, dropped)) = self.conns.get(&conn) else {
                        continue;
                    };
                    if let Err(mpsc::error::TrySendError::Full(_)) =
                        c.try_send(Outbound::Frame(message.to_json()))
                    {
                        // The client stopped reading: it leaves the meeting (the others
                        // are told), and its session ends at its next frame.
                        tracing::info!(conn, "a client's frames piled up; dropping it");
                        dropped.store(true, Ordering::Relaxed);
                        self.conns.remove(&conn);
                        self.metrics.slow_client_dropped();
                        self.sfu.handle_input(Instant::now(), Input::Leave { conn });
                    }
                }
                Output::Close { conn } => {
                    // A full queue closes too: the session ends when the sender is gone.
                    if let Some((c, _)) = self.conns.remove(&conn) {
                        let _ = c.try_send(Outbound::Close);
                    }
                }
                Output::MeetingStarted { room } => self.meeting_started(room),
                Output::MeetingEnded {
                    room,
                    peak_participants,
                } => self.meeting_ended(room, peak_participants),
            }
        }
    }

    fn meeting_started(&mut self, room: RoomId) {
        let now = self.deps.clock.now();
        let meeting = Meeting {
            id: self.deps.ids.meeting_id(),
            room_id: room,
            started_at: now,
            ended_at: None,
            peak_participants: 1,
            expires_at: retention::history_expiry(now),
        };
        self.meetings.insert(room, meeting.clone());
        self.live_rooms.send_modify(|r| {
            r.insert(room);
        });
        self.record(meeting);
    }

    fn meeting_ended(&mut self, room: RoomId, peak: u32) {
        let Some(mut meeting) = self.meetings.remove(&room) else {
            return;
        };
        let now = self.deps.clock.now();
        meeting.ended_at = Some(now);
        meeting.peak_participants = peak;
        meeting.expires_at = retention::history_expiry(now);
        self.record(meeting);
        self.live_rooms.send_modify(|r| {
            r.remove(&room);
        });
        // The room's seats go back to the node: the next grant reserves them again.
        let (store, node) = (self.deps.store.clone(), self.node_id);
        tokio::spawn(async move {
            if let Err(e) = store.release(room, node).await {
                tracing::warn!(error = %aula_domain::ErrorChain(&e), %room, "releasing the room's seats failed");
            }
        });
    }

    /// Writes a meeting record without holding up the media.
    fn record(&self, meeting: Meeting) {
        let store = self.deps.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.put_meeting(&meeting).await {
                tracing::warn!(error = %aula_domain::ErrorChain(&e), room = %meeting.room_id, "recording the meeting failed");
            }
        });
    }
}

/// A thread that sends the loop's datagrams on a clone of its socket: a third of the loop's
/// time went into `sendto` (measured with perf), which now runs beside it.
fn spawn_sender(
    socket: &UdpSocket,
) -> anyhow::Result<std::sync::mpsc::SyncSender<(aula_sfu::Datagram, SocketAddr)>> {
    use anyhow::Context as _;
    let clone = socket2::SockRef::from(socket)
        .try_clone()
        .context("cloning the media socket")?;
    let std_socket: std::net::UdpSocket = clone.into();
    let (tx, rx) = std::sync::mpsc::sync_channel::<(aula_sfu::Datagram, SocketAddr)>(16_384);
    std::thread::Builder::new()
        .name("media-send".into())
        .spawn(move || {
            // The descriptor is shared with the loop's (non-blocking) socket: on a full
            // buffer, wait a moment and retry a few times, then drop the datagram.
            for (data, to) in rx {
                for _ in 0..20 {
                    match std_socket.send_to(&data, to) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(std::time::Duration::from_micros(50));
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, %to, "sending a datagram failed");
                            break;
                        }
                        Ok(_) => break,
                    }
                }
            }
        })
        .context("starting the sender thread")?;
    Ok(tx)
}

/// Registers the node and renews its heartbeat; removes it when draining starts, so
/// placement sends no new rooms here.
async fn heartbeat(
    config: NodeConfig,
    deps: NodeDeps,
    load: watch::Receiver<u32>,
    mut draining: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(config.heartbeat_every);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = async { draining.wait_for(|d| *d).await.is_ok() } => {
                if let Err(e) = deps.store.remove_node(config.id).await {
                    tracing::warn!(error = %aula_domain::ErrorChain(&e), "deregistering the node failed");
                }
                return;
            }
        }
        let now = deps.clock.now();
        let record = NodeRecord {
            id: config.id,
            address: config.signalling_url.clone(),
            capacity: config.capacity,
            load: *load.borrow(),
            reserved: 0,
            last_heartbeat: now,
            expires_at: retention::heartbeat_expiry(now),
        };
        if let Err(e) = deps.store.put_node(&record).await {
            tracing::warn!(error = %aula_domain::ErrorChain(&e), "renewing the heartbeat failed");
        }
    }
}

/// How often the node looks for reservations nobody used.
const LAPSE_SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Gives back the seats of rooms placed here that have no meeting and took no seat for
/// [`retention::RESERVATION_LAPSE`] (a teacher got a grant and never came).
async fn lapse_reservations(
    node: NodeId,
    deps: NodeDeps,
    live_rooms: watch::Receiver<HashSet<RoomId>>,
) {
    let mut every = tokio::time::interval(LAPSE_SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = deps.clock.now();
        let reservations = match deps.store.reservations_on(node, now).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %aula_domain::ErrorChain(&e), "listing the node's reservations failed");
                continue;
            }
        };
        for p in reservations {
            let unused = now.minus(retention::RESERVATION_LAPSE) > p.reserved_at
                && !live_rooms.borrow().contains(&p.room_id);
            if unused {
                tracing::info!(room = %p.room_id, seats = p.seats, "a reservation lapsed unused");
                if let Err(e) = deps.store.release(p.room_id, node).await {
                    tracing::warn!(error = %aula_domain::ErrorChain(&e), "releasing a lapsed reservation failed");
                }
            }
        }
    }
}

/// Sends one frame to a connection that is about to be closed (before it joined).
pub(crate) fn error_frame(code: aula_sfu::protocol::ErrorCode, message: &str) -> String {
    ServerMessage::error(code, message).to_json()
}

/// Ids of chat messages already delivered, each kept until its relay token expires (a
/// minute): after that the token itself is refused, so memory holds at most a minute of
/// the node's chat.
#[derive(Default)]
struct Delivered {
    ids: HashMap<aula_domain::MessageId, i64>,
    /// Expired ids are swept when the map reaches this size, which then doubles the live
    /// count: a sweep per insertion would cost O(n) each.
    sweep_at: usize,
}

impl Delivered {
    const MIN_SWEEP: usize = 1024;

    fn first(&mut self, id: aula_domain::MessageId, expires: i64, now: i64) -> bool {
        if self.ids.len() >= self.sweep_at {
            self.ids.retain(|_, exp| *exp >= now);
            self.sweep_at = (self.ids.len() * 2).max(Self::MIN_SWEEP);
        }
        match self.ids.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(expires);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aula_domain::{MessageId, Timestamp};

    fn id(n: u128) -> MessageId {
        MessageId::new(Timestamp::from_secs(0), uuid::Uuid::from_u128(n))
    }

    #[test]
    fn a_message_is_delivered_once_and_expired_ids_are_forgotten() {
        let mut d = Delivered::default();
        assert!(d.first(id(1), 60, 0));
        assert!(
            !d.first(id(1), 60, 30),
            "a replay within the minute is refused"
        );
        for n in 2..5000 {
            assert!(d.first(id(n), 60 + n as i64, n as i64));
        }
        assert!(
            d.ids.len() < 3000,
            "ids whose tokens expired are swept: {} kept",
            d.ids.len()
        );
    }
}
