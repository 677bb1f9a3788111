//! SeaORM entities: one module per table, mirroring the migrations.

pub mod create_request;
pub mod gpu_request;
pub mod membership;
pub mod policy;
pub mod principal;
pub mod resource;
pub mod workspace;
pub mod workspace_count;
pub mod workspace_label;
