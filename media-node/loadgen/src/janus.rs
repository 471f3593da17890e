//! The load generator's reference SFU: a participant of a Janus VideoRoom (Janus 1.x,
//! multistream) on the same str0m connections and synthetic media as [`crate::LightClient`],
//! signalled through Janus's WebSocket API (`janus.transport.websockets`, subprotocol
//! `janus-protocol`). One session per participant with two handles: a publisher (our offer,
//! Janus answers) and one subscriber to every other publisher of the room (Janus offers,
//! we answer).
//!
//! Janus gathers no loopback candidates, so it runs on an address of its own
//! (`bench-vs-janus.sh` puts it in a network namespace behind a veth pair) and the clients
//! bind their sockets to the other end's address.

mod messages;

use messages::plugin_error;
pub use messages::{Jsep, Reply, parse_reply, subscribed_streams};

use crate::str0m_peer::{ClientHandle, Conn, Peers, Publisher, Readable};
use crate::{ClientStats, Publish};
use anyhow::{Context as _, anyhow, bail};
use aula_domain::Participant;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const VIDEOROOM: &str = "janus.plugin.videoroom";
/// Janus ends sessions silent for 60 s (its default `session_timeout`).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);

/// Transaction ids of this process.
fn transaction() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn send(ws: &mut Ws, mut body: Value) -> anyhow::Result<String> {
    let t = transaction();
    body["transaction"] = Value::String(t.clone());
    ws.send(WsMessage::Text(body.to_string().into()))
        .await
        .context("writing to Janus")?;
    Ok(t)
}

async fn next_reply(ws: &mut Ws) -> anyhow::Result<Reply> {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(text))) => return parse_reply(&text),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(anyhow!(e).context("reading from Janus")),
            None => bail!("Janus closed the connection"),
        }
    }
}

/// Sends a request and waits (bounded) for its answer: `success`, or for an asynchronous
/// plugin request the event of its transaction. Other messages meanwhile are dropped (only
/// used before media flows).
async fn request(ws: &mut Ws, body: Value) -> anyhow::Result<Reply> {
    let t = send(ws, body).await?;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let reply = next_reply(ws).await?;
            match &reply {
                Reply::Success { transaction, .. } if *transaction == t => return Ok(reply),
                Reply::Event {
                    transaction: Some(transaction),
                    ..
                } if *transaction == t => return Ok(reply),
                Reply::Error {
                    transaction: Some(transaction),
                    reason,
                } if *transaction == t => bail!("Janus refused the request: {reason}"),
                _ => {}
            }
        }
    })
    .await
    .context("no answer from Janus within 10 s")?
}

/// Opens a WebSocket to Janus with its subprotocol.
async fn connect(url: &str) -> anyhow::Result<Ws> {
    let mut req = url.into_client_request().context("a Janus URL")?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "janus-protocol".parse().context("a header value")?,
    );
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .with_context(|| format!("connecting to Janus at {url}"))?;
    Ok(ws)
}

async fn create_session(ws: &mut Ws) -> anyhow::Result<u64> {
    match request(ws, json!({"janus": "create"})).await? {
        Reply::Success { id: Some(id), .. } => Ok(id),
        other => bail!("no session from Janus: {other:?}"),
    }
}

async fn attach(ws: &mut Ws, session: u64) -> anyhow::Result<u64> {
    match request(
        ws,
        json!({"janus": "attach", "session_id": session, "plugin": VIDEOROOM}),
    )
    .await?
    {
        Reply::Success { id: Some(id), .. } => Ok(id),
        other => bail!("no handle from Janus: {other:?}"),
    }
}

/// Creates VideoRoom `room` for `publishers` (an existing room is fine): Opus and VP8, no
/// bitrate cap and no periodic keyframe requests, as Aula's node.
pub async fn create_room(url: &str, room: u64, publishers: u32) -> anyhow::Result<()> {
    let mut ws = connect(url).await?;
    let session = create_session(&mut ws).await?;
    let handle = attach(&mut ws, session).await?;
    let body = json!({
        "request": "create", "room": room, "publishers": publishers,
        "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0, "fir_freq": 0,
        "audiolevel_ext": true, "notify_joining": false,
    });
    let reply = request(
        &mut ws,
        json!({"janus": "message", "session_id": session, "handle_id": handle, "body": body}),
    )
    .await?;
    if let Reply::Success {
        plugin: Some(p), ..
    } = &reply
        && let Some(e) = plugin_error(p)
        // 427: the room exists already.
        && p.get("error_code").and_then(Value::as_u64) != Some(427)
    {
        bail!("Janus did not create room {room}: {e}");
    }
    let _ = send(&mut ws, json!({"janus": "destroy", "session_id": session})).await;
    Ok(())
}

/// A participant of a Janus VideoRoom, driven by its own task.
pub struct JanusClient {
    pub me: Participant,
    /// Our publisher id in the room (the feed others subscribe to).
    pub feed: u64,
    pub stats: Arc<ClientStats>,
    handle: ClientHandle<Command>,
}

enum Command {
    Publish(Publish, oneshot::Sender<anyhow::Result<()>>),
    /// Feeds to subscribe to, with who they are (for the stats).
    Subscribe(Vec<(u64, String)>, oneshot::Sender<anyhow::Result<()>>),
    Close,
}

impl JanusClient {
    /// Opens a session, attaches the publisher handle and joins `room` as publisher `feed`
    /// (no media yet). Sockets are bound to `local` (an address Janus can reach).
    pub async fn join(
        url: &str,
        room: u64,
        feed: u64,
        me: Participant,
        index: u32,
        local: IpAddr,
    ) -> anyhow::Result<Self> {
        let mut ws = connect(url).await?;
        let session = create_session(&mut ws).await?;
        let publisher = attach(&mut ws, session).await?;
        let body = json!({
            "request": "join", "ptype": "publisher", "room": room, "id": feed,
            "display": me.to_string(),
        });
        match request(
            &mut ws,
            json!({"janus": "message", "session_id": session, "handle_id": publisher, "body": body}),
        )
        .await?
        {
            Reply::Event { plugin, .. } => {
                if let Some(e) = plugin_error(&plugin) {
                    bail!("Janus refused the join: {e}");
                }
            }
            other => bail!("unexpected answer to join: {other:?}"),
        }
        let stats = Arc::new(ClientStats::default());
        let driver_stats = stats.clone();
        let handle = ClientHandle::spawn(|sending, commands| {
            Driver {
                index,
                room,
                local,
                session,
                publisher_handle: publisher,
                subscriber_handle: None,
                stats: driver_stats,
                sending,
                ws,
                commands,
                peers: Peers::new(),
                publish_reply: None,
                publisher_up: false,
                subscribing: None,
                feeds: HashMap::new(),
            }
            .run()
        });
        Ok(JanusClient {
            me,
            feed,
            stats,
            handle,
        })
    }

    /// Publishes our media; returns once the publish connection is up.
    pub async fn publish(&mut self, what: Publish) -> anyhow::Result<()> {
        self.handle
            .ask(
                |reply| Command::Publish(what, reply),
                Duration::from_secs(20),
                "the publish connection did not connect within 20 s",
            )
            .await
    }

    /// Subscribes to `feeds` (feed id, participant) on one subscriber handle; returns once
    /// our answer to Janus's offer is sent.
    pub async fn subscribe(&mut self, feeds: Vec<(u64, String)>) -> anyhow::Result<()> {
        self.handle
            .ask(
                |reply| Command::Subscribe(feeds, reply),
                Duration::from_secs(20),
                "Janus did not offer the subscription within 20 s",
            )
            .await
    }

    pub fn stop_sending(&self) {
        self.handle.stop_sending();
    }

    pub fn start_sending(&self) {
        self.handle.start_sending();
    }

    /// Destroys the session and ends the task.
    pub async fn close(self) {
        self.handle.close(Command::Close).await;
    }
}

/// A subscription under way: the attach, then the join, then Janus's offer.
struct Subscribing {
    transaction: String,
    reply: oneshot::Sender<anyhow::Result<()>>,
    feeds: Vec<(u64, String)>,
}

struct Driver {
    index: u32,
    room: u64,
    local: IpAddr,
    session: u64,
    publisher_handle: u64,
    subscriber_handle: Option<u64>,
    stats: Arc<ClientStats>,
    sending: Arc<AtomicBool>,
    ws: Ws,
    commands: mpsc::UnboundedReceiver<Command>,
    /// The connections; their tracks are from Janus's list of the subscriber's streams.
    peers: Peers,
    /// Told once both ends of the publish connection are up: Janus refuses subscriptions
    /// to a feed before its own side is (`No such feed`).
    publish_reply: Option<oneshot::Sender<anyhow::Result<()>>>,
    /// Janus said `webrtcup` for the publisher handle.
    publisher_up: bool,
    subscribing: Option<Subscribing>,
    /// Feed id → participant, of the subscription.
    feeds: HashMap<u64, String>,
}

enum Wake {
    Reply(anyhow::Result<Reply>),
    Command(Option<Command>),
    Readable(Readable),
    Timer,
    Keepalive,
}

impl Driver {
    async fn run(mut self) {
        let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY);
        loop {
            let now = Instant::now();
            if let Err(e) = self.step(now) {
                tracing::warn!(index = self.index, error = %format!("{e:#}"), "Janus client");
            }
            let wake = self.peers.next_wake(now);
            let woke = tokio::select! {
                r = next_reply(&mut self.ws) => Wake::Reply(r),
                c = self.commands.recv() => Wake::Command(c),
                r = self.peers.readable() => Wake::Readable(r),
                () = tokio::time::sleep_until(wake.into()) => Wake::Timer,
                _ = keepalive.tick() => Wake::Keepalive,
            };
            let now = Instant::now();
            let handled = match woke {
                Wake::Reply(Ok(reply)) => self.reply(now, reply).await,
                Wake::Reply(Err(e)) => {
                    tracing::warn!(index = self.index, error = %format!("{e:#}"), "Janus client");
                    return;
                }
                Wake::Command(Some(Command::Publish(what, reply))) => {
                    self.publish(now, what, reply).await;
                    Ok(())
                }
                Wake::Command(Some(Command::Subscribe(feeds, reply))) => {
                    self.subscribe(feeds, reply).await;
                    Ok(())
                }
                Wake::Command(Some(Command::Close) | None) => {
                    let destroy = json!({"janus": "destroy", "session_id": self.session});
                    let _ = send(&mut self.ws, destroy).await;
                    let _ = self.ws.close(None).await;
                    return;
                }
                Wake::Readable(r) => self.peers.receive(r, now),
                Wake::Timer => Ok(()),
                Wake::Keepalive => send(
                    &mut self.ws,
                    json!({"janus": "keepalive", "session_id": self.session}),
                )
                .await
                .map(|_| ()),
            };
            if let Err(e) = handled {
                tracing::warn!(index = self.index, error = %format!("{e:#}"), "Janus client");
            }
        }
    }

    /// Steps the connections; publishing is done once both ends are up.
    fn step(&mut self, now: Instant) -> anyhow::Result<()> {
        let sending = self.sending.load(Ordering::Relaxed);
        let stepped = self.peers.step(now, self.index, sending, &self.stats);
        if self.peers.publisher.as_ref().is_some_and(|p| p.connected)
            && self.publisher_up
            && let Some(reply) = self.publish_reply.take()
        {
            let _ = reply.send(Ok(()));
        }
        stepped
    }

    async fn message(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<String> {
        let mut m = json!({
            "janus": "message", "session_id": self.session, "handle_id": handle, "body": body,
        });
        if let Some(jsep) = jsep {
            m["jsep"] = jsep;
        }
        send(&mut self.ws, m).await
    }

    async fn publish(
        &mut self,
        now: Instant,
        what: Publish,
        reply: oneshot::Sender<anyhow::Result<()>>,
    ) {
        let (conn, made) = match self.peers.offer(now, self.local, self.index, what) {
            Ok(made) => made,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        // The offer carries our one host candidate: no trickle.
        let jsep = json!({"type": "offer", "sdp": made.offer.to_sdp_string(), "trickle": false});
        let body = json!({"request": "publish", "audio": what.audio, "video": what.video});
        if let Err(e) = self.message(self.publisher_handle, body, Some(jsep)).await {
            let _ = reply.send(Err(e));
            return;
        }
        // The publisher's own reply (on str0m's side being up) goes nowhere: ours waits for
        // Janus's side too.
        let (connected, _) = oneshot::channel();
        self.peers.publisher = Some(Publisher::new(
            now,
            conn,
            what,
            made.audio,
            made.video,
            made.pending,
            connected,
        ));
        self.publish_reply = Some(reply);
    }

    async fn subscribe(
        &mut self,
        feeds: Vec<(u64, String)>,
        reply: oneshot::Sender<anyhow::Result<()>>,
    ) {
        if self.subscriber_handle.is_some() || self.subscribing.is_some() {
            let _ = reply.send(Err(anyhow!("already subscribed")));
            return;
        }
        let attach = json!({"janus": "attach", "session_id": self.session, "plugin": VIDEOROOM});
        match send(&mut self.ws, attach).await {
            Ok(transaction) => {
                self.subscribing = Some(Subscribing {
                    transaction,
                    reply,
                    feeds,
                })
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    async fn reply(&mut self, now: Instant, reply: Reply) -> anyhow::Result<()> {
        match reply {
            Reply::Success {
                transaction,
                id: Some(handle),
                ..
            } if self
                .subscribing
                .as_ref()
                .is_some_and(|s| s.transaction == transaction) =>
            {
                // The subscriber handle: join it to every feed at once.
                self.subscriber_handle = Some(handle);
                let feeds = self
                    .subscribing
                    .as_ref()
                    .map(|s| s.feeds.clone())
                    .unwrap_or_default();
                self.feeds = feeds.iter().cloned().collect();
                let streams: Vec<Value> = feeds.iter().map(|(f, _)| json!({"feed": f})).collect();
                let body = json!({
                    "request": "join", "ptype": "subscriber", "room": self.room,
                    "streams": streams,
                });
                self.message(handle, body, None).await?;
            }
            Reply::WebrtcUp { sender } if sender == self.publisher_handle => {
                self.publisher_up = true;
            }
            Reply::Event {
                sender,
                plugin,
                jsep,
                ..
            } => {
                if let Some(e) = plugin_error(&plugin) {
                    self.fail(sender, anyhow!("Janus: {e}"));
                } else if sender == self.publisher_handle
                    && let Some(j) = jsep
                {
                    self.publish_answer(&j);
                } else if Some(sender) == self.subscriber_handle
                    && let Some(j) = jsep
                {
                    let offered = self.subscribe_offer(now, &plugin, &j).await;
                    if let Some(s) = self.subscribing.take() {
                        let _ = s.reply.send(offered);
                    }
                }
            }
            Reply::Error {
                transaction,
                reason,
            } => {
                if let Some(s) = self
                    .subscribing
                    .take_if(|s| Some(&s.transaction) == transaction.as_ref())
                {
                    let _ = s.reply.send(Err(anyhow!("Janus: {reason}")));
                } else {
                    tracing::warn!(index = self.index, reason, "Janus error");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An error event of `handle`: the request under way on it failed.
    fn fail(&mut self, handle: u64, e: anyhow::Error) {
        if handle == self.publisher_handle {
            if let Some(reply) = self.publish_reply.take() {
                let _ = reply.send(Err(e));
                self.peers.publisher = None;
            }
        } else if let Some(s) = self.subscribing.take() {
            let _ = s.reply.send(Err(e));
        }
    }

    fn publish_answer(&mut self, jsep: &Jsep) {
        let Some(p) = &mut self.peers.publisher else {
            return;
        };
        let Some(pending) = p.pending.take() else {
            return;
        };
        let applied = SdpAnswer::from_sdp_string(&jsep.sdp)
            .context("parsing Janus's publish answer")
            .and_then(|a| {
                p.conn
                    .rtc
                    .sdp_api()
                    .accept_answer(pending, a)
                    .context("applying Janus's publish answer")
            });
        if let Err(e) = applied {
            if let Some(reply) = self.publish_reply.take() {
                let _ = reply.send(Err(e));
            }
            self.peers.publisher = None;
        }
    }

    /// Answers Janus's offer on the subscriber handle and starts the subscription.
    async fn subscribe_offer(
        &mut self,
        now: Instant,
        plugin: &Value,
        jsep: &Jsep,
    ) -> anyhow::Result<()> {
        if jsep.kind != "offer" {
            bail!("Janus sent the subscriber a {}", jsep.kind);
        }
        let handle = self.subscriber_handle.context("no subscriber handle")?;
        let local = self.local;
        let conn = match &mut self.peers.subscriber {
            Some(c) => c,
            None => self.peers.subscriber.insert(Conn::new(now, local)?),
        };
        let offer = SdpOffer::from_sdp_string(&jsep.sdp).context("parsing Janus's offer")?;
        let answer = conn
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .context("accepting Janus's offer")?;
        let tracks = subscribed_streams(plugin)
            .into_iter()
            .filter_map(|(mid, (feed, source))| {
                Some((mid, (self.feeds.get(&feed)?.clone(), source)))
            })
            .collect();
        self.peers.set_tracks(tracks);
        let jsep = json!({"type": "answer", "sdp": answer.to_sdp_string()});
        self.message(handle, json!({"request": "start"}), Some(jsep))
            .await
            .map(|_| ())
    }
}
