//! Queries on principals: remembering who signed in, and finding them by email.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, OnConflict},
};

use super::entity::principal;
use crate::domain::model::now;

/// Records a principal's subject and email, keeping the first-seen time. A token without an
/// email leaves the one recorded: it says nothing of the principal's email, and members
/// are still added by the email it signed in with.
pub(crate) async fn upsert<C: ConnectionTrait>(
    c: &C,
    subject: &str,
    email: Option<&str>,
) -> Result<(), DbErr> {
    let t = now();
    let row = principal::ActiveModel {
        subject: Set(subject.to_owned()),
        email: Set(email.map(str::to_owned)),
        create_time: Set(t),
        update_time: Set(t),
    };
    principal::Entity::insert(row)
        .on_conflict(
            OnConflict::column(principal::Column::Subject)
                .value(
                    principal::Column::Email,
                    Expr::cust("COALESCE(excluded.email, principals.email)"),
                )
                // When its email was last seen: what names the subject of an email.
                .value(
                    principal::Column::UpdateTime,
                    Expr::cust(
                        "CASE WHEN excluded.email IS NULL THEN principals.update_time \
                         ELSE excluded.update_time END",
                    ),
                )
                .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    Ok(())
}

/// The subject that most recently signed in with `email`.
pub(crate) async fn subject_by_email<C: ConnectionTrait>(
    c: &C,
    email: &str,
) -> Result<Option<String>, DbErr> {
    Ok(principal::Entity::find()
        .filter(principal::Column::Email.eq(email))
        .order_by_desc(principal::Column::UpdateTime)
        .one(c)
        .await?
        .map(|p| p.subject))
}
