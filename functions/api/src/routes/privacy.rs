//! The privacy function, for the caller's own data: export (Art. 15), correction (Art. 16),
//! erasure (Art. 17) and restriction (Art. 18). The admins' side is in `admin.rs`.

use super::{R, attachment, parse_opt};
use crate::extract::Body;
use crate::identity::{SESSION_COOKIE, device_cookie, removal, set_cookie};
use crate::types::*;
use crate::{ApiResult, ApiState};
use aula_domain::services::{AccountView, Caller, Password, ProfileChanges};
use aula_domain::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use utoipa_axum::routes;

pub fn router() -> R {
    R::new()
        .routes(routes!(correct_me, erase_me))
        .routes(routes!(export_me))
        .routes(routes!(restrict_me))
}

#[utoipa::path(
    patch,
    path = "/api/me",
    tag = "privacy",
    summary = "Corrects the caller's profile (Art. 16).",
    request_body = CorrectionIn,
    responses((status = 200, body = AccountView))
)]
async fn correct_me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<CorrectionIn>,
) -> ApiResult<Json<AccountView>> {
    let changes = ProfileChanges {
        last_name: parse_opt(input.last_name, PersonName::parse)?,
        first_name: parse_opt(input.first_name, PersonName::parse)?,
        email: parse_opt(input.email, Email::parse)?,
        federal_state: parse_opt(input.federal_state, FederalState::parse)?,
        organisation: parse_opt(input.organisation, Organisation::parse)?,
    };
    Ok(Json(AccountView::from(
        &st.aula.correct_me(&caller, changes).await?,
    )))
}

#[utoipa::path(
    get,
    path = "/api/me/export",
    tag = "privacy",
    summary = "Everything stored about the caller (Art. 15).",
    responses((status = 200, description = "a JSON download", body = services::ModeratorExport))
)]
async fn export_me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let export = st.aula.export_me(&caller).await?;
    Ok(attachment("aula-export.json", &export))
}

#[utoipa::path(
    post,
    path = "/api/me/restrict",
    tag = "privacy",
    summary = "Blocks the caller's account (Art. 18); an admin lifts it.",
    responses((status = 204))
)]
async fn restrict_me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    st.aula.restrict_me(&caller).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &removal(SESSION_COOKIE));
    Ok(response)
}

#[utoipa::path(
    delete,
    path = "/api/me",
    tag = "privacy",
    summary = "Erases the caller's account and everything it owns (Art. 17).",
    request_body = EraseIn,
    responses((status = 204))
)]
async fn erase_me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<EraseIn>,
) -> ApiResult<Response> {
    st.aula
        .erase_me(&caller, &Password::offered(&input.password))
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &removal(SESSION_COOKIE));
    set_cookie(
        &mut response,
        &device_cookie(String::new(), aula_domain::Span::seconds(0)),
    );
    Ok(response)
}
