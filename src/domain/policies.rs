//! The PolicyService use cases: reading, listing and updating workspaces' policies, and
//! checking a GPU pod request against one.

use super::{
    access::{self, Permission, Principal},
    events::record,
    guard,
    model::{EventKind, EventObject, GprSpec, Policy, now},
    page::{self, Page, PageRequest},
    quota::{QuotaViolation, check_quota},
    rules::{self, PolicyInput},
    validate::{Violations, WorkspaceName},
};
use crate::{
    error::{Error, Result},
    store::{
        Store, memberships, policies as q,
        workspaces::{ListFilter, Reader},
    },
};

/// ListPolicies' input.
#[derive(Debug, Clone)]
pub struct ListPolicies {
    /// The page asked for.
    pub page: PageRequest,
    /// What the page token is bound to.
    pub fingerprint: String,
}

/// UpdatePolicy's input: the masked fields, checked at the edge against the rules alone
/// (see `rules::apply`), and again against the stored policy they change.
#[derive(Debug, Clone)]
pub struct UpdatePolicy {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The etag the change is made under; empty for none.
    pub etag: String,
    /// The fields as the request carries them.
    pub input: PolicyInput,
    /// The mask's paths, `*` expanded.
    pub paths: Vec<String>,
}

/// CheckGpuQuota's input.
#[derive(Debug, Clone)]
pub struct CheckGpuQuota {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The GPU pod request to check.
    pub request: GprSpec,
}

/// The PolicyService use cases.
#[derive(Clone, Debug)]
pub struct Policies {
    store: Store,
}

impl Policies {
    /// Use cases over `store`.
    pub(crate) fn new(store: Store) -> Self {
        Policies { store }
    }

    async fn read(&self, p: &Principal, name: &WorkspaceName) -> Result<Policy> {
        let ws = guard::read(&self.store, p, name, Permission::PoliciesGet).await?;
        // Missing only when the workspace was deleted since this replica's view read it.
        q::find(self.store.conn(), &ws, false)
            .await?
            .ok_or_else(|| Error::workspace_not_found(name))
    }

    /// GetPolicy.
    pub(crate) async fn get(&self, p: &Principal, name: WorkspaceName) -> Result<Policy> {
        self.read(p, &name).await
    }

    /// ListPolicies: the policies of the workspaces the caller may read, by workspace name.
    pub(crate) async fn list(&self, p: &Principal, input: ListPolicies) -> Result<Page<Policy>> {
        let ListPolicies { page, fingerprint } = input;
        let f = ListFilter {
            readable_by: access::listing_scope(p).map(Reader::of),
            now_us: memberships::micros(now()),
            ..Default::default()
        };
        let after = page.after_key();
        let total = self.store.count_workspaces(&f).await?;
        let rows = q::list(self.store.conn(), &f, after, page.size + 1).await?;
        Ok(page::finish(rows, page.size, &fingerprint, total, |p| {
            vec![p.workspace.clone()]
        }))
    }

    /// UpdatePolicy: platform admins only; the masked fields are set, and violations are
    /// answered before anything is written.
    pub(crate) async fn update(&self, p: &Principal, input: UpdatePolicy) -> Result<Policy> {
        let UpdatePolicy {
            workspace: name,
            etag,
            input,
            paths,
        } = input;
        let name = &name;
        let tx = self.store.begin_write().await?;
        let ws = guard::write(&tx, p, name, Permission::PoliciesUpdate).await?;
        let mut policy = q::find(&tx, &ws, true)
            .await?
            .ok_or_else(|| Error::Internal(format!("workspace \"{name}\" has no policy")))?;
        if !etag.is_empty() && etag != policy.etag() {
            return Err(Error::EtagMismatch);
        }
        ws.check_writable()?;
        let mut v = Violations::default();
        rules::apply(&mut policy.rules, &input, &paths, "policy.", &mut v);
        v.finish()?;
        policy.version += 1;
        policy.update_time = now();
        policy.updated_by = p.subject.clone();
        tx.record(record(
            EventKind::PolicyUpdated,
            &ws,
            &p.subject,
            EventObject::Policy(policy.clone()),
        ));
        q::update(&tx, &policy).await?;
        self.store.commit(tx).await?;
        // max_gprs is part of the usage answer.
        self.store.gpu_usage_changed(&ws.id);
        Ok(policy)
    }

    /// CheckGpuQuota.
    pub(crate) async fn check_quota(
        &self,
        p: &Principal,
        input: CheckGpuQuota,
    ) -> Result<Vec<QuotaViolation>> {
        let policy = self.read(p, &input.workspace).await?;
        Ok(check_quota(&policy.rules, &input.request))
    }
}
