//! SQLite only: `recorded_events`, a view whose inserts become numbered events, so that an
//! event can ride in the same call to SQLite as the statement of its change (see
//! `store/change.rs`). An insert into a view that an INSTEAD OF trigger takes counts no
//! changed rows, so the call's count of changed rows stays the change's own.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Sqlite {
            return Ok(());
        }
        let c = m.get_connection();
        c.execute_unprepared(
            "CREATE VIEW recorded_events AS SELECT time_us, kind, workspace, workspace_id, \
             actor, request_id, method, object FROM events WHERE 0",
        )
        .await?;
        // The trigger `events_latest` (m0005) moves the counter, as for any event.
        c.execute_unprepared(
            "CREATE TRIGGER recorded_events_insert INSTEAD OF INSERT ON recorded_events BEGIN \
             INSERT INTO events (revision, time_us, kind, workspace, workspace_id, actor, \
             request_id, method, object) SELECT latest + 1, NEW.time_us, NEW.kind, \
             NEW.workspace, NEW.workspace_id, NEW.actor, NEW.request_id, NEW.method, \
             NEW.object FROM event_log WHERE id = 1; END",
        )
        .await?;
        Ok(())
    }
}
