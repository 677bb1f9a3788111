//! PolicyService: defaults at creation, GetPolicy, ListPolicies, UpdatePolicy (every mask
//! path, every validation rule, etags, archived workspaces) and CheckGpuQuota.

use std::io::Write;

use tonic::Code;
use workspaced::{domain::model::PolicyRules, pb::v1 as pb};

use crate::common::*;

/// Reads one field of a policy, for comparing.
type Field = fn(&pb::Policy) -> String;

fn defaults() -> PolicyRules {
    PolicyRules {
        priority_min: 10,
        priority_max: 500,
        max_gprs: 4,
        max_exit_duration_us: 3_600_000_000,
        enforce_idle_timeout: true,
        requeue_on_failure: false,
        enable_auto_eviction: true,
        gpu_shapes: vec!["a100".into(), "h100".into()],
        max_gpu_per_gpr: 8,
        max_memory_per_gpr_bytes: 80 << 30,
    }
}

fn secs(s: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: s,
        nanos: 0,
    }
}

/// A policy for `ws` with every field different from `defaults()`.
fn changed(ws: &str) -> pb::Policy {
    pb::Policy {
        workspace: ws.into(),
        priority_range: Some(pb::PriorityRange { min: 1, max: 99 }),
        max_gprs: 16,
        max_exit_duration_per_gpr: Some(secs(7200)),
        enforce_idle_timeout: false,
        requeue_on_failure: true,
        enable_auto_eviction: false,
        global_gpu_constraints: Some(pb::GpuConstraints {
            gpu_shapes: vec!["t4".into()],
            max_gpu_per_gpr: 2,
            max_memory_per_gpr_bytes: 1 << 30,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn new_workspaces_get_the_server_defaults() {
    let s = TestServer::spawn_with(Options {
        policy: Some(defaults()),
        ..Default::default()
    })
    .await;
    let alice = token("alice");
    create(&s, &alice, new_ws("gpu")).await;
    let p = s.get_policy(&alice, "gpu").await.unwrap();
    assert_eq!(p.workspace, "gpu");
    assert_eq!(
        p.priority_range,
        Some(pb::PriorityRange { min: 10, max: 500 })
    );
    assert_eq!(p.max_gprs, 4);
    assert_eq!(p.max_exit_duration_per_gpr, Some(secs(3600)));
    assert!(p.enforce_idle_timeout && !p.requeue_on_failure && p.enable_auto_eviction);
    let gpu = p.global_gpu_constraints.unwrap();
    assert_eq!(gpu.gpu_shapes, vec!["a100", "h100"]);
    assert_eq!(gpu.max_gpu_per_gpr, 8);
    assert_eq!(gpu.max_memory_per_gpr_bytes, 80 << 30);
    assert_eq!(p.updated_by, "alice");
    assert!(!p.etag.is_empty() && p.update_time.is_some());
    // The built-ins have theirs.
    s.get_policy(&alice, "default").await.unwrap();
    s.get_policy(&alice, "system").await.unwrap();
}

#[tokio::test]
async fn the_default_policy_file_is_json_and_validated() {
    let write = |text: &str| {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    };
    let f = write(
        r#"{"priority_range": {"min": 5, "max": 50}, "max_exit_duration_per_gpr": "2h",
            "global_gpu_constraints": {"gpu_shapes": ["a100"], "max_gpu_per_gpr": 4}}"#,
    );
    let rules = workspaced::config::read_policy_file(f.path()).unwrap();
    assert_eq!((rules.priority_min, rules.priority_max), (5, 50));
    assert_eq!(rules.max_exit_duration_us, 7_200_000_000);
    assert_eq!(rules.gpu_shapes, vec!["a100"]);
    assert_eq!(rules.max_gpu_per_gpr, 4);
    // Left-out fields keep the built-in defaults, an end of the priority range too.
    assert_eq!(rules.max_gprs, 0);
    let rules = workspaced::config::read_policy_file(
        write(r#"{"max_exit_duration_per_gpr": "500ns"}"#).path(),
    )
    .unwrap();
    assert_eq!(rules.max_exit_duration_us, 1, "a limit, not none");
    for (text, range) in [
        (r#"{"priority_range": {"min": 10}}"#, (10, 1_000_000)),
        (r#"{"priority_range": {"max": 10}}"#, (0, 10)),
    ] {
        let rules = workspaced::config::read_policy_file(write(text).path()).unwrap();
        assert_eq!((rules.priority_min, rules.priority_max), range, "{text}");
    }
    for bad in [
        r#"{"max_gprs": -1}"#,
        r#"{"priority_range": {"min": 9, "max": 1}}"#,
        r#"{"max_exit_duration_per_gpr": "31days"}"#,
        r#"{"max_exit_duration_per_gpr": "720h 1ns"}"#,
        r#"{"max_exit_duration_per_gpr": "soon"}"#,
        r#"{"global_gpu_constraints": {"gpu_shapes": ["a100", "a100"]}}"#,
        r#"{"max_gpr": 1}"#,
        "not json",
    ] {
        let f = write(bad);
        assert!(
            workspaced::config::read_policy_file(f.path()).is_err(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn update_policy_is_for_platform_admins_and_follows_the_mask() {
    let s = TestServer::spawn_with(Options {
        policy: Some(defaults()),
        ..Default::default()
    })
    .await;
    let alice = token("alice");
    let root = platform_admin();
    create(&s, &alice, new_ws("gpu")).await;
    // The workspace's own admin may not.
    let err = s
        .update_policy(&alice, changed("gpu"), &["max_gprs"], "")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let before = s.get_policy(&alice, "gpu").await.unwrap();
    // Each path changes its field and nothing else.
    let cases: &[(&str, Field)] = &[
        ("priority_range", |p| format!("{:?}", p.priority_range)),
        ("max_gprs", |p| p.max_gprs.to_string()),
        ("max_exit_duration_per_gpr", |p| {
            format!("{:?}", p.max_exit_duration_per_gpr)
        }),
        ("enforce_idle_timeout", |p| {
            p.enforce_idle_timeout.to_string()
        }),
        ("requeue_on_failure", |p| p.requeue_on_failure.to_string()),
        ("enable_auto_eviction", |p| {
            p.enable_auto_eviction.to_string()
        }),
        ("global_gpu_constraints.gpu_shapes", |p| {
            format!(
                "{:?}",
                p.global_gpu_constraints.as_ref().unwrap().gpu_shapes
            )
        }),
        ("global_gpu_constraints.max_gpu_per_gpr", |p| {
            p.global_gpu_constraints
                .as_ref()
                .unwrap()
                .max_gpu_per_gpr
                .to_string()
        }),
        ("global_gpu_constraints.max_memory_per_gpr_bytes", |p| {
            p.global_gpu_constraints
                .as_ref()
                .unwrap()
                .max_memory_per_gpr_bytes
                .to_string()
        }),
    ];
    let target = changed("gpu");
    let mut current = before.clone();
    for (i, (path, field)) in cases.iter().enumerate() {
        let next = s
            .update_policy(&root, target.clone(), &[path], &current.etag)
            .await
            .unwrap();
        assert_eq!(field(&next), field(&target), "{path} did not change");
        assert_ne!(next.etag, current.etag);
        assert_eq!(next.updated_by, "root");
        // Fields of the paths not yet sent keep their old values.
        for (later, later_field) in &cases[i + 1..] {
            assert_eq!(
                later_field(&next),
                later_field(&before),
                "{path} changed {later}"
            );
        }
        current = next;
    }
    // `global_gpu_constraints` as a whole, and `*`.
    let p = s
        .update_policy(&root, changed("gpu"), &["global_gpu_constraints"], "")
        .await
        .unwrap();
    assert_eq!(
        p.global_gpu_constraints,
        changed("gpu").global_gpu_constraints
    );
    let cleared = pb::Policy {
        workspace: "gpu".into(),
        ..Default::default()
    };
    let p = s.update_policy(&root, cleared, &["*"], "").await.unwrap();
    assert_eq!(p.priority_range, Some(pb::PriorityRange { min: 0, max: 0 }));
    assert_eq!(p.max_gprs, 0);
    assert_eq!(
        p.global_gpu_constraints.unwrap().gpu_shapes,
        Vec::<String>::new()
    );
    // A stale etag is ABORTED.
    let err = s
        .update_policy(&root, changed("gpu"), &["max_gprs"], &before.etag)
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
}

#[tokio::test]
async fn update_policy_rejects_bad_masks_and_reports_every_broken_rule() {
    let s = TestServer::spawn().await;
    let root = platform_admin();
    create(&s, &token("alice"), new_ws("gpu")).await;
    let err = s
        .update_policy(&root, changed("gpu"), &[], "")
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["update_mask"]);
    assert!(format!("{:?}", err.message()).contains("at least one field must be provided"));
    for path in [
        "workspace",
        "etag",
        "updated_by",
        "priority_range.min",
        "nonsense",
    ] {
        let err = s
            .update_policy(&root, changed("gpu"), &[path], "")
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["update_mask"], "{path}");
        // Beside the wildcard too, in UpdatePolicy and UpdateWorkspace alike.
        let err = s
            .update_policy(&root, changed("gpu"), &["*", path], "")
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["update_mask"], "* and {path}");
    }
    let err = s
        .update_workspace(&root, new_ws("gpu"), &["*", "name"], "")
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["update_mask"]);
    let bad = pb::Policy {
        workspace: "gpu".into(),
        priority_range: Some(pb::PriorityRange {
            min: -1,
            max: 2_000_000,
        }),
        max_gprs: -1,
        max_exit_duration_per_gpr: Some(secs(31 * 24 * 3600)),
        global_gpu_constraints: Some(pb::GpuConstraints {
            gpu_shapes: vec![
                "a100".into(),
                "bad shape!".into(),
                "a100".into(),
                String::new(),
            ],
            max_gpu_per_gpr: -1,
            max_memory_per_gpr_bytes: -1,
        }),
        ..Default::default()
    };
    let err = s.update_policy(&root, bad, &["*"], "").await.unwrap_err();
    assert_eq!(
        bad_fields(&err),
        vec![
            "policy.global_gpu_constraints.gpu_shapes[1]",
            "policy.global_gpu_constraints.gpu_shapes[2]",
            "policy.global_gpu_constraints.gpu_shapes[3]",
            "policy.global_gpu_constraints.max_gpu_per_gpr",
            "policy.global_gpu_constraints.max_memory_per_gpr_bytes",
            "policy.max_exit_duration_per_gpr",
            "policy.max_gprs",
            "policy.priority_range.max",
            "policy.priority_range.min",
        ]
    );
    // min > max, a negative duration, too many shapes.
    let bad = pb::Policy {
        workspace: "gpu".into(),
        priority_range: Some(pb::PriorityRange { min: 10, max: 5 }),
        max_exit_duration_per_gpr: Some(secs(-1)),
        global_gpu_constraints: Some(pb::GpuConstraints {
            gpu_shapes: (0..65).map(|i| format!("s{i}")).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = s.update_policy(&root, bad, &["*"], "").await.unwrap_err();
    assert_eq!(
        bad_fields(&err),
        vec![
            "policy.global_gpu_constraints.gpu_shapes",
            "policy.max_exit_duration_per_gpr",
            "policy.priority_range",
        ]
    );
    // Exactly 30 days and 64 shapes are fine.
    let edge = pb::Policy {
        workspace: "gpu".into(),
        priority_range: Some(pb::PriorityRange {
            min: 0,
            max: 1_000_000,
        }),
        max_exit_duration_per_gpr: Some(secs(30 * 24 * 3600)),
        global_gpu_constraints: Some(pb::GpuConstraints {
            gpu_shapes: (0..64).map(|i| format!("s{i}")).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    s.update_policy(&root, edge, &["*"], "").await.unwrap();
}

#[tokio::test]
async fn archived_workspaces_refuse_policy_updates() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("gpu")).await;
    s.archive_workspace(&alice, "gpu", "").await.unwrap();
    let err = s
        .update_policy(&platform_admin(), changed("gpu"), &["max_gprs"], "")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    // Reads still work.
    s.get_policy(&alice, "gpu").await.unwrap();
}

#[tokio::test]
async fn list_policies_shows_only_readable_workspaces_in_pages() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    for i in 0..5 {
        create(&s, &alice, new_ws(&format!("a{i}"))).await;
    }
    create(&s, &token("bob"), new_ws("bobs")).await;
    let mut names = Vec::new();
    let mut next = String::new();
    loop {
        let page = s.list_policies(&alice, 2, &next).await.unwrap();
        assert_eq!(page.total_size, 7);
        names.extend(page.policies.into_iter().map(|p| p.workspace));
        if page.next_page_token.is_empty() {
            break;
        }
        next = page.next_page_token;
    }
    assert_eq!(
        names,
        vec!["a0", "a1", "a2", "a3", "a4", "default", "system"]
    );
    let all = s.list_policies(&platform_service(), 0, "").await.unwrap();
    assert_eq!(all.total_size, 8);
    let err = s.list_policies(&alice, -1, "").await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_size"]);
    let err = s.list_policies(&alice, 1, "nope").await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_token"]);
}

#[tokio::test]
async fn check_gpu_quota_reports_each_broken_rule() {
    let s = TestServer::spawn_with(Options {
        policy: Some(defaults()),
        ..Default::default()
    })
    .await;
    let alice = token("alice");
    create(&s, &alice, new_ws("gpu")).await;
    let fits = pb::CheckGpuQuotaRequest {
        workspace: "gpu".into(),
        gpu_shape: "a100".into(),
        gpu_count: 8,
        memory_bytes: 80 << 30,
        priority: 500,
        exit_duration: Some(secs(3600)),
    };
    let r = s.check_gpu_quota(&alice, fits.clone()).await.unwrap();
    assert!(r.allowed);
    assert!(r.violations.is_empty());
    // Platform services may check any workspace.
    assert!(
        s.check_gpu_quota(&platform_service(), fits.clone())
            .await
            .unwrap()
            .allowed
    );
    let too_much = pb::CheckGpuQuotaRequest {
        gpu_shape: "t4".into(),
        gpu_count: 9,
        memory_bytes: (80 << 30) + 1,
        priority: 9,
        exit_duration: Some(secs(3601)),
        ..fits.clone()
    };
    let r = s.check_gpu_quota(&alice, too_much).await.unwrap();
    assert!(!r.allowed);
    let fields: Vec<&str> = r.violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "gpu_shape",
            "gpu_count",
            "memory_bytes",
            "priority",
            "exit_duration"
        ]
    );
    assert!(r.violations.iter().all(|v| !v.description.is_empty()));
    // A negative priority (Kubernetes allows them) is outside the range, not bad input.
    let negative = pb::CheckGpuQuotaRequest {
        priority: -10,
        ..fits.clone()
    };
    let r = s.check_gpu_quota(&alice, negative).await.unwrap();
    let fields: Vec<&str> = r.violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!((r.allowed, fields), (false, vec!["priority"]));
    // A shape no policy could list is bad input, as in AdmitGpuRequest.
    let bad_shape = pb::CheckGpuQuotaRequest {
        gpu_shape: "a\u{1}".into(),
        ..fits.clone()
    };
    let err = s.check_gpu_quota(&alice, bad_shape).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["gpu_shape"]);
    // A nanosecond over the limit is over it.
    let just_over = pb::CheckGpuQuotaRequest {
        exit_duration: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 1,
        }),
        ..fits.clone()
    };
    let r = s.check_gpu_quota(&alice, just_over).await.unwrap();
    let fields: Vec<&str> = r.violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["exit_duration"]);
    // One broken rule, one violation.
    let r = s
        .check_gpu_quota(
            &alice,
            pb::CheckGpuQuotaRequest {
                gpu_count: 9,
                ..fits.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.violations.len(), 1);
    assert!(r.violations[0].description.contains('8'));
    // Zero means no limit.
    let unlimited = pb::Policy {
        workspace: "gpu".into(),
        priority_range: Some(pb::PriorityRange {
            min: 0,
            max: 1_000_000,
        }),
        ..Default::default()
    };
    s.update_policy(&platform_admin(), unlimited, &["*"], "")
        .await
        .unwrap();
    let r = s
        .check_gpu_quota(
            &alice,
            pb::CheckGpuQuotaRequest {
                gpu_shape: "anything".into(),
                gpu_count: 1000,
                memory_bytes: 1 << 50,
                exit_duration: Some(secs(365 * 24 * 3600)),
                ..fits.clone()
            },
        )
        .await
        .unwrap();
    assert!(r.allowed, "{:?}", r.violations);
    // Bad input.
    let err = s
        .check_gpu_quota(
            &alice,
            pb::CheckGpuQuotaRequest {
                gpu_count: -1,
                memory_bytes: -1,
                exit_duration: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: -5,
                }),
                ..fits.clone()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&err),
        vec!["exit_duration", "gpu_count", "memory_bytes"]
    );
    // Outsiders are denied on a private workspace.
    let err = s
        .check_gpu_quota(&token("eve"), fits.clone())
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    // An archived workspace is checked as usual.
    s.archive_workspace(&alice, "gpu", "").await.unwrap();
    let r = s.check_gpu_quota(&alice, fits.clone()).await.unwrap();
    assert!(r.allowed, "{:?}", r.violations);
    let r = s
        .check_gpu_quota(
            &alice,
            pb::CheckGpuQuotaRequest {
                priority: 1_000_001,
                ..fits
            },
        )
        .await
        .unwrap();
    assert!(!r.allowed);
}
