//! Shared test helpers: a real server in-process on an ephemeral port with a fresh database
//! (SQLite, or PostgreSQL when `WORKSPACED_TEST_DATABASE_URL` is set), one method per RPC on
//! it (`rpc.rs`), tokens, and assertions on status codes and `ErrorInfo` reasons.
//!
//! `TEST_LOG=1 cargo test --test api NAME` adds the server's logs to the test's output, which
//! shows for a failing test or with `-- --nocapture` (`RUST_LOG` filters them, as for the
//! binary).

#![allow(dead_code)]

mod rpc;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Code, Request, Status,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;
use workspaced::{
    BoxError, ServerConfig,
    auth::{AuthMode, JwtSettings, Verifier},
    domain::events::EventSettings,
    domain::model::PolicyRules,
    pb::v1::{
        self as pb, event_service_client::EventServiceClient,
        membership_service_client::MembershipServiceClient,
        policy_service_client::PolicyServiceClient,
        workspace_service_client::WorkspaceServiceClient,
    },
    tls::{Tls, TlsFiles},
};

/// A database for one test: a temporary SQLite file, or a fresh PostgreSQL database.
pub struct TestDb {
    pub url: String,
    pub dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        match std::env::var("WORKSPACED_TEST_DATABASE_URL") {
            Ok(base) if !base.is_empty() => {
                let name = Self::fresh_name(&base);
                let admin = Database::connect(&base)
                    .await
                    .expect("connect to PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create a test database");
                admin.close().await.ok();
                let (prefix, _) = base.rsplit_once('/').expect("a database URL with a path");
                TestDb {
                    url: format!("{prefix}/{name}"),
                    dir: None,
                }
            }
            _ => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
                TestDb {
                    url,
                    dir: Some(dir),
                }
            }
        }
    }

    /// A new database's name on the server of `base`: named after the run's database too,
    /// so that a run drops its own only (see `.ci/run`).
    pub fn fresh_name(base: &str) -> String {
        let run: String = base
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect();
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("wst_{run}_{}", &id[..24])
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }
}

/// How the test server authenticates.
#[derive(Clone, Default)]
pub struct Options {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub jwks: bool,
    pub roles_claim: Option<String>,
    /// The groups claim; `groups` when unset.
    pub groups_claim: Option<String>,
    pub insecure: bool,
    pub policy: Option<PolicyRules>,
    pub metrics: bool,
    pub conn_limits: Option<workspaced::conn::ConnLimits>,
    pub call_limits: Option<workspaced::telemetry::CallLimits>,
    pub tls: Option<TlsOptions>,
    /// The change history's settings, when a test needs other than the contract's.
    pub events: Option<EventSettings>,
    /// How often ended leases and memberships are deleted, when not the default minute.
    pub sweep_every: Option<Duration>,
}

/// TLS for the test server, and what the helper's channel trusts and presents.
#[derive(Clone)]
pub struct TlsOptions {
    /// The server's PEM files.
    pub files: TlsFiles,
    /// The CA (PEM) the channel trusts for the server's certificate.
    pub ca_pem: String,
    /// The client certificate and key (PEM) the channel presents, for mutual TLS.
    pub client: Option<(String, String)>,
}

/// A lazy TLS channel to `addr` that checks the server's certificate for `localhost`
/// against `ca_pem`, presenting `client` (certificate, key) when given.
pub fn tls_channel(addr: SocketAddr, ca_pem: &str, client: Option<(&str, &str)>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("client TLS config")
        .connect_lazy()
}

/// A lazy plaintext HTTP/2 channel to `addr`.
pub fn plaintext_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_lazy()
}

/// A port that was free a moment ago.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// With `TEST_LOG` set (and not `0`), sends the logs of every server in this process to the
/// test output, set up once per process (zero2prod's `TEST_LOG`): captured per test like
/// `println!`. The filter is `RUST_LOG`, or the binary's default.
fn init_test_log() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if std::env::var("TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0") {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn".into());
            // Another subscriber may already be set; then that one keeps the logs.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .try_init();
        }
    });
}

pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret";

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub channel: Channel,
    pub db: Arc<TestDb>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), BoxError>>>,
}

impl TestServer {
    pub async fn spawn() -> TestServer {
        Self::spawn_with(Options::default()).await
    }

    /// A server on PostgreSQL with the default options; `None`, and the test skipped, on
    /// SQLite (without `WORKSPACED_TEST_DATABASE_URL`).
    pub async fn on_postgres() -> Option<TestServer> {
        let db = TestDb::new().await;
        if !db.is_postgres() {
            eprintln!("skipped: needs WORKSPACED_TEST_DATABASE_URL (PostgreSQL)");
            return None;
        }
        Some(Self::spawn_on(Arc::new(db), Options::default()).await)
    }

    pub async fn spawn_with(opts: Options) -> TestServer {
        Self::spawn_on(Arc::new(TestDb::new().await), opts).await
    }

    /// A server on an existing database, as a second replica.
    pub async fn spawn_on(db: Arc<TestDb>, opts: Options) -> TestServer {
        init_test_log();
        let auth = if opts.insecure {
            AuthMode::Insecure
        } else {
            let jwks = opts.jwks.then(|| {
                serde_json::from_str(include_str!("../fixtures/jwks.json")).expect("jwks fixture")
            });
            AuthMode::Jwt(Arc::new(
                Verifier::new(JwtSettings {
                    hs256_secret: Some(SECRET.to_vec()),
                    jwks,
                    issuer: opts.issuer.clone(),
                    audience: opts.audience.clone(),
                    roles_claim: opts.roles_claim.clone().unwrap_or_else(|| "roles".into()),
                    groups_claim: opts.groups_claim.clone().unwrap_or_else(|| "groups".into()),
                })
                .expect("verifier"),
            ))
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let defaults = ServerConfig::new(db.url.clone(), auth);
        let cfg = ServerConfig {
            policy_defaults: opts.policy.clone().unwrap_or_default(),
            drain_timeout: Duration::from_secs(5),
            metrics_listen: opts.metrics.then(free_port),
            conn_limits: opts.conn_limits.unwrap_or(defaults.conn_limits),
            call_limits: opts.call_limits.unwrap_or(defaults.call_limits),
            tls: opts
                .tls
                .as_ref()
                .map(|t| Tls::load(&t.files).expect("TLS files")),
            events: opts.events.clone().unwrap_or_default(),
            sweep_every: opts.sweep_every.unwrap_or(defaults.sweep_every),
            ..defaults
        };
        let cfg_metrics = cfg.metrics_listen;
        let handle = tokio::spawn(workspaced::serve(cfg, listener, async move {
            let _ = rx.await;
        }));
        let channel = match &opts.tls {
            Some(t) => tls_channel(
                addr,
                &t.ca_pem,
                t.client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
            ),
            None => plaintext_channel(addr),
        };
        let mut server = TestServer {
            addr,
            metrics_addr: cfg_metrics,
            channel,
            db,
            shutdown: Some(tx),
            handle: Some(handle),
        };
        server.wait_serving().await;
        server
    }

    async fn wait_serving(&mut self) {
        let mut health = HealthClient::new(self.channel.clone());
        for _ in 0..300 {
            if let Ok(r) = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                && r.into_inner().status == ServingStatus::Serving as i32
            {
                return;
            }
            if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
                let res = self.handle.take().expect("handle").await;
                panic!("the server stopped while starting: {res:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not become SERVING");
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) -> Result<(), BoxError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.expect("server task"),
            None => Ok(()),
        }
    }

    pub fn workspaces(&self) -> WorkspaceServiceClient<Channel> {
        WorkspaceServiceClient::new(self.channel.clone())
    }

    pub fn members(&self) -> MembershipServiceClient<Channel> {
        MembershipServiceClient::new(self.channel.clone())
    }

    pub fn policies(&self) -> PolicyServiceClient<Channel> {
        PolicyServiceClient::new(self.channel.clone())
    }

    pub fn events(&self) -> EventServiceClient<Channel> {
        EventServiceClient::new(self.channel.clone())
    }

    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Signs `claims` with the test HS256 secret.
pub fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("sign")
}

/// A valid token for `sub` with platform `roles`.
pub fn token_with_roles(sub: &str, roles: &[&str]) -> String {
    sign(
        &json!({"sub": sub, "exp": now() + 3600, "roles": roles, "email": format!("{sub}@example.com")}),
    )
}

/// A valid token for `sub` in `groups`, without platform roles.
pub fn token_with_groups(sub: &str, groups: &[&str]) -> String {
    sign(
        &json!({"sub": sub, "exp": now() + 3600, "groups": groups, "email": format!("{sub}@example.com")}),
    )
}

/// A valid token for `sub` without platform roles.
pub fn token(sub: &str) -> String {
    token_with_roles(sub, &[])
}

pub fn platform_admin() -> String {
    token_with_roles("root", &["platform-admin"])
}

pub fn platform_service() -> String {
    token_with_roles("svc", &["platform-service"])
}

/// Wraps `msg` in a request carrying `token`.
pub fn req<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).expect("metadata"),
    );
    r
}

/// The `ErrorInfo.metadata` of `status`, sorted.
pub fn error_meta(status: &Status) -> Vec<(String, String)> {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    let mut meta: Vec<(String, String)> = info.metadata.into_iter().collect();
    meta.sort();
    meta
}

/// Asserts the status code and the `ErrorInfo` reason (with domain `workspaced`).
#[track_caller]
pub fn assert_status(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "unexpected reason in {status:?}");
    assert_eq!(info.domain, "workspaced");
    // Every failed precondition says which, in google.rpc.PreconditionFailure.
    if code == Code::FailedPrecondition {
        let failure = status
            .get_details_precondition_failure()
            .unwrap_or_else(|| panic!("no PreconditionFailure in {status:?}"));
        assert!(
            !failure.violations.is_empty(),
            "empty PreconditionFailure in {status:?}"
        );
        // Other than WORKSPACE_NOT_EMPTY (a violation a kind of what the workspace holds),
        // one violation: the reason, and what it is about.
        if reason != "WORKSPACE_NOT_EMPTY" {
            assert_eq!(failure.violations.len(), 1, "{status:?}");
            let v = &failure.violations[0];
            assert_eq!(v.r#type, reason, "{status:?}");
            let of = match reason {
                "REVISION_EXPIRED" => "revisions/",
                _ => "workspaces/",
            };
            assert!(
                v.subject.len() > of.len() && v.subject.starts_with(of),
                "{status:?}"
            );
        }
    }
}

/// Asserts that `res` failed with `code` and the `ErrorInfo` `reason` (see `assert_status`).
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(res: Result<T, Status>, code: Code, reason: &str) {
    assert_status(&res.unwrap_err(), code, reason);
}

/// Asserts that `res` failed with PERMISSION_DENIED.
#[track_caller]
pub fn assert_denied<T: std::fmt::Debug>(res: Result<T, Status>) {
    assert_refused(res, Code::PermissionDenied, "PERMISSION_DENIED");
}

/// The fields of the `BadRequest` details of the error `res` holds, sorted (`bad_fields`).
#[track_caller]
pub fn bad_fields_of<T: std::fmt::Debug>(res: Result<T, Status>) -> Vec<String> {
    bad_fields(&res.unwrap_err())
}

/// The fields of the `BadRequest` details, sorted.
pub fn bad_fields(status: &Status) -> Vec<String> {
    assert_status(status, Code::InvalidArgument, "INVALID_ARGUMENT");
    let mut fields: Vec<String> = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    fields
}

/// A workspace to create.
pub fn new_ws(name: &str) -> pb::Workspace {
    pb::Workspace {
        name: name.into(),
        ..Default::default()
    }
}

/// A workspace to create (or update) with `visibility`.
pub fn visible_ws(name: &str, visibility: pb::Visibility) -> pb::Workspace {
    pb::Workspace {
        visibility: visibility as i32,
        ..new_ws(name)
    }
}

/// A fresh server with the private workspace `team`, created (and so administered) by
/// `alice`; returns the server and alice's token.
pub async fn spawn_with_team() -> (TestServer, String) {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    (s, alice)
}

/// Adds each `(subject, role)` to `ws` as `token`; panics if an add fails.
pub async fn add_subjects(s: &TestServer, token: &str, ws: &str, members: &[(&str, pb::Role)]) {
    for &(subject, role) in members {
        s.add_member(token, ws, subject, role)
            .await
            .unwrap_or_else(|e| panic!("add {subject} to {ws}: {e:?}"));
    }
}

/// Adds each `(group, role)` to `ws` as `token`, without an end; panics if an add fails.
pub async fn add_groups(s: &TestServer, token: &str, ws: &str, groups: &[(&str, pb::Role)]) {
    for &(group, role) in groups {
        s.add_group_member(token, ws, group, role, None)
            .await
            .unwrap_or_else(|e| panic!("add group {group} to {ws}: {e:?}"));
    }
}

/// An AddMemberRequest of `role` in `ws` for the member that `subject`, `email` and `group`
/// name (a valid request sets exactly one), without an end.
pub fn add_request(
    ws: &str,
    subject: &str,
    email: &str,
    group: &str,
    role: pb::Role,
) -> pb::AddMemberRequest {
    pb::AddMemberRequest {
        workspace: ws.into(),
        subject: subject.into(),
        email: email.into(),
        group: group.into(),
        role: role as i32,
        expire_time: None,
    }
}

/// An UpdateMemberRequest to `role` in `ws` of `subject` or `group` (a valid request sets
/// exactly one), without an etag and keeping the end.
pub fn update_request(
    ws: &str,
    subject: &str,
    group: &str,
    role: pb::Role,
) -> pb::UpdateMemberRequest {
    pb::UpdateMemberRequest {
        workspace: ws.into(),
        subject: subject.into(),
        group: group.into(),
        role: role as i32,
        ..Default::default()
    }
}

/// A CheckAccess request of `permission` in `ws` for `subject` (empty: the caller) in
/// `groups` (which only a platform caller may pass for another subject).
pub fn check_request(
    ws: &str,
    permission: &str,
    subject: &str,
    groups: &[&str],
) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        workspace: ws.into(),
        permission: permission.into(),
        subject: subject.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

/// The protobuf timestamp of the instant `at` (an `expire_time`, say).
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

// Shorthands from before the per-RPC methods: `create` sets a scene in one line (it panics
// if the create fails); `get` and `register` are the methods of the same RPC.

/// Creates a workspace as `token` and returns it; panics if the create fails.
pub async fn create(server: &TestServer, token: &str, ws: pb::Workspace) -> pb::Workspace {
    server
        .create_workspace(token, ws)
        .await
        .expect("create workspace")
}

/// Waits up to 5 s for `name`, made by a call still under way, to be served to its creator
/// `token`.
pub async fn wait_for_workspace(s: &TestServer, token: &str, name: &str) {
    let start = std::time::Instant::now();
    while let Err(e) = s.get_workspace(token, name).await {
        // Not there yet: a workspace its creator cannot see; or, on a server of few places,
        // the calls still making it hold them all.
        if e.code() == Code::Unavailable {
            assert_status(&e, Code::Unavailable, "OVERLOADED");
        } else {
            assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{name} never landed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that the workspace `name` is as it was at `etag`, and that no update of it still
/// under way lands later: an update with that etag succeeds, and is still the last one
/// 300 ms after.
pub async fn assert_unchanged_since(s: &TestServer, token: &str, name: &str, etag: &str) {
    let after = pb::Workspace {
        description: "after".into(),
        ..new_ws(name)
    };
    s.update_workspace(token, after, &["description"], etag)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.get_workspace(token, name).await.unwrap().description,
        "after"
    );
}

/// The single integer a `SELECT count(*) …` answers, on connection (or transaction) `c`.
pub async fn count_on<C: ConnectionTrait>(c: &C, sql: &str) -> i64 {
    let row = c
        .query_one_raw(sea_orm::Statement::from_string(
            c.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}

/// The same on a new connection to `s`'s database.
pub async fn count_rows(s: &TestServer, sql: &str) -> i64 {
    let c = Database::connect(&s.db.url).await.expect("connect");
    let n = count_on(&c, sql).await;
    c.close().await.ok();
    n
}

/// The Prometheus text of the metrics endpoint at `addr`.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

/// The value of the first sample line that starts with `prefix`.
pub fn sample(body: &str, prefix: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in\n{body}"))
}

/// The value of the metric sample that starts with `prefix`, on `s`'s metrics endpoint.
pub async fn metric(s: &TestServer, prefix: &str) -> f64 {
    sample(
        &scrape(s.metrics_addr.expect("metrics are on")).await,
        prefix,
    )
}

/// A transaction of its own on `db` that has run `sql` (a row lock to hold, say), for a
/// test to hold while it calls the server; rolled back when dropped.
pub async fn holding(db: &TestDb, sql: &str) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let c = Database::connect(&db.url).await.unwrap();
    let tx = c.begin().await.unwrap();
    tx.execute_unprepared(sql).await.unwrap();
    tx
}

/// Two replicas on one PostgreSQL database, or one SQLite instance (SQLite is embedded:
/// one process owns the file). Callers reach the second with `second(&a, &b)`.
pub async fn replicas() -> (TestServer, Option<TestServer>) {
    let db = Arc::new(TestDb::new().await);
    let a = TestServer::spawn_on(db.clone(), Options::default()).await;
    let b = if db.is_postgres() {
        Some(TestServer::spawn_on(db, Options::default()).await)
    } else {
        None
    };
    (a, b)
}

/// The second replica of `replicas()`, or the only instance.
pub fn second<'a>(a: &'a TestServer, b: &'a Option<TestServer>) -> &'a TestServer {
    b.as_ref().unwrap_or(a)
}

/// Polls until one backend of `db` running a statement like `pattern` waits for a lock;
/// fails after 5 s. Each look is a transaction of its own: a transaction sees
/// `pg_stat_activity` as it was at its first look.
pub async fn waits_for_a_lock(db: &TestDb, pattern: &str) {
    use sea_orm::ConnectionTrait;
    let c = sea_orm::Database::connect(&db.url).await.unwrap();
    let start = std::time::Instant::now();
    loop {
        let n: i64 = c
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                c.get_database_backend(),
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE $1 \
                 AND datname = current_database()",
                [pattern.into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "n")
            .unwrap();
        if n == 1 {
            return;
        }
        if start.elapsed() > std::time::Duration::from_secs(5) {
            let rows = c
                .query_all_raw(sea_orm::Statement::from_string(
                    c.get_database_backend(),
                    "SELECT coalesce(wait_event_type, '') || ' ' || state || ' ' || \
                     left(query, 300) AS q FROM pg_stat_activity WHERE datname = current_database()",
                ))
                .await
                .unwrap();
            let now: Vec<String> = rows.iter().map(|r| r.try_get("", "q").unwrap()).collect();
            panic!("no statement like {pattern} waits for a lock; sessions: {now:#?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
