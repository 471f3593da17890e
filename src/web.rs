//! The frontend (`web/`), embedded into the binary, and the security headers of every
//! response: a Content-Security-Policy that allows nothing but the portal's own origin
//! (and its media nodes for the signalling WebSocket).

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Assets;

/// Serves the embedded files (the router's fallback): any other path that is not an API
/// route is a page of the single-page app and gets `index.html`.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "error": { "code": "not_found", "message": "no such endpoint" }
            })),
        )
            .into_response();
    }
    if let Some(file) = Assets::get(path) {
        return file_response(path, file);
    }
    // A path with a file extension that is not there is a missing file, not a page.
    if path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    match Assets::get("index.html") {
        Some(index) => file_response("index.html", index),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn file_response(path: &str, file: rust_embed::EmbeddedFile) -> Response {
    let mime = file.metadata.mimetype().to_owned();
    let cache = if path == "index.html" {
        "no-cache"
    } else {
        // Revalidated with the ETag: a new binary serves new files at once.
        "public, max-age=0, must-revalidate"
    };
    let etag = format!(
        "\"{}\"",
        file.metadata
            .sha256_hash()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    Response::builder()
        .header(header::CONTENT_TYPE, mime)
        .header(header::CACHE_CONTROL, cache)
        .header(header::ETAG, etag)
        .body(Body::from(file.data.into_owned()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The headers every response carries (one set, shared with the media node).
/// `media_origins`: where media nodes' signalling lives (`ws://…`/`wss://…` origins)
/// besides the portal itself.
pub fn security_headers(router: Router, media_origins: &[String]) -> Router {
    aula_media_node::http::security_headers(router, content_security_policy(media_origins))
}

pub fn content_security_policy(media_origins: &[String]) -> String {
    let mut connect = String::from("'self'");
    for o in media_origins {
        connect.push(' ');
        connect.push_str(o);
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob:; font-src 'self'; connect-src {connect}; manifest-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The WebSocket origin of an HTTP(S) URL: `https://a.example/x` → `wss://a.example`.
pub fn websocket_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    let ws = match scheme {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return None,
    };
    Some(format!("{ws}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_only_the_portal_and_its_media_nodes() {
        let csp = content_security_policy(&["wss://node-1.aula.example".into()]);
        assert!(csp.contains("default-src 'none'"));
        assert!(csp.contains("script-src 'self';"));
        assert!(csp.contains("connect-src 'self' wss://node-1.aula.example;"));
        assert!(!csp.contains("unsafe"));
    }

    #[test]
    fn websocket_origins_follow_the_scheme() {
        assert_eq!(
            websocket_origin("https://aula.example/j/x").as_deref(),
            Some("wss://aula.example")
        );
        assert_eq!(
            websocket_origin("http://127.0.0.1:8080").as_deref(),
            Some("ws://127.0.0.1:8080")
        );
        assert_eq!(websocket_origin("ftp://x"), None);
    }

    #[test]
    fn the_forms_limits_are_the_servers() {
        use aula_domain::services::Password;
        use aula_domain::{AuditReason, ChatBody, Nickname, Organisation, PersonName, RoomName};
        let file = Assets::get("js/limits.js").expect("limits.js is embedded");
        let text = String::from_utf8_lossy(&file.data);
        let limit = |name: &str| -> usize {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
                .and_then(|v| v.trim_end_matches(',').parse().ok())
                .unwrap_or_else(|| panic!("limits.js names {name}"))
        };
        assert_eq!(limit("nickname"), Nickname::MAX_CHARS);
        assert_eq!(limit("room_name"), RoomName::MAX_CHARS);
        assert_eq!(limit("person_name"), PersonName::MAX_CHARS);
        assert_eq!(limit("organisation"), Organisation::MAX_CHARS);
        assert_eq!(limit("chat_message"), ChatBody::MAX_CHARS);
        assert_eq!(limit("password"), Password::MAX_CHARS);
        assert_eq!(limit("reason"), AuditReason::MAX_CHARS);
    }

    /// The modules the frontend module `module` (say `js/meeting/chat.js`) imports, statically
    /// or dynamically: every quoted `'./x.js'`, `'./dir/x.js'` or `'../x.js'`, resolved
    /// against the module's own folder.
    fn imports_of(module: &str, source: &str) -> Vec<String> {
        let folder: Vec<&str> = module.split('/').collect();
        let folder = &folder[..folder.len() - 1];
        source
            .split('\'')
            .filter(|s| (s.starts_with("./") || s.starts_with("../")) && s.ends_with(".js"))
            .filter(|s| !s.contains(char::is_whitespace))
            .map(|specifier| {
                let mut path = folder.to_vec();
                for part in specifier.split('/') {
                    match part {
                        "." => {}
                        ".." => {
                            path.pop();
                        }
                        name => path.push(name),
                    }
                }
                path.join("/")
            })
            .collect()
    }

    /// The first import circle in `graph` (module -> the modules it imports), if any, as the
    /// path that closes it. Depth-first search: a module met again while on the path.
    fn import_circle(graph: &std::collections::HashMap<String, Vec<String>>) -> Option<String> {
        fn visit(
            m: &str,
            graph: &std::collections::HashMap<String, Vec<String>>,
            path: &mut Vec<String>,
            done: &mut Vec<String>,
        ) -> Option<String> {
            if done.iter().any(|d| d == m) {
                return None;
            }
            if path.iter().any(|p| p == m) {
                return Some(format!("{path:?} -> {m}"));
            }
            path.push(m.to_owned());
            for next in graph.get(m).into_iter().flatten() {
                if let Some(circle) = visit(next, graph, path, done) {
                    return Some(circle);
                }
            }
            path.pop();
            done.push(m.to_owned());
            None
        }
        let mut modules: Vec<&String> = graph.keys().collect();
        modules.sort();
        let mut done = Vec::new();
        modules
            .into_iter()
            .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
    }

    #[test]
    fn imports_resolve_against_the_importing_modules_folder() {
        let source = "import { a } from './api.js';\nimport { b } from '../ui.js';\n\
                      import { c } from './meeting/chat.js'; // the node's frames";
        assert_eq!(
            imports_of("js/meeting/media.js", source),
            [
                "js/meeting/api.js",
                "js/ui.js",
                "js/meeting/meeting/chat.js"
            ]
        );
        assert_eq!(
            imports_of("js/meeting.js", "import('./meeting/chat.js')"),
            ["js/meeting/chat.js"]
        );
    }

    #[test]
    fn a_part_that_imports_its_parent_back_is_a_circle() {
        let graph = [
            ("js/main.js", "import('./meeting.js')"),
            ("js/meeting.js", "import { Chat } from './meeting/chat.js';"),
            (
                "js/meeting/chat.js",
                "import { render } from '../meeting.js';",
            ),
        ]
        .into_iter()
        .map(|(m, source)| (m.to_owned(), imports_of(m, source)))
        .collect();
        let circle = import_circle(&graph).expect("the circle is found");
        assert!(circle.ends_with("-> js/meeting.js"), "{circle}");
    }

    #[test]
    fn the_frontend_modules_import_each_other_without_a_circle() {
        use std::collections::HashMap;
        let graph: HashMap<String, Vec<String>> = Assets::iter()
            .filter(|f| f.starts_with("js/") && f.ends_with(".js"))
            .map(|f| {
                let file = Assets::get(&f).expect("embedded");
                (
                    f.to_string(),
                    imports_of(&f, &String::from_utf8_lossy(&file.data)),
                )
            })
            .collect();
        assert!(graph["js/main.js"].contains(&"js/meeting.js".to_owned()));
        // The meeting's parts are walked too, and they import the shared modules above them.
        assert!(graph["js/meeting.js"].contains(&"js/meeting/signalling.js".to_owned()));
        assert!(graph["js/meeting/chat.js"].contains(&"js/storage.js".to_owned()));
        if let Some(circle) = import_circle(&graph) {
            panic!("import circle: {circle}");
        }
    }

    #[test]
    fn the_frontend_is_embedded_with_its_pages() {
        for f in ["index.html", "app.css", "js/main.js", "js/meeting.js"] {
            assert!(Assets::get(f).is_some(), "{f} is embedded");
        }
    }
}
