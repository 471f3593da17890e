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

/// What one entry may hold, so a hostile request cannot blow up the log (an entry must
/// also stay far below DynamoDB's 400 KB item limit, or it would go unlogged). With these
/// caps an entry is at most about 4 × 1 KiB of text fields plus 32 cookies of ≤ 64-byte
/// names and their hashes: under 12 KiB, whatever the request sent.
pub const MAX_FIELD_BYTES: usize = 1024;
pub const MAX_COOKIE_NAME_BYTES: usize = 64;
pub const MAX_LOGGED_COOKIES: usize = 32;

/// Cuts `text` to at most `max` bytes (at a character boundary) and says how much was cut,
/// so a reader of the log sees that the field is incomplete.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let marker = format!("…[+{} bytes]", text.len());
    let mut end = max.saturating_sub(marker.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &text[..end])
}

fn header_value(
    headers: &HeaderMap,
    name: impl axum::http::header::AsHeaderName,
) -> Option<String> {
    headers
        .get(name)
        .map(|v| bounded(&String::from_utf8_lossy(v.as_bytes()), MAX_FIELD_BYTES))
}

/// The first cookies' names with a keyed hash of each value; if there were more, a last
/// entry (no hash) says how many were left out.
fn cookies(st: &ApiState, headers: &HeaderMap) -> Vec<LoggedCookie> {
    let mut all = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok);
    let mut logged: Vec<LoggedCookie> = all
        .by_ref()
        .take(MAX_LOGGED_COOKIES)
        .map(|c| LoggedCookie {
            name: bounded(c.name(), MAX_COOKIE_NAME_BYTES),
            keyed_hash: Some(
                st.aula
                    .hasher
                    .keyed_hash("access-log-cookie", c.value().as_bytes()),
            ),
        })
        .collect();
    let left_out = all.count();
    if left_out > 0 {
        logged.push(LoggedCookie {
            name: format!("…[+{left_out} cookies not logged]"),
            keyed_hash: None,
        });
    }
    logged
}

pub async fn record(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let time = st.aula.clock.now();
    let headers = req.headers();
    let method = req.method().as_str().to_owned();
    let url = bounded(
        req.uri()
            .path_and_query()
            .map_or_else(|| req.uri().path(), |pq| pq.as_str()),
        MAX_FIELD_BYTES,
    );
    let referrer = header_value(headers, header::REFERER);
    let user_agent = header_value(headers, header::USER_AGENT);
    let forwarded_for = header_value(headers, "x-forwarded-for");
    let cookies = cookies(&st, headers);
    let log_after_response = st.config.log_after_response;

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
    let write = async move {
        if let Err(e) = st.aula.store.append_access_log(&entry).await {
            tracing::error!(error = %aula_domain::ErrorChain(&e), "writing the access log failed");
        }
    };
    if log_after_response {
        tokio::spawn(write);
    } else {
        write.await;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_field_is_cut_to_its_limit_and_says_how_long_it_was() {
        let long = "ä".repeat(5000);
        let cut = bounded(&long, MAX_FIELD_BYTES);
        assert!(cut.len() <= MAX_FIELD_BYTES, "{} bytes", cut.len());
        assert!(cut.ends_with("…[+10000 bytes]"), "{cut}");
        assert_eq!(bounded("Mozilla/5.0", MAX_FIELD_BYTES), "Mozilla/5.0");
    }
}
