//! Erased means gone from the disk: after a teacher erases their account through the
//! running portal, none of their personal data, their rooms' names, their pupils'
//! nicknames or their chat can be read from the embedded store's files with `strings` —
//! not in the database file, not in its write-ahead log.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Portal {
    child: Child,
    base: String,
    admin_password: String,
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path) -> Portal {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aula"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(["--data-dir", data.to_str().expect("utf-8 path")])
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
    let mut admin_password = String::new();
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the portal prints its URL within 30 s");
        if let Some(rest) = line.split("initial password ").nth(1) {
            admin_password = rest.split_whitespace().next().unwrap_or("").to_owned();
        }
        if line.starts_with("Aula is running at") {
            break line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .expect("the line names a URL")
                .trim_end_matches('/')
                .to_owned();
        }
    };
    Portal {
        child,
        base,
        admin_password,
    }
}

fn session_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("aula_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// Every marker that occurs anywhere in the store's files (database, WAL, shared memory).
fn markers_on_disk(data: &Path, markers: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data).expect("the data directory") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with("aula.sqlite3") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable store file");
        for m in markers {
            if bytes.windows(m.len()).any(|w| w == m.as_bytes()) {
                found.push(format!("{m} in {name}"));
            }
        }
    }
    found
}

#[tokio::test]
async fn an_erased_teacher_leaves_nothing_readable_in_the_embedded_store_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let portal = start(&data);
    let http = reqwest::Client::new();
    let base = portal.base.clone();

    let admin = http
        .post(format!("{base}/api/auth/login"))
        .json(
            &serde_json::json!({ "email": "admin@aula.local", "password": portal.admin_password }),
        )
        .send()
        .await
        .expect("admin login");
    assert_eq!(admin.status(), 200);
    let admin_cookie = session_cookie(&admin);

    // Markers no other record could contain by chance.
    let markers = [
        "Qzvorname",
        "Qznachname",
        "qzlehrer@schule.example",
        "Qzgymnasium",
        "Qzklasse 7b",
        "Qzgastname",
        "Qz Hausaufgaben bis Montag",
        "Qz private Frage",
    ];
    let provisioned: serde_json::Value = http
        .post(format!("{base}/api/admin/moderators"))
        .header("cookie", &admin_cookie)
        .json(&serde_json::json!({
            "first_name": markers[0], "last_name": markers[1], "email": markers[2],
            "federal_state": "DE-BY", "organisation": markers[3]
        }))
        .send()
        .await
        .expect("provision")
        .json()
        .await
        .expect("json");
    let password = provisioned["initial_password"]
        .as_str()
        .unwrap_or_else(|| panic!("an initial password: {provisioned}"))
        .to_owned();
    let teacher = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({ "email": markers[2], "password": password }))
        .send()
        .await
        .expect("teacher login");
    assert_eq!(teacher.status(), 200);
    let cookie = session_cookie(&teacher);
    let room: serde_json::Value = http
        .post(format!("{base}/api/rooms"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({ "name": markers[4] }))
        .send()
        .await
        .expect("room")
        .json()
        .await
        .expect("json");
    let room_id = room["id"].as_str().expect("room id").to_owned();
    let invite = room["invite_url"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .expect("invite token")
        .to_owned();
    let guest: serde_json::Value = http
        .post(format!("{base}/api/join/{invite}"))
        .json(&serde_json::json!({ "nickname": markers[5] }))
        .send()
        .await
        .expect("join")
        .json()
        .await
        .expect("json");
    let guest_auth = format!("Bearer {}", guest["token"].as_str().expect("guest token"));
    let guest_participant = format!(
        "g:{}",
        guest["guest"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a guest id: {guest}"))
    );
    for (auth, body, to) in [
        (("authorization", guest_auth.clone()), markers[6], None),
        (
            ("cookie", cookie.clone()),
            markers[7],
            Some(guest_participant),
        ),
    ] {
        let posted = http
            .post(format!("{base}/api/rooms/{room_id}/chat"))
            .header(auth.0, auth.1)
            .json(&serde_json::json!({
                "body": body, "to": to, "idempotency_key": uuid_like(body)
            }))
            .send()
            .await
            .expect("post");
        assert_eq!(posted.status(), 201, "chat posted");
    }
    assert!(
        !markers_on_disk(&data, &markers).is_empty(),
        "the markers were written to the store (else this test proves nothing)"
    );

    let erased = http
        .delete(format!("{base}/api/me"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({ "password": password }))
        .send()
        .await
        .expect("erase");
    assert_eq!(erased.status(), 204, "the account is erased");

    assert_eq!(
        markers_on_disk(&data, &markers),
        Vec::<String>::new(),
        "nothing of the erased teacher can be read from the disk"
    );
    // The portal goes on serving after the log was truncated.
    let again = http
        .get(format!("{base}/api/me"))
        .header("cookie", &admin_cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(again.status(), 200);
}

/// A fixed idempotency key per message (the API wants a UUID).
fn uuid_like(seed: &str) -> String {
    let n = seed
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    format!("00000000-0000-4000-8000-{:012x}", n & 0xffff_ffff_ffff)
}
