//! The portal under test: `aula serve` started in a temporary data directory, a client of
//! its HTTP API, logins, and the setup of a school (the admin provisions the teachers, who
//! create the rooms).

use crate::Args;
use anyhow::{Context as _, anyhow, bail};
use aula_domain::RoomId;
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use tokio::sync::Semaphore;

const ADMIN_EMAIL: &str = "admin@aula.local";

/// A running `aula serve` in a temporary data directory.
pub(crate) struct Portal {
    pub(crate) child: Child,
    pub(crate) base: String,
    admin_password: String,
    _data: tempdir::Dir,
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new() -> std::io::Result<Dir> {
            let p = std::env::temp_dir().join(format!("aula-burst-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p)?;
            Ok(Dir(p))
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn aula_binary(args: &Args) -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = &args.aula {
        return Ok(p.clone());
    }
    let me = std::env::current_exe()?;
    Ok(me.with_file_name("aula"))
}

impl Portal {
    pub(crate) fn start(args: &Args) -> anyhow::Result<Portal> {
        let bin = aula_binary(args)?;
        let data = tempdir::Dir::new()?;
        let common = [
            "--store".to_owned(),
            args.store.clone(),
            "--data-dir".to_owned(),
            data.0.display().to_string(),
        ];
        // On DynamoDB the admin exists from an earlier run: the operator's reset gives a
        // password we know.
        let mut admin_password = None;
        if args.store == "dynamodb" {
            let out = Command::new(&bin)
                .args(["admin", "reset-password", ADMIN_EMAIL])
                .args(&common)
                .output()
                .with_context(|| format!("running {}", bin.display()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            admin_password = text
                .lines()
                .find_map(|l| l.split("): ").nth(1))
                .map(|p| p.trim().to_owned());
        }
        let mut child = Command::new(&bin)
            .arg("serve")
            .args(&common)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--media-capacity",
                &args.media_capacity.to_string(),
                "--http-max-connections",
                "16384",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("the portal's output")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut base = None;
        for line in lines.by_ref() {
            let line = line?;
            if let Some(rest) = line.split("the initial password ").nth(1) {
                admin_password = Some(rest.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("Aula is running at ") {
                base = rest
                    .split_whitespace()
                    .next()
                    .map(|u| u.trim_end_matches('/').to_owned());
                break;
            }
        }
        // Keep draining its output so the portal never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let base = base.context("the portal did not say where it runs")?;
        let admin_password = admin_password.context("no admin password (initial or reset)")?;
        Ok(Portal {
            child,
            base,
            admin_password,
            _data: data,
        })
    }
}

/// What one API call answered.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
    cookie: Option<String>,
    pub(crate) retry_after: Option<u64>,
}

#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    None,
    Cookie(&'a str),
    Bearer(&'a str),
}

impl Api {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        req = match auth {
            Auth::None => req,
            Auth::Cookie(c) => req.header("cookie", c),
            Auth::Bearer(t) => req.header("authorization", format!("Bearer {t}")),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = res.status().as_u16();
        let cookie = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("aula_session="))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned);
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            body,
            cookie,
            retry_after,
        })
    }

    /// Logs in; an account with a handed-over password sets `own` first.
    pub(crate) async fn login(
        &self,
        email: &str,
        password: &str,
        own: Option<&str>,
    ) -> anyhow::Result<String> {
        let a = self
            .call(
                reqwest::Method::POST,
                "/api/auth/login",
                Auth::None,
                Some(json!({ "email": email, "password": password })),
            )
            .await?;
        let cookie = match (a.status, a.cookie) {
            (200, Some(c)) => c,
            (s, _) => bail!("login of {email}: {s} {}", a.body),
        };
        if let Some(own) = own {
            let a = self
                .call(
                    reqwest::Method::POST,
                    "/api/me/password",
                    Auth::Cookie(&cookie),
                    Some(json!({ "current": password, "new": own })),
                )
                .await?;
            if a.status != 204 {
                bail!("setting the password of {email}: {} {}", a.status, a.body);
            }
        }
        Ok(cookie)
    }
}

pub(crate) struct Room {
    pub(crate) id: RoomId,
    pub(crate) invite: String,
    pub(crate) teacher: usize,
}

pub(crate) struct Teacher {
    pub(crate) email: String,
    pub(crate) password: String,
}

/// What the setup left: teachers with their own passwords, rooms with invite tokens.
pub(crate) struct School {
    pub(crate) teachers: Vec<Teacher>,
    pub(crate) rooms: Vec<Room>,
    pub(crate) cookies: Vec<String>,
}

pub(crate) async fn set_up(api: &Api, portal: &Portal, args: &Args) -> anyhow::Result<School> {
    let admin = api
        .login(
            ADMIN_EMAIL,
            &portal.admin_password,
            Some("Burst-Admin-Passwort-1"),
        )
        .await
        .context("the admin's first login")?;
    let limit = Arc::new(Semaphore::new(args.setup_concurrency));
    let mut provisioning = Vec::new();
    for i in 0..args.teachers {
        let (api, admin, limit) = (api.clone(), admin.clone(), limit.clone());
        provisioning.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let email = format!("lehrkraft{i}@burst.example");
            let a = api
                .call(
                    reqwest::Method::POST,
                    "/api/admin/moderators",
                    Auth::Cookie(&admin),
                    Some(json!({
                        "last_name": "Lehrkraft",
                        "first_name": format!("Nr{i}"),
                        "email": email,
                        "federal_state": "DE-HE",
                        "organisation": "Schule Burst",
                    })),
                )
                .await?;
            let initial = a.body["initial_password"]
                .as_str()
                .ok_or_else(|| anyhow!("provisioning {email}: {} {}", a.status, a.body))?
                .to_owned();
            let password = format!("{initial}-eigenes");
            let cookie = api.login(&email, &initial, Some(&password)).await?;
            anyhow::Ok((Teacher { email, password }, cookie))
        }));
    }
    let mut teachers = Vec::new();
    let mut cookies = Vec::new();
    for p in provisioning {
        let (t, c) = p.await??;
        teachers.push(t);
        cookies.push(c);
    }
    let mut creating = Vec::new();
    for r in 0..args.rooms {
        let teacher = r % teachers.len();
        let (api, cookie, limit) = (api.clone(), cookies[teacher].clone(), limit.clone());
        creating.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let a = api
                .call(
                    reqwest::Method::POST,
                    "/api/rooms",
                    Auth::Cookie(&cookie),
                    Some(json!({ "name": format!("Prüfung {r}") })),
                )
                .await?;
            let id: RoomId = serde_json::from_value(a.body["id"].clone())
                .map_err(|_| anyhow!("creating a room: {} {}", a.status, a.body))?;
            let invite = a.body["invite_url"]
                .as_str()
                .and_then(|u| u.rsplit('/').next())
                .context("the room's invite link")?
                .to_owned();
            anyhow::Ok(Room {
                id,
                invite,
                teacher,
            })
        }));
    }
    let mut rooms = Vec::new();
    for c in creating {
        rooms.push(c.await??);
    }
    Ok(School {
        teachers,
        rooms,
        cookies,
    })
}
