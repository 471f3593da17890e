//! What teachers, guests and admins do, end to end through the HTTP API.

use crate::harness::{Auth, TestApp, unique};
use serde_json::json;

pub async fn an_admin_provisions_a_teacher_who_logs_in_and_out(app: &TestApp) {
    let t = app.teacher().await;
    let me = app.get("/api/me", &t.auth).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["email"], t.email);
    assert_eq!(me.body["federal_state"], "DE-BY");
    assert!(
        me.body.get("password_hash").is_none(),
        "the hash never leaves the server"
    );

    let out = app.post("/api/auth/logout", json!({}), &t.auth).await;
    assert_eq!(out.status, 204);
    assert!(
        out.set_cookie_header("aula_session")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    assert_eq!(
        app.get("/api/me", &t.auth).await.status,
        401,
        "the old cookie is dead"
    );
    assert!(
        app.login(&t.email, &t.password).await.is_ok(),
        "logging in again works"
    );
}

pub async fn a_teacher_holds_a_lesson_and_a_guest_chats_without_a_lobby(app: &TestApp) {
    let t = app.teacher().await;
    let (room, token) = app.room(&t, false).await;
    let rooms = app.get("/api/rooms", &t.auth).await;
    assert_eq!(rooms.body["rooms"][0]["id"], room.as_str());

    let lena = app.guest(&token, "Lena").await;
    let status = app.get("/api/guest", &lena.auth).await;
    assert_eq!(status.body["admission"], "admitted");

    let hello = app.say(&room, &lena.auth, "Guten Morgen!", None).await;
    assert_eq!(hello.status, 201, "{:?}", hello.body);
    app.clock.advance(aula_domain::Span::seconds(1));
    let reply = app.say(&room, &t.auth, "Guten Morgen, Lena", None).await;
    assert_eq!(reply.status, 201);

    let history = app
        .get(&format!("/api/rooms/{room}/chat"), &lena.auth)
        .await;
    let bodies: Vec<_> = history.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(bodies, ["Guten Morgen, Lena", "Guten Morgen!"]);

    let people = app
        .get(&format!("/api/rooms/{room}/participants"), &lena.auth)
        .await;
    let names: Vec<_> = people.body["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p["display_name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["Anna Schmidt", "Lena"]);

    let grant = app
        .post(&format!("/api/rooms/{room}/join"), json!({}), &lena.auth)
        .await;
    assert_eq!(grant.status, 200);
    assert_eq!(grant.body["role"], "guest");
    let claims = app
        .media_node()
        .verify(
            grant.body["grant"].as_str().expect("grant"),
            room.parse().expect("room id"),
            app.clock_now(),
        )
        .expect("the media node accepts the grant");
    assert_eq!(claims.name, "Lena");

    // The next day the chat is still there.
    app.clock.advance(aula_domain::Span::days(1));
    let t_again = app.login(&t.email, &t.password).await.expect("login");
    let history = app.get(&format!("/api/rooms/{room}/chat"), &t_again).await;
    assert_eq!(history.body["messages"].as_array().map(Vec::len), Some(2));
}

pub async fn with_the_lobby_on_a_guest_waits_until_admitted_and_a_denied_guest_stays_out(
    app: &TestApp,
) {
    let t = app.teacher().await;
    let (room, token) = app.room(&t, true).await;
    let max = app.guest(&token, "Max").await;
    let mia = app.guest(&token, "Mia").await;
    assert_eq!(
        app.get("/api/guest", &max.auth).await.body["admission"],
        "waiting"
    );
    let waiting = app.say(&room, &max.auth, "Hallo?", None).await;
    assert_eq!((waiting.status, waiting.code()), (403, "in_lobby"));
    let knock = app
        .post(&format!("/api/rooms/{room}/join"), json!({}), &max.auth)
        .await;
    assert_eq!(
        (knock.status, &knock.body["lobby"]),
        (200, &json!(true)),
        "a waiting guest gets a grant that only lets them knock at the node"
    );

    let lobby = app.get(&format!("/api/rooms/{room}/lobby"), &t.auth).await;
    assert_eq!(lobby.body["waiting"].as_array().map(Vec::len), Some(2));
    let admit = app
        .post(
            &format!("/api/rooms/{room}/guests/{}/admit", max.id),
            json!({}),
            &t.auth,
        )
        .await;
    assert_eq!(admit.body["admission"], "admitted");
    assert_eq!(
        app.say(&room, &max.auth, "Da bin ich", None).await.status,
        201
    );

    let deny = app
        .post(
            &format!("/api/rooms/{room}/guests/{}/deny", mia.id),
            json!({}),
            &t.auth,
        )
        .await;
    assert_eq!(deny.body["admission"], "denied");
    let refused = app
        .post(&format!("/api/rooms/{room}/join"), json!({}), &mia.auth)
        .await;
    assert_eq!((refused.status, refused.code()), (403, "denied"));
    // Removing an admitted guest works the same way: their grant is refused from then on.
    app.post(
        &format!("/api/rooms/{room}/guests/{}/deny", max.id),
        json!({}),
        &t.auth,
    )
    .await;
    assert_eq!(
        app.say(&room, &max.auth, "noch da?", None).await.code(),
        "denied"
    );
}

pub async fn a_retried_chat_post_is_stored_once(app: &TestApp) {
    let t = app.teacher().await;
    let (room, _) = app.room(&t, false).await;
    let body =
        json!({ "body": "Hausaufgabe: S. 42", "idempotency_key": format!("retry-{}", unique()) });
    let first = app
        .post(&format!("/api/rooms/{room}/chat"), body.clone(), &t.auth)
        .await;
    let retry = app
        .post(&format!("/api/rooms/{room}/chat"), body, &t.auth)
        .await;
    assert_eq!((first.status, retry.status), (201, 200));
    assert_eq!(first.body["id"], retry.body["id"]);
    let history = app.get(&format!("/api/rooms/{room}/chat"), &t.auth).await;
    assert_eq!(history.body["messages"].as_array().map(Vec::len), Some(1));
}

pub async fn private_messages_reach_only_the_two_parties(app: &TestApp) {
    let t = app.teacher().await;
    let (room, token) = app.room(&t, false).await;
    let a = app.guest(&token, "Ali").await;
    let b = app.guest(&token, "Bea").await;
    let c = app.guest(&token, "Cem").await;
    let sent = app
        .say(&room, &a.auth, "nur für Bea", Some(&b.participant))
        .await;
    assert_eq!(sent.status, 201, "{:?}", sent.body);

    let path = |with: &str| format!("/api/rooms/{room}/chat?with={with}");
    let for_b = app.get(&path(&a.participant), &b.auth).await;
    assert_eq!(for_b.body["messages"][0]["body"], "nur für Bea");
    let for_a = app.get(&path(&b.participant), &a.auth).await;
    assert_eq!(for_a.body["messages"][0]["body"], "nur für Bea");
    // Cem sees nothing: his conversation with either is empty, the room chat too.
    for with in [&a.participant, &b.participant] {
        let r = app.get(&path(with), &c.auth).await;
        assert_eq!(r.body["messages"].as_array().map(Vec::len), Some(0));
    }
    let room_chat = app.get(&format!("/api/rooms/{room}/chat"), &c.auth).await;
    assert_eq!(room_chat.body["messages"].as_array().map(Vec::len), Some(0));
    // Nobody can write to someone outside the room.
    let outsider = app
        .say(
            &room,
            &a.auth,
            "hallo?",
            Some(&format!("g:{}", uuid_like())),
        )
        .await;
    assert_eq!(outsider.status, 404);
}

fn uuid_like() -> String {
    let u = unique();
    format!("{}-0000-4000-8000-{}0000", &u[..8], &u[8..16])
}

pub async fn chat_history_pages_through_older_messages(app: &TestApp) {
    let t = app.teacher().await;
    let (room, _) = app.room(&t, false).await;
    for i in 0..7 {
        assert_eq!(
            app.say(&room, &t.auth, &format!("Nachricht {i}"), None)
                .await
                .status,
            201
        );
        app.clock.advance(aula_domain::Span::seconds(1));
    }
    let mut seen = Vec::new();
    let mut path = format!("/api/rooms/{room}/chat?limit=3");
    loop {
        let page = app.get(&path, &t.auth).await;
        assert_eq!(page.status, 200);
        for m in page.body["messages"].as_array().expect("messages") {
            seen.push(m["body"].as_str().unwrap_or_default().to_owned());
        }
        match page.body["older"].as_str() {
            Some(cursor) => path = format!("/api/rooms/{room}/chat?limit=3&before={cursor}"),
            None => break,
        }
    }
    let expected: Vec<_> = (0..7).rev().map(|i| format!("Nachricht {i}")).collect();
    assert_eq!(seen, expected);
}

pub async fn a_teacher_exports_corrects_restricts_and_erases_their_data(app: &TestApp) {
    let t = app.teacher().await;
    let (room, token) = app.room(&t, false).await;
    let g = app.guest(&token, "Lena").await;
    app.say(&room, &g.auth, "Frage zu Aufgabe 3", None).await;
    app.say(&room, &t.auth, "Antwort folgt", Some(&g.participant))
        .await;

    let export = app.get("/api/me/export", &t.auth).await;
    assert_eq!(export.status, 200);
    assert!(
        export.headers["content-disposition"]
            .to_str()
            .unwrap_or("")
            .contains("attachment")
    );
    assert_eq!(export.body["account"]["email"], t.email);
    assert_eq!(export.body["rooms"][0]["guests"][0]["nickname"], "Lena");
    assert_eq!(
        export.body["rooms"][0]["messages"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(
        !export.body.to_string().contains("argon2"),
        "no password hash in the export"
    );

    let new_email = format!("korrigiert-{}@schule.example.de", unique());
    let corrected = app
        .call(
            "PATCH",
            "/api/me",
            Some(json!({ "email": new_email, "organisation": "Realschule Nord" })),
            &t.auth,
        )
        .await;
    assert_eq!(corrected.status, 200);
    assert_eq!(corrected.body["organisation"], "Realschule Nord");
    assert!(app.login(&new_email, &t.password).await.is_ok());

    // Restriction: logged out at once, and login is refused.
    let restricted = app.post("/api/me/restrict", json!({}), &t.auth).await;
    assert_eq!(restricted.status, 204);
    assert_eq!(app.get("/api/me", &t.auth).await.status, 401);
    let refused = app
        .login(&new_email, &t.password)
        .await
        .expect_err("restricted");
    assert_eq!(
        (refused.status, refused.code()),
        (403, "account_restricted")
    );

    // An admin lifts it; the teacher erases everything.
    let lifted = app
        .post(
            &format!("/api/admin/moderators/{}/unrestrict", t.id),
            json!({ "reason": "Antrag der Lehrkraft" }),
            &app.admin,
        )
        .await;
    assert_eq!(lifted.status, 200);
    let auth = app
        .login(&new_email, &t.password)
        .await
        .expect("login again");
    let wrong = app
        .call(
            "DELETE",
            "/api/me",
            Some(json!({ "password": "falsch-falsch" })),
            &auth,
        )
        .await;
    assert_eq!(wrong.status, 401, "erasure needs the password");
    let erased = app
        .call(
            "DELETE",
            "/api/me",
            Some(json!({ "password": t.password })),
            &auth,
        )
        .await;
    assert_eq!(erased.status, 204);

    for needle in [new_email.as_str(), t.email.as_str()] {
        assert!(
            !app.stored_anywhere(needle).await,
            "{needle} is still stored somewhere after erasure"
        );
    }
    for id in [t.id.as_str(), room.as_str(), g.id.as_str()] {
        assert!(
            !app.stored_outside_logs(id).await,
            "{id} is still stored after erasure"
        );
    }
    assert!(app.login(&new_email, &t.password).await.is_err());
}

pub async fn admins_export_and_erase_rooms_and_every_action_is_audited(app: &TestApp) {
    let t = app.teacher().await;
    let (room, token) = app.room(&t, false).await;
    let g = app.guest(&token, "Lena").await;
    app.say(&room, &g.auth, "Hallo", None).await;
    app.clock.advance(aula_domain::Span::seconds(1));
    let start = app.clock_now().millis();

    let no_reason = app
        .post(
            &format!("/api/admin/rooms/{room}/export"),
            json!({ "reason": "" }),
            &app.admin,
        )
        .await;
    assert_eq!(no_reason.status, 400, "an admin must say why");
    let export = app
        .post(
            &format!("/api/admin/rooms/{room}/export"),
            json!({ "reason": "Auskunft nach Art. 15, Az. 7" }),
            &app.admin,
        )
        .await;
    assert_eq!(export.status, 200);
    assert_eq!(export.body["guests"][0]["nickname"], "Lena");
    app.clock.advance(aula_domain::Span::seconds(1));
    let disclosure = app
        .post(
            "/api/admin/disclosure",
            json!({ "moderator": t.id, "reason": "Ersuchen StA, Az. 12 Js 345/26" }),
            &app.admin,
        )
        .await;
    assert_eq!(disclosure.status, 200);
    assert_eq!(disclosure.body["moderator"]["account"]["email"], t.email);
    app.clock.advance(aula_domain::Span::seconds(1));
    let erase = app
        .post(
            &format!("/api/admin/rooms/{room}/erase"),
            json!({ "reason": "Löschantrag der Eltern" }),
            &app.admin,
        )
        .await;
    assert_eq!(erase.status, 204);
    assert!(
        !app.stored_outside_logs(&g.id).await,
        "the guest's nickname record is gone with the room"
    );

    let until = app.clock_now().millis() + 1;
    let audit = app
        .get(
            &format!("/api/admin/audit?from={start}&until={until}"),
            &app.admin,
        )
        .await;
    let actions: Vec<_> = audit.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| {
            e["target"]
                .as_str()
                .is_some_and(|x| x.contains(&room) || x.contains(&t.id))
        })
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            (
                "export_room".to_owned(),
                "Auskunft nach Art. 15, Az. 7".to_owned()
            ),
            (
                "authority_disclosure".to_owned(),
                "Ersuchen StA, Az. 12 Js 345/26".to_owned()
            ),
            ("erase_room".to_owned(), "Löschantrag der Eltern".to_owned()),
        ]
    );
    // There is no way to delete the audit log.
    let delete = app
        .call("DELETE", "/api/admin/audit", None, &app.admin)
        .await;
    assert!(
        delete.status == 404 || delete.status == 405,
        "{}",
        delete.status
    );
    let _ = Auth::None;
}

pub async fn the_portal_serves_an_openapi_document_of_every_endpoint(app: &TestApp) {
    let doc = app.get("/api/openapi.json", &Auth::None).await;
    assert_eq!(doc.status, 200);
    assert!(
        doc.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let operations = [
        ("post", "/api/auth/login"),
        ("post", "/api/auth/logout"),
        ("post", "/api/auth/register"),
        ("get", "/api/me"),
        ("patch", "/api/me"),
        ("delete", "/api/me"),
        ("post", "/api/me/password"),
        ("get", "/api/me/export"),
        ("post", "/api/me/restrict"),
        ("post", "/api/join/{token}"),
        ("get", "/api/guest"),
        ("get", "/api/privacy"),
        ("get", "/api/rooms"),
        ("post", "/api/rooms"),
        ("get", "/api/rooms/{room}"),
        ("patch", "/api/rooms/{room}"),
        ("delete", "/api/rooms/{room}"),
        ("post", "/api/rooms/{room}/invite"),
        ("get", "/api/rooms/{room}/meetings"),
        ("get", "/api/rooms/{room}/participants"),
        ("get", "/api/rooms/{room}/lobby"),
        ("post", "/api/rooms/{room}/guests/{guest}/admit"),
        ("post", "/api/rooms/{room}/guests/{guest}/deny"),
        ("post", "/api/rooms/{room}/join"),
        ("get", "/api/rooms/{room}/chat"),
        ("post", "/api/rooms/{room}/chat"),
        ("delete", "/api/rooms/{room}/chat/{message}"),
        ("get", "/api/schedule"),
        ("post", "/api/rooms/{room}/schedule"),
        ("delete", "/api/rooms/{room}/schedule/{schedule}"),
        ("get", "/api/admin/moderators"),
        ("post", "/api/admin/moderators"),
        ("post", "/api/admin/moderators/import"),
        ("post", "/api/admin/moderators/{id}/export"),
        ("post", "/api/admin/moderators/{id}/restrict"),
        ("post", "/api/admin/moderators/{id}/unrestrict"),
        ("post", "/api/admin/moderators/{id}/erase"),
        ("post", "/api/admin/rooms/{room}/export"),
        ("post", "/api/admin/rooms/{room}/erase"),
        ("post", "/api/admin/disclosure"),
        ("get", "/api/admin/audit"),
        ("get", "/api/admin/forecast"),
    ];
    let paths = &doc.body["paths"];
    let documented: usize = paths
        .as_object()
        .map(|p| {
            p.values()
                .map(|ops| ops.as_object().map_or(0, |o| o.len()))
                .sum()
        })
        .unwrap_or(0);
    for (method, path) in operations {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        for status in ["400", "401", "403", "404", "429", "503"] {
            assert!(
                op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("/ErrorBody")),
                "{method} {path} does not document {status} in the error shape"
            );
        }
        for p in op["parameters"].as_array().into_iter().flatten() {
            let schema = &p["schema"];
            assert!(
                p["in"] != "path" || (p["required"] == true && schema["pattern"].is_string()),
                "{method} {path}: the path parameter {} has no required format",
                p["name"]
            );
        }
    }
    assert_eq!(
        documented,
        operations.len(),
        "every documented operation is one the portal serves"
    );
    assert!(doc.body["components"]["schemas"]["ErrorBody"].is_object());

    // Every string a client sends has its limits: a length, a pattern or a list of values.
    let schemas = &doc.body["components"]["schemas"];
    for (name, schema) in schemas.as_object().into_iter().flatten() {
        let properties = schema["properties"].as_object().into_iter().flatten();
        for (field, s) in properties.filter(|(_, s)| s["type"] == "string") {
            if name.ends_with("In") || name == "RoomPatch" {
                assert!(
                    s["maxLength"].is_u64() || s["pattern"].is_string() || s["enum"].is_array(),
                    "{name}.{field} says nothing of its limits"
                );
            }
        }
    }
    let nickname = &schemas["JoinIn"]["properties"]["nickname"];
    assert_eq!(
        nickname["maxLength"], 32,
        "the nickname's limit is documented"
    );
    let limit = doc.body["paths"]["/api/rooms/{room}/chat"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"))
        .map(|p| p["schema"].clone());
    assert_eq!(
        limit.map(|l| (l["minimum"].clone(), l["maximum"].clone())),
        Some((json!(1), json!(100))),
        "a chat page's size is documented"
    );
}

pub async fn a_teacher_registers_where_the_deployment_allows_it(app: &TestApp) {
    let email = format!("selbst-{}@schule.example.de", unique());
    let profile = json!({
        "last_name": "Yilmaz", "first_name": "Deniz", "email": email,
        "federal_state": "Nordrhein-Westfalen", "organisation": "Gesamtschule Ost",
        "password": "kurz"
    });
    let short = app
        .post("/api/auth/register", profile.clone(), &Auth::None)
        .await;
    assert_eq!(
        (short.status, short.code()),
        (400, "invalid_input"),
        "a short password is refused"
    );
    let mut profile = profile;
    profile["password"] = json!("lang-genug-und-geheim");
    let made = app
        .post("/api/auth/register", profile.clone(), &Auth::None)
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.body["account"]["federal_state"], "DE-NW");
    assert_eq!(made.body["account"]["role"], "moderator");
    let again = app.post("/api/auth/register", profile, &Auth::None).await;
    assert_eq!(
        (again.status, again.code()),
        (409, "conflict"),
        "one account per email"
    );
    assert!(app.login(&email, "lang-genug-und-geheim").await.is_ok());
}

pub async fn the_privacy_page_names_every_stored_record_its_retention_and_the_contacts(
    app: &TestApp,
) {
    let page = app.get("/api/privacy", &Auth::None).await;
    assert_eq!(page.status, 200, "anyone may read the privacy notice");
    assert_eq!(
        page.body["contacts"]["data_protection_officer"],
        "dsb@ministerium.example"
    );
    assert!(
        page.body["contacts"]["supervisory_authority"]
            .as_str()
            .is_some_and(|a| a.contains("Datenschutz"))
    );
    assert_eq!(
        page.body["location"], "Testrechner",
        "the page says where this deployment processes data"
    );
    assert_eq!(
        page.body["backup_days"], 7,
        "and how long deleted data can still be restored from backups"
    );
    let records = page.body["records"].as_array().expect("records");
    let kinds: Vec<_> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    for kind in aula_domain::inventory::RecordKind::ALL {
        assert!(
            kinds.contains(&kind.name()),
            "{} is missing from the privacy page",
            kind.name()
        );
    }
    let find = |kind: &str| records.iter().find(|r| r["kind"] == kind).expect("listed");
    assert_eq!(find("chat_message")["retention_seconds"], 183 * 86_400);
    assert_eq!(find("access_log")["retention_seconds"], 30 * 86_400);
    let guest_fields: Vec<_> = find("guest")["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(guest_fields.contains(&"nickname") && !guest_fields.contains(&"email"));
    for record in records {
        for purpose in record["purposes"].as_array().expect("purposes") {
            assert!(
                [
                    "operating_the_service",
                    "abuse_detection_and_attack_defence",
                    "fault_analysis",
                    "disclosure_to_authorities_on_legal_request"
                ]
                .contains(&purpose.as_str().unwrap_or_default()),
                "{purpose} is not a purpose the notice allows"
            );
        }
    }
}

/// The fuzz run's positive-data check found one end of the access-log range refused although
/// the document let each be optional: one end alone now means "up to now" or "the span
/// before", and optional fields may be `null` as the document says.
pub async fn an_authority_disclosure_takes_an_access_log_range_open_at_one_end(app: &TestApp) {
    let t = app.teacher().await;
    app.get("/api/rooms", &t.auth).await;
    let now = app.clock_now().millis();
    app.clock.advance(aula_domain::Span::seconds(1));
    let since = app
        .post(
            "/api/admin/disclosure",
            json!({ "access_log_from": now - 60_000, "reason": "Ersuchen StA, Az. 1 Js 2/26" }),
            &app.admin,
        )
        .await;
    assert_eq!(since.status, 200, "{:?}", since.body);
    let logged = |body: &serde_json::Value| {
        body["access_log"]
            .as_array()
            .is_some_and(|entries| entries.iter().any(|e| e["url"] == "/api/rooms"))
    };
    assert!(
        logged(&since.body),
        "the teacher's request is disclosed: {:?}",
        since.body
    );
    let before = app
        .post(
            "/api/admin/disclosure",
            json!({ "access_log_until": now + 60_000, "moderator": null,
                    "reason": "Ersuchen StA, Az. 1 Js 2/26" }),
            &app.admin,
        )
        .await;
    assert_eq!(before.status, 200, "{:?}", before.body);
    assert!(logged(&before.body), "the span before `until` holds it too");
    let patch = app
        .call("PATCH", "/api/me", Some(json!({ "email": null })), &t.auth)
        .await;
    assert_eq!(
        (patch.status, &patch.body["email"]),
        (200, &json!(t.email)),
        "null changes nothing"
    );
}
