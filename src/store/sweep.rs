//! Deletes the rows whose time has ended (leases, memberships), a chunk per statement.

use sea_orm::{ConnectionTrait, DbErr, Statement};

/// About how many rows one statement deletes: a backlog (leases that ended together, a
/// replica that was down) is deleted in statements that each stay far within
/// `STATEMENT_TIMEOUT` on PostgreSQL and hold SQLite's one writer briefly, instead of one
/// that could be cut off at every pass and never end, or stall every write meanwhile.
pub(crate) const CHUNK: i64 = 5_000;

/// Deletes the rows of `table` (one of ours, never a caller's input) whose `expire_us` is at
/// most `now_us`, soonest ended first, in statements of about `CHUNK` rows (more only where
/// rows share an end). Returns how many.
pub(crate) async fn delete_ended<C: ConnectionTrait>(
    c: &C,
    table: &str,
    now_us: i64,
) -> Result<u64, DbErr> {
    let backend = c.get_database_backend();
    let mut deleted = 0;
    loop {
        // The end of the chunk's last row, if a whole chunk is left.
        let upto = c
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT expire_us FROM {table} WHERE expire_us <= $1 \
                     ORDER BY expire_us LIMIT 1 OFFSET $2"
                ),
                [now_us.into(), (CHUNK - 1).into()],
            ))
            .await?
            .map(|row| row.try_get_by_index::<i64>(0))
            .transpose()?;
        deleted += c
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!("DELETE FROM {table} WHERE expire_us <= $1"),
                [upto.unwrap_or(now_us).into()],
            ))
            .await?
            .rows_affected();
        if upto.is_none() {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Database;

    use super::*;

    #[tokio::test]
    async fn a_backlog_is_deleted_whole_in_chunks_and_the_rest_kept() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared("CREATE TABLE t (n INTEGER, expire_us BIGINT)")
            .await
            .unwrap();
        // 12,345 ended (2.5 chunks), 10 not yet, 10 that never end.
        db.execute_unprepared(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 12365) \
             INSERT INTO t SELECT n, CASE WHEN n <= 12345 THEN n WHEN n <= 12355 THEN n + 100000 \
             END FROM g",
        )
        .await
        .unwrap();
        assert_eq!(delete_ended(&db, "t", 12345).await.unwrap(), 12345);
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
