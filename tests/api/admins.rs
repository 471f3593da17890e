//! The portal always keeps an admin: nobody can lock out or erase the last one, and admins
//! cannot restrict or erase themselves through the admin endpoints.

use crate::harness::{Auth, TestApp};
use serde_json::json;

const ADMIN_PASSWORD: &str = "test-admin-password-1";

async fn my_id(app: &TestApp, auth: &Auth) -> String {
    let me = app.get("/api/me", auth).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    me.body["id"].as_str().expect("id").to_owned()
}

pub async fn an_admin_cannot_restrict_or_erase_their_own_account_through_the_admin_endpoints(
    app: &TestApp,
) {
    let id = my_id(app, &app.admin).await;
    for action in ["restrict", "erase"] {
        let r = app
            .post(
                &format!("/api/admin/moderators/{id}/{action}"),
                json!({ "reason": "Test: sich selbst sperren" }),
                &app.admin,
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (409, "conflict"),
            "{action}: {:?}",
            r.body
        );
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("another admin")),
            "{:?}",
            r.body
        );
    }
    // Still an admin, still logged in.
    assert_eq!(
        app.get("/api/admin/moderators", &app.admin).await.status,
        200
    );
}

/// On the embedded store the harness's admin is the only one (the shared DynamoDB table has
/// every other test's admins, so "the last admin" cannot be arranged there).
pub async fn the_only_admin_cannot_restrict_or_erase_themselves_but_a_second_admin_can(
    app: &TestApp,
) {
    let restrict = app.post("/api/me/restrict", json!({}), &app.admin).await;
    assert_eq!((restrict.status, restrict.code()), (409, "conflict"));
    let erase = app
        .call(
            "DELETE",
            "/api/me",
            Some(json!({ "password": ADMIN_PASSWORD })),
            &app.admin,
        )
        .await;
    assert_eq!((erase.status, erase.code()), (409, "conflict"));
    assert!(
        erase.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("last active admin")),
        "{:?}",
        erase.body
    );
    assert_eq!(
        app.get("/api/admin/moderators", &app.admin).await.status,
        200
    );

    // With a second admin, either may leave; then the remaining one is the last again.
    let email = format!("admin2-{}@aula.test", crate::harness::unique());
    let made = app
        .post(
            "/api/admin/moderators",
            json!({
                "last_name": "Zwei", "first_name": "Admin", "email": email,
                "federal_state": "DE-BE", "organisation": "Ministerium", "admin": true
            }),
            &app.admin,
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.body["account"]["role"], "admin", "{:?}", made.body);
    let password = made.body["initial_password"].as_str().expect("password");
    let (second, _) = app.login_setting_password(&email, password).await;
    let restricted = app.post("/api/me/restrict", json!({}), &second).await;
    assert_eq!(restricted.status, 204, "{:?}", restricted.body);
    let again = app.post("/api/me/restrict", json!({}), &app.admin).await;
    assert_eq!(
        again.status, 409,
        "the other admin is restricted: this one is the last"
    );
}

async fn accounts(app: &TestApp) -> usize {
    app.get("/api/admin/moderators", &app.admin).await.body["moderators"]
        .as_array()
        .map_or(0, |a| a.len())
}

/// A school's list as a spreadsheet exports it: a dry run reports each bad line by number and
/// creates nothing; the real run creates the good lines, each with an initial password that
/// works once and must then be changed.
pub async fn an_admins_list_of_teachers_is_checked_line_by_line_and_only_good_lines_become_accounts(
    app: &TestApp,
) {
    let tag = crate::harness::unique();
    let csv = format!(
        "Nachname;Vorname;E-Mail;Bundesland;Schule\n\
         Meier;Anna;anna-{tag}@schule.test;Bayern;Gymnasium\n\
         Kurz;Ben;kein-at-{tag};BY;Gymnasium\n\
         Roth;Tim;tim-{tag}@schule.test;DE-HE;\"Realschule \"\"Am Park\"\"\"\n\
         Meier;Anna;anna-{tag}@schule.test;Bayern;Gymnasium\n\
         Zu;wenig;felder\n"
    );
    let before = accounts(app).await;
    let check = app
        .post(
            "/api/admin/moderators/import",
            json!({ "csv": csv, "dry_run": true }),
            &app.admin,
        )
        .await;
    assert_eq!(check.status, 200, "{:?}", check.body);
    let problems: Vec<(u64, serde_json::Value)> = check.body["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| (l["line"].as_u64().expect("line"), l["problem"].clone()))
        .collect();
    assert_eq!(
        problems,
        [
            (2, serde_json::Value::Null),
            (3, json!("email")),
            (4, serde_json::Value::Null),
            (5, json!("duplicate_in_file")),
            (6, json!("columns")),
        ]
    );
    assert_eq!(check.body["valid"], 2);
    assert_eq!(accounts(app).await, before, "a dry run creates nothing");

    let done = app
        .post(
            "/api/admin/moderators/import",
            json!({ "csv": csv }),
            &app.admin,
        )
        .await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert_eq!(accounts(app).await, before + 2);
    let tim = &done.body["lines"][2];
    assert_eq!(tim["account"]["organisation"], "Realschule \"Am Park\"");
    assert_eq!(tim["account"]["must_change_password"], true);
    let initial = tim["initial_password"].as_str().expect("initial password");
    let session = app
        .login(&format!("tim-{tag}@schule.test"), initial)
        .await
        .expect("the initial password works");
    assert_eq!(
        app.get("/api/me", &session).await.body["must_change_password"],
        true
    );
    let changed = app
        .post(
            "/api/me/password",
            json!({ "current": initial, "new": "ein eigenes Passwort" }),
            &session,
        )
        .await;
    assert_eq!(changed.status, 204, "{:?}", changed.body);
    assert_eq!(
        app.get("/api/me", &session).await.body["must_change_password"],
        false
    );

    // The same list again: every address is taken now, nothing new is created.
    let again = app
        .post(
            "/api/admin/moderators/import",
            json!({ "csv": csv }),
            &app.admin,
        )
        .await;
    assert_eq!(again.body["valid"], 0, "{:?}", again.body);
    assert_eq!(again.body["lines"][0]["problem"], "email_taken");
    assert_eq!(accounts(app).await, before + 2);
}

/// Makes an admin through `by` who sets an own password; returns its id and session.
async fn another_admin(app: &TestApp, by: &Auth) -> (String, Auth) {
    let email = format!("admin-{}@aula.test", crate::harness::unique());
    let made = app
        .post(
            "/api/admin/moderators",
            json!({
                "last_name": "Weitere", "first_name": "Admin", "email": email,
                "federal_state": "DE-BE", "organisation": "Ministerium", "admin": true
            }),
            by,
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let id = made.body["account"]["id"].as_str().expect("id").to_owned();
    let initial = made.body["initial_password"].as_str().expect("password");
    let (auth, _) = app.login_setting_password(&email, initial).await;
    (id, auth)
}

/// The active admins among `ids`, as `by` sees them.
async fn active_admins(app: &TestApp, by: &Auth, ids: &[&str]) -> Vec<String> {
    let list = app.get("/api/admin/moderators", by).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    list.body["moderators"]
        .as_array()
        .expect("moderators")
        .iter()
        .filter(|m| m["role"] == "admin" && m["status"] == "active")
        .filter_map(|m| m["id"].as_str())
        .filter(|id| ids.contains(id))
        .map(str::to_owned)
        .collect()
}

/// Two admins, the only active ones, restrict or erase each other at the same instant,
/// round after round: one of them always stays an active admin (embedded store only: the
/// shared DynamoDB table holds other tests' admins; the store's check-and-write itself is
/// proven on both stores by the conformance suite).
pub async fn two_admins_removing_each_other_at_once_always_leave_one_active(app: &TestApp) {
    let mut x = (my_id(app, &app.admin).await, app.admin.clone());
    let mut y = another_admin(app, &x.1).await;
    for round in 0..12 {
        let action = if round % 2 == 0 { "restrict" } else { "erase" };
        let reason = json!({ "reason": "Test: gleichzeitige Sperre" });
        let (on_y, on_x) = (
            format!("/api/admin/moderators/{}/{action}", y.0),
            format!("/api/admin/moderators/{}/{action}", x.0),
        );
        let (a, b) = tokio::join!(
            app.post(&on_y, reason.clone(), &x.1),
            app.post(&on_x, reason.clone(), &y.1),
        );
        let done = [&a, &b]
            .iter()
            .filter(|r| r.status == 200 || r.status == 204)
            .count();
        assert_eq!(
            done, 1,
            "round {round} ({action}): exactly one succeeds: {} {:?} / {} {:?}",
            a.status, a.body, b.status, b.body
        );
        let ids = [x.0.clone(), y.0.clone()];
        let survivor = if a.status == 200 || a.status == 204 {
            x
        } else {
            y
        };
        let active = active_admins(app, &survivor.1, &[&ids[0], &ids[1]]).await;
        assert_eq!(active, std::slice::from_ref(&survivor.0), "round {round}");
        let next = another_admin(app, &survivor.1).await;
        (x, y) = (survivor, next);
    }
}

/// A password somebody handed over (here the admin's initial one) opens only the password
/// change, the account's own data and the logout: every other call is refused with a code
/// the page understands, until the password is changed. Then the session goes on, and
/// other sessions that still knew only the handed-over password are logged out.
pub async fn a_handed_over_password_opens_nothing_but_the_password_change(app: &TestApp) {
    let email = format!("lehrkraft-{}@schule.example.de", crate::harness::unique());
    let made = app
        .post(
            "/api/admin/moderators",
            json!({
                "last_name": "Neu", "first_name": "Nina", "email": email,
                "federal_state": "DE-NW", "organisation": "Gesamtschule Nord"
            }),
            &app.admin,
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let initial = made.body["initial_password"].as_str().expect("password");
    let session = app
        .login(&email, initial)
        .await
        .expect("the initial password works");
    let elsewhere = app.login(&email, initial).await.expect("a second browser");

    let me = app.get("/api/me", &session).await;
    assert_eq!(
        (me.status, &me.body["must_change_password"]),
        (200, &json!(true))
    );
    for (method, path) in [("GET", "/api/me/export"), ("GET", "/api/privacy")] {
        let r = app.call(method, path, None, &session).await;
        assert_eq!(r.status, 200, "{method} {path}: {:?}", r.body);
    }
    let room = json!({ "name": "Klasse 5a" });
    for (method, path, body) in [
        ("GET", "/api/rooms", None),
        ("POST", "/api/rooms", Some(room.clone())),
        ("PATCH", "/api/me", Some(json!({ "first_name": "Anna" }))),
        ("POST", "/api/me/restrict", Some(json!({}))),
        ("GET", "/api/admin/moderators", None),
    ] {
        let r = app.call(method, path, body, &session).await;
        assert_eq!(
            (r.status, r.code()),
            (403, "password_change_required"),
            "{method} {path}: {:?}",
            r.body
        );
    }

    let changed = app
        .post(
            "/api/me/password",
            json!({ "current": initial, "new": "mein eigenes Passwort" }),
            &session,
        )
        .await;
    assert_eq!(changed.status, 204, "{:?}", changed.body);
    let rooms = app.get("/api/rooms", &session).await;
    assert_eq!(
        rooms.status, 200,
        "the same session goes on: {:?}",
        rooms.body
    );
    let created = app.post("/api/rooms", room, &session).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(
        app.get("/api/me", &elsewhere).await.status,
        401,
        "the other session is logged out"
    );
    assert_eq!(
        app.login(&email, initial).await.err().map(|r| r.status),
        Some(401)
    );
    let again = app
        .login(&email, "mein eigenes Passwort")
        .await
        .expect("the own password");
    assert_eq!(app.get("/api/rooms", &again).await.status, 200);
}

/// Changing the password logs out every other browser, but never the one it was changed
/// in: requests of that browser arriving while the change is stored (another tab, the
/// page's own next call) all get in. The old order (delete all sessions, then write the
/// current one back) left a moment in which that browser was logged out.
pub async fn requests_arriving_during_a_password_change_in_the_same_browser_all_get_in(
    app: &TestApp,
) {
    let teacher = app.teacher().await;
    let elsewhere = app
        .login(&teacher.email, &teacher.password)
        .await
        .expect("a second browser");
    let mut password = teacher.password.clone();
    let mut refused = Vec::new();
    for round in 0..12 {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (client, url, auth, done) = (
                app.client.clone(),
                format!("{}/api/me", app.base),
                teacher.auth.clone(),
                done.clone(),
            );
            readers.spawn(async move {
                let mut statuses = Vec::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut req = client.get(&url);
                    if let Auth::Cookie(c) = &auth {
                        req = req.header("cookie", c);
                    }
                    let r = req.send().await.expect("the portal answers");
                    statuses.push(r.status().as_u16());
                }
                statuses
            });
        }
        let new = format!("neues-passwort-{round}-{}", crate::harness::unique());
        let changed = app
            .post(
                "/api/me/password",
                json!({ "current": password, "new": new }),
                &teacher.auth,
            )
            .await;
        assert_eq!(changed.status, 204, "{:?}", changed.body);
        password = new;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        while let Some(statuses) = readers.join_next().await {
            refused.extend(
                statuses
                    .expect("the reader ran")
                    .into_iter()
                    .filter(|s| *s != 200)
                    .map(|s| (round, s)),
            );
        }
    }
    assert_eq!(
        refused,
        Vec::<(i32, u16)>::new(),
        "(round, status) of the same browser's requests refused during a password change"
    );
    assert_eq!(
        app.get("/api/me", &teacher.auth).await.status,
        200,
        "the browser that changed the password stays logged in"
    );
    assert_eq!(
        app.get("/api/me", &elsewhere).await.status,
        401,
        "another browser with the old password is logged out"
    );
}
