//! A write transaction together with the event that records its change, which rides in
//! one of the change's own statements instead of costing a round trip of its own.
//!
//! An event is written in the transaction of its change (see `events.rs`). Written as a
//! statement of its own it was one round trip in about six for CreateWorkspace and
//! AddMember on PostgreSQL, and the transaction holds a pooled connection across every
//! round trip, so it cost writes 10-20% of their rate; on SQLite every statement is a
//! hand-over to sqlx's worker thread and back while the one writer's turn lasts. Here the
//! first change statement after `Change::record` carries it instead: on PostgreSQL as
//! `WITH recorded_event AS (INSERT INTO pending_events …) <statement>`, on SQLite as an
//! insert into the view `recorded_events` sent in the same call (see [`carried`]). SQLite
//! has one writer at a time, so there the event's place in the order is never in doubt.
//!
//! Why the event still follows every change its own change saw: a use case records its
//! event after every statement that reads what the change depends on, and PostgreSQL runs
//! a data-modifying `WITH` part that the statement does not read after the statement's
//! own rows are written (`ExecPostprocessPlan`), so the event is queued after every row
//! lock the statement waited for, as it was when it came last on its own. In a statement
//! with `WITH` parts of its own (`together.rs`) the event's part is listed first, and
//! PostgreSQL runs the parts from the last listed to the first, so it still runs last (the
//! manual calls the order unpredictable;
//! `events::a_creates_event_follows_the_delete_of_its_name_that_it_waited_for` holds
//! PostgreSQL to it). The test
//! `events::a_change_carries_its_event_and_queues_it_after_its_statements_waits` holds
//! PostgreSQL to that. It runs before the statement's AFTER triggers, though: foreign-key
//! cascades and checks (the workspace-count tally waits until commit, m0011). So a
//! statement whose cascade may wait for another change's rows must not carry an event
//! (DeleteWorkspace's, whose cascade may wait for a GPU pod request's release: it records
//! its event after the delete;
//! `events::a_deletes_event_follows_the_changes_its_cascade_waited_for`); the tally's
//! waits are for count rows, which no event shows. An event recorded after the
//! change's last statement is written on its own at commit.

use std::sync::Mutex;

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, Statement,
    Values,
};

use super::events::{self, NewEvent};

/// A write transaction (see `Store::begin_write`); commit it with `Store::commit` or
/// `Store::commit_change`, which also write its event if no statement carried it.
pub(crate) struct Change {
    tx: DatabaseTransaction,
    /// Whether events are written (`EventSettings::record`).
    records: bool,
    event: Mutex<Recorded>,
}

/// The transaction's event, and whether a statement has written it yet.
#[derive(Debug, Default)]
pub(crate) enum Recorded {
    /// No event (none recorded, or events are off).
    #[default]
    None,
    /// Not written yet: at commit it is.
    Waiting(Box<NewEvent>),
    /// Written by a statement: on PostgreSQL queued in `pending_events` for a numbering
    /// pass, on SQLite numbered.
    Carried,
}

impl Change {
    pub(crate) fn new(tx: DatabaseTransaction, records: bool) -> Self {
        Change {
            tx,
            records,
            event: Mutex::new(Recorded::None),
        }
    }

    /// Records the change's event: on PostgreSQL the next statement that inserts, updates
    /// or deletes writes it too. Call it after every statement whose reads the change
    /// depends on, and before a write whose foreign-key cascades wait for no other
    /// change's rows (see the module's comment); an event recorded after the last
    /// statement is written at commit, costing a round trip.
    pub(crate) fn record(&self, event: NewEvent) {
        if !self.records {
            return;
        }
        *self.slot() = Recorded::Waiting(Box::new(event));
    }

    /// The transaction, and what became of its event.
    pub(crate) fn finish(self) -> (DatabaseTransaction, Recorded) {
        let recorded = std::mem::take(&mut *self.slot());
        (self.tx, recorded)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // Nothing panics while holding it; a poisoned slot is still consistent.
        self.event.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `stmt`, carrying the waiting event when it is a change statement that can, and
    /// whether it does. The slot stays `Waiting` until the statement succeeds.
    fn carrying(&self, stmt: Statement) -> Result<(Statement, bool), DbErr> {
        if !self.records {
            return Ok((stmt, false));
        }
        let slot = self.slot();
        let Recorded::Waiting(e) = &*slot else {
            return Ok((stmt, false));
        };
        match carried(stmt, e)? {
            Ok(stmt) => Ok((stmt, true)),
            Err(stmt) => Ok((stmt, false)),
        }
    }

    /// A statement that carried the event succeeded.
    fn carried(&self, did: bool) {
        if did {
            *self.slot() = Recorded::Carried;
        }
    }
}

/// `stmt` carrying `e`, or `stmt` unchanged when it is not a plain INSERT, UPDATE or DELETE
/// (a read, or one with its own `WITH`). On PostgreSQL the event's insert into the queue
/// becomes a `WITH` part. On SQLite, which has no such parts, it goes before the statement
/// in the same call (sqlx runs each statement of a call in turn, binding the call's values
/// in order), as an insert into the view `recorded_events` (migration m0010): an insert
/// into a view counts no changed rows, so the call's count is the statement's, and a
/// caller that reads only the statement's first returned row still runs the insert.
fn carried(stmt: Statement, e: &NewEvent) -> Result<Result<Statement, Statement>, DbErr> {
    let head = stmt.sql.trim_start();
    let changes = ["INSERT", "UPDATE", "DELETE"]
        .iter()
        .any(|verb| begins(head, verb));
    if !changes {
        return Ok(Err(stmt));
    }
    match stmt.db_backend {
        DbBackend::Postgres => Ok(Ok(carrying_pg(stmt, e)?)),
        DbBackend::Sqlite => Ok(Ok(carrying_sqlite(stmt, e)?)),
        _ => Ok(Err(stmt)),
    }
}

/// SQLite: `stmt` with the insert of `e` into `recorded_events` before it in the same
/// call, the event's values first.
fn carrying_sqlite(stmt: Statement, e: &NewEvent) -> Result<Statement, DbErr> {
    let mut values = events::record_values(e)?;
    values.extend(stmt.values.map(|v| v.0).unwrap_or_default());
    Ok(Statement {
        sql: format!("{}; {}", events::RECORD_SQLITE, stmt.sql),
        values: Some(Values(values)),
        db_backend: stmt.db_backend,
    })
}

/// PostgreSQL: `stmt`, a change statement (an INSERT, UPDATE or DELETE, or one whose
/// `WITH` parts all change rows, see `together.rs`), also queueing `e` as a `WITH` part of
/// its own, listed first so that it runs last, its values bound after the statement's.
pub(super) fn carrying_pg(stmt: Statement, e: &NewEvent) -> Result<Statement, DbErr> {
    let Statement {
        sql,
        values,
        db_backend,
    } = stmt;
    let mut values = values.map(|v| v.0).unwrap_or_default();
    let part = format!(
        "recorded_event AS ({})",
        events::queue_insert(values.len() + 1)
    );
    values.extend(events::queue_values(e)?);
    let head = sql.trim_start();
    // A recursive `WITH` would need the word before every part; nothing here writes one.
    if begins(head, "WITH RECURSIVE") {
        return Err(DbErr::Custom(
            "an event cannot ride in a recursive WITH".to_owned(),
        ));
    }
    let sql = if begins(head, "WITH ") {
        format!("WITH {part}, {}", &head[5..])
    } else {
        format!("WITH {part} {head}")
    };
    Ok(Statement {
        sql,
        values: Some(Values(values)),
        db_backend,
    })
}

/// Whether `sql` begins with `word`, in any case.
fn begins(sql: &str, word: &str) -> bool {
    sql.get(..word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

#[async_trait::async_trait]
impl ConnectionTrait for Change {
    fn get_database_backend(&self) -> DbBackend {
        self.tx.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let (stmt, carries) = self.carrying(stmt)?;
        let done = self.tx.execute_raw(stmt).await?;
        self.carried(carries);
        Ok(done)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.tx.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let (stmt, carries) = self.carrying(stmt)?;
        let row = self.tx.query_one_raw(stmt).await?;
        self.carried(carries);
        Ok(row)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let (stmt, carries) = self.carrying(stmt)?;
        let rows = self.tx.query_all_raw(stmt).await?;
        self.carried(carries);
        Ok(rows)
    }

    fn support_returning(&self) -> bool {
        self.tx.support_returning()
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Value;

    use super::*;
    use crate::domain::model::{EventKind, EventObject, Resource};

    fn event() -> NewEvent {
        NewEvent {
            kind: EventKind::WorkspaceDeleted,
            workspace: "w".into(),
            workspace_id: "id".into(),
            actor: "alice".into(),
            request_id: "r".into(),
            method: "m".into(),
            object: EventObject::Resource(Resource {
                workspace: "w".into(),
                kind: "model".into(),
                resource_id: "m1".into(),
                registered_by: "alice".into(),
                create_time: chrono::Utc::now(),
            }),
        }
    }

    fn stmt(backend: DbBackend, sql: &str, values: usize) -> Statement {
        Statement::from_sql_and_values(backend, sql, (0..values).map(|i| Value::from(i as i64)))
    }

    #[test]
    fn only_a_change_statement_carries_the_event() {
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            for sql in [
                "SELECT 1",
                "WITH x AS (SELECT 1) UPDATE t SET a = 1",
                "  select 2",
            ] {
                assert!(
                    carried(stmt(backend, sql, 0), &event()).unwrap().is_err(),
                    "{sql}"
                );
            }
        }
    }

    #[test]
    fn on_postgresql_the_event_is_a_with_part_numbered_after_the_statements_values() {
        for sql in [
            "INSERT INTO t VALUES ($1, $2)",
            " update t SET a = $1",
            "DELETE FROM t",
        ] {
            let n = sql.matches('$').count();
            let s = carried(stmt(DbBackend::Postgres, sql, n), &event())
                .unwrap()
                .unwrap();
            assert!(
                s.sql
                    .starts_with("WITH recorded_event AS (INSERT INTO pending_events")
            );
            assert!(s.sql.ends_with(sql), "{}", s.sql);
            let values = s.values.unwrap().0;
            assert_eq!(
                values.len(),
                n + 7,
                "the statement's values, then the event's"
            );
            // The event's placeholders number on from the statement's.
            assert!(s.sql.contains(&format!("${}", n + 1)));
            assert!(s.sql.contains(&format!("${}", n + 7)));
            assert!(!s.sql.contains(&format!("${}", n + 8)));
            assert_eq!(values[n], Value::from("workspace_deleted"));
        }
    }

    #[test]
    fn on_postgresql_a_statement_with_parts_of_its_own_takes_the_event_as_one_more() {
        let sql = "WITH part_0 AS (INSERT INTO a VALUES ($1)) INSERT INTO b VALUES ($2)";
        let s = carrying_pg(stmt(DbBackend::Postgres, sql, 2), &event()).unwrap();
        assert!(
            s.sql
                .starts_with("WITH recorded_event AS (INSERT INTO pending_events"),
            "{}",
            s.sql
        );
        assert!(
            s.sql.ends_with(&format!(", {}", &sql[5..])),
            "one WITH, the statement's parts after the event's: {}",
            s.sql
        );
        assert_eq!(s.sql.matches("WITH").count(), 1);
        assert!(s.sql.contains("$3") && s.sql.contains("$9") && !s.sql.contains("$10"));
        assert_eq!(s.values.unwrap().0.len(), 2 + 7);
        let recursive = "WITH RECURSIVE r AS (SELECT 1) INSERT INTO b SELECT * FROM r";
        assert!(carrying_pg(stmt(DbBackend::Postgres, recursive, 0), &event()).is_err());
    }

    #[test]
    fn on_sqlite_the_event_goes_first_in_the_same_call() {
        let sql = "INSERT INTO t VALUES (?, ?)";
        let s = carried(stmt(DbBackend::Sqlite, sql, 2), &event())
            .unwrap()
            .unwrap();
        assert_eq!(s.sql, format!("{}; {sql}", events::RECORD_SQLITE));
        let values = s.values.unwrap().0;
        assert_eq!(
            values.len(),
            8 + 2,
            "the event's values, then the statement's"
        );
        assert_eq!(values[1], Value::from("workspace_deleted"));
        assert_eq!(values[8..], [Value::from(0i64), Value::from(1i64)]);
    }
}
