//! Starts the portal's router on a loopback port with its own clock and keys, and talks
//! to it like a browser or an API client would.

use async_trait::async_trait;
use aula::portal::{self, Parts};
use aula_api::crypto::{Argon2Passwords, random_bytes};
use aula_api::{ApiConfig, ApiState};
use aula_domain::ids::IdGenerator;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::{Store, StoreError};
use aula_domain::services::throttle::ThrottlePolicy;
use aula_domain::services::{LoginPolicy, Password, PasswordHasher};
use aula_domain::{
    AccountStatus, Clock, Email, FederalState, Moderator, Organisation, PersonName, Role, Span,
    Timestamp,
};
use aula_store::RandomIds;
use aula_store::{AwsStore, Introspect, SqliteStore, StoredFields};
use aula_tokens::JoinVerifier;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

pub enum Backend {
    Embedded,
    Dynamodb,
}

/// A clock the test moves.
pub struct TestClock(AtomicI64);

impl TestClock {
    pub fn advance(&self, by: Span) {
        self.0.fetch_add(by.millis(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// A store the tests can also scan.
pub trait ScannableStore: Store + Introspect {}
impl<T: Store + Introspect> ScannableStore for T {}

struct Scan(Arc<dyn ScannableStore>);

#[async_trait]
impl Introspect for Scan {
    async fn stored_fields(&self) -> Result<StoredFields, StoreError> {
        self.0.stored_fields().await
    }
    async fn contains_text(&self, needle: &str, skip: &[RecordKind]) -> Result<bool, StoreError> {
        self.0.contains_text(needle, skip).await
    }
}

/// How a request identifies itself.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    /// A `Cookie` header value, e.g. `aula_session=…`.
    Cookie(String),
    /// A guest grant as a bearer token.
    Bearer(String),
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    /// `name=value` of a cookie this response sets.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
    }
    pub fn set_cookie_header(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<TestClock>,
    pub store: Arc<dyn Store>,
    pub scan: Arc<dyn Introspect + Send + Sync>,
    pub state: ApiState,
    pub admin: Auth,
}

pub struct Teacher {
    pub id: String,
    pub email: String,
    pub password: String,
    pub auth: Auth,
}

pub struct GuestHandle {
    pub id: String,
    pub participant: String,
    pub auth: Auth,
}

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(
        backend,
        Some("ws://127.0.0.1:1/media".into()),
        ThrottlePolicy::default(),
    )
    .await
}

/// A portal whose addresses may fail `max_failures_per_address` times per window (so that
/// a flood past the limit stays small enough for the local DynamoDB emulator).
pub async fn spawn_with_address_limit(backend: Backend, max_failures_per_address: u32) -> TestApp {
    spawn_with(
        backend,
        Some("ws://127.0.0.1:1/media".into()),
        ThrottlePolicy {
            max_failures_per_address,
            ..ThrottlePolicy::default()
        },
    )
    .await
}

/// A portal whose join grants go through placement over registered media nodes.
pub async fn spawn_placing(backend: Backend) -> TestApp {
    spawn_with(backend, None, ThrottlePolicy::default()).await
}

async fn spawn_with(
    backend: Backend,
    media_node_url: Option<String>,
    throttle: ThrottlePolicy,
) -> TestApp {
    let (store, kind): (Arc<dyn ScannableStore>, &'static str) = match backend {
        Backend::Embedded => (
            Arc::new(SqliteStore::open_in_memory().expect("store")),
            "embedded",
        ),
        Backend::Dynamodb => {
            let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
            assert!(
                endpoint.starts_with("http://127."),
                "needs the local AWS endpoint (run ./scripts/test); AWS_ENDPOINT_URL is {endpoint:?}"
            );
            (Arc::new(AwsStore::from_env().await), "dynamodb")
        }
    };
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let clock = Arc::new(TestClock(AtomicI64::new(
        i64::try_from(real_now).expect("fits"),
    )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let store_dyn: Arc<dyn Store> = store.clone();
    let defaults = crate::common::parts(store_dyn.clone(), kind, clock.clone());
    let parts = Parts {
        api: ApiConfig {
            public_url: base.clone(),
            host_id: "test-host-1".into(),
            media_node_url,
            ..defaults.api
        },
        policy: LoginPolicy {
            self_registration: true,
            throttle,
        },
        ..defaults
    };
    let state = portal::state(&parts).expect("state");
    // A store shared between tests (DynamoDB) already has admins: make one for this app.
    let admin_email = format!("admin-{}@aula.test", unique());
    let password = Password::new_password("test-admin-password-1").expect("password");
    let admin = Moderator {
        id: RandomIds.moderator_id(),
        last_name: PersonName::parse("Admin").expect("name"),
        first_name: PersonName::parse("Test").expect("name"),
        email: Email::parse(&admin_email).expect("email"),
        federal_state: FederalState::Berlin,
        organisation: Organisation::parse("Ministerium").expect("organisation"),
        role: Role::Admin,
        status: AccountStatus::Active,
        password_hash: Argon2Passwords.hash(&password).expect("hash"),
        must_change_password: false,
        created_at: clock.now(),
    };
    store_dyn
        .create_moderator(&admin)
        .await
        .expect("the test admin exists");
    let app_router = portal::app(state.clone(), kind);
    tokio::spawn(async move {
        // With connect info, as `aula serve` runs it: the login limits see the TCP peer.
        axum::serve(
            listener,
            app_router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut app = TestApp {
        base,
        client,
        clock,
        store: store_dyn,
        scan: Arc::new(Scan(store)),
        state,
        admin: Auth::None,
    };
    app.admin = app
        .login(&admin_email, password.expose())
        .await
        .expect("admin logs in");
    app
}

/// A short random string for unique emails and names.
pub fn unique() -> String {
    let b = random_bytes::<8>().expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl TestApp {
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>, auth: &Auth) -> Resp {
        self.call_with(method, path, body, auth, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        auth: &Auth,
        headers: &[(&str, &str)],
    ) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        match auth {
            Auth::None => {}
            Auth::Cookie(c) => req = req.header("cookie", c),
            Auth::Bearer(t) => req = req.bearer_auth(t),
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("the portal answers");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Resp {
        self.call("GET", path, None, auth).await
    }

    pub async fn post(&self, path: &str, body: Value, auth: &Auth) -> Resp {
        self.call("POST", path, Some(body), auth).await
    }

    /// Logs in; `Err` carries the refusal.
    pub async fn login(&self, email: &str, password: &str) -> Result<Auth, Resp> {
        let r = self
            .post(
                "/api/auth/login",
                json!({ "email": email, "password": password }),
                &Auth::None,
            )
            .await;
        match r.cookie("aula_session") {
            Some(c) if r.status == 200 => Ok(Auth::Cookie(c)),
            _ => Err(r),
        }
    }

    /// Logs in with a handed-over password and sets an own one, as the portal requires
    /// before anything else; returns the session and the own password.
    pub async fn login_setting_password(&self, email: &str, handed_over: &str) -> (Auth, String) {
        let auth = self
            .login(email, handed_over)
            .await
            .expect("the handed-over password works");
        let own = format!("eigenes-passwort-{}", unique());
        let r = self
            .post(
                "/api/me/password",
                json!({ "current": handed_over, "new": own }),
                &auth,
            )
            .await;
        assert_eq!(r.status, 204, "setting an own password: {:?}", r.body);
        (auth, own)
    }

    /// An admin provisions a teacher, who logs in with the initial password and sets an
    /// own one.
    pub async fn teacher(&self) -> Teacher {
        let email = format!("lehrkraft-{}@schule.example.de", unique());
        let r = self
            .post(
                "/api/admin/moderators",
                json!({
                    "last_name": "Schmidt", "first_name": "Anna", "email": email,
                    "federal_state": "DE-BY", "organisation": "Gymnasium am Rosenberg"
                }),
                &self.admin,
            )
            .await;
        assert_eq!(r.status, 201, "provisioning: {:?}", r.body);
        let initial = r.body["initial_password"].as_str().expect("password");
        let id = r.body["account"]["id"].as_str().expect("id").to_owned();
        let (auth, password) = self.login_setting_password(&email, initial).await;
        Teacher {
            id,
            email,
            password,
            auth,
        }
    }

    /// Creates a room; returns (room id, invite token).
    pub async fn room(&self, teacher: &Teacher, lobby: bool) -> (String, String) {
        let r = self
            .post(
                "/api/rooms",
                json!({ "name": "Klasse 7b Mathe", "settings": { "lobby": lobby } }),
                &teacher.auth,
            )
            .await;
        assert_eq!(r.status, 201, "creating a room: {:?}", r.body);
        let id = r.body["id"].as_str().expect("id").to_owned();
        let url = r.body["invite_url"].as_str().expect("invite url");
        let token = url.rsplit('/').next().expect("token").to_owned();
        (id, token)
    }

    pub async fn guest(&self, token: &str, nickname: &str) -> GuestHandle {
        let r = self
            .post(
                &format!("/api/join/{token}"),
                json!({ "nickname": nickname }),
                &Auth::None,
            )
            .await;
        assert_eq!(r.status, 201, "joining: {:?}", r.body);
        let id = r.body["guest"]["id"].as_str().expect("id").to_owned();
        GuestHandle {
            participant: format!("g:{id}"),
            id,
            auth: Auth::Bearer(r.body["token"].as_str().expect("token").to_owned()),
        }
    }

    pub async fn say(&self, room: &str, auth: &Auth, body: &str, to: Option<&str>) -> Resp {
        self.post(
            &format!("/api/rooms/{room}/chat"),
            json!({ "body": body, "to": to, "idempotency_key": format!("key-{}", unique()) }),
            auth,
        )
        .await
    }

    pub fn clock_now(&self) -> Timestamp {
        self.clock.now()
    }

    /// What a media node of this deployment holds: the verifier with its public key alone.
    pub fn media_node(&self) -> JoinVerifier {
        JoinVerifier::from_public_key(self.state.tokens.public_key()).expect("a public key")
    }

    /// Whether `needle` is stored in any table, item or object.
    pub async fn stored_anywhere(&self, needle: &str) -> bool {
        self.scan.contains_text(needle, &[]).await.expect("scan")
    }

    /// The same, leaving out the access log and the audit log: they are kept for their own
    /// purposes (attack defence, accountability) and hold ids and URLs, never names.
    pub async fn stored_outside_logs(&self, needle: &str) -> bool {
        self.scan
            .contains_text(needle, &[RecordKind::AccessLog, RecordKind::Audit])
            .await
            .expect("scan")
    }
}
