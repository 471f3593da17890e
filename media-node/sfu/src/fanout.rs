//! Media between publishers and subscribers: a published packet to everyone in the room who
//! should get it (what each gets is the forwarder's decision), the batch written into the
//! subscribers' connections on several cores, and keyframe requests back to publishers.

use crate::forwarder::{self, KeyframeNeed, Published, Rewrite};
use crate::peer::{self, Peer, Write, Written};
use crate::protocol::Source;
use crate::rewrite::vp8_is_keyframe;
use crate::sfu::{ConnId, PeerId, Sfu};
use rayon::prelude::*;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Keyframe requests to one publisher's source are sent at most this often.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);
/// A subscriber still waiting for the keyframe of its selected layer asks again this often:
/// slower than a first request, because each keyframe costs the publisher's encoder and
/// uplink (and a browser short of CPU answers by dropping layers).
const KEYFRAME_REASK_INTERVAL: Duration = Duration::from_secs(1);

/// How soon a keyframe request may follow the last one to the same source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// A subscriber whose media just started: a browser asks for nothing before it has
    /// received anything, so this cannot wait for the next window.
    NowOrNever,
    /// A new need (layer switch, PLI/FIR): at most every [`KEYFRAME_REQUEST_INTERVAL`].
    Once,
    /// Still waiting for the keyframe asked for before: every [`KEYFRAME_REASK_INTERVAL`].
    Again,
}
/// A packet fanned out to at least this many subscribers' connections is encrypted on all
/// cores; below it, waking other threads costs more than it saves.
const PARALLEL_FANOUT: usize = 4;

impl Sfu {
    /// Writes what forward() queued into the subscribers' connections. SRTP and the
    /// interceptors cost most of a forwarded packet and every connection is independent,
    /// so a wide fan-out runs on all cores: the connections leave the map for the moment,
    /// each is written by one thread, and they come back in the order they left.
    pub(crate) fn deliver(&mut self, now: Instant) {
        let fanout = self.peers.take_fanout();
        if fanout.is_empty() {
            return;
        }
        let mut batches: Vec<(PeerId, Box<Peer>, Vec<Write>)> = Vec::new();
        let mut index: HashMap<PeerId, usize> = HashMap::new();
        for w in fanout {
            if let Some(&i) = index.get(&w.peer) {
                batches[i].2.push(w);
            } else if let Some(p) = self.peers.take(w.peer) {
                index.insert(w.peer, batches.len());
                batches.push((w.peer, p, vec![w]));
            }
        }
        let write = |(_, peer, writes): &mut (PeerId, Box<Peer>, Vec<Write>)| {
            peer.write(now, std::mem::take(writes))
        };
        let results: Vec<Written> = match self.peers.pool() {
            Some(pool) if batches.len() >= PARALLEL_FANOUT => {
                pool.install(|| batches.par_iter_mut().map(write).collect())
            }
            _ => batches.iter_mut().map(write).collect(),
        };
        for ((id, peer, _), written) in batches.into_iter().zip(results) {
            for (i, (packets, bytes)) in written.forwarded.iter().enumerate() {
                let st = if i == 0 {
                    &mut self.stats.audio
                } else {
                    &mut self.stats.video
                };
                st.forwarded_packets += packets;
                st.forwarded_bytes += bytes;
            }
            self.peers.put(id, peer);
            self.absorb(id, written);
        }
    }

    /// RTP from a publisher, to everyone in the room who should get it.
    ///
    /// Allocations per packet that remain here: none for the packet itself (rtc parsed it,
    /// and its payload is shared `Bytes`); per subscriber, a slot in the fan-out Vec
    /// (amortised: it grows by doubling within a batch) and, for audio whose subscriber
    /// negotiated the level extension, the one-entry extension Vec of its header. The
    /// member list, the layers, the incoming stream's description and the level's byte are
    /// borrowed or static. `deliver` then allocates per batch (its grouping by connection),
    /// and writing costs what rtc's SRTP and interceptors allocate.
    pub(crate) fn forward(&mut self, now: Instant, from: ConnId, mut packet: rtc::rtp::Packet) {
        // Rooms, members, peers and stats are separate fields: the publisher and room are
        // read, then each subscriber's forwarder changed, without copying any of them.
        let Some(m) = self.members.get_mut(&from) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let Some(incoming) = m.saw(ssrc, now) else {
            return;
        };
        let (source, audio_level_id) = (incoming.source, incoming.audio_level_id);
        let loss = m.loss.entry(ssrc).or_default();
        let lost_before = loss.lost;
        loss.packet(packet.header.sequence_number);
        let newly_lost = loss.lost.saturating_sub(lost_before);
        let audio = source.is_audio();
        let kind_stats = if audio {
            &mut self.stats.audio
        } else {
            &mut self.stats.video
        };
        kind_stats.received_packets += 1;
        kind_stats.lost_packets += newly_lost;
        let (room_id, publisher) = (m.room, m.participant);
        if audio && m.muted {
            return;
        }
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let mut level = None;
        if audio
            && let Some(id) = audio_level_id
            && let Some((l, voice)) = peer::audio_level(&packet, id)
        {
            level = Some((l, voice));
            room.speakers.level(publisher, l, voice);
        }
        let last_n = self.config.last_n;
        if !forwarder::forwarded(source, room.speakers.is_in_last_n(publisher, last_n)) {
            return;
        }
        let sharpest = room.speakers.active() == Some(publisher) || source == Source::Screen;
        let layers = if audio { &[][..] } else { m.layers(source) };
        let published = Published {
            ssrc,
            seq: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            audio,
            keyframe: audio || vp8_is_keyframe(&packet.payload),
            wanted_layer: forwarder::wanted_layer(
                layers,
                ssrc,
                sharpest,
                room.members.len(),
                |l| m.flowing(l, now),
            ),
            level,
        };
        // The publisher's extension ids mean nothing to a subscriber: dropped once here, not
        // per copy; the level goes back in under each subscriber's own id.
        packet.header.extension = false;
        packet.header.extensions.clear();
        let mut keyframe_need: Option<KeyframeNeed> = None;
        let key = (publisher, source);
        for &conn in &room.members {
            if conn == from {
                continue;
            }
            let Some(s) = self.members.get_mut(&conn) else {
                continue;
            };
            if !s.in_meeting {
                continue;
            }
            let Some(sub) = s.subscription.peer() else {
                continue;
            };
            if !self.peers.connected(sub) {
                continue;
            }
            let Some(out) = s.outgoing.get_mut(&key) else {
                continue;
            };
            let before = out.forwarder.current_layer();
            let decision = out.forwarder.packet(&published);
            if !audio && tracing::enabled!(tracing::Level::DEBUG) {
                // Where a subscriber's first picture of someone waits (a reconnect's seconds).
                if decision.keyframe == Some(KeyframeNeed::Switched) {
                    tracing::debug!(subscriber = %s.participant, %publisher, ?source, layer = ssrc, "waits for a keyframe of a newly selected layer");
                }
                if out.forwarder.current_layer() != before {
                    tracing::debug!(subscriber = %s.participant, %publisher, ?source, layer = ssrc, "forwards from a keyframe of the layer");
                }
            }
            keyframe_need = keyframe_need.max(decision.keyframe);
            let Some(rewrite) = decision.forward else {
                continue;
            };
            self.peers.queue(
                now,
                Write {
                    peer: sub,
                    sender: out.sender,
                    packet: rewritten(&packet, rewrite),
                    audio,
                },
            );
        }
        match keyframe_need {
            Some(KeyframeNeed::Switched) => self.request_keyframe(now, from, source, Ask::Once),
            Some(KeyframeNeed::StillWaiting) => {
                self.request_keyframe(now, from, source, Ask::Again)
            }
            None => {}
        }
    }

    /// Keyframe requests from a subscriber, to the publishers of what they asked about.
    pub(crate) fn feedback(
        &mut self,
        now: Instant,
        conn: ConnId,
        packets: &[Box<dyn rtc::rtcp::Packet>],
    ) {
        let Some(m) = self.members.get(&conn) else {
            return;
        };
        let room = m.room;
        let mut wanted = Vec::new();
        for ssrc in peer::keyframe_requests(packets) {
            if let Some(key) = m.out_by_ssrc.get(&ssrc) {
                wanted.push(*key);
            }
        }
        for (participant, source) in wanted {
            if let Some(p) = self.by_participant.get(&(room, participant)).copied() {
                self.request_keyframe(now, p, source, Ask::Once);
            }
        }
    }

    /// Asks a publisher for a keyframe of a source (all its layers), unless the last request
    /// to that source was sooner than `urgency` allows.
    pub(crate) fn request_keyframe(
        &mut self,
        now: Instant,
        publisher: ConnId,
        source: Source,
        urgency: Ask,
    ) {
        let Some(m) = self.members.get_mut(&publisher) else {
            return;
        };
        let window = match urgency {
            Ask::NowOrNever => Duration::ZERO,
            Ask::Once => KEYFRAME_REQUEST_INTERVAL,
            Ask::Again => KEYFRAME_REASK_INTERVAL,
        };
        if m.last_keyframe_request
            .get(&source)
            .is_some_and(|t| now.saturating_duration_since(*t) < window)
        {
            tracing::trace!(publisher = %m.participant, ?source, ?urgency, "keyframe request held back: one went out lately");
            return;
        }
        let Some(peer) = m.publish else {
            return;
        };
        let targets: Vec<(u32, RTCRtpReceiverId)> = m.streams(source).collect();
        if targets.is_empty() {
            return;
        }
        m.last_keyframe_request.insert(source, now);
        tracing::debug!(publisher = %m.participant, ?source, ?urgency, "keyframe requested");
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        self.stats.keyframe_requests += p.request_keyframes(now, &targets);
        self.flush(peer);
    }
}

/// A subscriber's copy of a packet (whose extensions were cleared): the payload is shared,
/// the header rewritten.
fn rewritten(packet: &rtc::rtp::Packet, r: Rewrite) -> rtc::rtp::Packet {
    let mut p = packet.clone();
    p.header.ssrc = r.ssrc;
    p.header.payload_type = r.payload_type;
    p.header.sequence_number = r.seq;
    p.header.timestamp = r.timestamp;
    if let Some((id, byte)) = r.audio_level {
        let _ = p.header.set_extension(id, byte);
    }
    p
}
