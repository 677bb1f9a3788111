//! Queries on create-request ids: which workspace a caller's CreateWorkspace with a given
//! `request_id` made, so that its retry answers the same workspace.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, QueryTrait};

use super::{Inserts, entity::create_request};

/// The workspace a caller's earlier create with this request id made.
pub(crate) async fn find<C: ConnectionTrait>(
    c: &C,
    subject: &str,
    request_id: &str,
) -> Result<Option<String>, DbErr> {
    Ok(
        create_request::Entity::find_by_id((subject.to_owned(), request_id.to_owned()))
            .one(c)
            .await?
            .map(|r| r.workspace_id),
    )
}

/// Adds to `inserts` the memory of which workspace a caller's request id created.
pub(crate) fn add_insert(
    inserts: &mut Inserts,
    subject: &str,
    request_id: &str,
    workspace_id: &str,
    at: DateTime<Utc>,
) {
    inserts.push(
        create_request::Entity::insert(create_request::ActiveModel {
            subject: Set(subject.to_owned()),
            request_id: Set(request_id.to_owned()),
            workspace_id: Set(workspace_id.to_owned()),
            create_time: Set(at),
        })
        .into_query(),
    );
}
