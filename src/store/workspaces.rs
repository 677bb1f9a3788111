//! Queries on workspaces, their labels and their counts, and the listings over them. Every
//! function takes the connection or transaction to run on.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, ExprTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement,
    sea_query::{
        Alias, Asterisk, Expr, InsertStatement, OnConflict, Order, Query, QueryStatementBuilder,
        SelectStatement, UnionType,
    },
};

use super::{
    Inserts,
    entity::{membership, workspace, workspace_count, workspace_label},
    memberships,
};
use crate::domain::{
    access::{Principal, Visibility},
    model::{Holdings, Workspace, WorkspaceState},
};

fn to_domain(m: workspace::Model) -> Result<Workspace, DbErr> {
    Ok(Workspace {
        visibility: Visibility::from_db(&m.visibility)
            .ok_or_else(|| super::corrupt("visibility", &m.visibility))?,
        state: WorkspaceState::from_db(&m.state)
            .ok_or_else(|| super::corrupt("state", &m.state))?,
        labels: serde_json::from_str(&m.labels).map_err(|_| super::corrupt("labels", &m.labels))?,
        id: m.id,
        name: m.name,
        display_name: m.display_name,
        description: m.description,
        built_in: m.built_in,
        created_by: m.created_by,
        create_time: m.create_time,
        update_time: m.update_time,
        version: m.version,
        resource_counts: BTreeMap::new(),
    })
}

fn to_row(w: &Workspace) -> workspace::ActiveModel {
    workspace::ActiveModel {
        id: Set(w.id.clone()),
        name: Set(w.name.clone()),
        display_name: Set(w.display_name.clone()),
        description: Set(w.description.clone()),
        // A map of strings always serializes.
        labels: Set(serde_json::to_string(&w.labels).unwrap_or_else(|_| "{}".into())),
        visibility: Set(w.visibility.as_str().to_owned()),
        state: Set(w.state.as_str().to_owned()),
        built_in: Set(w.built_in),
        created_by: Set(w.created_by.clone()),
        create_time: Set(w.create_time),
        update_time: Set(w.update_time),
        version: Set(w.version),
    }
}

/// How a write transaction holds the workspace row it read, until it ends. SQLite's
/// `BEGIN IMMEDIATE` already holds the database's write lock, so these matter on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowLock {
    /// Not held: a read.
    None,
    /// Shared with other writers that hold it so (`FOR SHARE`): for changes that break no
    /// rule that another change of the workspace's keeps, so that they run at once; a change
    /// of the workspace itself, or of its admins, waits for them, and they for it.
    Shared,
    /// Held alone (`FOR UPDATE`).
    Exclusive,
}

/// The workspace named `name` and the memberships of `subject` and of `groups` in it, in
/// one query, with its row held as `lock` says (on PostgreSQL, taken first by a statement
/// of its own).
pub(crate) async fn find_with_holdings<C: ConnectionTrait>(
    c: &C,
    name: &str,
    subject: &str,
    groups: &[String],
    lock: RowLock,
) -> Result<Option<(Workspace, Holdings)>, DbErr> {
    let backend = c.get_database_backend();
    let clause = match lock {
        _ if backend != DbBackend::Postgres => None,
        RowLock::None => None,
        RowLock::Shared => Some("FOR SHARE"),
        RowLock::Exclusive => Some("FOR UPDATE"),
    };
    // A statement that waits for a row lock still reads what it joins from the snapshot it
    // began with: memberships read with the lock could predate a change that held it (the
    // caller's own removal). So the lock comes first, and the read after it sees every
    // change committed before the lock was granted; by id, so that a workspace created
    // under the name meanwhile is not read in place of the one locked.
    let (key_column, key) = match clause {
        Some(clause) => {
            let locked = c
                .query_one_raw(Statement::from_sql_and_values(
                    backend,
                    format!("SELECT id FROM workspaces WHERE name = $1 {clause}"),
                    [name.into()],
                ))
                .await?;
            let Some(locked) = locked else {
                return Ok(None);
            };
            let id: String = locked.try_get("", "id")?;
            ("w.id", id)
        }
        None => ("w.name", name.to_owned()),
    };
    Ok(
        read_with_holdings(c, key_column, &[key.as_str()], subject, groups)
            .await?
            .pop(),
    )
}

/// The workspaces named `names` that exist, each with the memberships of `subject` and of
/// `groups` in it, in one statement (BatchCheckAccess's lookups: a batch costs the database
/// one statement, not one per check). Unlocked; in no particular order.
pub(crate) async fn find_many_with_holdings<C: ConnectionTrait>(
    c: &C,
    names: &[&str],
    subject: &str,
    groups: &[String],
) -> Result<Vec<(Workspace, Holdings)>, DbErr> {
    let Some(&last) = names.last() else {
        return Ok(Vec::new());
    };
    // The list padded to a power of two (repeating a name changes nothing): a statement's
    // text is prepared once per connection and kept among its last 100, and a text for
    // every length of batch would push the hot statements of other calls out.
    let mut keys = names.to_vec();
    keys.resize(names.len().next_power_of_two(), last);
    read_with_holdings(c, "w.name", &keys, subject, groups).await
}

/// The workspaces whose `key_column` is one of `keys`, each with the memberships of
/// `subject` and of `groups` in it: one statement, one row per membership found, or one with
/// NULLs for a workspace where there is none.
async fn read_with_holdings<C: ConnectionTrait>(
    c: &C,
    key_column: &str,
    keys: &[&str],
    subject: &str,
    groups: &[String],
) -> Result<Vec<(Workspace, Holdings)>, DbErr> {
    let backend = c.get_database_backend();
    let mark = |i: usize| format!("${i}");
    let key_marks: Vec<String> = (1..=keys.len()).map(mark).collect();
    let subject_mark = mark(keys.len() + 1);
    let mut values: Vec<sea_orm::Value> = keys.iter().map(|&k| k.into()).collect();
    values.push(subject.into());
    let in_groups = if groups.is_empty() {
        String::new()
    } else {
        let marks: Vec<String> = (keys.len() + 2..keys.len() + 2 + groups.len())
            .map(mark)
            .collect();
        values.extend(groups.iter().map(|g| g.as_str().into()));
        format!(
            " OR (m.is_group = TRUE AND m.principal IN ({}))",
            marks.join(", ")
        )
    };
    let sql = format!(
        "SELECT w.*, m.is_group AS m_is_group, m.principal AS m_principal, m.role AS m_role, \
         m.expire_us AS m_expire_us FROM workspaces w \
         LEFT JOIN memberships m ON m.workspace_id = w.id \
         AND ((m.is_group = FALSE AND m.principal = {subject_mark}){in_groups}) \
         WHERE {key_column} IN ({})",
        key_marks.join(", ")
    );
    let rows = c
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut found: Vec<(Workspace, Holdings)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        let id: String = row.try_get("", "id")?;
        let i = match at.get(&id) {
            Some(&i) => i,
            None => {
                let ws = to_domain(workspace::Model::from_query_result(row, "")?)?;
                at.insert(id, found.len());
                found.push((ws, Holdings::default()));
                found.len() - 1
            }
        };
        let role: Option<String> = row.try_get("", "m_role")?;
        let Some(role) = role else { continue };
        let is_group: bool = row.try_get("", "m_is_group")?;
        let principal: String = row.try_get("", "m_principal")?;
        let expire_us: Option<i64> = row.try_get("", "m_expire_us")?;
        found[i]
            .1
            .add(is_group, principal, memberships::grant(&role, expire_us)?);
    }
    Ok(found)
}

/// The workspace with this id.
pub(crate) async fn find_by_id<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<Workspace>, DbErr> {
    workspace::Entity::find_by_id(id.to_owned())
        .one(c)
        .await?
        .map(to_domain)
        .transpose()
}

/// Whether a workspace has the name `name`.
pub(crate) async fn name_taken<C: ConnectionTrait>(c: &C, name: &str) -> Result<bool, DbErr> {
    Ok(workspace::Entity::find()
        .select_only()
        .column(workspace::Column::Id)
        .filter(workspace::Column::Name.eq(name))
        .into_tuple::<String>()
        .one(c)
        .await?
        .is_some())
}

/// Adds to `inserts` the insert of the new workspace `w` and of its labels. A taken name
/// fails with a unique violation.
pub(crate) fn add_insert(inserts: &mut Inserts, w: &Workspace) {
    inserts.push(workspace::Entity::insert(to_row(w)).into_query());
    if let Some(labels) = labels_insert(&w.id, &w.labels) {
        inserts.push(labels);
    }
}

async fn insert_labels<C: ConnectionTrait>(
    c: &C,
    workspace_id: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), DbErr> {
    if let Some(insert) = labels_insert(workspace_id, labels) {
        c.execute(&insert).await?;
    }
    Ok(())
}

/// The insert of a workspace's label rows; none for no labels.
fn labels_insert(workspace_id: &str, labels: &BTreeMap<String, String>) -> Option<InsertStatement> {
    if labels.is_empty() {
        return None;
    }
    let rows = labels.iter().map(|(k, v)| workspace_label::ActiveModel {
        workspace_id: Set(workspace_id.to_owned()),
        key: Set(k.clone()),
        value: Set(v.clone()),
    });
    Some(workspace_label::Entity::insert_many(rows).into_query())
}

/// Writes every mutable column of `w`, which was `before`; replaces its label rows when they
/// changed.
pub(crate) async fn update<C: ConnectionTrait>(
    c: &C,
    before: &Workspace,
    w: &Workspace,
) -> Result<(), DbErr> {
    workspace::Entity::update(to_row(w)).exec(c).await?;
    let labels_changed = before.labels != w.labels;
    if labels_changed {
        workspace_label::Entity::delete_many()
            .filter(workspace_label::Column::WorkspaceId.eq(&w.id))
            .exec(c)
            .await?;
        insert_labels(c, &w.id, &w.labels).await?;
    }
    Ok(())
}

/// Deletes a workspace; its labels, members, policy and request ids go with it.
pub(crate) async fn delete<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    workspace::Entity::delete_by_id(id.to_owned())
        .exec(c)
        .await?;
    Ok(())
}

/// Marks a workspace changed (a new version and update time) without other changes, as when
/// its resource counts change.
pub(crate) async fn touch<C: ConnectionTrait>(
    c: &C,
    id: &str,
    version: i64,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    workspace::Entity::update_many()
        .col_expr(workspace::Column::Version, Expr::value(version))
        .col_expr(workspace::Column::UpdateTime, Expr::value(at))
        .filter(workspace::Column::Id.eq(id))
        .exec(c)
        .await?;
    Ok(())
}

/// Inserts a built-in workspace unless one of that name exists; safe when several replicas
/// start at once. Returns whether this call inserted it.
pub(crate) async fn insert_if_absent<C: ConnectionTrait>(
    c: &C,
    w: &Workspace,
) -> Result<bool, DbErr> {
    let inserted = workspace::Entity::insert(to_row(w))
        .on_conflict(
            OnConflict::column(workspace::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    Ok(inserted > 0)
}

/// Fills `resource_counts` of each workspace.
pub(crate) async fn with_counts<C: ConnectionTrait>(
    c: &C,
    mut list: Vec<Workspace>,
) -> Result<Vec<Workspace>, DbErr> {
    let ids: Vec<&str> = list.iter().map(|w| w.id.as_str()).collect();
    let mut counts = super::resources::counts(c, &ids).await?;
    for w in &mut list {
        w.resource_counts = counts.remove(&w.id).unwrap_or_default();
    }
    Ok(list)
}

/// The filters of a workspace listing, at one instant (memberships that ended by then
/// count as absent).
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Only this state.
    pub state: Option<WorkspaceState>,
    /// Only workspaces where this subject is a member.
    pub member: Option<String>,
    /// Only workspaces where this group is a member.
    pub member_group: Option<String>,
    /// Only workspaces carrying all these labels.
    pub labels: BTreeMap<String, String>,
    /// Only workspaces this principal may read (through its memberships, its groups', or a
    /// visibility other than private); `None` for platform principals, who read every
    /// workspace.
    pub readable_by: Option<Reader>,
    /// The instant, in microseconds since the epoch.
    pub now_us: i64,
}

impl ListFilter {
    /// The filter without its instant: what a cached count is kept under.
    pub(crate) fn key(&self) -> String {
        let ListFilter {
            state,
            member,
            member_group,
            labels,
            readable_by,
            now_us: _,
        } = self;
        format!("{state:?} {member:?} {member_group:?} {labels:?} {readable_by:?}")
    }

    /// Whether the filter's matches depend on memberships, which may end.
    pub(crate) fn reads_memberships(&self) -> bool {
        self.member.is_some() || self.member_group.is_some() || self.readable_by.is_some()
    }
}

/// A principal whose readable workspaces a listing shows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reader {
    /// Its subject.
    pub subject: String,
    /// Its groups.
    pub groups: Vec<String>,
}

impl Reader {
    /// The reader `p` is.
    pub fn of(p: &Principal) -> Self {
        Reader {
            subject: p.subject.clone(),
            groups: p.groups.to_vec(),
        }
    }
}

/// The workspaces every subject may read (`access::listing_scope`: the visibilities that
/// grant a role, which a test in `access` keeps equal to "not private"), written as the
/// partial index `workspaces_shared_name` writes it: SQLite uses a partial index only when the query repeats its condition, and
/// PostgreSQL's generic plans (a prepared statement's, after five runs) only then too.
const SHARED: &str = "\"workspaces\".\"visibility\" <> 'private'";

/// The ids of the workspaces where `subject` or one of `groups` holds a membership that has
/// not ended at `now_us` (index `memberships_principal_name`).
fn member_ids(subject: Option<&str>, groups: &[String], now_us: i64) -> SelectStatement {
    Query::select()
        .column(membership::Column::WorkspaceId)
        .from(membership::Entity)
        .cond_where(memberships::principals(subject, groups))
        .cond_where(memberships::active_at(now_us))
        .to_owned()
}

/// The ids of the workspaces `reader` holds a membership in, itself or through a group.
fn readable_ids(reader: &Reader, now_us: i64) -> SelectStatement {
    member_ids(Some(&reader.subject), &reader.groups, now_us)
}

/// The earliest end after `now_us` of any membership: until then, no membership ends, so
/// a count of workspaces through memberships stays true while nothing changes.
pub(crate) async fn next_membership_end<C: ConnectionTrait>(
    c: &C,
    now_us: i64,
) -> Result<Option<i64>, DbErr> {
    let next: Option<Option<i64>> = membership::Entity::find()
        .select_only()
        .column_as(membership::Column::ExpireUs.min(), "next")
        .filter(membership::Column::ExpireUs.gt(now_us))
        .into_tuple()
        .one(c)
        .await?;
    Ok(next.flatten())
}

/// The ids of the workspaces labelled `key=value` (index `workspace_labels_key_value`).
fn labelled(key: &str, value: &str) -> SelectStatement {
    Query::select()
        .column(workspace_label::Column::WorkspaceId)
        .from(workspace_label::Entity)
        .and_where(workspace_label::Column::Key.eq(key))
        .and_where(workspace_label::Column::Value.eq(value))
        .to_owned()
}

/// The SQL condition of a listing's filters other than `readable_by`. Membership and label
/// filters are id sets from their own indexes, so a planner can start from the few matches.
fn filters(f: &ListFilter) -> Condition {
    let mut cond = Condition::all();
    if let Some(state) = f.state {
        // Written out for the same reason as `SHARED`, for `workspaces_archived_name`; the
        // value is one of the enum's own constants.
        cond = cond.add(Expr::cust(format!(
            "\"workspaces\".\"state\" = '{}'",
            state.as_str()
        )));
    }
    if let Some(member) = &f.member {
        cond = cond.add(workspace::Column::Id.in_subquery(member_ids(Some(member), &[], f.now_us)));
    }
    if let Some(group) = &f.member_group {
        let groups = [group.clone()];
        cond = cond.add(workspace::Column::Id.in_subquery(member_ids(None, &groups, f.now_us)));
    }
    for (k, v) in &f.labels {
        cond = cond.add(workspace::Column::Id.in_subquery(labelled(k, v)));
    }
    cond
}

/// The SQL condition of all of a listing's filters, on the `workspaces` table.
pub(crate) fn condition(f: &ListFilter) -> Condition {
    let mut cond = filters(f);
    if let Some(reader) = &f.readable_by {
        cond = cond.add(
            Condition::any()
                .add(Expr::cust(SHARED))
                .add(workspace::Column::Id.in_subquery(readable_ids(reader, f.now_us))),
        );
    }
    cond
}

/// The query of one page of workspaces ordered by name, after the name `after`, with up to
/// `limit` rows, built so that its cost does not grow with the table. A caller without a
/// platform role reads up to `limit` rows from each of three walks in name order, merged
/// without duplicates: the shared workspaces (index `workspaces_shared_name`), the
/// workspaces of its own memberships (`memberships_principal_name`, which holds each
/// membership's workspace name), and those of its groups' (read and sorted: a token names
/// few groups, each in few workspaces), so that a member of 10,000 workspaces pays for a
/// page what a member of one does. Archived workspaces have an
/// index of their own (`workspaces_archived_name`); a `member` or label filter starts from
/// that filter's matches; every other listing walks the name index.
pub fn list_query(f: &ListFilter, after: Option<&str>, limit: u64) -> SelectStatement {
    let page = |cond: Condition| {
        let mut q = workspace::Entity::find().filter(cond);
        if let Some(after) = after {
            q = q.filter(workspace::Column::Name.gt(after));
        }
        q.order_by_asc(workspace::Column::Name)
            .limit(limit)
            .into_query()
    };
    match (&f.readable_by, &f.member, &f.member_group) {
        (Some(reader), None, None) => {
            let shared = page(filters(f).add(Expr::cust(SHARED)));
            let mut walks = vec![("shared", shared)];
            walks.push((
                "own",
                through_memberships(f, Some(&reader.subject), &[], after, limit),
            ));
            if !reader.groups.is_empty() {
                walks.push((
                    "groups",
                    through_memberships(f, None, &reader.groups, after, limit),
                ));
            }
            let mut q = Query::select();
            for (i, (alias, walk)) in walks.into_iter().enumerate() {
                let walk = Query::select()
                    .column(Asterisk)
                    .from_subquery(walk, Alias::new(alias))
                    .to_owned();
                if i == 0 {
                    q = walk;
                } else {
                    // A workspace can come from several walks (a shared one the caller is
                    // a member of, one of its own and of a group's): listed once.
                    q.union(UnionType::Distinct, walk);
                }
            }
            q.order_by(Alias::new("name"), Order::Asc)
                .limit(limit)
                .to_owned()
        }
        _ => page(condition(f)),
    }
}

/// Up to `limit` workspaces matching `f`'s filters after the name `after`, in name order,
/// in which `subject` or one of `groups` holds a membership that has not ended. A subject's
/// is a walk of `memberships_principal_name` that stops at the page's end, each workspace
/// read by id; groups' are read and sorted, once each however many of the groups hold one
/// (repeats would use up the page's rows before the merge removes them).
fn through_memberships(
    f: &ListFilter,
    subject: Option<&str>,
    groups: &[String],
    after: Option<&str>,
    limit: u64,
) -> SelectStatement {
    let mut q = workspace::Entity::find().filter(filters(f)).into_query();
    q.inner_join(
        membership::Entity,
        Expr::col((membership::Entity, membership::Column::WorkspaceId))
            .equals((workspace::Entity, workspace::Column::Id)),
    )
    .cond_where(memberships::principals(subject, groups))
    .cond_where(memberships::active_at(f.now_us));
    if let Some(after) = after {
        q.and_where(membership::Column::WorkspaceName.gt(after));
    }
    if groups.is_empty() {
        // One membership per subject and workspace: no repeats.
        q.order_by(
            (membership::Entity, membership::Column::WorkspaceName),
            Order::Asc,
        );
    } else {
        q.distinct()
            .order_by((workspace::Entity, workspace::Column::Name), Order::Asc);
    }
    q.limit(limit).to_owned()
}

/// One page of workspaces ordered by name, after the name `after`, with up to `limit` rows.
pub(crate) async fn list<C: ConnectionTrait>(
    c: &C,
    f: &ListFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Workspace>, DbErr> {
    // On SQLite, where a statement costs two hand-overs between threads (see `packed`),
    // each workspace's resource counts come in the page's own statement, as a JSON object.
    // PostgreSQL runs such a subquery once per row, which cost it 2.3-2.9 times the CPU of
    // the page and one grouped query for the counts (`benches/RESULTS.md`).
    if c.get_database_backend() != DbBackend::Sqlite {
        let rows =
            super::packed::all::<workspace::Entity, _>(c, &list_query(f, after, limit)).await?;
        let list = rows.into_iter().map(to_domain).collect::<Result<_, _>>()?;
        return with_counts(c, list).await;
    }
    let counts = "(SELECT json_group_object(kind, n) FROM (SELECT kind, COUNT(*) AS n \
                  FROM resources WHERE resources.workspace_id = page.id GROUP BY kind))";
    let page = Alias::new("page");
    let q = Query::select()
        .column((page.clone(), Asterisk))
        .expr_as(Expr::cust(counts), Alias::new("resource_counts"))
        .from_subquery(list_query(f, after, limit), page.clone())
        .order_by((page, Alias::new("name")), Order::Asc)
        .to_owned();
    let rows = super::packed::all_with::<workspace::Entity, _>(c, &q, &["resource_counts"]).await?;
    rows.into_iter()
        .map(|(m, extra)| {
            let counts = extra.first().cloned().flatten().unwrap_or_default();
            let resource_counts = serde_json::from_str(&counts)
                .map_err(|_| super::corrupt("resource counts", &counts))?;
            Ok(Workspace {
                resource_counts,
                ..to_domain(m)?
            })
        })
        .collect()
}

/// The query of how many workspaces match `f`, built so that its cost does not grow with
/// the table: the shared (or, for platform callers, all) workspaces are summed from
/// `workspace_counts`, plus the caller's own private ones through its memberships; a
/// `member` or label filter counts its matches from that filter's index.
pub fn count_query(f: &ListFilter) -> SelectStatement {
    if f.member.is_some() || f.member_group.is_some() || !f.labels.is_empty() {
        return workspace::Entity::find()
            .filter(condition(f))
            .select_only()
            .column_as(Expr::cust("COUNT(*)"), "n")
            .into_query();
    }
    let mut counted = Query::select()
        .expr(Expr::cust("CAST(COALESCE(SUM(n), 0) AS BIGINT)"))
        .from(workspace_count::Entity)
        .to_owned();
    if let Some(state) = f.state {
        counted.and_where(workspace_count::Column::State.eq(state.as_str()));
    }
    let Some(reader) = &f.readable_by else {
        return counted;
    };
    let private = Visibility::Private.as_str();
    counted.and_where(workspace_count::Column::Visibility.ne(private));
    let own = Query::select()
        .expr(Expr::cust("COUNT(*)"))
        .from(workspace::Entity)
        .cond_where(
            filters(f)
                .add(workspace::Column::Visibility.eq(private))
                .add(workspace::Column::Id.in_subquery(readable_ids(reader, f.now_us))),
        )
        .to_owned();
    Query::select()
        .expr(
            Expr::SubQuery(None, Box::new(counted.into_sub_query_statement())).add(Expr::SubQuery(
                None,
                Box::new(own.into_sub_query_statement()),
            )),
        )
        .to_owned()
}

/// How many workspaces match `f` (see `count_query`).
pub(crate) async fn count_matching<C: ConnectionTrait>(
    c: &C,
    f: &ListFilter,
) -> Result<u64, DbErr> {
    let stmt = c.get_database_backend().build(&count_query(f));
    let n: i64 = match c.query_one_raw(stmt).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    u64::try_from(n).map_err(|_| {
        DbErr::Custom(format!(
            "workspace_counts adds up to {n}: the table has been changed by hand"
        ))
    })
}
