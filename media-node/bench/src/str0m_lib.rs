//! str0m 0.25 set up as close to the node's `rtc` peers as str0m allows: RTP mode (packets
//! in and out, no depacketizing), Opus 111 and VP8 96, the same header extensions, the SFU
//! side ICE-lite with one host candidate and fixed ICE credentials. Differences that cost
//! work are listed in the README section.

use crate::harness::{Library, Media, Outgoing, Peer};
use anyhow::{Context, Result, anyhow, bail};
use aula_sfu::testing::SFU_ADDR;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid, Pt};
use str0m::net::{DatagramSend, Protocol, Receive};
use str0m::rtp::{Extension, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};

const OPUS_PT: u8 = aula_sfu::media::OPUS_PT;
const VP8_PT: u8 = aula_sfu::media::VP8_PT;
/// str0m answers NACKs only with RTX (RFC 4588), so video gets an RTX payload type; the
/// node's `rtc` resends on the original SSRC instead. Both keep sent packets for resending.
const VP8_RTX_PT: u8 = 97;

#[derive(Default)]
pub struct Str0mLib;

/// An RTP packet as the SFU needs it: the payload is shared, not copied, per subscriber.
pub struct Str0mRtp {
    seq_no: SeqNo,
    time: u32,
    marker: bool,
    payload: Arc<[u8]>,
}

struct Sending {
    mid: Mid,
    pt: Pt,
    /// Video is kept for resending on NACK, audio is not (as `rtc`'s NACK responder, which
    /// only serves streams that negotiated `nack`).
    nackable: bool,
}

pub struct Str0mPeer {
    rtc: Rtc,
    local: SocketAddr,
    remote: SocketAddr,
    sending: Option<Sending>,
    connected: bool,
    deadline: Option<Instant>,
}

/// Codecs and header extensions of the node (`aula_sfu::media`): Opus and VP8 with their
/// feedback, audio level, transport-wide sequence numbers (`twcc`), mid, rid and repaired rid.
fn config(twcc: bool) -> RtcConfig {
    let mut cfg = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(4, Extension::RtpMid)
        .set_extension(10, Extension::RtpStreamId)
        .set_extension(11, Extension::RepairedRtpStreamId);
    if twcc {
        cfg = cfg.set_extension(3, Extension::TransportSequenceNumber);
    }
    cfg.codec_config().add_config(
        OPUS_PT.into(),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams {
            min_p_time: Some(10),
            use_inband_fec: Some(true),
            ..Default::default()
        },
    );
    cfg.codec_config().add_config(
        VP8_PT.into(),
        Some(VP8_RTX_PT.into()),
        Codec::Vp8,
        Frequency::NINETY_KHZ,
        None,
        FormatParams::default(),
    );
    cfg
}

fn media_kind(media: Media) -> (MediaKind, Pt) {
    match media {
        Media::Video => (MediaKind::Video, VP8_PT.into()),
        Media::Audio => (MediaKind::Audio, OPUS_PT.into()),
    }
}

/// The SFU side: ICE-lite, the connection's own ICE credentials, the node's one host
/// candidate.
fn sfu_rtc(now: Instant, twcc: bool, ufrag: &str, pass: &str) -> Result<Rtc> {
    let mut rtc = config(twcc)
        .set_ice_lite(true)
        .set_local_ice_credentials(IceCreds {
            ufrag: ufrag.to_owned(),
            pass: pass.to_owned(),
        })
        .build(now);
    rtc.add_local_candidate(Candidate::host(SFU_ADDR, "udp")?)
        .ok_or_else(|| anyhow!("str0m refused the SFU's host candidate"))?;
    Ok(rtc)
}

/// A client (a browser's stand-in): full ICE with one host candidate.
fn client_rtc(now: Instant, addr: SocketAddr) -> Result<Rtc> {
    let mut rtc = config(true).build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp")?)
        .ok_or_else(|| anyhow!("str0m refused a client's host candidate"))?;
    Ok(rtc)
}

/// `offerer` adds one send-only track of `kind` and offers; `answerer` answers. The SDP goes
/// through text, as signalling carries it. Returns the track's mid.
fn negotiate(offerer: &mut Rtc, answerer: &mut Rtc, kind: MediaKind) -> Result<Mid> {
    let mut change = offerer.sdp_api();
    let mid = change.add_media(
        kind,
        Direction::SendOnly,
        Some("publisher".into()),
        Some("publisher-track".into()),
        None,
    );
    let (offer, pending) = change.apply().ok_or_else(|| anyhow!("nothing to offer"))?;
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string())?;
    let answer = answerer.sdp_api().accept_offer(offer)?;
    let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string())?;
    offerer.sdp_api().accept_answer(pending, answer)?;
    Ok(mid)
}

impl Str0mPeer {
    fn new(
        rtc: Rtc,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        sending: Option<Sending>,
    ) -> Self {
        Str0mPeer {
            rtc,
            local,
            remote,
            sending,
            connected: false,
            deadline: Some(now),
        }
    }

    fn write(
        &mut self,
        now: Instant,
        seq_no: SeqNo,
        time: u32,
        marker: bool,
        payload: Arc<[u8]>,
    ) -> Result<()> {
        let s = self
            .sending
            .as_ref()
            .ok_or_else(|| anyhow!("this peer sends no track"))?;
        let mut api = self.rtc.direct_api();
        let tx = api
            .stream_tx_by_mid(s.mid, None)
            .ok_or_else(|| anyhow!("no send stream for the track"))?;
        tx.write_rtp(
            RtpWrite::new(s.pt, seq_no, time, now, payload)
                .marker(marker)
                .nackable(s.nackable),
        );
        Ok(())
    }
}

impl Library for Str0mLib {
    const NAME: &'static str = "str0m 0.25";
    type Peer = Str0mPeer;

    fn publish_pair(
        &mut self,
        now: Instant,
        media: Media,
        client: SocketAddr,
    ) -> Result<(Str0mPeer, Str0mPeer)> {
        let (kind, pt) = media_kind(media);
        let mut c = client_rtc(now, client)?;
        let mut s = sfu_rtc(
            now,
            true,
            "pubufragpubufrag",
            "pubpwd-pubpwd-pubpwd-pubpwd-pub",
        )?;
        let mid = negotiate(&mut c, &mut s, kind).context("negotiating the publish connection")?;
        let sending = Sending {
            mid,
            pt,
            nackable: media == Media::Video,
        };
        Ok((
            Str0mPeer::new(c, now, client, SFU_ADDR, Some(sending)),
            Str0mPeer::new(s, now, SFU_ADDR, client, None),
        ))
    }

    fn subscribe_pair(
        &mut self,
        now: Instant,
        media: Media,
        client: SocketAddr,
        index: usize,
    ) -> Result<(Str0mPeer, Str0mPeer)> {
        let (kind, pt) = media_kind(media);
        // No transport-wide sequence numbers towards subscribers: the node's `rtc` peers
        // only receive TWCC (`configure_twcc_receiver_only`), and str0m would otherwise add
        // them to every forwarded packet and process the subscribers' feedback.
        let mut s = sfu_rtc(
            now,
            false,
            &format!("sub{index:013}"),
            &format!("subpwd{index:026}"),
        )?;
        let mut c = client_rtc(now, client)?;
        let mid = negotiate(&mut s, &mut c, kind).context("negotiating a subscribe connection")?;
        let sending = Sending {
            mid,
            pt,
            nackable: media == Media::Video,
        };
        Ok((
            Str0mPeer::new(c, now, client, SFU_ADDR, None),
            Str0mPeer::new(s, now, SFU_ADDR, client, Some(sending)),
        ))
    }

    fn send(peer: &mut Str0mPeer, now: Instant, p: Outgoing) -> Result<()> {
        peer.write(now, p.seq.into(), p.timestamp, p.marker, p.payload.into())
    }
}

impl Peer for Str0mPeer {
    type Datagram = DatagramSend;
    type Rtp = Str0mRtp;

    fn receive(&mut self, now: Instant, data: &[u8]) -> Result<()> {
        let r = Receive::new(Protocol::Udp, self.remote, self.local, data)?;
        self.rtc.handle_input(Input::Receive(now, r))?;
        Ok(())
    }

    fn timeout(&mut self, now: Instant) -> Result<()> {
        self.rtc.handle_input(Input::Timeout(now))?;
        Ok(())
    }

    fn poll(
        &mut self,
        now: Instant,
        out: &mut Vec<DatagramSend>,
        rtp: &mut Vec<Str0mRtp>,
    ) -> Result<()> {
        // str0m's contract: drain to a timeout after every input. A timeout that is already
        // due (its pacer asks for one after every write) is handled at once, a few times at
        // most.
        let mut due = 0;
        loop {
            match self.rtc.poll_output()? {
                Output::Transmit(t) => {
                    if t.destination != self.remote {
                        bail!(
                            "str0m sent to {}, not its peer {}",
                            t.destination,
                            self.remote
                        );
                    }
                    out.push(t.contents);
                }
                Output::Event(Event::RtpPacket(p)) => rtp.push(Str0mRtp {
                    seq_no: p.seq_no,
                    time: p.header.timestamp,
                    marker: p.header.marker,
                    payload: p.payload,
                }),
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => {
                    bail!("a str0m peer disconnected")
                }
                Output::Event(_) => {}
                Output::Timeout(t) => {
                    self.deadline = Some(t);
                    if t <= now && due < 16 {
                        due += 1;
                        self.rtc.handle_input(Input::Timeout(now))?;
                        continue;
                    }
                    return Ok(());
                }
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn connected(&self) -> bool {
        self.connected
    }

    fn forward(&mut self, now: Instant, p: &Str0mRtp) -> Result<()> {
        self.write(now, p.seq_no, p.time, p.marker, Arc::clone(&p.payload))
    }

    fn payload(packet: &Str0mRtp) -> &[u8] {
        &packet.payload
    }
}
