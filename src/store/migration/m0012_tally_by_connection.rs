//! PostgreSQL only: a change adds to the workspace count row of its connection's shard
//! (`pg_backend_pid() % 64`) instead of one of 16 drawn at random. The tally fires at commit
//! (m0011) and its row stays locked until the commit is flushed, so with CreateWorkspace one
//! statement (`store/together.rs`) most of a create's time in the database is that commit.
//! Under overload on two cores, samples of `pg_stat_activity` caught creates waiting for
//! another create's count row (`Lock:transactionid`) while its holder waited for the WAL
//! flush, and the admitted calls' p99 rose with it. A connection runs one transaction at a
//! time and always adds to the same row, so two connections wait for each other's count
//! row only when their pids fall on the same of 64 rows, which is rare for one replica's
//! 16 and leaves room for several replicas. Counts are read as the sum over every shard,
//! so the rows that the random draw left behind still count.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        m.get_connection()
            .execute_unprepared(
                "CREATE OR REPLACE FUNCTION workspace_counts_add(s TEXT, v TEXT, d BIGINT) \
                 RETURNS VOID LANGUAGE plpgsql AS $$ \
                 BEGIN \
                 INSERT INTO workspace_counts (state, visibility, shard, n) \
                 VALUES (s, v, pg_backend_pid() % 64, d) \
                 ON CONFLICT (state, visibility, shard) \
                 DO UPDATE SET n = workspace_counts.n + EXCLUDED.n; \
                 END $$",
            )
            .await?;
        Ok(())
    }
}
