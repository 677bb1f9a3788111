//! The first schema: workspaces, labels, principals, memberships, policies, resources and
//! create-request ids.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
    Name,
    DisplayName,
    Description,
    Labels,
    Visibility,
    State,
    BuiltIn,
    CreatedBy,
    CreateTime,
    UpdateTime,
    Version,
}

#[derive(DeriveIden)]
enum WorkspaceLabels {
    Table,
    WorkspaceId,
    Key,
    Value,
}

#[derive(DeriveIden)]
enum Principals {
    Table,
    Subject,
    Email,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    WorkspaceId,
    Subject,
    Role,
    AddedBy,
    CreateTime,
    UpdateTime,
    Version,
}

#[derive(DeriveIden)]
enum Policies {
    Table,
    WorkspaceId,
    PriorityMin,
    PriorityMax,
    MaxGprs,
    MaxExitDurationUs,
    EnforceIdleTimeout,
    RequeueOnFailure,
    EnableAutoEviction,
    GpuShapes,
    MaxGpuPerGpr,
    MaxMemoryPerGprBytes,
    UpdatedBy,
    UpdateTime,
    Version,
}

#[derive(DeriveIden)]
enum Resources {
    Table,
    WorkspaceId,
    Kind,
    ResourceId,
    RegisteredBy,
    CreateTime,
}

#[derive(DeriveIden)]
enum CreateRequests {
    Table,
    Subject,
    RequestId,
    WorkspaceId,
    CreateTime,
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().not_null().to_owned()
}

fn time(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn fk_workspace(from: impl IntoTableRef, on_delete: ForeignKeyAction) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from_tbl(from)
        .from_col(Alias::new("workspace_id"))
        .to(Workspaces::Table, Workspaces::Id)
        .on_delete(on_delete)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Workspaces::Table)
                .col(
                    ColumnDef::new(Workspaces::Id)
                        .string_len(36)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Workspaces::Name).string_len(63).not_null())
                .col(text(Workspaces::DisplayName))
                .col(text(Workspaces::Description))
                .col(text(Workspaces::Labels))
                .col(
                    ColumnDef::new(Workspaces::Visibility)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(Workspaces::State).string_len(16).not_null())
                .col(ColumnDef::new(Workspaces::BuiltIn).boolean().not_null())
                .col(text(Workspaces::CreatedBy))
                .col(time(Workspaces::CreateTime))
                .col(time(Workspaces::UpdateTime))
                .col(ColumnDef::new(Workspaces::Version).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        // Names are unique, and this index also serves keyset pagination by name.
        m.create_index(
            Index::create()
                .name("workspaces_name_key")
                .table(Workspaces::Table)
                .col(Workspaces::Name)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(WorkspaceLabels::Table)
                .col(
                    ColumnDef::new(WorkspaceLabels::WorkspaceId)
                        .string_len(36)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WorkspaceLabels::Key)
                        .string_len(63)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WorkspaceLabels::Value)
                        .string_len(63)
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(WorkspaceLabels::WorkspaceId)
                        .col(WorkspaceLabels::Key),
                )
                .foreign_key(&mut fk_workspace(
                    WorkspaceLabels::Table,
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("workspace_labels_key_value")
                .table(WorkspaceLabels::Table)
                .col(WorkspaceLabels::Key)
                .col(WorkspaceLabels::Value)
                .col(WorkspaceLabels::WorkspaceId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Principals::Table)
                .col(
                    ColumnDef::new(Principals::Subject)
                        .text()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Principals::Email).text().null())
                .col(time(Principals::CreateTime))
                .col(time(Principals::UpdateTime))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("principals_email")
                .table(Principals::Table)
                .col(Principals::Email)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Memberships::Table)
                .col(
                    ColumnDef::new(Memberships::WorkspaceId)
                        .string_len(36)
                        .not_null(),
                )
                .col(text(Memberships::Subject))
                .col(ColumnDef::new(Memberships::Role).string_len(16).not_null())
                .col(text(Memberships::AddedBy))
                .col(time(Memberships::CreateTime))
                .col(time(Memberships::UpdateTime))
                .col(
                    ColumnDef::new(Memberships::Version)
                        .big_integer()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(Memberships::WorkspaceId)
                        .col(Memberships::Subject),
                )
                .foreign_key(&mut fk_workspace(
                    Memberships::Table,
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
        // A subject's workspaces: the `member` filter and visibility checks of lists.
        m.create_index(
            Index::create()
                .name("memberships_subject")
                .table(Memberships::Table)
                .col(Memberships::Subject)
                .col(Memberships::WorkspaceId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Policies::Table)
                .col(
                    ColumnDef::new(Policies::WorkspaceId)
                        .string_len(36)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Policies::PriorityMin).integer().not_null())
                .col(ColumnDef::new(Policies::PriorityMax).integer().not_null())
                .col(ColumnDef::new(Policies::MaxGprs).integer().not_null())
                .col(
                    ColumnDef::new(Policies::MaxExitDurationUs)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Policies::EnforceIdleTimeout)
                        .boolean()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Policies::RequeueOnFailure)
                        .boolean()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Policies::EnableAutoEviction)
                        .boolean()
                        .not_null(),
                )
                .col(text(Policies::GpuShapes))
                .col(ColumnDef::new(Policies::MaxGpuPerGpr).integer().not_null())
                .col(
                    ColumnDef::new(Policies::MaxMemoryPerGprBytes)
                        .big_integer()
                        .not_null(),
                )
                .col(text(Policies::UpdatedBy))
                .col(time(Policies::UpdateTime))
                .col(ColumnDef::new(Policies::Version).big_integer().not_null())
                .foreign_key(&mut fk_workspace(
                    Policies::Table,
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Resources::Table)
                .col(
                    ColumnDef::new(Resources::WorkspaceId)
                        .string_len(36)
                        .not_null(),
                )
                .col(ColumnDef::new(Resources::Kind).string_len(63).not_null())
                .col(
                    ColumnDef::new(Resources::ResourceId)
                        .string_len(1024)
                        .not_null(),
                )
                .col(text(Resources::RegisteredBy))
                .col(time(Resources::CreateTime))
                .primary_key(
                    Index::create()
                        .col(Resources::WorkspaceId)
                        .col(Resources::Kind)
                        .col(Resources::ResourceId),
                )
                // RESTRICT: the database itself refuses to delete a workspace that still
                // holds resources, whatever a handler does.
                .foreign_key(&mut fk_workspace(
                    Resources::Table,
                    ForeignKeyAction::Restrict,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(CreateRequests::Table)
                .col(text(CreateRequests::Subject))
                .col(text(CreateRequests::RequestId))
                .col(
                    ColumnDef::new(CreateRequests::WorkspaceId)
                        .string_len(36)
                        .not_null(),
                )
                .col(time(CreateRequests::CreateTime))
                .primary_key(
                    Index::create()
                        .col(CreateRequests::Subject)
                        .col(CreateRequests::RequestId),
                )
                .foreign_key(&mut fk_workspace(
                    CreateRequests::Table,
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("create_requests_workspace")
                .table(CreateRequests::Table)
                .col(CreateRequests::WorkspaceId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
