//! PostgreSQL only: the names and ids that listings are ordered by compare byte by byte
//! (`COLLATE "C"`), as SQLite's always do. They took the database's default collation, so
//! on a database created with, say, `en_US.UTF-8` a listing came in another order than
//! on SQLite or on a `C` database (`a-b` after `aa`, `B` after `a`): the contract orders
//! workspaces by name and resources by kind and id, one order whatever the database. Every
//! comparison of a page's keyset runs in the database, so pages stayed whole either way;
//! the indexes on these columns are rebuilt in the new order.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        // A workspace's name and a membership's copy of it change together: a listing
        // takes the union of both, which needs one collation.
        for sql in [
            r#"ALTER TABLE workspaces ALTER COLUMN name TYPE varchar(63) COLLATE "C""#,
            r#"ALTER TABLE memberships ALTER COLUMN workspace_name TYPE text COLLATE "C",
               ALTER COLUMN principal TYPE text COLLATE "C""#,
            r#"ALTER TABLE resources ALTER COLUMN kind TYPE varchar(63) COLLATE "C",
               ALTER COLUMN resource_id TYPE varchar(1024) COLLATE "C""#,
            r#"ALTER TABLE gpu_requests ALTER COLUMN id TYPE text COLLATE "C""#,
        ] {
            m.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
