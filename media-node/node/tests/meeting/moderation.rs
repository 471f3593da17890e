//! Moderation over the wire: mute, remove, the lobby, who may moderate.

use super::*;

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
