//! This process's memory of each workspace's GPU usage, for GetGpuUsage on SQLite, where
//! this process is the only writer (`lock.rs` keeps a second one off the file): every
//! admission, renewal, release and policy update made here forgets the workspace's usage
//! once committed, and a remembered usage holds until the first active lease in it ends.
//! On PostgreSQL other replicas admit too, and the contract wants what any of them
//! acknowledged counted at once, so the memory is off and every read asks the database.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::domain::model::GpuUsage;

/// Workspaces remembered at most; past it the memory starts afresh.
const MAX_ENTRIES: usize = 16_384;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct UsageMemory {
    enabled: bool,
    /// Bumped by every change; a read that overlapped one is not remembered.
    generation: AtomicU64,
    /// Usage by workspace id, with the instant (microseconds) it stops being true.
    entries: Mutex<HashMap<String, (GpuUsage, i64)>>,
}

impl UsageMemory {
    /// A memory that remembers only when `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        UsageMemory {
            enabled,
            ..Default::default()
        }
    }

    /// The remembered usage of `workspace_id` at `now_us`, if it still holds.
    pub(crate) fn get(&self, workspace_id: &str, now_us: i64) -> Option<GpuUsage> {
        if !self.enabled {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let (usage, until) = entries.get(workspace_id)?;
        (now_us < *until).then(|| usage.clone())
    }

    /// The generation to pass to `put` for a read that starts now.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Remembers what a read started at generation `since` found, true until `until`,
    /// unless a change came in meanwhile.
    pub(crate) fn put(&self, since: u64, workspace_id: &str, usage: &GpuUsage, until: i64) {
        if !self.enabled {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        // Checked under the lock that `forget` takes, so no change slips in between.
        if self.generation.load(Ordering::SeqCst) != since {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(workspace_id.to_owned(), (usage.clone(), until));
    }

    /// Forgets the usage of `workspace_id`, after a change to it committed.
    pub(crate) fn forget(&self, workspace_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            entries.remove(workspace_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(active_gprs: i64) -> GpuUsage {
        GpuUsage {
            active_gprs,
            ..Default::default()
        }
    }

    #[test]
    fn a_usage_holds_until_its_first_lease_ends_or_a_change() {
        let m = UsageMemory::new(true);
        let since = m.generation();
        m.put(since, "w", &usage(2), 100);
        assert_eq!(m.get("w", 99), Some(usage(2)));
        assert_eq!(m.get("w", 100), None, "a lease ended");
        m.forget("w");
        assert_eq!(m.get("w", 50), None);
        // A read that overlapped a change is not remembered.
        let since = m.generation();
        m.forget("other");
        m.put(since, "w", &usage(1), 100);
        assert_eq!(m.get("w", 50), None);
        // Off: nothing is remembered.
        let off = UsageMemory::new(false);
        off.put(off.generation(), "w", &usage(1), 100);
        assert_eq!(off.get("w", 50), None);
    }
}
