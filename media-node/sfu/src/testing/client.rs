//! The clients of a meeting in memory: what a participant's browser publishes and receives,
//! and the payloads that let a receiver check every packet.

use super::{Endpoint, HarnessError, MeetingConfig, SFU_ADDR, client_pc, fail};
use crate::ConnId;
use crate::media::{self, AUDIO_LEVEL_URI, OPUS_PT, VP8_PT};
use crate::protocol::{PublishedTrack, ServerMessage, Source};
use aula_domain::Participant;
use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::message::RTCMessage;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverId};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

/// What a participant publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub microphone: bool,
    pub camera: Camera,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Camera {
    Off,
    /// One stream.
    Single,
    /// Three layers, rids `q`, `h`, `f` (the web client's quarter, half and full size).
    Simulcast,
}

pub const SIMULCAST_RIDS: [&str; 3] = ["q", "h", "f"];

/// What a payload says about itself: the harness writes every payload so that a receiver
/// can tell which stream and packet it is, and whether it arrived intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    /// The simulcast layer it was sent on (0 = smallest; 0 without simulcast).
    pub layer: u8,
    /// The packet's number on its stream (0 = the first packet sent).
    pub index: u64,
    /// The first packet of a video frame.
    pub frame_start: bool,
    /// The first packet of a keyframe.
    pub keyframe: bool,
}

const HEADER: usize = 11;

/// A payload: a VP8 payload descriptor (start of partition on a frame's first packet), the
/// VP8 frame header's key frame bit, the layer, the packet's index, and a pattern derived
/// from them.
pub fn payload(c: Content, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(HEADER)];
    p[0] = if c.frame_start { 0x10 } else { 0x00 };
    // The inverse key frame flag: 0 on a keyframe.
    p[1] = if c.keyframe { 0x00 } else { 0x01 };
    p[2] = c.layer;
    p[3..HEADER].copy_from_slice(&c.index.to_be_bytes());
    for (j, b) in p.iter_mut().enumerate().skip(HEADER) {
        *b = filler(c, j);
    }
    p
}

fn filler(c: Content, j: usize) -> u8 {
    (c.index.wrapping_mul(31) as usize)
        .wrapping_add(j)
        .wrapping_add(usize::from(c.layer)) as u8
}

/// The content of an intact payload (None: damaged, or not the harness's).
pub fn content(p: &[u8]) -> Option<Content> {
    let head = p.get(..HEADER)?;
    let c = Content {
        layer: head[2],
        index: u64::from_be_bytes(head[3..HEADER].try_into().ok()?),
        frame_start: head[0] == 0x10,
        keyframe: head[0] == 0x10 && head[1] == 0x00,
    };
    let intact = p
        .iter()
        .enumerate()
        .skip(HEADER)
        .all(|(j, b)| *b == filler(c, j));
    intact.then_some(c)
}

/// An RTP packet a client received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub from: Participant,
    pub source: Source,
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// None: the payload was damaged.
    pub content: Option<Content>,
}

/// One stream a publisher sends: a track's only stream, or one simulcast layer.
pub(super) struct Stream {
    pub(super) sender: RTCRtpSenderId,
    pub(super) ssrc: u32,
    pub(super) layer: u8,
    pub(super) rid: Option<&'static str>,
    pub(super) seq: u16,
    /// Each layer has its own timestamp base, as its own encoder would.
    pub(super) ts_base: u32,
    pub(super) sent: u64,
}

/// Header extension ids the publish connection negotiated.
#[derive(Default)]
pub(super) struct Extensions {
    pub(super) mid: Option<u8>,
    pub(super) rid: Option<u8>,
    pub(super) audio_level: Option<u8>,
}

pub(super) struct Publisher {
    pub(super) ep: Endpoint,
    pub(super) microphone: Option<Stream>,
    pub(super) camera: Vec<Stream>,
    pub(super) camera_mid: Option<String>,
    /// Simulcast layers the browser stopped sending (short of CPU or uplink).
    pub(super) stopped_layers: HashSet<u8>,
    pub(super) ext: Extensions,
    pub(super) keyframe_due: bool,
    pub(super) next_frame: Instant,
    pub(super) next_audio: Instant,
    pub(super) frames: u32,
    pub(super) audio_packets: u32,
    pub(super) keyframe_requests: u64,
}

/// A participant's browser, as the SFU sees it.
pub struct Client {
    pub participant: Participant,
    pub(super) conn: ConnId,
    pub(super) publish: Option<Publisher>,
    pub(super) subscribe: Option<Endpoint>,
    pub(super) frames: Vec<ServerMessage>,
    /// What each `mid` of the subscribe connection carries (from the offers' `tracks`).
    pub(super) tracks: HashMap<String, (Participant, Source)>,
    pub(super) ssrc_mid: HashMap<u32, String>,
    pub(super) received: Vec<Received>,
    pub(super) intact: HashSet<(Participant, Source, u8, u64)>,
    pub(super) speaking: bool,
    /// The node closed the signalling connection.
    pub(super) closed: bool,
}

impl Client {
    /// Every frame the node sent this client, oldest first.
    pub fn frames(&self) -> &[ServerMessage] {
        &self.frames
    }

    /// Every RTP packet the subscribe connection received, in order (when recording).
    pub fn received(&self) -> &[Received] {
        &self.received
    }

    /// Packets received from one participant's source.
    pub fn received_from(&self, who: Participant, source: Source) -> Vec<&Received> {
        self.received
            .iter()
            .filter(|r| r.from == who && r.source == source)
            .collect()
    }

    /// Distinct packets that arrived intact, from everyone.
    pub fn intact(&self) -> u64 {
        self.intact.len() as u64
    }

    /// RTP packets the publish connection sent, on all its streams.
    pub fn sent(&self) -> u64 {
        self.publish.as_ref().map_or(0, |p| {
            p.microphone.iter().chain(&p.camera).map(|s| s.sent).sum()
        })
    }

    /// Keyframe requests (PLI) the publish connection received.
    pub fn keyframe_requests(&self) -> u64 {
        self.publish.as_ref().map_or(0, |p| p.keyframe_requests)
    }

    /// Both directions that exist are up (DTLS done).
    pub fn connected(&self) -> bool {
        self.publish.as_ref().is_none_or(|p| p.ep.connected())
            && self.subscribe.as_ref().is_none_or(Endpoint::connected)
    }

    pub fn closed(&self) -> bool {
        self.closed
    }
}

impl Stream {
    pub(super) fn new(
        sender: RTCRtpSenderId,
        ssrc: u32,
        layer: u8,
        rid: Option<&'static str>,
    ) -> Self {
        Stream {
            sender,
            ssrc,
            layer,
            rid,
            seq: 1_000u16.wrapping_mul(u16::from(layer) + 1),
            ts_base: 0x0100_0000u32.wrapping_mul(u32::from(layer) + 1),
            sent: 0,
        }
    }
}

impl Publisher {
    /// A new publish connection with `what` on it, and its offer: the SDP and what each
    /// `mid` carries. `ssrcs`: one for the microphone and one per camera layer.
    pub(super) fn offer(
        now: Instant,
        addr: SocketAddr,
        stream: &str,
        what: Publish,
        ssrcs: [u32; 4],
    ) -> Result<(Publisher, String, Vec<PublishedTrack>), HarnessError> {
        let mut ssrcs = ssrcs.into_iter();
        let mut next = || ssrcs.next().unwrap_or_default();
        let mut pc = client_pc(now, addr)?;
        let mut microphone = None;
        let mut published = Vec::new();
        if what.microphone {
            let ssrc = next();
            let sender = pc.add_track(media::track(
                stream.to_owned(),
                format!("{stream}-microphone"),
                "microphone".into(),
                RtpCodecKind::Audio,
                ssrc,
            ))?;
            microphone = Some(Stream::new(sender, ssrc, 0, None));
            published.push((sender, Source::Microphone));
        }
        let mut camera = Vec::new();
        let layers: &[&'static str] = match what.camera {
            Camera::Off => &[],
            Camera::Single => &[""],
            Camera::Simulcast => &SIMULCAST_RIDS,
        };
        if !layers.is_empty() {
            let ssrcs: Vec<u32> = layers.iter().map(|_| next()).collect();
            let codings = layers
                .iter()
                .zip(&ssrcs)
                .map(|(rid, ssrc)| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: (*rid).to_owned(),
                        ssrc: Some(*ssrc),
                        ..Default::default()
                    },
                    codec: media::vp8(),
                    ..Default::default()
                })
                .collect();
            let sender = pc.add_track(MediaStreamTrack::new(
                stream.to_owned(),
                format!("{stream}-camera"),
                "camera".into(),
                RtpCodecKind::Video,
                codings,
            ))?;
            for (i, (rid, ssrc)) in layers.iter().zip(ssrcs).enumerate() {
                let rid = (!rid.is_empty()).then_some(*rid);
                camera.push(Stream::new(sender, ssrc, i as u8, rid));
            }
            published.push((sender, Source::Camera));
        }
        let offer = pc.create_offer(None)?;
        pc.set_local_description(now, offer)?;
        let Some(sdp) = pc.local_description().map(|d| d.sdp) else {
            return fail("no publish offer");
        };
        let mut tracks = Vec::new();
        let mut camera_mid = None;
        for (sender, source) in published {
            let tid = RTCRtpTransceiverId::from(sender);
            let Some(mid) = pc.rtp_transceiver(tid).and_then(|t| t.mid().clone()) else {
                return fail("a published track without a mid");
            };
            if source == Source::Camera {
                camera_mid = Some(mid.clone());
            }
            tracks.push(PublishedTrack { mid, source });
        }
        let publisher = Publisher {
            ep: Endpoint::new(pc, now, addr, SFU_ADDR),
            microphone,
            camera,
            camera_mid,
            stopped_layers: HashSet::new(),
            ext: Extensions::default(),
            keyframe_due: true,
            next_frame: now,
            next_audio: now,
            frames: 0,
            audio_packets: 0,
            keyframe_requests: 0,
        };
        Ok((publisher, sdp, tracks))
    }
    /// The ids the answer gave the extensions the publisher writes.
    pub(super) fn learn_extensions(&mut self) {
        let mut ids = |sender: RTCRtpSenderId| -> Vec<(String, u8)> {
            self.ep
                .pc
                .rtp_sender(sender)
                .map(|mut s| {
                    s.get_parameters()
                        .rtp_parameters
                        .header_extensions
                        .iter()
                        .filter_map(|e| Some((e.uri.clone(), u8::try_from(e.id).ok()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let find =
            |ids: &[(String, u8)], uri: &str| ids.iter().find(|(u, _)| u == uri).map(|(_, id)| *id);
        if let Some(s) = self.camera.first() {
            let v = ids(s.sender);
            self.ext.mid = find(&v, rtc::sdp::extmap::SDES_MID_URI);
            self.ext.rid = find(&v, rtc::sdp::extmap::SDES_RTP_STREAM_ID_URI);
        }
        if let Some(s) = &self.microphone {
            let a = ids(s.sender);
            self.ext.audio_level = find(&a, AUDIO_LEVEL_URI);
        }
    }

    /// A keyframe request makes the next frame a keyframe, on every layer.
    pub(super) fn feedback(&mut self, m: &RTCMessage) {
        if let RTCMessage::RtcpPacket(_, packets) = m {
            for p in packets {
                if let Some(pli) = p.as_any().downcast_ref::<PictureLossIndication>()
                    && self.camera.iter().any(|s| s.ssrc == pli.media_ssrc)
                {
                    self.keyframe_requests += 1;
                    self.keyframe_due = true;
                }
            }
        }
    }

    pub(super) fn send_frame(
        &mut self,
        now: Instant,
        config: &MeetingConfig,
    ) -> Result<(), HarnessError> {
        let keyframe = std::mem::take(&mut self.keyframe_due);
        let frame = self.frames;
        self.frames += 1;
        let per_frame = config.packets_per_frame.max(1);
        let layers = self.camera.len();
        for layer in 0..layers {
            // As a browser's layers: each a quarter of the pixels, and about a quarter of the
            // bitrate, of the one above it (the full layer gets `video_payload`).
            let size = config.video_payload >> (2 * (layers - 1 - layer));
            if self.stopped_layers.contains(&self.camera[layer].layer) {
                continue;
            }
            for j in 0..per_frame {
                let s = &mut self.camera[layer];
                let c = Content {
                    layer: s.layer,
                    index: s.sent,
                    frame_start: j == 0,
                    keyframe: keyframe && j == 0,
                };
                let mut header = rtc::rtp::header::Header {
                    version: 2,
                    marker: j + 1 == per_frame,
                    payload_type: VP8_PT,
                    sequence_number: s.seq,
                    timestamp: s.ts_base.wrapping_add(frame.wrapping_mul(3_000)),
                    ssrc: s.ssrc,
                    ..Default::default()
                };
                // Simulcast layers are told apart by mid and rid (the SDP names no SSRCs).
                if let (Some(rid), Some(rid_id), Some(mid_id), Some(mid)) =
                    (s.rid, self.ext.rid, self.ext.mid, &self.camera_mid)
                {
                    header.set_extension(mid_id, Bytes::from(mid.clone().into_bytes()))?;
                    header.set_extension(rid_id, Bytes::from_static(rid.as_bytes()))?;
                }
                s.seq = s.seq.wrapping_add(1);
                s.sent += 1;
                let packet = rtc::rtp::Packet {
                    header,
                    payload: payload(c, size).into(),
                };
                let sender = s.sender;
                write(&mut self.ep, sender, now, packet)?;
            }
        }
        Ok(())
    }

    pub(super) fn send_audio(
        &mut self,
        now: Instant,
        config: &MeetingConfig,
        speaking: bool,
    ) -> Result<(), HarnessError> {
        let n = self.audio_packets;
        self.audio_packets += 1;
        let level_id = self.ext.audio_level;
        let Some(s) = self.microphone.as_mut() else {
            return Ok(());
        };
        let mut header = rtc::rtp::header::Header {
            version: 2,
            payload_type: OPUS_PT,
            sequence_number: s.seq,
            timestamp: s.ts_base.wrapping_add(n.wrapping_mul(960)),
            ssrc: s.ssrc,
            ..Default::default()
        };
        if let Some(id) = level_id {
            // RFC 6464: voice flag and -dBov (speech loud, silence 127).
            let level = if speaking { 0x80 | 10 } else { 127 };
            header.set_extension(id, Bytes::copy_from_slice(&[level]))?;
        }
        let c = Content {
            layer: 0,
            index: s.sent,
            frame_start: false,
            keyframe: false,
        };
        s.seq = s.seq.wrapping_add(1);
        s.sent += 1;
        let packet = rtc::rtp::Packet {
            header,
            payload: payload(c, config.audio_payload).into(),
        };
        let sender = s.sender;
        write(&mut self.ep, sender, now, packet)
    }
}

fn write(
    ep: &mut Endpoint,
    sender: RTCRtpSenderId,
    now: Instant,
    packet: rtc::rtp::Packet,
) -> Result<(), HarnessError> {
    let Some(mut s) = ep.pc.rtp_sender(sender) else {
        return fail("the publisher's sender is gone");
    };
    s.write_rtp(now, packet)?;
    Ok(())
}

impl Client {
    pub(super) fn record(&mut self, now: Instant, packet: &rtc::rtp::Packet, keep: bool) {
        let ssrc = packet.header.ssrc;
        let Some(&(from, source)) = self
            .ssrc_mid
            .get(&ssrc)
            .and_then(|mid| self.tracks.get(mid))
        else {
            return;
        };
        let content = content(&packet.payload);
        if let Some(c) = content {
            self.intact.insert((from, source, c.layer, c.index));
        }
        if keep {
            self.received.push(Received {
                at: now,
                from,
                source,
                ssrc,
                seq: packet.header.sequence_number,
                timestamp: packet.header.timestamp,
                marker: packet.header.marker,
                content,
            });
        }
    }
}
