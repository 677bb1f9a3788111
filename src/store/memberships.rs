//! Queries on memberships of subjects and groups, each scoped by workspace id. A membership
//! past its `expire_us` is absent to every query here but `delete_expired`, and `add`, which
//! replaces it.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Alias, Expr, OnConflict},
};

use super::{
    Inserts,
    entity::{membership, principal},
};
use crate::domain::{
    access::Role,
    model::{Holdings, Member, MemberKey, RoleGrant, Workspace},
};

/// Microseconds since the epoch, as `expire_us` holds them.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> Result<DateTime<Utc>, DbErr> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| super::corrupt("expire_us", &us.to_string()))
}

/// Parses a stored role.
pub(crate) fn role_from_db(r: &str) -> Result<Role, DbErr> {
    Role::from_db(r).ok_or_else(|| super::corrupt("role", r))
}

/// A stored membership's grant.
pub(crate) fn grant(role: &str, expire_us: Option<i64>) -> Result<RoleGrant, DbErr> {
    Ok(RoleGrant {
        role: role_from_db(role)?,
        expire_time: expire_us.map(from_micros).transpose()?,
    })
}

fn to_domain(
    workspace: &str,
    m: membership::Model,
    email: Option<String>,
) -> Result<Member, DbErr> {
    let RoleGrant { role, expire_time } = grant(&m.role, m.expire_us)?;
    Ok(Member {
        role,
        expire_time,
        workspace: workspace.to_owned(),
        key: if m.is_group {
            MemberKey::Group(m.principal)
        } else {
            MemberKey::Subject(m.principal)
        },
        email,
        added_by: m.added_by,
        create_time: m.create_time,
        update_time: m.update_time,
        version: m.version,
    })
}

/// Memberships that still grant at `now`.
fn active(now: DateTime<Utc>) -> Condition {
    active_at(micros(now))
}

/// Memberships that still grant at `now_us` (microseconds since the epoch).
pub(crate) fn active_at(now_us: i64) -> Condition {
    Condition::any()
        .add(membership::Column::ExpireUs.is_null())
        .add(membership::Column::ExpireUs.gt(now_us))
}

/// The membership of `key` in `ws`, expired or not: its primary key.
fn of_key(ws: &Workspace, key: &MemberKey) -> Condition {
    let (is_group, principal) = key.parts();
    Condition::all()
        .add(membership::Column::WorkspaceId.eq(&ws.id))
        .add(membership::Column::IsGroup.eq(is_group))
        .add(membership::Column::Principal.eq(principal))
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

/// Domain members of `rows`, with the emails of the subjects among them.
async fn members<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    rows: Vec<membership::Model>,
) -> Result<Vec<Member>, DbErr> {
    let subjects: Vec<&str> = rows
        .iter()
        .filter(|m| !m.is_group)
        .map(|m| m.principal.as_str())
        .collect();
    let mut emails = emails(c, &subjects).await?;
    rows.into_iter()
        .map(|m| {
            let email = if m.is_group {
                None
            } else {
                emails.remove(&m.principal)
            };
            to_domain(&ws.name, m, email)
        })
        .collect()
}

/// The membership of `key` in `ws`, if it still grants at `now`.
pub(crate) async fn find<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    key: &MemberKey,
    now: DateTime<Utc>,
) -> Result<Option<Member>, DbErr> {
    let Some(m) = membership::Entity::find()
        .filter(of_key(ws, key))
        .filter(active(now))
        .one(c)
        .await?
    else {
        return Ok(None);
    };
    Ok(members(c, ws, vec![m]).await?.pop())
}

/// Adds a membership, in place of one of the same key that ended by `now`; `false`, adding
/// nothing, when one of that key still grants. One statement, where a delete of the ended
/// one, a read and an insert took three.
pub(crate) async fn add<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    m: &Member,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use membership::Column as M;
    let added = membership::Entity::insert(row(ws, m))
        .on_conflict(
            OnConflict::columns([M::WorkspaceId, M::IsGroup, M::Principal])
                .update_columns([
                    M::Role,
                    M::AddedBy,
                    M::CreateTime,
                    M::UpdateTime,
                    M::Version,
                    M::ExpireUs,
                ])
                // The existing row's end (the column is qualified with the table's name).
                .action_and_where(M::ExpireUs.lte(micros(now)))
                .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    Ok(added > 0)
}

/// Adds to `inserts` the insert of `m`, a new member of the new workspace `ws`.
pub(crate) fn add_insert(inserts: &mut Inserts, ws: &Workspace, m: &Member) {
    inserts.push(membership::Entity::insert(row(ws, m)).into_query());
}

/// The row of `m` in `ws`.
fn row(ws: &Workspace, m: &Member) -> membership::ActiveModel {
    let (is_group, principal) = m.key.parts();
    membership::ActiveModel {
        workspace_id: Set(ws.id.clone()),
        is_group: Set(is_group),
        principal: Set(principal.to_owned()),
        role: Set(m.role.as_str().to_owned()),
        added_by: Set(m.added_by.clone()),
        create_time: Set(m.create_time),
        update_time: Set(m.update_time),
        version: Set(m.version),
        expire_us: Set(m.expire_time.map(micros)),
        workspace_name: Set(ws.name.clone()),
    }
}

/// `m` with the email last seen for its subject, if any.
pub(crate) async fn with_email<C: ConnectionTrait>(c: &C, mut m: Member) -> Result<Member, DbErr> {
    if let MemberKey::Subject(s) = &m.key {
        m.email = emails(c, &[s.as_str()]).await?.remove(s);
    }
    Ok(m)
}

/// Writes a member's role, end, version and update time; returns how many rows changed
/// (0 or 1).
pub(crate) async fn update<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    m: &Member,
) -> Result<u64, DbErr> {
    Ok(membership::Entity::update_many()
        .col_expr(membership::Column::Role, Expr::value(m.role.as_str()))
        .col_expr(
            membership::Column::ExpireUs,
            Expr::value(m.expire_time.map(micros)),
        )
        .col_expr(membership::Column::Version, Expr::value(m.version))
        .col_expr(membership::Column::UpdateTime, Expr::value(m.update_time))
        .filter(of_key(ws, &m.key))
        .exec(c)
        .await?
        .rows_affected)
}

/// Removes a membership; returns how many rows went (0 or 1).
pub(crate) async fn delete<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    key: &MemberKey,
) -> Result<u64, DbErr> {
    Ok(membership::Entity::delete_many()
        .filter(of_key(ws, key))
        .exec(c)
        .await?
        .rows_affected)
}

/// How many admin memberships of the workspace never end: the last-admin rule's count.
pub(crate) async fn count_lasting_admins<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
) -> Result<u64, DbErr> {
    super::count(
        c,
        membership::Entity::find()
            .filter(membership::Column::WorkspaceId.eq(&ws.id))
            .filter(membership::Column::Role.eq(Role::Admin.as_str()))
            .filter(membership::Column::ExpireUs.is_null()),
    )
    .await
}

/// One page of a workspace's members still granting at `now` (subjects in subject order,
/// then groups in group order), after the member `after`, and the number of all matches.
pub(crate) async fn list<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    role: Option<Role>,
    after: Option<&MemberKey>,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<(Vec<Member>, u64), DbErr> {
    let mut cond = Condition::all()
        .add(membership::Column::WorkspaceId.eq(&ws.id))
        .add(active(now));
    if let Some(role) = role {
        cond = cond.add(membership::Column::Role.eq(role.as_str()));
    }
    let count = super::count_query(membership::Entity::find().filter(cond.clone()));
    let q = membership::Entity::find()
        .filter(cond)
        .apply_if(after, |q, after| {
            let (is_group, principal) = after.parts();
            q.filter(
                Condition::any()
                    .add(membership::Column::IsGroup.gt(is_group))
                    .add(
                        Condition::all()
                            .add(membership::Column::IsGroup.eq(is_group))
                            .add(membership::Column::Principal.gt(principal)),
                    ),
            )
        });
    let q = q
        .order_by_asc(membership::Column::IsGroup)
        .order_by_asc(membership::Column::Principal)
        .limit(limit);
    if c.get_database_backend() != DbBackend::Sqlite {
        let total = super::count_of(c, &count).await?;
        let rows = q.all(c).await?;
        return Ok((members(c, ws, rows).await?, total));
    }
    // On SQLite, where a statement costs two hand-overs between threads (see `packed`), the
    // count and the subjects' emails come in the page's own statement.
    let q = q
        .into_query()
        .expr_as(
            Expr::cust(
                "(SELECT email FROM principals WHERE principals.subject = \
                 memberships.principal AND NOT memberships.is_group)",
            ),
            Alias::new("email"),
        )
        .to_owned();
    let (rows, total) =
        super::packed::counted::<membership::Entity, _>(c, &q, &["email"], &count).await?;
    let page = rows
        .into_iter()
        .map(|(m, mut extra)| {
            let email = extra.pop().flatten();
            to_domain(&ws.name, m, email)
        })
        .collect::<Result<_, _>>()?;
    Ok((page, total))
}

/// The memberships of `subject` and of `groups` in the workspace with id `ws_id`, expired
/// or not (whether they grant is judged when they are used).
pub(crate) async fn holdings<C: ConnectionTrait>(
    c: &C,
    ws_id: &str,
    subject: &str,
    groups: &[String],
) -> Result<Holdings, DbErr> {
    let rows: Vec<(bool, String, String, Option<i64>)> = membership::Entity::find()
        .select_only()
        .column(membership::Column::IsGroup)
        .column(membership::Column::Principal)
        .column(membership::Column::Role)
        .column(membership::Column::ExpireUs)
        .filter(membership::Column::WorkspaceId.eq(ws_id))
        .filter(principals(Some(subject), groups))
        .into_tuple()
        .all(c)
        .await?;
    let mut held = Holdings::default();
    for (is_group, principal, role, expire_us) in rows {
        held.add(is_group, principal, grant(&role, expire_us)?);
    }
    Ok(held)
}

/// The memberships of `subject` (if any) and of `groups`: the condition every lookup of a
/// principal's roles or workspaces uses.
pub(crate) fn principals(subject: Option<&str>, groups: &[String]) -> Condition {
    let mut any = Condition::any();
    if let Some(subject) = subject {
        any = any.add(
            Condition::all()
                .add(membership::Column::IsGroup.eq(false))
                .add(membership::Column::Principal.eq(subject)),
        );
    }
    if !groups.is_empty() {
        any = any.add(
            Condition::all()
                .add(membership::Column::IsGroup.eq(true))
                .add(membership::Column::Principal.is_in(groups.iter().map(String::as_str))),
        );
    }
    any
}

/// Deletes the memberships that ended by `now`, for the sweep: they grant nothing already,
/// so no view needs telling. Returns how many went.
pub(crate) async fn delete_expired<C: ConnectionTrait>(
    c: &C,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    super::sweep::delete_ended(c, "memberships", micros(now)).await
}
