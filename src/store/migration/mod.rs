//! Schema migrations, applied in order at start-up and by `workspaced migrate`. A migration
//! is never edited once merged; a change is a new file.

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_list_indexes;
mod m0003_gpu_requests;
mod m0004_group_members;
mod m0005_events;
mod m0006_pending_events;
mod m0007_membership_names;
mod m0008_numbering_pass;
mod m0009_counts_in_plpgsql;
mod m0010_recorded_events;
mod m0011_tally_at_commit;
mod m0012_tally_by_connection;
mod m0013_byte_order;

/// Every migration of the schema, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_list_indexes::Migration),
            Box::new(m0003_gpu_requests::Migration),
            Box::new(m0004_group_members::Migration),
            Box::new(m0005_events::Migration),
            Box::new(m0006_pending_events::Migration),
            Box::new(m0007_membership_names::Migration),
            Box::new(m0008_numbering_pass::Migration),
            Box::new(m0009_counts_in_plpgsql::Migration),
            Box::new(m0010_recorded_events::Migration),
            Box::new(m0011_tally_at_commit::Migration),
            Box::new(m0012_tally_by_connection::Migration),
            Box::new(m0013_byte_order::Migration),
        ]
    }
}
