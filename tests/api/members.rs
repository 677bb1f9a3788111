//! MembershipService: every row of the contract, the last-admin invariant, and revocation.

use tonic::Code;
use workspaced::pb::v1 as pb;

use crate::common::*;

/// An email that several subjects have signed in with names the one that signed in with it
/// last.
#[tokio::test]
async fn an_email_names_the_subject_recorded_with_it_last() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    let with_email = |sub: &str| {
        sign(&serde_json::json!({"sub": sub, "exp": now() + 3600, "email": "x@example.com"}))
    };
    // Signed in as a, c, then b: neither order of subjects names b.
    for sub in ["x-a", "x-c", "x-b"] {
        s.get_workspace(&with_email(sub), "default").await.unwrap();
    }
    let m = s
        .add_member_by_email(&alice, "team", "x@example.com", pb::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(
        (m.subject.as_str(), m.email.as_str()),
        ("x-b", "x@example.com")
    );
}

/// A token without an email says nothing of the principal's: the email it signed in with
/// before still names it.
#[tokio::test]
async fn a_token_without_an_email_keeps_the_one_recorded() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    s.get_workspace(&token("bob"), "default").await.unwrap();
    let no_email = |sub: &str| sign(&serde_json::json!({"sub": sub, "exp": now() + 3600}));
    s.get_workspace(&no_email("bob"), "default").await.unwrap();
    let m = s
        .add_member_by_email(&alice, "team", "bob@example.com", pb::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(
        (m.subject.as_str(), m.email.as_str()),
        ("bob", "bob@example.com")
    );
    // Nor does it make its subject the one last seen with that email: x-new signed in
    // with it after x-old did, whatever x-old does without an email since.
    let with_email = |sub: &str| {
        sign(&serde_json::json!({"sub": sub, "exp": now() + 3600, "email": "x@example.com"}))
    };
    s.get_workspace(&with_email("x-old"), "default")
        .await
        .unwrap();
    s.get_workspace(&with_email("x-new"), "default")
        .await
        .unwrap();
    s.get_workspace(&no_email("x-old"), "default")
        .await
        .unwrap();
    let m = s
        .add_member_by_email(&alice, "team", "x@example.com", pb::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(m.subject, "x-new");
}

#[tokio::test]
async fn a_members_etag_changes_with_the_email_its_token_brings() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    let bob_with =
        |email: &str| sign(&serde_json::json!({"sub": "bob", "exp": now() + 3600, "email": email}));
    s.get_workspace(&bob_with("bob@old.example"), "default")
        .await
        .unwrap();
    s.add_member(&alice, "team", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let before = s.get_member(&alice, "team", "bob").await.unwrap();
    assert_eq!(before.email, "bob@old.example");
    s.get_workspace(&bob_with("bob@new.example"), "default")
        .await
        .unwrap();
    let after = s.get_member(&alice, "team", "bob").await.unwrap();
    assert_eq!(after.email, "bob@new.example");
    assert_ne!(
        after.etag, before.etag,
        "the member changed, its etag did not"
    );
    // An update under the etag read before the change is refused; under the new one, done.
    let err = s
        .update_member(&alice, "team", "bob", pb::Role::Editor, &before.etag)
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    s.update_member(&alice, "team", "bob", pb::Role::Editor, &after.etag)
        .await
        .unwrap();
}

#[tokio::test]
async fn add_member_by_subject_or_email() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    // Any subject, signed in before or not.
    let m = s
        .add_member(&alice, "team", "never-seen", pb::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(m.workspace, "team");
    assert_eq!(m.subject, "never-seen");
    assert_eq!(m.email, "");
    assert_eq!(m.role, pb::Role::Viewer as i32);
    assert_eq!(m.added_by, "alice");
    assert!(!m.etag.is_empty() && m.create_time.is_some());
    // By email: bob has signed in (every call remembers the caller).
    s.get_workspace(&token("bob"), "default").await.unwrap();
    let m = s
        .add_member_by_email(&alice, "team", "bob@example.com", pb::Role::Editor)
        .await
        .unwrap();
    assert_eq!(m.subject, "bob");
    assert_eq!(m.email, "bob@example.com");
    // Bob can now see the private workspace.
    s.get_workspace(&token("bob"), "team").await.unwrap();
    // A listing names each subject's email, and none for one that never signed in.
    let page = s
        .list_members(
            &alice,
            pb::ListMembersRequest {
                workspace: "team".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let emails: Vec<(&str, &str)> = page
        .members
        .iter()
        .map(|m| (m.subject.as_str(), m.email.as_str()))
        .collect();
    assert_eq!(
        emails,
        [
            ("alice", "alice@example.com"),
            ("bob", "bob@example.com"),
            ("never-seen", "")
        ]
    );
    // An email nobody signed in with.
    let err = s
        .add_member_by_email(&alice, "team", "ghost@example.com", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "PRINCIPAL_NOT_FOUND");
    // Already a member.
    let err = s
        .add_member(&alice, "team", "bob", pb::Role::Admin)
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "MEMBER_EXISTS");
    // Bad input.
    let err = s
        .add_member(&alice, "team", "carol", pb::Role::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["role"]);
    let err = s
        .add_member_with(
            &alice,
            "team",
            "carol",
            "carol@example.com",
            pb::Role::Viewer,
        )
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["subject"]);
    // Editors do not manage members.
    let err = s
        .add_member(&token("bob"), "team", "carol", pb::Role::Viewer)
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
        s.add_member(&alice, "team", who, role).await.unwrap();
    }
    let got = s.get_member(&token("dave"), "team", "carol").await.unwrap();
    assert_eq!(got.role, pb::Role::Editor as i32);
    let err = s.get_member(&alice, "team", "nobody").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");

    // Update with the etag; a stale etag is ABORTED.
    let updated = s
        .update_member(&alice, "team", "carol", pb::Role::Admin, &got.etag)
        .await
        .unwrap();
    assert_eq!(updated.role, pb::Role::Admin as i32);
    assert_ne!(updated.etag, got.etag);
    let err = s
        .update_member(&alice, "team", "carol", pb::Role::Viewer, &got.etag)
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, "ETAG_MISMATCH");
    let err = s
        .update_member(&alice, "team", "nobody", pb::Role::Viewer, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");

    // List: ordered by subject, role filter, pages.
    let list = |role: pb::Role, page_size: i32, page_token: String| {
        let (s, alice) = (&s, &alice);
        let msg = pb::ListMembersRequest {
            workspace: "team".into(),
            role: role as i32,
            page_size,
            page_token,
        };
        async move { s.list_members(alice, msg).await }
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
    s.get_workspace(&token("bob"), "default").await.unwrap();
    for (who, role) in [
        ("bob", pb::Role::Viewer),
        ("carol", pb::Role::Viewer),
        ("dave", pb::Role::Editor),
    ] {
        s.add_member(&alice, "team", who, role).await.unwrap();
    }
    // A viewer cannot remove others, but may always remove itself.
    let carol = token("carol");
    let err = s.remove_member(&carol, "team", "dave").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_eq!(s.remove_member(&carol, "team", "carol").await.unwrap(), 1);
    let err = s.get_workspace(&carol, "team").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    // Its retry finds it with no role left there.
    let err = s.remove_member(&carol, "team", "carol").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    // By email.
    let removed = s
        .remove_member_by_email(&alice, "team", "bob@example.com")
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let err = s.remove_member(&alice, "team", "bob").await.unwrap_err();
    assert_status(&err, Code::NotFound, "MEMBER_NOT_FOUND");
    // The last admin stays, even when removing itself.
    let err = s.remove_member(&alice, "team", "alice").await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    let err = s
        .update_member(&alice, "team", "alice", pb::Role::Editor, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
    // With a second admin, the first may step down.
    s.update_member(&alice, "team", "dave", pb::Role::Admin, "")
        .await
        .unwrap();
    s.update_member(&alice, "team", "alice", pb::Role::Viewer, "")
        .await
        .unwrap();
    let err = s
        .update_member(&token("dave"), "team", "dave", pb::Role::Viewer, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "LAST_ADMIN");
}

#[tokio::test]
async fn archived_workspaces_refuse_member_changes_and_system_members_are_platform_managed() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    s.add_member(&alice, "team", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    s.archive_workspace(&alice, "team", "").await.unwrap();
    let err = s
        .add_member(&alice, "team", "carol", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    let err = s
        .update_member(&alice, "team", "bob", pb::Role::Editor, "")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");
    let err = s
        .remove_member(&token("bob"), "team", "bob")
        .await
        .unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "WORKSPACE_ARCHIVED");

    // system: only platform admins change its members, its own admins included.
    let root = platform_admin();
    s.add_member(&root, "system", "ops", pb::Role::Admin)
        .await
        .unwrap();
    let ops = token("ops");
    let err = s
        .add_member(&ops, "system", "eve", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let err = s
        .add_member(&platform_service(), "system", "eve", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    s.add_member(&root, "system", "ops2", pb::Role::Admin)
        .await
        .unwrap();
    let err = s.remove_member(&ops, "system", "ops").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    assert_eq!(s.remove_member(&root, "system", "ops").await.unwrap(), 1);
}

#[tokio::test]
async fn check_access_answers_for_the_caller_and_for_others() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    s.add_member(&alice, "team", "bob", pb::Role::Editor)
        .await
        .unwrap();
    let bob = token("bob");
    let r = s
        .check_access(&bob, "team", "resources.write", "")
        .await
        .unwrap();
    assert!(r.allowed);
    assert_eq!(r.role, pb::Role::Editor as i32);
    let r = s
        .check_access(&bob, "team", "members.manage", "bob")
        .await
        .unwrap();
    assert!(!r.allowed);
    assert_eq!(r.role, pb::Role::Editor as i32);
    // Checking itself where it sees nothing: false, never an error.
    for ws in ["team", "missing"] {
        let r = s
            .check_access(&token("eve"), ws, "workspaces.get", "")
            .await
            .unwrap();
        assert!(!r.allowed);
        assert_eq!(r.role, pb::Role::Unspecified as i32);
    }
    // Another subject needs a platform role.
    let err = s
        .check_access(&bob, "team", "workspaces.get", "alice")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let svc = platform_service();
    let r = s
        .check_access(&svc, "team", "workspaces.delete", "alice")
        .await
        .unwrap();
    assert!(r.allowed);
    assert_eq!(r.role, pb::Role::Admin as i32);
    let r = s
        .check_access(&svc, "team", "workspaces.get", "eve")
        .await
        .unwrap();
    assert!(!r.allowed);
    assert_eq!(r.role, pb::Role::Unspecified as i32);
    // Visibility decides for others too.
    let r = s
        .check_access(&svc, "default", "resources.write", "eve")
        .await
        .unwrap();
    assert!(r.allowed);
    assert_eq!(r.role, pb::Role::Editor as i32);
    // A platform caller learns that a workspace is missing.
    let err = s
        .check_access(&svc, "missing", "workspaces.get", "eve")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "WORKSPACE_NOT_FOUND");
    // Unknown permissions are bad input.
    let err = s
        .check_access(&alice, "team", "workspaces.fly", "")
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["permission"]);
}

#[tokio::test]
async fn revocation_applies_to_the_next_call() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("team")).await;
    s.add_member(&alice, "team", "bob", pb::Role::Admin)
        .await
        .unwrap();
    let bob = token("bob");
    s.get_workspace(&bob, "team").await.unwrap();
    s.update_member(&alice, "team", "bob", pb::Role::Viewer, "")
        .await
        .unwrap();
    let err = s
        .add_member(&bob, "team", "carol", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    s.remove_member(&alice, "team", "bob").await.unwrap();
    let err = s.get_workspace(&bob, "team").await.unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let r = s
        .check_access(&bob, "team", "workspaces.get", "")
        .await
        .unwrap();
    assert!(!r.allowed);
}

#[tokio::test]
async fn only_member_managers_learn_whether_an_email_signed_in() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let bob = token("bob");
    create(&s, &alice, new_ws("team")).await;
    s.add_member(&alice, "team", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let err = s
        .remove_member_by_email(&bob, "team", "ghost@example.com")
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let err = s
        .remove_member_by_email(&alice, "team", "ghost@example.com")
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, "PRINCIPAL_NOT_FOUND");
    // A member removes itself by its own email too.
    let removed = s
        .remove_member_by_email(&bob, "team", "bob@example.com")
        .await
        .unwrap();
    assert_eq!(removed, 1);
}
