//! The `workspace_counts` table: how many workspaces there are by state and visibility,
//! spread over a few shards per pair and kept by triggers on `workspaces` (migration m0002).

use sea_orm::entity::prelude::*;

/// One shard of the count of one (state, visibility) pair.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workspace_counts")]
pub struct Model {
    /// The workspaces' state.
    #[sea_orm(primary_key, auto_increment = false)]
    pub state: String,
    /// The workspaces' visibility.
    #[sea_orm(primary_key, auto_increment = false)]
    pub visibility: String,
    /// Which of the pair's rows this is.
    #[sea_orm(primary_key, auto_increment = false)]
    pub shard: i32,
    /// This shard's part of the count (any one shard may be negative; the sum is not).
    pub n: i64,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
