//! Signalling: grants, hostile frames, chat relay, the node's registry and drain.

use super::*;

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
