//! Load generator: starts a media node (the `aula-media-node` binary, as a separate process
//! so its CPU time can be read from /proc), joins R rooms × P participants that each
//! publish synthetic Opus (50 packets/s) and VP8-shaped video, and prints what the node
//! forwarded, what arrived, loss, forwarding latency and the node's CPU cost.
//!
//!     cargo build --release -p aula-media-node -p aula-loadgen
//!     target/release/aula-loadgen --rooms 1 --participants 30
//!     target/release/aula-loadgen --rooms 10 --participants 10
//!
//! With `--sfu janus` the same str0m clients and media drive a running Janus VideoRoom
//! instead (the reference; `bench-vs-janus.sh` starts Janus and compares).

use anyhow::{Context as _, bail};
use aula_domain::services::{GrantRole, JoinGrant};
use aula_domain::{Clock, GuestId, ModeratorId, Participant, RoomId, RoomSettings};
use aula_loadgen::{Client, ClientStats, JanusClient, Joined, LightClient, Publish, percentile};
use aula_sfu::protocol::Source;
use aula_store::SystemClock;
use aula_tokens::{TokenLifetimes, Tokens, generate_ed25519_pkcs8};
use base64::Engine as _;
use clap::Parser;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Load an Aula media node on loopback and print what it forwards")]
struct Args {
    #[arg(long, default_value_t = 1)]
    rooms: u32,
    #[arg(long, default_value_t = 30)]
    participants: u32,
    /// Seconds measured (after everyone joined and a warm-up second).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Video bitrate per participant, bits per second.
    #[arg(long, default_value_t = 1_500_000)]
    video_bitrate: u32,
    /// The node binary (default: next to this one).
    #[arg(long)]
    node: Option<std::path::PathBuf>,
    /// Forward video of at most this many recent speakers (the node's setting).
    #[arg(long, default_value_t = 20)]
    last_n: usize,
    /// The node's fan-out threads (its AULA_MEDIA_THREADS; default: one per core).
    #[arg(long)]
    node_threads: Option<usize>,
    /// Send media from the moment each participant is connected, so later participants
    /// connect to a loaded node (default: everyone connects first, then all start sending).
    #[arg(long)]
    media_while_joining: bool,
    /// Participants per room whose microphone sends speech (50 packets/s); the others are
    /// silent and send Opus DTX (a packet per 400 ms), as the web client does. Default: all.
    #[arg(long)]
    talkers: Option<u32>,
    /// The clients: `webrtc` (webrtc-rs, two peer connections and tasks per track each) or
    /// `str0m` (a sans-IO `Rtc` per connection, one task per participant: much cheaper).
    #[arg(long, value_enum, default_value_t = ClientKind::Webrtc)]
    client: ClientKind,
    /// The SFU under load: `aula` (a node this process starts) or `janus` (a running Janus
    /// VideoRoom at --janus-url, str0m clients only; its CPU is read from --janus-pid).
    #[arg(long, value_enum, default_value_t = Sfu::Aula)]
    sfu: Sfu,
    /// Janus's WebSocket API.
    #[arg(long, default_value = "ws://10.77.0.1:8188")]
    janus_url: String,
    /// The Janus process, for its CPU time.
    #[arg(long)]
    janus_pid: Option<u32>,
    /// The address the clients bind to with `--sfu janus` (Janus gathers no loopback
    /// candidates).
    #[arg(long, default_value = "10.77.0.2")]
    local_ip: std::net::IpAddr,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Sfu {
    Aula,
    Janus,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    Webrtc,
    Str0m,
}

/// Either client kind, as the load generator uses them.
enum AnyClient {
    Webrtc(Client),
    Str0m(LightClient),
    Janus(JanusClient),
}

impl AnyClient {
    async fn join(
        kind: ClientKind,
        url: &str,
        room: RoomId,
        grant: &str,
        index: u32,
    ) -> anyhow::Result<AnyClient> {
        Ok(match kind {
            ClientKind::Webrtc => {
                let Joined::Welcome(c) = Client::join(url, room, grant, index).await? else {
                    bail!("sent to the lobby");
                };
                AnyClient::Webrtc(c)
            }
            ClientKind::Str0m => {
                AnyClient::Str0m(LightClient::join(url, room, grant, index).await?)
            }
        })
    }

    fn me(&self) -> &Participant {
        match self {
            AnyClient::Webrtc(c) => &c.me,
            AnyClient::Str0m(c) => &c.me,
            AnyClient::Janus(c) => &c.me,
        }
    }

    fn stats(&self) -> &Arc<ClientStats> {
        match self {
            AnyClient::Webrtc(c) => &c.stats,
            AnyClient::Str0m(c) => &c.stats,
            AnyClient::Janus(c) => &c.stats,
        }
    }

    async fn publish(&mut self, what: Publish) -> anyhow::Result<()> {
        match self {
            AnyClient::Webrtc(c) => c.publish(what).await,
            AnyClient::Str0m(c) => c.publish(what).await,
            AnyClient::Janus(c) => c.publish(what).await,
        }
    }

    fn start_sending(&self) {
        match self {
            AnyClient::Webrtc(c) => c.start_sending(),
            AnyClient::Str0m(c) => c.start_sending(),
            AnyClient::Janus(c) => c.start_sending(),
        }
    }

    fn stop_sending(&self) {
        match self {
            AnyClient::Webrtc(c) => c.stop_sending(),
            AnyClient::Str0m(c) => c.stop_sending(),
            AnyClient::Janus(c) => c.stop_sending(),
        }
    }

    async fn close(self) {
        match self {
            AnyClient::Webrtc(c) => c.close().await,
            AnyClient::Str0m(c) => c.close().await,
            AnyClient::Janus(c) => c.close().await,
        }
    }
}

struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).context("utime")?.parse()?;
    let stime: f64 = f.get(12).context("stime")?.parse()?;
    // USER_HZ is 100 on Linux.
    Ok((utime + stime) / 100.0)
}

/// The sum of a Prometheus counter over its labels.
async fn metric(url: &str, name: &str) -> anyhow::Result<f64> {
    // A page that is not the metrics (an error status) must not read as zeros.
    let text = reqwest::get(url).await?.error_for_status()?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.participants < 2 {
        bail!("a meeting needs at least two participants");
    }
    if args.sfu == Sfu::Janus && args.client != ClientKind::Str0m {
        bail!("--sfu janus drives Janus with the str0m clients: add --client str0m");
    }
    let tokens = Tokens::from_pkcs8(&generate_ed25519_pkcs8()?, TokenLifetimes::default())?;
    let http_port = free_port()?;
    let url = format!("ws://127.0.0.1:{http_port}/media");
    // The node serves metrics on a listener of their own.
    let metrics_port = free_port()?;
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    // Aula's node is started here (and stopped when `node` drops); Janus runs already.
    let (node, pid) = match args.sfu {
        Sfu::Aula => {
            let node =
                start_node(&args, &tokens, (http_port, metrics_port), &url, &metrics).await?;
            let pid = node.0.id();
            (Some(node), pid)
        }
        Sfu::Janus => (
            None,
            args.janus_pid
                .context("--sfu janus needs --janus-pid (its CPU is the measure)")?,
        ),
    };

    println!(
        "aula-loadgen: {} room(s) x {} participants, Opus 50 pps + video {} kbit/s at 30 fps each, {} s measured",
        args.rooms,
        args.participants,
        args.video_bitrate / 1000,
        args.seconds
    );
    let mut clients = Vec::new();
    let join_started = Instant::now();
    for r in 0..args.rooms {
        let room = RoomId::from_uuid(uuid_of(1_000 + u128::from(r)));
        for p in 0..args.participants {
            let index = r * args.participants + p;
            let who = if p == 0 {
                Participant::Moderator(ModeratorId::from_uuid(uuid_of(u128::from(index))))
            } else {
                Participant::Guest(GuestId::from_uuid(uuid_of(u128::from(index))))
            };
            let grant = JoinGrant {
                room,
                participant: who,
                role: if p == 0 {
                    GrantRole::Moderator
                } else {
                    GrantRole::Guest
                },
                display_name: format!("P{index}"),
                settings: RoomSettings::default(),
                lobby: false,
            };
            if args.sfu == Sfu::Janus {
                let janus_room = janus_room(r);
                if p == 0 {
                    aula_loadgen::janus::create_room(
                        &args.janus_url,
                        janus_room,
                        args.participants,
                    )
                    .await?;
                }
                clients.push(AnyClient::Janus(
                    JanusClient::join(
                        &args.janus_url,
                        janus_room,
                        u64::from(index) + 1,
                        who,
                        index,
                        args.local_ip,
                    )
                    .await?,
                ));
                continue;
            }
            let (token, _) = tokens.join(&grant, SystemClock.now())?;
            clients.push(AnyClient::join(args.client, &url, room, &token, index).await?);
        }
    }
    // Then everyone publishes; a node too loaded to connect someone is a result, not a stop.
    let mut failed = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        if !args.media_while_joining {
            c.stop_sending();
        }
        let p = i as u32 % args.participants;
        let published = c
            .publish(Publish {
                video_bitrate: args.video_bitrate,
                // One clear speaker per room; the others murmur below speech level.
                loudness: if p == 1 { 30 } else { 90 },
                talking: args.talkers.is_none_or(|t| p < t),
                ..Publish::default()
            })
            .await;
        if let Err(e) = published {
            failed += 1;
            println!("participant {i} could not publish: {e:#}");
        }
    }
    if args.sfu == Sfu::Janus {
        // Aula's node subscribes everyone itself; a Janus subscriber asks for each feed. Janus
        // forwards every camera (it has no last-N).
        for room in clients.chunks_mut(args.participants as usize) {
            let everyone: Vec<(u64, Participant)> = room
                .iter()
                .filter_map(|c| match c {
                    AnyClient::Janus(j) => Some((j.feed, j.me)),
                    _ => None,
                })
                .collect();
            for c in room.iter_mut() {
                let AnyClient::Janus(j) = c else { continue };
                if let Ok(mut v) = j.stats.forwarded_video.lock() {
                    *v = everyone.iter().map(|(_, p)| *p).collect();
                }
                let others = everyone
                    .iter()
                    .filter(|(f, _)| *f != j.feed)
                    .map(|(f, p)| (*f, p.to_string()))
                    .collect();
                if let Err(e) = j.subscribe(others).await {
                    println!("participant {} could not subscribe: {e:#}", j.feed - 1);
                }
            }
        }
    }
    println!(
        "joined {} participants ({} publishing) in {:.1} s",
        clients.len(),
        clients.len() - failed,
        join_started.elapsed().as_secs_f64()
    );
    if !args.media_while_joining {
        // Subscribe connections come up after the publish ones; give them a moment.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for c in &clients {
            c.start_sending();
        }
        // The node offers each track once its first packets arrive: wait (bounded) until
        // everyone hears everyone in their room, so the window measures forwarding, not
        // that wave of renegotiations.
        let started = Instant::now();
        let pairs = |clients: &[AnyClient]| {
            let mut hearing = 0;
            for room in clients.chunks(args.participants as usize) {
                for c in room {
                    hearing += room
                        .iter()
                        .filter(|o| o.me() != c.me())
                        .filter(|o| c.stats().received_from(o.me(), Source::Microphone).packets > 0)
                        .count();
                }
            }
            hearing
        };
        let all = clients.len() * (args.participants as usize - 1);
        while pairs(&clients) < all && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "everyone connected, then all started sending: {} of {all} pairs hear each other after {:.1} s",
            pairs(&clients),
            started.elapsed().as_secs_f64()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The measured window. Per client: (sent audio, sent video) packets.
    let sent_by = |clients: &[AnyClient]| -> Vec<(u64, u64)> {
        clients
            .iter()
            .map(|c| {
                let all = c.stats().sent_packets.load(Ordering::Relaxed);
                let video = c.stats().sent_video_packets.load(Ordering::Relaxed);
                (all - video, video)
            })
            .collect()
    };
    let received_of = |clients: &[AnyClient]| -> (u64, u64) {
        let mut received = 0;
        let mut damaged = 0;
        for c in clients {
            if let Ok(r) = c.stats().received.lock() {
                for v in r.values() {
                    received += v.packets;
                    damaged += v.damaged;
                }
            }
        }
        (received, damaged)
    };
    for c in &clients {
        if let Ok(mut r) = c.stats().received.lock() {
            for v in r.values_mut() {
                v.latency_us.clear();
            }
        }
    }
    let cpu0 = cpu_seconds(pid)?;
    let own0 = cpu_seconds(std::process::id())?;
    let has_node = node.is_some();
    let counters = |metrics: String| async move {
        if !has_node {
            return Ok::<_, anyhow::Error>((f64::NAN, f64::NAN));
        }
        Ok((
            metric(&metrics, "aula_media_forwarded_packets_total").await?,
            metric(&metrics, "aula_media_forwarded_bytes_total").await?,
        ))
    };
    let (fwd0, bytes0) = counters(metrics.clone()).await?;
    let sent0 = sent_by(&clients);
    let (recv0, dmg0) = received_of(&clients);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid)?;
    let own1 = cpu_seconds(std::process::id())?;
    let (fwd1, bytes1) = counters(metrics.clone()).await?;
    let sent1 = sent_by(&clients);
    let (recv1, dmg1) = received_of(&clients);

    let forwarded = fwd1 - fwd0;
    let received = (recv1 - recv0) as f64;
    // Each packet goes to the P-1 others of its room: audio always, video while its sender
    // is among the last N speakers (as each room's first client last heard from the node).
    let fanout = f64::from(args.participants - 1);
    let mut sent = 0.0;
    let mut expected = 0.0;
    for (room, members) in clients.chunks(args.participants as usize).enumerate() {
        let forwarded_video = members[0]
            .stats()
            .forwarded_video
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        for (i, c) in members.iter().enumerate() {
            let k = room * args.participants as usize + i;
            let audio = (sent1[k].0 - sent0[k].0) as f64;
            let video = (sent1[k].1 - sent0[k].1) as f64;
            sent += audio + video;
            expected += audio * fanout;
            if forwarded_video.contains(c.me()) {
                expected += video * fanout;
            }
        }
    }
    let mut latencies: Vec<u64> = Vec::new();
    for c in &clients {
        if let Ok(r) = c.stats().received.lock() {
            for v in r.values() {
                latencies.extend(&v.latency_us);
            }
        }
    }
    latencies.sort_unstable();
    let cpu = cpu1 - cpu0;
    let node_loss = if expected > 0.0 {
        (1.0 - forwarded / expected).max(0.0)
    } else {
        f64::NAN
    };
    println!("--- over {elapsed:.1} s ---");
    println!("sent by clients:        {:>10.0} packets/s", sent / elapsed);
    if has_node {
        println!(
            "forwarded by the node:  {:>10.0} packets/s  ({:.1} Mbit/s of payload)",
            forwarded / elapsed,
            (bytes1 - bytes0) * 8.0 / elapsed / 1e6
        );
    } else {
        println!("forwarded by Janus:     not counted (Janus has no counter; see received)");
    }
    println!(
        "received by clients:    {:>10.0} packets/s  (damaged: {})",
        received / elapsed,
        dmg1 - dmg0
    );
    if has_node {
        println!(
            "loss (not forwarded):   {:>9.2} %   (node forwarded vs. what it should: audio x {fanout}, video of the last {} speakers x {fanout})",
            node_loss * 100.0,
            args.last_n
        );
    }
    println!(
        "loss (end to end):      {:>9.2} %   (received by clients vs. what the node should forward)",
        (1.0 - received / expected).max(0.0) * 100.0
    );
    println!(
        "forwarding latency:     p50 {:.2} ms, p99 {:.2} ms  (send -> receive in this process, {} samples)",
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        latencies.len()
    );
    println!(
        "SFU CPU:                {:.2} s in {elapsed:.1} s ({:.0}% of one core){}",
        cpu,
        cpu / elapsed * 100.0,
        if forwarded > 0.0 {
            format!(
                "; {:.2} CPU s per million forwarded packets",
                cpu / (forwarded / 1e6)
            )
        } else {
            String::new()
        }
    );
    // The measure both SFUs share (Janus counts nothing it forwards): bench-vs-janus.sh
    // reads this line.
    println!(
        "SFU CPU per packet received by the clients: {:.2} us",
        if received > 0.0 {
            cpu / received * 1e6
        } else {
            f64::NAN
        }
    );
    let own = own1 - own0;
    println!(
        "load generator CPU:     {:.2} s in {elapsed:.1} s ({:.0}% of one core); {:.2} CPU s per million packets sent + received",
        own,
        own / elapsed * 100.0,
        if sent + received > 0.0 {
            own / ((sent + received) / 1e6)
        } else {
            f64::NAN
        }
    );
    let sfu = match args.sfu {
        Sfu::Aula => format!(
            "node = target/{} aula-media-node in its own process with {} fan-out thread(s)",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            args.node_threads
                .map_or_else(|| "one per core".to_owned(), |n| n.to_string()),
        ),
        Sfu::Janus => format!(
            "SFU = Janus VideoRoom at {} (pid {pid}, no last-N: every camera)",
            args.janus_url
        ),
    };
    println!(
        "measured: {sfu} \
         (CPU from /proc/<pid>/stat, all its threads), clients = {} in this process; both on this machine's {} cores over {}",
        match args.client {
            ClientKind::Webrtc => "webrtc-rs 0.21 (--client webrtc)",
            ClientKind::Str0m => "str0m 0.25 sans-IO, one task per participant (--client str0m)",
        },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        match args.sfu {
            Sfu::Aula => "loopback".to_owned(),
            Sfu::Janus => format!("a veth pair ({} to Janus)", args.local_ip),
        }
    );
    for c in clients {
        c.stop_sending();
        c.close().await;
    }
    drop(node);
    Ok(())
}

/// Starts Aula's node with a memory store on loopback and waits until it serves metrics.
async fn start_node(
    args: &Args,
    tokens: &Tokens,
    (http_port, metrics_port): (u16, u16),
    url: &str,
    metrics: &str,
) -> anyhow::Result<NodeProcess> {
    let node_bin = match &args.node {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("aula-media-node"),
    };
    let child = Command::new(&node_bin)
        .args(["--store", "memory", "--udp", "127.0.0.1:0"])
        .args(["--listen", &format!("127.0.0.1:{http_port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .args(["--url", url])
        .args(["--capacity", "10000", "--last-n", &args.last_n.to_string()])
        .args(
            args.node_threads
                .iter()
                .flat_map(|n| ["--media-threads".to_owned(), n.to_string()]),
        )
        .env(
            "AULA_JOIN_PUBLIC_KEY",
            base64::engine::general_purpose::STANDARD.encode(tokens.public_key()),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", node_bin.display()))?;
    let node = NodeProcess(child);
    let started = Instant::now();
    while metric(metrics, "aula_media_capacity").await.is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the node did not come up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(node)
}

/// Janus's VideoRoom number for the load generator's room `r`.
fn janus_room(r: u32) -> u64 {
    1_000 + u64::from(r)
}

fn uuid_of(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x00a0_1a00_0000_0000_0000_0000_0000_0000 + n)
}
