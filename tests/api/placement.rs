//! Join grants when the portal places rooms over registered media nodes.

use crate::harness::TestApp;
use aula_domain::ids::IdGenerator;
use aula_domain::{MediaNode, retention};
use aula_store::RandomIds;
use serde_json::json;

pub async fn a_join_grant_names_a_live_node_or_says_when_to_retry(app: &TestApp) {
    let t = app.teacher().await;
    let (room, _) = app.room(&t, false).await;
    // No media node is registered yet: 503 with Retry-After.
    let refused = app
        .post(&format!("/api/rooms/{room}/join"), json!({}), &t.auth)
        .await;
    assert_eq!((refused.status, refused.code()), (503, "no_capacity"));
    assert!(refused.headers.contains_key("retry-after"));

    // A node registers (its heartbeat); the next grant names it.
    let now = app.clock_now();
    let node = MediaNode {
        id: RandomIds.node_id(),
        address: format!("wss://node-{}.aula.example", RandomIds.uuid().simple()),
        capacity: 1_000_000,
        load: 0,
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
