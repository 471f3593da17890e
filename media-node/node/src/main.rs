//! The media node binary a media host runs (as a systemd service; see infra/).

use anyhow::Context as _;
use aula_domain::NodeId;
use aula_domain::ids::IdGenerator as _;
use aula_media_node::http::{self, HttpLimits};
use aula_media_node::{MediaNode, NodeConfig, NodeDeps, OUTBOUND_FRAMES};
use aula_store::{AwsStore, RandomIds, SqliteStore, SystemClock};
use aula_tokens::JoinVerifier;
use base64::Engine as _;
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Aula media node: the WebRTC SFU, signalling on HTTP (TLS terminates in front of it),
/// media on one UDP port.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// This node's id in the registry: its EC2 instance ARN on the fleet, or an id
    /// (default: a fresh one per start).
    #[arg(long, env = "AULA_NODE_ID", value_parser = |s: &str| NodeId::parse(s).map_err(|e| e.to_string()))]
    id: Option<NodeId>,
    /// Signalling and the health check (`/media`, `/healthz`).
    #[arg(long, env = "AULA_NODE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Prometheus metrics (`/metrics`), on a listener of their own that only the host
    /// should reach; `off` serves none.
    #[arg(long, env = "AULA_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    metrics_listen: String,
    /// Seconds a connection has to send a request's headers, counted from when it opens
    /// or from its previous response (so also the keep-alive idle timeout).
    #[arg(long, env = "AULA_HTTP_HEADER_SECONDS", default_value_t = HttpLimits::DEFAULT_HEADER_SECONDS)]
    http_header_seconds: u64,
    /// Open connections at most, WebSockets included; more wait until one closes.
    #[arg(long, env = "AULA_HTTP_MAX_CONNECTIONS", default_value_t = HttpLimits::DEFAULT_MAX_CONNECTIONS)]
    http_max_connections: usize,
    /// Seconds a request's body may take to arrive after its headers; a slower one is
    /// refused and its connection closed.
    #[arg(long, env = "AULA_HTTP_BODY_SECONDS", default_value_t = HttpLimits::DEFAULT_BODY_SECONDS)]
    http_body_seconds: u64,
    /// The media port.
    #[arg(long, env = "AULA_NODE_UDP", default_value = "0.0.0.0:7882")]
    udp: SocketAddr,
    /// The host's public IP address, as browsers reach the media port.
    #[arg(long, env = "AULA_NODE_PUBLIC_IP")]
    public_ip: Option<IpAddr>,
    /// The signalling URL clients are sent to (e.g. `wss://node-7.aula.example/media`).
    #[arg(long, env = "AULA_NODE_URL")]
    url: String,
    /// The functions' Ed25519 public key (32 bytes, base64): the node verifies join grants
    /// and chat messages with it and holds no secret.
    #[arg(long, env = "AULA_JOIN_PUBLIC_KEY")]
    public_key: String,
    #[arg(long, env = "AULA_NODE_CAPACITY", default_value_t = 500)]
    capacity: u32,
    /// Video of at most this many recent speakers is forwarded.
    #[arg(long, env = "AULA_LAST_N", default_value_t = 20)]
    last_n: usize,
    /// Threads that encrypt forwarded packets for subscribers (default: one per core;
    /// 1: everything on the media loop's thread).
    #[arg(long, env = "AULA_MEDIA_THREADS")]
    media_threads: Option<usize>,
    /// Seconds a node on SIGTERM waits for its meetings to move.
    #[arg(long, env = "AULA_DRAIN_SECONDS", default_value_t = 60)]
    drain_seconds: u64,
    /// Where the registry and meeting records go: DynamoDB (production, `AULA_TABLE` at
    /// `AWS_ENDPOINT_URL` if set) or memory (a node on its own, for benchmarks).
    #[arg(long, env = "AULA_NODE_STORE", value_enum, default_value_t = StoreKind::Dynamodb)]
    store: StoreKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Dynamodb,
    Memory,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rtc=warn,rtc_ice=warn,rtc_dtls=warn".into()),
        )
        .init();
    let args = Args::parse();
    if args.http_header_seconds == 0 || args.http_max_connections == 0 {
        anyhow::bail!("--http-header-seconds and --http-max-connections must be at least 1");
    }
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(args.http_header_seconds),
        max_connections: args.http_max_connections,
        body_timeout: Duration::from_secs(args.http_body_seconds),
    };
    let metrics_listen = http::parse_listen(&args.metrics_listen)
        .context("--metrics-listen: an address such as 127.0.0.1:9464, or off")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(args.public_key.trim())
        .context("AULA_JOIN_PUBLIC_KEY is not base64")?;
    let verifier = JoinVerifier::from_public_key(raw_ed25519(&key))
        .context("AULA_JOIN_PUBLIC_KEY is not a 32-byte Ed25519 public key")?;
    let store: Arc<dyn aula_media_node::NodeStore> = match args.store {
        StoreKind::Dynamodb => Arc::new(AwsStore::from_env().await),
        StoreKind::Memory => {
            Arc::new(SqliteStore::open_in_memory().context("opening an in-memory store")?)
        }
    };
    let config = NodeConfig {
        id: args.id.unwrap_or_else(|| RandomIds.node_id()),
        udp_bind: args.udp,
        public_udp: args
            .public_ip
            .map(|ip| SocketAddr::new(ip, args.udp.port())),
        signalling_url: args.url,
        capacity: args.capacity,
        last_n: args.last_n,
        fanout_threads: args.media_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        drain_timeout: Duration::from_secs(args.drain_seconds),
        heartbeat_every: aula_media_node::HEARTBEAT_EVERY,
        outbound_frames: OUTBOUND_FRAMES,
    };
    let node = MediaNode::start(
        config,
        NodeDeps {
            store,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            verifier,
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    if let Some(addr) = metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics listener {addr}"))?;
        tracing::info!(%addr, "metrics listening");
        tokio::spawn(http::serve(
            metrics,
            node.metrics_router(),
            limits,
            std::future::pending(),
        ));
    }
    // A draining node is not healthy for placement: a portal asked about it (by a client
    // leaving it) passes it over even before its registry entry is gone.
    let health = node.clone();
    let app = http::security_headers(
        node.router().route(
            "/healthz",
            axum::routing::get(move || {
                let draining = health.draining();
                async move {
                    if draining {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining")
                    } else {
                        (axum::http::StatusCode::OK, "ok")
                    }
                }
            }),
        ),
        http::API_CONTENT_SECURITY_POLICY.to_owned(),
    );
    // Serving ends when the drain does: the signal first stops new rooms and asks clients
    // to move, then the listener closes.
    http::serve(listener, app, limits, async {
        shutdown_signal().await;
        tracing::info!("draining: no new rooms, asking clients to move");
        node.drain().await;
        tracing::info!("drained; exiting");
    })
    .await;
    Ok(())
}

/// The raw key, from either the raw 32 bytes or a SubjectPublicKeyInfo (what the
/// deployment publishes in SSM): the SPKI of an Ed25519 key is a fixed 12-byte prefix.
fn raw_ed25519(key: &[u8]) -> &[u8] {
    const SPKI_PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    key.strip_prefix(&SPKI_PREFIX[..]).unwrap_or(key)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
