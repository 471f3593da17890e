//! One participant and its two negotiations: *publish* (the client offers its tracks, the
//! node answers) and *subscribe* (the node offers the others' tracks, the client answers).
//! The subscribe side is a [`Subscription`] state: an offer is either out or answered, and
//! "offer again" can only be noted while one is out. Every SDP step goes through the
//! [`Peer`](crate::peer::Peer) methods, the only callers of `rtc`.

use crate::allocator::{Allocator, Grant};
use crate::forwarder::{Forwarder, rid_rank};
use crate::protocol::{
    Connection, ErrorCode, ForwardedTrack, PeerInfo, PublishedTrack, ServerMessage, Source,
};
use crate::quality::QualityMeter;
use crate::rewrite::LossCounter;
use crate::sfu::{ConnId, PeerId, Sfu, SfuError};
use aula_domain::services::GrantRole;
use aula_domain::{Participant, RoomId, RoomSettings};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The subscriber side of a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subscription {
    /// Nobody publishes anything yet: no connection.
    None,
    /// The connection, its last offer answered.
    Answered(PeerId),
    /// An offer is out. `again`: what the others publish changed since it was made, so
    /// another offer follows the answer.
    Offered { peer: PeerId, again: bool },
}

impl Subscription {
    pub(crate) fn peer(self) -> Option<PeerId> {
        match self {
            Subscription::None => None,
            Subscription::Answered(peer) | Subscription::Offered { peer, .. } => Some(peer),
        }
    }
}

/// A simulcast layer that sent nothing for this long is treated as off (see
/// `forwarder::wanted_layer`).
const LAYER_IDLE: Duration = Duration::from_secs(1);

/// One layer (simulcast) or the only stream of a published source.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) source: Source,
    /// Its place among the source's layers, from its rid.
    rank: u8,
    pub(crate) receiver: RTCRtpReceiverId,
    pub(crate) audio_level_id: Option<u8>,
    /// When a packet of it last arrived: a layer is chosen only while it flows.
    last_seen: Option<Instant>,
    /// Bytes arrived since the last [`Member::measure`], and the rate measured then (bits
    /// per second, smoothed): what the layer costs a subscriber's downlink.
    bytes: u64,
    pub(crate) rate: u64,
}

/// One of the others' sources, forwarded to this participant.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) sender: RTCRtpSenderId,
    pub(crate) forwarder: Forwarder,
    /// What the subscriber's downlink carries of it (the allocator's grant; video only).
    pub(crate) grant: Grant,
    /// Keyframe requests the subscriber sent for it: when the current count began, how many.
    pub(crate) asked: (Option<Instant>, u32),
    /// Until then the subscriber gets at most a layer below what it got when it kept asking
    /// for keyframes (its own link loses them); the layer's index.
    pub(crate) lowered: Option<(Instant, usize)>,
    /// The index of the layer last wanted for it (0 the smallest).
    pub(crate) layer_index: usize,
}

impl Outgoing {
    pub(crate) fn new(sender: RTCRtpSenderId, ssrc: u32) -> Self {
        Outgoing {
            sender,
            forwarder: Forwarder::new(ssrc),
            grant: Grant::Unlimited,
            asked: (None, 0),
            lowered: None,
            layer_index: 0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) room: RoomId,
    pub(crate) participant: Participant,
    pub(crate) name: String,
    pub(crate) role: GrantRole,
    pub(crate) settings: RoomSettings,
    pub(crate) in_meeting: bool,
    pub(crate) muted: bool,
    pub(crate) hand_raised: bool,
    pub(crate) publish: Option<PeerId>,
    pub(crate) subscription: Subscription,
    /// What the client said each of its published `mid`s carries.
    pub(crate) published: HashMap<String, Source>,
    incoming: HashMap<u32, Incoming>,
    /// The SSRCs of each published source's layers, lowest quality first: kept in step
    /// with `incoming`, so forwarding reads them without sorting or allocating.
    layers: HashMap<Source, Vec<u32>>,
    pub(crate) loss: HashMap<u32, LossCounter>,
    pub(crate) last_keyframe_request: HashMap<Source, Instant>,
    pub(crate) outgoing: HashMap<(Participant, Source), Outgoing>,
    pub(crate) out_by_ssrc: HashMap<u32, (Participant, Source)>,
    /// The subscriber's bandwidth allocation.
    pub(crate) allocator: Allocator<(Participant, Source)>,
    /// At the last allocation: the downlink estimate and what the layout wants (bits per
    /// second; `None` while nothing is forwarded to them).
    pub(crate) downlink: Option<(u64, u64)>,
    /// How well their connection carries the meeting, as reported.
    pub(crate) quality: QualityMeter,
}

impl Member {
    pub(crate) fn new(
        room: RoomId,
        participant: Participant,
        name: String,
        role: GrantRole,
        settings: RoomSettings,
        muted: bool,
    ) -> Self {
        Member {
            room,
            participant,
            name,
            role,
            settings,
            in_meeting: false,
            muted,
            hand_raised: false,
            publish: None,
            subscription: Subscription::None,
            published: HashMap::new(),
            incoming: HashMap::new(),
            layers: HashMap::new(),
            loss: HashMap::new(),
            last_keyframe_request: HashMap::new(),
            outgoing: HashMap::new(),
            out_by_ssrc: HashMap::new(),
            allocator: Allocator::default(),
            downlink: None,
            quality: QualityMeter::default(),
        }
    }

    pub(crate) fn info(&self) -> PeerInfo {
        PeerInfo {
            participant: self.participant,
            name: self.name.clone(),
            role: self.role,
            muted: self.muted,
            hand_raised: self.hand_raised,
            sharing_screen: self.published.values().any(|s| *s == Source::Screen),
        }
    }

    pub(crate) fn is_moderator(&self) -> bool {
        self.role == GrantRole::Moderator
    }

    pub(crate) fn sources(&self) -> HashSet<Source> {
        self.published.values().copied().collect()
    }

    /// A packet of `ssrc` arrived, `bytes` long with `media` in it: the stream flows.
    /// Returns the stream.
    ///
    /// A packet without media (RTP padding: Chrome probes its uplink with padding on the
    /// highest simulcast stream when RTX is not negotiated) neither makes a layer flow nor
    /// counts towards its cost: a layer of padding alone shows no picture, and measured at a
    /// few kbit/s it looked cheaper than the smallest layer.
    pub(crate) fn saw(
        &mut self,
        ssrc: u32,
        now: Instant,
        bytes: usize,
        media: bool,
    ) -> Option<&Incoming> {
        let i = self.incoming.get_mut(&ssrc)?;
        if media {
            i.last_seen = Some(now);
            i.bytes += bytes as u64;
        }
        Some(i)
    }

    /// Updates every stream's rate from the bytes that arrived over `elapsed`.
    pub(crate) fn measure(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        for i in self.incoming.values_mut() {
            let now = (i.bytes as f64 * 8.0 / secs) as u64;
            // Half the last window, half before: a keyframe neither doubles nor is lost.
            i.rate = if i.rate == 0 { now } else { (i.rate + now) / 2 };
            i.bytes = 0;
        }
    }

    /// What each layer of a source costs now (bits per second), smallest first; `None`
    /// for a layer that does not flow.
    pub(crate) fn layer_rates(&self, source: Source, now: Instant) -> Vec<Option<u64>> {
        self.layers(source)
            .iter()
            .map(|l| {
                self.flowing(*l, now)
                    .then(|| self.incoming.get(l).map(|i| i.rate.max(1)))
                    .flatten()
            })
            .collect()
    }

    /// What the source's streams cost now together (audio: its one stream).
    pub(crate) fn rate(&self, source: Source) -> u64 {
        self.incoming
            .values()
            .filter(|i| i.source == source)
            .map(|i| i.rate)
            .sum()
    }

    /// Whether a packet of `ssrc` arrived within [`LAYER_IDLE`] of `now`.
    pub(crate) fn flowing(&self, ssrc: u32, now: Instant) -> bool {
        self.incoming
            .get(&ssrc)
            .and_then(|i| i.last_seen)
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_IDLE)
    }

    /// The streams of a source, as (SSRC, receiver).
    pub(crate) fn streams(&self, source: Source) -> impl Iterator<Item = (u32, RTCRtpReceiverId)> {
        self.incoming
            .iter()
            .filter(move |(_, i)| i.source == source)
            .map(|(ssrc, i)| (*ssrc, i.receiver))
    }

    /// The layers of a source, lowest quality first.
    pub(crate) fn layers(&self, source: Source) -> &[u32] {
        self.layers.get(&source).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn add_incoming(
        &mut self,
        ssrc: u32,
        source: Source,
        rid: Option<&str>,
        receiver: RTCRtpReceiverId,
        audio_level_id: Option<u8>,
    ) {
        let rank = rid_rank(rid);
        self.incoming.insert(
            ssrc,
            Incoming {
                source,
                rank,
                receiver,
                audio_level_id,
                last_seen: None,
                bytes: 0,
                rate: 0,
            },
        );
        self.sort_layers();
    }

    /// Keeps the incoming streams of these sources only (all of them: none).
    fn keep_incoming(&mut self, keep: impl Fn(Source) -> bool) {
        self.incoming.retain(|_, i| keep(i.source));
        self.sort_layers();
    }

    fn sort_layers(&mut self) {
        self.layers.clear();
        let mut ranked: Vec<(Source, u8, u32)> = self
            .incoming
            .iter()
            .map(|(ssrc, i)| (i.source, i.rank, *ssrc))
            .collect();
        ranked.sort_unstable_by_key(|(source, rank, ssrc)| (*source as u8, *rank, *ssrc));
        for (source, _, ssrc) in ranked {
            self.layers.entry(source).or_default().push(ssrc);
        }
    }
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Microphone => "microphone",
        Source::Camera => "camera",
        Source::Screen => "screen",
    }
}

impl Sfu {
    pub(crate) fn publish(
        &mut self,
        now: Instant,
        conn: ConnId,
        sdp: String,
        tracks: Vec<PublishedTrack>,
        restart: bool,
    ) -> Result<(), SfuError> {
        let m = self
            .members
            .get(&conn)
            .ok_or(SfuError::Refused(ErrorCode::NotJoined, "not joined"))?;
        if m.role == GrantRole::Guest {
            if !m.settings.guests_may_share_screen
                && tracks.iter().any(|t| t.source == Source::Screen)
            {
                return Err(SfuError::Refused(
                    ErrorCode::NotAllowed,
                    "guests may not share their screen in this room",
                ));
            }
            if !m.settings.guests_may_send_video
                && tracks.iter().any(|t| t.source == Source::Camera)
            {
                return Err(SfuError::Refused(
                    ErrorCode::NotAllowed,
                    "guests may not send video in this room",
                ));
            }
        }
        let peer = match m.publish {
            Some(p) if !restart => p,
            old => {
                if let Some(old) = old {
                    // Its streams end here; the new connection's arrive under new SSRCs and
                    // reach the same subscribers' tracks (spliced at their first keyframe).
                    self.close_peer(old);
                    if let Some(m) = self.members.get_mut(&conn) {
                        m.keep_incoming(|_| false);
                        m.loss.clear();
                    }
                }
                let p = self.open_peer(now, conn)?;
                if let Some(m) = self.members.get_mut(&conn) {
                    m.publish = Some(p);
                }
                p
            }
        };
        let answer = self
            .peers
            .get_mut(peer)
            .ok_or(SfuError::Refused(ErrorCode::BadSdp, "no connection"))?
            .answer(now, sdp)?;
        let Some(m) = self.members.get_mut(&conn) else {
            return Ok(());
        };
        let before = m.sources();
        m.published = tracks.into_iter().map(|t| (t.mid, t.source)).collect();
        let after = m.sources();
        m.keep_incoming(|s| after.contains(&s));
        let room = m.room;
        self.signal(conn, ServerMessage::PublishAnswer { sdp: answer });
        self.pump(now, peer);
        if before != after {
            self.update(conn, |_| {});
            for other in self.room_members(room) {
                if other != conn {
                    self.renegotiate(now, other);
                }
            }
        }
        Ok(())
    }

    /// Brings a subscriber's forwarded tracks in line with what the others publish, and
    /// offers the result (or notes that it must, once the pending offer is answered).
    pub(crate) fn renegotiate(&mut self, now: Instant, conn: ConnId) {
        if let Err(e) = self.try_renegotiate(now, conn) {
            tracing::warn!(error = %e, "renegotiating a subscriber failed");
            self.refuse(conn, ErrorCode::BadSdp, "the node could not offer media");
        }
    }

    fn try_renegotiate(&mut self, now: Instant, conn: ConnId) -> Result<(), SfuError> {
        let Some(m) = self.members.get_mut(&conn) else {
            return Ok(());
        };
        if !m.in_meeting {
            return Ok(());
        }
        if let Subscription::Offered { again, .. } = &mut m.subscription {
            *again = true;
            return Ok(());
        }
        let room = m.room;
        let mut wanted: HashSet<(Participant, Source)> = HashSet::new();
        for other in self.room_members(room) {
            if other == conn {
                continue;
            }
            if let Some(o) = self.members.get(&other).filter(|o| o.in_meeting) {
                for s in o.sources() {
                    wanted.insert((o.participant, s));
                }
            }
        }
        let m = &self.members[&conn];
        let have: HashSet<(Participant, Source)> = m.outgoing.keys().copied().collect();
        if wanted == have {
            return Ok(());
        }
        let peer = match m.subscription {
            Subscription::None if wanted.is_empty() => return Ok(()),
            Subscription::None => {
                let p = self.open_peer(now, conn)?;
                if let Some(m) = self.members.get_mut(&conn) {
                    m.subscription = Subscription::Answered(p);
                }
                p
            }
            Subscription::Answered(p) | Subscription::Offered { peer: p, .. } => p,
        };
        let gone: Vec<(Participant, Source)> = have.difference(&wanted).copied().collect();
        let mut new: Vec<(Participant, Source)> = wanted.difference(&have).copied().collect();
        new.sort_by_key(|(p, s)| (p.to_string(), *s as u8));
        let ssrcs: Vec<u32> = new.iter().map(|_| self.entropy.ssrc()).collect();
        let (Some(m), Some(p)) = (self.members.get_mut(&conn), self.peers.get_mut(peer)) else {
            return Ok(());
        };
        for key in gone {
            if let Some(out) = m.outgoing.remove(&key) {
                m.out_by_ssrc.remove(&out.forwarder.ssrc);
                p.remove_track(out.sender)?;
            }
        }
        for (key, ssrc) in new.into_iter().zip(ssrcs) {
            let (participant, source) = key;
            // msid ids are SDP tokens: no ':' or '/'. Clients map mids through the
            // `tracks` of the offer; the ids only have to be unique.
            // Microphone and camera share a stream (browsers keep them in sync).
            let stream = participant.to_string().replace(':', "-");
            let stream_id = if source == Source::Screen {
                format!("{stream}-screen")
            } else {
                stream.clone()
            };
            let track_id = format!("{stream}-{}", source_name(source));
            let sender = p.add_track(stream_id, track_id, source_name(source), source, ssrc)?;
            m.out_by_ssrc.insert(ssrc, key);
            m.outgoing.insert(key, Outgoing::new(sender, ssrc));
        }
        let sdp = p.offer(now)?;
        let mut tracks: Vec<ForwardedTrack> = m
            .outgoing
            .iter()
            .filter_map(|((participant, source), out)| {
                Some(ForwardedTrack {
                    mid: p.mid(out.sender)?,
                    participant: *participant,
                    source: *source,
                })
            })
            .collect();
        tracks.sort_by(|a, b| a.mid.cmp(&b.mid));
        m.subscription = Subscription::Offered { peer, again: false };
        self.signal(conn, ServerMessage::SubscribeOffer { sdp, tracks });
        self.pump(now, peer);
        Ok(())
    }

    pub(crate) fn subscribe_answer(
        &mut self,
        now: Instant,
        conn: ConnId,
        sdp: String,
    ) -> Result<(), SfuError> {
        let m = self
            .members
            .get_mut(&conn)
            .ok_or(SfuError::Refused(ErrorCode::NotJoined, "not joined"))?;
        let Subscription::Offered { peer, again } = m.subscription else {
            return Err(SfuError::Refused(
                ErrorCode::BadSdp,
                "there is no offer to answer",
            ));
        };
        let p = self
            .peers
            .get_mut(peer)
            .ok_or(SfuError::Refused(ErrorCode::BadSdp, "no connection"))?;
        p.accept_answer(now, sdp)?;
        m.subscription = Subscription::Answered(peer);
        let mut fresh_video = Vec::new();
        for ((participant, source), out) in m.outgoing.iter_mut() {
            if out.forwarder.binding != crate::forwarder::Binding::Offered {
                continue;
            }
            out.forwarder.binding = p.binding(out.sender, source.is_audio());
            if !source.is_audio() {
                fresh_video.push((*participant, *source));
            }
        }
        let room = m.room;
        let connected = p.connected;
        self.pump(now, peer);
        // New video for a connected subscriber starts with a keyframe (a subscriber not yet
        // connected gets them all when its DTLS is up).
        if connected {
            for (participant, source) in fresh_video {
                if let Some(p) = self.by_participant.get(&(room, participant)).copied() {
                    self.request_keyframe(now, p, source, crate::fanout::Ask::Once);
                }
            }
        }
        if again {
            self.renegotiate(now, conn);
        }
        Ok(())
    }

    pub(crate) fn remote_candidate(
        &mut self,
        conn: ConnId,
        connection: Connection,
        candidate: String,
    ) -> Result<(), SfuError> {
        let Some(m) = self.members.get(&conn) else {
            return Ok(());
        };
        let peer = match connection {
            Connection::Publish => m.publish,
            Connection::Subscribe => m.subscription.peer(),
        };
        let Some(p) = peer.and_then(|p| self.peers.get_mut(p)) else {
            return Ok(());
        };
        if candidate.is_empty() {
            return Ok(());
        }
        p.add_remote_candidate(candidate)
    }
}
