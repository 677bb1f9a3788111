//! Operations: health, reflection, the services not built yet, replicas starting at once,
//! insecure mode, graceful shutdown, and a crash of the real binary.

use std::{sync::Arc, time::Duration};

use tonic::Code;

use tokio_stream::StreamExt;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use workspaced::pb::v1 as pb;

use crate::common::*;

/// The services that reflection `$v` (`v1` or `v1alpha`) lists on `$channel`.
macro_rules! listed_services {
    ($v:ident, $channel:expr) => {{
        use tonic_reflection::pb::$v::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let Some(Ok(resp)) = stream.next().await else {
            panic!("no reflection answer")
        };
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("unexpected reflection answer")
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

const SERVICES: [&str; 4] = [
    "workspaced.v1.WorkspaceService",
    "workspaced.v1.MembershipService",
    "workspaced.v1.PolicyService",
    "workspaced.v1.EventService",
];

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let s = TestServer::spawn().await;
    let check = |service: &str| {
        let (mut health, service) = (s.health(), service.to_owned());
        async move { health.check(HealthCheckRequest { service }).await }
    };
    for service in std::iter::once("").chain(SERVICES) {
        let r = check(service).await.unwrap().into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
    }
    let err = check("workspaced.v1.NoSuchService").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    for names in [
        listed_services!(v1, s.channel.clone()),
        listed_services!(v1alpha, s.channel.clone()),
    ] {
        for expected in SERVICES.into_iter().chain(["grpc.health.v1.Health"]) {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} not in {names:?}"
            );
        }
    }
}

#[tokio::test]
async fn replicas_starting_at_once_share_one_database() {
    let db = Arc::new(TestDb::new().await);
    if !db.is_postgres() {
        // SQLite serves one process: see `a_second_server_on_one_sqlite_file_refuses_to_start`.
        return;
    }
    let (a, b) = tokio::join!(
        TestServer::spawn_on(db.clone(), Options::default()),
        TestServer::spawn_on(db.clone(), Options::default()),
    );
    // Each built-in exists once, and a write through one replica is read through the other.
    let r = b
        .list_workspaces(&platform_admin(), pb::ListWorkspacesRequest::default())
        .await
        .unwrap();
    let names: Vec<&str> = r.workspaces.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, vec!["default", "system"]);
    let alice = token("alice");
    let created = create(&a, &alice, new_ws("shared")).await;
    assert_eq!(b.get_workspace(&alice, "shared").await.unwrap(), created);
    // A restart keeps everything.
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    let c = TestServer::spawn_on(db, Options::default()).await;
    assert_eq!(c.get_workspace(&alice, "shared").await.unwrap(), created);
}

#[tokio::test]
async fn a_second_server_on_one_sqlite_file_refuses_to_start() {
    let db = Arc::new(TestDb::new().await);
    if db.is_postgres() {
        return;
    }
    let a = TestServer::spawn_on(db.clone(), Options::default()).await;
    let alice = token("alice");
    let created = create(&a, &alice, new_ws("kept")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = workspaced::auth::AuthMode::Insecure;
    let second = workspaced::serve(
        workspaced::ServerConfig::new(db.url.clone(), auth),
        listener,
        std::future::pending(),
    );
    let err = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second server neither started nor stopped")
        .expect_err("a second server started on the same SQLite file");
    assert!(
        err.to_string()
            .contains("in use by another workspaced process"),
        "unclear message: {err}"
    );
    // The first one is unharmed, and once it stops the file can be served again.
    assert_eq!(a.get_workspace(&alice, "kept").await.unwrap(), created);
    a.stop().await.unwrap();
    let b = TestServer::spawn_on(db, Options::default()).await;
    assert_eq!(b.get_workspace(&alice, "kept").await.unwrap(), created);
}

#[tokio::test]
async fn insecure_mode_makes_every_caller_a_platform_admin() {
    let s = TestServer::spawn_with(Options {
        insecure: true,
        ..Default::default()
    })
    .await;
    let ws = s
        .workspaces()
        .create_workspace(pb::CreateWorkspaceRequest {
            workspace: Some(new_ws("local")),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap();
    assert_eq!(ws.created_by, "anonymous");
    // Without a token, what only platform principals may do: change a policy, and check
    // another subject's access.
    let policy = pb::Policy {
        workspace: "default".into(),
        max_gprs: 3,
        ..Default::default()
    };
    let updated = s
        .policies()
        .update_policy(pb::UpdatePolicyRequest {
            policy: Some(policy),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["max_gprs".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.policy.unwrap().max_gprs, 3);
    let check = s
        .members()
        .check_access(pb::CheckAccessRequest {
            workspace: "local".into(),
            permission: "workspaces.get".into(),
            subject: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!check.allowed);
}

#[tokio::test]
async fn metrics_count_requests_by_method_and_code() {
    let s = TestServer::spawn_with(Options {
        metrics: true,
        ..Default::default()
    })
    .await;
    let addr = s.metrics_addr.unwrap();
    let alice = token("alice");
    create(&s, &alice, new_ws("metered")).await;
    create(&s, &alice, new_ws("metered-2")).await;
    s.get_workspace(&alice, "nope").await.unwrap_err();
    let body = scrape(addr).await;
    let created = "workspaced_grpc_requests_total{code=\"Ok\",method=\"CreateWorkspace\",service=\"workspaced.v1.WorkspaceService\"}";
    assert_eq!(sample(&body, created), 2.0);
    let denied = "workspaced_grpc_requests_total{code=\"PermissionDenied\",method=\"GetWorkspace\",service=\"workspaced.v1.WorkspaceService\"}";
    assert_eq!(sample(&body, denied), 1.0);
    let count = "workspaced_grpc_request_duration_seconds_count{method=\"CreateWorkspace\",service=\"workspaced.v1.WorkspaceService\"}";
    assert_eq!(sample(&body, count), 2.0);
    assert!(body.contains("workspaced_db_pool_connections{state=\"idle\"}"));
    assert!(body.contains("workspaced_db_pool_connections{state=\"in_use\"}"));
    assert_eq!(sample(&body, "workspaced_build_info{version="), 1.0);
    assert_eq!(sample(&body, "workspaced_calls_in_flight_limit "), 64.0);
    // The counters move with more calls.
    create(&s, &alice, new_ws("metered-3")).await;
    assert_eq!(sample(&scrape(addr).await, created), 3.0);
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let s = TestServer::spawn().await;
    let mut r = req(
        pb::GetWorkspaceRequest {
            name: "default".into(),
            id: String::new(),
        },
        &token("alice"),
    );
    r.metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());
    let resp = s.workspaces().get_workspace(r).await.unwrap();
    assert_eq!(resp.metadata().get("x-request-id").unwrap(), "trace-me-42");
    let resp = s
        .workspaces()
        .get_workspace(req(
            pb::GetWorkspaceRequest {
                name: "default".into(),
                id: String::new(),
            },
            &token("alice"),
        ))
        .await
        .unwrap();
    let made = resp
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(made).is_ok(), "{made}");
    // Errors carry it too.
    let mut r = tonic::Request::new(pb::GetWorkspaceRequest {
        name: "default".into(),
        id: String::new(),
    });
    r.metadata_mut()
        .insert("x-request-id", "failing-call".parse().unwrap());
    let err = s.workspaces().get_workspace(r).await.unwrap_err();
    assert_eq!(err.metadata().get("x-request-id").unwrap(), "failing-call");
}

/// The binary, to run in `dir`, without the test's own settings (`WORKSPACED_*`,
/// `RUST_LOG`).
fn workspaced(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_workspaced"));
    for (name, _) in std::env::vars() {
        if name.starts_with("WORKSPACED_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.current_dir(dir);
    command
}

/// The real binary's `serve` on `url`, run in `dir` with `args`, on a free port, logging to
/// `dir/serve-<n>.log`.
struct Binary {
    child: std::process::Child,
    channel: tonic::transport::Channel,
    log: std::path::PathBuf,
}

impl Binary {
    async fn start(dir: &std::path::Path, url: &str, n: u32, args: &[&str]) -> Binary {
        let log = dir.join(format!("serve-{n}.log"));
        let mut child = workspaced(dir)
            .args(["serve", "--database-url", url, "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // The port it bound, from its "serving" line: one picked free beforehand may be
        // taken meanwhile by another test's server.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let logs = std::fs::read_to_string(&log).unwrap_or_default();
            let serving = logs.lines().find(|l| l.contains("serving"));
            if let Some(port) = serving.and_then(|l| l.split("127.0.0.1:").nth(1)) {
                let port: String = port.chars().take_while(char::is_ascii_digit).collect();
                break format!("127.0.0.1:{port}");
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("serve exited ({status}): {logs}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "serve did not start: {logs}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        Binary {
            child,
            channel,
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn workspaces(
        &self,
    ) -> pb::workspace_service_client::WorkspaceServiceClient<tonic::transport::Channel> {
        pb::workspace_service_client::WorkspaceServiceClient::new(self.channel.clone())
    }

    async fn get(&self, name: &str, token: Option<&str>) -> Result<pb::Workspace, tonic::Status> {
        let msg = pb::GetWorkspaceRequest {
            name: name.into(),
            ..Default::default()
        };
        let msg = match token {
            Some(t) => req(msg, t),
            None => tonic::Request::new(msg),
        };
        let r = self.workspaces().get_workspace(msg).await?;
        Ok(r.into_inner().workspace.expect("workspace"))
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// `kill -9` in the middle of a stream of writes loses none the server acknowledged: the
/// binary started again on the same database serves every one, and lists its event.
#[tokio::test]
async fn a_server_killed_mid_write_keeps_every_acknowledged_write() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut first = Binary::start(dir.path(), &db.url, 1, &["--insecure-no-auth"]).await;
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, acked, killed) = (first.workspaces(), acked.clone(), killed.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let mut client = client.clone();
                    let name = format!("crash-{w}-{i}");
                    let msg = pb::CreateWorkspaceRequest {
                        workspace: Some(new_ws(&name)),
                        ..Default::default()
                    };
                    if let Err(e) = client.create_workspace(msg).await {
                        // Only the kill may end a writer.
                        let after = killed.load(std::sync::atomic::Ordering::SeqCst);
                        assert!(after, "{name} before the kill: {e:?}");
                        return;
                    }
                    acked.lock().unwrap().push(name);
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 200 {
        assert!(tokio::time::Instant::now() < deadline, "{}", first.logs());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL, while the writers keep creating.
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    for w in writers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("a writer still waiting after the kill")
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let again = Binary::start(dir.path(), &db.url, 2, &["--insecure-no-auth"]).await;
    for name in &acked {
        if let Err(e) = again.get(name, None).await {
            panic!("acknowledged {name} is gone: {e:?}\n{}", again.logs());
        }
    }
    let mut events = pb::event_service_client::EventServiceClient::new(again.channel.clone());
    let mut created = std::collections::HashSet::new();
    let mut page_token = String::new();
    loop {
        let msg = pb::ListEventsRequest {
            types: vec![pb::EventType::WorkspaceCreated as i32],
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        let page = events.list_events(msg).await.unwrap().into_inner();
        created.extend(page.events.into_iter().map(|e| e.workspace));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let missing: Vec<&String> = acked.iter().filter(|n| !created.contains(*n)).collect();
    assert!(missing.is_empty(), "no event for {missing:?}");
}

/// Out of the box the binary makes its key (`workspaced.key`, readable by its owner only),
/// `workspaced token` signs with it, and the log holds one line per call, never a token.
#[tokio::test]
async fn the_binary_makes_its_key_and_logs_each_call_without_its_token() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Binary::start(dir.path(), &db.url, 1, &["--log-format", "json"]).await;
    let key = dir.path().join("workspaced.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_workspaced"))
        .current_dir(dir.path())
        .args(["token", "--subject", "logged-alice"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // A probe has its line too.
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    server.get("default", Some(&good)).await.unwrap();
    // Signed with another key: refused, and named in the log only by its answer.
    let forged = sign(&serde_json::json!({"sub": "mallory", "exp": now() + 3600}));
    let err = server.get("default", Some(&forged)).await.unwrap_err();
    assert_status(&err, tonic::Code::Unauthenticated, "TOKEN_INVALID");
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let logs = server.logs();
    for token in [&good, &forged] {
        let (_, signature) = token.rsplit_once('.').unwrap();
        assert!(!logs.contains(signature), "a token in the log:\n{logs}");
    }
    let calls: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "request")
        .collect();
    for call in &calls {
        for field in ["method", "code", "latency_ms", "subject", "request_id"] {
            assert!(!call[field].is_null(), "no {field} in {call}");
        }
    }
    let probes = calls
        .iter()
        .filter(|c| c["method"] == "/grpc.health.v1.Health/Check")
        .count();
    assert_eq!(probes, 1, "{logs}");
    // One line a call: alice's, then the forged one's (after those of the start-up wait).
    let alices: Vec<_> = calls
        .iter()
        .filter(|c| c["subject"] == "logged-alice")
        .collect();
    assert_eq!(alices.len(), 1, "{logs}");
    assert_eq!(alices[0]["code"], "Ok");
    let last = calls.last().unwrap();
    assert_eq!(last["code"], "Unauthenticated", "{logs}");
    assert_eq!(calls[calls.len() - 2], *alices[0], "{logs}");
}

/// PostgreSQL: a SIGTERM while the server still starts (here it waits for another
/// replica's migrations, which may take any time) ends it at once and cleanly, with exit
/// code 0, instead of killing it or waiting for the start to finish.
#[tokio::test]
async fn a_stop_while_the_server_starts_ends_it_cleanly() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        return; // The wait is PostgreSQL's advisory lock.
    }
    let dir = tempfile::tempdir().unwrap();
    // Another replica migrating: it holds the lock `Store::migrate` takes.
    let migrating = holding(&db, "SELECT pg_advisory_xact_lock(7201050051)").await;
    let log = dir.path().join("serve.log");
    let mut child = workspaced(dir.path())
        .args([
            "serve",
            "--database-url",
            &db.url,
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Read outside the holding transaction, whose view of the activity would stand still.
    let watcher = sea_orm::Database::connect(&db.url).await.unwrap();
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event = 'advisory'";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count_on(&watcher, waiting).await < 1 {
        assert!(child.try_wait().unwrap().is_none(), "serve exited");
        assert!(tokio::time::Instant::now() < deadline, "serve never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // The other replica's migrations still hold the lock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("serve did not stop while it waited to start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    migrating.rollback().await.unwrap();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{logs}");
}

/// `WORKSPACED_INSECURE_NO_AUTH` takes the usual words for a switch, as every flag can be
/// set by its variable: `1` turns insecure mode on (with its warning), `0` leaves it off; a
/// call without a token shows which.
#[tokio::test]
async fn the_insecure_switch_takes_1_and_0_from_its_variable() {
    for (value, insecure) in [("1", true), ("yes", true), ("0", false)] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let mut child = workspaced(dir.path())
            .env("WORKSPACED_INSECURE_NO_AUTH", value)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let logs = loop {
            let logs = std::fs::read_to_string(&log).unwrap_or_default();
            if logs.contains("serving") {
                break logs;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("serve exited with {value} ({status}): {logs}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not serving: {logs}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let line = logs.lines().find(|l| l.contains("serving")).unwrap();
        let port: String = line
            .split("127.0.0.1:")
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let mut client = pb::workspace_service_client::WorkspaceServiceClient::connect(format!(
            "http://127.0.0.1:{port}"
        ))
        .await
        .unwrap();
        let answer = client
            .get_workspace(pb::GetWorkspaceRequest {
                name: "default".into(),
                id: String::new(),
            })
            .await;
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            logs.contains("--insecure-no-auth"),
            insecure,
            "{value}: {logs}"
        );
        match answer {
            Ok(_) => assert!(insecure, "{value}: served without a token"),
            Err(err) => {
                assert!(!insecure, "{value}: {err:?}");
                assert_status(&err, Code::Unauthenticated, "TOKEN_MISSING");
            }
        }
    }
}
