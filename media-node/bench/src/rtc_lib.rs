//! `rtc` 0.21 (webrtc-rs), configured exactly as the node's peer connections: the SFU side
//! comes from `aula_sfu::media::peer_connection` (ICE-lite, one host candidate, Opus + VP8,
//! audio level, NACK responder, RTCP reports, TWCC feedback, keyframe-request passthrough).

use crate::harness::{Library, Media, Outgoing, Peer, SFU_ADDR};
use anyhow::{Context, Result, anyhow, bail};
use aula_sfu::media::{OPUS_PT, VP8_PT, engine_and_interceptors, peer_connection, track};
use bytes::BytesMut;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::configure_twcc_sender_only;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
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

pub struct RtcPeer {
    pc: RTCPeerConnection,
    local: SocketAddr,
    remote: SocketAddr,
    sending: Option<Sending>,
    connected: bool,
    deadline: Option<Instant>,
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

/// A client peer (a browser's stand-in): full ICE with one host candidate, the node's
/// codecs and interceptors, plus transport-wide sequence numbers on what it sends, as
/// browsers put them (so the SFU side produces TWCC feedback as in real life).
fn client_pc(now: Instant, addr: SocketAddr) -> Result<RTCPeerConnection> {
    let (mut engine, registry) = engine_and_interceptors()?;
    let registry = configure_twcc_sender_only(registry, &mut engine)?;
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .build(now)?;
    aula_sfu::media::add_host_candidate(&mut pc, addr)?;
    Ok(pc)
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
            pc,
            local,
            remote,
            sending,
            connected: false,
            deadline: Some(now),
        }
    }

    fn write(&mut self, now: Instant, packet: rtc::rtp::Packet) -> Result<()> {
        let s = self
            .sending
            .as_ref()
            .ok_or_else(|| anyhow!("this peer sends no track"))?;
        self.pc
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
        let mut s = peer_connection(
            now,
            "pubufragpubufrag",
            "pubpwd-pubpwd-pubpwd-pubpwd-pub",
            SFU_ADDR,
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
        let mut s = peer_connection(now, &ufrag, &pwd, SFU_ADDR)?;
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
        // Copied into the connection's own buffer, as the node does from its socket buffer.
        self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: self.remote,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        })?;
        Ok(())
    }

    fn timeout(&mut self, now: Instant) -> Result<()> {
        self.pc.handle_timeout(now)?;
        Ok(())
    }

    fn poll(
        &mut self,
        now: Instant,
        out: &mut Vec<BytesMut>,
        rtp: &mut Vec<Self::Rtp>,
    ) -> Result<()> {
        // A few rounds at most: a timer due now may queue more output.
        for _ in 0..16 {
            while let Some(ev) = self.pc.poll_event() {
                match ev {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                        RTCPeerConnectionState::Connected,
                    ) => self.connected = true,
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                        RTCPeerConnectionState::Failed,
                    )
                    | RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                        RTCIceConnectionState::Failed,
                    ) => bail!("an rtc peer connection failed"),
                    _ => {}
                }
            }
            while let Some(msg) = self.pc.poll_read() {
                if let RTCMessage::RtpPacket(_, packet) = msg.message {
                    rtp.push(packet);
                }
            }
            while let Some(w) = self.pc.poll_write() {
                if w.transport.peer_addr != self.remote {
                    bail!(
                        "rtc sent to {}, not its peer {}",
                        w.transport.peer_addr,
                        self.remote
                    );
                }
                out.push(w.message);
            }
            self.deadline = self.pc.poll_timeout();
            match self.deadline {
                Some(d) if d <= now => self.pc.handle_timeout(now)?,
                _ => break,
            }
        }
        Ok(())
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn connected(&self) -> bool {
        self.connected
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
        self.write(now, p)
    }

    fn payload(packet: &Self::Rtp) -> &[u8] {
        &packet.payload
    }
}
