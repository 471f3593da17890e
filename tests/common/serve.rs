//! The `aula` binary as a child process: `aula serve` as its user starts it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `aula serve`; dropping it stops the process.
pub struct Portal {
    child: Child,
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base: String,
    /// What it printed before the "running at" line.
    pub preamble: Vec<String>,
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Portal {
    /// The first admin's initial password, which only the first start on a data
    /// directory prints.
    pub fn initial_password(&self) -> String {
        let told = self.preamble.join("\n");
        told.split("initial password ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no initial password in {told:?}"))
            .to_owned()
    }
}

/// Starts the portal binary on a free loopback port and waits for its "running at" line.
pub fn start(args: &[&str]) -> Portal {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aula"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the aula binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut preamble = Vec::new();
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the portal prints its URL within 30 s");
        if line.starts_with("Aula is running at") {
            break line;
        }
        preamble.push(line);
    };
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the line names a URL")
        .trim_end_matches('/')
        .to_owned();
    Portal {
        child,
        base,
        preamble,
    }
}

/// `name=value` of the session cookie a login response sets.
pub fn session_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("aula_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// Sets an own password for a session whose password was handed over (an initial one, or
/// one an admin or the operator set): the portal allows nothing else before. Returns it.
pub async fn set_own_password(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    handed_over: &str,
) -> String {
    let own = "ein-eigenes-Passwort-1".to_owned();
    let r = http
        .post(format!("{base}/api/me/password"))
        .header("cookie", cookie)
        .json(&serde_json::json!({ "current": handed_over, "new": own }))
        .send()
        .await
        .expect("the password change answers");
    assert_eq!(r.status(), 204, "setting an own password");
    own
}

/// Logs in as the first admin with the printed initial password and sets an own one, as a
/// newcomer does first; returns the session cookie (`name=value`).
pub async fn admin_session(portal: &Portal, http: &reqwest::Client) -> String {
    let initial = portal.initial_password();
    let login = http
        .post(format!("{}/api/auth/login", portal.base))
        .json(&serde_json::json!({ "email": "admin@aula.local", "password": initial }))
        .send()
        .await
        .expect("admin login");
    assert_eq!(login.status(), 200);
    let cookie = session_cookie(&login);
    set_own_password(http, &portal.base, &cookie, &initial).await;
    cookie
}
