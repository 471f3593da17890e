//! `aula serve`: opens the store, runs the expiry sweeper (embedded store) and serves HTTP.

use crate::config::{Config, StoreKind};
use anyhow::{Context, Result};
use aula_domain::Clock;
use aula_domain::ports::Store;
use aula_store::{AwsStore, SqliteStore, SystemClock};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

#[derive(Clone)]
struct App {
    store: Arc<dyn Store>,
    store_kind: &'static str,
    clock: Arc<dyn Clock>,
}

pub async fn run(config: Config) -> Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, store_kind): (Arc<dyn Store>, &'static str) = match config.store {
        StoreKind::Embedded => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
            let path = config.data_dir.join("aula.sqlite3");
            let store = SqliteStore::open(&path)
                .with_context(|| format!("opening the embedded store {}", path.display()))?;
            tokio::spawn(sweep_forever(
                store.clone(),
                clock.clone(),
                config.sweep_every,
            ));
            tracing::info!(path = %path.display(), "embedded store open");
            (Arc::new(store), "embedded")
        }
        StoreKind::Dynamodb => {
            let store = AwsStore::from_env().await;
            tracing::info!(table = %store.config().table, "using DynamoDB and S3");
            (Arc::new(store), "dynamodb")
        }
    };

    let app = App {
        store,
        store_kind,
        clock,
    };
    let router = Router::new().route("/healthz", get(health)).with_state(app);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    // The one line a newcomer needs; tests read it to find the port.
    println!("Aula is running at http://{addr}/ (health: http://{addr}/healthz)");
    tracing::info!(%addr, store = store_kind, "portal listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")
}

/// Deletes expired records from the embedded store, forever.
async fn sweep_forever(store: SqliteStore, clock: Arc<dyn Clock>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.sweep(clock.now()).await {
            Ok(report) if report.total() > 0 => {
                for (kind, n) in &report.deleted {
                    tracing::info!(kind = kind.name(), deleted = n, "swept expired records");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "sweeping expired records failed"),
        }
    }
}

/// Answers 200 when the store answers, 503 otherwise.
async fn health(State(app): State<App>) -> (StatusCode, Json<serde_json::Value>) {
    match app.store.live_nodes(app.clock.now()).await {
        Ok(_) => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "store": app.store_kind })),
        ),
        Err(e) => {
            tracing::error!(error = %e, "health check: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "store": app.store_kind })),
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
