//! The `policies` table: one GPU scheduling policy per workspace.

use sea_orm::entity::prelude::*;

/// A workspace's policy.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "policies")]
pub struct Model {
    /// The workspace's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub workspace_id: String,
    /// Lowest allowed priority.
    pub priority_min: i32,
    /// Highest allowed priority.
    pub priority_max: i32,
    /// Most GPU pod requests; 0 is no limit.
    pub max_gprs: i32,
    /// Longest exit duration in microseconds; 0 is no limit.
    pub max_exit_duration_us: i64,
    /// Whether idle GPU pods are stopped.
    pub enforce_idle_timeout: bool,
    /// Whether failed GPU pods are requeued.
    pub requeue_on_failure: bool,
    /// Whether lower-priority GPU pods may be evicted.
    pub enable_auto_eviction: bool,
    /// Allowed GPU shapes as a JSON array; empty is any.
    pub gpu_shapes: String,
    /// Most GPUs per request; 0 is no limit.
    pub max_gpu_per_gpr: i32,
    /// Most memory per request in bytes; 0 is no limit.
    pub max_memory_per_gpr_bytes: i64,
    /// Subject of the last principal that changed it.
    pub updated_by: String,
    /// When it last changed.
    pub update_time: DateTimeUtc,
    /// Bumped on every change; the etag is derived from it.
    pub version: i64,
}

/// No relations are joined through the ORM: the store writes its joins as queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
