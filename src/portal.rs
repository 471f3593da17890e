//! The portal on one machine: every function's router in one process, on the embedded
//! store (with its sweeper) or on DynamoDB/S3, with an admin created on first start.

use crate::config::{Config, StoreKind};
use crate::web;
use anyhow::{Context, Result};
use aula_api::crypto::random_bytes;
use aula_api::{ApiConfig, ApiState, Keys};
use aula_domain::ports::Store;
use aula_domain::services::LoginPolicy;
use aula_domain::{Clock, Email};
use aula_media_node::{MediaNode, NodeConfig, NodeDeps, NodeStore};
use aula_store::{AwsStore, RandomIds, SqliteStore, SystemClock};
use aula_tokens::{JoinVerifier, generate_ed25519_pkcs8};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// Reads the keys from `dir`, making them on first start (readable by the owner only).
pub fn load_or_create_keys(dir: &Path) -> Result<Keys> {
    create_private_dir(dir)?;
    let signing = dir.join("signing-ed25519.pk8");
    let secret = dir.join("hash-secret.bin");
    let read_or_make = |path: &Path, make: &dyn Fn() -> Result<Vec<u8>>| -> Result<Vec<u8>> {
        if path.exists() {
            return std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        }
        let bytes = make()?;
        write_private(path, &bytes)?;
        tracing::info!(path = %path.display(), "made a new secret");
        Ok(bytes)
    };
    Ok(Keys {
        signing_pkcs8: read_or_make(&signing, &|| Ok(generate_ed25519_pkcs8()?))?,
        hash_secret: read_or_make(&secret, &|| Ok(random_bytes::<32>()?.to_vec()))?,
    })
}

/// A directory only its owner can enter: it holds personal data or keys.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Everything a portal needs that differs between production and tests.
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub store_kind: &'static str,
    pub clock: Arc<dyn Clock>,
    pub keys: Keys,
    pub api: ApiConfig,
    pub policy: LoginPolicy,
}

pub fn state(parts: &Parts) -> Result<ApiState> {
    ApiState::new(
        parts.store.clone(),
        parts.clock.clone(),
        Arc::new(RandomIds),
        &parts.keys,
        parts.policy,
        parts.api.clone(),
    )
    .context("building the portal's state")
}

/// The whole portal: the API of every function, the health check and the frontend, with
/// the security headers (the CSP allows the portal's origin and its media nodes).
pub fn app(state: ApiState, store_kind: &'static str) -> Router {
    app_with_media(state, store_kind, None, &[])
}

/// The portal with an in-process media node's signalling (`/media`) under the same
/// security headers; `more_origins`: separately run nodes the page may connect to.
pub fn app_with_media(
    state: ApiState,
    store_kind: &'static str,
    media: Option<Router>,
    more_origins: &[String],
) -> Router {
    let mut media_origins: Vec<String> = [
        Some(state.config.public_url.as_str()),
        state.config.media_node_url.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(web::websocket_origin)
    .chain(more_origins.iter().map(|o| o.trim().to_owned()))
    .filter(|o| !o.is_empty())
    .collect();
    media_origins.dedup();
    let health = Router::new()
        .route("/healthz", get(health))
        .with_state((state.clone(), store_kind));
    // The node's metrics are served on a private listener only (`--metrics-listen`); here
    // a scraper or a prober gets a plain 404, not the app's page.
    let health = health.route("/metrics", get(|| async { StatusCode::NOT_FOUND }));
    let mut app = aula_api::router(state).merge(health);
    if let Some(media) = media {
        app = app.merge(media);
    }
    let app = app
        .fallback(web::serve)
        .layer(axum::middleware::from_fn(peer_from_connection));
    web::security_headers(app, &media_origins)
}

/// The caller's address for the login limits: the TCP peer (served with connect info).
async fn peer_from_connection(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    if let Some(ip) = peer {
        req.extensions_mut().insert(aula_api::PeerAddress(ip));
    }
    next.run(req).await
}

/// Creates the first admin if there is none, and prints its initial password once.
pub async fn bootstrap_admin(state: &ApiState, email: Email) -> Result<()> {
    match state.aula.bootstrap_admin(email).await {
        Ok(Some((admin, password))) => {
            println!(
                "First start: created the admin account {} with the initial password {}\n\
                 (shown only now and never stored in clear; the portal asks for a new one at the first login)",
                admin.email,
                password.expose()
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("creating the first admin: {e}")),
    }
}

/// Opens the store the configuration names; for the embedded one also returns it as
/// itself, for the sweeper.
async fn open_store(
    config: &Config,
) -> Result<(
    Arc<dyn Store>,
    Arc<dyn NodeStore>,
    &'static str,
    Option<SqliteStore>,
)> {
    Ok(match config.store {
        StoreKind::Embedded => {
            create_private_dir(&config.data_dir)?;
            let path = config.data_dir.join("aula.sqlite3");
            let store = SqliteStore::open(&path)
                .with_context(|| format!("opening the embedded store {}", path.display()))?;
            tracing::info!(path = %path.display(), "embedded store open");
            let shared = Arc::new(store.clone());
            (shared.clone(), shared, "embedded", Some(store))
        }
        StoreKind::Dynamodb => {
            let store = AwsStore::from_env().await;
            tracing::info!(table = %store.config().table, "using DynamoDB and S3");
            let store = Arc::new(store);
            (store.clone(), store, "dynamodb", None)
        }
    })
}

fn parts(
    config: &Config,
    store: Arc<dyn Store>,
    store_kind: &'static str,
    clock: Arc<dyn Clock>,
    public_url: &str,
) -> Result<Parts> {
    Ok(Parts {
        store,
        store_kind,
        clock,
        keys: load_or_create_keys(&config.keys_dir)?,
        api: ApiConfig {
            // Without a fixed node, placement picks among registered nodes: here the
            // in-process one.
            media_node_url: config.media_node_url.clone(),
            turn: config.turn.clone(),
            // The portal runs for good: the log is written beside the response.
            log_after_response: true,
            forecast: aula_domain::services::ForecastPolicy {
                node_capacity: config.media_capacity,
                ..Default::default()
            },
            public_url: public_url.to_owned(),
            host_id: config.host_id.clone(),
            contacts: config.contacts.clone(),
            processing: aula_api::Processing {
                location: config.processing_location.clone().unwrap_or_else(|| {
                    match config.store {
                        StoreKind::Embedded => "this server (the portal's embedded store)".into(),
                        StoreKind::Dynamodb => format!(
                            "AWS DynamoDB and S3, region {}",
                            std::env::var("AWS_REGION").unwrap_or_else(|_| "unknown".into())
                        ),
                    }
                }),
                backup_days: None,
            },
        },
        policy: LoginPolicy {
            self_registration: config.self_registration,
            ..LoginPolicy::default()
        },
    })
}

/// `aula admin reset-password`: the operator gives an account (typically the only admin,
/// who lost the initial password) a new random password, printed once; it must be changed
/// at the next login. Uses the same store and keys as `aula serve` with the same settings.
pub async fn reset_password(config: Config, email: &str) -> Result<()> {
    let email = Email::parse(email).context("the email address")?;
    let (store, _, store_kind, _) = open_store(&config).await?;
    let public_url = config.public_url(config.listen);
    let state = state(&parts(
        &config,
        store,
        store_kind,
        Arc::new(SystemClock),
        &public_url,
    )?)?;
    let (account, password) = state
        .aula
        .operator_reset_password(&email)
        .await
        .map_err(|e| anyhow::anyhow!("resetting the password of {email}: {e}"))?;
    println!(
        "New password for {} ({}): {}\n\
         (shown only now; it must be changed at the next login; all sessions of the account ended)",
        account.email,
        account.role.as_str(),
        password.expose()
    );
    Ok(())
}

pub async fn run(config: Config) -> Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, node_store, store_kind, embedded) = open_store(&config).await?;
    if let Some(embedded) = embedded {
        tokio::spawn(sweep_forever(embedded, clock.clone(), config.sweep_every));
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let public_url = config.public_url(addr);
    let parts = parts(&config, store, store_kind, clock, &public_url)?;
    let state = state(&parts)?;
    bootstrap_admin(&state, config.admin_email.clone()).await?;

    let node = match config.media_node_url {
        Some(_) => None,
        None => Some(start_media_node(&config, &state, node_store, &public_url).await?),
    };
    let app = app_with_media(
        state.clone(),
        store_kind,
        node.as_ref().map(MediaNode::router),
        &config.media_origins,
    );
    if let (Some(node), Some(metrics_addr)) = (&node, config.metrics_listen) {
        let metrics = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("listening for metrics on {metrics_addr}"))?;
        let metrics_addr = metrics
            .local_addr()
            .context("reading the metrics address")?;
        println!("Media node metrics (this machine only): http://{metrics_addr}/metrics");
        tokio::spawn(serve_metrics(metrics, node.metrics_router(), config.http));
    }

    // The one line a newcomer needs; tests read it to find the port.
    println!("Aula is running at http://{addr}/ (health: http://{addr}/healthz)");
    tracing::info!(%addr, store = store_kind, "portal listening");
    aula_media_node::http::serve(listener, app, config.http, async move {
        shutdown_signal().await;
        if let Some(node) = node {
            node.drain().await;
        }
    })
    .await;
    Ok(())
}

/// Serves the metrics listener until the process ends.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: aula_media_node::http::HttpLimits,
) {
    aula_media_node::http::serve(listener, router, limits, std::future::pending()).await;
}

/// The media node of a one-machine portal: in this process, registered in the same
/// registry (placement finds it there), checking grants with the portal's public key.
async fn start_media_node(
    config: &Config,
    state: &ApiState,
    store: Arc<dyn NodeStore>,
    public_url: &str,
) -> Result<MediaNode> {
    let verifier = JoinVerifier::from_public_key(state.tokens.public_key())
        .context("reading the public key")?;
    let signalling_url =
        format!("{}/media", public_url.trim_end_matches('/')).replacen("http", "ws", 1);
    let mut node_config = NodeConfig::local(state.aula.ids.node_id(), signalling_url);
    node_config.udp_bind = config.media_udp;
    node_config.public_udp = config
        .media_public_ip
        .map(|ip| std::net::SocketAddr::new(ip, config.media_udp.port()));
    node_config.drain_timeout = std::time::Duration::from_secs(5);
    node_config.capacity = config.media_capacity;
    MediaNode::start(
        node_config,
        NodeDeps {
            store,
            clock: state.aula.clock.clone(),
            ids: state.aula.ids.clone(),
            verifier,
        },
    )
    .await
    .context("starting the in-process media node")
}

/// Deletes expired records from the embedded store, forever.
async fn sweep_forever(store: SqliteStore, clock: Arc<dyn Clock>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.sweep(clock.now()).await {
            Ok(report) => {
                for (kind, n) in &report.deleted {
                    tracing::info!(kind = kind.name(), deleted = n, "swept expired records");
                }
            }
            Err(e) => tracing::error!(
                error = %aula_domain::ErrorChain(&e),
                "sweeping expired records failed"
            ),
        }
    }
}

/// Answers 200 when the store answers, 503 otherwise.
async fn health(
    State((state, store_kind)): State<(ApiState, &'static str)>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    match state.aula.store.live_nodes(state.aula.clock.now()).await {
        Ok(_) => (
            StatusCode::OK,
            axum::Json(json!({ "status": "ok", "store": store_kind })),
        ),
        Err(e) => {
            tracing::error!(
                error = %aula_domain::ErrorChain(&e),
                "health check: the store does not answer"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "unavailable", "store": store_kind })),
            )
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
