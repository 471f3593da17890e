//! `rtc` 0.21 (webrtc-rs), configured exactly as the node's peer connections: the SFU side
//! comes from `aula_sfu::media::peer_connection` (ICE-lite, one host candidate, Opus + VP8,
//! audio level, NACK responder, RTCP reports, TWCC feedback, keyframe-request passthrough).

use crate::harness::{Library, Media, Outgoing, Peer};
use anyhow::{Context, Result, anyhow, bail};
use aula_sfu::media::{INITIAL_ESTIMATE_BPS, OPUS_PT, VP8_PT, peer_connection, track};
use aula_sfu::testing::{Endpoint, SFU_ADDR, client_pc};
use bytes::BytesMut;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::net::SocketAddr;
use std::time::Instant;

#[derive(Default)]
pub struct RtcLib {
    next_ssrc: u32,
}

/// The track a peer sends: its sender, SSRC and payload type.
struct Sending {
    sender: RTCRtpSenderId,
    ssrc: u32,
    pt: u8,
}

/// One end, in memory (the SFU crate's test harness), and the track it sends if any.
pub struct RtcPeer {
    end: Endpoint,
    sending: Option<Sending>,
    /// Scratch for what the end received.
    received: Vec<RTCMessage>,
}

impl RtcLib {
    fn ssrc(&mut self) -> u32 {
        self.next_ssrc += 1;
        0x1000_0000 + self.next_ssrc
    }
}

fn kind(media: Media) -> (RtpCodecKind, u8) {
    match media {
        Media::Video => (RtpCodecKind::Video, VP8_PT),
        Media::Audio => (RtpCodecKind::Audio, OPUS_PT),
    }
}

/// Offer from `offerer`, answer from `answerer`, as SDP text (what signalling carries).
fn negotiate(
    now: Instant,
    offerer: &mut RTCPeerConnection,
    answerer: &mut RTCPeerConnection,
) -> Result<()> {
    let offer = offerer.create_offer(None)?;
    offerer.set_local_description(now, offer)?;
    let offer = offerer
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| anyhow!("no local offer"))?;
    answerer.set_remote_description(now, RTCSessionDescription::offer(offer)?)?;
    let answer = answerer.create_answer(None)?;
    answerer.set_local_description(now, answer)?;
    let answer = answerer
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| anyhow!("no local answer"))?;
    offerer.set_remote_description(now, RTCSessionDescription::answer(answer)?)?;
    Ok(())
}

impl RtcPeer {
    fn new(
        pc: RTCPeerConnection,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        sending: Option<Sending>,
    ) -> Self {
        RtcPeer {
            end: Endpoint::new(pc, now, local, remote),
            sending,
            received: Vec::new(),
        }
    }

    fn write(&mut self, now: Instant, packet: rtc::rtp::Packet) -> Result<()> {
        let s = self
            .sending
            .as_ref()
            .ok_or_else(|| anyhow!("this peer sends no track"))?;
        self.end
            .pc
            .rtp_sender(s.sender)
            .ok_or_else(|| anyhow!("the sender is gone"))?
            .write_rtp(now, packet)?;
        Ok(())
    }
}

impl Library for RtcLib {
    const NAME: &'static str = "rtc 0.21";
    type Peer = RtcPeer;

    fn publish_pair(
        &mut self,
        now: Instant,
        media: Media,
        client: SocketAddr,
    ) -> Result<(RtcPeer, RtcPeer)> {
        let (kind, pt) = kind(media);
        let ssrc = self.ssrc();
        let mut c = client_pc(now, client)?;
        let sender = c.add_track(track(
            "publisher".into(),
            "publisher-track".into(),
            media.name().into(),
            kind,
            ssrc,
        ))?;
        let (mut s, _) = peer_connection(
            now,
            "pubufragpubufrag",
            "pubpwd-pubpwd-pubpwd-pubpwd-pub",
            SFU_ADDR,
            INITIAL_ESTIMATE_BPS,
        )?;
        negotiate(now, &mut c, &mut s).context("negotiating the publish connection")?;
        Ok((
            RtcPeer::new(c, now, client, SFU_ADDR, Some(Sending { sender, ssrc, pt })),
            RtcPeer::new(s, now, SFU_ADDR, client, None),
        ))
    }

    fn subscribe_pair(
        &mut self,
        now: Instant,
        media: Media,
        client: SocketAddr,
        index: usize,
    ) -> Result<(RtcPeer, RtcPeer)> {
        let (kind, pt) = kind(media);
        let ssrc = self.ssrc();
        // Unique ICE credentials per connection, as the node's entropy makes them.
        let ufrag = format!("sub{index:013}");
        let pwd = format!("subpwd{index:026}");
        let (mut s, _) = peer_connection(now, &ufrag, &pwd, SFU_ADDR, INITIAL_ESTIMATE_BPS)?;
        let sender = s.add_track(track(
            "publisher".into(),
            "publisher-camera".into(),
            media.name().into(),
            kind,
            ssrc,
        ))?;
        let mut c = client_pc(now, client)?;
        negotiate(now, &mut s, &mut c).context("negotiating a subscribe connection")?;
        Ok((
            RtcPeer::new(c, now, client, SFU_ADDR, None),
            RtcPeer::new(s, now, SFU_ADDR, client, Some(Sending { sender, ssrc, pt })),
        ))
    }

    fn send(peer: &mut RtcPeer, now: Instant, p: Outgoing) -> Result<()> {
        let s = peer
            .sending
            .as_ref()
            .ok_or_else(|| anyhow!("the publisher sends no track"))?;
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: p.marker,
                payload_type: s.pt,
                sequence_number: p.seq as u16,
                timestamp: p.timestamp,
                ssrc: s.ssrc,
                ..Default::default()
            },
            payload: p.payload.into(),
        };
        peer.write(now, packet)
    }
}

impl Peer for RtcPeer {
    type Datagram = BytesMut;
    type Rtp = rtc::rtp::Packet;

    fn receive(&mut self, now: Instant, data: &[u8]) -> Result<()> {
        Ok(self.end.receive(now, data)?)
    }

    fn timeout(&mut self, now: Instant) -> Result<()> {
        Ok(self.end.timeout(now)?)
    }

    fn poll(
        &mut self,
        now: Instant,
        out: &mut Vec<BytesMut>,
        rtp: &mut Vec<Self::Rtp>,
    ) -> Result<()> {
        self.end
            .poll(now, out, &mut self.received, &mut Vec::new())?;
        for m in self.received.drain(..) {
            if let RTCMessage::RtpPacket(_, packet) = m {
                rtp.push(packet);
            }
        }
        Ok(())
    }

    fn deadline(&self) -> Option<Instant> {
        self.end.deadline()
    }

    fn connected(&self) -> bool {
        self.end.connected()
    }

    fn forward(&mut self, now: Instant, packet: &Self::Rtp) -> Result<()> {
        let (ssrc, pt) = match &self.sending {
            Some(s) => (s.ssrc, s.pt),
            None => bail!("this peer sends no track"),
        };
        // What the node's forward does: the subscriber track's SSRC and payload type, the
        // publisher leg's header extensions dropped.
        let mut p = packet.clone();
        p.header.ssrc = ssrc;
        p.header.payload_type = pt;
        p.header.extension = false;
        p.header.extensions.clear();
        // Without this, the publisher leg's padding stays and the marshalled header is
        // invalid: `rtc` sends nothing (since the TWCC sender adds an extension again).
        p.header.extensions_padding = 0;
        self.write(now, p)
    }

    fn payload(packet: &Self::Rtp) -> &[u8] {
        &packet.payload
    }
}
