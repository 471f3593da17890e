//! Configuration, read once at start from flags and `AULA_*` environment variables.

use anyhow::{Result, bail};
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
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub store: StoreKind,
    pub data_dir: PathBuf,
    pub sweep_every: std::time::Duration,
}

impl ServeArgs {
    pub fn into_config(self) -> Result<Config> {
        if self.sweep_seconds == 0 {
            bail!("--sweep-seconds must be at least 1");
        }
        Ok(Config {
            listen: self.listen,
            store: self.store,
            data_dir: self.data_dir,
            sweep_every: std::time::Duration::from_secs(self.sweep_seconds),
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
