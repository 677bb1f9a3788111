//! The `gpu_requests` table: the GPU pod requests admitted into each workspace.

use sea_orm::entity::prelude::*;

/// One admitted GPU pod request; it counts while `expire_us` is in the future.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gpu_requests")]
pub struct Model {
    /// The workspace's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    /// The caller's id of the request.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The GPU shape.
    pub gpu_shape: String,
    /// GPUs.
    pub gpu_count: i32,
    /// Memory in bytes.
    pub memory_bytes: i64,
    /// Scheduling priority.
    pub priority: i32,
    /// Exit duration in microseconds.
    pub exit_duration_us: i64,
    /// Subject of the caller that admitted it.
    pub admitted_by: String,
    /// When it was admitted.
    pub admit_time: DateTimeUtc,
    /// End of the lease, in microseconds since the epoch.
    pub expire_us: i64,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
