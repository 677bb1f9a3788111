//! ListWorkspaces: visibility, filters, total_size, and stable keyset pages.

use std::collections::HashMap;

use tonic::Code;
use workspaced::pb::v1 as pb;

use crate::common::*;

fn list_req(page_size: i32, page_token: &str) -> pb::ListWorkspacesRequest {
    pb::ListWorkspacesRequest {
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    }
}

fn names(r: &pb::ListWorkspacesResponse) -> Vec<&str> {
    r.workspaces.iter().map(|w| w.name.as_str()).collect()
}

#[tokio::test]
async fn lists_only_what_the_caller_may_read() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let bob = token("bob");
    create(&s, &alice, new_ws("alice-private")).await;
    create(
        &s,
        &alice,
        pb::Workspace {
            name: "alice-internal".into(),
            visibility: pb::Visibility::Internal as i32,
            ..Default::default()
        },
    )
    .await;
    create(&s, &bob, new_ws("bob-private")).await;
    let r = s.list_workspaces(&bob, list_req(0, "")).await.unwrap();
    assert_eq!(
        names(&r),
        vec!["alice-internal", "bob-private", "default", "system"]
    );
    assert_eq!(r.total_size, 4);
    let r = s
        .list_workspaces(&platform_service(), list_req(0, ""))
        .await
        .unwrap();
    assert_eq!(r.total_size, 5);
}

#[tokio::test]
async fn filters_by_state_member_and_labels() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    for (name, team, env) in [
        ("a1", "ml", "prod"),
        ("a2", "ml", "dev"),
        ("a3", "web", "prod"),
    ] {
        create(
            &s,
            &alice,
            pb::Workspace {
                name: name.into(),
                labels: HashMap::from([("team".into(), team.into()), ("env".into(), env.into())]),
                ..Default::default()
            },
        )
        .await;
    }
    s.archive_workspace(&alice, "a2", "").await.unwrap();
    let by_labels = |labels: &[(&str, &str)]| pb::ListWorkspacesRequest {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let by_state = |state: i32| pb::ListWorkspacesRequest {
        state,
        ..Default::default()
    };
    let r = s
        .list_workspaces(&alice, by_labels(&[("team", "ml")]))
        .await
        .unwrap();
    assert_eq!(names(&r), vec!["a1", "a2"]);
    let r = s
        .list_workspaces(&alice, by_labels(&[("team", "ml"), ("env", "prod")]))
        .await
        .unwrap();
    assert_eq!(names(&r), vec!["a1"]);
    assert_eq!(r.total_size, 1);
    let r = s
        .list_workspaces(&alice, by_state(pb::WorkspaceState::Archived as i32))
        .await
        .unwrap();
    assert_eq!(names(&r), vec!["a2"]);
    let r = s
        .list_workspaces(&alice, by_state(pb::WorkspaceState::Active as i32))
        .await
        .unwrap();
    assert_eq!(names(&r), vec!["a1", "a3", "default", "system"]);
    // `member`: only memberships, not what visibility shows.
    let mine = pb::ListWorkspacesRequest {
        member: "alice".into(),
        ..Default::default()
    };
    let r = s.list_workspaces(&alice, mine.clone()).await.unwrap();
    assert_eq!(names(&r), vec!["a1", "a2", "a3"]);
    // Another subject's memberships need a platform role.
    let err = s
        .list_workspaces(&token("bob"), mine.clone())
        .await
        .unwrap_err();
    assert_status(&err, Code::PermissionDenied, "PERMISSION_DENIED");
    let r = s.list_workspaces(&platform_service(), mine).await.unwrap();
    assert_eq!(r.total_size, 3);
    // Bad filters are bad input.
    let err = s
        .list_workspaces(&alice, by_labels(&[("Bad", "x")]))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["labels[\"Bad\"]"]);
    let err = s.list_workspaces(&alice, by_state(9)).await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["state"]);
}

#[tokio::test]
async fn page_sizes_and_tokens_follow_aip_158() {
    let s = TestServer::spawn().await;
    let admin = platform_admin();
    for i in 0..120 {
        create(&s, &admin, new_ws(&format!("w{i:03}"))).await;
    }
    let r = s.list_workspaces(&admin, list_req(0, "")).await.unwrap();
    assert_eq!(r.workspaces.len(), 50);
    assert_eq!(r.total_size, 122);
    let r = s.list_workspaces(&admin, list_req(1000, "")).await.unwrap();
    assert_eq!(r.workspaces.len(), 100);
    let err = s
        .list_workspaces(&admin, list_req(-1, ""))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_size"]);
    let err = s
        .list_workspaces(&admin, list_req(10, "%%%"))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_token"]);
    // A token reused with other filters is refused.
    let first = s.list_workspaces(&admin, list_req(10, "")).await.unwrap();
    let mut other = list_req(10, &first.next_page_token);
    other.state = pb::WorkspaceState::Active as i32;
    let err = s.list_workspaces(&admin, other).await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_token"]);
    // The last page has no token.
    let first = s.list_workspaces(&admin, list_req(100, "")).await.unwrap();
    let last = s
        .list_workspaces(&admin, list_req(100, &first.next_page_token))
        .await
        .unwrap();
    assert_eq!(last.workspaces.len(), 22);
    assert!(last.next_page_token.is_empty());
}

#[tokio::test]
async fn walking_pages_returns_each_workspace_once_while_others_are_inserted() {
    let s = TestServer::spawn().await;
    let admin = platform_admin();
    let mut existing: Vec<String> = vec!["default".into(), "system".into()];
    for i in 0..210 {
        let name = format!("p{i:03}");
        create(&s, &admin, new_ws(&name)).await;
        existing.push(name);
    }
    existing.sort();
    // Insert new workspaces, before and after the walk's position, while walking.
    let insert = async {
        for i in 0..60 {
            let name = if i % 2 == 0 {
                format!("a-new{i:02}")
            } else {
                format!("z-new{i:02}")
            };
            create(&s, &admin, new_ws(&name)).await;
        }
    };
    let pages = async {
        let mut seen: Vec<String> = Vec::new();
        let mut token_ = String::new();
        loop {
            let page = s
                .list_workspaces(&admin, list_req(7, &token_))
                .await
                .unwrap();
            assert!(page.workspaces.len() <= 7);
            seen.extend(page.workspaces.into_iter().map(|w| w.name));
            if page.next_page_token.is_empty() {
                return seen;
            }
            token_ = page.next_page_token;
        }
    };
    let ((), seen) = tokio::join!(insert, pages);
    // In order, no duplicates, and every workspace that existed throughout is there.
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "pages out of order or with duplicates");
    for name in &existing {
        assert!(seen.contains(name), "{name} missing from the walk");
    }
}

#[tokio::test]
async fn total_size_follows_every_change_at_once() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let bob = token("bob");
    let total = |tok: String| {
        let s = &s;
        async move {
            s.list_workspaces(&tok, list_req(0, ""))
                .await
                .unwrap()
                .total_size
        }
    };
    assert_eq!(total(bob.clone()).await, 2);
    create(&s, &alice, new_ws("hidden")).await;
    // A private workspace of someone else does not count for bob; a public one does.
    assert_eq!(total(bob.clone()).await, 2);
    assert_eq!(total(alice.clone()).await, 3);
    create(
        &s,
        &alice,
        pb::Workspace {
            name: "open".into(),
            visibility: pb::Visibility::Public as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(total(bob.clone()).await, 3);
    s.add_member(&alice, "hidden", "bob", pb::Role::Viewer)
        .await
        .unwrap();
    assert_eq!(total(bob.clone()).await, 4);
    s.delete_workspace(&alice, "open", "").await.unwrap();
    assert_eq!(total(bob).await, 3);
}

/// Every name `tok` lists, walking pages of `size`; asserts each page's total_size is
/// `total`.
async fn walk(
    s: &TestServer,
    tok: &str,
    mut r: pb::ListWorkspacesRequest,
    total: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let page = s.list_workspaces(tok, r.clone()).await.unwrap();
        assert_eq!(page.total_size as usize, total, "total_size on a page");
        out.extend(page.workspaces.iter().map(|w| w.name.clone()));
        if page.next_page_token.is_empty() {
            return out;
        }
        r.page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn pages_merge_shared_and_own_workspaces_and_counts_follow_every_change() {
    let s = TestServer::spawn().await;
    let root = platform_admin();
    let alice = token("alice");
    // 40 workspaces: public, internal and private; alice is a member of every third, shared
    // ones included, so the two halves of her listing overlap.
    for i in 0..40 {
        let visibility = match i % 4 {
            0 => pb::Visibility::Public,
            1 => pb::Visibility::Internal,
            _ => pb::Visibility::Private,
        };
        let name = format!("m{i:02}");
        create(
            &s,
            &root,
            pb::Workspace {
                name: name.clone(),
                visibility: visibility as i32,
                ..Default::default()
            },
        )
        .await;
        if i % 3 == 0 {
            s.add_member(&root, &name, "alice", pb::Role::Viewer)
                .await
                .unwrap();
        }
    }
    // What alice may read, by asking GetWorkspace about every workspace there is.
    let readable = |state: Option<pb::WorkspaceState>| {
        let (s, root, alice) = (&s, root.clone(), alice.clone());
        async move {
            let all = walk(
                s,
                &root,
                list_req(100, ""),
                count_rows(s, "SELECT COUNT(*) FROM workspaces").await as usize,
            )
            .await;
            let mut out = Vec::new();
            for name in all {
                if let Ok(w) = s.get_workspace(&alice, &name).await
                    && state.is_none_or(|st| w.state == st as i32)
                {
                    out.push(name);
                }
            }
            out
        }
    };
    let check = |label: &'static str| {
        let (s, root, alice) = (&s, root.clone(), alice.clone());
        let readable = &readable;
        async move {
            for state in [
                None,
                Some(pb::WorkspaceState::Active),
                Some(pb::WorkspaceState::Archived),
            ] {
                let want = readable(state).await;
                let mut r = list_req(3, "");
                r.state = state.map_or(0, |st| st as i32);
                assert_eq!(
                    walk(s, &alice, r.clone(), want.len()).await,
                    want,
                    "{label}: alice, state {state:?}"
                );
                let sql = match state {
                    None => "SELECT COUNT(*) FROM workspaces".to_owned(),
                    Some(pb::WorkspaceState::Archived) => {
                        "SELECT COUNT(*) FROM workspaces WHERE state = 'archived'".to_owned()
                    }
                    Some(_) => "SELECT COUNT(*) FROM workspaces WHERE state = 'active'".to_owned(),
                };
                let n = count_rows(s, &sql).await as usize;
                r.page_size = 100;
                assert_eq!(
                    s.list_workspaces(&root, r).await.unwrap().total_size as usize,
                    n,
                    "{label}: root, state {state:?}"
                );
            }
        }
    };
    check("created").await;
    // Archive some (shared and own), open some private ones up, close a shared one, delete
    // some: the counts move with every change.
    for name in ["m00", "m03", "m06", "m07"] {
        s.archive_workspace(&root, name, "").await.unwrap();
    }
    for (name, v) in [
        ("m02", pb::Visibility::Public),
        ("m10", pb::Visibility::Internal),
        ("m04", pb::Visibility::Private),
    ] {
        let ws = pb::Workspace {
            name: name.into(),
            visibility: v as i32,
            ..Default::default()
        };
        s.update_workspace(&root, ws, &["visibility"], "")
            .await
            .unwrap();
    }
    s.unarchive_workspace(&root, "m03", "").await.unwrap();
    for name in ["m01", "m06", "m09", "m12"] {
        s.delete_workspace(&root, name, "").await.unwrap();
    }
    check("changed").await;
    // The counts kept in the database agree with the rows.
    assert_eq!(
        count_rows(&s, "SELECT CAST(SUM(n) AS BIGINT) FROM workspace_counts").await,
        count_rows(&s, "SELECT COUNT(*) FROM workspaces").await
    );
}

/// A caller who reaches one private workspace through several of its groups sees it once,
/// and every other workspace on some page: repeats of one workspace must not use up a
/// page's rows before they are merged away.
#[tokio::test]
async fn a_workspace_reached_through_several_groups_takes_one_place_on_a_page() {
    let s = TestServer::spawn().await;
    let root = platform_admin();
    for name in ["aaa", "aab"] {
        create(&s, &root, visible_ws(name, pb::Visibility::Private)).await;
    }
    for name in ["aac", "aad", "aae"] {
        create(&s, &root, visible_ws(name, pb::Visibility::Internal)).await;
    }
    let viewer = pb::Role::Viewer;
    add_groups(
        &s,
        &root,
        "aaa",
        &[("g1", viewer), ("g2", viewer), ("g3", viewer)],
    )
    .await;
    add_groups(&s, &root, "aab", &[("g1", viewer)]).await;
    let carol = token_with_groups("carol", &["g1", "g2", "g3"]);
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = s
            .list_workspaces(
                &carol,
                pb::ListWorkspacesRequest {
                    page_size: 2,
                    page_token,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        seen.extend(r.workspaces.into_iter().map(|w| w.name));
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    let mine: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("aa"))
        .collect();
    assert_eq!(
        mine,
        ["aaa", "aab", "aac", "aad", "aae"],
        "all pages: {seen:?}"
    );
}

/// PostgreSQL: a change adds to the workspace counts when it commits, so it holds no count
/// row while the rest of its transaction runs (concurrent creates that drew the same row
/// used to queue behind one another's whole transactions), and the counts still add up.
#[tokio::test]
async fn a_change_locks_no_workspace_count_until_it_commits() {
    use sea_orm::{ConnectionTrait, Database};
    let s = TestServer::spawn().await;
    if !s.db.is_postgres() {
        return; // SQLite has one writer at a time.
    }
    create(&s, &token("alice"), new_ws("held")).await;
    // Every count row that a change of "held" could add to exists (adding 0 changes no
    // count), so a change that took one would hold a row that others can see.
    holding(
        &s.db,
        "INSERT INTO workspace_counts (state, visibility, shard, n) \
         SELECT w.state, w.visibility, g, 0 FROM workspaces w, generate_series(0, 63) g \
         WHERE w.name = 'held' ON CONFLICT DO NOTHING",
    )
    .await
    .commit()
    .await
    .unwrap();
    let change = holding(&s.db, "DELETE FROM workspaces WHERE name = 'held'").await;
    let c = Database::connect(&s.db.url).await.unwrap();
    let locked = c
        .execute_unprepared("SELECT 1 FROM workspace_counts FOR UPDATE NOWAIT")
        .await;
    assert!(
        locked.is_ok(),
        "an uncommitted change holds a count row: {locked:?}"
    );
    change.commit().await.unwrap();
    assert_eq!(
        count_on(&c, "SELECT CAST(SUM(n) AS BIGINT) FROM workspace_counts").await,
        count_on(&c, "SELECT COUNT(*) FROM workspaces").await
    );
}

/// PostgreSQL: a connection adds to a workspace count row of its own (m0012), so changes
/// committing at once on two connections on different rows never wait for each other.
/// With a row drawn at random from 16 for each change, 40 adds spread over nearly all 16,
/// and a second connection's add found one of them locked nearly every time.
#[tokio::test]
async fn connections_add_to_workspace_count_rows_of_their_own() {
    use sea_orm::ConnectionTrait;
    let s = TestServer::spawn().await;
    if !s.db.is_postgres() {
        return; // SQLite has one writer at a time.
    }
    const ADD: &str = "SELECT workspace_counts_add('active', 'private', 1)";
    async fn shard(tx: &sea_orm::DatabaseTransaction) -> i64 {
        count_on(tx, "SELECT CAST(pg_backend_pid() % 64 AS BIGINT)").await
    }
    let first = holding(&s.db, ADD).await;
    for _ in 1..40 {
        first.execute_unprepared(ADD).await.unwrap();
    }
    let own = count_on(
        &first,
        "SELECT CAST(COALESCE((SELECT n FROM workspace_counts WHERE state = 'active' \
         AND visibility = 'private' AND shard = pg_backend_pid() % 64), 0) AS BIGINT)",
    )
    .await;
    assert!(
        own >= 40,
        "the 40 adds went to other rows than the connection's: {own}"
    );
    // Another connection, on another shard (connections kept open have distinct pids).
    let mut others = Vec::new();
    let second = loop {
        let tx = holding(&s.db, "SET LOCAL lock_timeout = '500ms'").await;
        if shard(&tx).await != shard(&first).await {
            break tx;
        }
        others.push(tx);
    };
    let added = second.execute_unprepared(ADD).await;
    assert!(
        added.is_ok(),
        "a change waited for another connection's count row: {added:?}"
    );
    second.rollback().await.unwrap();
    first.rollback().await.unwrap();
}

/// PostgreSQL: listings come in byte order, as on SQLite, also on a database whose default
/// collation orders otherwise (here ICU's `en-US` with punctuation ignored, which puts `aa`
/// before `a-b`, and `a` before `B`), page by page.
#[tokio::test]
async fn listings_are_in_byte_order_whatever_the_databases_collation() {
    use sea_orm::ConnectionTrait;
    let base = std::env::var("WORKSPACED_TEST_DATABASE_URL").unwrap_or_default();
    if !base.starts_with("postgres") {
        return; // SQLite compares bytes.
    }
    let name = TestDb::fresh_name(&base);
    let admin = sea_orm::Database::connect(&base).await.unwrap();
    let created = admin
        .execute_unprepared(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US-u-ka-shifted'"
        ))
        .await;
    if let Err(e) = created {
        eprintln!("skipped: this PostgreSQL has no ICU collation: {e}");
        return;
    }
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let db = TestDb {
        url: format!("{prefix}/{name}"),
        dir: None,
    };
    let s = TestServer::spawn_on(std::sync::Arc::new(db), Options::default()).await;
    let alice = token("alice");
    for ws in ["aa", "a-b"] {
        create(&s, &alice, new_ws(ws)).await;
    }
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .list_workspaces(&alice, list_req(1, &token))
            .await
            .unwrap();
        listed.extend(names(&page).into_iter().map(str::to_owned));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    listed.retain(|n| n.starts_with('a'));
    assert_eq!(listed, ["a-b", "aa"]);
    for id in ["a", "B"] {
        s.register_resource(&alice, "aa", "model", id)
            .await
            .unwrap();
    }
    let page = s
        .list_resources(
            &alice,
            pb::ListResourcesRequest {
                workspace: "aa".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = page
        .resources
        .iter()
        .map(|r| r.resource_id.as_str())
        .collect();
    assert_eq!(ids, ["B", "a"]);
    for subject in ["b", "B"] {
        s.add_member(&alice, "aa", subject, pb::Role::Viewer)
            .await
            .unwrap();
    }
    let page = s
        .list_members(
            &alice,
            pb::ListMembersRequest {
                workspace: "aa".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let subjects: Vec<&str> = page.members.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["B", "alice", "b"]);
}
