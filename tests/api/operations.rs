//! Operations: health, reflection, the services not built yet, replicas starting at once,
//! insecure mode and graceful shutdown.

use std::sync::Arc;

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
    let (a, b) = tokio::join!(
        TestServer::spawn_on(db.clone(), Options::default()),
        TestServer::spawn_on(db.clone(), Options::default()),
    );
    // Each built-in exists once, and a write through one replica is read through the other.
    let r = b
        .workspaces()
        .list_workspaces(req(pb::ListWorkspacesRequest::default(), &platform_admin()))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = r.workspaces.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, vec!["default", "system"]);
    let alice = token("alice");
    let created = create(&a, &alice, new_ws("shared")).await;
    assert_eq!(get(&b, &alice, "shared").await.unwrap(), created);
    // A restart keeps everything.
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    let c = TestServer::spawn_on(db, Options::default()).await;
    assert_eq!(get(&c, &alice, "shared").await.unwrap(), created);
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
