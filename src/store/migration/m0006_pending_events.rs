//! PostgreSQL only: events committed with their change but not yet given a revision, and the
//! time of the newest numbered event (see `store::events`). SQLite, whose one writer commits
//! alone, numbers events as it writes them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        // `seq` orders the events of one pass; it may have holes (rollbacks) and is never
        // shown. The other columns are those of `events`.
        m.get_connection()
            .execute_unprepared(
                "CREATE TABLE pending_events (\
                 seq BIGSERIAL PRIMARY KEY, \
                 time_us BIGINT NOT NULL, \
                 kind TEXT NOT NULL, \
                 workspace TEXT NOT NULL, \
                 workspace_id VARCHAR(36) NOT NULL, \
                 actor TEXT NOT NULL, \
                 request_id TEXT NOT NULL, \
                 method TEXT NOT NULL, \
                 object TEXT NOT NULL)",
            )
            .await?;
        // Kept with `latest`, under its lock, so that the next event's time is not earlier.
        m.get_connection()
            .execute_unprepared(
                "ALTER TABLE event_log ADD COLUMN latest_time_us BIGINT NOT NULL DEFAULT 0",
            )
            .await?;
        m.get_connection()
            .execute_unprepared(
                "UPDATE event_log SET latest_time_us = \
                 COALESCE((SELECT max(time_us) FROM events), 0)",
            )
            .await?;
        Ok(())
    }
}
