//! Listings that cost the same whatever the table's size: a count of workspaces by state and
//! visibility kept in the transactions that change them (so `total_size` reads a few rows,
//! not every match), and indexes that walk a page in name order without reading the
//! workspaces a filter leaves out.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum WorkspaceCounts {
    Table,
    State,
    Visibility,
    Shard,
    N,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Several rows per (state, visibility), summed on read: concurrent creates on
        // PostgreSQL then add to different rows instead of queueing on one row's lock.
        m.create_table(
            Table::create()
                .table(WorkspaceCounts::Table)
                .col(
                    ColumnDef::new(WorkspaceCounts::State)
                        .string_len(16)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WorkspaceCounts::Visibility)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(WorkspaceCounts::Shard).integer().not_null())
                .col(ColumnDef::new(WorkspaceCounts::N).big_integer().not_null())
                .primary_key(
                    Index::create()
                        .col(WorkspaceCounts::State)
                        .col(WorkspaceCounts::Visibility)
                        .col(WorkspaceCounts::Shard),
                )
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        // The same SQL on SQLite and PostgreSQL. The partial indexes' conditions are written
        // out literally in the queries too, which is how both planners know they apply.
        // Archived workspaces are few, so a listing of the active ones walks the name index
        // and skips them; one of the archived ones walks their own index.
        for sql in [
            "INSERT INTO workspace_counts (state, visibility, shard, n) \
             SELECT state, visibility, 0, COUNT(*) FROM workspaces GROUP BY state, visibility",
            "CREATE INDEX workspaces_shared_name ON workspaces (name) WHERE visibility <> 'private'",
            "CREATE INDEX workspaces_archived_name ON workspaces (name) WHERE state = 'archived'",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
