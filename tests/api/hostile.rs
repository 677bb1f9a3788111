//! Hostile traffic (issue 11): what a client sends, with or without a token, must not grow
//! the server's memory, hold its connections, or get answers other than the contract's.
//! Raw HTTP/2 cases use the `h2` crate as the client.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tokio_stream::StreamExt;
use tonic::{Code, Request, codegen::http::uri::PathAndQuery, metadata::MetadataValue};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;
use workspaced::{conn::ConnLimits, pb::v1 as pb, telemetry::CallLimits};

use crate::common::*;

/// Reads from `s` until the server closes it; how long that took, or `None` if it stayed
/// open for `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(start + within, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A raw HTTP/2 client connection, driven by a task of its own.
async fn h2_connect(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    (send, tokio::spawn(conn))
}

/// A gRPC request's headers for `path`, with a token.
fn grpc_head(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {}", token("alice")));
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

/// Sends `body` as the whole request (none: headers, then nothing while it waits) and
/// returns the status the server answered.
async fn raw_call(
    send: &mut h2::client::SendRequest<Bytes>,
    head: http::Request<()>,
    body: Option<&[u8]>,
) -> tonic::Status {
    let mut send = send.clone().ready().await.unwrap();
    let (resp, mut stream) = send.send_request(head, false).unwrap();
    if let Some(body) = body {
        stream
            .send_data(Bytes::copy_from_slice(body), true)
            .unwrap();
    }
    let status = final_status(resp).await;
    drop(stream);
    status
}

const GET_WORKSPACE: &str = "/workspaced.v1.WorkspaceService/GetWorkspace";

/// A GetWorkspace request for `default`, framed.
fn framed_get() -> Vec<u8> {
    use prost::Message;
    let msg = pb::GetWorkspaceRequest {
        name: "default".into(),
        id: String::new(),
    }
    .encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    body
}

/// Waits, for at most a second, until `s` holds at least `bytes` of the budget of requests
/// named `budget` (`calls` or `probes`).
async fn until_held(s: &TestServer, budget: &str, bytes: f64) {
    let metric = format!("workspaced_request_bytes_held{{budget=\"{budget}\"}}");
    let start = Instant::now();
    while sample(&scrape(s.metrics_addr.unwrap()).await, &metric) < bytes {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{bytes} bytes of {budget} were not held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn unknown_paths_share_one_metric_label() {
    let s = TestServer::spawn_with(Options {
        metrics: true,
        ..Default::default()
    })
    .await;
    let mut grpc = tonic::client::Grpc::new(s.channel.clone());
    for i in 0..200 {
        grpc.ready().await.unwrap();
        let path = PathAndQuery::try_from(format!("/x{i:08x}.Svc/m{i:08x}")).unwrap();
        let err = grpc
            .unary::<(), (), _>(Request::new(()), path, tonic_prost::ProstCodec::default())
            .await
            .unwrap_err();
        assert_status(&err, Code::Unimplemented, "METHOD_NOT_FOUND");
    }
    // An unknown method of a served service too, with or without a token.
    for token in [None, Some(token("alice"))] {
        let mut req = Request::new(());
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        grpc.ready().await.unwrap();
        let err = grpc
            .unary::<(), (), _>(
                req,
                PathAndQuery::from_static("/workspaced.v1.WorkspaceService/Nope"),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_status(&err, Code::Unimplemented, "METHOD_NOT_FOUND");
    }
    let body = scrape(s.metrics_addr.unwrap()).await;
    assert!(!body.contains("x0000"), "a client's path became a label");
    let unknown = "workspaced_grpc_requests_total{code=\"Unimplemented\",method=\"unknown\",service=\"unknown\"}";
    assert_eq!(sample(&body, unknown), 202.0);
    // Served methods keep their own labels.
    s.get_workspace(&token("alice"), "default").await.unwrap();
    let body = scrape(s.metrics_addr.unwrap()).await;
    let ok = "workspaced_grpc_requests_total{code=\"Ok\",method=\"GetWorkspace\",service=\"workspaced.v1.WorkspaceService\"}";
    assert_eq!(sample(&body, ok), 1.0);
}

fn short_timeouts() -> Options {
    Options {
        conn_limits: Some(ConnLimits {
            handshake_timeout: Duration::from_millis(600),
            idle_timeout: Duration::from_millis(1500),
            ..ConnLimits::default()
        }),
        call_limits: Some(CallLimits {
            body_timeout: Duration::from_millis(2500),
            ..CallLimits::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn silent_and_trickling_connections_are_closed() {
    let s = TestServer::spawn_with(short_timeouts()).await;
    // A socket that sends nothing.
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("a silent connection stayed open");
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
    // A slowloris: the HTTP/2 preface a byte every 100 ms, never a call.
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let writer = async {
        for b in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let start = Instant::now();
    writer.await;
    let mut buf = [0u8; 64];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(3), slow.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => {}
        }
    };
    assert!(closed, "a trickling connection stayed open");
    assert!(start.elapsed() < Duration::from_secs(4));
    // Normal calls go on.
    s.get_workspace(&token("alice"), "default").await.unwrap();
}

#[tokio::test]
async fn idle_connections_close_after_their_last_call_but_not_during_one() {
    let s = TestServer::spawn_with(short_timeouts()).await;
    let (mut send, conn) = h2_connect(s.addr).await;
    let start = Instant::now();
    // A call whose body never arrives keeps the connection busy past the idle timeout,
    // and is answered DEADLINE_EXCEEDED, not DATABASE_UNAVAILABLE.
    let status = raw_call(&mut send, grpc_head(s.addr, GET_WORKSPACE, &[]), None).await;
    assert_status(&status, Code::DeadlineExceeded, "REQUEST_TIMEOUT");
    assert!(start.elapsed() >= Duration::from_millis(2400));
    assert!(!conn.is_finished(), "a busy connection was closed");
    // Then, idle, it is closed.
    let idle = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("an idle connection stayed open")
        .unwrap()
        .ok();
    assert!(idle.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn a_health_check_whose_body_never_arrives_is_not_a_database_alarm() {
    let s = TestServer::spawn_with(short_timeouts()).await;
    let (mut send, _conn) = h2_connect(s.addr).await;
    let head = grpc_head(s.addr, "/grpc.health.v1.Health/Check", &[]);
    let status = raw_call(&mut send, head, None).await;
    assert_status(&status, Code::DeadlineExceeded, "REQUEST_TIMEOUT");
}

#[tokio::test]
async fn requests_being_read_share_a_budget_of_bytes() {
    let s = TestServer::spawn_with(Options {
        call_limits: Some(CallLimits {
            request_bytes: 100_000,
            body_timeout: Duration::from_secs(3),
            ..CallLimits::default()
        }),
        ..Default::default()
    })
    .await;
    let (send, _conn) = h2_connect(s.addr).await;
    // Two requests of 60 KB whose ends never come: the first is held while it waits...
    let chunk = Bytes::from(vec![0u8; 60_000]);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut send = send.clone().ready().await.unwrap();
        let (resp, mut stream) = send
            .send_request(grpc_head(s.addr, GET_WORKSPACE, &[]), false)
            .unwrap();
        stream.send_data(chunk.clone(), false).unwrap();
        held.push((resp, stream));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and the second, past the budget, is refused at once.
    let (second, _stream) = held.pop().unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(2), second)
        .await
        .expect("the request over the budget was not answered at once")
        .unwrap();
    let status = tonic::Status::from_header_map(resp.headers()).unwrap();
    assert_status(&status, Code::Unavailable, "OVERLOADED");
    // The first ends as a request that never arrived, and gives its bytes back.
    let (first, _stream) = held.pop().unwrap();
    let resp = first.await.unwrap();
    let status = tonic::Status::from_header_map(resp.headers()).unwrap();
    assert_status(&status, Code::DeadlineExceeded, "REQUEST_TIMEOUT");
    s.get_workspace(&token("alice"), "default").await.unwrap();
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    let s = TestServer::spawn_with(Options {
        conn_limits: Some(ConnLimits {
            // The test server's own channel holds one.
            max_connections: 3,
            ..ConnLimits::default()
        }),
        ..Default::default()
    })
    .await;
    let mut first = TcpStream::connect(s.addr).await.unwrap();
    let mut second = TcpStream::connect(s.addr).await.unwrap();
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    let took = closed_within(&mut third, Duration::from_secs(2))
        .await
        .expect("a connection over the limit stayed open");
    assert!(took < Duration::from_millis(500));
    assert!(
        closed_within(&mut first, Duration::from_millis(300))
            .await
            .is_none()
    );
    assert!(
        closed_within(&mut second, Duration::from_millis(300))
            .await
            .is_none()
    );
    // A freed slot takes the next connection (once the server has seen the close); calls on
    // the open one go on meanwhile.
    drop(first);
    let mut taken = false;
    for _ in 0..50 {
        let mut next = TcpStream::connect(s.addr).await.unwrap();
        if closed_within(&mut next, Duration::from_millis(200))
            .await
            .is_none()
        {
            taken = true;
            break;
        }
    }
    assert!(taken, "a freed slot was not given to a new connection");
    s.get_workspace(&token("alice"), "default").await.unwrap();
}

#[tokio::test]
async fn each_connection_advertises_a_stream_limit() {
    let s = TestServer::spawn().await;
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let (send, mut conn): (h2::client::SendRequest<Bytes>, _) =
        h2::client::handshake(tcp).await.unwrap();
    // The server's SETTINGS arrive as the connection is driven (until then the limit reads
    // as unbounded).
    let start = Instant::now();
    while conn.max_concurrent_send_streams() == usize::MAX
        && start.elapsed() < Duration::from_secs(5)
    {
        let _ = tokio::time::timeout(Duration::from_millis(20), &mut conn).await;
    }
    assert_eq!(conn.max_concurrent_send_streams(), 128);
    drop(send);
}

#[tokio::test]
async fn malformed_framing_is_invalid_argument() {
    let s = TestServer::spawn().await;
    let (mut send, _conn) = h2_connect(s.addr).await;
    let good = framed_get();
    let status = raw_call(
        &mut send,
        grpc_head(s.addr, GET_WORKSPACE, &[]),
        Some(&good),
    )
    .await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let mut compressed = good.clone();
    compressed[0] = 1;
    let mut two = good.clone();
    two.extend_from_slice(&good);
    let cases: [(&str, &[u8]); 5] = [
        ("compressed flag without grpc-encoding", &compressed),
        ("truncated prefix", &good[..3]),
        ("message shorter than its prefix", &good[..good.len() - 1]),
        ("no message", &[]),
        ("two messages", &two),
    ];
    for (case, body) in cases {
        let status = raw_call(&mut send, grpc_head(s.addr, GET_WORKSPACE, &[]), Some(body)).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        assert_eq!(
            status.get_details_error_info().unwrap().reason,
            "INVALID_ARGUMENT",
            "{case}"
        );
    }
    // Too large: refused, not read whole.
    let big = vec![0u8; (1 << 20) + 100];
    let status = raw_call(&mut send, grpc_head(s.addr, GET_WORKSPACE, &[]), Some(&big)).await;
    assert_status(&status, Code::ResourceExhausted, "REQUEST_TOO_LARGE");
    // A message of 64 KiB is read (and its name judged); one byte more is too large.
    for (size, code, reason) in [
        (64 << 10, Code::InvalidArgument, "INVALID_ARGUMENT"),
        ((64 << 10) + 1, Code::ResourceExhausted, "REQUEST_TOO_LARGE"),
    ] {
        let body = framed_get_of_size(size);
        let status = raw_call(
            &mut send,
            grpc_head(s.addr, GET_WORKSPACE, &[]),
            Some(&body),
        )
        .await;
        assert_status(&status, code, reason);
    }
}

/// A framed GetWorkspaceRequest whose message is `size` bytes (at least 16 KiB): a long name.
fn framed_get_of_size(size: usize) -> Vec<u8> {
    use prost::Message;
    // A tag byte and a three-byte length before the name.
    let msg = pb::GetWorkspaceRequest {
        name: "a".repeat(size - 4),
        id: String::new(),
    }
    .encode_to_vec();
    assert_eq!(msg.len(), size);
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    body
}

/// Holds the database so that calls wait in it: the write lock on SQLite, a table lock on
/// PostgreSQL. Released when the returned transaction ends.
pub(crate) async fn hold_database(db: &TestDb) -> sea_orm::DatabaseTransaction {
    let c = Database::connect(&db.url).await.unwrap();
    if db.is_postgres() {
        let tx = c.begin().await.unwrap();
        tx.execute_unprepared("LOCK TABLE workspaces IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        tx
    } else {
        c.begin_with_options(sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn calls_over_the_in_flight_limit_are_overloaded_at_once() {
    let (s, alice, held, waiting) = places_all_taken(2, Some(1)).await;
    // Once both wait in the database, the next call is refused at once.
    let (_, took) = refused(&s, &alice).await;
    assert!(took < Duration::from_millis(500), "not at once: {took:?}");
    // A call that waited that long shrank the places, down to `--min-in-flight` (without it,
    // the store's floor, which here is the bound: 2).
    assert_eq!(places(&s).await, 1.0);
    // Probes still reach it.
    let health = s
        .health()
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);
    held.rollback().await.unwrap();
    for w in waiting {
        w.await.unwrap().unwrap();
    }
    s.get_workspace(&alice, "slow-1").await.unwrap();
}

#[tokio::test]
async fn overload_runs_the_stores_floor_of_calls_by_default() {
    let (s, alice, held, waiting) = places_all_taken(8, None).await;
    // Refused calls shrink the places, at most once per 10 ms, as far as they go: 4 on
    // SQLite, 6 on PostgreSQL (without a floor, they would stay at the bound, 8).
    for _ in 0..4 {
        refused(&s, &alice).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let floor = if s.db.is_postgres() { 6.0 } else { 4.0 };
    assert_eq!(places(&s).await, floor);
    held.rollback().await.unwrap();
    for w in waiting {
        w.await.unwrap().unwrap();
    }
}

/// A server of two places in flight that stay two under overload.
async fn two_places() -> TestServer {
    TestServer::spawn_with(Options {
        call_limits: Some(CallLimits {
            max_in_flight: 2,
            min_in_flight: Some(2),
            ..CallLimits::default()
        }),
        ..Default::default()
    })
    .await
}

/// `call` with a `grpc-timeout` of 300 ms: the caller leaves then.
fn leaving<T>(call: T, caller: &str) -> Request<T> {
    let mut r = req(call, caller);
    r.set_timeout(Duration::from_millis(300));
    r
}

#[track_caller]
fn assert_left(err: &tonic::Status) {
    assert!(
        matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded),
        "not answered by the caller's timeout: {err:?}"
    );
}

#[tokio::test]
async fn a_change_whose_caller_left_keeps_its_place_and_commits() {
    let s = two_places().await;
    if !s.db.is_postgres() {
        // On SQLite a change that has the write lock never waits once it begins to commit.
        eprintln!("skipped: needs WORKSPACED_TEST_DATABASE_URL (PostgreSQL)");
        return;
    }
    let alice = token("alice");
    s.get_workspace(&alice, "default").await.unwrap();
    // A CreateWorkspace is one statement, which commits as it ends: it waits on the lock
    // having begun to commit.
    let held = hold_database(&s.db).await;
    let creates = (1..=2).map(|i| {
        let mut client = s.workspaces();
        let call = pb::CreateWorkspaceRequest {
            workspace: Some(new_ws(&format!("left-{i}"))),
            request_id: String::new(),
        };
        let r = leaving(call, &alice);
        async move { client.create_workspace(r).await }
    });
    for r in futures::future::join_all(creates).await {
        assert_left(&r.unwrap_err());
    }
    // Their callers are gone, but the calls run on and keep their places: cancelling
    // callers cannot run more calls than there are places.
    let (_, took) = refused(&s, &alice).await;
    assert!(took < Duration::from_millis(500), "not at once: {took:?}");
    held.rollback().await.unwrap();
    for name in ["left-1", "left-2"] {
        wait_for_workspace(&s, &alice, name).await;
    }
}

#[tokio::test]
async fn a_call_whose_caller_left_before_it_began_to_commit_is_dropped() {
    let s = two_places().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("held")).await;
    // Bob's first calls are the leaving ones: remembering him is a write of its own, which
    // does not make the rest of the call run on.
    add_subjects(&s, &alice, "held", &[("bob", pb::Role::Admin)]).await;
    let bob = token("bob");
    let ws = s.get_workspace(&alice, "held").await.unwrap();
    // The updates wait before they can commit: on PostgreSQL for the workspace's row lock,
    // on SQLite for the write lock.
    let held = if s.db.is_postgres() {
        holding(
            &s.db,
            "SELECT id FROM workspaces WHERE name = 'held' FOR UPDATE",
        )
        .await
    } else {
        hold_database(&s.db).await
    };
    for round in 0..4 {
        let updates = (0..2).map(|i| {
            let mut client = s.workspaces();
            let call = pb::UpdateWorkspaceRequest {
                workspace: Some(pb::Workspace {
                    description: format!("left {round} {i}"),
                    ..new_ws("held")
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["description".into()],
                }),
                etag: String::new(),
            };
            let r = leaving(call, &bob);
            async move { client.update_workspace(r).await }
        });
        // Each round finds both places free: the last round's calls were dropped when
        // their callers left, not kept waiting for the database.
        for r in futures::future::join_all(updates).await {
            assert_left(&r.unwrap_err());
        }
    }
    held.rollback().await.unwrap();
    // None of them changed the workspace, then or later.
    assert_unchanged_since(&s, &alice, "held", &ws.etag).await;
}

/// A server of `max` places in flight (shrinking to `min`, or the store's floor), with its
/// metrics; alice's token; the database held; and `max` CreateWorkspace calls of alice's
/// that wait for it, holding every place.
async fn places_all_taken(
    max: usize,
    min: Option<usize>,
) -> (
    TestServer,
    String,
    sea_orm::DatabaseTransaction,
    Vec<CreateCall>,
) {
    let s = TestServer::spawn_with(Options {
        call_limits: Some(CallLimits {
            max_in_flight: max,
            min_in_flight: min,
            ..CallLimits::default()
        }),
        metrics: true,
        ..Default::default()
    })
    .await;
    let alice = token("alice");
    // Alice is remembered before the database is held, so her probes only read.
    s.get_workspace(&alice, "default").await.unwrap();
    let held = hold_database(&s.db).await;
    let waiting = creates_in_flight(&s, &alice, max);
    (s, alice, held, waiting)
}

/// A stop lets the call in flight finish (it commits once the database is free), and ends
/// every watch with OK.
#[tokio::test]
async fn a_stop_lets_calls_in_flight_finish_and_ends_watches() {
    let s = TestServer::spawn_with(Options {
        call_limits: Some(CallLimits {
            max_in_flight: 1,
            min_in_flight: Some(1),
            ..CallLimits::default()
        }),
        ..Default::default()
    })
    .await;
    let mut watch = s
        .watch_events(&platform_admin(), pb::WatchEventsRequest::default())
        .await
        .unwrap();
    let alice = token("alice");
    s.get_workspace(&alice, "default").await.unwrap();
    let held = hold_database(&s.db).await;
    let mut waiting = creates_in_flight(&s, &alice, 1);
    // The one create holds the one place: it is in flight, waiting for the database.
    refused(&s, &alice).await;
    let stop = tokio::spawn(s.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stop.is_finished(), "stopped with a call in flight");
    held.rollback().await.unwrap();
    let created = waiting.pop().unwrap().await.unwrap().unwrap().into_inner();
    assert_eq!(created.workspace.unwrap().name, "slow-1");
    tokio::time::timeout(Duration::from_secs(10), stop)
        .await
        .expect("the stop did not end")
        .unwrap()
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = watch.next().await {
            message.unwrap();
        }
    });
    ended.await.expect("the watch did not end");
}

/// The places in flight now, from the metrics.
async fn places(s: &TestServer) -> f64 {
    sample(
        &scrape(s.metrics_addr.unwrap()).await,
        "workspaced_calls_in_flight_limit ",
    )
}

/// A CreateWorkspace call running in a task of its own.
type CreateCall =
    tokio::task::JoinHandle<Result<tonic::Response<pb::CreateWorkspaceResponse>, tonic::Status>>;

/// `n` CreateWorkspace calls by `caller`, named `slow-1`..., each in a task of its own, to
/// hold the places in flight while the database is held.
fn creates_in_flight(s: &TestServer, caller: &str, n: usize) -> Vec<CreateCall> {
    (1..=n)
        .map(|i| {
            let mut client = s.workspaces();
            let caller = caller.to_owned();
            tokio::spawn(async move {
                client
                    .create_workspace(req(
                        pb::CreateWorkspaceRequest {
                            workspace: Some(new_ws(&format!("slow-{i}"))),
                            request_id: String::new(),
                        },
                        &caller,
                    ))
                    .await
            })
        })
        .collect()
}

/// Probes until a call of `caller` is refused OVERLOADED (the places all taken), and how
/// long that call took. The probe is bad input, answered without the database whenever it
/// is let in, so it never waits there.
async fn refused(s: &TestServer, caller: &str) -> (tonic::Status, Duration) {
    for _ in 0..150 {
        let start = Instant::now();
        match s.get_workspace(caller, "Not-A-Name!").await {
            Err(e) if e.code() == Code::InvalidArgument => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                assert_status(&e, Code::Unavailable, "OVERLOADED");
                return (e, start.elapsed());
            }
            Ok(_) => panic!("a malformed name was accepted"),
        }
    }
    panic!("no call was refused");
}

fn get_with(authorizations: &[String]) -> Request<pb::GetWorkspaceRequest> {
    let mut r = Request::new(pb::GetWorkspaceRequest {
        name: "default".into(),
        id: String::new(),
    });
    for a in authorizations {
        r.metadata_mut().append(
            "authorization",
            MetadataValue::try_from(a.as_str()).unwrap(),
        );
    }
    r
}

#[tokio::test]
async fn two_authorization_entries_are_token_invalid() {
    let s = TestServer::spawn().await;
    let admin = format!("Bearer {}", platform_admin());
    let alice = format!("Bearer {}", token("alice"));
    for pair in [
        [admin.clone(), alice.clone()],
        [alice.clone(), admin.clone()],
    ] {
        let err = s
            .workspaces()
            .get_workspace(get_with(&pair))
            .await
            .unwrap_err();
        assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");
    }
    s.workspaces()
        .get_workspace(get_with(&[alice]))
        .await
        .unwrap();
}

#[tokio::test]
async fn control_characters_and_wrong_types_in_claims_are_token_invalid() {
    let s = TestServer::spawn().await;
    let exp = now() + 600;
    let bad = [
        json!({"sub": "alice\nINFO forged line", "exp": exp}),
        json!({"sub": "\u{1}alice", "exp": exp}),
        json!({"sub": "alice\u{7f}", "exp": exp}),
        json!({"sub": 42, "exp": exp}),
        json!({"sub": "alice", "email": "alice\r@example.com", "exp": exp}),
        json!({"sub": "alice", "iss": ["a", "b"], "exp": exp}),
        json!({"sub": "alice", "iss": 7, "exp": exp}),
        json!({"sub": "a".repeat(256), "exp": exp}),
    ];
    for claims in bad {
        let err = s
            .get_workspace(&sign(&claims), "default")
            .await
            .unwrap_err();
        assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");
    }
    // Printable Unicode is fine, and so is a string issuer.
    let ok = json!({"sub": "zoë", "iss": "anyone", "email": "zoë@example.com", "exp": exp});
    s.get_workspace(&sign(&ok), "default").await.unwrap();
    // An id given to something new must also show as itself; one named to find what was
    // stored, as a token's, need only be free of control characters.
    let alice = token("alice");
    for (hidden, plain) in [("m\u{202E}1", "m-1"), ("m\u{200B}2", "m-2")] {
        let err = s
            .register_resource(&alice, "default", "model", hidden)
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), ["resource_id"]);
        s.register_resource(&alice, "default", "model", plain)
            .await
            .unwrap();
        let err = s
            .unregister_resource(&alice, "default", "model", hidden)
            .await
            .unwrap_err();
        assert_status(&err, Code::NotFound, "RESOURCE_NOT_FOUND");
    }
    let err = s
        .add_member(&alice, "default", "bob\u{2066}", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["subject"]);
    let bidi = json!({"sub": "ali\u{200F}ce", "exp": exp});
    s.get_workspace(&sign(&bidi), "default").await.unwrap();
}

#[tokio::test]
async fn tokens_up_to_16_kb_are_judged_and_longer_ones_are_token_invalid() {
    let s = TestServer::spawn().await;
    let exp = now() + 600;
    let sized = |bytes: usize| {
        // base64 makes the padding 4/3 longer; the rest of the token is ~150 bytes.
        let pad = "p".repeat((bytes - 200) * 3 / 4);
        sign(&json!({"sub": "alice", "exp": exp, "pad": pad}))
    };
    let fits = sized(16 * 1024 - 100);
    assert!(
        fits.len() <= 16 * 1024 && fits.len() > 15 * 1024,
        "{}",
        fits.len()
    );
    s.get_workspace(&fits, "default").await.unwrap();
    for bytes in [17 * 1024, 64 * 1024] {
        let err = s.get_workspace(&sized(bytes), "default").await.unwrap_err();
        assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");
    }
    // The connection survived: the next call on the same channel works.
    s.get_workspace(&token("alice"), "default").await.unwrap();
}

const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// Opens a reflection stream on `send` and sends `data` on it, leaving it open.
async fn open_reflection(
    send: &h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    data: &[u8],
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let mut send = send.clone().ready().await.unwrap();
    let (resp, mut stream) = send
        .send_request(grpc_head(addr, REFLECTION, &[]), false)
        .unwrap();
    if !data.is_empty() {
        stream
            .send_data(Bytes::copy_from_slice(data), false)
            .unwrap();
    }
    (resp, stream)
}

/// The status a streamed answer ends with: in its headers (trailers-only) or its trailers.
async fn final_status(resp: h2::client::ResponseFuture) -> tonic::Status {
    let (parts, mut body) = resp.await.unwrap().into_parts();
    if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
        return status;
    }
    while body.data().await.is_some() {}
    let trailers = body.trailers().await.unwrap().unwrap();
    tonic::Status::from_header_map(&trailers).unwrap()
}

#[tokio::test]
async fn a_reflection_message_being_read_holds_budget_until_its_timeout() {
    let s = TestServer::spawn_with(Options {
        metrics: true,
        call_limits: Some(CallLimits {
            probe_bytes: 10_000,
            body_timeout: Duration::from_secs(2),
            ..CallLimits::default()
        }),
        ..Default::default()
    })
    .await;
    let (send, _conn) = h2_connect(s.addr).await;
    // A reflection message of 8,000 bytes of which 6,005 arrive, and the rest never.
    let mut partial = vec![0u8];
    partial.extend_from_slice(&8_000u32.to_be_bytes());
    partial.extend_from_slice(&[0u8; 6_000]);
    let start = Instant::now();
    let (reflection, _keep) = open_reflection(&send, s.addr, &partial).await;
    until_held(&s, "probes", 6005.0).await;
    // While it waits, a Health check with 5 KB of metadata, which the probes' budget holds
    // alone, is refused.
    let pad = "p".repeat(5_000);
    let check = || {
        (
            grpc_head(s.addr, HEALTH_CHECK, &[("x-pad", &pad)]),
            vec![0u8; 5],
        )
    };
    let (head, body) = check();
    let status = raw_call(&mut send.clone(), head, Some(&body)).await;
    assert_status(&status, Code::Unavailable, "OVERLOADED");
    // The reflection stream ends once its message is late, and says why.
    let status = final_status(reflection).await;
    assert_status(&status, Code::DeadlineExceeded, "REQUEST_TIMEOUT");
    assert!(start.elapsed() >= Duration::from_millis(1900));
    // Its bytes are given back.
    let (head, body) = check();
    let status = raw_call(&mut send.clone(), head, Some(&body)).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    // Metadata past what a probe needs is refused outright.
    let pad = "p".repeat(40_000);
    let head = grpc_head(s.addr, HEALTH_CHECK, &[("x-pad", &pad)]);
    let status = raw_call(&mut send.clone(), head, Some(&[0u8; 5])).await;
    assert_status(&status, Code::ResourceExhausted, "REQUEST_TOO_LARGE");
}

#[tokio::test]
async fn a_reflection_message_over_the_request_limit_is_refused_at_its_prefix() {
    let s = TestServer::spawn().await;
    let (send, _conn) = h2_connect(s.addr).await;
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(4u32 << 20).to_be_bytes());
    let (resp, _keep) = open_reflection(&send, s.addr, &prefix).await;
    let status = tokio::time::timeout(Duration::from_secs(2), final_status(resp))
        .await
        .expect("a message over the limit was waited for");
    assert_status(&status, Code::ResourceExhausted, "REQUEST_TOO_LARGE");
}

#[tokio::test]
async fn health_and_reflection_calls_open_on_a_connection_are_bounded() {
    let s = TestServer::spawn_with(Options {
        call_limits: Some(CallLimits {
            probe_calls: 2,
            ..CallLimits::default()
        }),
        ..Default::default()
    })
    .await;
    let (send, _conn) = h2_connect(s.addr).await;
    let first = open_reflection(&send, s.addr, &[]).await;
    let _second = open_reflection(&send, s.addr, &[]).await;
    // A third stream on the connection is refused at once, a Health check too...
    let (third, _keep) = open_reflection(&send, s.addr, &[]).await;
    let status = tokio::time::timeout(Duration::from_secs(2), final_status(third))
        .await
        .expect("a third stream was left open");
    assert_status(&status, Code::Unavailable, "OVERLOADED");
    let status = raw_call(
        &mut send.clone(),
        grpc_head(s.addr, HEALTH_CHECK, &[]),
        Some(&[0u8; 5]),
    )
    .await;
    assert_status(&status, Code::Unavailable, "OVERLOADED");
    // ...but other connections have places of their own: a watch and a check there.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let seen = watch.next().await.unwrap().unwrap();
    assert_eq!(seen.status(), ServingStatus::Serving);
    let ok = health.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(ok.into_inner().status(), ServingStatus::Serving);
    // A stream its client ends gives its slot back.
    drop(first);
    let start = Instant::now();
    loop {
        let (resp, mut stream) = open_reflection(&send, s.addr, &[]).await;
        stream.send_data(Bytes::new(), true).unwrap();
        let status = final_status(resp).await;
        if status.code() == Code::Ok {
            break;
        }
        assert_status(&status, Code::Unavailable, "OVERLOADED");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn header_blocks_of_calls_not_yet_answered_count_against_the_budget() {
    let s = TestServer::spawn_with(Options {
        metrics: true,
        call_limits: Some(CallLimits {
            request_bytes: 61_000,
            body_timeout: Duration::from_secs(2),
            ..CallLimits::default()
        }),
        ..Default::default()
    })
    .await;
    let (send, _conn) = h2_connect(s.addr).await;
    let pad = "p".repeat(60_000);
    // A call with 60 KB of metadata whose body never comes holds its headers' bytes...
    let mut held = send.clone().ready().await.unwrap();
    let (first, _first) = held
        .send_request(grpc_head(s.addr, GET_WORKSPACE, &[("x-pad", &pad)]), false)
        .unwrap();
    until_held(&s, "calls", 60_000.0).await;
    // ...so a whole call with as much metadata is refused...
    let head = grpc_head(s.addr, GET_WORKSPACE, &[("x-pad", &pad)]);
    let status = raw_call(&mut send.clone(), head, Some(&framed_get())).await;
    assert_status(&status, Code::Unavailable, "OVERLOADED");
    // ...but not a Health check with 2 KB of it: the probes' budget is their own.
    let small = "p".repeat(2_000);
    let head = grpc_head(s.addr, HEALTH_CHECK, &[("x-pad", &small)]);
    let status = raw_call(&mut send.clone(), head, Some(&[0u8; 5])).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let status = final_status(first).await;
    assert_status(&status, Code::DeadlineExceeded, "REQUEST_TIMEOUT");
    // Answered, the first gave its bytes back.
    s.get_workspace(&token("alice"), "default").await.unwrap();
}

#[tokio::test]
async fn pings_do_not_keep_an_idle_connection_open() {
    let s = TestServer::spawn_with(short_timeouts()).await;
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let (mut send, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let mut pings = conn.ping_pong().unwrap();
    let conn = tokio::spawn(conn);
    let status = raw_call(
        &mut send,
        grpc_head(s.addr, GET_WORKSPACE, &[]),
        Some(&framed_get()),
    )
    .await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    let idle = Instant::now();
    // A PING every 400 ms, well within the second that a read holds a closing back.
    let pinger = tokio::spawn(async move {
        while pings.ping(h2::Ping::opaque()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(6), conn)
        .await
        .expect("a connection sending only PINGs stayed open")
        .unwrap()
        .ok();
    assert!(idle.elapsed() >= Duration::from_millis(1400));
    pinger.abort();
}

/// A client provoking stream errors gets a GOAWAY after h2's 1,024 resets, rather than a
/// reset kept in memory for each of as many streams as it names (tonic leaves the limit
/// off unless it is set).
#[tokio::test]
async fn a_flood_of_stream_errors_ends_the_connection() {
    let s = TestServer::spawn().await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // An empty SETTINGS frame, then PRIORITY frames each naming its own stream as the one
    // it depends on: a stream error (RFC 9113, 5.3.1) the server answers with RST_STREAM.
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for i in 0..1500u32 {
        let id = 2 * i + 1;
        out.extend_from_slice(&[0, 0, 5, 2, 0]);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        out.push(15);
    }
    tcp.write_all(&out).await.unwrap();
    // Read the server's frames until a GOAWAY with ENHANCE_YOUR_CALM.
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return false;
            }
            got.extend_from_slice(&buf[..n]);
            let mut at = 0;
            while at + 9 <= got.len() {
                let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
                if at + 9 + len > got.len() {
                    break;
                }
                let (kind, payload) = (got[at + 3], &got[at + 9..at + 9 + len]);
                if kind == 7 && payload.len() >= 8 {
                    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                    return code == 0xb;
                }
                at += 9 + len;
            }
            got.drain(..at);
        }
    })
    .await
    .unwrap_or(false);
    assert!(
        found,
        "no GOAWAY (ENHANCE_YOUR_CALM) after 1,500 stream errors"
    );
    // Others go on.
    s.get_workspace(&token("alice"), "default").await.unwrap();
}
