//! The handlers, one module per function. Each handler takes its input through the
//! extractors (`extract.rs`) as the types of `types.rs`, parses what is left into domain
//! types, asks the services and shapes the answer; permissions are the services' business.
//!
//! - auth (`auth.rs`): login, logout, registration, `/api/me`, the password, joining by
//!   invite, the guest's status, the privacy page
//! - rooms (`rooms.rs`): rooms, invite links, meetings, participants, the lobby, join grants
//! - chat (`chat.rs`): history, posting, deleting
//! - privacy (`privacy.rs`): the caller's own data-subject requests (`/api/me` and below);
//!   (`admin.rs`): the admins' actions (`/api/admin/…`), all audited

mod admin;
mod auth;
mod chat;
mod privacy;
mod rooms;

use crate::{ApiError, ApiResult, ApiState, Function};
use aula_domain::ParseError;
use axum::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;

type R = OpenApiRouter<ApiState>;

/// The routes of one function, with their OpenAPI operations.
pub fn of(function: Function) -> R {
    match function {
        Function::Auth => auth::router(),
        Function::Rooms => rooms::router(),
        Function::Chat => chat::router(),
        Function::Privacy => privacy::router().merge(admin::router()),
    }
}

/// An optional body field, parsed when it is there.
fn parse_opt<T>(
    v: Option<String>,
    f: impl FnOnce(&str) -> Result<T, ParseError>,
) -> ApiResult<Option<T>> {
    v.map(|s| f(&s)).transpose().map_err(ApiError::from)
}

/// An export as a download.
fn attachment<T: Serialize>(name: &str, body: &T) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    let mut response = Json(body).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
