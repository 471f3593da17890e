//! The synthetic microphone and camera of a [`crate::Client`]: RTP written at the rates a
//! browser sends, keyframes every 3 s and on request.

use crate::ClientStats;
use crate::payload::{HEADER_LEN, MTU_PAYLOAD, frame_packets, payload};
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

pub(crate) fn local_track(kind: RtpCodecKind, ssrc: u32, id: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(aula_sfu::media::track(
        format!("stream-{id}"),
        id.to_owned(),
        id.to_owned(),
        kind,
        ssrc,
    )))
}

pub(crate) async fn send_audio(
    track: Arc<TrackLocalStaticRTP>,
    sender: u32,
    loudness: u8,
    talking: bool,
    stats: Arc<ClientStats>,
    sending: Arc<AtomicBool>,
) {
    let mut every = tokio::time::interval(Duration::from_millis(20));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ssrc = track_ssrc(&track).await;
    // Sequence numbers count packets sent (a pause is not loss); timestamps keep running.
    let mut seq = 0u32;
    for tick in 0u32.. {
        every.tick().await;
        // DTX: a silent encoder sends one comfort-noise update per 400 ms.
        if !sending.load(Ordering::Relaxed) || (!talking && tick % 20 != 0) {
            continue;
        }
        seq = seq.wrapping_add(1);
        let p = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: aula_sfu::media::OPUS_PT,
                sequence_number: seq as u16,
                timestamp: tick.wrapping_mul(960),
                ssrc,
                ..Default::default()
            },
            payload: payload(0, 0, sender, seq, 120),
        };
        let len = p.payload.len() as u64;
        let level = HeaderExtension::AudioLevel(AudioLevelExtension {
            level: loudness,
            voice: loudness < 127,
        });
        if track.write_rtp_with_extensions(p, &[level]).await.is_ok() {
            stats.sent_packets.fetch_add(1, Ordering::Relaxed);
            stats.sent_bytes.fetch_add(len, Ordering::Relaxed);
        }
    }
}

pub(crate) async fn send_video(
    track: Arc<TrackLocalStaticRTP>,
    sender: u32,
    bitrate: u32,
    lose_one_in: u32,
    keyframe: Arc<AtomicBool>,
    stats: Arc<ClientStats>,
    sending: Arc<AtomicBool>,
) {
    const FPS: u64 = 30;
    let mut every = tokio::time::interval(Duration::from_micros(1_000_000 / FPS));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ssrc = track_ssrc(&track).await;
    let frame_bytes = (bitrate as usize / 8 / FPS as usize).max(HEADER_LEN);
    let mut seq = 0u32;
    for frame in 0u32.. {
        every.tick().await;
        if !sending.load(Ordering::Relaxed) {
            continue;
        }
        // A keyframe every 3 s, and whenever a receiver asked for one.
        let key = keyframe.swap(false, Ordering::SeqCst) || frame % 90 == 0;
        let packets = frame_bytes.div_ceil(MTU_PAYLOAD);
        for (i, (len, descriptor, header)) in frame_packets(frame_bytes, key).enumerate() {
            let p = rtc::rtp::packet::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    payload_type: aula_sfu::media::VP8_PT,
                    sequence_number: seq as u16,
                    timestamp: frame.wrapping_mul(3000),
                    marker: i + 1 == packets,
                    ssrc,
                    ..Default::default()
                },
                payload: payload(descriptor, header, sender, seq, len),
            };
            seq = seq.wrapping_add(1);
            if lose_one_in > 0 && seq.is_multiple_of(lose_one_in) {
                continue;
            }
            let n = p.payload.len() as u64;
            if track.write_rtp(p).await.is_ok() {
                stats.sent_packets.fetch_add(1, Ordering::Relaxed);
                stats.sent_video_packets.fetch_add(1, Ordering::Relaxed);
                stats.sent_bytes.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

pub(crate) async fn watch_keyframe_requests(
    track: Arc<TrackLocalStaticRTP>,
    keyframe: Arc<AtomicBool>,
    stats: Arc<ClientStats>,
) {
    while let Some(ev) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(packets) = ev {
            let asked = packets
                .iter()
                .any(|p| aula_sfu::media::is_keyframe_request(p.as_ref()));
            if asked {
                stats.keyframe_requests.fetch_add(1, Ordering::SeqCst);
                keyframe.store(true, Ordering::SeqCst);
            }
        }
    }
}

async fn track_ssrc(track: &TrackLocalStaticRTP) -> u32 {
    track.track().await.ssrcs().last().unwrap_or_default()
}
