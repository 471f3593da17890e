//! Aula's HTTP API. Each function (auth, rooms, chat, privacy) is a router; a Lambda binary
//! runs one of them, the local portal mounts them all. Every router identifies the caller
//! from the session cookie or guest grant and writes one access-log entry per request.
//!
//! Where things are: `routes/` the handlers, one module per function; `types.rs` the
//! request and response types; `extract.rs` the extractors that refuse input in the error
//! shape; `error.rs` the one mapping from errors to HTTP; `contract.rs` the input contract
//! of the OpenAPI document; `identity.rs` who is calling; `access_log.rs` the access log;
//! `crypto.rs` Argon2id and keyed hashes; `probe.rs` the health check of a media node a
//! client reports lost. The tokens are the crate `aula-tokens`.

pub mod access_log;
pub mod contract;
pub mod crypto;
pub mod error;
mod extract;
pub mod identity;
pub mod probe;
mod routes;
mod teacher_list;
pub mod turn;
mod types;

use aula_domain::Clock;
use aula_domain::ids::IdGenerator;
use aula_domain::ports::Store;
use aula_domain::services::{Aula, LoginPolicy};
use aula_tokens::{TokenError, TokenLifetimes, Tokens};
use axum::Router;
use axum::middleware::from_fn_with_state;
use std::sync::Arc;

pub use error::{ApiError, ApiResult};

/// The caller's network address as the runtime in front of the router saw it (API
/// Gateway's source address in Lambda, the TCP peer in the local portal), put into the
/// request's extensions by that runtime. A client cannot set an extension, unlike
/// X-Forwarded-For, whose first entries are whatever the client wrote.
#[derive(Debug, Clone)]
pub struct PeerAddress(pub String);

/// Deployment settings the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The portal's public origin, e.g. `https://aula.schule.example` (invite links).
    pub public_url: String,
    /// Internal id of this host or function instance, written to the access log.
    pub host_id: String,
    /// A fixed media node for every meeting (a single-node deployment, or the local portal
    /// until it runs its own node); `None`: placement chooses among the registered nodes.
    pub media_node_url: Option<String>,
    /// Who the privacy page names (promise 12), per deployment.
    pub contacts: PrivacyContacts,
    /// Where this deployment keeps its data, and for how long its backups hold deleted data.
    pub processing: Processing,
    /// TURN servers for browsers that cannot reach a node over UDP; `None`: join answers
    /// carry no ICE servers.
    pub turn: Option<turn::TurnConfig>,
    /// The access-log entry may be written after the response has left (a long-running
    /// portal: the request does not wait for the log). A Lambda writes it before answering,
    /// since it may be frozen right after.
    pub log_after_response: bool,
    /// How the admins' forecast counts media nodes (the fleet's or the in-process node's
    /// capacity).
    pub forecast: aula_domain::services::ForecastPolicy,
}

/// What the privacy page says about where data is processed and how deletion reaches backups.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Processing {
    /// Where the data is processed, e.g. "AWS eu-central-1 (Frankfurt am Main, Germany)".
    pub location: String,
    /// Days a deleted or expired record can still be restored from backups (DynamoDB's
    /// point-in-time recovery); none where no backups are made (the embedded store).
    pub backup_days: Option<u32>,
}

impl Processing {
    /// The ministry's deployment (template.yaml): DynamoDB in Frankfurt with point-in-time
    /// recovery; `AULA_PROCESSING_LOCATION` and `AULA_BACKUP_DAYS` come from the template.
    pub fn from_env() -> Self {
        Processing {
            location: std::env::var("AULA_PROCESSING_LOCATION")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "AWS eu-central-1 (Frankfurt am Main, Germany)".to_owned()),
            backup_days: std::env::var("AULA_BACKUP_DAYS")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
        }
    }
}

/// The supervisory authority and the data protection officer of a deployment.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PrivacyContacts {
    pub supervisory_authority: String,
    pub data_protection_officer: String,
}

#[derive(Clone)]
pub struct ApiState {
    pub aula: Aula,
    pub tokens: Tokens,
    pub config: Arc<ApiConfig>,
}

/// A deployment's secrets: the Ed25519 key (PKCS#8 DER) that signs tokens, and the secret
/// of the keyed hashes (access log, known devices).
pub struct Keys {
    pub signing_pkcs8: Vec<u8>,
    pub hash_secret: Vec<u8>,
}

/// Why the API's state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the token signing key must be an Ed25519 PKCS#8 key")]
    Key(#[from] TokenError),
    #[error(
        "the system's root certificates (for the media nodes' health checks) could not be read"
    )]
    Roots(#[source] std::io::Error),
}

impl ApiState {
    /// The one place the API's state is put together, for the Lambda functions, the local
    /// portal and the tests alike: the services over `store` with Argon2id for passwords
    /// and keyed hashes under the deployment's secret, and tokens signed with its key.
    /// What differs between them (the store, the clock, the ids, the keys, the policy and the
    /// settings) comes in.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        keys: &Keys,
        policy: LoginPolicy,
        config: ApiConfig,
    ) -> Result<Self, StateError> {
        Ok(ApiState {
            aula: Aula {
                store,
                clock,
                ids,
                passwords: Arc::new(crypto::Argon2Passwords),
                hasher: Arc::new(crypto::HmacHasher::new(&keys.hash_secret)),
                policy,
                probe: Arc::new(probe::HttpProbe::new().map_err(StateError::Roots)?),
            },
            tokens: Tokens::from_pkcs8(&keys.signing_pkcs8, TokenLifetimes::default())?,
            config: Arc::new(config),
        })
    }
}

/// The functions the API is split into, one Lambda each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Auth,
    Rooms,
    Chat,
    Privacy,
}

impl Function {
    pub const ALL: [Function; 4] = [
        Function::Auth,
        Function::Rooms,
        Function::Chat,
        Function::Privacy,
    ];
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Aula API",
        description = "Privacy-first video conferencing for schools: accounts, rooms, chat and data-subject requests. Errors always have the shape of ErrorBody. Times are milliseconds since the epoch; `expires_at` is epoch seconds.",
        license(name = "EUPL-1.2")
    ),
    components(schemas(error::ErrorBody)),
    tags(
        (name = "auth", description = "login, sessions, guests joining by invite link"),
        (name = "rooms", description = "rooms, lobby, join grants for media nodes"),
        (name = "chat", description = "room chat and private conversations"),
        (name = "privacy", description = "data-subject requests and admin actions (audited)")
    )
)]
struct ApiDoc;

/// The OpenAPI document of the whole API, generated from the routers and their types.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    let mut doc = Function::ALL
        .into_iter()
        .fold(
            utoipa_axum::router::OpenApiRouter::<ApiState>::with_openapi(ApiDoc::openapi()),
            |r, f| r.merge(routes::of(f)),
        )
        .into_openapi();
    contract::complete(&mut doc);
    doc
}

/// One function's router, with identification and the access log. The auth function also
/// serves the OpenAPI document.
pub fn function_router(function: Function, state: ApiState) -> Router {
    let (router, _) = routes::of(function).split_for_parts();
    let router = if function == Function::Auth {
        router.route("/api/openapi.json", axum::routing::get(serve_openapi))
    } else {
        router
    };
    finish(router, state)
}

/// Every function in one router (the local portal), with the OpenAPI document.
pub fn router(state: ApiState) -> Router {
    let router = Function::ALL
        .into_iter()
        .fold(Router::new(), |r, f| {
            r.merge(routes::of(f).split_for_parts().0)
        })
        .route("/api/openapi.json", axum::routing::get(serve_openapi));
    finish(router, state)
}

async fn serve_openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}

fn finish(routes: Router<ApiState>, state: ApiState) -> Router {
    routes
        .fallback(|| async { ApiError::not_found() })
        .layer(from_fn_with_state(state.clone(), identity::identify))
        .layer(from_fn_with_state(state.clone(), access_log::record))
        .with_state(state)
}
