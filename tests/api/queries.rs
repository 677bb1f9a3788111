//! Query budgets: every list RPC runs the same number of SQL statements whatever its page
//! size (no N+1), counted by `workspaced_db_statements_total`; and on SQLite no page or
//! count query reads the whole workspaces table (EXPLAIN QUERY PLAN).

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, sea_query::SelectStatement};
use workspaced::{
    pb::v1 as pb,
    store::workspaces::{ListFilter, Reader, count_query, list_query},
};

use crate::common::*;

async fn statements(s: &TestServer) -> f64 {
    metric(s, "workspaced_db_statements_total ").await
}

/// Statements one call runs: the least of several tries, 30 ms apart, so that neither a
/// background health ping between the scrapes nor the PostgreSQL follower forgetting the
/// setup's last changes (up to 20 ms after them) can inflate it.
async fn cost<F, Fut>(s: &TestServer, call: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut best = f64::MAX;
    for _ in 0..5 {
        let before = statements(s).await;
        call().await;
        best = best.min(statements(s).await - before);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    best
}

/// A change's event rides in one of the change's own statements (`store/change.rs`): a
/// write runs as many statements with the history as without it.
#[tokio::test]
async fn an_event_costs_its_change_no_statement() {
    let mut costs = Vec::new();
    for record in [true, false] {
        let s = TestServer::spawn_with(Options {
            metrics: true,
            events: Some(workspaced::domain::events::EventSettings {
                record,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
        let alice = token("alice");
        create(&s, &alice, new_ws("w")).await;
        s.add_member(&alice, "w", "bob", pb::Role::Viewer)
            .await
            .unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        let next = || n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let update_member = cost(&s, || async {
            let role = [pb::Role::Editor, pb::Role::Viewer][next() % 2];
            s.update_member(&alice, "w", "bob", role, "").await.unwrap();
        })
        .await;
        let update_workspace = cost(&s, || async {
            let mut ws = new_ws("w");
            ws.description = format!("take {}", next());
            s.update_workspace(&alice, ws, &["description"], "")
                .await
                .unwrap();
        })
        .await;
        let create_workspace = cost(&s, || async {
            create(&s, &alice, new_ws(&format!("made-{}", next()))).await;
        })
        .await;
        costs.push((update_member, update_workspace, create_workspace));
    }
    assert_eq!(
        costs[0], costs[1],
        "statements of UpdateMember, UpdateWorkspace and CreateWorkspace with events, then without"
    );
}

/// CreateWorkspace reads nothing between its inserts, so on PostgreSQL it writes the
/// workspace, its labels, its admin, its policy and its event in one statement, atomic
/// without BEGIN and COMMIT (`store/together.rs`); on SQLite in a transaction, where a
/// statement costs no round trip.
#[tokio::test]
async fn a_create_is_one_statement_on_postgresql() {
    let s = TestServer::spawn_with(Options {
        metrics: true,
        ..Default::default()
    })
    .await;
    let alice = token("alice");
    let n = std::sync::atomic::AtomicUsize::new(0);
    let create_workspace = cost(&s, || async {
        let mut ws = new_ws(&format!(
            "made-{}",
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        ws.labels = [("team".to_owned(), "ml".to_owned())].into();
        create(&s, &alice, ws).await;
    })
    .await;
    let expected = if s.db.is_postgres() { 1.0 } else { 4.0 };
    assert_eq!(create_workspace, expected, "statements of CreateWorkspace");
}

/// BatchCheckAccess reads the workspaces its checks about one subject name in one statement
/// (`Store::find_access_many`): read from the database, 100 checks cost what 1 does. (One
/// statement a check let 64 batches at once with the view cold take past their deadline.)
#[tokio::test]
async fn a_batch_of_checks_reads_its_workspaces_in_one_statement() {
    let s = TestServer::spawn_with(Options {
        metrics: true,
        ..Default::default()
    })
    .await;
    let alice = token("alice");
    for i in 0..10 {
        create(&s, &alice, new_ws(&format!("w{i}"))).await;
    }
    let consistent = |workspace: String| pb::CheckAccessRequest {
        workspace,
        permission: "workspaces.get".into(),
        fully_consistent: true,
        ..Default::default()
    };
    let one = cost(&s, || async {
        let got = s
            .batch_check_access(&alice, vec![consistent("w0".into())])
            .await
            .unwrap();
        assert!(got[0].allowed);
    })
    .await;
    // Nine workspaces, each named ten times, and ten missing ones.
    let many = cost(&s, || async {
        let checks = (0..100)
            .map(|k| {
                consistent(if k % 10 == 9 {
                    format!("missing-{k}")
                } else {
                    format!("w{}", k % 10)
                })
            })
            .collect();
        let got = s.batch_check_access(&alice, checks).await.unwrap();
        let allowed: Vec<bool> = got.iter().map(|r| r.allowed).collect();
        let expected: Vec<bool> = (0..100).map(|k| k % 10 != 9).collect();
        assert_eq!(allowed, expected);
    })
    .await;
    assert_eq!(one, many, "statements of a batch of 1 check and of 100");
}

#[tokio::test]
async fn list_rpcs_cost_the_same_whatever_the_page_size() {
    let s = TestServer::spawn_with(Options {
        metrics: true,
        ..Default::default()
    })
    .await;
    let alice = token("alice");
    for i in 0..60 {
        let name = format!("q{i:02}");
        create(&s, &alice, new_ws(&name)).await;
        s.register_resource(&alice, &name, "model", "m")
            .await
            .unwrap();
        s.register_resource(&alice, "q00", "dataset", &format!("d{i}"))
            .await
            .unwrap();
        s.add_member(&alice, "q00", &format!("member{i:02}"), pb::Role::Viewer)
            .await
            .unwrap();
    }
    for page_size in [1, 100] {
        let list_ws = || {
            let (s, alice) = (&s, &alice);
            let msg = pb::ListWorkspacesRequest {
                page_size,
                ..Default::default()
            };
            async move {
                let r = s.list_workspaces(alice, msg).await.unwrap();
                assert!(!r.workspaces.is_empty());
            }
        };
        let list_members = || {
            let (s, alice) = (&s, &alice);
            let msg = pb::ListMembersRequest {
                workspace: "q00".into(),
                page_size,
                ..Default::default()
            };
            async move {
                s.list_members(alice, msg).await.unwrap();
            }
        };
        let list_resources = || {
            let (s, alice) = (&s, &alice);
            let msg = pb::ListResourcesRequest {
                workspace: "q00".into(),
                page_size,
                ..Default::default()
            };
            async move {
                s.list_resources(alice, msg).await.unwrap();
            }
        };
        let list_policies = || {
            let (s, alice) = (&s, &alice);
            async move {
                s.list_policies(alice, page_size, "").await.unwrap();
            }
        };
        // The budgets: a page, one query for what the page's rows carry (resource counts,
        // emails), and a count (of workspaces: from the replica's view while nothing
        // changes); on SQLite the page's own statement carries them all. The workspace and
        // the caller's role come from the view once read; policies come joined to their
        // workspaces.
        assert_eq!(
            cost(&s, list_ws).await,
            if s.db.is_postgres() { 2.0 } else { 1.0 },
            "ListWorkspaces, page size {page_size}"
        );
        assert_eq!(
            cost(&s, list_members).await,
            if s.db.is_postgres() { 3.0 } else { 1.0 },
            "ListMembers, page size {page_size}"
        );
        assert_eq!(
            cost(&s, list_resources).await,
            if s.db.is_postgres() { 2.0 } else { 1.0 },
            "ListResources, page size {page_size}"
        );
        assert_eq!(
            cost(&s, list_policies).await,
            1.0,
            "ListPolicies, page size {page_size}"
        );
    }
}

/// SQLite's plan of `stmt`, a line per step.
async fn plan(c: &sea_orm::DatabaseConnection, stmt: &SelectStatement) -> String {
    let stmt = DbBackend::Sqlite.build(stmt);
    let explain = Statement::from_sql_and_values(
        DbBackend::Sqlite,
        format!("EXPLAIN QUERY PLAN {}", stmt.sql),
        stmt.values.clone().map(|v| v.0).unwrap_or_default(),
    );
    c.query_all_raw(explain)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get_by_index::<String>(3).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn sqlite_plans_never_read_the_whole_workspaces_table() {
    let s = TestServer::spawn().await;
    if s.db.is_postgres() {
        eprintln!("skipped: EXPLAIN QUERY PLAN is SQLite's");
        return;
    }
    let root = platform_admin();
    for i in 0..300 {
        create(&s, &root, new_ws(&format!("plan{i:03}"))).await;
    }
    for name in ["plan007", "plan123"] {
        s.add_member(&root, name, "alice", pb::Role::Viewer)
            .await
            .unwrap();
    }
    let alice = || Some("alice".to_owned());
    let reader = || {
        Some(Reader {
            subject: "alice".into(),
            groups: vec!["ml".into()],
        })
    };
    let labels = || [("team".to_owned(), "ml".to_owned())].into();
    use workspaced::domain::model::WorkspaceState;
    let archived = || Some(WorkspaceState::Archived);
    let active = || Some(WorkspaceState::Active);
    let c = Database::connect(&s.db.url).await.unwrap();
    // Before and after ANALYZE: statistics must not tip a plan into reading every row.
    for analyzed in [false, true] {
        if analyzed {
            c.execute_unprepared("ANALYZE").await.unwrap();
        }
        let filters = [
            ("platform", ListFilter::default()),
            (
                "platform, archived",
                ListFilter {
                    state: archived(),
                    ..Default::default()
                },
            ),
            (
                "platform, active",
                ListFilter {
                    state: active(),
                    ..Default::default()
                },
            ),
            (
                "platform, member",
                ListFilter {
                    member: alice(),
                    ..Default::default()
                },
            ),
            (
                "platform, labels",
                ListFilter {
                    labels: labels(),
                    ..Default::default()
                },
            ),
            (
                "alice",
                ListFilter {
                    readable_by: reader(),
                    ..Default::default()
                },
            ),
            (
                "alice, archived",
                ListFilter {
                    readable_by: reader(),
                    state: archived(),
                    ..Default::default()
                },
            ),
            (
                "alice, active",
                ListFilter {
                    readable_by: reader(),
                    state: active(),
                    ..Default::default()
                },
            ),
            (
                "alice, member",
                ListFilter {
                    readable_by: reader(),
                    member: alice(),
                    ..Default::default()
                },
            ),
            (
                "alice, labels",
                ListFilter {
                    readable_by: reader(),
                    labels: labels(),
                    ..Default::default()
                },
            ),
        ];
        for (what, f) in &filters {
            for after in [None, Some("plan150")] {
                let text = plan(&c, &list_query(f, after, 51)).await;
                let ctx = format!("{what}, after {after:?}, analyzed {analyzed}:\n{text}");
                // A walk of the name index (or a shared-only or per-state index) in order
                // stops after the page; any other scan of `workspaces` reads every row.
                for line in text
                    .lines()
                    .filter(|l| l.split_whitespace().any(|w| w == "workspaces"))
                {
                    let walk = (line.starts_with("SCAN workspaces USING")
                        || line.ends_with("(name>?)"))
                        && [
                            "workspaces_name_key",
                            "workspaces_shared_name",
                            "workspaces_archived_name",
                        ]
                        .iter()
                        .any(|i| line.contains(i));
                    let by_id = line.contains("(id=?)");
                    assert!(
                        walk || by_id,
                        "the page reads workspaces it does not need: {ctx}"
                    );
                }
                match *what {
                    "platform" | "platform, active" => assert!(
                        text.contains("workspaces_name_key") && !text.contains("TEMP B-TREE"),
                        "the page does not walk the name index: {ctx}"
                    ),
                    "platform, archived" => assert!(
                        text.contains("workspaces_archived_name") && !text.contains("TEMP B-TREE"),
                        "the page does not walk the archived index: {ctx}"
                    ),
                    "alice" | "alice, active" => assert!(
                        text.contains("workspaces_shared_name")
                            && own_walk(&text, "own")
                            && text.contains("CO-ROUTINE groups"),
                        "the page does not merge shared and own workspaces: {ctx}"
                    ),
                    // Starts from the filter's own index: its matches, sorted.
                    "platform, member" | "alice, member" => assert!(
                        !text.contains("SCAN workspaces") && text.contains("memberships_principal"),
                        "the page does not start from the memberships: {ctx}"
                    ),
                    "platform, labels" | "alice, labels" => assert!(
                        !text.contains("SCAN workspaces") && text.contains("workspace_labels"),
                        "the page does not start from the labels: {ctx}"
                    ),
                    // Either archived walk reads archived or shared rows only; the general
                    // rule above holds.
                    _ => {}
                }
            }
            // total_size: counted rows or a filter's matches, never every workspace.
            let text = plan(&c, &count_query(f)).await;
            for line in text
                .lines()
                .filter(|l| l.split_whitespace().any(|w| w == "workspaces"))
            {
                assert!(
                    line.contains("(id=?)"),
                    "the count reads workspaces it does not need: {what}, analyzed {analyzed}:\n{text}"
                );
            }
        }
    }
}

/// Whether SQLite's `plan` reads the co-routine `walk` (one of a listing's walks through the
/// caller's memberships) from `memberships_principal_name` in name order, stopping at the
/// page's end: no sort inside it, which would mean reading all of them first.
fn own_walk(plan: &str, walk: &str) -> bool {
    let Some(start) = plan.find(&format!("CO-ROUTINE {walk}\n")) else {
        return false;
    };
    let body = &plan[start..];
    let body = &body[..body.find(&format!("SCAN {walk}")).unwrap_or(body.len())];
    body.contains("memberships_principal_name (is_group=? AND principal=?")
        && !body.contains("TEMP B-TREE")
        && !body.contains("SCAN memberships")
}

/// A page of a caller's workspaces reads about a page of its memberships and workspaces,
/// whether it holds one membership or 1,500, among as many workspaces it holds none in: the
/// walk stops at the page's end (SQLite: the plan; PostgreSQL: the rows its plan read, from
/// EXPLAIN ANALYZE).
#[tokio::test]
async fn a_page_reads_a_page_of_memberships_for_a_member_of_many_workspaces() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    let c = Database::connect(&s.db.url).await.unwrap();
    // 1,500 private workspaces of alice's, made as the server makes them, in one go.
    create(&s, &alice, visible_ws("many0000", pb::Visibility::Private)).await;
    let list = pb::ListWorkspacesRequest {
        page_size: 50,
        ..Default::default()
    };
    let n = if s.db.is_postgres() {
        "lpad(n::text, 4, '0')"
    } else {
        "printf('%04d', n)"
    };
    // Copies of it: alice's many1..many1499, and as many before them in name order that
    // she is no member of (a walk of every private workspace would read those). Ids keep
    // their length: a letter that is no hex digit, so no clash with the first, and the
    // number, in place of the first five characters.
    for (prefix, id) in [("many", "m"), ("else", "x")] {
        c.execute_unprepared(&format!(
            "INSERT INTO workspaces (id, name, display_name, description, labels, \
             visibility, state, built_in, created_by, create_time, update_time, version) \
             SELECT '{id}' || {n} || substr(id, 6), '{prefix}' || {n}, display_name, \
             description, labels, visibility, state, built_in, created_by, create_time, \
             update_time, version FROM workspaces, \
             (WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 1499) \
             SELECT n FROM k) AS k WHERE name = 'many0000'"
        ))
        .await
        .unwrap();
    }
    c.execute_unprepared(
        "INSERT INTO memberships (workspace_id, workspace_name, is_group, principal, role, \
         added_by, create_time, update_time, version) SELECT w.id, w.name, m.is_group, \
         m.principal, m.role, m.added_by, m.create_time, m.update_time, m.version \
         FROM workspaces w, memberships m WHERE w.name LIKE 'many%' \
         AND w.name <> 'many0000' AND m.workspace_name = 'many0000'",
    )
    .await
    .unwrap();
    let r = s.list_workspaces(&alice, list).await.unwrap();
    let names: Vec<&str> = r.workspaces.iter().map(|w| w.name.as_str()).collect();
    // The built-in `default` is everyone's; the rest, alice's own.
    let want: Vec<String> = std::iter::once("default".to_owned())
        .chain((0..49).map(|n| format!("many{n:04}")))
        .collect();
    assert_eq!(names, want, "alice's first page, in name order");
    let shared = c
        .query_one_raw(Statement::from_string(
            c.get_database_backend(),
            "SELECT count(*) AS n FROM workspaces WHERE visibility <> 'private'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(i64::from(r.total_size), shared + 1500);

    let reader = Reader {
        subject: "alice".into(),
        groups: vec!["ml".into()],
    };
    let f = ListFilter {
        readable_by: Some(reader),
        now_us: chrono::Utc::now().timestamp_micros(),
        ..Default::default()
    };
    // Statistics from the small sample of a replica's own analyses (see
    // `store::STATISTICS_TARGET`), and from PostgreSQL's default sample.
    for target in [workspaced::store::STATISTICS_TARGET, 100] {
        if s.db.is_postgres() {
            c.execute_unprepared(&format!(
                "SET default_statistics_target = {target}; ANALYZE"
            ))
            .await
            .unwrap();
        } else {
            c.execute_unprepared("ANALYZE").await.unwrap();
        }
        for after in [None, Some("many0700")] {
            let q = list_query(&f, after, 51);
            if !s.db.is_postgres() {
                let text = plan(&c, &q).await;
                assert!(own_walk(&text, "own"), "after {after:?}:\n{text}");
                continue;
            }
            let stmt = DbBackend::Postgres.build(&q);
            let explain = Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", stmt.sql),
                stmt.values.clone().map(|v| v.0).unwrap_or_default(),
            );
            let row = c.query_one_raw(explain).await.unwrap().unwrap();
            let plan: serde_json::Value = row.try_get_by_index(0).unwrap();
            // The shared walk, alice's and her group's, each up to 51 rows.
            for table in ["memberships", "workspaces"] {
                let read = rows_read(&plan, table);
                assert!(read > 0.0, "{table} is not in the plan:\n{plan:#}");
                assert!(
                    read <= 3.0 * 51.0,
                    "target {target}, after {after:?}: {read} rows of {table} read for a page of 51:\n{plan:#}"
                );
            }
        }
    }
}

/// The rows that the nodes of a PostgreSQL JSON plan scanning `table` returned, over all
/// their loops.
fn rows_read(plan: &serde_json::Value, table: &str) -> f64 {
    let mut read = 0.0;
    match plan {
        serde_json::Value::Object(node) => {
            if node.get("Relation Name").and_then(|t| t.as_str()) == Some(table) {
                let rows = node["Actual Rows"].as_f64().unwrap_or(0.0);
                let loops = node["Actual Loops"].as_f64().unwrap_or(1.0);
                read += rows * loops;
            }
            for v in node.values() {
                read += rows_read(v, table);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                read += rows_read(v, table);
            }
        }
        _ => {}
    }
    read
}
