//! The auth function: logging in and out, the caller's own account, guests joining by invite
//! link, and the privacy page's content.

use super::R;
use crate::extract::{Body, Path};
use crate::identity::{
    DEVICE_COOKIE, GUEST_COOKIE, SESSION_COOKIE, cookie, device_cookie, removal, set_cookie,
};
use crate::types::*;
use crate::{ApiResult, ApiState, PeerAddress};
use aula_domain::services::{self, AccountView, Caller, Password};
use aula_domain::*;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa_axum::routes;

pub fn router() -> R {
    R::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(register))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(join))
        .routes(routes!(guest_status))
        .routes(routes!(privacy_notice))
}

fn name_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(o)) => o
            .get("rule")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

#[utoipa::path(
    get,
    path = "/api/privacy",
    tag = "auth",
    summary = "What the portal stores, why and for how long, and whom to ask: the privacy page's content, from the data inventory and the deployment's contacts.",
    responses((status = 200, body = PrivacyOut))
)]
async fn privacy_notice(State(st): State<ApiState>) -> Json<PrivacyOut> {
    use aula_domain::inventory::{INVENTORY, Retention};
    let records = INVENTORY
        .iter()
        .map(|spec| {
            let retention_seconds = match spec.retention {
                Retention::UntilErased => None,
                Retention::AfterLastUse { seconds }
                | Retention::AfterCreation { seconds }
                | Retention::AfterHeartbeat { seconds }
                | Retention::AfterScheduledEnd { seconds } => Some(seconds),
            };
            RecordOut {
                kind: spec.kind.name(),
                description: spec.description,
                subject: name_of(&spec.subject),
                purposes: spec.purposes.iter().map(name_of).collect(),
                retention: name_of(&spec.retention),
                retention_seconds,
                fields: spec
                    .fields
                    .iter()
                    .map(|f| FieldOut {
                        name: f.name,
                        meaning: f.meaning,
                    })
                    .collect(),
            }
        })
        .collect();
    let browser_storage = aula_domain::inventory::BROWSER_STORAGE
        .iter()
        .map(|b| BrowserItemOut {
            name: b.name,
            storage: name_of(&b.storage),
            description: b.description,
            purposes: b.purposes.iter().map(name_of).collect(),
            lifetime_seconds: b.lifetime_seconds,
        })
        .collect();
    Json(PrivacyOut {
        contacts: st.config.contacts.clone(),
        location: st.config.processing.location.clone(),
        backup_days: st.config.processing.backup_days,
        records,
        browser_storage,
    })
}

fn client_address(peer: Option<Extension<PeerAddress>>) -> services::ClientAddress {
    match peer {
        Some(Extension(p)) => match p.0.parse::<std::net::IpAddr>() {
            Ok(ip) => services::ClientAddress::of(ip),
            Err(_) => services::ClientAddress(p.0),
        },
        None => services::ClientAddress("unknown".to_owned()),
    }
}

#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    summary = "Logs a moderator in. Failures are throttled per account and source with doubling waits; a browser with the `aula_device` cookie of an earlier login to this account is exempt from the limits aimed at strangers (429 with Retry-After).",
    request_body = LoginIn,
    responses((status = 200, description = "logged in; sets the `aula_session` cookie and renews the `aula_device` cookie", body = AccountOut))
)]
async fn login(
    State(st): State<ApiState>,
    peer: Option<Extension<PeerAddress>>,
    jar: axum_extra::extract::CookieJar,
    Body(input): Body<LoginIn>,
) -> ApiResult<Response> {
    let from = client_address(peer);
    let device = jar.get(DEVICE_COOKIE).map(|c| c.value().to_owned());
    let services::LoggedIn {
        moderator: m,
        session,
        device,
    } = st
        .aula
        .login(
            &input.email,
            &Password::offered(&input.password),
            &from,
            device.as_deref(),
        )
        .await?;
    let now = st.aula.clock.now();
    let token = st.tokens.session(m.id, session.id, now)?;
    let mut response = Json(AccountOut {
        account: AccountView::from(&m),
    })
    .into_response();
    set_cookie(
        &mut response,
        &cookie(SESSION_COOKIE, token, st.tokens.lifetimes.session),
    );
    set_cookie(
        &mut response,
        &device_cookie(device.as_str().to_owned(), retention::KNOWN_DEVICE),
    );
    Ok(response)
}

#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "auth",
    summary = "Logs out: the session is deleted on the server and the cookie removed.",
    responses((status = 204, description = "logged out; the session is revoked"))
)]
async fn logout(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    st.aula.logout(&caller).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut response, &removal(SESSION_COOKIE));
    Ok(response)
}

#[utoipa::path(
    post,
    path = "/api/auth/register",
    tag = "auth",
    summary = "Self-registration, where the deployment enables it.",
    request_body = RegisterIn,
    responses((status = 201, body = AccountOut))
)]
async fn register(
    State(st): State<ApiState>,
    Body(input): Body<RegisterIn>,
) -> ApiResult<Response> {
    let password = Password::new_password(&input.password)?;
    let m = st.aula.register(input.profile.parse()?, &password).await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountOut {
            account: AccountView::from(&m),
        }),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/me",
    tag = "auth",
    summary = "The logged-in moderator.",
    responses((status = 200, body = AccountView))
)]
async fn me(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<AccountView>> {
    Ok(Json(AccountView::from(&st.aula.me(&caller).await?)))
}

#[utoipa::path(
    post,
    path = "/api/me/password",
    tag = "auth",
    summary = "Changes the password (at least 10 characters).",
    request_body = PasswordIn,
    responses((status = 204))
)]
async fn change_password(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Body(input): Body<PasswordIn>,
) -> ApiResult<StatusCode> {
    let new = Password::new_password(&input.new)?;
    st.aula
        .change_password(&caller, &Password::offered(&input.current), &new)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/join/{token}",
    tag = "auth",
    summary = "A guest opens an invite link with a nickname.",
    request_body = JoinIn,
    params(InvitePath),
    responses((status = 201, description = "joined (or waiting in the lobby); sets the `aula_guest` cookie", body = JoinOut))
)]
async fn join(
    State(st): State<ApiState>,
    Path(InvitePath { token }): Path<InvitePath>,
    Body(input): Body<JoinIn>,
) -> ApiResult<Response> {
    let guest = st
        .aula
        .join_by_invite(&token, Nickname::parse(&input.nickname)?)
        .await?;
    let now = st.aula.clock.now();
    let grant = st.tokens.guest(guest.id, guest.room_id, now)?;
    let mut response = (
        StatusCode::CREATED,
        Json(JoinOut {
            guest: GuestOut::from(&guest),
            token: grant.clone(),
        }),
    )
        .into_response();
    set_cookie(
        &mut response,
        &cookie(GUEST_COOKIE, grant, st.tokens.lifetimes.guest),
    );
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/guest",
    tag = "auth",
    summary = "The calling guest and their lobby status.",
    responses((status = 200, body = GuestOut))
)]
async fn guest_status(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<GuestOut>> {
    Ok(Json(GuestOut::from(&st.aula.guest_status(&caller).await?)))
}
