//! Whether the call being served has begun to commit a change, or been abandoned first.
//!
//! A call whose caller has gone (it cancelled, or its `grpc-timeout` or the server's
//! deadline passed) is work for no one. Until it begins to commit, it can be dropped at any
//! await: what it has done is reads, a wait for a connection or a lock, a transaction that
//! rolls back when dropped, or a write that is whole on its own (`Store::write_conn`: the
//! upsert of a principal), or a numbering pass of the change history, whose counts the
//! next pass brings up to date. (A statement already sent still runs to its end in the
//! database, and sqlx waits for it before the connection is used again; on PostgreSQL a
//! wait for a lock ends at `LOCK_TIMEOUT`, and a statement at `STATEMENT_TIMEOUT`.) From
//! its first commit on a call runs to its end, so that what follows a commit in this
//! process (the replica's view, the memory of GPU usage, the count of revisions) is not cut
//! off by its caller's leaving; only `abandon_after` (see `telemetry`), far past any
//! commit's time, drops it. Each side decides by one atomic step, so a call abandoned just
//! as it reaches its commit either commits and runs on, or is refused the commit.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
};

use sea_orm::DbErr;

/// What a call refused its commit is told; never seen by its caller, who has gone.
pub(crate) const ABANDONED: &str = "the call was abandoned before it began to commit";

const RUNNING: u8 = 0;
const COMMITTING: u8 = 1;
const ABANDONED_STATE: u8 = 2;

tokio::task_local! {
    static CALL: Committing;
}

/// The state of one call; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Committing(Arc<AtomicU8>);

impl Committing {
    /// Runs `f` as the call this state is of: its commits mark it.
    pub fn scope<F: Future>(&self, f: F) -> impl Future<Output = F::Output> + use<F> {
        CALL.scope(self.clone(), f)
    }

    /// Abandons the call unless it has begun to commit: true if it may now be dropped
    /// (its commits will be refused), false if it must run to its end.
    pub fn abandon(&self) -> bool {
        match self
            .0
            .compare_exchange(RUNNING, ABANDONED_STATE, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(state) => state == ABANDONED_STATE,
        }
    }
}

/// The call being served (if any) is about to commit: from now on it runs to its end.
/// Call before the first statement that may commit; an error if the call was abandoned,
/// in which case nothing may be committed.
pub(crate) fn begin() -> Result<(), DbErr> {
    let state = CALL.try_with(|c| {
        c.0.compare_exchange(RUNNING, COMMITTING, Ordering::SeqCst, Ordering::SeqCst)
    });
    match state {
        Ok(Err(ABANDONED_STATE)) => Err(DbErr::Custom(ABANDONED.to_owned())),
        // Outside a call (the server's own tasks), or committing already.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_is_abandoned_or_commits_never_both() {
        let c = Committing::default();
        assert!(c.scope(async { begin() }).await.is_ok());
        assert!(!c.abandon(), "a committing call was abandoned");
        let c = Committing::default();
        assert!(c.abandon());
        assert!(c.abandon(), "abandoning twice");
        assert!(c.scope(async { begin() }).await.is_err());
        // The server's own tasks are no call.
        assert!(begin().is_ok());
    }
}
