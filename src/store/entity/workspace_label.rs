//! The `workspace_labels` table: one row per label, so that label filters use an index.

use sea_orm::entity::prelude::*;

/// One label of one workspace.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workspace_labels")]
pub struct Model {
    /// The workspace's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    /// The label's key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// The label's value.
    pub value: String,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
