//! Deletes the rows whose time has ended (leases, memberships), a chunk per statement.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

/// The most rows one statement deletes: a backlog (leases that ended together, a replica
/// that was down) is deleted in statements that each stay far within `STATEMENT_TIMEOUT` on
/// PostgreSQL and hold SQLite's one writer briefly, instead of one that could be cut off at
/// every pass and never end, or stall every write meanwhile.
pub(crate) const CHUNK: u64 = 5_000;

/// Deletes the rows of `table` (one of ours, never a caller's input) whose `expire_us` is at
/// most `now_us`, found by its index, at most `CHUNK` to a statement. Rows are picked by
/// their physical id (PostgreSQL's `ctid`, SQLite's `rowid`), so that rows sharing an end
/// (members given the same `expire_time`) still come in chunks. Returns how many.
pub(crate) async fn delete_ended<C: ConnectionTrait>(
    c: &C,
    table: &str,
    now_us: i64,
) -> Result<u64, DbErr> {
    let backend = c.get_database_backend();
    let sql = match backend {
        // `= ANY(ARRAY(…))` lets PostgreSQL fetch the rows by their ids (a TID scan). Rows
        // another transaction holds are left for the next pass (`SKIP LOCKED`): the sweep
        // never waits for a lock, so it can never be one side of a deadlock with a call
        // that deletes ended rows of its own, or renews them, in another order.
        DbBackend::Postgres => format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(\
             SELECT ctid FROM {table} WHERE expire_us <= $1 LIMIT {CHUNK} \
             FOR UPDATE SKIP LOCKED))"
        ),
        _ => format!(
            "DELETE FROM {table} WHERE rowid IN (\
             SELECT rowid FROM {table} WHERE expire_us <= $1 LIMIT {CHUNK})"
        ),
    };
    let mut deleted = 0;
    loop {
        let n = c
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql.clone(),
                [now_us.into()],
            ))
            .await?
            .rows_affected();
        deleted += n;
        if n < CHUNK {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use sea_orm::Database;

    use super::*;

    #[tokio::test]
    async fn a_backlog_is_deleted_whole_in_chunks_and_the_rest_kept() {
        let mut db = Database::connect("sqlite::memory:").await.unwrap();
        let deletes = Arc::new(AtomicUsize::new(0));
        let counted = deletes.clone();
        db.set_metric_callback(move |info| {
            if info.statement.sql.starts_with("DELETE") {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
        db.execute_unprepared("CREATE TABLE t (n INTEGER, expire_us BIGINT)")
            .await
            .unwrap();
        // 12,345 ended (2.5 chunks), 7,000 of them at the same instant; 10 not yet, 10 that
        // never end.
        db.execute_unprepared(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 12365) \
             INSERT INTO t SELECT n, CASE WHEN n <= 7000 THEN 7000 WHEN n <= 12345 THEN n \
             WHEN n <= 12355 THEN n + 100000 END FROM g",
        )
        .await
        .unwrap();
        assert_eq!(delete_ended(&db, "t", 12345).await.unwrap(), 12345);
        assert_eq!(deletes.load(Ordering::Relaxed), 3);
        let left = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*), COUNT(expire_us), MIN(expire_us) FROM t",
            ))
            .await
            .unwrap()
            .unwrap();
        let got: (i64, i64, i64) = (
            left.try_get_by_index(0).unwrap(),
            left.try_get_by_index(1).unwrap(),
            left.try_get_by_index(2).unwrap(),
        );
        assert_eq!(got, (20, 10, 112346));
        assert_eq!(delete_ended(&db, "t", 12345).await.unwrap(), 0);
    }
}
