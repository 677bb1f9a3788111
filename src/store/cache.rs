//! A replica's in-memory view of who may do what: each workspace (looked up by name) and the
//! roles its members (subjects and groups) hold with when they end, read through from the
//! database. It keeps the end of each membership, not only its role, so that a membership
//! stops granting exactly at its `expire_time` without any change to announce. Every change
//! invalidates the view: at once on the replica that made it, and on the others when they
//! next read the change history (`follow.rs`), every 20 ms. On PostgreSQL the view serves
//! only while it holds proof, younger than `CONFIRMED_FOR`, that it has applied every change
//! committed so far: a look at the history that came back, sent since. A connection that
//! stalls without an error thus turns the view off within the contract's 100 ms, and every
//! read goes to the database until looks come back. (SQLite is embedded: one process owns
//! the file, so there are no other replicas to follow, and its view is always current.)

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::domain::model::{Holdings, RoleGrant, Workspace};

/// Entries (a workspace, or a subject's role in one) past which the view starts afresh, so
/// that memory stays bounded: at a few hundred bytes each, about 5 MB. The view is for the
/// workspaces being worked in now; every other lookup reads the database, as after any
/// change. (At 200,000 the view grew with every workspace ever read: a soak's RSS grew
/// 0.7 MB a minute for as long as it created workspaces.)
const MAX_ENTRIES: usize = 16_384;

/// The longest filter whose count is remembered: 16 MiB of keys at most.
const MAX_TOTAL_KEY_BYTES: usize = 1024;

/// The most groups of one principal the view remembers memberships for; a lookup with more
/// reads the database every time, so that one such caller cannot empty the view for all.
const MAX_GROUPS: usize = 256;

/// How old the newest look at the history that came back may be for the view to serve
/// (counted from when it was sent). A look applies every change committed before it was
/// sent, so a view that serves under this bound misses no change older than it; the margin
/// under the contract's 100 ms covers the time a call takes between its lookup and its
/// answer, and a loaded machine's scheduling (looks go every 20 ms, so a healthy view is
/// confirmed within about 25 ms).
pub const CONFIRMED_FOR: Duration = Duration::from_millis(60);

/// What the view knows of one workspace name.
#[derive(Debug, Default)]
struct Entry {
    /// The workspace, or `None` if no workspace has the name.
    ws: Option<Arc<Workspace>>,
    /// Memberships by subject; `None` for a subject known not to be a member.
    subjects: HashMap<String, Option<RoleGrant>>,
    /// Memberships by group; `None` for a group known not to be a member.
    groups: HashMap<String, Option<RoleGrant>>,
    /// Registered resources by kind, once read.
    counts: Option<Arc<BTreeMap<String, i64>>>,
}

impl Entry {
    /// How many entries of the bound it holds: itself, and each subject, group and kind of
    /// resource known (a count by kind is about as large as a membership).
    fn weight(&self) -> u64 {
        (1 + self.subjects.len() + self.groups.len() + self.counts.as_ref().map_or(0, |c| c.len()))
            as u64
    }
}

/// A lookup's answer: the workspace, if any, and the memberships of a subject and its
/// groups in it.
pub type Found = Option<(Arc<Workspace>, Holdings)>;

/// See the module docs.
#[derive(Debug)]
pub struct AccessCache {
    /// Read-locked by lookups, which run on every call at once; written by changes.
    entries: RwLock<HashMap<String, Entry>>,
    /// Bumped by every invalidation; a read that overlapped one does not fill the view, so a
    /// value read before a change can never be stored after it.
    generation: AtomicU64,
    /// False until the view may fill: then every lookup reads the database.
    enabled: AtomicBool,
    /// The entries held: workspaces, and subjects and groups known in them. Changed only
    /// under the `entries` write lock.
    size: AtomicU64,
    /// Match counts of workspace listings by filter, with the generation they were counted
    /// at and the instant (microseconds) the first membership ends after it: valid while
    /// nothing at all has changed since, and until then.
    totals: Mutex<HashMap<String, (u64, u64, i64)>>,
    /// Whether the view serves only under a fresh confirmation (PostgreSQL), or whenever
    /// enabled.
    confirmed: bool,
    /// The origin of confirmation instants: they only ever meet instants of this process.
    epoch: Instant,
    /// The newest instant, as `now_nanos` gave it, as of which every change is applied; 0
    /// while none is confirmed since the view was enabled.
    current_as_of: AtomicU64,
}

impl AccessCache {
    /// A view that serves lookups once `set_enabled(true)`, with nothing else to wait for:
    /// for a database no other process changes.
    pub(crate) fn new() -> Self {
        AccessCache {
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            enabled: AtomicBool::new(false),
            size: AtomicU64::new(0),
            totals: Mutex::default(),
            confirmed: false,
            epoch: Instant::now(),
            current_as_of: AtomicU64::new(0),
        }
    }

    /// A view that, once enabled, serves lookups only while it was confirmed current
    /// (`current_as_of`) less than `CONFIRMED_FOR` ago.
    pub(crate) fn confirmed_by_follower() -> Self {
        AccessCache {
            confirmed: true,
            ..Self::new()
        }
    }

    /// Turns the view on or off, forgetting everything either way: a read that started
    /// while changes could be missed must not fill the view once it is back on. Its
    /// confirmations are forgotten too: they vouched for what is gone.
    pub(crate) fn set_enabled(&self, on: bool) {
        self.clear();
        self.current_as_of.store(0, Ordering::SeqCst);
        self.enabled.store(on, Ordering::SeqCst);
        self.clear();
    }

    /// This instant as confirmations name it: nanoseconds since the view was made, from 1 so
    /// that 0 can mean "never".
    pub(crate) fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Records that every change committed before `instant` (from `now_nanos`) has been
    /// applied.
    pub(crate) fn current_as_of(&self, instant: u64) {
        // An instant from the future is none of this process's and proves nothing.
        if instant <= self.now_nanos() {
            self.current_as_of.fetch_max(instant, Ordering::SeqCst);
        }
    }

    /// Whether lookups may be answered from the view now: on PostgreSQL, whether the
    /// follower has proved it current within `CONFIRMED_FOR`.
    pub(crate) fn serving(&self) -> bool {
        if !self.enabled.load(Ordering::SeqCst) {
            return false;
        }
        if !self.confirmed {
            return true;
        }
        let at = self.current_as_of.load(Ordering::SeqCst);
        at != 0 && u128::from(self.now_nanos().saturating_sub(at)) < CONFIRMED_FOR.as_nanos()
    }

    /// The cached answer for (`name`, `subject`, `groups`); `None` on a miss, which is any
    /// of them not known.
    pub(crate) fn get(&self, name: &str, subject: &str, groups: &[String]) -> Option<Found> {
        if !self.serving() {
            return None;
        }
        let entries = self.entries.read().ok()?;
        let entry = entries.get(name)?;
        let Some(ws) = &entry.ws else {
            return Some(None);
        };
        let own = *entry.subjects.get(subject)?;
        let mut held = Vec::new();
        for g in groups {
            if let Some(grant) = entry.groups.get(g.as_str())? {
                held.push((g.clone(), *grant));
            }
        }
        Some(Some((ws.clone(), Holdings { own, groups: held })))
    }

    /// The generation to pass to `put` for a read that starts now.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Stores what a read that started at generation `since` found, unless a change came
    /// in meanwhile. It is stored even while no fresh confirmation lets the view serve: the
    /// read is current as of its start, and a later change is applied by the first look at
    /// the history sent after it committed, before that look confirms the view, so no
    /// confirmation lets the view serve it stale.
    pub(crate) fn put(
        &self,
        since: u64,
        name: &str,
        subject: &str,
        groups: &[String],
        found: &Found,
    ) {
        if !self.enabled.load(Ordering::SeqCst) {
            return;
        }
        if groups.len() > MAX_GROUPS {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
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
        let before = entries.get(name).map_or(0, Entry::weight);
        let entry = entries.entry(name.to_owned()).or_default();
        match found {
            None => *entry = Entry::default(),
            Some((ws, held)) => {
                if entry.ws.as_ref().is_none_or(|w| w.id != ws.id) {
                    *entry = Entry {
                        ws: Some(ws.clone()),
                        ..Entry::default()
                    };
                }
                entry.subjects.insert(subject.to_owned(), held.own);
                // Every group asked about is now known: those without a membership as such.
                for g in groups {
                    let grant = held.groups.iter().find(|(n, _)| n == g).map(|(_, r)| *r);
                    entry.groups.insert(g.clone(), grant);
                }
            }
        }
        // What the view holds, not how often it was filled: a hot workspace read again
        // after each of its changes must not count again, or the bound would empty the
        // whole view every few thousand changes.
        let after = entry.weight();
        let size = self.size.load(Ordering::Relaxed);
        self.size
            .store((size + after).saturating_sub(before), Ordering::Relaxed);
    }

    /// The cached resource counts of the workspace `name` with id `id`.
    pub(crate) fn counts(&self, name: &str, id: &str) -> Option<Arc<BTreeMap<String, i64>>> {
        if !self.serving() {
            return None;
        }
        let entries = self.entries.read().ok()?;
        let entry = entries.get(name)?;
        if entry.ws.as_ref()?.id != id {
            return None;
        }
        entry.counts.clone()
    }

    /// Stores the resource counts of the workspace `name` with id `id` that a read started at
    /// generation `since` found, if the view still holds that workspace.
    pub(crate) fn put_counts(
        &self,
        since: u64,
        name: &str,
        id: &str,
        counts: Arc<BTreeMap<String, i64>>,
    ) {
        if !self.enabled.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if self.generation.load(Ordering::SeqCst) != since {
            return;
        }
        if let Some(entry) = entries.get_mut(name)
            && entry.ws.as_ref().is_some_and(|w| w.id == id)
        {
            let before = entry.weight();
            entry.counts = Some(counts);
            let size = self.size.load(Ordering::Relaxed);
            self.size.store(
                (size + entry.weight()).saturating_sub(before),
                Ordering::Relaxed,
            );
        }
    }

    /// The cached number of workspaces matching the filter `key` at `now_us`, if nothing
    /// changed since it was counted and no membership ended.
    pub(crate) fn total(&self, key: &str, now_us: i64) -> Option<u64> {
        if !self.serving() {
            return None;
        }
        let totals = self.totals.lock().ok()?;
        let (counted_at, n, valid_until) = totals.get(key)?;
        (*counted_at == self.generation.load(Ordering::SeqCst) && now_us < *valid_until)
            .then_some(*n)
    }

    /// Stores the number of workspaces matching `key` that a count started at `since` found,
    /// true until `valid_until` (microseconds) unless something changes.
    pub(crate) fn put_total(&self, since: u64, key: &str, n: u64, valid_until: i64) {
        if !self.enabled.load(Ordering::SeqCst) {
            return;
        }
        // Taken after the entries lock, as invalidations take it, so none slips in between.
        let Ok(_entries) = self.entries.write() else {
            return;
        };
        let Ok(mut totals) = self.totals.lock() else {
            return;
        };
        if self.generation.load(Ordering::SeqCst) != since {
            return;
        }
        // Keys are the filters clients send (labels, a token's groups): long ones are counted
        // afresh each time, so that memory stays bounded by entries of bounded size.
        if key.len() > MAX_TOTAL_KEY_BYTES {
            return;
        }
        if totals.len() >= MAX_ENTRIES {
            totals.clear();
        }
        totals.insert(key.to_owned(), (since, n, valid_until));
    }

    /// Forgets everything about the workspace `name`.
    pub(crate) fn invalidate(&self, name: &str) {
        if let Ok(mut entries) = self.entries.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.forget(&mut entries, name);
        }
    }

    /// Forgets everything about the workspaces `names`, at once: a lookup sees all of them
    /// forgotten or none.
    pub(crate) fn invalidate_all<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut entries) = self.entries.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            for name in names {
                self.forget(&mut entries, name);
            }
        }
    }

    /// Removes the entry of `name`, under the write lock `entries`.
    fn forget(&self, entries: &mut HashMap<String, Entry>, name: &str) {
        if let Some(e) = entries.remove(name) {
            let size = self.size.load(Ordering::Relaxed);
            self.size
                .store(size.saturating_sub(e.weight()), Ordering::Relaxed);
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            entries.clear();
            self.size.store(0, Ordering::Relaxed);
        }
    }
}

impl Default for AccessCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{
        access::{Role, Visibility},
        model::WorkspaceState,
    };

    fn holds(role: Role) -> Holdings {
        Holdings {
            own: Some(RoleGrant {
                role,
                expire_time: None,
            }),
            groups: Vec::new(),
        }
    }

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

    /// Stores, as a read starting now would, what alice and `groups` hold in `w`.
    fn put_alice(c: &AccessCache, groups: &[String], held: Holdings) {
        let since = c.generation();
        c.put(since, "w", "alice", groups, &Some((ws("1"), held)));
    }

    #[test]
    fn a_read_overlapping_a_change_is_not_stored() {
        let c = AccessCache::new();
        c.set_enabled(true);
        let since = c.generation();
        c.invalidate("w");
        c.put(
            since,
            "w",
            "alice",
            &[],
            &Some((ws("1"), holds(Role::Admin))),
        );
        assert!(c.get("w", "alice", &[]).is_none());
        put_alice(&c, &[], holds(Role::Viewer));
        assert_eq!(
            c.get("w", "alice", &[]).unwrap().unwrap().1,
            holds(Role::Viewer)
        );
        // Other subjects are misses until read.
        assert!(c.get("w", "bob", &[]).is_none());
        c.invalidate("w");
        assert!(c.get("w", "alice", &[]).is_none());
    }

    #[test]
    fn a_lookup_with_groups_hits_only_when_every_group_is_known() {
        let c = AccessCache::new();
        c.set_enabled(true);
        let ml = RoleGrant {
            role: Role::Editor,
            expire_time: Some(chrono::Utc::now()),
        };
        let groups = ["data".to_owned(), "ml".to_owned()];
        let found = Holdings {
            own: None,
            groups: vec![("ml".into(), ml)],
        };
        put_alice(&c, &groups, found.clone());
        assert_eq!(c.get("w", "alice", &groups).unwrap().unwrap().1, found);
        // Bob's own membership is unknown; a known group alone answers nothing.
        assert!(c.get("w", "bob", &groups[1..]).is_none());
        let ops = ["ml".to_owned(), "ops".to_owned()];
        assert!(c.get("w", "alice", &ops).is_none(), "ops is unknown");
        // The known group without a membership is remembered as such.
        let data = c.get("w", "alice", &groups[..1]).unwrap().unwrap().1;
        assert_eq!(data, Holdings::default());
    }

    #[test]
    fn the_bound_counts_what_the_view_holds_not_how_often_it_was_filled() {
        let c = AccessCache::new();
        c.set_enabled(true);
        let put = |name: &str, groups: &[String]| {
            c.put(
                c.generation(),
                name,
                "alice",
                groups,
                &Some((ws(name), holds(Role::Admin))),
            );
        };
        put("quiet", &[]);
        // A hot workspace changed and read again, far more often than the bound.
        let groups = vec!["g1".to_owned(), "g2".to_owned()];
        for _ in 0..MAX_ENTRIES {
            put("hot", &groups);
            c.invalidate("hot");
            put("hot", &groups);
        }
        assert_eq!(
            c.size.load(Ordering::Relaxed),
            2 + 4,
            "quiet with alice; hot with alice and two groups"
        );
        assert!(c.get("quiet", "alice", &[]).is_some(), "kept all along");
        // Past the bound in entries held, the view starts afresh.
        for i in 0..MAX_ENTRIES / 2 {
            put(&format!("w{i}"), &[]);
        }
        assert!(c.get("quiet", "alice", &[]).is_none());
        assert!(c.size.load(Ordering::Relaxed) < MAX_ENTRIES as u64);
    }

    #[test]
    fn what_clients_choose_cannot_grow_the_view_without_bound() {
        let c = AccessCache::new();
        c.set_enabled(true);
        // A principal with too many groups is looked up in the database every time.
        let groups: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
        put_alice(&c, &groups, holds(Role::Admin));
        assert!(c.get("w", "alice", &groups).is_none());
        assert_eq!(c.size.load(Ordering::Relaxed), 0);
        // A listing filter that long is counted afresh every time.
        let long = "k".repeat(MAX_TOTAL_KEY_BYTES + 1);
        c.put_total(c.generation(), &long, 7, i64::MAX);
        assert_eq!(c.total(&long, 0), None);
        c.put_total(c.generation(), "short", 7, 10);
        assert_eq!(c.total("short", 9), Some(7));
        assert_eq!(c.total("short", 10), None, "a membership ended");
    }

    #[test]
    fn disabled_views_serve_nothing_and_missing_workspaces_are_remembered() {
        let c = AccessCache::new();
        let since = c.generation();
        c.put(since, "w", "alice", &[], &None);
        assert!(c.get("w", "alice", &[]).is_none());
        c.set_enabled(true);
        let since = c.generation();
        c.put(since, "w", "alice", &[], &None);
        assert_eq!(c.get("w", "bob", &[]).map(|f| f.is_none()), Some(true));
        c.set_enabled(false);
        assert!(c.get("w", "bob", &[]).is_none());
    }

    #[test]
    fn a_view_confirmed_by_its_follower_serves_only_under_a_fresh_confirmation() {
        let c = AccessCache::confirmed_by_follower();
        c.set_enabled(true);
        put_alice(&c, &[], holds(Role::Admin));
        assert!(c.get("w", "alice", &[]).is_none(), "not confirmed yet");
        c.current_as_of(c.now_nanos());
        assert!(c.get("w", "alice", &[]).is_some());
        std::thread::sleep(CONFIRMED_FOR);
        assert!(
            c.get("w", "alice", &[]).is_none(),
            "the confirmation is too old"
        );
        // An instant from the future is none of this process's.
        c.current_as_of(c.now_nanos() + 10 * CONFIRMED_FOR.as_nanos() as u64);
        assert!(c.get("w", "alice", &[]).is_none());
        // An older confirmation applied late does not hide a newer one.
        let newer = c.now_nanos();
        c.current_as_of(newer);
        c.current_as_of(newer - 1);
        assert!(c.get("w", "alice", &[]).is_some());
        // Enabled anew, the view needs a confirmation of its own.
        c.set_enabled(true);
        put_alice(&c, &[], holds(Role::Admin));
        assert!(c.get("w", "alice", &[]).is_none());
    }
}
