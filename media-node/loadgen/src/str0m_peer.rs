//! What the two str0m clients share, the node's ([`crate::LightClient`]) and Janus's
//! ([`crate::JanusClient`]): the handle the application holds of a client driven by its own
//! task, a peer connection on its own UDP socket, the publish offer and the publisher that
//! writes the synthetic media, and the count of received packets by track.
//!
//! Media, payloads and stats are those of [`crate::Client`]: Opus 111 at 50 packets/s with
//! the audio level extension, VP8 96 at 30 fps with a keyframe every 3 s and on PLI/FIR,
//! payloads from [`crate::payload_vec`].

use crate::{ClientStats, HEADER_LEN, MTU_PAYLOAD, Publish, payload_vec, record_received};
use anyhow::{Context as _, anyhow, bail};
use aula_sfu::protocol::Source;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

const AUDIO_EVERY: Duration = Duration::from_millis(20);
const FPS: u32 = 30;
const VIDEO_EVERY: Duration = Duration::from_nanos(1_000_000_000 / FPS as u64);

/// The application's side of a client driven by its own task: the command channel, the
/// flag that holds our media, and the task (aborted when the handle is dropped).
pub(crate) struct ClientHandle<C> {
    sending: Arc<AtomicBool>,
    commands: mpsc::UnboundedSender<C>,
    task: tokio::task::JoinHandle<()>,
}

impl<C> ClientHandle<C> {
    /// Spawns the task `driver` makes of the flag and the commands' receiving end.
    pub(crate) fn spawn<F>(
        driver: impl FnOnce(Arc<AtomicBool>, mpsc::UnboundedReceiver<C>) -> F,
    ) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let sending = Arc::new(AtomicBool::new(true));
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(driver(sending.clone(), commands_rx));
        ClientHandle {
            sending,
            commands,
            task,
        }
    }

    /// Sends the command `ask` makes of a reply channel and waits up to `within` for the
    /// reply; `late` is the error when it does not come in time.
    pub(crate) async fn ask(
        &self,
        ask: impl FnOnce(oneshot::Sender<anyhow::Result<()>>) -> C,
        within: Duration,
        late: &'static str,
    ) -> anyhow::Result<()> {
        let (reply, done) = oneshot::channel();
        self.commands
            .send(ask(reply))
            .map_err(|_| anyhow!("the client stopped"))?;
        tokio::time::timeout(within, done)
            .await
            .context(late)?
            .map_err(|_| anyhow!("the client stopped"))?
    }

    pub(crate) fn stop_sending(&self) {
        self.sending.store(false, Ordering::SeqCst);
    }

    pub(crate) fn start_sending(&self) {
        self.sending.store(true, Ordering::SeqCst);
    }

    /// Sends `close` and gives the task a second to end.
    pub(crate) async fn close(mut self, close: C) {
        let _ = self.commands.send(close);
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.task).await;
    }
}

impl<C> Drop for ClientHandle<C> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Codecs and header extensions the node negotiates (`aula_sfu::media`): Opus and VP8,
/// audio level, transport-wide sequence numbers (browsers send them, so the node does that
/// work here too), mid.
fn client_rtc(now: Instant, local: SocketAddr) -> anyhow::Result<Rtc> {
    let mut cfg = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(3, Extension::TransportSequenceNumber)
        .set_extension(4, Extension::RtpMid);
    cfg.codec_config().add_config(
        aula_sfu::media::OPUS_PT.into(),
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
        aula_sfu::media::VP8_PT.into(),
        None,
        Codec::Vp8,
        Frequency::NINETY_KHZ,
        None,
        FormatParams::default(),
    );
    // A full (controlling, against the ICE-lite node) agent with one host candidate.
    let mut rtc = cfg.build(now);
    rtc.add_local_candidate(Candidate::host(local, "udp")?)
        .ok_or_else(|| anyhow!("str0m refused the host candidate {local}"))?;
    Ok(rtc)
}

/// One peer connection: its `Rtc` and its socket.
pub(crate) struct Conn {
    pub(crate) rtc: Rtc,
    pub(crate) socket: UdpSocket,
    local: SocketAddr,
    /// When the `Rtc` wants a timeout next.
    pub(crate) deadline: Instant,
    /// Events taken from the `Rtc`, not yet handled.
    pub(crate) events: Vec<Event>,
}

impl Conn {
    /// A connection on a fresh UDP socket of `ip` (Aula's node: 127.0.0.1).
    pub(crate) fn new(now: Instant, ip: IpAddr) -> anyhow::Result<Conn> {
        let std_socket = std::net::UdpSocket::bind((ip, 0)).context("binding a UDP socket")?;
        std_socket.set_nonblocking(true)?;
        let local = std_socket.local_addr()?;
        let socket = UdpSocket::from_std(std_socket).context("registering a UDP socket")?;
        Ok(Conn {
            rtc: client_rtc(now, local)?,
            socket,
            local,
            deadline: now,
            events: Vec::new(),
        })
    }

    /// Hands every waiting datagram to the `Rtc`.
    pub(crate) fn receive(&mut self, now: Instant, buf: &mut [u8]) -> anyhow::Result<()> {
        loop {
            match self.socket.try_recv_from(buf) {
                Ok((n, from)) => {
                    let Some(data) = buf.get(..n) else { continue };
                    // Anything str0m cannot parse (not STUN, DTLS or SRTP) is dropped.
                    let Ok(r) = Receive::new(Protocol::Udp, from, self.local, data) else {
                        continue;
                    };
                    self.rtc
                        .handle_input(Input::Receive(now, r))
                        .context("str0m refused a datagram")?;
                    // In RTP mode str0m holds one received packet until polled: drain
                    // before the next datagram, or it is overwritten. Timeouts wait for
                    // the end of the batch (handling them per datagram cost ~10 %).
                    self.drain(now, false)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e).context("receiving"),
            }
        }
    }

    /// Drains the `Rtc` to its next timeout (str0m's contract after every input): sends
    /// its datagrams, collects its events.
    pub(crate) fn poll(&mut self, now: Instant) -> anyhow::Result<()> {
        if self.deadline <= now {
            self.rtc.handle_input(Input::Timeout(now))?;
        }
        self.drain(now, true)
    }

    /// Takes the `Rtc`'s output up to its next timeout; with `timeouts`, a timeout already
    /// due (the pacer asks for one after writes) is handled at once, a few times at most,
    /// rather than through another wake-up.
    fn drain(&mut self, now: Instant, timeouts: bool) -> anyhow::Result<()> {
        let mut due = 0;
        loop {
            match self.rtc.poll_output()? {
                Output::Transmit(t) => {
                    // Loopback rarely pushes back; a full socket buffer is loss, as on a
                    // network.
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => self.events.push(e),
                Output::Timeout(t) => {
                    if timeouts && t <= now && due < 16 {
                        due += 1;
                        self.rtc.handle_input(Input::Timeout(now))?;
                        continue;
                    }
                    self.deadline = t;
                    return Ok(());
                }
            }
        }
    }
}

/// The publish connection and the media it writes.
pub(crate) struct Publisher {
    pub(crate) conn: Conn,
    what: Publish,
    audio: Option<Mid>,
    video: Option<Mid>,
    pub(crate) pending: Option<SdpPendingOffer>,
    /// Told once the connection is up (or publishing failed).
    pub(crate) reply: Option<oneshot::Sender<anyhow::Result<()>>>,
    pub(crate) connected: bool,
    /// Audio sequence numbers count packets sent (a pause is not loss); the tick drives
    /// timestamps and keeps running.
    audio_seq: u32,
    audio_tick: u32,
    next_audio: Instant,
    video_seq: u32,
    video_frame: u32,
    next_video: Instant,
    keyframe: bool,
}

/// A client's two peer connections with the SFU (each made when first needed) and what it
/// knows of the tracks it receives.
pub(crate) struct Peers {
    pub(crate) publisher: Option<Publisher>,
    pub(crate) subscriber: Option<Conn>,
    /// The subscribe connection's tracks: mid → (participant, source).
    tracks: HashMap<String, (String, Source)>,
    /// Cache of SSRC → track (`None`: a stream of no listed track), reset with `tracks`.
    by_ssrc: HashMap<Ssrc, Option<(String, Source)>>,
    /// Where datagrams are read into.
    buf: Vec<u8>,
}

/// Which connection has datagrams waiting.
pub(crate) enum Readable {
    Publish,
    Subscribe,
}

impl Peers {
    pub(crate) fn new() -> Peers {
        Peers {
            publisher: None,
            subscriber: None,
            tracks: HashMap::new(),
            by_ssrc: HashMap::new(),
            buf: vec![0u8; 2048],
        }
    }

    /// The tracks the latest subscribe offer lists (a mid may now carry someone else).
    pub(crate) fn set_tracks(&mut self, tracks: HashMap<String, (String, Source)>) {
        self.tracks = tracks;
        self.by_ssrc.clear();
    }

    /// Makes the publish connection on a socket of `ip` and its offer, unless we publish
    /// already or `what` is nothing.
    pub(crate) fn offer(
        &self,
        now: Instant,
        ip: IpAddr,
        index: u32,
        what: Publish,
    ) -> anyhow::Result<(Conn, PublishOffer)> {
        if self.publisher.is_some() {
            bail!("already publishing");
        }
        let mut conn = Conn::new(now, ip)?;
        let offer = publish_offer(&mut conn, index, what).context("nothing to publish")?;
        Ok((conn, offer))
    }

    /// Resolves when a connection has something to read; never without connections.
    pub(crate) async fn readable(&self) -> Readable {
        let publish = self.publisher.as_ref().map(|p| &p.conn.socket);
        let subscribe = self.subscriber.as_ref().map(|c| &c.socket);
        tokio::select! {
            () = readable(publish) => Readable::Publish,
            () = readable(subscribe) => Readable::Subscribe,
        }
    }

    /// Hands the datagrams waiting on `conn` to its `Rtc`.
    pub(crate) fn receive(&mut self, conn: Readable, now: Instant) -> anyhow::Result<()> {
        let conn = match conn {
            Readable::Publish => self.publisher.as_mut().map(|p| &mut p.conn),
            Readable::Subscribe => self.subscriber.as_mut(),
        };
        match conn {
            Some(c) => c.receive(now, &mut self.buf),
            None => Ok(()),
        }
    }

    /// The earliest of the connections' timeouts and the next media packet.
    pub(crate) fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(1);
        if let Some(p) = &self.publisher {
            wake = wake.min(p.next_wake());
        }
        if let Some(c) = &self.subscriber {
            wake = wake.min(c.deadline);
        }
        wake
    }

    /// Writes media that is due (unless `sending` holds it), then drains both connections
    /// and handles their events.
    pub(crate) fn step(
        &mut self,
        now: Instant,
        index: u32,
        sending: bool,
        stats: &ClientStats,
    ) -> anyhow::Result<()> {
        if let Some(p) = &mut self.publisher {
            p.step(now, index, sending, stats)?;
        }
        if let Some(c) = &mut self.subscriber {
            c.poll(now)?;
            record_packets(c, &self.tracks, &mut self.by_ssrc, stats)?;
        }
        Ok(())
    }
}

/// Resolves when `socket` has something to read; never without a socket.
async fn readable(socket: Option<&UdpSocket>) {
    match socket {
        Some(s) => {
            let _ = s.readable().await;
        }
        None => std::future::pending().await,
    }
}

/// A publish connection's offer: send-only audio and video as `what` asks.
pub(crate) struct PublishOffer {
    pub(crate) offer: SdpOffer,
    pub(crate) pending: SdpPendingOffer,
    pub(crate) audio: Option<Mid>,
    pub(crate) video: Option<Mid>,
}

/// Adds our tracks to `conn` and makes its offer (`None`: nothing to publish).
fn publish_offer(conn: &mut Conn, index: u32, what: Publish) -> Option<PublishOffer> {
    let mut change = conn.rtc.sdp_api();
    let stream = format!("stream-{index}");
    let mut add = |kind, name: &str| {
        change.add_media(
            kind,
            Direction::SendOnly,
            Some(stream.clone()),
            Some(format!("{index}-{name}")),
            None,
        )
    };
    let audio = what.audio.then(|| add(MediaKind::Audio, "audio"));
    let video = what.video.then(|| add(MediaKind::Video, "video"));
    let (offer, pending) = change.apply()?;
    Some(PublishOffer {
        offer,
        pending,
        audio,
        video,
    })
}

/// Counts the RTP packets among the subscribe connection's events, attributed by `tracks`
/// (mid → participant and source; `by_ssrc` caches the lookup).
fn record_packets(
    c: &mut Conn,
    tracks: &HashMap<String, (String, Source)>,
    by_ssrc: &mut HashMap<Ssrc, Option<(String, Source)>>,
    stats: &ClientStats,
) -> anyhow::Result<()> {
    for e in c.events.drain(..) {
        let Event::RtpPacket(packet) = e else {
            continue;
        };
        let ssrc = packet.header.ssrc;
        let track = by_ssrc
            .entry(ssrc)
            .or_insert_with(|| {
                let mid = c.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
                mid.and_then(|m| tracks.get(&m.to_string()).cloned())
            })
            .as_ref();
        // Packets of no listed track are counted under "unknown" (not dropped
        // silently: they would show as missing in the report).
        let (who, source) = match track {
            Some((who, source)) => (who.as_str(), *source),
            None => ("unknown", source_of(*packet.header.payload_type)),
        };
        if !record_received(stats, who, source, &packet.payload) {
            bail!("the stats lock is poisoned");
        }
    }
    Ok(())
}

/// The source a payload type stands for when the node's track list does not say.
pub(crate) fn source_of(pt: u8) -> Source {
    if pt == aula_sfu::media::OPUS_PT {
        Source::Microphone
    } else {
        Source::Camera
    }
}

impl Publisher {
    /// The publish connection once its offer (`pending`) is sent; `reply` hears when it
    /// connects.
    pub(crate) fn new(
        now: Instant,
        conn: Conn,
        what: Publish,
        audio: Option<Mid>,
        video: Option<Mid>,
        pending: SdpPendingOffer,
        reply: oneshot::Sender<anyhow::Result<()>>,
    ) -> Publisher {
        Publisher {
            conn,
            what,
            audio,
            video,
            pending: Some(pending),
            reply: Some(reply),
            connected: false,
            audio_seq: 0,
            audio_tick: 0,
            next_audio: now,
            video_seq: 0,
            video_frame: 0,
            next_video: now,
            keyframe: true,
        }
    }

    /// When the connection's timeout or the next media packet is due.
    pub(crate) fn next_wake(&self) -> Instant {
        let wake = self.conn.deadline;
        if self.connected {
            wake.min(self.next_audio).min(self.next_video)
        } else {
            wake
        }
    }

    /// Writes the media that is due, drains the connection and handles its events.
    pub(crate) fn step(
        &mut self,
        now: Instant,
        sender: u32,
        sending: bool,
        stats: &ClientStats,
    ) -> anyhow::Result<()> {
        if self.connected {
            self.media(now, sender, sending, stats);
        }
        self.conn.poll(now)?;
        for e in self.conn.events.drain(..) {
            match e {
                Event::Connected => {
                    self.connected = true;
                    if let Some(reply) = self.reply.take() {
                        let _ = reply.send(Ok(()));
                    }
                }
                Event::KeyframeRequest(_) => {
                    stats.keyframe_requests.fetch_add(1, Ordering::SeqCst);
                    self.keyframe = true;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes the audio packet and video frame that are due. Ticks run while media is on
    /// hold (timestamps keep time); behind by more than a tick, the missed ones are
    /// skipped, as a real encoder would.
    fn media(&mut self, now: Instant, sender: u32, sending: bool, stats: &ClientStats) {
        if now >= self.next_audio {
            // DTX: a silent encoder sends one comfort-noise update per 400 ms.
            let due = self.what.talking || self.audio_tick.is_multiple_of(20);
            if sending
                && due
                && let Some(mid) = self.audio
            {
                self.write_audio(now, mid, sender, stats);
            }
            self.audio_tick = self.audio_tick.wrapping_add(1);
            self.next_audio += AUDIO_EVERY;
            if self.next_audio <= now {
                self.next_audio = now + AUDIO_EVERY;
            }
        }
        if now >= self.next_video {
            if sending && let Some(mid) = self.video {
                self.write_video(now, mid, sender, stats);
            }
            self.video_frame = self.video_frame.wrapping_add(1);
            self.next_video += VIDEO_EVERY;
            if self.next_video <= now {
                self.next_video = now + VIDEO_EVERY;
            }
        }
    }

    fn write_audio(&mut self, now: Instant, mid: Mid, sender: u32, stats: &ClientStats) {
        let mut api = self.conn.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        self.audio_seq = self.audio_seq.wrapping_add(1);
        let p = payload_vec(0, 0, sender, self.audio_seq, 120);
        let len = p.len() as u64;
        let loudness = if self.what.talking {
            self.what.loudness.min(127)
        } else {
            127
        };
        let ext = ExtensionValues {
            // str0m takes the level as negative dBov (RFC 6464's 0 … -127).
            audio_level: Some(-(loudness as i8)),
            voice_activity: Some(loudness < 127),
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(
                aula_sfu::media::OPUS_PT.into(),
                u64::from(self.audio_seq).into(),
                self.audio_tick.wrapping_mul(960),
                now,
                p,
            )
            .ext_vals(ext),
        );
        stats.sent_packets.fetch_add(1, Ordering::Relaxed);
        stats.sent_bytes.fetch_add(len, Ordering::Relaxed);
    }

    fn write_video(&mut self, now: Instant, mid: Mid, sender: u32, stats: &ClientStats) {
        let frame_bytes = (self.what.video_bitrate as usize / 8 / FPS as usize).max(HEADER_LEN);
        // A keyframe every 3 s, and whenever a receiver asked for one.
        let key = std::mem::take(&mut self.keyframe) || self.video_frame.is_multiple_of(90);
        let packets = frame_bytes.div_ceil(MTU_PAYLOAD);
        let mut api = self.conn.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        for (i, (len, descriptor, header)) in crate::frame_packets(frame_bytes, key).enumerate() {
            let p = payload_vec(descriptor, header, sender, self.video_seq, len);
            let n = p.len() as u64;
            // Sequence numbers from 1: str0m's extended numbers start below 65,536 and a
            // receiver needs no rollover counter signalled.
            self.video_seq = self.video_seq.wrapping_add(1);
            tx.write_rtp(
                RtpWrite::new(
                    aula_sfu::media::VP8_PT.into(),
                    u64::from(self.video_seq).into(),
                    self.video_frame.wrapping_mul(3000),
                    now,
                    p,
                )
                .marker(i + 1 == packets)
                .nackable(true),
            );
            stats.sent_packets.fetch_add(1, Ordering::Relaxed);
            stats.sent_video_packets.fetch_add(1, Ordering::Relaxed);
            stats.sent_bytes.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_payload_types_count_as_their_kind() {
        assert_eq!(source_of(aula_sfu::media::OPUS_PT), Source::Microphone);
        assert_eq!(source_of(aula_sfu::media::VP8_PT), Source::Camera);
    }

    #[test]
    fn video_frames_split_like_the_webrtc_client() {
        // 1.5 Mbit/s at 30 fps: 6,250 bytes a frame, six packets of up to 1,100 bytes.
        let frame_bytes = 1_500_000 / 8 / FPS as usize;
        assert_eq!(frame_bytes.div_ceil(MTU_PAYLOAD), 6);
    }
}
