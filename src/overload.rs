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
//! The places in flight adapt too. A call in flight waits for the database (one SQLite
//! writer, a pool, row locks), so with all places taken an admitted call waits for the calls
//! ahead of it, however short the line: 64 writes in flight at 1,500 a second are 40 ms each.
//! A closed loop of callers no larger than the places never waits in line (each waits for its
//! answer before it calls again), so it keeps every place, and that wait is its own doing. A
//! call that waited in line longer than `STANDING_WAIT` means calls arrive faster than places
//! free: more places would not complete more, only make each admitted call wait longer. So
//! the places then halve, at most once per `SHRINK_STEP`, down to the database's own
//! parallelism (fewer would refuse calls the database could run side by side, and keep
//! refusing them: with too few places the line never empties); each call that finds a free
//! place at once gives one back.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// How long the line may stand (no call finding a free place at once) before its wait
/// shortens, and how long after a refusal a free place does not empty it.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The longest wait in a line that has stood for longer than `INTERVAL`; a call that waited
/// this long halves the places.
pub const STANDING_WAIT: Duration = Duration::from_millis(5);

/// How often, at most, the places halve.
pub const SHRINK_STEP: Duration = Duration::from_millis(10);

/// The places in flight and the line before them; cheap to share.
#[derive(Debug)]
pub struct Line {
    places: Arc<Semaphore>,
    /// The bound, and the fewest places the line shrinks to.
    max: usize,
    min: usize,
    /// The places now, and how many of them are still held by calls in flight and are to be
    /// forgotten, instead of given back, when those calls end.
    limit: AtomicUsize,
    owed: Arc<AtomicUsize>,
    burst_wait: Duration,
    epoch: Instant,
    /// When the line was last empty (a call found a free place at once and none was
    /// refused within `INTERVAL`), when a call was last refused, and when the places last
    /// shrank, in µs since `epoch`.
    last_empty: AtomicU64,
    last_refused: AtomicU64,
    last_shrink: AtomicU64,
}

/// A place in flight, given back (or forgotten, if the line has shrunk) when dropped.
#[derive(Debug)]
pub struct Place {
    permit: Option<OwnedSemaphorePermit>,
    owed: Arc<AtomicUsize>,
}

/// Takes one from `count` unless it is 0; whether it did.
fn take_one(count: &AtomicUsize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl Drop for Place {
    fn drop(&mut self) {
        if let (true, Some(permit)) = (take_one(&self.owed), self.permit.take()) {
            permit.forget();
        }
    }
}

impl Line {
    /// A line before `places` places, never shrunk below `min`, where a call waits at most
    /// `burst_wait` while the line is new.
    pub fn new(places: usize, min: usize, burst_wait: Duration) -> Self {
        Line {
            places: Arc::new(Semaphore::new(places)),
            max: places,
            min: min.clamp(1, places.max(1)),
            limit: AtomicUsize::new(places),
            owed: Arc::new(AtomicUsize::new(0)),
            burst_wait,
            epoch: Instant::now(),
            last_empty: AtomicU64::new(0),
            last_refused: AtomicU64::new(0),
            last_shrink: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The places in flight now.
    pub fn places(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    fn place(&self, permit: OwnedSemaphorePermit) -> Place {
        Place {
            permit: Some(permit),
            owed: self.owed.clone(),
        }
    }

    /// One place more, up to the bound: first by cancelling a place still owed, else by
    /// adding one.
    fn grow(&self) {
        let grown = self
            .limit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                (l < self.max).then_some(l + 1)
            })
            .is_ok();
        if grown && !take_one(&self.owed) {
            self.places.add_permits(1);
        }
    }

    /// Halves the places, at most once per `SHRINK_STEP`, down to the floor: free places are
    /// forgotten now, the rest as the calls holding them end.
    fn shrink(&self, now: u64) {
        let last = self.last_shrink.load(Ordering::Acquire);
        if now.saturating_sub(last) < SHRINK_STEP.as_micros() as u64
            || self
                .last_shrink
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let Ok(before) = self
            .limit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                (l > self.min).then_some((l / 2).max(self.min))
            })
        else {
            return;
        };
        let cut = before - (before / 2).max(self.min);
        let forgotten = self.places.forget_permits(cut);
        self.owed.fetch_add(cut - forgotten, Ordering::AcqRel);
    }

    /// A place in flight, held until it is dropped; `None` when none came free within the
    /// line's current wait.
    pub async fn enter(&self) -> Option<Place> {
        if let Ok(permit) = self.places.clone().try_acquire_owned() {
            let now = self.now();
            if now.saturating_sub(self.last_refused.load(Ordering::Relaxed))
                > INTERVAL.as_micros() as u64
            {
                self.last_empty.store(now, Ordering::Relaxed);
            }
            self.grow();
            return Some(self.place(permit));
        }
        let start = self.now();
        let standing = start.saturating_sub(self.last_empty.load(Ordering::Relaxed));
        let wait = if u128::from(standing) > INTERVAL.as_micros() {
            self.burst_wait.min(STANDING_WAIT)
        } else {
            self.burst_wait
        };
        let got = tokio::time::timeout(wait, self.places.clone().acquire_owned()).await;
        let end = self.now();
        if u128::from(end.saturating_sub(start)) >= STANDING_WAIT.as_micros() {
            self.shrink(end);
        }
        match got {
            Ok(Ok(permit)) => Some(self.place(permit)),
            _ => {
                self.last_refused.store(end, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long `line.enter()` took, and whether it got a place.
    async fn wait(line: &Line) -> (Duration, bool) {
        let start = Instant::now();
        let got = line.enter().await.is_some();
        (start.elapsed(), got)
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_waits_for_bursts_and_refuses_standing_overload_quickly() {
        let line = Line::new(1, 1, Duration::from_millis(50));
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
        let line = Arc::new(line);
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
        assert_eq!(line.places.available_permits(), 0);
        held.clear();
        assert_eq!(line.places.available_permits(), 4);
        assert_eq!(line.owed.load(Ordering::Acquire), 0);
        // Each call that finds a free place at once gives one back, up to the bound.
        for _ in 0..100 {
            held.push(line.enter().await.expect("a free place"));
            held.clear();
        }
        assert_eq!(line.places(), 64);
        assert_eq!(line.places.available_permits(), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn the_places_in_use_and_free_always_add_up_to_the_limit() {
        let line = Line::new(16, 4, Duration::from_millis(50));
        let mut held = Vec::new();
        for _ in 0..16 {
            held.push(line.enter().await.expect("a free place"));
        }
        let free = |line: &Line| line.places.available_permits();
        wait(&line).await;
        assert_eq!((line.places(), line.owed.load(Ordering::Acquire)), (8, 8));
        // Calls end: their places are forgotten while any is owed, then given back.
        held.truncate(14);
        assert_eq!((free(&line), line.owed.load(Ordering::Acquire)), (0, 6));
        held.truncate(6);
        assert_eq!((free(&line), line.owed.load(Ordering::Acquire)), (2, 0));
        assert_eq!(held.len() + free(&line), line.places());
        // A call that finds a place at once adds one.
        held.push(line.enter().await.expect("a free place"));
        assert_eq!(line.places(), 9);
        assert_eq!(held.len() + free(&line), line.places());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_bound_shorter_than_the_standing_wait_is_kept() {
        let line = Line::new(1, 1, Duration::from_millis(1));
        let _held = line.enter().await.unwrap();
        tokio::time::advance(INTERVAL * 2).await;
        assert_eq!(wait(&line).await, (Duration::from_millis(1), false));
    }
}
