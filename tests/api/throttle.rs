//! Login throttling as people meet it: the teacher on their own device, an attacker who
//! knows the teacher's email, a school of hundreds behind one NAT address, a credential-
//! stuffing bot. Each "address" is a real loopback source address (127.0.0.x), so the portal
//! sees them as the TCP peers they are.

use crate::harness::{Resp, TestApp, unique};
use aula_api::crypto::Argon2Passwords;
use aula_domain::ids::IdGenerator;
use aula_domain::services::{Password, PasswordHasher};
use aula_domain::{
    AccountStatus, Email, FederalState, Moderator, Organisation, PersonName, Role, Span,
};
use aula_store::RandomIds;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};

/// A browser at one address, with the known-device cookie it was given (if any).
struct Browser {
    client: reqwest::Client,
    device: Option<String>,
}

impl Browser {
    fn at(last_octet: u8) -> Self {
        let client = reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
            .build()
            .expect("client");
        Browser {
            client,
            device: None,
        }
    }

    /// One login; keeps the known-device cookie a success sets.
    async fn login(&mut self, app: &TestApp, email: &str, password: &str) -> Resp {
        let mut req = self
            .client
            .post(format!("{}/api/auth/login", app.base))
            .json(&json!({ "email": email, "password": password }));
        if let Some(d) = &self.device {
            req = req.header("cookie", d.as_str());
        }
        let r = req.send().await.expect("the portal answers");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let resp = Resp {
            status,
            body: serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
            headers,
        };
        if status == 200
            && let Some(c) = resp.cookie("aula_device")
        {
            self.device = Some(c);
        }
        resp
    }
}

fn retry_after(r: &Resp) -> u64 {
    r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds")
}

/// Moves the test clock to just after the start of the next UTC day, so that an attack
/// simulated over hours stays inside one throttle window.
fn start_of_a_day(app: &TestApp) {
    let day = Span::days(1).millis();
    let now = app.clock_now().millis();
    app.clock
        .advance(Span::seconds((day - now.rem_euclid(day)) / 1000 + 60));
}

/// The attacker keeps trying wrong passwords, waiting exactly as long as told; returns the
/// Retry-After values they were given.
async fn attack(app: &TestApp, attacker: &mut Browser, email: &str, failures: usize) -> Vec<u64> {
    let mut told = Vec::new();
    let mut failed = 0;
    while failed < failures {
        let r = attacker.login(app, email, "rate-mal-wieder").await;
        match r.status {
            401 => {
                assert_eq!(r.code(), "bad_credentials");
                failed += 1;
            }
            429 => {
                assert_eq!(r.code(), "rate_limited");
                let secs = retry_after(&r);
                told.push(secs);
                app.clock
                    .advance(Span::seconds(i64::try_from(secs).expect("small")));
            }
            other => panic!("unexpected answer {other}: {:?}", r.body),
        }
    }
    told
}

pub async fn an_attacker_with_the_teachers_email_cannot_keep_them_from_logging_in_on_their_device(
    app: &TestApp,
) {
    // The teacher first: the jump to the next day can outlast the admin's 12-hour session.
    let t = app.teacher().await;
    start_of_a_day(app);
    let mut laptop = Browser::at(2);
    assert_eq!(laptop.login(app, &t.email, &t.password).await.status, 200);
    let cookie = laptop.device.clone().expect("a known-device cookie");

    let mut attacker = Browser::at(66);
    attack(app, &mut attacker, &t.email, 50).await;
    // Right after the attacker's 50th failure, the teacher's laptop gets in at once.
    let r = laptop.login(app, &t.email, &t.password).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Even from the attacker's own address (say, the school's NAT), the device gets in.
    let mut same_nat = Browser::at(66);
    same_nat.device = Some(cookie);
    assert_eq!(same_nat.login(app, &t.email, &t.password).await.status, 200);
    // A new device is slowed by the attack, never locked out: it waits at most a minute or so.
    let mut new_phone = Browser::at(3);
    let first = new_phone.login(app, &t.email, &t.password).await;
    if first.status == 429 {
        let secs = retry_after(&first);
        assert!(
            secs <= 64,
            "a stranger's attack holds a new device up {secs} s"
        );
        app.clock
            .advance(Span::seconds(i64::try_from(secs).expect("small")));
        assert_eq!(
            new_phone.login(app, &t.email, &t.password).await.status,
            200
        );
    } else {
        assert_eq!(first.status, 200, "{:?}", first.body);
    }
}

pub async fn an_attackers_own_attempts_wait_longer_and_longer(app: &TestApp) {
    let t = app.teacher().await;
    start_of_a_day(app);
    let mut attacker = Browser::at(67);
    let told = attack(app, &mut attacker, &t.email, 20).await;
    assert!(
        told.len() >= 15,
        "waits after the first few failures: {told:?}"
    );
    assert!(
        told.windows(2).all(|w| w[0] <= w[1]),
        "never shorter: {told:?}"
    );
    assert!(
        *told.last().expect("told") >= 8 * told[0],
        "the waits grow: {told:?}"
    );
    // A forged device cookie is no way around it.
    attacker.device = Some("aula_device=AAAAAAAAAAAAAAAAAAAAAA.forged".into());
    assert_eq!(
        attacker
            .login(app, &t.email, "rate-mal-wieder")
            .await
            .status,
        429
    );
    // Unknown emails are throttled exactly like wrong passwords: nothing tells them apart.
    let ghost = format!("niemand-{}@schule.example.de", unique());
    let told_ghost = attack(app, &mut Browser::at(68), &ghost, 20).await;
    assert_eq!(told_ghost.len(), told.len());
}

pub async fn the_known_device_cookie_is_http_only_secure_strict_and_holds_no_email(app: &TestApp) {
    let t = app.teacher().await;
    let r = Browser::at(4).login(app, &t.email, &t.password).await;
    let set = r.set_cookie_header("aula_device").expect("set");
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api/auth",
        "Max-Age=",
    ] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    let value = r.cookie("aula_device").expect("value");
    let local = t.email.split('@').next().expect("local part");
    assert!(
        !value.contains(local) && !value.contains("schule"),
        "{value}"
    );
    assert!(
        !app.stored_anywhere(value.trim_start_matches("aula_device="))
            .await,
        "nothing about a device is stored"
    );
    // The privacy page declares it, with the lifetime the browser is told.
    let notice = app.get("/api/privacy", &crate::harness::Auth::None).await;
    let items = notice.body["browser_storage"]
        .as_array()
        .expect("browser storage");
    let device = items
        .iter()
        .find(|i| i["name"] == "aula_device")
        .expect("the known-device cookie is declared");
    assert_eq!(device["storage"], "cookie");
    let max_age = set
        .split(';')
        .find_map(|a| a.trim().strip_prefix("Max-Age="))
        .expect("max-age");
    assert_eq!(device["lifetime_seconds"].to_string(), max_age);
    for cookie in ["aula_session", "aula_device"] {
        assert!(items.iter().any(|i| i["name"] == cookie), "{cookie}");
    }
}

pub async fn two_hundred_teachers_behind_one_school_address_all_get_in_despite_typos(
    app: &TestApp,
) {
    // Accounts made directly with one precomputed hash: 200 Argon2 hashes would only slow
    // the test down, the logins below each verify one.
    let password = Password::new_password("schul-passwort-2026").expect("password");
    let hash = Argon2Passwords.hash(&password).expect("hash");
    let school = unique();
    let emails: Vec<String> = (0..200)
        .map(|i| format!("lk{i}-{school}@schule.example.de"))
        .collect();
    // Four groups at a time, as the morning rush would have it (and faster on moto).
    let group = |part: usize| {
        let (emails, hash, password) = (&emails, &hash, &password);
        async move {
            let mut nat = Browser::at(77);
            for (i, email) in emails.iter().enumerate().skip(part * 50).take(50) {
                let m = Moderator {
                    id: RandomIds.moderator_id(),
                    last_name: PersonName::parse("Lehrkraft").expect("name"),
                    first_name: PersonName::parse("Eine").expect("name"),
                    email: Email::parse(email).expect("email"),
                    federal_state: FederalState::Berlin,
                    organisation: Organisation::parse("Grundschule am See").expect("organisation"),
                    role: Role::Moderator,
                    status: AccountStatus::Active,
                    password_hash: hash.clone(),
                    must_change_password: false,
                    created_at: app.clock_now(),
                };
                app.store.create_moderator(&m).await.expect("account");
                nat.device = None; // each teacher on their own machine, here for the first time
                // One in four mistypes first; one in twenty twice.
                let typos = usize::from(i % 4 == 0) + usize::from(i % 20 == 0);
                for _ in 0..typos {
                    let r = nat.login(app, email, "schul-passwort-2025").await;
                    assert_eq!(
                        (r.status, r.code()),
                        (401, "bad_credentials"),
                        "typo of {i}"
                    );
                }
                let r = nat.login(app, email, password.expose()).await;
                assert_eq!(r.status, 200, "teacher {i}: {:?}", r.body);
            }
        }
    };
    tokio::join!(group(0), group(1), group(2), group(3));
}

pub async fn a_credential_stuffing_flood_from_one_address_is_stopped(app: &TestApp) {
    let t = app.teacher().await;
    let mut laptop = Browser::at(5);
    assert_eq!(laptop.login(app, &t.email, &t.password).await.status, 200);

    let mut bot = Browser::at(88);
    let mut stopped = None;
    for i in 0..400 {
        let r = bot
            .login(
                app,
                &format!("opfer{i}-{}@example.org", unique()),
                "passwort123",
            )
            .await;
        if r.status == 429 {
            stopped = Some((i, retry_after(&r)));
            break;
        }
        assert_eq!(r.status, 401);
    }
    let (at, secs) = stopped.expect("the flood is stopped");
    assert_eq!(at, 300, "stopped after 300 failures from the address");
    assert!((1..=900).contains(&secs), "Retry-After {secs}");
    // Real accounts from that address wait too, unless their browser is a known device.
    assert_eq!(bot.login(app, &t.email, &t.password).await.status, 429);
    laptop.client = Browser::at(88).client;
    assert_eq!(laptop.login(app, &t.email, &t.password).await.status, 200);
    // Other addresses are untouched, and the address is free again after the window.
    assert_eq!(
        Browser::at(6)
            .login(app, &t.email, &t.password)
            .await
            .status,
        200
    );
    app.clock
        .advance(Span::seconds(i64::try_from(secs).expect("small")));
    assert_eq!(bot.login(app, &t.email, &t.password).await.status, 200);
}

/// Wrong logins from one address sent at once, each to another email, twice as many as the
/// address may fail (`limit`, set low for this portal): exactly `limit` are checked and
/// refused as wrong, the rest wait for the window's end. Before the count and the check were
/// one conditional write, all of them passed a check that read 0.
pub async fn a_parallel_flood_from_one_address_stops_exactly_at_the_limit(
    app: &TestApp,
    limit: usize,
) {
    let bot = Browser::at(89);
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..2 * limit {
        let client = bot.client.clone();
        let url = format!("{}/api/auth/login", app.base);
        let email = format!("flut{i}-{}@example.org", unique());
        flood.spawn(async move {
            client
                .post(url)
                .json(&json!({ "email": email, "password": "passwort123" }))
                .send()
                .await
                .expect("answered")
                .status()
                .as_u16()
        });
    }
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(status) = flood.join_next().await {
        *answers.entry(status.expect("ran")).or_default() += 1;
    }
    assert_eq!(
        answers,
        [(401, limit), (429, limit)].into_iter().collect(),
        "checked up to the limit, not one more"
    );
}
