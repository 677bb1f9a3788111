//! GPU admission: the GPU pod requests admitted into each workspace, with their leases.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum GpuRequests {
    Table,
    WorkspaceId,
    Id,
    GpuShape,
    GpuCount,
    MemoryBytes,
    Priority,
    ExitDurationUs,
    AdmittedBy,
    AdmitTime,
    ExpireUs,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(GpuRequests::Table)
                .col(
                    ColumnDef::new(GpuRequests::WorkspaceId)
                        .string_len(36)
                        .not_null(),
                )
                .col(ColumnDef::new(GpuRequests::Id).text().not_null())
                .col(ColumnDef::new(GpuRequests::GpuShape).text().not_null())
                .col(ColumnDef::new(GpuRequests::GpuCount).integer().not_null())
                .col(
                    ColumnDef::new(GpuRequests::MemoryBytes)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(GpuRequests::Priority).integer().not_null())
                .col(
                    ColumnDef::new(GpuRequests::ExitDurationUs)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(GpuRequests::AdmittedBy).text().not_null())
                .col(
                    ColumnDef::new(GpuRequests::AdmitTime)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                // The lease's end in microseconds since the epoch: an integer compares the
                // same way on both databases (SQLite keeps timestamps as text).
                .col(
                    ColumnDef::new(GpuRequests::ExpireUs)
                        .big_integer()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(GpuRequests::WorkspaceId)
                        .col(GpuRequests::Id),
                )
                // A deleted workspace takes its expired requests with it; DeleteWorkspace
                // refuses while any is active.
                .foreign_key(
                    ForeignKey::create()
                        .from(GpuRequests::Table, GpuRequests::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // Usage and admission read a workspace's unexpired requests; the sweep reads the
        // expired ones of every workspace.
        m.create_index(
            Index::create()
                .name("gpu_requests_by_expiry")
                .table(GpuRequests::Table)
                .col(GpuRequests::WorkspaceId)
                .col(GpuRequests::ExpireUs)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("gpu_requests_expired")
                .table(GpuRequests::Table)
                .col(GpuRequests::ExpireUs)
                .to_owned(),
        )
        .await
    }
}
