//! Persistence: the connection (SQLite or PostgreSQL), migrations, and the queries, each
//! scoped by workspace. Nothing here knows of protobuf or of who may do what.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub mod entity;
pub mod memberships;
mod migration;
pub mod policies;
pub mod principals;
pub mod workspaces;

pub use migration::Migrator;

/// How long a request waits for a pooled connection before the database counts as
/// unavailable; well under the contract's 5 s.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long SQLite waits for another writer's lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(4);

/// The database, shared by every request.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// Statements run so far, for the metrics (and the tests that bound queries per RPC).
    statements: Arc<AtomicU64>,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`). Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, DbErr> {
        let mut opt = ConnectOptions::new(url);
        let sqlite = url.starts_with("sqlite:");
        opt.max_connections(if sqlite { 8 } else { 16 })
            .min_connections(1)
            .connect_timeout(ACQUIRE_TIMEOUT)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                // WAL with synchronous=NORMAL keeps every committed write across a process
                // crash (kill -9); only a power loss can take the last commits.
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true)
            });
        let mut db = Database::connect(opt).await?;
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        db.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        Ok(Store { db, statements })
    }

    /// Applies pending migrations in one transaction, so that replicas starting at once
    /// take turns: SQLite's `BEGIN IMMEDIATE` holds the write lock, and on PostgreSQL an
    /// advisory lock serializes them (its DDL is transactional too).
    pub async fn migrate(&self) -> Result<(), DbErr> {
        let tx = self.begin_write().await?;
        if self.backend() == DbBackend::Postgres {
            tx.execute_unprepared("SELECT pg_advisory_xact_lock(7201050051)")
                .await?;
        }
        Migrator::up(&tx, None).await?;
        tx.commit().await
    }

    /// The database backend in use.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The connection, for reads outside a transaction.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that it never fails to upgrade a read lock with "database is
    /// locked"; PostgreSQL serializes writers with row locks (`SELECT … FOR UPDATE`).
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
    }

    /// How many SQL statements this store has run.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// The pool's open connections and how many of them are idle.
    pub fn pool_stats(&self) -> (u32, u32) {
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
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<(), DbErr> {
        self.db.close().await
    }
}
