//! The synthetic payload every client sends: a VP8- or Opus-shaped packet whose bytes say who
//! sent it, its sequence and when, so a receiver can tell a damaged packet, attribute it and
//! measure forwarding latency.

use crate::ClientStats;
use aula_sfu::protocol::Source;
use bytes::Bytes;
use std::sync::OnceLock;
use std::time::Instant;

const MAGIC: &[u8; 4] = b"AULA";
/// VP8 descriptor, frame header byte, magic, sender, sequence, send time.
pub(crate) const HEADER_LEN: usize = 2 + 4 + 4 + 4 + 8;
/// Video payload bytes per packet (a frame is cut into packets of at most this).
pub(crate) const MTU_PAYLOAD: usize = 1100;

/// The instant all clients of this process measure send times from.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Counts one received payload from `participant`'s `source` and checks it; false once the
/// stats are unusable (a poisoned lock).
pub(crate) fn record_received(
    stats: &ClientStats,
    participant: &str,
    source: Source,
    payload: &[u8],
) -> bool {
    let now = epoch().elapsed();
    let check = check_payload(payload);
    let Ok(mut all) = stats.received.lock() else {
        return false;
    };
    // Look up before inserting: no key allocation per packet.
    let key = (participant.to_owned(), source);
    let r = match all.get_mut(&key) {
        Some(r) => r,
        None => all.entry(key).or_default(),
    };
    r.packets += 1;
    r.bytes += payload.len() as u64;
    match check {
        Some((sender, sent_at)) => {
            if !r.senders.contains(&sender) {
                r.senders.push(sender);
            }
            // Keep a bounded sample: every packet at first, then every tenth.
            if r.latency_us.len() < 10_000 || r.packets % 10 == 0 {
                let us = now.as_micros().saturating_sub(u128::from(sent_at)) as u64;
                r.latency_us.push(us);
            }
        }
        None => r.damaged += 1,
    }
    true
}

/// Sender index and send time (µs since the epoch) of an intact synthetic payload.
pub(crate) fn check_payload(p: &[u8]) -> Option<(u32, u64)> {
    if p.len() < HEADER_LEN || &p[2..6] != MAGIC {
        return None;
    }
    let sender = u32::from_be_bytes(p[6..10].try_into().ok()?);
    let seq = u32::from_be_bytes(p[10..14].try_into().ok()?);
    let sent = u64::from_be_bytes(p[14..22].try_into().ok()?);
    let intact = p[HEADER_LEN..]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == filler(sender, seq, i));
    intact.then_some((sender, sent))
}

fn filler(sender: u32, seq: u32, i: usize) -> u8 {
    (sender.wrapping_mul(31) ^ seq.wrapping_mul(7) ^ i as u32) as u8
}

pub(crate) fn payload(
    descriptor: u8,
    frame_header: u8,
    sender: u32,
    seq: u32,
    len: usize,
) -> Bytes {
    Bytes::from(payload_vec(descriptor, frame_header, sender, seq, len))
}

/// A synthetic payload: `descriptor` and `frame_header` are its first two bytes (VP8
/// payload descriptor and frame header for video, zero for audio).
pub(crate) fn payload_vec(
    descriptor: u8,
    frame_header: u8,
    sender: u32,
    seq: u32,
    len: usize,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(len.max(HEADER_LEN));
    p.push(descriptor);
    p.push(frame_header);
    p.extend_from_slice(MAGIC);
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    let sent = epoch().elapsed().as_micros() as u64;
    p.extend_from_slice(&sent.to_be_bytes());
    for i in 0..len.saturating_sub(HEADER_LEN) {
        p.push(filler(sender, seq, i));
    }
    p
}

/// Latency percentiles (µs) of a sample.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The packets of one VP8-shaped frame of `frame_bytes`: per packet its payload length, VP8
/// descriptor (S=1 on the first) and frame-header byte (P bit unless a keyframe).
pub(crate) fn frame_packets(
    frame_bytes: usize,
    key: bool,
) -> impl Iterator<Item = (usize, u8, u8)> {
    let packets = frame_bytes.div_ceil(MTU_PAYLOAD);
    (0..packets).map(move |i| {
        let len = if i + 1 == packets {
            frame_bytes - MTU_PAYLOAD * (packets - 1)
        } else {
            MTU_PAYLOAD
        }
        .max(HEADER_LEN);
        let descriptor = if i == 0 { 0x10 } else { 0x00 };
        (len, descriptor, if key { 0x00 } else { 0x01 })
    })
}
