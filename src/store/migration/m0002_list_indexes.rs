//! Listings that cost the same whatever the table's size: a count of workspaces by state and
//! visibility kept by triggers in the transactions that change them (so `total_size` reads a
//! few rows, not every match), and indexes that walk a page in name order without reading the
//! workspaces a filter leaves out.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum WorkspaceCounts {
    Table,
    State,
    Visibility,
    Shard,
    N,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Several rows per (state, visibility), summed on read: concurrent creates on
        // PostgreSQL then add to different rows instead of queueing on one row's lock
        // (SQLite has one writer at a time and uses shard 0).
        m.create_table(
            Table::create()
                .table(WorkspaceCounts::Table)
                .col(
                    ColumnDef::new(WorkspaceCounts::State)
                        .string_len(16)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WorkspaceCounts::Visibility)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(WorkspaceCounts::Shard).integer().not_null())
                .col(ColumnDef::new(WorkspaceCounts::N).big_integer().not_null())
                .primary_key(
                    Index::create()
                        .col(WorkspaceCounts::State)
                        .col(WorkspaceCounts::Visibility)
                        .col(WorkspaceCounts::Shard),
                )
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        // Triggers keep the counts, so that every writer does (a replica of an older version
        // during a rolling upgrade, an operator's SQL), in the writing transaction. Each
        // change adds to a random shard; an update's two rows are taken in a fixed order,
        // so that two transactions moving workspaces in opposite directions cannot
        // deadlock on them. Created before the initial count: on PostgreSQL the trigger's
        // lock keeps writers out until this migration commits, so none is counted twice or
        // missed (on SQLite the migration holds the write lock throughout).
        let triggers: &[&str] = match m.get_database_backend() {
            DbBackend::Postgres => &[
                "CREATE FUNCTION workspace_counts_add(s TEXT, v TEXT, d BIGINT) RETURNS VOID \
                 LANGUAGE SQL AS $$ \
                 INSERT INTO workspace_counts (state, visibility, shard, n) \
                 VALUES (s, v, floor(random() * 16)::INT, d) \
                 ON CONFLICT (state, visibility, shard) \
                 DO UPDATE SET n = workspace_counts.n + EXCLUDED.n $$",
                "CREATE FUNCTION workspace_counts_tally() RETURNS TRIGGER LANGUAGE plpgsql AS $$ \
                 BEGIN \
                   IF TG_OP = 'INSERT' THEN \
                     PERFORM workspace_counts_add(NEW.state, NEW.visibility, 1); \
                   ELSIF TG_OP = 'DELETE' THEN \
                     PERFORM workspace_counts_add(OLD.state, OLD.visibility, -1); \
                   ELSIF (OLD.state, OLD.visibility) < (NEW.state, NEW.visibility) THEN \
                     PERFORM workspace_counts_add(OLD.state, OLD.visibility, -1); \
                     PERFORM workspace_counts_add(NEW.state, NEW.visibility, 1); \
                   ELSIF (OLD.state, OLD.visibility) > (NEW.state, NEW.visibility) THEN \
                     PERFORM workspace_counts_add(NEW.state, NEW.visibility, 1); \
                     PERFORM workspace_counts_add(OLD.state, OLD.visibility, -1); \
                   END IF; \
                   RETURN NULL; \
                 END $$",
                "CREATE TRIGGER workspace_counts_tally \
                 AFTER INSERT OR DELETE OR UPDATE OF state, visibility ON workspaces \
                 FOR EACH ROW EXECUTE FUNCTION workspace_counts_tally()",
            ],
            _ => &[
                "CREATE TRIGGER workspace_counts_insert AFTER INSERT ON workspaces BEGIN \
                 INSERT INTO workspace_counts (state, visibility, shard, n) \
                 VALUES (NEW.state, NEW.visibility, 0, 1) \
                 ON CONFLICT (state, visibility, shard) DO UPDATE SET n = n + 1; END",
                "CREATE TRIGGER workspace_counts_delete AFTER DELETE ON workspaces BEGIN \
                 INSERT INTO workspace_counts (state, visibility, shard, n) \
                 VALUES (OLD.state, OLD.visibility, 0, -1) \
                 ON CONFLICT (state, visibility, shard) DO UPDATE SET n = n - 1; END",
                "CREATE TRIGGER workspace_counts_update AFTER UPDATE OF state, visibility \
                 ON workspaces \
                 WHEN OLD.state <> NEW.state OR OLD.visibility <> NEW.visibility BEGIN \
                 INSERT INTO workspace_counts (state, visibility, shard, n) \
                 VALUES (OLD.state, OLD.visibility, 0, -1) \
                 ON CONFLICT (state, visibility, shard) DO UPDATE SET n = n - 1; \
                 INSERT INTO workspace_counts (state, visibility, shard, n) \
                 VALUES (NEW.state, NEW.visibility, 0, 1) \
                 ON CONFLICT (state, visibility, shard) DO UPDATE SET n = n + 1; END",
            ],
        };
        for sql in triggers {
            db.execute_unprepared(sql).await?;
        }
        // The same SQL on SQLite and PostgreSQL. The partial indexes' conditions are written
        // out literally in the queries too, which is how the planners know they apply.
        // Archived workspaces are few, so a listing of the active ones walks the name index
        // and skips them; one of the archived ones walks their own index.
        for sql in [
            "INSERT INTO workspace_counts (state, visibility, shard, n) \
             SELECT state, visibility, 0, COUNT(*) FROM workspaces GROUP BY state, visibility",
            "CREATE INDEX workspaces_shared_name ON workspaces (name) WHERE visibility <> 'private'",
            "CREATE INDEX workspaces_archived_name ON workspaces (name) WHERE state = 'archived'",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
