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

use crate::light::{Conn, PublishOffer, Publisher, publish_offer, readable, record_packets};
use crate::{ClientStats, Publish};
use anyhow::{Context as _, anyhow, bail};
use aula_domain::Participant;
use aula_sfu::protocol::Source;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::rtp::Ssrc;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const VIDEOROOM: &str = "janus.plugin.videoroom";
/// Janus ends sessions silent for 60 s (its default `session_timeout`).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);

/// What Janus said, as far as the load generator cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `success` of a request (`data.id` of `create`/`attach`, or a plugin's synchronous
    /// answer).
    Success {
        transaction: String,
        id: Option<u64>,
        plugin: Option<Value>,
    },
    /// `ack` of an asynchronous request or a keepalive.
    Ack,
    /// A plugin event of a handle, with the session description it carries.
    Event {
        sender: u64,
        transaction: Option<String>,
        plugin: Value,
        jsep: Option<Jsep>,
    },
    /// `error` of a request.
    Error {
        transaction: Option<String>,
        reason: String,
    },
    /// Janus's side of a handle's connection is up (ICE and DTLS done).
    WebrtcUp { sender: u64 },
    /// Anything else (`media`, `slowlink`, `hangup`, `timeout`, …).
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Jsep {
    /// `offer` or `answer`.
    pub kind: String,
    pub sdp: String,
}

/// Parses one message of Janus's WebSocket API.
pub fn parse_reply(text: &str) -> anyhow::Result<Reply> {
    let v: Value = serde_json::from_str(text).context("a Janus message that is not JSON")?;
    let kind = v
        .get("janus")
        .and_then(Value::as_str)
        .context("a Janus message without `janus`")?;
    let transaction = v
        .get("transaction")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(match kind {
        "success" => Reply::Success {
            transaction: transaction.context("`success` without a transaction")?,
            id: v.pointer("/data/id").and_then(Value::as_u64),
            plugin: v.pointer("/plugindata/data").cloned(),
        },
        "ack" => Reply::Ack,
        "event" => Reply::Event {
            sender: v
                .get("sender")
                .and_then(Value::as_u64)
                .context("`event` without a sender")?,
            transaction,
            plugin: v
                .pointer("/plugindata/data")
                .cloned()
                .unwrap_or(Value::Null),
            jsep: match v.get("jsep") {
                Some(j) => Some(Jsep {
                    kind: j
                        .get("type")
                        .and_then(Value::as_str)
                        .context("jsep without a type")?
                        .to_owned(),
                    sdp: j
                        .get("sdp")
                        .and_then(Value::as_str)
                        .context("jsep without sdp")?
                        .to_owned(),
                }),
                None => None,
            },
        },
        "error" => Reply::Error {
            transaction,
            reason: v
                .pointer("/error/reason")
                .and_then(Value::as_str)
                .unwrap_or("no reason")
                .to_owned(),
        },
        "webrtcup" => Reply::WebrtcUp {
            sender: v
                .get("sender")
                .and_then(Value::as_u64)
                .context("`webrtcup` without a sender")?,
        },
        other => Reply::Other(other.to_owned()),
    })
}

/// A VideoRoom plugin answer that is an error (`error_code` and `error`).
fn plugin_error(plugin: &Value) -> Option<String> {
    plugin.get("error_code")?;
    Some(
        plugin
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason")
            .to_owned(),
    )
}

/// The subscriber's streams of an `attached`/`updated` event: mid → (feed id, source).
pub fn subscribed_streams(plugin: &Value) -> HashMap<String, (u64, Source)> {
    let mut streams = HashMap::new();
    for s in plugin
        .get("streams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(mid), Some(feed), Some(kind)) = (
            s.get("mid").and_then(Value::as_str),
            s.get("feed_id").and_then(Value::as_u64),
            s.get("type").and_then(Value::as_str),
        ) else {
            continue;
        };
        let source = match kind {
            "audio" => Source::Microphone,
            "video" => Source::Camera,
            _ => continue,
        };
        streams.insert(mid.to_owned(), (feed, source));
    }
    streams
}

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
    sending: Arc<AtomicBool>,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
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
        let sending = Arc::new(AtomicBool::new(true));
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            index,
            room,
            local,
            session,
            publisher_handle: publisher,
            subscriber_handle: None,
            stats: stats.clone(),
            sending: sending.clone(),
            ws,
            commands: commands_rx,
            publisher: None,
            publish_reply: None,
            publisher_up: false,
            subscriber: None,
            subscribing: None,
            feeds: HashMap::new(),
            tracks: HashMap::new(),
            by_ssrc: HashMap::new(),
        };
        let task = tokio::spawn(driver.run());
        Ok(JanusClient {
            me,
            feed,
            stats,
            sending,
            commands,
            task,
        })
    }

    /// Publishes our media; returns once the publish connection is up.
    pub async fn publish(&mut self, what: Publish) -> anyhow::Result<()> {
        let (reply, done) = oneshot::channel();
        self.commands
            .send(Command::Publish(what, reply))
            .map_err(|_| anyhow!("the client stopped"))?;
        tokio::time::timeout(Duration::from_secs(20), done)
            .await
            .context("the publish connection did not connect within 20 s")?
            .map_err(|_| anyhow!("the client stopped"))?
    }

    /// Subscribes to `feeds` (feed id, participant) on one subscriber handle; returns once
    /// our answer to Janus's offer is sent.
    pub async fn subscribe(&mut self, feeds: Vec<(u64, String)>) -> anyhow::Result<()> {
        let (reply, done) = oneshot::channel();
        self.commands
            .send(Command::Subscribe(feeds, reply))
            .map_err(|_| anyhow!("the client stopped"))?;
        tokio::time::timeout(Duration::from_secs(20), done)
            .await
            .context("Janus did not offer the subscription within 20 s")?
            .map_err(|_| anyhow!("the client stopped"))?
    }

    pub fn stop_sending(&self) {
        self.sending.store(false, Ordering::SeqCst);
    }

    pub fn start_sending(&self) {
        self.sending.store(true, Ordering::SeqCst);
    }

    /// Destroys the session and ends the task.
    pub async fn close(mut self) {
        let _ = self.commands.send(Command::Close);
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.task).await;
    }
}

impl Drop for JanusClient {
    fn drop(&mut self) {
        self.task.abort();
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
    publisher: Option<Publisher>,
    /// Told once both ends of the publish connection are up: Janus refuses subscriptions
    /// to a feed before its own side is (`No such feed`).
    publish_reply: Option<oneshot::Sender<anyhow::Result<()>>>,
    /// Janus said `webrtcup` for the publisher handle.
    publisher_up: bool,
    subscriber: Option<Conn>,
    subscribing: Option<Subscribing>,
    /// Feed id → participant, of the subscription.
    feeds: HashMap<u64, String>,
    /// mid → (participant, source), from Janus's list of the subscriber's streams.
    tracks: HashMap<String, (String, Source)>,
    by_ssrc: HashMap<Ssrc, Option<(String, Source)>>,
}

enum Wake {
    Reply(anyhow::Result<Reply>),
    Command(Option<Command>),
    Publish,
    Subscribe,
    Timer,
    Keepalive,
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY);
        loop {
            let now = Instant::now();
            if let Err(e) = self.step(now) {
                tracing::warn!(index = self.index, error = %format!("{e:#}"), "Janus client");
            }
            let wake = self.next_wake(now);
            let woke = {
                let publish = self.publisher.as_ref().map(|p| &p.conn.socket);
                let subscribe = self.subscriber.as_ref().map(|c| &c.socket);
                tokio::select! {
                    r = next_reply(&mut self.ws) => Wake::Reply(r),
                    c = self.commands.recv() => Wake::Command(c),
                    () = readable(publish) => Wake::Publish,
                    () = readable(subscribe) => Wake::Subscribe,
                    () = tokio::time::sleep_until(wake.into()) => Wake::Timer,
                    _ = keepalive.tick() => Wake::Keepalive,
                }
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
                Wake::Publish => match &mut self.publisher {
                    Some(p) => p.conn.receive(now, &mut buf),
                    None => Ok(()),
                },
                Wake::Subscribe => match &mut self.subscriber {
                    Some(c) => c.receive(now, &mut buf),
                    None => Ok(()),
                },
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

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(1);
        if let Some(p) = &self.publisher {
            wake = wake.min(p.next_wake());
        }
        if let Some(c) = &self.subscriber {
            wake = wake.min(c.deadline);
        }
        wake
    }

    fn step(&mut self, now: Instant) -> anyhow::Result<()> {
        let sending = self.sending.load(Ordering::Relaxed);
        if let Some(p) = &mut self.publisher {
            p.step(now, self.index, sending, &self.stats)?;
            if p.connected
                && self.publisher_up
                && let Some(reply) = self.publish_reply.take()
            {
                let _ = reply.send(Ok(()));
            }
        }
        if let Some(c) = &mut self.subscriber {
            c.poll(now)?;
            record_packets(c, &self.tracks, &mut self.by_ssrc, &self.stats)?;
        }
        Ok(())
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
        if self.publisher.is_some() {
            let _ = reply.send(Err(anyhow!("already publishing")));
            return;
        }
        let mut conn = match Conn::new(now, self.local) {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let Some(PublishOffer {
            offer,
            pending,
            audio,
            video,
        }) = publish_offer(&mut conn, self.index, what)
        else {
            let _ = reply.send(Err(anyhow!("nothing to publish")));
            return;
        };
        // The offer carries our one host candidate: no trickle.
        let jsep = json!({"type": "offer", "sdp": offer.to_sdp_string(), "trickle": false});
        let body = json!({"request": "publish", "audio": what.audio, "video": what.video});
        if let Err(e) = self.message(self.publisher_handle, body, Some(jsep)).await {
            let _ = reply.send(Err(e));
            return;
        }
        // The publisher's own reply (on str0m's side being up) goes nowhere: ours waits for
        // Janus's side too.
        let (connected, _) = oneshot::channel();
        self.publisher = Some(Publisher::new(
            now, conn, what, audio, video, pending, connected,
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
                self.publisher = None;
            }
        } else if let Some(s) = self.subscribing.take() {
            let _ = s.reply.send(Err(e));
        }
    }

    fn publish_answer(&mut self, jsep: &Jsep) {
        let Some(p) = &mut self.publisher else {
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
            self.publisher = None;
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
        let conn = match &mut self.subscriber {
            Some(c) => c,
            None => self.subscriber.insert(Conn::new(now, local)?),
        };
        let offer = SdpOffer::from_sdp_string(&jsep.sdp).context("parsing Janus's offer")?;
        let answer = conn
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .context("accepting Janus's offer")?;
        self.tracks = subscribed_streams(plugin)
            .into_iter()
            .filter_map(|(mid, (feed, source))| {
                Some((mid, (self.feeds.get(&feed)?.clone(), source)))
            })
            .collect();
        self.by_ssrc.clear();
        let jsep = json!({"type": "answer", "sdp": answer.to_sdp_string()});
        self.message(handle, json!({"request": "start"}), Some(jsep))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_or_handle_id_is_read_from_janus_success() {
        let r = parse_reply(r#"{"janus":"success","transaction":"t1","data":{"id":8012345678}}"#)
            .unwrap();
        assert_eq!(
            r,
            Reply::Success {
                transaction: "t1".into(),
                id: Some(8012345678),
                plugin: None
            }
        );
    }

    #[test]
    fn janus_publish_answer_event_carries_its_sdp_to_the_publisher_handle() {
        let text = r#"{"janus":"event","session_id":1,"transaction":"t4","sender":77,
            "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"event","room":1000,"configured":"ok","audio_codec":"opus","video_codec":"vp8","streams":[]}},
            "jsep":{"type":"answer","sdp":"v=0\r\n"}}"#;
        let Reply::Event {
            sender,
            transaction,
            plugin,
            jsep,
        } = parse_reply(text).unwrap()
        else {
            panic!("not an event");
        };
        assert_eq!(sender, 77);
        assert_eq!(transaction.as_deref(), Some("t4"));
        assert_eq!(plugin["configured"], "ok");
        assert_eq!(
            jsep,
            Some(Jsep {
                kind: "answer".into(),
                sdp: "v=0\r\n".into()
            })
        );
        assert_eq!(plugin_error(&plugin), None);
    }

    #[test]
    fn janus_subscriber_streams_map_mids_to_feeds_and_sources() {
        let text = r#"{"janus":"event","session_id":1,"sender":78,"transaction":"t9",
            "plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"attached","room":1000,
            "streams":[{"type":"audio","active":true,"mid":"0","mindex":0,"ready":false,"send":true,"feed_id":2,"feed_display":"P1","feed_mid":"0","codec":"opus"},
                       {"type":"video","active":true,"mid":"1","mindex":1,"ready":false,"send":true,"feed_id":2,"feed_display":"P1","feed_mid":"1","codec":"vp8"},
                       {"type":"data","active":true,"mid":"2","mindex":2,"ready":false,"send":true,"sources":1}]}},
            "jsep":{"type":"offer","sdp":"v=0\r\n"}}"#;
        let Reply::Event { plugin, .. } = parse_reply(text).unwrap() else {
            panic!("not an event");
        };
        let streams = subscribed_streams(&plugin);
        assert_eq!(streams.len(), 2);
        assert_eq!(streams["0"], (2, Source::Microphone));
        assert_eq!(streams["1"], (2, Source::Camera));
    }

    #[test]
    fn janus_webrtcup_names_the_handle_whose_connection_is_up() {
        let r = parse_reply(r#"{"janus":"webrtcup","session_id":1,"sender":77}"#).unwrap();
        assert_eq!(r, Reply::WebrtcUp { sender: 77 });
    }

    #[test]
    fn a_videoroom_error_is_told_apart_from_an_answer() {
        let text = r#"{"janus":"event","sender":5,"transaction":"t2","plugindata":{"plugin":"janus.plugin.videoroom",
            "data":{"videoroom":"event","error_code":426,"error":"No such room (1000)"}}}"#;
        let Reply::Event { plugin, .. } = parse_reply(text).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(
            plugin_error(&plugin).as_deref(),
            Some("No such room (1000)")
        );
        let e = parse_reply(r#"{"janus":"error","transaction":"t3","error":{"code":458,"reason":"No such session 1"}}"#)
            .unwrap();
        assert_eq!(
            e,
            Reply::Error {
                transaction: Some("t3".into()),
                reason: "No such session 1".into()
            }
        );
    }
}
