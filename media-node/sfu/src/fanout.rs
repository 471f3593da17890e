//! Media between publishers and subscribers: a published packet to everyone in the room who
//! should get it (what each gets is the forwarder's decision), the batch written into the
//! subscribers' connections on several cores, and keyframe requests back to publishers.

use crate::allocator::{self, ALLOCATION_INTERVAL, Grant, Want};
use crate::forwarder::{self, KeyframeNeed, Published, Rewrite};
use crate::peer::{self, Peer, Write, Written};
use crate::protocol::{ServerMessage, Source};
use crate::quality::{Counts, Report, Sample};
use crate::rewrite::vp8_is_keyframe;
use crate::sfu::{ConnId, PeerId, Sfu};
use aula_domain::Participant;
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
/// A subscriber that asks for keyframes of one video this often (within
/// [`ASKING_WINDOW`]) loses them on its own link: it gets a lower layer for
/// [`LOWERED_FOR`], and only its first request per window reaches the publisher, whose
/// keyframes every other subscriber would pay for.
const ASKS_BEFORE_LOWERING: u32 = 3;
const ASKING_WINDOW: Duration = Duration::from_secs(2);
const LOWERED_FOR: Duration = Duration::from_secs(10);
/// The most layers a source has that forwarding tells apart (browsers send up to three).
const MAX_LAYERS: usize = 4;

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
        let size = packet.payload.len() + RTP_HEADER_BYTES;
        let media = !packet.payload.is_empty();
        let Some(incoming) = m.saw(ssrc, now, size, media) else {
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
        // The layout's layer, and what to forward for each index a subscriber's downlink may
        // cap it at: computed once per packet, not per subscriber.
        let desired = forwarder::desired_layer(layers.len(), sharpest, room.members.len());
        let mut wanted_at = [ssrc; MAX_LAYERS];
        for (i, w) in wanted_at.iter_mut().enumerate().take(layers.len()) {
            *w = forwarder::wanted_layer_at(layers, ssrc, i, |l| m.flowing(l, now));
        }
        // Places among the layers: a subscriber's first picture may come from a layer no
        // larger than the one it is to get.
        let rank_of = |l: u32| layers.iter().position(|&x| x == l).unwrap_or(0);
        let mut wanted_rank_at = [0; MAX_LAYERS];
        for (r, w) in wanted_rank_at.iter_mut().zip(&wanted_at) {
            *r = rank_of(*w);
        }
        let mut published = Published {
            ssrc,
            seq: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            audio,
            keyframe: audio || vp8_is_keyframe(&packet.payload),
            wanted_layer: ssrc,
            rank: rank_of(ssrc),
            wanted_rank: 0,
            level,
        };
        // The publisher's extension ids mean nothing to a subscriber: dropped once here, not
        // per copy; the level goes back in under each subscriber's own id.
        packet.header.extension = false;
        packet.header.extensions.clear();
        packet.header.extensions_padding = 0;
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
            let index = match out.grant {
                Grant::Paused => {
                    out.forwarder.pause();
                    continue;
                }
                Grant::Unlimited => desired,
                Grant::Layer(i) => i.min(desired),
            };
            let index = match out.lowered {
                Some((until, at_most)) if now < until => index.min(at_most),
                _ => index,
            };
            out.layer_index = index;
            if !audio {
                published.wanted_layer = wanted_at[index.min(MAX_LAYERS - 1)];
                published.wanted_rank = wanted_rank_at[index.min(MAX_LAYERS - 1)];
            }
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
        let mut wanted = Vec::new();
        for ssrc in peer::keyframe_requests(packets) {
            if let Some(key) = m.out_by_ssrc.get(&ssrc) {
                wanted.push(*key);
            }
        }
        for (participant, source) in wanted {
            self.subscriber_asks(now, conn, participant, source);
        }
    }

    /// A subscriber asks for a keyframe of a video (RTCP PLI/FIR or the signalling message):
    /// passed on to the publisher, unless the subscriber keeps asking. Then its own link
    /// loses the pictures, and it gets a lower layer rather than more keyframes.
    pub(crate) fn subscriber_asks(
        &mut self,
        now: Instant,
        conn: ConnId,
        participant: Participant,
        source: Source,
    ) {
        let Some(m) = self.members.get_mut(&conn) else {
            return;
        };
        let room = m.room;
        let Some(out) = m.outgoing.get_mut(&(participant, source)) else {
            return;
        };
        let fresh = out
            .asked
            .0
            .is_none_or(|t| now.saturating_duration_since(t) >= ASKING_WINDOW);
        if fresh {
            out.asked = (Some(now), 1);
        } else {
            out.asked.1 += 1;
            if out.asked.1 == ASKS_BEFORE_LOWERING {
                let below = out.layer_index.saturating_sub(1);
                out.lowered = Some((now + LOWERED_FOR, below));
            }
            return;
        }
        if let Some(p) = self.by_participant.get(&(room, participant)).copied() {
            self.request_keyframe(now, p, source, Ask::Once);
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

/// An RTP header without extensions or CSRCs: what a forwarded packet adds to its payload.
const RTP_HEADER_BYTES: usize = 12;

impl Sfu {
    /// Every [`ALLOCATION_INTERVAL`]: the streams' rates measured, then each subscriber's
    /// downlink estimate allocated (see `allocator.rs`); a video that is paused or resumed
    /// is announced to the subscriber.
    pub(crate) fn allocate_bandwidth(&mut self, now: Instant) {
        let elapsed = self
            .last_allocation
            .map_or(ALLOCATION_INTERVAL, |t| now.saturating_duration_since(t));
        self.last_allocation = Some(now);
        for m in self.members.values_mut() {
            m.measure(elapsed);
            m.downlink = None;
        }
        let last_n = self.config.last_n;
        let conns: Vec<ConnId> = self.members.keys().copied().collect();
        for conn in conns {
            let Some(s) = self.members.get(&conn) else {
                continue;
            };
            let Some(feedback) = s.subscription.peer().and_then(|p| self.peers.estimate(p)) else {
                continue;
            };
            let estimate = feedback.bps;
            let Some(room) = self.rooms.get(&s.room).filter(|_| s.in_meeting) else {
                continue;
            };
            let active = room.speakers.active();
            let order: Vec<Participant> = room.speakers.last_n(last_n).collect();
            let mut audio = 0;
            let mut wants = Vec::new();
            for &(participant, source) in s.outgoing.keys() {
                let Some(publisher) = self
                    .by_participant
                    .get(&(s.room, participant))
                    .and_then(|c| self.members.get(c))
                else {
                    continue;
                };
                if source.is_audio() {
                    if !publisher.muted {
                        audio += publisher.rate(source);
                    }
                    continue;
                }
                if !forwarder::forwarded(source, order.contains(&participant)) {
                    continue;
                }
                let layers = publisher.layers(source).len();
                let speaking = active == Some(participant);
                let rank = match (source, speaking) {
                    (Source::Screen, _) => 0,
                    (_, true) => 1,
                    _ => 2 + order.iter().position(|p| *p == participant).unwrap_or(0),
                };
                let sharpest = speaking || source == Source::Screen;
                wants.push(Want {
                    key: (participant, source),
                    rank,
                    desired: forwarder::desired_layer(layers, sharpest, room.members.len()),
                    rates: publisher.layer_rates(source, now),
                });
            }
            let Some(s) = self.members.get_mut(&conn) else {
                continue;
            };
            s.downlink = Some((estimate, audio + allocator::wanted(&wants)));
            let changed = s.allocator.allocate(now, estimate, audio, &wants);
            tracing::debug!(
                conn,
                participant = %s.participant,
                estimate,
                reported = feedback.reported,
                lost = feedback.lost,
                audio,
                wants = ?wants.iter().map(|w| (w.key.0.to_string(), w.rank, w.desired, w.rates.clone())).collect::<Vec<_>>(),
                grants = ?wants.iter().map(|w| s.allocator.grant(&w.key)).collect::<Vec<_>>(),
                "allocated"
            );
            let mut announce = Vec::new();
            for (key, grant) in changed {
                let Some(out) = s.outgoing.get_mut(&key) else {
                    continue;
                };
                let was_paused = out.grant == Grant::Paused;
                out.grant = grant;
                if was_paused != (grant == Grant::Paused) {
                    announce.push((key, grant == Grant::Paused));
                }
            }
            for ((participant, source), paused) in announce {
                self.signal(
                    conn,
                    ServerMessage::VideoPaused {
                        participant,
                        source,
                        paused,
                    },
                );
            }
        }
        self.assess_quality(now);
    }

    /// Every participant's connection quality (see `quality.rs`), from what this
    /// allocation saw; a change goes to the participant and to the room's moderators.
    fn assess_quality(&mut self, now: Instant) {
        let mut changed = Vec::new();
        for (&conn, m) in self.members.iter_mut() {
            if !m.in_meeting {
                continue;
            }
            let (up_received, up_missed) = m
                .loss
                .values()
                .fold((0, 0), |(r, l), c| (r + c.received, l + c.missed));
            let feedback = m
                .subscription
                .peer()
                .and_then(|p| self.peers.estimate(p))
                .unwrap_or_default();
            let sample = Sample {
                counts: Counts {
                    up_received,
                    up_missed,
                    down_reported: feedback.reported,
                    down_lost: feedback.lost,
                },
                downlink: m.downlink,
                video_paused: m.outgoing.values().any(|o| o.grant == Grant::Paused),
            };
            if let Some(report) = m.quality.sample(now, sample) {
                tracing::debug!(participant = %m.participant, ?report, ?sample, "connection quality");
                changed.push((conn, m.room, m.participant, report));
            }
        }
        for (conn, room, participant, report) in changed {
            let frame = quality_frame(participant, report);
            for other in self.room_members(room) {
                let told = other == conn
                    || self
                        .members
                        .get(&other)
                        .is_some_and(|o| o.in_meeting && o.is_moderator());
                if told {
                    self.signal(other, frame.clone());
                }
            }
        }
    }
}

/// The frame that tells someone how well `participant`'s connection carries the meeting.
pub(crate) fn quality_frame(participant: Participant, r: Report) -> ServerMessage {
    ServerMessage::ConnectionQuality {
        participant,
        quality: r.quality,
        video_paused: r.video_paused,
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
