//! Queries on the resources that other services register in workspaces, and their counts
//! per kind.

use std::collections::{BTreeMap, HashMap};

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};

use super::entity::resource;
use crate::domain::model::{Resource, Workspace};

fn to_domain(workspace: &str, m: resource::Model) -> Resource {
    Resource {
        workspace: workspace.to_owned(),
        kind: m.kind,
        resource_id: m.resource_id,
        registered_by: m.registered_by,
        create_time: m.create_time,
    }
}

/// A registered resource.
pub(crate) async fn find<C: ConnectionTrait>(
    c: &C,
    workspace: &Workspace,
    kind: &str,
    resource_id: &str,
) -> Result<Option<Resource>, DbErr> {
    Ok(resource::Entity::find_by_id((
        workspace.id.clone(),
        kind.to_owned(),
        resource_id.to_owned(),
    ))
    .one(c)
    .await?
    .map(|m| to_domain(&workspace.name, m)))
}

/// Registers a resource.
pub(crate) async fn insert<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    r: &Resource,
) -> Result<(), DbErr> {
    resource::Entity::insert(resource::ActiveModel {
        workspace_id: Set(workspace_id.to_owned()),
        kind: Set(r.kind.clone()),
        resource_id: Set(r.resource_id.clone()),
        registered_by: Set(r.registered_by.clone()),
        create_time: Set(r.create_time),
    })
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// Whether `workspace_id` holds a resource of `kind`.
pub(crate) async fn has_kind<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    kind: &str,
) -> Result<bool, DbErr> {
    Ok(resource::Entity::find()
        .select_only()
        .column(resource::Column::Kind)
        .filter(resource::Column::WorkspaceId.eq(workspace_id))
        .filter(resource::Column::Kind.eq(kind))
        .into_tuple::<String>()
        .one(c)
        .await?
        .is_some())
}

/// How many kinds `workspace_id` holds resources of, counted up to `most`: one probe of the
/// primary key per kind (a loose index scan), however many resources each kind has.
pub(crate) async fn kinds<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    most: usize,
) -> Result<usize, DbErr> {
    let sql = format!(
        "WITH RECURSIVE k(kind, n) AS (\
         SELECT MIN(kind), 1 FROM resources WHERE workspace_id = $1 \
         UNION ALL \
         SELECT (SELECT MIN(r.kind) FROM resources r WHERE r.workspace_id = $1 AND r.kind > k.kind), \
         k.n + 1 FROM k WHERE k.kind IS NOT NULL AND k.n < {most}) \
         SELECT COUNT(kind) AS n FROM k"
    );
    let row = c
        .query_one_raw(Statement::from_sql_and_values(
            c.get_database_backend(),
            sql,
            [workspace_id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("the count of kinds gave no row".into()))?;
    let n: i64 = row.try_get("", "n")?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Unregisters a resource; returns how many rows went (0 or 1).
pub(crate) async fn delete<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    kind: &str,
    resource_id: &str,
) -> Result<u64, DbErr> {
    Ok(resource::Entity::delete_by_id((
        workspace_id.to_owned(),
        kind.to_owned(),
        resource_id.to_owned(),
    ))
    .exec(c)
    .await?
    .rows_affected)
}

/// One page of a workspace's resources ordered by (kind, resource_id), after the key
/// `after`, and the number of all matches.
pub(crate) async fn list<C: ConnectionTrait>(
    c: &C,
    workspace: &Workspace,
    kind: Option<&str>,
    after: Option<(&str, &str)>,
    limit: u64,
) -> Result<(Vec<Resource>, u64), DbErr> {
    let mut cond = Condition::all().add(resource::Column::WorkspaceId.eq(&workspace.id));
    if let Some(kind) = kind {
        cond = cond.add(resource::Column::Kind.eq(kind));
    }
    let count = super::count_query(resource::Entity::find().filter(cond.clone()));
    let mut q = resource::Entity::find().filter(cond);
    if let Some((k, r)) = after {
        q = q.filter(
            Condition::any().add(resource::Column::Kind.gt(k)).add(
                Condition::all()
                    .add(resource::Column::Kind.eq(k))
                    .add(resource::Column::ResourceId.gt(r)),
            ),
        );
    }
    let q = q
        .order_by_asc(resource::Column::Kind)
        .order_by_asc(resource::Column::ResourceId)
        .limit(limit);
    // On SQLite the count comes in the page's statement (see `packed`).
    let page = sea_orm::QueryTrait::into_query(q);
    let (rows, total) =
        super::packed::counted::<resource::Entity, _>(c, &page, &[], &count).await?;
    Ok((
        rows.into_iter()
            .map(|(m, _)| to_domain(&workspace.name, m))
            .collect(),
        total,
    ))
}

/// Registered resources by kind, for each of the given workspaces, in one query.
pub(crate) async fn counts<C: ConnectionTrait>(
    c: &C,
    workspace_ids: &[&str],
) -> Result<HashMap<String, BTreeMap<String, i64>>, DbErr> {
    let mut out: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
    if workspace_ids.is_empty() {
        return Ok(out);
    }
    let rows: Vec<(String, String, i64)> = resource::Entity::find()
        .select_only()
        .column(resource::Column::WorkspaceId)
        .column(resource::Column::Kind)
        .column_as(resource::Column::ResourceId.count(), "n")
        .filter(resource::Column::WorkspaceId.is_in(workspace_ids.iter().copied()))
        .group_by(resource::Column::WorkspaceId)
        .group_by(resource::Column::Kind)
        .into_tuple()
        .all(c)
        .await?;
    for (id, kind, n) in rows {
        out.entry(id).or_default().insert(kind, n);
    }
    Ok(out)
}
