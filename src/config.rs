//! Configuration, read once at start from flags and `AULA_*` environment variables.

use anyhow::{Result, bail};
use aula_media_node::http::HttpLimits;
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// SQLite in the data directory, with an expiry sweeper.
    Embedded,
    /// DynamoDB and S3, at `AWS_ENDPOINT_URL` if set (tables and buckets from `AULA_*`).
    Dynamodb,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "AULA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the records are kept.
    #[arg(long, env = "AULA_STORE", value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// Directory of the embedded store.
    #[arg(long, env = "AULA_DATA_DIR", default_value = "aula-data")]
    data_dir: PathBuf,
    /// Seconds between two sweeps of expired records in the embedded store.
    #[arg(long, env = "AULA_SWEEP_SECONDS", default_value_t = 60)]
    sweep_seconds: u64,
    /// The portal's public origin, for invite links (default: http://<listen>).
    #[arg(long, env = "AULA_PUBLIC_URL")]
    public_url: Option<String>,
    /// Where the signing key and the hashing secret are kept (made on first start).
    /// Default: <data-dir>/keys.
    #[arg(long, env = "AULA_KEYS_DIR")]
    keys_dir: Option<PathBuf>,
    /// The email of the first admin, created with an initial password (printed once) on first start.
    #[arg(long, env = "AULA_ADMIN_EMAIL", default_value = "admin@aula.local")]
    admin_email: String,
    /// Let anyone create a moderator account (otherwise admins provision them).
    #[arg(long, env = "AULA_SELF_REGISTRATION", default_value_t = false)]
    self_registration: bool,
    /// Send every meeting to this media node instead of running one in-process (for a
    /// portal in front of a separately run node).
    #[arg(long, env = "AULA_MEDIA_NODE_URL")]
    media_node_url: Option<String>,
    /// The in-process media node's UDP port (all media uses this one port; 0 = any free).
    #[arg(long, env = "AULA_MEDIA_UDP", default_value = "127.0.0.1:0")]
    media_udp: SocketAddr,
    /// The address browsers send media to, when the UDP port is bound to all interfaces
    /// (e.g. this machine's LAN address, so other computers can join).
    #[arg(long, env = "AULA_MEDIA_PUBLIC_IP")]
    media_public_ip: Option<std::net::IpAddr>,
    /// Participants the in-process media node takes at most (as `aula-media-node`'s
    /// `AULA_NODE_CAPACITY`); beyond it, a join waits in the admission queue.
    #[arg(long, env = "AULA_NODE_CAPACITY", default_value_t = 500)]
    media_capacity: u32,
    /// Further origins of media nodes the page may open WebSockets to (its Content Security
    /// Policy), for separately run nodes this portal places rooms on: e.g.
    /// `wss://*.media.example` or `ws://127.0.0.1:*`; several separated by commas.
    #[arg(
        long = "media-origin",
        env = "AULA_MEDIA_ORIGINS",
        value_delimiter = ','
    )]
    media_origins: Vec<String>,
    /// TURN servers the join answer names for browsers that cannot reach the media node over
    /// UDP, e.g. `turn:10.0.0.5:3478?transport=tcp`; `{host}` stands for the placed node's
    /// host, `{node}` for its first label. Several separated by commas; needs --turn-secret.
    #[arg(long = "turn-url", env = "AULA_TURN_URLS", value_delimiter = ',')]
    turn_urls: Vec<String>,
    /// The secret shared with the TURN servers (coturn's `static-auth-secret`).
    #[arg(long, env = "AULA_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,
    /// The supervisory authority the privacy page names.
    #[arg(
        long,
        env = "AULA_SUPERVISORY_AUTHORITY",
        default_value = "not configured (set AULA_SUPERVISORY_AUTHORITY)"
    )]
    supervisory_authority: String,
    /// The data protection officer the privacy page names.
    #[arg(
        long,
        env = "AULA_DATA_PROTECTION_OFFICER",
        default_value = "not configured (set AULA_DATA_PROTECTION_OFFICER)"
    )]
    data_protection_officer: String,
    /// Where this portal processes data, as the privacy page says it (default: this server,
    /// or the AWS region of the DynamoDB store).
    #[arg(long, env = "AULA_PROCESSING_LOCATION")]
    processing_location: Option<String>,
    /// This host's id in the access log (default: the host name).
    #[arg(long, env = "AULA_HOST_ID")]
    host_id: Option<String>,
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
    /// Where the in-process media node's Prometheus metrics are served (`/metrics`), apart
    /// from the portal's port; `off` serves none.
    #[arg(long, env = "AULA_METRICS_LISTEN", default_value = "off")]
    metrics_listen: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: StoreKind,
    pub data_dir: PathBuf,
    pub sweep_every: std::time::Duration,
    pub public_url: Option<String>,
    pub keys_dir: PathBuf,
    pub admin_email: aula_domain::Email,
    pub self_registration: bool,
    pub media_node_url: Option<String>,
    pub media_udp: SocketAddr,
    pub media_public_ip: Option<std::net::IpAddr>,
    pub media_capacity: u32,
    pub media_origins: Vec<String>,
    pub host_id: String,
    pub contacts: aula_api::PrivacyContacts,
    pub processing_location: Option<String>,
    pub http: HttpLimits,
    pub metrics_listen: Option<SocketAddr>,
    pub turn: Option<aula_api::turn::TurnConfig>,
}

impl Config {
    /// The URL people open: the configured one, else the address the portal listens on
    /// (`bound`, which knows the port the OS chose for `:0`).
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }
}

impl ServeArgs {
    pub fn into_config(self) -> Result<Config> {
        if self.sweep_seconds == 0 {
            bail!("--sweep-seconds must be at least 1");
        }
        if self.http_header_seconds == 0 || self.http_max_connections == 0 {
            bail!("--http-header-seconds and --http-max-connections must be at least 1");
        }
        let metrics_listen = aula_media_node::http::parse_listen(&self.metrics_listen)
            .map_err(|e| anyhow::anyhow!("--metrics-listen: {e} (an address, or off)"))?;
        let admin_email = aula_domain::Email::parse(&self.admin_email)
            .map_err(|e| anyhow::anyhow!("--admin-email: {e}"))?;
        let host_id = self.host_id.unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "aula-portal".to_owned())
        });
        for origin in &self.media_origins {
            anyhow::ensure!(
                is_csp_origin(origin),
                "--media-origin {origin:?} is not an origin like wss://*.media.example or ws://127.0.0.1:*"
            );
        }
        let turn = match (self.turn_urls.is_empty(), self.turn_secret) {
            (true, None) => None,
            (false, Some(secret)) => Some(
                aula_api::turn::TurnConfig::new(self.turn_urls, secret.as_bytes())
                    .map_err(|e| anyhow::anyhow!("--turn-url/--turn-secret: {e}"))?,
            ),
            _ => bail!("--turn-url and --turn-secret go together"),
        };
        Ok(Config {
            turn,
            listen: self.listen,
            store: self.store,
            keys_dir: self.keys_dir.unwrap_or_else(|| self.data_dir.join("keys")),
            data_dir: self.data_dir,
            sweep_every: std::time::Duration::from_secs(self.sweep_seconds),
            public_url: self.public_url,
            admin_email,
            self_registration: self.self_registration,
            media_node_url: self.media_node_url,
            media_udp: self.media_udp,
            media_public_ip: self.media_public_ip,
            media_capacity: self.media_capacity,
            media_origins: self.media_origins,
            host_id,
            processing_location: self.processing_location,
            contacts: aula_api::PrivacyContacts {
                supervisory_authority: self.supervisory_authority,
                data_protection_officer: self.data_protection_officer,
            },
            http: HttpLimits {
                header_timeout: std::time::Duration::from_secs(self.http_header_seconds),
                max_connections: self.http_max_connections,
                body_timeout: std::time::Duration::from_secs(self.http_body_seconds),
            },
            metrics_listen,
        })
    }
}

/// Human-readable logs by default; one JSON object per line with `AULA_LOG_FORMAT=json`.
/// The level comes from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("AULA_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Whether `s` is a WebSocket (or HTTP) origin a Content Security Policy can name: scheme,
/// host (a leading `*.` allowed) and an optional port or `*`; nothing that could end the
/// directive or add another.
fn is_csp_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let host = host.strip_prefix("*.").unwrap_or(host);
    matches!(scheme, "ws" | "wss" | "http" | "https")
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && port.is_none_or(|p| p == "*" || (!p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
}

#[cfg(test)]
mod origin_tests {
    use super::is_csp_origin;

    #[test]
    fn media_origins_are_plain_origins_that_cannot_inject_into_the_policy() {
        for ok in [
            "wss://*.media.example",
            "ws://127.0.0.1:*",
            "wss://node-1.example:8443",
        ] {
            assert!(is_csp_origin(ok), "{ok}");
        }
        for bad in [
            "wss://a.example; script-src *",
            "wss://a.example/path",
            "javascript://x",
            "wss://",
            "*",
            "wss://a.example:",
        ] {
            assert!(!is_csp_origin(bad), "{bad}");
        }
    }
}
