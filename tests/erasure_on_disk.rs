//! Erased means gone from the disk: after a teacher erases their account through the
//! running portal, none of their personal data, their rooms' names, their pupils'
//! nicknames or their chat can be read from the embedded store's files with `strings` —
//! not in the database file, not in its write-ahead log.

mod common;

use common::serve::{admin_session, session_cookie, set_own_password, start};
use std::path::Path;

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
    let portal = start(&["--data-dir", data.to_str().expect("utf-8 path")]);
    let http = reqwest::Client::new();
    let base = portal.base.clone();

    let admin_cookie = admin_session(&portal, &http).await;

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
    let password = set_own_password(&http, &base, &cookie, &password).await;
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
