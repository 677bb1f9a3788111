//! The authorization matrix: every workspace-scoped RPC × every kind of caller × a private,
//! an internal and a public workspace and a name that does not exist. Each cell is the
//! exact status code from the contract. Roles held through a token's groups, and roles
//! whose membership has expired, are callers too (`ALIASES`): each must answer exactly as
//! the same role held by a membership of its own, or as no role.
//!
//! Every call is made so that it changes nothing, whoever makes it: an authorized caller
//! gets the RPC's own answer ("S" below), which is OK for reads and idempotent writes, and a
//! fixed refusal past authorization for the others (a stale etag, a name that is taken, a
//! workspace that is not empty). So one set-up serves every cell.

use tonic::{Code, Request, Status, metadata::MetadataValue};
use workspaced::pb::v1 as pb;

use crate::common::*;

/// The callers, in the order of each row's columns.
const CALLERS: [&str; 8] = [
    "none",        // no token
    "outsider",    // no membership
    "viewer",      // ROLE_VIEWER member
    "editor",      // ROLE_EDITOR member
    "admin",       // ROLE_ADMIN member
    "other-admin", // admin of another workspace only
    "platform-admin",
    "platform-service",
];

/// Callers whose every cell is that of another caller: a role held through a group answers
/// as the same role held directly, and a membership past its `expire_time`, of the subject
/// or of its group, as none.
const ALIASES: [(&str, &str); 5] = [
    ("group-viewer", "viewer"),
    ("group-editor", "editor"),
    ("group-admin", "admin"),
    ("expired-admin", "outsider"),
    ("expired-group-admin", "outsider"),
];

/// Every caller with the column of `MATRIX` its cells are read from.
fn callers() -> Vec<(&'static str, usize)> {
    let column = |c: &str| CALLERS.iter().position(|x| *x == c).unwrap();
    CALLERS
        .iter()
        .map(|c| (*c, column(c)))
        .chain(ALIASES.iter().map(|(c, like)| (*c, column(like))))
        .collect()
}

/// The workspaces, in the order of each RPC's rows.
const WORKSPACES: [&str; 4] = ["m-private", "m-internal", "m-public", "m-missing"];

/// U: UNAUTHENTICATED, D: PERMISSION_DENIED, N: NOT_FOUND (workspace), S: the RPC's own
/// answer when authorized (see `success`).
#[rustfmt::skip]
const MATRIX: &[(&str, [&str; 4])] = &[
    //                          none out  view edit adm  oadm padm psvc
    ("GetWorkspace",         ["U D S S S D S S",   // private
                              "U S S S S S S S",   // internal
                              "U S S S S S S S",   // public
                              "U D D D D D N N"]), // missing
    ("UpdateWorkspace",      ["U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D D D N N"]),
    ("DeleteWorkspace",      ["U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D D D N N"]),
    ("ArchiveWorkspace",     ["U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D D D N N"]),
    ("UnarchiveWorkspace",   ["U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D D D N N"]),
    ("RegisterResource",     ["U D D S S D S S",
                              "U D D S S D S S",
                              "U S S S S S S S",
                              "U D D D D D N N"]),
    ("UnregisterResource",   ["U D D S S D S S",
                              "U D D S S D S S",
                              "U S S S S S S S",
                              "U D D D D D N N"]),
    ("ListResources",        ["U D S S S D S S",
                              "U S S S S S S S",
                              "U S S S S S S S",
                              "U D D D D D N N"]),
    ("AddMember",            ["U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D D D N N"]),
    ("GetMember",            ["U D S S S D S S",
                              "U S S S S S S S",
                              "U S S S S S S S",
                              "U D D D D D N N"]),
    ("UpdateMember",         ["U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D D D N N"]),
    ("RemoveMember",         ["U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D S D S D",
                              "U D D D D D N N"]),
    ("ListMembers",          ["U D S S S D S S",
                              "U S S S S S S S",
                              "U S S S S S S S",
                              "U D D D D D N N"]),
    // Checking oneself never fails; platform callers learn what is missing.
    ("CheckAccess",          ["U S S S S S S S",
                              "U S S S S S S S",
                              "U S S S S S S S",
                              "U S S S S S N N"]),
    // A batch never fails for what one check would: a missing workspace is not allowed.
    ("BatchCheckAccess",     ["U S S S S S S S",
                              "U S S S S S S S",
                              "U S S S S S S S",
                              "U S S S S S S S"]),
    ("GetPolicy",            ["U D S S S D S S",
                              "U S S S S S S S",
                              "U S S S S S S S",
                              "U D D D D D N N"]),
    // Platform admins only, whatever the workspace role.
    ("UpdatePolicy",         ["U D D D D D S D",
                              "U D D D D D S D",
                              "U D D D D D S D",
                              "U D D D D D N N"]),
    // Readers and platform services.
    ("CheckGpuQuota",        ["U D S S S D S S",
                              "U S S S S S S S",
                              "U S S S S S S S",
                              "U D D D D D N N"]),
    // Schedulers (platform principals) only, whatever the workspace role.
    ("AdmitGpuRequest",      ["U D D D D D S S",
                              "U D D D D D S S",
                              "U D D D D D S S",
                              "U D D D D D N N"]),
    ("RenewGpuRequest",      ["U D D D D D S S",
                              "U D D D D D S S",
                              "U D D D D D S S",
                              "U D D D D D N N"]),
    ("ReleaseGpuRequest",    ["U D D D D D S S",
                              "U D D D D D S S",
                              "U D D D D D S S",
                              "U D D D D D N N"]),
    // Readers, like GetPolicy.
    ("ListGpuRequests",      ["U D S S S D S S",
                              "U S S S S S S S",
                              "U S S S S S S S",
                              "U D D D D D N N"]),
    ("GetGpuUsage",          ["U D S S S D S S",
                              "U S S S S S S S",
                              "U S S S S S S S",
                              "U D D D D D N N"]),
    // events.list: admins only, whatever the visibility; platform callers read any
    // workspace's history, one that never existed included (an empty one).
    ("ListEvents",           ["U D D D S D S S",
                              "U D D D S D S S",
                              "U D D D S D S S",
                              "U D D D D D S S"]),
    ("WatchEvents",          ["U D D D S D S S",
                              "U D D D S D S S",
                              "U D D D S D S S",
                              "U D D D D D S S"]),
];

fn token_of(caller: &str) -> Option<String> {
    Some(match caller {
        "none" => return None,
        "platform-admin" => token_with_roles("padm", &["platform-admin"]),
        "platform-service" => token_with_roles("psvc", &["platform-service"]),
        "group-viewer" => token_with_groups("gv", &["viewers", "unrelated"]),
        "group-editor" => token_with_groups("ge", &["editors"]),
        "group-admin" => token_with_groups("ga", &["admins", "viewers"]),
        "expired-group-admin" => token_with_groups("xga", &["expired-admins"]),
        other => token(other),
    })
}

fn with_token<T>(msg: T, tok: &Option<String>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = tok {
        r.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {t}")).unwrap(),
        );
    }
    r
}

/// The RPC's answer when authorized: a code, and the reason it carries when not OK.
fn success(rpc: &str) -> (Code, Option<&'static str>) {
    match rpc {
        "UpdateWorkspace" | "ArchiveWorkspace" | "UnarchiveWorkspace" | "UpdateMember"
        | "UpdatePolicy" => (Code::Aborted, Some("ETAG_MISMATCH")),
        "DeleteWorkspace" => (Code::FailedPrecondition, Some("WORKSPACE_NOT_EMPTY")),
        "UnregisterResource" => (Code::NotFound, Some("RESOURCE_NOT_FOUND")),
        "AddMember" => (Code::AlreadyExists, Some("MEMBER_EXISTS")),
        "RemoveMember" => (Code::NotFound, Some("MEMBER_NOT_FOUND")),
        // The id `keep` is active with one GPU; the call asks for two.
        "AdmitGpuRequest" => (Code::AlreadyExists, Some("GPU_REQUEST_EXISTS")),
        "RenewGpuRequest" | "ReleaseGpuRequest" => (Code::NotFound, Some("GPU_REQUEST_NOT_FOUND")),
        _ => (Code::Ok, None),
    }
}

/// The check of the caller's own `workspaces.get` in `workspace`.
fn read_check(workspace: String) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        workspace,
        permission: "workspaces.get".into(),
        ..Default::default()
    }
}

/// Makes the call of `rpc` on `ws` as the holder of `tok`; Ok(()) or the status.
async fn call(s: &TestServer, rpc: &str, ws: &str, tok: &Option<String>) -> Result<(), Status> {
    let (w, m, p) = (s.workspaces(), s.members(), s.policies());
    let (mut w, mut m, mut p, mut e) = (w, m, p, s.events());
    let name = ws.to_string();
    let stale = "stale-etag".to_string();
    match rpc {
        "GetWorkspace" => w
            .get_workspace(with_token(
                pb::GetWorkspaceRequest {
                    name,
                    id: String::new(),
                },
                tok,
            ))
            .await
            .map(drop),
        "UpdateWorkspace" => w
            .update_workspace(with_token(
                pb::UpdateWorkspaceRequest {
                    workspace: Some(new_ws(ws)),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["description".into()],
                    }),
                    etag: stale,
                },
                tok,
            ))
            .await
            .map(drop),
        "DeleteWorkspace" => w
            .delete_workspace(with_token(
                pb::DeleteWorkspaceRequest {
                    name,
                    etag: String::new(),
                },
                tok,
            ))
            .await
            .map(drop),
        "ArchiveWorkspace" => w
            .archive_workspace(with_token(
                pb::ArchiveWorkspaceRequest { name, etag: stale },
                tok,
            ))
            .await
            .map(drop),
        "UnarchiveWorkspace" => w
            .unarchive_workspace(with_token(
                pb::UnarchiveWorkspaceRequest { name, etag: stale },
                tok,
            ))
            .await
            .map(drop),
        "RegisterResource" => w
            .register_resource(with_token(
                pb::RegisterResourceRequest {
                    workspace: name,
                    kind: "model".into(),
                    resource_id: "keep".into(),
                },
                tok,
            ))
            .await
            .map(drop),
        "UnregisterResource" => w
            .unregister_resource(with_token(
                pb::UnregisterResourceRequest {
                    workspace: name,
                    kind: "model".into(),
                    resource_id: "absent".into(),
                },
                tok,
            ))
            .await
            .map(drop),
        "ListResources" => w
            .list_resources(with_token(
                pb::ListResourcesRequest {
                    workspace: name,
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        "AddMember" => m
            .add_member(with_token(
                pb::AddMemberRequest {
                    workspace: name,
                    subject: "target".into(),
                    role: pb::Role::Viewer as i32,
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        "GetMember" => m
            .get_member(with_token(
                pb::GetMemberRequest {
                    workspace: name,
                    subject: "target".into(),
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        "UpdateMember" => m
            .update_member(with_token(
                pb::UpdateMemberRequest {
                    workspace: name,
                    subject: "target".into(),
                    role: pb::Role::Viewer as i32,
                    etag: stale,
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        "RemoveMember" => m
            .remove_member(with_token(
                pb::RemoveMemberRequest {
                    workspace: name,
                    subject: "absent".into(),
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        "ListMembers" => m
            .list_members(with_token(
                pb::ListMembersRequest {
                    workspace: name,
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        "CheckAccess" => m
            .check_access(with_token(read_check(name), tok))
            .await
            .map(drop),
        "BatchCheckAccess" => m
            .batch_check_access(with_token(
                pb::BatchCheckAccessRequest {
                    checks: vec![read_check(name)],
                },
                tok,
            ))
            .await
            .map(drop),
        "GetPolicy" => p
            .get_policy(with_token(pb::GetPolicyRequest { workspace: name }, tok))
            .await
            .map(drop),
        "UpdatePolicy" => p
            .update_policy(with_token(
                pb::UpdatePolicyRequest {
                    policy: Some(pb::Policy {
                        workspace: name,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["max_gprs".into()],
                    }),
                    etag: stale,
                },
                tok,
            ))
            .await
            .map(drop),
        "CheckGpuQuota" => p
            .check_gpu_quota(with_token(
                pb::CheckGpuQuotaRequest {
                    workspace: name,
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        "AdmitGpuRequest" => p
            .admit_gpu_request(with_token(
                pb::AdmitGpuRequestRequest {
                    workspace: name,
                    id: "keep".into(),
                    gpu_count: 2,
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        "RenewGpuRequest" => p
            .renew_gpu_request(with_token(
                pb::RenewGpuRequestRequest {
                    workspace: name,
                    id: "absent".into(),
                    lease_duration: None,
                },
                tok,
            ))
            .await
            .map(drop),
        "ReleaseGpuRequest" => p
            .release_gpu_request(with_token(
                pb::ReleaseGpuRequestRequest {
                    workspace: name,
                    id: "absent".into(),
                },
                tok,
            ))
            .await
            .map(drop),
        "ListGpuRequests" => p
            .list_gpu_requests(with_token(
                pb::ListGpuRequestsRequest {
                    workspace: name,
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        "GetGpuUsage" => p
            .get_gpu_usage(with_token(pb::GetGpuUsageRequest { workspace: name }, tok))
            .await
            .map(drop),
        "ListEvents" => e
            .list_events(with_token(
                pb::ListEventsRequest {
                    workspace: name,
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        // Answered once the watch is set up; the stream is dropped.
        "WatchEvents" => e
            .watch_events(with_token(
                pb::WatchEventsRequest {
                    workspace: name,
                    ..Default::default()
                },
                tok,
            ))
            .await
            .map(drop),
        other => panic!("no call for {other}"),
    }
}

async fn set_up(s: &TestServer) {
    let admin = token("admin");
    let mut end = chrono::Utc::now();
    for (ws, vis) in [
        ("m-private", pb::Visibility::Private),
        ("m-internal", pb::Visibility::Internal),
        ("m-public", pb::Visibility::Public),
    ] {
        create(
            s,
            &admin,
            pb::Workspace {
                name: ws.into(),
                visibility: vis as i32,
                ..Default::default()
            },
        )
        .await;
        s.add_member(&admin, ws, "viewer", pb::Role::Viewer)
            .await
            .unwrap();
        s.add_member(&admin, ws, "editor", pb::Role::Editor)
            .await
            .unwrap();
        s.add_member(&admin, ws, "target", pb::Role::Viewer)
            .await
            .unwrap();
        for (group, role) in [
            ("viewers", pb::Role::Viewer),
            ("editors", pb::Role::Editor),
            ("admins", pb::Role::Admin),
        ] {
            s.add_group_member(&admin, ws, group, role, None)
                .await
                .unwrap();
        }
        // Memberships that grant admin until this instant, and nothing after it: set just
        // before they are added, so that a slow machine cannot make it pass first.
        end = chrono::Utc::now() + chrono::TimeDelta::milliseconds(1500);
        let ending = timestamp(end);
        s.add_member_until(&admin, ws, "expired-admin", pb::Role::Admin, ending)
            .await
            .unwrap();
        s.add_group_member(&admin, ws, "expired-admins", pb::Role::Admin, Some(ending))
            .await
            .unwrap();
        s.register_resource(&admin, ws, "model", "keep")
            .await
            .unwrap();
        let msg = pb::AdmitGpuRequestRequest {
            workspace: ws.into(),
            id: "keep".into(),
            gpu_count: 1,
            ..Default::default()
        };
        let kept = s.admit_gpu_request(&platform_service(), msg).await.unwrap();
        assert!(kept.admitted);
    }
    create(s, &token("other-admin"), new_ws("m-elsewhere")).await;
    let left = (end - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(20)).await;
}

#[tokio::test]
async fn every_rpc_answers_every_caller_as_the_contract_says() {
    let s = TestServer::spawn().await;
    set_up(&s).await;
    let mut cells = 0;
    let mut wrong = Vec::new();
    for (rpc, rows) in MATRIX {
        for (ws, row) in WORKSPACES.iter().zip(rows) {
            let expected: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(expected.len(), CALLERS.len(), "{rpc} {ws}: row length");
            for (caller, column) in callers() {
                let want = expected[column];
                cells += 1;
                let got = call(&s, rpc, ws, &token_of(caller)).await;
                let (code, reason) = match want {
                    "U" => (Code::Unauthenticated, Some("TOKEN_MISSING")),
                    "D" => (Code::PermissionDenied, Some("PERMISSION_DENIED")),
                    "N" => (Code::NotFound, Some("WORKSPACE_NOT_FOUND")),
                    "S" => success(rpc),
                    other => panic!("unknown cell {other}"),
                };
                let (got_code, got_reason) = match &got {
                    Ok(()) => (Code::Ok, None),
                    Err(st) => (
                        st.code(),
                        tonic_types::StatusExt::get_details_error_info(st).map(|i| i.reason),
                    ),
                };
                let reason_ok = reason.is_none_or(|r| got_reason.as_deref() == Some(r));
                if got_code != code || !reason_ok {
                    wrong.push(format!(
                        "{rpc} on {ws} as {caller}: want {code:?}/{reason:?}, got {got_code:?}/{got_reason:?}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        cells,
        MATRIX.len() * WORKSPACES.len() * (CALLERS.len() + ALIASES.len())
    );
}

#[tokio::test]
async fn outsiders_get_the_same_answer_for_existing_and_missing_workspaces() {
    let s = TestServer::spawn().await;
    set_up(&s).await;
    let outsider = token_of("outsider");
    // The checks answer rather than refuse.
    let refusing = |rpc: &str| !matches!(rpc, "CheckAccess" | "BatchCheckAccess");
    for (rpc, _) in MATRIX.iter().filter(|(rpc, _)| refusing(rpc)) {
        let private = call(&s, rpc, "m-private", &outsider).await.unwrap_err();
        let missing = call(&s, rpc, "m-missing", &outsider).await.unwrap_err();
        assert_eq!(private.code(), missing.code(), "{rpc}");
        assert_eq!(
            private.message().replace("m-private", "NAME"),
            missing.message().replace("m-missing", "NAME"),
            "{rpc}"
        );
    }
}

/// CheckAccess agrees with enforcement: for every permission and caller, `allowed` is true
/// exactly when the RPC that needs that permission gets past authorization.
#[tokio::test]
async fn check_access_agrees_with_enforcement() {
    let s = TestServer::spawn().await;
    set_up(&s).await;
    let by_permission = [
        ("workspaces.get", "GetWorkspace"),
        ("workspaces.update", "UpdateWorkspace"),
        ("workspaces.delete", "DeleteWorkspace"),
        ("workspaces.archive", "ArchiveWorkspace"),
        ("members.list", "ListMembers"),
        ("members.manage", "AddMember"),
        ("resources.list", "ListResources"),
        ("resources.write", "RegisterResource"),
        ("policies.get", "GetPolicy"),
        ("policies.update", "UpdatePolicy"),
        ("events.list", "ListEvents"),
    ];
    let mut cells = 0;
    for (caller, _) in callers().into_iter().filter(|(c, _)| *c != "none") {
        let tok = token_of(caller);
        for ws in &WORKSPACES[..3] {
            for (permission, rpc) in by_permission {
                let answer = s
                    .members()
                    .check_access(with_token(
                        pb::CheckAccessRequest {
                            workspace: ws.to_string(),
                            permission: permission.into(),
                            ..Default::default()
                        },
                        &tok,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                let enforced = match call(&s, rpc, ws, &tok).await {
                    Ok(()) => true,
                    Err(e) => e.code() != Code::PermissionDenied,
                };
                assert_eq!(answer.allowed, enforced, "{permission} on {ws} as {caller}");
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 12 * 3 * 11);
}
