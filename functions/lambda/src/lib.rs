//! The start of every Aula Lambda function: JSON logs, configuration from the environment
//! (read once, failing fast), the AWS clients (built once per cold start), the keys, and
//! then one function's router under the Lambda runtime. The same router runs in the local
//! portal, so a handler is the same code in both places.

use anyhow::{Context, Result, bail};
use aula_api::crypto::{Argon2Passwords, HmacHasher};
use aula_api::tokens::{TokenLifetimes, Tokens};
use aula_api::{ApiConfig, ApiState, Function};
use aula_domain::services::{Aula, LoginPolicy};
use aula_store::{AwsConfig, AwsStore, RandomIds, SystemClock};
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
    let router = aula_api::function_router(function, state)
        .layer(axum::middleware::from_fn(peer_from_api_gateway));
    lambda_http::run(router).await
}

/// The caller's address as API Gateway determined it (behind CloudFront: the viewer's
/// address, not the X-Forwarded-For entries a client can write).
async fn peer_from_api_gateway(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use lambda_http::request::RequestContext;
    let source = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        _ => None,
    };
    if let Some(ip) = source {
        req.extensions_mut().insert(aula_api::PeerAddress(ip));
    }
    next.run(req).await
}

/// The deployment's keys as the Secrets Manager secret holds them (see infra/README.md).
#[derive(serde::Deserialize)]
struct SecretKeys {
    signing_key: String,
    hash_secret: String,
}

/// The signing key and the hashing secret: from the Secrets Manager secret named by
/// `AULA_SECRETS_ARN` (production), or from `AULA_SIGNING_KEY` / `AULA_HASH_SECRET`.
async fn keys(sdk: &aws_config::SdkConfig) -> Result<(Vec<u8>, Vec<u8>)> {
    let Ok(arn) = std::env::var("AULA_SECRETS_ARN") else {
        return Ok((secret("AULA_SIGNING_KEY")?, secret("AULA_HASH_SECRET")?));
    };
    let value = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .with_context(|| format!("reading the key secret {arn}"))?;
    let keys: SecretKeys = serde_json::from_str(value.secret_string().unwrap_or_default())
        .context("the key secret must be JSON with signing_key and hash_secret")?;
    if keys.signing_key == "UNSET" {
        bail!("the key secret {arn} holds no signing key yet (infra/README.md, first deploy)");
    }
    let signing = STANDARD
        .decode(keys.signing_key.trim())
        .context("signing_key must be base64")?;
    // The template generates an alphanumeric hash secret; any bytes make a fine HMAC key.
    let hash = STANDARD
        .decode(keys.hash_secret.trim())
        .unwrap_or_else(|_| keys.hash_secret.into_bytes());
    Ok((signing, hash))
}

async fn state() -> Result<ApiState> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let (signing_key, hash_secret) = keys(&sdk).await?;
    let tokens = Tokens::from_pkcs8(&signing_key, TokenLifetimes::default())
        .context("the signing key must be an Ed25519 PKCS#8 key")?;
    let host_id = format!(
        "{}/{}",
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
        std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_default()
    );
    Ok(ApiState {
        aula: Aula {
            store: Arc::new(AwsStore::new(&sdk, AwsConfig::from_env())),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            passwords: Arc::new(Argon2Passwords),
            hasher: Arc::new(HmacHasher::new(&hash_secret)),
            policy: LoginPolicy {
                self_registration: std::env::var("AULA_SELF_REGISTRATION")
                    .is_ok_and(|v| v == "true"),
                ..LoginPolicy::default()
            },
        },
        tokens,
        config: Arc::new(ApiConfig {
            contacts: aula_api::PrivacyContacts {
                supervisory_authority: required("AULA_SUPERVISORY_AUTHORITY")?,
                data_protection_officer: required("AULA_DATA_PROTECTION_OFFICER")?,
            },
            public_url: required("AULA_PUBLIC_URL")?,
            processing: aula_api::Processing::from_env(),
            host_id,
            media_node_url: std::env::var("AULA_MEDIA_NODE_URL")
                .ok()
                .filter(|v| !v.trim().is_empty()),
        }),
    })
}
