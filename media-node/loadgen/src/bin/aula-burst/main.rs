//! Exam morning against a real portal: starts `aula serve` (embedded store, or DynamoDB on
//! the local AWS endpoint), has its admin provision T teachers who create R rooms, lets the
//! teachers open their rooms, then sends P pupils arriving open-loop at a given rate (Poisson
//! arrivals): each opens an invite link with a nickname, asks for a join grant (waiting in
//! the admission queue when told to) and joins the media node over its WebSocket. Optionally
//! teachers log in during the burst. Prints per phase: throughput, arrival-to-admission
//! p50/p99/p99.9, refusals, time in the queue, pupils stuck, and the same at the next rate.
//!
//!     cargo build --release --bin aula --bin aula-burst
//!     target/release/aula-burst --rates 300,600 --pupils 6000 --rooms 400 --teachers 100
//!     # on the local AWS endpoint (eval "$(localstack/start.sh)" first):
//!     target/release/aula-burst --store dynamodb --rates 50,100 --pupils 600 --rooms 40
//!
//! A pupil who is not admitted within `--give-up` seconds counts as stuck. Pupils stay
//! connected until the run ends, so admissions use the node's seats as a lesson would.
//!
//! `portal.rs` starts the portal and sets up the school; this file runs the burst and reports it.

use anyhow::{Context as _, anyhow};
use aula_domain::RoomId;
use aula_loadgen::percentile;
use aula_sfu::protocol::{ClientMessage, PROTOCOL_VERSION, ServerMessage};
use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use portal::{Api, Auth, Portal, set_up};
use rand::Rng as _;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;

mod portal;

#[derive(Parser, Debug)]
#[command(about = "An exam-morning burst against `aula serve`: join grants, queue and node joins")]
struct Args {
    /// Pupils per second, one run each (a fresh portal per run).
    #[arg(long, value_delimiter = ',', default_values_t = vec![300.0, 600.0])]
    rates: Vec<f64>,
    #[arg(long, default_value_t = 100)]
    teachers: usize,
    #[arg(long, default_value_t = 400)]
    rooms: usize,
    #[arg(long, default_value_t = 6000)]
    pupils: usize,
    /// Teacher logins per second during the pupils' burst (Argon2 on the portal).
    #[arg(long, default_value_t = 0.0)]
    logins_per_sec: f64,
    /// The in-process node's seats (`aula serve --media-capacity`).
    #[arg(long, default_value_t = 20_000)]
    media_capacity: u32,
    /// `embedded` (SQLite) or `dynamodb` (the local AWS endpoint from the environment).
    #[arg(long, default_value = "embedded")]
    store: String,
    /// Seconds after which a pupil not yet admitted counts as stuck.
    #[arg(long, default_value_t = 120)]
    give_up: u64,
    /// The `aula` binary (default: next to this one).
    #[arg(long)]
    aula: Option<std::path::PathBuf>,
    /// Each participant leaves this many seconds after being admitted (default: stays to the
    /// end). With fewer seats than the morning needs, lessons that end let queued rooms in.
    #[arg(long)]
    lesson_secs: Option<u64>,
    /// HTTP requests in flight during setup.
    #[arg(long, default_value_t = 16)]
    setup_concurrency: usize,
}

/// A participant's signalling connection, held open while the lesson runs.
struct Attendee {
    task: tokio::task::JoinHandle<()>,
}

impl Attendee {
    /// Joins the node and returns once it welcomed us.
    async fn join(url: &str, room: RoomId, grant: &str) -> anyhow::Result<Attendee> {
        // A small read chunk, as the node uses: the default 128 KiB is zeroed on each read.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(8 * 1024);
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let join = ClientMessage::Join {
            v: PROTOCOL_VERSION,
            room,
            grant: grant.to_owned(),
        };
        ws.send(WsMessage::Text(serde_json::to_string(&join)?.into()))
            .await?;
        let welcome = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(m) = ws.next().await {
                if let WsMessage::Text(t) = m? {
                    return match serde_json::from_str::<ServerMessage>(&t) {
                        Ok(ServerMessage::Welcome { .. }) => Ok(()),
                        Ok(other) => Err(anyhow!(
                            "refused by the node: {}",
                            serde_json::to_string(&other).unwrap_or_default()
                        )),
                        Err(_) => continue,
                    };
                }
            }
            Err(anyhow!("the node closed the connection"))
        })
        .await
        .context("no welcome within 30 s")?;
        welcome?;
        // Read (and ignore) what the node sends, so it never sees a stalled reader.
        let task = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
        Ok(Attendee { task })
    }
}

impl Drop for Attendee {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connections of everyone admitted: kept to the end, or each for a lesson's length.
#[derive(Clone)]
struct Held {
    connected: Arc<Mutex<Vec<Attendee>>>,
    lesson: Option<Duration>,
    left: Arc<std::sync::atomic::AtomicUsize>,
}

impl Held {
    async fn keep(&self, a: Attendee) {
        match self.lesson {
            None => self.connected.lock().await.push(a),
            Some(d) => {
                let left = self.left.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    drop(a);
                    left.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                });
            }
        }
    }
}

/// How one participant's admission went.
#[derive(Default, Clone)]
struct Outcome {
    /// Arrival to the node's welcome; `None`: stuck or failed.
    admitted_ms: Option<u64>,
    /// Time between the first 202 and the grant.
    queued_ms: Option<u64>,
    /// The invite call (pupils), the last join-grant call, and the node's join to welcome.
    invite_ms: Option<u64>,
    grant_ms: Option<u64>,
    node_ms: Option<u64>,
    /// Join-grant calls answered 202 (queued) or 429/503 (refused).
    waits: u32,
    refusals: u32,
    error: Option<String>,
}

/// Asks for a grant until admitted (following `Retry-After`, spread ±20 %), then joins the
/// node. `auth` is the teacher's cookie or the pupil's bearer token.
async fn admit(
    api: &Api,
    room: RoomId,
    auth: Auth<'_>,
    arrived: Instant,
    give_up: Duration,
    held: &Held,
) -> Outcome {
    let mut out = Outcome::default();
    let mut first_wait = None;
    loop {
        if arrived.elapsed() > give_up {
            out.error = Some("stuck".into());
            return out;
        }
        let asked = Instant::now();
        let a = match api
            .call(
                reqwest::Method::POST,
                &format!("/api/rooms/{room}/join"),
                auth,
                Some(json!({})),
            )
            .await
        {
            Ok(a) => a,
            Err(e) => {
                out.error = Some(format!("{e:#}"));
                return out;
            }
        };
        out.grant_ms = Some(ms(asked.elapsed()));
        match a.status {
            200 => {
                let (Some(url), Some(grant)) =
                    (a.body["node_url"].as_str(), a.body["grant"].as_str())
                else {
                    out.error = Some(format!("a grant without node: {}", a.body));
                    return out;
                };
                if let Some(w) = first_wait {
                    out.queued_ms = Some(ms(Instant::now() - w));
                }
                let joining = Instant::now();
                match Attendee::join(url, room, grant).await {
                    Ok(at) => {
                        out.node_ms = Some(ms(joining.elapsed()));
                        out.admitted_ms = Some(ms(arrived.elapsed()));
                        held.keep(at).await;
                    }
                    Err(e) => out.error = Some(format!("{e:#}")),
                }
                return out;
            }
            202 | 429 | 503 => {
                if a.status == 202 {
                    out.waits += 1;
                } else {
                    out.refusals += 1;
                }
                first_wait.get_or_insert_with(Instant::now);
                let secs = a.retry_after.unwrap_or(2) as f64;
                let spread = rand::rng().random_range(0.8..1.2);
                tokio::time::sleep(Duration::from_secs_f64(secs * spread)).await;
            }
            s => {
                out.error = Some(format!("join grant {s}: {}", a.body));
                return out;
            }
        }
    }
}

/// CPU seconds (user + system, all threads) a process has used, from /proc.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; Linux
    // counts them in 1/100 s (USER_HZ).
    (ticks(11) + ticks(12)) / 100.0
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One line of figures for a phase.
fn report(phase: &str, outcomes: &[Outcome], took: Duration) {
    let mut admitted: Vec<u64> = outcomes.iter().filter_map(|o| o.admitted_ms).collect();
    admitted.sort_unstable();
    let mut queued: Vec<u64> = outcomes.iter().filter_map(|o| o.queued_ms).collect();
    queued.sort_unstable();
    let stuck = outcomes
        .iter()
        .filter(|o| o.error.as_deref() == Some("stuck"))
        .count();
    let failed = outcomes
        .iter()
        .filter(|o| o.error.is_some() && o.error.as_deref() != Some("stuck"))
        .count();
    let waits: u32 = outcomes.iter().map(|o| o.waits).sum();
    let refusals: u32 = outcomes.iter().map(|o| o.refusals).sum();
    println!(
        "  {phase}: {} of {} admitted in {:.1} s ({:.0}/s); arrival→welcome p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        admitted.len(),
        outcomes.len(),
        took.as_secs_f64(),
        admitted.len() as f64 / took.as_secs_f64().max(0.001),
        percentile(&admitted, 0.5),
        percentile(&admitted, 0.99),
        percentile(&admitted, 0.999),
        admitted.last().copied().unwrap_or(0),
    );
    println!(
        "    queued {} (answers 202: {waits}; p50 {} ms, p99 {} ms in the queue); refused 429/503: {refusals}; stuck {stuck}; failed {failed}",
        queued.len(),
        percentile(&queued, 0.5),
        percentile(&queued, 0.99),
    );
    let phase = |f: fn(&Outcome) -> Option<u64>| {
        let mut v: Vec<u64> = outcomes.iter().filter_map(f).collect();
        v.sort_unstable();
        format!(
            "p50 {} ms, p99 {} ms",
            percentile(&v, 0.5),
            percentile(&v, 0.99)
        )
    };
    println!(
        "    per step: invite {}; join grant {}; node join to welcome {}",
        phase(|o| o.invite_ms),
        phase(|o| o.grant_ms),
        phase(|o| o.node_ms),
    );
    if let Some(e) = outcomes
        .iter()
        .find_map(|o| o.error.as_ref().filter(|e| *e != "stuck"))
    {
        println!("    first failure: {e}");
    }
}

/// Poisson arrivals: the gap to the next one at `rate` per second.
fn next_gap(rate: f64) -> Duration {
    let u: f64 = rand::rng().random_range(f64::EPSILON..1.0);
    Duration::from_secs_f64(-u.ln() / rate)
}

async fn run(args: &Args, rate: f64) -> anyhow::Result<()> {
    let portal = Portal::start(args)?;
    let api = Api {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(60))
            .build()?,
        base: portal.base.clone(),
    };
    println!(
        "rate {rate}/s: {} teachers, {} rooms, {} pupils, store {}, node seats {}",
        args.teachers, args.rooms, args.pupils, args.store, args.media_capacity
    );
    let t = Instant::now();
    let school = set_up(&api, &portal, args).await?;
    println!("  setup: {:.1} s", t.elapsed().as_secs_f64());
    let held = Held {
        connected: Arc::new(Mutex::new(Vec::new())),
        lesson: args.lesson_secs.map(Duration::from_secs),
        left: Arc::default(),
    };
    let give_up = Duration::from_secs(args.give_up);

    // The teachers open their rooms (each room's reservation is made with its teacher's
    // grant), at the same rate as the pupils will arrive.
    let t = Instant::now();
    let mut opening = Vec::new();
    let mut due = tokio::time::Instant::now();
    for room in &school.rooms {
        due += next_gap(rate);
        tokio::time::sleep_until(due).await;
        let (api, held, cookie, id) = (
            api.clone(),
            held.clone(),
            school.cookies[room.teacher].clone(),
            room.id,
        );
        opening.push(tokio::spawn(async move {
            admit(
                &api,
                id,
                Auth::Cookie(&cookie),
                Instant::now(),
                give_up,
                &held,
            )
            .await
        }));
    }
    let mut outcomes = Vec::new();
    for o in opening {
        outcomes.push(o.await?);
    }
    report("teachers open their rooms", &outcomes, t.elapsed());

    // Teachers logging in during the burst (each a password check on the portal).
    let logins = Arc::new(Mutex::new(Vec::new()));
    let burst_over = Arc::new(tokio::sync::Notify::new());
    let login_task = (args.logins_per_sec > 0.0).then(|| {
        let (api, logins, over) = (api.clone(), logins.clone(), burst_over.clone());
        let teachers: Vec<(String, String)> = school
            .teachers
            .iter()
            .map(|t| (t.email.clone(), t.password.clone()))
            .collect();
        let per_sec = args.logins_per_sec;
        tokio::spawn(async move {
            let mut i = 0;
            let mut running = Vec::new();
            loop {
                tokio::select! {
                    _ = over.notified() => break,
                    _ = tokio::time::sleep(next_gap(per_sec)) => {}
                }
                let (email, password) = teachers[i % teachers.len()].clone();
                i += 1;
                let (api, logins) = (api.clone(), logins.clone());
                running.push(tokio::spawn(async move {
                    let t = Instant::now();
                    let ok = api.login(&email, &password, None).await.is_ok();
                    logins.lock().await.push((ms(t.elapsed()), ok));
                }));
            }
            for r in running {
                let _ = r.await;
            }
        })
    });

    let portal_pid = portal.child.id().to_string();
    let cpu_before = (cpu_secs(&portal_pid), cpu_secs("self"));
    let t = Instant::now();
    let mut arriving = Vec::new();
    // Arrival times are drawn ahead and slept to, so the timer's granularity does not slow
    // the offered rate.
    let mut due = tokio::time::Instant::now();
    for p in 0..args.pupils {
        due += next_gap(rate);
        tokio::time::sleep_until(due).await;
        let room = &school.rooms[rand::rng().random_range(0..school.rooms.len())];
        let (api, held, id, invite) = (api.clone(), held.clone(), room.id, room.invite.clone());
        arriving.push(tokio::spawn(async move {
            let arrived = Instant::now();
            let joined = api
                .call(
                    reqwest::Method::POST,
                    &format!("/api/join/{invite}"),
                    Auth::None,
                    Some(json!({ "nickname": format!("Schüler {p}") })),
                )
                .await;
            let token = match joined {
                Ok(a) if a.status == 201 => a.body["token"].as_str().map(str::to_owned),
                Ok(a) => {
                    return Outcome {
                        error: Some(format!("invite {}: {}", a.status, a.body)),
                        ..Outcome::default()
                    };
                }
                Err(e) => {
                    return Outcome {
                        error: Some(format!("{e:#}")),
                        ..Outcome::default()
                    };
                }
            };
            let Some(token) = token else {
                return Outcome {
                    error: Some("no guest token".into()),
                    ..Outcome::default()
                };
            };
            let invite_ms = ms(arrived.elapsed());
            let mut out = admit(&api, id, Auth::Bearer(&token), arrived, give_up, &held).await;
            out.invite_ms = Some(invite_ms);
            out
        }));
    }
    let offered = t.elapsed();
    let mut outcomes = Vec::new();
    for a in arriving {
        outcomes.push(a.await?);
    }
    burst_over.notify_one();
    if let Some(task) = login_task {
        task.await?;
    }
    println!(
        "  pupils arrived over {:.1} s ({:.0}/s offered)",
        offered.as_secs_f64(),
        args.pupils as f64 / offered.as_secs_f64().max(0.001)
    );
    let took = t.elapsed();
    report("pupils join", &outcomes, took);
    println!(
        "    CPU meanwhile: the portal (API, store, node) {:.1} s, this program {:.1} s, over {:.1} s on {} cores",
        cpu_secs(&portal_pid) - cpu_before.0,
        cpu_secs("self") - cpu_before.1,
        took.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let logins = logins.lock().await;
    if !logins.is_empty() {
        let mut l: Vec<u64> = logins.iter().map(|(ms, _)| *ms).collect();
        l.sort_unstable();
        println!(
            "    teacher logins during the burst: {} ({} failed), p50 {} ms, p99 {} ms",
            l.len(),
            logins.iter().filter(|(_, ok)| !ok).count(),
            percentile(&l, 0.5),
            percentile(&l, 0.99)
        );
    }
    let connected = held.connected.lock().await.len();
    let left = held.left.load(std::sync::atomic::Ordering::Relaxed);
    println!("  at the end: {connected} connected, {left} left after their lesson");
    held.connected.lock().await.clear();
    drop(portal);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "aula-burst: {} cores, load before {}, open-loop Poisson arrivals; times from the client's arrival to the node's welcome",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    for &rate in &args.rates {
        run(&args, rate).await?;
    }
    Ok(())
}
