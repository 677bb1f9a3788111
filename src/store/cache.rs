//! A replica's in-memory view of who may do what: each workspace (looked up by name) and the
//! roles its members hold, read through from the database. Every change is announced in its
//! transaction and invalidates the view: at once on the replica that made it, and through
//! PostgreSQL LISTEN/NOTIFY on the others, within milliseconds. (SQLite is embedded: one
//! process owns the file, so there are no other replicas to tell.)

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use crate::domain::{access::Role, model::Workspace};

/// Entries past which the view starts afresh, so that memory stays bounded.
const MAX_ENTRIES: usize = 200_000;

/// What the view knows of one workspace name.
#[derive(Debug, Default)]
struct Entry {
    /// The workspace, or `None` if no workspace has the name.
    ws: Option<Arc<Workspace>>,
    /// Roles by subject; `None` for a subject known not to be a member.
    roles: HashMap<String, Option<Role>>,
    /// Registered resources by kind, once read.
    counts: Option<Arc<BTreeMap<String, i64>>>,
}

/// A lookup's answer: the workspace, if any, and the subject's role in it.
pub type Found = Option<(Arc<Workspace>, Option<Role>)>;

/// See the module docs.
#[derive(Debug, Default)]
pub struct AccessCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// Bumped by every invalidation; a read that overlapped one does not fill the view, so a
    /// value read before a change can never be stored after it.
    generation: AtomicU64,
    /// False while changes from other replicas might be missed (the listener is down): then
    /// every lookup reads the database.
    enabled: AtomicBool,
    size: AtomicU64,
    /// Match counts of workspace listings by filter, with the generation they were counted
    /// at: valid while nothing at all has changed since.
    totals: Mutex<HashMap<String, (u64, u64)>>,
}

impl AccessCache {
    /// A view that serves lookups only once `set_enabled(true)`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns the view on or off, forgetting everything either way: a read that started
    /// while changes could be missed must not fill the view once it is back on.
    pub fn set_enabled(&self, on: bool) {
        self.clear();
        self.enabled.store(on, Ordering::SeqCst);
        self.clear();
    }

    /// The cached answer for (`name`, `subject`); `None` on a miss.
    pub fn get(&self, name: &str, subject: &str) -> Option<Found> {
        if !self.enabled.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(name)?;
        match &entry.ws {
            None => Some(None),
            Some(ws) => entry
                .roles
                .get(subject)
                .map(|role| Some((ws.clone(), *role))),
        }
    }

    /// The generation to pass to `put` for a read that starts now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Stores what a read that started at generation `since` found, unless a change came
    /// in meanwhile.
    pub fn put(&self, since: u64, name: &str, subject: &str, found: &Found) {
        if !self.enabled.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        // Checked under the lock that invalidations take, so none can slip in between.
        if self.generation.load(Ordering::SeqCst) != since {
            return;
        }
        if self.size.load(Ordering::Relaxed) as usize >= MAX_ENTRIES {
            entries.clear();
            self.size.store(0, Ordering::Relaxed);
        }
        let entry = entries.entry(name.to_owned()).or_default();
        match found {
            None => *entry = Entry::default(),
            Some((ws, role)) => {
                if entry.ws.as_ref().is_none_or(|w| w.id != ws.id) {
                    *entry = Entry {
                        ws: Some(ws.clone()),
                        ..Entry::default()
                    };
                }
                entry.roles.insert(subject.to_owned(), *role);
            }
        }
        self.size.fetch_add(1, Ordering::Relaxed);
    }

    /// The cached resource counts of the workspace `name` with id `id`.
    pub fn counts(&self, name: &str, id: &str) -> Option<Arc<BTreeMap<String, i64>>> {
        if !self.enabled.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(name)?;
        if entry.ws.as_ref()?.id != id {
            return None;
        }
        entry.counts.clone()
    }

    /// Stores the resource counts of the workspace `name` with id `id` that a read started at
    /// generation `since` found, if the view still holds that workspace.
    pub fn put_counts(&self, since: u64, name: &str, id: &str, counts: Arc<BTreeMap<String, i64>>) {
        if !self.enabled.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if self.generation.load(Ordering::SeqCst) != since {
            return;
        }
        if let Some(entry) = entries.get_mut(name)
            && entry.ws.as_ref().is_some_and(|w| w.id == id)
        {
            entry.counts = Some(counts);
        }
    }

    /// The cached number of workspaces matching the filter `key`, if nothing changed since.
    pub fn total(&self, key: &str) -> Option<u64> {
        if !self.enabled.load(Ordering::SeqCst) {
            return None;
        }
        let totals = self.totals.lock().ok()?;
        let (counted_at, n) = totals.get(key)?;
        (*counted_at == self.generation.load(Ordering::SeqCst)).then_some(*n)
    }

    /// Stores the number of workspaces matching `key` that a count started at `since` found.
    pub fn put_total(&self, since: u64, key: &str, n: u64) {
        if !self.enabled.load(Ordering::SeqCst) {
            return;
        }
        // Taken after the entries lock, as invalidations take it, so none slips in between.
        let Ok(_entries) = self.entries.lock() else {
            return;
        };
        let Ok(mut totals) = self.totals.lock() else {
            return;
        };
        if self.generation.load(Ordering::SeqCst) != since {
            return;
        }
        if totals.len() >= MAX_ENTRIES {
            totals.clear();
        }
        totals.insert(key.to_owned(), (since, n));
    }

    /// Forgets everything about the workspace `name`.
    pub fn invalidate(&self, name: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            entries.remove(name);
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            entries.clear();
            self.size.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{access::Visibility, model::WorkspaceState};

    fn ws(id: &str) -> Arc<Workspace> {
        Arc::new(Workspace {
            id: id.into(),
            name: "w".into(),
            display_name: String::new(),
            description: String::new(),
            labels: BTreeMap::new(),
            visibility: Visibility::Private,
            state: WorkspaceState::Active,
            built_in: false,
            created_by: "a".into(),
            create_time: chrono::Utc::now(),
            update_time: chrono::Utc::now(),
            version: 1,
            resource_counts: BTreeMap::new(),
        })
    }

    #[test]
    fn a_read_overlapping_a_change_is_not_stored() {
        let c = AccessCache::new();
        c.set_enabled(true);
        let since = c.generation();
        c.invalidate("w");
        c.put(since, "w", "alice", &Some((ws("1"), Some(Role::Admin))));
        assert!(c.get("w", "alice").is_none());
        let since = c.generation();
        c.put(since, "w", "alice", &Some((ws("1"), Some(Role::Viewer))));
        assert_eq!(c.get("w", "alice").unwrap().unwrap().1, Some(Role::Viewer));
        // Other subjects are misses until read.
        assert!(c.get("w", "bob").is_none());
        c.invalidate("w");
        assert!(c.get("w", "alice").is_none());
    }

    #[test]
    fn disabled_views_serve_nothing_and_missing_workspaces_are_remembered() {
        let c = AccessCache::new();
        let since = c.generation();
        c.put(since, "w", "alice", &None);
        assert!(c.get("w", "alice").is_none());
        c.set_enabled(true);
        let since = c.generation();
        c.put(since, "w", "alice", &None);
        assert_eq!(c.get("w", "bob").map(|f| f.is_none()), Some(true));
        c.set_enabled(false);
        assert!(c.get("w", "bob").is_none());
    }
}
