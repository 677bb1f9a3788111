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

/// Statements one call runs (the least of three tries, so a background health ping between
/// the scrapes cannot inflate it).
async fn cost<F, Fut>(s: &TestServer, call: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut best = f64::MAX;
    for _ in 0..3 {
        let before = statements(s).await;
        call().await;
        best = best.min(statements(s).await - before);
    }
    best
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
        // changes); the workspace and the caller's role come from the view once read;
        // policies come joined to their workspaces.
        assert_eq!(
            cost(&s, list_ws).await,
            2.0,
            "ListWorkspaces, page size {page_size}"
        );
        assert_eq!(
            cost(&s, list_members).await,
            3.0,
            "ListMembers, page size {page_size}"
        );
        assert_eq!(
            cost(&s, list_resources).await,
            2.0,
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
                            && text.contains("memberships_principal"),
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
