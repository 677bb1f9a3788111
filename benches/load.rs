//! Load benchmark: seeds a database, starts the real `workspaced` binary and a bare tonic
//! server (grpc.health.v1 Check, the baseline B), and drives both with the same closed-loop
//! load generator over 4 HTTP/2 connections at concurrency 1, 16 and 64, in interleaved
//! rounds. Prints per RPC: requests/s, p50, p99, the ratio to B at the same concurrency, and
//! the server's CPU time per request. A GPU admission "request" is a pair, AdmitGpuRequest
//! then ReleaseGpuRequest, into one hot workspace or spread over 1,000. CheckAccess runs
//! with a token of no groups and of 20 (one of them a member), and BatchCheckAccess with 100
//! checks (the caller's workspace and 99 it cannot read). ListEvents reads a page of 100
//! from a history of `--events` events, a tenth of them in the hot `ws-000000`, after a
//! revision spread over it: of a type found once in 99,991 events, of every workspace or
//! of the hot one, and every type of the hot one as its admin.
//!
//! With `--rate R[,R...]` the load is open instead: calls start at R per second whatever the
//! server does, each in its own task, and each call's latency counts from its intended
//! start (no coordinated omission); the table then gives p50, p99 and p999, the server's CPU
//! per call at that rate, and the calls that failed (OVERLOADED, say) instead of stopping.
//!
//! `cargo bench --bench load -- [--workspaces N] [--memberships M] [--seconds S] [--rounds R]
//! [--events E] [--pin] [--only RPC[,RPC...]] [--rate R[,R...]]` (defaults: 100000
//! workspaces, 1000000 memberships, 1000000 events, 2 s per measurement, 3 rounds; `--pin`
//! puts the generator on CPU 0 and the servers on the others). On PostgreSQL when
//! `WORKSPACED_BENCH_DATABASE_URL` is set (a fresh database is made in it).

use std::{
    collections::BTreeMap,
    future::Future,
    net::SocketAddr,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

mod common;

use common::{
    Argv, BenchDb, CONNECTIONS, KEY, Pinned, Proc, authed, channels, cpu_time, database_cpu_time,
    free_addr, on_cpus, token,
};
use hdrhistogram::Histogram;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use workspaced::{
    domain::{
        model::{EventObject, Resource},
        page,
        workspaces::ListWorkspaces,
    },
    pb::v1::{
        self as pb, event_service_client::EventServiceClient,
        membership_service_client::MembershipServiceClient,
        policy_service_client::PolicyServiceClient,
        workspace_service_client::WorkspaceServiceClient,
    },
    store::Store,
};

const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// What is measured, in order; `--only` picks by prefix.
const TARGETS: [&str; 22] = [
    BASELINE,
    "CheckAccess",
    "CheckAccess, 20 groups",
    "BatchCheckAccess of 100",
    "GetWorkspace",
    "ListWorkspaces first page",
    "ListWorkspaces last page",
    "ListWorkspaces, member of 1",
    "ListWorkspaces, member of all",
    "ListMembers",
    "ListResources",
    "ListPolicies",
    "ListEvents, rare type",
    "ListEvents, rare type, hot workspace",
    "ListEvents, hot workspace, its admin",
    "CreateWorkspace",
    "CreateWorkspace, no events",
    "AddMember",
    "AddMember, no events",
    "GetGpuUsage",
    "GPU admit+release, hot",
    "GPU admit+release, spread",
];
/// The subject `seed` makes a viewer of every workspace.
const MEMBER_OF_ALL: &str = "member-of-all";

/// How calls are offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Load {
    /// This many callers, each starting its next call when the last is answered.
    Closed(usize),
    /// Calls starting at this many per second.
    Open(u32),
}

impl Load {
    /// The number that names the load in the table and in the names of what it creates.
    fn number(self) -> usize {
        match self {
            Load::Closed(c) => c,
            Load::Open(r) => r as usize,
        }
    }

    fn label(self) -> String {
        match self {
            Load::Closed(c) => c.to_string(),
            Load::Open(r) => format!("{r}/s"),
        }
    }
}

struct Args {
    workspaces: usize,
    memberships: usize,
    /// Events in the change history, seeded when a ListEvents target is measured.
    events: usize,
    seconds: f64,
    rounds: usize,
    /// Runs the load generator on CPU 0 and the servers on the others, so that the
    /// generator's work does not preempt the server's (what the p99 figures are most
    /// sensitive to).
    pin: bool,
    /// Measures only the RPCs whose name starts with one of these comma-separated prefixes
    /// (and B), as for profiling one.
    only: Option<String>,
    /// Open-loop rates, calls per second; closed loops at `CONCURRENCY` when empty.
    rates: Vec<u32>,
}

fn args() -> Args {
    let argv = Argv::from_env();
    Args {
        workspaces: argv.number("--workspaces").map_or(100_000, |v| v as usize),
        memberships: argv
            .number("--memberships")
            .map_or(1_000_000, |v| v as usize),
        events: argv.number("--events").map_or(1_000_000, |v| v as usize),
        seconds: argv.number("--seconds").unwrap_or(2.0),
        rounds: argv.number("--rounds").map_or(3, |v| v as usize),
        pin: argv.switch("--pin"),
        only: argv.text("--only"),
        rates: argv
            .text("--rate")
            .map(|r| {
                r.split(',')
                    .map(|x| x.trim().parse().expect("--rate takes calls per second"))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Fills the database with `n` private workspaces, each with its policy and an admin, and
/// `m` memberships spread over them (and one subject in all of them), in large batched
/// inserts.
async fn seed(url: &str, n: usize, m: usize) {
    let store = Store::connect(url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let db = Database::connect(url).await.expect("connect");
    let backend = db.get_database_backend();
    let now = "2026-01-01 00:00:00+00:00";
    let tx = db.begin().await.expect("begin");
    if backend == DbBackend::Postgres {
        seed_postgres(&tx, n, m, now).await;
        seed_lists(&tx, now).await;
        tx.commit().await.expect("commit");
        // Vacuumed as well as analyzed: PostgreSQL vacuums a table after enough inserts
        // anyway (`autovacuum_vacuum_insert_threshold`), and done here that falls in the
        // seed, not in a measurement (at 1M workspaces, 20-group checks had a p99 of 33 ms
        // with 43 calls refused; with the vacuum here, 3.9 ms and none). It and the
        // checkpoint below are the seed's cost, not the calls'.
        db.execute_unprepared("VACUUM (ANALYZE)")
            .await
            .expect("vacuum");
        // Writes the seed out now: a checkpoint that falls into a measurement (the seed's
        // WAL triggers one) makes reads wait for its I/O.
        db.execute_unprepared("CHECKPOINT")
            .await
            .expect("checkpoint");
        store.close().await.ok();
        return;
    }
    let batch = 500;
    for start in (0..n).step_by(batch) {
        let end = (start + batch).min(n);
        let mut ws = Vec::new();
        let mut pol = Vec::new();
        for i in start..end {
            ws.push(format!(
                "('00000000-0000-4000-8000-{i:012}', 'ws-{i:06}', '', '', '{{}}', 'private', 'active', false, 'seed', '{now}', '{now}', 1)"
            ));
            pol.push(format!(
                "('00000000-0000-4000-8000-{i:012}', 0, 1000000, 0, 0, false, false, false, '[]', 0, 0, 'seed', '{now}', 1)"
            ));
        }
        tx.execute_unprepared(&format!(
            "INSERT INTO workspaces (id, name, display_name, description, labels, visibility, state, built_in, created_by, create_time, update_time, version) VALUES {}",
            ws.join(",")
        ))
        .await
        .expect("insert workspaces");
        tx.execute_unprepared(&format!(
            "INSERT INTO policies (workspace_id, priority_min, priority_max, max_gprs, max_exit_duration_us, enforce_idle_timeout, requeue_on_failure, enable_auto_eviction, gpu_shapes, max_gpu_per_gpr, max_memory_per_gpr_bytes, updated_by, update_time, version) VALUES {}",
            pol.join(",")
        ))
        .await
        .expect("insert policies");
    }
    // Membership k makes user-k a member of workspace k / per (its admin when k % per == 0);
    // every workspace i also has the group team-(i % 1000) as a viewer.
    let per = (m / n.max(1)).max(1);
    let subjects = (0..m).map(|k| {
        let role = if k % per == 0 { "admin" } else { "viewer" };
        (k / per % n.max(1), false, format!("user-{k}"), role)
    });
    let groups = (0..n).map(|i| (i, true, format!("team-{}", i % 1000), "viewer"));
    // One subject is a viewer of every workspace, for the listings of a member of many.
    let everywhere = (0..n).map(|i| (i, false, MEMBER_OF_ALL.to_owned(), "viewer"));
    let mut rows = subjects
        .chain(groups)
        .chain(everywhere)
        .map(|(i, is_group, principal, role)| {
            format!(
                "('00000000-0000-4000-8000-{i:012}', 'ws-{i:06}', {is_group}, '{principal}', '{role}', 'seed', '{now}', '{now}', 1)"
            )
        })
        .peekable();
    while rows.peek().is_some() {
        let chunk: Vec<String> = rows.by_ref().take(batch).collect();
        tx.execute_unprepared(&format!(
            "INSERT INTO memberships (workspace_id, workspace_name, is_group, principal, role, added_by, create_time, update_time, version) VALUES {}",
            chunk.join(",")
        ))
        .await
        .expect("insert memberships");
    }
    seed_lists(&tx, now).await;
    tx.commit().await.expect("commit");
    db.execute_raw(Statement::from_string(backend, "ANALYZE".to_owned()))
        .await
        .expect("analyze");
    store.close().await.ok();
}

/// `e` events in the change history, in the last `e` microseconds: registrations of a
/// resource, one in 99,991 an unregistration (a prime, so that the hot workspace holds a
/// tenth of those too); every tenth in `ws-000000`, the rest spread over the `n`
/// workspaces. They carry one resource (a reader decodes it; which one does not matter).
async fn seed_events(url: &str, n: usize, e: usize) {
    if e == 0 {
        return;
    }
    let db = Database::connect(url).await.expect("connect");
    let backend = db.get_database_backend();
    let (numbers, name, id) = if backend == DbBackend::Postgres {
        (
            format!("generate_series(1, {e}) AS g(k)"),
            "'ws-' || lpad((w)::text, greatest(6, length((w)::text)), '0')",
            "'00000000-0000-4000-8000-' || lpad((w)::text, 12, '0')",
        )
    } else {
        (
            format!(
                "(WITH RECURSIVE g(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM g \
                 WHERE k < {e}) SELECT k FROM g) AS g"
            ),
            "printf('ws-%06d', w)",
            "printf('00000000-0000-4000-8000-%012d', w)",
        )
    };
    // Read first: on SQLite each insert moves `latest` (a trigger).
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT latest FROM event_log WHERE id = 1",
        ))
        .await
        .expect("read the history")
        .expect("the counter");
    let latest: i64 = row.try_get("", "latest").expect("latest");
    let now = chrono::Utc::now();
    let object = serde_json::to_string(&EventObject::Resource(Resource {
        workspace: "ws-000000".into(),
        kind: "model".into(),
        resource_id: "m".into(),
        registered_by: "seed".into(),
        create_time: now,
    }))
    .expect("encode");
    let sql = format!(
        "INSERT INTO events (revision, time_us, kind, workspace, workspace_id, actor, \
         request_id, method, object) SELECT {latest} + k, {time_us} + k, \
         CASE WHEN k % 99991 = 0 THEN 'resource_unregistered' \
         ELSE 'resource_registered' END, {name}, {id}, 'seed', '', 'seed', '{object}' \
         FROM (SELECT k, CASE WHEN k % 10 = 0 THEN 0 ELSE k % {n} END AS w FROM {numbers}) \
         AS s",
        n = n.max(1),
        // In the past, so that the times of later events do not go back.
        time_us = now.timestamp_micros() - e as i64,
    );
    db.execute_unprepared(&sql).await.expect("seed events");
    db.execute_unprepared("UPDATE event_log SET latest = (SELECT MAX(revision) FROM events)")
        .await
        .expect("seed events");
    if backend == DbBackend::Postgres {
        // As in `seed`: the vacuum and the checkpoint are the seed's cost, not the calls'.
        for sql in ["VACUUM (ANALYZE) events", "CHECKPOINT"] {
            db.execute_unprepared(sql).await.expect("settle the events");
        }
    } else {
        db.execute_unprepared("ANALYZE")
            .await
            .expect("analyze events");
    }
}

/// How many members and resources `seed_lists` puts in `ws-000000`.
const CROWD: usize = 200;

/// `CROWD` more viewers and `CROWD` resources in `ws-000000`, so that its listings have
/// pages of 50 to read.
async fn seed_lists(tx: &sea_orm::DatabaseTransaction, now: &str) {
    let id = "00000000-0000-4000-8000-000000000000";
    let members: Vec<String> = (0..CROWD)
        .map(|j| format!("('{id}', 'ws-000000', false, 'crowd-{j:03}', 'viewer', 'seed', '{now}', '{now}', 1)"))
        .collect();
    tx.execute_unprepared(&format!(
        "INSERT INTO memberships (workspace_id, workspace_name, is_group, principal, role, added_by, create_time, update_time, version) VALUES {}",
        members.join(",")
    ))
    .await
    .expect("insert the crowd");
    let resources: Vec<String> = (0..CROWD)
        .map(|j| format!("('{id}', 'model', 'model-{j:03}', 'seed', '{now}')"))
        .collect();
    tx.execute_unprepared(&format!(
        "INSERT INTO resources (workspace_id, kind, resource_id, registered_by, create_time) VALUES {}",
        resources.join(",")
    ))
    .await
    .expect("insert resources");
}

/// `seed` on PostgreSQL: the same rows, made by the database from `generate_series` (10M
/// memberships sent as batched INSERTs had not finished after 9 minutes).
async fn seed_postgres(tx: &sea_orm::DatabaseTransaction, n: usize, m: usize, now: &str) {
    let per = (m / n.max(1)).max(1);
    // Rust's `{i:012}` and `{i:06}`: zero-padded, never cut.
    let id = |v: &str| format!("'00000000-0000-4000-8000-' || lpad(({v})::text, 12, '0')");
    let name =
        |v: &str| format!("'ws-' || lpad(({v})::text, greatest(6, length(({v})::text)), '0')");
    let now = format!("'{now}'::timestamptz");
    let statements = [
        format!(
            "INSERT INTO workspaces (id, name, display_name, description, labels, visibility, \
             state, built_in, created_by, create_time, update_time, version) \
             SELECT {}, {}, '', '', '{{}}', 'private', 'active', false, 'seed', {now}, {now}, 1 \
             FROM generate_series(0, {n} - 1) AS i",
            id("i"),
            name("i")
        ),
        format!(
            "INSERT INTO policies (workspace_id, priority_min, priority_max, max_gprs, \
             max_exit_duration_us, enforce_idle_timeout, requeue_on_failure, \
             enable_auto_eviction, gpu_shapes, max_gpu_per_gpr, max_memory_per_gpr_bytes, \
             updated_by, update_time, version) SELECT {}, 0, 1000000, 0, 0, false, false, \
             false, '[]', 0, 0, 'seed', {now}, 1 FROM generate_series(0, {n} - 1) AS i",
            id("i")
        ),
        // As in `seed`: user-k in workspace k / per (its admin when k % per == 0), the group
        // team-(i % 1000) in every workspace i, and one subject in all of them.
        format!(
            "INSERT INTO memberships (workspace_id, workspace_name, is_group, principal, role, \
             added_by, create_time, update_time, version) SELECT {}, {}, false, 'user-' || k, \
             CASE WHEN k % {per} = 0 THEN 'admin' ELSE 'viewer' END, 'seed', {now}, {now}, 1 \
             FROM generate_series(0, {m} - 1) AS k",
            id(&format!("k / {per} % {n}")),
            name(&format!("k / {per} % {n}"))
        ),
        format!(
            "INSERT INTO memberships (workspace_id, workspace_name, is_group, principal, role, \
             added_by, create_time, update_time, version) SELECT {}, {}, g.is_group, \
             CASE WHEN g.is_group THEN 'team-' || (i % 1000) ELSE '{MEMBER_OF_ALL}' END, \
             'viewer', 'seed', {now}, {now}, 1 FROM generate_series(0, {n} - 1) AS i, \
             (VALUES (true), (false)) AS g(is_group)",
            id("i"),
            name("i")
        ),
    ];
    // The per-state counts are added once, not per row: the trigger's million updates of the
    // same few rows in one transaction each walk the versions before them.
    tx.execute_unprepared("ALTER TABLE workspaces DISABLE TRIGGER workspace_counts_tally")
        .await
        .expect("seed");
    for sql in statements {
        tx.execute_unprepared(&sql).await.expect("seed");
    }
    tx.execute_unprepared("ALTER TABLE workspaces ENABLE TRIGGER workspace_counts_tally")
        .await
        .expect("seed");
    tx.execute_unprepared(&format!(
        "SELECT workspace_counts_add('active', 'private', {n})"
    ))
    .await
    .expect("seed");
}

/// Whether a listing answered a full page of 50 items; anything else is a failure, printed.
fn page_of_50(items: Result<usize, tonic::Status>) -> bool {
    match items {
        Ok(50) => true,
        Ok(n) => ok::<()>(Err(tonic::Status::internal(format!(
            "a page of {n} where 50 were expected"
        )))),
        Err(e) => ok::<()>(Err(e)),
    }
}

/// Whether a call succeeded; the first failures are printed, since a benchmark of errors
/// measures nothing.
fn ok<T>(r: Result<T, tonic::Status>) -> bool {
    if let Err(e) = &r {
        eprintln!("call failed: {e:?}");
    }
    r.is_ok()
}

/// The baseline every RPC is compared with: grpc.health.v1 Check on a bare tonic server.
const BASELINE: &str = "B (bare tonic)";

/// One measurement of `call` under `load` for `secs`: calls made, time taken, the latency of
/// the calls that succeeded (from their intended start in an open loop), calls that failed
/// (a closed loop stops at the first).
async fn measure<F, Fut>(load: Load, secs: f64, call: F) -> (u64, Duration, Histogram<u64>, u64)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    match load {
        Load::Closed(concurrency) => {
            let until = start + Duration::from_secs_f64(secs);
            let mut tasks = Vec::new();
            for w in 0..concurrency {
                let call = call.clone();
                tasks.push(tokio::spawn(async move {
                    let mut h =
                        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                    let mut n = 0u64;
                    while Instant::now() < until {
                        let t = Instant::now();
                        assert!(call(w, n).await, "a benchmark call failed");
                        h.record(t.elapsed().as_micros().max(1) as u64).ok();
                        n += 1;
                    }
                    h
                }));
            }
            for t in tasks {
                all.add(t.await.expect("worker")).expect("merge");
            }
            (all.len(), start.elapsed(), all, 0)
        }
        Load::Open(rate) => {
            let n = (f64::from(rate) * secs) as u64;
            let mut tasks = Vec::with_capacity(n as usize);
            for i in 0..n {
                let intended = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
                tokio::time::sleep_until(intended.into()).await;
                let call = call.clone();
                tasks.push(tokio::spawn(async move {
                    let ok = call(i as usize % 64, i).await;
                    (ok, intended.elapsed())
                }));
            }
            let mut failed = 0;
            for t in tasks {
                let (ok, latency) = t.await.expect("call");
                if ok {
                    all.record(latency.as_micros().max(1) as u64).ok();
                } else {
                    failed += 1;
                }
            }
            (n, start.elapsed(), all, failed)
        }
    }
}

#[derive(Default)]
struct Total {
    requests: u64,
    failed: u64,
    elapsed: Duration,
    cpu: Duration,
    /// PostgreSQL's, when it is the store.
    db_cpu: Duration,
    hist: Option<Histogram<u64>>,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--echo-server") {
        let addr: SocketAddr = argv[i + 1].parse().expect("echo address");
        return echo_server(addr);
    }
    let a = args();
    // Before the runtime's threads exist, so that they inherit it (and tokio, which sizes
    // its pool by the CPUs this process may use, starts one worker).
    let pinned = a.pin.then(|| Pinned::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(a, pinned.as_ref().map(|p| p.servers.as_str())));
}

/// The baseline: a bare tonic server whose only RPC is the health check.
fn echo_server(addr: SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (_reporter, health) = tonic_health::server::health_reporter();
        tonic::transport::Server::builder()
            .add_service(health)
            .serve(addr)
            .await
            .expect("echo server");
    });
}

/// The benchmark, its servers on `cpus` when given.
async fn run(a: Args, cpus: Option<&str>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = BenchDb::new(dir.path(), "wsbench").await;
    let (url, backend) = (db.url.clone(), db.backend());
    eprintln!(
        "seeding {} workspaces and {} memberships into {}",
        a.workspaces, a.memberships, backend
    );
    let t = Instant::now();
    seed(&url, a.workspaces, a.memberships).await;
    eprintln!("seeded in {:.1} s", t.elapsed().as_secs_f64());
    let targets: Vec<&str> = TARGETS
        .into_iter()
        .filter(|t| {
            *t == BASELINE
                || a.only
                    .as_deref()
                    .is_none_or(|o| o.split(',').any(|p| t.starts_with(p)))
        })
        .collect();
    if targets.iter().any(|t| t.starts_with("ListEvents")) {
        let t = Instant::now();
        seed_events(&url, a.workspaces, a.events).await;
        eprintln!(
            "seeded {} events in {:.1} s",
            a.events,
            t.elapsed().as_secs_f64()
        );
    }

    let key = dir.path().join("key");
    std::fs::write(&key, KEY).expect("key");
    let ws_addr = free_addr();
    let echo_addr = free_addr();
    let serve = |addr: SocketAddr, url: &str, extra: &[&str]| {
        Proc(
            on_cpus(cpus, std::path::Path::new(env!("CARGO_BIN_EXE_workspaced")))
                .args([
                    "serve",
                    "--listen",
                    &addr.to_string(),
                    "--database-url",
                    url,
                ])
                .args(extra)
                .arg("--jwt-hs256-secret-file")
                .arg(&key)
                .env("RUST_LOG", "warn")
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start workspaced"),
        )
    };
    let started = Instant::now();
    let server = serve(ws_addr, &url, &[]);
    let echo = Proc(
        on_cpus(cpus, &std::env::current_exe().expect("own path"))
            .args(["--echo-server", &echo_addr.to_string()])
            .spawn()
            .expect("start the echo server"),
    );
    let ws_channels = channels(ws_addr).await;
    common::wait_serving(&ws_channels[0]).await;
    let start_up = started.elapsed();
    let echo_channels = channels(echo_addr).await;

    let user = token("user-42", &[], &[]);
    let member_of_all = token(MEMBER_OF_ALL, &[], &[]);
    // The same user in 20 groups, one of which is a member of its workspace.
    let teams: Vec<String> = (0..20).map(|t| format!("team-{t}")).collect();
    let grouped = token("user-42", &[], &teams);
    let admin = token("root", &["platform-admin"], &[]);
    // The admin of ws-000000, as `seed` lays memberships out.
    let hot_admin = token("user-0", &[], &[]);
    let events = a.events as i64;
    let sched = token("sched", &["platform-service"], &[]);
    // GPU admission goes to one hot workspace, or is spread over the first 1,000.
    let spread = a.workspaces.clamp(1, 1000);
    let last_name = format!("ws-{:06}", a.workspaces.saturating_sub(51));
    // user-42's workspace, as `seed` lays memberships out.
    let per = (a.memberships / a.workspaces.max(1)).max(1);
    let home: &'static str =
        Box::leak(format!("ws-{:06}", 42 / per % a.workspaces.max(1)).into_boxed_str());
    let last_token = page::next_token(vec![last_name], &ListWorkspaces::default().fingerprint());

    // The writes without the change history, for what writing it costs: a second server,
    // on a second database seeded alike, that writes no events.
    let bare_writes = if targets.iter().any(|t| t.ends_with("no events")) {
        let db2 = BenchDb::new(dir.path(), "wsbench_noev").await;
        seed(&db2.url, a.workspaces, a.memberships).await;
        let addr = free_addr();
        let proc = serve(addr, &db2.url, &["--without-events"]);
        Some((db2, proc, channels(addr).await))
    } else {
        None
    };
    let loads: Vec<Load> = if a.rates.is_empty() {
        CONCURRENCY.into_iter().map(Load::Closed).collect()
    } else {
        a.rates.iter().map(|&r| Load::Open(r)).collect()
    };
    let mut totals: BTreeMap<(Load, &str), Total> = BTreeMap::new();
    for &load in &loads {
        let c = load.number();
        for round in 0..a.rounds {
            for &target in &targets {
                let (pid, chans) = if target == BASELINE {
                    (echo.0.id(), echo_channels.clone())
                } else if let Some((_, proc, chans)) = bare_writes
                    .as_ref()
                    .filter(|_| target.ends_with("no events"))
                {
                    (proc.0.id(), chans.clone())
                } else {
                    (server.0.id(), ws_channels.clone())
                };
                let (user, admin, last_token) = (user.clone(), admin.clone(), last_token.clone());
                let (sched, grouped, member_of_all) =
                    (sched.clone(), grouped.clone(), member_of_all.clone());
                let hot_admin = hot_admin.clone();
                let cpu0 = cpu_time(pid);
                let db_cpu0 = database_cpu_time();
                let (n, elapsed, hist, failed) = measure(load, a.seconds, move |w, i| {
                    let home = home;
                    let ch = chans[w % CONNECTIONS].clone();
                    let (user, admin, last_token) =
                        (user.clone(), admin.clone(), last_token.clone());
                    let (sched, grouped, member_of_all) =
                        (sched.clone(), grouped.clone(), member_of_all.clone());
                    let hot_admin = hot_admin.clone();
                    async move {
                        match target {
                            "CheckAccess" | "CheckAccess, 20 groups" => {
                                MembershipServiceClient::new(ch)
                                    .check_access(authed(
                                        pb::CheckAccessRequest {
                                            workspace: home.into(),
                                            permission: "resources.list".into(),
                                            ..Default::default()
                                        },
                                        if target.ends_with("groups") {
                                            &grouped
                                        } else {
                                            &user
                                        },
                                    ))
                                    .await
                                    .map(|r| r.into_inner().allowed)
                                    .map_or_else(
                                        |e| ok::<()>(Err(e)),
                                        |allowed| {
                                            allowed
                                                || ok::<()>(Err(tonic::Status::permission_denied(
                                                    "not allowed",
                                                )))
                                        },
                                    )
                            }
                            // Its home and 99 workspaces it is not a member of.
                            "BatchCheckAccess of 100" => {
                                let checks = (0..100)
                                    .map(|k| pb::CheckAccessRequest {
                                        workspace: if k == 0 {
                                            home.into()
                                        } else {
                                            format!("ws-{:06}", 1000 + k)
                                        },
                                        permission: "resources.list".into(),
                                        ..Default::default()
                                    })
                                    .collect();
                                MembershipServiceClient::new(ch)
                                    .batch_check_access(authed(
                                        pb::BatchCheckAccessRequest { checks },
                                        &user,
                                    ))
                                    .await
                                    .map(|r| r.into_inner().results)
                                    .and_then(|results| {
                                        if results.len() == 100 && results[0].allowed {
                                            Ok(())
                                        } else {
                                            Err(tonic::Status::internal(format!(
                                                "a wrong batch answer: {results:?}"
                                            )))
                                        }
                                    })
                                    .map_or_else(|e| ok::<()>(Err(e)), |()| true)
                            }
                            "GetWorkspace" => WorkspaceServiceClient::new(ch)
                                .get_workspace(authed(
                                    pb::GetWorkspaceRequest {
                                        name: home.into(),
                                        id: String::new(),
                                    },
                                    &user,
                                ))
                                .await
                                .map(drop)
                                .map_or_else(|e| ok::<()>(Err(e)), |()| true),
                            "ListWorkspaces first page"
                            | "ListWorkspaces last page"
                            | "ListWorkspaces, member of 1"
                            | "ListWorkspaces, member of all" => {
                                let page_token = if target.ends_with("last page") {
                                    last_token
                                } else {
                                    String::new()
                                };
                                let caller = match target {
                                    "ListWorkspaces, member of 1" => &user,
                                    "ListWorkspaces, member of all" => &member_of_all,
                                    _ => &admin,
                                };
                                WorkspaceServiceClient::new(ch)
                                    .list_workspaces(authed(
                                        pb::ListWorkspacesRequest {
                                            page_size: 50,
                                            page_token,
                                            ..Default::default()
                                        },
                                        caller,
                                    ))
                                    .await
                                    .map(drop)
                                    .map_or_else(|e| ok::<()>(Err(e)), |()| true)
                            }
                            // First pages of 50, as a platform admin: members and
                            // resources of ws-000000 (CROWD of each), policies of all.
                            "ListMembers" => page_of_50(
                                MembershipServiceClient::new(ch)
                                    .list_members(authed(
                                        pb::ListMembersRequest {
                                            workspace: "ws-000000".into(),
                                            page_size: 50,
                                            ..Default::default()
                                        },
                                        &admin,
                                    ))
                                    .await
                                    .map(|r| r.into_inner().members.len()),
                            ),
                            "ListResources" => page_of_50(
                                WorkspaceServiceClient::new(ch)
                                    .list_resources(authed(
                                        pb::ListResourcesRequest {
                                            workspace: "ws-000000".into(),
                                            page_size: 50,
                                            ..Default::default()
                                        },
                                        &admin,
                                    ))
                                    .await
                                    .map(|r| r.into_inner().resources.len()),
                            ),
                            "ListPolicies" => page_of_50(
                                PolicyServiceClient::new(ch)
                                    .list_policies(authed(
                                        pb::ListPoliciesRequest {
                                            page_size: 50,
                                            ..Default::default()
                                        },
                                        &admin,
                                    ))
                                    .await
                                    .map(|r| r.into_inner().policies.len()),
                            ),
                            // A page of 100 after a revision spread over the seeded history.
                            "ListEvents, rare type"
                            | "ListEvents, rare type, hot workspace"
                            | "ListEvents, hot workspace, its admin" => {
                                let (workspace, types, caller) = match target {
                                    "ListEvents, rare type" => (
                                        "",
                                        vec![pb::EventType::ResourceUnregistered as i32],
                                        &admin,
                                    ),
                                    "ListEvents, rare type, hot workspace" => (
                                        "ws-000000",
                                        vec![pb::EventType::ResourceUnregistered as i32],
                                        &admin,
                                    ),
                                    _ => ("ws-000000", vec![], &hot_admin),
                                };
                                EventServiceClient::new(ch)
                                    .list_events(authed(
                                        pb::ListEventsRequest {
                                            workspace: workspace.into(),
                                            after_revision: 2
                                                + (i as i64 * 7919 + w as i64 * 104_729)
                                                    % events.max(1),
                                            types,
                                            page_size: 100,
                                            page_token: String::new(),
                                        },
                                        caller,
                                    ))
                                    .await
                                    .map(drop)
                                    .map_or_else(|e| ok::<()>(Err(e)), |()| true)
                            }
                            "AddMember" | "AddMember, no events" => {
                                MembershipServiceClient::new(ch)
                                    .add_member(authed(
                                        pb::AddMemberRequest {
                                            workspace: home.into(),
                                            subject: format!("new-c{c}-r{round}-w{w}-n{i}"),
                                            role: pb::Role::Viewer as i32,
                                            ..Default::default()
                                        },
                                        &admin,
                                    ))
                                    .await
                                    .map(drop)
                                    .map_or_else(|e| ok::<()>(Err(e)), |()| true)
                            }
                            "CreateWorkspace" | "CreateWorkspace, no events" => {
                                WorkspaceServiceClient::new(ch)
                                    .create_workspace(authed(
                                        pb::CreateWorkspaceRequest {
                                            workspace: Some(pb::Workspace {
                                                name: format!("bench-c{c}-r{round}-w{w}-n{i}"),
                                                ..Default::default()
                                            }),
                                            request_id: String::new(),
                                        },
                                        &user,
                                    ))
                                    .await
                                    .map(drop)
                                    .map_or_else(|e| ok::<()>(Err(e)), |()| true)
                            }
                            "GetGpuUsage" => PolicyServiceClient::new(ch)
                                .get_gpu_usage(authed(
                                    pb::GetGpuUsageRequest {
                                        workspace: home.into(),
                                    },
                                    &user,
                                ))
                                .await
                                .map(drop)
                                .map_or_else(|e| ok::<()>(Err(e)), |()| true),
                            // One call of the benchmark is a pair: admit, then release.
                            "GPU admit+release, hot" | "GPU admit+release, spread" => {
                                let workspace = if target.ends_with("hot") {
                                    "ws-000000".to_owned()
                                } else {
                                    format!("ws-{:06}", (w * 7919 + i as usize) % spread)
                                };
                                let id = format!("pod-c{c}-r{round}-w{w}-n{i}");
                                let mut client = PolicyServiceClient::new(ch);
                                let admitted = client
                                    .admit_gpu_request(authed(
                                        pb::AdmitGpuRequestRequest {
                                            workspace: workspace.clone(),
                                            id: id.clone(),
                                            gpu_shape: "a100".into(),
                                            gpu_count: 1,
                                            ..Default::default()
                                        },
                                        &sched,
                                    ))
                                    .await
                                    .map(|r| r.into_inner().admitted);
                                match admitted {
                                    Ok(true) => ok(client
                                        .release_gpu_request(authed(
                                            pb::ReleaseGpuRequestRequest { workspace, id },
                                            &sched,
                                        ))
                                        .await),
                                    Ok(false) => ok::<()>(Err(tonic::Status::resource_exhausted(
                                        "not admitted",
                                    ))),
                                    Err(e) => ok::<()>(Err(e)),
                                }
                            }
                            _ => HealthClient::new(ch)
                                .check(HealthCheckRequest {
                                    service: String::new(),
                                })
                                .await
                                .map(drop)
                                .map_or_else(|e| ok::<()>(Err(e)), |()| true),
                        }
                    }
                })
                .await;
                let cpu = cpu_time(pid).saturating_sub(cpu0);
                let db_cpu = database_cpu_time().saturating_sub(db_cpu0);
                let t = totals.entry((load, target)).or_default();
                t.requests += n;
                t.failed += failed;
                t.elapsed += elapsed;
                t.cpu += cpu;
                t.db_cpu += db_cpu;
                match &mut t.hist {
                    Some(h) => h.add(&hist).expect("merge"),
                    None => t.hist = Some(hist),
                }
            }
        }
    }

    println!(
        "\n{} workspaces, {} memberships, {}; {} rounds of {} s per cell, {} connections{}\n",
        a.workspaces,
        a.memberships,
        backend,
        a.rounds,
        a.seconds,
        CONNECTIONS,
        if a.pin {
            "; the load generator pinned to CPU 0, the servers to the others"
        } else {
            ""
        }
    );
    let open = !a.rates.is_empty();
    if open {
        println!(
            "| RPC | offered | answered/s | p50 ms | p99 ms | p999 ms | failed | server CPU µs/call | CPU ratio to B |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    } else {
        println!(
            "| RPC | concurrency | requests/s | p50 ms | p99 ms | ratio to B | server CPU µs/request | PostgreSQL CPU µs/request |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for &load in &loads {
        let b = &totals[&(load, targets[0])];
        let b_rps = b.requests as f64 / b.elapsed.as_secs_f64();
        let b_cpu = b.cpu.as_micros() as f64 / b.requests.max(1) as f64;
        for &target in &targets {
            let t = &totals[&(load, target)];
            let rps = t.requests as f64 / t.elapsed.as_secs_f64();
            let h = t.hist.as_ref().expect("histogram");
            let cpu = t.cpu.as_micros() as f64 / t.requests.max(1) as f64;
            if open {
                println!(
                    "| {target} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {cpu:.1} | {:.2} |",
                    load.label(),
                    (t.requests - t.failed) as f64 / t.elapsed.as_secs_f64(),
                    ms(h, 0.5),
                    ms(h, 0.99),
                    ms(h, 0.999),
                    t.failed,
                    cpu / b_cpu,
                );
            } else {
                let db_cpu = if backend == "PostgreSQL" {
                    format!(
                        "{:.0}",
                        t.db_cpu.as_micros() as f64 / t.requests.max(1) as f64
                    )
                } else {
                    "-".to_owned()
                };
                println!(
                    "| {target} | {} | {rps:.0} | {:.2} | {:.2} | {:.2} | {cpu:.0} | {db_cpu} |",
                    load.label(),
                    ms(h, 0.5),
                    ms(h, 0.99),
                    rps / b_rps,
                );
            }
        }
    }
    let rss = std::fs::read_to_string(format!("/proc/{}/status", server.0.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
        .unwrap_or_else(|| "?".into());
    println!("\nworkspaced peak resident memory: {rss} kB");
    println!(
        "workspaced reached SERVING {:.2} s after it was started",
        start_up.as_secs_f64()
    );
    drop((server, echo));
    if let Some((db2, proc, _)) = bare_writes {
        drop(proc);
        db2.drop_it().await;
    }
    db.drop_it().await;
}
