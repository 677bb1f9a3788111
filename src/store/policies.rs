//! Queries on policies: one row per workspace, read with its workspace in one join.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, ExprTrait, FromQueryResult, QueryFilter,
    QueryResult, QuerySelect, QueryTrait,
    sea_query::{Alias, Asterisk, Expr, InsertStatement, OnConflict, Order, Query},
};

use super::{
    Inserts,
    entity::policy,
    workspaces::{ListFilter, list_query},
};
use crate::domain::{
    model::Policy,
    model::{PolicyRules, Workspace},
};

/// The stored form of a list of GPU shapes, a JSON array. An empty list means any shape,
/// so a list that cannot be written is an error, never an empty list.
fn shapes_json(shapes: &[String]) -> Result<String, DbErr> {
    serde_json::to_string(shapes)
        .map_err(|e| DbErr::Custom(format!("gpu_shapes cannot be stored: {e}")))
}

/// The policy of the workspace `workspace` in `row`, a query's row that holds every column
/// of `policies` under its own name.
pub(crate) fn from_row(workspace: &str, row: &QueryResult) -> Result<Policy, DbErr> {
    to_domain(workspace, policy::Model::from_query_result(row, "")?)
}

fn to_domain(workspace: &str, m: policy::Model) -> Result<Policy, DbErr> {
    Ok(Policy {
        rules: PolicyRules {
            priority_min: m.priority_min,
            priority_max: m.priority_max,
            max_gprs: m.max_gprs,
            max_exit_duration_us: m.max_exit_duration_us,
            enforce_idle_timeout: m.enforce_idle_timeout,
            requeue_on_failure: m.requeue_on_failure,
            enable_auto_eviction: m.enable_auto_eviction,
            gpu_shapes: serde_json::from_str(&m.gpu_shapes)
                .map_err(|_| DbErr::Type(format!("unexpected gpu_shapes: {:?}", m.gpu_shapes)))?,
            max_gpu_per_gpr: m.max_gpu_per_gpr,
            max_memory_per_gpr_bytes: m.max_memory_per_gpr_bytes,
        },
        workspace_id: m.workspace_id,
        workspace: workspace.to_owned(),
        updated_by: m.updated_by,
        update_time: m.update_time,
        version: m.version,
    })
}

/// The policy of `ws`; with `lock`, its row stays locked until the transaction ends.
pub(crate) async fn find<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    lock: bool,
) -> Result<Option<Policy>, DbErr> {
    let mut q = policy::Entity::find_by_id(ws.id.clone());
    if lock {
        q = q.lock_exclusive();
    }
    q.one(c).await?.map(|m| to_domain(&ws.name, m)).transpose()
}

/// Writes a policy's rules, author, time and version.
pub(crate) async fn update<C: ConnectionTrait>(c: &C, p: &Policy) -> Result<(), DbErr> {
    let r = &p.rules;
    policy::Entity::update_many()
        .col_expr(policy::Column::PriorityMin, Expr::value(r.priority_min))
        .col_expr(policy::Column::PriorityMax, Expr::value(r.priority_max))
        .col_expr(policy::Column::MaxGprs, Expr::value(r.max_gprs))
        .col_expr(
            policy::Column::MaxExitDurationUs,
            Expr::value(r.max_exit_duration_us),
        )
        .col_expr(
            policy::Column::EnforceIdleTimeout,
            Expr::value(r.enforce_idle_timeout),
        )
        .col_expr(
            policy::Column::RequeueOnFailure,
            Expr::value(r.requeue_on_failure),
        )
        .col_expr(
            policy::Column::EnableAutoEviction,
            Expr::value(r.enable_auto_eviction),
        )
        .col_expr(
            policy::Column::GpuShapes,
            Expr::value(shapes_json(&r.gpu_shapes)?),
        )
        .col_expr(policy::Column::MaxGpuPerGpr, Expr::value(r.max_gpu_per_gpr))
        .col_expr(
            policy::Column::MaxMemoryPerGprBytes,
            Expr::value(r.max_memory_per_gpr_bytes),
        )
        .col_expr(policy::Column::UpdatedBy, Expr::value(p.updated_by.clone()))
        .col_expr(policy::Column::UpdateTime, Expr::value(p.update_time))
        .col_expr(policy::Column::Version, Expr::value(p.version))
        .filter(policy::Column::WorkspaceId.eq(&p.workspace_id))
        .exec(c)
        .await?;
    Ok(())
}

/// One page of policies ordered by workspace name, after the name `after`, of the
/// workspaces matching `f`: the workspaces' page (`workspaces::list_query`) joined with their
/// policies, in one query.
pub(crate) async fn list<C: ConnectionTrait>(
    c: &C,
    f: &ListFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Policy>, DbErr> {
    let page = Alias::new("page");
    let q = Query::select()
        .column((policy::Entity, Asterisk))
        .expr_as(
            Expr::col((page.clone(), Alias::new("name"))),
            Alias::new("workspace_name"),
        )
        .from_subquery(list_query(f, after, limit), page.clone())
        .inner_join(
            policy::Entity,
            Expr::col((policy::Entity, policy::Column::WorkspaceId))
                .equals((page.clone(), Alias::new("id"))),
        )
        .order_by((page, Alias::new("name")), Order::Asc)
        .to_owned();
    let rows = super::packed::all_with::<policy::Entity, _>(c, &q, &["workspace_name"]).await?;
    rows.into_iter()
        .map(|(model, names)| match names.as_slice() {
            [Some(name)] => to_domain(name, model),
            _ => Err(super::corrupt("policy page", "no workspace name")),
        })
        .collect()
}

/// Creates a workspace's policy from the defaults, unless it has one.
pub(crate) async fn insert_default<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    d: &PolicyRules,
    by: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    c.execute(&default_insert(workspace_id, d, by, at)?).await?;
    Ok(())
}

/// Adds to `inserts` the creation of a new workspace's policy from the defaults.
pub(crate) fn add_default_insert(
    inserts: &mut Inserts,
    workspace_id: &str,
    d: &PolicyRules,
    by: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    inserts.push(default_insert(workspace_id, d, by, at)?);
    Ok(())
}

/// The insert of [`insert_default`].
fn default_insert(
    workspace_id: &str,
    d: &PolicyRules,
    by: &str,
    at: DateTime<Utc>,
) -> Result<InsertStatement, DbErr> {
    let row = policy::ActiveModel {
        workspace_id: Set(workspace_id.to_owned()),
        priority_min: Set(d.priority_min),
        priority_max: Set(d.priority_max),
        max_gprs: Set(d.max_gprs),
        max_exit_duration_us: Set(d.max_exit_duration_us),
        enforce_idle_timeout: Set(d.enforce_idle_timeout),
        requeue_on_failure: Set(d.requeue_on_failure),
        enable_auto_eviction: Set(d.enable_auto_eviction),
        gpu_shapes: Set(shapes_json(&d.gpu_shapes)?),
        max_gpu_per_gpr: Set(d.max_gpu_per_gpr),
        max_memory_per_gpr_bytes: Set(d.max_memory_per_gpr_bytes),
        updated_by: Set(by.to_owned()),
        update_time: Set(at),
        version: Set(1),
    };
    Ok(policy::Entity::insert(row)
        .on_conflict(
            OnConflict::column(policy::Column::WorkspaceId)
                .do_nothing()
                .to_owned(),
        )
        .into_query())
}
