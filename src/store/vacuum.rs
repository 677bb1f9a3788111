//! PostgreSQL: vacuums the tables whose rows come and go all the time, and analyzes the
//! tables that have changed, as soon as they need it, instead of when autovacuum next visits.
//!
//! `pending_events` is a queue (an event waits there only until a numbering pass gives it
//! a revision) and `gpu_requests` loses a row at every release. A deleted row stays in the
//! table, and in its indexes, until a vacuum removes it, and every scan walks past it; the
//! check every writer makes, "is any event pending?", is such a scan. Autovacuum visits a
//! database at most once a minute (`autovacuum_naptime`), and may be off: at 1,000 writes a
//! second that check scanned 31,000 dead rows (0.5 ms, of every write, growing all the
//! time) and PostgreSQL spent 1.2 ms of CPU per CreateWorkspace. So every replica asks
//! PostgreSQL's statistics each second which of these tables hold `DEAD_ROWS` dead rows or
//! more (and a twentieth of their live rows), not vacuumed in the last `BACKOFF`, and
//! vacuums them. `SKIP_LOCKED`: a vacuum another replica runs is enough. `TRUNCATE false`:
//! a queue that empties leaves empty pages at its end, and cutting them off takes a lock
//! that every writer's check would wait for; without it a vacuum blocks no reader or
//! writer, and of a small table takes about a millisecond. `BACKOFF` bounds the vacuums
//! when an old transaction keeps the dead rows alive, so that vacuums cannot remove them.
//!
//! A table that grows needs fresh statistics as much: a replica prepares each statement once
//! per pooled connection, and PostgreSQL keeps a prepared statement's generic plan until
//! something invalidates it, such as an ANALYZE. With autovacuum off, nothing does: in a soak
//! on such a PostgreSQL, ListWorkspaces kept plans made while the tables were nearly empty,
//! and after 15 minutes (30,000 workspaces, 60,000 members) some of them ran past the 4.5 s
//! deadline; an ANALYZE of the two tables ended that at once. So each replica also analyzes a
//! table of its schema where `CHANGED_ROWS` rows and a tenth of its live rows have changed
//! since its last analysis (the form of autovacuum's rule), unless it was analyzed in the
//! last `ANALYZE_BACKOFF`, by any replica or by autovacuum. The queue (`pending_events`) is
//! left out: its rows live for milliseconds, so it always counts as changed, and its
//! statistics would catch whatever it held at that moment.
//!
//! Those analyses are sized to what our statements need: table sizes and each column's few
//! common values, from a sample of 3,000 rows (`STATISTICS_TARGET`), not PostgreSQL's
//! default of 30,000. Every statement of this service looks rows up by an index, so finer
//! histograms change no plan. Under sustained creates on a 2-core machine, the default
//! sample made each analysis of a growing table take 250 to 680 ms (four tables every
//! 11 s: PostgreSQL spent about 12% of a core on them); this one takes at most 80 ms, about
//! 1.3% (idle, at 75,000 rows: 30 ms against 230 ms for `events`). One table is analyzed
//! per pass, the most changed first, so that a pass never runs four back to back. A column
//! target set by the operator (`ALTER TABLE … SET STATISTICS`) still wins, and
//! autovacuum's own analyses use the server's default.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, RuntimeErr, Statement, TransactionTrait,
    sqlx::{
        self, Connection,
        postgres::{PgConnectOptions, PgConnection, PgPool},
    },
};

/// The tables vacuumed here; names of our own schema, never a caller's input.
pub(crate) const TABLES: [&str; 2] = ["pending_events", "gpu_requests"];

/// Dead rows past which a table is vacuumed.
pub(crate) const DEAD_ROWS: i64 = 1_000;

/// How often the statistics are read.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// The least time between two vacuums of a table, by any replica or autovacuum.
pub(crate) const BACKOFF: Duration = Duration::from_secs(2);

/// Changed rows past which a table is analyzed, with a tenth of its live rows.
pub(crate) const CHANGED_ROWS: i64 = 500;

/// The least time between two analyses of a table, by any replica or autovacuum (two
/// replicas that read the statistics at once may both run one): each analysis makes every
/// connection plan its statements on the table again.
pub(crate) const ANALYZE_BACKOFF: Duration = Duration::from_secs(10);

/// The queue, whose statistics are never worth keeping (see the module's comment).
const NOT_ANALYZED: &str = "pending_events";

/// The statistics target of the analyses run here: a sample of 300 times as many rows, and
/// as many common values and histogram bounds per column (see the module's comment).
pub const STATISTICS_TARGET: u32 = 10;

/// Analyzes the table of this schema where the most has changed since its last analysis,
/// if enough has (see the module's comment), by PostgreSQL's statistics, and this replica
/// has not tried it in the last `ANALYZE_BACKOFF` (by `tried`, this replica's attempts);
/// returns the table it tried. One that another session holds is skipped without a word
/// (`SKIP_LOCKED`), and keeps its statistics: without `tried` it would come first again at
/// every pass for as long as that session holds it (a long vacuum of a large table), and
/// no other table would be analyzed meanwhile.
pub(crate) async fn analyze_changed(
    db: &DatabaseConnection,
    tried: &mut HashMap<String, Instant>,
) -> Result<Option<String>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            // `format('%I.%I')` quotes the name as PostgreSQL would, so that it names this
            // schema's table whatever it is called.
            "SELECT format('%I.%I', schemaname, relname) AS name FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname <> $3 \
             AND n_mod_since_analyze >= $1 + n_live_tup / 10 \
             AND COALESCE(GREATEST(last_analyze, last_autoanalyze), '-infinity') \
             < now() - make_interval(secs => $2) \
             ORDER BY n_mod_since_analyze::FLOAT8 / GREATEST(n_live_tup, 1) DESC",
            [
                CHANGED_ROWS.into(),
                ANALYZE_BACKOFF.as_secs_f64().into(),
                NOT_ANALYZED.into(),
            ],
        ))
        .await?;
    let mut next = None;
    for row in rows {
        let name: String = row.try_get("", "name")?;
        if tried
            .get(&name)
            .is_none_or(|at| at.elapsed() >= ANALYZE_BACKOFF)
        {
            next = Some(name);
            break;
        }
    }
    let Some(name) = next else {
        return Ok(None);
    };
    // Bounded by the tables of the schema.
    tried.insert(name.clone(), Instant::now());
    // `SET LOCAL` ends with the transaction, so the pooled connection keeps its defaults;
    // ANALYZE, unlike VACUUM, may run inside one.
    let tx = db.begin().await?;
    tx.execute_unprepared(&format!(
        "SET LOCAL default_statistics_target = {STATISTICS_TARGET}"
    ))
    .await?;
    tx.execute_unprepared("SET LOCAL statement_timeout = 0")
        .await?;
    tx.execute_unprepared(&format!("ANALYZE (SKIP_LOCKED) {name}"))
        .await?;
    tx.commit().await?;
    Ok(Some(name))
}

/// Vacuums those of `TABLES` that need it (see the module's comment), by PostgreSQL's
/// statistics (which lag by up to a second); returns their names.
pub(crate) async fn vacuum_dead(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let names = TABLES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT relname::TEXT AS name FROM pg_stat_user_tables \
                 WHERE schemaname = current_schema() AND relname IN ({names}) \
                 AND n_dead_tup >= $1 + n_live_tup / 20 \
                 AND COALESCE(GREATEST(last_vacuum, last_autovacuum), '-infinity') \
                 < now() - make_interval(secs => $2)"
            ),
            [DEAD_ROWS.into(), BACKOFF.as_secs_f64().into()],
        ))
        .await?;
    let mut vacuumed = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get("", "name")?;
        // Only a name of `TABLES` can come back, so it is safe to put into the statement.
        if TABLES.contains(&name.as_str()) {
            vacuum(db, &name).await?;
            vacuumed.push(name);
        }
    }
    Ok(vacuumed)
}

/// The name a vacuum's connection shows in `pg_stat_activity`.
const VACUUM_NAME: &str = "workspaced-vacuum";

/// The options of a vacuum's connection: the pool's, without its `STATEMENT_TIMEOUT` (the
/// later of two startup options wins).
fn unlimited(pool: &PgPool) -> PgConnectOptions {
    PgConnectOptions::clone(&pool.connect_options())
        .options([("statement_timeout", "0")])
        .application_name(VACUUM_NAME)
}

/// Vacuums `table` on a connection of its own, without the pooled connections'
/// `STATEMENT_TIMEOUT`: a vacuum of a large table may run longer, and cut short it would
/// start over at every pass and never end. VACUUM cannot run in a transaction, where `SET
/// LOCAL` would end with it; a `SET` on a pooled connection would outlive the vacuum if the
/// task stopped between it and its `RESET`, and behind a pooler in transaction mode would
/// reach another session. A new connection costs PostgreSQL a few milliseconds, at most
/// once per table and `BACKOFF`.
async fn vacuum(db: &DatabaseConnection, table: &str) -> Result<(), DbErr> {
    let options = unlimited(db.get_postgres_connection_pool());
    let mut conn =
        tokio::time::timeout(super::ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| exec_err(sqlx::Error::PoolTimedOut))?
            .map_err(exec_err)?;
    // `table` is one of `TABLES`, checked by the caller.
    let run = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "VACUUM (SKIP_LOCKED, TRUNCATE false) {table}"
    )))
    .execute(&mut conn)
    .await;
    conn.close().await.ok();
    run.map(drop).map_err(exec_err)
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(e)))
}

#[cfg(test)]
mod tests {
    use sea_orm::Database;

    use super::*;

    async fn statement_timeout(conn: &mut PgConnection) -> String {
        sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// PostgreSQL only (`WORKSPACED_TEST_DATABASE_URL`): pooled connections stop a
    /// statement at `STATEMENT_TIMEOUT`, a vacuum's connection does not, and a vacuum runs.
    #[tokio::test]
    async fn a_vacuum_runs_without_the_statement_timeout_of_the_pool() {
        let Some(url) = std::env::var("WORKSPACED_TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        else {
            return;
        };
        let db = Database::connect(super::super::connect_options(&url))
            .await
            .unwrap();
        let pool = db.get_postgres_connection_pool();
        let mut pooled = pool.acquire().await.unwrap();
        let want = format!("{}s", super::super::STATEMENT_TIMEOUT.as_secs());
        assert_eq!(statement_timeout(&mut pooled).await, want);
        drop(pooled);
        let mut own = PgConnection::connect_with(&unlimited(pool)).await.unwrap();
        assert_eq!(statement_timeout(&mut own).await, "0");
        own.close().await.unwrap();
        let table = format!("vacuumed_{}", uuid::Uuid::new_v4().simple());
        db.execute_unprepared(&format!("CREATE TABLE {table} (n INT)"))
            .await
            .unwrap();
        let run = vacuum(&db, &table).await;
        db.execute_unprepared(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
        run.unwrap();
    }
}
