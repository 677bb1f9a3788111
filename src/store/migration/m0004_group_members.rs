//! Groups and expiring memberships: a membership belongs to a subject or to a group, and may
//! end at a set time. The table is rebuilt (its primary key gains the kind of member, which
//! SQLite cannot alter in place), on both databases alike.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Memberships {
    Table,
    WorkspaceId,
    IsGroup,
    Principal,
    Role,
    AddedBy,
    CreateTime,
    UpdateTime,
    Version,
    ExpireUs,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}

/// The new table's name until the old one is gone.
const NEW: &str = "memberships_v2";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let new = Alias::new(NEW);
        m.create_table(
            Table::create()
                .table(new.clone())
                .col(
                    ColumnDef::new(Memberships::WorkspaceId)
                        .string_len(36)
                        .not_null(),
                )
                // Subjects sort before groups in ListMembers, as false before true.
                .col(ColumnDef::new(Memberships::IsGroup).boolean().not_null())
                // The subject, or the group's name.
                .col(ColumnDef::new(Memberships::Principal).text().not_null())
                .col(ColumnDef::new(Memberships::Role).string_len(16).not_null())
                .col(ColumnDef::new(Memberships::AddedBy).text().not_null())
                .col(
                    ColumnDef::new(Memberships::CreateTime)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Memberships::UpdateTime)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Memberships::Version)
                        .big_integer()
                        .not_null(),
                )
                // The end in microseconds since the epoch (NULL: never), an integer so that
                // it compares the same way on both databases.
                .col(ColumnDef::new(Memberships::ExpireUs).big_integer().null())
                .primary_key(
                    Index::create()
                        .col(Memberships::WorkspaceId)
                        .col(Memberships::IsGroup)
                        .col(Memberships::Principal),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("memberships_workspace")
                        .from(new.clone(), Memberships::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO {NEW} (workspace_id, is_group, principal, role, added_by, \
                 create_time, update_time, version, expire_us) \
                 SELECT workspace_id, FALSE, subject, role, added_by, create_time, \
                 update_time, version, NULL FROM memberships"
            ))
            .await?;
        m.drop_table(Table::drop().table(Memberships::Table).to_owned())
            .await?;
        m.rename_table(Table::rename().table(new, Memberships::Table).to_owned())
            .await?;
        // A principal's workspaces: the `member` and `member_group` filters and what lists
        // show a caller; the end rides along so that the index alone answers.
        m.create_index(
            Index::create()
                .name("memberships_principal")
                .table(Memberships::Table)
                .col(Memberships::IsGroup)
                .col(Memberships::Principal)
                .col(Memberships::WorkspaceId)
                .col(Memberships::ExpireUs)
                .to_owned(),
        )
        .await?;
        // The sweep's deletion of ended memberships.
        m.create_index(
            Index::create()
                .name("memberships_expire")
                .table(Memberships::Table)
                .col(Memberships::ExpireUs)
                .to_owned(),
        )
        .await
    }
}
