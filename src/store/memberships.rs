//! Queries on memberships, each scoped by workspace id.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};

use super::entity::{membership, principal};
use crate::domain::{
    access::Role,
    model::{Member, Workspace},
};

fn to_domain(
    workspace: &str,
    m: membership::Model,
    email: Option<String>,
) -> Result<Member, DbErr> {
    Ok(Member {
        role: Role::from_db(&m.role)
            .ok_or_else(|| DbErr::Type(format!("unexpected role in the database: {:?}", m.role)))?,
        workspace: workspace.to_owned(),
        subject: m.subject,
        email,
        added_by: m.added_by,
        create_time: m.create_time,
        update_time: m.update_time,
        version: m.version,
    })
}

/// Emails of the given subjects, in one query.
async fn emails<C: ConnectionTrait>(
    c: &C,
    subjects: &[&str],
) -> Result<std::collections::HashMap<String, String>, DbErr> {
    if subjects.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(String, Option<String>)> = principal::Entity::find()
        .select_only()
        .column(principal::Column::Subject)
        .column(principal::Column::Email)
        .filter(principal::Column::Subject.is_in(subjects.iter().copied()))
        .into_tuple()
        .all(c)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(s, e)| e.map(|e| (s, e)))
        .collect())
}

/// `subject`'s membership of `ws`.
pub(crate) async fn find<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    subject: &str,
) -> Result<Option<Member>, DbErr> {
    let Some(m) = membership::Entity::find_by_id((ws.id.clone(), subject.to_owned()))
        .one(c)
        .await?
    else {
        return Ok(None);
    };
    let mut emails = emails(c, &[subject]).await?;
    to_domain(&ws.name, m, emails.remove(subject)).map(Some)
}

/// Adds a membership.
pub(crate) async fn insert<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    subject: &str,
    role: Role,
    added_by: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    membership::Entity::insert(membership::ActiveModel {
        workspace_id: Set(ws.id.clone()),
        subject: Set(subject.to_owned()),
        role: Set(role.as_str().to_owned()),
        added_by: Set(added_by.to_owned()),
        create_time: Set(at),
        update_time: Set(at),
        version: Set(1),
    })
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// Changes a member's role, bumping its version.
pub(crate) async fn update_role<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    m: &Member,
) -> Result<(), DbErr> {
    membership::Entity::update_many()
        .col_expr(membership::Column::Role, Expr::value(m.role.as_str()))
        .col_expr(membership::Column::Version, Expr::value(m.version))
        .col_expr(membership::Column::UpdateTime, Expr::value(m.update_time))
        .filter(membership::Column::WorkspaceId.eq(&ws.id))
        .filter(membership::Column::Subject.eq(&m.subject))
        .exec(c)
        .await?;
    Ok(())
}

/// Removes a membership; returns how many rows went (0 or 1).
pub(crate) async fn delete<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    subject: &str,
) -> Result<u64, DbErr> {
    Ok(
        membership::Entity::delete_by_id((ws.id.clone(), subject.to_owned()))
            .exec(c)
            .await?
            .rows_affected,
    )
}

/// How many admins the workspace has.
pub(crate) async fn count_admins<C: ConnectionTrait>(c: &C, ws: &Workspace) -> Result<u64, DbErr> {
    super::count(
        c,
        membership::Entity::find()
            .filter(membership::Column::WorkspaceId.eq(&ws.id))
            .filter(membership::Column::Role.eq(Role::Admin.as_str())),
    )
    .await
}

/// One page of a workspace's members ordered by subject, after `after`, and the number of
/// all matches.
pub(crate) async fn list<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    role: Option<Role>,
    after: Option<&str>,
    limit: u64,
) -> Result<(Vec<Member>, u64), DbErr> {
    let mut cond = Condition::all().add(membership::Column::WorkspaceId.eq(&ws.id));
    if let Some(role) = role {
        cond = cond.add(membership::Column::Role.eq(role.as_str()));
    }
    let total = super::count(c, membership::Entity::find().filter(cond.clone())).await?;
    let mut q = membership::Entity::find().filter(cond);
    if let Some(after) = after {
        q = q.filter(membership::Column::Subject.gt(after));
    }
    let rows = q
        .order_by_asc(membership::Column::Subject)
        .limit(limit)
        .all(c)
        .await?;
    let subjects: Vec<&str> = rows.iter().map(|m| m.subject.as_str()).collect();
    let mut emails = emails(c, &subjects).await?;
    let members = rows
        .into_iter()
        .map(|m| {
            let email = emails.remove(&m.subject);
            to_domain(&ws.name, m, email)
        })
        .collect::<Result<_, _>>()?;
    Ok((members, total))
}

/// `subject`'s membership role in the workspace, if any.
pub(crate) async fn role<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    subject: &str,
) -> Result<Option<Role>, DbErr> {
    let role: Option<String> = membership::Entity::find()
        .select_only()
        .column(membership::Column::Role)
        .filter(membership::Column::WorkspaceId.eq(&ws.id))
        .filter(membership::Column::Subject.eq(subject))
        .into_tuple()
        .one(c)
        .await?;
    role.map(|r| Role::from_db(&r).ok_or_else(|| super::corrupt("role", &r)))
        .transpose()
}
