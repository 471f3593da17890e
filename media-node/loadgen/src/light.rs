//! A light client of the media node on str0m's sans-IO `Rtc` (RTP mode): the load
//! generator's cheap alternative to [`crate::Client`]. Each participant is one tokio task
//! that owns its signalling WebSocket, two UDP sockets on 127.0.0.1 (publish and subscribe
//! connections: the node has one port, so a socket per connection keeps demultiplexing
//! trivial) and their two `Rtc`s, and writes its synthetic media itself: no task per track,
//! no interceptor chain, no locks on the media path besides the stats.
//!
//! Media, payloads and stats are those of [`crate::Client`]: Opus 111 at 50 packets/s with
//! the audio level extension, VP8 96 at 30 fps with a keyframe every 3 s and on PLI/FIR,
//! payloads from [`crate::payload_vec`], received packets attributed by the node's
//! `subscribe_offer` track list (mid → participant and source).

use crate::str0m_peer::{ClientHandle, Conn, Peers, Publisher, Readable};
use crate::{ClientStats, Publish, to_json};
use anyhow::{Context as _, anyhow, bail};
use aula_domain::{Participant, RoomId};
use aula_sfu::protocol::{ClientMessage, ForwardedTrack, PublishedTrack, ServerMessage, Source};
use futures_util::{SinkExt as _, StreamExt as _};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A participant on str0m, driven by its own task.
pub struct LightClient {
    /// Who the node says we are (from `welcome`).
    pub me: Participant,
    /// Our index in payloads.
    pub index: u32,
    pub stats: Arc<ClientStats>,
    handle: ClientHandle<Command>,
}

enum Command {
    Publish(Publish, oneshot::Sender<anyhow::Result<()>>),
    Close,
}

impl LightClient {
    /// Opens the signalling connection, sends `join` and returns after `welcome` (the lobby
    /// and refusals are errors: the load generator admits everyone directly).
    pub async fn join(url: &str, room: RoomId, grant: &str, index: u32) -> anyhow::Result<Self> {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let join = ClientMessage::Join {
            v: aula_sfu::protocol::PROTOCOL_VERSION,
            room,
            grant: grant.to_owned(),
        };
        ws.send(WsMessage::Text(to_json(&join)?.into()))
            .await
            .context("sending join")?;
        let first = tokio::time::timeout(Duration::from_secs(10), next_frame(&mut ws))
            .await
            .context("no answer to join within 10 s")??;
        let me = match first {
            ServerMessage::Welcome { you, .. } => you,
            other => bail!("join refused: {}", serde_json::to_string(&other)?),
        };
        let stats = Arc::new(ClientStats::default());
        let driver_stats = stats.clone();
        let handle = ClientHandle::spawn(|sending, commands| {
            Driver {
                index,
                stats: driver_stats,
                sending,
                ws,
                commands,
                peers: Peers::new(),
            }
            .run()
        });
        Ok(LightClient {
            me,
            index,
            stats,
            handle,
        })
    }

    /// Offers our media on the publish connection; returns once it is connected (media
    /// flows from then on unless [`LightClient::stop_sending`] holds it).
    pub async fn publish(&mut self, what: Publish) -> anyhow::Result<()> {
        self.handle
            .ask(
                |reply| Command::Publish(what, reply),
                Duration::from_secs(20),
                "the publish connection did not connect within 20 s",
            )
            .await
    }

    pub fn stop_sending(&self) {
        self.handle.stop_sending();
    }

    pub fn start_sending(&self) {
        self.handle.start_sending();
    }

    /// Sends `leave` and ends the task.
    pub async fn close(self) {
        self.handle.close(Command::Close).await;
    }
}

/// The next signalling frame the node sent (non-text and unparsable frames skipped).
async fn next_frame(ws: &mut Ws) -> anyhow::Result<ServerMessage> {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(text))) => {
                if let Ok(frame) = serde_json::from_str::<ServerMessage>(&text) {
                    return Ok(frame);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(anyhow!(e).context("reading the signalling connection")),
            None => bail!("the node closed the connection"),
        }
    }
}

struct Driver {
    index: u32,
    stats: Arc<ClientStats>,
    sending: Arc<AtomicBool>,
    ws: Ws,
    commands: mpsc::UnboundedReceiver<Command>,
    /// The connections; their tracks are the node's latest subscribe offer's.
    peers: Peers,
}

enum Wake {
    Frame(Option<anyhow::Result<ServerMessage>>),
    Command(Option<Command>),
    Readable(Readable),
    Timer,
}

impl Driver {
    async fn run(mut self) {
        loop {
            let now = Instant::now();
            let sending = self.sending.load(Ordering::Relaxed);
            if let Err(e) = self.peers.step(now, self.index, sending, &self.stats) {
                tracing::warn!(index = self.index, error = %format!("{e:#}"), "str0m client");
            }
            let wake = self.peers.next_wake(now);
            let woke = tokio::select! {
                f = next_frame(&mut self.ws) => Wake::Frame(Some(f)),
                c = self.commands.recv() => Wake::Command(c),
                r = self.peers.readable() => Wake::Readable(r),
                () = tokio::time::sleep_until(wake.into()) => Wake::Timer,
            };
            let now = Instant::now();
            let handled = match woke {
                Wake::Frame(Some(Ok(frame))) => self.frame(now, frame).await,
                Wake::Frame(_) => return,
                Wake::Command(Some(Command::Publish(what, reply))) => {
                    self.publish(now, what, reply).await;
                    Ok(())
                }
                Wake::Command(Some(Command::Close) | None) => {
                    let leave = to_json(&ClientMessage::Leave).unwrap_or_default();
                    let _ = self.ws.send(WsMessage::Text(leave.into())).await;
                    let _ = self.ws.close(None).await;
                    return;
                }
                Wake::Readable(r) => self.peers.receive(r, now),
                Wake::Timer => Ok(()),
            };
            if let Err(e) = handled {
                tracing::warn!(index = self.index, error = %format!("{e:#}"), "str0m client");
            }
        }
    }

    async fn frame(&mut self, now: Instant, frame: ServerMessage) -> anyhow::Result<()> {
        match frame {
            ServerMessage::PublishAnswer { sdp } => {
                let Some(p) = &mut self.peers.publisher else {
                    return Ok(());
                };
                let Some(pending) = p.pending.take() else {
                    return Ok(());
                };
                let applied = SdpAnswer::from_sdp_string(&sdp)
                    .context("parsing the publish answer")
                    .and_then(|a| {
                        p.conn
                            .rtc
                            .sdp_api()
                            .accept_answer(pending, a)
                            .context("applying the publish answer")
                    });
                if let Err(e) = applied {
                    if let Some(reply) = p.reply.take() {
                        let _ = reply.send(Err(e));
                    }
                    self.peers.publisher = None;
                }
            }
            ServerMessage::Error { message, .. } => {
                // While publishing, an error frame is the node refusing it.
                if let Some(p) = &mut self.peers.publisher
                    && !p.connected
                    && let Some(reply) = p.reply.take()
                {
                    let _ = reply.send(Err(anyhow!("publishing refused: {message}")));
                    self.peers.publisher = None;
                }
            }
            ServerMessage::SubscribeOffer { sdp, tracks } => {
                self.subscribe_offer(now, &sdp, &tracks).await?;
            }
            ServerMessage::Speakers { video, .. } => {
                if let Ok(mut v) = self.stats.forwarded_video.lock() {
                    *v = video;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Answers the node's offer on the subscribe connection (made on the first offer).
    async fn subscribe_offer(
        &mut self,
        now: Instant,
        sdp: &str,
        tracks: &[ForwardedTrack],
    ) -> anyhow::Result<()> {
        let conn = match &mut self.peers.subscriber {
            Some(c) => c,
            None => self.peers.subscriber.insert(Conn::new(now, LOOPBACK)?),
        };
        let offer = SdpOffer::from_sdp_string(sdp).context("parsing the subscribe offer")?;
        let answer = conn
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .context("accepting the subscribe offer")?;
        // The offer lists every track it carries.
        self.peers.set_tracks(
            tracks
                .iter()
                .map(|t| (t.mid.clone(), (t.participant.to_string(), t.source)))
                .collect(),
        );
        let frame = to_json(&ClientMessage::SubscribeAnswer {
            sdp: answer.to_sdp_string(),
        })?;
        self.ws
            .send(WsMessage::Text(frame.into()))
            .await
            .context("sending the subscribe answer")
    }

    /// Makes the publish connection and sends its offer; `reply` hears how it went.
    async fn publish(
        &mut self,
        now: Instant,
        what: Publish,
        reply: oneshot::Sender<anyhow::Result<()>>,
    ) {
        let (conn, made) = match self.peers.offer(now, LOOPBACK, self.index, what) {
            Ok(made) => made,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut tracks = Vec::new();
        for (mid, source) in [
            (made.audio, Source::Microphone),
            (made.video, Source::Camera),
        ] {
            if let Some(mid) = mid {
                tracks.push(PublishedTrack {
                    mid: mid.to_string(),
                    source,
                });
            }
        }
        let sent = match to_json(&ClientMessage::PublishOffer {
            sdp: made.offer.to_sdp_string(),
            tracks,
            // The load generator publishes once per participant.
            restart: false,
        }) {
            Ok(frame) => self
                .ws
                .send(WsMessage::Text(frame.into()))
                .await
                .context("sending the publish offer"),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            let _ = reply.send(Err(e));
            return;
        }
        self.peers.publisher = Some(Publisher::new(
            now,
            conn,
            what,
            made.audio,
            made.video,
            made.pending,
            reply,
        ));
    }
}
