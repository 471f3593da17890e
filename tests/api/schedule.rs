//! Scheduled meetings: a teacher plans a meeting with its expected size, sees and deletes
//! their plans; the admins' forecast counts them; exports carry them; nobody else sees them.

use crate::harness::TestApp;
use aula_domain::Span;
use serde_json::{Value, json};

/// The forecast's participants in the slot that begins at `slot` (0 if none).
async fn forecast_at(app: &TestApp, from: i64, slot: i64) -> Value {
    let r = app
        .get(
            &format!(
                "/api/admin/forecast?from={from}&until={}&slot=30",
                from + 4 * 3_600_000
            ),
            &app.admin,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["node_capacity"], 500);
    r.body["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .find(|s| s["starts_at"] == slot)
        .cloned()
        .expect("the slot is in the forecast")
}

pub async fn a_teacher_schedules_a_meeting_of_thirty_and_the_admins_forecast_counts_it(
    app: &TestApp,
) {
    let t = app.teacher().await;
    let (room, _) = app.room(&t, false).await;
    // Tomorrow at 8:00 (UTC), on the half hour so it starts a slot.
    let now = app.clock_now().millis();
    let day = 86_400_000;
    let bell = (now / day + 1) * day + 8 * 3_600_000;
    let from = bell - 2 * 3_600_000;
    let before = forecast_at(app, from, bell).await;

    let refused = app
        .post(
            &format!("/api/rooms/{room}/schedule"),
            json!({ "starts_at": bell, "expected_participants": 0 }),
            &t.auth,
        )
        .await;
    assert_eq!(refused.status, 400, "nobody expected: {:?}", refused.body);
    let past = app
        .post(
            &format!("/api/rooms/{room}/schedule"),
            json!({ "starts_at": now - day, "expected_participants": 30 }),
            &t.auth,
        )
        .await;
    assert_eq!(past.status, 400, "over already: {:?}", past.body);

    let made = app
        .post(
            &format!("/api/rooms/{room}/schedule"),
            json!({ "starts_at": bell, "minutes": 90, "expected_participants": 30 }),
            &t.auth,
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.body["room_id"], room.as_str());
    assert_eq!(made.body["starts_at"], bell);
    assert_eq!(made.body["minutes"], 90);
    assert_eq!(made.body["expected_participants"], 30);
    let id = made.body["id"].as_str().expect("id").to_owned();

    let mine = app.get("/api/schedule", &t.auth).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body["scheduled"].as_array().map(Vec::len), Some(1));
    assert_eq!(mine.body["scheduled"][0]["id"], id.as_str());

    // Another teacher sees none of it and cannot delete it.
    let other = app.teacher().await;
    let theirs = app.get("/api/schedule", &other.auth).await;
    assert_eq!(theirs.body["scheduled"], json!([]));
    let stranger = app
        .call(
            "DELETE",
            &format!("/api/rooms/{room}/schedule/{id}"),
            None,
            &other.auth,
        )
        .await;
    assert_eq!(stranger.status, 404, "{:?}", stranger.body);
    // Teachers do not see the forecast.
    let forbidden = app
        .get(
            &format!("/api/admin/forecast?from={from}&until={bell}"),
            &t.auth,
        )
        .await;
    assert_eq!(forbidden.status, 403);

    // The admin's forecast: 30 more participants from half an hour before the bell.
    let after = forecast_at(app, from, bell).await;
    let more = |key: &str| after[key].as_u64().unwrap_or(0) - before[key].as_u64().unwrap_or(0);
    assert_eq!(more("expected_participants"), 30);
    assert_eq!(more("seats"), 30);
    assert_eq!(more("meetings"), 1);
    assert!(after["nodes"].as_u64() >= Some(1));
    let early = forecast_at(app, from, bell - 1_800_000).await;
    assert!(
        early["expected_participants"].as_u64() >= Some(30),
        "seats held early"
    );

    // The teacher's export carries the plan.
    let export = app.get("/api/me/export", &t.auth).await;
    assert_eq!(export.status, 200, "{:?}", export.body);
    assert_eq!(export.body["rooms"][0]["scheduled"][0]["id"], id.as_str());

    let deleted = app
        .call(
            "DELETE",
            &format!("/api/rooms/{room}/schedule/{id}"),
            None,
            &t.auth,
        )
        .await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    assert_eq!(
        app.get("/api/schedule", &t.auth).await.body["scheduled"],
        json!([])
    );
    let gone = forecast_at(app, from, bell).await;
    assert_eq!(
        gone["expected_participants"],
        before["expected_participants"]
    );
}

pub async fn a_plan_is_gone_the_day_after_it_was_to_end(app: &TestApp) {
    let t = app.teacher().await;
    let (room, _) = app.room(&t, false).await;
    let starts = app.clock_now().plus(Span::seconds(3600)).millis();
    let made = app
        .post(
            &format!("/api/rooms/{room}/schedule"),
            json!({ "starts_at": starts, "expected_participants": 12 }),
            &t.auth,
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.body["minutes"], 45, "a lesson unless said otherwise");
    app.clock
        .advance(Span::seconds(3600 + 45 * 60 + 86_400 + 1));
    let t = app.login(&t.email, &t.password).await.expect("login");
    assert_eq!(
        app.get("/api/schedule", &t).await.body["scheduled"],
        json!([])
    );
}
