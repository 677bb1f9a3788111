//! Queries on policies: one row per workspace, read with its workspace in one join.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};

use super::{
    entity::{policy, workspace},
    workspaces::{ListFilter, condition},
};
use crate::domain::{
    model::{PolicyRules, Workspace},
    policy::Policy,
};

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
pub async fn find<C: ConnectionTrait>(
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
pub async fn update<C: ConnectionTrait>(c: &C, p: &Policy) -> Result<(), DbErr> {
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
            Expr::value(serde_json::to_string(&r.gpu_shapes).unwrap_or_else(|_| "[]".into())),
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
/// workspaces matching `f`, in one joined query.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    f: &ListFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Policy>, DbErr> {
    let mut q = workspace::Entity::find()
        .find_also_related(policy::Entity)
        .filter(condition(f));
    if let Some(after) = after {
        q = q.filter(workspace::Column::Name.gt(after));
    }
    let rows = q
        .order_by_asc(workspace::Column::Name)
        .limit(limit)
        .all(c)
        .await?;
    rows.into_iter()
        .filter_map(|(w, p)| p.map(|p| to_domain(&w.name, p)))
        .collect()
}
