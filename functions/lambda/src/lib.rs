//! The start of every Aula Lambda function: JSON logs, configuration from the environment
//! (read once, failing fast), the AWS clients (built once per cold start), the keys, and
//! then one function's router under the Lambda runtime. The same router runs in the local
//! portal, so a handler is the same code in both places.

use anyhow::{Context, Result, bail};
use aula_api::crypto::{Argon2Passwords, HmacHasher};
use aula_api::tokens::{TokenLifetimes, Tokens};
use aula_api::{ApiConfig, ApiState, Function};
use aula_domain::services::{Aula, LoginPolicy};
use aula_store::{AwsStore, RandomIds, SystemClock};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;

fn required(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => bail!("{name} must be set"),
    }
}

fn secret(name: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(required(name)?.trim())
        .with_context(|| format!("{name} must be base64"))
}

/// Runs `function` until the Lambda runtime stops it.
pub async fn run(function: Function) -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time() // CloudWatch stamps each line
        .init();
    let state = state().await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "configuration");
        e
    })?;
    tracing::info!(function = ?function, "function ready");
    lambda_http::run(aula_api::function_router(function, state)).await
}

async fn state() -> Result<ApiState> {
    let tokens = Tokens::from_pkcs8(&secret("AULA_SIGNING_KEY")?, TokenLifetimes::default())
        .context("AULA_SIGNING_KEY must be an Ed25519 PKCS#8 key")?;
    let host_id = format!(
        "{}/{}",
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
        std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_default()
    );
    Ok(ApiState {
        aula: Aula {
            store: Arc::new(AwsStore::from_env().await),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            passwords: Arc::new(Argon2Passwords),
            hasher: Arc::new(HmacHasher::new(&secret("AULA_HASH_SECRET")?)),
            policy: LoginPolicy {
                self_registration: std::env::var("AULA_SELF_REGISTRATION")
                    .is_ok_and(|v| v == "true"),
                ..LoginPolicy::default()
            },
        },
        tokens,
        config: Arc::new(ApiConfig {
            public_url: required("AULA_PUBLIC_URL")?,
            host_id,
            media_node_url: required("AULA_MEDIA_NODE_URL")?,
        }),
    })
}
