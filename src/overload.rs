//! The line calls wait in for a place among the calls in flight, and how long they wait.
//!
//! A fixed wait serves bursts well and sustained overload badly: when more calls arrive than
//! the server completes, the line never empties, every admitted call first waits the whole
//! bound, and the admitted calls' latency becomes the bound. So the line is adaptive, as
//! CoDel-style server queues are ("Fail at Scale", Maurer, 2015): a call waits up to the
//! burst bound only while the line has been empty within the last `INTERVAL`; once it has
//! stood longer, calls wait at most `STANDING_WAIT`, and overload is refused almost at once
//! while admitted calls keep a short wait. The line empties again as soon as a call finds a
//! free place at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// How long the line may stand (no call finding a free place at once) before its wait
/// shortens.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The longest wait in a line that has stood for longer than `INTERVAL`.
pub const STANDING_WAIT: Duration = Duration::from_millis(5);

/// The places in flight and the line before them; cheap to share.
#[derive(Debug)]
pub struct Line {
    places: Arc<Semaphore>,
    burst_wait: Duration,
    epoch: Instant,
    /// When a call last found a free place at once, in µs since `epoch`.
    last_empty: AtomicU64,
}

impl Line {
    /// A line before `places` places, where a call waits at most `burst_wait` while the line
    /// is new.
    pub fn new(places: usize, burst_wait: Duration) -> Self {
        Line {
            places: Arc::new(Semaphore::new(places)),
            burst_wait,
            epoch: Instant::now(),
            last_empty: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A place in flight, held until the permit is dropped; `None` when none came free
    /// within the line's current wait.
    pub async fn enter(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.places.clone().try_acquire_owned() {
            self.last_empty.store(self.now(), Ordering::Relaxed);
            return Some(permit);
        }
        let standing = self
            .now()
            .saturating_sub(self.last_empty.load(Ordering::Relaxed));
        let wait = if u128::from(standing) > INTERVAL.as_micros() {
            self.burst_wait.min(STANDING_WAIT)
        } else {
            self.burst_wait
        };
        match tokio::time::timeout(wait, self.places.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
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
        let line = Line::new(1, Duration::from_millis(50));
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
        // A call that finds a free place at once empties the line: bursts wait long again.
        let held = line.enter().await.expect("a free place");
        assert_eq!(wait(&line).await, (Duration::from_millis(50), false));
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_bound_shorter_than_the_standing_wait_is_kept() {
        let line = Line::new(1, Duration::from_millis(1));
        let _held = line.enter().await.unwrap();
        tokio::time::advance(INTERVAL * 2).await;
        assert_eq!(wait(&line).await, (Duration::from_millis(1), false));
    }
}
