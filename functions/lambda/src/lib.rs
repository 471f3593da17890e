//! The start of every Aula Lambda function: JSON logs, configuration from the environment
//! (read once, failing fast), the AWS clients (built once per cold start), the keys, and
//! then one function's router under the Lambda runtime. The same router runs in the local
//! portal, so a handler is the same code in both places.

use anyhow::{Context, Result, bail};
use aula_api::{ApiConfig, ApiState, Function, Keys};
use aula_domain::services::LoginPolicy;
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
    aula_lambda_log::init();
    let state = state().await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "configuration");
        e
    })?;
    tracing::info!(function = ?function, "function ready");
    let origin = Arc::new(origin_secret().await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "configuration");
        e
    })?);
    let router = aula_api::function_router(function, state).layer(
        axum::middleware::from_fn_with_state(origin, peer_behind_cloudfront),
    );
    lambda_http::run(router).await
}

/// The header CloudFront adds to every request it sends to the API (template.yaml,
/// `OriginCustomHeaders`), with the deployment's origin secret as its value.
pub const ORIGIN_SECRET_HEADER: &str = "x-aula-origin-secret";
/// The viewer's address and port as CloudFront saw the connection (origin request policy
/// `ApiOriginRequestPolicy`), e.g. `198.51.100.7:50212` or `2001:db8::7:50212`.
pub const VIEWER_ADDRESS_HEADER: &str = "cloudfront-viewer-address";

/// The secret that proves a request came through this deployment's CloudFront.
pub struct OriginSecret(Option<Vec<u8>>);

impl OriginSecret {
    pub fn new(secret: Option<&str>) -> Self {
        OriginSecret(
            secret
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec()),
        )
    }
    fn proven_by(&self, headers: &axum::http::HeaderMap) -> bool {
        let (Some(secret), Some(offered)) = (&self.0, headers.get(ORIGIN_SECRET_HEADER)) else {
            return false;
        };
        // No early exit at the first differing byte: timing tells nothing about the secret.
        let offered = offered.as_bytes();
        offered.len() == secret.len()
            && offered
                .iter()
                .zip(secret)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The origin secret: the Secrets Manager secret named by `AULA_ORIGIN_SECRET_ARN`
/// (production), or `AULA_ORIGIN_SECRET`; without either, no request is taken to come
/// through CloudFront and the viewer-address header is never believed.
async fn origin_secret() -> Result<OriginSecret> {
    if let Ok(arn) = std::env::var("AULA_ORIGIN_SECRET_ARN")
        && !arn.trim().is_empty()
    {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let value = aws_sdk_secretsmanager::Client::new(&sdk)
            .get_secret_value()
            .secret_id(&arn)
            .send()
            .await
            .with_context(|| format!("reading the origin secret {arn}"))?;
        let secret = OriginSecret::new(value.secret_string());
        if secret.0.is_none() {
            bail!("the origin secret {arn} is empty");
        }
        return Ok(secret);
    }
    Ok(OriginSecret::new(
        std::env::var("AULA_ORIGIN_SECRET").ok().as_deref(),
    ))
}

/// The client's address: CloudFront's viewer address when the request carries the origin
/// secret (it came through our distribution, which overwrites any viewer-sent copy of that
/// header), otherwise API Gateway's source address. Never X-Forwarded-For, whose first
/// entries a client writes itself.
pub fn client_address(
    headers: &axum::http::HeaderMap,
    source_ip: Option<&str>,
    origin: &OriginSecret,
) -> Option<String> {
    let viewer = || {
        let value = headers.get(VIEWER_ADDRESS_HEADER)?.to_str().ok()?;
        let (ip, _port) = value.rsplit_once(':')?;
        ip.trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| ip.to_string())
    };
    if origin.proven_by(headers)
        && let Some(ip) = viewer()
    {
        return Some(ip);
    }
    source_ip.map(str::to_owned)
}

/// The client address of a request as the Lambda runtime hands it over (API Gateway's
/// context in the extensions).
fn peer_of(req: &axum::extract::Request, origin: &OriginSecret) -> Option<String> {
    use lambda_http::request::RequestContext;
    let source = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        _ => None,
    };
    client_address(req.headers(), source.as_deref(), origin)
}

async fn peer_behind_cloudfront(
    axum::extract::State(origin): axum::extract::State<Arc<OriginSecret>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(ip) = peer_of(&req, &origin) {
        req.extensions_mut().insert(aula_api::PeerAddress(ip));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    const EDGE: Option<&str> = Some("130.176.1.10");

    #[test]
    fn a_spoofed_viewer_address_without_the_origin_secret_is_ignored() {
        let origin = OriginSecret::new(Some("s3cret-from-the-deployment"));
        let spoofed = headers(&[(VIEWER_ADDRESS_HEADER, "203.0.113.66:4431")]);
        assert_eq!(client_address(&spoofed, EDGE, &origin).as_deref(), EDGE);
        let wrong = headers(&[
            (VIEWER_ADDRESS_HEADER, "203.0.113.66:4431"),
            (ORIGIN_SECRET_HEADER, "s3cret-from-the-deploymenT"),
        ]);
        assert_eq!(client_address(&wrong, EDGE, &origin).as_deref(), EDGE);
        // A deployment without an origin secret never believes the header.
        let unconfigured = OriginSecret::new(None);
        let with_empty = headers(&[
            (VIEWER_ADDRESS_HEADER, "203.0.113.66:4431"),
            (ORIGIN_SECRET_HEADER, ""),
        ]);
        assert_eq!(
            client_address(&with_empty, EDGE, &unconfigured).as_deref(),
            EDGE
        );
    }

    /// A request as the Lambda runtime hands it over: API Gateway's context (from an HTTP API
    /// event's `requestContext`) in the extensions, the headers as sent.
    fn lambda_request(headers: &[(&'static str, &str)]) -> axum::extract::Request {
        let ctx: lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext =
            serde_json::from_value(serde_json::json!({
                "http": { "method": "POST", "path": "/api/auth/login", "sourceIp": "130.176.1.10" }
            }))
            .expect("an API Gateway context");
        let mut req = axum::http::Request::post("/api/auth/login")
            .body(axum::body::Body::empty())
            .expect("request");
        req.headers_mut().extend(self::headers(headers));
        req.extensions_mut()
            .insert(lambda_http::request::RequestContext::ApiGatewayV2(ctx));
        req
    }

    #[test]
    fn under_the_runtime_the_source_address_is_used_unless_cloudfront_proves_the_viewer() {
        let origin = OriginSecret::new(Some("s3cret-from-the-deployment"));
        let plain = lambda_request(&[(VIEWER_ADDRESS_HEADER, "203.0.113.66:4431")]);
        assert_eq!(peer_of(&plain, &origin).as_deref(), Some("130.176.1.10"));
        let proven = lambda_request(&[
            (VIEWER_ADDRESS_HEADER, "198.51.100.7:50212"),
            (ORIGIN_SECRET_HEADER, "s3cret-from-the-deployment"),
        ]);
        assert_eq!(peer_of(&proven, &origin).as_deref(), Some("198.51.100.7"));
    }

    #[test]
    fn with_the_origin_secret_the_viewer_address_is_the_client() {
        let origin = OriginSecret::new(Some("s3cret-from-the-deployment"));
        let v4 = headers(&[
            (VIEWER_ADDRESS_HEADER, "198.51.100.7:50212"),
            (ORIGIN_SECRET_HEADER, "s3cret-from-the-deployment"),
        ]);
        assert_eq!(
            client_address(&v4, EDGE, &origin).as_deref(),
            Some("198.51.100.7")
        );
        let v6 = headers(&[
            (VIEWER_ADDRESS_HEADER, "2001:db8::7:50212"),
            (ORIGIN_SECRET_HEADER, "s3cret-from-the-deployment"),
        ]);
        assert_eq!(
            client_address(&v6, EDGE, &origin).as_deref(),
            Some("2001:db8::7")
        );
        // A malformed value falls back to the source address rather than to nothing.
        let junk = headers(&[
            (VIEWER_ADDRESS_HEADER, "not-an-address"),
            (ORIGIN_SECRET_HEADER, "s3cret-from-the-deployment"),
        ]);
        assert_eq!(client_address(&junk, EDGE, &origin).as_deref(), EDGE);
    }
}

/// The deployment's keys as the Secrets Manager secret holds them (see infra/README.md).
#[derive(serde::Deserialize)]
struct SecretKeys {
    signing_key: String,
    hash_secret: String,
}

/// The signing key and the hashing secret: from the Secrets Manager secret named by
/// `AULA_SECRETS_ARN` (production), or from `AULA_SIGNING_KEY` / `AULA_HASH_SECRET`.
async fn keys(sdk: &aws_config::SdkConfig) -> Result<Keys> {
    let Ok(arn) = std::env::var("AULA_SECRETS_ARN") else {
        return Ok(Keys {
            signing_pkcs8: secret("AULA_SIGNING_KEY")?,
            hash_secret: secret("AULA_HASH_SECRET")?,
        });
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
    Ok(Keys {
        signing_pkcs8: signing,
        hash_secret: hash,
    })
}

/// The secret shared with the media nodes' TURN servers: the Secrets Manager secret named by
/// `AULA_TURN_SECRET_ARN` (production: generated by the stack, read by the rooms function and
/// the nodes only), or `AULA_TURN_SECRET`; none without either.
async fn turn_secret(sdk: &aws_config::SdkConfig) -> Result<Option<String>> {
    let Ok(arn) = std::env::var("AULA_TURN_SECRET_ARN") else {
        return Ok(std::env::var("AULA_TURN_SECRET").ok());
    };
    let value = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .with_context(|| format!("reading the TURN secret {arn}"))?;
    Ok(value.secret_string().map(str::to_owned))
}

/// The TURN servers of the join answer: `AULA_TURN_URLS` (comma-separated; `{host}` and
/// `{node}` stand for the placed node) with the TURN secret; none without URLs.
async fn turn(sdk: &aws_config::SdkConfig) -> Result<Option<aula_api::turn::TurnConfig>> {
    let urls: Vec<String> = std::env::var("AULA_TURN_URLS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return Ok(None);
    }
    let secret = turn_secret(sdk)
        .await?
        .filter(|s| !s.trim().is_empty())
        .context("AULA_TURN_URLS is set, but there is no TURN secret (AULA_TURN_SECRET_ARN)")?;
    Ok(Some(aula_api::turn::TurnConfig::new(
        urls,
        secret.trim().as_bytes(),
    )?))
}

async fn state() -> Result<ApiState> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let keys = keys(&sdk).await?;
    let turn = turn(&sdk).await?;
    let host_id = format!(
        "{}/{}",
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
        std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_default()
    );
    let policy = LoginPolicy {
        self_registration: std::env::var("AULA_SELF_REGISTRATION").is_ok_and(|v| v == "true"),
        ..LoginPolicy::default()
    };
    let config = ApiConfig {
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
        turn,
        log_after_response: false,
        // The fleet's NodeCapacity (infra/media-nodes.yaml), as the portal's forecast counts.
        forecast: aula_domain::services::ForecastPolicy {
            node_capacity: std::env::var("AULA_NODE_CAPACITY")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(500),
            ..Default::default()
        },
    };
    ApiState::new(
        Arc::new(AwsStore::new(&sdk, AwsConfig::from_env())),
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        &keys,
        policy,
        config,
    )
    .context("building the function's state")
}
