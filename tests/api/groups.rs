//! Groups, expiring memberships, explained checks and BatchCheckAccess: group members and the
//! token's groups claim, expire_time and the last lasting admin, CheckAccess's `granted_by`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use workspaced::pb::v1::{self as pb, Grant as G, Role as R};

use crate::common::*;

// Helpers: instants, listings and CheckAccess answers; the RPCs are `common/rpc.rs`'s.

/// An instant `ms` milliseconds from now, at microseconds (what the server keeps), as a
/// protobuf timestamp and as the instant itself.
fn in_ms(ms: i64) -> (prost_types::Timestamp, DateTime<Utc>) {
    let at = chrono::SubsecRound::trunc_subsecs(Utc::now() + TimeDelta::milliseconds(ms), 6);
    (timestamp(at), at)
}

/// Sleeps until a little after `at`.
async fn sleep_past(at: DateTime<Utc>) {
    let left = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(150)).await;
}

/// The `expire_time` of `subject`'s membership of `team`, as `tok` reads it.
async fn end_of(s: &TestServer, tok: &str, subject: &str) -> Option<prost_types::Timestamp> {
    s.get_member(tok, "team", subject)
        .await
        .unwrap()
        .expire_time
}

/// Asserts that `res` failed with MEMBER_NOT_FOUND.
#[track_caller]
fn assert_no_member<T: std::fmt::Debug>(res: Result<T, Status>) {
    assert_refused(res, Code::NotFound, "MEMBER_NOT_FOUND");
}

/// Asserts that `res` failed with LAST_ADMIN.
#[track_caller]
fn assert_last_admin<T: std::fmt::Debug>(res: Result<T, Status>) {
    assert_refused(res, Code::FailedPrecondition, "LAST_ADMIN");
}

/// ListMembers of `team`, one page.
async fn members_page(
    s: &TestServer,
    tok: &str,
    page_size: i32,
    page_token: String,
) -> pb::ListMembersResponse {
    let msg = pb::ListMembersRequest {
        workspace: "team".into(),
        page_size,
        page_token,
        ..Default::default()
    };
    s.list_members(tok, msg).await.unwrap()
}

/// Every member of `team`, in one page.
async fn all_members(s: &TestServer, tok: &str) -> pb::ListMembersResponse {
    members_page(s, tok, 0, String::new()).await
}

/// A member as `(subject, group)`.
fn who(m: &pb::Member) -> (String, String) {
    (m.subject.clone(), m.group.clone())
}

/// The members of a page as `(subject, group)`, in order.
fn whos(page: &pb::ListMembersResponse) -> Vec<(String, String)> {
    page.members.iter().map(who).collect()
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

/// Asserts the names and the `total_size` that ListWorkspaces with `member_group` gives `tok`.
async fn expect_workspaces(
    s: &TestServer,
    tok: &str,
    member_group: &str,
    names: &[&str],
    total: i32,
) {
    let (got, got_total) = workspaces_of(s, tok, member_group).await.unwrap();
    assert_eq!(got, names, "member_group {member_group:?}");
    assert_eq!(got_total, total, "member_group {member_group:?}");
}

/// UpdateWorkspace of `team`'s description, as `tok`.
async fn describe(s: &TestServer, tok: &str, description: &str) -> Result<pb::Workspace, Status> {
    let ws = pb::Workspace {
        description: description.into(),
        ..new_ws("team")
    };
    s.update_workspace(tok, ws, &["description"], "").await
}

/// The CheckAccess question of `permission` in `ws` for the caller, by its token's groups.
fn ask(ws: &str, permission: &str) -> pb::CheckAccessRequest {
    check_request(ws, permission, "", &[])
}

/// The CheckAccess answer that allows, by `grant` (of `group`) at `role`.
fn granted(role: R, grant: G, group: &str) -> pb::CheckAccessResponse {
    pb::CheckAccessResponse {
        allowed: true,
        role: role as i32,
        granted_by: grant as i32,
        group: group.into(),
    }
}

/// The CheckAccess answer that does not allow, at `role`: it names no grant.
fn refused(role: R) -> pb::CheckAccessResponse {
    pb::CheckAccessResponse {
        allowed: false,
        role: role as i32,
        granted_by: G::Unspecified as i32,
        group: String::new(),
    }
}

/// The answer to a question that is not allowed and names no role.
fn nothing() -> pb::CheckAccessResponse {
    refused(R::Unspecified)
}

/// CheckAccess's answer to `question`, as `tok`; panics if the call fails.
async fn answer_to(
    s: &TestServer,
    tok: &str,
    question: pb::CheckAccessRequest,
) -> pb::CheckAccessResponse {
    s.check_access_msg(tok, question).await.unwrap()
}

/// Asserts CheckAccess's answer in `ws` to each `(token, permission, answer)` for the caller,
/// in order.
async fn expect_answers<T: AsRef<str>>(
    s: &TestServer,
    ws: &str,
    cases: &[(T, &str, pb::CheckAccessResponse)],
) {
    for (i, (tok, permission, want)) in cases.iter().enumerate() {
        let got = answer_to(s, tok.as_ref(), ask(ws, permission)).await;
        assert_eq!(got, *want, "case {i}: {permission} in {ws}");
    }
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
    let (s, alice) = spawn_with_team().await;
    let m = s
        .add_group_member(&alice, "team", "ml", R::Editor, None)
        .await
        .unwrap();
    assert_eq!(m.workspace, "team");
    assert_eq!(m.group, "ml");
    assert_eq!(m.subject, "");
    assert_eq!(m.email, "");
    assert_eq!(m.role, R::Editor as i32);
    assert_eq!(m.added_by, "alice");
    assert_eq!(m.expire_time, None);
    assert!(!m.etag.is_empty() && m.create_time.is_some());
    // A read returns what the add returned.
    assert_eq!(s.get_group_member(&alice, "team", "ml").await.unwrap(), m);
    // A subject of the same name is another member.
    let sub = s.add_member(&alice, "team", "ml", R::Viewer).await.unwrap();
    assert_eq!((sub.subject.as_str(), sub.group.as_str()), ("ml", ""));
    let subject_role = s.get_member(&alice, "team", "ml").await.unwrap().role;
    assert_eq!(subject_role, R::Viewer as i32);
    // Twice is MEMBER_EXISTS.
    let twice = s.add_group_member(&alice, "team", "ml", R::Admin, None);
    assert_refused(twice.await, Code::AlreadyExists, "MEMBER_EXISTS");

    // Update, under its etag.
    let up = s
        .update_group_member(&alice, "team", "ml", R::Admin, &m.etag)
        .await
        .unwrap();
    assert_eq!((up.group.as_str(), up.subject.as_str()), ("ml", ""));
    assert_eq!(up.role, R::Admin as i32);
    assert_ne!(up.etag, m.etag);
    let group_role = s.get_group_member(&alice, "team", "ml").await.unwrap().role;
    assert_eq!(group_role, R::Admin as i32);
    // The subject "ml" kept its own role.
    let subject_role = s.get_member(&alice, "team", "ml").await.unwrap().role;
    assert_eq!(subject_role, R::Viewer as i32);

    // Remove: the group goes, the subject of the same name stays.
    let removed = s.remove_group_member(&alice, "team", "ml").await.unwrap();
    assert_eq!(removed, 1);
    assert_no_member(s.get_group_member(&alice, "team", "ml").await);
    s.get_member(&alice, "team", "ml").await.unwrap();

    // An absent group is MEMBER_NOT_FOUND everywhere.
    assert_no_member(s.get_group_member(&alice, "team", "ops").await);
    let update = s.update_group_member(&alice, "team", "ops", R::Viewer, "");
    assert_no_member(update.await);
    assert_no_member(s.remove_group_member(&alice, "team", "ml").await);
}

#[tokio::test]
async fn a_member_is_exactly_one_of_subject_email_and_group() {
    let (s, alice) = spawn_with_team().await;
    add_groups(&s, &alice, "team", &[("ml", R::Viewer)]).await;
    // (subject, email, group): none, or more than one.
    let selectors = [
        ("", "", ""),
        ("bob", "", "ml"),
        ("", "bob@example.com", "ml"),
        ("bob", "bob@example.com", "ml"),
    ];
    for (subject, email, group) in selectors {
        let case = format!("{subject:?} {email:?} {group:?}");
        let add = add_request("team", subject, email, group, R::Viewer);
        let fields = bad_fields_of(s.add_member_msg(&alice, add).await);
        assert_eq!(fields, vec!["subject"], "AddMember {case}");
        let remove = s.remove_member_with(&alice, "team", subject, email, group);
        let fields = bad_fields_of(remove.await);
        assert_eq!(fields, vec!["subject"], "RemoveMember {case}");
    }
    // GetMember and UpdateMember take subject or group.
    for (subject, group) in [("", ""), ("alice", "ml")] {
        let case = format!("{subject:?} {group:?}");
        let fields = bad_fields_of(s.get_member_with(&alice, "team", subject, group).await);
        assert_eq!(fields, vec!["subject"], "GetMember {case}");
        let update = s.update_member_with(&alice, "team", subject, group, R::Viewer, "");
        let fields = bad_fields_of(update.await);
        assert_eq!(fields, vec!["subject"], "UpdateMember {case}");
    }
    // Group names: 1-255 printable characters.
    for bad in ["ml\u{7}", "a\nb", &"g".repeat(256)] {
        let add = s.add_group_member(&alice, "team", bad, R::Viewer, None);
        let fields = bad_fields_of(add.await);
        assert_eq!(fields, vec!["group"], "AddMember {bad:?}");
        let fields = bad_fields_of(s.get_group_member(&alice, "team", bad).await);
        assert_eq!(fields, vec!["group"], "GetMember {bad:?}");
        let update = s.update_group_member(&alice, "team", bad, R::Viewer, "");
        let fields = bad_fields_of(update.await);
        assert_eq!(fields, vec!["group"], "UpdateMember {bad:?}");
        let fields = bad_fields_of(s.remove_group_member(&alice, "team", bad).await);
        assert_eq!(fields, vec!["group"], "RemoveMember {bad:?}");
    }
    // 255 characters, spaces and capitals are a group.
    let longest = "g".repeat(255);
    for good in [longest.as_str(), "ML Team/Ops"] {
        let m = s
            .add_group_member(&alice, "team", good, R::Viewer, None)
            .await
            .unwrap();
        assert_eq!(m.group, good);
        assert_eq!(s.get_group_member(&alice, "team", good).await.unwrap(), m);
    }
}

// 2. The token's groups.

#[tokio::test]
async fn a_tokens_groups_give_the_roles_their_memberships_hold() {
    let (s, alice) = spawn_with_team().await;
    add_groups(&s, &alice, "team", &[("ml", R::Viewer)]).await;
    let bob_ml = token_with_groups("bob", &["data", "ml"]);
    let bob = token("bob");
    // Only the token with the group reads the private workspace.
    assert_denied(s.get_workspace(&bob, "team").await);
    let bob_data = token_with_groups("bob", &["data"]);
    assert_denied(s.get_workspace(&bob_data, "team").await);
    s.get_workspace(&bob_ml, "team").await.unwrap();
    assert_denied(describe(&s, &bob_ml, "by ml").await);
    // The group made admin: its members update the workspace and manage its members.
    let set_ml = |role| s.update_group_member(&alice, "team", "ml", role, "");
    set_ml(R::Admin).await.unwrap();
    let got = describe(&s, &bob_ml, "by ml").await.unwrap();
    assert_eq!(got.description, "by ml");
    add_subjects(&s, &bob_ml, "team", &[("carol", R::Viewer)]).await;
    assert_denied(describe(&s, &bob, "by bob").await);

    // The effective role is the highest of its own, its groups' and the visibility's.
    set_ml(R::Editor).await.unwrap();
    add_subjects(&s, &alice, "team", &[("bob", R::Viewer)]).await;
    let role = |tok: String| {
        let s = &s;
        async move { answer_to(s, &tok, ask("team", "workspaces.get")).await.role }
    };
    let set_bob = |role| s.update_member(&alice, "team", "bob", role, "");
    assert_eq!(role(bob.clone()).await, R::Viewer as i32);
    assert_eq!(role(bob_ml.clone()).await, R::Editor as i32);
    set_bob(R::Admin).await.unwrap();
    assert_eq!(role(bob_ml.clone()).await, R::Admin as i32);
    // Of two groups, the higher; a public workspace grants editor to anyone.
    set_bob(R::Viewer).await.unwrap();
    add_groups(&s, &alice, "team", &[("ops", R::Admin)]).await;
    let bob_ml_ops = token_with_groups("bob", &["ml", "ops"]);
    assert_eq!(role(bob_ml_ops).await, R::Admin as i32);
    let public = visible_ws("team", pb::Visibility::Public);
    s.update_workspace(&alice, public, &["visibility"], "")
        .await
        .unwrap();
    set_ml(R::Viewer).await.unwrap();
    assert_eq!(role(bob_ml).await, R::Editor as i32);
    let dan_ml = token_with_groups("dan", &["ml"]);
    assert_eq!(role(dan_ml).await, R::Editor as i32);
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
        let echoed = err.message().contains(&tok);
        assert!(!echoed, "the token is echoed for {bad}");
    }
    // The same claims with valid groups are accepted.
    let longest = "g".repeat(255);
    for good in [json!([]), json!(["ml"]), json!([longest, "ML Team"])] {
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
    add_groups(&s, &alice, "team", &[("ml", R::Viewer)]).await;
    let teams_ml = token_with("bob", json!({"teams": ["ml"]}));
    s.get_workspace(&teams_ml, "team").await.unwrap();
    // Under the default name, groups are an unknown claim: neither read nor judged.
    for groups in [json!(["ml"]), json!(7)] {
        let tok = token_with("bob", json!({"groups": groups}));
        assert_denied(s.get_workspace(&tok, "team").await);
    }
    let tok = token_with("bob", json!({"teams": [7]}));
    let res = s.get_workspace(&tok, "team").await;
    assert_refused(res, Code::Unauthenticated, "TOKEN_INVALID");
}

// 3. ListMembers.

#[tokio::test]
async fn list_members_gives_subjects_then_groups_and_pages_across_the_boundary() {
    let (s, alice) = spawn_with_team().await;
    // Group names that sort before and after the subjects, added in no order.
    let groups = [("ml", R::Viewer), ("Zeta", R::Viewer), ("alpha", R::Viewer)];
    add_groups(&s, &alice, "team", &groups).await;
    let subjects = [("zed", R::Editor), ("bob", R::Editor)];
    add_subjects(&s, &alice, "team", &subjects).await;
    let expected = vec![
        subject("alice"),
        subject("bob"),
        subject("zed"),
        group("Zeta"),
        group("alpha"),
        group("ml"),
    ];
    let all = all_members(&s, &alice).await;
    assert_eq!(whos(&all), expected);
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
            let page = members_page(&s, &alice, size, page_token).await;
            assert_eq!(page.total_size, 6, "page size {size}");
            assert!(page.members.len() <= size as usize);
            seen.extend(whos(&page));
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
        role: R::Viewer as i32,
        ..Default::default()
    };
    let viewers = s.list_members(&alice, msg).await.unwrap();
    assert_eq!(
        whos(&viewers),
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
    create(&s, &alice, visible_ws("open", pb::Visibility::Internal)).await;
    add_groups(&s, &alice, "a-team", &[("ml", R::Viewer)]).await;
    add_groups(&s, &alice, "b-team", &[("ops", R::Viewer)]).await;
    add_groups(&s, &alice, "open", &[("ml", R::Editor)]).await;
    let bob_ml = token_with_groups("bob", &["ml"]);
    let all = ["a-team", "default", "open", "system"];
    expect_workspaces(&s, &bob_ml, "", &all, 4).await;
    let shared = ["default", "open", "system"];
    expect_workspaces(&s, &token("bob"), "", &shared, 3).await;
    // member_group: only where that group is a member, whatever else the caller reads.
    expect_workspaces(&s, &bob_ml, "ml", &["a-team", "open"], 2).await;
    // A group not in the caller's token needs a platform role.
    for tok in [bob_ml.clone(), token("bob"), alice.clone()] {
        assert_denied(workspaces_of(&s, &tok, "ops").await);
    }
    for tok in [platform_service(), platform_admin()] {
        expect_workspaces(&s, &tok, "ops", &["b-team"], 1).await;
        expect_workspaces(&s, &tok, "nobody", &[], 0).await;
    }
    // The group's name is checked like a claim's.
    let fields = bad_fields_of(workspaces_of(&s, &bob_ml, "ml\u{7}").await);
    assert_eq!(fields, vec!["member_group"]);
    // `member`: the subject's own memberships; its groups' do not count.
    add_subjects(&s, &alice, "c-team", &[("bob", R::Viewer)]).await;
    let by_member = |member: &str| pb::ListWorkspacesRequest {
        member: member.into(),
        ..Default::default()
    };
    for tok in [bob_ml.clone(), platform_service()] {
        let r = s.list_workspaces(&tok, by_member("bob")).await.unwrap();
        let names: Vec<&str> = r.workspaces.iter().map(|w| w.name.as_str()).collect();
        assert_eq!((names, r.total_size), (vec!["c-team"], 1));
    }
    let fields = bad_fields_of(s.list_workspaces(&bob_ml, by_member("bob\u{7}")).await);
    assert_eq!(fields, vec!["member"]);
}

// 5. Removing oneself.

#[tokio::test]
async fn a_member_removes_its_own_membership_but_not_its_groups() {
    let (s, alice) = spawn_with_team().await;
    add_groups(&s, &alice, "team", &[("ml", R::Editor)]).await;
    add_subjects(&s, &alice, "team", &[("bob", R::Viewer)]).await;
    let bob = token_with_groups("bob", &["ml"]);
    let carol = token_with_groups("carol", &["ml"]);
    // Neither a member through the group nor one with its own membership removes the group.
    for tok in [&carol, &bob] {
        assert_denied(s.remove_group_member(tok, "team", "ml").await);
    }
    s.get_group_member(&alice, "team", "ml").await.unwrap();
    // Bob leaves; the group, and with it bob's access, stays.
    assert_eq!(s.remove_member(&bob, "team", "bob").await.unwrap(), 1);
    assert_no_member(s.get_member(&alice, "team", "bob").await);
    s.get_group_member(&alice, "team", "ml").await.unwrap();
    s.get_workspace(&bob, "team").await.unwrap();
    // An admin removes the group.
    let removed = s.remove_group_member(&alice, "team", "ml").await.unwrap();
    assert_eq!(removed, 1);
    assert_denied(s.get_workspace(&carol, "team").await);
}

// 6. Expiry.

#[tokio::test]
async fn expire_time_is_in_the_future_and_updates_keep_set_or_clear_it() {
    let (s, alice) = spawn_with_team().await;
    let (past, _) = in_ms(-60_000);
    let (end, _) = in_ms(3_600_000);
    let (later, _) = in_ms(7_200_000);
    let res = s.add_member_until(&alice, "team", "bob", R::Viewer, past);
    assert_eq!(bad_fields_of(res.await), vec!["expire_time"]);
    let res = s.add_group_member(&alice, "team", "ml", R::Viewer, Some(past));
    assert_eq!(bad_fields_of(res.await), vec!["expire_time"]);
    let m = s.add_member_until(&alice, "team", "bob", R::Viewer, end);
    assert_eq!(m.await.unwrap().expire_time, Some(end));
    assert_eq!(end_of(&s, &alice, "bob").await, Some(end));
    let update = |role, end, clear| s.update_member_expiry(&alice, "team", "bob", role, end, clear);
    // Both an expire_time and clear_expire_time; an expire_time in the past.
    let res = update(R::Viewer, Some(later), true).await;
    assert_eq!(bad_fields_of(res), vec!["clear_expire_time"]);
    let res = update(R::Viewer, Some(past), false).await;
    assert_eq!(bad_fields_of(res), vec!["expire_time"]);
    // Without expire_time an update keeps it.
    let m = update(R::Editor, None, false).await.unwrap();
    assert_eq!(m.role, R::Editor as i32);
    assert_eq!(m.expire_time, Some(end));
    assert_eq!(end_of(&s, &alice, "bob").await, Some(end));
    // A new one replaces it.
    let m = update(R::Editor, Some(later), false).await.unwrap();
    assert_eq!(m.expire_time, Some(later));
    assert_eq!(end_of(&s, &alice, "bob").await, Some(later));
    // clear_expire_time removes it.
    let m = update(R::Editor, None, true).await.unwrap();
    assert_eq!(m.expire_time, None);
    assert_eq!(end_of(&s, &alice, "bob").await, None);
    // role stays required.
    let res = update(R::Unspecified, Some(end), false).await;
    assert_eq!(bad_fields_of(res), vec!["role"]);
    // ListMembers shows the ends.
    s.add_group_member(&alice, "team", "ml", R::Viewer, Some(end))
        .await
        .unwrap();
    let list = all_members(&s, &alice).await;
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
    let (s, alice) = spawn_with_team().await;
    let bob = token("bob");
    let svc = platform_service();
    let (end, at) = in_ms(1_500);
    let m = s.add_member_until(&alice, "team", "bob", R::Editor, end);
    assert_eq!(m.await.unwrap().expire_time, Some(end));
    // Before: it grants, everywhere (and every view has seen it).
    assert_eq!(end_of(&s, &alice, "bob").await, Some(end));
    s.get_workspace(&bob, "team").await.unwrap();
    let bobs_write = || s.check_access(&bob, "team", "resources.write", "");
    let svcs_write = |fully| s.check_access_with(&svc, "team", "resources.write", "bob", fully);
    let r = bobs_write().await.unwrap();
    assert_eq!(r, granted(R::Editor, G::Membership, ""));
    assert!(svcs_write(true).await.unwrap().allowed);
    let list = all_members(&s, &alice).await;
    assert_eq!(list.members.len(), 2);
    assert_eq!(list.total_size, 2);
    expect_workspaces(&s, &bob, "", &["default", "system", "team"], 3).await;
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
    assert_no_member(s.get_member(&alice, "team", "bob").await);
    assert_denied(s.get_workspace(&bob, "team").await);
    assert_eq!(bobs_write().await.unwrap(), nothing());
    for consistent in [false, true] {
        let r = svcs_write(consistent).await.unwrap();
        assert_eq!(r, nothing(), "fully_consistent {consistent}");
    }
    let list = all_members(&s, &alice).await;
    assert_eq!(whos(&list), vec![subject("alice")]);
    assert_eq!(list.total_size, 1);
    expect_workspaces(&s, &bob, "", &["default", "system"], 2).await;
    let listed = s.list_workspaces(&svc, by_member).await.unwrap();
    assert!(listed.workspaces.is_empty());
    assert_eq!(listed.total_size, 0);
    let res = s.update_member_expiry(&alice, "team", "bob", R::Viewer, None, false);
    assert_no_member(res.await);
    assert_no_member(s.remove_member(&alice, "team", "bob").await);
    // It can be added again, and then grants again.
    let again = s
        .add_member(&alice, "team", "bob", R::Viewer)
        .await
        .unwrap();
    assert_eq!(again.expire_time, None);
    assert_eq!(again.role, R::Viewer as i32);
    s.get_workspace(&bob, "team").await.unwrap();
    assert_eq!(all_members(&s, &alice).await.total_size, 2);
    // The end wrote no event: bob was added twice, and never removed.
    let history = s
        .events_of_types(
            "team",
            &[pb::EventType::MemberAdded, pb::EventType::MemberRemoved],
        )
        .await;
    let bobs: Vec<i32> = history
        .iter()
        .filter(|e| matches!(&e.object, Some(pb::event::Object::Member(m)) if m.subject == "bob"))
        .map(|e| e.r#type)
        .collect();
    assert_eq!(bobs, vec![pb::EventType::MemberAdded as i32; 2]);
}

/// Archiving freezes changes, not time: a membership of an archived workspace still ends.
#[tokio::test]
async fn a_membership_of_an_archived_workspace_still_ends() {
    let (s, alice) = spawn_with_team().await;
    let (end, at) = in_ms(2_000);
    s.add_member_until(&alice, "team", "bob", R::Editor, end)
        .await
        .unwrap();
    s.archive_workspace(&alice, "team", "").await.unwrap();
    s.get_workspace(&token("bob"), "team").await.unwrap();
    assert!(
        at > Utc::now(),
        "the set-up took longer than the membership"
    );
    sleep_past(at).await;
    assert_denied(s.get_workspace(&token("bob"), "team").await);
    assert_no_member(s.get_member(&alice, "team", "bob").await);
    assert_eq!(whos(&all_members(&s, &alice).await), vec![subject("alice")]);
}

#[tokio::test]
async fn a_group_membership_grants_until_its_expire_time() {
    let (s, alice) = spawn_with_team().await;
    let bob = token_with_groups("bob", &["ml"]);
    let (end, at) = in_ms(1_500);
    let m = s
        .add_group_member(&alice, "team", "ml", R::Editor, Some(end))
        .await
        .unwrap();
    assert_eq!((m.group.as_str(), m.expire_time), ("ml", Some(end)));
    s.get_workspace(&bob, "team").await.unwrap();
    let bobs_write = || s.check_access(&bob, "team", "resources.write", "");
    let r = bobs_write().await.unwrap();
    assert_eq!(r, granted(R::Editor, G::Group, "ml"));
    assert_eq!(workspaces_of(&s, &bob, "ml").await.unwrap().1, 1);
    assert_eq!(workspaces_of(&s, &bob, "").await.unwrap().1, 3);
    assert_eq!(all_members(&s, &alice).await.total_size, 2);
    assert!(
        at > Utc::now(),
        "the set-up took longer than the membership"
    );

    sleep_past(at).await;
    assert_denied(s.get_workspace(&bob, "team").await);
    assert_eq!(bobs_write().await.unwrap(), nothing());
    assert_no_member(s.get_group_member(&alice, "team", "ml").await);
    expect_workspaces(&s, &bob, "ml", &[], 0).await;
    expect_workspaces(&s, &bob, "", &["default", "system"], 2).await;
    let list = all_members(&s, &alice).await;
    assert_eq!(whos(&list), vec![subject("alice")]);
    assert_eq!(list.total_size, 1);
    add_groups(&s, &alice, "team", &[("ml", R::Viewer)]).await;
    s.get_workspace(&bob, "team").await.unwrap();
}

// 7. The last admin.

#[tokio::test]
async fn the_last_admin_without_an_expire_time_stays() {
    let (s, alice) = spawn_with_team().await;
    let bob = token("bob");
    let (end, _) = in_ms(3_600_000);
    let end_alice = || s.update_member_expiry(&alice, "team", "alice", R::Admin, Some(end), false);
    // The only admin cannot be given an end.
    assert_last_admin(end_alice().await);
    assert_eq!(end_of(&s, &alice, "alice").await, None);
    // An admin with an end does not count.
    s.add_member_until(&alice, "team", "bob", R::Admin, end)
        .await
        .unwrap();
    assert_last_admin(s.remove_member(&alice, "team", "alice").await);
    assert_last_admin(s.remove_member(&bob, "team", "alice").await);
    assert_last_admin(s.update_member(&bob, "team", "alice", R::Editor, "").await);
    assert_last_admin(end_alice().await);
    // A group admin without an end counts: then alice may take an end, or go.
    add_groups(&s, &alice, "team", &[("admins", R::Admin)]).await;
    let m = end_alice().await.unwrap();
    assert_eq!(m.expire_time, Some(end));
    assert_eq!(s.remove_member(&bob, "team", "alice").await.unwrap(), 1);
    // Now the group is the last lasting admin.
    assert_last_admin(s.remove_group_member(&bob, "team", "admins").await);
    let demote = s.update_group_member(&bob, "team", "admins", R::Editor, "");
    assert_last_admin(demote.await);
    let end_admins = pb::UpdateMemberRequest {
        expire_time: Some(end),
        ..update_request("team", "", "admins", R::Admin)
    };
    assert_last_admin(s.update_member_msg(&bob, end_admins).await);
    // Bob without an end counts again.
    s.update_member_expiry(&bob, "team", "bob", R::Admin, None, true)
        .await
        .unwrap();
    let removed = s.remove_group_member(&bob, "team", "admins").await.unwrap();
    assert_eq!(removed, 1);
}

// 8. Explain.

#[tokio::test]
async fn check_access_names_the_grant_that_allows() {
    let (s, alice) = spawn_with_team().await;
    let root = &platform_admin();
    let groups = [
        ("ml", R::Editor),
        ("ops", R::Admin),
        ("alpha", R::Viewer),
        ("Zeta", R::Viewer),
    ];
    add_groups(&s, &alice, "team", &groups).await;
    let subjects = [("bob", R::Editor), ("carol", R::Viewer)];
    add_subjects(&s, &alice, "team", &subjects).await;
    let bob = &token_with_groups("bob", &["ml"]);
    let carol = &token_with_groups("carol", &["ml"]);
    let dan = &token_with_groups("dan", &["ops", "ml"]);
    let erin = &token_with_groups("erin", &["alpha", "Zeta"]);
    let eve = &token("eve");
    let ml = granted(R::Editor, G::Group, "ml");
    let own_editor = granted(R::Editor, G::Membership, "");
    let cases = [
        // Own membership and a group of the same role: the membership.
        (bob, "resources.write", own_editor),
        // A group of a higher role wins, also for what the lower one allows.
        (carol, "resources.write", ml.clone()),
        (carol, "workspaces.get", ml.clone()),
        // Of two groups the higher role, though its name sorts later.
        (dan, "workspaces.get", granted(R::Admin, G::Group, "ops")),
        // Of two groups of the same role, the first name in byte order.
        (erin, "members.list", granted(R::Viewer, G::Group, "Zeta")),
        // Not allowed: nothing is named, the role still is.
        (carol, "workspaces.delete", refused(R::Editor)),
        (bob, "members.manage", refused(R::Editor)),
        (eve, "workspaces.get", nothing()),
    ];
    expect_answers(&s, "team", &cases).await;
    // Visibility.
    create(&s, &alice, visible_ws("open", pb::Visibility::Internal)).await;
    let cases = [
        (eve, "workspaces.get", granted(R::Viewer, G::Visibility, "")),
        (eve, "resources.write", refused(R::Viewer)),
    ];
    expect_answers(&s, "open", &cases).await;
    // A group ranks before the visibility between equals; a higher visibility wins.
    let public = visible_ws("open", pb::Visibility::Public);
    s.update_workspace(&alice, public, &["visibility"], "")
        .await
        .unwrap();
    add_groups(&s, &alice, "open", &[("ml", R::Editor)]).await;
    add_subjects(&s, &alice, "open", &[("carol", R::Viewer)]).await;
    let editor_by_visibility = granted(R::Editor, G::Visibility, "");
    let cases = [
        (&token_with_groups("eve", &["ml"]), "resources.write", ml),
        (&token("carol"), "workspaces.get", editor_by_visibility),
    ];
    expect_answers(&s, "open", &cases).await;
    // A platform role only where no workspace grant allows.
    let platform = granted(R::Unspecified, G::PlatformRole, "");
    let cases = [
        (root, "policies.update", platform.clone()),
        (root, "workspaces.get", platform),
    ];
    expect_answers(&s, "team", &cases).await;
    add_subjects(&s, &alice, "team", &[("root", R::Admin)]).await;
    let admin_by_platform = granted(R::Admin, G::PlatformRole, "");
    let cases = [
        (root, "workspaces.get", granted(R::Admin, G::Membership, "")),
        (root, "policies.update", admin_by_platform),
    ];
    expect_answers(&s, "team", &cases).await;
}

#[tokio::test]
async fn only_a_platform_caller_passes_a_subjects_groups() {
    let (s, alice) = spawn_with_team().await;
    let svc = platform_service();
    add_groups(&s, &alice, "team", &[("ml", R::Editor), ("ops", R::Admin)]).await;
    let ml = granted(R::Editor, G::Group, "ml");
    let question = |permission, subject, groups| check_request("team", permission, subject, groups);
    // A platform service checking another subject sees its groups' roles.
    let ops = granted(R::Admin, G::Group, "ops");
    let cases: [(&str, &[&str], _); 3] = [
        ("resources.write", &["ml"], ml.clone()),
        ("workspaces.update", &["ml", "ops"], ops),
        ("resources.write", &[], nothing()),
    ];
    for (permission, groups, want) in cases {
        let got = answer_to(&s, &svc, question(permission, "erin", groups)).await;
        assert_eq!(got, want, "{permission} in {groups:?}");
    }
    // A caller checking itself: only its token's groups count.
    let erin = token("erin");
    let erin_ml = token_with_groups("erin", &["ml"]);
    for sub in ["", "erin"] {
        let got = answer_to(&s, &erin, question("workspaces.get", sub, &["ml"])).await;
        assert_eq!(got, nothing(), "subject {sub:?}");
        let got = answer_to(&s, &erin_ml, question("workspaces.get", sub, &["ops"])).await;
        assert_eq!(got, ml, "subject {sub:?}");
    }
    // The groups are checked: each a group name, at most 1000.
    let res = s.check_access_msg(&svc, question("workspaces.get", "erin", &["ml", ""]));
    assert_eq!(bad_fields_of(res.await), vec!["groups[1]"]);
    let mut many = question("workspaces.get", "erin", &[]);
    many.groups = (0..1001).map(|i| format!("g{i}")).collect();
    let res = s.check_access_msg(&svc, many.clone()).await;
    assert_eq!(bad_fields_of(res), vec!["groups"]);
    many.groups.truncate(999);
    many.groups.push("ml".into());
    assert_eq!(answer_to(&s, &svc, many.clone()).await, ml);
    // A caller checking itself without naming a subject: the field is not read at all, so
    // neither bad names nor too many make the check (or a batch holding it) bad input.
    many.subject.clear();
    many.groups.push(String::new());
    many.groups.extend((0..10).map(|i| format!("h{i}")));
    assert_eq!(answer_to(&s, &erin_ml, many.clone()).await, ml);
    let batch = s.batch_check_access(&erin_ml, vec![many]).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert!(batch[0].allowed);
}

#[tokio::test]
async fn a_list_members_page_token_of_another_shape_is_invalid_argument() {
    let (s, alice) = spawn_with_team().await;
    let fingerprint = serde_json::json!({
        "rpc": "ListMembers",
        "workspace": "team",
        "role": 0,
    })
    .to_string();
    let list = |page_token: String| pb::ListMembersRequest {
        workspace: "team".into(),
        page_size: 1,
        page_token,
        ..Default::default()
    };
    // A key of the listing's own shape continues it; one of three parts is refused.
    let ok = workspaced::domain::page::next_token(vec!["s".into(), "a".into()], &fingerprint);
    let page = s.list_members(&alice, list(ok)).await.unwrap();
    assert_eq!(page.members[0].subject, "alice");
    let parts = vec!["s".into(), "a".into(), "b".into()];
    let bad = workspaced::domain::page::next_token(parts, &fingerprint);
    assert_eq!(
        bad_fields_of(s.list_members(&alice, list(bad)).await),
        vec!["page_token"]
    );
}

// 9. BatchCheckAccess.

#[tokio::test]
async fn batch_check_access_answers_each_check_in_order() {
    let (s, alice) = spawn_with_team().await;
    add_subjects(&s, &alice, "team", &[("bob", R::Editor)]).await;
    add_groups(&s, &alice, "team", &[("ml", R::Admin)]).await;
    let bob = token("bob");
    let bob_ml = token_with_groups("bob", &["ml"]);
    let checks = vec![
        ask("team", "members.manage"),
        ask("team", "resources.write"),
        ask("default", "resources.write"),
        ask("missing", "workspaces.get"),
        check_request("team", "workspaces.get", "bob", &[]),
        ask("system", "workspaces.update"),
        // Read from the database, beside the same checks read from the view.
        pb::CheckAccessRequest {
            fully_consistent: true,
            ..ask("team", "resources.write")
        },
        pb::CheckAccessRequest {
            fully_consistent: true,
            ..ask("missing", "workspaces.get")
        },
    ];
    let expected = vec![
        refused(R::Editor),
        granted(R::Editor, G::Membership, ""),
        granted(R::Editor, G::Visibility, ""),
        nothing(),
        granted(R::Editor, G::Membership, ""),
        refused(R::Viewer),
        granted(R::Editor, G::Membership, ""),
        nothing(),
    ];
    let got = s.batch_check_access(&bob, checks.clone()).await.unwrap();
    assert_eq!(got, expected);
    // Each as CheckAccess alone answers it, also with the token's groups.
    for tok in [bob, bob_ml.clone()] {
        let got = s.batch_check_access(&tok, checks.clone()).await.unwrap();
        for (i, c) in checks.iter().enumerate() {
            let alone = answer_to(&s, &tok, c.clone()).await;
            assert_eq!(got[i], alone, "check {i}");
        }
    }
    let got = s.batch_check_access(&bob_ml, checks).await.unwrap();
    assert_eq!(got[0], granted(R::Admin, G::Group, "ml"));
    // The same check reversed: the answers are reversed.
    let checks = vec![
        ask("team", "resources.write"),
        ask("missing", "workspaces.get"),
    ];
    let mut reversed = checks.clone();
    reversed.reverse();
    let bob = token("bob");
    let mut forward = s.batch_check_access(&bob, checks).await.unwrap();
    forward.reverse();
    assert_eq!(s.batch_check_access(&bob, reversed).await.unwrap(), forward);
}

#[tokio::test]
async fn batch_check_access_takes_1_to_100_checks_and_names_each_bad_field() {
    let (s, alice) = spawn_with_team().await;
    let ok = || ask("team", "workspaces.get");
    let batch = |checks| s.batch_check_access(&alice, checks);
    for n in [0, 101, 1000] {
        let err = batch(vec![ok(); n]).await.unwrap_err();
        assert_eq!(bad_fields(&err), vec!["checks"], "{n} checks");
        let violations = err.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1, "{n} checks: {violations:?}");
    }
    let results = batch(vec![ok(); 100]).await.unwrap();
    assert_eq!(results.len(), 100);
    let admin = granted(R::Admin, G::Membership, "");
    assert!(results.iter().all(|r| *r == admin), "{results:?}");
    assert_eq!(batch(vec![ok()]).await.unwrap(), vec![admin]);
    // A bad item: its field, by index.
    let res = batch(vec![ok(), ok(), ask("team", "workspaces.fly")]).await;
    assert_eq!(bad_fields_of(res), vec!["checks[2].permission"]);
    let res = batch(vec![ok(), ask("Bad_Name", "workspaces.get"), ok()]).await;
    assert_eq!(bad_fields_of(res), vec!["checks[1].workspace"]);
    // Every bad field of every item at once.
    let res = batch(vec![
        ask("Bad_Name", "workspaces.get"),
        ok(),
        ask("team", "nope"),
        check_request("team", "workspaces.get", "bad\u{7}", &[]),
    ])
    .await;
    assert_eq!(
        bad_fields_of(res),
        vec![
            "checks[0].workspace",
            "checks[2].permission",
            "checks[3].subject",
        ]
    );
}

#[tokio::test]
async fn batch_check_access_answers_refused_items_not_allowed() {
    let (s, alice) = spawn_with_team().await;
    add_subjects(&s, &alice, "team", &[("bob", R::Editor)]).await;
    let bob = token("bob");
    // Another subject without a platform role: CheckAccess alone refuses it.
    let other = check_request("team", "workspaces.get", "alice", &[]);
    assert_denied(s.check_access_msg(&bob, other.clone()).await);
    let checks = vec![
        ask("team", "resources.write"),
        other,
        ask("team", "workspaces.get"),
    ];
    let got = s.batch_check_access(&bob, checks).await.unwrap();
    let editor = granted(R::Editor, G::Membership, "");
    assert_eq!(got, vec![editor.clone(), nothing(), editor]);
    // A missing workspace for a platform caller: NOT_FOUND alone, not allowed in a batch.
    let svc = platform_service();
    let missing = check_request("missing", "workspaces.get", "alice", &[]);
    let res = s.check_access_msg(&svc, missing.clone()).await;
    assert_refused(res, Code::NotFound, "WORKSPACE_NOT_FOUND");
    let checks = vec![
        check_request("team", "workspaces.delete", "alice", &[]),
        missing,
        check_request("default", "resources.write", "eve", &[]),
        ask("missing", "workspaces.get"),
        check_request("team", "workspaces.get", "eve", &["ml"]),
    ];
    let got = s.batch_check_access(&svc, checks).await.unwrap();
    assert_eq!(
        got,
        vec![
            granted(R::Admin, G::Membership, ""),
            nothing(),
            granted(R::Editor, G::Visibility, ""),
            nothing(),
            nothing(),
        ]
    );
}
