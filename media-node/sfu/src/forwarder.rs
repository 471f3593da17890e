//! What one subscriber gets of one published packet: which simulcast layer every grid tile
//! wants, whether a camera is among the last N speakers, the splice onto the subscriber's
//! own stream (continuous sequence numbers and timestamps), and the rewritten header with
//! the audio level carried over. Pure: no calls into `rtc`; the fan-out in `peer.rs` writes
//! what these functions decide.

use crate::protocol::Source;
use crate::rewrite::{Splicer, Verdict};
use bytes::Bytes;

/// What the subscriber's answer agreed for one forwarded track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding {
    /// In an offer the subscriber has not answered yet: nothing is forwarded.
    Offered,
    /// Answered: packets go out with the payload type the subscriber negotiated, and the
    /// audio level under the extension id it negotiated (if it did).
    Bound {
        payload_type: u8,
        audio_level_id: Option<u8>,
    },
    /// Answered without the codec the node forwards: nothing will ever be forwarded on it.
    NoCodec,
}

/// One subscriber's copy of one published source.
#[derive(Debug)]
pub(crate) struct Forwarder {
    /// The SSRC the subscriber knows the stream by.
    pub(crate) ssrc: u32,
    pub(crate) binding: Binding,
    splicer: Splicer,
}

/// A published packet, as every subscriber's forwarder sees it (computed once per packet).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published {
    /// The incoming layer it arrived on.
    pub(crate) ssrc: u32,
    pub(crate) seq: u16,
    pub(crate) timestamp: u32,
    pub(crate) audio: bool,
    /// Audio, single-layer video, or a VP8 keyframe: a packet a stream may start with.
    pub(crate) keyframe: bool,
    /// The layer of this source this subscriber should get now.
    pub(crate) wanted_layer: u32,
    /// The places among the source's layers (0 the smallest) of the layer the packet arrived
    /// on and of `wanted_layer` (both 0 for audio and single-layer video).
    pub(crate) rank: usize,
    pub(crate) wanted_rank: usize,
    /// The speaker's audio level and voice flag, to carry over.
    pub(crate) level: Option<(u8, bool)>,
}

/// The subscriber's version of a packet's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewrite {
    pub(crate) ssrc: u32,
    pub(crate) payload_type: u8,
    pub(crate) seq: u16,
    pub(crate) timestamp: u32,
    /// The extension id and its one byte (RFC 6464).
    pub(crate) audio_level: Option<(u8, Bytes)>,
}

/// Why a subscriber needs a keyframe of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum KeyframeNeed {
    /// Still waiting for the keyframe asked for before (the selected layer flows, but no
    /// keyframe came): ask again, slowly, in case the request was lost.
    StillWaiting,
    /// A layer was just selected.
    Switched,
}

/// What a forwarder decided about one packet.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Whether (and why) the publisher should send a keyframe of this source.
    pub(crate) keyframe: Option<KeyframeNeed>,
    pub(crate) forward: Option<Rewrite>,
}

impl Forwarder {
    pub(crate) fn new(ssrc: u32) -> Self {
        Forwarder {
            ssrc,
            binding: Binding::Offered,
            splicer: Splicer::default(),
        }
    }

    /// The incoming layer (SSRC) forwarded now, if any.
    pub(crate) fn current_layer(&self) -> Option<u32> {
        self.splicer.current()
    }

    /// Nothing of the source for now (its video is paused); what comes after starts with a
    /// keyframe.
    pub(crate) fn pause(&mut self) {
        self.splicer.pause();
    }

    /// A packet for a subscriber whose connection is up.
    pub(crate) fn packet(&mut self, p: &Published) -> Decision {
        let Binding::Bound {
            payload_type,
            audio_level_id,
        } = self.binding
        else {
            return Decision::default();
        };
        // Audio and video both select (audio's only layer is the packet's own); only video
        // asks for keyframes. A new selection asks; so does every packet of the selected
        // layer while the switch still waits for one (request_keyframe keeps that to one
        // request per source and second). Asking only once lost requests to the 300 ms
        // window when several subscribers arrived within it: the later ones stayed without
        // video.
        let switched = self.splicer.select(p.wanted_layer);
        let keyframe = if p.audio {
            None
        } else if switched {
            Some(KeyframeNeed::Switched)
        } else if !p.keyframe && self.splicer.waits_for_keyframe_of(p.ssrc) {
            Some(KeyframeNeed::StillWaiting)
        } else {
            None
        };
        let within_grant = p.rank <= p.wanted_rank;
        let forward =
            match self
                .splicer
                .packet(p.ssrc, p.seq, p.timestamp, p.keyframe, within_grant)
            {
                Verdict::Forward { seq, timestamp } => Some(Rewrite {
                    ssrc: self.ssrc,
                    payload_type,
                    seq,
                    timestamp,
                    audio_level: audio_level_id
                        .zip(p.level)
                        .map(|(id, (level, voice))| (id, audio_level_byte(level, voice))),
                }),
                Verdict::Drop => None,
            };
        Decision { keyframe, forward }
    }
}

/// Whether a packet of `source` is forwarded at all: a camera only while its owner is
/// among the last N speakers; microphones and screens always.
pub(crate) fn forwarded(source: Source, in_last_n: bool) -> bool {
    source != Source::Camera || in_last_n
}

/// The incoming layer subscribers get of a source, from its layers (lowest quality first):
/// the only one, the sharpest for the active speaker and a shared screen, and for a grid
/// tile what fits the room's size — among the layers that flow: browsers stop sending their
/// larger layers when CPU or uplink runs short, and a subscriber kept on such a layer sees
/// a frozen picture. Then the largest smaller layer that flows, else the smallest larger one.
#[cfg(test)]
pub(crate) fn wanted_layer(
    layers: &[u32],
    arrived_on: u32,
    sharpest: bool,
    room_size: usize,
    flowing: impl Fn(u32) -> bool,
) -> u32 {
    let desired = desired_layer(layers.len(), sharpest, room_size);
    wanted_layer_at(layers, arrived_on, desired, flowing)
}

/// The index of the layer the layout wants of a source with `layers` layers.
pub(crate) fn desired_layer(layers: usize, sharpest: bool, room_size: usize) -> usize {
    if sharpest {
        layers.saturating_sub(1)
    } else {
        grid_layer(layers, room_size)
    }
}

/// The incoming layer to forward when layer `desired` (an index; at most it, if the
/// subscriber's downlink allows no more) is wanted: it if it flows, else the largest smaller
/// one that flows, else the smallest larger one.
pub(crate) fn wanted_layer_at(
    layers: &[u32],
    arrived_on: u32,
    desired: usize,
    flowing: impl Fn(u32) -> bool,
) -> u32 {
    if layers.len() <= 1 {
        return arrived_on;
    }
    let desired = desired.min(layers.len() - 1);
    layers[..=desired]
        .iter()
        .rev()
        .chain(&layers[desired + 1..])
        .copied()
        .find(|&l| l == arrived_on || flowing(l))
        .unwrap_or(arrived_on)
}

/// The simulcast layer (0 = smallest) a grid tile gets: few people get big tiles and a
/// sharp picture; a class gets thumbnails, so 20 cameras fit anyone's downlink.
pub(crate) fn grid_layer(layers: usize, participants: usize) -> usize {
    let top = layers.saturating_sub(1);
    match participants {
        0..=4 => top,
        5..=9 => top.min(1),
        _ => 0,
    }
}

/// A layer's place by the usual rid names, lowest quality first.
pub(crate) fn rid_rank(rid: Option<&str>) -> u8 {
    match rid {
        None => 0,
        Some("q" | "l" | "low" | "0") => 1,
        Some("h" | "m" | "mid" | "1") => 2,
        Some("f" | "hi" | "high" | "2") => 3,
        Some(_) => 4,
    }
}

/// Every possible audio-level byte, so a rewritten packet points into this table instead of
/// allocating its one byte per subscriber.
static AUDIO_LEVEL_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// The RFC 6464 byte: the voice flag, then the level in -dBov (0 loudest, 127 silence).
pub(crate) fn audio_level_byte(level: u8, voice: bool) -> Bytes {
    let b = usize::from((u8::from(voice) << 7) | (level & 0x7f));
    Bytes::from_static(&AUDIO_LEVEL_BYTES[b..=b])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: u32 = 10;
    const HIGH: u32 = 20;

    fn bound(ssrc: u32, audio_level_id: Option<u8>) -> Forwarder {
        let mut f = Forwarder::new(ssrc);
        f.binding = Binding::Bound {
            payload_type: 96,
            audio_level_id,
        };
        f
    }

    fn video(ssrc: u32, seq: u16, keyframe: bool, wanted_layer: u32) -> Published {
        let rank = |l| usize::from(l == HIGH);
        Published {
            ssrc,
            seq,
            timestamp: u32::from(seq) * 3000,
            audio: false,
            keyframe,
            wanted_layer,
            rank: rank(ssrc),
            wanted_rank: rank(wanted_layer),
            level: None,
        }
    }

    #[test]
    fn an_oral_exam_sees_everyone_sharp_and_a_class_gets_thumbnails() {
        assert_eq!(grid_layer(3, 3), 2, "three people: the full picture");
        assert_eq!(grid_layer(3, 8), 1, "a small group: the middle layer");
        assert_eq!(grid_layer(3, 30), 0, "a class: thumbnails");
        assert_eq!(grid_layer(2, 8), 1);
        assert_eq!(grid_layer(1, 30), 0);
    }

    #[test]
    fn the_active_speaker_and_a_shared_screen_are_sharp_even_in_a_class() {
        let layers = [1, 2, 3];
        let all = |_| true;
        assert_eq!(wanted_layer(&layers, 1, true, 30, all), 3);
        assert_eq!(wanted_layer(&layers, 1, false, 30, all), 1);
        assert_eq!(
            wanted_layer(&[7], 7, false, 30, all),
            7,
            "one layer: that one"
        );
        assert_eq!(
            wanted_layer(&[], 9, true, 3, all),
            9,
            "layers not known yet"
        );
    }

    #[test]
    fn a_layer_the_publisher_stopped_sending_is_replaced_by_the_next_smaller_one_that_flows() {
        let layers = [10, 11, 12];
        // The browser dropped its full layer (short of CPU or uplink).
        let no_full = |l| l != 12;
        assert_eq!(wanted_layer(&layers, 10, true, 3, no_full), 11);
        assert_eq!(wanted_layer(&layers, 10, false, 30, no_full), 10);
        // Only the full layer flows: a thumbnail viewer gets it rather than nothing.
        let only_full = |l| l == 12;
        assert_eq!(wanted_layer(&layers, 12, false, 30, only_full), 12);
        // The layer a packet arrived on flows, whatever the record says.
        assert_eq!(wanted_layer(&layers, 11, true, 3, |_| false), 11);
    }

    #[test]
    fn simulcast_layers_are_ordered_by_their_usual_rid_names() {
        let mut rids = ["f", "q", "h"];
        rids.sort_by_key(|r| rid_rank(Some(r)));
        assert_eq!(rids, ["q", "h", "f"]);
    }

    #[test]
    fn a_camera_outside_the_last_n_is_not_forwarded_but_its_voice_and_screen_are() {
        assert!(!forwarded(Source::Camera, false));
        assert!(forwarded(Source::Camera, true));
        assert!(forwarded(Source::Microphone, false));
        assert!(forwarded(Source::Screen, false));
    }

    #[test]
    fn nothing_reaches_a_subscriber_before_it_answered_or_without_the_codec() {
        let p = video(LOW, 1, true, LOW);
        let mut f = Forwarder::new(5);
        assert_eq!(f.packet(&p), Decision::default());
        f.binding = Binding::NoCodec;
        assert_eq!(f.packet(&p), Decision::default());
    }

    #[test]
    fn a_speakers_voice_reaches_a_subscriber_with_its_level_under_the_subscribers_id() {
        let mut f = bound(5, Some(3));
        let d = f.packet(&Published {
            ssrc: 77,
            seq: 40,
            timestamp: 960,
            audio: true,
            keyframe: true,
            wanted_layer: 77,
            rank: 0,
            wanted_rank: 0,
            level: Some((30, true)),
        });
        assert_eq!(d.keyframe, None, "audio never asks for keyframes");
        assert_eq!(
            d.forward,
            Some(Rewrite {
                ssrc: 5,
                payload_type: 96,
                seq: 40,
                timestamp: 960,
                audio_level: Some((3, Bytes::from_static(&[0x80 | 30]))),
            })
        );
    }

    #[test]
    fn a_late_subscriber_keeps_asking_for_a_keyframe_until_one_arrives() {
        let mut f = bound(5, None);
        assert_eq!(
            f.packet(&video(LOW, 1, false, LOW)).keyframe,
            Some(KeyframeNeed::Switched)
        );
        let waiting = f.packet(&video(LOW, 2, false, LOW));
        assert_eq!(waiting.keyframe, Some(KeyframeNeed::StillWaiting));
        assert!(waiting.forward.is_none());
        let first = f.packet(&video(LOW, 3, true, LOW));
        assert_eq!(first.keyframe, None);
        assert_eq!(first.forward.map(|r| r.seq), Some(3));
        assert_eq!(f.packet(&video(LOW, 4, false, LOW)).keyframe, None);
    }

    #[test]
    fn a_switch_to_the_sharp_layer_keeps_the_picture_until_its_keyframe_then_continues() {
        let mut f = bound(5, None);
        f.packet(&video(LOW, 100, true, LOW));
        let asks = f.packet(&video(LOW, 101, false, HIGH));
        assert_eq!(
            asks.keyframe,
            Some(KeyframeNeed::Switched),
            "the new layer needs a keyframe"
        );
        assert_eq!(
            asks.forward.map(|r| r.seq),
            Some(101),
            "the old layer flows on"
        );
        assert!(f.packet(&video(HIGH, 7, false, HIGH)).forward.is_none());
        let spliced = f.packet(&video(HIGH, 8, true, HIGH)).forward;
        assert_eq!(spliced.map(|r| r.seq), Some(102), "numbering continues");
        assert!(f.packet(&video(LOW, 102, false, HIGH)).forward.is_none());
    }

    #[test]
    fn after_a_pause_a_subscriber_restarts_on_no_layer_larger_than_its_grant() {
        let mut f = bound(5, None);
        f.packet(&video(LOW, 100, true, LOW));
        f.packet(&video(LOW, 101, false, LOW));
        // The downlink did not carry the video: paused, then resumed at the small layer.
        f.pause();
        assert_eq!(
            f.packet(&video(LOW, 150, false, LOW)).keyframe,
            Some(KeyframeNeed::Switched)
        );
        assert!(
            f.packet(&video(HIGH, 9, true, LOW)).forward.is_none(),
            "a keyframe of the larger layer would congest the link that was just paused"
        );
        assert_eq!(f.current_layer(), None);
        let resumed = f.packet(&video(LOW, 151, true, LOW)).forward;
        assert_eq!(resumed.map(|r| r.seq), Some(102), "numbering continues");
        assert_eq!(f.current_layer(), Some(LOW));
    }

    #[test]
    fn a_new_subscriber_of_the_sharp_layer_starts_on_a_smaller_keyframe_that_comes_first() {
        let mut f = bound(5, None);
        assert!(f.packet(&video(HIGH, 7, false, HIGH)).forward.is_none());
        assert!(f.packet(&video(LOW, 40, true, HIGH)).forward.is_some());
        assert_eq!(f.current_layer(), Some(LOW));
        assert!(f.packet(&video(HIGH, 8, true, HIGH)).forward.is_some());
        assert_eq!(f.current_layer(), Some(HIGH));
    }

    #[test]
    fn audio_level_bytes_carry_the_voice_flag_and_the_level() {
        assert_eq!(&audio_level_byte(127, false)[..], &[127]);
        assert_eq!(&audio_level_byte(0, true)[..], &[0x80]);
        assert_eq!(
            &audio_level_byte(0xff, true)[..],
            &[0xff],
            "7 bits of level"
        );
    }
}
