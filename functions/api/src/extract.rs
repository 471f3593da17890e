//! The extractors every handler takes its input through: a JSON object body, path segments
//! and query parameters, each refused in the one error shape (`error.rs`) instead of axum's
//! plain-text rejections, so that every answer the OpenAPI document promises as `ErrorBody`
//! is one.

use crate::error::ApiError;
use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

/// A JSON object in, with our error shape when it is not. Only an object: serde would
/// also read a struct from an array of its fields in order (`[null, null]`), which the
/// document does not allow.
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = Json::<serde_json::Value>::from_request(req, state).await?;
        let shape = |message: String| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_json", message)
        };
        if !v.is_object() {
            return Err(shape("the body must be a JSON object".to_owned()));
        }
        serde_json::from_value(v)
            .map(Body)
            .map_err(|e| shape(format!("the body does not fit: {e}")))
    }
}

/// Path segments as axum's `Path`, refused in our error shape: a segment that does not
/// decode (e.g. `%FF`) or does not parse as the id it stands for names nothing, so 404 like
/// an unknown id.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    axum::extract::Path<T>:
        FromRequestParts<S, Rejection = axum::extract::rejection::PathRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(v) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(v))
    }
}

/// Query parameters as axum's `Query`, refused in our error shape (400 `invalid_input`).
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    axum::extract::Query<T>:
        FromRequestParts<S, Rejection = axum::extract::rejection::QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{HistoryQuery, MessagePath};
    use axum::Router;
    use axum::body::Body as HttpBody;
    use axum::http::Request;
    use axum::routing::{get, post};
    use tower::ServiceExt as _;

    /// A router with one route per extractor; each answers 200 when its input fits.
    fn app() -> Router {
        Router::new()
            .route(
                "/rooms/{room}/chat/{message}",
                get(|Path(_): Path<MessagePath>| async { StatusCode::OK }),
            )
            .route(
                "/chat",
                get(|Query(_): Query<HistoryQuery>| async { StatusCode::OK }),
            )
            .route(
                "/body",
                post(|Body(_): Body<serde_json::Value>| async { StatusCode::OK }),
            )
    }

    /// The answer's status, content type and body as JSON.
    async fn call(request: Request<HttpBody>) -> (StatusCode, String, serde_json::Value) {
        let response = app().oneshot(request).await.expect("an answer");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a body");
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, content_type, body)
    }

    fn get_request(uri: &str) -> Request<HttpBody> {
        Request::get(uri)
            .body(HttpBody::empty())
            .expect("a request")
    }

    /// `ErrorBody` as the OpenAPI document states it: `{"error": {"code", "message"}}` and
    /// nothing else, with the given code.
    fn assert_error_shape(body: &serde_json::Value, code: &str) {
        let outer: Vec<_> = body.as_object().expect("an object").keys().collect();
        assert_eq!(outer, ["error"], "{body}");
        let error = body["error"].as_object().expect("an error object");
        let mut inner: Vec<_> = error.keys().map(String::as_str).collect();
        inner.sort_unstable();
        assert_eq!(inner, ["code", "message"], "{body}");
        assert_eq!(error["code"], code, "{body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }

    const ROOM: &str = "0b7e4a0c-58a4-4c4f-9d55-2f1c7e0a9b11";
    const MESSAGE: &str = "001700000000000-0b7e4a0c58a44c4f9d552f1c7e0a9b11";

    #[tokio::test]
    async fn ids_and_query_parameters_that_fit_reach_the_handler() {
        let path = call(get_request(&format!("/rooms/{ROOM}/chat/{MESSAGE}"))).await;
        assert_eq!(path.0, StatusCode::OK);
        let query = call(get_request(&format!(
            "/chat?with=m:{ROOM}&before={MESSAGE}&limit=3"
        )))
        .await;
        assert_eq!(query.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_query_string_that_does_not_fit_gets_the_documented_json_error() {
        for query in [
            "limit=many",
            "limit=-1",
            "with=nobody",
            &format!("with=m:{}", ROOM.to_uppercase()),
            "before=yesterday",
        ] {
            let (status, content_type, body) = call(get_request(&format!("/chat?{query}"))).await;
            assert_eq!(
                (status, content_type.as_str()),
                (StatusCode::BAD_REQUEST, "application/json"),
                "{query}"
            );
            assert_error_shape(&body, "invalid_input");
        }
    }

    #[tokio::test]
    async fn a_path_segment_that_names_nothing_gets_the_documented_json_error() {
        for path in [
            format!("/rooms/not-a-room/chat/{MESSAGE}"),
            format!("/rooms/{ROOM}/chat/not-a-message"),
            format!("/rooms/%FF/chat/{MESSAGE}"),
            format!("/rooms/{ROOM}/chat/%C0%80"),
        ] {
            let (status, content_type, body) = call(get_request(&path)).await;
            assert_eq!(
                (status, content_type.as_str()),
                (StatusCode::NOT_FOUND, "application/json"),
                "{path}"
            );
            assert_error_shape(&body, "not_found");
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_json_object_gets_the_documented_json_error() {
        for (content_type, body, status) in [
            (
                "application/json",
                "[1, 2]",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ("application/json", "{", StatusCode::BAD_REQUEST),
            ("text/plain", "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ] {
            let request = Request::post("/body")
                .header("content-type", content_type)
                .body(HttpBody::from(body))
                .expect("a request");
            let (got, answer_type, answer) = call(request).await;
            assert_eq!(
                (got, answer_type.as_str()),
                (status, "application/json"),
                "{content_type} {body}"
            );
            assert_error_shape(&answer, "invalid_json");
        }
    }
}
