//! What the benchmarks share: free ports, a process's CPU time and memory, child processes
//! that die with the benchmark, client channels and authenticated requests.

#![allow(dead_code, unreachable_pub)]

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sea_orm::{ConnectionTrait, Database};

use tonic::{Request, metadata::MetadataValue, transport::Channel};

/// The HS256 secret the benchmarks start their servers with.
pub const KEY: &[u8] = b"bench-secret-bench-secret-bench-secret";

/// A token for `subject` with platform `roles` and `groups`, signed with `KEY`, valid for a
/// day.
pub fn token(subject: &str, roles: &[&str], groups: &[String]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    let claims = workspaced::auth::jwt::Claims {
        subject,
        email: None,
        roles: &roles,
        groups,
    };
    workspaced::auth::jwt::sign_hs256(KEY, &claims, Duration::from_secs(86_400)).expect("token")
}

/// HTTP/2 connections the load generator spreads its calls over.
pub const CONNECTIONS: usize = 4;

/// A port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// CPU time (user + system) of a process, from /proc.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // Linux reports in clock ticks of 1/100 s.
    Duration::from_millis(ticks * 10)
}

/// CPU time of every PostgreSQL process on this machine (its backends serve the benchmark's
/// servers when the database is local), for what a call costs the database as well. Rough:
/// it includes PostgreSQL's own background work and the idle server's looks at the history,
/// and a process that exits between two readings takes its time with it.
pub fn database_cpu_time() -> Duration {
    postgres_pids().map(cpu_time).sum()
}

/// Resident memory of a process in bytes, from /proc.
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The benchmark's command line after the program name, read by flag name: `--name VALUE`
/// flags, bare `--name` switches and bare words, in any order.
pub struct Argv(Vec<String>);

impl Argv {
    /// This process's arguments.
    pub fn from_env() -> Argv {
        Argv(std::env::args().skip(1).collect())
    }

    /// The value after `name`, if any.
    pub fn text(&self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).cloned()
    }

    /// The number after `name`, if it is one.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.text(name).and_then(|v| v.parse().ok())
    }

    /// Whether the switch `name` is given.
    pub fn switch(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// The first of `words` that is given.
    pub fn word(&self, words: &[&str]) -> Option<String> {
        self.0.iter().find(|a| words.contains(&a.as_str())).cloned()
    }
}

/// A child process, killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `CONNECTIONS` connected channels to `addr`, waiting for it to listen.
pub async fn channels(addr: SocketAddr) -> Vec<Channel> {
    channels_n(addr, CONNECTIONS).await
}

/// `n` connections to `addr`, as [`channels`].
pub async fn channels_n(addr: SocketAddr, n: usize) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..n {
        let ch = Channel::from_shared(format!("http://{addr}")).expect("uri");
        let mut tries = 0;
        loop {
            match ch.clone().connect().await {
                Ok(c) => {
                    out.push(c);
                    break;
                }
                Err(_) if tries < 300 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot connect to {addr}: {e}"),
            }
        }
    }
    out
}

/// Waits until the server behind `ch` answers its health check SERVING (its database
/// migrated, the built-ins there); panics after two minutes.
pub async fn wait_serving(ch: &Channel) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    for _ in 0..12_000 {
        let status = HealthClient::new(ch.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        if status.is_ok_and(|s| s == ServingStatus::Serving as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server did not become SERVING within two minutes");
}

/// `msg` with a bearer token.
pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).expect("metadata"),
    );
    r
}

/// The PostgreSQL server the benchmarks run on (`WORKSPACED_BENCH_DATABASE_URL`), if any.
pub fn postgres_server() -> Option<String> {
    std::env::var("WORKSPACED_BENCH_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The database of one benchmark run: a fresh PostgreSQL database in the server that
/// `WORKSPACED_BENCH_DATABASE_URL` names, dropped by [`BenchDb::drop_it`], or else an
/// SQLite file in `dir`.
pub struct BenchDb {
    /// Where the run's data lives.
    pub url: String,
    /// The PostgreSQL server's URL and the database made in it.
    made: Option<(String, String)>,
}

impl BenchDb {
    /// Makes the run's database; `prefix` starts a PostgreSQL database's name.
    pub async fn new(dir: &Path, prefix: &str) -> BenchDb {
        match postgres_server() {
            Some(base) => {
                let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&base).await.expect("connect");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create database");
                let (server, _) = base.rsplit_once('/').expect("database URL");
                let url = format!("{server}/{name}");
                BenchDb {
                    url,
                    made: Some((base, name)),
                }
            }
            None => BenchDb {
                url: format!("sqlite://{}/{prefix}.db?mode=rwc", dir.display()),
                made: None,
            },
        }
    }

    /// The backend's name, for the printed results.
    pub fn backend(&self) -> &'static str {
        if self.made.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    }

    /// Drops a PostgreSQL database made for the run.
    pub async fn drop_it(self) {
        if let Some((base, name)) = self.made
            && let Ok(admin) = Database::connect(&base).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

/// A run pinned with `--pin`: the generator (this process) on CPU 0, the servers it starts
/// on the other CPUs, and, where the run says so, the local PostgreSQL with them. On a small
/// machine the generator's own work then does not land on the server's cores and count in
/// its latencies. PostgreSQL's processes get their CPUs back when this is dropped.
pub struct Pinned {
    /// The servers' CPUs, as a `taskset -c` list.
    pub servers: String,
    /// The PostgreSQL processes pinned, each with the CPUs it had.
    restore: Vec<(u32, String)>,
}

impl Pinned {
    /// Pins this process to CPU 0 (call it before building a runtime, which sizes its
    /// threads to the CPUs it may use) and, with `postgres`, every local PostgreSQL process
    /// to the servers' CPUs. Panics on a machine of one CPU or without `taskset`. A run
    /// killed by a signal does not give PostgreSQL its CPUs back: this prints how to.
    pub fn new(postgres: bool) -> Pinned {
        let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
        assert!(
            cpus > 1,
            "--pin needs two CPUs; this process may use {cpus}"
        );
        let servers = if cpus == 2 {
            "1".to_owned()
        } else {
            format!("1-{}", cpus - 1)
        };
        let me = std::process::id();
        assert!(
            taskset(me, "0"),
            "taskset could not pin process {me} to CPU 0"
        );
        let mut restore = Vec::new();
        let pids: Vec<u32> = if postgres {
            postgres_pids().collect()
        } else {
            Vec::new()
        };
        for pid in pids {
            let was = Command::new("taskset")
                .args(["-c", "-p", &pid.to_string()])
                .output()
                .ok()
                .and_then(|o| {
                    let out = String::from_utf8_lossy(&o.stdout).into_owned();
                    Some(out.rsplit_once(": ")?.1.trim().to_owned())
                });
            if let Some(was) = was
                && taskset(pid, &servers)
            {
                restore.push((pid, was));
            }
        }
        if postgres {
            let all = format!("0-{}", cpus - 1);
            eprintln!(
                "pinned {} PostgreSQL processes to CPUs {servers}; if this run is killed, undo \
                 it with: for p in $(pgrep -x postgres); do taskset -a -c -p {all} $p; done",
                restore.len()
            );
        }
        Pinned { servers, restore }
    }
}

/// A command that runs `program` on `cpus` (a `taskset -c` list), or anywhere; a child
/// would otherwise inherit the pinned generator's CPU.
pub fn on_cpus(cpus: Option<&str>, program: &Path) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for (pid, cpus) in &self.restore {
            taskset(*pid, cpus);
        }
        // Backends started during the run inherited the pinned postmaster's CPUs; they get
        // back what PostgreSQL had.
        if let Some((_, was)) = self.restore.first() {
            let known: Vec<u32> = self.restore.iter().map(|(p, _)| *p).collect();
            for pid in postgres_pids().filter(|p| !known.contains(p)) {
                taskset(pid, was);
            }
        }
    }
}

/// Sets every thread of `pid` to run on `cpus` (a `taskset -c` list); whether it worked.
fn taskset(pid: u32, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-c", "-p", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The processes of the local PostgreSQL server, if any.
fn postgres_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
}
