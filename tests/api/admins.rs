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
    let second = app.login(&email, password).await.expect("second admin");
    let restricted = app.post("/api/me/restrict", json!({}), &second).await;
    assert_eq!(restricted.status, 204, "{:?}", restricted.body);
    let again = app.post("/api/me/restrict", json!({}), &app.admin).await;
    assert_eq!(
        again.status, 409,
        "the other admin is restricted: this one is the last"
    );
}
