//! The change history: one event per committed change, in one gap-free order over every
//! replica, read by ListEvents and followed by WatchEvents, pruned after the retention.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use tokio_stream::StreamExt;
use tonic::Code;
use workspaced::{domain::events::EventSettings, pb::v1 as pb};

use crate::common::*;

use pb::EventType as T;

/// Every event of `ws` (all workspaces when empty) after `after`, read as a platform admin
/// a page at a time.
async fn events_of(s: &TestServer, ws: &str, after: i64) -> Vec<pb::Event> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = s
            .list_events(
                &platform_admin(),
                pb::ListEventsRequest {
                    workspace: ws.into(),
                    after_revision: after,
                    page_token,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        out.extend(page.events);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

fn kinds(events: &[pb::Event]) -> Vec<T> {
    events.iter().map(|e| e.r#type()).collect()
}

/// The highest committed revision.
async fn latest(s: &TestServer) -> i64 {
    s.list_events(
        &platform_admin(),
        pb::ListEventsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .latest_revision
}

/// A server whose change history is kept and watched as `events` says.
async fn spawn_with_events(events: EventSettings) -> TestServer {
    TestServer::spawn_with(Options {
        events: Some(events),
        ..Options::default()
    })
    .await
}

/// A request with `token` and the request id `id`.
fn with_id<T>(msg: T, token: &str, id: &str) -> tonic::Request<T> {
    let mut r = req(msg, token);
    r.metadata_mut().insert("x-request-id", id.parse().unwrap());
    r
}

#[tokio::test]
async fn every_change_writes_one_event_and_nothing_else_does() {
    let s = TestServer::spawn().await;
    let (alice, root, sched) = (token("alice"), platform_admin(), platform_service());
    // The built-ins' creation, by the server itself.
    let built_ins = events_of(&s, "", 0).await;
    assert_eq!(
        kinds(&built_ins),
        [T::WorkspaceCreated, T::WorkspaceCreated]
    );
    assert!(built_ins.iter().all(|e| e.actor.is_empty()));
    let start = latest(&s).await;

    let created = s
        .workspaces()
        .create_workspace(with_id(
            pb::CreateWorkspaceRequest {
                workspace: Some(new_ws("ev")),
                request_id: "create-1".into(),
            },
            &alice,
            "req-create",
        ))
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap();
    // A retry of the create changes nothing.
    s.create_workspace_with_request_id(&alice, new_ws("ev"), "create-1")
        .await
        .unwrap();
    s.update_workspace(
        &alice,
        pb::Workspace {
            name: "ev".into(),
            description: "d".into(),
            ..Default::default()
        },
        &["description"],
        "",
    )
    .await
    .unwrap();
    s.add_member(&alice, "ev", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    // Refused: a viewer may not add members.
    assert_denied(
        s.add_member(&token("bob"), "ev", "carol", pb::Role::Viewer)
            .await,
    );
    s.update_member(&alice, "ev", "bob", pb::Role::Editor, "")
        .await
        .unwrap();
    s.add_group_member(&alice, "ev", "ml", pb::Role::Viewer, None)
        .await
        .unwrap();
    s.remove_member(&alice, "ev", "bob").await.unwrap();
    let policy = pb::Policy {
        workspace: "ev".into(),
        max_gprs: 1,
        ..Default::default()
    };
    s.update_policy(&root, policy, &["max_gprs"], "")
        .await
        .unwrap();
    s.register_resource(&alice, "ev", "model", "m1")
        .await
        .unwrap();
    // Registering again is idempotent.
    s.register_resource(&alice, "ev", "model", "m1")
        .await
        .unwrap();
    s.unregister_resource(&alice, "ev", "model", "m1")
        .await
        .unwrap();
    assert!(
        s.admit_gpus(&sched, "ev", "g1", 1, 0)
            .await
            .unwrap()
            .admitted
    );
    // A retry of the admission, a refused one and a renewal write nothing.
    assert!(
        s.admit_gpus(&sched, "ev", "g1", 1, 0)
            .await
            .unwrap()
            .admitted
    );
    assert!(
        !s.admit_gpus(&sched, "ev", "g2", 1, 0)
            .await
            .unwrap()
            .admitted
    );
    s.renew_gpu_request(&sched, "ev", "g1", 60).await.unwrap();
    s.release_gpu_request(&sched, "ev", "g1").await.unwrap();
    s.archive_workspace(&alice, "ev", "").await.unwrap();
    s.unarchive_workspace(&alice, "ev", "").await.unwrap();
    // Unarchiving an active workspace changes nothing.
    s.unarchive_workspace(&alice, "ev", "").await.unwrap();
    s.delete_workspace(&alice, "ev", "").await.unwrap();

    let events = events_of(&s, "", start).await;
    assert_eq!(
        kinds(&events),
        [
            T::WorkspaceCreated,
            T::WorkspaceUpdated,
            T::MemberAdded,
            T::MemberUpdated,
            T::MemberAdded,
            T::MemberRemoved,
            T::PolicyUpdated,
            T::ResourceRegistered,
            T::ResourceUnregistered,
            T::GpuRequestAdmitted,
            T::GpuRequestReleased,
            T::WorkspaceArchived,
            T::WorkspaceUnarchived,
            T::WorkspaceDeleted,
        ]
    );
    // One order without gaps.
    let revisions: Vec<i64> = events.iter().map(|e| e.revision).collect();
    let expected: Vec<i64> = (start + 1..=start + events.len() as i64).collect();
    assert_eq!(revisions, expected);
    let secs = |e: &pb::Event| e.time.map(|t| (t.seconds, t.nanos)).unwrap();
    assert!(events.windows(2).all(|w| secs(&w[0]) <= secs(&w[1])));
    assert!(events.iter().all(|e| e.workspace == "ev"));

    let first = &events[0];
    assert_eq!(first.actor, "alice");
    assert_eq!(first.request_id, "req-create");
    assert_eq!(
        first.method,
        "workspaced.v1.WorkspaceService/CreateWorkspace"
    );
    match &first.object {
        Some(pb::event::Object::WorkspaceState(w)) => assert_eq!(w.id, created.id),
        other => panic!("{other:?}"),
    }
    // The objects: after the change, or before it for removals and deletions.
    match &events[3].object {
        Some(pb::event::Object::Member(m)) => {
            assert_eq!((m.subject.as_str(), m.role()), ("bob", pb::Role::Editor))
        }
        other => panic!("{other:?}"),
    }
    match &events[4].object {
        Some(pb::event::Object::Member(m)) => assert_eq!(m.group, "ml"),
        other => panic!("{other:?}"),
    }
    match &events[5].object {
        Some(pb::event::Object::Member(m)) => assert_eq!(m.subject, "bob"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        events[5].method,
        "workspaced.v1.MembershipService/RemoveMember"
    );
    match &events[6].object {
        Some(pb::event::Object::Policy(p)) => assert_eq!(p.max_gprs, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(events[6].actor, "root");
    match &events[8].object {
        Some(pb::event::Object::Resource(r)) => assert_eq!(r.resource_id, "m1"),
        other => panic!("{other:?}"),
    }
    match &events[10].object {
        Some(pb::event::Object::GpuRequest(g)) => assert_eq!(g.id, "g1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(events[10].actor, "svc");
    match &events[13].object {
        Some(pb::event::Object::WorkspaceState(w)) => {
            assert_eq!(w.id, created.id);
            assert_eq!(w.state(), pb::WorkspaceState::Active);
        }
        other => panic!("{other:?}"),
    }
    // Filters: by kind, and after a revision.
    let page = s
        .list_events(
            &root,
            pb::ListEventsRequest {
                workspace: "ev".into(),
                types: vec![T::MemberAdded as i32, T::MemberRemoved as i32],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        kinds(&page.events),
        [T::MemberAdded, T::MemberAdded, T::MemberRemoved]
    );
    assert_eq!(page.latest_revision, start + 14);
    assert_eq!(events_of(&s, "ev", start + 12).await.len(), 2);
}

#[tokio::test]
async fn pages_follow_the_revisions_and_bad_filters_are_named() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("pages")).await;
    for i in 0..5 {
        s.add_member(&alice, "pages", &format!("u{i}"), pb::Role::Viewer)
            .await
            .unwrap();
    }
    let first = s
        .list_events(
            &alice,
            pb::ListEventsRequest {
                workspace: "pages".into(),
                page_size: 4,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.events.len(), 4);
    assert!(!first.next_page_token.is_empty());
    let second = s
        .list_events(
            &alice,
            pb::ListEventsRequest {
                workspace: "pages".into(),
                page_size: 4,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second.events.len(), 2);
    assert!(second.next_page_token.is_empty());
    assert_eq!(second.events[0].revision, first.events[3].revision + 1);
    // A token is bound to its filters.
    let other = s
        .list_events(
            &alice,
            pb::ListEventsRequest {
                workspace: "pages".into(),
                page_size: 4,
                page_token: first.next_page_token,
                types: vec![T::MemberAdded as i32],
                ..Default::default()
            },
        )
        .await;
    assert_eq!(bad_fields_of(other), ["page_token"]);
    // One violation per bad field.
    let bad = s
        .list_events(
            &alice,
            pb::ListEventsRequest {
                workspace: "Not_A_Name".into(),
                after_revision: -1,
                types: vec![T::Unspecified as i32],
                page_size: -1,
                page_token: String::new(),
            },
        )
        .await;
    assert_eq!(
        bad_fields_of(bad),
        ["after_revision", "page_size", "types", "workspace"]
    );
    let bad = s
        .watch_events(
            &alice,
            pb::WatchEventsRequest {
                workspace: "pages".into(),
                after_revision: 0,
                types: vec![99],
            },
        )
        .await;
    assert_eq!(bad_fields_of(bad), ["types"]);
}

/// The pages of ListEvents for `filter` as `token` sees them, followed to the last.
async fn pages_of(
    s: &TestServer,
    token: &str,
    filter: pb::ListEventsRequest,
) -> Vec<Vec<pb::Event>> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = s
            .list_events(
                token,
                pb::ListEventsRequest {
                    page_token,
                    ..filter.clone()
                },
            )
            .await
            .unwrap();
        pages.push(page.events);
        if page.next_page_token.is_empty() {
            return pages;
        }
        page_token = page.next_page_token;
        assert!(pages.len() < 100, "the pages end");
    }
}

/// A replica follows at most `max_watches` watches: one more is OVERLOADED at once, and a
/// place comes free when a watch's client leaves.
#[tokio::test]
async fn watches_over_the_limit_are_overloaded_until_one_ends() {
    let s = spawn_with_events(EventSettings {
        max_watches: 2,
        ..EventSettings::default()
    })
    .await;
    let root = platform_admin();
    // A watch answered at once, or the test fails (rather than waits) if they queue.
    let watch = || async {
        let asked = s.watch_events(&root, pb::WatchEventsRequest::default());
        let answer = tokio::time::timeout(Duration::from_secs(5), asked).await;
        answer.expect("a watch neither opened nor refused")
    };
    let first = watch().await.unwrap();
    let _second = watch().await.unwrap();
    let err = watch().await.unwrap_err();
    assert_status(&err, Code::Unavailable, "OVERLOADED");
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match watch().await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_status(&e, Code::Unavailable, "OVERLOADED");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no place came free: {e:?}"),
        }
    }
}

#[tokio::test]
async fn a_rare_filter_is_read_a_window_at_a_time_and_nothing_is_missed() {
    let s = spawn_with_events(EventSettings {
        window: 4,
        ..EventSettings::default()
    })
    .await;
    let (alice, root) = (token("alice"), platform_admin());
    create(&s, &alice, new_ws("busy")).await;
    create(&s, &alice, new_ws("quiet")).await;
    for i in 0..12 {
        s.add_member(&alice, "busy", &format!("u{i}"), pb::Role::Viewer)
            .await
            .unwrap();
        if i % 3 == 0 {
            s.add_member(&alice, "quiet", &format!("q{i}"), pb::Role::Viewer)
                .await
                .unwrap();
        }
    }
    s.remove_member(&alice, "busy", "u0").await.unwrap();
    s.remove_member(&alice, "quiet", "q3").await.unwrap();
    for i in 12..20 {
        s.add_member(&alice, "busy", &format!("u{i}"), pb::Role::Viewer)
            .await
            .unwrap();
    }
    let all = events_of(&s, "", 0).await;
    let removed: Vec<pb::Event> = all
        .iter()
        .filter(|e| e.r#type() == T::MemberRemoved)
        .cloned()
        .collect();
    assert_eq!(removed.len(), 2);

    // Every workspace, one rare kind: each page looks at 4 revisions, so the first pages
    // come back empty, with a token that goes on where they stopped.
    let removals = pb::ListEventsRequest {
        types: vec![T::MemberRemoved as i32],
        page_size: 100,
        ..Default::default()
    };
    let pages = pages_of(&s, &root, removals.clone()).await;
    assert!(pages[0].is_empty(), "{pages:?}");
    assert!(
        (all.len() / 4..=all.len().div_ceil(4) + 1).contains(&pages.len()),
        "{} pages",
        pages.len()
    );
    assert_eq!(pages.concat(), removed);

    // One workspace: the window counts its events, not the revisions of every workspace.
    let quiet: Vec<pb::Event> = all
        .iter()
        .filter(|e| e.workspace == "quiet")
        .cloned()
        .collect();
    let quiet_removals = pb::ListEventsRequest {
        workspace: "quiet".into(),
        ..removals.clone()
    };
    let pages = pages_of(&s, &alice, quiet_removals).await;
    assert!(
        (2..=quiet.len().div_ceil(4) + 1).contains(&pages.len()),
        "{pages:?}"
    );
    assert_eq!(pages.concat(), removed[1..].to_vec());

    // A watch of the rare kind from the start gets both, and the next as it commits.
    let mut watch = s
        .watch_events(
            &root,
            pb::WatchEventsRequest {
                after_revision: 1,
                types: vec![T::MemberRemoved as i32],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut members_watch = s
        .watch_events(
            &alice,
            pb::WatchEventsRequest {
                workspace: "quiet".into(),
                after_revision: 1,
                types: vec![T::MemberRemoved as i32],
            },
        )
        .await
        .unwrap();
    assert_eq!(take(&mut watch, 2).await, removed);
    assert_eq!(take(&mut members_watch, 1).await, removed[1..].to_vec());
    s.remove_member(&alice, "quiet", "q6").await.unwrap();
    let next_removal = take(&mut watch, 1).await;
    assert_eq!(next_removal[0].revision, latest(&s).await);
    assert_eq!(take(&mut members_watch, 1).await, next_removal);
}

#[tokio::test]
async fn only_admins_and_platform_callers_read_events_of_their_own_workspace() {
    let s = TestServer::spawn().await;
    let (alice, bob) = (token("alice"), token("bob"));
    create(&s, &alice, new_ws("mine")).await;
    s.add_member(&alice, "mine", "bob", pb::Role::Editor)
        .await
        .unwrap();
    let ask = |ws: &str| pb::ListEventsRequest {
        workspace: ws.into(),
        ..Default::default()
    };
    assert_eq!(
        s.list_events(&alice, ask("mine"))
            .await
            .unwrap()
            .events
            .len(),
        2
    );
    // An editor, a stranger, and anyone without a platform role asking for all.
    assert_denied(s.list_events(&bob, ask("mine")).await);
    assert_denied(s.list_events(&token("eve"), ask("mine")).await);
    assert_denied(s.list_events(&token("eve"), ask("no-such")).await);
    assert_denied(s.list_events(&alice, ask("")).await);
    assert_denied(
        s.watch_events(&alice, pb::WatchEventsRequest::default())
            .await,
    );
    assert_denied(
        s.watch_events(
            &bob,
            pb::WatchEventsRequest {
                workspace: "mine".into(),
                ..Default::default()
            },
        )
        .await,
    );
    // Platform callers read any workspace's, even one that never existed.
    let svc = platform_service();
    assert_eq!(
        s.list_events(&svc, ask("mine")).await.unwrap().events.len(),
        2
    );
    assert!(
        s.list_events(&svc, ask("no-such"))
            .await
            .unwrap()
            .events
            .is_empty()
    );
    assert!(s.list_events(&svc, ask("")).await.unwrap().events.len() >= 4);

    // A deleted workspace's events stay readable by platform callers; the admin of a new
    // workspace of the same name sees only the new one's.
    s.remove_member(&alice, "mine", "bob").await.unwrap();
    s.delete_workspace(&alice, "mine", "").await.unwrap();
    create(&s, &bob, new_ws("mine")).await;
    let bobs = s.list_events(&bob, ask("mine")).await.unwrap().events;
    assert_eq!(kinds(&bobs), [T::WorkspaceCreated]);
    assert_eq!(bobs[0].actor, "bob");
    let all = s.list_events(&svc, ask("mine")).await.unwrap().events;
    assert_eq!(
        kinds(&all),
        [
            T::WorkspaceCreated,
            T::MemberAdded,
            T::MemberRemoved,
            T::WorkspaceDeleted,
            T::WorkspaceCreated
        ]
    );
    // events.list is in CheckAccess: admins only.
    for (who, allowed) in [("bob", true), ("alice", false)] {
        let r = s
            .check_access(&svc, "mine", "events.list", who)
            .await
            .unwrap();
        assert_eq!(r.allowed, allowed, "{who}");
    }
}

/// The next message of a watch, within 5 s.
async fn next(w: &mut tonic::Streaming<pb::WatchEventsResponse>) -> Vec<pb::Event> {
    tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("a message within 5 s")
        .expect("the watch goes on")
        .expect("a message")
        .events
}

/// The events of a watch until it has `n`.
async fn take(w: &mut tonic::Streaming<pb::WatchEventsResponse>, n: usize) -> Vec<pb::Event> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(next(w).await);
    }
    out
}

#[tokio::test]
async fn a_watch_sends_what_commits_and_resumes_exactly_after_a_revision() {
    let s = TestServer::spawn().await;
    let (alice, root) = (token("alice"), platform_admin());
    create(&s, &alice, new_ws("w")).await;
    let mut from_now = s
        .watch_events(
            &alice,
            pb::WatchEventsRequest {
                workspace: "w".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut all = s
        .watch_events(
            &root,
            pb::WatchEventsRequest {
                types: vec![T::MemberAdded as i32],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    create(&s, &alice, new_ws("other")).await;
    s.add_member(&alice, "w", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    s.add_member(&alice, "other", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    s.add_member(&alice, "w", "carol", pb::Role::Viewer)
        .await
        .unwrap();
    let mine = take(&mut from_now, 2).await;
    assert_eq!(kinds(&mine), [T::MemberAdded, T::MemberAdded]);
    assert!(mine.iter().all(|e| e.workspace == "w"));
    let added = take(&mut all, 3).await;
    assert_eq!(kinds(&added), [T::MemberAdded; 3]);
    assert!(added.windows(2).all(|w| w[0].revision < w[1].revision));

    // Resumed after the first, it sends exactly what followed, then what commits next.
    let mut resumed = s
        .watch_events(
            &root,
            pb::WatchEventsRequest {
                after_revision: added[0].revision,
                types: vec![T::MemberAdded as i32],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let again = take(&mut resumed, 2).await;
    assert_eq!(again, added[1..].to_vec());
    s.add_member(&alice, "w", "dave", pb::Role::Viewer)
        .await
        .unwrap();
    let dave = take(&mut resumed, 1).await;
    assert_eq!(dave[0].revision, latest(&s).await);
    let dave_too = take(&mut from_now, 1).await;
    assert_eq!(dave, dave_too);
}

#[tokio::test]
async fn pruned_history_is_revision_expired_and_a_follower_that_missed_nothing_goes_on() {
    let s = spawn_with_events(EventSettings {
        retention: Duration::from_secs(1),
        ..EventSettings::default()
    })
    .await;
    let (alice, root) = (token("alice"), platform_admin());
    let old = create(&s, &alice, new_ws("old")).await;
    let seen = latest(&s).await;
    // Its event's time is the workspace's create_time (one transaction).
    let at = old.create_time.unwrap();
    let committed = chrono::DateTime::from_timestamp(at.seconds, at.nanos as u32).unwrap();
    // Kept for the retention, then pruned within max(1 s, a tenth of the retention): 2 s
    // after the last commit (here with 1 s for a busy test machine to notice).
    let age = || (chrono::Utc::now() - committed).to_std().unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = age();
        let empty = events_of(&s, "", 0).await.is_empty();
        if empty {
            let after = age();
            assert!(after >= Duration::from_secs(1), "pruned by {after:?}");
            break;
        }
        assert!(before < Duration::from_millis(3000), "kept for {before:?}");
    }
    // A follower that has seen everything is not refused.
    let page = s
        .list_events(
            &root,
            pb::ListEventsRequest {
                after_revision: seen,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(page.events.is_empty());
    assert_eq!(page.latest_revision, seen);
    let mut watch = s
        .watch_events(
            &root,
            pb::WatchEventsRequest {
                after_revision: seen,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // One that missed events is told so.
    let missed = pb::ListEventsRequest {
        after_revision: seen - 1,
        ..Default::default()
    };
    assert_refused(
        s.list_events(&root, missed).await,
        Code::FailedPrecondition,
        "REVISION_EXPIRED",
    );
    assert_refused(
        s.watch_events(
            &root,
            pb::WatchEventsRequest {
                after_revision: 1,
                ..Default::default()
            },
        )
        .await,
        Code::FailedPrecondition,
        "REVISION_EXPIRED",
    );
    s.add_member(&alice, "old", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let next = take(&mut watch, 1).await;
    assert_eq!(next[0].revision, seen + 1);
}

/// A server whose watches are too slow `max_lag` revisions behind, with a workspace named
/// `name`, a platform admin's watch of every event through a narrow connection, and the
/// workspace with 64 labels: updates to it make events large, so that the buffers between
/// the watch and its client fill quickly.
async fn slow_watch(
    max_lag: i64,
    name: &str,
) -> (
    TestServer,
    tonic::Streaming<pb::WatchEventsResponse>,
    pb::Workspace,
) {
    let s = spawn_with_events(EventSettings {
        max_lag,
        ..EventSettings::default()
    })
    .await;
    let root = platform_admin();
    create(&s, &root, new_ws(name)).await;
    let watch = narrow_client(&s)
        .watch_events(req(pb::WatchEventsRequest::default(), &root))
        .await
        .unwrap()
        .into_inner();
    let mut ws = new_ws(name);
    for i in 0..64 {
        ws.labels.insert(format!("key-{i}"), "v".repeat(60));
    }
    (s, watch, ws)
}

#[tokio::test]
async fn a_watch_whose_client_does_not_read_is_ended_too_slow() {
    let (s, mut watch, mut ws) = slow_watch(300, "busy").await;
    let root = platform_admin();
    // The client reads nothing while the workspace changes twice the bound; then it reads
    // what was sent.
    let writes = 600;
    for i in 0..writes {
        ws.description = format!("change {i}");
        s.update_workspace(&root, ws.clone(), &["description", "labels"], "")
            .await
            .unwrap();
    }
    let mut ended = None;
    let mut received = 0;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
        match msg {
            Ok(m) => received += m.events.len(),
            Err(status) => {
                ended = Some(status);
                break;
            }
        }
    }
    let status = ended.expect("the watch was ended");
    assert_status(&status, Code::ResourceExhausted, "WATCH_TOO_SLOW");
    assert!(received < writes, "{received} of {writes}");
}

/// A client that reads steadily, but fewer events than commit, falls ever further behind:
/// it is ended too, though in no one wait of the watch did `max_lag` revisions commit.
#[tokio::test]
async fn a_watch_whose_client_reads_steadily_but_too_little_is_ended_too_slow() {
    let (s, mut watch, mut ws) = slow_watch(200, "steady").await;
    let root = platform_admin();
    // Each round commits 150 events, well under max_lag, while the client waits; then the
    // client reads until it has 100 more: it falls 50 further behind each round.
    let (mut writes, mut read) = (0, 0);
    for round in 1..=40 {
        for _ in 0..150 {
            ws.description = format!("change {writes}");
            writes += 1;
            s.update_workspace(&root, ws.clone(), &["description", "labels"], "")
                .await
                .unwrap();
        }
        while read < round * 100 {
            match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
                Ok(Some(Ok(m))) => read += m.events.len(),
                Ok(Some(Err(status))) => {
                    assert_status(&status, Code::ResourceExhausted, "WATCH_TOO_SLOW");
                    return;
                }
                other => panic!("after {writes} writes, {read} read: {other:?}"),
            }
        }
    }
    panic!("a client {} events behind was not ended", writes - read);
}

/// How long `writers_on_two_replicas_give_every_watcher_one_order_without_gaps` writes:
/// `WORKSPACED_TEST_EVENT_SECONDS`, 30 by default.
fn write_for() -> Duration {
    let secs = std::env::var("WORKSPACED_TEST_EVENT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// What a watcher saw: (revision, type, workspace) of each event, in order.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(i64, i32, String)>>>;

/// Follows every event after `after` on `s` until the revision `until` arrives (or the
/// task is aborted), recording each revision in `seen`.
async fn follow(
    s: &TestServer,
    after: i64,
    mut until: tokio::sync::watch::Receiver<i64>,
    seen: Seen,
) {
    let mut w = s
        .watch_events(
            &platform_service(),
            pb::WatchEventsRequest {
                after_revision: after,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    loop {
        let last = seen.lock().unwrap().last().map_or(after, |e| e.0);
        if last >= *until.borrow() {
            return;
        }
        tokio::select! {
            msg = w.next() => {
                let events = msg.expect("the watch goes on").expect("a message").events;
                let mut seen = seen.lock().unwrap();
                seen.extend(events.into_iter().map(|e| (e.revision, e.r#type, e.workspace)));
            }
            _ = until.changed() => {}
        }
    }
}

/// A watcher sees a change committed on another replica within a second (on SQLite, one
/// process serves the file: the same replica).
#[tokio::test]
async fn a_watcher_sees_a_change_on_another_replica_within_a_second() {
    let (a, b) = replicas().await;
    let b = second(&a, &b);
    let root = platform_admin();
    let mut watch = b
        .watch_events(&root, pb::WatchEventsRequest::default())
        .await
        .unwrap();
    for i in 0..3 {
        let name = format!("seen-{i}");
        create(&a, &root, new_ws(&name)).await;
        let seen = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                let message = watch.next().await.unwrap().unwrap();
                if message.events.iter().any(|e| e.workspace == name) {
                    return;
                }
            }
        });
        let late = seen.await.is_err();
        assert!(!late, "{name} not seen within 1 s of its acknowledgement");
    }
}

#[tokio::test]
async fn writers_on_two_replicas_give_every_watcher_one_order_without_gaps() {
    use std::sync::{Arc, Mutex};
    let (a, b) = replicas().await;
    let a = Arc::new(a);
    // On SQLite, one process owns the file: the "other replica" is the same one.
    let b = b.map_or_else(|| a.clone(), Arc::new);
    let other = || b.clone();
    let start = latest(&a).await;
    let (target, until) = tokio::sync::watch::channel(i64::MAX);
    let logs: Vec<Seen> = (0..3).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    // Two watchers for the whole run, on either replica.
    let mut watchers = Vec::new();
    for (i, on) in [a.clone(), other()].into_iter().enumerate() {
        let (until, log) = (until.clone(), logs[i].clone());
        watchers.push(tokio::spawn(
            async move { follow(&on, start, until, log).await },
        ));
    }
    // The third is killed halfway and resumed from its last revision on the other replica.
    let third = {
        let (on, until, log) = (other(), until.clone(), logs[2].clone());
        tokio::spawn(async move { follow(&on, start, until, log).await })
    };
    let run = write_for();
    let deadline = tokio::time::Instant::now() + run;
    let mut writers = Vec::new();
    for w in 0..4 {
        let on = if w % 2 == 0 { a.clone() } else { other() };
        writers.push(tokio::spawn(async move {
            let alice = token("alice");
            let mut acked = Vec::new();
            let mut n = 0;
            while tokio::time::Instant::now() < deadline {
                let name = format!("wr-{w}-{n}");
                n += 1;
                on.create_workspace(&alice, new_ws(&name)).await.unwrap();
                acked.push(name.clone());
                on.add_member(&alice, &name, "bob", pb::Role::Viewer)
                    .await
                    .unwrap();
            }
            acked
        }));
    }
    tokio::time::sleep(run / 2).await;
    third.abort();
    let _ = third.await;
    let resume_from = logs[2].lock().unwrap().last().map_or(start, |e| e.0);
    let resumed = {
        let (until, log) = (until.clone(), logs[2].clone());
        let on = a.clone();
        tokio::spawn(async move { follow(&on, resume_from, until, log).await })
    };
    watchers.push(resumed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let end = latest(&a).await;
    target.send_replace(end);
    for w in watchers {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("every watcher reached the last revision within 10 s")
            .unwrap();
    }
    // Exactly the committed events, each once, in one order, on every watcher; their times
    // never go back as revisions go up.
    let listed = events_of(&a, "", start).await;
    let time = |e: &pb::Event| e.time.map(|t| (t.seconds, t.nanos)).unwrap();
    assert!(listed.windows(2).all(|w| time(&w[0]) <= time(&w[1])));
    let expected: Vec<(i64, i32, String)> = listed
        .into_iter()
        .map(|e| (e.revision, e.r#type, e.workspace))
        .collect();
    let revisions: Vec<i64> = expected.iter().map(|e| e.0).collect();
    assert_eq!(revisions, (start + 1..=end).collect::<Vec<_>>());
    assert_eq!(
        expected.len(),
        acked.len() * 2,
        "two events per acknowledged pair"
    );
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(*log.lock().unwrap(), expected, "watcher {i}");
    }
    let created: std::collections::HashSet<&str> = expected
        .iter()
        .filter(|e| e.1 == T::WorkspaceCreated as i32)
        .map(|e| e.2.as_str())
        .collect();
    assert!(acked.iter().all(|n| created.contains(n.as_str())));
    assert!(acked.len() > 20, "only {} writes", acked.len());
}

#[tokio::test]
async fn a_members_watch_ends_when_it_loses_events_list_or_the_workspace_is_deleted() {
    let s = TestServer::spawn().await;
    let (alice, bob) = (token("alice"), token("bob"));
    create(&s, &alice, new_ws("kept")).await;
    s.add_member(&alice, "kept", "bob", pb::Role::Admin)
        .await
        .unwrap();
    let watch = |tok: String| {
        let s = &s;
        async move {
            s.watch_events(
                &tok,
                pb::WatchEventsRequest {
                    workspace: "kept".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        }
    };
    let mut bobs = watch(bob.clone()).await;
    let mut alices = watch(alice.clone()).await;
    // bob is demoted: the change that demotes him is the first he may no longer see.
    s.update_member(&alice, "kept", "bob", pb::Role::Viewer, "")
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), bobs.next())
        .await
        .unwrap()
        .expect("an answer");
    assert_status(
        &end.unwrap_err(),
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_eq!(kinds(&take(&mut alices, 1).await), [T::MemberUpdated]);
    // The workspace's deletion is its last event: alice's watch then ends.
    s.remove_member(&alice, "kept", "bob").await.unwrap();
    s.delete_workspace(&alice, "kept", "").await.unwrap();
    assert_eq!(
        kinds(&take(&mut alices, 2).await),
        [T::MemberRemoved, T::WorkspaceDeleted]
    );
    let end = tokio::time::timeout(Duration::from_secs(5), alices.next())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
}

/// A client of `s` with small HTTP/2 windows, so that what it does not read backs up soon.
fn narrow_client(
    s: &TestServer,
) -> pb::event_service_client::EventServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .connect_lazy();
    pb::event_service_client::EventServiceClient::new(channel)
}

#[tokio::test]
async fn a_follower_catching_up_from_far_behind_is_not_too_slow() {
    let s = spawn_with_events(EventSettings {
        max_lag: 50,
        ..EventSettings::default()
    })
    .await;
    let root = platform_admin();
    create(&s, &root, new_ws("far")).await;
    for i in 0..600 {
        s.add_member(&root, "far", &format!("u{i}"), pb::Role::Viewer)
            .await
            .unwrap();
    }
    let end = latest(&s).await;
    // Far more than max_lag behind, reading as fast as it can while writes go on.
    let mut watch = narrow_client(&s)
        .watch_events(req(
            pb::WatchEventsRequest {
                after_revision: 1,
                ..Default::default()
            },
            &root,
        ))
        .await
        .unwrap()
        .into_inner();
    let writer = {
        let root = root.clone();
        let channel = s.channel.clone();
        tokio::spawn(async move {
            let mut c = pb::membership_service_client::MembershipServiceClient::new(channel);
            for i in 0..30 {
                let msg = pb::AddMemberRequest {
                    workspace: "far".into(),
                    subject: format!("late-{i}"),
                    role: pb::Role::Viewer as i32,
                    ..Default::default()
                };
                c.add_member(req(msg, &root)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut last = 1;
    while last < end + 30 {
        let events = next(&mut watch).await;
        for e in events {
            assert_eq!(e.revision, last + 1);
            last = e.revision;
        }
    }
    writer.await.unwrap();
}

/// Small events fill a page of 1000 when more is asked for, and the next page holds the rest.
#[tokio::test]
async fn a_page_of_small_events_holds_at_most_1000() {
    let s = TestServer::spawn().await;
    let root = platform_admin();
    create(&s, &root, new_ws("many")).await;
    let start = latest(&s).await;
    for chunk in (0..1100).collect::<Vec<u32>>().chunks(16) {
        let registered = chunk.iter().map(|i| {
            let (s, root, id) = (&s, &root, format!("m{i}"));
            async move { s.register_resource(root, "many", "model", &id).await }
        });
        for r in futures::future::join_all(registered).await {
            r.unwrap();
        }
    }
    let ask = |page_token: String| pb::ListEventsRequest {
        after_revision: start,
        page_size: 5000,
        page_token,
        ..Default::default()
    };
    let first = s.list_events(&root, ask(String::new())).await.unwrap();
    assert_eq!(first.events.len(), 1000);
    let rest = s
        .list_events(&root, ask(first.next_page_token))
        .await
        .unwrap();
    assert_eq!(rest.events.len(), 100);
    assert!(rest.next_page_token.is_empty());
    assert_eq!(rest.events[0].revision, first.events[999].revision + 1);
}

#[tokio::test]
async fn pages_hold_100_by_default_at_most_1000_and_stop_short_of_a_large_answer() {
    let s = TestServer::spawn().await;
    let root = platform_admin();
    create(&s, &root, new_ws("big")).await;
    let start = latest(&s).await;
    // Each event carries about 9 KB of labels and description.
    let mut ws = new_ws("big");
    for i in 0..64 {
        ws.labels
            .insert(format!("key-{i:02}-{}", "k".repeat(50)), "v".repeat(63));
    }
    for i in 0..300 {
        ws.description = format!("{i} {}", "d".repeat(900));
        s.update_workspace(&root, ws.clone(), &["description", "labels"], "")
            .await
            .unwrap();
    }
    let ask = |page_size: i32, page_token: String| pb::ListEventsRequest {
        after_revision: start,
        page_size,
        page_token,
        ..Default::default()
    };
    let page = s.list_events(&root, ask(0, String::new())).await.unwrap();
    assert_eq!(page.events.len(), 100);
    // 1000 asked for: the page ends before 2 MiB of objects, and the rest follows.
    let mut page = s
        .list_events(&root, ask(5000, String::new()))
        .await
        .unwrap();
    let first = page.events.len();
    assert!((100..300).contains(&first), "{first}");
    let mut all = page.events;
    while !page.next_page_token.is_empty() {
        page = s
            .list_events(&root, ask(5000, page.next_page_token.clone()))
            .await
            .unwrap();
        all.extend(page.events.clone());
    }
    let revisions: Vec<i64> = all.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, (start + 1..=start + 300).collect::<Vec<_>>());
    // A revision this deployment never had.
    let beyond = s
        .list_events(&root, ask(0, String::new()))
        .await
        .unwrap()
        .latest_revision
        + 5;
    // The largest revision a client can name, too, with or without a workspace or types.
    for after_revision in [beyond, i64::MAX] {
        for (workspace, types) in [("", vec![]), ("default", vec![T::MemberAdded as i32])] {
            let list = pb::ListEventsRequest {
                after_revision,
                workspace: workspace.into(),
                types: types.clone(),
                ..Default::default()
            };
            let res = s.list_events(&root, list).await;
            assert_eq!(bad_fields_of(res), ["after_revision"]);
            let watch = pb::WatchEventsRequest {
                after_revision,
                workspace: workspace.into(),
                types,
            };
            let res = s.watch_events(&root, watch).await;
            assert_eq!(bad_fields_of(res), ["after_revision"]);
        }
    }
}

#[tokio::test]
async fn a_watch_ends_when_its_token_expires() {
    let s = TestServer::spawn().await;
    let short = sign(&serde_json::json!({
        "sub": "svc",
        "roles": ["platform-service"],
        "exp": now() + 2,
    }));
    let mut watch = s
        .watch_events(&short, pb::WatchEventsRequest::default())
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(6), watch.next())
        .await
        .expect("the watch ended within 6 s")
        .expect("an answer");
    assert_status(&end.unwrap_err(), Code::Unauthenticated, "TOKEN_EXPIRED");
}

/// PostgreSQL: queues `n` copies of the event at `revision` as events waiting for revisions,
/// in order, with the request ids that the SQL `request_id` makes of `n` (1 to `n`).
async fn queue_copies(s: &TestServer, revision: i64, n: u32, request_id: &str) {
    let db = sea_orm::Database::connect(&s.db.url).await.unwrap();
    db.execute_unprepared(&format!(
        "INSERT INTO pending_events (time_us, kind, workspace, workspace_id, actor, \
         request_id, method, object) SELECT time_us, kind, workspace, workspace_id, actor, \
         {request_id}, method, object FROM events, generate_series(1, {n}) AS n \
         WHERE revision = {revision} ORDER BY n"
    ))
    .await
    .unwrap();
    db.close().await.ok();
}

/// PostgreSQL: a writer that died after its commit, before its event had a revision (the
/// event waits in `pending_events`), loses nothing: a replica's sweep numbers it, and a
/// watcher that reads nothing else sees it.
#[tokio::test]
async fn an_event_a_writer_left_unnumbered_is_numbered_by_the_sweep() {
    let s = TestServer::spawn().await;
    if !s.db.is_postgres() {
        return; // SQLite numbers events in the writing transaction.
    }
    let alice = token("alice");
    create(&s, &alice, new_ws("left")).await;
    let before = latest(&s).await;
    let mut watch = s
        .watch_events(&platform_service(), pb::WatchEventsRequest::default())
        .await
        .unwrap();
    // What such a writer leaves behind: its change's event, committed but not numbered.
    queue_copies(&s, before, 1, "'left-behind'").await;
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the pending event was numbered within 5 s")
        .expect("the watch goes on")
        .unwrap()
        .events;
    assert_eq!(kinds(&seen), [T::WorkspaceCreated]);
    assert_eq!(seen[0].revision, before + 1);
    assert_eq!(seen[0].request_id, "left-behind");
    assert_eq!(latest(&s).await, before + 1);
}

/// PostgreSQL: events waiting for revisions (here 150, as a replica that lost its database
/// for a while leaves them) are numbered before a later write's, in the order they were
/// written, and a reader sees them all.
#[tokio::test]
async fn a_backlog_of_pending_events_is_numbered_before_a_later_write() {
    let s = TestServer::spawn().await;
    if !s.db.is_postgres() {
        return; // SQLite numbers events in the writing transaction.
    }
    let alice = token("alice");
    create(&s, &alice, new_ws("backlog")).await;
    let before = latest(&s).await;
    queue_copies(&s, before, 150, "'old-' || lpad(n::text, 3, '0')").await;
    s.add_member(&alice, "backlog", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    let events = events_of(&s, "backlog", before).await;
    let revisions: Vec<i64> = events.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, (before + 1..=before + 151).collect::<Vec<_>>());
    let old: Vec<String> = (1..=150).map(|n| format!("old-{n:03}")).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(
        ids[..150],
        old.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert_eq!(events[150].r#type(), T::MemberAdded);
    let time = |e: &pb::Event| e.time.map(|t| (t.seconds, t.nanos)).unwrap();
    assert!(events.windows(2).all(|w| time(&w[0]) <= time(&w[1])));
}

/// PostgreSQL: a change's event rides in the change's last statement (`store/change.rs`),
/// and is queued only once that statement has waited for its row locks, so a change that
/// committed while it waited is numbered first.
#[tokio::test]
async fn a_change_carries_its_event_and_queues_it_after_its_statements_waits() {
    let s = std::sync::Arc::new(TestServer::spawn().await);
    if !s.db.is_postgres() {
        return; // SQLite numbers every event in its writing transaction, one at a time.
    }
    let alice = token("alice");
    create(&s, &alice, new_ws("held")).await;
    s.add_member(&alice, "held", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    // Holds bob's membership: UpdateMember's last statement, its UPDATE, waits for it.
    let row = holding(
        &s.db,
        "SELECT 1 FROM memberships WHERE principal = 'bob' FOR UPDATE",
    )
    .await;
    let update = tokio::spawn({
        let (s, alice) = (s.clone(), alice.clone());
        async move {
            s.update_member(&alice, "held", "bob", pb::Role::Editor, "")
                .await
                .map(drop)
        }
    });
    waits_for_a_lock(
        &s.db,
        "WITH recorded_event AS (INSERT INTO pending_events%UPDATE \"memberships\"%",
    )
    .await;
    // A change that commits while the update waits.
    create(&s, &alice, new_ws("meanwhile")).await;
    row.rollback().await.unwrap();
    update.await.unwrap().unwrap();
    assert_numbered_first(
        &s,
        ("meanwhile", T::WorkspaceCreated),
        ("held", T::MemberUpdated),
    )
    .await;
}

/// PostgreSQL: DeleteWorkspace's cascade may wait for rows another change holds (a GPU
/// pod request's release takes no workspace lock), and a carried event would be queued
/// before the cascade's wait (PostgreSQL runs cascades after a statement's `WITH` parts):
/// the delete's event follows the change that committed while the cascade waited.
#[tokio::test]
async fn a_deletes_event_follows_the_changes_its_cascade_waited_for() {
    let s = std::sync::Arc::new(TestServer::spawn().await);
    if !s.db.is_postgres() {
        return; // SQLite numbers every event in its writing transaction, one at a time.
    }
    let alice = token("alice");
    let (row, delete) = a_delete_held_in_its_cascade(&s, &alice, "held").await;
    create(&s, &alice, new_ws("meanwhile")).await;
    row.rollback().await.unwrap();
    delete.await.unwrap().unwrap();
    assert_numbered_first(
        &s,
        ("meanwhile", T::WorkspaceCreated),
        ("held", T::WorkspaceDeleted),
    )
    .await;
}

/// CreateWorkspace queues its event in the statement that writes its rows
/// (`store/together.rs`), as the part that runs last: after the workspace's insert, which
/// waits for a delete of the same name in flight. So the event of a workspace made again
/// under a name being deleted follows the deletion's.
#[tokio::test]
async fn a_creates_event_follows_the_delete_of_its_name_that_it_waited_for() {
    let s = std::sync::Arc::new(TestServer::spawn().await);
    if !s.db.is_postgres() {
        return; // SQLite numbers every event in its writing transaction, one at a time.
    }
    // The delete has taken the name's row, and writes its event once its cascade is done.
    let (row, delete) = a_delete_held_in_its_cascade(&s, &token("alice"), "held").await;
    let again = tokio::spawn({
        let s = s.clone();
        async move { s.create_workspace(&token("bob"), new_ws("held")).await }
    });
    waits_for_a_lock(&s.db, "%INSERT INTO \"workspaces\"%").await;
    row.rollback().await.unwrap();
    delete.await.unwrap().unwrap();
    again.await.unwrap().unwrap();
    assert_eq!(
        kinds(&events_of(&s, "held", 0).await),
        [
            T::WorkspaceCreated,
            T::WorkspaceDeleted,
            T::WorkspaceCreated
        ]
    );
}

/// A create that fails writes nothing, its event included (on PostgreSQL the event is a
/// part of the statement that fails, see `store/together.rs`), and does not remember its
/// request id.
#[tokio::test]
async fn a_create_that_fails_records_no_event_and_no_request_id() {
    let s = TestServer::spawn().await;
    create(&s, &token("alice"), new_ws("taken")).await;
    let bob = token("bob");
    let err = s
        .create_workspace_with_request_id(&bob, new_ws("taken"), "r1")
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, "WORKSPACE_EXISTS");
    assert_eq!(
        kinds(&events_of(&s, "taken", 0).await),
        [T::WorkspaceCreated]
    );
    let made = s
        .create_workspace_with_request_id(&bob, new_ws("fresh"), "r1")
        .await
        .unwrap();
    assert_eq!(made.name, "fresh");
}

/// Creates `name` as `creator`'s, then deletes it while a transaction holds `creator`'s
/// membership, which the delete's cascade removes: returns that transaction (roll it back
/// to let the delete go on) and the delete, once it waits for the lock.
async fn a_delete_held_in_its_cascade(
    s: &std::sync::Arc<TestServer>,
    creator: &str,
    name: &str,
) -> (
    sea_orm::DatabaseTransaction,
    tokio::task::JoinHandle<Result<(), tonic::Status>>,
) {
    create(s, creator, new_ws(name)).await;
    let row = holding(
        &s.db,
        &format!(
            "SELECT 1 FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE w.name = '{name}' FOR UPDATE OF m"
        ),
    )
    .await;
    let delete = tokio::spawn({
        let (s, creator, name) = (s.clone(), creator.to_owned(), name.to_owned());
        async move { s.delete_workspace(&creator, &name, "").await.map(drop) }
    });
    waits_for_a_lock(&s.db, "%DELETE FROM \"workspaces\"%").await;
    (row, delete)
}

/// Asserts that the event `first` (a workspace's name and the event's type) has a lower
/// revision than `then`.
async fn assert_numbered_first(s: &TestServer, first: (&str, T), then: (&str, T)) {
    let events = events_of(s, "", 0).await;
    let revision = |(ws, kind): (&str, T)| {
        events
            .iter()
            .find(|e| e.workspace == ws && e.r#type() == kind)
            .map(|e| e.revision)
            .unwrap_or_else(|| panic!("no {kind:?} event of {ws}"))
    };
    assert!(
        revision(first) < revision(then),
        "{then:?} was numbered before {first:?}, which committed while it waited: {:?}",
        kinds(&events)
    );
}

/// A type sent many times is one filter: tens of thousands of copies fit in a request, and
/// must reach neither the database as as many parameters (SQLite allows 32,766) nor the
/// page token; a watch takes the same filter.
#[tokio::test]
async fn a_type_listed_many_times_is_one_filter() {
    use pb::EventType as T;
    let s = TestServer::spawn().await;
    let alice = token("alice");
    create(&s, &alice, new_ws("many")).await;
    for i in 0..2 {
        s.add_member(&alice, "many", &format!("u{i}"), pb::Role::Viewer)
            .await
            .unwrap();
    }
    let mut types = vec![T::MemberAdded as i32; 40_000];
    types.push(T::WorkspaceCreated as i32);
    let first = s
        .list_events(
            &alice,
            pb::ListEventsRequest {
                workspace: "many".into(),
                types: types.clone(),
                page_size: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(kinds(&first.events), [T::WorkspaceCreated, T::MemberAdded]);
    assert!(
        first.next_page_token.len() < 1_000,
        "the token holds the list"
    );
    let rest = s
        .list_events(
            &alice,
            pb::ListEventsRequest {
                workspace: "many".into(),
                types: types.clone(),
                page_size: 2,
                page_token: first.next_page_token,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(kinds(&rest.events), [T::MemberAdded]);
    let mut watch = s
        .watch_events(
            &alice,
            pb::WatchEventsRequest {
                workspace: "many".into(),
                after_revision: first.events[0].revision,
                types,
            },
        )
        .await
        .unwrap();
    let got = watch.message().await.unwrap().unwrap();
    assert_eq!(kinds(&got.events), [T::MemberAdded, T::MemberAdded]);
}
