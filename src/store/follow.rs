//! Keeps a PostgreSQL replica's view (`cache.rs`) in step with the other replicas by
//! following the change history: every change to a workspace or its members writes an event
//! in its own transaction, so reading the events committed since the last look tells which
//! workspaces changed, and a look that came back proves the view current as of when it was
//! sent.
//!
//! Every `POLL_EVERY` this replica reads, in one statement (one snapshot, taken after the
//! instant noted just before sending it), the names of the workspaces of the events numbered
//! after the last revision it read and of every event still waiting for a revision
//! (`pending_events`, see `events.rs`). A change committed before that instant is in the
//! snapshot, either numbered (above the last revision read, or read already: a revision is
//! given only under the counter's lock, in the same commit as the counter moves, so a
//! snapshot that sees the counter at L sees every revision up to L) or pending. Once those
//! names are forgotten, the view has applied every change committed before the instant, and
//! serves for `cache::CONFIRMED_FOR` after it. A connection that stalls without an error (a
//! stopped backend, a network that drops packets) brings no more answers, and the view stops
//! serving on its own.
//!
//! Writers pay nothing for this: before, every change also sent a NOTIFY, and PostgreSQL
//! makes the commits of notifying transactions take turns (a lock held through the commit,
//! so that notifications queue in commit order), which capped the writes of the whole
//! deployment.

use std::{collections::HashSet, time::Duration};

use sea_orm::sqlx::{
    self, Connection,
    postgres::{PgConnectOptions, PgConnection, PgPool},
};

use super::cache::AccessCache;

/// How often the history is read: several looks fit in `cache::CONFIRMED_FOR`, so that one
/// or two held up by a busy database do not turn the view off.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long a look may take before its connection counts as lost and is replaced. The view
/// needs no timeout (it stops serving on its own when answers stop); this one only bounds
/// how long a stuck connection delays the next looks.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long connecting may take before trying again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The pause before reconnecting, so that a database that refuses connections is not
/// hammered.
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// The most names one look reads from each table. More changes than that since the last
/// look (a backlog after a stall, a burst of writes) forget the whole view instead: cheaper
/// than reading them, and as exact.
const MAX_NAMES: i64 = 1_000;

/// How the connection shows in `pg_stat_activity`, for operators (and the tests, which stop
/// its backend to check that the view turns off).
const FOLLOWER_NAME: &str = "workspaced-follower";

/// One look at the history: where the counter stood, and the workspaces changed since.
struct Look {
    /// The highest committed revision.
    latest: i64,
    /// The highest pruned revision.
    pruned: i64,
    /// Workspaces of the events numbered after the last look's `latest`, at most
    /// `MAX_NAMES + 1`.
    numbered: Vec<String>,
    /// Workspaces of the events waiting for a revision, at most `MAX_NAMES + 1`.
    pending: Vec<String>,
}

/// Follows the change history of the database of `pool`, keeping `cache` in step and
/// calling `committed` with the highest committed revision after every look. Runs until
/// dropped.
pub(super) async fn follow(pool: &PgPool, cache: &AccessCache, committed: impl Fn(i64)) {
    // A connection of its own: one from the pool would wait behind busy requests, and the
    // view would turn off just when it saves the most.
    let options = PgConnectOptions::clone(&pool.connect_options()).application_name(FOLLOWER_NAME);
    cache.set_enabled(true);
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let connect = PgConnection::connect_with(&options);
        let Ok(Ok(mut conn)) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await else {
            tokio::time::sleep(RETRY_AFTER).await;
            continue;
        };
        // The revision read up to; `None` until a connection's first look, which forgets
        // the whole view: the database behind a new connection may not be the one that
        // numbered `last` (a failover to a standby that lagged, a restore), and its new
        // changes could take revisions already read.
        let mut last: Option<i64> = None;
        loop {
            tick.tick().await;
            // Taken before sending: every change committed before this instant is in the
            // look's snapshot.
            let sent = cache.now_nanos();
            let look = look(&mut conn, last.unwrap_or(i64::MAX));
            let Ok(Ok(look)) = tokio::time::timeout(POLL_TIMEOUT, look).await else {
                // Dropped without a goodbye: a stopped backend would never read it.
                break;
            };
            apply(cache, last, &look);
            last = Some(look.latest);
            cache.current_as_of(sent);
            committed(look.latest);
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// Reads where the history stands and what changed after revision `after`, in one
/// statement so that all of it is one snapshot.
async fn look(conn: &mut PgConnection, after: i64) -> Result<Look, sqlx::Error> {
    let (latest, pruned, numbered, pending) = sqlx::query_as(
        "SELECT latest, pruned, \
         ARRAY(SELECT workspace FROM events WHERE revision > $1 ORDER BY revision LIMIT $2), \
         ARRAY(SELECT workspace FROM pending_events ORDER BY seq LIMIT $2) \
         FROM event_log WHERE id = 1",
    )
    .bind(after)
    .bind(MAX_NAMES + 1)
    .fetch_one(conn)
    .await?;
    Ok(Look {
        latest,
        pruned,
        numbered,
        pending,
    })
}

/// Forgets what `look` shows changed since the look that read up to `last`: the named
/// workspaces, or everything when the names may be incomplete (the first look, more than
/// `MAX_NAMES`, events pruned before they were read, or a history that went back).
fn apply(cache: &AccessCache, last: Option<i64>, look: &Look) {
    let complete = last.is_some_and(|last| look.pruned <= last && look.latest >= last)
        && look.numbered.len() <= MAX_NAMES as usize
        && look.pending.len() <= MAX_NAMES as usize;
    if !complete {
        cache.clear();
        return;
    }
    let names: HashSet<&str> = look
        .numbered
        .iter()
        .chain(&look.pending)
        .map(String::as_str)
        .collect();
    if !names.is_empty() {
        cache.invalidate_all(names);
    }
}
