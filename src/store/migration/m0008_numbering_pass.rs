//! PostgreSQL only: the numbering pass of `store::events` as one function, so that a pass is
//! one round trip (it was four: BEGIN, the counter's lock, the numbering, COMMIT) and holds
//! the counter's lock for that one statement only. Each statement of a volatile function
//! reads a snapshot of its own, so the numbering, which runs once the lock is held, sees
//! every pending event committed before it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        // Numbers the oldest `max_events` pending events, in the order they were written,
        // with times raised to the newest before them, and moves the counter; returns the
        // highest revision and how many it numbered.
        m.get_connection()
            .execute_unprepared(
                "CREATE FUNCTION number_pending_events(max_events BIGINT, \
                 OUT top_revision BIGINT, OUT numbered BIGINT) LANGUAGE plpgsql VOLATILE AS $$ \
                 BEGIN \
                 PERFORM 1 FROM event_log WHERE id = 1 FOR UPDATE; \
                 WITH counter AS (SELECT latest, latest_time_us FROM event_log WHERE id = 1), \
                 taken AS (DELETE FROM pending_events WHERE seq IN \
                 (SELECT seq FROM pending_events ORDER BY seq LIMIT max_events) \
                 RETURNING seq, time_us, kind, workspace, workspace_id, actor, request_id, \
                 method, object), \
                 ranked AS (SELECT counter.latest + row_number() OVER w AS revision, \
                 GREATEST(counter.latest_time_us, max(t.time_us) OVER w) AS time_us, t.kind, \
                 t.workspace, t.workspace_id, t.actor, t.request_id, t.method, t.object \
                 FROM taken AS t, counter WINDOW w AS (ORDER BY t.seq)), \
                 inserted AS (INSERT INTO events (revision, time_us, kind, workspace, \
                 workspace_id, actor, request_id, method, object) SELECT revision, time_us, \
                 kind, workspace, workspace_id, actor, request_id, method, object FROM ranked \
                 RETURNING revision, time_us), \
                 moved_on AS (UPDATE event_log SET \
                 latest = (SELECT max(revision) FROM inserted), \
                 latest_time_us = (SELECT max(time_us) FROM inserted) \
                 WHERE id = 1 AND EXISTS (SELECT 1 FROM inserted)) \
                 SELECT COALESCE((SELECT max(revision) FROM inserted), \
                 (SELECT latest FROM counter)), (SELECT count(*) FROM taken) \
                 INTO top_revision, numbered; \
                 END $$",
            )
            .await?;
        Ok(())
    }
}
