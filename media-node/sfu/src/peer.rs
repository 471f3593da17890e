//! The peer connections and every call into `rtc`: SDP steps, demultiplexing the one UDP
//! port (STUN by the ICE username fragment, everything else by the address ICE validated),
//! timers, events, received media handed to `fanout.rs`, writing forwarded packets and
//! keyframe requests.

use crate::forwarder::Binding;
use crate::media::{self, AUDIO_LEVEL_URI};
use crate::protocol::Source;
use crate::sfu::{ConnId, Entropy, Output, PeerId, Sfu, SfuError};
use crate::speakers;
use aula_domain::Participant;
use bytes::BytesMut;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId, RTCRtpTransceiverId};
use rtc::sansio::Protocol;
use rtc::shared::marshal::Unmarshal;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::message::{BINDING_REQUEST, Message, is_stun_message};
use rtc::stun::textattrs::TextAttribute;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

pub(crate) struct Peer {
    pc: RTCPeerConnection,
    conn: ConnId,
    ufrag: String,
    addrs: Vec<SocketAddr>,
    deadline: Option<Instant>,
    /// The downlink estimate of this connection (a subscriber's: what the node may send).
    pub(crate) estimate: media::Estimate,
    /// DTLS is up: media written before this would be dropped (a lost first keyframe
    /// leaves the subscriber's decoder waiting).
    pub(crate) connected: bool,
}

impl Peer {
    /// Answers a publisher's offer.
    pub(crate) fn answer(&mut self, now: Instant, offer: String) -> Result<String, SfuError> {
        self.pc
            .set_remote_description(now, RTCSessionDescription::offer(offer)?)?;
        let answer = self.pc.create_answer(None)?;
        self.pc.set_local_description(now, answer)?;
        self.local_sdp("no answer")
    }

    /// Offers a subscriber what its tracks are now.
    pub(crate) fn offer(&mut self, now: Instant) -> Result<String, SfuError> {
        let offer = self.pc.create_offer(None)?;
        self.pc.set_local_description(now, offer)?;
        self.local_sdp("no offer")
    }

    fn local_sdp(&self, missing: &'static str) -> Result<String, SfuError> {
        self.pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or(SfuError::Refused(
                crate::protocol::ErrorCode::BadSdp,
                missing,
            ))
    }

    pub(crate) fn accept_answer(&mut self, now: Instant, answer: String) -> Result<(), SfuError> {
        self.pc
            .set_remote_description(now, RTCSessionDescription::answer(answer)?)?;
        Ok(())
    }

    pub(crate) fn add_track(
        &mut self,
        stream_id: String,
        track_id: String,
        label: &str,
        source: Source,
        ssrc: u32,
    ) -> Result<RTCRtpSenderId, SfuError> {
        let kind = if source.is_audio() {
            RtpCodecKind::Audio
        } else {
            RtpCodecKind::Video
        };
        let track = media::track(stream_id, track_id, label.to_owned(), kind, ssrc);
        Ok(self.pc.add_track(track)?)
    }

    pub(crate) fn remove_track(&mut self, sender: RTCRtpSenderId) -> Result<(), SfuError> {
        Ok(self.pc.remove_track(sender)?)
    }

    /// The `mid` a forwarded track got in the offer.
    pub(crate) fn mid(&mut self, sender: RTCRtpSenderId) -> Option<String> {
        self.pc
            .rtp_transceiver(RTCRtpTransceiverId::from(sender))
            .and_then(|t| t.mid().clone())
    }

    /// What the subscriber's answer agreed for a forwarded track.
    pub(crate) fn binding(&mut self, sender: RTCRtpSenderId, audio: bool) -> Binding {
        let Some(mut sender) = self.pc.rtp_sender(sender) else {
            return Binding::NoCodec;
        };
        let params = sender.get_parameters();
        let mime = if audio { "audio/opus" } else { "video/vp8" };
        let payload_type = params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
            .map(|c| c.payload_type);
        let audio_level_id = params
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|e| e.uri == AUDIO_LEVEL_URI)
            .and_then(|e| u8::try_from(e.id).ok());
        match payload_type {
            Some(payload_type) => Binding::Bound {
                payload_type,
                audio_level_id,
            },
            None => Binding::NoCodec,
        }
    }

    pub(crate) fn add_remote_candidate(&mut self, candidate: String) -> Result<(), SfuError> {
        self.pc.add_remote_candidate(RTCIceCandidateInit {
            candidate,
            ..Default::default()
        })?;
        Ok(())
    }

    /// Asks the publisher for a keyframe on each of these streams; returns how many asks
    /// went out.
    pub(crate) fn request_keyframes(
        &mut self,
        now: Instant,
        streams: &[(u32, RTCRtpReceiverId)],
    ) -> u64 {
        let mut sent = 0;
        for (ssrc, receiver) in streams {
            if let Some(mut r) = self.pc.rtp_receiver(*receiver) {
                let _ = r.write_rtcp(
                    now,
                    vec![Box::new(PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc: *ssrc,
                    })],
                );
                sent += 1;
            }
        }
        sent
    }

    /// Writes forwarded packets into this connection and collects what it sends.
    pub(crate) fn write(&mut self, now: Instant, writes: Vec<Write>) -> Written {
        let mut written = Written::default();
        for w in writes {
            let bytes = w.packet.payload.len() as u64;
            let ok = self
                .pc
                .rtp_sender(w.sender)
                .is_some_and(|mut s| s.write_rtp(now, w.packet).is_ok());
            if ok {
                let counts = &mut written.forwarded[usize::from(!w.audio)];
                counts.0 += 1;
                counts.1 += bytes;
            }
        }
        self.drain(written)
    }

    /// The datagrams the connection queued and when it next needs a timeout.
    fn drain(&mut self, mut written: Written) -> Written {
        while let Some(out) = self.pc.poll_write() {
            written
                .datagrams
                .push((out.transport.peer_addr, out.message));
        }
        written.deadline = self.pc.poll_timeout();
        written
    }
}

/// One forwarded packet for one subscriber's connection.
pub(crate) struct Write {
    pub(crate) peer: PeerId,
    pub(crate) sender: RTCRtpSenderId,
    pub(crate) packet: rtc::rtp::Packet,
    pub(crate) audio: bool,
}

/// What writing a batch to one connection produced.
#[derive(Default)]
pub(crate) struct Written {
    datagrams: Vec<(SocketAddr, BytesMut)>,
    deadline: Option<Instant>,
    /// Packets and payload bytes written: audio, video.
    pub(crate) forwarded: [(u64, u64); 2],
}

/// All peer connections, how datagrams find theirs, and their timers.
pub(crate) struct Peers {
    /// Boxed: the fan-out moves peers out of the map and back, a pointer each.
    map: HashMap<PeerId, Box<Peer>>,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    next: PeerId,
    /// Runs a wide fan-out on several cores; None: on the caller's thread.
    pool: Option<rayon::ThreadPool>,
    /// Packets forward() queued for subscribers' connections, written by deliver().
    fanout: Vec<Write>,
    /// The time of the newest input that queued one.
    pub(crate) fanout_at: Option<Instant>,
}

impl Peers {
    pub(crate) fn new(fanout_threads: usize) -> Self {
        let pool = (fanout_threads > 1)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(fanout_threads)
                    .thread_name(|i| format!("aula-fanout-{i}"))
                    .build()
                    .inspect_err(
                        |e| tracing::warn!(error = %e, "no fan-out threads; forwarding on one"),
                    )
                    .ok()
            })
            .flatten();
        Peers {
            map: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            timers: BinaryHeap::new(),
            next: 1,
            pool,
            fanout: Vec::new(),
            fanout_at: None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.map.get_mut(&id).map(|p| &mut **p)
    }

    /// A connected connection's downlink estimate and what its feedback said so far.
    pub(crate) fn estimate(&self, id: PeerId) -> Option<media::Feedback> {
        self.map
            .get(&id)
            .filter(|p| p.connected)
            .map(|p| p.estimate.feedback())
    }

    pub(crate) fn connected(&self, id: PeerId) -> bool {
        self.map.get(&id).is_some_and(|p| p.connected)
    }

    /// Queues a forwarded packet, written at the next poll_output.
    pub(crate) fn queue(&mut self, now: Instant, write: Write) {
        self.fanout_at = Some(now);
        self.fanout.push(write);
    }

    pub(crate) fn take_fanout(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.fanout)
    }

    /// A connection leaves the map while the fan-out writes it on another thread.
    pub(crate) fn take(&mut self, id: PeerId) -> Option<Box<Peer>> {
        self.map.remove(&id)
    }

    pub(crate) fn put(&mut self, id: PeerId, peer: Box<Peer>) {
        self.map.insert(id, peer);
    }

    pub(crate) fn pool(&self) -> Option<&rayon::ThreadPool> {
        self.pool.as_ref()
    }

    /// When the earliest peer connection needs a timeout.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        // Drop timer entries that no longer match their peer's deadline.
        while let Some(Reverse((at, peer))) = self.timers.peek().copied() {
            match self.map.get(&peer) {
                Some(p) if p.deadline == Some(at) => break,
                _ => {
                    self.timers.pop();
                }
            }
        }
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The connection a datagram is for.
    fn route(&self, from: SocketAddr, data: &[u8]) -> Option<PeerId> {
        is_stun_message(data)
            .then(|| self.stun_peer(data))
            .flatten()
            .or_else(|| self.by_addr.get(&from).copied())
    }

    /// The peer a STUN binding request is for, by the username `<our ufrag>:<theirs>`.
    fn stun_peer(&self, data: &[u8]) -> Option<PeerId> {
        let mut m = Message {
            raw: data.to_vec(),
            ..Default::default()
        };
        m.decode().ok()?;
        if m.typ != BINDING_REQUEST {
            return None;
        }
        let username = TextAttribute::get_from_as(&m, ATTR_USERNAME).ok()?;
        let ours = username.text.split(':').next()?;
        self.by_ufrag.get(ours).copied()
    }
}

impl Sfu {
    pub(crate) fn open_peer(&mut self, now: Instant, conn: ConnId) -> Result<PeerId, SfuError> {
        let entropy: &mut dyn Entropy = &mut *self.entropy;
        let ufrag = entropy.token(16);
        let pwd = entropy.token(32);
        let (pc, estimate) = media::peer_connection(
            now,
            &ufrag,
            &pwd,
            self.config.candidate,
            self.config.initial_estimate_bps as f64,
        )?;
        let peers = &mut self.peers;
        let id = peers.next;
        peers.next += 1;
        peers.by_ufrag.insert(ufrag.clone(), id);
        peers.map.insert(
            id,
            Box::new(Peer {
                pc,
                conn,
                ufrag,
                addrs: Vec::new(),
                deadline: None,
                estimate,
                connected: false,
            }),
        );
        Ok(id)
    }

    pub(crate) fn close_peer(&mut self, id: PeerId) {
        let Some(mut p) = self.peers.map.remove(&id) else {
            return;
        };
        let _ = p.pc.close();
        while let Some(out) = p.pc.poll_write() {
            self.outputs.push_back(Output::Transmit {
                to: out.transport.peer_addr,
                data: out.message,
            });
        }
        self.peers.by_ufrag.remove(&p.ufrag);
        for a in p.addrs {
            if self.peers.by_addr.get(&a) == Some(&id) {
                self.peers.by_addr.remove(&a);
            }
        }
    }

    pub(crate) fn on_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Some(peer) = self.peers.route(from, data) else {
            return;
        };
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let _ = p.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.config.candidate,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        });
        self.pump(now, peer);
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, peer))) = self.peers.timers.peek().copied() {
            if at > now {
                break;
            }
            self.peers.timers.pop();
            let Some(p) = self.peers.get_mut(peer) else {
                continue;
            };
            if p.deadline != Some(at) {
                continue;
            }
            p.deadline = None;
            if let Err(e) = p.pc.handle_timeout(now) {
                let conn = p.conn;
                tracing::warn!(error = %e, conn, "a peer connection failed");
                self.media_failed(now, conn);
                continue;
            }
            self.pump(now, peer);
        }
        if self.next_speaker_tick.is_some_and(|t| t <= now) {
            self.speaker_tick(now);
        }
        self.forget_empty_rooms(now);
    }

    fn media_failed(&mut self, now: Instant, conn: ConnId) {
        self.refuse(
            conn,
            crate::protocol::ErrorCode::BadSdp,
            "the media connection failed; join again",
        );
        self.close(conn);
        self.leave_room(now, conn);
    }

    /// Drains a peer connection: datagrams out, events, received media; re-arms its timer.
    pub(crate) fn pump(&mut self, now: Instant, peer: PeerId) {
        let mut events = Vec::new();
        let mut messages = Vec::new();
        let conn = {
            let Some(p) = self.peers.get_mut(peer) else {
                return;
            };
            while let Some(ev) = p.pc.poll_event() {
                events.push(ev);
            }
            while let Some(msg) = p.pc.poll_read() {
                messages.push(msg.message);
            }
            p.conn
        };
        for ev in events {
            self.peer_event(now, peer, conn, ev);
        }
        for msg in messages {
            match msg {
                RTCMessage::RtpPacket(_, packet) => self.forward(now, conn, packet),
                RTCMessage::RtcpPacket(_, packets) => self.feedback(now, conn, &packets),
                _ => {}
            }
        }
        self.flush(peer);
    }

    /// Sends what a peer connection queued and re-arms its timer.
    pub(crate) fn flush(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let written = p.drain(Written::default());
        self.absorb(peer, written);
    }

    /// Queues a connection's datagrams and re-arms its timer.
    pub(crate) fn absorb(&mut self, peer: PeerId, written: Written) {
        let peers = &mut self.peers;
        let Some(p) = peers.map.get_mut(&peer) else {
            return;
        };
        for (to, data) in written.datagrams {
            // The connection only answers (and sends to) addresses that passed ICE's
            // integrity check: from then on, datagrams from there are this peer's.
            if !p.addrs.contains(&to) {
                p.addrs.push(to);
                peers.by_addr.insert(to, peer);
            }
            self.outputs.push_back(Output::Transmit { to, data });
        }
        if written.deadline != p.deadline {
            p.deadline = written.deadline;
            if let Some(at) = written.deadline {
                peers.timers.push(Reverse((at, peer)));
            }
        }
    }

    fn peer_event(&mut self, now: Instant, peer: PeerId, conn: ConnId, ev: RTCPeerConnectionEvent) {
        match ev {
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                let Some(p) = self.peers.get_mut(peer) else {
                    return;
                };
                let Some(m) = self.members.get_mut(&conn) else {
                    return;
                };
                if m.publish != Some(peer) {
                    return;
                }
                let tid = RTCRtpTransceiverId::from(init.receiver_id);
                let mid = p.pc.rtp_transceiver(tid).and_then(|t| t.mid().clone());
                let (kind, audio_level_id) = match p.pc.rtp_receiver(init.receiver_id) {
                    Some(mut r) => {
                        let kind = r.track().kind();
                        let id = r
                            .get_parameters()
                            .rtp_parameters
                            .header_extensions
                            .iter()
                            .find(|e| e.uri == AUDIO_LEVEL_URI)
                            .and_then(|e| u8::try_from(e.id).ok());
                        (kind, id)
                    }
                    None => return,
                };
                let source = mid
                    .and_then(|mid| m.published.get(&mid).copied())
                    .unwrap_or(if kind == RtpCodecKind::Audio {
                        Source::Microphone
                    } else {
                        Source::Camera
                    });
                m.add_incoming(
                    init.ssrc,
                    source,
                    init.rid.as_deref(),
                    init.receiver_id,
                    audio_level_id,
                );
                if self.next_speaker_tick.is_none() {
                    self.next_speaker_tick = Some(now + speakers::DECISION_INTERVAL);
                }
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Connected,
            ) => {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.connected = true;
                }
                // A subscriber's media can flow now: every video it gets starts with a
                // fresh keyframe.
                let Some(m) = self.members.get(&conn) else {
                    return;
                };
                if m.subscription.peer() != Some(peer) {
                    return;
                }
                let room = m.room;
                let video: Vec<(Participant, Source)> = m
                    .outgoing
                    .keys()
                    .filter(|(_, s)| !s.is_audio())
                    .copied()
                    .collect();
                for (participant, source) in video {
                    if let Some(p) = self.by_participant.get(&(room, participant)).copied() {
                        self.request_keyframe(now, p, source, crate::fanout::Ask::NowOrNever);
                    }
                }
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                RTCIceConnectionState::Failed,
            )
            | RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Failed,
            ) => self.media_failed(now, conn),
            _ => {}
        }
    }
}

/// The audio level and voice flag a publisher's packet carries under extension `id`.
pub(crate) fn audio_level(packet: &rtc::rtp::Packet, id: u8) -> Option<(u8, bool)> {
    let mut raw = packet.header.get_extension(id)?;
    let l = AudioLevelExtension::unmarshal(&mut raw).ok()?;
    Some((l.level, l.voice))
}

/// The SSRCs a subscriber's RTCP asks keyframes of (PLI and FIR).
pub(crate) fn keyframe_requests(packets: &[Box<dyn rtc::rtcp::Packet>]) -> Vec<u32> {
    let mut ssrcs = Vec::new();
    for p in packets {
        let any = p.as_any();
        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
            ssrcs.push(pli.media_ssrc);
        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
            ssrcs.extend(fir.fir.iter().map(|e| e.ssrc));
        }
    }
    ssrcs
}
