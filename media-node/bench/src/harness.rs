//! The library-neutral part: one publisher and K subscribers wired to SFU-side peers in
//! memory, a simulated clock, and a meter around the SFU side only.

use anyhow::{Context, Result, bail};
use aula_sfu::testing::client_addr;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One end of a peer connection, driven sans-IO. Every mutation is followed by [`Peer::poll`]
/// (str0m requires it; the node does the same with `rtc`).
pub trait Peer {
    /// An encrypted datagram the peer wants sent.
    type Datagram: std::ops::Deref<Target = [u8]>;
    /// A decrypted RTP packet, in the library's own form.
    type Rtp;

    /// Hands in a datagram received from the other end.
    fn receive(&mut self, now: Instant, data: &[u8]) -> Result<()>;
    fn timeout(&mut self, now: Instant) -> Result<()>;
    /// Moves out what the peer wants sent and the RTP it received, and runs its timers up
    /// to `now`.
    fn poll(
        &mut self,
        now: Instant,
        out: &mut Vec<Self::Datagram>,
        rtp: &mut Vec<Self::Rtp>,
    ) -> Result<()>;
    /// When the peer wants [`Peer::timeout`] next (as of the last poll).
    fn deadline(&self) -> Option<Instant>;
    fn connected(&self) -> bool;
    /// Writes `packet` (payload, sequence number, timestamp, marker) on this peer's one
    /// outgoing track, with that track's SSRC and payload type: the SFU's forwarding step.
    fn forward(&mut self, now: Instant, packet: &Self::Rtp) -> Result<()>;
    fn payload(packet: &Self::Rtp) -> &[u8];
}

/// What the publisher sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// VP8, 90 kHz, frames of several packets every 33 ms, marker on a frame's last packet.
    Video,
    /// Opus, 48 kHz, one packet every 20 ms.
    Audio,
}

impl Media {
    pub fn name(self) -> &'static str {
        match self {
            Media::Video => "video",
            Media::Audio => "audio",
        }
    }
}

/// A packet the publisher client sends, before the library wraps it.
pub struct Outgoing {
    pub payload: Vec<u8>,
    /// Extended (never wraps); the RTP header carries its low 16 bits.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
}

/// A WebRTC library under test: builds negotiated (not yet connected) peer pairs.
pub trait Library {
    const NAME: &'static str;
    type Peer: Peer;

    /// The publisher client (sending one track of `media`) and the SFU-side peer that
    /// receives it.
    fn publish_pair(
        &mut self,
        now: Instant,
        media: Media,
        client: SocketAddr,
    ) -> Result<(Self::Peer, Self::Peer)>;
    /// A subscriber client and the SFU-side peer that sends it one track of `media`.
    fn subscribe_pair(
        &mut self,
        now: Instant,
        media: Media,
        client: SocketAddr,
        index: usize,
    ) -> Result<(Self::Peer, Self::Peer)>;
    /// The publisher client writes one packet on its track.
    fn send(peer: &mut Self::Peer, now: Instant, packet: Outgoing) -> Result<()>;
}

pub struct Scenario {
    pub media: Media,
    pub subscribers: usize,
    pub packets: usize,
    pub payload: usize,
    pub packets_per_frame: usize,
    pub overhead: MeterOverhead,
}

/// What one run measured. CPU and wall time cover the SFU-side calls only, net of the
/// meter's own overhead.
pub struct Figures {
    pub sfu_received: u64,
    pub forwarded: u64,
    pub sfu_datagrams_in: u64,
    pub sfu_datagrams_out: u64,
    pub delivered: u64,
    pub expected: u64,
    /// All SFU-side work.
    pub cpu: Duration,
    pub wall: Duration,
    /// Of that, the forwarding path alone: the publisher's datagrams in, RTP out, RTP
    /// written to every subscriber-facing peer and their datagrams polled out. The rest is
    /// the clients' RTCP and the timers.
    pub cpu_forwarding: Duration,
    /// Timed blocks (each a batch of SFU-side calls).
    pub blocks: u64,
}

impl Figures {
    pub fn cpu_per_forwarded(&self) -> f64 {
        per_packet(self.cpu, self.forwarded)
    }
    pub fn wall_per_forwarded(&self) -> f64 {
        per_packet(self.wall, self.forwarded)
    }
    pub fn forwarding_cpu_per_forwarded(&self) -> f64 {
        per_packet(self.cpu_forwarding, self.forwarded)
    }
}

fn per_packet(d: Duration, packets: u64) -> f64 {
    if packets == 0 {
        return f64::NAN;
    }
    d.as_secs_f64() * 1e6 / packets as f64
}

/// The calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID): unlike wall time, it leaves out
/// time the thread was preempted by other processes.
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[derive(Default)]
struct Meter {
    cpu: Duration,
    wall: Duration,
    blocks: u64,
}

impl Meter {
    /// CPU and wall time, less the meter's own cost.
    fn net(&self, o: MeterOverhead) -> (Duration, Duration) {
        let blocks = u32::try_from(self.blocks).unwrap_or(u32::MAX);
        (
            self.cpu.saturating_sub(o.cpu * blocks),
            self.wall.saturating_sub(o.wall * blocks),
        )
    }

    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let cpu = thread_cpu();
        let wall = Instant::now();
        let r = f();
        self.wall += wall.elapsed();
        self.cpu += thread_cpu().saturating_sub(cpu);
        self.blocks += 1;
        r
    }
}

/// What timing one block costs by itself (the clock reads fall partly inside the interval),
/// to subtract from the totals.
#[derive(Clone, Copy, Default)]
pub struct MeterOverhead {
    pub cpu: Duration,
    pub wall: Duration,
}

impl MeterOverhead {
    pub fn calibrate() -> Self {
        const BLOCKS: u32 = 200_000;
        let mut m = Meter::default();
        for _ in 0..BLOCKS {
            m.time(|| std::hint::black_box(()));
        }
        MeterOverhead {
            cpu: m.cpu / BLOCKS,
            wall: m.wall / BLOCKS,
        }
    }
}

/// A client and its SFU-side peer, with the datagrams in flight between them.
struct Link<P: Peer> {
    client: P,
    sfu: P,
    to_client: Vec<P::Datagram>,
    to_sfu: Vec<P::Datagram>,
}

impl<P: Peer> Link<P> {
    fn new((client, sfu): (P, P)) -> Self {
        Link {
            client,
            sfu,
            to_client: Vec::new(),
            to_sfu: Vec::new(),
        }
    }
}

/// How many packets one subscriber got intact, each counted once.
#[derive(Default)]
struct Received {
    seen: Vec<bool>,
    intact: u64,
}

struct Rig<L: Library> {
    publisher: Link<L::Peer>,
    subscribers: Vec<Link<L::Peer>>,
    received: Vec<Received>,
    /// The forwarding path, and everything else the SFU side does.
    forwarding: Meter,
    feedback: Meter,
    sfu_received: u64,
    forwarded: u64,
    sfu_datagrams_in: u64,
    sfu_datagrams_out: u64,
    /// Reused buffers.
    rtp: Vec<<L::Peer as Peer>::Rtp>,
    payload_len: usize,
}

/// RTP, not RTCP (RFC 5761: RTCP packet types 192–223 sit where RTP has marker + PT 64–95).
/// The header stays in the clear under SRTP.
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && datagram[0] >> 6 == 2 && !(64..=95).contains(&(datagram[1] & 0x7f))
}

impl<L: Library> Rig<L> {
    fn all_connected(&self) -> bool {
        std::iter::once(&self.publisher)
            .chain(&self.subscribers)
            .all(|l| l.client.connected() && l.sfu.connected())
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        std::iter::once(&self.publisher)
            .chain(&self.subscribers)
            .flat_map(|l| [l.client.deadline(), l.sfu.deadline()])
            .flatten()
            .min()
    }

    /// Everything that is due at `now`: timers, then datagrams back and forth until none
    /// are in flight.
    fn settle(&mut self, now: Instant) -> Result<()> {
        // The node keeps its timers in a heap and looks at it just as cheaply.
        let sfu_due = std::iter::once(&self.publisher)
            .chain(&self.subscribers)
            .any(|l| l.sfu.deadline().is_some_and(|d| d <= now));
        if sfu_due {
            self.feedback.time(|| {
                sfu_timers(
                    now,
                    &mut self.publisher,
                    &mut self.subscribers,
                    &mut self.rtp,
                    &mut self.sfu_datagrams_out,
                )
            })?;
        }
        self.client_timers(now)?;
        for _ in 0..10_000 {
            let in_flight = std::iter::once(&self.publisher)
                .chain(&self.subscribers)
                .any(|l| !l.to_client.is_empty() || !l.to_sfu.is_empty());
            if !in_flight {
                return Ok(());
            }
            let mut c = Counters {
                received: &mut self.sfu_received,
                forwarded: &mut self.forwarded,
                datagrams_in: &mut self.sfu_datagrams_in,
                datagrams_out: &mut self.sfu_datagrams_out,
            };
            if !self.publisher.to_sfu.is_empty() {
                self.forwarding.time(|| {
                    sfu_forward(
                        now,
                        &mut self.publisher,
                        &mut self.subscribers,
                        &mut self.rtp,
                        &mut c,
                    )
                })?;
            }
            if self.subscribers.iter().any(|l| !l.to_sfu.is_empty()) {
                self.feedback
                    .time(|| sfu_feedback(now, &mut self.subscribers, &mut self.rtp, &mut c))?;
            }
            self.client_round(now)?;
        }
        bail!("datagrams kept bouncing between the peers at one instant")
    }

    fn client_timers(&mut self, now: Instant) -> Result<()> {
        let mut rtp = Vec::new();
        for (i, link) in std::iter::once(&mut self.publisher)
            .chain(&mut self.subscribers)
            .enumerate()
        {
            if link.client.deadline().is_some_and(|d| d <= now) {
                link.client.timeout(now).context("client timeout")?;
                link.client.poll(now, &mut link.to_sfu, &mut rtp)?;
                check::<L::Peer>(&mut self.received, self.payload_len, i, &mut rtp)?;
            }
        }
        Ok(())
    }

    fn client_round(&mut self, now: Instant) -> Result<()> {
        let mut rtp = Vec::new();
        for (i, link) in std::iter::once(&mut self.publisher)
            .chain(&mut self.subscribers)
            .enumerate()
        {
            for d in link.to_client.drain(..) {
                link.client
                    .receive(now, &d)
                    .context("a client handling a datagram")?;
                link.client.poll(now, &mut link.to_sfu, &mut rtp)?;
                check::<L::Peer>(&mut self.received, self.payload_len, i, &mut rtp)?;
            }
        }
        Ok(())
    }
}

/// Counts what a subscriber (link `link` > 0; 0 is the publisher) received, checking each
/// payload.
fn check<P: Peer>(
    received: &mut [Received],
    payload_len: usize,
    link: usize,
    rtp: &mut Vec<P::Rtp>,
) -> Result<()> {
    if rtp.is_empty() {
        return Ok(());
    }
    let Some(r) = link.checked_sub(1).and_then(|s| received.get_mut(s)) else {
        bail!("the publisher client received RTP");
    };
    for p in rtp.drain(..) {
        if let Some(index) = intact_index(P::payload(&p), payload_len)
            && let Some(seen) = r.seen.get_mut(index)
            && !*seen
        {
            *seen = true;
            r.intact += 1;
        }
    }
    Ok(())
}

struct Counters<'a> {
    received: &'a mut u64,
    forwarded: &'a mut u64,
    datagrams_in: &'a mut u64,
    datagrams_out: &'a mut u64,
}

/// The SFU side's timers (the timed part of [`Rig::settle`]).
fn sfu_timers<P: Peer>(
    now: Instant,
    publisher: &mut Link<P>,
    subscribers: &mut [Link<P>],
    rtp: &mut Vec<P::Rtp>,
    datagrams_out: &mut u64,
) -> Result<()> {
    for link in std::iter::once(publisher).chain(subscribers.iter_mut()) {
        if link.sfu.deadline().is_some_and(|d| d <= now) {
            let before = link.to_client.len();
            link.sfu.timeout(now).context("SFU-side timeout")?;
            link.sfu.poll(now, &mut link.to_client, rtp)?;
            *datagrams_out += (link.to_client.len() - before) as u64;
            // Timers bring no media; anything here would be a bug in the pairing.
            rtp.clear();
        }
    }
    Ok(())
}

/// The SFU's forwarding path (timed): the publisher's datagrams in, RTP out of them, RTP
/// written to every subscriber-facing peer and their datagrams polled out.
fn sfu_forward<P: Peer>(
    now: Instant,
    publisher: &mut Link<P>,
    subscribers: &mut [Link<P>],
    rtp: &mut Vec<P::Rtp>,
    c: &mut Counters<'_>,
) -> Result<()> {
    for d in publisher.to_sfu.drain(..) {
        *c.datagrams_in += 1;
        publisher
            .sfu
            .receive(now, &d)
            .context("the SFU handling a publisher datagram")?;
        let before = publisher.to_client.len();
        publisher.sfu.poll(now, &mut publisher.to_client, rtp)?;
        *c.datagrams_out += (publisher.to_client.len() - before) as u64;
        for packet in rtp.drain(..) {
            *c.received += 1;
            for sub in subscribers.iter_mut() {
                sub.sfu
                    .forward(now, &packet)
                    .context("the SFU writing RTP to a subscriber")?;
                let before = sub.to_client.len();
                // A subscriber-facing peer receives no media: its RTP buffer stays empty.
                sub.sfu.poll(now, &mut sub.to_client, &mut Vec::new())?;
                *c.datagrams_out += (sub.to_client.len() - before) as u64;
                *c.forwarded += sub.to_client[before..].iter().filter(|d| is_rtp(d)).count() as u64;
            }
        }
    }
    Ok(())
}

/// The subscribers' RTCP into the SFU side (timed).
fn sfu_feedback<P: Peer>(
    now: Instant,
    subscribers: &mut [Link<P>],
    rtp: &mut Vec<P::Rtp>,
    c: &mut Counters<'_>,
) -> Result<()> {
    for sub in subscribers.iter_mut() {
        for d in sub.to_sfu.drain(..) {
            *c.datagrams_in += 1;
            sub.sfu
                .receive(now, &d)
                .context("the SFU handling a subscriber's RTCP")?;
            let before = sub.to_client.len();
            sub.sfu.poll(now, &mut sub.to_client, rtp)?;
            *c.datagrams_out += (sub.to_client.len() - before) as u64;
            rtp.clear();
        }
    }
    Ok(())
}

/// The payload of packet `index`: a VP8 payload descriptor byte (start of partition on a
/// frame's first packet), the index, then a pattern derived from it, so a subscriber can
/// tell an intact payload from a damaged one.
pub fn payload(index: usize, len: usize, frame_start: bool) -> Vec<u8> {
    let mut p = vec![0u8; len.max(9)];
    p[0] = if frame_start { 0x10 } else { 0x00 };
    p[1..9].copy_from_slice(&(index as u64).to_be_bytes());
    for (j, b) in p.iter_mut().enumerate().skip(9) {
        *b = (index.wrapping_mul(31).wrapping_add(j)) as u8;
    }
    p
}

fn intact_index(p: &[u8], len: usize) -> Option<usize> {
    let index = usize::try_from(u64::from_be_bytes(p.get(1..9)?.try_into().ok()?)).ok()?;
    let expected = payload(index, len, p[0] == 0x10);
    (p == expected.as_slice()).then_some(index)
}

/// Connects everyone, streams `packets` from the publisher, and measures the SFU side.
pub fn run<L: Library>(lib: &mut L, s: &Scenario) -> Result<Figures> {
    let start = Instant::now();
    let mut now = start;
    let publisher = Link::new(lib.publish_pair(now, s.media, client_addr(0)?)?);
    let mut subscribers = Vec::with_capacity(s.subscribers);
    for i in 0..s.subscribers {
        subscribers.push(Link::new(lib.subscribe_pair(
            now,
            s.media,
            client_addr(i + 1)?,
            i,
        )?));
    }
    let mut rig = Rig::<L> {
        publisher,
        subscribers,
        received: (0..s.subscribers)
            .map(|_| Received {
                seen: vec![false; s.packets],
                intact: 0,
            })
            .collect(),
        forwarding: Meter::default(),
        feedback: Meter::default(),
        sfu_received: 0,
        forwarded: 0,
        sfu_datagrams_in: 0,
        sfu_datagrams_out: 0,
        rtp: Vec::new(),
        payload_len: s.payload,
    };

    // ICE, DTLS and SRTP setup, in simulated time.
    let give_up = start + Duration::from_secs(30);
    loop {
        rig.settle(now)?;
        if rig.all_connected() {
            break;
        }
        now = next_instant(now, rig.earliest_deadline());
        if now > give_up {
            bail!(
                "{}: not everyone connected within 30 s of simulated time",
                L::NAME
            );
        }
    }

    // Only the forwarding is measured.
    rig.forwarding = Meter::default();
    rig.feedback = Meter::default();
    rig.sfu_received = 0;
    rig.forwarded = 0;
    rig.sfu_datagrams_in = 0;
    rig.sfu_datagrams_out = 0;

    let (interval, ticks_per_interval, per_tick) = match s.media {
        Media::Video => (
            Duration::from_micros(33_333),
            3_000u32,
            s.packets_per_frame.max(1),
        ),
        Media::Audio => (Duration::from_millis(20), 960u32, 1),
    };
    let streaming = now;
    let mut sent = 0usize;
    let mut tick = 0u32;
    while sent < s.packets {
        let at = streaming + interval * (tick + 1);
        // Timers that fall between two frames fire on time.
        let mut same_instant = 0;
        while let Some(d) = rig.earliest_deadline().filter(|d| *d < at) {
            let next = d.max(now);
            same_instant = if next == now { same_instant + 1 } else { 0 };
            if same_instant > 8 {
                // A peer asking for `now` again and again: leave it to the next frame.
                break;
            }
            now = next;
            rig.settle(now)?;
        }
        now = at;
        let in_tick = per_tick.min(s.packets - sent);
        for j in 0..in_tick {
            let packet = Outgoing {
                payload: payload(sent, s.payload, j == 0 && s.media == Media::Video),
                seq: sent as u64,
                timestamp: tick.wrapping_mul(ticks_per_interval),
                marker: s.media == Media::Video && j + 1 == in_tick,
            };
            let link = &mut rig.publisher;
            L::send(&mut link.client, now, packet).context("the publisher sending")?;
            link.client.poll(now, &mut link.to_sfu, &mut Vec::new())?;
            sent += 1;
        }
        rig.settle(now)?;
        tick += 1;
    }

    let (forwarding_cpu, forwarding_wall) = rig.forwarding.net(s.overhead);
    let (feedback_cpu, feedback_wall) = rig.feedback.net(s.overhead);
    Ok(Figures {
        sfu_received: rig.sfu_received,
        forwarded: rig.forwarded,
        sfu_datagrams_in: rig.sfu_datagrams_in,
        sfu_datagrams_out: rig.sfu_datagrams_out,
        delivered: rig.received.iter().map(|r| r.intact).sum(),
        expected: (s.packets * s.subscribers) as u64,
        cpu: forwarding_cpu + feedback_cpu,
        wall: forwarding_wall + feedback_wall,
        cpu_forwarding: forwarding_cpu,
        blocks: rig.forwarding.blocks + rig.feedback.blocks,
    })
}

/// The next instant worth looking at while connecting: the earliest timer, at least 1 ms
/// on (a peer that keeps asking for `now` must not stall the clock).
fn next_instant(now: Instant, deadline: Option<Instant>) -> Instant {
    let step = now + Duration::from_millis(1);
    match deadline {
        Some(d) if d > step => d.min(now + Duration::from_millis(50)),
        _ => step,
    }
}
