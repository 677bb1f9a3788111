//! Queries on the GPU pod requests admitted into workspaces. A request counts while its
//! lease has not ended (`expire_us > now`); every query passes `now` so that an expired row
//! stops counting at once, whether or not a sweep has deleted it yet.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QueryResult, QuerySelect, Statement,
    sea_query::{Expr, OnConflict},
};

use super::{
    entity::gpu_request::{self, Column},
    policies,
};
use crate::domain::model::{GprSpec, GpuRequest, GpuUsage, Policy, Workspace};

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn to_domain(workspace: &str, m: gpu_request::Model) -> GpuRequest {
    GpuRequest {
        workspace: workspace.to_owned(),
        id: m.id,
        spec: GprSpec {
            gpu_shape: m.gpu_shape,
            gpu_count: m.gpu_count,
            memory_bytes: m.memory_bytes,
            priority: m.priority,
            exit_duration_us: m.exit_duration_us,
        },
        admitted_by: m.admitted_by,
        admit_time: m.admit_time,
        expire_time: DateTime::from_timestamp_micros(m.expire_us)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    }
}

/// The workspace's requests whose lease has not ended at `now`.
fn active(workspace_id: &str, now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(Column::WorkspaceId.eq(workspace_id))
        .add(Column::ExpireUs.gt(micros(now)))
}

/// Deletes the workspace's requests whose lease ended by `now`. An admission whose count
/// saw expired requests calls it under the workspace's lock, then counts again: a lease it
/// treats as ended can then not be renewed afterwards by a replica whose clock runs behind
/// (and one renewed meanwhile is not deleted, and counted), so the count it admitted under
/// stays true.
pub(crate) async fn delete_expired<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    Ok(gpu_request::Entity::delete_many()
        .filter(Column::WorkspaceId.eq(workspace_id))
        .filter(Column::ExpireUs.lte(micros(now)))
        .exec(c)
        .await?
        .rows_affected)
}

/// The request `id` of `ws`, if its lease has not ended at `now`.
pub(crate) async fn find<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<GpuRequest>, DbErr> {
    Ok(gpu_request::Entity::find()
        .filter(active(&ws.id, now))
        .filter(Column::Id.eq(id))
        .one(c)
        .await?
        .map(|m| to_domain(&ws.name, m)))
}

/// Records an admitted request, unless one with its id is stored; whether it was.
pub(crate) async fn insert<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    r: &GpuRequest,
) -> Result<bool, DbErr> {
    let s = &r.spec;
    Ok(gpu_request::Entity::insert(gpu_request::ActiveModel {
        workspace_id: Set(workspace_id.to_owned()),
        id: Set(r.id.clone()),
        gpu_shape: Set(s.gpu_shape.clone()),
        gpu_count: Set(s.gpu_count),
        memory_bytes: Set(s.memory_bytes),
        priority: Set(s.priority),
        exit_duration_us: Set(s.exit_duration_us),
        admitted_by: Set(r.admitted_by.clone()),
        admit_time: Set(r.admit_time),
        expire_us: Set(micros(r.expire_time)),
    })
    .on_conflict(
        OnConflict::columns([Column::WorkspaceId, Column::Id])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(c)
    .await?
        > 0)
}

/// Moves the lease of the active request `id` to end at `until`; false when no active
/// request has that id.
pub(crate) async fn renew<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    id: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let done = gpu_request::Entity::update_many()
        .col_expr(Column::ExpireUs, Expr::value(micros(until)))
        .filter(active(workspace_id, now))
        .filter(Column::Id.eq(id))
        .exec(c)
        .await?;
    Ok(done.rows_affected > 0)
}

/// Deletes the active request `id` and returns it as it was; `None` when no active request
/// has that id.
pub(crate) async fn release<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<GpuRequest>, DbErr> {
    let gone = gpu_request::Entity::delete_many()
        .filter(active(&ws.id, now))
        .filter(Column::Id.eq(id))
        .exec_with_returning(c)
        .await?;
    Ok(gone.into_iter().next().map(|m| to_domain(&ws.name, m)))
}

/// What the requests of a workspace add up to at one instant (see `usage`).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// The usage of the active ones, beside the policy's `max_gprs`; `workspace` is left
    /// for the caller.
    pub(crate) usage: GpuUsage,
    /// How many have expired but are still stored.
    pub(crate) expired: u64,
    /// When the first active lease ends (microseconds), if any is active.
    pub(crate) next_end_us: Option<i64>,
}

/// What the requests of `workspace_id` add up to at `now`, in one query. `None` when the
/// workspace has no policy.
pub(crate) async fn usage<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Tally>, DbErr> {
    Ok(tally(c, workspace_id, now, false)
        .await?
        .map(|(_, tally)| tally))
}

/// The policy of `ws` and what its requests add up to at `now`, in one query, as an
/// admission needs them (one statement less in the writer's turn). `None` when the
/// workspace has no policy.
pub(crate) async fn policy_and_usage<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    now: DateTime<Utc>,
) -> Result<Option<(Policy, Tally)>, DbErr> {
    let Some((row, tally)) = tally(c, &ws.id, now, true).await? else {
        return Ok(None);
    };
    let row = row.ok_or_else(|| DbErr::Custom("a policy row was not read".into()))?;
    Ok(Some((policies::from_row(&ws.name, &row)?, tally)))
}

/// `usage`, with the policy's row too when `with_policy`.
async fn tally<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    now: DateTime<Utc>,
    with_policy: bool,
) -> Result<Option<(Option<QueryResult>, Tally)>, DbErr> {
    let backend = c.get_database_backend();
    // Memory sums may pass i64::MAX (a policy without a memory limit takes any size), and
    // both databases fail an overflowing integer SUM: sum wider, and saturate.
    let memory = match backend {
        DbBackend::Postgres => {
            "COALESCE(LEAST(SUM(g.memory_bytes), 9223372036854775807), 0)::BIGINT"
        }
        _ => "CAST(MIN(TOTAL(g.memory_bytes), 9223372036854775807.0) AS INTEGER)",
    };
    // Grouped by the policy's key, so its columns may be selected as they are.
    let policy = if with_policy { "p.*, " } else { "" };
    // One row per (shape, active or not); a single row of NULLs joined when there is none.
    let sql = format!(
        "SELECT {policy}p.max_gprs AS max_gprs, g.gpu_shape AS gpu_shape, \
         CASE WHEN g.expire_us > $2 THEN 1 ELSE 0 END AS active, \
         COUNT(g.id) AS n, CAST(COALESCE(SUM(g.gpu_count), 0) AS BIGINT) AS gpus, \
         {memory} AS memory, MIN(g.expire_us) AS next_end \
         FROM policies p LEFT JOIN gpu_requests g ON g.workspace_id = p.workspace_id \
         WHERE p.workspace_id = $1 \
         GROUP BY p.workspace_id, g.gpu_shape, CASE WHEN g.expire_us > $2 THEN 1 ELSE 0 END"
    );
    let rows = c
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [workspace_id.into(), micros(now).into()],
        ))
        .await?;
    let mut found: Option<Tally> = None;
    for row in &rows {
        let t: &mut Tally = found.get_or_insert_default();
        let u = &mut t.usage;
        u.max_gprs = row.try_get("", "max_gprs")?;
        let n: i64 = row.try_get("", "n")?;
        let active: i32 = row.try_get("", "active")?;
        if n == 0 {
            continue;
        }
        if active == 0 {
            t.expired += u64::try_from(n).unwrap_or(0);
            continue;
        }
        let shape: Option<String> = row.try_get("", "gpu_shape")?;
        let memory: i64 = row.try_get("", "memory")?;
        let end: Option<i64> = row.try_get("", "next_end")?;
        t.next_end_us = t.next_end_us.into_iter().chain(end).min();
        u.active_gprs += n;
        u.memory_bytes = u.memory_bytes.saturating_add(memory);
        u.gpus_by_shape
            .insert(shape.unwrap_or_default(), row.try_get("", "gpus")?);
    }
    let first = if with_policy {
        rows.into_iter().next()
    } else {
        None
    };
    Ok(found.map(|t| (first, t)))
}

/// One page of the active requests of `ws` ordered by id, after the id `after`, and how
/// many are active.
pub(crate) async fn list<C: ConnectionTrait>(
    c: &C,
    ws: &Workspace,
    now: DateTime<Utc>,
    after: Option<&str>,
    limit: u64,
) -> Result<(Vec<GpuRequest>, u64), DbErr> {
    let total = super::count(c, gpu_request::Entity::find().filter(active(&ws.id, now))).await?;
    let mut q = gpu_request::Entity::find().filter(active(&ws.id, now));
    if let Some(after) = after {
        q = q.filter(Column::Id.gt(after));
    }
    let rows = q.order_by_asc(Column::Id).limit(limit).all(c).await?;
    Ok((
        rows.into_iter().map(|m| to_domain(&ws.name, m)).collect(),
        total,
    ))
}

/// Deletes the requests of every workspace whose lease ended by `now`, to keep the table
/// small; nothing depends on it for correctness.
pub(crate) async fn sweep<C: ConnectionTrait>(c: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    super::sweep::delete_ended(c, "gpu_requests", micros(now)).await
}
