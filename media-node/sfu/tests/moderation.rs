//! The SFU's rooms and moderation, driven as a state machine: no sockets, no clock.

use aula_domain::services::GrantRole;
use aula_domain::{GuestId, ModeratorId, Participant, RoomId, RoomSettings};
use aula_sfu::protocol::{
    ClientMessage, ErrorCode, Farewell, PublishedTrack, ServerMessage, Source,
};
use aula_sfu::{ConnId, Entropy, Joining, Output, Sfu, SfuConfig};
use std::time::Instant;

struct Counter(u64);

impl Entropy for Counter {
    fn token(&mut self, len: usize) -> String {
        self.0 += 1;
        format!("{:0>len$}", self.0, len = len)
    }
    fn ssrc(&mut self) -> u32 {
        self.0 += 1;
        self.0 as u32
    }
}

fn sfu(capacity: u32) -> Sfu {
    Sfu::new(
        SfuConfig {
            candidate: "127.0.0.1:7882".parse().expect("address"),
            last_n: 20,
            fanout_threads: 1,
            initial_estimate_bps: aula_sfu::media::INITIAL_ESTIMATE_BPS as u64,
            capacity,
        },
        Box::new(Counter(0)),
    )
}

fn room() -> RoomId {
    RoomId::from_uuid(uuid::Uuid::from_u128(1))
}

fn teacher() -> Participant {
    Participant::Moderator(ModeratorId::from_uuid(uuid::Uuid::from_u128(2)))
}

fn guest(n: u128) -> Participant {
    Participant::Guest(GuestId::from_uuid(uuid::Uuid::from_u128(100 + n)))
}

fn joining(who: Participant, lobby: bool) -> Joining {
    Joining {
        room: room(),
        participant: who,
        name: who.to_string(),
        role: match who {
            Participant::Moderator(_) => GrantRole::Moderator,
            Participant::Guest(_) => GrantRole::Guest,
        },
        settings: RoomSettings::default(),
        lobby,
    }
}

/// Everything the SFU wants done, taken out.
fn outputs(s: &mut Sfu) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn frames(out: &[Output], to: ConnId) -> Vec<ServerMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Signal { conn, message } if *conn == to => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn closed(out: &[Output], conn: ConnId) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close { conn: c } if *c == conn))
}

/// A room on a node of 10 seats with the teacher on connection 1 and `guests` guests on
/// connections 2, 3, …, everyone admitted and the join frames already read.
fn a_lesson_with_guests(now: Instant, guests: u128) -> Sfu {
    let mut s = sfu(10);
    s.join(now, 1, joining(teacher(), false));
    for n in 1..=guests {
        s.join(now, (n + 1) as ConnId, joining(guest(n), false));
    }
    outputs(&mut s);
    s
}

fn refused_as_forbidden(out: &[Output], conn: ConnId) -> bool {
    frames(out, conn).iter().any(|f| {
        matches!(
            f,
            ServerMessage::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        )
    })
}

#[test]
fn a_knocking_guest_waits_unseen_until_the_moderator_admits_them() {
    let now = Instant::now();
    let mut s = sfu(10);
    s.join(now, 1, joining(teacher(), false));
    outputs(&mut s);
    s.join(now, 2, joining(guest(1), true));
    let out = outputs(&mut s);
    assert_eq!(frames(&out, 2), vec![ServerMessage::Lobby]);
    assert!(matches!(
        frames(&out, 1).as_slice(),
        [ServerMessage::Knock { participant, .. }] if *participant == guest(1)
    ));
    assert_eq!(s.stats().waiting, 1);
    assert_eq!(s.stats().participants, 1);

    s.handle_message(
        now,
        1,
        ClientMessage::Admit {
            participant: guest(1),
        },
    );
    let out = outputs(&mut s);
    assert!(frames(&out, 2).iter().any(
        |f| matches!(f, ServerMessage::Welcome { participants, .. } if participants.len() == 1)
    ));
    let to_teacher = frames(&out, 1);
    assert!(to_teacher.iter().any(
        |f| matches!(f, ServerMessage::KnockEnded { participant } if *participant == guest(1))
    ));
    assert!(to_teacher.iter().any(
        |f| matches!(f, ServerMessage::ParticipantJoined { peer } if peer.participant == guest(1))
    ));
    assert_eq!(s.stats().participants, 2);
}

#[test]
fn a_moderator_joining_later_hears_who_is_already_knocking() {
    let now = Instant::now();
    let mut s = sfu(10);
    s.join(now, 2, joining(guest(1), true));
    outputs(&mut s);
    s.join(now, 1, joining(teacher(), false));
    let out = outputs(&mut s);
    assert!(frames(&out, 1).iter().any(
        |f| matches!(f, ServerMessage::Knock { participant, .. } if *participant == guest(1))
    ));
}

#[test]
fn a_denied_guest_is_sent_away_and_refused_from_then_on() {
    let now = Instant::now();
    let mut s = sfu(10);
    s.join(now, 1, joining(teacher(), false));
    s.join(now, 2, joining(guest(1), true));
    outputs(&mut s);
    s.handle_message(
        now,
        1,
        ClientMessage::Deny {
            participant: guest(1),
        },
    );
    let out = outputs(&mut s);
    assert!(frames(&out, 2).contains(&ServerMessage::Bye {
        reason: Farewell::Denied
    }));
    assert!(closed(&out, 2));
    s.join(now, 3, joining(guest(1), true));
    let out = outputs(&mut s);
    assert!(frames(&out, 3).contains(&ServerMessage::Bye {
        reason: Farewell::Denied
    }));
    assert!(closed(&out, 3));
}

#[test]
fn a_meeting_starts_with_the_first_participant_and_ends_with_the_last_recording_its_peak() {
    let now = Instant::now();
    let mut s = sfu(10);
    s.join(now, 1, joining(teacher(), false));
    let out = outputs(&mut s);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::MeetingStarted { room: r } if *r == room()))
    );
    s.join(now, 2, joining(guest(1), false));
    s.join(now, 3, joining(guest(2), false));
    s.leave(now, 2);
    s.leave(now, 1);
    let out = outputs(&mut s);
    assert!(!out.iter().any(|o| matches!(o, Output::MeetingEnded { .. })));
    s.leave(now, 3);
    let out = outputs(&mut s);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::MeetingEnded { room: r, peak_participants: 3 } if *r == room()
    )));
    assert_eq!(s.stats().rooms, 0);
}

#[test]
fn joining_again_replaces_the_older_connection() {
    let now = Instant::now();
    let mut s = sfu(10);
    s.join(now, 1, joining(guest(1), false));
    outputs(&mut s);
    s.join(now, 2, joining(guest(1), false));
    let out = outputs(&mut s);
    assert!(frames(&out, 1).contains(&ServerMessage::Bye {
        reason: Farewell::Replaced
    }));
    assert!(closed(&out, 1));
    assert_eq!(s.participant_of(2), Some((room(), guest(1))));
    assert_eq!(s.stats().participants, 1);
}

#[test]
fn a_ping_is_answered_with_a_pong_to_the_one_who_pinged_and_nobody_else() {
    let now = Instant::now();
    let mut s = sfu(10);
    s.join(now, 1, joining(teacher(), false));
    s.join(now, 2, joining(guest(1), true));
    outputs(&mut s);
    s.handle_message(now, 1, ClientMessage::Ping);
    s.handle_message(now, 2, ClientMessage::Ping);
    let out = outputs(&mut s);
    assert_eq!(frames(&out, 1), vec![ServerMessage::Pong]);
    // Waiting in the lobby is being connected too: the page must not give the node up.
    assert_eq!(frames(&out, 2), vec![ServerMessage::Pong]);
}

#[test]
fn a_full_node_refuses_newcomers_and_a_draining_node_asks_everyone_to_move() {
    let now = Instant::now();
    let mut s = sfu(2);
    s.join(now, 1, joining(teacher(), false));
    s.join(now, 2, joining(guest(1), false));
    outputs(&mut s);
    s.join(now, 3, joining(guest(2), false));
    let out = outputs(&mut s);
    assert!(frames(&out, 3).iter().any(|f| matches!(
        f,
        ServerMessage::Error {
            code: ErrorCode::Full,
            ..
        }
    )));
    assert!(closed(&out, 3));

    s.drain();
    let out = outputs(&mut s);
    assert!(frames(&out, 1).contains(&ServerMessage::Move));
    assert!(frames(&out, 2).contains(&ServerMessage::Move));
    s.leave(now, 1);
    s.leave(now, 2);
    assert!(s.is_empty());
    s.join(now, 4, joining(guest(3), false));
    let out = outputs(&mut s);
    assert!(frames(&out, 4).iter().any(|f| matches!(
        f,
        ServerMessage::Error {
            code: ErrorCode::Draining,
            ..
        }
    )));
}

#[test]
fn a_join_refused_by_a_full_node_leaves_no_room_behind_and_empty_rooms_are_forgotten() {
    let now = Instant::now();
    let mut s = sfu(1);
    s.join(now, 1, joining(teacher(), false));
    outputs(&mut s);
    // Pupils of 50 other rooms try a full node: each is refused, none leaves state.
    for n in 0..50u128 {
        let mut j = joining(guest(n), false);
        j.room = RoomId::from_uuid(uuid::Uuid::from_u128(1_000 + n));
        s.join(now, 10 + n as u64, j);
    }
    let out = outputs(&mut s);
    assert!(closed(&out, 10) && closed(&out, 59));
    assert_eq!(s.rooms_held(), 1, "only the teacher's room is held");

    // The last one leaves: the room is kept an hour (a removed guest stays out), then goes.
    s.leave(now, 1);
    assert_eq!(s.rooms_held(), 1);
    s.handle_timeout(now + std::time::Duration::from_secs(3599));
    assert_eq!(s.rooms_held(), 1);
    s.handle_timeout(now + std::time::Duration::from_secs(3601));
    assert_eq!(
        s.rooms_held(),
        0,
        "an empty room is forgotten after an hour"
    );
}

#[test]
fn guests_cannot_moderate_and_moderators_cannot_be_removed() {
    let now = Instant::now();
    let mut s = a_lesson_with_guests(now, 2);
    for m in [
        ClientMessage::Mute {
            participant: guest(2),
        },
        ClientMessage::Remove {
            participant: guest(2),
        },
        ClientMessage::EndMeeting,
    ] {
        s.handle_message(now, 2, m);
        let out = outputs(&mut s);
        assert!(refused_as_forbidden(&out, 2));
        assert!(frames(&out, 3).is_empty());
    }
    s.handle_message(
        now,
        1,
        ClientMessage::Remove {
            participant: teacher(),
        },
    );
    let out = outputs(&mut s);
    assert!(!closed(&out, 1));
}

#[test]
fn a_moderator_mutes_a_guest_who_is_told_and_may_unmute_themselves() {
    let now = Instant::now();
    let mut s = a_lesson_with_guests(now, 1);
    s.handle_message(
        now,
        1,
        ClientMessage::Mute {
            participant: guest(1),
        },
    );
    let out = outputs(&mut s);
    assert!(frames(&out, 2).contains(&ServerMessage::Muted { by: teacher() }));
    assert!(
        frames(&out, 1)
            .iter()
            .any(|f| matches!(f, ServerMessage::ParticipantUpdated { peer } if peer.muted))
    );
    s.handle_message(now, 2, ClientMessage::SetMuted { muted: false });
    let out = outputs(&mut s);
    assert!(
        frames(&out, 1)
            .iter()
            .any(|f| matches!(f, ServerMessage::ParticipantUpdated { peer } if !peer.muted))
    );
}

#[test]
fn guests_join_muted_where_the_room_says_so_and_may_not_share_where_it_forbids() {
    let now = Instant::now();
    let mut s = sfu(10);
    let mut g = joining(guest(1), false);
    g.settings = RoomSettings {
        mute_on_join: true,
        guests_may_share_screen: false,
        ..RoomSettings::default()
    };
    s.join(now, 1, joining(teacher(), false));
    outputs(&mut s);
    s.join(now, 2, g);
    let out = outputs(&mut s);
    assert!(
        frames(&out, 1)
            .iter()
            .any(|f| matches!(f, ServerMessage::ParticipantJoined { peer } if peer.muted))
    );
    s.handle_message(
        now,
        2,
        ClientMessage::PublishOffer {
            sdp: String::new(),
            tracks: vec![PublishedTrack {
                mid: "0".into(),
                source: Source::Screen,
            }],
            restart: false,
        },
    );
    let out = outputs(&mut s);
    assert!(frames(&out, 2).iter().any(|f| matches!(
        f,
        ServerMessage::Error {
            code: ErrorCode::NotAllowed,
            ..
        }
    )));
}

#[test]
fn a_bad_offer_is_an_error_frame_not_a_crash() {
    let now = Instant::now();
    let mut s = sfu(10);
    s.join(now, 1, joining(teacher(), false));
    outputs(&mut s);
    for sdp in ["", "v=0", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"] {
        s.handle_message(
            now,
            1,
            ClientMessage::PublishOffer {
                sdp: sdp.into(),
                tracks: vec![],
                restart: false,
            },
        );
        let out = outputs(&mut s);
        assert!(frames(&out, 1).iter().any(|f| matches!(
            f,
            ServerMessage::Error {
                code: ErrorCode::BadSdp,
                ..
            }
        )));
    }
    s.handle_message(now, 1, ClientMessage::SubscribeAnswer { sdp: "v=0".into() });
    let out = outputs(&mut s);
    assert!(!frames(&out, 1).is_empty());
    // Stray datagrams from nowhere are ignored.
    s.handle_datagram(now, "127.0.0.1:5000".parse().expect("addr"), &[0, 1, 2, 3]);
    s.handle_datagram(now, "127.0.0.1:5000".parse().expect("addr"), &[]);
    assert_eq!(s.stats().participants, 1);
}

#[test]
fn a_moderator_lowers_a_raised_hand_and_everyone_sees_it_down_but_a_guest_cannot() {
    let now = Instant::now();
    let mut s = a_lesson_with_guests(now, 2);
    s.handle_message(now, 2, ClientMessage::RaiseHand { raised: true });
    outputs(&mut s);

    // Another guest may not lower it.
    s.handle_message(
        now,
        3,
        ClientMessage::LowerHand {
            participant: guest(1),
        },
    );
    let out = outputs(&mut s);
    assert!(refused_as_forbidden(&out, 3));
    assert!(frames(&out, 2).is_empty(), "the hand stays up");

    s.handle_message(
        now,
        1,
        ClientMessage::LowerHand {
            participant: guest(1),
        },
    );
    let out = outputs(&mut s);
    for conn in [1, 2, 3] {
        assert!(
            frames(&out, conn).iter().any(|f| matches!(
                f,
                ServerMessage::ParticipantUpdated { peer } if peer.participant == guest(1) && !peer.hand_raised
            )),
            "connection {conn} sees the hand lowered"
        );
    }
}
