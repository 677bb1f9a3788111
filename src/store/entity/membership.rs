//! The `memberships` table: a subject's or a group's role in a workspace.

use sea_orm::entity::prelude::*;

/// One membership.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "memberships")]
pub struct Model {
    /// The workspace's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    /// Whether `principal` names a group rather than a subject.
    #[sea_orm(primary_key, auto_increment = false)]
    pub is_group: bool,
    /// The member's subject, or its group's name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub principal: String,
    /// `viewer`, `editor` or `admin`.
    pub role: String,
    /// Subject of the principal that added it.
    pub added_by: String,
    /// When it was created.
    pub create_time: DateTimeUtc,
    /// When it last changed.
    pub update_time: DateTimeUtc,
    /// Bumped on every change; the etag is derived from it.
    pub version: i64,
    /// When it ends, in microseconds since the epoch; `None` for never.
    pub expire_us: Option<i64>,
    /// The workspace's name (names never change), for walking a principal's workspaces
    /// in name order (index `memberships_principal_name`).
    pub workspace_name: String,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
