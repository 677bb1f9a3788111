//! Changes made of inserts alone, written all or none: on PostgreSQL as one statement.
//!
//! CreateWorkspace writes the workspace, its labels, its first admin, its policy, its
//! create-request id and its event, and reads nothing between them. As a transaction on
//! PostgreSQL that was five to seven round trips (BEGIN, three to five inserts, COMMIT), and
//! under load an admitted call spent most of its time between them, its backend idle in its
//! transaction while the server got round to the next statement. One statement is atomic
//! without BEGIN and COMMIT: the inserts become data-modifying `WITH` parts of the last one,
//! which PostgreSQL runs to completion whatever the statement reads, and foreign keys are
//! checked when the whole statement ends, so a row may refer to a row another part inserts.
//! SQLite has no data-modifying `WITH` parts, and its statements cost no round trip: there
//! the inserts run in a transaction.
//!
//! The order the parts run in matters for the event (see `change.rs`). PostgreSQL's manual
//! calls it unpredictable; what it does is run the statement's own insert first, then its
//! `WITH` parts from the last listed to the first (`ExecPostprocessPlan`, which shuts
//! later-initialized parts down first), and a test holds it to that. The event's part is
//! listed first, so it runs last: after the workspace's insert, which may wait for
//! a delete of the same name in flight, so the event follows the delete's
//! (`events::a_creates_event_follows_the_delete_of_its_name_that_it_waited_for`).

use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, Statement,
    sea_query::{Alias, CommonTableExpression, InsertStatement, WithClause},
};

use super::{Store, change, committing, events::NewEvent};

/// Inserts to make together ([`Store::insert_together`]), in order.
#[derive(Debug, Default)]
pub(crate) struct Inserts(Vec<InsertStatement>);

impl Inserts {
    pub(super) fn push(&mut self, insert: InsertStatement) {
        self.0.push(insert);
    }
}

impl Store {
    /// Makes every insert of `inserts` and records `event`, all or none, and tells this
    /// replica's view of the workspace `name` (which may remember that none had the name).
    pub(crate) async fn insert_together(
        &self,
        name: &str,
        inserts: Inserts,
        event: NewEvent,
    ) -> Result<(), DbErr> {
        let Inserts(mut inserts) = inserts;
        let Some(last) = inserts.pop() else {
            return Err(DbErr::Custom("nothing to insert".to_owned()));
        };
        if self.backend() != DbBackend::Postgres {
            let tx = self.begin_write().await?;
            // Carried by the first insert (`change.rs`): nothing here reads.
            tx.record(event);
            for insert in inserts.iter().chain([&last]) {
                tx.execute(insert).await?;
            }
            return self.commit_change(tx, name).await;
        }
        let stmt = one_statement(inserts, last);
        let recorded = self.record_events;
        let stmt = if recorded {
            change::carrying_pg(stmt, &event)?
        } else {
            stmt
        };
        committing::begin()?;
        self.writer.execute_raw(stmt).await?;
        self.cache.invalidate(name);
        if recorded {
            self.event_queued();
        }
        Ok(())
    }
}

/// PostgreSQL: `last` with every insert of `parts` as a `WITH` part of it, in order.
fn one_statement(parts: Vec<InsertStatement>, last: InsertStatement) -> Statement {
    if parts.is_empty() {
        return DbBackend::Postgres.build(&last);
    }
    let mut with = WithClause::new();
    for (i, insert) in parts.into_iter().enumerate() {
        with.cte(
            CommonTableExpression::new()
                .query(insert)
                .table_name(Alias::new(format!("part_{i}")))
                .to_owned(),
        );
    }
    DbBackend::Postgres.build(&last.with(with))
}

#[cfg(test)]
mod tests {
    use sea_orm::{
        Value,
        sea_query::{Alias, Query},
    };

    use super::*;

    fn insert(table: &str, v: i64) -> InsertStatement {
        Query::insert()
            .into_table(Alias::new(table))
            .columns([Alias::new("v")])
            .values_panic([Value::from(v).into()])
            .to_owned()
    }

    /// The shape `insert_together` sends: every insert but the last as a `WITH` part of
    /// the last, values numbered on across the parts.
    #[test]
    fn inserts_become_parts_of_the_last_with_their_values_numbered_on() {
        let s = one_statement(vec![insert("a", 0), insert("b", 1)], insert("c", 2));
        assert_eq!(
            s.sql,
            r#"WITH "part_0" AS (INSERT INTO "a" ("v") VALUES ($1)) , "part_1" AS (INSERT INTO "b" ("v") VALUES ($2)) INSERT INTO "c" ("v") VALUES ($3)"#
        );
        assert_eq!(s.values.unwrap().0.len(), 3);
    }
}
