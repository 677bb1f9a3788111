//! The `resources` table: what other services keep in each workspace.

use sea_orm::entity::prelude::*;

/// One registered resource.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "resources")]
pub struct Model {
    /// The workspace's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    /// The resource's kind, such as `model`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// The owning service's id of the resource.
    #[sea_orm(primary_key, auto_increment = false)]
    pub resource_id: String,
    /// Subject of the principal that registered it.
    pub registered_by: String,
    /// When it was registered.
    pub create_time: DateTimeUtc,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
