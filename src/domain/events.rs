//! EventService's use cases, reading the change history a page at a time or as a watch, and
//! the record that every change use case writes of itself in its own transaction.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_stream::Stream;

use super::{
    access::{Permission, Principal},
    guard,
    model::{Event, EventKind, EventObject, Workspace},
    page::{self, PageRequest},
    validate::WorkspaceName,
};
use crate::{
    error::{Error, Reason, Result},
    store::{
        Store,
        events::{Batch, Filter, NewEvent},
    },
};

tokio::task_local! {
    /// The call being served, for the events it writes.
    static CALL: Call;
}

/// What an event says of the call that made the change.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The call's `x-request-id`.
    pub request_id: String,
    /// The RPC, such as `workspaced.v1.MembershipService/AddMember`.
    pub method: String,
}

/// Runs `f` as the call described by `call`: the events that `f` writes name it.
pub fn in_call<F: Future>(call: Call, f: F) -> impl Future<Output = F::Output> {
    CALL.scope(call, f)
}

/// The event recording that `actor` (a subject; empty for the server) made a change of kind
/// `kind` to the workspace `ws`, leaving `object`.
pub(crate) fn record(
    kind: EventKind,
    ws: &Workspace,
    actor: &str,
    object: EventObject,
) -> NewEvent {
    let call = CALL.try_with(Call::clone).unwrap_or_default();
    NewEvent {
        kind,
        workspace: ws.name.clone(),
        workspace_id: ws.id.clone(),
        actor: actor.to_owned(),
        request_id: call.request_id,
        method: call.method,
        object,
    }
}

/// How the history is kept and followed.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// How long events are kept.
    pub retention: Duration,
    /// Watches open at once on this replica; more are answered OVERLOADED.
    pub max_watches: usize,
    /// How many revisions a watch may fall behind before it is ended (WATCH_TOO_SLOW): its
    /// client reads slower than events commit (see `Follower::deliver` for how each kind of
    /// watch counts).
    pub max_lag: i64,
    /// Whether changes write events: always, but for a benchmark of what that costs.
    pub record: bool,
    /// Events one read of the history looks at, at most: a page of ListEvents, or a batch
    /// of a watch, whose filter matches few of them ends there, and the reader goes on from
    /// there (a page's token, the watch's next read).
    pub window: u64,
}

impl Default for EventSettings {
    /// The contract's: 30 days; a watch 10,000 revisions behind is too slow.
    fn default() -> Self {
        EventSettings {
            retention: Duration::from_secs(30 * 24 * 3600),
            max_watches: 1024,
            max_lag: 10_000,
            record: true,
            window: READ_WINDOW,
        }
    }
}

impl EventSettings {
    /// How often the history is pruned: often enough that an event goes within
    /// max(1 s, a tenth of the retention) of its end, as the contract says, and at most
    /// once a minute, so that each pruning is short.
    pub(crate) fn prune_every(&self) -> Duration {
        (self.retention / 20).clamp(Duration::from_millis(200), Duration::from_secs(60))
    }
}

/// `EventSettings::window` by default. From a history of 10 million events on PostgreSQL, a
/// page of a type found once in 99,991 events took 6.9 ms of every workspace and 46 ms of a
/// workspace holding every tenth event (its events lie scattered); read whole, 19 of 20
/// and 20 of 20 such pages ran past the deadline (`benches/RESULTS.md`).
const READ_WINDOW: u64 = 10_000;
/// Events in one message of a watch, and in one read of it.
const WATCH_BATCH: u64 = 100;
/// Messages a watch reads ahead of its client: with `WATCH_BATCH`, what one watch holds.
const WATCH_BUFFER: usize = 4;

/// ListEvents' input.
#[derive(Debug, Clone)]
pub struct ListEvents {
    /// One workspace's events, or every workspace's.
    pub workspace: Option<WorkspaceName>,
    /// Only events after this revision; 0 for every event kept.
    pub after_revision: i64,
    /// Only these kinds; empty for all.
    pub kinds: Vec<EventKind>,
    /// The page asked for.
    pub page: PageRequest,
    /// The filters the page token is bound to.
    pub fingerprint: String,
}

/// WatchEvents' input.
#[derive(Debug, Clone)]
pub struct WatchEvents {
    /// One workspace's events, or every workspace's.
    pub workspace: Option<WorkspaceName>,
    /// Send the events after this revision first; 0 for only those from now on.
    pub after_revision: i64,
    /// Only these kinds; empty for all.
    pub kinds: Vec<EventKind>,
}

/// One page of ListEvents.
#[derive(Debug)]
pub struct EventPage {
    /// The events, in revision order.
    pub events: Vec<Event>,
    /// Token for the next page; empty when no more events are there now.
    pub next_page_token: String,
    /// The highest committed revision when the page was read.
    pub latest_revision: i64,
}

/// The EventService use cases.
#[derive(Clone, Debug)]
pub struct Events {
    store: Store,
    settings: EventSettings,
    watches: Arc<Semaphore>,
    /// Set when the server shuts down: every watch ends.
    closing: Arc<watch::Sender<bool>>,
}

/// Whose events a reader may read: the filter, and for a workspace's own member, the
/// workspace that must still grant it `events.list`.
struct Scope {
    filter: Filter,
    member_of: Option<WorkspaceName>,
}

impl Events {
    /// Use cases over `store`.
    pub(crate) fn new(store: Store, settings: EventSettings) -> Self {
        let watches = Arc::new(Semaphore::new(settings.max_watches));
        Events {
            store,
            settings,
            watches,
            closing: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Ends every watch (cleanly, after what was handed over) and each one started later.
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The settings, for the pruning task.
    pub(crate) fn settings(&self) -> &EventSettings {
        &self.settings
    }

    /// Deletes the events older than the retention. Returns how many.
    pub(crate) async fn prune(&self) -> Result<u64> {
        let retention =
            chrono::TimeDelta::from_std(self.settings.retention).unwrap_or(chrono::TimeDelta::MAX);
        let cutoff = super::model::now()
            .checked_sub_signed(retention)
            .map_or(i64::MIN, |t| t.timestamp_micros());
        Ok(self.store.prune_events(cutoff).await?)
    }

    /// What `principal` may read of the events of `workspace` (all when `None`): platform
    /// callers every workspace's, under any name, deleted ones' included; anyone else the
    /// events of a workspace where it holds `events.list`, of that workspace only (not of
    /// an earlier one of the same name).
    async fn scope(
        &self,
        principal: &Principal,
        workspace: Option<WorkspaceName>,
        kinds: Vec<EventKind>,
    ) -> Result<Scope> {
        let mut filter = Filter {
            kinds,
            ..Filter::default()
        };
        let Some(name) = workspace else {
            if !principal.platform.any() {
                return Err(Error::denied(
                    "reading every workspace's events needs a platform role; name a workspace",
                ));
            }
            return Ok(Scope {
                filter,
                member_of: None,
            });
        };
        filter.workspace = Some(name.as_str().to_owned());
        if principal.platform.any() {
            return Ok(Scope {
                filter,
                member_of: None,
            });
        }
        let ws = guard::read(&self.store, principal, &name, Permission::EventsList).await?;
        filter.workspace_id = Some(ws.id.clone());
        Ok(Scope {
            filter,
            member_of: Some(name),
        })
    }

    /// ListEvents.
    pub(crate) async fn list(&self, principal: &Principal, input: ListEvents) -> Result<EventPage> {
        let ListEvents {
            workspace,
            after_revision,
            kinds,
            page,
            fingerprint,
        } = input;
        let scope = self.scope(principal, workspace, kinds).await?;
        // A page token goes on from the previous page's last revision; a follower that asked
        // for a revision, or went on from a page, must not miss what was pruned since.
        let (after, resumed) = match page.after_key() {
            Some(key) => match key.parse::<i64>() {
                Ok(r) if r >= 0 => (r, true),
                _ => return Err(Error::invalid("page_token", "is malformed")),
            },
            None => (after_revision, after_revision > 0),
        };
        self.store.number_committed().await?;
        let batch = self
            .store
            .read_events(&scope.filter, after, page.size + 1, self.settings.window)
            .await?;
        if resumed && after < batch.pruned {
            return Err(expired(after, batch.pruned));
        }
        beyond_latest(after_revision, batch.latest)?;
        let stopped = batch.more() && batch.events.len() as u64 <= page.size;
        // A page stops short of its size rather than outgrow a response.
        let mut out = page::finish_within(
            batch.events,
            page.size,
            PAGE_BYTES,
            |e| e.object.approx_bytes(),
            &fingerprint,
            |e| vec![e.revision.to_string()],
        );
        if stopped && out.next_page_token.is_empty() {
            // The read ended at its window with the page not full (even empty): the next
            // page goes on from where it stopped looking, as Cloud Logging's pages do.
            out.next_page_token = page::next_token(vec![batch.reached.to_string()], &fingerprint);
        }
        Ok(EventPage {
            events: out.items,
            next_page_token: out.next_page_token,
            latest_revision: batch.latest,
        })
    }

    /// WatchEvents: the events after `after_revision` (or from now on), then each as it
    /// commits, until the client leaves, falls too far behind, loses `events.list`, or the
    /// history it needs next is pruned.
    pub(crate) async fn watch(&self, principal: &Principal, input: WatchEvents) -> Result<Watch> {
        let WatchEvents {
            workspace,
            after_revision,
            kinds,
        } = input;
        let scope = self.scope(principal, workspace, kinds).await?;
        let permit = self.watches.clone().try_acquire_owned().map_err(|_| {
            Error::Overloaded(
                "the server follows as many watches as it holds; retry with backoff".into(),
            )
        })?;
        // Subscribed before the first read, so that no commit after it goes unnoticed.
        let revisions = self.store.revisions();
        self.store.number_committed().await?;
        let (position, first) = if after_revision > 0 {
            let batch = self
                .store
                .read_events(
                    &scope.filter,
                    after_revision,
                    WATCH_BATCH,
                    self.settings.window,
                )
                .await?;
            if after_revision < batch.pruned {
                return Err(expired(after_revision, batch.pruned));
            }
            beyond_latest(after_revision, batch.latest)?;
            (after_revision, batch)
        } else {
            let latest = self.store.latest_revision().await?;
            (
                latest,
                Batch {
                    latest,
                    reached: latest,
                    ..Batch::default()
                },
            )
        };
        let (data, data_rx) = mpsc::channel(WATCH_BUFFER);
        let (end, end_rx) = oneshot::channel();
        let follower = Follower {
            store: self.store.clone(),
            principal: principal.clone(),
            scope,
            position,
            revisions,
            data,
            end: Some(end),
            max_lag: self.settings.max_lag,
            least_lag: i64::MAX,
            window: self.settings.window,
            closing: self.closing.subscribe(),
            expiry: expiry_of(principal),
            gone: false,
        };
        tokio::spawn(async move {
            let _permit = permit;
            follower.run(first).await;
        });
        Ok(Watch {
            data: data_rx,
            end: Some(end_rx),
        })
    }
}

/// How much of a ListEvents page's objects a response holds at most, well under the 4 MiB a
/// response may take: a page of 1,000 large workspaces would not fit.
const PAGE_BYTES: usize = 2 << 20;

/// A revision above the latest is none this deployment has had (a follower of a database
/// since restored from a backup, say): reading on from it would skip what comes first.
fn beyond_latest(after: i64, latest: i64) -> Result<()> {
    if after > latest {
        return Err(Error::invalid(
            "after_revision",
            format!(
                "{after} is above the latest revision, {latest}; follow from the latest, or \
                 list from 0"
            ),
        ));
    }
    Ok(())
}

/// REVISION_EXPIRED for a reader after `after`, when events up to `pruned` are gone.
fn expired(after: i64, pruned: i64) -> Error {
    Error::precondition(
        Reason::RevisionExpired,
        format!("revisions/{after}"),
        format!(
            "events after revision {after} up to {pruned} were pruned; list from revision 0 \
             (the oldest kept) or watch from now on, and read the current state again"
        ),
    )
    .with("afterRevision", after)
    .with("prunedRevision", pruned)
}

/// A watch's events, in messages of up to `WATCH_BATCH`, then its end: nothing when the
/// client left, or the error that ended it.
pub struct Watch {
    data: mpsc::Receiver<Vec<Event>>,
    end: Option<oneshot::Receiver<Error>>,
}

impl Stream for Watch {
    type Item = Result<Vec<Event>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.data.poll_recv(cx) {
            Poll::Ready(Some(events)) => return Poll::Ready(Some(Ok(events))),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        // Every message is out: the follower has ended, and said why (or only left).
        let Some(end) = self.end.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(end).poll(cx) {
            Poll::Ready(why) => {
                self.end = None;
                Poll::Ready(why.ok().map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The task behind one watch: reads the history after its position, hands it to the client
/// a bounded number of messages ahead, and waits for the next commit.
struct Follower {
    store: Store,
    principal: Principal,
    scope: Scope,
    /// The revision up to which the client has been given every event of its filter.
    position: i64,
    revisions: watch::Receiver<i64>,
    data: mpsc::Sender<Vec<Event>>,
    end: Option<oneshot::Sender<Error>>,
    max_lag: i64,
    /// The fewest revisions the watch's position has been behind the newest known to the
    /// replica since it began: how far behind it is now, less this, is how far it fell
    /// behind. A client catching up from far behind lowers it as it goes, and is never
    /// too slow while it does.
    least_lag: i64,
    /// Events one read looks at, at most (`EventSettings::window`).
    window: u64,
    closing: watch::Receiver<bool>,
    /// When the caller's token expires: the watch ends then (TOKEN_EXPIRED).
    expiry: Option<tokio::time::Instant>,
    /// Whether the watched workspace of a member's watch was found deleted.
    gone: bool,
}

/// When `p`'s token expires, on this process's clock.
fn expiry_of(p: &Principal) -> Option<tokio::time::Instant> {
    let exp = p.expires_at?;
    let left = exp.saturating_sub(chrono::Utc::now().timestamp());
    Some(tokio::time::Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0)))
}

/// Completes at `expiry`; never without one.
async fn expired_at(expiry: Option<tokio::time::Instant>) {
    match expiry {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How a watch ends when its caller's token expires.
fn token_expired() -> Error {
    Error::Unauthenticated {
        reason: Reason::TokenExpired,
        message: "the token expired during the watch; resume with a fresh one".into(),
    }
}

impl Follower {
    async fn run(mut self, mut batch: Batch) {
        self.least_lag = self.lag();
        loop {
            if self.position < batch.pruned {
                let e = expired(self.position, batch.pruned);
                return self.finish(e);
            }
            // Between reads that deliver nothing (a rare filter, read a window at a time)
            // a client that left would not be noticed otherwise.
            if self.data.is_closed() || *self.closing.borrow() {
                return;
            }
            let more = batch.more();
            let reached = batch.reached;
            if self
                .expiry
                .is_some_and(|at| at <= tokio::time::Instant::now())
            {
                return self.finish(token_expired());
            }
            if let Some(last) = batch.events.last().map(|e| e.revision) {
                // A member's watch of one workspace ends with its deletion, its last event.
                let deleted = self.scope.member_of.is_some()
                    && batch
                        .events
                        .iter()
                        .any(|e| e.kind == EventKind::WorkspaceDeleted);
                // Once the workspace is gone, what remains are its last events, up to its
                // deletion: the caller held events.list until then.
                if !self.gone {
                    match self.still_allowed().await {
                        Ok(true) => {}
                        Ok(false) => self.gone = true,
                        Err(e) => return self.finish(e),
                    }
                }
                if !self.deliver(batch.events).await || deleted {
                    return;
                }
                self.position = last;
            }
            self.position = self.position.max(reached);
            self.least_lag = self.least_lag.min(self.lag());
            if !more {
                // Everything up to `latest` was read (the batch and the counter are one
                // snapshot): wait for a later commit, or for the client to leave.
                let position = self.position;
                let expired = tokio::select! {
                    changed = self.revisions.wait_for(|r| *r > position) => {
                        if changed.is_err() {
                            return;
                        }
                        false
                    }
                    () = self.data.closed() => return,
                    _ = self.closing.wait_for(|c| *c) => return,
                    () = expired_at(self.expiry) => true,
                };
                if expired {
                    return self.finish(token_expired());
                }
            }
            batch = match self.next_batch().await {
                Ok(b) => b,
                Err(e) => return self.finish(e),
            };
        }
    }

    /// The next events after the watch's position: from the replica's tail of newest events
    /// when it reaches back that far (filled once for every watch), else from the database.
    async fn next_batch(&mut self) -> Result<Batch> {
        let target = *self.revisions.borrow();
        if target > self.position {
            self.store.fill_tail(target).await?;
        }
        if let Some(batch) = self
            .store
            .tail_events(&self.scope.filter, self.position, WATCH_BATCH)
        {
            return Ok(batch);
        }
        Ok(self
            .store
            .read_events(&self.scope.filter, self.position, WATCH_BATCH, self.window)
            .await?)
    }

    /// Whether a caller without a platform role still holds `events.list` in the workspace
    /// it watches: `Ok(false)` when that workspace is gone, an error when access is lost.
    async fn still_allowed(&self) -> Result<bool> {
        let (Some(name), Some(id)) = (&self.scope.member_of, &self.scope.filter.workspace_id)
        else {
            return Ok(true);
        };
        guard::read_same(
            &self.store,
            &self.principal,
            name,
            id,
            Permission::EventsList,
        )
        .await
        .map(|ws| ws.is_some())
    }

    /// How many revisions the watch's position is behind the newest the replica knows.
    fn lag(&self) -> i64 {
        (*self.revisions.borrow() - self.position).max(0)
    }

    /// Hands `events` to the client, waiting while it reads; false when the watch is over:
    /// the client left, or fell `max_lag` behind. A watch of every event falls behind by
    /// how much further behind the newest it is than it ever was (see `least_lag`): a client
    /// that reads nothing falls behind by every commit during its wait, one that reads
    /// steadily but slower than events commit over many waits. A filtered watch counts only
    /// the commits during one wait: the revisions between it and the newest are mostly
    /// events it does not match, so a client working through a burst of its own events
    /// while the rest of the deployment is busy is not too slow, though far behind.
    async fn deliver(&mut self, events: Vec<Event>) -> bool {
        let at_wait = *self.revisions.borrow_and_update();
        let every_event = self.scope.filter.matches_all();
        loop {
            let committed = tokio::select! {
                permit = self.data.reserve() => {
                    return match permit {
                        Ok(permit) => {
                            permit.send(events);
                            true
                        }
                        Err(_) => false,
                    };
                }
                changed = self.revisions.changed() => match changed {
                    Ok(()) => true,
                    Err(_) => return false,
                },
                _ = self.closing.wait_for(|c| *c) => return false,
                () = expired_at(self.expiry) => false,
            };
            if !committed {
                self.finish(token_expired());
                return false;
            }
            let behind = if every_event {
                self.lag().saturating_sub(self.least_lag)
            } else {
                *self.revisions.borrow() - at_wait
            };
            if behind >= self.max_lag {
                let e = Error::WatchTooSlow(format!(
                    "the watch fell {behind} revisions behind, as its client reads slower \
                     than events commit; resume with after_revision = {}",
                    self.position
                ));
                self.finish(e);
                return false;
            }
        }
    }

    /// Ends the watch with `e`, after the messages already handed over.
    fn finish(&mut self, e: Error) {
        if let Some(end) = self.end.take() {
            // The client may have left; then nobody needs to know.
            let _ = end.send(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::PlatformRoles;

    /// A follower partway through a rare filter's history, a window at a time, whose watch
    /// is over before its next read: it reads nothing more. (Between reads that deliver
    /// nothing it would otherwise read on to the end of the history first.)
    #[tokio::test]
    async fn a_watch_that_is_over_reads_no_further_window() {
        let (store, _dir) = Store::scratch().await;
        // Partway: the last read reached revision 4 of 1,000 and matched nothing.
        let partway = || Batch {
            latest: 1000,
            reached: 4,
            ..Batch::default()
        };
        let follower = |data, closing| Follower {
            store: store.clone(),
            principal: Principal::new("svc".into(), Vec::new(), PlatformRoles::default()),
            scope: Scope {
                filter: Filter {
                    kinds: vec![EventKind::ResourceUnregistered],
                    ..Filter::default()
                },
                member_of: None,
            },
            position: 0,
            revisions: store.revisions(),
            data,
            end: None,
            max_lag: 10_000,
            least_lag: i64::MAX,
            window: 4,
            closing,
            expiry: None,
            gone: false,
        };

        // The client left.
        let (data, gone) = mpsc::channel(1);
        drop(gone);
        let (_open, closing) = watch::channel(false);
        let before = store.statements();
        follower(data, closing).run(partway()).await;
        assert_eq!(store.statements(), before, "read after the client left");

        // The server is shutting down, the client still there.
        let (data, _client) = mpsc::channel(1);
        let (_closed, closing) = watch::channel(true);
        let before = store.statements();
        follower(data, closing).run(partway()).await;
        assert_eq!(store.statements(), before, "read while shutting down");
    }

    /// A watch 900 revisions behind the newest, once at it, whose client has not taken its
    /// last message while 50 more commit (`max_lag` 200): a watch of every event fell 950
    /// behind where it was and is too slow; a filtered one, whose revisions behind are
    /// mostly events it does not match, fell 50 and is not.
    #[tokio::test]
    async fn a_filtered_watch_counts_only_what_commits_while_it_waits() {
        let (store, _dir) = Store::scratch().await;
        for (filter, too_slow) in [
            (Filter::default(), true),
            (
                Filter {
                    workspace: Some("mine".into()),
                    ..Filter::default()
                },
                false,
            ),
        ] {
            let (newest, revisions) = watch::channel(1000);
            let (data, mut client) = mpsc::channel(1);
            data.try_send(Vec::new()).expect("room for one message");
            let (end, mut ended) = oneshot::channel();
            let (_open, closing) = watch::channel(false);
            let mut follower = Follower {
                store: store.clone(),
                principal: Principal::new("svc".into(), Vec::new(), PlatformRoles::default()),
                scope: Scope {
                    filter,
                    member_of: None,
                },
                position: 100,
                revisions,
                data,
                end: Some(end),
                max_lag: 200,
                least_lag: 0,
                window: 4,
                closing,
                expiry: None,
                gone: false,
            };
            let delivered = tokio::spawn(async move { follower.deliver(Vec::new()).await });
            // The follower waits for its client before more commit.
            tokio::time::sleep(Duration::from_millis(20)).await;
            newest.send(1050).expect("the watch listens");
            if too_slow {
                let delivered = tokio::time::timeout(Duration::from_secs(5), delivered)
                    .await
                    .expect("a watch too slow was not ended");
                assert!(!delivered.expect("deliver"));
                client.recv().await.expect("the message waiting");
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert!(!delivered.is_finished(), "ended though it keeps up");
                client.recv().await.expect("the message waiting");
                assert!(delivered.await.expect("deliver"));
            }
            assert_eq!(
                ended.try_recv().ok().map(|e| e.reason()),
                too_slow.then_some(Reason::WatchTooSlow)
            );
        }
    }
}
