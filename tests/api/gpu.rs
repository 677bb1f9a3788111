//! GPU admission: GPU pod requests admitted against a workspace's policy, counted against
//! `max_gprs` without ever over-admitting, held by leases, renewed and released.

use std::time::Duration;

use tonic::Code;
use workspaced::pb::v1 as pb;

use crate::common::*;

/// A workspace `ws` created by alice whose policy allows `max_gprs` GPU pod requests.
async fn workspace_with_slots(s: &TestServer, ws: &str, max_gprs: i32) {
    create(s, &token("alice"), new_ws(ws)).await;
    set_max_gprs(s, ws, max_gprs).await;
}

async fn set_max_gprs(s: &TestServer, ws: &str, max_gprs: i32) {
    let policy = pb::Policy {
        workspace: ws.into(),
        max_gprs,
        ..Default::default()
    };
    s.update_policy(&platform_admin(), policy, &["max_gprs"], "")
        .await
        .unwrap();
}

/// Whether `s` admits `id` (`gpus` a100 GPUs, a lease of `lease_secs`, 0 for the default).
async fn admitted(
    s: &TestServer,
    token: &str,
    ws: &str,
    id: &str,
    gpus: i32,
    lease_secs: i64,
) -> bool {
    let answer = s.admit_gpus(token, ws, id, gpus, lease_secs).await;
    answer.unwrap().admitted
}

fn seconds(d: &Option<prost_types::Timestamp>) -> f64 {
    let t = d.as_ref().expect("timestamp");
    t.seconds as f64 + f64::from(t.nanos) / 1e9
}

#[tokio::test]
async fn an_admitted_request_is_listed_counted_and_released() {
    let s = TestServer::spawn().await;
    let sched = platform_service();
    workspace_with_slots(&s, "gpu", 3).await;
    let msg = pb::AdmitGpuRequestRequest {
        workspace: "gpu".into(),
        id: "pod-1".into(),
        gpu_shape: "a100".into(),
        gpu_count: 2,
        memory_bytes: 1 << 30,
        priority: 7,
        exit_duration: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
        lease_duration: None,
    };
    let a = s.admit_gpu_request(&sched, msg).await.unwrap();
    assert!(a.admitted);
    assert!(a.violations.is_empty());
    let gpr = a.gpu_request.unwrap();
    assert_eq!(
        (
            gpr.workspace.as_str(),
            gpr.id.as_str(),
            gpr.gpu_shape.as_str()
        ),
        ("gpu", "pod-1", "a100")
    );
    assert_eq!(
        (gpr.gpu_count, gpr.memory_bytes, gpr.priority),
        (2, 1 << 30, 7)
    );
    assert_eq!(gpr.exit_duration.unwrap().seconds, 60);
    assert_eq!(gpr.admitted_by, "svc");
    // Unset lease_duration: five minutes.
    let lease = seconds(&gpr.expire_time) - seconds(&gpr.admit_time);
    assert!((lease - 300.0).abs() < 0.001, "{lease}");
    let usage = a.usage.unwrap();
    assert_eq!((usage.active_gprs, usage.max_gprs), (1, 3));
    assert_eq!(usage.gpus_by_shape.get("a100"), Some(&2));
    assert_eq!(usage.memory_bytes, 1 << 30);

    s.admit_gpus(&sched, "gpu", "pod-2", 1, 0).await.unwrap();
    let msg = pb::AdmitGpuRequestRequest {
        workspace: "gpu".into(),
        id: "pod-3".into(),
        gpu_shape: "h100".into(),
        gpu_count: 4,
        ..Default::default()
    };
    assert!(s.admit_gpu_request(&sched, msg).await.unwrap().admitted);
    // Viewers read usage and the list; the list is ordered by id.
    let viewer = token("vera");
    s.add_member(&token("alice"), "gpu", "vera", pb::Role::Viewer)
        .await
        .unwrap();
    let usage = s.get_gpu_usage(&viewer, "gpu").await.unwrap();
    assert_eq!(usage.workspace, "gpu");
    assert_eq!(usage.active_gprs, 3);
    assert_eq!(usage.gpus_by_shape.len(), 2);
    assert_eq!(usage.gpus_by_shape["a100"], 3);
    assert_eq!(usage.gpus_by_shape["h100"], 4);
    let page = s.list_gpu_requests(&viewer, "gpu", 2, "").await.unwrap();
    assert_eq!(page.total_size, 3);
    let ids: Vec<_> = page.gpu_requests.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["pod-1", "pod-2"]);
    let rest = s
        .list_gpu_requests(&viewer, "gpu", 2, &page.next_page_token)
        .await
        .unwrap();
    assert_eq!(rest.gpu_requests.len(), 1);
    assert_eq!(rest.gpu_requests[0].id, "pod-3");
    assert!(rest.next_page_token.is_empty());
    // A page token belongs to its workspace.
    create(&s, &token("alice"), new_ws("other")).await;
    let err = s
        .list_gpu_requests(&viewer, "other", 2, &page.next_page_token)
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, "INVALID_ARGUMENT");

    // Release frees the slot; a second release, or a renewal, finds nothing.
    s.release_gpu_request(&sched, "gpu", "pod-3").await.unwrap();
    let usage = s.get_gpu_usage(&viewer, "gpu").await.unwrap();
    assert_eq!(usage.active_gprs, 2);
    assert!(!usage.gpus_by_shape.contains_key("h100"));
    for err in [
        s.release_gpu_request(&sched, "gpu", "pod-3")
            .await
            .unwrap_err(),
        s.renew_gpu_request(&sched, "gpu", "pod-3", 0)
            .await
            .unwrap_err(),
        s.release_gpu_request(&sched, "gpu", "never")
            .await
            .unwrap_err(),
        s.renew_gpu_request(&sched, "gpu", "never", 0)
            .await
            .unwrap_err(),
    ] {
        assert_status(&err, Code::NotFound, "GPU_REQUEST_NOT_FOUND");
    }
    // A released id may be admitted again, as a new request.
    let again = s.admit_gpus(&sched, "gpu", "pod-3", 8, 0).await.unwrap();
    assert!(again.admitted);
    assert_eq!(again.gpu_request.unwrap().gpu_count, 8);
}

#[tokio::test]
async fn admitting_an_active_id_again_returns_it_once_or_refuses_other_fields() {
    let s = TestServer::spawn().await;
    let sched = platform_service();
    workspace_with_slots(&s, "idem", 2).await;
    let first = s.admit_gpus(&sched, "idem", "pod", 1, 60).await.unwrap();
    // The lease asked for is not compared, and the first lease stands.
    let again = s.admit_gpus(&sched, "idem", "pod", 1, 600).await.unwrap();
    assert!(again.admitted);
    assert_eq!(again.gpu_request, first.gpu_request);
    assert_eq!(again.usage.unwrap().active_gprs, 1);
    // A full workspace still answers the retry of what it admitted.
    s.admit_gpus(&sched, "idem", "other", 1, 60).await.unwrap();
    let retry = s.admit_gpus(&sched, "idem", "pod", 1, 60).await.unwrap();
    assert!(retry.admitted);
    assert_eq!(retry.usage.unwrap().active_gprs, 2);
    let err = s
        .admit_gpus(&sched, "idem", "pod", 2, 60)
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "GPU_REQUEST_EXISTS");
    let mut other_priority = pb::AdmitGpuRequestRequest {
        workspace: "idem".into(),
        id: "pod".into(),
        gpu_shape: "a100".into(),
        gpu_count: 1,
        priority: 5,
        ..Default::default()
    };
    let err = s
        .admit_gpu_request(&sched, other_priority.clone())
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "GPU_REQUEST_EXISTS");
    other_priority.priority = 0;
    other_priority.exit_duration = Some(prost_types::Duration {
        seconds: 1,
        nanos: 0,
    });
    let err = s
        .admit_gpu_request(&sched, other_priority)
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "GPU_REQUEST_EXISTS");
    let list = s.list_gpu_requests(&sched, "idem", 0, "").await.unwrap();
    assert_eq!(list.total_size, 2);
}

#[tokio::test]
async fn a_full_workspace_or_a_broken_rule_admits_nothing_and_says_why() {
    let s = TestServer::spawn().await;
    let sched = platform_service();
    workspace_with_slots(&s, "full", 1).await;
    let policy = pb::Policy {
        workspace: "full".into(),
        global_gpu_constraints: Some(pb::GpuConstraints {
            gpu_shapes: vec!["a100".into()],
            max_gpu_per_gpr: 4,
            max_memory_per_gpr_bytes: 0,
        }),
        ..Default::default()
    };
    s.update_policy(&platform_admin(), policy, &["global_gpu_constraints"], "")
        .await
        .unwrap();
    assert!(admitted(&s, &sched, "full", "a", 4, 0).await);
    let refused = s.admit_gpus(&sched, "full", "b", 1, 0).await.unwrap();
    assert!(!refused.admitted);
    assert!(refused.gpu_request.is_none());
    let fields: Vec<_> = refused
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["max_gprs"]);
    assert!(
        refused.violations[0].description.contains("at most 1"),
        "{:?}",
        refused.violations
    );
    assert_eq!(refused.usage.unwrap().active_gprs, 1);
    // Every rule of CheckGpuQuota, and max_gprs, one violation each.
    let msg = pb::AdmitGpuRequestRequest {
        workspace: "full".into(),
        id: "c".into(),
        gpu_shape: "t4".into(),
        gpu_count: 5,
        ..Default::default()
    };
    let refused = s.admit_gpu_request(&sched, msg).await.unwrap();
    let fields: Vec<_> = refused
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["gpu_shape", "gpu_count", "max_gprs"]);
    // Nothing was recorded.
    let list = s.list_gpu_requests(&sched, "full", 0, "").await.unwrap();
    assert_eq!(list.total_size, 1);
    assert_eq!(count_rows(&s, "SELECT COUNT(*) FROM gpu_requests").await, 1);
    // A rule broken with free slots: refused all the same.
    set_max_gprs(&s, "full", 0).await;
    let refused = s.admit_gpus(&sched, "full", "d", 5, 0).await.unwrap();
    assert!(!refused.admitted);
    let fields: Vec<_> = refused
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["gpu_count"]);
    // 0 means no limit on the count.
    for i in 0..5 {
        let id = format!("many-{i}");
        assert!(admitted(&s, &sched, "full", &id, 1, 0).await);
    }
}

#[tokio::test]
async fn lowering_max_gprs_evicts_nothing_and_admissions_wait_for_room() {
    let s = TestServer::spawn().await;
    let sched = platform_service();
    workspace_with_slots(&s, "lower", 3).await;
    for id in ["a", "b", "c"] {
        assert!(admitted(&s, &sched, "lower", id, 1, 0).await);
    }
    set_max_gprs(&s, "lower", 1).await;
    let usage = s.get_gpu_usage(&sched, "lower").await.unwrap();
    assert_eq!((usage.active_gprs, usage.max_gprs), (3, 1));
    s.release_gpu_request(&sched, "lower", "a").await.unwrap();
    assert!(!admitted(&s, &sched, "lower", "d", 1, 0).await);
    s.release_gpu_request(&sched, "lower", "b").await.unwrap();
    assert!(!admitted(&s, &sched, "lower", "d", 1, 0).await);
    s.release_gpu_request(&sched, "lower", "c").await.unwrap();
    assert!(admitted(&s, &sched, "lower", "d", 1, 0).await);
}

#[tokio::test]
async fn a_lease_counts_until_it_expires_and_not_after() {
    let s = TestServer::spawn().await;
    let sched = platform_service();
    workspace_with_slots(&s, "lease", 1).await;
    let a = s.admit_gpus(&sched, "lease", "short", 1, 1).await.unwrap();
    let gpr = a.gpu_request.unwrap();
    let lease = seconds(&gpr.expire_time) - seconds(&gpr.admit_time);
    assert!((lease - 1.0).abs() < 0.001, "{lease}");
    assert!(!admitted(&s, &sched, "lease", "next", 1, 60).await);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // No sweep ran: the expired row is still stored, and counts for nothing.
    assert_eq!(count_rows(&s, "SELECT COUNT(*) FROM gpu_requests").await, 1);
    let usage = s.get_gpu_usage(&sched, "lease").await.unwrap();
    assert_eq!(usage.active_gprs, 0);
    assert!(usage.gpus_by_shape.is_empty());
    let list = s.list_gpu_requests(&sched, "lease", 0, "").await.unwrap();
    assert_eq!((list.total_size, list.gpu_requests.len()), (0, 0));
    for err in [
        s.renew_gpu_request(&sched, "lease", "short", 60)
            .await
            .unwrap_err(),
        s.release_gpu_request(&sched, "lease", "short")
            .await
            .unwrap_err(),
    ] {
        assert_status(&err, Code::NotFound, "GPU_REQUEST_NOT_FOUND");
    }
    assert!(admitted(&s, &sched, "lease", "next", 1, 60).await);
    // An expired id may be admitted again.
    set_max_gprs(&s, "lease", 2).await;
    assert!(admitted(&s, &sched, "lease", "short", 1, 60).await);
    // The lease's end wrote no event: three admissions, no release.
    let history = s
        .events_of_types(
            "lease",
            &[
                pb::EventType::GpuRequestAdmitted,
                pb::EventType::GpuRequestReleased,
            ],
        )
        .await;
    let kinds: Vec<i32> = history.iter().map(|e| e.r#type).collect();
    assert_eq!(kinds, vec![pb::EventType::GpuRequestAdmitted as i32; 3]);
}

/// The sweep deletes ended leases and memberships, and writes no event for either: an end
/// is no change anybody made.
#[tokio::test]
async fn the_sweep_deletes_what_ended_and_writes_no_event() {
    let s = TestServer::spawn_with(Options {
        sweep_every: Some(Duration::from_millis(100)),
        ..Default::default()
    })
    .await;
    let (alice, sched) = (token("alice"), platform_service());
    workspace_with_slots(&s, "swept", 1).await;
    s.admit_gpus(&sched, "swept", "short", 1, 1).await.unwrap();
    let end = timestamp(chrono::Utc::now() + chrono::TimeDelta::seconds(1));
    s.add_member_until(&alice, "swept", "bob", pb::Role::Viewer, end)
        .await
        .unwrap();
    let history = s.events_of_types("swept", &[]).await;
    let left = || async {
        count_rows(&s, "SELECT COUNT(*) FROM gpu_requests").await
            + count_rows(
                &s,
                "SELECT COUNT(*) FROM memberships WHERE principal = 'bob'",
            )
            .await
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while left().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "not swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.events_of_types("swept", &[]).await, history);
}

#[tokio::test]
async fn renewing_moves_the_end_of_the_lease() {
    let s = TestServer::spawn().await;
    let sched = platform_service();
    workspace_with_slots(&s, "renew", 1).await;
    let first = s.admit_gpus(&sched, "renew", "pod", 1, 1).await.unwrap();
    let first = first.gpu_request.unwrap();
    let renewed = s
        .renew_gpu_request(&sched, "renew", "pod", 3)
        .await
        .unwrap();
    assert_eq!(renewed.admit_time, first.admit_time);
    assert!(seconds(&renewed.expire_time) > seconds(&first.expire_time) + 1.5);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Past the first lease, inside the renewed one: still active, still counting.
    let usage = s.get_gpu_usage(&sched, "renew").await.unwrap();
    assert_eq!(usage.active_gprs, 1);
    assert!(!admitted(&s, &sched, "renew", "other", 1, 0).await);
    // Unset: five minutes from now.
    let long = s
        .renew_gpu_request(&sched, "renew", "pod", 0)
        .await
        .unwrap();
    let left = seconds(&long.expire_time) - chrono::Utc::now().timestamp() as f64;
    assert!((295.0..=301.0).contains(&left), "{left}");
}

#[tokio::test]
async fn an_archived_workspace_admits_nothing_but_renews_and_releases() {
    let s = TestServer::spawn().await;
    let sched = platform_service();
    workspace_with_slots(&s, "arch", 0).await;
    s.admit_gpus(&sched, "arch", "a", 1, 0).await.unwrap();
    s.admit_gpus(&sched, "arch", "b", 1, 0).await.unwrap();
    s.archive_workspace(&token("alice"), "arch", "")
        .await
        .unwrap();
    let err = s.admit_gpus(&sched, "arch", "c", 1, 0).await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    // Not even the retry of an admitted one: the workspace takes no change.
    let err = s.admit_gpus(&sched, "arch", "a", 1, 0).await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    s.renew_gpu_request(&sched, "arch", "a", 60).await.unwrap();
    s.release_gpu_request(&sched, "arch", "b").await.unwrap();
    assert_eq!(
        s.get_gpu_usage(&sched, "arch").await.unwrap().active_gprs,
        1
    );
}

#[tokio::test]
async fn a_workspace_with_active_requests_is_not_deleted() {
    let s = TestServer::spawn().await;
    let (alice, sched) = (token("alice"), platform_service());
    workspace_with_slots(&s, "busy", 0).await;
    s.admit_gpus(&sched, "busy", "a", 1, 0).await.unwrap();
    s.admit_gpus(&sched, "busy", "b", 1, 1).await.unwrap();
    let err = s.delete_workspace(&alice, "busy", "").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_NOT_EMPTY");
    let failure: tonic_types::PreconditionFailure =
        tonic_types::StatusExt::get_details_precondition_failure(&err).expect("precondition");
    assert_eq!(failure.violations.len(), 1);
    let v = &failure.violations[0];
    assert_eq!(
        (v.r#type.as_str(), v.subject.as_str()),
        ("gpu_requests", "busy")
    );
    assert!(v.description.starts_with("2 active"), "{}", v.description);
    // Resources and requests: one violation each, the requests first.
    s.register_resource(&alice, "busy", "model", "m")
        .await
        .unwrap();
    let err = s.delete_workspace(&alice, "busy", "").await.unwrap_err();
    let failure = tonic_types::StatusExt::get_details_precondition_failure(&err).unwrap();
    let found: Vec<(&str, &str)> = failure
        .violations
        .iter()
        .map(|v| (v.r#type.as_str(), v.subject.as_str()))
        .collect();
    assert_eq!(found, [("gpu_requests", "busy"), ("RESOURCES", "model")]);
    assert!(
        failure.violations[1].description.starts_with("1 resource"),
        "{failure:?}"
    );
    // With more kinds than the details hold, the requests' violation is still there.
    let kinds: Vec<String> = (0..25).map(|i| format!("kind-{i:02}")).collect();
    for kind in &kinds {
        s.register_resource(&alice, "busy", kind, "r")
            .await
            .unwrap();
    }
    let err = s.delete_workspace(&alice, "busy", "").await.unwrap_err();
    let failure = tonic_types::StatusExt::get_details_precondition_failure(&err).unwrap();
    assert_eq!(failure.violations.len(), 20, "{failure:?}");
    assert_eq!(failure.violations[0].r#type, "gpu_requests", "{failure:?}");
    for kind in &kinds {
        s.unregister_resource(&alice, "busy", kind, "r")
            .await
            .unwrap();
    }
    s.unregister_resource(&alice, "busy", "model", "m")
        .await
        .unwrap();
    s.release_gpu_request(&sched, "busy", "a").await.unwrap();
    // The other one's lease ends: it no longer holds the workspace, and goes with it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.delete_workspace(&alice, "busy", "").await.unwrap();
    assert_eq!(count_rows(&s, "SELECT COUNT(*) FROM gpu_requests").await, 0);
}

#[tokio::test]
async fn bad_admissions_name_every_bad_field() {
    let s = TestServer::spawn().await;
    let sched = platform_service();
    let d = |seconds: i64, nanos: i32| Some(prost_types::Duration { seconds, nanos });
    let msg = pb::AdmitGpuRequestRequest {
        workspace: "Bad".into(),
        id: String::new(),
        gpu_shape: "bad\u{1}shape".into(),
        gpu_count: -1,
        memory_bytes: -1,
        priority: -1,
        exit_duration: d(-1, 0),
        lease_duration: d(0, 500_000_000),
    };
    let err = s.admit_gpu_request(&sched, msg).await.unwrap_err();
    assert_status(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(
        bad_fields(&err),
        [
            "exit_duration",
            "gpu_count",
            "gpu_shape",
            "id",
            "lease_duration",
            "memory_bytes",
            "workspace"
        ]
    );
    // A negative priority is the policy's to judge: outside any range, so not admitted.
    let msg = pb::AdmitGpuRequestRequest {
        workspace: "default".into(),
        id: "negative".into(),
        priority: -10,
        ..Default::default()
    };
    let r = s.admit_gpu_request(&sched, msg).await.unwrap();
    assert!(!r.admitted);
    let fields: Vec<&str> = r.violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["priority"]);
    // A nanosecond past either bound is past it.
    for lease in [
        d(24 * 3600 + 1, 0),
        d(24 * 3600, 1),
        d(0, 999_999_999),
        d(1, -1),
    ] {
        let msg = pb::AdmitGpuRequestRequest {
            workspace: "default".into(),
            id: "x".into(),
            lease_duration: lease,
            ..Default::default()
        };
        let err = s.admit_gpu_request(&sched, msg).await.unwrap_err();
        assert_eq!(bad_fields(&err), ["lease_duration"]);
    }
    let err = s
        .renew_gpu_request(&sched, "default", "x\u{1}", 0)
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["id"]);
    let err = s.release_gpu_request(&sched, "", "").await.unwrap_err();
    assert_eq!(bad_fields(&err), ["id", "workspace"]);
    let err = s
        .list_gpu_requests(&sched, "default", -1, "")
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["page_size"]);
    let err = s.get_gpu_usage(&sched, "").await.unwrap_err();
    assert_eq!(bad_fields(&err), ["workspace"]);
    // Any printable shape is the policy's to judge, as in CheckGpuQuota.
    for shape in ["nvidia.com/gpu", "A100 80GB"] {
        let msg = pb::AdmitGpuRequestRequest {
            workspace: "default".into(),
            id: shape.into(),
            gpu_shape: shape.into(),
            ..Default::default()
        };
        assert!(s.admit_gpu_request(&sched, msg).await.unwrap().admitted);
    }
    // The bounds themselves are accepted.
    for (id, lease) in [("min", d(1, 0)), ("max", d(24 * 3600, 0))] {
        let msg = pb::AdmitGpuRequestRequest {
            workspace: "default".into(),
            id: id.into(),
            lease_duration: lease,
            ..Default::default()
        };
        assert!(s.admit_gpu_request(&sched, msg).await.unwrap().admitted);
    }
}

#[tokio::test]
async fn members_read_usage_but_only_platform_principals_admit() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    workspace_with_slots(&s, "roles", 0).await;
    // Even a workspace admin is no scheduler.
    let err = s.admit_gpus(&alice, "roles", "a", 1, 0).await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    assert!(err.message().contains("schedulers"), "{}", err.message());
    assert!(
        s.admit_gpus(&platform_admin(), "roles", "a", 1, 0)
            .await
            .unwrap()
            .admitted
    );
    assert_eq!(
        s.get_gpu_usage(&alice, "roles").await.unwrap().active_gprs,
        1
    );
    let err = s
        .release_gpu_request(&alice, "roles", "a")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    // Schedulers admit into `system` too.
    assert!(
        s.admit_gpus(&platform_service(), "system", "s", 1, 0)
            .await
            .unwrap()
            .admitted
    );
}

/// Of 20 concurrent admissions into a workspace with 5 free slots, split over two replicas
/// on PostgreSQL (one SQLite instance), exactly 5 get in, 100 rounds over.
#[tokio::test]
async fn concurrent_admissions_never_exceed_max_gprs() {
    const ROUNDS: usize = 100;
    // Two rounds at a time: 40 calls, within the server's default 64 in flight.
    const AT_ONCE: usize = 2;
    const CALLERS: usize = 20;
    const SLOTS: i32 = 5;
    let (a, b) = replicas().await;
    let b = second(&a, &b);
    let sched = platform_service();
    for batch in (0..ROUNDS).collect::<Vec<_>>().chunks(AT_ONCE) {
        futures::future::join_all(batch.iter().map(|i| {
            let (a, sched) = (&a, sched.clone());
            async move {
                let ws = format!("race{i}");
                workspace_with_slots(a, &ws, SLOTS).await;
                let answers = futures::future::join_all((0..CALLERS).map(|c| {
                    let (ws, sched) = (ws.clone(), sched.clone());
                    let replica = if c % 2 == 0 { a } else { b };
                    async move {
                        replica
                            .admit_gpus(&sched, &ws, &format!("pod-{c}"), 1, 0)
                            .await
                            .unwrap()
                    }
                }))
                .await;
                let admitted = answers.iter().filter(|r| r.admitted).count();
                assert_eq!(admitted, SLOTS as usize, "round {i}");
                for r in &answers {
                    let active = r.usage.as_ref().unwrap().active_gprs;
                    assert!(active <= SLOTS, "round {i}: {active} active");
                    if !r.admitted {
                        assert_eq!(r.violations[0].field, "max_gprs");
                    }
                }
                let usage = b.get_gpu_usage(&sched, &ws).await.unwrap();
                assert_eq!(usage.active_gprs, SLOTS, "round {i}");
            }
        }))
        .await;
    }
}

/// GetGpuUsage on SQLite is answered from memory between changes (this process is the only
/// writer); each change made here, and the end of the first lease, makes it read again.
#[tokio::test]
async fn usage_follows_every_change_and_lease_end_also_between_reads() {
    let db = std::sync::Arc::new(TestDb::new().await);
    let postgres = db.is_postgres();
    let options = Options {
        metrics: true,
        ..Default::default()
    };
    let s = TestServer::spawn_on(db, options).await;
    let sched = platform_service();
    workspace_with_slots(&s, "mem", 3).await;
    let active = || async { s.get_gpu_usage(&sched, "mem").await.unwrap().active_gprs };
    assert_eq!(active().await, 0);
    for (n, (id, lease)) in [("short", 1), ("long", 60)].into_iter().enumerate() {
        let admitted = s.admit_gpus(&sched, "mem", id, 1, lease).await.unwrap();
        assert!(admitted.admitted, "{id}");
        assert_eq!(active().await, n as i32 + 1, "after admitting {id}");
    }
    // A read with nothing changed: from memory on SQLite, from the database on PostgreSQL.
    let before = metric(&s, "workspaced_db_statements_total ").await;
    assert_eq!(active().await, 2);
    let read = metric(&s, "workspaced_db_statements_total ").await > before;
    assert_eq!(read, postgres, "read the database: {read}");
    set_max_gprs(&s, "mem", 5).await;
    let usage = s.get_gpu_usage(&sched, "mem").await.unwrap();
    assert_eq!(
        (usage.active_gprs, usage.max_gprs),
        (2, 5),
        "after a policy update"
    );
    // The first lease ends: the remembered usage ends with it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(active().await, 1, "after the first lease ended");
    s.release_gpu_request(&sched, "mem", "long").await.unwrap();
    assert_eq!(active().await, 0, "after a release");
}

/// On PostgreSQL, callers that ask for a workspace's usage while a read of it runs do not
/// each read: of 31 callers, one waits in PostgreSQL for the locked table, the others in
/// the server for the next read. (That the next read begins after they asked, so that it
/// counts every admission acknowledged before, is `store::flight`'s unit test.)
#[tokio::test]
async fn concurrent_usage_reads_share_reads_rather_than_each_reading() {
    let db = std::sync::Arc::new(TestDb::new().await);
    if !db.is_postgres() {
        eprintln!("skipped: SQLite answers usage from this process's memory");
        return;
    }
    let s = TestServer::spawn_on(db.clone(), Options::default()).await;
    let sched = platform_service();
    workspace_with_slots(&s, "shared", 5).await;
    let read = || s.get_gpu_usage(&sched, "shared");
    read().await.unwrap();
    // The first read waits for the table while the others arrive.
    let lock = holding(&db, "LOCK TABLE gpu_requests IN ACCESS EXCLUSIVE MODE").await;
    let first = read();
    let later = async {
        waits_for_a_lock(&db, "SELECT%gpu_requests%").await;
        futures::future::join_all((0..30).map(|_| read())).await
    };
    let waiting = async {
        waits_for_a_lock(&db, "SELECT%gpu_requests%").await;
        // The thirty have asked meanwhile.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = count_rows(
            &s,
            // Reads only: the sweep of expired leases may wait for the table too.
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE c.relname = 'gpu_requests' AND NOT l.granted AND a.query LIKE 'SELECT%' \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .await;
        lock.rollback().await.unwrap();
        n
    };
    let (first, later, waiting) = tokio::join!(first, later, waiting);
    assert_eq!(waiting, 1, "reads waiting in PostgreSQL for the table");
    assert_eq!(first.unwrap().active_gprs, 0);
    for usage in later {
        assert_eq!(usage.unwrap().active_gprs, 0);
    }
    // A caller after an admission reads again and counts it.
    assert!(
        s.admit_gpus(&sched, "shared", "pod", 1, 0)
            .await
            .unwrap()
            .admitted
    );
    assert_eq!(read().await.unwrap().active_gprs, 1);
}

/// PostgreSQL: a delete that counts a lease as ended while a replica whose clock runs
/// behind renews it waits for the renewal and is refused, instead of deleting the renewed
/// request with its workspace after both calls were acknowledged.
#[tokio::test]
async fn a_delete_waits_for_the_renewal_of_a_lease_it_counts_as_ended() {
    let s = std::sync::Arc::new(TestServer::spawn().await);
    if !s.db.is_postgres() {
        return; // SQLite's writers take turns for the whole database.
    }
    let sched = platform_service();
    workspace_with_slots(&s, "renewing", 1).await;
    assert!(admitted(&s, &sched, "renewing", "pod", 1, 60).await);
    let micros = |secs: i64| chrono::Utc::now().timestamp_micros() + secs * 1_000_000;
    // The lease has ended, by this replica's clock ...
    holding(
        &s.db,
        &format!("UPDATE gpu_requests SET expire_us = {}", micros(-1)),
    )
    .await
    .commit()
    .await
    .unwrap();
    // ... but another replica, whose clock runs behind, is renewing it, as RenewGpuRequest
    // does: one statement, no workspace lock.
    let renewal = holding(
        &s.db,
        &format!("UPDATE gpu_requests SET expire_us = {}", micros(60)),
    )
    .await;
    let delete = tokio::spawn({
        let s = s.clone();
        async move { s.delete_workspace(&token("alice"), "renewing", "").await }
    });
    // The delete waits for the renewal's row lock before the renewal commits.
    waits_for_a_lock(&s.db, "%gpu_requests%").await;
    renewal.commit().await.unwrap();
    let err = delete.await.unwrap().unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_NOT_EMPTY");
    let usage = s.get_gpu_usage(&sched, "renewing").await.unwrap();
    assert_eq!(usage.active_gprs, 1, "the renewed request was deleted");
}

/// PostgreSQL: the sweep passes over an ended row that another transaction holds (a
/// renewal, an admission deleting ended leases in another order) and deletes the rest,
/// instead of waiting for it: a sweep that waits can be one side of a deadlock.
#[tokio::test]
async fn the_sweep_passes_over_a_row_another_transaction_holds() {
    let s = TestServer::spawn_with(Options {
        sweep_every: Some(Duration::from_millis(100)),
        ..Default::default()
    })
    .await;
    if !s.db.is_postgres() {
        return; // SQLite's writers take turns for the whole database.
    }
    let sched = platform_service();
    workspace_with_slots(&s, "held", 2).await;
    for id in ["a", "b"] {
        assert!(admitted(&s, &sched, "held", id, 1, 60).await);
    }
    // Both leases end in 5 s: time to take the lock on one before the sweep may delete it.
    let ending = chrono::Utc::now().timestamp_micros() + 5_000_000;
    holding(
        &s.db,
        &format!("UPDATE gpu_requests SET expire_us = {ending}"),
    )
    .await
    .commit()
    .await
    .unwrap();
    let hold = holding(
        &s.db,
        "SELECT 1 FROM gpu_requests WHERE id = 'a' FOR UPDATE",
    )
    .await;
    let rows = "SELECT COUNT(*) FROM gpu_requests";
    assert_eq!(
        count_rows(&s, rows).await,
        2,
        "swept before the lock was taken"
    );
    let left = |n: i64, why: &'static str| {
        let s = &s;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
            while count_rows(s, "SELECT COUNT(*) FROM gpu_requests").await != n {
                assert!(tokio::time::Instant::now() < deadline, "{why}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    left(1, "the sweep waited for the row held").await;
    hold.rollback().await.unwrap();
    left(0, "the row once held was not swept").await;
}
