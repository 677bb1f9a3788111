//! Persistence: the connection (SQLite or PostgreSQL), migrations, and the queries, each
//! scoped by workspace. Nothing here knows of protobuf or of who may do what.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, QuerySelect, QueryTrait, Select, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
    sea_query::{Expr, SelectStatement},
};

use self::cache::{AccessCache, Found};
pub(crate) use self::change::Change;
use self::change::Recorded;
pub(crate) use self::together::Inserts;
use crate::domain::model::{GpuUsage, Holdings, Workspace, now};
use sea_orm_migration::MigratorTrait;
use std::collections::{BTreeMap, HashMap};

pub mod cache;
mod change;
pub mod committing;
pub mod create_requests;
pub mod entity;
pub mod events;
mod flight;
mod follow;
pub mod gpu_requests;
mod lock;
pub mod memberships;
mod migration;
mod packed;
pub mod policies;
pub mod principals;
pub mod resources;
mod sweep;
mod together;
mod usage;
mod vacuum;
pub mod workspaces;

pub use migration::Migrator;
pub use vacuum::STATISTICS_TARGET;

/// A stored value that no version of this server writes: the database was changed by hand.
pub(crate) fn corrupt(what: &str, value: &str) -> DbErr {
    DbErr::Type(format!("unexpected {what} in the database: {value:?}"))
}

/// The number of rows `q` matches, as a bare `SELECT COUNT(*) … WHERE …` that the database
/// can answer from an index (SeaORM's paginator counts over a subquery of every column).
pub(crate) async fn count<E: EntityTrait, C: ConnectionTrait>(
    c: &C,
    q: Select<E>,
) -> Result<u64, DbErr> {
    count_of(c, &count_query(q)).await
}

/// The number that a [`count_query`] answers.
pub(crate) async fn count_of<C: ConnectionTrait>(c: &C, q: &SelectStatement) -> Result<u64, DbErr> {
    let row = c.query_one_raw(c.get_database_backend().build(q)).await?;
    let n: i64 = match row {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The statement of [`count`].
pub(crate) fn count_query<E: EntityTrait>(q: Select<E>) -> SelectStatement {
    q.select_only()
        .column_as(Expr::cust("COUNT(*)"), "n")
        .into_query()
}

/// Connections in a PostgreSQL replica's pool.
pub const PG_POOL: usize = 16;
/// Calls a PostgreSQL replica runs at once while overload lasts (see
/// [`Store::overload_places`]).
const PG_OVERLOAD_PLACES: usize = 6;
/// How long a request waits for a pooled connection before the database counts as
/// unavailable; well under the contract's 5 s, and under a call's deadline
/// ([`crate::telemetry::DEADLINE`]), so that a call that finds every connection taken is
/// answered by its own wait, not cut off by the deadline.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
const _: () = assert!(ACQUIRE_TIMEOUT.as_millis() < crate::telemetry::DEADLINE.as_millis());
/// The longest a statement on a pooled PostgreSQL connection waits for a lock
/// (`lock_timeout`, sent when each connection starts). A call is answered by its deadline
/// and then dropped, but a statement it already sent runs on in PostgreSQL, and sqlx gives
/// the connection back to the pool only once that statement ends: without a bound, a
/// session holding a lock for minutes would keep every connection that queued behind it,
/// and every later call would find the pool empty. Twice the deadline, so that a create
/// that had begun to commit still lands when the lock goes soon after its caller was
/// answered. Migrations wait as long as they must (`Store::migrate`).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
const _: () = assert!(LOCK_TIMEOUT.as_millis() >= 2 * crate::telemetry::DEADLINE.as_millis());
/// The longest a statement on a pooled PostgreSQL connection runs (`statement_timeout`,
/// sent when each connection starts), for the same reason as `LOCK_TIMEOUT`: a statement
/// that runs on after its call was dropped (a count over a very large table, a plan gone
/// bad) keeps its connection out of the pool until it ends. Longer than `LOCK_TIMEOUT`, so
/// that a wait for a lock ends by its own, named timeout. A call is answered by its
/// deadline long before. The replica's own work that may run long (migrations, vacuums and
/// analyses) lifts it; the change history is pruned, and ended leases and memberships are
/// swept, in chunks; readers of the history read it a window at a time
/// (`EventSettings::window`).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);
const _: () = assert!(STATEMENT_TIMEOUT.as_millis() > LOCK_TIMEOUT.as_millis());
/// The longest a pooled PostgreSQL session may sit inside a transaction without sending a
/// statement (`idle_in_transaction_session_timeout`, sent when each connection starts):
/// PostgreSQL then ends the session and frees its locks. A replica's transactions send their
/// statements back to back, so only a replica cut off (or stopped) mid-transaction idles
/// there; without the bound its locks, such as the change history's counter that every
/// replica numbers events under, would stay held until PostgreSQL's TCP gives up on it,
/// hours later, and every replica would answer UNAVAILABLE meanwhile.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = STATEMENT_TIMEOUT;
/// How often a PostgreSQL replica checks for events that a writer left without a revision.
const EVENT_SWEEP: Duration = Duration::from_millis(100);
/// How long a PostgreSQL replica gathers the events its writers queue before it numbers
/// them in one pass: writers never wait for it, and a pass costs about as much for one
/// event as for fifty (at 800 creates a second, passes 5 ms apart cost PostgreSQL 44 µs
/// an event). Watches learn of such events that much later; readers of the history run
/// their own pass.
const PASS_GATHER: Duration = Duration::from_millis(20);

/// On PostgreSQL, how long after a writer tried for the event counter in vain (taken by
/// another writer, or events pending) this replica's writers queue the events that no
/// statement carried without trying (see `events::append` and `Passes::queue_at_once`).
const QUEUE_FOR: Duration = Duration::from_millis(50);
/// How often SQLite's write-ahead log is copied into the database file (`checkpoint_wal`).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// How long SQLite waits for another writer's lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a PostgreSQL connection may have sat idle in the pool before it is pinged when
/// handed out. A ping is a round trip, and sqlx pings by default on every hand-out (besides
/// the ping with which it takes each connection back), which cost every statement outside
/// a transaction, and every transaction, one round trip more. A connection in use within
/// this span was found alive when it came back; one idle longer may have been closed by
/// the server or a proxy meanwhile.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The database, shared by every request.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// Where write transactions run. On SQLite a pool of one connection: writers then wait
    /// in the pool's fair line instead of SQLite's busy handler, whose sleeps (up to 100 ms
    /// between retries) made the slowest writes wait far longer than their turn. SQLite
    /// admits one writer at a time anyway, and one process per file. On PostgreSQL the
    /// same pool as `db`.
    writer: DatabaseConnection,
    /// Statements run so far, for the metrics (and the tests that bound queries per RPC).
    statements: Arc<AtomicU64>,
    /// This replica's view of workspaces and roles, for reads.
    cache: Arc<AccessCache>,
    /// GPU usage by workspace, on SQLite only (see `usage.rs`).
    usage: Arc<usage::UsageMemory>,
    /// On SQLite, this process's claim on the database file.
    claim: lock::FileClaim,
    /// The highest revision this replica knows committed, for the watches to wait on.
    revisions: Arc<tokio::sync::watch::Sender<i64>>,
    /// On SQLite, the highest revision committed as this process counts it: read from the
    /// database by `migrate`, then one more for each event committed since, for an event
    /// numbered in its change's statement comes back without its revision (see
    /// `change.rs`). Every commit of an event adds one after it committed, so the count
    /// never runs ahead of the database. -1 until `migrate`.
    sqlite_latest: Arc<AtomicI64>,
    /// Whether changes write events (see `EventSettings::record`).
    record_events: bool,
    /// The newest events, read once for every watch on this replica.
    tail: Arc<events::Tail>,
    /// On PostgreSQL, this replica's turns at numbering events (see `events::sequence`).
    passes: Arc<Passes>,
    /// Counts of workspaces under way, shared by the callers waiting for them.
    counts: Arc<flight::Flights<u64>>,
    /// Reads of GPU usage under way, by workspace id, likewise.
    usage_reads: Arc<flight::Flights<Option<GpuUsage>>>,
}

/// One numbering pass at a time on a replica, each covering every change that committed
/// before it began: the changes that commit meanwhile are numbered by the next pass together.
#[derive(Debug, Default)]
struct Passes {
    /// When a writer of this replica last tried for the counter in vain (taken, or events
    /// pending): for `QUEUE_FOR` after, writers queue their events at once.
    contended: std::sync::Mutex<Option<Instant>>,
    /// Events this replica's writers queued, counted after their commit, and how many of
    /// those a pass of this replica has numbered (it counts those queued before it began).
    /// While some are not numbered, a try for the counter would only find them pending.
    queued: AtomicU64,
    numbered: AtomicU64,
    /// Callers that asked for a pass so far.
    asked: AtomicU64,
    /// Callers covered by the passes done so far.
    covered: AtomicU64,
    /// Held while a pass runs.
    turn: tokio::sync::Mutex<()>,
    /// Wakes the replica's numbering task (`follow_events`).
    wake: tokio::sync::Notify,
}

impl Passes {
    /// Whether a writer should queue its event without trying for the counter: while this
    /// replica's own queued events wait for a pass (the try would find them pending), and
    /// for `QUEUE_FOR` after a try failed. Neither renews itself: a writer left alone tries
    /// again once its events are numbered and the span is over.
    fn queue_at_once(&self) -> bool {
        self.queued.load(Ordering::SeqCst) > self.numbered.load(Ordering::SeqCst)
            || self.contended_within(QUEUE_FOR)
    }

    /// A writer tried for the counter in vain just now.
    fn contended(&self) {
        if let Ok(mut at) = self.contended.lock() {
            *at = Some(Instant::now());
        }
    }

    /// Whether a writer tried for the counter in vain within `span`.
    fn contended_within(&self, span: Duration) -> bool {
        self.contended
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() < span)
    }
}

/// Whether `url` names a SQLite database (else PostgreSQL).
fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// How the pools for `url` connect, and what they check before handing out a connection.
fn connect_options(url: &str) -> ConnectOptions {
    let mut opt = ConnectOptions::new(url);
    let sqlite = is_sqlite(url);
    opt.max_connections(if sqlite { 8 } else { PG_POOL as u32 })
        .min_connections(1)
        .connect_timeout(ACQUIRE_TIMEOUT)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .sqlx_logging(false);
    if sqlite {
        // A SQLite connection is a file open in this process: nothing can close it
        // behind the pool's back, and a ping is one more hand-over to its worker thread.
        opt.test_before_acquire(false);
    } else {
        opt.test_before_acquire_if_idle_for(PING_IF_IDLE_FOR);
    }
    opt.map_sqlx_sqlite_opts(|o| {
        use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
        // WAL with synchronous=NORMAL keeps every committed write across a process
        // crash (kill -9); only a power loss can take the last commits.
        o.journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true)
            // A page cache of 512 KiB per connection instead of SQLite's 2 MB: the
            // operating system caches the file anyway, and nine full 2 MB caches made
            // the server's memory grow with the database for its first hour.
            .pragma("cache_size", "-512")
            // The log is copied into the file by `Store::checkpoint_wal`, beside the writer.
            // SQLite's own checkpoint, every 1,000 pages by default, runs in the commit that
            // crosses the mark, so one write in so many waited for it (p99 4.7 ms against
            // 1.5 ms for single writes); this one only bounds the log (40 MB) should the
            // background checkpoints fall behind.
            .pragma("wal_autocheckpoint", "10000")
    });
    opt.map_sqlx_postgres_opts(|o| {
        o.options([
            ("lock_timeout", format!("{}ms", LOCK_TIMEOUT.as_millis())),
            (
                "statement_timeout",
                format!("{}ms", STATEMENT_TIMEOUT.as_millis()),
            ),
            (
                "idle_in_transaction_session_timeout",
                format!("{}ms", IDLE_IN_TRANSACTION_TIMEOUT.as_millis()),
            ),
        ])
    });
    opt
}

impl Store {
    /// A migrated store on a SQLite file of its own, for unit tests; the file goes with the
    /// directory returned.
    #[cfg(test)]
    pub(crate) async fn scratch() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/scratch.db?mode=rwc", dir.path().display());
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        (store, dir)
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`). Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, DbErr> {
        let mut opt = connect_options(url);
        let sqlite = is_sqlite(url);
        let mut db = Database::connect(opt.clone()).await?;
        let claim = if sqlite {
            match lock::FileClaim::take(url) {
                Ok(claim) => claim,
                Err(e) => {
                    db.close().await.ok();
                    return Err(e);
                }
            }
        } else {
            lock::FileClaim::default()
        };
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        db.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        // An in-memory database is one per connection: its writes must use the same pool.
        let writer = if sqlite && !url.contains(":memory:") && !url.contains("mode=memory") {
            opt.max_connections(1).min_connections(1);
            let mut writer = Database::connect(opt).await?;
            let counter = statements.clone();
            writer.set_metric_callback(move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            });
            writer
        } else {
            db.clone()
        };
        // SQLite has no other replicas, so nothing can change behind this process's back;
        // on PostgreSQL the view waits for its follower (`follow_changes`).
        let cache = Arc::new(if sqlite {
            AccessCache::new()
        } else {
            AccessCache::confirmed_by_follower()
        });
        cache.set_enabled(sqlite);
        Ok(Store {
            db,
            writer,
            statements,
            cache,
            usage: Arc::new(usage::UsageMemory::new(sqlite)),
            claim,
            revisions: Arc::new(tokio::sync::watch::Sender::new(0)),
            sqlite_latest: Arc::new(AtomicI64::new(-1)),
            record_events: true,
            tail: Arc::default(),
            passes: Arc::default(),
            counts: Arc::default(),
            usage_reads: Arc::default(),
        })
    }

    /// This store, writing events with its changes or not (a benchmark's baseline).
    pub fn recording_events(mut self, record: bool) -> Store {
        self.record_events = record;
        if !record && self.backend() == DbBackend::Postgres {
            // No history for the view to follow: it serves as if this replica were the
            // database's only one (a benchmark's baseline runs one), so that the baseline's
            // reads cost what they cost with the history.
            let cache = AccessCache::new();
            cache.set_enabled(true);
            self.cache = Arc::new(cache);
        }
        self
    }

    /// Applies pending migrations in one transaction, so that replicas starting at once
    /// take turns: SQLite's `BEGIN IMMEDIATE` holds the write lock, and on PostgreSQL an
    /// advisory lock serializes them (its DDL is transactional too).
    pub async fn migrate(&self) -> Result<(), DbErr> {
        let tx = self.begin_immediate().await?;
        if self.backend() == DbBackend::Postgres {
            // A replica waits out another's migrations, and a migration the locks of the
            // calls that other replicas are serving, however long: not `LOCK_TIMEOUT`, and
            // a migration of a large table runs past `STATEMENT_TIMEOUT`.
            tx.execute_unprepared("SET LOCAL lock_timeout = 0").await?;
            tx.execute_unprepared("SET LOCAL statement_timeout = 0")
                .await?;
            tx.execute_unprepared("SELECT pg_advisory_xact_lock(7201050051)")
                .await?;
        }
        Migrator::up(&tx, None).await?;
        if self.backend() == DbBackend::Sqlite {
            // Under the write lock: no event commits meanwhile.
            let latest = events::latest(&tx).await?;
            self.sqlite_latest.store(latest, Ordering::SeqCst);
        }
        tx.commit().await
    }

    /// The database backend in use.
    pub(crate) fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The connection, for reads outside a transaction.
    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The connection for a single write outside a transaction, whole on its own: an
    /// idempotent upsert or a sweep, after which nothing in this process must follow. The
    /// call making it may still be dropped after it (see [`committing`]); a change that
    /// this process must learn of goes through [`Store::begin_write`] and [`Store::commit`].
    pub(crate) fn write_conn(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// Starts a transaction that changes workspaces, members, policies, resources or GPU
    /// requests, and records the change's event (`Change::record`); commit it with
    /// [`Store::commit`] or [`Store::commit_change`].
    pub(crate) async fn begin_write(&self) -> Result<Change, DbErr> {
        Ok(Change::new(
            self.begin_immediate().await?,
            self.record_events,
        ))
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that it never fails to upgrade a read lock with "database is
    /// locked"; PostgreSQL serializes writers with row locks (`SELECT … FOR UPDATE`).
    async fn begin_immediate(&self) -> Result<DatabaseTransaction, DbErr> {
        self.writer
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
    }

    /// The workspace `name` and the memberships of `subject` and of `groups` in it, from
    /// this replica's view unless `consistent` (or the view does not know them all yet),
    /// else from the database.
    pub(crate) async fn find_access(
        &self,
        name: &str,
        subject: &str,
        groups: &[String],
        consistent: bool,
    ) -> Result<Found, DbErr> {
        if !consistent && let Some(found) = self.cache.get(name, subject, groups) {
            return Ok(found);
        }
        let since = self.cache.generation();
        let found = workspaces::find_with_holdings(
            &self.db,
            name,
            subject,
            groups,
            workspaces::RowLock::None,
        )
        .await?
        .map(|(ws, held)| (Arc::new(ws), held));
        self.cache.put(since, name, subject, groups, &found);
        Ok(found)
    }

    /// `find_access` for the workspaces `names` at once, in their order: what the view
    /// knows, and one statement for all the rest. A batch of checks that misses the view
    /// (after a change, or while it awaits its confirmation) must not cost the database a
    /// statement per check: under load that multiplied a cold view's misses by the batch's
    /// size and ran the calls past their deadline.
    pub(crate) async fn find_access_many(
        &self,
        names: &[&str],
        subject: &str,
        groups: &[String],
        consistent: bool,
    ) -> Result<Vec<Found>, DbErr> {
        let found: Vec<Option<Found>> = names
            .iter()
            .map(|name| {
                (!consistent)
                    .then(|| self.cache.get(name, subject, groups))
                    .flatten()
            })
            .collect();
        let mut missing: Vec<&str> = names
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(name, _)| *name)
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let mut read: HashMap<&str, Found> = HashMap::with_capacity(missing.len());
        if !missing.is_empty() {
            let since = self.cache.generation();
            let mut rows: HashMap<String, (Arc<Workspace>, Holdings)> =
                workspaces::find_many_with_holdings(&self.db, &missing, subject, groups)
                    .await?
                    .into_iter()
                    .map(|(ws, held)| (ws.name.clone(), (Arc::new(ws), held)))
                    .collect();
            for name in missing {
                let answer = rows.remove(name);
                self.cache.put(since, name, subject, groups, &answer);
                read.insert(name, answer);
            }
        }
        Ok(names
            .iter()
            .zip(found)
            .map(|(name, f)| f.or_else(|| read.get(name).cloned()).unwrap_or_default())
            .collect())
    }

    /// How many calls run at once while overload lasts, unless `--min-in-flight` says: every
    /// place is then taken, and each beyond what keeps the database busy only makes every
    /// admitted call wait longer inside it. On SQLite, whose writes take turns on one
    /// connection, 4 (two cores' worth of reads). On PostgreSQL 6, well under the pool:
    /// CreateWorkspace at 4x what it sustains, with the server and the database sharing one
    /// core, had an admitted p99 of 11.5-15.1 ms with 6 (five runs on a quiet machine),
    /// against 13.4-14.1 ms with 8, 17.5 with 12 and 18.9-19.9 with 16 (and 15.5-17.8 with
    /// 4), admitting 11% fewer calls than 16 (`benches/RESULTS.md`; stalls make the p99
    /// noisier on a busy machine, while the median stays about half of 16's); and several
    /// replicas share one database.
    pub fn overload_places(&self) -> usize {
        if self.backend() == DbBackend::Postgres {
            PG_OVERLOAD_PLACES
        } else {
            4
        }
    }

    /// How many workspaces match `f`, from this replica's view when nothing at all changed
    /// since it last counted them, and no membership ended since.
    /// Callers that miss the view at once share one count (see `flight`).
    pub(crate) async fn count_workspaces(&self, f: &workspaces::ListFilter) -> Result<u64, DbErr> {
        let key = f.key();
        if let Some(n) = self.cache.total(&key, f.now_us) {
            return Ok(n);
        }
        self.counts
            .run(&key, || self.count_workspaces_now(f, &key))
            .await
    }

    async fn count_workspaces_now(
        &self,
        f: &workspaces::ListFilter,
        key: &str,
    ) -> Result<u64, DbErr> {
        let since = self.cache.generation();
        // Read before the count: a membership ending after this read was there to count
        // (the sweep, which deletes ended ones unannounced, cannot hide it), and one added
        // after it is a change, which keeps the count from being stored.
        let valid_until = if f.reads_memberships() {
            workspaces::next_membership_end(&self.db, f.now_us)
                .await?
                .unwrap_or(i64::MAX)
        } else {
            i64::MAX
        };
        let n = workspaces::count_matching(&self.db, f).await?;
        self.cache.put_total(since, key, n, valid_until);
        Ok(n)
    }

    /// The resource counts of `ws`, from this replica's view when it has them.
    pub(crate) async fn resource_counts(
        &self,
        ws: &Workspace,
    ) -> Result<Arc<BTreeMap<String, i64>>, DbErr> {
        if let Some(counts) = self.cache.counts(&ws.name, &ws.id) {
            return Ok(counts);
        }
        let since = self.cache.generation();
        let counts = Arc::new(
            resources::counts(&self.db, &[ws.id.as_str()])
                .await?
                .remove(&ws.id)
                .unwrap_or_default(),
        );
        self.cache
            .put_counts(since, &ws.name, &ws.id, counts.clone());
        Ok(counts)
    }

    /// The GPU usage of the workspace with id `workspace_id` now (`None` when it has no
    /// policy), remembered on SQLite until a change here or the end of its first lease.
    /// Callers that miss the memory share one read begun after they asked (see `flight`),
    /// which counts the leases active at the instant it begins.
    pub(crate) async fn gpu_usage(&self, workspace_id: &str) -> Result<Option<GpuUsage>, DbErr> {
        if let Some(usage) = self.usage.get(workspace_id, now().timestamp_micros()) {
            return Ok(Some(usage));
        }
        self.usage_reads
            .run(workspace_id, || async {
                let since = self.usage.generation();
                let Some(tally) = gpu_requests::usage(&self.db, workspace_id, now()).await? else {
                    return Ok(None);
                };
                let until = tally.next_end_us.unwrap_or(i64::MAX);
                self.usage.put(since, workspace_id, &tally.usage, until);
                Ok(Some(tally.usage))
            })
            .await
    }

    /// Tells this process's memory of GPU usage that the workspace's changed: call after
    /// the change committed.
    pub(crate) fn gpu_usage_changed(&self, workspace_id: &str) {
        self.usage.forget(workspace_id);
    }

    /// Commits a transaction that changed the workspace `name` or its members (see
    /// [`Store::commit`]), and tells this replica's view of it (which may also remember
    /// that no workspace had this name); the other replicas' views learn of it from the
    /// event (`follow_changes`).
    pub(crate) async fn commit_change(&self, tx: Change, name: &str) -> Result<(), DbErr> {
        self.commit(tx).await?;
        self.cache.invalidate(name);
        Ok(())
    }

    /// Commits a change with its recorded event, written now if no statement carried it
    /// (see `change.rs` and `events::append`), and wakes this replica's watches, or on
    /// PostgreSQL, when the event was queued for a revision, this replica's numbering:
    /// readers wait for it (`number_committed`), the writer does not.
    pub(crate) async fn commit(&self, change: Change) -> Result<(), DbErr> {
        committing::begin()?;
        let (tx, recorded) = change.finish();
        let revision = match &recorded {
            Recorded::Waiting(e) => {
                let queue = self.passes.queue_at_once();
                let revision = events::append(&tx, e, queue).await?;
                if revision.is_none() && !queue && self.backend() == DbBackend::Postgres {
                    self.passes.contended();
                }
                revision
            }
            Recorded::None | Recorded::Carried => None,
        };
        tx.commit().await?;
        match (revision, recorded) {
            (_, Recorded::None) => {}
            (_, _) if self.backend() == DbBackend::Sqlite => self.sqlite_committed().await,
            (Some(revision), _) => self.committed(revision),
            (None, _) => self.event_queued(),
        }
        Ok(())
    }

    /// PostgreSQL: a change committed with its event queued for a numbering pass; wakes
    /// this replica's numbering.
    fn event_queued(&self) {
        self.passes.queued.fetch_add(1, Ordering::SeqCst);
        self.passes.wake.notify_one();
    }

    /// SQLite: an event committed; wakes the watches with the count of revisions (see
    /// `sqlite_latest`), or without a count (a store that was not migrated), with the
    /// database's latest. The change is acknowledged whatever happens here.
    async fn sqlite_committed(&self) {
        let counted = self
            .sqlite_latest
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n >= 0).then_some(n + 1)
            });
        let latest = match counted {
            Ok(before) => before + 1,
            Err(_) => match events::latest(&self.db).await {
                Ok(latest) => latest,
                Err(e) => {
                    tracing::debug!("reading the latest revision failed: {}", describe(&e));
                    return;
                }
            },
        };
        self.committed(latest);
    }

    /// PostgreSQL: numbers the events of every change committed before this call, so that
    /// a reader of the history sees every change acknowledged before it asked (writers that
    /// found the counter taken answer before their events have revisions).
    pub(crate) async fn number_committed(&self) -> Result<(), DbErr> {
        if self.backend() == DbBackend::Postgres && events::pending(&self.db).await? {
            self.number_events().await?;
        }
        Ok(())
    }

    /// PostgreSQL: waits for a numbering pass that begins after this call, running it if
    /// no pass is running. A failed pass fails every caller waiting for it; its changes are
    /// committed, and the next pass numbers them.
    async fn number_events(&self) -> Result<(), DbErr> {
        let p = &self.passes;
        let ticket = p.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = p.turn.lock().await;
        if p.covered.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Every caller counted here asked after what it waits for committed, so before the
        // pass's snapshot.
        let covers = p.asked.load(Ordering::SeqCst);
        let queued = p.queued.load(Ordering::SeqCst);
        let latest = events::sequence(&self.db).await?;
        p.numbered.fetch_max(queued, Ordering::SeqCst);
        p.covered.fetch_max(covers, Ordering::SeqCst);
        self.committed(latest);
        Ok(())
    }

    /// Wakes the watches on this replica: `revision` committed.
    fn committed(&self, revision: i64) {
        self.revisions.send_if_modified(|latest| {
            let newer = revision > *latest;
            if newer {
                *latest = revision;
            }
            newer
        });
    }

    /// A receiver of the highest revision this replica knows committed: it changes at once
    /// for a commit on this replica, and for one on another when the follower next reads
    /// the history (every 20 ms, see `follow_changes`).
    pub(crate) fn revisions(&self) -> tokio::sync::watch::Receiver<i64> {
        self.revisions.subscribe()
    }

    /// Up to `limit` events of `f` after revision `after`, looking at `window` events at
    /// most (see `events::read`), with the history's bounds and how far it read.
    pub(crate) async fn read_events(
        &self,
        f: &events::Filter,
        after: i64,
        limit: u64,
        window: u64,
    ) -> Result<events::Batch, DbErr> {
        let batch = events::read(&self.db, f, after, limit, window).await?;
        self.committed(batch.latest);
        Ok(batch)
    }

    /// Up to `limit` events of `f` after `after` from the tail of newest events, when it
    /// holds every event after `after` (see `events::Tail`).
    pub(crate) fn tail_events(
        &self,
        f: &events::Filter,
        after: i64,
        limit: u64,
    ) -> Option<events::Batch> {
        self.tail.take(f, after, limit)
    }

    /// Reads the events up to revision `target` into the tail, once for every watch.
    pub(crate) async fn fill_tail(&self, target: i64) -> Result<(), DbErr> {
        self.tail.fill(&self.db, target).await
    }

    /// The highest committed revision.
    pub(crate) async fn latest_revision(&self) -> Result<i64, DbErr> {
        let latest = events::latest(&self.db).await?;
        self.committed(latest);
        Ok(latest)
    }

    /// On PostgreSQL: numbers the events this replica's writers queue, and every
    /// `EVENT_SWEEP` those a writer of any replica left queued (it crashed, or its pass
    /// failed). Runs until aborted.
    pub(crate) async fn follow_events(self) {
        if self.backend() != DbBackend::Postgres {
            return;
        }
        let mut tick = tokio::time::interval(EVENT_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // A writer of this replica queued its event: a pass numbers it and every
                // other committed since the last, so passes keep up with any write rate.
                _ = self.passes.wake.notified() => {
                    tokio::time::sleep(PASS_GATHER).await;
                    if let Err(e) = self.number_events().await {
                        tracing::warn!("numbering events failed: {}", describe(&e));
                    }
                    continue;
                }
                _ = tick.tick() => {}
            }
            if let Err(e) = self.number_committed().await {
                tracing::debug!("numbering what a writer left failed: {}", describe(&e));
            }
            // Watches hear of other replicas' commits from the follower (`follow.rs`).
            // While it has not been heard from (a stalled connection waits out its look's
            // timeout, then reconnects), they hear of them here instead, within a tick: the
            // contract's second for a watcher holds whatever the follower does.
            if !self.cache.serving()
                && let Err(e) = self.latest_revision().await
            {
                tracing::debug!("reading the latest revision failed: {}", describe(&e));
            }
        }
    }

    /// On SQLite: copies the write-ahead log into the database file every
    /// `CHECKPOINT_EVERY`, beside the writer instead of in its turn (see `connect_options`).
    /// A passive checkpoint waits for no one: what readers still use waits for the next.
    /// Runs until aborted.
    pub(crate) async fn checkpoint_wal(self) {
        if self.backend() != DbBackend::Sqlite {
            return;
        }
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self
                .db
                .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
                .await
            {
                tracing::warn!("checkpointing the WAL failed: {}", describe(&e));
            }
        }
    }

    /// On PostgreSQL, vacuums the tables that churn and analyzes the tables that have changed,
    /// as they need it (see [`vacuum`]). Runs until aborted.
    pub(crate) async fn vacuum_churn(self) {
        if self.backend() != DbBackend::Postgres {
            return;
        }
        let mut tick = tokio::time::interval(vacuum::EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tried = std::collections::HashMap::new();
        loop {
            tick.tick().await;
            match vacuum::vacuum_dead(&self.db).await {
                Ok(tables) if tables.is_empty() => {}
                Ok(tables) => tracing::debug!(?tables, "vacuumed"),
                Err(e) => tracing::warn!("vacuuming failed: {}", describe(&e)),
            }
            match vacuum::analyze_changed(&self.db, &mut tried).await {
                Ok(None) => {}
                Ok(Some(table)) => tracing::debug!(table, "analyzed"),
                Err(e) => tracing::warn!("analyzing failed: {}", describe(&e)),
            }
        }
    }

    /// Deletes the events that committed before `cutoff_us`, oldest first, a chunk per
    /// transaction so that writers never wait long for the counter. Returns how many.
    pub(crate) async fn prune_events(&self, cutoff_us: i64) -> Result<u64, DbErr> {
        const CHUNK: u64 = 5_000;
        let mut deleted = 0;
        while let Some(upto) = events::prunable(&self.db, cutoff_us, CHUNK).await? {
            let tx = self.begin_immediate().await?;
            let n = events::prune(&tx, upto).await?;
            tx.commit().await?;
            deleted += n;
            if n < CHUNK {
                break;
            }
        }
        Ok(deleted)
    }

    /// On PostgreSQL, follows the change history, which holds every replica's changes, and
    /// keeps the view in step; the view serves reads only while a look at the history
    /// proves, within `cache::CONFIRMED_FOR`, that it applied them all (see `follow.rs`).
    /// Without events (a benchmark's baseline) there is nothing to follow: that baseline
    /// runs one replica alone. Runs until aborted.
    pub(crate) async fn follow_changes(self) {
        if self.backend() == DbBackend::Postgres && self.record_events {
            let pool = self.db.get_postgres_connection_pool();
            follow::follow(pool, &self.cache, |latest| self.committed(latest)).await;
        }
    }

    /// How many SQL statements this store has run.
    pub(crate) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// The pool's open connections and how many of them are idle.
    pub(crate) fn pool_stats(&self) -> (u32, u32) {
        let (size, idle) = match self.backend() {
            DbBackend::Postgres => {
                let p = self.db.get_postgres_connection_pool();
                (p.size(), p.num_idle())
            }
            DbBackend::Sqlite => {
                let p = self.db.get_sqlite_connection_pool();
                (p.size(), p.num_idle())
            }
            _ => (0, 0),
        };
        (size, u32::try_from(idle).unwrap_or(u32::MAX))
    }

    /// Checks that the database answers.
    pub(crate) async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    /// Closes the pool and gives up the claim on an SQLite file.
    pub async fn close(self) -> Result<(), DbErr> {
        if self.backend() == DbBackend::Sqlite {
            self.writer.clone().close().await.ok();
        }
        let closed = self.db.close().await;
        self.claim.release();
        closed
    }
}

/// A database error as the operator starting the server reads it: the database's own
/// message. sqlx's rendering of a PostgreSQL error ends with the line of PostgreSQL's C
/// source that raised it ("database \"x\" does not exist at line 948"), and SeaORM's adds
/// its variant ("Connection Error: "); neither helps anyone running workspaced.
pub fn describe(e: &DbErr) -> String {
    use sea_orm::{RuntimeErr, sqlx};
    match e {
        DbErr::Conn(RuntimeErr::SqlxError(s))
        | DbErr::Exec(RuntimeErr::SqlxError(s))
        | DbErr::Query(RuntimeErr::SqlxError(s)) => match s.as_ref() {
            sqlx::Error::Database(db) => db.message().to_owned(),
            other => other.to_string(),
        },
        DbErr::Conn(RuntimeErr::Internal(m))
        | DbErr::Exec(RuntimeErr::Internal(m))
        | DbErr::Query(RuntimeErr::Internal(m))
        | DbErr::Custom(m)
        | DbErr::Migration(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Why the database at `url` could not be opened, with what to change when it is an SQLite
/// file that is missing: SQLite's own "unable to open database file" does not say that a
/// URL without `?mode=rwc` never creates the file, nor that no URL creates a directory.
pub fn describe_open_error(url: &str, e: &DbErr) -> String {
    let message = describe(e);
    match sqlite_missing_file(url) {
        Some(hint) => format!("{message}: {hint}"),
        None => message,
    }
}

/// What is missing for the SQLite `url` to open: its directory, or its file when the URL does
/// not ask SQLite to create it. None for other URLs, in-memory databases and existing files.
fn sqlite_missing_file(url: &str) -> Option<String> {
    use std::{path::Path, str::FromStr};
    if !is_sqlite(url) || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let opts = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = opts.get_filename();
    if path.exists() {
        return None;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Some(format!(
            "the directory {} does not exist (SQLite creates the database file, not its \
             directory)",
            dir.display()
        ));
    }
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let mode = query.split('&').find_map(|p| p.strip_prefix("mode="));
    match mode {
        // Asked to create it: the file's absence is not what failed.
        Some("rwc") => return None,
        Some(_) => return Some(format!("{} does not exist", path.display())),
        None => {}
    }
    let add = if url.contains('?') {
        "&mode=rwc"
    } else {
        "?mode=rwc"
    };
    Some(format!(
        "{} does not exist; add {add} to the URL to create it: {url}{add}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::{RuntimeErr, sqlx};

    use super::*;

    #[test]
    fn pooled_connections_are_pinged_only_when_they_may_have_been_closed() {
        let sqlite = connect_options("sqlite://workspaced.db?mode=rwc");
        assert!(!sqlite.get_test_before_acquire());
        assert_eq!(sqlite.get_test_before_acquire_if_idle_for(), None);
        let postgres = connect_options("postgres://postgres@127.0.0.1:5432/test");
        assert!(!postgres.get_test_before_acquire());
        assert_eq!(
            postgres.get_test_before_acquire_if_idle_for(),
            Some(PING_IF_IDLE_FOR)
        );
    }

    /// PostgreSQL only (`WORKSPACED_TEST_DATABASE_URL`): every pooled session starts with
    /// the bounds on waits, statements and idle transactions.
    #[tokio::test]
    async fn pooled_postgresql_sessions_start_with_their_timeouts() {
        let Some(url) = std::env::var("WORKSPACED_TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        else {
            return;
        };
        let db = Database::connect(connect_options(&url)).await.unwrap();
        let mut pooled = db.get_postgres_connection_pool().acquire().await.unwrap();
        for (setting, want) in [
            ("lock_timeout", LOCK_TIMEOUT),
            ("statement_timeout", STATEMENT_TIMEOUT),
            (
                "idle_in_transaction_session_timeout",
                IDLE_IN_TRANSACTION_TIMEOUT,
            ),
        ] {
            let shown: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
                .fetch_one(&mut *pooled)
                .await
                .unwrap();
            assert_eq!(shown, format!("{}s", want.as_secs()), "{setting}");
        }
    }

    #[test]
    fn a_database_error_is_told_without_the_drivers_decorations() {
        let sqlx_err = Arc::new(sqlx::Error::Database(Box::new(
            crate::error::testing::PgLike {
                code: "3D000",
                message: "database \"wst_gone\" does not exist",
            },
        )));
        let e = DbErr::Conn(RuntimeErr::SqlxError(sqlx_err.clone()));
        // What a start-up failure printed before.
        assert!(e.to_string().contains("at line 948"), "{e}");
        assert_eq!(describe(&e), "database \"wst_gone\" does not exist");
        let e = DbErr::Exec(RuntimeErr::SqlxError(sqlx_err));
        assert_eq!(describe(&e), "database \"wst_gone\" does not exist");
        let e = DbErr::Custom("the SQLite database x.db is in use".into());
        assert_eq!(describe(&e), "the SQLite database x.db is in use");
    }

    #[test]
    fn a_missing_sqlite_file_or_directory_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let existing = dir.path().join("there.db");
        std::fs::write(&existing, b"").unwrap();
        let cases = [
            (
                format!("sqlite://{d}/new.db"),
                Some(format!(
                    "{d}/new.db does not exist; add ?mode=rwc to the URL to create it: \
                     sqlite://{d}/new.db?mode=rwc"
                )),
            ),
            (
                format!("sqlite://{d}/new.db?cache=shared"),
                Some(format!(
                    "{d}/new.db does not exist; add &mode=rwc to the URL to create it: \
                     sqlite://{d}/new.db?cache=shared&mode=rwc"
                )),
            ),
            (
                format!("sqlite://{d}/new.db?mode=ro"),
                Some(format!("{d}/new.db does not exist")),
            ),
            (
                format!("sqlite://{d}/no-such-dir/new.db?mode=rwc"),
                Some(format!(
                    "the directory {d}/no-such-dir does not exist (SQLite creates the \
                     database file, not its directory)"
                )),
            ),
            (format!("sqlite://{d}/new.db?mode=rwc"), None),
            (format!("sqlite://{}", existing.display()), None),
            ("sqlite::memory:".to_owned(), None),
            ("postgres://postgres@127.0.0.1:1/none".to_owned(), None),
        ];
        for (url, hint) in cases {
            assert_eq!(sqlite_missing_file(&url), hint, "{url}");
        }
    }

    #[test]
    fn writers_queue_at_once_only_for_a_while_after_the_counter_was_taken() {
        let p = Passes::default();
        assert!(!p.queue_at_once(), "nothing contended yet");
        p.contended();
        assert!(p.queue_at_once());
        std::thread::sleep(QUEUE_FOR + Duration::from_millis(10));
        assert!(
            !p.queue_at_once(),
            "a writer tries for the counter again once the span is over"
        );
    }

    #[test]
    fn writers_queue_at_once_while_their_replicas_queued_events_wait_for_a_pass() {
        let p = Passes::default();
        p.queued.fetch_add(2, Ordering::SeqCst);
        assert!(p.queue_at_once(), "a try would find them pending");
        p.numbered.fetch_max(1, Ordering::SeqCst);
        assert!(p.queue_at_once(), "one still waits");
        p.numbered.fetch_max(2, Ordering::SeqCst);
        assert!(
            !p.queue_at_once(),
            "all numbered: a writer alone numbers its own again"
        );
    }
}
