//! A WebRTC client of the media node, built on the async `webrtc` crate: it joins over the
//! signalling WebSocket, publishes synthetic Opus (50 packets/s, with audio levels) and VP8
//! RTP, answers the node's subscribe offers, and checks every packet it receives. The
//! integration tests and the load generator both use it.
//!
//! Every synthetic payload carries a magic number, its sender, its sequence and the time it
//! was sent, followed by bytes derived from those: a receiver recognises a damaged payload,
//! attributes each packet to its sender and measures forwarding latency (all clients of a
//! run share one process and one clock).

use anyhow::{Context as _, anyhow, bail};
use aula_domain::Participant;
use aula_sfu::protocol::{ClientMessage, PublishedTrack, ServerMessage, Source};
use futures_util::{SinkExt as _, StreamExt as _};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
pub mod janus;
pub mod light;
mod payload;
mod str0m_peer;
mod synthetic;

pub use janus::JanusClient;
pub use light::LightClient;
pub use payload::percentile;
pub(crate) use payload::{HEADER_LEN, MTU_PAYLOAD, frame_packets, payload_vec, record_received};
use synthetic::{local_track, send_audio, send_video, watch_keyframe_requests};

use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

/// What to publish.
#[derive(Debug, Clone, Copy)]
pub struct Publish {
    pub audio: bool,
    pub video: bool,
    /// Video bitrate in bits per second (at 30 frames per second).
    pub video_bitrate: u32,
    /// The audio level (RFC 6464, 0 loudest … 127 silent) the microphone reports.
    pub loudness: u8,
    /// False: a silent microphone with Opus DTX, one packet every 400 ms instead of 50/s.
    pub talking: bool,
    /// Not 0: one video packet in this many is never sent (its sequence number is skipped),
    /// as a lossy uplink loses them.
    pub lose_one_in: u32,
}

impl Default for Publish {
    fn default() -> Self {
        Publish {
            audio: true,
            video: true,
            video_bitrate: 1_500_000,
            loudness: 60,
            talking: true,
            lose_one_in: 0,
        }
    }
}

/// What a client received from one remote participant's source.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub packets: u64,
    pub bytes: u64,
    /// Payloads that were not what the sender sent.
    pub damaged: u64,
    /// Sender indices seen in the payloads (a stream carries one sender's media).
    pub senders: Vec<u32>,
    /// Forwarding latency samples, microseconds (send → receive, same process).
    pub latency_us: Vec<u64>,
}

#[derive(Default)]
pub struct ClientStats {
    /// By (remote participant, source).
    pub received: Mutex<HashMap<(String, Source), Received>>,
    /// Keyframe requests (PLI/FIR) that reached this client as a publisher.
    pub keyframe_requests: AtomicU64,
    pub sent_packets: AtomicU64,
    pub sent_video_packets: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// Whose video the node forwards (its latest `speakers` frame).
    pub forwarded_video: Mutex<Vec<Participant>>,
}

impl ClientStats {
    pub fn received_from(&self, participant: &Participant, source: Source) -> Received {
        self.received
            .lock()
            .ok()
            .and_then(|r| r.get(&(participant.to_string(), source)).cloned())
            .unwrap_or_default()
    }
}

/// A client connected to a media node.
pub struct Client {
    /// Who the node says we are (after `welcome`).
    pub me: Participant,
    /// Our index in payloads.
    pub index: u32,
    pub stats: Arc<ClientStats>,
    frames: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedReceiver<ServerMessage>,
    /// Frames already taken from `events` by a wait but not matched.
    backlog: Vec<ServerMessage>,
    publish_pc: Option<Arc<dyn PeerConnection>>,
    sending: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The tasks sending on the current publish connection.
    media_tasks: Vec<tokio::task::JoinHandle<()>>,
    closed: Arc<AtomicBool>,
}

/// How the first frames after `join` went.
pub enum Joined {
    Welcome(Client),
    Lobby(Client),
}

impl Client {
    /// Opens the signalling connection and sends `join`; returns after `welcome` (or
    /// `lobby`). A refusal (error frame or farewell) is an error naming it.
    pub async fn join(
        url: &str,
        room: aula_domain::RoomId,
        grant: &str,
        index: u32,
    ) -> anyhow::Result<Joined> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let (mut sink, mut stream) = ws.split();
        let (frames_tx, mut frames_rx) = mpsc::unbounded_channel::<String>();
        let (events_tx, mut events_rx) = mpsc::unbounded_channel::<ServerMessage>();
        let stats = Arc::new(ClientStats::default());
        let closed = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(async move {
            while let Some(f) = frames_rx.recv().await {
                if sink.send(WsMessage::Text(f.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let subscriber = Subscriber {
            frames: frames_tx.clone(),
            pc: None,
            stats: stats.clone(),
        };
        let reader = {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut subscriber = subscriber;
                while let Some(Ok(msg)) = stream.next().await {
                    let WsMessage::Text(text) = msg else {
                        continue;
                    };
                    let Ok(frame) = serde_json::from_str::<ServerMessage>(&text) else {
                        continue;
                    };
                    if let ServerMessage::SubscribeOffer { sdp, .. } = &frame
                        && let Err(e) = subscriber.offer(sdp).await
                    {
                        tracing::warn!(error = %e, "answering a subscribe offer failed");
                    }
                    if let ServerMessage::Speakers { video, .. } = &frame
                        && let Ok(mut v) = subscriber.stats.forwarded_video.lock()
                    {
                        v.clone_from(video);
                    }
                    if events_tx.send(frame).is_err() {
                        break;
                    }
                }
                closed.store(true, Ordering::SeqCst);
                if let Some(pc) = subscriber.pc.take() {
                    let _ = pc.close().await;
                }
            })
        };
        let join = ClientMessage::Join {
            v: aula_sfu::protocol::PROTOCOL_VERSION,
            room,
            grant: grant.to_owned(),
        };
        frames_tx
            .send(to_json(&join)?)
            .map_err(|_| anyhow!("the connection closed"))?;
        let first = tokio::time::timeout(Duration::from_secs(10), events_rx.recv())
            .await
            .context("no answer to join within 10 s")?
            .ok_or_else(|| anyhow!("the node closed the connection"))?;
        let make = |me| Client {
            me,
            index,
            stats,
            frames: frames_tx,
            events: events_rx,
            backlog: Vec::new(),
            publish_pc: None,
            sending: Arc::new(AtomicBool::new(true)),
            tasks: vec![writer, reader],
            media_tasks: Vec::new(),
            closed,
        };
        match first {
            ServerMessage::Welcome { you, .. } => Ok(Joined::Welcome(make(you))),
            ServerMessage::Lobby => Ok(Joined::Lobby(make(participant_of_grant(grant)?))),
            other => bail!("join refused: {}", serde_json::to_string(&other)?),
        }
    }

    pub fn send(&self, message: &ClientMessage) -> anyhow::Result<()> {
        self.frames
            .send(to_json(message)?)
            .map_err(|_| anyhow!("the connection closed"))
    }

    /// Sends a raw text frame (for tests of malformed input).
    pub fn send_raw(&self, text: String) -> anyhow::Result<()> {
        self.frames
            .send(text)
            .map_err(|_| anyhow!("the connection closed"))
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits for the first frame `pick` accepts (other frames are kept for later waits).
    pub async fn wait_for<T>(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> anyhow::Result<T> {
        if let Some(i) = self.backlog.iter().position(|f| pick(f).is_some()) {
            let f = self.backlog.remove(i);
            return pick(&f).ok_or_else(|| anyhow!("unreachable"));
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow!("no such frame within {within:?}"))?
                .ok_or_else(|| anyhow!("the node closed the connection"))?;
            if let Some(t) = pick(&frame) {
                return Ok(t);
            }
            self.backlog.push(frame);
        }
    }

    /// Frames received so far that no wait took.
    pub fn drain_frames(&mut self) -> Vec<ServerMessage> {
        while let Ok(f) = self.events.try_recv() {
            self.backlog.push(f);
        }
        std::mem::take(&mut self.backlog)
    }

    /// Offers our media on a new publish connection and starts sending once connected. A
    /// second call replaces the first connection (`restart`), as browsers do.
    pub async fn publish(&mut self, what: Publish) -> anyhow::Result<()> {
        let restart = self.publish_pc.is_some();
        if let Some(old) = self.publish_pc.take() {
            for t in self.media_tasks.drain(..) {
                t.abort();
            }
            let _ = old.close().await;
        }
        let (gathered_tx, mut gathered) = mpsc::unbounded_channel();
        let (connected_tx, mut connected) = mpsc::unbounded_channel();
        let pc = peer_connection(Arc::new(Events {
            gathered: gathered_tx,
            connected: connected_tx,
            tracks: None,
        }))
        .await?;
        // New SSRCs for a new connection, as a browser picks.
        let ssrc_base = 0x1000_0000 + self.index * 16 + if restart { 4 } else { 0 };
        let mut tracks = Vec::new();
        let audio = what.audio.then(|| {
            local_track(
                RtpCodecKind::Audio,
                ssrc_base + 1,
                &format!("{}-audio", self.index),
            )
        });
        let video = what.video.then(|| {
            local_track(
                RtpCodecKind::Video,
                ssrc_base + 2,
                &format!("{}-video", self.index),
            )
        });
        for t in audio.iter().chain(video.iter()) {
            pc.add_track(t.clone() as Arc<dyn TrackLocal>)
                .await
                .context("adding a track")?;
        }
        let offer = pc.create_offer(None).await.context("creating the offer")?;
        pc.set_local_description(offer)
            .await
            .context("setting the offer")?;
        tokio::time::timeout(Duration::from_secs(5), gathered.recv())
            .await
            .context("ICE gathering did not complete")?;
        let sdp = pc
            .local_description()
            .await
            .ok_or_else(|| anyhow!("no local description"))?
            .sdp;
        for (kind, mid) in mids(&sdp) {
            tracks.push(PublishedTrack {
                mid,
                source: if kind == "audio" {
                    Source::Microphone
                } else {
                    Source::Camera
                },
            });
        }
        self.send(&ClientMessage::PublishOffer {
            sdp,
            tracks,
            restart,
        })?;
        let answer = self
            .wait_for(Duration::from_secs(10), |f| match f {
                ServerMessage::PublishAnswer { sdp } => Some(Ok(sdp.clone())),
                ServerMessage::Error { message, .. } => Some(Err(message.clone())),
                _ => None,
            })
            .await?
            .map_err(|e| anyhow!("publishing refused: {e}"))?;
        pc.set_remote_description(RTCSessionDescription::answer(answer)?)
            .await
            .context("setting the answer")?;
        tokio::time::timeout(Duration::from_secs(10), connected.recv())
            .await
            .context("the publish connection did not connect within 10 s")?;
        if let Some(a) = audio {
            self.media_tasks.push(tokio::spawn(send_audio(
                a,
                self.index,
                if what.talking { what.loudness } else { 127 },
                what.talking,
                self.stats.clone(),
                self.sending.clone(),
            )));
        }
        if let Some(v) = video {
            let keyframes = Arc::new(AtomicBool::new(true));
            self.media_tasks.push(tokio::spawn(watch_keyframe_requests(
                v.clone(),
                keyframes.clone(),
                self.stats.clone(),
            )));
            self.media_tasks.push(tokio::spawn(send_video(
                v,
                self.index,
                what.video_bitrate,
                what.lose_one_in,
                keyframes,
                self.stats.clone(),
                self.sending.clone(),
            )));
        }
        self.publish_pc = Some(pc);
        Ok(())
    }

    /// Stops sending media (the connections stay).
    pub fn stop_sending(&self) {
        self.sending.store(false, Ordering::SeqCst);
    }

    /// Sends media again (or for the first time, after publishing on hold).
    pub fn start_sending(&self) {
        self.sending.store(true, Ordering::SeqCst);
    }

    /// Closes everything.
    pub async fn close(mut self) {
        let _ = self.send(&ClientMessage::Leave);
        if let Some(pc) = self.publish_pc.take() {
            let _ = pc.close().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        for t in self.tasks.drain(..).chain(self.media_tasks.drain(..)) {
            t.abort();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(&self.media_tasks) {
            t.abort();
        }
    }
}

pub(crate) fn to_json(m: &ClientMessage) -> anyhow::Result<String> {
    Ok(serde_json::to_string(m)?)
}

/// The `sub` of a grant (read without verifying: the client only needs its own id).
fn participant_of_grant(grant: &str) -> anyhow::Result<Participant> {
    use base64::Engine as _;
    let payload = grant
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!("the grant is not a JWT"))?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&raw)?;
    let sub = claims["sub"]
        .as_str()
        .ok_or_else(|| anyhow!("the grant has no subject"))?;
    Participant::parse(sub).map_err(|e| anyhow!("{e}"))
}

/// `(kind, mid)` of each m-line of an SDP, in order.
fn mids(sdp: &str) -> Vec<(String, String)> {
    let mut kind = String::new();
    let mut out = Vec::new();
    for line in sdp.lines() {
        if let Some(rest) = line.strip_prefix("m=") {
            kind = rest.split(' ').next().unwrap_or_default().to_owned();
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            out.push((kind.clone(), mid.trim().to_owned()));
        }
    }
    out
}

struct Events {
    gathered: mpsc::UnboundedSender<()>,
    connected: mpsc::UnboundedSender<()>,
    tracks: Option<TrackSink>,
}

#[derive(Clone)]
struct TrackSink {
    stats: Arc<ClientStats>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(());
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some(sink) = self.tracks.clone() else {
            return;
        };
        // The node names tracks `<m|g>-<id>-<source>`.
        let id = track.track_id().await;
        let Some((who, source)) = id.rsplit_once('-') else {
            return;
        };
        let source = match source {
            "microphone" => Source::Microphone,
            "screen" => Source::Screen,
            _ => Source::Camera,
        };
        let participant = who.replacen('-', ":", 1);
        tokio::spawn(receive(track, participant, source, sink));
    }
}

async fn receive(
    track: Arc<dyn TrackRemote>,
    participant: String,
    source: Source,
    sink: TrackSink,
) {
    while let Some(ev) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(p) = ev else {
            continue;
        };
        if !record_received(&sink.stats, &participant, source, &p.payload) {
            return;
        }
    }
}

async fn peer_connection(events: Arc<Events>) -> anyhow::Result<Arc<dyn PeerConnection>> {
    let (engine, registry) = aula_sfu::media::engine_and_interceptors()?;
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(events)
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .context("building a peer connection")?;
    Ok(Arc::new(pc))
}

/// The client's side of the subscribe connection: answers the node's offers.
struct Subscriber {
    frames: mpsc::UnboundedSender<String>,
    pc: Option<Arc<dyn PeerConnection>>,
    stats: Arc<ClientStats>,
}

impl Subscriber {
    /// Tracks are attributed by the id the node gives them, not by the offer's track list.
    async fn offer(&mut self, sdp: &str) -> anyhow::Result<()> {
        let (gathered_tx, mut gathered) = mpsc::unbounded_channel();
        let pc = match &self.pc {
            Some(pc) => pc.clone(),
            None => {
                let (connected, _) = mpsc::unbounded_channel();
                let pc = peer_connection(Arc::new(Events {
                    gathered: gathered_tx.clone(),
                    connected,
                    tracks: Some(TrackSink {
                        stats: self.stats.clone(),
                    }),
                }))
                .await?;
                self.pc = Some(pc.clone());
                pc
            }
        };
        pc.set_remote_description(RTCSessionDescription::offer(sdp.to_owned())?)
            .await
            .context("setting the node's offer")?;
        let answer = pc
            .create_answer(None)
            .await
            .context("creating the answer")?;
        pc.set_local_description(answer)
            .await
            .context("setting the answer")?;
        // Gathering completes anew after every local description; only the first
        // connection's handler has the channel, so wait briefly on later rounds.
        let _ = tokio::time::timeout(Duration::from_millis(500), gathered.recv()).await;
        let sdp = pc
            .local_description()
            .await
            .ok_or_else(|| anyhow!("no local description"))?
            .sdp;
        let frame = to_json(&ClientMessage::SubscribeAnswer { sdp })?;
        self.frames
            .send(frame)
            .map_err(|_| anyhow!("the connection closed"))?;
        Ok(())
    }
}
