//! Hostile input fed to the SFU in memory (property test, stable toolchain): signalling
//! frames (random text, and the protocol's message shapes with random field values) and
//! datagrams (random, STUN-, DTLS-, RTP- and RTCP-shaped, from a connected participant's
//! address and from unknown ones), interleaved with joins, leaves and time passing. The SFU
//! must not panic, and afterwards a real participant (a str0m client, moved through ICE and
//! DTLS in memory) still joins and gets its publish connection up.
//!
//! `AULA_FUZZ_CASES` sets the number of cases (default 64, about two seconds in the normal test run).

use aula_domain::services::GrantRole;
use aula_domain::{
    ChatBody, Conversation, GuestId, MessageId, ModeratorId, Participant, RelayedMessage, RoomId,
    RoomSettings, Timestamp,
};
use aula_sfu::protocol::{ClientMessage, Connection, PublishedTrack, ServerMessage, Source};
use aula_sfu::{ConnId, Entropy, Joining, Output, Sfu, SfuConfig};
use proptest::prelude::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Rtc};

const SFU: &str = "127.0.0.1:7882";

struct Counter(u64);

impl Entropy for Counter {
    fn token(&mut self, len: usize) -> String {
        self.0 += 1;
        format!("{:0>len$}", self.0, len = len)
    }
    fn ssrc(&mut self) -> u32 {
        self.0 += 1;
        self.0 as u32
    }
}

fn uuid(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}

fn room() -> RoomId {
    RoomId::from_uuid(uuid(1))
}

/// Who the hostile inputs speak as: two moderators and four guests.
fn someone(n: u8) -> Participant {
    match n % 6 {
        0 => Participant::Moderator(ModeratorId::from_uuid(uuid(10))),
        1 => Participant::Moderator(ModeratorId::from_uuid(uuid(11))),
        k => Participant::Guest(GuestId::from_uuid(uuid(20 + u128::from(k)))),
    }
}

/// The real participants, whom no hostile input names.
fn real(n: u128) -> Participant {
    Participant::Guest(GuestId::from_uuid(uuid(500 + n)))
}

fn joining(who: Participant, lobby: bool) -> Joining {
    Joining {
        room: room(),
        participant: who,
        name: who.to_string(),
        role: match who {
            Participant::Moderator(_) => GrantRole::Moderator,
            Participant::Guest(_) => GrantRole::Guest,
        },
        settings: RoomSettings::default(),
        lobby,
    }
}

/// The first real participant's signalling connection; hostile frames may use it too.
const REAL_CONN: ConnId = 1;
/// A connection the SFU never heard of (the node may still pass on a frame that was on
/// its way when the SFU closed a connection).
const STRANGER: ConnId = 999;

/// Where a datagram comes from.
#[derive(Debug, Clone)]
enum Origin {
    /// The connected real participant's address.
    Known,
    Unknown(SocketAddr),
}

#[derive(Debug, Clone)]
enum Op {
    /// On a fresh connection, as the node does: one join per connection.
    Join {
        who: u8,
        lobby: bool,
    },
    Frame {
        conn: u8,
        message: ClientMessage,
    },
    Raw {
        conn: u8,
        text: String,
    },
    Chat {
        conn: u8,
        author: u8,
        with: Option<u8>,
        body: String,
    },
    Leave {
        conn: u8,
    },
    /// `ufrag`: which of the SFU's ICE usernames a STUN datagram names, if any.
    Datagram {
        from: Origin,
        data: Vec<u8>,
        ufrag: Option<usize>,
    },
    Wait {
        ms: u16,
    },
}

/// An SDP offer as a browser sends it, to mutate.
const SDP: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:aaaaaaaaaaaaaaaaaaaaaaaa\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n\
a=ssrc:1234 cname:x\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n\
a=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rid:h send\r\na=rid:l send\r\n\
a=simulcast:send h;l\r\n";

fn sdp() -> impl Strategy<Value = String> {
    let lines: Vec<String> = SDP.split("\r\n").map(str::to_owned).collect();
    let n = lines.len();
    prop_oneof![
        any::<String>(),
        // Some lines dropped, some replaced by random text.
        (
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec((0..n, "[ -~]{0,40}"), 0..4)
        )
            .prop_map(move |(keep, noise)| {
                let mut out: Vec<String> = lines
                    .iter()
                    .zip(keep)
                    .filter(|(_, k)| *k)
                    .map(|(l, _)| l.clone())
                    .collect();
                for (at, text) in noise {
                    let at = at.min(out.len());
                    out.insert(at, text);
                }
                out.join("\r\n")
            }),
        Just(SDP.to_owned()),
    ]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        Just(Source::Microphone),
        Just(Source::Camera),
        Just(Source::Screen)
    ]
}

fn participant() -> impl Strategy<Value = Participant> {
    prop_oneof![
        (0u8..6).prop_map(someone),
        (0u128..3).prop_map(real),
        any::<u128>().prop_map(|n| Participant::Guest(GuestId::from_uuid(uuid(n)))),
    ]
}

fn message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            sdp(),
            proptest::collection::vec(
                ("[0-9a-z]{0,3}", source()).prop_map(|(mid, source)| PublishedTrack { mid, source }),
                0..4
            ),
            any::<bool>()
        )
            .prop_map(|(sdp, tracks, restart)| ClientMessage::PublishOffer {
                sdp,
                tracks,
                restart
            }),
        sdp().prop_map(|sdp| ClientMessage::SubscribeAnswer { sdp }),
        (any::<bool>(), prop_oneof![
            any::<String>(),
            "candidate:[0-9]{1,3} 1 udp [0-9]{1,10} [0-9.]{7,15} [0-9]{1,5} typ (host|srflx|relay)( raddr [0-9.]{7,15} rport [0-9]{1,5})?"
        ])
            .prop_map(|(publish, candidate)| ClientMessage::Candidate {
                connection: if publish {
                    Connection::Publish
                } else {
                    Connection::Subscribe
                },
                candidate,
            }),
        any::<bool>().prop_map(|muted| ClientMessage::SetMuted { muted }),
        any::<bool>().prop_map(|raised| ClientMessage::RaiseHand { raised }),
        participant().prop_map(|participant| ClientMessage::RequestKeyframe { participant }),
        participant().prop_map(|participant| ClientMessage::Admit { participant }),
        participant().prop_map(|participant| ClientMessage::Deny { participant }),
        participant().prop_map(|participant| ClientMessage::Mute { participant }),
        participant().prop_map(|participant| ClientMessage::LowerHand { participant }),
        participant().prop_map(|participant| ClientMessage::Remove { participant }),
        Just(ClientMessage::EndMeeting),
        Just(ClientMessage::Leave),
        Just(ClientMessage::Ping),
        (any::<u32>(), any::<String>()).prop_map(|(v, grant)| ClientMessage::Join {
            v,
            room: room(),
            grant
        }),
        any::<String>().prop_map(|relay| ClientMessage::Chat { relay }),
    ]
}

/// Random text, and frames that are almost the protocol.
fn raw_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        message().prop_map(|m| serde_json::to_string(&m).unwrap_or_default()),
        (message(), 0usize..200, any::<char>()).prop_map(|(m, at, c)| {
            let mut s = serde_json::to_string(&m).unwrap_or_default();
            let at = (0..=at.min(s.len()))
                .rev()
                .find(|i| s.is_char_boundary(*i))
                .unwrap_or(0);
            s.insert(at, c);
            s
        }),
        "\\{\"type\":\"[a-z_]{0,20}\"(,\"[a-z]{1,8}\":(null|true|[0-9]{1,5}|\"[ -~]{0,10}\"|\\[\\]|\\{\\}))*\\}",
    ]
}

fn bytes(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), len)
}

/// A STUN message: binding request (or another type), a username naming one of the
/// SFU's ICE ufrags or not, and random attributes.
fn stun() -> impl Strategy<Value = (Vec<u8>, bool)> {
    (
        prop_oneof![Just(0x0001u16), Just(0x0101), Just(0x0111), any::<u16>()],
        bytes(12..13),
        any::<bool>(),
        "[a-zA-Z0-9]{0,8}",
        proptest::collection::vec((any::<u16>(), bytes(0..40)), 0..4),
        any::<bool>(),
    )
        .prop_map(|(typ, txid, named, theirs, attrs, honest_length)| {
            let mut body = Vec::new();
            let mut attr = |t: u16, v: &[u8]| {
                body.extend_from_slice(&t.to_be_bytes());
                body.extend_from_slice(&(v.len() as u16).to_be_bytes());
                body.extend_from_slice(v);
                while body.len() % 4 != 0 {
                    body.push(0);
                }
            };
            if !named {
                attr(0x0006, format!("nobody:{theirs}").as_bytes());
            }
            for (t, v) in &attrs {
                attr(*t, v);
            }
            let mut m = typ.to_be_bytes().to_vec();
            let len = if honest_length {
                body.len() as u16
            } else {
                body.len() as u16 ^ 0x00f0
            };
            m.extend_from_slice(&len.to_be_bytes());
            m.extend_from_slice(&0x2112_a442u32.to_be_bytes());
            m.extend_from_slice(&txid);
            m.extend_from_slice(&body);
            (m, named)
        })
}

fn dtls() -> impl Strategy<Value = Vec<u8>> {
    (20u8..=25, any::<u16>(), bytes(6..7), bytes(0..300)).prop_map(|(content, epoch, seq, body)| {
        let mut m = vec![content, 0xfe, 0xfd];
        m.extend_from_slice(&epoch.to_be_bytes());
        m.extend_from_slice(&seq);
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&body);
        m
    })
}

fn rtp() -> impl Strategy<Value = Vec<u8>> {
    (
        0x80u8..=0xbf,
        prop_oneof![Just(111u8), Just(96), Just(0xe0 | 96), any::<u8>()],
        any::<u16>(),
        any::<u32>(),
        prop_oneof![any::<u32>(), 0u32..64],
        bytes(0..1200),
    )
        .prop_map(|(b0, pt, seq, ts, ssrc, payload)| {
            let mut m = vec![b0, pt];
            m.extend_from_slice(&seq.to_be_bytes());
            m.extend_from_slice(&ts.to_be_bytes());
            m.extend_from_slice(&ssrc.to_be_bytes());
            m.extend_from_slice(&payload);
            m
        })
}

fn rtcp() -> impl Strategy<Value = Vec<u8>> {
    (
        0x80u8..=0x9f,
        200u8..=206,
        any::<u16>(),
        any::<u32>(),
        bytes(0..80),
    )
        .prop_map(|(b0, pt, len, ssrc, body)| {
            let mut m = vec![b0, pt];
            m.extend_from_slice(&len.to_be_bytes());
            m.extend_from_slice(&ssrc.to_be_bytes());
            m.extend_from_slice(&body);
            m
        })
}

fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        Just(Origin::Known),
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| Origin::Unknown(SocketAddr::from((ip, port)))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (any::<u8>(), any::<bool>()).prop_map(|(who, lobby)| Op::Join { who, lobby }),
        6 => (any::<u8>(), message()).prop_map(|(conn, message)| Op::Frame { conn, message }),
        3 => (any::<u8>(), raw_frame()).prop_map(|(conn, text)| Op::Raw { conn, text }),
        1 => (any::<u8>(), any::<u8>(), proptest::option::of(any::<u8>()), "[ -~]{1,50}")
            .prop_map(|(conn, author, with, body)| Op::Chat { conn, author, with, body }),
        1 => any::<u8>().prop_map(|conn| Op::Leave { conn }),
        2 => (origin(), bytes(0..1500))
            .prop_map(|(from, data)| Op::Datagram { from, data, ufrag: None }),
        3 => (origin(), stun(), any::<usize>()).prop_map(|(from, (data, named), pick)| {
            Op::Datagram { from, data, ufrag: named.then_some(pick) }
        }),
        2 => (origin(), dtls()).prop_map(|(from, data)| Op::Datagram { from, data, ufrag: None }),
        3 => (origin(), rtp()).prop_map(|(from, data)| Op::Datagram { from, data, ufrag: None }),
        2 => (origin(), rtcp()).prop_map(|(from, data)| Op::Datagram { from, data, ufrag: None }),
        1 => any::<u16>().prop_map(|ms| Op::Wait { ms: ms % 3000 }),
    ]
}

/// The SFU, a simulated clock, and what the SFU said.
struct World {
    sfu: Sfu,
    now: Instant,
    /// The ICE ufrags of the SFU's peer connections, from its SDPs.
    ufrags: Vec<String>,
    /// Frames to each connection, in order.
    frames: Vec<(ConnId, ServerMessage)>,
    /// Connections that joined, for hostile frames to speak on.
    conns: Vec<ConnId>,
    next_conn: ConnId,
}

impl World {
    fn new() -> World {
        World {
            sfu: Sfu::new(
                SfuConfig {
                    candidate: SFU.parse().expect("address"),
                    last_n: 20,
                    fanout_threads: 1,
                    initial_estimate_bps: aula_sfu::media::INITIAL_ESTIMATE_BPS as u64,
                    capacity: 100,
                },
                Box::new(Counter(0)),
            ),
            now: Instant::now(),
            ufrags: Vec::new(),
            frames: Vec::new(),
            conns: vec![REAL_CONN],
            next_conn: 1000,
        }
    }

    /// Takes the SFU's output: frames are kept, datagrams for `client` returned.
    fn outputs(&mut self, client: Option<SocketAddr>) -> Vec<Vec<u8>> {
        let mut to_client = Vec::new();
        while let Some(out) = self.sfu.poll_output() {
            match out {
                // The node closes the WebSocket, whose session then reports it closed.
                Output::Close { conn } => self.sfu.leave(self.now, conn),
                Output::Transmit { to, data } if Some(to) == client => {
                    to_client.push(data.to_vec());
                }
                Output::Signal { conn, message } => {
                    if let ServerMessage::PublishAnswer { sdp }
                    | ServerMessage::SubscribeOffer { sdp, .. } = &message
                    {
                        self.ufrags.extend(
                            sdp.lines()
                                .filter_map(|l| l.strip_prefix("a=ice-ufrag:"))
                                .map(|u| u.trim().to_owned()),
                        );
                    }
                    self.frames.push((conn, message));
                }
                _ => {}
            }
        }
        to_client
    }

    fn timeout(&mut self) {
        if self.sfu.poll_timeout().is_some_and(|t| t <= self.now) {
            self.sfu.handle_timeout(self.now);
        }
    }

    /// One of the joined connections, or now and then one the SFU does not know.
    fn conn(&self, n: u8) -> ConnId {
        match self.conns.get(usize::from(n) % (self.conns.len() + 1)) {
            Some(c) => *c,
            None => STRANGER,
        }
    }

    fn apply(&mut self, op: Op, known: SocketAddr) {
        match op {
            Op::Join { who, lobby } => {
                let c = self.next_conn;
                self.next_conn += 1;
                self.conns.push(c);
                self.sfu.join(self.now, c, joining(someone(who), lobby));
            }
            Op::Frame { conn: c, message } => {
                self.sfu.handle_message(self.now, self.conn(c), message)
            }
            Op::Raw { conn: c, text } => {
                if let Ok(message) = aula_sfu::protocol::parse_client_frame(&text) {
                    self.sfu.handle_message(self.now, self.conn(c), message);
                }
            }
            Op::Chat {
                conn: c,
                author,
                with,
                body,
            } => {
                let author = someone(author);
                let conversation = with
                    .and_then(|w| Conversation::private(author, someone(w)).ok())
                    .unwrap_or(Conversation::Room);
                if let Ok(body) = ChatBody::parse(&body) {
                    let at = Timestamp::from_secs(1_800_000_000);
                    self.sfu.relay_chat(
                        self.conn(c),
                        RelayedMessage {
                            id: MessageId::new(at, uuid(7)),
                            conversation,
                            author,
                            body,
                            posted_at: at,
                        },
                    );
                }
            }
            Op::Leave { conn: c } => self.sfu.leave(self.now, self.conn(c)),
            Op::Datagram { from, data, ufrag } => {
                let data = match ufrag {
                    Some(pick) if !self.ufrags.is_empty() => {
                        name_ufrag(&data, &self.ufrags[pick % self.ufrags.len()])
                    }
                    _ => data,
                };
                let from = match from {
                    Origin::Known => known,
                    Origin::Unknown(a) => a,
                };
                self.sfu.handle_datagram(self.now, from, &data);
            }
            Op::Wait { ms } => {
                self.now += Duration::from_millis(u64::from(ms));
                self.timeout();
            }
        }
        self.outputs(None);
    }
}

/// Puts a USERNAME attribute `<ufrag>:x` first into a STUN message's attributes.
fn name_ufrag(stun: &[u8], ufrag: &str) -> Vec<u8> {
    let mut attr = Vec::new();
    let name = format!("{ufrag}:x");
    attr.extend_from_slice(&0x0006u16.to_be_bytes());
    attr.extend_from_slice(&(name.len() as u16).to_be_bytes());
    attr.extend_from_slice(name.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let (head, rest) = stun.split_at(stun.len().min(20));
    let mut m = head.to_vec();
    m.extend_from_slice(&attr);
    m.extend_from_slice(rest);
    if m.len() >= 4 {
        let len = (m.len().saturating_sub(20)) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
    }
    m
}

/// A real participant: joins on `conn`, publishes a microphone with a str0m client at
/// `addr`, and moves datagrams both ways until the connection is up. Returns whether the
/// SFU welcomed them and whether the publish connection came up.
fn real_participant(w: &mut World, conn: ConnId, who: Participant, addr: SocketAddr) -> bool {
    w.frames.clear();
    w.sfu.join(w.now, conn, joining(who, false));
    w.outputs(None);
    let welcomed = w
        .frames
        .iter()
        .any(|(c, f)| *c == conn && matches!(f, ServerMessage::Welcome { you, .. } if *you == who));
    assert!(welcomed, "the real participant is welcomed: {:?}", w.frames);

    let mut cfg = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .clear_extension_map();
    cfg.codec_config().add_config(
        aula_sfu::media::OPUS_PT.into(),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams::default(),
    );
    let mut rtc = cfg.build(w.now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"))
        .expect("a host candidate");
    let mut change = rtc.sdp_api();
    let mid = change.add_media(
        MediaKind::Audio,
        Direction::SendOnly,
        Some("s".into()),
        Some("a".into()),
        None,
    );
    let (offer, pending) = change.apply().expect("an offer");
    w.frames.clear();
    w.sfu.handle_message(
        w.now,
        conn,
        ClientMessage::PublishOffer {
            sdp: offer.to_sdp_string(),
            tracks: vec![PublishedTrack {
                mid: mid.to_string(),
                source: Source::Microphone,
            }],
            restart: false,
        },
    );
    let mut inbound = w.outputs(Some(addr));
    let answer = w
        .frames
        .iter()
        .find_map(|(c, f)| match f {
            ServerMessage::PublishAnswer { sdp } if *c == conn => Some(sdp.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the SFU answers the publish offer: {:?}", w.frames));
    rtc.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer).expect("answer"),
        )
        .expect("the answer applies");
    let sfu_addr: SocketAddr = SFU.parse().expect("address");
    // Simulated time in 5 ms steps: ICE and DTLS take a few round trips.
    for _ in 0..2000 {
        for data in inbound.drain(..) {
            if let Ok(r) = Receive::new(Protocol::Udp, sfu_addr, addr, &data) {
                rtc.handle_input(Input::Receive(w.now, r))
                    .expect("the client takes the datagram");
            }
        }
        loop {
            match rtc.poll_output().expect("client output") {
                str0m::Output::Transmit(t) => {
                    w.sfu.handle_datagram(w.now, addr, &t.contents);
                }
                str0m::Output::Event(Event::Connected) => return true,
                str0m::Output::Event(_) => {}
                str0m::Output::Timeout(_) => break,
            }
        }
        inbound.extend(w.outputs(Some(addr)));
        w.now += Duration::from_millis(5);
        w.timeout();
        rtc.handle_input(Input::Timeout(w.now))
            .expect("client timeout");
    }
    false
}

fn cases() -> u32 {
    std::env::var("AULA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // A failing case is shrunk, but not for ever.
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hostile_frames_and_datagrams_neither_crash_the_sfu_nor_keep_a_real_participant_out(
        ops in proptest::collection::vec(op(), 1..120)
    ) {
        let mut w = World::new();
        let first: SocketAddr = "10.0.0.1:50000".parse().expect("address");
        prop_assert!(
            real_participant(&mut w, REAL_CONN, real(0), first),
            "the first real participant connects"
        );
        // STUN datagrams that name an ICE username reach real peer connections.
        prop_assert!(!w.ufrags.is_empty());
        for op in ops {
            w.apply(op, first);
        }
        let later: SocketAddr = "10.0.0.2:50000".parse().expect("address");
        prop_assert!(
            real_participant(&mut w, 2, real(1), later),
            "a real participant still joins and connects afterwards"
        );
    }
}
