//! RTP details of forwarding: one outgoing stream per subscriber and source, fed from
//! whichever simulcast layer is selected. Switching layers waits for a keyframe and keeps
//! sequence numbers and timestamps continuous, so the subscriber's decoder sees one stream.

/// Whether a VP8 RTP payload starts a keyframe (RFC 7741 §4.2 and RFC 6386 §9.1).
pub fn vp8_is_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition_id = first & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut at = 1;
    if extended {
        let Some(&x) = payload.get(at) else {
            return false;
        };
        at += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pid) = payload.get(at) else {
                return false;
            };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    // The inverse key frame flag is the lowest bit of the VP8 frame header.
    payload.get(at).is_some_and(|h| h & 0x01 == 0)
}

/// Counts packets a publisher sent that never arrived, from gaps in sequence numbers.
#[derive(Debug, Default, Clone)]
pub struct LossCounter {
    highest: Option<u16>,
    pub received: u64,
    pub lost: u64,
    /// Sequence numbers that were missing when a later one arrived, whether or not a
    /// retransmission filled them later: what the node had to ask again for.
    pub missed: u64,
}

impl LossCounter {
    pub fn packet(&mut self, seq: u16) {
        self.received += 1;
        match self.highest {
            None => self.highest = Some(seq),
            Some(h) => {
                let ahead = seq.wrapping_sub(h);
                // Ahead by less than half the space: newer. Otherwise a late (reordered)
                // packet, which was counted as lost and now arrived.
                if ahead != 0 && ahead < 0x8000 {
                    self.lost += u64::from(ahead - 1);
                    self.missed += u64::from(ahead - 1);
                    self.highest = Some(seq);
                } else if ahead >= 0x8000 {
                    self.lost = self.lost.saturating_sub(1);
                }
            }
        }
    }
}

/// What to do with a packet of one layer for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it with these sequence number and timestamp.
    Forward { seq: u16, timestamp: u32 },
    /// Not the selected layer, or waiting for its keyframe.
    Drop,
}

/// One outgoing stream fed from a selected incoming layer.
#[derive(Debug, Clone, Default)]
pub struct Splicer {
    /// The incoming layer forwarded now, and the one we switch to at its next keyframe.
    current: Option<u32>,
    target: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: Option<u16>,
    last_ts: u32,
}

impl Splicer {
    /// Selects the incoming layer (by its SSRC); takes effect at its next keyframe.
    /// Returns true when a keyframe should be requested from the publisher.
    pub fn select(&mut self, layer: u32) -> bool {
        if self.current == Some(layer) {
            self.target = None;
            return false;
        }
        if self.target == Some(layer) {
            return false;
        }
        self.target = Some(layer);
        true
    }

    /// Whether a packet of `layer` that is not a keyframe leaves this subscriber waiting:
    /// the layer is selected and flowing, but the switch to it needs a keyframe. Asking again
    /// on such packets (rate-limited per source) means a request lost to the rate limit or on
    /// the wire cannot leave the subscriber frozen; a layer the publisher stopped sending
    /// triggers nothing.
    pub fn waits_for_keyframe_of(&self, layer: u32) -> bool {
        self.target == Some(layer)
    }

    /// The incoming layer forwarded now.
    pub fn current(&self) -> Option<u32> {
        self.current
    }

    /// Stops forwarding; a later [`select`](Self::select) starts again at a keyframe, the
    /// numbering continuing from the last packet forwarded.
    pub fn pause(&mut self) {
        self.current = None;
        self.target = None;
    }

    pub fn target(&self) -> Option<u32> {
        self.target.or(self.current)
    }

    /// A packet of `layer`. Audio and single-layer video pass `keyframe = true` for
    /// every packet: any packet may start the stream.
    ///
    /// A subscriber that gets nothing of the source yet starts on the first keyframe of any
    /// layer no larger than its selected one (`within_grant`) and keeps waiting for the
    /// selected one: a browser's encoder does not always answer a keyframe request on every
    /// layer (Chrome left a camera's middle layer without one for 3.7 s after a reconnect
    /// while its smallest layer had several), and a smaller picture now beats a black tile.
    /// A larger one does not: the selected layer is what the subscriber's downlink was
    /// granted, and after a pause a larger layer would congest it again at once.
    pub fn packet(
        &mut self,
        layer: u32,
        seq: u16,
        timestamp: u32,
        keyframe: bool,
        within_grant: bool,
    ) -> Verdict {
        let first = self.current.is_none() && self.target.is_some() && within_grant;
        if keyframe && (self.target == Some(layer) || first) {
            // Splice: the new layer continues right after what the subscriber last got.
            let next_seq = self.last_seq.map_or(seq, |s| s.wrapping_add(1));
            self.seq_offset = next_seq.wrapping_sub(seq);
            let next_ts = if self.last_seq.is_some() {
                // About one frame (at 90 kHz, 30 fps) after the last one.
                self.last_ts.wrapping_add(3000)
            } else {
                timestamp
            };
            self.ts_offset = next_ts.wrapping_sub(timestamp);
            self.current = Some(layer);
            if self.target == Some(layer) {
                self.target = None;
            }
        }
        if self.current != Some(layer) {
            return Verdict::Drop;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = timestamp.wrapping_add(self.ts_offset);
        let newer = self
            .last_seq
            .is_none_or(|l| out_seq.wrapping_sub(l) < 0x8000 && out_seq != l);
        if newer {
            self.last_seq = Some(out_seq);
            self.last_ts = out_ts;
        }
        Verdict::Forward {
            seq: out_seq,
            timestamp: out_ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vp8_keyframe_is_recognised_with_and_without_extensions() {
        // S=1, PID=0, no extension; frame header with P=0.
        assert!(vp8_is_keyframe(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // The same, an inter frame (P=1).
        assert!(!vp8_is_keyframe(&[0x10, 0x01]));
        // X=1, I=1 with a 15-bit picture id, then the frame header.
        assert!(vp8_is_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        // Not the start of a partition.
        assert!(!vp8_is_keyframe(&[0x00, 0x00]));
        assert!(!vp8_is_keyframe(&[]));
        assert!(!vp8_is_keyframe(&[0x90, 0x80]));
    }

    #[test]
    fn gaps_in_sequence_numbers_count_as_loss_across_the_wrap() {
        let mut l = LossCounter::default();
        for seq in [65_533u16, 65_534, 1, 2, 0] {
            l.packet(seq);
        }
        // 65535 and 0 were missing when 1 arrived; 0 arrived late.
        assert_eq!((l.received, l.lost), (5, 1));
        assert_eq!(l.missed, 2, "both had to be asked for again");
    }

    #[test]
    fn a_new_subscriber_sees_the_first_keyframe_of_any_layer_and_moves_to_its_own_at_the_next() {
        let mut s = Splicer::default();
        assert!(s.select(2));
        assert_eq!(s.packet(2, 500, 70_000, false, true), Verdict::Drop);
        assert_eq!(
            s.packet(1, 100, 9_000, true, true),
            Verdict::Forward {
                seq: 100,
                timestamp: 9_000
            },
            "a picture at once, from the layer whose keyframe came first"
        );
        assert!(
            s.waits_for_keyframe_of(2),
            "the selected layer is still asked for"
        );
        assert_eq!(s.packet(2, 501, 73_000, false, true), Verdict::Drop);
        assert_eq!(
            s.packet(1, 101, 12_000, false, true),
            Verdict::Forward {
                seq: 101,
                timestamp: 12_000
            }
        );
        assert_eq!(
            s.packet(2, 502, 76_000, true, true),
            Verdict::Forward {
                seq: 102,
                timestamp: 15_000
            },
            "the selected layer takes over at its keyframe, continuing the stream"
        );
        assert!(!s.waits_for_keyframe_of(2));
        assert_eq!(s.packet(1, 102, 15_000, true, true), Verdict::Drop);
    }

    #[test]
    fn switching_layers_waits_for_a_keyframe_and_keeps_the_stream_continuous() {
        let mut s = Splicer::default();
        assert!(s.select(1));
        assert_eq!(
            s.packet(1, 100, 9_000, true, true),
            Verdict::Forward {
                seq: 100,
                timestamp: 9_000
            }
        );
        assert_eq!(
            s.packet(1, 101, 12_000, false, true),
            Verdict::Forward {
                seq: 101,
                timestamp: 12_000
            }
        );
        assert!(s.select(2), "a keyframe of the new layer is needed");
        assert!(!s.select(2), "selecting it again asks nothing new");
        assert!(s.waits_for_keyframe_of(2) && !s.waits_for_keyframe_of(1));
        assert_eq!(s.packet(2, 5_000, 70_000, false, true), Verdict::Drop);
        assert_eq!(
            s.packet(1, 102, 15_000, false, true),
            Verdict::Forward {
                seq: 102,
                timestamp: 15_000
            },
            "the old layer flows until the switch"
        );
        assert_eq!(
            s.packet(2, 5_001, 73_000, true, true),
            Verdict::Forward {
                seq: 103,
                timestamp: 18_000
            }
        );
        assert!(!s.waits_for_keyframe_of(2), "switched");
        assert_eq!(s.packet(1, 103, 18_000, true, true), Verdict::Drop);
        assert_eq!(
            s.packet(2, 5_002, 76_000, false, true),
            Verdict::Forward {
                seq: 104,
                timestamp: 21_000
            }
        );
    }
}
