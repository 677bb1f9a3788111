//! What the database holds after the RPCs: principals remembered, default policies, cascades,
//! undecodable requests, and the register/delete race. Reads the tables directly where the
//! API does not show them yet (MembershipService and PolicyService come later).

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use tonic::{Code, codegen::http::uri::PathAndQuery};
use workspaced::pb::v1 as pb;

use crate::common::*;

async fn db(s: &TestServer) -> DatabaseConnection {
    Database::connect(&s.db.url).await.unwrap()
}

async fn count(c: &DatabaseConnection, sql: &str) -> i64 {
    count_on(c, sql).await
}

#[tokio::test]
async fn principals_are_remembered_once_with_their_latest_email() {
    let s = TestServer::spawn().await;
    let c = db(&s).await;
    let tok = sign(
        &serde_json::json!({"sub": "carol", "email": "carol@example.com", "exp": now() + 600}),
    );
    s.get_workspace(&tok, "default").await.unwrap();
    s.get_workspace(&tok, "default").await.unwrap();
    assert_eq!(
        count(&c, "SELECT count(*) FROM principals WHERE subject = 'carol' AND email = 'carol@example.com'").await,
        1
    );
    let tok = sign(
        &serde_json::json!({"sub": "carol", "email": "carol@new.example", "exp": now() + 600}),
    );
    s.get_workspace(&tok, "default").await.unwrap();
    assert_eq!(
        count(&c, "SELECT count(*) FROM principals WHERE subject = 'carol' AND email = 'carol@new.example'").await,
        1
    );
}

#[tokio::test]
async fn creation_makes_the_admin_membership_and_default_policy_and_delete_removes_them() {
    let s = TestServer::spawn().await;
    let c = db(&s).await;
    let alice = token("alice");
    let ws = create(&s, &alice, new_ws("cascade")).await;
    let member_sql = format!(
        "SELECT count(*) FROM memberships WHERE workspace_id = '{}' AND principal = 'alice' AND NOT is_group AND role = 'admin'",
        ws.id
    );
    let policy_sql = format!(
        "SELECT count(*) FROM policies WHERE workspace_id = '{}' AND priority_max = 1000000 AND max_gprs = 0",
        ws.id
    );
    assert_eq!(count(&c, &member_sql).await, 1);
    assert_eq!(count(&c, &policy_sql).await, 1);
    // Every built-in has its policy too.
    assert_eq!(
        count(&c, "SELECT count(*) FROM policies p JOIN workspaces w ON w.id = p.workspace_id WHERE w.built_in").await,
        2
    );
    s.delete_workspace(&alice, "cascade", "").await.unwrap();
    assert_eq!(
        count(
            &c,
            &member_sql.replace(
                " AND principal = 'alice' AND NOT is_group AND role = 'admin'",
                ""
            )
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &c,
            &policy_sql.replace(" AND priority_max = 1000000 AND max_gprs = 0", "")
        )
        .await,
        0
    );
}

/// A message whose field 1 is bytes, to send what a string field cannot hold.
#[derive(Clone, PartialEq, prost::Message)]
struct RawName {
    #[prost(bytes = "vec", tag = "1")]
    name: Vec<u8>,
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument_not_internal() {
    let s = TestServer::spawn().await;
    let mut grpc = tonic::client::Grpc::new(s.channel.clone());
    grpc.ready().await.unwrap();
    let err = grpc
        .unary::<RawName, pb::GetWorkspaceResponse, _>(
            req(
                RawName {
                    name: vec![0xff, 0xfe, 0x00],
                },
                &token("alice"),
            ),
            PathAndQuery::from_static("/workspaced.v1.WorkspaceService/GetWorkspace"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["request"]);
    assert_ne!(err.code(), Code::Internal);
}

#[tokio::test]
async fn register_racing_delete_never_loses_a_registration() {
    let s = TestServer::spawn().await;
    let alice = token("alice");
    for round in 0..30 {
        let name = format!("race{round}");
        create(&s, &alice, new_ws(&name)).await;
        let (reg, del) = tokio::join!(
            s.register_resource(&alice, &name, "model", "m"),
            s.delete_workspace(&alice, &name, ""),
        );
        match (&reg, &del) {
            // Registered first: the delete must have been refused, and the resource is there.
            (Ok(_), Err(e)) => {
                assert_status(e, Code::FailedPrecondition, "WORKSPACE_NOT_EMPTY");
                let ws = s.get_workspace(&alice, &name).await.unwrap();
                assert_eq!(ws.resource_counts.get("model"), Some(&1));
            }
            // Deleted first: the registration must have failed (the workspace is gone).
            (Err(e), Ok(_)) => assert_status(e, Code::PermissionDenied, "PERMISSION_DENIED"),
            other => panic!("round {round}: both or neither succeeded: {other:?}"),
        }
    }
}

/// Polls `sql` (a count) on a new connection to the server's database until it is not 0,
/// for at most 15 s (the server looks every second); panics with `what` if it stays 0.
async fn counted_within_15_s(s: &TestServer, sql: &str, what: &str) -> DatabaseConnection {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let c = db(s).await;
    while count(&c, sql).await == 0 {
        assert!(std::time::Instant::now() < deadline, "{what} in 15 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    c
}

/// PostgreSQL: `n` leases in the default workspace, on a connection to the server's
/// database, with autovacuum kept off their table, so that only the server's own VACUUM or
/// ANALYZE can act on it. They expire in a year, so that the sweeper leaves them.
async fn leases_without_autovacuum(s: &TestServer, n: u32) -> DatabaseConnection {
    let c = db(s).await;
    c.execute_unprepared("ALTER TABLE gpu_requests SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    c.execute_unprepared(&format!(
        "INSERT INTO gpu_requests (workspace_id, id, gpu_shape, gpu_count, memory_bytes, \
         priority, exit_duration_us, admitted_by, admit_time, expire_us) \
         SELECT w.id, 'pod-' || g, 'a100', 1, 0, 0, 0, 'scheduler', now(), \
         (EXTRACT(EPOCH FROM now() + interval '1 year') * 1000000)::BIGINT \
         FROM workspaces w, generate_series(1, {n}) g WHERE w.name = 'default'"
    ))
    .await
    .unwrap();
    c
}

#[tokio::test]
async fn postgres_tables_that_churn_are_vacuumed_without_waiting_for_autovacuum() {
    let Some(s) = TestServer::on_postgres().await else {
        return;
    };
    // 3,000 released leases: dead rows every scan of the table would walk past.
    let c = leases_without_autovacuum(&s, 3000).await;
    c.execute_unprepared("DELETE FROM gpu_requests")
        .await
        .unwrap();
    // A backend reports its statistics when it ends, at the latest.
    c.close().await.unwrap();
    let vacuumed = "SELECT vacuum_count FROM pg_stat_user_tables \
                    WHERE relname = 'gpu_requests' AND schemaname = current_schema()";
    let dead = "SELECT n_dead_tup FROM pg_stat_user_tables \
                WHERE relname = 'gpu_requests' AND schemaname = current_schema()";
    // Only a VACUUM statement, not autovacuum, moves `vacuum_count`.
    let c = counted_within_15_s(&s, vacuumed, "gpu_requests was not vacuumed").await;
    assert!(count(&c, dead).await < 1000);
}

#[tokio::test]
async fn postgres_tables_that_grow_are_analyzed_without_waiting_for_autovacuum() {
    let Some(s) = TestServer::on_postgres().await else {
        return;
    };
    // 3,000 leases where the statistics know of none: over the 500 changed rows and a tenth
    // of the live ones that call for an analysis.
    let c = leases_without_autovacuum(&s, 3000).await;
    // A backend reports its statistics when it ends, at the latest.
    c.close().await.unwrap();
    // Only an ANALYZE statement, not autovacuum, moves `analyze_count`.
    let analyzed = "SELECT analyze_count FROM pg_stat_user_tables \
                    WHERE relname = 'gpu_requests' AND schemaname = current_schema()";
    let c = counted_within_15_s(&s, analyzed, "gpu_requests was not analyzed").await;
    let rows = "SELECT reltuples::BIGINT FROM pg_class \
                WHERE oid = to_regclass(current_schema() || '.gpu_requests')";
    assert_eq!(
        count(&c, rows).await,
        3000,
        "the statistics count the new rows"
    );
    // From the replica's small sample: a histogram of its 3,000 distinct ids holds the
    // target's bounds and one, where PostgreSQL's default would give 101.
    let bounds = "SELECT array_length(histogram_bounds::TEXT::TEXT[], 1)::BIGINT FROM pg_stats \
                  WHERE tablename = 'gpu_requests' AND attname = 'id' \
                  AND schemaname = current_schema()";
    assert_eq!(
        count(&c, bounds).await,
        i64::from(workspaced::store::STATISTICS_TARGET) + 1,
        "the analysis used the replica's statistics target"
    );
}

#[tokio::test]
async fn postgres_a_table_another_session_holds_does_not_keep_the_others_from_analysis() {
    let Some(s) = TestServer::on_postgres().await else {
        return;
    };
    // Two tables in need of an analysis: the leases the more changed (4,000 changed rows
    // for 2,000 live), labels the less (600 for 600).
    let c = leases_without_autovacuum(&s, 3000).await;
    for sql in [
        "DELETE FROM gpu_requests WHERE id IN (SELECT id FROM gpu_requests LIMIT 1000)",
        "ALTER TABLE workspace_labels SET (autovacuum_enabled = false)",
        "INSERT INTO workspace_labels (workspace_id, key, value) SELECT w.id, 'k' || g, 'v' \
         FROM workspaces w, generate_series(1, 600) g WHERE w.name = 'default'",
    ] {
        c.execute_unprepared(sql).await.unwrap();
    }
    c.close().await.unwrap();
    // Another session holds the leases as a long vacuum would: their analysis is skipped.
    let other = db(&s).await;
    let holder = other.begin().await.unwrap();
    holder
        .execute_unprepared("LOCK TABLE gpu_requests IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();
    let labels = "SELECT analyze_count FROM pg_stat_user_tables \
                  WHERE relname = 'workspace_labels' AND schemaname = current_schema()";
    counted_within_15_s(&s, labels, "workspace_labels was not analyzed").await;
    holder.rollback().await.unwrap();
}

/// SQLite: the write-ahead log is copied into the database file in the background, well
/// before SQLite's own checkpoint (10,000 pages) would run in some writer's commit.
#[tokio::test]
async fn sqlite_copies_its_log_into_the_file_beside_the_writer() {
    let s = TestServer::spawn().await;
    let Some(dir) = &s.db.dir else {
        return; // PostgreSQL.
    };
    let name = "checkpointed-qzx";
    create(&s, &token("alice"), new_ws(name)).await;
    let file = dir.path().join("test.db");
    let start = std::time::Instant::now();
    while !std::fs::read(&file)
        .unwrap()
        .windows(name.len())
        .any(|w| w == name.as_bytes())
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(3),
            "the new workspace is still only in the log"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
