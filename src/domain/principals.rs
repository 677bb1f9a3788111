//! The principals that have signed in, recorded so that members can be added by email.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::Mutex;

use super::access::Principal;
use crate::{
    error::Result,
    store::{Store, principals},
};

/// Principals remembered in memory, past which the memory starts afresh: each distinct
/// subject with a valid token adds one, and memory must stay bounded whatever callers do.
/// Forgetting costs one idempotent upsert per principal at its next call.
const MAX_REMEMBERED: usize = 100_000;

/// The principals use case: records each signed-in principal (subject and email), with one
/// database write per new principal or changed email, not one per call.
#[derive(Clone, Debug)]
pub struct Principals {
    store: Store,
    seen: Arc<Mutex<HashMap<String, Option<String>>>>,
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

    /// Records `p` unless it was recorded with the same email already.
    pub(crate) async fn remember(&self, p: &Principal) -> Result<()> {
        {
            let seen = self.seen.lock().await;
            if seen.get(&p.subject) == Some(&p.email) {
                return Ok(());
            }
        }
        principals::upsert(self.store.write_conn(), &p.subject, p.email.as_deref()).await?;
        let mut seen = self.seen.lock().await;
        if seen.len() >= self.limit {
            seen.clear();
        }
        seen.insert(p.subject.clone(), p.email.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::PlatformRoles;

    #[tokio::test]
    async fn the_memory_of_principals_stays_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/p.db?mode=rwc", dir.path().display());
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
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
}
