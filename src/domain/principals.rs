//! The principals that have signed in, recorded so that members can be added by email.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{sync::Mutex, time::Instant};

use super::access::Principal;
use crate::{
    error::Result,
    store::{Store, principals},
};

/// Principals remembered in memory, past which the memory starts afresh: each distinct
/// subject with a valid token adds one, and memory must stay bounded whatever callers do.
/// Forgetting costs one idempotent upsert per principal at its next call.
const MAX_REMEMBERED: usize = 100_000;

/// How long a replica trusts its memory that the database holds a principal's email. Other
/// replicas write the same rows: one that saw the token of a principal's other email (an old
/// token still in use, say) leaves that email recorded until this replica writes again, so
/// that the record is "as last seen" within this long, at one upsert per principal in use
/// per replica each time it runs out.
const REMEMBERED_FOR: Duration = Duration::from_secs(60);

/// What a replica last wrote of a principal.
#[derive(Debug)]
struct Recorded {
    email: Option<String>,
    at: Instant,
}

/// The principals use case: records each signed-in principal (subject and email), with one
/// database write per new principal, changed email or `REMEMBERED_FOR`, not one per call.
#[derive(Clone, Debug)]
pub struct Principals {
    store: Store,
    /// Each subject's email as this replica last recorded it, and when.
    seen: Arc<Mutex<HashMap<String, Recorded>>>,
    limit: usize,
}

impl Principals {
    /// Records principals in `store`.
    pub(crate) fn new(store: Store) -> Self {
        Principals {
            store,
            seen: Arc::default(),
            limit: MAX_REMEMBERED,
        }
    }

    /// Records `p` unless this replica recorded it with the same email lately.
    pub(crate) async fn remember(&self, p: &Principal) -> Result<()> {
        let refresh = {
            let seen = self.seen.lock().await;
            match seen.get(&p.subject) {
                Some(r) if r.email == p.email && r.at.elapsed() < REMEMBERED_FOR => {
                    return Ok(());
                }
                Some(r) => r.email == p.email,
                None => false,
            }
        };
        let at = Instant::now();
        let written = principals::upsert(self.store.write_conn(), &p.subject, p.email.as_deref());
        match written.await {
            Ok(()) => {}
            // Only a refresh of what this replica wrote already: the call need not fail
            // for it (a read while writes cannot go through), and it is tried again a
            // `REMEMBERED_FOR` later.
            Err(e) if refresh => {
                tracing::debug!(error = %e, "could not refresh a principal's record");
            }
            Err(e) => return Err(e.into()),
        }
        let mut seen = self.seen.lock().await;
        if seen.len() >= self.limit {
            seen.clear();
        }
        let email = p.email.clone();
        seen.insert(p.subject.clone(), Recorded { email, at });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::PlatformRoles;

    #[tokio::test]
    async fn the_memory_of_principals_stays_bounded() {
        let (store, _dir) = Store::scratch().await;
        let memory = Principals {
            limit: 10,
            ..Principals::new(store.clone())
        };
        for i in 0..95 {
            let p = Principal::new(format!("user-{i}"), Vec::new(), PlatformRoles::default());
            memory.remember(&p).await.expect("remember");
            assert!(memory.seen.lock().await.len() <= 10);
        }
        // Forgotten principals are still recorded in the database.
        use sea_orm::EntityTrait;
        let all = crate::store::entity::principal::Entity::find();
        let n = crate::store::count(store.conn(), all).await.expect("count");
        assert_eq!(n, 95);
    }

    /// Two replicas on one database: a replica trusts its memory of a principal's email for
    /// `REMEMBERED_FOR` only, so an email another replica wrote meanwhile (from another of
    /// the principal's tokens) gives way to the one this replica last saw once that runs out.
    #[tokio::test]
    async fn a_replica_records_a_principal_again_once_its_memory_is_old() {
        let (store, _dir) = Store::scratch().await;
        let (a, b) = (
            Principals::new(store.clone()),
            Principals::new(store.clone()),
        );
        let alice = |email: &str| Principal {
            email: Some(email.into()),
            ..Principal::new("alice".into(), Vec::new(), PlatformRoles::default())
        };
        let holder = |email: &'static str| {
            let c = store.conn().clone();
            async move { principals::subject_by_email(&c, email).await.unwrap() }
        };
        a.remember(&alice("old@example.com")).await.unwrap();
        b.remember(&alice("new@example.com")).await.unwrap();
        // Within its bound, a's memory spares the write.
        let before = store.statements();
        a.remember(&alice("old@example.com")).await.unwrap();
        assert_eq!(store.statements(), before);
        assert_eq!(holder("new@example.com").await.as_deref(), Some("alice"));

        // Once it is older than that, a records what it saw again.
        if let Some(r) = a.seen.lock().await.get_mut("alice") {
            r.at -= REMEMBERED_FOR + Duration::from_secs(1);
        }
        a.remember(&alice("old@example.com")).await.unwrap();
        assert_eq!(holder("old@example.com").await.as_deref(), Some("alice"));
        assert_eq!(holder("new@example.com").await, None);
    }
}
