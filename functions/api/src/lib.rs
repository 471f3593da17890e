//! Aula's HTTP API. Each function (auth, rooms, chat, privacy) is a router; a Lambda binary
//! runs one of them, the local portal mounts them all. Every router identifies the caller
//! from the session cookie or guest grant and writes one access-log entry per request.

pub mod access_log;
pub mod crypto;
pub mod error;
pub mod identity;
mod routes;
pub mod tokens;

use aula_domain::services::Aula;
use axum::Router;
use axum::middleware::from_fn_with_state;
use std::sync::Arc;
use tokens::Tokens;

pub use error::{ApiError, ApiResult};

/// Deployment settings the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The portal's public origin, e.g. `https://aula.schule.example` (invite links).
    pub public_url: String,
    /// Internal id of this host or function instance, written to the access log.
    pub host_id: String,
    /// The media node that meetings run on, until placement chooses among several.
    pub media_node_url: String,
}

#[derive(Clone)]
pub struct ApiState {
    pub aula: Aula,
    pub tokens: Tokens,
    pub config: Arc<ApiConfig>,
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

/// One function's router, with identification and the access log.
pub fn function_router(function: Function, state: ApiState) -> Router {
    let routes = match function {
        Function::Auth => routes::auth(),
        Function::Rooms => routes::rooms(),
        Function::Chat => routes::chat(),
        Function::Privacy => routes::privacy(),
    };
    finish(routes, state)
}

/// Every function in one router (the local portal).
pub fn router(state: ApiState) -> Router {
    let routes = Function::ALL.into_iter().fold(Router::new(), |r, f| {
        r.merge(match f {
            Function::Auth => routes::auth(),
            Function::Rooms => routes::rooms(),
            Function::Chat => routes::chat(),
            Function::Privacy => routes::privacy(),
        })
    });
    finish(routes, state)
}

fn finish(routes: Router<ApiState>, state: ApiState) -> Router {
    routes
        .fallback(|| async { ApiError::not_found() })
        .layer(from_fn_with_state(state.clone(), identity::identify))
        .layer(from_fn_with_state(state.clone(), access_log::record))
        .with_state(state)
}
