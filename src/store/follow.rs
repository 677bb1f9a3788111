//! Keeps a PostgreSQL replica's view (`cache.rs`) in step with the other replicas: a listener
//! applies the changes they announce, and a heartbeat proves, every few milliseconds, that the
//! listener has heard everything committed so far.
//!
//! The proof rests on PostgreSQL delivering notifications to a listener in the order their
//! transactions committed, across all the channels it listens on. Every `BEAT_EVERY` this
//! replica notifies a channel only it listens on, from a connection of its own, with the
//! instant it took just before sending. When the listener hears that beat, every change
//! committed before that instant was heard (and applied) before it. A listener that stalls
//! without an error (a stopped backend, a network that drops packets) hears no more beats,
//! and the view stops serving once the newest one is `cache::CONFIRMED_FOR` old.

use std::{sync::Arc, time::Duration};

use sea_orm::sqlx::{
    self, Connection,
    postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions},
};

use super::cache::AccessCache;

/// The PostgreSQL channel on which every change to a workspace or its members is announced,
/// with the workspace's name as payload.
pub(super) const CHANGES_CHANNEL: &str = "workspaced_changes";

/// How often a beat is sent: several fit in `cache::CONFIRMED_FOR`, so that one or two held
/// up by a busy database do not turn the view off.
const BEAT_EVERY: Duration = Duration::from_millis(20);
/// How long a beat may take to send before its connection counts as lost and is replaced.
/// The view needs no timeout (it stops serving on its own when beats stop); this one only
/// bounds how long a stuck connection delays the next beats.
const BEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the listener checks that its connection still answers, and how long it waits
/// for the answer. Beats keep the view correct meanwhile; these only decide when a silent
/// connection is given up for a new one, so they can be generous: a slow answer from a busy
/// database would otherwise drop a working listener.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting and subscribing may take before trying again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The pause before reconnecting, so that a database that refuses connections is not
/// hammered.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// How the connections show in `pg_stat_activity`, for operators (and the tests, which stop
/// these backends to check that the view turns off).
const LISTENER_NAME: &str = "workspaced-listener";
const BEAT_NAME: &str = "workspaced-heartbeat";

/// Follows the changes announced on the database of `pool`, keeping `cache` in step and its
/// beats coming. Runs until dropped.
pub(super) async fn follow(pool: &PgPool, cache: &AccessCache) {
    let options = pool.connect_options();
    // Private to this process: no other replica's beats can vouch for this listener.
    let beats = format!("workspaced_beat_{}", uuid::Uuid::new_v4().simple());
    tokio::join!(
        send_beats(&options, &beats, cache),
        listen(&options, &beats, cache)
    );
}

/// Sends a beat on `channel` every `BEAT_EVERY`, forever, from a connection of its own: one
/// from the pool would wait behind busy requests, and the view would turn off just when it
/// saves the most.
async fn send_beats(options: &Arc<PgConnectOptions>, channel: &str, cache: &AccessCache) {
    // Each beat is a transaction of its own (an xid and a ~40-byte commit record in the WAL),
    // but no fsync: a transaction that wrote nothing else commits asynchronously.
    let options = PgConnectOptions::clone(options).application_name(BEAT_NAME);
    let mut tick = tokio::time::interval(BEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let connect = PgConnection::connect_with(&options);
        let Ok(Ok(mut conn)) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await else {
            tokio::time::sleep(RETRY_AFTER).await;
            continue;
        };
        loop {
            tick.tick().await;
            // Taken before sending: every change committed before this instant is queued
            // ahead of the beat.
            let sent = cache.now_nanos();
            let beat = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(sent.to_string())
                .execute(&mut conn);
            match tokio::time::timeout(BEAT_TIMEOUT, beat).await {
                Ok(Ok(_)) => {}
                // Dropped without a goodbye: a stopped backend would never read it.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// Listens for changes and for this replica's beats, reconnecting whenever the connection
/// is lost, forever. The view is enabled only while a listener is connected.
async fn listen(options: &Arc<PgConnectOptions>, beats: &str, cache: &AccessCache) {
    let options = PgConnectOptions::clone(options).application_name(LISTENER_NAME);
    loop {
        listen_once(&options, beats, cache).await;
        cache.set_enabled(false);
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// Connects a listener and applies what it hears until its connection is lost.
async fn listen_once(options: &PgConnectOptions, beats: &str, cache: &AccessCache) {
    // A pool of one for this listener alone: the listener takes no connection from requests,
    // and one stuck on a stopped backend (its drop sends UNLISTEN) holds up nothing else.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options.clone());
    let pid = "SELECT pg_backend_pid()";
    let subscribe = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        // A lost connection must end this loop, never be replaced behind its back (the
        // changes announced in between would be missed): no reconnect inside `try_recv`,
        // and the backend's pid, checked by every ping, names the connection.
        listener.eager_reconnect(false);
        let (backend,): (i32,) = sqlx::query_as(pid).fetch_one(&mut listener).await?;
        listener.listen_all([CHANGES_CHANNEL, beats]).await?;
        Ok::<_, sqlx::Error>((listener, backend))
    };
    let Ok(Ok((mut listener, backend))) = tokio::time::timeout(CONNECT_TIMEOUT, subscribe).await
    else {
        return;
    };
    // Forgets what was read while changes could be missed; serving waits for a beat.
    cache.set_enabled(true);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Cancel-safe here: a message half read when the ping comes stays in the
            // connection's buffer, and without eager reconnects nothing else awaits.
            n = listener.try_recv() => match n {
                Ok(Some(n)) if n.channel() == beats => {
                    if let Ok(sent) = n.payload().parse() {
                        cache.beat_heard(sent);
                    }
                }
                Ok(Some(n)) => cache.invalidate(n.payload()),
                // The connection dropped: changes may have been missed meanwhile.
                Ok(None) | Err(_) => return,
            },
            // A connection whose network silently stopped delivering raises no error for
            // minutes. The beats already keep the view from serving meanwhile; a ping that
            // does not come back in time, or comes back from another backend, gives the
            // connection up so that the view can serve again through a new one.
            _ = ping.tick() => {
                let ping = sqlx::query_as::<_, (i32,)>(pid).fetch_one(&mut listener);
                match tokio::time::timeout(PING_TIMEOUT, ping).await {
                    Ok(Ok((now,))) if now == backend => {}
                    _ => return,
                }
            }
        }
    }
}
