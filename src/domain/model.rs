//! The service's records as the core sees them: workspaces, resources and policies, with the
//! rules that belong to a record alone (etags, built-ins, the archived state).

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::access::{Role, Visibility, WorkspaceAccess};
use crate::error::{Error, Reason, Result, echo};

/// Name of the built-in workspace every principal can use.
pub const DEFAULT_WORKSPACE: &str = "default";
/// Name of the built-in workspace for platform-provided things.
pub const SYSTEM_WORKSPACE: &str = "system";

/// The current time at the precision both databases keep (microseconds), so that what a
/// write returns equals what a later read returns.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A workspace's life-cycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkspaceState {
    /// Readable and writable.
    Active,
    /// Read-only until unarchived.
    Archived,
}

impl WorkspaceState {
    /// The state's name as stored in the database.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WorkspaceState::Active => "active",
            WorkspaceState::Archived => "archived",
        }
    }

    /// Parses the stored name.
    pub(crate) fn from_db(s: &str) -> Option<Self> {
        match s {
            "active" => Some(WorkspaceState::Active),
            "archived" => Some(WorkspaceState::Archived),
            _ => None,
        }
    }
}

/// A workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    /// Server-assigned UUID.
    pub id: String,
    /// Unique, immutable RFC 1035 name.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// Labels, sorted by key.
    pub labels: BTreeMap<String, String>,
    /// Who besides members may use it.
    pub visibility: Visibility,
    /// Active or archived.
    pub state: WorkspaceState,
    /// True for `default` and `system`.
    pub built_in: bool,
    /// Subject of the creator.
    pub created_by: String,
    /// When it was created.
    pub create_time: DateTime<Utc>,
    /// When it last changed.
    pub update_time: DateTime<Utc>,
    /// Bumped on every change.
    pub version: i64,
    /// Registered resources by kind; filled by reads that return the workspace.
    pub resource_counts: BTreeMap<String, i64>,
}

impl Workspace {
    /// The AIP-154 etag. It includes part of the id so that a workspace deleted and created
    /// again under the same name never matches an old etag.
    pub(crate) fn etag(&self) -> String {
        etag(&self.id, self.version)
    }

    /// What authorization needs at `at`, given the memberships of the caller and of its
    /// groups.
    pub(crate) fn access(&self, held: &Holdings, at: DateTime<Utc>) -> WorkspaceAccess {
        let (member_role, group) = held.at(at);
        WorkspaceAccess {
            visibility: self.visibility,
            is_system: self.built_in && self.name == SYSTEM_WORKSPACE,
            member_role,
            group_role: group.map(|(role, _)| role),
        }
    }

    /// Refuses a request whose non-empty etag is not the current one.
    pub(crate) fn check_etag(&self, etag: &str) -> Result<()> {
        if etag.is_empty() || etag == self.etag() {
            Ok(())
        } else {
            Err(Error::EtagMismatch)
        }
    }

    /// Refuses a change while the workspace is archived.
    pub(crate) fn check_writable(&self) -> Result<()> {
        match self.state {
            WorkspaceState::Active => Ok(()),
            WorkspaceState::Archived => Err(Error::precondition(
                Reason::WorkspaceArchived,
                format!("workspaces/{}", echo(&self.name)),
                format!(
                    "workspace \"{}\" is archived and read-only; unarchive it first",
                    echo(&self.name)
                ),
            )
            .with("workspace", &self.name)),
        }
    }

    /// Refuses to delete, archive or make private a built-in workspace.
    pub(crate) fn check_not_built_in(&self, action: &str) -> Result<()> {
        if self.built_in {
            Err(Error::precondition(
                Reason::BuiltInWorkspace,
                format!("workspaces/{}", echo(&self.name)),
                format!(
                    "the built-in workspace \"{}\" cannot be {action}",
                    echo(&self.name)
                ),
            )
            .with("workspace", &self.name))
        } else {
            Ok(())
        }
    }
}

/// The etag of a record with this id and version.
pub(crate) fn etag(id: &str, version: i64) -> String {
    let prefix: String = id.chars().filter(|c| *c != '-').take(12).collect();
    format!("{prefix}.{version}")
}

/// A resource that another service keeps in a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Name of the workspace.
    pub workspace: String,
    /// The resource's kind.
    pub kind: String,
    /// The owning service's id of it.
    pub resource_id: String,
    /// Subject of the principal that registered it.
    pub registered_by: String,
    /// When it was registered.
    pub create_time: DateTime<Utc>,
}

/// The settable values of a GPU scheduling policy; also the server's defaults for new
/// workspaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRules {
    /// Lowest allowed priority.
    pub priority_min: i32,
    /// Highest allowed priority.
    pub priority_max: i32,
    /// Most GPU pod requests; 0 is no limit.
    pub max_gprs: i32,
    /// Longest exit duration in microseconds; 0 is no limit.
    pub max_exit_duration_us: i64,
    /// Whether idle GPU pods are stopped.
    pub enforce_idle_timeout: bool,
    /// Whether failed GPU pods are requeued.
    pub requeue_on_failure: bool,
    /// Whether lower-priority GPU pods may be evicted.
    pub enable_auto_eviction: bool,
    /// Allowed GPU shapes; empty is any.
    pub gpu_shapes: Vec<String>,
    /// Most GPUs per request; 0 is no limit.
    pub max_gpu_per_gpr: i32,
    /// Most memory per request in bytes; 0 is no limit.
    pub max_memory_per_gpr_bytes: i64,
}

impl Default for PolicyRules {
    /// No limits: the whole priority range, any shape, any count.
    fn default() -> Self {
        PolicyRules {
            priority_min: 0,
            priority_max: 1_000_000,
            max_gprs: 0,
            max_exit_duration_us: 0,
            enforce_idle_timeout: false,
            requeue_on_failure: false,
            enable_auto_eviction: false,
            gpu_shapes: Vec::new(),
            max_gpu_per_gpr: 0,
            max_memory_per_gpr_bytes: 0,
        }
    }
}

/// The fields of a GPU pod request that a policy judges (CheckGpuQuota, AdmitGpuRequest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GprSpec {
    /// The requested shape.
    pub gpu_shape: String,
    /// GPUs requested.
    pub gpu_count: i32,
    /// Memory requested, in bytes.
    pub memory_bytes: i64,
    /// The requested priority.
    pub priority: i32,
    /// The requested exit duration in microseconds.
    pub exit_duration_us: i64,
}

/// An admitted GPU pod request (GPR): it counts against its workspace's `max_gprs` until
/// it is released or `expire_time` passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuRequest {
    /// Name of the workspace.
    pub workspace: String,
    /// The caller's id of it, unique among the workspace's active GPRs.
    pub id: String,
    /// What was admitted.
    pub spec: GprSpec,
    /// Subject of the caller that admitted it.
    pub admitted_by: String,
    /// When it was admitted.
    pub admit_time: DateTime<Utc>,
    /// End of the lease.
    pub expire_time: DateTime<Utc>,
}

/// What a workspace's active GPRs add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuUsage {
    /// Name of the workspace.
    pub workspace: String,
    /// Active GPRs.
    pub active_gprs: i64,
    /// The policy's limit; 0 is none.
    pub max_gprs: i32,
    /// GPUs of the active GPRs by shape, only shapes in use.
    pub gpus_by_shape: BTreeMap<String, i64>,
    /// Memory of the active GPRs, saturated at `i64::MAX`.
    pub memory_bytes: i64,
}

/// Who a membership is of: a subject, or a group that tokens name in their groups claim.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberKey {
    /// A subject (a token's `sub`).
    Subject(String),
    /// A group.
    Group(String),
}

impl MemberKey {
    /// Whether this is a group, and its name or subject: the membership's key as stored.
    pub(crate) fn parts(&self) -> (bool, &str) {
        match self {
            MemberKey::Subject(s) => (false, s),
            MemberKey::Group(g) => (true, g),
        }
    }

    /// How answers name the member: `subject "alice"` or `group "ml-team"`.
    pub(crate) fn describe(&self) -> String {
        match self {
            MemberKey::Subject(s) => format!("subject \"{}\"", echo(s)),
            MemberKey::Group(g) => format!("group \"{}\"", echo(g)),
        }
    }
}

/// A membership's role and when it ends, as the view and the access checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleGrant {
    /// The role it grants.
    pub role: Role,
    /// When it stops granting it; `None` for never.
    pub expire_time: Option<DateTime<Utc>>,
}

impl RoleGrant {
    /// The role it grants at `at`: none from its `expire_time` on.
    pub(crate) fn at(&self, at: DateTime<Utc>) -> Option<Role> {
        match self.expire_time {
            Some(end) if end <= at => None,
            _ => Some(self.role),
        }
    }
}

/// The memberships that give a principal roles in one workspace: its own, and its groups'.
/// Expired ones are kept: whether they still grant is judged when they are used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    /// The subject's own membership.
    pub own: Option<RoleGrant>,
    /// Memberships of the principal's groups, by group name.
    pub groups: Vec<(String, RoleGrant)>,
}

impl Holdings {
    /// Records a membership read from the store: the subject's own, or a group's.
    pub(crate) fn add(&mut self, is_group: bool, name: String, grant: RoleGrant) {
        if is_group {
            self.groups.push((name, grant));
        } else {
            self.own = Some(grant);
        }
    }

    /// The roles held at `at`: its own, and the best group's (the highest role; between
    /// equals the first name in byte order) with that group's name.
    pub(crate) fn at(&self, at: DateTime<Utc>) -> (Option<Role>, Option<(Role, &str)>) {
        let own = self.own.and_then(|g| g.at(at));
        let mut best: Option<(Role, &str)> = None;
        for (name, grant) in &self.groups {
            if let Some(role) = grant.at(at) {
                let better = match best {
                    None => true,
                    Some((r, n)) => role > r || (role == r && name.as_str() < n),
                };
                if better {
                    best = Some((role, name));
                }
            }
        }
        (own, best)
    }
}

/// A membership of a subject or a group in a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Name of the workspace.
    pub workspace: String,
    /// The member.
    pub key: MemberKey,
    /// The email last seen in a subject member's token, if any.
    pub email: Option<String>,
    /// The member's role.
    pub role: Role,
    /// Subject of the principal that added it.
    pub added_by: String,
    /// When it was added.
    pub create_time: DateTime<Utc>,
    /// When it last changed.
    pub update_time: DateTime<Utc>,
    /// When it ends; `None` for never.
    pub expire_time: Option<DateTime<Utc>>,
    /// Bumped on every change.
    pub version: i64,
}

impl Member {
    /// The AIP-154 etag. The creation time tells apart a member removed and added again; the
    /// email is the one last seen in the subject's token, which changes without a write to
    /// the membership, so a digest of it is part of the etag too (the same on every replica).
    pub(crate) fn etag(&self) -> String {
        let base = format!("{:x}.{}", self.create_time.timestamp_micros(), self.version);
        match &self.email {
            None => base,
            Some(email) => {
                use sha2::Digest;
                let d = sha2::Sha256::digest(email.as_bytes());
                format!("{base}.{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
            }
        }
    }
}

/// A workspace's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The workspace's id.
    pub workspace_id: String,
    /// The workspace's name.
    pub workspace: String,
    /// The rules.
    pub rules: PolicyRules,
    /// Subject of the last principal that changed it.
    pub updated_by: String,
    /// When it last changed.
    pub update_time: DateTime<Utc>,
    /// Bumped on every change.
    pub version: i64,
}

impl Policy {
    /// The AIP-154 etag; `p`-prefixed so it never equals its workspace's.
    pub(crate) fn etag(&self) -> String {
        format!("p{}", etag(&self.workspace_id, self.version))
    }
}

/// What kind of change an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum EventKind {
    WorkspaceCreated,
    WorkspaceUpdated,
    WorkspaceArchived,
    WorkspaceUnarchived,
    WorkspaceDeleted,
    MemberAdded,
    MemberUpdated,
    MemberRemoved,
    PolicyUpdated,
    ResourceRegistered,
    ResourceUnregistered,
    GpuRequestAdmitted,
    GpuRequestReleased,
}

impl EventKind {
    /// Every kind, in the contract's order.
    pub const ALL: [EventKind; 13] = [
        EventKind::WorkspaceCreated,
        EventKind::WorkspaceUpdated,
        EventKind::WorkspaceArchived,
        EventKind::WorkspaceUnarchived,
        EventKind::WorkspaceDeleted,
        EventKind::MemberAdded,
        EventKind::MemberUpdated,
        EventKind::MemberRemoved,
        EventKind::PolicyUpdated,
        EventKind::ResourceRegistered,
        EventKind::ResourceUnregistered,
        EventKind::GpuRequestAdmitted,
        EventKind::GpuRequestReleased,
    ];

    /// The kind's name as stored in the database.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::WorkspaceCreated => "workspace_created",
            EventKind::WorkspaceUpdated => "workspace_updated",
            EventKind::WorkspaceArchived => "workspace_archived",
            EventKind::WorkspaceUnarchived => "workspace_unarchived",
            EventKind::WorkspaceDeleted => "workspace_deleted",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberUpdated => "member_updated",
            EventKind::MemberRemoved => "member_removed",
            EventKind::PolicyUpdated => "policy_updated",
            EventKind::ResourceRegistered => "resource_registered",
            EventKind::ResourceUnregistered => "resource_unregistered",
            EventKind::GpuRequestAdmitted => "gpu_request_admitted",
            EventKind::GpuRequestReleased => "gpu_request_released",
        }
    }

    /// Parses the stored name.
    pub(crate) fn from_db(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The object an event carries: as it stood after the change, or before it for deletions
/// and removals. Stored as JSON, so its shape is part of the schema: add fields with
/// `#[serde(default)]`, never rename them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum EventObject {
    Workspace(Workspace),
    Member(Member),
    Policy(Policy),
    Resource(Resource),
    GpuRequest(GpuRequest),
}

impl EventObject {
    /// About how many bytes the object takes in an answer: its strings, and a little for
    /// the rest.
    pub(crate) fn approx_bytes(&self) -> usize {
        const FIXED: usize = 160;
        FIXED
            + match self {
                EventObject::Workspace(w) => {
                    w.name.len()
                        + w.display_name.len()
                        + w.description.len()
                        + w.created_by.len()
                        + w.labels
                            .iter()
                            .map(|(k, v)| k.len() + v.len() + 4)
                            .sum::<usize>()
                        + w.resource_counts
                            .keys()
                            .map(|k| k.len() + 14)
                            .sum::<usize>()
                }
                EventObject::Member(m) => {
                    m.workspace.len()
                        + m.key.parts().1.len()
                        + m.email.as_ref().map_or(0, String::len)
                        + m.added_by.len()
                }
                EventObject::Policy(p) => {
                    p.workspace.len()
                        + p.updated_by.len()
                        + p.rules
                            .gpu_shapes
                            .iter()
                            .map(|s| s.len() + 2)
                            .sum::<usize>()
                }
                EventObject::Resource(r) => {
                    r.workspace.len() + r.kind.len() + r.resource_id.len() + r.registered_by.len()
                }
                EventObject::GpuRequest(g) => {
                    g.workspace.len() + g.id.len() + g.spec.gpu_shape.len() + g.admitted_by.len()
                }
            }
    }
}

/// One committed change, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its place in the deployment's one order of changes.
    pub revision: i64,
    /// When it committed.
    pub time: DateTime<Utc>,
    /// What kind of change.
    pub kind: EventKind,
    /// Name of the workspace changed.
    pub workspace: String,
    /// Id of the workspace changed: tells apart two workspaces that bore the same name.
    pub workspace_id: String,
    /// Subject of the caller; empty for the server itself.
    pub actor: String,
    /// The call's request id.
    pub request_id: String,
    /// The RPC, such as `workspaced.v1.MembershipService/AddMember`.
    pub method: String,
    /// The changed object.
    pub object: EventObject,
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn a_membership_grants_until_its_end_and_the_best_group_is_the_highest_then_first() {
        let now = Utc::now();
        let grant = |role, end: Option<i64>| RoleGrant {
            role,
            expire_time: end.map(|s| now + TimeDelta::seconds(s)),
        };
        assert_eq!(grant(Role::Admin, Some(1)).at(now), Some(Role::Admin));
        assert_eq!(grant(Role::Admin, Some(0)).at(now), None, "ends at its end");
        assert_eq!(grant(Role::Admin, None).at(now), Some(Role::Admin));
        let held = Holdings {
            own: Some(grant(Role::Viewer, Some(-1))),
            groups: vec![
                ("ops".into(), grant(Role::Editor, None)),
                ("data".into(), grant(Role::Editor, None)),
                ("leads".into(), grant(Role::Admin, Some(-1))),
                ("zeta".into(), grant(Role::Viewer, None)),
            ],
        };
        assert_eq!(held.at(now), (None, Some((Role::Editor, "data"))));
        let before = now - TimeDelta::seconds(5);
        assert_eq!(
            held.at(before),
            (Some(Role::Viewer), Some((Role::Admin, "leads")))
        );
    }
}
