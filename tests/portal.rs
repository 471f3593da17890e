//! The README's first command, tested: `aula serve` starts, prints its URL, answers its
//! health check on the embedded store and on DynamoDB at the local endpoint, and keeps
//! its data in the data directory.

mod common;

use common::serve::{Portal, admin_session, start};
use std::process::Command;
use std::time::Duration;

async fn health(p: &Portal) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("{}/healthz", p.base))
        .await
        .expect("the portal answers");
    let status = r.status().as_u16();
    (status, r.json().await.expect("health is JSON"))
}

#[tokio::test]
async fn the_portal_starts_on_the_embedded_store_and_reports_healthy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&["--data-dir", data.to_str().expect("utf-8 path")]);
    assert!(portal.base.starts_with("http://127.0.0.1:"));
    let (status, body) = health(&portal).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"], "embedded");
    assert!(
        data.join("aula.sqlite3").exists(),
        "the embedded store lives in the data directory"
    );

    // The first start made an admin and printed the initial password; it works.
    let password = portal.initial_password();
    let login = |base: String| {
        let password = password.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/api/auth/login"))
                .json(&serde_json::json!({ "email": "admin@aula.local", "password": password }))
                .send()
                .await
                .expect("login answers")
                .status()
        }
    };
    assert_eq!(login(portal.base.clone()).await, 200);
    drop(portal);

    // A restart keeps the data and the keys, and makes no second admin.
    let again = start(&["--data-dir", data.to_str().expect("utf-8 path")]);
    assert!(
        again
            .preamble
            .iter()
            .all(|l| !l.contains("initial password"))
    );
    assert_eq!(
        login(again.base.clone()).await,
        200,
        "the admin survives a restart"
    );
}

#[tokio::test]
async fn the_portal_runs_on_dynamodb_at_the_local_endpoint() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127."),
        "needs the local AWS endpoint (run ./scripts/test); AWS_ENDPOINT_URL is {endpoint:?}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys");
    let portal = start(&[
        "--store",
        "dynamodb",
        "--keys-dir",
        keys.to_str().expect("utf-8 path"),
    ]);
    let (status, body) = health(&portal).await;
    assert_eq!(status, 200);
    assert_eq!(body["store"], "dynamodb");
}

#[test]
fn a_bad_flag_is_refused_with_a_message_not_a_panic() {
    let out = Command::new(env!("CARGO_BIN_EXE_aula"))
        .args(["serve", "--sweep-seconds", "0"])
        .output()
        .expect("the aula binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--sweep-seconds must be at least 1"),
        "stderr: {err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn a_turn_url_without_its_secret_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_aula"))
        .args(["serve", "--turn-url", "turn:127.0.0.1:3478?transport=tcp"])
        .env_remove("AULA_TURN_SECRET")
        .output()
        .expect("the aula binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--turn-url and --turn-secret go together"),
        "stderr: {err}"
    );
}

/// The join answer of a portal started with `--turn-url`/`--turn-secret`, and of one without.
async fn join_answer(turn: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut args = vec!["--data-dir", data.to_str().expect("utf-8 path")];
    args.extend_from_slice(turn);
    let portal = start(&args);
    let http = reqwest::Client::new();
    let base = &portal.base;
    let cookie = admin_session(&portal, &http).await;
    let room: serde_json::Value = http
        .post(format!("{base}/api/rooms"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({ "name": "Klasse 9c" }))
        .send()
        .await
        .expect("room")
        .json()
        .await
        .expect("json");
    let room_id = room["id"].as_str().expect("room id");
    http.post(format!("{base}/api/rooms/{room_id}/join"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("grant")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_pointed_at_a_turn_server_hands_each_joiner_credentials_the_turn_server_accepts_until_the_grant_expires()
 {
    use aws_lc_rs::hmac;
    use base64::Engine as _;
    let grant = join_answer(&[
        "--turn-url",
        "turn:{host}:3478?transport=udp,turns:turn.schule.example:443?transport=tcp",
        "--turn-secret",
        "geteiltes-geheimnis",
    ])
    .await;
    let servers = grant["ice_servers"].as_array().expect("ice_servers");
    assert_eq!(servers.len(), 1, "{grant}");
    let server = &servers[0];
    // {host}: the host of the node the room was placed on (here the in-process one)
    assert_eq!(
        server["urls"],
        serde_json::json!([
            "turn:127.0.0.1:3478?transport=udp",
            "turns:turn.schule.example:443?transport=tcp"
        ])
    );
    // coturn's use-auth-secret: username <expiry>:<label>, valid as long as the grant
    let username = server["username"].as_str().expect("username");
    let (expiry, label) = username.split_once(':').expect("expiry:label");
    let expires_ms = grant["expires_at"].as_i64().expect("expires_at");
    assert_eq!(
        expiry.parse::<i64>().expect("epoch seconds"),
        expires_ms / 1000
    );
    assert!(!label.is_empty());
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"geteiltes-geheimnis");
    let expected =
        base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, username.as_bytes()));
    assert_eq!(server["credential"], expected.as_str());

    let without = join_answer(&[]).await;
    assert_eq!(without["ice_servers"], serde_json::json!([]), "{without}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_and_a_guest_hold_a_meeting_on_the_one_machine_portal() {
    use aula_loadgen::{Client, Joined, Publish};
    use aula_sfu::protocol::Source;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&["--data-dir", data.to_str().expect("utf-8 path")]);
    let http = reqwest::Client::new();
    let base = &portal.base;
    let cookie = admin_session(&portal, &http).await;
    let room: serde_json::Value = http
        .post(format!("{base}/api/rooms"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({ "name": "Klasse 7b" }))
        .send()
        .await
        .expect("room")
        .json()
        .await
        .expect("json");
    let room_id = room["id"].as_str().expect("room id").to_owned();
    let invite = room["invite_url"]
        .as_str()
        .expect("invite")
        .rsplit('/')
        .next()
        .expect("token")
        .to_owned();
    let guest: serde_json::Value = http
        .post(format!("{base}/api/join/{invite}"))
        .json(&serde_json::json!({ "nickname": "Max" }))
        .send()
        .await
        .expect("guest")
        .json()
        .await
        .expect("json");
    let guest_token = guest["token"].as_str().expect("guest token").to_owned();

    let mut clients = Vec::new();
    for (i, auth) in [
        ("cookie", cookie.clone()),
        ("authorization", format!("Bearer {guest_token}")),
    ]
    .into_iter()
    .enumerate()
    {
        let grant: serde_json::Value = http
            .post(format!("{base}/api/rooms/{room_id}/join"))
            .header(auth.0, auth.1)
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("grant")
            .json()
            .await
            .expect("json");
        let node_url = grant["node_url"].as_str().expect("placed on a node");
        assert!(
            node_url.starts_with("ws://127.0.0.1:") && node_url.ends_with("/media"),
            "the in-process node, found through the registry: {node_url}"
        );
        let Joined::Welcome(mut c) = Client::join(
            node_url,
            room_id.parse().expect("room id"),
            grant["grant"].as_str().expect("grant"),
            i as u32,
        )
        .await
        .expect("join") else {
            panic!("lobby")
        };
        c.publish(Publish {
            video_bitrate: 200_000,
            ..Publish::default()
        })
        .await
        .expect("publish");
        clients.push(c);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let flowing = [(0, 1), (1, 0)].iter().all(|(a, b)| {
            [Source::Microphone, Source::Camera]
                .iter()
                .all(|s| clients[*a].stats.received_from(&clients[*b].me, *s).packets >= 10)
        });
        if flowing {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "audio and video flow both ways through the in-process node"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let meetings: serde_json::Value = http
        .get(format!("{base}/api/rooms/{room_id}/meetings"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("meetings")
        .json()
        .await
        .expect("json");
    assert_eq!(
        meetings["meetings"].as_array().map(Vec::len),
        Some(1),
        "the running meeting is listed: {meetings}"
    );
}

#[tokio::test]
async fn the_frontend_is_served_from_the_binary_with_a_policy_that_allows_only_the_portal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&["--data-dir", data.to_str().expect("utf-8 path")]);
    for path in ["/", "/login", "/rooms", "/j/some-invite-token", "/privacy"] {
        let r = reqwest::get(format!("{}{path}", portal.base))
            .await
            .expect("the page answers");
        assert_eq!(r.status(), 200, "{path}");
        let csp = r
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        let html = r.text().await.expect("html");
        assert!(html.contains("<script type=\"module\" src=\"/js/main.js\">"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no other origin is named"
        );
    }
    let js = reqwest::get(format!("{}/js/meeting.js", portal.base))
        .await
        .expect("script");
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("javascript"))
    );
    let missing = reqwest::get(format!("{}/js/nope.js", portal.base))
        .await
        .expect("answer");
    assert_eq!(missing.status(), 404);
    let api = reqwest::get(format!("{}/api/nope", portal.base))
        .await
        .expect("answer");
    assert_eq!(api.status(), 404);
    let body: serde_json::Value = api.json().await.expect("an API error stays JSON");
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_client_cannot_escape_the_address_limit_by_writing_x_forwarded_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&["--data-dir", data.to_str().expect("utf-8 path")]);
    let http = reqwest::Client::new();
    // The per-address count runs in fixed 15-minute windows (on the epoch's quarter hours):
    // 301 Argon2 checks take up to a minute on a loaded machine, so a run that would cross a
    // window's end waits for the next window first.
    let window = 15 * 60;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let left = window - now % window;
    if left < 120 {
        tokio::time::sleep(std::time::Duration::from_secs(left + 1)).await;
    }
    // 300 failures per address in 15 minutes; each from a different "forwarded" address
    // and for a different account, so only the real address ties them together.
    let mut last = 0;
    for i in 0..301 {
        last = http
            .post(format!("{}/api/auth/login", portal.base))
            .header("x-forwarded-for", format!("203.0.{}.{}", i / 256, i % 256))
            .json(&serde_json::json!({
                "email": format!("niemand-{i}@schule.example.de"),
                "password": "falsch-geraten",
            }))
            .send()
            .await
            .expect("answer")
            .status()
            .as_u16();
    }
    assert_eq!(last, 429, "the 301st failure from one address is refused");
}

/// The portal's address (`127.0.0.1:port`) from its base URL.
fn address(p: &Portal) -> std::net::SocketAddr {
    p.base
        .trim_start_matches("http://")
        .parse()
        .expect("the portal's address")
}

/// Reads until the server closes the connection (a reset counts as closed); `None` if it
/// is still open after `within`.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    match tokio::time::timeout(within, s.read_to_end(&mut got)).await {
        Ok(_) => Some(got),
        Err(_) => None,
    }
}

async fn write(s: &mut tokio::net::TcpStream, text: &str) {
    use tokio::io::AsyncWriteExt as _;
    s.write_all(text.as_bytes()).await.expect("write");
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_and_an_idle_one_are_closed() {
    use tokio::io::AsyncReadExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&[
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "--http-header-seconds",
        "1",
    ]);
    let addr = address(&portal);
    let mut unfinished = tokio::net::TcpStream::connect(addr).await.expect("connect");
    write(&mut unfinished, "GET /healthz HTTP/1.1\r\nHost: aula\r\n").await;
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    write(&mut idle, "GET /healthz HTTP/1.1\r\nHost: aula\r\n\r\n").await;
    // The whole response (a small JSON body), then nothing more on a kept-alive connection.
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains("\"store\"") {
        let n = idle.read(&mut buf).await.expect("read");
        assert!(n > 0, "the first request is answered");
        response.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
    // Generous bounds: the timeout is one second.
    assert!(
        closed_within(&mut unfinished, Duration::from_secs(15))
            .await
            .is_some(),
        "a connection that never finishes its headers is closed"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(15))
            .await
            .is_some(),
        "an idle keep-alive connection is closed"
    );
    // And the portal still serves.
    assert_eq!(health(&portal).await.0, 200);
}

#[tokio::test]
async fn a_client_trickling_a_request_body_is_cut_off_while_the_health_check_keeps_answering() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&[
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "--http-body-seconds",
        "1",
        "--http-header-seconds",
        "60",
    ]);
    let slow = tokio::net::TcpStream::connect(address(&portal))
        .await
        .expect("connect");
    let (mut read, mut write) = slow.into_split();
    // A login whose 600-byte body comes one byte every 100 ms: a minute, if let.
    write
        .write_all(
            b"POST /api/auth/login HTTP/1.1\r\nHost: aula\r\nContent-Type: application/json\r\n\
              Content-Length: 600\r\n\r\n{",
        )
        .await
        .expect("write");
    let trickle = tokio::spawn(async move {
        for _ in 0..599 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    assert_eq!(health(&portal).await.0, 200, "others are served meanwhile");
    // Generous: the body's deadline is one second, the trickle would take a minute.
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut answer)).await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "the connection is closed long before the body is complete"
    );
    if !answer.is_empty() {
        assert!(
            answer.starts_with(b"HTTP/1.1 4"),
            "refused: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(health(&portal).await.0, 200);
}

#[tokio::test]
async fn beyond_the_connection_limit_a_request_waits_until_a_connection_closes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&[
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "--http-max-connections",
        "3",
        "--http-header-seconds",
        "60",
    ]);
    let addr = address(&portal);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    // Each holder's request is answered, so all three have surely been accepted.
    for s in &mut held {
        write(s, "GET /healthz HTTP/1.1\r\nHost: aula\r\n\r\n").await;
        let mut buf = [0u8; 1024];
        let n = tokio::io::AsyncReadExt::read(s, &mut buf)
            .await
            .expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    let mut fourth = tokio::net::TcpStream::connect(addr).await.expect("connect");
    write(
        &mut fourth,
        "GET /healthz HTTP/1.1\r\nHost: aula\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        closed_within(&mut fourth, Duration::from_secs(1))
            .await
            .is_none(),
        "a fourth connection waits while three are open"
    );
    drop(held.pop());
    let answer = closed_within(&mut fourth, Duration::from_secs(15))
        .await
        .expect("served once a connection closed");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn metrics_are_served_only_on_the_private_listener_and_every_response_carries_the_security_headers()
 {
    use tokio::io::AsyncReadExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&[
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let metrics_url = portal
        .preamble
        .iter()
        .find_map(|l| l.strip_prefix("Media node metrics (this machine only): "))
        .expect("the portal names its metrics listener")
        .to_owned();
    let has_headers = |h: &reqwest::header::HeaderMap| {
        h.get("x-content-type-options")
            .is_some_and(|v| v == "nosniff")
            && h.get("content-security-policy")
                .is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("default-src 'none'")))
            && h.get("x-frame-options").is_some_and(|v| v == "DENY")
    };
    let public = reqwest::get(format!("{}/metrics", portal.base))
        .await
        .expect("portal");
    assert_eq!(public.status(), 404, "no metrics on the portal's port");
    assert!(has_headers(public.headers()));
    let private = reqwest::get(&metrics_url).await.expect("metrics listener");
    assert_eq!(private.status(), 200);
    assert!(has_headers(private.headers()), "{:?}", private.headers());
    let text = private.text().await.expect("text");
    assert!(text.contains("aula_media_participants"), "{text}");
    let plain_get = reqwest::get(format!("{}/media", portal.base))
        .await
        .expect("portal");
    assert!(plain_get.status().is_client_error());
    assert!(
        has_headers(plain_get.headers()),
        "{:?}",
        plain_get.headers()
    );
    // The WebSocket handshake's answer too.
    let mut s = tokio::net::TcpStream::connect(address(&portal))
        .await
        .expect("connect");
    write(
        &mut s,
        "GET /media HTTP/1.1\r\nHost: aula\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "the handshake is answered");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(head.contains("content-security-policy: "), "{head}");
}

#[tokio::test]
async fn a_request_with_oversized_headers_is_refused_with_431() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&["--data-dir", data.to_str().expect("utf-8 path")]);
    let addr = address(&portal);
    // 20,000 cookies in one header, ~170 KB: what once wrote 1.1 MB into the access log.
    let cookies: Vec<String> = (0..20_000).map(|i| format!("c{i}=v")).collect();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    write(
        &mut s,
        &format!(
            "GET /api/privacy HTTP/1.1\r\nHost: aula\r\nCookie: {}\r\n\r\n",
            cookies.join("; ")
        ),
    )
    .await;
    let answer = closed_within(&mut s, Duration::from_secs(15))
        .await
        .expect("the server answers and closes");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "Request Header Fields Too Large: {}",
        text.lines().next().unwrap_or("")
    );
    // A browser's ordinary request is still served.
    assert_eq!(health(&portal).await.0, 200);
}
