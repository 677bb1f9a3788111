//! The `workspaces` table.

use sea_orm::entity::prelude::*;

/// A workspace row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workspaces")]
pub struct Model {
    /// Server-assigned UUID, as text so both backends store it alike.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The unique RFC 1035 name; the key of keyset pagination.
    #[sea_orm(unique)]
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// Labels as a JSON object, for reading; `workspace_labels` serves filtering.
    pub labels: String,
    /// `private`, `internal` or `public`.
    pub visibility: String,
    /// `active` or `archived`.
    pub state: String,
    /// True for `default` and `system`.
    pub built_in: bool,
    /// Subject of the creator.
    pub created_by: String,
    /// When it was created.
    pub create_time: DateTimeUtc,
    /// When it last changed.
    pub update_time: DateTimeUtc,
    /// Bumped on every change; the etag is derived from it.
    pub version: i64,
}

/// No relations are joined through the ORM: the store writes its joins as queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
