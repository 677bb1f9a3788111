//! Races on the membership invariants, 100 rounds each, 8 rounds at a time (16 concurrent
//! clients): on PostgreSQL through two server instances sharing one database, on SQLite
//! through one instance. No "database is locked" or other unexpected answer may reach a
//! client, and the database keeps its invariants.

use std::{future::Future, sync::Arc};

use tonic::{Code, Status};
use workspaced::pb::v1 as pb;

use crate::common::*;

const ROUNDS: usize = 100;
const AT_ONCE: usize = 8;

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

/// Fails unless every workspace but the built-ins holds an admin membership meeting `and`
/// (SQL on `m`, the membership; empty for any admin).
async fn assert_every_workspace_keeps_an_admin(s: &TestServer, and: &str) {
    let sql = format!(
        "SELECT count(*) FROM workspaces w WHERE NOT w.built_in AND NOT EXISTS \
         (SELECT 1 FROM memberships m WHERE m.workspace_id = w.id AND m.role = 'admin'{and})"
    );
    assert_eq!(count_rows(s, &sql).await, 0, "a workspace without an admin");
}

async fn two_admins(s: &TestServer, ws: &str) {
    let alice = token("alice");
    create(s, &alice, new_ws(ws)).await;
    s.add_member(&alice, ws, "bob", pb::Role::Admin)
        .await
        .unwrap();
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
            let (x, y) = tokio::join!(
                a.remove_member(&root, &ws, "alice"),
                b.remove_member(&root, &ws, "bob")
            );
            one_wins(&x, &y, Code::FailedPrecondition, "LAST_ADMIN");
        }
    })
    .await;
    assert_every_workspace_keeps_an_admin(&a, "").await;
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
                a.update_member(&root, &ws, "alice", pb::Role::Editor, ""),
                b.update_member(&root, &ws, "bob", pb::Role::Viewer, "")
            );
            one_wins(&x, &y, Code::FailedPrecondition, "LAST_ADMIN");
        }
    })
    .await;
    assert_every_workspace_keeps_an_admin(&a, "").await;
}

/// What a round does to one of the last two admins that never end.
#[derive(Clone, Copy, Debug)]
enum Loss {
    Demote,
    Remove,
    Expire,
}

/// The member `who` ("group:NAME" for a group) as the member RPCs name it.
fn named(who: &str) -> (String, String) {
    match who.strip_prefix("group:") {
        Some(g) => (String::new(), g.to_owned()),
        None => (who.to_owned(), String::new()),
    }
}

/// Makes `who` stop being an admin that never ends, through `s`.
async fn lose(s: &TestServer, token: &str, ws: &str, who: &str, loss: Loss) -> Result<(), Status> {
    let (subject, group) = named(who);
    let mut m = s.members();
    let in_an_hour = timestamp(chrono::Utc::now() + chrono::TimeDelta::hours(1));
    let update = |role: pb::Role, expire_time| pb::UpdateMemberRequest {
        workspace: ws.into(),
        subject: subject.clone(),
        group: group.clone(),
        role: role as i32,
        expire_time,
        ..Default::default()
    };
    match loss {
        Loss::Demote => m
            .update_member(req(update(pb::Role::Editor, None), token))
            .await
            .map(drop),
        Loss::Expire => m
            .update_member(req(update(pb::Role::Admin, Some(in_an_hour)), token))
            .await
            .map(drop),
        Loss::Remove => m
            .remove_member(req(
                pb::RemoveMemberRequest {
                    workspace: ws.into(),
                    subject: subject.clone(),
                    group: group.clone(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
    }
}

#[tokio::test]
async fn concurrent_demotions_removals_and_expiries_of_the_last_two_lasting_admins_leave_one() {
    let (a, b) = replicas().await;
    let b = second(&a, &b);
    let root = platform_admin();
    const LOSSES: [Loss; 3] = [Loss::Demote, Loss::Remove, Loss::Expire];
    rounds(|i| {
        let (a, root) = (&a, root.clone());
        async move {
            let ws = format!("lx{i}");
            let alice = token("alice");
            create(a, &alice, new_ws(&ws)).await;
            // Every pair of losses, with the other admin a subject or a group.
            let other = if i % 2 == 0 { "bob" } else { "group:leads" };
            let (subject, group) = named(other);
            let add = pb::AddMemberRequest {
                workspace: ws.clone(),
                subject,
                group,
                role: pb::Role::Admin as i32,
                ..Default::default()
            };
            a.members().add_member(req(add, &alice)).await.unwrap();
            // An admin that ends does not count, however many there are.
            let until = timestamp(chrono::Utc::now() + chrono::TimeDelta::hours(1));
            a.add_member_until(&alice, &ws, "temp", pb::Role::Admin, until)
                .await
                .unwrap();
            let (first, second) = (LOSSES[i % 3], LOSSES[(i / 3) % 3]);
            let (x, y) = tokio::join!(
                lose(a, &root, &ws, "alice", first),
                lose(b, &root, &ws, other, second)
            );
            one_wins(&x, &y, Code::FailedPrecondition, "LAST_ADMIN");
        }
    })
    .await;
    assert_every_workspace_keeps_an_admin(&a, " AND m.expire_us IS NULL").await;
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
                a.add_member(&alice, &ws, "carol", pb::Role::Viewer),
                b.add_member(&alice, &ws, "carol", pb::Role::Editor)
            );
            one_wins(&x, &y, Code::AlreadyExists, "MEMBER_EXISTS");
        }
    })
    .await;
    assert_eq!(
        count_rows(
            &a,
            "SELECT count(*) FROM memberships WHERE principal = 'carol'"
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
            let (added, deleted) = tokio::join!(
                a.add_member(&root, &ws, "carol", pb::Role::Viewer),
                b.delete_workspace(&root, &ws, "")
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
            "SELECT count(*) FROM memberships WHERE principal = 'carol'"
        )
        .await,
        0
    );
}

/// Polls `check` every 2 ms until it holds; fails if that takes longer than the
/// contract's 100 ms.
async fn within_100ms<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(what, std::time::Duration::from_millis(100), 2, check).await;
}

async fn check_on(s: &TestServer, subject: &str, permission: &str, consistent: bool) -> bool {
    s.check_access_with(
        &platform_service(),
        "revoke",
        permission,
        subject,
        consistent,
    )
    .await
    .unwrap()
    .allowed
}

#[tokio::test]
async fn revocation_on_one_replica_reaches_the_other_within_100ms() {
    let (a, b) = replicas().await;
    let b = second(&a, &b);
    let alice = token("alice");
    let bob = token("bob");
    create(&a, &alice, new_ws("revoke")).await;
    a.add_member(&alice, "revoke", "bob", pb::Role::Admin)
        .await
        .unwrap();
    // b's view has his role within 100 ms, and bob acts through b.
    within_100ms("the grant", || async {
        check_on(b, "bob", "members.manage", false).await
    })
    .await;
    b.add_member(&bob, "revoke", "carol", pb::Role::Viewer)
        .await
        .unwrap();

    // Demoted on a: at once on a, and on b with fully_consistent; within 100 ms on b.
    a.update_member(&alice, "revoke", "bob", pb::Role::Viewer, "")
        .await
        .unwrap();
    assert!(!check_on(&a, "bob", "members.manage", false).await);
    assert!(!check_on(b, "bob", "members.manage", true).await);
    // Read from b's view, which writes do not use: they decide in the database.
    within_100ms("the demotion", || async {
        !check_on(b, "bob", "members.manage", false).await
    })
    .await;
    let err = b
        .add_member(&bob, "revoke", "erin", pb::Role::Viewer)
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");

    // Removed on a: b refuses bob's reads within 100 ms.
    a.remove_member(&alice, "revoke", "bob").await.unwrap();
    assert!(!check_on(b, "bob", "workspaces.get", true).await);
    within_100ms("the removal", || async {
        b.get_workspace(&bob, "revoke").await.is_err()
    })
    .await;
    assert!(!check_on(b, "bob", "workspaces.get", false).await);

    // Visibility changes travel the same way.
    let internal = pb::Workspace {
        name: "revoke".into(),
        visibility: pb::Visibility::Internal as i32,
        ..Default::default()
    };
    a.update_workspace(&alice, internal, &["visibility"], "")
        .await
        .unwrap();
    within_100ms("the visibility change", || async {
        b.get_workspace(&bob, "revoke").await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_group_removal_and_an_expiry_revoke_on_every_replica_in_time() {
    let db = Arc::new(TestDb::new().await);
    let with_metrics = || Options {
        metrics: true,
        ..Default::default()
    };
    let a = TestServer::spawn_on(db.clone(), with_metrics()).await;
    let b = match db.is_postgres() {
        true => Some(TestServer::spawn_on(db, with_metrics()).await),
        false => None,
    };
    let b = second(&a, &b);
    let alice = token("alice");
    let bob = token_with_groups("bob", &["ops"]);
    create(&a, &alice, new_ws("revoke")).await;
    a.add_group_member(&alice, "revoke", "ops", pb::Role::Viewer, None)
        .await
        .unwrap();
    within_100ms("the group's grant", || async {
        b.get_workspace(&bob, "revoke").await.is_ok()
    })
    .await;
    // The group's membership removed on a: b refuses bob within 100 ms.
    let remove = pb::RemoveMemberRequest {
        workspace: "revoke".into(),
        group: "ops".into(),
        ..Default::default()
    };
    a.members()
        .remove_member(req(remove, &alice))
        .await
        .unwrap();
    within_100ms("the group's removal", || async {
        b.get_workspace(&bob, "revoke").await.is_err()
    })
    .await;

    // An expiry needs no announcement: b's view knows when dave's membership ends, and
    // refuses him from then on without asking the database.
    let end = chrono::Utc::now() + chrono::TimeDelta::milliseconds(1200);
    let until = timestamp(end);
    a.add_member_until(&alice, "revoke", "dave", pb::Role::Viewer, until)
        .await
        .unwrap();
    eventually(
        "b answering dave from its view",
        std::time::Duration::from_secs(1),
        || async { check_from_view(b, "dave").await == (true, true) },
    )
    .await;
    let left = (end - chrono::Utc::now()).to_std().unwrap();
    tokio::time::sleep(left).await;
    // Refused at every try; from the view at one of a few (a background statement, such
    // as the sweep for queued events, can land between the metric's two scrapes, and on
    // PostgreSQL a late look at the history turns the view off for a moment).
    let mut from_view = false;
    for _ in 0..20 {
        let (allowed, answered_from_view) = check_from_view(b, "dave").await;
        assert!(!allowed, "dave allowed after his membership ended");
        if answered_from_view {
            from_view = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(from_view, "b never refused dave from its view");
    assert!(!check_on(&a, "dave", "workspaces.get", true).await);
}

/// SQL statements `s` has run, from its metrics (it must have them on): a call that adds
/// none was answered from the replica's view.
async fn statements(s: &TestServer) -> u64 {
    metric(s, "workspaced_db_statements_total ").await as u64
}

/// CheckAccess on `s` as `check_on` asks it, and whether `s` answered from its view.
async fn check_from_view(s: &TestServer, subject: &str) -> (bool, bool) {
    let before = statements(s).await;
    let allowed = check_on(s, subject, "workspaces.get", false).await;
    (allowed, statements(s).await == before)
}

/// The pids of the PostgreSQL backends connected to `db` under `application_name`.
async fn backends(db: &TestDb, application_name: &str) -> Vec<i32> {
    use sea_orm::ConnectionTrait;
    let c = sea_orm::Database::connect(&db.url).await.unwrap();
    let rows = c
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
            [application_name.into()],
        ))
        .await
        .unwrap();
    c.close().await.ok();
    rows.iter()
        .map(|r| r.try_get_by_index::<i32>(0).unwrap())
        .collect()
}

/// The one backend of `application_name` on `db`, once it is there.
async fn the_backend(db: &TestDb, application_name: &str) -> i32 {
    for _ in 0..250 {
        if let [pid] = backends(db, application_name).await[..] {
            return pid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no single {application_name} backend");
}

/// A PostgreSQL backend stopped with SIGSTOP (its connection stays open and nothing answers),
/// resumed when dropped, also when the test fails: a stopped backend would hold up the
/// database for good.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Stopped {
        signal(pid, "STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

fn signal(pid: i32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status();
    if !status.as_ref().is_ok_and(|s| s.success()) && !std::thread::panicking() {
        panic!("kill -{sig} {pid}: {status:?}");
    }
}

/// Replica `b`, with metrics, the backend of its follower of the change history, and
/// replica `a`; `None` unless on a PostgreSQL server on this machine (the test stops the
/// backend).
async fn replicas_with_backends() -> Option<(TestServer, TestServer, i32)> {
    let db = Arc::new(TestDb::new().await);
    if !db.is_postgres() {
        eprintln!("skipped: needs WORKSPACED_TEST_DATABASE_URL (PostgreSQL)");
        return None;
    }
    let b = TestServer::spawn_on(
        db.clone(),
        Options {
            metrics: true,
            ..Default::default()
        },
    )
    .await;
    // b is the only replica yet: the follower's connection is its own.
    let follower = the_backend(&db, "workspaced-follower").await;
    let comm = std::fs::read_to_string(format!("/proc/{follower}/comm")).unwrap_or_default();
    if comm.trim() != "postgres" {
        eprintln!("skipped: PostgreSQL does not run on this machine");
        return None;
    }
    let a = TestServer::spawn_on(db, Options::default()).await;
    Some((a, b, follower))
}

/// Polls `check` every 10 ms until it holds; fails after `within`.
async fn eventually<F, Fut>(what: &str, within: std::time::Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(what, within, 10, check).await;
}

/// Polls `check` every `every_ms` until it holds; fails after `within`.
async fn poll_until<F, Fut>(what: &str, within: std::time::Duration, every_ms: u64, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < within,
            "{what} took longer than {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(every_ms)).await;
    }
}

#[tokio::test]
async fn revocation_reaches_a_replica_whose_follower_stalls_within_100ms() {
    let Some((a, b, follower)) = replicas_with_backends().await else {
        return;
    };
    let alice = token("alice");
    create(&a, &alice, new_ws("revoke")).await;
    a.add_member(&alice, "revoke", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let seconds = std::time::Duration::from_secs;
    eventually("b answering bob from its view", seconds(5), || async {
        check_from_view(&b, "bob").await == (true, true)
    })
    .await;

    // b's follower stalls without an error, as behind a network that drops packets.
    let stopped = Stopped::new(follower);
    a.remove_member(&alice, "revoke", "bob").await.unwrap();
    within_100ms("the removal", || async {
        !check_on(&b, "bob", "workspaces.get", false).await
    })
    .await;

    // b gives the stalled connection up and serves its view again through a new one, which
    // reads the changes made meanwhile: no restart needed.
    eventually("b serving its view again", seconds(10), || async {
        check_from_view(&b, "bob").await == (false, true)
    })
    .await;
    a.add_member(&alice, "revoke", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    within_100ms("the grant", || async {
        check_on(&b, "bob", "workspaces.get", false).await
    })
    .await;
    drop(stopped);
}

/// A change whose event waits for a revision (the counter is taken, so the writer queued it
/// and answered) reaches the other replica's view within 100 ms all the same: the follower
/// reads the queued events too, not only the numbered ones.
#[tokio::test]
async fn revocation_whose_event_waits_for_a_revision_reaches_the_other_replica_within_100ms() {
    use sea_orm::ConnectionTrait;
    // SQLite numbers every event in its writing transaction.
    let Some((a, b, _)) = replicas_with_backends().await else {
        return;
    };
    let alice = token("alice");
    create(&a, &alice, new_ws("revoke")).await;
    a.add_member(&alice, "revoke", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    eventually(
        "b answering bob from its view",
        std::time::Duration::from_secs(5),
        || async { check_from_view(&b, "bob").await == (true, true) },
    )
    .await;

    // Holds the counter: no writer numbers its own event and no pass runs meanwhile.
    let counter = holding(&a.db, "SELECT 1 FROM event_log WHERE id = 1 FOR UPDATE").await;
    a.remove_member(&alice, "revoke", "bob").await.unwrap();
    within_100ms("the removal", || async {
        !check_on(&b, "bob", "workspaces.get", false).await
    })
    .await;
    let pending = counter
        .query_one_raw(sea_orm::Statement::from_string(
            counter.get_database_backend(),
            "SELECT count(*) AS n FROM pending_events",
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = pending.try_get("", "n").unwrap();
    assert_eq!(n, 1, "the removal's event still waits for a revision");
    counter.rollback().await.unwrap();
}

/// PostgreSQL: adds into one workspace do not wait for each other (each holds the row
/// shared), and a change of the workspace itself still waits for an add in flight.
#[tokio::test]
async fn adds_into_one_workspace_do_not_wait_for_each_other_but_an_archive_waits_for_them() {
    let s = Arc::new(TestServer::spawn().await);
    if !s.db.is_postgres() {
        return; // SQLite has one writer at a time.
    }
    let alice = token("alice");
    create(&s, &alice, new_ws("hot")).await;
    // An add in flight: it holds the row as every add does.
    let add = holding(
        &s.db,
        "SELECT 1 FROM workspaces WHERE name = 'hot' FOR SHARE",
    )
    .await;
    let second_add = s.add_member(&alice, "hot", "bob", pb::Role::Viewer);
    tokio::time::timeout(std::time::Duration::from_secs(2), second_add)
        .await
        .expect("an add waited for another")
        .unwrap();
    let archive = tokio::spawn({
        let (s, alice) = (s.clone(), alice.clone());
        async move { s.archive_workspace(&alice, "hot", "").await.map(drop) }
    });
    waits_for_a_lock(&s.db, "%").await;
    assert!(
        !archive.is_finished(),
        "the archive did not wait for the add"
    );
    add.rollback().await.unwrap();
    archive.await.unwrap().unwrap();
}

/// PostgreSQL: a write that waited for its workspace's lock decides with the roles as they
/// stand once it holds it: a caller removed by the change it waited for is refused, though
/// its statement began while it was still an admin.
#[tokio::test]
async fn a_write_that_waited_for_its_callers_removal_is_refused() {
    use sea_orm::ConnectionTrait;
    let s = Arc::new(TestServer::spawn().await);
    if !s.db.is_postgres() {
        return; // SQLite's writers take turns for the whole database.
    }
    let alice = token("alice");
    create(&s, &alice, new_ws("held")).await;
    s.add_member(&alice, "held", "bob", pb::Role::Admin)
        .await
        .unwrap();
    // bob's removal, as RemoveMember makes it: under the workspace's lock.
    let removal = holding(
        &s.db,
        "SELECT 1 FROM workspaces WHERE name = 'held' FOR UPDATE",
    )
    .await;
    removal
        .execute_unprepared("DELETE FROM memberships WHERE principal = 'bob'")
        .await
        .unwrap();
    let add = tokio::spawn({
        let s = s.clone();
        async move {
            s.add_member(&token("bob"), "held", "carol", pb::Role::Viewer)
                .await
        }
    });
    waits_for_a_lock(&s.db, "%").await;
    assert!(!add.is_finished(), "the add did not wait for the removal");
    removal.commit().await.unwrap();
    // As to any principal without a role in a private workspace.
    let err = add.await.unwrap().unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
}

/// A watch on a replica whose follower stalls still sees another replica's changes within
/// the contract's second: while the follower is not heard from, the replica reads the
/// newest revision itself, instead of leaving its watches asleep until the follower has
/// given the stalled connection up and reconnected.
#[tokio::test]
async fn a_watch_on_a_replica_whose_follower_stalls_sees_changes_within_a_second() {
    let Some((a, b, follower)) = replicas_with_backends().await else {
        return;
    };
    let root = platform_admin();
    let mut watch = b
        .watch_events(&root, pb::WatchEventsRequest::default())
        .await
        .unwrap();
    let stopped = Stopped::new(follower);
    for i in 0..3 {
        let name = format!("stalled-{i}");
        create(&a, &root, new_ws(&name)).await;
        let seen = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            loop {
                let message = watch.message().await.unwrap().unwrap();
                if message.events.iter().any(|e| e.workspace == name) {
                    return;
                }
            }
        })
        .await;
        assert!(
            seen.is_ok(),
            "{name} not seen within 1 s of its acknowledgement"
        );
    }
    drop(stopped);
}
