//! PostgreSQL only: the workspace counts' trigger (m0002) fires at commit instead of after
//! each statement. The count row it adds to stays locked until the transaction ends, so
//! fired after the workspace's insert it was held across the rest of CreateWorkspace (the
//! creator's membership, the default policy, the commit: three round trips through a
//! server that may be busy). Under overload on two cores, concurrent creates that drew the
//! same one of the 16 rows queued behind it: samples of `pg_stat_activity` showed a quarter
//! of the transactions in flight waiting for another's lock, and the holder idle in its
//! transaction. At commit the lock lasts only for the commit itself. Nothing reads the
//! counts inside a writing transaction, so the tally comes late to no one.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = m.get_connection();
        // One transaction (the migration's): no writer commits between the two, so none is
        // counted twice or missed.
        db.execute_unprepared("DROP TRIGGER workspace_counts_tally ON workspaces")
            .await?;
        db.execute_unprepared(
            "CREATE CONSTRAINT TRIGGER workspace_counts_tally \
             AFTER INSERT OR DELETE OR UPDATE OF state, visibility ON workspaces \
             DEFERRABLE INITIALLY DEFERRED \
             FOR EACH ROW EXECUTE FUNCTION workspace_counts_tally()",
        )
        .await?;
        Ok(())
    }
}
