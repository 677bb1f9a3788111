//! Races on the membership invariants, 100 rounds each, 8 rounds at a time (16 concurrent
//! clients): on PostgreSQL through two server instances sharing one database, on SQLite
//! through one instance. No "database is locked" or other unexpected answer may reach a
//! client, and the database keeps its invariants.

use std::{future::Future, sync::Arc};

use tonic::{Code, Status};
use workspaced::pb::v1 as pb;

use crate::{
    common::*,
    members::{add, remove, set_role},
};

const ROUNDS: usize = 100;
const AT_ONCE: usize = 8;

/// Two replicas on one PostgreSQL database, or one SQLite instance (SQLite is embedded:
/// one process owns the file). Callers reach the second with `second(&a, &b)`.
async fn replicas() -> (TestServer, Option<TestServer>) {
    let db = Arc::new(TestDb::new().await);
    let a = TestServer::spawn_on(db.clone(), Options::default()).await;
    let b = if db.is_postgres() {
        Some(TestServer::spawn_on(db, Options::default()).await)
    } else {
        None
    };
    (a, b)
}

fn second<'a>(a: &'a TestServer, b: &'a Option<TestServer>) -> &'a TestServer {
    b.as_ref().unwrap_or(a)
}

/// Runs `round` for 0..ROUNDS, AT_ONCE rounds at a time.
async fn rounds<F, Fut>(round: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for batch in (0..ROUNDS).collect::<Vec<_>>().chunks(AT_ONCE) {
        futures::future::join_all(batch.iter().map(|i| round(*i))).await;
    }
}

/// Exactly one of two results is Ok and the other fails with `code`/`reason`.
#[track_caller]
fn one_wins<T: std::fmt::Debug>(
    a: &Result<T, Status>,
    b: &Result<T, Status>,
    code: Code,
    reason: &str,
) {
    match (a, b) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => assert_status(e, code, reason),
        other => panic!("want exactly one success, got {other:?}"),
    }
}

async fn two_admins(s: &TestServer, ws: &str) {
    let alice = token("alice");
    create(s, &alice, new_ws(ws)).await;
    add(s, &alice, ws, "bob", pb::Role::Admin).await.unwrap();
}

#[tokio::test]
async fn concurrent_removals_of_the_last_two_admins_leave_one() {
    let (a, b) = replicas().await;
    let b = second(&a, &b);
    let root = platform_admin();
    rounds(|i| {
        let (a, root) = (&a, root.clone());
        async move {
            let ws = format!("rm{i}");
            two_admins(a, &ws).await;
            let (x, y) = tokio::join!(remove(a, &root, &ws, "alice"), remove(b, &root, &ws, "bob"));
            one_wins(&x, &y, Code::FailedPrecondition, "LAST_ADMIN");
        }
    })
    .await;
    assert_eq!(
        count_rows(
            &a,
            "SELECT count(*) FROM workspaces w WHERE NOT w.built_in AND NOT EXISTS \
                   (SELECT 1 FROM memberships m WHERE m.workspace_id = w.id AND m.role = 'admin')"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn concurrent_demotions_of_the_last_two_admins_leave_one() {
    let (a, b) = replicas().await;
    let b = second(&a, &b);
    let root = platform_admin();
    rounds(|i| {
        let (a, root) = (&a, root.clone());
        async move {
            let ws = format!("dm{i}");
            two_admins(a, &ws).await;
            let (x, y) = tokio::join!(
                set_role(a, &root, &ws, "alice", pb::Role::Editor),
                set_role(b, &root, &ws, "bob", pb::Role::Viewer)
            );
            one_wins(&x, &y, Code::FailedPrecondition, "LAST_ADMIN");
        }
    })
    .await;
    assert_eq!(
        count_rows(
            &a,
            "SELECT count(*) FROM workspaces w WHERE NOT w.built_in AND NOT EXISTS \
                   (SELECT 1 FROM memberships m WHERE m.workspace_id = w.id AND m.role = 'admin')"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn concurrent_adds_of_one_subject_make_one_membership() {
    let (a, b) = replicas().await;
    let b = second(&a, &b);
    let alice = token("alice");
    rounds(|i| {
        let (a, alice) = (&a, alice.clone());
        async move {
            let ws = format!("ad{i}");
            create(a, &alice, new_ws(&ws)).await;
            let (x, y) = tokio::join!(
                add(a, &alice, &ws, "carol", pb::Role::Viewer),
                add(b, &alice, &ws, "carol", pb::Role::Editor)
            );
            one_wins(&x, &y, Code::AlreadyExists, "MEMBER_EXISTS");
        }
    })
    .await;
    assert_eq!(
        count_rows(
            &a,
            "SELECT count(*) FROM memberships WHERE subject = 'carol'"
        )
        .await,
        ROUNDS as i64
    );
}

#[tokio::test]
async fn add_member_racing_delete_workspace_leaves_no_orphans() {
    let (a, b) = replicas().await;
    let b = second(&a, &b);
    let root = platform_admin();
    rounds(|i| {
        let (a, root) = (&a, root.clone());
        async move {
            let ws = format!("ax{i}");
            create(a, &token("alice"), new_ws(&ws)).await;
            let mut c = b.workspaces();
            let (added, deleted) = tokio::join!(
                add(a, &root, &ws, "carol", pb::Role::Viewer),
                c.delete_workspace(req(
                    pb::DeleteWorkspaceRequest {
                        name: ws.clone(),
                        etag: String::new(),
                    },
                    &root,
                ))
            );
            assert!(deleted.is_ok(), "{deleted:?}");
            if let Err(e) = added {
                assert_status(&e, Code::NotFound, "WORKSPACE_NOT_FOUND");
            }
        }
    })
    .await;
    assert_eq!(
        count_rows(
            &a,
            "SELECT count(*) FROM memberships m WHERE NOT EXISTS \
                   (SELECT 1 FROM workspaces w WHERE w.id = m.workspace_id)"
        )
        .await,
        0
    );
    assert_eq!(
        count_rows(
            &a,
            "SELECT count(*) FROM memberships WHERE subject = 'carol'"
        )
        .await,
        0
    );
}

/// Polls `check` until it holds; fails if that takes longer than the contract's 100 ms.
async fn within_100ms<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < std::time::Duration::from_millis(100),
            "{what} took longer than 100 ms"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

async fn check_on(s: &TestServer, subject: &str, permission: &str, consistent: bool) -> bool {
    s.members()
        .check_access(req(
            pb::CheckAccessRequest {
                workspace: "revoke".into(),
                permission: permission.into(),
                subject: subject.into(),
                fully_consistent: consistent,
            },
            &platform_service(),
        ))
        .await
        .unwrap()
        .into_inner()
        .allowed
}

#[tokio::test]
async fn revocation_on_one_replica_reaches_the_other_within_100ms() {
    let (a, b) = replicas().await;
    let b = second(&a, &b);
    let alice = token("alice");
    let bob = token("bob");
    create(&a, &alice, new_ws("revoke")).await;
    add(&a, &alice, "revoke", "bob", pb::Role::Admin)
        .await
        .unwrap();
    // bob acts through replica b, which now has his role in its view.
    within_100ms("the grant", || async {
        add(b, &bob, "revoke", "carol", pb::Role::Viewer)
            .await
            .is_ok()
    })
    .await;
    assert!(check_on(b, "bob", "members.manage", false).await);

    // Demoted on a: at once on a, and on b with fully_consistent; within 100 ms on b.
    set_role(&a, &alice, "revoke", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    assert!(!check_on(&a, "bob", "members.manage", false).await);
    assert!(!check_on(b, "bob", "members.manage", true).await);
    within_100ms("the demotion", || async {
        add(b, &bob, "revoke", "dave", pb::Role::Viewer)
            .await
            .is_err()
    })
    .await;
    let err = add(b, &bob, "revoke", "erin", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");

    // Removed on a: b refuses bob's reads within 100 ms.
    remove(&a, &alice, "revoke", "bob").await.unwrap();
    assert!(!check_on(b, "bob", "workspaces.get", true).await);
    within_100ms("the removal", || async {
        get(b, &bob, "revoke").await.is_err()
    })
    .await;
    assert!(!check_on(b, "bob", "workspaces.get", false).await);

    // Visibility changes travel the same way.
    s_update_visibility(&a, &alice, "revoke", pb::Visibility::Internal).await;
    within_100ms("the visibility change", || async {
        get(b, &bob, "revoke").await.is_ok()
    })
    .await;
}

async fn s_update_visibility(s: &TestServer, tok: &str, ws: &str, v: pb::Visibility) {
    s.workspaces()
        .update_workspace(req(
            pb::UpdateWorkspaceRequest {
                workspace: Some(pb::Workspace {
                    name: ws.into(),
                    visibility: v as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["visibility".into()],
                }),
                etag: String::new(),
            },
            tok,
        ))
        .await
        .unwrap();
}
