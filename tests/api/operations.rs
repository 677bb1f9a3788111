//! Operations: health, reflection, the services not built yet, replicas starting at once,
//! insecure mode and graceful shutdown.

use std::{sync::Arc, time::Duration};

use tokio_stream::StreamExt;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use workspaced::pb::v1 as pb;

use crate::common::*;

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let s = TestServer::spawn().await;
    for service in ["", "workspaced.v1.WorkspaceService"] {
        let r = s
            .health()
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32);
    }
    let mut reflection = ServerReflectionClient::new(s.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
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
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "workspaced.v1.WorkspaceService",
        "workspaced.v1.MembershipService",
        "workspaced.v1.PolicyService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
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
}

#[tokio::test]
async fn shutdown_is_graceful() {
    let s = TestServer::spawn().await;
    create(&s, &token("alice"), new_ws("before-stop")).await;
    s.stop().await.unwrap();
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
    assert!(sample(&body, "workspaced_db_pool_connections{state=\"idle\"}") >= 0.0);
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
