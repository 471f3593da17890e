//! A real media node on loopback (UDP port, WebSocket signalling) with real WebRTC clients
//! (webrtc-rs): media flows, moderation works, bad grants and bad frames are refused.

use aula_domain::ports::{MeetingStore, NodeRegistryStore};
use aula_domain::services::{GrantRole, JoinGrant};
use aula_domain::{
    ChatBody, Clock, Conversation, GuestId, MessageId, ModeratorId, Participant, RelayedMessage,
    RoomId, RoomSettings, Span,
};
use aula_loadgen::{Client, Joined, Publish};
use aula_media_node::http::{self, HttpLimits};
use aula_media_node::{MediaNode, NodeConfig, NodeDeps};
use aula_sfu::protocol::{ClientMessage, ErrorCode, Farewell, ServerMessage, Source};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_each_receive_the_others_audio_and_video_with_intact_payloads() {
    let n = node().await;
    let r = room(1);
    everyone_receives_everyone(&n, r, 3).await;
    let metrics = reqwest::get(&n.metrics_url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("aula_media_participants 3"), "{metrics}");
    assert!(metrics.contains("aula_media_rooms 1"), "{metrics}");
    assert!(metrics.contains("aula_media_forwarded_packets_total{kind=\"video\"}"));
}

/// Five subscribers per packet: the node writes their connections on all cores at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_group_of_six_everyone_receives_everyone_intact_when_the_fan_out_runs_in_parallel() {
    let n = node().await;
    everyone_receives_everyone(&n, room(20), 6).await;
}

/// Browsers that send simulcast replace their publish connection instead of renegotiating it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_who_replaces_their_publish_connection_keeps_reaching_the_others() {
    let n = node().await;
    let r = room(21);
    let mut a = n.join(r, teacher(), 0).await;
    let b = n.join(r, guest(1), 1).await;
    publishing(&mut a, 200_000).await;
    eventually(Duration::from_secs(15), "b receives a", || {
        enough(&b, &a, Source::Microphone, 20) && enough(&b, &a, Source::Camera, 20)
    })
    .await;
    publishing(&mut a, 200_000).await;
    let before =
        [Source::Microphone, Source::Camera].map(|s| b.stats.received_from(&a.me, s).packets);
    eventually(
        Duration::from_secs(15),
        "b keeps receiving a's audio and video from the new connection",
        || {
            enough(&b, &a, Source::Microphone, before[0] + 50)
                && enough(&b, &a, Source::Camera, before[1] + 50)
        },
    )
    .await;
    for s in [Source::Microphone, Source::Camera] {
        assert_eq!(b.stats.received_from(&a.me, s).damaged, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_makes_the_node_ask_the_publisher_for_a_keyframe() {
    let n = node().await;
    let r = room(2);
    let mut a = n.join(r, teacher(), 0).await;
    publishing(&mut a, 200_000).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = a
        .stats
        .keyframe_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let b = n.join(r, guest(1), 1).await;
    eventually(
        Duration::from_secs(15),
        "the late joiner sees video",
        || enough(&b, &a, Source::Camera, 10),
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "a keyframe request reaches the publisher",
        || {
            a.stats
                .keyframe_requests
                .load(std::sync::atomic::Ordering::SeqCst)
                > before
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_guest_is_told_and_their_audio_stops_at_the_others() {
    let n = node().await;
    let r = room(3);
    let t = n.join(r, teacher(), 0).await;
    let mut g = n.join(r, guest(1), 1).await;
    let mut other = n.join(r, guest(2), 2).await;
    publishing(&mut g, 200_000).await;
    eventually(Duration::from_secs(15), "audio and video flow", || {
        enough(&other, &g, Source::Microphone, 20) && enough(&other, &g, Source::Camera, 20)
    })
    .await;
    t.send(&ClientMessage::Mute { participant: g.me })
        .expect("send");
    let by = g
        .wait_for(Duration::from_secs(5), |f| match f {
            ServerMessage::Muted { by } => Some(*by),
            _ => None,
        })
        .await
        .expect("the guest is told");
    assert_eq!(by, t.me);
    other
        .wait_for(Duration::from_secs(5), |f| match f {
            ServerMessage::ParticipantUpdated { peer }
                if peer.participant == g.me && peer.muted =>
            {
                Some(())
            }
            _ => None,
        })
        .await
        .expect("the others see the mute");
    // Packets in flight may still arrive; after that, nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audio = other.stats.received_from(&g.me, Source::Microphone).packets;
    let video = other.stats.received_from(&g.me, Source::Camera).packets;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        other.stats.received_from(&g.me, Source::Microphone).packets,
        audio,
        "no audio from the muted guest"
    );
    assert!(
        other.stats.received_from(&g.me, Source::Camera).packets > video,
        "their video still flows"
    );
    // They may unmute themselves.
    g.send(&ClientMessage::SetMuted { muted: false })
        .expect("send");
    eventually(Duration::from_secs(5), "audio flows again", || {
        other.stats.received_from(&g.me, Source::Microphone).packets > audio + 10
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_guest_is_told_and_cannot_rejoin_with_the_same_grant() {
    let n = node().await;
    let r = room(4);
    let t = n.join(r, teacher(), 0).await;
    let grant = n.grant(r, guest(1), false);
    let Joined::Welcome(mut g) = Client::join(&n.url, r, &grant, 1).await.expect("join") else {
        panic!("lobby")
    };
    t.send(&ClientMessage::Remove { participant: g.me })
        .expect("send");
    let reason = farewell(&mut g).await;
    assert_eq!(reason, Farewell::Removed);
    let again = Client::join(&n.url, r, &grant, 1).await;
    let refused = match again {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a removed guest got back in"),
    };
    assert!(refused.contains("removed"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lobby_holds_a_knocking_guest_until_the_moderator_admits_them() {
    let n = node().await;
    let r = room(5);
    let mut t = n.join(r, teacher(), 0).await;
    publishing(&mut t, 200_000).await;
    let Joined::Lobby(mut g) = Client::join(&n.url, r, &n.grant(r, guest(1), true), 1)
        .await
        .expect("knock")
    else {
        panic!("a knocking guest went straight in")
    };
    let (who, name) = t
        .wait_for(Duration::from_secs(5), |f| match f {
            ServerMessage::Knock { participant, name } => Some((*participant, name.clone())),
            _ => None,
        })
        .await
        .expect("the moderator hears the knock");
    assert_eq!(who, g.me);
    assert!(!name.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        g.drain_frames().is_empty(),
        "while waiting the guest learns nothing of the meeting"
    );
    assert_eq!(
        g.stats.received_from(&t.me, Source::Camera).packets,
        0,
        "and receives no media"
    );
    g.send(&ClientMessage::PublishOffer {
        sdp: String::new(),
        tracks: vec![],
        restart: false,
    })
    .expect("send");
    let refused = error_code(&mut g).await;
    assert_eq!(refused, ErrorCode::NotAllowed);
    t.send(&ClientMessage::Admit { participant: g.me })
        .expect("send");
    let participants = g
        .wait_for(Duration::from_secs(5), |f| match f {
            ServerMessage::Welcome { participants, .. } => Some(participants.clone()),
            _ => None,
        })
        .await
        .expect("admitted");
    assert_eq!(participants.len(), 1);
    eventually(
        Duration::from_secs(15),
        "the admitted guest sees the teacher",
        || enough(&g, &t, Source::Camera, 10),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_moderators_moderate_and_ending_the_meeting_sends_everyone_away() {
    let n = node().await;
    let r = room(6);
    let mut t = n.join(r, teacher(), 0).await;
    let mut g1 = n.join(r, guest(1), 1).await;
    let mut g2 = n.join(r, guest(2), 2).await;
    g1.send(&ClientMessage::Remove { participant: g2.me })
        .expect("send");
    let code = error_code(&mut g1).await;
    assert_eq!(code, ErrorCode::Forbidden);
    t.send(&ClientMessage::EndMeeting).expect("send");
    for c in [&mut t, &mut g1, &mut g2] {
        let reason = farewell(c).await;
        assert_eq!(reason, Farewell::Ended);
    }
    let back = Client::join(&n.url, r, &n.grant(r, guest(1), false), 1).await;
    assert!(
        back.is_err(),
        "a guest cannot restart a meeting the moderator ended"
    );
    let _t = n.join(r, teacher(), 0).await;
    let _g = n.join(r, guest(1), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grants_are_refused() {
    use base64::Engine as _;
    let n = node().await;
    let r = room(7);
    let good = n.grant(r, guest(1), false);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("json");
    claims["role"] = "moderator".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let past = SystemClock.now().minus(Span::seconds(600));
    let expired = n
        .tokens
        .join(
            &JoinGrant {
                room: r,
                participant: guest(1),
                role: GrantRole::Guest,
                display_name: "Max".into(),
                settings: RoomSettings::default(),
                lobby: false,
            },
            past,
        )
        .expect("grant")
        .0;
    let stranger = Tokens::from_pkcs8(
        &generate_ed25519_pkcs8().expect("key"),
        TokenLifetimes::default(),
    )
    .expect("tokens");
    let wrong_key = stranger
        .join(
            &JoinGrant {
                room: r,
                participant: guest(1),
                role: GrantRole::Guest,
                display_name: "Max".into(),
                settings: RoomSettings::default(),
                lobby: false,
            },
            SystemClock.now(),
        )
        .expect("grant")
        .0;
    let other_room = n.grant(room(8), guest(1), false);
    for (what, grant) in [
        ("expired", expired),
        ("for another room", other_room),
        ("tampered", tampered),
        ("signed with another key", wrong_key),
        ("alg none", none),
        ("not a token", "hello".to_owned()),
    ] {
        let refused = Client::join(&n.url, r, &grant, 1).await;
        let Err(e) = refused else {
            panic!("a grant {what} was accepted")
        };
        assert!(e.to_string().contains("bad_grant"), "{what}: {e}");
    }
    // And the good one works.
    let _ = n.join(r, guest(1), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_oversized_frames_get_error_frames_and_the_node_stays_up() {
    let n = node().await;
    let r = room(9);
    let mut c = n.join(r, guest(1), 1).await;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut frames = vec![
        String::new(),
        "null".to_owned(),
        "{}".to_owned(),
        r#"{"type":"admit"}"#.to_owned(),
        r#"{"type":"publish_offer","sdp":"v=0 garbage","tracks":[]}"#.to_owned(),
        r#"{"type":"subscribe_answer","sdp":"v=0"}"#.to_owned(),
        r#"{"type":"candidate","connection":"publish","candidate":"candidate:x"}"#.to_owned(),
        r#"{"type":"join","v":1,"room":"nope","grant":"x"}"#.to_owned(),
        format!(
            r#"{{"type":"raise_hand","raised":true,"x":"{}"}}"#,
            "a".repeat(300_000)
        ),
        "[".repeat(10_000),
    ];
    for _ in 0..40 {
        let len = (next() % 300) as usize;
        frames.push(
            (0..len)
                .map(|_| char::from(32 + (next() % 95) as u8))
                .collect(),
        );
    }
    let sent = frames.len();
    for f in frames {
        c.send_raw(f).expect("send");
        // Stay under the node's frame rate limit.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut errors = 0;
    while errors < sent - 1 {
        c.wait_for(Duration::from_secs(5), |f| match f {
            ServerMessage::Error { .. } => Some(()),
            _ => None,
        })
        .await
        .expect("an error frame for each bad frame");
        errors += 1;
    }
    // The node still holds meetings.
    let mut a = n.join(room(10), teacher(), 2).await;
    publishing(&mut a, 100_000).await;
    let b = n.join(room(10), guest(3), 3).await;
    eventually(Duration::from_secs(15), "media still flows", || {
        enough(&b, &a, Source::Microphone, 10)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_relayed_only_as_the_functions_signed_it_and_private_messages_only_to_the_two() {
    let n = node().await;
    let r = room(11);
    let mut t = n.join(r, teacher(), 0).await;
    let mut g1 = n.join(r, guest(1), 1).await;
    let mut g2 = n.join(r, guest(2), 2).await;
    let now = SystemClock.now();
    // Each message its own id, as the chat function makes them (the node delivers an id once).
    let next_id = std::sync::atomic::AtomicU64::new(7);
    let message = |conversation, body: &str, author| RelayedMessage {
        id: MessageId::new(
            now,
            uuid(u128::from(
                next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            )),
        ),
        conversation,
        author,
        body: ChatBody::parse(body).expect("body"),
        posted_at: now,
    };
    let room_msg = n
        .tokens
        .chat_relay(r, message(Conversation::Room, "Guten Morgen", t.me), now)
        .expect("signed");
    t.send(&ClientMessage::Chat { relay: room_msg })
        .expect("send");
    for c in [&mut g1, &mut g2] {
        let body = c
            .wait_for(Duration::from_secs(5), |f| match f {
                ServerMessage::Chat { message } => Some(message.body.as_str().to_owned()),
                _ => None,
            })
            .await
            .expect("room chat arrives");
        assert_eq!(body, "Guten Morgen");
    }
    let private = Conversation::private(t.me, g1.me).expect("private");
    let secret = n
        .tokens
        .chat_relay(r, message(private, "Nur für dich", g1.me), now)
        .expect("signed");
    g1.send(&ClientMessage::Chat {
        relay: secret.clone(),
    })
    .expect("send");
    t.wait_for(Duration::from_secs(5), |f| match f {
        ServerMessage::Chat { message } if message.body.as_str() == "Nur für dich" => Some(()),
        _ => None,
    })
    .await
    .expect("the addressee gets it");
    // Someone else's token, and a forged one, are refused.
    g2.send(&ClientMessage::Chat { relay: secret })
        .expect("send");
    let stranger = Tokens::from_pkcs8(
        &generate_ed25519_pkcs8().expect("key"),
        TokenLifetimes::default(),
    )
    .expect("tokens");
    let forged = stranger
        .chat_relay(r, message(Conversation::Room, "Fake", t.me), now)
        .expect("signed");
    g2.send(&ClientMessage::Chat { relay: forged })
        .expect("send");
    for _ in 0..2 {
        let code = error_code(&mut g2).await;
        assert_eq!(code, ErrorCode::BadChat);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !g2.drain_frames()
            .iter()
            .any(|f| matches!(f, ServerMessage::Chat { .. })),
        "the third participant never sees the private message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_registers_records_meetings_and_drains_on_shutdown() {
    let n = node().await;
    let r = room(12);
    let mut live = Vec::new();
    for _ in 0..50 {
        live = n.store.live_nodes(SystemClock.now()).await.expect("nodes");
        if !live.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live.len(), 1, "registered");
    assert_eq!(live[0].address, n.url);
    let mut t = n.join(r, teacher(), 0).await;
    let g = n.join(r, guest(1), 1).await;
    let mut meetings = Vec::new();
    for _ in 0..50 {
        meetings = n
            .store
            .meetings_of(r, SystemClock.now())
            .await
            .expect("meetings");
        if !meetings.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(meetings.len(), 1, "the meeting is recorded when it starts");
    assert!(meetings[0].ended_at.is_none());
    for _ in 0..50 {
        let l = n.store.live_nodes(SystemClock.now()).await.expect("nodes");
        if l.first().is_some_and(|x| x.load == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        n.store.live_nodes(SystemClock.now()).await.expect("nodes")[0].load,
        2,
        "the heartbeat carries the load"
    );
    g.close().await;
    let drain = {
        let node = n.node.clone();
        tokio::spawn(async move { node.drain().await })
    };
    t.wait_for(Duration::from_secs(5), |f| {
        matches!(f, ServerMessage::Move).then_some(())
    })
    .await
    .expect("clients are asked to move");
    for _ in 0..50 {
        if n.store
            .live_nodes(SystemClock.now())
            .await
            .expect("nodes")
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        n.store
            .live_nodes(SystemClock.now())
            .await
            .expect("nodes")
            .is_empty(),
        "a draining node takes no new rooms"
    );
    let refused = Client::join(&n.url, room(13), &n.grant(room(13), guest(5), false), 5).await;
    assert!(refused.is_err(), "nor new participants");
    t.close().await;
    tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .expect("the drain ends when the node is empty")
        .expect("drain");
    let mut ended = Vec::new();
    for _ in 0..50 {
        ended = n
            .store
            .meetings_of(r, SystemClock.now())
            .await
            .expect("meetings");
        if ended.first().is_some_and(|m| m.ended_at.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended[0].ended_at.is_some(), "the meeting's end is recorded");
    assert_eq!(ended[0].peak_participants, 2);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_chat_token_delivers_nothing_the_second_time_and_the_sender_is_told() {
    let n = node().await;
    let r = room(20);
    let mut t = n.join(r, teacher(), 0).await;
    let mut g = n.join(r, guest(1), 1).await;
    let first = chat(&n, r, t.me, 1, "Seite 42");
    t.send(&ClientMessage::Chat {
        relay: first.clone(),
    })
    .expect("send");
    assert_eq!(next_chat(&mut g).await, "Seite 42");
    t.send(&ClientMessage::Chat { relay: first }).expect("send");
    assert_eq!(error_code(&mut t).await, ErrorCode::AlreadyDelivered);
    // Frames from one connection are handled in order: had the replay been delivered,
    // it would arrive before this one.
    t.send(&ClientMessage::Chat {
        relay: chat(&n, r, t.me, 2, "Seite 43"),
    })
    .expect("send");
    assert_eq!(next_chat(&mut g).await, "Seite 43");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meetings_websocket_stays_open_long_past_the_http_idle_timeout() {
    let n = node().await;
    let r = room(21);
    let t = n.join(r, teacher(), 0).await;
    let mut g = n.join(r, guest(1), 1).await;
    // Quiet for three times the header-read (and keep-alive idle) timeout.
    tokio::time::sleep(HEADER_TIMEOUT * 3).await;
    assert!(!t.is_closed() && !g.is_closed(), "both are still connected");
    t.send(&ClientMessage::Chat {
        relay: chat(&n, r, t.me, 3, "Noch da?"),
    })
    .expect("send");
    assert_eq!(next_chat(&mut g).await, "Noch da?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_the_others_keep_their_meeting() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let n = node_with(|c| c.outbound_frames = 16).await;
    let r = room(22);
    let mut t = n.join(r, teacher(), 0).await;
    let mut g = n.join(r, guest(1), 1).await;
    let talkers = [n.join(r, guest(2), 2).await, n.join(r, guest(3), 3).await];
    // The slow client: a small receive buffer, so the kernel holds little for it.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let addr = n
        .url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("host")
        .parse()
        .expect("address");
    let stream = socket.connect(addr).await.expect("connect");
    let (mut slow, _) = tokio_tungstenite::client_async(n.url.as_str(), stream)
        .await
        .expect("upgrade");
    let slow_guest = guest(9);
    let join = ClientMessage::Join {
        v: aula_sfu::protocol::PROTOCOL_VERSION,
        room: r,
        grant: n.grant(r, slow_guest, false),
    };
    slow.send(Message::Text(
        serde_json::to_string(&join).expect("json").into(),
    ))
    .await
    .expect("join");
    let welcome = slow.next().await.expect("a frame").expect("welcome");
    assert!(welcome.to_text().expect("text").contains("welcome"));
    // From here on it reads nothing, while the others chat with the longest messages.
    // Before its queue fills, the node's socket buffer fills: here about 2.7 MB went
    // into it (900 messages); the cap allows four times the default maximum (4 MiB).
    let long = "x".repeat(ChatBody::MAX_CHARS);
    let mut sent = 0u128;
    let dropped = loop {
        assert!(sent < 4000, "the slow client was never dropped");
        for c in [&t, &g, &talkers[0], &talkers[1]] {
            let who = c.me;
            sent += 1;
            c.send(&ClientMessage::Chat {
                relay: chat(&n, r, who, 1000 + sent, &long),
            })
            .expect("send");
        }
        // Under the node's frame rate limit.
        tokio::time::sleep(Duration::from_millis(25)).await;
        let left = t.drain_frames().into_iter().any(|f| {
            matches!(f, ServerMessage::ParticipantLeft { participant } if participant == slow_guest)
        });
        if left {
            break true;
        }
    };
    assert!(dropped);
    // The others are still in their meeting and still hear each other.
    g.drain_frames();
    t.send(&ClientMessage::Chat {
        relay: chat(&n, r, t.me, 1, "Weiter geht's"),
    })
    .expect("send");
    let body = g
        .wait_for(Duration::from_secs(10), |f| match f {
            ServerMessage::Chat { message } if message.body.as_str() == "Weiter geht's" => Some(()),
            _ => None,
        })
        .await;
    assert!(body.is_ok(), "the guest still gets the teacher's chat");
    assert!(!t.is_closed() && !g.is_closed());
    let metrics = reqwest::get(&n.metrics_url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("aula_media_slow_clients_dropped_total 1"),
        "the drop is counted"
    );
    drop(slow);
}
