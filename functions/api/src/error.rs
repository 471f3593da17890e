//! The one place where errors become HTTP responses: a status, a stable machine-readable
//! `code`, and a message for people, always in the same JSON shape:
//! `{"error": {"code": "not_found", "message": "the room was not found"}}`.

use aula_domain::ParseError;
use aula_domain::services::ServiceError;
use aula_tokens::TokenError;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

/// Every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `invalid_input`, `unauthenticated`, `bad_credentials`,
    /// `account_restricted`, `password_change_required`, `forbidden`, `not_found`,
    /// `conflict`, `rate_limited`,
    /// `registration_closed`, `in_lobby`, `denied`, `no_capacity`, `unavailable`, `internal`.
    pub code: String,
    /// For people.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "there is nothing here")
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use ServiceError as E;
        let message = e.to_string();
        let (status, code) = match &e {
            E::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
            E::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            E::BadCredentials => (StatusCode::UNAUTHORIZED, "bad_credentials"),
            E::AccountRestricted => (StatusCode::FORBIDDEN, "account_restricted"),
            E::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            E::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            E::Conflict(_) | E::Refused(_) => (StatusCode::CONFLICT, "conflict"),
            E::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            E::RegistrationClosed => (StatusCode::FORBIDDEN, "registration_closed"),
            E::InLobby => (StatusCode::FORBIDDEN, "in_lobby"),
            E::Denied => (StatusCode::FORBIDDEN, "denied"),
            E::NoCapacity { .. } => (StatusCode::SERVICE_UNAVAILABLE, "no_capacity"),
            E::Store(source) => {
                tracing::error!(error = %aula_domain::ErrorChain(source), "store failure");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            E::Internal(what) => {
                tracing::error!(error = what, "internal failure");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let retry_after_secs = match e {
            E::RateLimited { retry_after_secs } | E::NoCapacity { retry_after_secs } => {
                Some(retry_after_secs.max(1))
            }
            _ => None,
        };
        let message = if status.is_server_error() {
            "the service is unavailable; please try again".to_owned()
        } else {
            message
        };
        ApiError {
            status,
            code,
            message,
            retry_after_secs,
        }
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        ServiceError::Invalid(e).into()
    }
}

/// A token the caller offers and that does not verify means they are not who they claim;
/// failing to sign one (a bad key, the crypto library) is ours, and logged with its cause.
impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid(_) => ServiceError::Unauthenticated.into(),
            TokenError::BadKey | TokenError::KeyGeneration | TokenError::Sign(_) => {
                tracing::error!(error = %aula_domain::ErrorChain(&e), "token failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the service is unavailable; please try again",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::new(e.status(), "invalid_json", e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::not_found()
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code.to_owned(),
                    message: self.message,
                },
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            retry_after(&mut response, secs);
        }
        response
    }
}

/// Tells the client when to ask again (a refusal for lack of capacity, or a queue place).
pub fn retry_after(response: &mut Response, secs: u64) {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use aula_domain::{RoomId, Timestamp};
    use aula_tokens::{JoinVerifier, TokenLifetimes, Tokens};

    #[test]
    fn a_token_that_does_not_verify_is_unauthenticated_and_a_key_failure_tells_nothing() {
        let room = RoomId::parse("0b7e4a0c-58a4-4c4f-9d55-2f1c7e0a9b11").expect("an id");
        let verifier = JoinVerifier::from_public_key(&[7; 32]).expect("32 bytes");
        let forged = verifier
            .verify("e30.e30.c2ln", room, Timestamp::from_secs(1_800_000_000))
            .expect_err("not signed by the deployment");
        let answer = ApiError::from(forged);
        assert_eq!(
            (answer.status, answer.code),
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        );

        let Err(bad_key) = Tokens::from_pkcs8(b"not a key", TokenLifetimes::default()) else {
            panic!("a key that is not PKCS#8 was accepted");
        };
        let answer = ApiError::from(bad_key);
        assert_eq!(
            (answer.status, answer.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert!(!answer.message.contains("PKCS"), "{}", answer.message);
    }
}
