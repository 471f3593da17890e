//! Who is calling: a moderator by session cookie, a guest by grant (cookie or bearer
//! token), or nobody. Also rotates a session cookie that has been in use for a while.

use crate::ApiState;
use crate::error::ApiError;
use aula_domain::Span;
use aula_domain::services::{Caller, ServiceError};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

pub const SESSION_COOKIE: &str = "aula_session";
pub const GUEST_COOKIE: &str = "aula_guest";

/// An HttpOnly, Secure, SameSite cookie: never readable by scripts, never sent in clear,
/// not sent on cross-site subrequests.
pub fn cookie(name: &'static str, value: String, max_age: Span) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age.whole_seconds()))
        .build()
}

/// The known-device cookie: a random nonce with a keyed hash binding it to the email of the
/// account that logged in from this browser (no personal data). Sent only to the login
/// endpoints and only from the portal's own pages; it exempts the device from the limits
/// aimed at strangers (see `aula_domain::services::throttle`).
pub const DEVICE_COOKIE: &str = "aula_device";

pub fn device_cookie(value: String, max_age: Span) -> Cookie<'static> {
    let mut c = cookie(DEVICE_COOKIE, value, max_age);
    c.set_path("/api/auth");
    c.set_same_site(SameSite::Strict);
    c
}

/// A cookie that tells the browser to forget `name`.
pub fn removal(name: &'static str) -> Cookie<'static> {
    cookie(name, String::new(), Span::seconds(0))
}

pub fn set_cookie(response: &mut Response, c: &Cookie<'static>) {
    if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// What a session with a handed-over password may do before the password is changed: change
/// it, read the account and what is stored about it (and the privacy page), erase it, log
/// out or log in anew. Everything else is refused with `password_change_required`.
const BEFORE_PASSWORD_CHANGE: [(&str, &str); 8] = [
    ("POST", "/api/me/password"),
    ("GET", "/api/me"),
    ("GET", "/api/me/export"),
    ("DELETE", "/api/me"),
    ("GET", "/api/privacy"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/login"),
    ("GET", "/api/openapi.json"),
];

fn allowed_before_password_change(req: &Request) -> bool {
    let (method, path) = (req.method().as_str(), req.uri().path());
    BEFORE_PASSWORD_CHANGE
        .iter()
        .any(|(m, p)| *m == method && *p == path)
}

pub fn password_change_required() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "password_change_required",
        "this password was handed over: set your own first (POST /api/me/password)",
    )
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

pub async fn identify(State(st): State<ApiState>, mut req: Request, next: Next) -> Response {
    let now = st.aula.clock.now();
    let jar = CookieJar::from_headers(req.headers());
    let mut rotated = None;
    let mut caller = Caller::Anonymous;

    if let Some(claims) = jar
        .get(SESSION_COOKIE)
        .and_then(|c| st.tokens.verify_session(c.value(), now).ok())
    {
        match st.aula.authenticate(claims.sub, claims.sid).await {
            Ok((_, session))
                if session.must_change_password && !allowed_before_password_change(&req) =>
            {
                return password_change_required().into_response();
            }
            Ok((c, session)) => {
                if now.epoch_secs() - claims.iat
                    >= st.tokens.lifetimes.session_rotate_after.whole_seconds()
                {
                    match st.aula.renew_session(session).await {
                        Ok(s) => {
                            if let Ok(token) = st.tokens.session(s.moderator_id, s.id, now) {
                                rotated = Some(cookie(
                                    SESSION_COOKIE,
                                    token,
                                    st.tokens.lifetimes.session,
                                ));
                            }
                        }
                        Err(e) => return ApiError::from(e).into_response(),
                    }
                }
                caller = c;
            }
            Err(e @ ServiceError::Store(_)) => return ApiError::from(e).into_response(),
            Err(_) => {}
        }
    }
    if caller == Caller::Anonymous {
        let token = bearer(&req)
            .map(str::to_owned)
            .or_else(|| jar.get(GUEST_COOKIE).map(|c| c.value().to_owned()));
        if let Some(claims) = token.and_then(|t| st.tokens.verify_guest(&t, now).ok()) {
            // The guest's record (lobby state, removal) is checked by every service call.
            caller = Caller::Guest {
                id: claims.sub,
                room: claims.room,
            };
        }
    }

    req.extensions_mut().insert(caller);
    let mut response = next.run(req).await;
    if let Some(c) = rotated {
        set_cookie(&mut response, &c);
    }
    response
}
