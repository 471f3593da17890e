//! The real SFU: one publisher → `aula_sfu::Sfu` → K subscribers, all `rtc` clients in
//! memory (the SFU crate's test harness, `aula_sfu::testing`). Unlike the library runs, this
//! includes everything the node's SFU core does per packet: routing by address, the
//! forwarding decision (last-N, layer choice, splicing), the header rewrite, and writing
//! into every subscriber's connection (SRTP, interceptors). Only the calls into the `Sfu`
//! are timed.

use crate::harness::{Figures, Media, Scenario, thread_cpu};
use anyhow::{Result, bail};
use aula_domain::{GuestId, ModeratorId, Participant};
use aula_sfu::testing::{Camera, Meeting, MeetingConfig, Meter, Publish, Who};
use std::time::Duration;

pub const NAME: &str = "aula-sfu";

fn participant(n: usize) -> Participant {
    let id = uuid::Uuid::from_u128(1_000 + n as u128);
    if n == 0 {
        Participant::Moderator(ModeratorId::from_uuid(id))
    } else {
        Participant::Guest(GuestId::from_uuid(id))
    }
}

pub fn run(s: &Scenario) -> Result<Figures> {
    let mut m = Meeting::new(MeetingConfig {
        // Everyone's video is forwarded (K ≤ 29 subscribers, the node's default is 20: the
        // publisher joined first and stays among them).
        last_n: 20,
        // Datagrams and frames arrive at the instant they are sent, as in the library runs.
        network_delay: Duration::ZERO,
        signalling_delay: Duration::ZERO,
        packets_per_frame: s.packets_per_frame,
        video_payload: s.payload,
        audio_payload: s.payload,
        record: false,
        // The links are in memory and carry anything: each subscriber's downlink estimate
        // starts above the stream (default: 1.6 Mbit/s of video, more than the node's usual
        // start of 1.5 Mbit/s, which would pause the camera until the estimate had grown)
        // and then follows the feedback as in the node.
        initial_estimate_bps: 20_000_000,
    });
    let publisher = m.join(participant(0));
    m.publish(
        publisher,
        Publish {
            microphone: s.media == Media::Audio,
            camera: if s.media == Media::Video {
                Camera::Single
            } else {
                Camera::Off
            },
        },
        false,
    )?;
    let subscribers: Vec<Who> = (1..=s.subscribers)
        .map(|n| m.join(participant(n)))
        .collect();
    // ICE, DTLS and SRTP setup, and the first packets through to everyone.
    m.run_until(
        Duration::from_secs(30),
        "everyone receives the publisher",
        |m| {
            subscribers.iter().all(|w| {
                let c = m.client(*w);
                c.connected() && c.intact() > 0
            }) && m.client(publisher).connected()
        },
    )?;

    // Only the streaming is measured.
    m.measure(Meter::new(thread_cpu));
    let stats = m.stats();
    let sent = m.client(publisher).sent();
    let intact: u64 = subscribers.iter().map(|w| m.client(*w).intact()).sum();
    let target = sent + s.packets as u64;
    m.run_until(
        Duration::from_secs(3_600),
        "the publisher sends its packets",
        |m| m.client(publisher).sent() >= target,
    )?;
    let Some(meter) = m.meter() else {
        bail!("the meter is gone");
    };
    let after = m.stats();
    let kind = |st: &aula_sfu::Stats| match s.media {
        Media::Video => st.video.clone(),
        Media::Audio => st.audio.clone(),
    };
    let (before, now) = (kind(&stats), kind(&after));
    let streamed = m.client(publisher).sent() - sent;
    let blocks = u32::try_from(meter.blocks).unwrap_or(u32::MAX);
    let cpu = meter.cpu.saturating_sub(s.overhead.cpu * blocks);
    let forwarding_blocks = u32::try_from(meter.forwarding_blocks).unwrap_or(u32::MAX);
    let forwarding = meter
        .forwarding
        .saturating_sub(s.overhead.cpu * forwarding_blocks);
    let wire = m.wire();
    Ok(Figures {
        sfu_received: now.received_packets - before.received_packets,
        forwarded: now.forwarded_packets - before.forwarded_packets,
        sfu_datagrams_in: wire.sfu_in,
        sfu_datagrams_out: wire.sfu_out,
        delivered: subscribers
            .iter()
            .map(|w| m.client(*w).intact())
            .sum::<u64>()
            - intact,
        expected: streamed * s.subscribers as u64,
        cpu,
        wall: meter.wall.saturating_sub(s.overhead.wall * blocks),
        cpu_forwarding: forwarding,
        blocks: meter.blocks,
    })
}
