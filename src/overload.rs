//! The line calls wait in for a place among the calls in flight, and how long they wait.
//!
//! A fixed wait serves bursts well and sustained overload badly: when more calls arrive than
//! the server completes, the line never empties, every admitted call first waits the whole
//! bound, and the admitted calls' latency becomes the bound. So the line is adaptive, as
//! CoDel-style server queues are ("Fail at Scale", Maurer, 2015): a call waits up to the
//! burst bound only while the line has been empty within the last `INTERVAL`; once it has
//! stood longer, calls wait at most `STANDING_WAIT`, and overload is refused almost at once
//! while admitted calls keep a short wait. The line empties again as soon as a call finds a
//! free place at once, unless a call was refused within the last `INTERVAL`: under
//! standing overload a place also comes free now and then because every call in line gave
//! up at once (a stall of the database or of the machine), which does not end the overload
//! (on PostgreSQL at 4x, each such moment gave a few hundred admitted calls the burst's
//! 50 ms wait).
//!
//! Who gets a freed place adapts as well (adaptive LIFO, from the same paper): the oldest
//! call while the line has not stood and its oldest call has waited less than
//! `STANDING_WAIT`, first come first served, but the newest once a queue forms (the line
//! stands, or its oldest call has waited `STANDING_WAIT`). Then the oldest call has waited
//! long already: first come first served gave every admitted call that wait on top of its
//! own time (on PostgreSQL at 4x, a median of 9.4 ms in line against 1.3 ms served newest
//! first under standing overload; in the step from half load to 4x, before the line stood,
//! a median of 31 ms before their place for the slow calls admitted then), while the calls
//! passed over are refused at the end of their wait either way. The price: once a queue
//! forms, a backlog drains only with the capacity new calls leave, so after a stall long
//! enough to fill every place, the oldest calls in line may run out the wait where first
//! come first served would have admitted them.
//!
//! The places in flight adapt too. A call in flight waits for the database (one SQLite
//! writer, a pool, row locks), so with all places taken an admitted call waits for the calls
//! ahead of it, however short the line: 64 writes in flight at 1,500 a second are 40 ms each.
//! A closed loop of callers no larger than the places never waits in line (each waits for its
//! answer before it calls again), so it keeps every place, and that wait is its own doing. A
//! call that waited in line longer than `STANDING_WAIT` means calls arrive faster than places
//! free: more places would not complete more, only make each admitted call wait longer. So
//! the places then halve, at most once per `SHRINK_STEP`, down to a floor (`--min-in-flight`;
//! by default about what keeps the database busy, see
//! [`crate::store::Store::overload_places`]: fewer would refuse calls the database could run
//! side by side, and keep refusing them, since with too few places the line never empties;
//! more only make each admitted call wait longer inside it); each call that finds a free
//! place at once gives one back.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

/// How long the line may stand (no call finding a free place at once) before its wait
/// shortens and freed places go to the newest call in it (sooner once its oldest call has
/// waited `STANDING_WAIT`), and how long after a refusal a free place does not empty it.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The longest wait in a line that has stood for longer than `INTERVAL`; a call that waited
/// this long halves the places, and a line whose oldest call waited this long hands freed
/// places to the newest.
pub const STANDING_WAIT: Duration = Duration::from_millis(5);

/// How often, at most, the places halve.
pub const SHRINK_STEP: Duration = Duration::from_millis(10);

/// The places in flight and the line before them; share it in an `Arc`.
#[derive(Debug)]
pub struct Line {
    /// The bound, and the fewest places the line shrinks to.
    max: usize,
    min: usize,
    burst_wait: Duration,
    epoch: Instant,
    /// Every step takes this lock for a few instructions, never across an await.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The places now; the calls holding one, and the places free. After the line shrinks,
    /// `held + free` may exceed `limit` until enough calls in flight end: their places are
    /// forgotten instead of given back.
    limit: usize,
    held: usize,
    free: usize,
    /// The calls in line, oldest first.
    waiting: VecDeque<Arc<Waiter>>,
    /// When the line was last empty (a call found a free place at once and none was
    /// refused within `INTERVAL`), when a call was last refused, and when the places last
    /// shrank, in µs since `epoch`.
    last_empty: u64,
    last_refused: Option<u64>,
    last_shrink: u64,
}

/// A call in line; `since` is when it joined, in µs since the line's epoch. `granted` is
/// set, under the line's lock, when a place is handed to it.
#[derive(Debug, Default)]
struct Waiter {
    notify: Notify,
    granted: AtomicBool,
    since: u64,
}

impl Waiter {
    fn granted(&self) -> bool {
        // Only read and written under the line's lock, which orders it.
        self.granted.load(Ordering::Relaxed)
    }
}

/// A place in flight, given back (or forgotten, if the line has shrunk) when dropped.
#[derive(Debug)]
pub struct Place {
    line: Arc<Line>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.line.give_back();
    }
}

/// A call's place in line while it waits: if the call is dropped meanwhile (its caller
/// went away), it leaves the line, or gives back the place it was just handed.
struct Ticket<'a> {
    line: &'a Arc<Line>,
    waiter: Arc<Waiter>,
    done: bool,
}

impl Ticket<'_> {
    /// Leaves the line: with the place handed to this call, if any.
    fn leave(&mut self, state: &mut State) -> bool {
        self.done = true;
        if self.waiter.granted() {
            return true;
        }
        if let Some(i) = state
            .waiting
            .iter()
            .position(|w| Arc::ptr_eq(w, &self.waiter))
        {
            state.waiting.remove(i);
        }
        false
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.line.lock();
        if self.leave(&mut state) {
            drop(state);
            self.line.give_back();
        }
    }
}

impl Line {
    /// A line before `places` places, never shrunk below `min`, where a call waits at most
    /// `burst_wait` while the line is new.
    pub fn new(places: usize, min: usize, burst_wait: Duration) -> Self {
        Line {
            max: places,
            min: min.clamp(1, places.max(1)),
            burst_wait,
            epoch: Instant::now(),
            state: Mutex::new(State {
                limit: places,
                held: 0,
                free: places,
                waiting: VecDeque::new(),
                last_empty: 0,
                last_refused: None,
                last_shrink: 0,
            }),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The places in flight now.
    pub fn places(&self) -> usize {
        self.lock().limit
    }

    /// Whether the line has stood (no call found a free place at once) for over `INTERVAL`.
    fn standing(state: &State, now: u64) -> bool {
        now.saturating_sub(state.last_empty) > INTERVAL.as_micros() as u64
    }

    /// Whether a queue is forming: the line stands, or its oldest call has waited
    /// `STANDING_WAIT` already (at the step from light load to overload, the line serves a
    /// burst for `INTERVAL` before it stands: served oldest first, the slow calls admitted
    /// then waited a median of 31 ms before their place, on PostgreSQL at 4x).
    fn forming(state: &State, now: u64) -> bool {
        Self::standing(state, now)
            || state
                .waiting
                .front()
                .is_some_and(|w| now.saturating_sub(w.since) >= STANDING_WAIT.as_micros() as u64)
    }

    /// If the places allow one more call in flight than hold one, hands it to a call in line
    /// (returned, to be woken once the lock is released) or keeps it free. Once a queue
    /// forms the newest call gets it, as in adaptive LIFO ("Fail at Scale", Maurer, 2015):
    /// the oldest has waited long already and would take it only to be slow, while the calls
    /// behind it wait on and are refused anyway; handed to the newest, admitted calls barely
    /// wait and the refused ones are the stale.
    fn hand_over(&self, state: &mut State, now: u64) -> Option<Arc<Waiter>> {
        if state.held + state.free >= state.limit {
            return None;
        }
        let next = if Self::forming(state, now) {
            state.waiting.pop_back()
        } else {
            state.waiting.pop_front()
        };
        match next {
            Some(w) => {
                w.granted.store(true, Ordering::Relaxed);
                state.held += 1;
                Some(w)
            }
            None => {
                state.free += 1;
                None
            }
        }
    }

    /// A place in flight ended: handed on, kept free, or forgotten if the line has shrunk.
    fn give_back(&self) {
        let now = self.now();
        let mut state = self.lock();
        state.held -= 1;
        let woken = self.hand_over(&mut state, now);
        drop(state);
        if let Some(w) = woken {
            w.notify.notify_one();
        }
    }

    /// One place more, up to the bound.
    fn grow(&self, state: &mut State, now: u64) -> Option<Arc<Waiter>> {
        if state.limit >= self.max {
            return None;
        }
        state.limit += 1;
        self.hand_over(state, now)
    }

    /// Halves the places, at most once per `SHRINK_STEP`, down to the floor: free places are
    /// forgotten now, the rest as the calls holding them end.
    fn shrink(&self, state: &mut State, now: u64) {
        if now.saturating_sub(state.last_shrink) < SHRINK_STEP.as_micros() as u64
            || state.limit <= self.min
        {
            return;
        }
        state.last_shrink = now;
        state.limit = (state.limit / 2).max(self.min);
        let excess = (state.held + state.free).saturating_sub(state.limit);
        state.free -= excess.min(state.free);
    }

    /// A place in flight, held until it is dropped; `None` when none came free within the
    /// line's current wait.
    pub async fn enter(self: &Arc<Self>) -> Option<Place> {
        let start = self.now();
        let (waiter, wait) = {
            let mut state = self.lock();
            if state.free > 0 {
                state.free -= 1;
                state.held += 1;
                if state
                    .last_refused
                    .is_none_or(|r| start.saturating_sub(r) > INTERVAL.as_micros() as u64)
                {
                    state.last_empty = start;
                }
                let woken = self.grow(&mut state, start);
                drop(state);
                if let Some(w) = woken {
                    w.notify.notify_one();
                }
                return Some(Place { line: self.clone() });
            }
            let wait = if Self::standing(&state, start) {
                self.burst_wait.min(STANDING_WAIT)
            } else {
                self.burst_wait
            };
            let waiter = Arc::new(Waiter {
                since: start,
                ..Waiter::default()
            });
            state.waiting.push_back(waiter.clone());
            (waiter, wait)
        };
        let mut ticket = Ticket {
            line: self,
            waiter,
            done: false,
        };
        let _ = tokio::time::timeout(wait, ticket.waiter.notify.notified()).await;
        let end = self.now();
        let mut state = self.lock();
        let admitted = ticket.leave(&mut state);
        if u128::from(end.saturating_sub(start)) >= STANDING_WAIT.as_micros() {
            self.shrink(&mut state, end);
        }
        if admitted {
            Some(Place { line: self.clone() })
        } else {
            state.last_refused = Some(end);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long `line.enter()` took, and whether it got a place.
    async fn wait(line: &Arc<Line>) -> (Duration, bool) {
        let start = Instant::now();
        let got = line.enter().await.is_some();
        (start.elapsed(), got)
    }

    /// The places free now.
    fn free(line: &Line) -> usize {
        line.lock().free
    }

    /// The places still held by calls in flight that are to be forgotten when they end.
    fn owed(line: &Line) -> usize {
        let s = line.lock();
        (s.held + s.free).saturating_sub(s.limit)
    }

    /// Calls `line.enter()` in a task of its own, after the tasks started before it have
    /// joined the line; the task ends with how long it waited and the place it got.
    async fn in_line(line: &Arc<Line>) -> tokio::task::JoinHandle<(Duration, Option<Place>)> {
        let task = tokio::spawn({
            let line = line.clone();
            async move {
                let start = Instant::now();
                let place = line.enter().await;
                (start.elapsed(), place)
            }
        });
        tokio::time::sleep(Duration::from_micros(100)).await;
        task
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_place_goes_to_the_oldest_call_in_a_burst_and_to_the_newest_once_a_queue_forms()
    {
        let line = Arc::new(Line::new(1, 1, Duration::from_millis(50)));
        // A burst: first come, first served.
        let held = line.enter().await.expect("a free place");
        let (first, second) = (in_line(&line).await, in_line(&line).await);
        drop(held);
        let first = first.await.unwrap();
        assert!(first.1.is_some(), "the oldest call gets the place");
        assert_eq!(
            second.await.unwrap().0,
            Duration::from_millis(50),
            "the newer waits out the burst bound"
        );
        drop(first);
        // Still a burst (the line stood for less than INTERVAL), but its oldest call has
        // waited the standing wait: a queue forms, and the newest call gets the place.
        let held = line.enter().await.expect("a free place");
        let older = in_line(&line).await;
        tokio::time::sleep(STANDING_WAIT).await;
        let newer = in_line(&line).await;
        drop(held);
        let (waited, place) = newer.await.unwrap();
        assert!(place.is_some(), "the newest call gets the place");
        assert!(waited < STANDING_WAIT, "as soon as it was free: {waited:?}");
        drop(place);
        let (waited, place) = older.await.unwrap();
        assert!(
            place.is_some(),
            "the place is free again, and the older call gets it"
        );
        assert!(
            waited < Duration::from_millis(50),
            "before its wait ran out: {waited:?}"
        );
        drop(place);
        // Overload stands: the newest call gets the freed place; the older one, which has
        // waited longest already, is refused at the end of its wait.
        let held = line.enter().await.expect("a free place");
        tokio::time::advance(INTERVAL).await;
        assert_eq!(wait(&line).await, (STANDING_WAIT, false));
        let (older, newer) = (in_line(&line).await, in_line(&line).await);
        tokio::time::sleep(Duration::from_millis(1)).await;
        drop(held);
        let (waited, place) = newer.await.unwrap();
        assert!(place.is_some(), "the newest call gets the place");
        assert!(waited < STANDING_WAIT, "as soon as it was free: {waited:?}");
        let (waited, place) = older.await.unwrap();
        assert_eq!((waited, place.is_some()), (STANDING_WAIT, false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_goes_away_leaves_the_line_and_gives_back_a_place_handed_to_it() {
        let line = Arc::new(Line::new(1, 1, Duration::from_millis(50)));
        let held = line.enter().await.expect("a free place");
        // Dropped while in line: it leaves it.
        let gone = in_line(&line).await;
        gone.abort();
        let _ = gone.await;
        assert!(line.lock().waiting.is_empty());
        assert_eq!((free(&line), line.lock().held), (0, 1));
        // Handed a place, then dropped before it ran: the place is free again.
        let mut handed = Box::pin(line.enter());
        assert!(futures::poll!(handed.as_mut()).is_pending());
        drop(held);
        drop(handed);
        assert_eq!((free(&line), line.lock().held), (1, 0));
        assert!(line.enter().await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_waits_for_bursts_and_refuses_standing_overload_quickly() {
        let line = Arc::new(Line::new(1, 1, Duration::from_millis(50)));
        let held = line
            .enter()
            .await
            .expect("the first call finds a free place");
        // A burst: the line was empty a moment ago, so a call waits the whole burst bound.
        assert_eq!(wait(&line).await, (Duration::from_millis(50), false));
        // The line has now stood for more than INTERVAL: calls are refused after the
        // standing wait.
        tokio::time::advance(INTERVAL).await;
        assert_eq!(wait(&line).await, (STANDING_WAIT, false));
        assert_eq!(wait(&line).await, (STANDING_WAIT, false));
        // A place that frees within the standing wait still admits the waiting call.
        let waiter = tokio::spawn({
            let line = line.clone();
            async move { wait(&line).await }
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
        drop(held);
        assert_eq!(
            waiter.await.unwrap(),
            (Duration::from_millis(2), true),
            "the freed place goes to the call in line"
        );
        // A place free while calls were refused within INTERVAL does not end the overload.
        let held = line.enter().await.expect("a free place");
        assert_eq!(wait(&line).await, (STANDING_WAIT, false));
        drop(held);
        // Once no call has been refused for INTERVAL, a call that finds a free place at once
        // empties the line: bursts wait long again.
        tokio::time::advance(INTERVAL + Duration::from_millis(1)).await;
        let held = line.enter().await.expect("a free place");
        assert_eq!(wait(&line).await, (Duration::from_millis(50), false));
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_that_wait_long_halve_the_places_to_the_floor_and_free_places_bring_them_back() {
        let line = Arc::new(Line::new(64, 4, Duration::from_millis(50)));
        let mut held = Vec::new();
        for _ in 0..64 {
            held.push(line.enter().await.expect("a free place"));
        }
        // A call that waits less than the standing wait leaves the places as they are.
        let waiter = tokio::spawn({
            let line = line.clone();
            async move { line.enter().await }
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
        held.pop();
        held.push(waiter.await.unwrap().expect("the freed place"));
        assert_eq!(line.places(), 64);
        // Calls that wait longer halve the places, at most once per SHRINK_STEP.
        assert_eq!(wait(&line).await, (Duration::from_millis(50), false));
        assert_eq!(line.places(), 32);
        tokio::time::advance(INTERVAL).await;
        assert_eq!(wait(&line).await, (STANDING_WAIT, false));
        assert_eq!(line.places(), 16);
        assert_eq!(wait(&line).await, (STANDING_WAIT, false));
        assert_eq!(line.places(), 16, "5 ms after the last halving");
        for expected in [8, 4, 4] {
            tokio::time::advance(SHRINK_STEP).await;
            wait(&line).await;
            assert_eq!(line.places(), expected);
        }
        // The places the calls in flight hold are forgotten as they end, until 4 are left.
        held.truncate(4);
        assert_eq!(free(&line), 0);
        held.clear();
        assert_eq!(free(&line), 4);
        assert_eq!(owed(&line), 0);
        // Each call that finds a free place at once gives one back, up to the bound.
        for _ in 0..100 {
            held.push(line.enter().await.expect("a free place"));
            held.clear();
        }
        assert_eq!(line.places(), 64);
        assert_eq!(free(&line), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn the_places_in_use_and_free_always_add_up_to_the_limit() {
        let line = Arc::new(Line::new(16, 4, Duration::from_millis(50)));
        let mut held = Vec::new();
        for _ in 0..16 {
            held.push(line.enter().await.expect("a free place"));
        }
        wait(&line).await;
        assert_eq!((line.places(), owed(&line)), (8, 8));
        // Calls end: their places are forgotten while any is owed, then given back.
        held.truncate(14);
        assert_eq!((free(&line), owed(&line)), (0, 6));
        held.truncate(6);
        assert_eq!((free(&line), owed(&line)), (2, 0));
        assert_eq!(held.len() + free(&line), line.places());
        // A call that finds a place at once adds one.
        held.push(line.enter().await.expect("a free place"));
        assert_eq!(line.places(), 9);
        assert_eq!(held.len() + free(&line), line.places());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_line_that_has_refused_no_call_is_empty_whenever_a_place_is_free() {
        let line = Arc::new(Line::new(1, 1, Duration::from_millis(50)));
        tokio::time::advance(Duration::from_millis(60)).await;
        let _held = line.enter().await.expect("a free place");
        tokio::time::advance(Duration::from_millis(90)).await;
        // The line was empty 90 ms ago: a burst, not standing overload.
        assert_eq!(wait(&line).await, (Duration::from_millis(50), false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_bound_shorter_than_the_standing_wait_is_kept() {
        let line = Arc::new(Line::new(1, 1, Duration::from_millis(1)));
        let _held = line.enter().await.unwrap();
        tokio::time::advance(INTERVAL * 2).await;
        assert_eq!(wait(&line).await, (Duration::from_millis(1), false));
    }
}
