//! Stress benchmarks against the release binary (issue 11), with an open-loop generator:
//! calls start at a fixed rate whatever the server does, and each call's latency counts
//! from its intended start, so a slow server cannot slow the load down and hide its queue.
//!
//! - `overload`: finds what CreateWorkspace sustains (closed loop, 16 concurrent), then
//!   offers half of it and four times it; prints how every call was answered, the p50/p99
//!   of the admitted ones, and the p99 of how late the generator started its calls (a lower
//!   bound on the generator's own share of the latencies, on a machine it shares with the
//!   server), and the p99 second by second (whether the tail is spread over the run, or
//!   gathered in the few seconds of a stall).
//!   `--max-in-flight N` passes the server's flag.
//! - `soak`: mixed load for `--seconds` (default 600), after `--warm-up` seconds of the same:
//!   reads, writes, listings, bad tokens, unknown paths and creates whose client gives up
//!   within 0-3 ms, at `--rate` calls/s; prints RSS
//!   every 30 s, every status code, then kills
//!   the server with SIGKILL, restarts it and checks that every acknowledged write is there.
//! - `watch` (issue 15): CreateWorkspace at `--rate` calls/s for `--seconds` (default 20) on
//!   one replica while a watcher follows the change history on another (on PostgreSQL; on
//!   SQLite, one process owns the file, so the same one); prints the delay from each
//!   event's commit time to its arrival at the watcher (p50, p99, max) and any missed.
//!
//! `cargo bench --bench stress -- overload|soak|watch [--seconds S] [--rate R] [--max-in-flight N]
//! [--warm-up S] [--pin]`;
//! on PostgreSQL when `WORKSPACED_BENCH_DATABASE_URL` is set (a fresh database is made in it).
//! `--pin` runs the generator on CPU 0, and the server and a local PostgreSQL on the others:
//! the system's figures without the generator's work on its cores.
//! The server logs at `warn`; `STRESS_LOG=info` gives its log line per call (with the latency
//! it saw) on standard error.

mod common;

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    Argv, BenchDb, CONNECTIONS, KEY, Pinned, Proc, authed, channels, channels_n, cpu_time,
    database_cpu_time, free_addr, on_cpus, rss, token,
};
use hdrhistogram::Histogram;
use tonic::{Code, Request, codegen::http::uri::PathAndQuery, transport::Channel};
use workspaced::pb::v1::{
    self as pb, event_service_client::EventServiceClient,
    membership_service_client::MembershipServiceClient,
    workspace_service_client::WorkspaceServiceClient,
};

/// Connections of the overload run's generator.
const OVERLOAD_CONNECTIONS: usize = 16;

/// The servers' CPUs when the run is pinned (`--pin`): a static, so that every start and
/// restart of a server in any mode sees it.
static SERVER_CPUS: OnceLock<String> = OnceLock::new();

/// Users of the soak, each creating and listing its own workspaces.
const USERS: usize = 200;

struct Args {
    mode: String,
    seconds: Option<f64>,
    rate: f64,
    max_in_flight: Option<u32>,
    /// Seconds of the same load before the measured window, so that caches are warm and
    /// memory growth in the window is growth, not warming.
    warm_up: f64,
    /// The generator on CPU 0, the server and a local PostgreSQL on the others.
    pin: bool,
}

fn args() -> Args {
    let argv = Argv::from_env();
    Args {
        mode: argv
            .word(&["overload", "soak", "watch"])
            .unwrap_or_default(),
        seconds: argv.number("--seconds"),
        rate: argv.number("--rate").unwrap_or(300.0),
        max_in_flight: argv.number("--max-in-flight").map(|v| v as u32),
        warm_up: argv.number("--warm-up").unwrap_or(0.0),
        pin: argv.switch("--pin"),
    }
}

/// The server under test, with what it needs to be restarted on the same database.
struct Server {
    proc: Proc,
    addr: SocketAddr,
    url: String,
    key: PathBuf,
    extra: Vec<String>,
}

impl Server {
    fn start(url: &str, key: &Path, extra: Vec<String>) -> Server {
        let addr = free_addr();
        let program = Path::new(env!("CARGO_BIN_EXE_workspaced"));
        let mut command = on_cpus(SERVER_CPUS.get().map(String::as_str), program);
        let proc = Proc(
            command
                .args([
                    "serve",
                    "--listen",
                    &addr.to_string(),
                    "--database-url",
                    url,
                ])
                .arg("--jwt-hs256-secret-file")
                .arg(key)
                .args(&extra)
                .env(
                    "RUST_LOG",
                    std::env::var("STRESS_LOG").unwrap_or("warn".into()),
                )
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start workspaced"),
        );
        Server {
            proc,
            addr,
            url: url.to_owned(),
            key: key.to_owned(),
            extra,
        }
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// SIGKILL, then a new process on the same database.
    fn crash_and_restart(self) -> Server {
        let Server {
            proc,
            url,
            key,
            extra,
            ..
        } = self;
        drop(proc);
        Server::start(&url, &key, extra)
    }
}

/// How the calls of one run were answered.
#[derive(Default)]
struct Outcome {
    codes: BTreeMap<String, u64>,
    /// Latency of the calls answered OK, from their intended start, in µs.
    ok: Option<Histogram<u64>>,
    /// How late the generator started each call, in µs: a lower bound on the part of every
    /// latency that is the generator's own (on a machine it shares with the server and the
    /// database; a wait inside its HTTP/2 client is not counted).
    late: Option<Histogram<u64>>,
    /// The calls answered OK, each as (the second of the run it was meant to start in,
    /// its latency in µs): the p99 second by second shows whether a tail is spread over the
    /// run or gathered in the few seconds of a stall.
    ok_at: Vec<(u32, u32)>,
    offered: u64,
    elapsed: Duration,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram")
}

impl Outcome {
    fn add(&mut self, label: String, code: Code, second: u32, latency: Duration) {
        *self.codes.entry(format!("{label}{code:?}")).or_default() += 1;
        if code == Code::Ok {
            let us = latency.as_micros().max(1) as u64;
            self.ok.get_or_insert_with(histogram).record(us).ok();
            self.ok_at
                .push((second, u32::try_from(us).unwrap_or(u32::MAX)));
        }
    }

    /// The p99 of the calls answered OK in each whole second of the run, in ms, sorted;
    /// seconds with fewer than 100 such calls are left out (their p99 would be their max).
    fn p99_by_second(&self) -> Vec<f64> {
        let mut by: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &(second, us) in &self.ok_at {
            by.entry(second).or_default().push(us);
        }
        let mut p99: Vec<f64> = by
            .into_values()
            .filter(|v| v.len() >= 100)
            .map(|mut v| {
                v.sort_unstable();
                f64::from(v[(v.len() * 99).div_ceil(100) - 1]) / 1000.0
            })
            .collect();
        p99.sort_by(f64::total_cmp);
        p99
    }

    fn ms(&self, q: f64) -> f64 {
        self.ok
            .as_ref()
            .map_or(f64::NAN, |h| h.value_at_quantile(q) as f64 / 1000.0)
    }

    fn late_ms(&self, q: f64) -> f64 {
        self.late
            .as_ref()
            .map_or(f64::NAN, |h| h.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// The middle of `sorted` (the upper one of two); not empty.
fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

/// Calls `call(i)` at `rate` per second for `secs`, each in its own task, and waits for
/// every answer (a call without one in 60 s counts as `NoAnswer`).
async fn open_loop<F, Fut>(rate: f64, secs: f64, call: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (String, Code)> + Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let n = (rate * secs) as u64;
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let intended = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(intended.into()).await;
        let call = call.clone();
        let second = (i as f64 / rate) as u32;
        tasks.push(tokio::spawn(async move {
            let late = intended.elapsed();
            match tokio::time::timeout(Duration::from_secs(60), call(i)).await {
                Ok((label, code)) => (label, Some(code), second, intended.elapsed(), late),
                Err(_) => (String::new(), None, second, intended.elapsed(), late),
            }
        }));
    }
    let mut out = Outcome {
        offered: n,
        ..Outcome::default()
    };
    for t in tasks {
        let (label, code, second, latency, late) = t.await.expect("call task");
        out.late
            .get_or_insert_with(histogram)
            .record(late.as_micros().max(1) as u64)
            .ok();
        match code {
            Some(code) => out.add(label, code, second, latency),
            None => *out.codes.entry("NoAnswer".into()).or_default() += 1,
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// The reason of an error, for telling OVERLOADED from other UNAVAILABLE answers.
fn coded<T>(r: Result<T, tonic::Status>) -> (String, Code) {
    use tonic_types::StatusExt;
    match r {
        Ok(_) => (String::new(), Code::Ok),
        Err(e) => {
            let reason = match e.get_details_error_info() {
                Some(i) => format!("{}/", i.reason),
                // No reason: the message is all there is to go on (an HTTP/2 error, say).
                None if matches!(e.code(), Code::Unknown | Code::Internal) => {
                    format!("\"{}\"/", e.message().chars().take(80).collect::<String>())
                }
                None => String::new(),
            };
            (reason, e.code())
        }
    }
}

async fn create(ch: Channel, token: String, name: String) -> (String, Code) {
    coded(
        WorkspaceServiceClient::new(ch)
            .create_workspace(create_request(&token, name))
            .await,
    )
}

fn create_request(token: &str, name: String) -> Request<pb::CreateWorkspaceRequest> {
    authed(
        pb::CreateWorkspaceRequest {
            workspace: Some(pb::Workspace {
                name,
                ..Default::default()
            }),
            request_id: String::new(),
        },
        token,
    )
}

async fn get_ws(ch: Channel, token: &str, name: &str) -> (String, Code) {
    coded(
        WorkspaceServiceClient::new(ch)
            .get_workspace(authed(
                pb::GetWorkspaceRequest {
                    name: name.into(),
                    id: String::new(),
                },
                token,
            ))
            .await,
    )
}

/// What CreateWorkspace sustains: calls per second, closed loop, `workers` concurrent, `secs`.
async fn sustained(chans: &[Channel], token: &str, secs: f64, workers: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (ch, token, done) = (
            chans[w % chans.len()].clone(),
            token.to_owned(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < until {
                let (_, c) = create(ch.clone(), token.clone(), format!("cal-{w}-{i}")).await;
                assert_eq!(c, Code::Ok, "calibration call failed");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    done.load(Ordering::Relaxed) as f64 / secs
}

async fn overload(a: &Args, url: &str, key: &Path) {
    let secs = a.seconds.unwrap_or(10.0);
    let extra = a
        .max_in_flight
        .map(|n| vec!["--max-in-flight".to_owned(), n.to_string()])
        .unwrap_or_default();
    let server = Server::start(url, key, extra);
    // Enough connections that the generator never waits for a stream of its own: at four
    // times what the server sustains, calls in flight (refused ones included) outnumbered
    // the streams of the usual 4 connections (128 each), and calls queued in the generator
    // for seconds.
    let chans = channels_n(server.addr, OVERLOAD_CONNECTIONS).await;
    let token = token("alice", &[], &[]);
    // No more callers than places in flight: a closed loop must not be refused.
    let workers = a.max_in_flight.map_or(16, |n| (n as usize).min(16));
    let x = sustained(&chans, &token, secs, workers).await;
    println!("CreateWorkspace sustains {x:.0}/s (closed loop, {workers} concurrent, {secs} s)");
    println!();
    println!(
        "| offered | calls/s | answered | OK | OVERLOADED | other | p50 OK | p99 OK | p99 started late | server CPU/call | generator CPU/call | PostgreSQL CPU/call |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut phases = Vec::new();
    for (label, factor) in [("half", 0.5), ("four", 4.0)] {
        let rate = x * factor;
        let chans = chans.clone();
        let token = token.clone();
        let cpu0 = cpu_time(server.pid());
        let gen0 = cpu_time(std::process::id());
        let db0 = database_cpu_time();
        let out = open_loop(rate, secs, move |i| {
            create(
                chans[i as usize % chans.len()].clone(),
                token.clone(),
                format!("load-{label}-{i}"),
            )
        })
        .await;
        let cpu = cpu_time(server.pid()) - cpu0;
        let generator = cpu_time(std::process::id()) - gen0;
        let db = database_cpu_time().saturating_sub(db0);
        let ok = out.codes.get("Ok").copied().unwrap_or(0);
        let overloaded = out
            .codes
            .get("OVERLOADED/Unavailable")
            .copied()
            .unwrap_or(0);
        let other: Vec<String> = out
            .codes
            .iter()
            .filter(|(k, _)| *k != "Ok" && *k != "OVERLOADED/Unavailable")
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "| {factor}x | {rate:.0} | {}/{} | {ok} | {overloaded} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} µs | {:.0} µs | {:.0} µs |",
            out.codes.values().sum::<u64>() - out.codes.get("NoAnswer").copied().unwrap_or(0),
            out.offered,
            if other.is_empty() {
                "0".into()
            } else {
                other.join(", ")
            },
            out.ms(0.5),
            out.ms(0.99),
            out.late_ms(0.99),
            cpu.as_micros() as f64 / out.offered.max(1) as f64,
            generator.as_micros() as f64 / out.offered.max(1) as f64,
            db.as_micros() as f64 / out.offered.max(1) as f64,
        );
        phases.push((factor, out.ms(0.99), out.p99_by_second()));
    }
    println!();
    for (factor, _, seconds) in &phases {
        if let (Some(min), Some(max)) = (seconds.first(), seconds.last()) {
            println!(
                "p99 OK second by second at {factor}x: min {min:.2} ms, median {:.2} ms, max {max:.2} ms ({} seconds)",
                median(seconds),
                seconds.len()
            );
        }
    }
    if let [(_, half, half_s), (_, four, four_s)] = &phases[..]
        && !half_s.is_empty()
        && !four_s.is_empty()
    {
        println!(
            "p99 OK at 4x over 0.5x: {:.2}x over the whole phases, {:.2}x between their median seconds",
            four / half,
            median(four_s) / median(half_s)
        );
    }
}

async fn soak(a: &Args, url: &str, key: &Path) {
    let secs = a.seconds.unwrap_or(600.0);
    let mut server = Server::start(url, key, Vec::new());
    let chans = channels(server.addr).await;
    let alice = token("alice", &[], &[]);
    let root = token("root", &["platform-admin"], &[]);
    // Workspaces are created and listed by many users, as on a platform: one user whose
    // memberships grow without end would measure that user's listing cost, not the server.
    let users: Arc<Vec<String>> = Arc::new(
        (0..USERS)
            .map(|u| token(&format!("user-{u}"), &[], &[]))
            .collect(),
    );
    let (_, c) = create(chans[0].clone(), alice.clone(), "soak-home".into()).await;
    assert_eq!(c, Code::Ok);
    let acked_ws = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_members = Arc::new(Mutex::new(Vec::<String>::new()));
    let (ws, members) = (acked_ws.clone(), acked_members.clone());
    let (a2, r2) = (alice.clone(), root.clone());
    let chans2 = chans.clone();
    let op = Arc::new(move |i: u64| {
        let ch = chans2[i as usize % CONNECTIONS].clone();
        let (alice, root, ws, members) = (a2.clone(), r2.clone(), ws.clone(), members.clone());
        let user = users[(i / 10) as usize % USERS].clone();
        async move {
            let op = i % 10;
            let (label, c) = match op {
                // A client that gives up at once, or within 1-3 ms: its calls are dropped,
                // or run to their end if they have begun to commit, and must not hold the
                // server.
                0 if i.is_multiple_of(30) => {
                    let name = format!("soak-{i}");
                    let mut r = create_request(&user, name.clone());
                    r.set_timeout(Duration::from_millis(i / 30 % 4));
                    let (reason, c) =
                        coded(WorkspaceServiceClient::new(ch).create_workspace(r).await);
                    if c == Code::Ok {
                        ws.lock().expect("lock").push(name);
                    }
                    ("create-left", (reason, c))
                }
                0..=2 => ("get", get_ws(ch, &alice, "soak-home").await),
                3 | 4 => (
                    "check",
                    coded(
                        MembershipServiceClient::new(ch)
                            .check_access(authed(
                                pb::CheckAccessRequest {
                                    workspace: "soak-home".into(),
                                    permission: "resources.write".into(),
                                    subject: format!("m-{}", i.saturating_sub(3)),
                                    ..Default::default()
                                },
                                &root,
                            ))
                            .await,
                    ),
                ),
                5 => (
                    "list",
                    coded(
                        WorkspaceServiceClient::new(ch)
                            .list_workspaces(authed(
                                pb::ListWorkspacesRequest {
                                    page_size: 50,
                                    ..Default::default()
                                },
                                &user,
                            ))
                            .await,
                    ),
                ),
                6 => {
                    let name = format!("soak-{i}");
                    let (reason, c) = create(ch, user, name.clone()).await;
                    if c == Code::Ok {
                        ws.lock().expect("lock").push(name);
                    }
                    ("create", (reason, c))
                }
                7 => {
                    let subject = format!("m-{i}");
                    let (reason, c) = coded(
                        MembershipServiceClient::new(ch)
                            .add_member(authed(
                                pb::AddMemberRequest {
                                    workspace: "soak-home".into(),
                                    subject: subject.clone(),
                                    role: pb::Role::Viewer as i32,
                                    ..Default::default()
                                },
                                &alice,
                            ))
                            .await,
                    );
                    if c == Code::Ok {
                        members.lock().expect("lock").push(subject);
                    }
                    ("add-member", (reason, c))
                }
                8 => (
                    "bad-token",
                    get_ws(ch, &format!("not.a.token{i}"), "soak-home").await,
                ),
                _ => {
                    let mut grpc = tonic::client::Grpc::new(ch);
                    let path =
                        PathAndQuery::try_from(format!("/x{i:x}.Svc/M{i:x}")).expect("a path");
                    let c = match grpc.ready().await {
                        Ok(()) => coded(
                            grpc.unary::<(), (), _>(
                                Request::new(()),
                                path,
                                tonic_prost::ProstCodec::default(),
                            )
                            .await,
                        ),
                        Err(_) => ("not-ready/".into(), Code::Unavailable),
                    };
                    ("unknown-path", c)
                }
            };
            let (reason, c) = c;
            (format!("{label} {reason}"), c)
        }
    });
    if a.warm_up > 0.0 {
        let op = op.clone();
        let warm = open_loop(a.rate, a.warm_up, move |i| op(i)).await;
        let internal: u64 = warm
            .codes
            .iter()
            .filter(|(k, _)| k.ends_with("Internal"))
            .map(|(_, v)| v)
            .sum();
        println!(
            "warm-up: {} calls over {:.0} s, {internal} INTERNAL, RSS {:.1} MB",
            warm.offered,
            warm.elapsed.as_secs_f64(),
            rss(server.pid()) as f64 / 1e6
        );
    }
    let pid = server.pid();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let r = rss(pid);
            println!(
                "t = {:>4.0} s  RSS {:.1} MB",
                start.elapsed().as_secs_f64(),
                r as f64 / 1e6
            );
            samples.push((start.elapsed(), r));
            if r == 0 {
                return samples;
            }
        }
    });
    // Names and subjects of the window follow the warm-up's.
    let out = open_loop(a.rate, secs, move |i| op(i + 100_000_000)).await;
    let rss_end = rss(server.pid());
    sampler.abort();
    println!();
    println!(
        "{} calls offered at {}/s over {:.0} s; answers by call and code:",
        out.offered,
        a.rate,
        out.elapsed.as_secs_f64()
    );
    for (k, v) in &out.codes {
        println!("  {k}: {v}");
    }
    let internal: u64 = out
        .codes
        .iter()
        .filter(|(k, _)| k.ends_with("Internal"))
        .map(|(_, v)| v)
        .sum();
    println!("INTERNAL answers: {internal}");
    println!("RSS at the end: {:.1} MB", rss_end as f64 / 1e6);
    println!(
        "p50 {:.2} ms, p99 {:.2} ms (OK calls)",
        out.ms(0.5),
        out.ms(0.99)
    );

    // Every acknowledged write survives SIGKILL and a restart.
    server = server.crash_and_restart();
    let chans = channels(server.addr).await;
    let ws = acked_ws.lock().expect("lock").clone();
    let members = acked_members.lock().expect("lock").clone();
    let mut lost = 0;
    for (i, name) in ws.iter().enumerate() {
        let (_, c) = get_ws(chans[i % CONNECTIONS].clone(), &root, name).await;
        lost += u64::from(c != Code::Ok);
    }
    for (i, subject) in members.iter().enumerate() {
        let r = MembershipServiceClient::new(chans[i % CONNECTIONS].clone())
            .get_member(authed(
                pb::GetMemberRequest {
                    workspace: "soak-home".into(),
                    subject: subject.clone(),
                    ..Default::default()
                },
                &root,
            ))
            .await;
        lost += u64::from(r.is_err());
    }
    println!(
        "after SIGKILL and restart: {} acknowledged workspaces and {} members checked, {lost} lost",
        ws.len(),
        members.len()
    );
    drop(server);
}

/// The delay from commit to a watcher on another replica (issue 15).
async fn watch(a: &Args, url: &str, key: &Path, replicas: bool) {
    let secs = a.seconds.unwrap_or(20.0);
    let writer = Server::start(url, key, Vec::new());
    let follower = replicas.then(|| Server::start(url, key, Vec::new()));
    let chans = channels(writer.addr).await;
    let watch_chans = match &follower {
        Some(f) => channels(f.addr).await,
        None => chans.clone(),
    };
    let svc = token("svc", &["platform-service"], &[]);
    let mut stream = EventServiceClient::new(watch_chans[0].clone())
        .watch_events(authed(
            pb::WatchEventsRequest {
                types: vec![pb::EventType::WorkspaceCreated as i32],
                ..Default::default()
            },
            &svc,
        ))
        .await
        .expect("watch")
        .into_inner();
    let delays = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let seen = Arc::new(AtomicU64::new(0));
    let reader = {
        let (delays, seen) = (delays.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok(Some(msg)) = stream.message().await {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                for e in msg.events {
                    let t = e.time.unwrap_or_default();
                    let at = Duration::new(t.seconds as u64, t.nanos as u32);
                    let delay = now.saturating_sub(at);
                    let _ = delays
                        .lock()
                        .expect("delays")
                        .record(delay.as_micros() as u64);
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let alice = token("alice", &[], &[]);
    let out = open_loop(a.rate, secs, move |i| {
        create(
            chans[i as usize % CONNECTIONS].clone(),
            alice.clone(),
            format!("watched-{i}"),
        )
    })
    .await;
    let ok = out.codes.get("Ok").copied().unwrap_or(0);
    let until = Instant::now() + Duration::from_secs(10);
    while seen.load(Ordering::Relaxed) < ok && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.abort();
    let h = delays.lock().expect("delays").clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "watcher on {}: {} of {ok} acknowledged creates seen ({} calls offered at {}/s for {secs} s)",
        if replicas {
            "another replica"
        } else {
            "the same process"
        },
        seen.load(Ordering::Relaxed),
        out.offered,
        a.rate
    );
    println!(
        "delay from commit to the watcher: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
    drop(follower);
    drop(writer);
}

fn main() {
    let a = args();
    if a.mode.is_empty() {
        eprintln!("usage: cargo bench --bench stress -- overload|soak [--seconds S] [--rate R]");
        return;
    }
    // Before the runtime, which sizes its threads to the CPUs this process may use.
    // PostgreSQL is pinned with the server only when it serves the run.
    let on_postgres = common::postgres_server().is_some();
    let pinned = a.pin.then(|| Pinned::new(on_postgres));
    if let Some(p) = &pinned {
        SERVER_CPUS.set(p.servers.clone()).ok();
        println!(
            "the generator on CPU 0, the server{} on CPUs {}",
            if on_postgres {
                " and a local PostgreSQL"
            } else {
                ""
            },
            p.servers
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("key");
        std::fs::write(&key, KEY).expect("key");
        let db = BenchDb::new(dir.path(), "wsstress").await;
        let url = db.url.clone();
        println!("backend: {}", db.backend());
        if a.mode == "overload" {
            overload(&a, &url, &key).await;
        } else if a.mode == "watch" {
            watch(&a, &url, &key, db.backend() == "PostgreSQL").await;
        } else {
            soak(&a, &url, &key).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        db.drop_it().await;
    });
}
