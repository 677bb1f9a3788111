//! Groups, expiring memberships, explained checks and BatchCheckAccess: group members and the
//! token's groups claim, expire_time and the last lasting admin, CheckAccess's `granted_by`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use workspaced::pb::v1 as pb;

use crate::common::*;

// Helpers: the full requests of the member RPCs, which the short forms of `rpc.rs` leave out.

/// An instant `ms` milliseconds from now, at microseconds (what the server keeps), as a
/// protobuf timestamp and as the instant itself.
fn in_ms(ms: i64) -> (prost_types::Timestamp, DateTime<Utc>) {
    let at = Utc::now() + TimeDelta::milliseconds(ms);
    let at = chrono::SubsecRound::trunc_subsecs(at, 6);
    let ts = prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    };
    (ts, at)
}

/// Sleeps until a little after `at`.
async fn sleep_past(at: DateTime<Utc>) {
    let left = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(150)).await;
}

async fn add(s: &TestServer, tok: &str, msg: pb::AddMemberRequest) -> Result<pb::Member, Status> {
    s.members()
        .add_member(req(msg, tok))
        .await
        .map(|r| r.into_inner().member.expect("member"))
}

async fn add_group(
    s: &TestServer,
    tok: &str,
    ws: &str,
    group: &str,
    role: pb::Role,
) -> Result<pb::Member, Status> {
    let msg = pb::AddMemberRequest {
        workspace: ws.into(),
        group: group.into(),
        role: role as i32,
        ..Default::default()
    };
    add(s, tok, msg).await
}

/// AddMember of `subject` (or, with `group`, of that group) ending at `end`.
async fn add_expiring(
    s: &TestServer,
    tok: &str,
    ws: &str,
    subject: &str,
    group: &str,
    role: pb::Role,
    end: prost_types::Timestamp,
) -> Result<pb::Member, Status> {
    let msg = pb::AddMemberRequest {
        workspace: ws.into(),
        subject: subject.into(),
        group: group.into(),
        role: role as i32,
        expire_time: Some(end),
        ..Default::default()
    };
    add(s, tok, msg).await
}

async fn get(s: &TestServer, tok: &str, msg: pb::GetMemberRequest) -> Result<pb::Member, Status> {
    s.members()
        .get_member(req(msg, tok))
        .await
        .map(|r| r.into_inner().member.expect("member"))
}

async fn get_group(s: &TestServer, tok: &str, ws: &str, group: &str) -> Result<pb::Member, Status> {
    let msg = pb::GetMemberRequest {
        workspace: ws.into(),
        group: group.into(),
        ..Default::default()
    };
    get(s, tok, msg).await
}

async fn update(
    s: &TestServer,
    tok: &str,
    msg: pb::UpdateMemberRequest,
) -> Result<pb::Member, Status> {
    s.members()
        .update_member(req(msg, tok))
        .await
        .map(|r| r.into_inner().member.expect("member"))
}

/// UpdateMember of the subject `subject` to `role`, with `expire_time` and `clear` as given.
async fn update_subject(
    s: &TestServer,
    tok: &str,
    ws: &str,
    subject: &str,
    role: pb::Role,
    expire_time: Option<prost_types::Timestamp>,
    clear: bool,
) -> Result<pb::Member, Status> {
    let msg = pb::UpdateMemberRequest {
        workspace: ws.into(),
        subject: subject.into(),
        role: role as i32,
        expire_time,
        clear_expire_time: clear,
        ..Default::default()
    };
    update(s, tok, msg).await
}

async fn update_group(
    s: &TestServer,
    tok: &str,
    ws: &str,
    group: &str,
    role: pb::Role,
) -> Result<pb::Member, Status> {
    let msg = pb::UpdateMemberRequest {
        workspace: ws.into(),
        group: group.into(),
        role: role as i32,
        ..Default::default()
    };
    update(s, tok, msg).await
}

async fn remove(s: &TestServer, tok: &str, msg: pb::RemoveMemberRequest) -> Result<i32, Status> {
    s.members()
        .remove_member(req(msg, tok))
        .await
        .map(|r| r.into_inner().removed_count)
}

async fn remove_group(s: &TestServer, tok: &str, ws: &str, group: &str) -> Result<i32, Status> {
    let msg = pb::RemoveMemberRequest {
        workspace: ws.into(),
        group: group.into(),
        ..Default::default()
    };
    remove(s, tok, msg).await
}

/// ListMembers of `ws`, one page.
async fn members_page(
    s: &TestServer,
    tok: &str,
    ws: &str,
    page_size: i32,
    page_token: String,
) -> pb::ListMembersResponse {
    let msg = pb::ListMembersRequest {
        workspace: ws.into(),
        page_size,
        page_token,
        ..Default::default()
    };
    s.list_members(tok, msg).await.unwrap()
}

/// A member as `(subject, group)`.
fn who(m: &pb::Member) -> (String, String) {
    (m.subject.clone(), m.group.clone())
}

fn subject(s: &str) -> (String, String) {
    (s.into(), String::new())
}

fn group(g: &str) -> (String, String) {
    (String::new(), g.into())
}

/// ListWorkspaces as `tok` with `member_group`; the names and `total_size`.
async fn workspaces_of(
    s: &TestServer,
    tok: &str,
    member_group: &str,
) -> Result<(Vec<String>, i32), Status> {
    let msg = pb::ListWorkspacesRequest {
        member_group: member_group.into(),
        ..Default::default()
    };
    s.list_workspaces(tok, msg).await.map(|r| {
        (
            r.workspaces.into_iter().map(|w| w.name).collect(),
            r.total_size,
        )
    })
}

/// A CheckAccess question.
fn question(ws: &str, permission: &str, subject: &str, groups: &[&str]) -> pb::CheckAccessRequest {
    pb::CheckAccessRequest {
        workspace: ws.into(),
        permission: permission.into(),
        subject: subject.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

async fn check(
    s: &TestServer,
    tok: &str,
    msg: pb::CheckAccessRequest,
) -> Result<pb::CheckAccessResponse, Status> {
    s.members()
        .check_access(req(msg, tok))
        .await
        .map(|r| r.into_inner())
}

async fn batch(
    s: &TestServer,
    tok: &str,
    checks: Vec<pb::CheckAccessRequest>,
) -> Result<Vec<pb::CheckAccessResponse>, Status> {
    s.members()
        .batch_check_access(req(pb::BatchCheckAccessRequest { checks }, tok))
        .await
        .map(|r| r.into_inner().results)
}

/// The CheckAccess answer with these fields.
fn answer(allowed: bool, role: pb::Role, grant: pb::Grant, group: &str) -> pb::CheckAccessResponse {
    pb::CheckAccessResponse {
        allowed,
        role: role as i32,
        granted_by: grant as i32,
        group: group.into(),
    }
}

/// The answer to a question that is not allowed and names no role.
fn nothing() -> pb::CheckAccessResponse {
    answer(false, pb::Role::Unspecified, pb::Grant::Unspecified, "")
}

/// A token for `sub` with exactly these extra claims.
fn token_with(sub: &str, extra: serde_json::Value) -> String {
    let mut claims = json!({"sub": sub, "exp": now() + 3600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    sign(&claims)
}

// 1. Group members.

#[tokio::test]
async fn group_members_are_added_read_updated_and_removed() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    let m = add_group(&s, &alice, "team", "ml", pb::Role::Editor)
        .await
        .unwrap();
    assert_eq!(m.workspace, "team");
    assert_eq!(m.group, "ml");
    assert_eq!(m.subject, "");
    assert_eq!(m.email, "");
    assert_eq!(m.role, pb::Role::Editor as i32);
    assert_eq!(m.added_by, "alice");
    assert_eq!(m.expire_time, None);
    assert!(!m.etag.is_empty() && m.create_time.is_some());
    // A read returns what the add returned.
    assert_eq!(get_group(&s, &alice, "team", "ml").await.unwrap(), m);
    // A subject of the same name is another member.
    let sub = s
        .add_member(&alice, "team", "ml", pb::Role::Viewer)
        .await
        .unwrap();
    assert_eq!((sub.subject.as_str(), sub.group.as_str()), ("ml", ""));
    assert_eq!(
        s.get_member(&alice, "team", "ml").await.unwrap().role,
        pb::Role::Viewer as i32
    );
    // Twice is MEMBER_EXISTS.
    let err = add_group(&s, &alice, "team", "ml", pb::Role::Admin)
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "MEMBER_EXISTS");

    // Update, under its etag.
    let up = update(
        &s,
        &alice,
        pb::UpdateMemberRequest {
            workspace: "team".into(),
            group: "ml".into(),
            role: pb::Role::Admin as i32,
            etag: m.etag.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((up.group.as_str(), up.subject.as_str()), ("ml", ""));
    assert_eq!(up.role, pb::Role::Admin as i32);
    assert_ne!(up.etag, m.etag);
    assert_eq!(
        get_group(&s, &alice, "team", "ml").await.unwrap().role,
        pb::Role::Admin as i32
    );
    // The subject "ml" kept its own role.
    assert_eq!(
        s.get_member(&alice, "team", "ml").await.unwrap().role,
        pb::Role::Viewer as i32
    );

    // Remove: the group goes, the subject of the same name stays.
    assert_eq!(remove_group(&s, &alice, "team", "ml").await.unwrap(), 1);
    let err = get_group(&s, &alice, "team", "ml").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    s.get_member(&alice, "team", "ml").await.unwrap();

    // An absent group is MEMBER_NOT_FOUND everywhere.
    let err = get_group(&s, &alice, "team", "ops").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    let err = update_group(&s, &alice, "team", "ops", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    let err = remove_group(&s, &alice, "team", "ml").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
}

#[tokio::test]
async fn a_member_is_exactly_one_of_subject_email_and_group() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    add_group(&s, &alice, "team", "ml", pb::Role::Viewer)
        .await
        .unwrap();
    let role = pb::Role::Viewer as i32;
    // (subject, email, group): none, or more than one.
    let selectors = [
        ("", "", ""),
        ("bob", "", "ml"),
        ("", "bob@example.com", "ml"),
        ("bob", "bob@example.com", "ml"),
    ];
    for (subject, email, group) in selectors {
        let case = format!("{subject:?} {email:?} {group:?}");
        let err = add(
            &s,
            &alice,
            pb::AddMemberRequest {
                workspace: "team".into(),
                subject: subject.into(),
                email: email.into(),
                group: group.into(),
                role,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["subject"], "AddMember {case}");
        let err = remove(
            &s,
            &alice,
            pb::RemoveMemberRequest {
                workspace: "team".into(),
                subject: subject.into(),
                email: email.into(),
                group: group.into(),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["subject"], "RemoveMember {case}");
    }
    // GetMember and UpdateMember take subject or group.
    for (subject, group) in [("", ""), ("alice", "ml")] {
        let case = format!("{subject:?} {group:?}");
        let err = get(
            &s,
            &alice,
            pb::GetMemberRequest {
                workspace: "team".into(),
                subject: subject.into(),
                group: group.into(),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["subject"], "GetMember {case}");
        let err = update(
            &s,
            &alice,
            pb::UpdateMemberRequest {
                workspace: "team".into(),
                subject: subject.into(),
                group: group.into(),
                role,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["subject"], "UpdateMember {case}");
    }
    // Group names: 1-255 printable characters.
    for bad in ["ml\u{7}", "a\nb", &"g".repeat(256)] {
        let err = add_group(&s, &alice, "team", bad, pb::Role::Viewer)
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["group"], "AddMember {bad:?}");
        let err = get_group(&s, &alice, "team", bad).await.unwrap_err();
        assert_eq!(bad_fields(&err), vec!["group"], "GetMember {bad:?}");
        let err = update_group(&s, &alice, "team", bad, pb::Role::Viewer)
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["group"], "UpdateMember {bad:?}");
        let err = remove_group(&s, &alice, "team", bad).await.unwrap_err();
        assert_eq!(bad_fields(&err), vec!["group"], "RemoveMember {bad:?}");
    }
    // 255 characters, spaces and capitals are a group.
    let longest = "g".repeat(255);
    for good in [longest.as_str(), "ML Team/Ops"] {
        let m = add_group(&s, &alice, "team", good, pb::Role::Viewer)
            .await
            .unwrap();
        assert_eq!(m.group, good);
        assert_eq!(get_group(&s, &alice, "team", good).await.unwrap(), m);
    }
}

// 2. The token's groups.

#[tokio::test]
async fn a_tokens_groups_give_the_roles_their_memberships_hold() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    add_group(&s, &alice, "team", "ml", pb::Role::Viewer)
        .await
        .unwrap();
    let bob_ml = token_with_groups("bob", &["data", "ml"]);
    let bob = token("bob");
    // Only the token with the group reads the private workspace.
    let err = s.get_workspace(&bob, "team").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let err = s
        .get_workspace(&token_with_groups("bob", &["data"]), "team")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    s.get_workspace(&bob_ml, "team").await.unwrap();
    let ws = |description: &str| pb::Workspace {
        name: "team".into(),
        description: description.into(),
        ..Default::default()
    };
    let err = s
        .update_workspace(&bob_ml, ws("by ml"), &["description"], "")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    // The group made admin: its members update the workspace and manage its members.
    update_group(&s, &alice, "team", "ml", pb::Role::Admin)
        .await
        .unwrap();
    let got = s
        .update_workspace(&bob_ml, ws("by ml"), &["description"], "")
        .await
        .unwrap();
    assert_eq!(got.description, "by ml");
    s.add_member(&bob_ml, "team", "carol", pb::Role::Viewer)
        .await
        .unwrap();
    let err = s
        .update_workspace(&bob, ws("by bob"), &["description"], "")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");

    // The effective role is the highest of its own, its groups' and the visibility's.
    update_group(&s, &alice, "team", "ml", pb::Role::Editor)
        .await
        .unwrap();
    s.add_member(&alice, "team", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let role = |tok: String| {
        let s = &s;
        async move {
            check(s, &tok, question("team", "workspaces.get", "", &[]))
                .await
                .unwrap()
                .role
        }
    };
    assert_eq!(role(bob.clone()).await, pb::Role::Viewer as i32);
    assert_eq!(role(bob_ml.clone()).await, pb::Role::Editor as i32);
    s.update_member(&alice, "team", "bob", pb::Role::Admin, "")
        .await
        .unwrap();
    assert_eq!(role(bob_ml.clone()).await, pb::Role::Admin as i32);
    // Of two groups, the higher; a public workspace grants editor to anyone.
    s.update_member(&alice, "team", "bob", pb::Role::Viewer, "")
        .await
        .unwrap();
    add_group(&s, &alice, "team", "ops", pb::Role::Admin)
        .await
        .unwrap();
    assert_eq!(
        role(token_with_groups("bob", &["ml", "ops"])).await,
        pb::Role::Admin as i32
    );
    s.update_workspace(
        &alice,
        pb::Workspace {
            name: "team".into(),
            visibility: pb::Visibility::Public as i32,
            ..Default::default()
        },
        &["visibility"],
        "",
    )
    .await
    .unwrap();
    update_group(&s, &alice, "team", "ml", pb::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(role(bob_ml).await, pb::Role::Editor as i32);
    assert_eq!(
        role(token_with_groups("dan", &["ml"])).await,
        pb::Role::Editor as i32
    );
}

#[tokio::test]
async fn a_groups_claim_that_is_not_an_array_of_group_names_is_token_invalid() {
    let s = TestServer::spawn().await;
    let bads = [
        json!(7),
        json!("ml"),
        json!(""),
        json!({"ml": true}),
        json!([1]),
        json!(["ml", 2]),
        json!([["ml"]]),
        json!([""]),
        json!(["ml\u{7}"]),
        json!(["a\nb"]),
        json!(["g".repeat(256)]),
    ];
    for bad in bads {
        let tok = token_with("alice", json!({"groups": bad}));
        let err = s.get_workspace(&tok, "default").await.unwrap_err();
        assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");
        assert!(
            !err.message().contains(&tok),
            "the token is echoed for {bad}"
        );
    }
    // The same claims with valid groups are accepted.
    for good in [
        json!([]),
        json!(["ml"]),
        json!(["g".repeat(255), "ML Team"]),
    ] {
        let tok = token_with("alice", json!({"groups": good}));
        s.get_workspace(&tok, "default").await.unwrap();
    }
}

#[tokio::test]
async fn the_groups_claim_name_is_configurable() {
    let s = TestServer::spawn_with(Options {
        groups_claim: Some("teams".into()),
        ..Default::default()
    })
    .await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    add_group(&s, &alice, "team", "ml", pb::Role::Viewer)
        .await
        .unwrap();
    s.get_workspace(&token_with("bob", json!({"teams": ["ml"]})), "team")
        .await
        .unwrap();
    // Under the default name, groups are an unknown claim: neither read nor judged.
    for groups in [json!(["ml"]), json!(7)] {
        let err = s
            .get_workspace(&token_with("bob", json!({"groups": groups})), "team")
            .await
            .unwrap_err();
        assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    let err = s
        .get_workspace(&token_with("bob", json!({"teams": [7]})), "team")
        .await
        .unwrap_err();
    assert_status(&err, Code::Unauthenticated, "TOKEN_INVALID");
}

// 3. ListMembers.

#[tokio::test]
async fn list_members_gives_subjects_then_groups_and_pages_across_the_boundary() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    // Group names that sort before and after the subjects, added in no order.
    for g in ["ml", "Zeta", "alpha"] {
        add_group(&s, &alice, "team", g, pb::Role::Viewer)
            .await
            .unwrap();
    }
    for sub in ["zed", "bob"] {
        s.add_member(&alice, "team", sub, pb::Role::Editor)
            .await
            .unwrap();
    }
    let expected = vec![
        subject("alice"),
        subject("bob"),
        subject("zed"),
        group("Zeta"),
        group("alpha"),
        group("ml"),
    ];
    let all = members_page(&s, &alice, "team", 0, String::new()).await;
    assert_eq!(all.members.iter().map(who).collect::<Vec<_>>(), expected);
    assert_eq!(all.total_size, 6);
    assert!(all.next_page_token.is_empty());
    for m in &all.members {
        // A member is one or the other.
        assert!(m.subject.is_empty() != m.group.is_empty(), "{m:?}");
    }
    // Every page size walks every member once, in order.
    for size in 1..=4 {
        let mut seen = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = members_page(&s, &alice, "team", size, page_token).await;
            assert_eq!(page.total_size, 6, "page size {size}");
            assert!(page.members.len() <= size as usize);
            seen.extend(page.members.iter().map(who));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
            assert!(seen.len() <= 6, "page size {size}: {seen:?}");
        }
        assert_eq!(seen, expected, "page size {size}");
    }
    // The role filter applies to groups too.
    let msg = pb::ListMembersRequest {
        workspace: "team".into(),
        role: pb::Role::Viewer as i32,
        ..Default::default()
    };
    let viewers = s.list_members(&alice, msg).await.unwrap();
    assert_eq!(
        viewers.members.iter().map(who).collect::<Vec<_>>(),
        vec![group("Zeta"), group("alpha"), group("ml")]
    );
    assert_eq!(viewers.total_size, 3);
}

// 4. ListWorkspaces.

#[tokio::test]
async fn list_workspaces_reaches_workspaces_through_groups() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    for name in ["a-team", "b-team", "c-team"] {
        create(&s, &alice, new_ws(name)).await;
    }
    create(
        &s,
        &alice,
        pb::Workspace {
            name: "open".into(),
            visibility: pb::Visibility::Internal as i32,
            ..Default::default()
        },
    )
    .await;
    add_group(&s, &alice, "a-team", "ml", pb::Role::Viewer)
        .await
        .unwrap();
    add_group(&s, &alice, "b-team", "ops", pb::Role::Viewer)
        .await
        .unwrap();
    add_group(&s, &alice, "open", "ml", pb::Role::Editor)
        .await
        .unwrap();
    let bob_ml = token_with_groups("bob", &["ml"]);
    let shared = ["default", "open", "system"];
    let (names, total) = workspaces_of(&s, &bob_ml, "").await.unwrap();
    assert_eq!(names, ["a-team", "default", "open", "system"]);
    assert_eq!(total, 4);
    let (names, total) = workspaces_of(&s, &token("bob"), "").await.unwrap();
    assert_eq!(names, shared);
    assert_eq!(total, 3);
    // member_group: only where that group is a member, whatever else the caller reads.
    let (names, total) = workspaces_of(&s, &bob_ml, "ml").await.unwrap();
    assert_eq!(names, ["a-team", "open"]);
    assert_eq!(total, 2);
    // A group not in the caller's token needs a platform role.
    for tok in [bob_ml.clone(), token("bob"), alice.clone()] {
        let err = workspaces_of(&s, &tok, "ops").await.unwrap_err();
        assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    for tok in [platform_service(), platform_admin()] {
        let (names, total) = workspaces_of(&s, &tok, "ops").await.unwrap();
        assert_eq!(names, ["b-team"]);
        assert_eq!(total, 1);
        let (names, total) = workspaces_of(&s, &tok, "nobody").await.unwrap();
        assert!(names.is_empty());
        assert_eq!(total, 0);
    }
    // The group's name is checked like a claim's.
    let err = workspaces_of(&s, &bob_ml, "ml\u{7}").await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["member_group"]);
}

// 5. Removing oneself.

#[tokio::test]
async fn a_member_removes_its_own_membership_but_not_its_groups() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    add_group(&s, &alice, "team", "ml", pb::Role::Editor)
        .await
        .unwrap();
    s.add_member(&alice, "team", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let bob = token_with_groups("bob", &["ml"]);
    let carol = token_with_groups("carol", &["ml"]);
    // Neither a member through the group nor one with its own membership removes the group.
    for tok in [&carol, &bob] {
        let err = remove_group(&s, tok, "team", "ml").await.unwrap_err();
        assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    }
    get_group(&s, &alice, "team", "ml").await.unwrap();
    // Bob leaves; the group, and with it bob's access, stays.
    assert_eq!(s.remove_member(&bob, "team", "bob").await.unwrap(), 1);
    let err = s.get_member(&alice, "team", "bob").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    get_group(&s, &alice, "team", "ml").await.unwrap();
    s.get_workspace(&bob, "team").await.unwrap();
    // An admin removes the group.
    assert_eq!(remove_group(&s, &alice, "team", "ml").await.unwrap(), 1);
    let err = s.get_workspace(&carol, "team").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
}

// 6. Expiry.

#[tokio::test]
async fn expire_time_is_in_the_future_and_updates_keep_set_or_clear_it() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    let (past, _) = in_ms(-60_000);
    let (end, _) = in_ms(3_600_000);
    let (later, _) = in_ms(7_200_000);
    let err = add_expiring(&s, &alice, "team", "bob", "", pb::Role::Viewer, past)
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["expire_time"]);
    let err = add_expiring(&s, &alice, "team", "", "ml", pb::Role::Viewer, past)
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["expire_time"]);
    let m = add_expiring(&s, &alice, "team", "bob", "", pb::Role::Viewer, end)
        .await
        .unwrap();
    assert_eq!(m.expire_time, Some(end));
    assert_eq!(
        s.get_member(&alice, "team", "bob")
            .await
            .unwrap()
            .expire_time,
        Some(end)
    );
    // Both an expire_time and clear_expire_time; an expire_time in the past.
    let err = update_subject(
        &s,
        &alice,
        "team",
        "bob",
        pb::Role::Viewer,
        Some(later),
        true,
    )
    .await
    .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["clear_expire_time"]);
    let err = update_subject(
        &s,
        &alice,
        "team",
        "bob",
        pb::Role::Viewer,
        Some(past),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["expire_time"]);
    // Without expire_time an update keeps it.
    let m = update_subject(&s, &alice, "team", "bob", pb::Role::Editor, None, false)
        .await
        .unwrap();
    assert_eq!(m.role, pb::Role::Editor as i32);
    assert_eq!(m.expire_time, Some(end));
    assert_eq!(
        s.get_member(&alice, "team", "bob")
            .await
            .unwrap()
            .expire_time,
        Some(end)
    );
    // A new one replaces it.
    let m = update_subject(
        &s,
        &alice,
        "team",
        "bob",
        pb::Role::Editor,
        Some(later),
        false,
    )
    .await
    .unwrap();
    assert_eq!(m.expire_time, Some(later));
    assert_eq!(
        s.get_member(&alice, "team", "bob")
            .await
            .unwrap()
            .expire_time,
        Some(later)
    );
    // clear_expire_time removes it.
    let m = update_subject(&s, &alice, "team", "bob", pb::Role::Editor, None, true)
        .await
        .unwrap();
    assert_eq!(m.expire_time, None);
    let got = s.get_member(&alice, "team", "bob").await.unwrap();
    assert_eq!(got.expire_time, None);
    // role stays required.
    let err = update_subject(
        &s,
        &alice,
        "team",
        "bob",
        pb::Role::Unspecified,
        Some(end),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["role"]);
    // ListMembers shows the ends.
    add_expiring(&s, &alice, "team", "", "ml", pb::Role::Viewer, end)
        .await
        .unwrap();
    let list = members_page(&s, &alice, "team", 0, String::new()).await;
    let ends: Vec<_> = list
        .members
        .iter()
        .map(|m| (who(m), m.expire_time))
        .collect();
    assert_eq!(
        ends,
        vec![
            (subject("alice"), None),
            (subject("bob"), None),
            (group("ml"), Some(end)),
        ]
    );
}

#[tokio::test]
async fn a_membership_grants_until_its_expire_time_and_is_absent_after_it() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let bob = token("bob");
    let svc = platform_service();
    create(&s, &alice, new_ws("team")).await;
    let (end, at) = in_ms(1_500);
    let m = add_expiring(&s, &alice, "team", "bob", "", pb::Role::Editor, end)
        .await
        .unwrap();
    assert_eq!(m.expire_time, Some(end));
    // Before: it grants, everywhere (and every view has seen it).
    assert_eq!(
        s.get_member(&alice, "team", "bob")
            .await
            .unwrap()
            .expire_time,
        Some(end)
    );
    s.get_workspace(&bob, "team").await.unwrap();
    let r = s
        .check_access(&bob, "team", "resources.write", "")
        .await
        .unwrap();
    assert_eq!(r, answer(true, pb::Role::Editor, pb::Grant::Membership, ""));
    let r = s
        .check_access_with(&svc, "team", "resources.write", "bob", true)
        .await
        .unwrap();
    assert!(r.allowed);
    let list = members_page(&s, &alice, "team", 0, String::new()).await;
    assert_eq!(list.members.len(), 2);
    assert_eq!(list.total_size, 2);
    let (names, total) = workspaces_of(&s, &bob, "").await.unwrap();
    assert_eq!(names, ["default", "system", "team"]);
    assert_eq!(total, 3);
    let by_member = pb::ListWorkspacesRequest {
        member: "bob".into(),
        ..Default::default()
    };
    let listed = s.list_workspaces(&svc, by_member.clone()).await.unwrap();
    assert_eq!(listed.total_size, 1);
    assert!(
        at > Utc::now(),
        "the set-up took longer than the membership"
    );

    sleep_past(at).await;
    // After: absent for every RPC, on the cached path and on the database's.
    let err = s.get_member(&alice, "team", "bob").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    let err = s.get_workspace(&bob, "team").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let r = s
        .check_access(&bob, "team", "resources.write", "")
        .await
        .unwrap();
    assert_eq!(r, nothing());
    for consistent in [false, true] {
        let r = s
            .check_access_with(&svc, "team", "resources.write", "bob", consistent)
            .await
            .unwrap();
        assert_eq!(r, nothing(), "fully_consistent {consistent}");
    }
    let list = members_page(&s, &alice, "team", 0, String::new()).await;
    assert_eq!(
        list.members.iter().map(who).collect::<Vec<_>>(),
        vec![subject("alice")]
    );
    assert_eq!(list.total_size, 1);
    let (names, total) = workspaces_of(&s, &bob, "").await.unwrap();
    assert_eq!(names, ["default", "system"]);
    assert_eq!(total, 2);
    let listed = s.list_workspaces(&svc, by_member).await.unwrap();
    assert!(listed.workspaces.is_empty());
    assert_eq!(listed.total_size, 0);
    let err = update_subject(&s, &alice, "team", "bob", pb::Role::Viewer, None, false)
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    let err = s.remove_member(&alice, "team", "bob").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    // It can be added again, and then grants again.
    let again = s
        .add_member(&alice, "team", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(again.expire_time, None);
    assert_eq!(again.role, pb::Role::Viewer as i32);
    s.get_workspace(&bob, "team").await.unwrap();
    assert_eq!(
        members_page(&s, &alice, "team", 0, String::new())
            .await
            .total_size,
        2
    );
}

#[tokio::test]
async fn a_group_membership_grants_until_its_expire_time() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let bob = token_with_groups("bob", &["ml"]);
    create(&s, &alice, new_ws("team")).await;
    let (end, at) = in_ms(1_500);
    let m = add_expiring(&s, &alice, "team", "", "ml", pb::Role::Editor, end)
        .await
        .unwrap();
    assert_eq!((m.group.as_str(), m.expire_time), ("ml", Some(end)));
    s.get_workspace(&bob, "team").await.unwrap();
    let r = s
        .check_access(&bob, "team", "resources.write", "")
        .await
        .unwrap();
    assert_eq!(r, answer(true, pb::Role::Editor, pb::Grant::Group, "ml"));
    assert_eq!(workspaces_of(&s, &bob, "ml").await.unwrap().1, 1);
    assert_eq!(workspaces_of(&s, &bob, "").await.unwrap().1, 3);
    assert_eq!(
        members_page(&s, &alice, "team", 0, String::new())
            .await
            .total_size,
        2
    );
    assert!(
        at > Utc::now(),
        "the set-up took longer than the membership"
    );

    sleep_past(at).await;
    let err = s.get_workspace(&bob, "team").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let r = s
        .check_access(&bob, "team", "resources.write", "")
        .await
        .unwrap();
    assert_eq!(r, nothing());
    let err = get_group(&s, &alice, "team", "ml").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    assert_eq!(workspaces_of(&s, &bob, "ml").await.unwrap(), (vec![], 0));
    let (names, total) = workspaces_of(&s, &bob, "").await.unwrap();
    assert_eq!((names, total), (vec!["default".into(), "system".into()], 2));
    let list = members_page(&s, &alice, "team", 0, String::new()).await;
    assert_eq!(
        list.members.iter().map(who).collect::<Vec<_>>(),
        vec![subject("alice")]
    );
    assert_eq!(list.total_size, 1);
    add_group(&s, &alice, "team", "ml", pb::Role::Viewer)
        .await
        .unwrap();
    s.get_workspace(&bob, "team").await.unwrap();
}

// 7. The last admin.

#[tokio::test]
async fn the_last_admin_without_an_expire_time_stays() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    let (end, _) = in_ms(3_600_000);
    // The only admin cannot be given an end.
    let err = update_subject(
        &s,
        &alice,
        "team",
        "alice",
        pb::Role::Admin,
        Some(end),
        false,
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    assert_eq!(
        s.get_member(&alice, "team", "alice")
            .await
            .unwrap()
            .expire_time,
        None
    );
    // An admin with an end does not count.
    add_expiring(&s, &alice, "team", "bob", "", pb::Role::Admin, end)
        .await
        .unwrap();
    let err = s.remove_member(&alice, "team", "alice").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    let bob = token("bob");
    let err = s.remove_member(&bob, "team", "alice").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    let err = s
        .update_member(&bob, "team", "alice", pb::Role::Editor, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    let err = update_subject(
        &s,
        &alice,
        "team",
        "alice",
        pb::Role::Admin,
        Some(end),
        false,
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    // A group admin without an end counts: then alice may take an end, or go.
    add_group(&s, &alice, "team", "admins", pb::Role::Admin)
        .await
        .unwrap();
    let m = update_subject(
        &s,
        &alice,
        "team",
        "alice",
        pb::Role::Admin,
        Some(end),
        false,
    )
    .await
    .unwrap();
    assert_eq!(m.expire_time, Some(end));
    assert_eq!(s.remove_member(&bob, "team", "alice").await.unwrap(), 1);
    // Now the group is the last lasting admin.
    let err = remove_group(&s, &bob, "team", "admins").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    let err = update_group(&s, &bob, "team", "admins", pb::Role::Editor)
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    let err = update(
        &s,
        &bob,
        pb::UpdateMemberRequest {
            workspace: "team".into(),
            group: "admins".into(),
            role: pb::Role::Admin as i32,
            expire_time: Some(end),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    // Bob without an end counts again.
    update_subject(&s, &bob, "team", "bob", pb::Role::Admin, None, true)
        .await
        .unwrap();
    assert_eq!(remove_group(&s, &bob, "team", "admins").await.unwrap(), 1);
}

// 8. Explain.

#[tokio::test]
async fn check_access_names_the_grant_that_allows() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let root = platform_admin();
    create(&s, &alice, new_ws("team")).await;
    for (g, role) in [
        ("ml", pb::Role::Editor),
        ("ops", pb::Role::Admin),
        ("alpha", pb::Role::Viewer),
        ("Zeta", pb::Role::Viewer),
    ] {
        add_group(&s, &alice, "team", g, role).await.unwrap();
    }
    for (sub, role) in [("bob", pb::Role::Editor), ("carol", pb::Role::Viewer)] {
        s.add_member(&alice, "team", sub, role).await.unwrap();
    }
    let ask = |tok: String, ws: &'static str, permission: &'static str| {
        let s = &s;
        async move {
            check(s, &tok, question(ws, permission, "", &[]))
                .await
                .unwrap()
        }
    };
    use pb::{Grant as G, Role as R};
    // Own membership and a group of the same role: the membership.
    let bob = token_with_groups("bob", &["ml"]);
    assert_eq!(
        ask(bob.clone(), "team", "resources.write").await,
        answer(true, R::Editor, G::Membership, "")
    );
    // A group of a higher role wins, also for what the lower one allows.
    let carol = token_with_groups("carol", &["ml"]);
    for permission in ["resources.write", "workspaces.get"] {
        assert_eq!(
            ask(carol.clone(), "team", permission).await,
            answer(true, R::Editor, G::Group, "ml"),
            "{permission}"
        );
    }
    // Of two groups the higher role, though its name sorts later.
    let dan = token_with_groups("dan", &["ops", "ml"]);
    assert_eq!(
        ask(dan.clone(), "team", "workspaces.get").await,
        answer(true, R::Admin, G::Group, "ops")
    );
    // Of two groups of the same role, the first name in byte order.
    let erin = token_with_groups("erin", &["alpha", "Zeta"]);
    assert_eq!(
        ask(erin.clone(), "team", "members.list").await,
        answer(true, R::Viewer, G::Group, "Zeta")
    );
    // Not allowed: nothing is named, the role still is.
    assert_eq!(
        ask(carol.clone(), "team", "workspaces.delete").await,
        answer(false, R::Editor, G::Unspecified, "")
    );
    assert_eq!(
        ask(bob.clone(), "team", "members.manage").await,
        answer(false, R::Editor, G::Unspecified, "")
    );
    assert_eq!(ask(token("eve"), "team", "workspaces.get").await, nothing());
    // Visibility.
    create(
        &s,
        &alice,
        pb::Workspace {
            name: "open".into(),
            visibility: pb::Visibility::Internal as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        ask(token("eve"), "open", "workspaces.get").await,
        answer(true, R::Viewer, G::Visibility, "")
    );
    assert_eq!(
        ask(token("eve"), "open", "resources.write").await,
        answer(false, R::Viewer, G::Unspecified, "")
    );
    // A group ranks before the visibility between equals; a higher visibility wins.
    s.update_workspace(
        &alice,
        pb::Workspace {
            name: "open".into(),
            visibility: pb::Visibility::Public as i32,
            ..Default::default()
        },
        &["visibility"],
        "",
    )
    .await
    .unwrap();
    add_group(&s, &alice, "open", "ml", pb::Role::Editor)
        .await
        .unwrap();
    s.add_member(&alice, "open", "carol", pb::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(
        ask(token_with_groups("eve", &["ml"]), "open", "resources.write").await,
        answer(true, R::Editor, G::Group, "ml")
    );
    assert_eq!(
        ask(token("carol"), "open", "workspaces.get").await,
        answer(true, R::Editor, G::Visibility, "")
    );
    // A platform role only where no workspace grant allows.
    assert_eq!(
        ask(root.clone(), "team", "policies.update").await,
        answer(true, R::Unspecified, G::PlatformRole, "")
    );
    assert_eq!(
        ask(root.clone(), "team", "workspaces.get").await,
        answer(true, R::Unspecified, G::PlatformRole, "")
    );
    s.add_member(&alice, "team", "root", pb::Role::Admin)
        .await
        .unwrap();
    assert_eq!(
        ask(root.clone(), "team", "workspaces.get").await,
        answer(true, R::Admin, G::Membership, "")
    );
    assert_eq!(
        ask(root, "team", "policies.update").await,
        answer(true, R::Admin, G::PlatformRole, "")
    );
}

#[tokio::test]
async fn only_a_platform_caller_passes_a_subjects_groups() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let svc = platform_service();
    create(&s, &alice, new_ws("team")).await;
    add_group(&s, &alice, "team", "ml", pb::Role::Editor)
        .await
        .unwrap();
    add_group(&s, &alice, "team", "ops", pb::Role::Admin)
        .await
        .unwrap();
    use pb::{Grant as G, Role as R};
    // A platform service checking another subject sees its groups' roles.
    let r = check(
        &s,
        &svc,
        question("team", "resources.write", "erin", &["ml"]),
    )
    .await
    .unwrap();
    assert_eq!(r, answer(true, R::Editor, G::Group, "ml"));
    let r = check(
        &s,
        &svc,
        question("team", "workspaces.update", "erin", &["ml", "ops"]),
    )
    .await
    .unwrap();
    assert_eq!(r, answer(true, R::Admin, G::Group, "ops"));
    let r = check(&s, &svc, question("team", "resources.write", "erin", &[]))
        .await
        .unwrap();
    assert_eq!(r, nothing());
    // A caller checking itself: only its token's groups count.
    let erin = token("erin");
    for sub in ["", "erin"] {
        let r = check(&s, &erin, question("team", "workspaces.get", sub, &["ml"]))
            .await
            .unwrap();
        assert_eq!(r, nothing(), "subject {sub:?}");
    }
    let erin_ml = token_with_groups("erin", &["ml"]);
    for sub in ["", "erin"] {
        let r = check(
            &s,
            &erin_ml,
            question("team", "workspaces.get", sub, &["ops"]),
        )
        .await
        .unwrap();
        assert_eq!(
            r,
            answer(true, R::Editor, G::Group, "ml"),
            "subject {sub:?}"
        );
    }
    // The groups are checked: each a group name, at most 1000.
    let err = check(
        &s,
        &svc,
        question("team", "workspaces.get", "erin", &["ml", ""]),
    )
    .await
    .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["groups[1]"]);
    let names: Vec<String> = (0..1001).map(|i| format!("g{i}")).collect();
    let mut many = question("team", "workspaces.get", "erin", &[]);
    many.groups = names.clone();
    let err = check(&s, &svc, many.clone()).await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["groups"]);
    many.groups.truncate(999);
    many.groups.push("ml".into());
    let r = check(&s, &svc, many).await.unwrap();
    assert_eq!(r, answer(true, R::Editor, G::Group, "ml"));
}

// 9. BatchCheckAccess.

#[tokio::test]
async fn batch_check_access_answers_each_check_in_order() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    s.add_member(&alice, "team", "bob", pb::Role::Editor)
        .await
        .unwrap();
    add_group(&s, &alice, "team", "ml", pb::Role::Admin)
        .await
        .unwrap();
    let bob = token("bob");
    let bob_ml = token_with_groups("bob", &["ml"]);
    use pb::{Grant as G, Role as R};
    let checks = vec![
        question("team", "members.manage", "", &[]),
        question("team", "resources.write", "", &[]),
        question("default", "resources.write", "", &[]),
        question("missing", "workspaces.get", "", &[]),
        question("team", "workspaces.get", "bob", &[]),
        question("system", "workspaces.update", "", &[]),
    ];
    let expected = vec![
        answer(false, R::Editor, G::Unspecified, ""),
        answer(true, R::Editor, G::Membership, ""),
        answer(true, R::Editor, G::Visibility, ""),
        nothing(),
        answer(true, R::Editor, G::Membership, ""),
        answer(false, R::Viewer, G::Unspecified, ""),
    ];
    let got = batch(&s, &bob, checks.clone()).await.unwrap();
    assert_eq!(got, expected);
    // Each as CheckAccess alone answers it, also with the token's groups.
    for tok in [bob, bob_ml.clone()] {
        let got = batch(&s, &tok, checks.clone()).await.unwrap();
        for (i, c) in checks.iter().enumerate() {
            assert_eq!(
                got[i],
                check(&s, &tok, c.clone()).await.unwrap(),
                "check {i}"
            );
        }
    }
    let got = batch(&s, &bob_ml, checks).await.unwrap();
    assert_eq!(got[0], answer(true, R::Admin, G::Group, "ml"));
    // The same check reversed: the answers are reversed.
    let checks = vec![
        question("team", "resources.write", "", &[]),
        question("missing", "workspaces.get", "", &[]),
    ];
    let mut reversed = checks.clone();
    reversed.reverse();
    let mut forward = batch(&s, &token("bob"), checks).await.unwrap();
    forward.reverse();
    assert_eq!(batch(&s, &token("bob"), reversed).await.unwrap(), forward);
}

#[tokio::test]
async fn batch_check_access_takes_1_to_100_checks_and_names_each_bad_field() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    let ok = || question("team", "workspaces.get", "", &[]);
    for n in [0, 101, 1000] {
        let err = batch(&s, &alice, vec![ok(); n]).await.unwrap_err();
        assert_eq!(bad_fields(&err), vec!["checks"], "{n} checks");
        let violations = err.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1, "{n} checks: {violations:?}");
    }
    let results = batch(&s, &alice, vec![ok(); 100]).await.unwrap();
    assert_eq!(results.len(), 100);
    let admin = answer(true, pb::Role::Admin, pb::Grant::Membership, "");
    assert!(results.iter().all(|r| *r == admin), "{results:?}");
    assert_eq!(batch(&s, &alice, vec![ok()]).await.unwrap(), vec![admin]);
    // A bad item: its field, by index.
    let err = batch(
        &s,
        &alice,
        vec![ok(), ok(), question("team", "workspaces.fly", "", &[])],
    )
    .await
    .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["checks[2].permission"]);
    let err = batch(
        &s,
        &alice,
        vec![ok(), question("Bad_Name", "workspaces.get", "", &[]), ok()],
    )
    .await
    .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["checks[1].workspace"]);
    // Every bad field of every item at once.
    let err = batch(
        &s,
        &alice,
        vec![
            question("Bad_Name", "workspaces.get", "", &[]),
            ok(),
            question("team", "nope", "", &[]),
            question("team", "workspaces.get", "bad\u{7}", &[]),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        bad_fields(&err),
        vec![
            "checks[0].workspace",
            "checks[2].permission",
            "checks[3].subject",
        ]
    );
}

#[tokio::test]
async fn batch_check_access_answers_refused_items_not_allowed() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    s.add_member(&alice, "team", "bob", pb::Role::Editor)
        .await
        .unwrap();
    let bob = token("bob");
    use pb::{Grant as G, Role as R};
    // Another subject without a platform role: CheckAccess alone refuses it.
    let other = question("team", "workspaces.get", "alice", &[]);
    let err = check(&s, &bob, other.clone()).await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let got = batch(
        &s,
        &bob,
        vec![
            question("team", "resources.write", "", &[]),
            other,
            question("team", "workspaces.get", "", &[]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        vec![
            answer(true, R::Editor, G::Membership, ""),
            nothing(),
            answer(true, R::Editor, G::Membership, ""),
        ]
    );
    // A missing workspace for a platform caller: NOT_FOUND alone, not allowed in a batch.
    let svc = platform_service();
    let missing = question("missing", "workspaces.get", "alice", &[]);
    let err = check(&s, &svc, missing.clone()).await.unwrap_err();
    assert_status(&err, Code::NotFound, "WORKSPACE_NOT_FOUND");
    let got = batch(
        &s,
        &svc,
        vec![
            question("team", "workspaces.delete", "alice", &[]),
            missing,
            question("default", "resources.write", "eve", &[]),
            question("missing", "workspaces.get", "", &[]),
            question("team", "workspaces.get", "eve", &["ml"]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        vec![
            answer(true, R::Admin, G::Membership, ""),
            nothing(),
            answer(true, R::Editor, G::Visibility, ""),
            nothing(),
            nothing(),
        ]
    );
}
