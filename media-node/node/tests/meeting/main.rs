//! A real media node on loopback (UDP port, WebSocket signalling) with real WebRTC clients
//! (webrtc-rs): media flows, moderation works, bad grants and bad frames are refused.
//! One test binary (one link of the node and webrtc); the cases are split by theme.

mod media;
mod moderation;
mod signalling;

use aula_domain::ports::{MeetingStore, NodeRegistryStore};
use aula_domain::services::{GrantRole, JoinGrant};
use aula_domain::{
    ChatBody, Clock, Conversation, GuestId, MessageId, ModeratorId, Participant, RelayedMessage,
    RoomId, RoomSettings, Span,
};
use aula_loadgen::{Client, Joined, Publish};
use aula_media_node::http::{self, HttpLimits};
use aula_media_node::{MediaNode, NodeConfig, NodeDeps};
use aula_sfu::protocol::{ClientMessage, ErrorCode, Farewell, Quality, ServerMessage, Source};
use aula_store::{RandomIds, SqliteStore, SystemClock};
use aula_tokens::{JoinVerifier, TokenLifetimes, Tokens, generate_ed25519_pkcs8};
use std::sync::Arc;
use std::time::Duration;

struct TestNode {
    url: String,
    metrics_url: String,
    tokens: Tokens,
    store: Arc<SqliteStore>,
    node: MediaNode,
}

/// How long the test nodes' HTTP server waits for a request's headers (and keeps an idle
/// connection): short, so every meeting in these tests outlives it many times.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

async fn node() -> TestNode {
    node_with(|_| {}).await
}

async fn node_with(configure: impl FnOnce(&mut NodeConfig)) -> TestNode {
    let tokens = Tokens::from_pkcs8(
        &generate_ed25519_pkcs8().expect("key"),
        TokenLifetimes::default(),
    )
    .expect("tokens");
    let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let http = listener.local_addr().expect("address");
    let url = format!("ws://{http}/media");
    let mut config = NodeConfig::local(aula_domain::NodeId::from_uuid(uuid(99)), url.clone());
    config.heartbeat_every = Duration::from_millis(200);
    config.drain_timeout = Duration::from_secs(5);
    configure(&mut config);
    let node = MediaNode::start(
        config,
        NodeDeps {
            store: store.clone(),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            verifier: JoinVerifier::from_public_key(tokens.public_key()).expect("public key"),
        },
    )
    .await
    .expect("node");
    let limits = HttpLimits {
        header_timeout: HEADER_TIMEOUT,
        max_connections: 64,
        ..HttpLimits::default()
    };
    let app = http::security_headers(node.router(), http::API_CONTENT_SECURITY_POLICY.into());
    tokio::spawn(http::serve(listener, app, limits, std::future::pending()));
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let metrics_addr = metrics.local_addr().expect("address");
    tokio::spawn(http::serve(
        metrics,
        node.metrics_router(),
        limits,
        std::future::pending(),
    ));
    TestNode {
        url,
        metrics_url: format!("http://{metrics_addr}/metrics"),
        tokens,
        store,
        node,
    }
}

fn uuid(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}

fn teacher() -> Participant {
    Participant::Moderator(ModeratorId::from_uuid(uuid(1)))
}

fn guest(n: u128) -> Participant {
    Participant::Guest(GuestId::from_uuid(uuid(100 + n)))
}

impl TestNode {
    fn grant(&self, room: RoomId, who: Participant, lobby: bool) -> String {
        let role = match who {
            Participant::Moderator(_) => GrantRole::Moderator,
            Participant::Guest(_) => GrantRole::Guest,
        };
        let grant = JoinGrant {
            room,
            participant: who,
            role,
            display_name: format!("{who}"),
            settings: RoomSettings::default(),
            lobby,
        };
        self.tokens
            .join(&grant, SystemClock.now())
            .expect("grant")
            .0
    }

    async fn join(&self, room: RoomId, who: Participant, index: u32) -> Client {
        match Client::join(&self.url, room, &self.grant(room, who, false), index)
            .await
            .expect("join")
        {
            Joined::Welcome(c) => c,
            Joined::Lobby(_) => panic!("{who} was sent to the lobby"),
        }
    }
}

fn room(n: u128) -> RoomId {
    RoomId::from_uuid(uuid(n))
}

/// Waits until `cond` holds, polling; fails with `what` after `within`.
async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts publishing microphone and camera at a small video bitrate.
async fn publishing(c: &mut Client, video_bitrate: u32) {
    c.publish(Publish {
        video_bitrate,
        ..Publish::default()
    })
    .await
    .expect("publish");
}

/// The code of the next error frame the client gets.
async fn error_code(c: &mut Client) -> ErrorCode {
    c.wait_for(Duration::from_secs(5), |f| match f {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await
    .expect("an error frame")
}

/// Why the node sent the client away.
async fn farewell(c: &mut Client) -> Farewell {
    c.wait_for(Duration::from_secs(5), |f| match f {
        ServerMessage::Bye { reason } => Some(*reason),
        _ => None,
    })
    .await
    .expect("a farewell")
}

fn enough(c: &Client, from: &Client, source: Source, packets: u64) -> bool {
    c.stats.received_from(&from.me, source).packets >= packets
}

/// Everyone publishes; every client must receive every other's audio and video, each
/// payload intact and from its own sender.
async fn everyone_receives_everyone(n: &TestNode, r: RoomId, size: u32) {
    let mut clients = Vec::new();
    for i in 0..size {
        let who = if i == 0 {
            teacher()
        } else {
            guest(u128::from(i))
        };
        let mut c = n.join(r, who, i).await;
        publishing(&mut c, 300_000).await;
        clients.push(c);
    }
    for c in &clients {
        for other in clients.iter().filter(|o| o.me != c.me) {
            for source in [Source::Microphone, Source::Camera] {
                eventually(
                    Duration::from_secs(20),
                    &format!("{} receives {source:?} of {}", c.me, other.me),
                    || enough(c, other, source, 25),
                )
                .await;
                let got = c.stats.received_from(&other.me, source);
                assert_eq!(got.damaged, 0, "payloads arrive as sent");
                assert_eq!(
                    got.senders,
                    vec![other.index],
                    "the stream carries its sender's media only"
                );
            }
        }
    }
}

/// A chat message in room `r` by `author`, signed as the chat function signs it, with a
/// fresh id for each `n`.
fn chat(n: &TestNode, r: RoomId, author: Participant, id: u128, body: &str) -> String {
    let now = SystemClock.now();
    n.tokens
        .chat_relay(
            r,
            RelayedMessage {
                id: MessageId::new(now, uuid(id)),
                conversation: Conversation::Room,
                author,
                body: ChatBody::parse(body).expect("body"),
                posted_at: now,
            },
            now,
        )
        .expect("signed")
}

/// The body of the next chat message `c` gets.
async fn next_chat(c: &mut Client) -> String {
    c.wait_for(Duration::from_secs(10), |f| match f {
        ServerMessage::Chat { message } => Some(message.body.as_str().to_owned()),
        _ => None,
    })
    .await
    .expect("a chat message arrives")
}
