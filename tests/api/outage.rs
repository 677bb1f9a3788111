//! Database outages (PostgreSQL only): while the database cannot be reached, calls answer
//! UNAVAILABLE / DATABASE_UNAVAILABLE within 5 s and health turns NOT_SERVING within 10 s;
//! when it is back, health turns SERVING again without a restart. The outage is made by a
//! TCP proxy between the server and PostgreSQL that the test cuts and restores, or freezes
//! (connections stay open and nothing passes, as when a network silently drops packets).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::ConnectionTrait;
use tokio::{net::TcpListener, task::JoinSet};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use workspaced::{
    pb::v1 as pb,
    store::{LOCK_TIMEOUT, STATEMENT_TIMEOUT},
};

use crate::common::*;

/// Forwards connections from `listen` to `target` until dropped; dropping closes them all.
/// `freeze` stops forwarding but keeps every connection open, as a network that silently
/// drops packets does.
struct Proxy {
    tasks: JoinSet<()>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(listen: SocketAddr, target: String) -> Proxy {
        let listener = TcpListener::bind(listen).await.expect("bind proxy");
        let mut tasks = JoinSet::new();
        let conns = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let held = conns.clone();
        let (frozen, watch) = tokio::sync::watch::channel(false);
        tasks.spawn(async move {
            // The connections live in this task's set, so aborting it closes them.
            let _held = held;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = target.clone();
                let mut watch = watch.clone();
                conns.lock().await.spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let frozen = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                        r = watch.wait_for(|f| *f) => r.is_ok(),
                    };
                    if frozen {
                        // Hold both ends open and move nothing.
                        std::future::pending::<()>().await;
                    }
                });
            }
        });
        Proxy { tasks, frozen }
    }

    fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn health(s: &TestServer) -> i32 {
    s.health()
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

async fn wait_health(s: &TestServer, want: ServingStatus, within: Duration) {
    let start = Instant::now();
    while health(s).await != want as i32 {
        assert!(
            start.elapsed() < within,
            "health did not turn {want:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A server on a fresh PostgreSQL database reached through a `Proxy`, with the proxy, its
/// address and the database's (to start the proxy again); `None` on SQLite.
async fn proxied_server() -> Option<(TestServer, Proxy, SocketAddr, String)> {
    proxied_server_with(Options::default()).await
}

/// The same with `opts`.
async fn proxied_server_with(opts: Options) -> Option<(TestServer, Proxy, SocketAddr, String)> {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        return None;
    }
    // postgres://user@host:port/db -> the same through the proxy.
    let (scheme_user, rest) = db.url.split_once('@').expect("user@host in the URL");
    let (target, path) = rest.split_once('/').expect("a database in the URL");
    let port_probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen = port_probe.local_addr().unwrap();
    drop(port_probe);
    let proxy = Proxy::start(listen, target.to_owned()).await;
    let url = format!("{scheme_user}@{listen}/{path}");
    let target = target.to_owned();
    let proxied = Arc::new(TestDb { url, ..db });
    let s = TestServer::spawn_on(proxied, opts).await;
    Some((s, proxy, listen, target))
}

#[tokio::test]
async fn a_database_outage_is_unavailable_and_health_follows_it() {
    let Some((s, proxy, listen, target)) = proxied_server().await else {
        eprintln!("skipped: needs WORKSPACED_TEST_DATABASE_URL (PostgreSQL)");
        return;
    };
    let alice = token("alice");
    create(&s, &alice, new_ws("survivor")).await;

    drop(proxy);
    let start = Instant::now();
    let err = s.get_workspace(&alice, "survivor").await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_status(&err, Code::Unavailable, "DATABASE_UNAVAILABLE");
    wait_health(&s, ServingStatus::NotServing, Duration::from_secs(10)).await;

    let _proxy = Proxy::start(listen, target).await;
    wait_health(&s, ServingStatus::Serving, Duration::from_secs(10)).await;
    assert_eq!(
        s.get_workspace(&alice, "survivor").await.unwrap().name,
        "survivor"
    );
}

#[tokio::test]
async fn a_database_that_stops_answering_is_unavailable_within_5_s() {
    let Some((s, proxy, _, _)) = proxied_server().await else {
        eprintln!("skipped: needs WORKSPACED_TEST_DATABASE_URL (PostgreSQL)");
        return;
    };
    let alice = token("alice");
    create(&s, &alice, new_ws("before")).await;
    // Now in the replica's view (once the replica has heard its own announcement of the
    // create, which would otherwise empty the view again).
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.get_workspace(&alice, "before").await.unwrap();

    // Open connections whose packets go nowhere: no error ever comes back from them.
    proxy.freeze();
    for (what, call) in [
        (
            "a read",
            Box::pin(async { s.get_workspace(&alice, "never-read").await.map(drop) })
                as std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tonic::Status>>>>,
        ),
        (
            "a write",
            Box::pin(async { s.create_workspace(&alice, new_ws("after")).await.map(drop) }),
        ),
    ] {
        let start = Instant::now();
        let err = call.await.unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what} took {:?}",
            start.elapsed()
        );
        assert_status(&err, Code::Unavailable, "DATABASE_UNAVAILABLE");
    }
    // The follower's connection to the change history is cut off too, unknown to it: its
    // looks stop coming back, which turns the view off, so what it held is not served stale.
    let err = s.get_workspace(&alice, "before").await.unwrap_err();
    assert_status(&err, Code::Unavailable, "DATABASE_UNAVAILABLE");
    wait_health(&s, ServingStatus::NotServing, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn calls_stuck_in_the_database_free_their_place_in_flight_when_answered() {
    let limits = workspaced::telemetry::CallLimits {
        max_in_flight: 2,
        ..Default::default()
    };
    let s = TestServer::spawn_with(Options {
        call_limits: Some(limits),
        ..Default::default()
    })
    .await;
    if !s.db.is_postgres() {
        // SQLite's busy timeout ends every wait on its own within 4 s.
        return;
    }
    let alice = token("alice");
    s.get_workspace(&alice, "default").await.unwrap();
    // Queries that wait in the database longer than anyone waits for them.
    let held = crate::hostile::hold_database(&s.db).await;
    let (a, b) = tokio::join!(
        s.get_workspace(&alice, "one"),
        s.get_workspace(&alice, "two")
    );
    for err in [a.unwrap_err(), b.unwrap_err()] {
        assert_status(&err, Code::Unavailable, "DATABASE_UNAVAILABLE");
    }
    // Answered, they give back their places, so the next calls learn that the database is
    // unavailable (within 5 s) rather than being refused as OVERLOADED for as long as it
    // hangs.
    let start = Instant::now();
    let (c, d) = tokio::join!(
        s.get_workspace(&alice, "three"),
        s.get_workspace(&alice, "four")
    );
    for err in [c.unwrap_err(), d.unwrap_err()] {
        assert_status(&err, Code::Unavailable, "DATABASE_UNAVAILABLE");
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    held.rollback().await.unwrap();
    s.get_workspace(&alice, "default").await.unwrap();
}

#[tokio::test]
async fn a_call_that_finds_every_pooled_connection_taken_gives_up_before_its_deadline() {
    let Some(s) = TestServer::on_postgres().await else {
        return;
    };
    let alice = token("alice");
    s.get_workspace(&alice, "default").await.unwrap();
    // As many calls as the pool has connections, each waiting on the lock with one.
    let held = crate::hostile::hold_database(&s.db).await;
    let names: Vec<String> = (0..workspaced::store::PG_POOL)
        .map(|i| format!("stuck-{i}"))
        .collect();
    let stuck = futures::future::join_all(names.iter().map(|n| s.get_workspace(&alice, n)));
    let last = async {
        // Once all of them wait on the lock, each holding its connection.
        let c = sea_orm::Database::connect(&s.db.url).await.unwrap();
        let waiting = "SELECT COUNT(*) FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock'";
        let since = Instant::now();
        while count_on(&c, waiting).await < workspaced::store::PG_POOL as i64 {
            assert!(
                since.elapsed() < Duration::from_secs(10),
                "the calls never got stuck"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let start = Instant::now();
        (s.get_workspace(&alice, "last").await, start.elapsed())
    };
    let (stuck, (last, took)) = tokio::join!(stuck, last);
    for r in stuck {
        assert_status(&r.unwrap_err(), Code::Unavailable, "DATABASE_UNAVAILABLE");
    }
    // It waited for a connection as long as a call may, and no longer: answered by the
    // pool's bound, before the call's deadline would have cut it off.
    assert_status(
        &last.unwrap_err(),
        Code::Unavailable,
        "DATABASE_UNAVAILABLE",
    );
    assert!(
        took >= workspaced::store::ACQUIRE_TIMEOUT,
        "answered before the pool's wait ran out: {took:?}"
    );
    assert!(
        took < workspaced::telemetry::DEADLINE,
        "waited for a connection until the deadline: {took:?}"
    );
    held.rollback().await.unwrap();
    s.get_workspace(&alice, "default").await.unwrap();
}

#[tokio::test]
async fn a_call_stuck_in_the_database_is_answered_within_5_s_and_completes_only_if_committing() {
    let Some(s) = TestServer::on_postgres().await else {
        return;
    };
    let alice = token("alice");
    let ws = create(&s, &alice, new_ws("held")).await;
    // Another session holds the workspaces table, so both calls wait on a connection that
    // is fine: the update in its transaction before it can commit, the create (one
    // statement) having begun to commit.
    let holder = crate::hostile::hold_database(&s.db).await;
    let changed = pb::Workspace {
        description: "changed".into(),
        ..new_ws("held")
    };
    let start = Instant::now();
    let (update, create) = tokio::join!(
        s.update_workspace(&alice, changed, &["description"], ""),
        s.create_workspace(&alice, new_ws("landed"))
    );
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        took >= workspaced::telemetry::DEADLINE - Duration::from_millis(100),
        "answered before the deadline: {took:?}"
    );
    assert_status(
        &update.unwrap_err(),
        Code::Unavailable,
        "DATABASE_UNAVAILABLE",
    );
    assert_status(
        &create.unwrap_err(),
        Code::Unavailable,
        "DATABASE_UNAVAILABLE",
    );
    holder.rollback().await.unwrap();
    // The create ran on: once the lock is gone it commits, and this replica serves it.
    wait_for_workspace(&s, &alice, "landed").await;
    // The update was dropped when answered: the workspace is as it was.
    assert_unchanged_since(&s, &alice, "held", &ws.etag).await;
}

/// A statement that a call left waiting on a lock when it was answered stops waiting
/// within `LOCK_TIMEOUT`, while the lock is still held: its pooled connection comes back
/// instead of staying with it for as long as the lock does.
#[tokio::test]
async fn a_statement_left_waiting_on_a_lock_stops_within_the_lock_timeout() {
    let Some(s) = TestServer::on_postgres().await else {
        return;
    };
    let alice = token("alice");
    let ws = create(&s, &alice, new_ws("locked")).await;
    let c = sea_orm::Database::connect(&s.db.url).await.unwrap();
    let holder = crate::hostile::hold_database(&s.db).await;
    // PostgreSQL's clock now: the update's statement starts just after, and any statement
    // of the server's own that starts later to wait on the same lock is left out.
    let t0 = count_on(
        &c,
        "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1e6)::BIGINT",
    )
    .await;
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND query_start < to_timestamp({t0} / 1e6) + interval '2 s'"
    );
    update_left_running(&s, &alice, "locked", &c, &waiting, LOCK_TIMEOUT).await;
    holder.rollback().await.unwrap();
    assert_unchanged_since(&s, &alice, "locked", &ws.etag).await;
}

/// Updates `name`'s description, which is answered `DATABASE_UNAVAILABLE` at the deadline
/// while its statement runs on (`sql`, on `c`, counts it), then waits until that statement
/// stops: within 3 s of `timeout` from the call's start, and not before it.
async fn update_left_running<C: ConnectionTrait>(
    s: &TestServer,
    token: &str,
    name: &str,
    c: &C,
    sql: &str,
    timeout: Duration,
) {
    let start = Instant::now();
    let changed = pb::Workspace {
        description: "changed".into(),
        ..new_ws(name)
    };
    let err = s
        .update_workspace(token, changed, &["description"], "")
        .await
        .unwrap_err();
    assert_status(&err, Code::Unavailable, "DATABASE_UNAVAILABLE");
    assert!(
        count_on(c, sql).await >= 1,
        "answered, but its statement no longer runs"
    );
    while count_on(c, sql).await > 0 {
        assert!(
            start.elapsed() < timeout + Duration::from_secs(3),
            "the statement still runs after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        start.elapsed() >= timeout,
        "stopped before the timeout: {:?}",
        start.elapsed()
    );
}

/// A statement that runs on after its call was answered (here an update that a trigger
/// makes sleep for a minute) stops at `STATEMENT_TIMEOUT`: its pooled connection comes back
/// instead of staying with it for as long as the statement would run.
#[tokio::test]
async fn a_statement_left_running_stops_at_the_statement_timeout() {
    let Some(s) = TestServer::on_postgres().await else {
        return;
    };
    let alice = token("alice");
    let ws = create(&s, &alice, new_ws("slow")).await;
    let c = sea_orm::Database::connect(&s.db.url).await.unwrap();
    for sql in [
        "CREATE FUNCTION slow_update() RETURNS trigger LANGUAGE plpgsql \
         AS $$ BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$",
        "CREATE TRIGGER slow BEFORE UPDATE ON workspaces \
         FOR EACH ROW EXECUTE FUNCTION slow_update()",
    ] {
        c.execute_unprepared(sql).await.unwrap();
    }
    let sleeping = "SELECT count(*) FROM pg_stat_activity \
                    WHERE datname = current_database() AND wait_event = 'PgSleep'";
    update_left_running(&s, &alice, "slow", &c, sleeping, STATEMENT_TIMEOUT).await;
    c.execute_unprepared("DROP TRIGGER slow ON workspaces")
        .await
        .unwrap();
    assert_unchanged_since(&s, &alice, "slow", &ws.etag).await;
}
