//! MembershipService: every row of the contract, the last-admin invariant, and revocation.

use tonic::Code;
use workspaced::pb::v1 as pb;

use crate::common::*;

pub async fn add(
    s: &TestServer,
    tok: &str,
    ws: &str,
    subject: &str,
    role: pb::Role,
) -> Result<pb::Member, tonic::Status> {
    s.members()
        .add_member(req(
            pb::AddMemberRequest {
                workspace: ws.into(),
                subject: subject.into(),
                email: String::new(),
                role: role as i32,
            },
            tok,
        ))
        .await
        .map(|r| r.into_inner().member.unwrap())
}

pub async fn remove(
    s: &TestServer,
    tok: &str,
    ws: &str,
    subject: &str,
) -> Result<i32, tonic::Status> {
    s.members()
        .remove_member(req(
            pb::RemoveMemberRequest {
                workspace: ws.into(),
                subject: subject.into(),
                email: String::new(),
            },
            tok,
        ))
        .await
        .map(|r| r.into_inner().removed_count)
}

pub async fn set_role(
    s: &TestServer,
    tok: &str,
    ws: &str,
    subject: &str,
    role: pb::Role,
) -> Result<pb::Member, tonic::Status> {
    s.members()
        .update_member(req(
            pb::UpdateMemberRequest {
                workspace: ws.into(),
                subject: subject.into(),
                role: role as i32,
                etag: String::new(),
            },
            tok,
        ))
        .await
        .map(|r| r.into_inner().member.unwrap())
}

pub async fn check(
    s: &TestServer,
    tok: &str,
    ws: &str,
    permission: &str,
    subject: &str,
) -> Result<pb::CheckAccessResponse, tonic::Status> {
    s.members()
        .check_access(req(
            pb::CheckAccessRequest {
                workspace: ws.into(),
                permission: permission.into(),
                subject: subject.into(),
                fully_consistent: false,
            },
            tok,
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn add_member_by_subject_or_email() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    // Any subject, signed in before or not.
    let m = add(&s, &alice, "team", "never-seen", pb::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(m.workspace, "team");
    assert_eq!(m.subject, "never-seen");
    assert_eq!(m.email, "");
    assert_eq!(m.role, pb::Role::Viewer as i32);
    assert_eq!(m.added_by, "alice");
    assert!(!m.etag.is_empty() && m.create_time.is_some());
    // By email: bob has signed in (every call remembers the caller).
    get(&s, &token("bob"), "default").await.unwrap();
    let m = s
        .members()
        .add_member(req(
            pb::AddMemberRequest {
                workspace: "team".into(),
                subject: String::new(),
                email: "bob@example.com".into(),
                role: pb::Role::Editor as i32,
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(m.subject, "bob");
    assert_eq!(m.email, "bob@example.com");
    // Bob can now see the private workspace.
    get(&s, &token("bob"), "team").await.unwrap();
    // An email nobody signed in with.
    let err = s
        .members()
        .add_member(req(
            pb::AddMemberRequest {
                workspace: "team".into(),
                subject: String::new(),
                email: "ghost@example.com".into(),
                role: pb::Role::Viewer as i32,
            },
            &alice,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "PRINCIPAL_NOT_FOUND");
    // Already a member.
    let err = add(&s, &alice, "team", "bob", pb::Role::Admin)
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "MEMBER_EXISTS");
    // Bad input.
    let err = add(&s, &alice, "team", "carol", pb::Role::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["role"]);
    let err = s
        .members()
        .add_member(req(
            pb::AddMemberRequest {
                workspace: "team".into(),
                subject: "carol".into(),
                email: "carol@example.com".into(),
                role: pb::Role::Viewer as i32,
            },
            &alice,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["subject"]);
    // Editors do not manage members.
    let err = add(&s, &token("bob"), "team", "carol", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
}

#[tokio::test]
async fn get_update_and_list_members() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    for (who, role) in [
        ("dave", pb::Role::Viewer),
        ("carol", pb::Role::Editor),
        ("bob", pb::Role::Viewer),
    ] {
        add(&s, &alice, "team", who, role).await.unwrap();
    }
    let got = s
        .members()
        .get_member(req(
            pb::GetMemberRequest {
                workspace: "team".into(),
                subject: "carol".into(),
            },
            &token("dave"),
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(got.role, pb::Role::Editor as i32);
    let err = s
        .members()
        .get_member(req(
            pb::GetMemberRequest {
                workspace: "team".into(),
                subject: "nobody".into(),
            },
            &alice,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");

    // Update with the etag; a stale etag is ABORTED.
    let updated = s
        .members()
        .update_member(req(
            pb::UpdateMemberRequest {
                workspace: "team".into(),
                subject: "carol".into(),
                role: pb::Role::Admin as i32,
                etag: got.etag.clone(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(updated.role, pb::Role::Admin as i32);
    assert_ne!(updated.etag, got.etag);
    let err = s
        .members()
        .update_member(req(
            pb::UpdateMemberRequest {
                workspace: "team".into(),
                subject: "carol".into(),
                role: pb::Role::Viewer as i32,
                etag: got.etag,
            },
            &alice,
        ))
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    let err = set_role(&s, &alice, "team", "nobody", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");

    // List: ordered by subject, role filter, pages.
    let list = |role: pb::Role, page_size: i32, page_token: String| {
        let mut c = s.members();
        let tok = alice.clone();
        async move {
            c.list_members(req(
                pb::ListMembersRequest {
                    workspace: "team".into(),
                    role: role as i32,
                    page_size,
                    page_token,
                },
                &tok,
            ))
            .await
            .map(|r| r.into_inner())
        }
    };
    let all = list(pb::Role::Unspecified, 0, String::new()).await.unwrap();
    let subjects: Vec<&str> = all.members.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, vec!["alice", "bob", "carol", "dave"]);
    assert_eq!(all.total_size, 4);
    let viewers = list(pb::Role::Viewer, 0, String::new()).await.unwrap();
    assert_eq!(viewers.total_size, 2);
    let first = list(pb::Role::Unspecified, 3, String::new()).await.unwrap();
    assert_eq!(first.members.len(), 3);
    let second = list(pb::Role::Unspecified, 3, first.next_page_token.clone())
        .await
        .unwrap();
    assert_eq!(second.members.len(), 1);
    assert_eq!(second.members[0].subject, "dave");
    assert!(second.next_page_token.is_empty());
    let err = list(pb::Role::Viewer, 3, first.next_page_token)
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_token"]);
}

#[tokio::test]
async fn remove_member_by_subject_email_or_self() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    get(&s, &token("bob"), "default").await.unwrap();
    add(&s, &alice, "team", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    add(&s, &alice, "team", "carol", pb::Role::Viewer)
        .await
        .unwrap();
    add(&s, &alice, "team", "dave", pb::Role::Editor)
        .await
        .unwrap();
    // A viewer cannot remove others, but may always remove itself.
    let err = remove(&s, &token("carol"), "team", "dave")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_eq!(
        remove(&s, &token("carol"), "team", "carol").await.unwrap(),
        1
    );
    let err = get(&s, &token("carol"), "team").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    // By email.
    let removed = s
        .members()
        .remove_member(req(
            pb::RemoveMemberRequest {
                workspace: "team".into(),
                subject: String::new(),
                email: "bob@example.com".into(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed_count, 1);
    let err = remove(&s, &alice, "team", "bob").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    // The last admin stays, even when removing itself.
    let err = remove(&s, &alice, "team", "alice").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    let err = set_role(&s, &alice, "team", "alice", pb::Role::Editor)
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    // With a second admin, the first may step down.
    set_role(&s, &alice, "team", "dave", pb::Role::Admin)
        .await
        .unwrap();
    set_role(&s, &alice, "team", "alice", pb::Role::Viewer)
        .await
        .unwrap();
    let err = set_role(&s, &token("dave"), "team", "dave", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
}

#[tokio::test]
async fn archived_workspaces_refuse_member_changes_and_system_members_are_platform_managed() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    add(&s, &alice, "team", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    s.workspaces()
        .archive_workspace(req(
            pb::ArchiveWorkspaceRequest {
                name: "team".into(),
                etag: String::new(),
            },
            &alice,
        ))
        .await
        .unwrap();
    let err = add(&s, &alice, "team", "carol", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    let err = set_role(&s, &alice, "team", "bob", pb::Role::Editor)
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    let err = remove(&s, &token("bob"), "team", "bob").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");

    // system: only platform admins change its members, its own admins included.
    let root = platform_admin();
    add(&s, &root, "system", "ops", pb::Role::Admin)
        .await
        .unwrap();
    let ops = token("ops");
    let err = add(&s, &ops, "system", "eve", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let err = add(&s, &platform_service(), "system", "eve", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    add(&s, &root, "system", "ops2", pb::Role::Admin)
        .await
        .unwrap();
    let err = remove(&s, &ops, "system", "ops").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_eq!(remove(&s, &root, "system", "ops").await.unwrap(), 1);
}

#[tokio::test]
async fn check_access_answers_for_the_caller_and_for_others() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    add(&s, &alice, "team", "bob", pb::Role::Editor)
        .await
        .unwrap();
    let r = check(&s, &token("bob"), "team", "resources.write", "")
        .await
        .unwrap();
    assert!(r.allowed);
    assert_eq!(r.role, pb::Role::Editor as i32);
    let r = check(&s, &token("bob"), "team", "members.manage", "bob")
        .await
        .unwrap();
    assert!(!r.allowed);
    assert_eq!(r.role, pb::Role::Editor as i32);
    // Checking itself where it sees nothing: false, never an error.
    for ws in ["team", "missing"] {
        let r = check(&s, &token("eve"), ws, "workspaces.get", "")
            .await
            .unwrap();
        assert!(!r.allowed);
        assert_eq!(r.role, pb::Role::Unspecified as i32);
    }
    // Another subject needs a platform role.
    let err = check(&s, &token("bob"), "team", "workspaces.get", "alice")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let svc = platform_service();
    let r = check(&s, &svc, "team", "workspaces.delete", "alice")
        .await
        .unwrap();
    assert!(r.allowed);
    assert_eq!(r.role, pb::Role::Admin as i32);
    let r = check(&s, &svc, "team", "workspaces.get", "eve")
        .await
        .unwrap();
    assert!(!r.allowed);
    assert_eq!(r.role, pb::Role::Unspecified as i32);
    // Visibility decides for others too.
    let r = check(&s, &svc, "default", "resources.write", "eve")
        .await
        .unwrap();
    assert!(r.allowed);
    assert_eq!(r.role, pb::Role::Editor as i32);
    // A platform caller learns that a workspace is missing.
    let err = check(&s, &svc, "missing", "workspaces.get", "eve")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "WORKSPACE_NOT_FOUND");
    // Unknown permissions are bad input.
    let err = check(&s, &alice, "team", "workspaces.fly", "")
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["permission"]);
}

#[tokio::test]
async fn revocation_applies_to_the_next_call() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    add(&s, &alice, "team", "bob", pb::Role::Admin)
        .await
        .unwrap();
    let bob = token("bob");
    get(&s, &bob, "team").await.unwrap();
    set_role(&s, &alice, "team", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let err = add(&s, &bob, "team", "carol", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    remove(&s, &alice, "team", "bob").await.unwrap();
    let err = get(&s, &bob, "team").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let r = check(&s, &bob, "team", "workspaces.get", "").await.unwrap();
    assert!(!r.allowed);
}

#[tokio::test]
async fn only_member_managers_learn_whether_an_email_signed_in() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    add(&s, &alice, "team", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let by_email = |tok: String, email: &'static str| {
        let mut c = s.members();
        async move {
            c.remove_member(req(
                pb::RemoveMemberRequest {
                    workspace: "team".into(),
                    subject: String::new(),
                    email: email.into(),
                },
                &tok,
            ))
            .await
        }
    };
    let err = by_email(token("bob"), "ghost@example.com")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let err = by_email(alice.clone(), "ghost@example.com")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "PRINCIPAL_NOT_FOUND");
    // A member removes itself by its own email too.
    assert_eq!(
        by_email(token("bob"), "bob@example.com")
            .await
            .unwrap()
            .into_inner()
            .removed_count,
        1
    );
}
