//! GPU admission (on PolicyService): GPU pod requests admitted against a workspace's policy
//! and counted against its `max_gprs`, held by leases that schedulers renew and release.
//!
//! The count is decided in the database, never in a replica's memory: an admission holds
//! its workspace's row lock (`guard::write`) while it counts and inserts, so admissions
//! into one workspace take turns on every replica, and of N concurrent ones into K free
//! slots exactly K get in. Renew and release touch only their own row.

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    access::{Permission, Principal},
    events::record,
    guard,
    model::{EventKind, EventObject, GprSpec, GpuRequest, GpuUsage, Workspace, now},
    page::{self, Page, PageRequest},
    quota::{QuotaViolation, check_quota},
    validate::WorkspaceName,
};
use crate::{
    error::{Error, Reason, Result, echo},
    store::{Store, gpu_requests as q},
};

/// The lease a request gets when it asks for none.
pub const DEFAULT_LEASE: TimeDelta = TimeDelta::minutes(5);
/// The shortest lease.
pub const MIN_LEASE: TimeDelta = TimeDelta::seconds(1);
/// The longest lease.
pub const MAX_LEASE: TimeDelta = TimeDelta::hours(24);

/// AdmitGpuRequest's input.
#[derive(Debug, Clone)]
pub struct AdmitGpuRequest {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The caller's id of the request.
    pub id: String,
    /// What is asked for.
    pub spec: GprSpec,
    /// How long the lease lasts, within `MIN_LEASE..=MAX_LEASE`.
    pub lease: TimeDelta,
}

/// RenewGpuRequest's input.
#[derive(Debug, Clone)]
pub struct RenewGpuRequest {
    /// The request, by workspace and id.
    pub gpr: GpuRequestRef,
    /// The new lease from now, within `MIN_LEASE..=MAX_LEASE`.
    pub lease: TimeDelta,
}

/// A GPU pod request named by its workspace and id (ReleaseGpuRequest).
#[derive(Debug, Clone)]
pub struct GpuRequestRef {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The caller's id of the request.
    pub id: String,
}

/// ListGpuRequests' input.
#[derive(Debug, Clone)]
pub struct ListGpuRequests {
    /// The workspace.
    pub workspace: WorkspaceName,
    /// The page asked for.
    pub page: PageRequest,
    /// What the page token is bound to.
    pub fingerprint: String,
}

/// What AdmitGpuRequest decided.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The admitted request; `None` when it was not admitted.
    pub admitted: Option<GpuRequest>,
    /// Each rule the request breaks; empty when admitted.
    pub violations: Vec<QuotaViolation>,
    /// The workspace's usage after the call.
    pub usage: GpuUsage,
}

/// The GPU admission use cases.
#[derive(Clone, Debug)]
pub struct GpuRequests {
    store: Store,
}

impl GpuRequests {
    /// Use cases over `store`.
    pub(crate) fn new(store: Store) -> Self {
        GpuRequests { store }
    }

    /// AdmitGpuRequest: admits the request if it keeps every rule of the policy and the
    /// workspace runs fewer than `max_gprs` active requests; an active request with the
    /// same id is answered as it stands.
    pub(crate) async fn admit(&self, p: &Principal, input: AdmitGpuRequest) -> Result<Admission> {
        let AdmitGpuRequest {
            workspace: name,
            id,
            spec,
            lease,
        } = input;
        let tx = self.store.begin_write().await?;
        let ws = guard::write(&tx, p, &name, Permission::GpuRequestsAdmit).await?;
        ws.check_writable()?;
        let now = now();
        let (policy, tally) = q::policy_and_usage(&tx, &ws, now)
            .await?
            .ok_or_else(|| no_policy(&name))?;
        let mut usage = tally.usage;
        if tally.expired > 0 {
            // Under the workspace's lock: what this admission counts as expired is gone before
            // anyone can renew it (see `store::gpu_requests::delete_expired`).
            q::delete_expired(&tx, &ws.id, now).await?;
            usage = q::usage(&tx, &ws.id, now)
                .await?
                .ok_or_else(|| no_policy(&name))?
                .usage;
        }
        usage.workspace = ws.name.clone();
        let mut violations = check_quota(&policy.rules, &spec);
        violations.extend(slot_violation(&usage));
        let gpr = GpuRequest {
            workspace: ws.name.clone(),
            id,
            spec,
            admitted_by: p.subject.clone(),
            admit_time: now,
            expire_time: lease_end(now, lease),
        };
        // The id's active request, if any, is answered first: a retry of what was admitted
        // is admitted, whatever the workspace's room now. An insert stopped by a request
        // released before `find` saw it is tried again: that request was counted, so there
        // is room.
        let mut existing = None;
        let mut inserted = false;
        if violations.is_empty() {
            for _ in 0..2 {
                inserted = q::insert(&tx, &ws.id, &gpr).await?;
                if inserted {
                    break;
                }
                existing = q::find(&tx, &ws, &gpr.id, now).await?;
                if existing.is_some() {
                    break;
                }
            }
        } else {
            existing = q::find(&tx, &ws, &gpr.id, now).await?;
        }
        if !inserted {
            let Some(existing) = existing else {
                // Nothing is recorded; the rollback keeps even the expired rows.
                return Ok(Admission {
                    admitted: None,
                    violations,
                    usage,
                });
            };
            if existing.spec != gpr.spec {
                return Err(Error::exists(
                    Reason::GpuRequestExists,
                    format!(
                        "GPU pod request \"{}\" is active in workspace \"{}\" with other \
                         fields; release it first or use another id",
                        echo(&gpr.id),
                        echo(&name)
                    ),
                )
                .with("workspace", &name)
                .with("gpuRequestId", &gpr.id));
            }
            self.store.commit(tx).await?;
            self.store.gpu_usage_changed(&ws.id);
            return Ok(Admission {
                admitted: Some(existing),
                violations: Vec::new(),
                usage,
            });
        }
        // Recorded only now: the insert above may have been a retry's, which records none.
        tx.record(record(
            EventKind::GpuRequestAdmitted,
            &ws,
            &p.subject,
            EventObject::GpuRequest(gpr.clone()),
        ));
        self.store.commit(tx).await?;
        self.store.gpu_usage_changed(&ws.id);
        add(&mut usage, &gpr.spec);
        Ok(Admission {
            admitted: Some(gpr),
            violations: Vec::new(),
            usage,
        })
    }

    /// RenewGpuRequest: the active request's lease ends `lease` from now.
    pub(crate) async fn renew(&self, p: &Principal, input: RenewGpuRequest) -> Result<GpuRequest> {
        let RenewGpuRequest { gpr, lease } = input;
        let ws = self.scheduled(p, &gpr.workspace).await?;
        let tx = self.store.begin_write().await?;
        // After the wait for the writer: a lease that ended meanwhile is not renewed.
        let now = now();
        if !q::renew(&tx, &ws.id, &gpr.id, now, lease_end(now, lease)).await? {
            return Err(not_found(&gpr));
        }
        let renewed = q::find(&tx, &ws, &gpr.id, now).await?;
        self.store.commit(tx).await?;
        self.store.gpu_usage_changed(&ws.id);
        renewed.ok_or_else(|| not_found(&gpr))
    }

    /// ReleaseGpuRequest: the active request stops counting.
    pub(crate) async fn release(&self, p: &Principal, gpr: GpuRequestRef) -> Result<()> {
        let ws = self.scheduled(p, &gpr.workspace).await?;
        let tx = self.store.begin_write().await?;
        // After the wait for the writer, like renew.
        let now = now();
        // The request as it was, for the event.
        let Some(released) = q::release(&tx, &ws, &gpr.id, now).await? else {
            return Err(not_found(&gpr));
        };
        tx.record(record(
            EventKind::GpuRequestReleased,
            &ws,
            &p.subject,
            EventObject::GpuRequest(released),
        ));
        self.store.commit(tx).await?;
        self.store.gpu_usage_changed(&ws.id);
        Ok(())
    }

    /// ListGpuRequests: the active requests, by id.
    pub(crate) async fn list(
        &self,
        p: &Principal,
        input: ListGpuRequests,
    ) -> Result<Page<GpuRequest>> {
        let ListGpuRequests {
            workspace: name,
            page,
            fingerprint,
        } = input;
        let ws = guard::read(&self.store, p, &name, Permission::PoliciesGet).await?;
        let after = page.after_key();
        let (rows, total) = q::list(self.store.conn(), &ws, now(), after, page.size + 1).await?;
        Ok(page::finish(rows, page.size, &fingerprint, total, |r| {
            vec![r.id.clone()]
        }))
    }

    /// GetGpuUsage: what any replica admitted counts at once (see `Store::gpu_usage`).
    pub(crate) async fn usage(&self, p: &Principal, name: WorkspaceName) -> Result<GpuUsage> {
        let ws = guard::read(&self.store, p, &name, Permission::PoliciesGet).await?;
        // Missing only when the workspace was deleted since this replica's view read it.
        let mut usage = self
            .store
            .gpu_usage(&ws.id)
            .await?
            .ok_or_else(|| Error::workspace_not_found(&name))?;
        usage.workspace = ws.name.clone();
        Ok(usage)
    }

    /// Deletes the requests whose lease has ended, in every workspace; how many went.
    pub(crate) async fn sweep(&self) -> Result<u64> {
        Ok(q::sweep(self.store.write_conn(), now()).await?)
    }

    /// The workspace `name`, if `p` may renew and release in it. Archived workspaces
    /// included: a running pod keeps its lease.
    async fn scheduled(
        &self,
        p: &Principal,
        name: &WorkspaceName,
    ) -> Result<std::sync::Arc<Workspace>> {
        guard::read(&self.store, p, name, Permission::GpuRequestsAdmit).await
    }
}

/// The end of a lease of `lease` from `now`; a lease is at most a day, so it never overflows.
fn lease_end(now: DateTime<Utc>, lease: TimeDelta) -> DateTime<Utc> {
    now.checked_add_signed(lease)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The `max_gprs` violation, when the workspace already runs as many requests as it may.
fn slot_violation(usage: &GpuUsage) -> Option<QuotaViolation> {
    let max = i64::from(usage.max_gprs);
    (max > 0 && usage.active_gprs >= max).then(|| QuotaViolation {
        field: "max_gprs".into(),
        description: format!(
            "workspace \"{}\" already runs {} GPU pod request(s), at most {max} are allowed",
            echo(&usage.workspace),
            usage.active_gprs
        ),
    })
}

/// `usage` with one more active request.
fn add(usage: &mut GpuUsage, spec: &GprSpec) {
    usage.active_gprs += 1;
    usage.memory_bytes = usage.memory_bytes.saturating_add(spec.memory_bytes);
    *usage
        .gpus_by_shape
        .entry(spec.gpu_shape.clone())
        .or_default() += i64::from(spec.gpu_count);
}

/// Every workspace has a policy, made in the transaction that creates it.
fn no_policy(name: &str) -> Error {
    Error::Internal(format!("workspace \"{name}\" has no policy"))
}

fn not_found(gpr: &GpuRequestRef) -> Error {
    Error::not_found(
        Reason::GpuRequestNotFound,
        format!(
            "no active GPU pod request \"{}\" in workspace \"{}\" (unknown, released or expired)",
            echo(&gpr.id),
            echo(&gpr.workspace)
        ),
    )
    .with("workspace", &gpr.workspace)
    .with("gpuRequestId", &gpr.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_workspace_is_one_violation_and_zero_means_no_limit() {
        let usage = |active_gprs, max_gprs| GpuUsage {
            workspace: "w".into(),
            active_gprs,
            max_gprs,
            ..GpuUsage::default()
        };
        let cases = [
            (0, 0, false),
            (1000, 0, false),
            (4, 5, false),
            (5, 5, true),
            (6, 5, true),
        ];
        for (active, max, full) in cases {
            let v = slot_violation(&usage(active, max));
            assert_eq!(v.is_some(), full, "{active} of {max}");
            if let Some(v) = v {
                assert_eq!(v.field, "max_gprs");
            }
        }
    }

    #[test]
    fn an_admission_adds_to_its_shape_and_memory_saturates() {
        let mut u = GpuUsage {
            memory_bytes: i64::MAX - 1,
            ..GpuUsage::default()
        };
        let spec = GprSpec {
            gpu_shape: "a100".into(),
            gpu_count: 2,
            memory_bytes: 10,
            ..GprSpec::default()
        };
        add(&mut u, &spec);
        add(&mut u, &spec);
        assert_eq!(u.active_gprs, 2);
        assert_eq!(u.memory_bytes, i64::MAX);
        assert_eq!(u.gpus_by_shape.get("a100"), Some(&4));
    }
}
