//! The change history: one row per committed change, and the counter that orders them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Events {
    Table,
    Revision,
    TimeUs,
    Kind,
    Workspace,
    WorkspaceId,
    Actor,
    RequestId,
    Method,
    Object,
}

#[derive(DeriveIden)]
enum EventLog {
    Table,
    Id,
    Latest,
    Pruned,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Events::Table)
                // Assigned from `event_log.latest`, not by the database: see `store::events`.
                .col(
                    ColumnDef::new(Events::Revision)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                // Microseconds since the epoch, like the other times that are compared.
                .col(ColumnDef::new(Events::TimeUs).big_integer().not_null())
                .col(ColumnDef::new(Events::Kind).text().not_null())
                // No foreign key: a workspace's history outlives it.
                .col(ColumnDef::new(Events::Workspace).text().not_null())
                .col(
                    ColumnDef::new(Events::WorkspaceId)
                        .string_len(36)
                        .not_null(),
                )
                .col(ColumnDef::new(Events::Actor).text().not_null())
                .col(ColumnDef::new(Events::RequestId).text().not_null())
                .col(ColumnDef::new(Events::Method).text().not_null())
                // The object as JSON (`domain::model::EventObject`).
                .col(ColumnDef::new(Events::Object).text().not_null())
                .to_owned(),
        )
        .await?;
        // One workspace's events in revision order.
        m.create_index(
            Index::create()
                .name("events_by_workspace")
                .table(Events::Table)
                .col(Events::Workspace)
                .col(Events::Revision)
                .to_owned(),
        )
        .await?;
        // One row: the highest revision handed out (committed, since it is handed out under
        // the row's lock in the committing transaction) and the highest pruned.
        m.create_table(
            Table::create()
                .table(EventLog::Table)
                .col(
                    ColumnDef::new(EventLog::Id)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(EventLog::Latest).big_integer().not_null())
                .col(ColumnDef::new(EventLog::Pruned).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        // SQLite: an event's insert moves the counter (PostgreSQL's insert does it in the same
        // statement, under the row's lock; see `store::events::append`).
        if m.get_database_backend() == sea_orm::DbBackend::Sqlite {
            m.get_connection()
                .execute_unprepared(
                    "CREATE TRIGGER events_latest AFTER INSERT ON events BEGIN \
                     UPDATE event_log SET latest = NEW.revision WHERE id = 1; END",
                )
                .await?;
        }
        m.exec_stmt(
            Query::insert()
                .into_table(EventLog::Table)
                .columns([EventLog::Id, EventLog::Latest, EventLog::Pruned])
                .values([1.into(), 0i64.into(), 0i64.into()])
                .map_err(|e| DbErr::Migration(e.to_string()))?
                .to_owned(),
        )
        .await
    }
}
