//! Media between real clients: who receives what, keyframes, a slow reader.

use super::*;

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
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("aula_media_slow_clients_dropped_total"));
    assert_eq!(
        counted,
        Some("aula_media_slow_clients_dropped_total 1"),
        "the drop is counted, once"
    );
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_teacher_and_the_pupil_are_told_of_the_pupils_lossy_uplink_and_nobody_else_is() {
    let n = node().await;
    let r = room(12);
    let mut t = n.join(r, teacher(), 0).await;
    let mut lossy = n.join(r, guest(1), 1).await;
    let mut other = n.join(r, guest(2), 2).await;
    publishing(&mut t, 300_000).await;
    publishing(&mut other, 300_000).await;
    // A quarter of the pupil's video never reaches the node.
    lossy
        .publish(Publish {
            video_bitrate: 300_000,
            lose_one_in: 4,
            ..Publish::default()
        })
        .await
        .expect("publish");
    let about = |f: &ServerMessage, who| match f {
        ServerMessage::ConnectionQuality {
            participant,
            quality,
            video_paused,
        } if *participant == who => Some((*quality, *video_paused)),
        _ => None,
    };
    let who = lossy.me;
    let (quality, paused) = t
        .wait_for(Duration::from_secs(15), |f| about(f, who))
        .await
        .expect("the teacher is told of the pupil's connection");
    assert_ne!(quality, Quality::Good);
    assert!(!paused, "a lossy uplink pauses nothing");
    let own = lossy
        .wait_for(Duration::from_secs(5), |f| about(f, who))
        .await
        .expect("the pupil is told of their own connection");
    assert_eq!(own, (quality, paused));
    let heard_by_other = other.drain_frames();
    assert!(
        heard_by_other.iter().all(|f| about(f, who).is_none()),
        "the other pupil is not told of the first one's connection"
    );
    // The clean connections stay good: no mark other than good about them.
    for f in heard_by_other.iter().chain(&t.drain_frames()) {
        if let ServerMessage::ConnectionQuality {
            participant,
            quality,
            ..
        } = f
            && *participant != who
        {
            assert_eq!(*quality, Quality::Good, "{participant} on a clean link");
        }
    }
}
