//! Memberships carry their workspace's name (names never change), and a principal's
//! memberships are indexed in name order, so that a page of the caller's own workspaces
//! walks that index up to the page's end instead of reading and sorting all of them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let c = m.get_connection();
        // The default only fills the rows that exist; the next statement names them, and
        // every insert after this names its own.
        c.execute_unprepared(
            "ALTER TABLE memberships ADD COLUMN workspace_name TEXT NOT NULL DEFAULT ''",
        )
        .await?;
        c.execute_unprepared(
            "UPDATE memberships SET workspace_name = \
             (SELECT name FROM workspaces w WHERE w.id = memberships.workspace_id)",
        )
        .await?;
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            // An insert that does not name it (a replica from before this migration) then
            // fails instead of hiding its workspace from listings. SQLite cannot drop a
            // default without copying the table, and has no older replicas to fear.
            c.execute_unprepared(
                "ALTER TABLE memberships ALTER COLUMN workspace_name DROP DEFAULT",
            )
            .await?;
        }
        // Takes over from `memberships_principal` (a principal's workspace ids and ends,
        // for the `member` filters), with the name before the id: the same lookups, and
        // the walk in name order besides.
        c.execute_unprepared("DROP INDEX memberships_principal")
            .await?;
        c.execute_unprepared(
            "CREATE INDEX memberships_principal_name ON memberships \
             (is_group, principal, workspace_name, workspace_id, expire_us)",
        )
        .await?;
        Ok(())
    }
}
