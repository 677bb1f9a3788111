//! PostgreSQL only: the workspace counts' add (m0002) in PL/pgSQL instead of SQL. PostgreSQL
//! plans a non-inlined SQL function's statement anew on every call, which cost every
//! CreateWorkspace, archive and delete about 100 µs of the database's CPU; PL/pgSQL plans its
//! statements once per connection.

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
                 VALUES (s, v, floor(random() * 16)::INT, d) \
                 ON CONFLICT (state, visibility, shard) \
                 DO UPDATE SET n = workspace_counts.n + EXCLUDED.n; \
                 END $$",
            )
            .await?;
        Ok(())
    }
}
