//! Building the node's side of a peer connection with the sans-IO `rtc` crate: Opus and VP8
//! only (what every browser sends), the audio level extension, NACK/RTCP reports/TWCC from
//! the default interceptors, send-side congestion control (transport-wide sequence numbers on
//! what the node sends, the browser's TWCC feedback into `rtc`'s GCC estimator), and a last
//! interceptor that lets keyframe requests through to the SFU and reads the estimate off the
//! feedback. ICE-lite with one host candidate: the node's UDP port on its public address.
//!
//! Why TWCC and not REMB: with TWCC the browser only reports when each packet arrived and
//! the estimate is made where the packets are sent, so the node sees a subscriber's downlink
//! within a feedback interval (~100 ms) and counts everything it sends (audio, all video,
//! retransmissions). REMB is the browser's own receive-side estimate, which Chrome computes
//! only when transport-cc is *not* negotiated, for the whole connection, and sends about once
//! a second; libwebrtc has been moving away from it. `rtc` 0.21 has the TWCC sender, the
//! feedback history and a GCC estimator (delay and loss halves); it has no REMB estimator.

use rtc::interceptor::{
    Attribute, BandwidthEstimator, CongestionControlBuilder, EstimatorStats, Gcc, Interceptor,
    NackGeneratorBuilder, Packet, PacketReport, Registry, Slot, StreamInfo, TaggedPacket,
    TwccSenderBuilder,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 96;

#[derive(Debug, thiserror::Error)]
#[error("WebRTC: {0}")]
pub struct MediaError(#[from] pub rtc::shared::error::Error);

pub fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![feedback("transport-cc", "")],
    }
}

pub fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            feedback("nack", ""),
            feedback("nack", "pli"),
            feedback("ccm", "fir"),
            feedback("transport-cc", ""),
        ],
    }
}

/// A track of one stream (Opus for audio, VP8 for video) sent with a fixed SSRC.
pub fn track(
    stream: String,
    id: String,
    label: String,
    kind: RtpCodecKind,
    ssrc: u32,
) -> MediaStreamTrack {
    let codec = if kind == RtpCodecKind::Audio {
        opus()
    } else {
        vp8()
    };
    MediaStreamTrack::new(
        stream,
        id,
        label,
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

/// Whether an RTCP packet asks for a keyframe.
pub fn is_keyframe_request(p: &dyn rtc::rtcp::Packet) -> bool {
    let p = p.as_any();
    p.is::<PictureLossIndication>() || p.is::<FullIntraRequest>()
}

fn feedback(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    }
}

/// Where the downlink estimate starts before any feedback: enough for audio and a few
/// small layers, so a meeting starts with pictures; GCC corrects it within a second or two
/// on a slower link and climbs (8 % a second) on a faster one.
pub const INITIAL_ESTIMATE_BPS: f64 = 1_500_000.0;
const MIN_ESTIMATE_BPS: f64 = 60_000.0;
const MAX_ESTIMATE_BPS: f64 = 20_000_000.0;
/// Over how long the acknowledged rate is measured.
const ACKED_WINDOW: Duration = Duration::from_secs(1);
/// Loss (smoothed over feedback batches) above which the estimate follows what arrived.
const HEAVY_LOSS: f64 = 0.10;
/// Loss above which the estimate does not grow.
const SOME_LOSS: f64 = 0.02;
/// After congestion, the estimate climbs past the rate the link then carried by this
/// share of it per second, and at least [`RECOVERY_MIN_BPS`] per second, from
/// [`RECOVERY_START_BPS`] above it.
const RECOVERY_SHARE_PER_SECOND: f64 = 0.05;
const RECOVERY_MIN_BPS: f64 = 30_000.0;
const RECOVERY_START_BPS: f64 = 60_000.0;

/// The subscriber's downlink estimate: `rtc`'s GCC, bounded by what the link has shown it
/// carries. `rtc`'s GCC grows its target by 8 % a second (delay half) and 28 % a second (loss
/// half) for as long as the feedback shows neither queueing nor loss, however little is
/// sent: with video paused on a 500 kbit/s link it climbed to 8 Mbit/s on audio alone, the
/// allocator resumed everything, and the link's queue dropped audio with the video; and its
/// loss half comes down from such a value by at most a fifth per 200 ms. Here heavy loss
/// brings the estimate to what arrived at once, and after congestion (heavy loss or a
/// delay-based decrease) it climbs past the rate the link then carried slowly (see
/// [`RECOVERY_SHARE_PER_SECOND`]), so the allocator's next increase comes later and is
/// smaller than the one that failed. Until a link has been congested GCC's estimate stands:
/// with no probing packets of its own, its growth is how the allocator finds room to
/// resume a paused video, and a camera without simulcast costs more than any bound on what
/// audio alone has shown.
pub struct DownlinkEstimator {
    gcc: Gcc,
    /// What the browser said arrived: (feedback instant, bytes).
    acked: VecDeque<(Instant, usize)>,
    acked_bytes: usize,
    /// Loss over recent feedback batches.
    loss: Option<f64>,
    /// When the link was last congested, and the acknowledged rate then.
    congested: Option<(Instant, f64)>,
    /// GCC's delay-based half after the last feedback (a drop is a decrease).
    delay_based: f64,
    target: f64,
}

impl DownlinkEstimator {
    pub fn new(initial: f64) -> Self {
        DownlinkEstimator {
            gcc: Gcc::new(initial, MIN_ESTIMATE_BPS, MAX_ESTIMATE_BPS),
            acked: VecDeque::new(),
            acked_bytes: 0,
            loss: None,
            congested: None,
            delay_based: initial,
            target: initial.clamp(MIN_ESTIMATE_BPS, MAX_ESTIMATE_BPS),
        }
    }

    /// Bits per second the browser acknowledged over the last [`ACKED_WINDOW`] (`None`
    /// until feedback spans some time).
    fn acked_rate(&mut self, now: Instant) -> Option<f64> {
        let cutoff = now.checked_sub(ACKED_WINDOW).unwrap_or(now);
        while let Some(&(at, bytes)) = self.acked.front() {
            if at >= cutoff {
                break;
            }
            self.acked.pop_front();
            self.acked_bytes -= bytes;
        }
        let oldest = self.acked.front()?.0;
        // A rate from a window shorter than a few feedback intervals says little.
        let span = now
            .saturating_duration_since(oldest)
            .max(Duration::from_millis(200));
        Some(self.acked_bytes as f64 * 8.0 / span.as_secs_f64())
    }
}

impl BandwidthEstimator for DownlinkEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        if reports.is_empty() {
            return;
        }
        self.gcc.on_reports(now, reports);
        let arrived: usize = reports.iter().filter(|r| r.arrived).map(|r| r.size).sum();
        if arrived > 0 {
            self.acked.push_back((now, arrived));
            self.acked_bytes += arrived;
        }
        let lost = reports.iter().filter(|r| !r.arrived).count();
        let sample = lost as f64 / reports.len() as f64;
        let loss = self.loss.map_or(sample, |l| 0.8 * l + 0.2 * sample);
        self.loss = Some(loss);
        let delay_based = self.gcc.delay_based_bitrate();
        let decreased = delay_based < self.delay_based;
        self.delay_based = delay_based;
        let Some(acked) = self.acked_rate(now) else {
            self.target = self.gcc.target_bitrate().min(self.target);
            return;
        };
        let mut target = self.gcc.target_bitrate();
        if loss > HEAVY_LOSS && sample > HEAVY_LOSS {
            // What arrives is what the link carries; less, by how much was lost.
            target = target.min(acked * (1.0 - 0.5 * loss));
            self.congested = Some((now, acked));
        } else if decreased {
            self.congested = Some((now, acked));
        } else if loss > SOME_LOSS {
            target = target.min(self.target);
        }
        if let Some((at, rate)) = self.congested {
            let since = now.saturating_duration_since(at).as_secs_f64();
            let step = (rate * RECOVERY_SHARE_PER_SECOND).max(RECOVERY_MIN_BPS);
            let allowed = if since == 0.0 {
                rate
            } else {
                rate + RECOVERY_START_BPS + step * since
            };
            target = target.min(allowed);
        }
        self.target = target.clamp(MIN_ESTIMATE_BPS, MAX_ESTIMATE_BPS);
    }

    fn target_bitrate(&self) -> f64 {
        self.target
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.gcc.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.gcc.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.gcc.stats()
    }
}

/// A connection's send-side bandwidth estimate in bits per second, written by its
/// interceptor chain when GCC changes it and read by the SFU's allocator, with how many
/// packets the browser's transport-wide feedback has reported on and how many of those it
/// says were lost (the allocator's evidence of congestion). Shared because the chain is owned
/// by `rtc` and runs on the fan-out threads.
#[derive(Debug, Clone)]
pub struct Estimate(Arc<EstimateInner>);

#[derive(Debug)]
struct EstimateInner {
    bps: AtomicU64,
    reported: AtomicU64,
    lost: AtomicU64,
}

impl Default for Estimate {
    fn default() -> Self {
        Estimate::starting_at(INITIAL_ESTIMATE_BPS)
    }
}

impl Estimate {
    fn starting_at(bps: f64) -> Self {
        Estimate(Arc::new(EstimateInner {
            bps: AtomicU64::new(bps as u64),
            reported: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }))
    }
}

/// What a connection's feedback has said so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Feedback {
    /// GCC's estimate, bits per second.
    pub bps: u64,
    /// Packets the browser reported on (arrived or lost), since the connection began.
    pub reported: u64,
    /// Of those, reported lost.
    pub lost: u64,
}

impl Estimate {
    pub fn bits_per_second(&self) -> u64 {
        self.0.bps.load(Ordering::Relaxed)
    }

    pub fn feedback(&self) -> Feedback {
        Feedback {
            bps: self.bits_per_second(),
            reported: self.0.reported.load(Ordering::Relaxed),
            lost: self.0.lost.load(Ordering::Relaxed),
        }
    }

    fn set(&self, bps: f64) {
        self.0.bps.store(bps.max(0.0) as u64, Ordering::Relaxed);
    }

    fn count(&self, reported: u64, lost: u64) {
        self.0.reported.fetch_add(reported, Ordering::Relaxed);
        self.0.lost.fetch_add(lost, Ordering::Relaxed);
    }
}

/// The codecs, extensions and interceptors of one peer connection (each needs its own:
/// both carry per-connection state). Test clients use the same, so they negotiate what
/// browsers negotiate with the node.
pub fn engine_and_interceptors() -> Result<(MediaEngine, Registry), MediaError> {
    engine_interceptors_and_estimate(INITIAL_ESTIMATE_BPS).map(|(e, r, _)| (e, r))
}

/// As [`engine_and_interceptors`], with the handle its estimate is read from.
///
/// No pacer: the SFU keeps what it forwards within the estimate by choosing layers (the
/// allocator), so a pacer would only add queueing delay and a timer per packet; `rtc`'s
/// pacer is the choice for an endpoint that encodes its own media.
/// `initial_bps`: where the estimate starts before any feedback (normally
/// [`INITIAL_ESTIMATE_BPS`]).
pub fn engine_interceptors_and_estimate(
    initial_bps: f64,
) -> Result<(MediaEngine, Registry, Estimate), MediaError> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus(),
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: vp8(),
            payload_type: VP8_PT,
        },
        RtpCodecKind::Video,
    )?;
    engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    // Last in the chain: after the NACK responder and the report interceptors have seen
    // the feedback, hand keyframe requests to the SFU (everything else ends there).
    let estimate = Estimate::starting_at(initial_bps);
    let registry = Registry::new().with(
        Slot::from(14_000),
        KeyframeRequests {
            estimate: estimate.clone(),
            ..Default::default()
        },
    );
    // The defaults register the transport-cc extension and feedback for both kinds and the
    // TWCC receiver (feedback for what the node receives); the sender half numbers what the
    // node sends, and the congestion controller turns the browser's feedback into GCC's
    // estimate.
    let registry = register_default_interceptors(registry, &mut engine)?
        // A missing packet is asked for at most 10 times, as Chrome does (the default asks
        // every 100 ms for as long as it is in the log: on a congested link the requests
        // and their answers crowd out the media that is left).
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_max_nacks_per_packet(10)
                .build(),
        )
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        .with(
            Slot::CongestionControl,
            CongestionControlBuilder::new(DownlinkEstimator::new(initial_bps)).build(),
        );
    Ok((engine, registry, estimate))
}

/// A peer connection answering (publish) or offering (subscribe) with ICE-lite, the given
/// ICE credentials (the SFU routes STUN by the username fragment) and one host candidate;
/// its downlink estimate starts at `initial_bps`.
pub fn peer_connection(
    now: Instant,
    ufrag: &str,
    pwd: &str,
    candidate: SocketAddr,
    initial_bps: f64,
) -> Result<(RTCPeerConnection, Estimate), MediaError> {
    let (engine, registry, estimate) = engine_interceptors_and_estimate(initial_bps)?;
    let settings = SettingEngineBuilder::new()
        .with_lite(true)
        .with_ice_credentials(ufrag.to_owned(), pwd.to_owned())
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .build(now)?;
    add_host_candidate(&mut pc, candidate)?;
    Ok((pc, estimate))
}

/// Gives a peer connection its one host candidate (a UDP address) and ends gathering: there
/// is nothing else to gather.
pub fn add_host_candidate(pc: &mut RTCPeerConnection, addr: SocketAddr) -> Result<(), MediaError> {
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()?;
    pc.add_local_candidate(RTCIceCandidate::from(&host).to_json()?)?;
    pc.add_local_candidate(RTCIceCandidateInit::default())?;
    Ok(())
}

/// Lets PLI and FIR through to the application; other feedback (receiver reports, NACKs,
/// TWCC) has been handled by the interceptors before this one. Reads the congestion
/// controller's new estimate off the feedback that produced it.
#[derive(Default)]
pub struct KeyframeRequests {
    estimate: Estimate,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&Attribute::TargetBitrateChanged {
                bits_per_second: 0.0,
            })
        {
            self.estimate.set(*bits_per_second);
        }
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(cc) = p.as_any().downcast_ref::<TransportLayerCc>() {
                    let reported = u64::from(cc.packet_status_count);
                    let arrived = (cc.recv_deltas.len() as u64).min(reported);
                    self.estimate.count(reported, reported - arrived);
                }
            }
            let wanted = packets.iter().any(|p| is_keyframe_request(p.as_ref()));
            if wanted {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;
    use std::time::Duration;

    const PACKET: usize = 1_200;
    const LINK_BPS: f64 = 500_000.0;

    /// A sender that sends what the estimate allows (as the allocator makes the node do,
    /// but at most `wanted` of the second) through a 500 kbit/s link with a 200 ms queue (`tc tbf`), the
    /// browser's feedback every 100 ms. Returns the estimate every 100 ms and, per second,
    /// how many packets the link dropped.
    fn over_a_capped_link(wanted: impl Fn(u64) -> f64, seconds: u64) -> (Vec<f64>, Vec<usize>) {
        let start = Instant::now();
        let mut e = DownlinkEstimator::new(INITIAL_ESTIMATE_BPS);
        let mut busy_until = start;
        let mut unreported = Vec::new();
        let mut estimates = Vec::new();
        let mut dropped = vec![0; seconds as usize];
        let mut credit = 0.0;
        let tick = Duration::from_millis(5);
        let mut id = 0u64;
        for step in 1..=(seconds * 200) {
            let now = start + tick * step as u32;
            credit += e.target_bitrate().min(wanted(step / 200)) * tick.as_secs_f64();
            while credit >= (PACKET * 8) as f64 {
                credit -= (PACKET * 8) as f64;
                id += 1;
                let at = busy_until.max(now);
                let arrival = if at.saturating_duration_since(now) > Duration::from_millis(200) {
                    dropped[(step / 200).min(seconds - 1) as usize] += 1;
                    None
                } else {
                    busy_until = at + Duration::from_secs_f64((PACKET * 8) as f64 / LINK_BPS);
                    Some(busy_until.saturating_duration_since(start))
                };
                unreported.push(PacketReport {
                    ssrc: 1,
                    id,
                    rtp_sequence_number: id as u16,
                    is_twcc: true,
                    twcc_sequence_number: id as u16,
                    size: PACKET,
                    arrived: arrival.is_some(),
                    departure: now,
                    arrival,
                    ecn: Ecn::NotEct,
                });
            }
            if step % 20 == 0 {
                // The browser reports what has arrived (or is overdue) by now.
                let due = now.saturating_duration_since(start);
                let (report, later): (Vec<_>, Vec<_>) = unreported
                    .drain(..)
                    .partition(|r: &PacketReport| r.arrival.is_none_or(|a| a <= due));
                unreported = later;
                e.on_reports(now, &report);
                estimates.push(e.target_bitrate());
            }
        }
        (estimates, dropped)
    }

    #[test]
    fn on_a_500_kbit_link_the_estimate_comes_down_to_it_and_does_not_climb_far_above_it() {
        let (estimates, dropped) = over_a_capped_link(|_| 3_000_000.0, 30);
        // The first seconds overshoot: the estimate starts at 1.5 Mbit/s.
        let settled = &estimates[50..];
        let highest = settled.iter().copied().fold(0.0, f64::max);
        assert!(
            highest < LINK_BPS * 1.5,
            "the estimate climbed to {highest:.0} bit/s on a 500 kbit/s link"
        );
        let lost: usize = dropped[5..].iter().sum();
        let sent_per_second = LINK_BPS / (PACKET * 8) as f64;
        // A sender filling the estimate exactly keeps the link at the edge (the estimate
        // holds between 2 and 10 % loss); the node sends layers within 90 % of it.
        assert!(
            (lost as f64) < 25.0 * sent_per_second * 0.10,
            "the link dropped {lost} packets in 25 s after the start ({dropped:?})"
        );
    }

    #[test]
    fn when_video_is_paused_after_congestion_the_estimate_climbs_back_slowly() {
        // Congestion for 5 s, then only audio to send (100 kbit/s) for 15 s: GCC's own
        // halves grow 8 % and 28 % a second whatever is sent.
        let (estimates, _) =
            over_a_capped_link(|s| if s < 5 { 3_000_000.0 } else { 100_000.0 }, 20);
        let ten_seconds_later = estimates[150];
        assert!(
            ten_seconds_later < LINK_BPS * 2.0,
            "10 s after the link was congested at 500 kbit/s the estimate is {ten_seconds_later:.0}"
        );
        // But it does grow: that is how a paused video is resumed when the link recovers.
        assert!(estimates[199] > estimates[60], "{estimates:?}");
    }
}
