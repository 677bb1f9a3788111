//! The `principals` table: every principal seen with a valid token, so members can be added
//! by email.

use sea_orm::entity::prelude::*;

/// A principal as last seen.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "principals")]
pub struct Model {
    /// The token's `sub`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub subject: String,
    /// The token's `email`, if it had one.
    pub email: Option<String>,
    /// When it was first seen.
    pub create_time: DateTimeUtc,
    /// When its email was last recorded.
    pub update_time: DateTimeUtc,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
