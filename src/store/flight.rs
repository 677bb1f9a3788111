//! Reads that many callers ask for at once: one runs at a time per key, and every caller
//! that arrived before it began takes its answer instead of running its own.
//!
//! A listing's `total_size` of a member of very many workspaces costs a walk of all its
//! memberships. The replica's view keeps it between changes, but after any change 64 callers
//! listing at once would each run that walk, queue for the pool's few connections and run
//! past the call's deadline. Sharing keeps the count exact: an answer is only taken by a
//! caller that arrived before that count began, so it counts every change the caller could
//! have seen. GetGpuUsage on PostgreSQL shares its reads likewise: schedulers poll the
//! usage of the same workspaces, and every read must count what any replica acknowledged
//! before the caller asked, which a read begun after the caller arrived does.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

/// The reads running or just run, by key.
#[derive(Debug)]
pub(crate) struct Flights<T> {
    keys: Mutex<HashMap<String, Arc<Flight<T>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            keys: Mutex::default(),
        }
    }
}

#[derive(Debug)]
struct Flight<T> {
    /// Callers under this key now; changed only under the map's lock, so that the last to
    /// leave knows it is the last.
    callers: AtomicUsize,
    /// Reads begun so far under this key.
    begun: AtomicU64,
    /// Held while a read runs: the number and the answer of the last one that finished.
    last: tokio::sync::Mutex<Option<(u64, T)>>,
}

impl<T> Default for Flight<T> {
    fn default() -> Self {
        Flight {
            callers: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            last: tokio::sync::Mutex::new(None),
        }
    }
}

/// Forgets a key when its last caller leaves, so that the map holds only keys in use.
struct Leave<'a, T> {
    flights: &'a Flights<T>,
    key: &'a str,
    flight: Arc<Flight<T>>,
}

impl<T> Drop for Leave<'_, T> {
    fn drop(&mut self) {
        let mut keys = self
            .flights
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.flight.callers.fetch_sub(1, Ordering::AcqRel) == 1 {
            keys.remove(self.key);
        }
    }
}

impl<T: Clone> Flights<T> {
    /// The answer of `run`, or of a read under `key` that began after this call.
    pub(crate) async fn run<E, F, Fut>(&self, key: &str, run: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let flight = {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            let flight = keys.entry(key.to_owned()).or_default().clone();
            flight.callers.fetch_add(1, Ordering::AcqRel);
            flight
        };
        let leave = Leave {
            flights: self,
            key,
            flight,
        };
        let arrived = leave.flight.begun.load(Ordering::Acquire);
        let mut last = leave.flight.last.lock().await;
        if let Some((n, answer)) = &*last
            && *n > arrived
        {
            return Ok(answer.clone());
        }
        let n = leave.flight.begun.fetch_add(1, Ordering::AcqRel) + 1;
        let answer = run().await?;
        *last = Some((n, answer.clone()));
        Ok(answer)
    }

    /// Keys with a caller now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn callers_that_arrive_during_a_count_share_the_next_one() {
        let flights = Arc::new(Flights::<u64>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let count = |flights: Arc<Flights<u64>>, runs: Arc<AtomicUsize>| async move {
            flights
                .run("k", || async {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, ()>(n as u64)
                })
                .await
                .unwrap()
        };
        let first = tokio::spawn(count(flights.clone(), runs.clone()));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Ten callers arrive while the first count runs: it began before them, so they
        // do not take its answer; one more count answers all ten.
        let later: Vec<_> = (0..10)
            .map(|_| tokio::spawn(count(flights.clone(), runs.clone())))
            .collect();
        assert_eq!(first.await.unwrap(), 1);
        for c in later {
            assert_eq!(c.await.unwrap(), 2);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(flights.len(), 0, "no key is kept once its callers left");
        // A caller after all of them counts again.
        assert_eq!(count(flights.clone(), runs.clone()).await, 3);
    }

    #[tokio::test]
    async fn a_failed_count_is_not_shared() {
        let flights = Flights::<u64>::default();
        assert_eq!(
            flights.run("k", || async { Err::<u64, _>("down") }).await,
            Err("down")
        );
        assert_eq!(flights.run("k", || async { Ok::<_, &str>(7) }).await, Ok(7));
        assert_eq!(flights.len(), 0);
    }
}
