//! Media through the real SFU, in memory on a simulated clock (`aula_sfu::testing`): `rtc`
//! clients publish and subscribe as the web client does, ICE, DTLS and SRTP run, and every
//! run is the same. What is asserted is what a participant would see or hear.

use aula_domain::{GuestId, ModeratorId, Participant};
use aula_sfu::protocol::{ClientMessage, Quality, ServerMessage, Source};
use aula_sfu::testing::{Camera, HarnessError, Meeting, MeetingConfig, Publish, Received, Who};
use std::time::Duration;

fn teacher() -> Participant {
    Participant::Moderator(ModeratorId::from_uuid(uuid::Uuid::from_u128(1)))
}

fn pupil(n: u128) -> Participant {
    Participant::Guest(GuestId::from_uuid(uuid::Uuid::from_u128(100 + n)))
}

const EVERYTHING: Publish = Publish {
    microphone: true,
    camera: Camera::Single,
};

const SIMULCAST: Publish = Publish {
    microphone: true,
    camera: Camera::Simulcast,
};

const LISTENING: Publish = Publish {
    microphone: false,
    camera: Camera::Off,
};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Packets `at` received from `from`'s `source`, in the order they arrived.
fn got(m: &Meeting, at: Who, from: Who, source: Source) -> Vec<Received> {
    let from = m.client(from).participant;
    m.client(at)
        .received_from(from, source)
        .into_iter()
        .cloned()
        .collect()
}

fn count(m: &Meeting, at: Who, from: Who, source: Source) -> usize {
    got(m, at, from, source).len()
}

/// Waits until `at` receives `from`'s `source`.
fn until_receiving(
    m: &mut Meeting,
    at: Who,
    from: Who,
    source: Source,
) -> Result<(), HarnessError> {
    let what = format!("{at:?} receives {from:?}'s {source:?}");
    m.run_until(secs(5.0), &what, |m| count(m, at, from, source) > 0)
}

/// The subscriber's stream is one stream: every packet one sequence number after the one
/// before, and timestamps either the same frame or the next one (30 fps at 90 kHz).
fn assert_continuous(packets: &[Received]) {
    for pair in packets.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(a.ssrc, b.ssrc, "one stream at the subscriber");
        assert_eq!(
            b.seq,
            a.seq.wrapping_add(1),
            "sequence numbers without a gap ({a:?} then {b:?})"
        );
        let step = b.timestamp.wrapping_sub(a.timestamp);
        assert!(
            step == 0 || step == 3_000,
            "timestamps the same frame or the next ({a:?} then {b:?})"
        );
    }
}

#[test]
fn when_the_class_grows_the_camera_switches_to_a_smaller_layer_at_a_keyframe_without_a_gap()
-> Result<(), HarnessError> {
    let mut m = Meeting::new(MeetingConfig::default());
    let t = m.join(teacher());
    m.publish(t, SIMULCAST, false)?;
    let p = m.join(pupil(1));
    until_receiving(&mut m, p, t, Source::Camera)?;
    m.run_for(secs(1.0))?;
    let layer_of_last = |m: &Meeting| {
        got(m, p, t, Source::Camera)
            .last()
            .and_then(|r| r.content)
            .map(|c| c.layer)
    };
    assert_eq!(layer_of_last(&m), Some(2), "two people: the full picture");

    // Five people: the grid gets the middle layer.
    for n in 2..=4 {
        m.join(pupil(n));
    }
    m.run_for(secs(2.0))?;
    assert_eq!(layer_of_last(&m), Some(1), "five people: the middle layer");

    let video = got(&m, p, t, Source::Camera);
    assert!(
        video.iter().all(|r| r.content.is_some()),
        "every payload intact"
    );
    let switch = video
        .iter()
        .position(|r| r.content.is_some_and(|c| c.layer == 1))
        .expect("the middle layer arrives");
    assert!(
        video[switch].content.is_some_and(|c| c.keyframe),
        "the new layer starts with a keyframe"
    );
    assert!(
        video[switch..]
            .iter()
            .all(|r| r.content.is_some_and(|c| c.layer == 1)),
        "no packet of the old layer after the switch"
    );
    assert_continuous(&video);
    Ok(())
}

#[test]
fn when_the_browser_stops_sending_its_full_layer_the_subscriber_gets_the_middle_one_within_two_seconds()
-> Result<(), HarnessError> {
    let mut m = Meeting::new(MeetingConfig::default());
    let t = m.join(teacher());
    m.publish(t, SIMULCAST, false)?;
    let p = m.join(pupil(1));
    until_receiving(&mut m, p, t, Source::Camera)?;
    m.run_for(secs(1.0))?;
    let since = |m: &Meeting, n: usize| got(m, p, t, Source::Camera).split_off(n);
    let before = count(&m, p, t, Source::Camera);
    assert!(
        since(&m, before.saturating_sub(10))
            .iter()
            .all(|r| r.content.is_some_and(|c| c.layer == 2)),
        "two people: the full picture"
    );

    // Chrome drops its full layer (short of CPU): the picture must not freeze.
    m.stop_layer(t, 2, true);
    let dropped = count(&m, p, t, Source::Camera);
    m.run_for(secs(2.0))?;
    let after = since(&m, dropped);
    let frames_of_middle = after
        .iter()
        .filter(|r| r.content.is_some_and(|c| c.layer == 1 && c.frame_start))
        .count();
    assert!(
        frames_of_middle >= 15,
        "the middle layer flows again within 2 s ({frames_of_middle} frames)"
    );
    assert_continuous(&got(&m, p, t, Source::Camera));

    // The full layer comes back: the subscriber gets it again.
    m.stop_layer(t, 2, false);
    let resumed = count(&m, p, t, Source::Camera);
    m.run_for(secs(2.0))?;
    assert!(
        since(&m, resumed)
            .iter()
            .rev()
            .take(10)
            .all(|r| r.content.is_some_and(|c| c.layer == 2)),
        "the full picture again once it flows"
    );
    assert_continuous(&got(&m, p, t, Source::Camera));
    Ok(())
}

#[test]
fn a_participant_beyond_the_last_n_speakers_is_heard_but_not_seen_until_they_speak()
-> Result<(), HarnessError> {
    let mut m = Meeting::new(MeetingConfig {
        last_n: 2,
        ..MeetingConfig::default()
    });
    let t = m.join(teacher());
    let first = m.join(pupil(1));
    let third = m.join(pupil(2));
    let listener = m.join(pupil(3));
    for who in [t, first, third] {
        m.publish(who, EVERYTHING, false)?;
    }
    for from in [t, first] {
        until_receiving(&mut m, listener, from, Source::Camera)?;
    }
    until_receiving(&mut m, listener, third, Source::Microphone)?;
    m.run_for(secs(2.0))?;
    assert_eq!(
        count(&m, listener, third, Source::Camera),
        0,
        "the third to join is beyond the last 2: no video"
    );
    assert!(
        count(&m, listener, third, Source::Microphone) > 50,
        "but audio"
    );

    m.set_speaking(third, true);
    until_receiving(&mut m, listener, third, Source::Camera)?;
    let first_video = count(&m, listener, first, Source::Camera);
    m.run_for(secs(2.0))?;
    assert!(
        count(&m, listener, third, Source::Camera) > 100,
        "the speaker is seen"
    );
    assert_eq!(
        count(&m, listener, first, Source::Camera),
        first_video,
        "and the one who spoke longest ago is no longer among the last 2"
    );
    assert!(
        m.client(listener).frames().iter().any(|f| matches!(
            f,
            ServerMessage::Speakers { video, .. } if video.contains(&pupil(2)) && !video.contains(&pupil(1))
        )),
        "the clients are told whose video comes"
    );
    Ok(())
}

#[test]
fn a_moderators_mute_stops_the_guests_audio_at_the_others_but_not_their_video()
-> Result<(), HarnessError> {
    let mut m = Meeting::new(MeetingConfig::default());
    let t = m.join(teacher());
    let g = m.join(pupil(1));
    let other = m.join(pupil(2));
    m.publish(g, EVERYTHING, false)?;
    m.publish(t, LISTENING, false)?;
    until_receiving(&mut m, other, g, Source::Microphone)?;
    until_receiving(&mut m, other, g, Source::Camera)?;

    m.send(
        t,
        ClientMessage::Mute {
            participant: pupil(1),
        },
    );
    m.run_for(secs(0.2))?;
    assert!(
        m.client(g)
            .frames()
            .iter()
            .any(|f| matches!(f, ServerMessage::Muted { by } if *by == teacher())),
        "the guest is told who muted them"
    );
    let (audio, video) = (
        count(&m, other, g, Source::Microphone),
        count(&m, other, g, Source::Camera),
    );
    m.run_for(secs(2.0))?;
    assert_eq!(
        count(&m, other, g, Source::Microphone),
        audio,
        "no more audio from the muted guest"
    );
    assert!(
        count(&m, other, g, Source::Camera) > video + 100,
        "their video goes on"
    );
    Ok(())
}

#[test]
fn a_late_joiner_makes_the_node_ask_the_publisher_for_a_keyframe_and_then_sees_the_video()
-> Result<(), HarnessError> {
    let mut m = Meeting::new(MeetingConfig::default());
    let t = m.join(teacher());
    m.publish(t, EVERYTHING, false)?;
    let early = m.join(pupil(1));
    until_receiving(&mut m, early, t, Source::Camera)?;
    m.run_for(secs(3.0))?;
    let asked = m.client(t).keyframe_requests();

    let late = m.join(pupil(2));
    until_receiving(&mut m, late, t, Source::Camera)?;
    assert!(
        m.client(t).keyframe_requests() > asked,
        "the publisher was asked for a keyframe"
    );
    m.run_for(secs(1.0))?;
    let video = got(&m, late, t, Source::Camera);
    assert!(
        video
            .first()
            .and_then(|r| r.content)
            .is_some_and(|c| c.keyframe),
        "the late joiner's video starts with a keyframe"
    );
    assert!(video.len() > 60, "and goes on");
    assert_continuous(&video);
    Ok(())
}

#[test]
fn a_publish_restart_keeps_the_subscribers_track_flowing_from_the_next_keyframe()
-> Result<(), HarnessError> {
    let mut m = Meeting::new(MeetingConfig::default());
    let t = m.join(teacher());
    m.publish(t, SIMULCAST, false)?;
    let p = m.join(pupil(1));
    until_receiving(&mut m, p, t, Source::Camera)?;
    m.run_for(secs(1.0))?;
    let before = count(&m, p, t, Source::Camera);
    let offers = m
        .client(p)
        .frames()
        .iter()
        .filter(|f| matches!(f, ServerMessage::SubscribeOffer { .. }))
        .count();

    m.publish(t, SIMULCAST, true)?;
    m.run_for(secs(2.0))?;
    let video = got(&m, p, t, Source::Camera);
    assert!(
        video.len() > before + 100,
        "the video goes on after the restart"
    );
    let new = &video[before..];
    // The new connection's streams count their packets from 0 again.
    let restarted = new
        .iter()
        .position(|r| r.content.is_some_and(|c| c.index < 10))
        .expect("packets of the new connection arrive");
    assert!(
        new[restarted].content.is_some_and(|c| c.keyframe),
        "the new streams join at a keyframe"
    );
    assert_continuous(&video);
    assert_eq!(
        m.client(p)
            .frames()
            .iter()
            .filter(|f| matches!(f, ServerMessage::SubscribeOffer { .. }))
            .count(),
        offers,
        "the subscriber's track stays: no new offer"
    );
    Ok(())
}

/// Issue 13.1: a keyframe request lost to the 300 ms window used to leave a subscriber
/// without video; the SFU now asks again while a subscriber's selected layer waits. Here the
/// pupils join 70 ms apart and each browser takes 80 ms to get a frame to the node (or to
/// answer an offer): a subscriber still answering one offer gets a newcomer's camera only
/// in the next, after the keyframe everyone else started with has passed and within 300 ms
/// of the request that brought it. Without asking again, 2 of the 20 pairs stay frozen.
#[test]
fn several_pupils_joining_within_300_ms_all_see_everyone() -> Result<(), HarnessError> {
    let mut m = Meeting::new(MeetingConfig {
        signalling_delay: Duration::from_millis(80),
        // Four single-stream cameras that fit anyone's initial estimate: this is about
        // keyframes at joining, not bandwidth.
        video_payload: 300,
        ..MeetingConfig::default()
    });
    let t = m.join(teacher());
    m.publish(t, EVERYTHING, false)?;
    m.run_for(secs(1.0))?;
    let mut everyone = vec![t];
    for n in 1..=4 {
        let p = m.join(pupil(n));
        m.publish(p, EVERYTHING, false)?;
        everyone.push(p);
        m.run_for(Duration::from_millis(70))?;
    }
    m.run_for(secs(3.0))?;
    let video = |m: &Meeting| -> Vec<usize> {
        everyone
            .iter()
            .flat_map(|at| everyone.iter().map(move |from| (*at, *from)))
            .map(|(at, from)| {
                if at == from {
                    0
                } else {
                    count(m, at, from, Source::Camera)
                }
            })
            .collect()
    };
    let after_3_s = video(&m);
    m.run_for(secs(1.0))?;
    let after_4_s = video(&m);
    let n = everyone.len();
    for (i, (a, b)) in after_3_s.iter().zip(&after_4_s).enumerate() {
        let (at, from) = (everyone[i / n], everyone[i % n]);
        if at != from {
            assert!(
                *b > *a + 20,
                "{at:?} sees {from:?}: packets after 3 s and after 4 s {a} and {b}"
            );
        }
    }
    Ok(())
}

/// Packets `at` received from `from`'s `source` since the `n`th.
fn since(m: &Meeting, at: Who, from: Who, source: Source, n: usize) -> Vec<Received> {
    got(m, at, from, source).split_off(n)
}

/// Whether `at` was last told that `from`'s camera is paused.
fn paused(m: &Meeting, at: Who, from: Who) -> bool {
    let from = m.client(from).participant;
    m.client(at)
        .frames()
        .iter()
        .filter_map(|f| match f {
            ServerMessage::VideoPaused {
                participant,
                source: Source::Camera,
                paused,
            } if *participant == from => Some(*paused),
            _ => None,
        })
        .next_back()
        .unwrap_or(false)
}

#[test]
fn a_pupil_on_a_500_kbit_link_hears_everyone_sees_smaller_pictures_and_the_class_is_unaffected()
-> Result<(), HarnessError> {
    let mut m = Meeting::new(MeetingConfig::default());
    let t = m.join(teacher());
    m.publish(t, SIMULCAST, false)?;
    let p = m.join(pupil(1));
    m.publish(p, SIMULCAST, false)?;
    let q = m.join(pupil(2));
    m.publish(q, SIMULCAST, false)?;
    let g = m.join(pupil(3));
    m.publish(g, SIMULCAST, false)?;
    m.set_speaking(t, true);
    for from in [t, p, q] {
        until_receiving(&mut m, g, from, Source::Camera)?;
    }
    m.run_for(secs(3.0))?;
    let requests_before = m.client(t).keyframe_requests();

    // G's downlink: 500 kbit/s, as `tc tbf` with a 200 ms queue makes it.
    m.cap_downlink(g, Some((500_000, Duration::from_millis(200))))?;
    // The first seconds overshoot (the estimate starts at 1.5 Mbit/s and GCC needs loss or
    // queueing to learn otherwise); from then on the node sends what the link carries.
    m.run_for(secs(3.0))?;
    let mark = |m: &Meeting, at: Who, from: Who, s: Source| count(m, at, from, s);
    let audio_at_g: Vec<usize> = [t, p, q]
        .iter()
        .map(|f| mark(&m, g, *f, Source::Microphone))
        .collect();
    let video_at_g: Vec<usize> = [t, p, q]
        .iter()
        .map(|f| mark(&m, g, *f, Source::Camera))
        .collect();
    let teacher_at_p = mark(&m, p, t, Source::Camera);
    m.run_for(secs(10.0))?;
    eprintln!("G's downlink dropped {} datagrams", m.downlink_dropped(g));

    for (i, from) in [t, p, q].into_iter().enumerate() {
        // Audio first and always: 50 packets a second from everyone.
        let heard = count(&m, g, from, Source::Microphone) - audio_at_g[i];
        assert!(
            heard >= 475,
            "G heard {heard} of 500 audio packets of {from:?} in 10 s on the capped link"
        );
        // Video smaller than the full layer, or paused and G told so: not a frozen picture.
        let seen = since(&m, g, from, Source::Camera, video_at_g[i]);
        assert!(
            seen.iter().all(|r| r.content.is_some_and(|c| c.layer < 2)),
            "G gets no full layer of {from:?} on 500 kbit/s"
        );
        let recent = count(&m, g, from, Source::Camera);
        m.run_for(secs(0.5))?;
        assert!(
            paused(&m, g, from) || count(&m, g, from, Source::Camera) > recent,
            "G's picture of {from:?} neither flows nor is shown as paused"
        );
    }
    // The others are unaffected: P still sees the teacher sharp and fluent.
    let at_p = since(&m, p, t, Source::Camera, teacher_at_p);
    let frames = at_p
        .iter()
        .filter(|r| r.content.is_some_and(|c| c.frame_start))
        .count();
    assert!(frames >= 290, "P saw {frames} of 300 frames of the teacher");
    assert!(at_p.iter().all(|r| r.content.is_some_and(|c| c.layer == 2)));
    // No keyframe storm: the teacher's camera was asked for few keyframes while G's link
    // was capped (each request asks every layer).
    let requests = m.client(t).keyframe_requests() - requests_before;
    assert!(
        requests <= 3 * 10,
        "the teacher got {requests} keyframe requests in 15 s"
    );

    // The cap is lifted: G sees everyone again once the estimate has climbed back, and
    // keeps seeing them. (In about one run of fifteen one camera pauses once more for a
    // moment right after resuming, while the estimate is still climbing; the check is that
    // all three flow steadily within the 30 s.)
    m.cap_downlink(g, None)?;
    let lifted = m.elapsed();
    loop {
        m.run_until(secs(30.0), "G's videos resumed", |m| {
            [t, p, q].iter().all(|f| !paused(m, g, *f))
        })?;
        let before: Vec<usize> = [t, p, q]
            .iter()
            .map(|f| count(&m, g, *f, Source::Camera))
            .collect();
        m.run_for(secs(1.0))?;
        let steady = [t, p, q]
            .iter()
            .zip(&before)
            .all(|(f, n)| !paused(&m, g, *f) && count(&m, g, *f, Source::Camera) > n + 20);
        if steady {
            break;
        }
        assert!(
            m.elapsed() - lifted < secs(30.0),
            "G does not see everyone steadily within 30 s of the link recovering"
        );
    }
    eprintln!(
        "steady again {:?} after the cap was lifted",
        m.elapsed() - lifted
    );
    Ok(())
}

/// The last connection quality `at` was told of `about` (good until told otherwise).
fn quality(m: &Meeting, at: Who, about: Who) -> (Quality, bool) {
    let about = m.client(about).participant;
    m.client(at)
        .frames()
        .iter()
        .filter_map(|f| match f {
            ServerMessage::ConnectionQuality {
                participant,
                quality,
                video_paused,
            } if *participant == about => Some((*quality, *video_paused)),
            _ => None,
        })
        .next_back()
        .unwrap_or((Quality::Good, false))
}

/// How many connection-quality frames about `about` reached `at`.
fn quality_frames(m: &Meeting, at: Who, about: Who) -> usize {
    let about = m.client(about).participant;
    m.client(at)
        .frames()
        .iter()
        .filter(|f| matches!(f, ServerMessage::ConnectionQuality { participant, .. } if *participant == about))
        .count()
}

#[test]
fn the_teacher_sees_the_pupil_on_a_slow_link_marked_poor_and_everyone_else_good()
-> Result<(), HarnessError> {
    let mut m = Meeting::new(MeetingConfig::default());
    let t = m.join(teacher());
    m.publish(t, SIMULCAST, false)?;
    let p = m.join(pupil(1));
    m.publish(p, SIMULCAST, false)?;
    let q = m.join(pupil(2));
    m.publish(q, SIMULCAST, false)?;
    let g = m.join(pupil(3));
    m.publish(g, SIMULCAST, false)?;
    for from in [t, p, q] {
        until_receiving(&mut m, g, from, Source::Camera)?;
    }
    m.run_for(secs(5.0))?;
    for who in [t, p, q, g] {
        assert_eq!(
            quality(&m, t, who),
            (Quality::Good, false),
            "{who:?} on a clean link"
        );
    }

    m.cap_downlink(g, Some((500_000, Duration::from_millis(200))))?;
    m.run_until(secs(15.0), "the teacher sees G's mark as poor", |m| {
        quality(m, t, g).0 == Quality::Poor
    })?;
    m.run_for(secs(3.0))?;
    assert_eq!(quality(&m, t, g).0, Quality::Poor, "the mark holds");
    assert_eq!(
        quality(&m, g, g),
        quality(&m, t, g),
        "G sees their own mark"
    );
    for who in [t, p, q] {
        assert_eq!(
            quality(&m, t, who),
            (Quality::Good, false),
            "{who:?} is unaffected"
        );
    }
    assert_eq!(
        quality_frames(&m, p, g),
        0,
        "pupils are not told of each other's connections"
    );
    // A second teacher who comes in now learns it at once.
    let co = m.join(Participant::Moderator(ModeratorId::from_uuid(
        uuid::Uuid::from_u128(2),
    )));
    m.run_for(secs(0.1))?;
    assert_eq!(quality(&m, co, g).0, Quality::Poor);

    // The cap is lifted: the mark comes back to good (after the link has held a while).
    m.cap_downlink(g, None)?;
    m.run_until(secs(40.0), "G's mark back to good", |m| {
        quality(m, t, g) == (Quality::Good, false)
    })?;
    Ok(())
}

#[test]
fn a_pupil_whose_link_keeps_losing_pictures_gets_a_lower_layer_not_more_keyframes_from_the_teacher()
-> Result<(), HarnessError> {
    let mut m = Meeting::new(MeetingConfig::default());
    let t = m.join(teacher());
    m.publish(t, SIMULCAST, false)?;
    let p = m.join(pupil(1));
    let q = m.join(pupil(2));
    until_receiving(&mut m, p, t, Source::Camera)?;
    until_receiving(&mut m, q, t, Source::Camera)?;
    m.run_for(secs(1.0))?;
    let before = m.client(t).keyframe_requests();
    let q_before = count(&m, q, t, Source::Camera);

    // P's browser cannot decode what arrives (its link loses packets) and asks for a
    // keyframe five times a second, for six seconds.
    let teacher_id = m.client(t).participant;
    for _ in 0..30 {
        m.send(
            p,
            ClientMessage::RequestKeyframe {
                participant: teacher_id,
            },
        );
        m.run_for(Duration::from_millis(200))?;
    }
    // Passing every request on (one per 300 ms) would be 20 requests of three layers each.
    let requests = m.client(t).keyframe_requests() - before;
    assert!(
        requests <= 3 * 6,
        "the teacher was asked for {requests} keyframes (per layer) in 6 s"
    );
    let last = got(&m, p, t, Source::Camera)
        .last()
        .and_then(|r| r.content)
        .map(|c| c.layer);
    assert!(
        last.is_some_and(|l| l < 2),
        "P gets a layer below the one it lost ({last:?})"
    );
    // Q, on a good link, keeps the full picture without a break.
    let at_q = since(&m, q, t, Source::Camera, q_before);
    assert!(at_q.iter().all(|r| r.content.is_some_and(|c| c.layer == 2)));
    assert_continuous(&got(&m, q, t, Source::Camera));
    Ok(())
}
