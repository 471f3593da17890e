//! The README's first command, tested: `aula serve` starts, prints its URL, answers its
//! health check on the embedded store and on DynamoDB at the local endpoint, and keeps
//! its data in the data directory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Portal {
    child: Child,
    base: String,
    /// What it printed before the "running at" line.
    preamble: Vec<String>,
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the portal binary on a free loopback port and waits for its "running at" line.
fn start(args: &[&str]) -> Portal {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aula"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the aula binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut preamble = Vec::new();
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the portal prints its URL within 30 s");
        if line.starts_with("Aula is running at") {
            break line;
        }
        preamble.push(line);
    };
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the line names a URL")
        .trim_end_matches('/')
        .to_owned();
    Portal {
        child,
        base,
        preamble,
    }
}

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
    let told = portal.preamble.join("\n");
    let password = told
        .split("initial password ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no initial password in {told:?}"))
        .to_owned();
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

/// `name=value` of the session cookie a login response sets.
fn session_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("aula_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_and_a_guest_hold_a_meeting_on_the_one_machine_portal() {
    use aula_loadgen::{Client, Joined, Publish};
    use aula_sfu::protocol::Source;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&["--data-dir", data.to_str().expect("utf-8 path")]);
    let password = portal
        .preamble
        .join("\n")
        .split("initial password ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the initial password")
        .to_owned();
    let http = reqwest::Client::new();
    let base = &portal.base;
    let login = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({ "email": "admin@aula.local", "password": password }))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let cookie = session_cookie(&login);
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
