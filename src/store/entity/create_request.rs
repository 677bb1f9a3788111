//! The `create_requests` table: `request_id`s of CreateWorkspace, for AIP-155 retries.

use sea_orm::entity::prelude::*;

/// One remembered create request.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "create_requests")]
pub struct Model {
    /// The caller's subject: request ids are scoped to their caller.
    #[sea_orm(primary_key, auto_increment = false)]
    pub subject: String,
    /// The client's request id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// The workspace the request created.
    pub workspace_id: String,
    /// When it was made.
    pub create_time: DateTimeUtc,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
