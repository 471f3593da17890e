//! One access-log entry per request, with exactly the fields of the privacy notice.
//! Cookie values are never written: only each cookie's name and a keyed hash of its value.

use crate::ApiState;
use aula_domain::retention;
use aula_domain::{AccessLogEntry, LoggedCookie};
use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;

/// Long headers are cut, so a request cannot blow up the log.
const MAX_FIELD: usize = 2048;

fn header_value(
    headers: &HeaderMap,
    name: impl axum::http::header::AsHeaderName,
) -> Option<String> {
    headers.get(name).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(MAX_FIELD)
            .collect()
    })
}

fn cookies(st: &ApiState, headers: &HeaderMap) -> Vec<LoggedCookie> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            cookie::Cookie::split_parse(v)
                .filter_map(Result::ok)
                .map(|c| LoggedCookie {
                    name: c.name().chars().take(128).collect(),
                    keyed_hash: Some(
                        st.aula
                            .hasher
                            .keyed_hash("access-log-cookie", c.value().as_bytes()),
                    ),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

pub async fn record(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let time = st.aula.clock.now();
    let headers = req.headers();
    let method = req.method().as_str().to_owned();
    let url: String = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned())
        .chars()
        .take(MAX_FIELD)
        .collect();
    let referrer = header_value(headers, header::REFERER);
    let user_agent = header_value(headers, header::USER_AGENT);
    let forwarded_for = header_value(headers, "x-forwarded-for");
    let cookies = cookies(&st, headers);

    let response = next.run(req).await;

    let bytes_sent = response.body().size_hint().exact().unwrap_or_else(|| {
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0)
    });
    let entry = AccessLogEntry {
        id: st.aula.ids.access_log_id(),
        time,
        method,
        url,
        status: response.status().as_u16(),
        bytes_sent,
        referrer,
        user_agent,
        host_id: st.config.host_id.clone(),
        forwarded_for,
        cookies,
        expires_at: retention::access_log_expiry(time),
    };
    // Written before the response leaves: a Lambda may be frozen right after it.
    if let Err(e) = st.aula.store.append_access_log(&entry).await {
        tracing::error!(error = %e, "writing the access log failed");
    }
    response
}
