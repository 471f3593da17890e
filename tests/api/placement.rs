//! Join grants when the portal places rooms over registered media nodes.

use crate::harness::TestApp;
use aula_domain::ids::IdGenerator;
use aula_domain::{MediaNode, Span, retention};
use aula_store::RandomIds;
use serde_json::json;

pub async fn a_join_grant_names_a_live_node_or_says_when_to_retry(app: &TestApp) {
    let t = app.teacher().await;
    let (room, _) = app.room(&t, false).await;
    // No media node is registered yet: the teacher waits (202 with Retry-After), first in
    // line, and is not given a place behind pupils.
    let waiting = app
        .post(&format!("/api/rooms/{room}/join"), json!({}), &t.auth)
        .await;
    assert_eq!(waiting.status, 202, "{:?}", waiting.body);
    assert!(waiting.headers.contains_key("retry-after"));
    assert_eq!(waiting.body["position"], 1);
    assert!(waiting.body["place"].is_null());
    assert!(
        waiting.body.get("grant").is_none(),
        "no grant while waiting"
    );

    // A node registers (its heartbeat); the next grant names it.
    let now = app.clock_now();
    let node = MediaNode {
        id: RandomIds.node_id(),
        address: format!("wss://node-{}.aula.example", RandomIds.uuid().simple()),
        capacity: 1_000_000,
        load: 0,
        reserved: 0,
        last_heartbeat: now,
        expires_at: retention::heartbeat_expiry(now),
    };
    app.store.put_node(&node).await.expect("registered");
    let t = app.login(&t.email, &t.password).await.expect("login");
    let granted = app
        .post(&format!("/api/rooms/{room}/join"), json!({}), &t)
        .await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    assert_eq!(granted.body["node_url"], node.address.as_str());
}

/// A node's signalling address on 127.0.0.1 whose health check answers 200, as a live
/// node's does (the portal probes a node a client reports lost; a made-up host name would
/// send that probe to DNS).
async fn answering_address() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = conn.read(&mut request).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    format!("ws://{addr}/media")
}

async fn registered(app: &TestApp) -> MediaNode {
    let now = app.clock_now();
    MediaNode {
        id: RandomIds.node_id(),
        address: answering_address().await,
        capacity: 1_000_000,
        load: 0,
        reserved: 0,
        last_heartbeat: now,
        expires_at: retention::heartbeat_expiry(now),
    }
}

async fn granted_node(
    app: &TestApp,
    auth: &crate::harness::Auth,
    room: &str,
    body: serde_json::Value,
) -> String {
    let r = app
        .post(&format!("/api/rooms/{room}/join"), body, auth)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["node_url"].as_str().expect("a node").to_owned()
}

pub async fn a_client_that_lost_its_node_gets_another_once_that_node_has_gone_quiet(app: &TestApp) {
    let t = app.teacher().await;
    let (room, _) = app.room(&t, false).await;
    let first = registered(app).await;
    app.store.put_node(&first).await.expect("registered");
    let grant = |body: serde_json::Value| granted_node(app, &t.auth, &room, body);
    assert_eq!(grant(json!({})).await, first.address);
    // A second node comes up; a client reports the first unreachable while its heartbeat
    // is fresh and it answers its health check: the word of one client does not move the
    // room.
    let second = registered(app).await;
    app.store.put_node(&second).await.expect("registered");
    assert_eq!(
        grant(json!({ "unreachable": first.address })).await,
        first.address
    );
    // The first node dies; 4 s later only the second has renewed its heartbeat.
    app.clock.advance(Span::seconds(4));
    let now = app.clock_now();
    let renewed = MediaNode {
        last_heartbeat: now,
        expires_at: retention::heartbeat_expiry(now),
        ..second.clone()
    };
    app.store.put_node(&renewed).await.expect("heartbeat");
    assert_eq!(
        grant(json!({ "unreachable": first.address })).await,
        second.address,
        "reported and quiet: the room moves at once"
    );
    assert_eq!(grant(json!({})).await, second.address, "and stays there");
}

pub async fn a_room_whose_teacher_expects_thirty_gets_thirty_seats_when_the_teacher_enters(
    app: &TestApp,
) {
    let t = app.teacher().await;
    let (room, _) = app.room(&t, false).await;
    let too_many = app
        .call(
            "PATCH",
            &format!("/api/rooms/{room}"),
            Some(json!({ "settings": { "expected_participants": 1001 } })),
            &t.auth,
        )
        .await;
    assert_eq!(too_many.status, 400, "{:?}", too_many.body);
    let set = app
        .call(
            "PATCH",
            &format!("/api/rooms/{room}"),
            Some(json!({ "settings": { "expected_participants": 30 } })),
            &t.auth,
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.body["settings"]["expected_participants"], 30);
    assert_eq!(set.body["settings"]["lobby"], false, "other settings kept");

    let node = registered(app).await;
    app.store.put_node(&node).await.expect("registered");
    let granted = app
        .post(&format!("/api/rooms/{room}/join"), json!({}), &t.auth)
        .await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    let room_id = aula_domain::RoomId::parse(&room).expect("room id");
    let placed = app
        .store
        .placement(room_id, app.clock_now())
        .await
        .expect("read")
        .expect("placed");
    assert_eq!(placed.seats, 30, "the teacher's figure, not the default 16");

    // Cleared (0), the room is sized as before: by its meetings, else the default.
    let cleared = app
        .call(
            "PATCH",
            &format!("/api/rooms/{room}"),
            Some(json!({ "settings": { "expected_participants": 0 } })),
            &t.auth,
        )
        .await;
    assert_eq!(cleared.status, 200, "{:?}", cleared.body);
    assert!(
        cleared.body["settings"]
            .get("expected_participants")
            .is_none()
    );
}
