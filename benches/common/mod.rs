//! What the benchmarks share: free ports, a process's CPU time and memory, child processes
//! that die with the benchmark, client channels and authenticated requests.

#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, path::Path, process::Child, time::Duration};

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
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_time)
        .sum()
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
        match std::env::var("WORKSPACED_BENCH_DATABASE_URL") {
            Ok(base) if !base.is_empty() => {
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
            _ => BenchDb {
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
