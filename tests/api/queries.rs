//! Query budgets: every list RPC runs the same number of SQL statements whatever its page
//! size (no N+1), counted by `workspaced_db_statements_total`; and on SQLite the keyset page
//! query walks the name index instead of sorting the table.

use sea_orm::{ConnectionTrait, Database, DbBackend, QueryTrait, Statement};
use workspaced::{
    pb::v1 as pb,
    store::workspaces::{ListFilter, list_query},
};

use crate::{common::*, members::add};

async fn statements(s: &TestServer) -> f64 {
    let addr = s.metrics_addr.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find(|l| l.starts_with("workspaced_db_statements_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("statements counter")
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
        register(&s, &alice, &name, "model", "m").await.unwrap();
        register(&s, &alice, "q00", "dataset", &format!("d{i}"))
            .await
            .unwrap();
        add(
            &s,
            &alice,
            "q00",
            &format!("member{i:02}"),
            pb::Role::Viewer,
        )
        .await
        .unwrap();
    }
    for page_size in [1, 100] {
        let list_ws = || {
            let mut c = s.workspaces();
            let tok = alice.clone();
            async move {
                let r = c
                    .list_workspaces(req(
                        pb::ListWorkspacesRequest {
                            page_size,
                            ..Default::default()
                        },
                        &tok,
                    ))
                    .await
                    .unwrap();
                assert!(!r.into_inner().workspaces.is_empty());
            }
        };
        let list_members = || {
            let mut c = s.members();
            let tok = alice.clone();
            async move {
                c.list_members(req(
                    pb::ListMembersRequest {
                        workspace: "q00".into(),
                        page_size,
                        ..Default::default()
                    },
                    &tok,
                ))
                .await
                .unwrap();
            }
        };
        let list_resources = || {
            let mut c = s.workspaces();
            let tok = alice.clone();
            async move {
                c.list_resources(req(
                    pb::ListResourcesRequest {
                        workspace: "q00".into(),
                        page_size,
                        ..Default::default()
                    },
                    &tok,
                ))
                .await
                .unwrap();
            }
        };
        let list_policies = || {
            let mut c = s.policies();
            let tok = alice.clone();
            async move {
                c.list_policies(req(
                    pb::ListPoliciesRequest {
                        page_size,
                        page_token: String::new(),
                    },
                    &tok,
                ))
                .await
                .unwrap();
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

#[tokio::test]
async fn sqlite_keyset_pages_walk_the_name_index() {
    let s = TestServer::spawn().await;
    if s.db.is_postgres() {
        eprintln!("skipped: EXPLAIN QUERY PLAN is SQLite's");
        return;
    }
    let root = platform_admin();
    for i in 0..300 {
        create(&s, &root, new_ws(&format!("plan{i:03}"))).await;
    }
    let c = Database::connect(&s.db.url).await.unwrap();
    for filter in [
        ListFilter::default(),
        ListFilter {
            readable_by: Some("alice".into()),
            ..Default::default()
        },
    ] {
        for after in [None, Some("plan150")] {
            let stmt = list_query(&filter, after, 51).build(DbBackend::Sqlite);
            let explain = Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!("EXPLAIN QUERY PLAN {}", stmt.sql),
                stmt.values.clone().map(|v| v.0).unwrap_or_default(),
            );
            let plan: Vec<String> = c
                .query_all_raw(explain)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.try_get_by_index::<String>(3).unwrap())
                .collect();
            let text = plan.join("\n");
            assert!(
                text.contains("workspaces_name_key"),
                "the page does not use the name index:\n{text}"
            );
            assert!(
                !text.contains("TEMP B-TREE"),
                "the page sorts instead of walking the index:\n{text}"
            );
        }
    }
}
