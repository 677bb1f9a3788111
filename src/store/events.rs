//! The change history: events written in the transaction of the change they record, and
//! read in revision order.
//!
//! How revisions follow commit order on every replica, without holes: a revision is given
//! only to an event whose change has committed, by a step that holds the one row of
//! `event_log` locked while it numbers on from that row's `latest`. A reader that sees
//! revision R therefore sees every revision below R (or learns from `pruned` that they were
//! pruned); numbers handed out before commit, as by a PostgreSQL sequence, would let a reader
//! see 11 committed while 10 is still in flight.
//!
//! - On SQLite, whose one writer holds the database's lock until it commits, the writing
//!   transaction numbers its own event as it inserts it (a trigger moves `latest`).
//! - On PostgreSQL most changes write their event into `pending_events` within one of their
//!   own statements (`change.rs`) and commit concurrently with the others. An event written
//!   on its own at commit ([`append`]) takes the counter in that statement when it finds it
//!   free and no event pending, numbers itself and holds the counter until it commits; one
//!   that finds it taken, or events pending, does not wait but is queued the same way (its
//!   replica's writers then queue their events without trying for the counter for a short
//!   while, and while their own queued events wait, see `Passes::queue_at_once` in
//!   `store/mod.rs`). A numbering pass ([`sequence`]) moves every committed pending event
//!   into `events` under the counter's lock, in the order they were written. A writer that
//!   queued answers at once and wakes its replica's numbering task, which runs one pass at
//!   a time, each for every change committed before it began; a reader of the history waits
//!   for a pass while events are pending, so it sees every change acknowledged before it
//!   asked; and every replica sweeps what a crashed writer left. A change that saw
//!   another's rows wrote its event after that one committed, so dependent changes are
//!   numbered in their commit order (a writer numbers its own only when no event it could
//!   have seen is still pending); only changes that ran at once without seeing each other
//!   may be numbered in the order they wrote their events rather than the order their
//!   commits finished. Event times are the database's clock when the event was written,
//!   raised where needed (`latest_time_us`) so that they never go back as revisions go up.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, Value,
};

use super::corrupt;
use crate::domain::model::{Event, EventKind, EventObject, now};

/// An event to append: everything but its revision and time, which the append assigns.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    /// What kind of change.
    pub(crate) kind: EventKind,
    /// Name of the workspace changed.
    pub(crate) workspace: String,
    /// Its id.
    pub(crate) workspace_id: String,
    /// Subject of the caller; empty for the server.
    pub(crate) actor: String,
    /// The call's request id.
    pub(crate) request_id: String,
    /// The RPC.
    pub(crate) method: String,
    /// The changed object.
    pub(crate) object: EventObject,
}

/// Writes `e` in the transaction `tx`, as its last statement before the commit (for an
/// event that no statement of its change carried, see `change.rs`), and returns its
/// revision when it has one already: on PostgreSQL when no one holds the counter and no
/// event is pending, and this transaction then holds the counter until it
/// commits (so such a writer alone pays no pass). Otherwise the event waits in
/// `pending_events` for [`sequence`] (`None`), as it does at once, without trying for the
/// counter, when `queue` is set on PostgreSQL: under concurrent writes the counter is
/// nearly always taken, and the statement that tries for it (and checks for pending events)
/// cost PostgreSQL about 1.6 times the plain insert (`pgbench`, 8 clients: 4,039 against
/// 6,374 writes a second).
pub(crate) async fn append<C: ConnectionTrait>(
    tx: &C,
    e: &NewEvent,
    queue: bool,
) -> Result<Option<i64>, DbErr> {
    let backend = tx.get_database_backend();
    if backend != DbBackend::Postgres {
        // Numbered as a carried event is (the view's trigger, m0010); the store counts it.
        tx.execute_raw(Statement::from_sql_and_values(
            backend,
            RECORD_SQLITE,
            record_values(e)?,
        ))
        .await?;
        return Ok(None);
    }
    let values = queue_values(e)?;
    if queue {
        tx.execute_raw(Statement::from_sql_and_values(
            backend,
            queue_insert(1),
            values,
        ))
        .await?;
        return Ok(None);
    }
    // Numbered here only when no event is pending: every change this transaction saw
    // committed before this statement's snapshot, so is numbered already, and the event
    // can take the next revision. Otherwise it is queued, without waiting for the lock.
    // The queue is read through its index on `seq` here and wherever it is only looked
    // into: its table keeps the pages of its longest backlog (vacuumed without
    // truncating, see `vacuum.rs`), and a scan of the table reads them all each time.
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            "WITH counter AS (SELECT latest, latest_time_us FROM event_log WHERE id = 1 \
             AND (SELECT seq FROM pending_events ORDER BY seq LIMIT 1) IS NULL \
             FOR UPDATE SKIP LOCKED), \
             queued AS (INSERT INTO pending_events (time_us, kind, workspace, \
             workspace_id, actor, request_id, method, object) SELECT \
             (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT, \
             $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS (SELECT 1 FROM counter)), \
             moved_on AS (UPDATE event_log SET latest = counter.latest + 1, \
             latest_time_us = GREATEST(counter.latest_time_us, \
             (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT) \
             FROM counter WHERE event_log.id = 1 \
             RETURNING event_log.latest, event_log.latest_time_us), \
             inserted AS (INSERT INTO events (revision, time_us, kind, workspace, \
             workspace_id, actor, request_id, method, object) SELECT latest, \
             latest_time_us, $1, $2, $3, $4, $5, $6, $7 FROM moved_on RETURNING revision) \
             SELECT (SELECT revision FROM inserted) AS revision",
            values,
        ))
        .await?
        .ok_or_else(|| corrupt("event log", "no answer from the append"))?;
    row.try_get("", "revision")
}

/// PostgreSQL: the insert that queues an event for a numbering pass, its values bound from
/// placeholder `$first` on (see [`queue_values`]), so that it can also ride in another
/// statement (`change.rs`).
pub(crate) fn queue_insert(first: usize) -> String {
    let p: Vec<String> = (first..first + 7).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO pending_events (time_us, kind, workspace, workspace_id, actor, \
         request_id, method, object) VALUES \
         ((EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT, {})",
        p.join(", ")
    )
}

/// The values of `e` for [`queue_insert`] and the append, in their order.
pub(crate) fn queue_values(e: &NewEvent) -> Result<Vec<Value>, DbErr> {
    let object = serde_json::to_string(&e.object)
        .map_err(|err| DbErr::Custom(format!("an event's object did not encode: {err}")))?;
    Ok(vec![
        e.kind.as_str().into(),
        e.workspace.as_str().into(),
        e.workspace_id.as_str().into(),
        e.actor.as_str().into(),
        e.request_id.as_str().into(),
        e.method.as_str().into(),
        object.into(),
    ])
}

/// SQLite: the insert that numbers an event in the same call as its change's statement
/// (see `change.rs`), its values from [`record_values`].
pub(crate) const RECORD_SQLITE: &str = "INSERT INTO recorded_events (time_us, kind, \
     workspace, workspace_id, actor, request_id, method, object) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

/// The values of `e` for [`RECORD_SQLITE`]: its time (now), then [`queue_values`].
pub(crate) fn record_values(e: &NewEvent) -> Result<Vec<Value>, DbErr> {
    let mut values = vec![now().timestamp_micros().into()];
    values.extend(queue_values(e)?);
    Ok(values)
}

/// Most events one numbering pass moves, so that a backlog (after an outage, say) is
/// numbered in transactions of bounded size.
const PASS_EVENTS: i64 = 10_000;

/// PostgreSQL: gives revisions to every pending event whose change has committed, oldest
/// first, and returns the highest committed revision. See the module's comment; a pass is
/// one statement, the function `number_pending_events` (migration m0008), which takes the
/// counter's lock and then numbers what it sees pending.
pub(crate) async fn sequence(db: &DatabaseConnection) -> Result<i64, DbErr> {
    loop {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT top_revision, numbered FROM number_pending_events($1)",
                [PASS_EVENTS.into()],
            ))
            .await?
            .ok_or_else(|| corrupt("event log", "no answer from numbering"))?;
        let latest: i64 = row.try_get("", "top_revision")?;
        let moved: i64 = row.try_get("", "numbered")?;
        if moved < PASS_EVENTS {
            return Ok(latest);
        }
    }
}

/// PostgreSQL: whether any event waits for a revision.
pub(crate) async fn pending<C: ConnectionTrait>(c: &C) -> Result<bool, DbErr> {
    let row = c
        .query_one_raw(Statement::from_string(
            c.get_database_backend(),
            "SELECT (SELECT seq FROM pending_events ORDER BY seq LIMIT 1) IS NOT NULL AS pending",
        ))
        .await?
        .ok_or_else(|| corrupt("pending events", "no answer"))?;
    row.try_get("", "pending")
}

/// Which events a reader asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    /// Only events of workspaces of this name.
    pub(crate) workspace: Option<String>,
    /// Only events of the workspace with this id (a workspace's own members do not see the
    /// history of an earlier workspace of the same name).
    pub(crate) workspace_id: Option<String>,
    /// Only these kinds; empty for all.
    pub(crate) kinds: Vec<EventKind>,
}

impl Filter {
    /// Whether every event matches: then revisions and events are one count.
    pub(crate) fn matches_all(&self) -> bool {
        self.workspace.is_none() && self.workspace_id.is_none() && self.kinds.is_empty()
    }
}

/// Events read at one moment, with where the history stood at that moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Batch {
    /// The highest committed revision.
    pub(crate) latest: i64,
    /// The highest pruned revision: events at or below it are gone.
    pub(crate) pruned: i64,
    /// How far the read went: it holds every event asked for up to this revision. Below
    /// `latest` when it filled its limit, or stopped at the end of its window.
    pub(crate) reached: i64,
    /// The events asked for, in revision order.
    pub(crate) events: Vec<Event>,
}

impl Batch {
    /// Whether events after the read's end had committed when it read: the reader goes on
    /// at once, from `reached`, rather than wait for a commit.
    pub(crate) fn more(&self) -> bool {
        self.reached < self.latest
    }
}

/// Up to `limit` events of `f` with revisions above `after`, in revision order, read in one
/// statement together with the counter, so that `latest` and `pruned` describe the same
/// moment as the events (one snapshot on both databases).
///
/// The statement looks at `window` events at most, matching or not: those of the named
/// workspace (through its index) or, for every workspace, the revisions after
/// `max(after, pruned)`. A filter that matches none of tens of millions of events would
/// otherwise read them all in one statement, past any deadline; bounded, it answers in
/// milliseconds with how far it went (`reached`), and its reader goes on from there.
pub(crate) async fn read<C: ConnectionTrait>(
    c: &C,
    f: &Filter,
    after: i64,
    limit: u64,
    window: u64,
) -> Result<Batch, DbErr> {
    let backend = c.get_database_backend();
    let window = window.clamp(1, i64::MAX as u64 / 4) as i64;
    let mut values: Vec<Value> = vec![after.into(), (limit.min(i64::MAX as u64) as i64).into()];
    let mut conditions = String::new();
    // Where the window ends. For every workspace, revisions have no holes above `pruned`,
    // so it is a sum (from at most `latest`, so that no revision a client names overflows
    // it). For one workspace it is its `window`-th event after `after`, or its last: a walk
    // of its index, about 2 ms for 10,000 events on PostgreSQL, needed only when some of
    // its events may not match (else the `LIMIT` bounds the read). The walk is paid even
    // when the read fills early, so where only the id may not match (an earlier workspace
    // of the same name), the read of nearly every page, it is kept short.
    let upto = if let Some(name) = &f.workspace {
        values.push(name.as_str().into());
        conditions.push_str(&format!(" AND workspace = ${}", values.len()));
        if f.kinds.is_empty() && f.workspace_id.is_none() {
            "latest".to_owned()
        } else {
            let walk = if f.kinds.is_empty() {
                let short = i64::try_from(limit.saturating_mul(10)).unwrap_or(i64::MAX);
                window.min(short.max(1))
            } else {
                window
            };
            values.push((walk - 1).into());
            format!(
                "COALESCE((SELECT revision FROM events WHERE workspace = ${} AND revision > $1 \
                 ORDER BY revision LIMIT 1 OFFSET ${}), latest)",
                values.len() - 1,
                values.len()
            )
        }
    } else {
        values.push(window.into());
        let (least, greatest) = match backend {
            DbBackend::Sqlite => ("MIN", "MAX"),
            _ => ("LEAST", "GREATEST"),
        };
        format!(
            "{least}({greatest}($1, pruned), latest) + ${}",
            values.len()
        )
    };
    if let Some(id) = &f.workspace_id {
        values.push(id.as_str().into());
        conditions.push_str(&format!(" AND workspace_id = ${}", values.len()));
    }
    if !f.kinds.is_empty() {
        let start = values.len();
        values.extend(f.kinds.iter().map(|k| Value::from(k.as_str())));
        let marks: Vec<String> = (start + 1..=values.len())
            .map(|i| format!("${i}"))
            .collect();
        conditions.push_str(&format!(" AND kind IN ({})", marks.join(", ")));
    }
    // The counter's row and the window's end first (part 0), then the events (part 1).
    let sql = format!(
        "WITH w AS (SELECT latest, pruned, {upto} AS upto FROM event_log WHERE id = 1) \
         SELECT 0 AS part, latest AS revision, pruned AS time_us, upto, '' AS kind, \
         '' AS workspace, '' AS workspace_id, '' AS actor, '' AS request_id, '' AS method, \
         '' AS object FROM w \
         UNION ALL SELECT * FROM (SELECT 1 AS part, revision, time_us, 0 AS upto, kind, \
         workspace, workspace_id, actor, request_id, method, object FROM events \
         WHERE revision > $1 AND revision <= (SELECT upto FROM w){conditions} \
         ORDER BY revision LIMIT $2) AS e"
    );
    let rows = c
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut batch = Batch::default();
    let mut upto = after;
    for row in &rows {
        let part: i32 = row.try_get("", "part")?;
        if part == 0 {
            batch.latest = row.try_get("", "revision")?;
            batch.pruned = row.try_get("", "time_us")?;
            upto = row.try_get("", "upto")?;
        } else {
            batch.events.push(to_event(row)?);
        }
    }
    batch.events.sort_by_key(|e| e.revision);
    batch.reached = match batch.events.last() {
        Some(last) if batch.events.len() as u64 >= limit => last.revision,
        _ => upto.min(batch.latest).max(after),
    };
    Ok(batch)
}

fn to_event(row: &QueryResult) -> Result<Event, DbErr> {
    let kind: String = row.try_get("", "kind")?;
    let time_us: i64 = row.try_get("", "time_us")?;
    let object: String = row.try_get("", "object")?;
    Ok(Event {
        revision: row.try_get("", "revision")?,
        time: chrono::DateTime::from_timestamp_micros(time_us)
            .ok_or_else(|| corrupt("event time", &time_us.to_string()))?,
        kind: EventKind::from_db(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
        workspace: row.try_get("", "workspace")?,
        workspace_id: row.try_get("", "workspace_id")?,
        actor: row.try_get("", "actor")?,
        request_id: row.try_get("", "request_id")?,
        method: row.try_get("", "method")?,
        object: serde_json::from_str(&object).map_err(|_| {
            corrupt(
                "event object",
                &object.chars().take(200).collect::<String>(),
            )
        })?,
    })
}

/// The highest committed revision.
pub(crate) async fn latest<C: ConnectionTrait>(c: &C) -> Result<i64, DbErr> {
    let row = c
        .query_one_raw(Statement::from_string(
            c.get_database_backend(),
            "SELECT latest FROM event_log WHERE id = 1",
        ))
        .await?
        .ok_or_else(|| corrupt("event log", "no counter row"))?;
    row.try_get("", "latest")
}

/// The highest revision of the oldest events, at most `chunk` of them, that all committed
/// before `cutoff_us`: the next prefix of the history to prune. `None` when the oldest event
/// kept is younger. Walks the key, so it costs what it finds, without an index on time.
pub(crate) async fn prunable<C: ConnectionTrait>(
    c: &C,
    cutoff_us: i64,
    chunk: u64,
) -> Result<Option<i64>, DbErr> {
    let rows = c
        .query_all_raw(Statement::from_sql_and_values(
            c.get_database_backend(),
            "SELECT revision, time_us FROM events ORDER BY revision LIMIT $1",
            [(chunk.min(i64::MAX as u64) as i64).into()],
        ))
        .await?;
    let mut upto = None;
    for row in &rows {
        let time_us: i64 = row.try_get("", "time_us")?;
        if time_us >= cutoff_us {
            break;
        }
        upto = Some(row.try_get::<i64>("", "revision")?);
    }
    Ok(upto)
}

/// Deletes the events up to `upto` and records that they are gone, in `tx`. The counter's
/// row is updated last, so that writers wait for it only while this commits.
pub(crate) async fn prune<C: ConnectionTrait>(tx: &C, upto: i64) -> Result<u64, DbErr> {
    let backend = tx.get_database_backend();
    let deleted = tx
        .execute_raw(Statement::from_sql_and_values(
            backend,
            "DELETE FROM events WHERE revision <= $1",
            [upto.into()],
        ))
        .await?
        .rows_affected();
    tx.execute_raw(Statement::from_sql_and_values(
        backend,
        "UPDATE event_log SET pruned = $1 WHERE id = 1 AND pruned < $1",
        [upto.into()],
    ))
    .await?;
    Ok(deleted)
}

impl Filter {
    /// Whether `e` is one of the events asked for.
    pub(crate) fn matches(&self, e: &Event) -> bool {
        self.workspace.as_ref().is_none_or(|w| *w == e.workspace)
            && self
                .workspace_id
                .as_ref()
                .is_none_or(|id| *id == e.workspace_id)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
    }
}

/// Most events the tail holds.
const TAIL_EVENTS: usize = 10_000;
/// Most bytes (as `EventObject::approx_bytes` counts them) the tail holds.
const TAIL_BYTES: usize = 16 << 20;
/// Events read at once into the tail.
const TAIL_READ: u64 = 1_000;

/// The newest events of the whole deployment, read once from the database for every watch
/// on this replica: a commit wakes every watch, and without it each would query the
/// database for itself. Holds every event of `(lo, hi]`, in order (revisions have no holes).
#[derive(Debug, Default)]
pub(crate) struct Tail {
    state: std::sync::Mutex<TailState>,
    /// One watch at a time reads for all.
    filling: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct TailState {
    /// Whether it follows the history yet: it starts at the revision of its first fill.
    started: bool,
    lo: i64,
    hi: i64,
    events: std::collections::VecDeque<Event>,
    bytes: usize,
}

impl TailState {
    fn push(&mut self, e: Event) {
        self.bytes += e.object.approx_bytes();
        self.hi = e.revision;
        self.events.push_back(e);
        while self.events.len() > TAIL_EVENTS || self.bytes > TAIL_BYTES {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.bytes -= old.object.approx_bytes();
            self.lo = old.revision;
        }
    }

    /// Starts again at `at`, empty.
    fn restart(&mut self, at: i64) {
        self.events.clear();
        self.bytes = 0;
        self.lo = at;
        self.hi = at;
        self.started = true;
    }
}

impl Tail {
    /// Reads the events up to `target` (a revision known committed) into the tail, unless
    /// another watch did.
    pub(crate) async fn fill<C: ConnectionTrait>(&self, c: &C, target: i64) -> Result<(), DbErr> {
        let _one = self.filling.lock().await;
        let mut hi = {
            let mut st = self.lock();
            if !st.started {
                st.restart(target);
            }
            st.hi
        };
        while hi < target {
            let batch = read(c, &Filter::default(), hi, TAIL_READ, TAIL_READ).await?;
            let mut st = self.lock();
            if batch.pruned > hi {
                // Pruned past the tail while nobody watched: start after what is gone.
                st.restart(batch.pruned);
            }
            let full = batch.events.len() as u64 >= TAIL_READ;
            for e in batch.events {
                if e.revision != st.hi + 1 {
                    st.restart(e.revision - 1);
                }
                st.push(e);
            }
            hi = st.hi;
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// Up to `limit` events of `f` after `after`, from the tail, when it holds every event
    /// after `after`; the batch's `latest` is the newest it holds.
    pub(crate) fn take(&self, f: &Filter, after: i64, limit: u64) -> Option<Batch> {
        let st = self.lock();
        if !st.started || after < st.lo {
            return None;
        }
        let skip = usize::try_from(after - st.lo).unwrap_or(usize::MAX);
        let mut batch = Batch {
            latest: st.hi.max(after),
            reached: st.hi.max(after),
            ..Batch::default()
        };
        for e in st.events.iter().skip(skip) {
            if f.matches(e) {
                batch.events.push(e.clone());
                if batch.events.len() as u64 >= limit {
                    batch.reached = e.revision;
                    break;
                }
            }
        }
        Some(batch)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TailState> {
        // A panic while holding it leaves whole events only: the state stays usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Database;

    use super::*;
    use crate::domain::model::{Resource, now};

    /// A history of revisions 11..=40 (1..=10 pruned): workspace `a` on every third, `b`
    /// on the rest; every fifth is a removal.
    async fn history() -> DatabaseConnection {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared(
            "CREATE TABLE events (revision BIGINT PRIMARY KEY, time_us BIGINT, kind TEXT, \
             workspace TEXT, workspace_id TEXT, actor TEXT, request_id TEXT, method TEXT, \
             object TEXT); \
             CREATE TABLE event_log (id INTEGER PRIMARY KEY, latest BIGINT, pruned BIGINT); \
             INSERT INTO event_log VALUES (1, 40, 10);",
        )
        .await
        .unwrap();
        for r in 11..=40 {
            let mut e = event(r, if r % 3 == 0 { "a" } else { "b" });
            if r % 5 == 0 {
                e.kind = EventKind::MemberRemoved;
            }
            db.execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO events VALUES ($1, $2, $3, $4, $5, '', '', '', $6)",
                [
                    r.into(),
                    e.time.timestamp_micros().into(),
                    e.kind.as_str().into(),
                    e.workspace.as_str().into(),
                    e.workspace_id.as_str().into(),
                    serde_json::to_string(&e.object).unwrap().into(),
                ],
            ))
            .await
            .unwrap();
        }
        db
    }

    fn revisions(b: &Batch) -> Vec<i64> {
        b.events.iter().map(|e| e.revision).collect()
    }

    #[tokio::test]
    async fn a_read_looks_at_one_window_and_says_how_far_it_went() {
        let db = history().await;
        let removals = Filter {
            kinds: vec![EventKind::MemberRemoved],
            ..Filter::default()
        };
        // Every workspace: the window starts after what is pruned.
        let b = read(&db, &removals, 0, 100, 7).await.unwrap();
        assert_eq!(
            (revisions(&b), b.reached, b.latest, b.pruned),
            (vec![15], 17, 40, 10)
        );
        assert!(b.more());
        let b = read(&db, &removals, 17, 100, 7).await.unwrap();
        assert_eq!((revisions(&b), b.reached), (vec![20], 24));
        // A full batch reached its last event; the last window reaches the latest.
        let b = read(&db, &removals, 24, 1, 100).await.unwrap();
        assert_eq!((revisions(&b), b.reached), (vec![25], 25));
        let b = read(&db, &removals, 25, 100, 100).await.unwrap();
        assert_eq!((revisions(&b), b.reached), (vec![30, 35, 40], 40));
        assert!(!b.more());
        // One workspace: the window counts its events (a's are 12, 15, 18, ...).
        let a_removals = Filter {
            workspace: Some("a".into()),
            ..removals.clone()
        };
        let b = read(&db, &a_removals, 0, 100, 3).await.unwrap();
        assert_eq!((revisions(&b), b.reached), (vec![15], 18));
        let b = read(&db, &a_removals, 18, 100, 3).await.unwrap();
        assert_eq!((revisions(&b), b.reached), (vec![], 27));
        let b = read(&db, &a_removals, 27, 100, 3).await.unwrap();
        assert_eq!((revisions(&b), b.reached), (vec![30], 36));
        // Fewer than a window left: the read goes to the latest.
        let b = read(&db, &a_removals, 36, 100, 3).await.unwrap();
        assert_eq!((revisions(&b), b.reached), (vec![], 40));
        assert!(!b.more());
        // Every event of a workspace matches: its LIMIT bounds the read, not a window.
        let a = Filter {
            workspace: Some("a".into()),
            ..Filter::default()
        };
        let b = read(&db, &a, 0, 100, 1).await.unwrap();
        assert_eq!(b.events.len(), 10);
        assert_eq!(b.reached, 40);
        // Only the id may not match (a member's read): the walk is ten times the limit
        // (b's are 11, 13, 14, 16, 17, 19, 20, 22, 23, 25, ...).
        let earlier_b = Filter {
            workspace: Some("b".into()),
            workspace_id: Some("a later b".into()),
            ..Filter::default()
        };
        let b = read(&db, &earlier_b, 0, 1, 100).await.unwrap();
        assert_eq!((revisions(&b), b.reached), (vec![], 25));
        // No revision a client names overflows the window.
        let b = read(&db, &removals, i64::MAX, 100, 100).await.unwrap();
        assert_eq!(
            (revisions(&b), b.reached, b.more()),
            (vec![], i64::MAX, false)
        );
    }

    fn event(revision: i64, workspace: &str) -> Event {
        Event {
            revision,
            time: now(),
            kind: EventKind::ResourceRegistered,
            workspace: workspace.into(),
            workspace_id: format!("id-{workspace}"),
            actor: String::new(),
            request_id: String::new(),
            method: String::new(),
            object: EventObject::Resource(Resource {
                workspace: workspace.into(),
                kind: "model".into(),
                resource_id: "m".into(),
                registered_by: String::new(),
                create_time: now(),
            }),
        }
    }

    #[test]
    fn the_tail_serves_only_what_it_holds_whole_and_forgets_the_oldest() {
        let tail = Tail::default();
        assert!(
            tail.take(&Filter::default(), 0, 10).is_none(),
            "not started"
        );
        {
            let mut st = tail.lock();
            st.restart(5);
            for r in 6..=TAIL_EVENTS as i64 + 10 {
                st.push(event(r, if r % 2 == 0 { "even" } else { "odd" }));
            }
            // The oldest five went: it holds (10, hi].
            assert_eq!(st.lo, 10);
            assert_eq!(st.events.len(), TAIL_EVENTS);
        }
        assert!(tail.take(&Filter::default(), 9, 10).is_none(), "10 is gone");
        let odd = Filter {
            workspace: Some("odd".into()),
            ..Filter::default()
        };
        let b = tail.take(&odd, 10, 3).unwrap();
        let revisions: Vec<i64> = b.events.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, [11, 13, 15]);
        let hi = TAIL_EVENTS as i64 + 10;
        assert_eq!(b.reached, 15, "a full batch looked as far as its last");
        assert_eq!(b.latest, hi);
        assert!(b.more());
        let b = tail.take(&odd, hi - 3, 10).unwrap();
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.reached, hi, "the rest looked up to the newest");
        assert!(!b.more());
    }
}
