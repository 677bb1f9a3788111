//! Conversions between protobuf messages and domain types. Requests are validated here, at
//! the edge, into domain input; every bad field becomes one field violation.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    domain::{
        access::{Permission, Role, Visibility},
        memberships::{
            AddMember, CheckAccess, ListMembers, MemberRef, RemoveMember, UpdateMember, Who,
        },
        model::{Member, Policy, PolicyRules, Resource, Workspace, WorkspaceState},
        page,
        policies::{CheckGpuQuota, ListPolicies, UpdatePolicy},
        quota::GpuRequest,
        rules::{self, PolicyInput},
        validate::{self, Violations, WorkspaceName},
        workspaces::{
            CreateWorkspace, ListResources, ListWorkspaces, NewWorkspace, ResourceRef,
            UpdateWorkspace, WorkspaceChanges, WorkspaceEtag, WorkspaceListing, WorkspaceRef,
        },
    },
    error::{Error, Result, echo},
    pb::v1 as pb,
};

/// Largest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 100;
/// Largest description, in characters.
pub const MAX_DESCRIPTION: usize = 1000;

/// A List response's `total_size`, saturated at the field's range.
pub fn total(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

impl From<Visibility> for pb::Visibility {
    fn from(v: Visibility) -> Self {
        match v {
            Visibility::Private => pb::Visibility::Private,
            Visibility::Internal => pb::Visibility::Internal,
            Visibility::Public => pb::Visibility::Public,
        }
    }
}

impl From<WorkspaceState> for pb::WorkspaceState {
    fn from(s: WorkspaceState) -> Self {
        match s {
            WorkspaceState::Active => pb::WorkspaceState::Active,
            WorkspaceState::Archived => pb::WorkspaceState::Archived,
        }
    }
}

impl From<Option<Role>> for pb::Role {
    fn from(r: Option<Role>) -> Self {
        match r {
            None => pb::Role::Unspecified,
            Some(Role::Viewer) => pb::Role::Viewer,
            Some(Role::Editor) => pb::Role::Editor,
            Some(Role::Admin) => pb::Role::Admin,
        }
    }
}

impl From<Workspace> for pb::Workspace {
    fn from(w: Workspace) -> Self {
        pb::Workspace {
            etag: w.etag(),
            id: w.id,
            name: w.name,
            display_name: w.display_name,
            description: w.description,
            labels: w.labels.into_iter().collect(),
            visibility: pb::Visibility::from(w.visibility) as i32,
            state: pb::WorkspaceState::from(w.state) as i32,
            built_in: w.built_in,
            created_by: w.created_by,
            create_time: Some(timestamp(w.create_time)),
            update_time: Some(timestamp(w.update_time)),
            resource_counts: w.resource_counts.into_iter().collect(),
        }
    }
}

impl From<Resource> for pb::Resource {
    fn from(r: Resource) -> Self {
        pb::Resource {
            workspace: r.workspace,
            kind: r.kind,
            resource_id: r.resource_id,
            registered_by: r.registered_by,
            create_time: Some(timestamp(r.create_time)),
        }
    }
}

/// Parses a visibility; unset means private.
pub fn visibility(v: i32) -> Result<Visibility, String> {
    match pb::Visibility::try_from(v) {
        Ok(pb::Visibility::Unspecified | pb::Visibility::Private) => Ok(Visibility::Private),
        Ok(pb::Visibility::Internal) => Ok(Visibility::Internal),
        Ok(pb::Visibility::Public) => Ok(Visibility::Public),
        Err(_) => Err(format!("{v} is not a Visibility")),
    }
}

/// Parses a state filter; unset means every state.
pub fn state_filter(v: i32) -> Result<Option<WorkspaceState>, String> {
    match pb::WorkspaceState::try_from(v) {
        Ok(pb::WorkspaceState::Unspecified) => Ok(None),
        Ok(pb::WorkspaceState::Active) => Ok(Some(WorkspaceState::Active)),
        Ok(pb::WorkspaceState::Archived) => Ok(Some(WorkspaceState::Archived)),
        Err(_) => Err(format!("{v} is not a WorkspaceState")),
    }
}

/// Parses a workspace name field, recording a violation on `field`.
pub fn workspace_name(v: &mut Violations, field: &str, s: &str) -> Option<WorkspaceName> {
    v.check(field, WorkspaceName::parse(s))
}

/// The fields UpdateWorkspace may change.
const WORKSPACE_UPDATABLE: [&str; 4] = ["display_name", "description", "labels", "visibility"];

impl TryFrom<pb::CreateWorkspaceRequest> for CreateWorkspace {
    type Error = Error;

    fn try_from(r: pb::CreateWorkspaceRequest) -> Result<Self> {
        let mut v = Violations::default();
        let w = r.workspace.unwrap_or_default();
        let name = workspace_name(&mut v, "workspace.name", &w.name);
        let display_name = v.check(
            "workspace.display_name",
            validate::text(&w.display_name, MAX_DISPLAY_NAME),
        );
        let description = v.check(
            "workspace.description",
            validate::text(&w.description, MAX_DESCRIPTION),
        );
        let labels = labels(&mut v, "workspace.labels", &w.labels);
        let visibility = v.check("workspace.visibility", visibility(w.visibility));
        if !r.request_id.is_empty() {
            v.check("request_id", validate::resource_id(&r.request_id));
        }
        v.done(|| {
            Some(CreateWorkspace {
                workspace: NewWorkspace {
                    name: name?,
                    display_name: display_name?,
                    description: description?,
                    labels: labels?,
                    visibility: visibility?,
                },
                request_id: r.request_id,
            })
        })
    }
}

impl TryFrom<pb::GetWorkspaceRequest> for WorkspaceRef {
    type Error = Error;

    fn try_from(r: pb::GetWorkspaceRequest) -> Result<Self> {
        let mut v = Violations::default();
        let by = match (r.name.is_empty(), r.id.is_empty()) {
            (false, true) => workspace_name(&mut v, "name", &r.name).map(WorkspaceRef::Name),
            (true, false) => v.check(
                "id",
                Uuid::parse_str(&r.id)
                    .map(WorkspaceRef::Id)
                    .map_err(|_| "must be a UUID".to_string()),
            ),
            _ => {
                v.add("name", "exactly one of name and id must be set");
                None
            }
        };
        v.done(|| by)
    }
}

impl TryFrom<pb::ListWorkspacesRequest> for WorkspaceListing {
    type Error = Error;

    fn try_from(r: pb::ListWorkspacesRequest) -> Result<Self> {
        let mut v = Violations::default();
        let state = v.check("state", state_filter(r.state));
        let labels = labels(&mut v, "labels", &r.labels);
        let member = optional(&mut v, "member", &r.member, validate::subject);
        let filter = ListWorkspaces {
            state: state.flatten(),
            member: member.flatten(),
            labels: labels.unwrap_or_default(),
        };
        let page = page::parse(r.page_size, &r.page_token, &filter.fingerprint(), &mut v);
        v.done(|| {
            Some(WorkspaceListing {
                filter,
                page: page?,
            })
        })
    }
}

impl TryFrom<pb::UpdateWorkspaceRequest> for UpdateWorkspace {
    type Error = Error;

    fn try_from(r: pb::UpdateWorkspaceRequest) -> Result<Self> {
        let mut v = Violations::default();
        let w = r.workspace.unwrap_or_default();
        let name = workspace_name(&mut v, "workspace.name", &w.name);
        let paths = mask_paths(&mut v, r.update_mask.as_ref(), &WORKSPACE_UPDATABLE);
        let mut changes = WorkspaceChanges::default();
        for path in &paths {
            match path.as_str() {
                "display_name" => {
                    changes.display_name = v.check(
                        "workspace.display_name",
                        validate::text(&w.display_name, MAX_DISPLAY_NAME),
                    )
                }
                "description" => {
                    changes.description = v.check(
                        "workspace.description",
                        validate::text(&w.description, MAX_DESCRIPTION),
                    )
                }
                "labels" => changes.labels = labels(&mut v, "workspace.labels", &w.labels),
                "visibility" => {
                    changes.visibility = v.check("workspace.visibility", visibility(w.visibility))
                }
                _ => {}
            }
        }
        v.done(|| {
            Some(UpdateWorkspace {
                name: name?,
                changes,
                etag: r.etag,
            })
        })
    }
}

/// A workspace named in `field`, with the etag a change is made under.
fn workspace_etag(field: &str, name: &str, etag: String) -> Result<WorkspaceEtag> {
    let mut v = Violations::default();
    let name = workspace_name(&mut v, field, name);
    v.done(|| Some(WorkspaceEtag { name: name?, etag }))
}

impl TryFrom<pb::DeleteWorkspaceRequest> for WorkspaceEtag {
    type Error = Error;

    fn try_from(r: pb::DeleteWorkspaceRequest) -> Result<Self> {
        workspace_etag("name", &r.name, r.etag)
    }
}

impl TryFrom<pb::ArchiveWorkspaceRequest> for WorkspaceEtag {
    type Error = Error;

    fn try_from(r: pb::ArchiveWorkspaceRequest) -> Result<Self> {
        workspace_etag("name", &r.name, r.etag)
    }
}

impl TryFrom<pb::UnarchiveWorkspaceRequest> for WorkspaceEtag {
    type Error = Error;

    fn try_from(r: pb::UnarchiveWorkspaceRequest) -> Result<Self> {
        workspace_etag("name", &r.name, r.etag)
    }
}

/// A resource named by its workspace, kind and id.
fn resource_ref(workspace: &str, kind: &str, id: &str) -> Result<ResourceRef> {
    let mut v = Violations::default();
    let workspace = workspace_name(&mut v, "workspace", workspace);
    let kind = v.check("kind", validate::resource_kind(kind));
    let resource_id = v.check("resource_id", validate::resource_id(id));
    v.done(|| {
        Some(ResourceRef {
            workspace: workspace?,
            kind: kind?,
            resource_id: resource_id?,
        })
    })
}

impl TryFrom<pb::RegisterResourceRequest> for ResourceRef {
    type Error = Error;

    fn try_from(r: pb::RegisterResourceRequest) -> Result<Self> {
        resource_ref(&r.workspace, &r.kind, &r.resource_id)
    }
}

impl TryFrom<pb::UnregisterResourceRequest> for ResourceRef {
    type Error = Error;

    fn try_from(r: pb::UnregisterResourceRequest) -> Result<Self> {
        resource_ref(&r.workspace, &r.kind, &r.resource_id)
    }
}

impl TryFrom<pb::ListResourcesRequest> for ListResources {
    type Error = Error;

    fn try_from(r: pb::ListResourcesRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let kind = optional(&mut v, "kind", &r.kind, validate::resource_kind);
        let fingerprint = serde_json::json!({
            "rpc": "ListResources",
            "workspace": r.workspace,
            "kind": r.kind,
        })
        .to_string();
        let page = page::parse(r.page_size, &r.page_token, &fingerprint, &mut v);
        v.done(|| {
            Some(ListResources {
                workspace: workspace?,
                kind: kind?,
                page: page?,
                fingerprint,
            })
        })
    }
}

/// GetPolicy's input: the workspace.
pub fn get_policy(r: pb::GetPolicyRequest) -> Result<WorkspaceName> {
    let mut v = Violations::default();
    let name = workspace_name(&mut v, "workspace", &r.workspace);
    v.done(|| name)
}

impl TryFrom<pb::ListPoliciesRequest> for ListPolicies {
    type Error = Error;

    fn try_from(r: pb::ListPoliciesRequest) -> Result<Self> {
        let mut v = Violations::default();
        let fingerprint = serde_json::json!({ "rpc": "ListPolicies" }).to_string();
        let page = page::parse(r.page_size, &r.page_token, &fingerprint, &mut v);
        v.done(|| {
            Some(ListPolicies {
                page: page?,
                fingerprint,
            })
        })
    }
}

impl TryFrom<pb::UpdatePolicyRequest> for UpdatePolicy {
    type Error = Error;

    fn try_from(r: pb::UpdatePolicyRequest) -> Result<Self> {
        let mut v = Violations::default();
        let given = r.policy.unwrap_or_default();
        let name = workspace_name(&mut v, "policy.workspace", &given.workspace);
        let paths = mask_paths(&mut v, r.update_mask.as_ref(), &rules::UPDATABLE);
        let input = policy_input(&given);
        // Checked here against the rules alone, so that bad input is answered before
        // anything else; the use case checks again against the policy it changes.
        rules::apply(
            &mut PolicyRules::default(),
            &input,
            &paths,
            "policy.",
            &mut v,
        );
        v.done(|| {
            Some(UpdatePolicy {
                workspace: name?,
                etag: r.etag,
                input,
                paths,
            })
        })
    }
}

impl TryFrom<pb::CheckGpuQuotaRequest> for CheckGpuQuota {
    type Error = Error;

    fn try_from(r: pb::CheckGpuQuotaRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        for (field, n) in [
            ("gpu_count", i64::from(r.gpu_count)),
            ("memory_bytes", r.memory_bytes),
            ("priority", i64::from(r.priority)),
        ] {
            if n < 0 {
                v.add(field, "must not be negative");
            }
        }
        let exit_duration_us = match r.exit_duration.as_ref().map(duration_us) {
            None => Some(0),
            Some(Some(us)) if us >= 0 => Some(us),
            Some(Some(_)) => {
                v.add("exit_duration", "must not be negative");
                None
            }
            Some(None) => {
                v.add("exit_duration", "is not a valid duration");
                None
            }
        };
        v.done(|| {
            Some(CheckGpuQuota {
                workspace: workspace?,
                request: GpuRequest {
                    gpu_shape: r.gpu_shape,
                    gpu_count: i64::from(r.gpu_count),
                    memory_bytes: r.memory_bytes,
                    priority: i64::from(r.priority),
                    exit_duration_us: exit_duration_us?,
                },
            })
        })
    }
}

/// Validates an update mask against `updatable`; `*` means all of them.
fn mask_paths(
    v: &mut Violations,
    mask: Option<&prost_types::FieldMask>,
    updatable: &[&str],
) -> Vec<String> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "at least one field must be provided");
        return Vec::new();
    }
    if paths.iter().any(|p| p == "*") {
        return updatable.iter().map(|s| s.to_string()).collect();
    }
    for p in paths {
        if !updatable.contains(&p.as_str()) {
            v.add(
                "update_mask",
                format!(
                    "\"{}\" is not an updatable field; updatable: {}",
                    echo(p),
                    updatable.join(", ")
                ),
            );
        }
    }
    paths.to_vec()
}

/// Parses exactly one of `subject` and `email`.
fn who(v: &mut Violations, subject: &str, email: &str) -> Option<Who> {
    match (subject.is_empty(), email.is_empty()) {
        (false, true) => v
            .check("subject", validate::subject(subject))
            .map(Who::Subject),
        (true, false) => v.check("email", validate::email(email)).map(Who::Email),
        _ => {
            v.add("subject", "exactly one of subject and email must be set");
            None
        }
    }
}

/// Parses an optional field: empty is `None`, anything else must parse.
fn optional<T>(
    v: &mut Violations,
    field: &str,
    s: &str,
    parse: impl FnOnce(&str) -> std::result::Result<T, String>,
) -> Option<Option<T>> {
    if s.is_empty() {
        Some(None)
    } else {
        v.check(field, parse(s)).map(Some)
    }
}

impl TryFrom<pb::AddMemberRequest> for AddMember {
    type Error = Error;

    fn try_from(r: pb::AddMemberRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let who = who(&mut v, &r.subject, &r.email);
        let role = v.check("role", role(r.role));
        v.done(|| {
            Some(AddMember {
                workspace: workspace?,
                who: who?,
                role: role?,
            })
        })
    }
}

impl TryFrom<pb::GetMemberRequest> for MemberRef {
    type Error = Error;

    fn try_from(r: pb::GetMemberRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let subject = v.check("subject", validate::subject(&r.subject));
        v.done(|| {
            Some(MemberRef {
                workspace: workspace?,
                subject: subject?,
            })
        })
    }
}

impl TryFrom<pb::UpdateMemberRequest> for UpdateMember {
    type Error = Error;

    fn try_from(r: pb::UpdateMemberRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let subject = v.check("subject", validate::subject(&r.subject));
        let role = v.check("role", role(r.role));
        v.done(|| {
            Some(UpdateMember {
                member: MemberRef {
                    workspace: workspace?,
                    subject: subject?,
                },
                role: role?,
                etag: r.etag,
            })
        })
    }
}

impl TryFrom<pb::RemoveMemberRequest> for RemoveMember {
    type Error = Error;

    fn try_from(r: pb::RemoveMemberRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let who = who(&mut v, &r.subject, &r.email);
        v.done(|| {
            Some(RemoveMember {
                workspace: workspace?,
                who: who?,
            })
        })
    }
}

impl TryFrom<pb::ListMembersRequest> for ListMembers {
    type Error = Error;

    fn try_from(r: pb::ListMembersRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let role = if r.role == pb::Role::Unspecified as i32 {
            Some(None)
        } else {
            v.check("role", role(r.role)).map(Some)
        };
        let fingerprint = serde_json::json!({
            "rpc": "ListMembers",
            "workspace": r.workspace,
            "role": r.role,
        })
        .to_string();
        let page = page::parse(r.page_size, &r.page_token, &fingerprint, &mut v);
        v.done(|| {
            Some(ListMembers {
                workspace: workspace?,
                role: role?,
                page: page?,
                fingerprint,
            })
        })
    }
}

impl TryFrom<pb::CheckAccessRequest> for CheckAccess {
    type Error = Error;

    fn try_from(r: pb::CheckAccessRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let permission = v.check(
            "permission",
            Permission::parse(&r.permission).ok_or_else(|| {
                format!(
                    "unknown permission \"{}\"; known: {}",
                    echo(&r.permission),
                    Permission::ALL.map(|p| p.as_str()).join(", ")
                )
            }),
        );
        let subject = optional(&mut v, "subject", &r.subject, validate::subject);
        v.done(|| {
            Some(CheckAccess {
                workspace: workspace?,
                permission: permission?,
                subject: subject?,
                consistent: r.fully_consistent,
            })
        })
    }
}

/// Checks the label map at `field`.
pub fn labels(
    v: &mut Violations,
    field: &str,
    l: &HashMap<String, String>,
) -> Option<std::collections::BTreeMap<String, String>> {
    validate::labels(field, l, v)
}

/// Parses a role that must be set.
pub fn role(v: i32) -> Result<Role, String> {
    match pb::Role::try_from(v) {
        Ok(pb::Role::Viewer) => Ok(Role::Viewer),
        Ok(pb::Role::Editor) => Ok(Role::Editor),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Unspecified) => Err("must be ROLE_VIEWER, ROLE_EDITOR or ROLE_ADMIN".into()),
        Err(_) => Err(format!("{v} is not a Role")),
    }
}

impl From<Member> for pb::Member {
    fn from(m: Member) -> Self {
        pb::Member {
            etag: m.etag(),
            workspace: m.workspace,
            subject: m.subject,
            email: m.email.unwrap_or_default(),
            role: pb::Role::from(Some(m.role)) as i32,
            added_by: m.added_by,
            create_time: Some(timestamp(m.create_time)),
            update_time: Some(timestamp(m.update_time)),
        }
    }
}

/// A protobuf Duration in microseconds; `None` when it is not a valid Duration (nanos out
/// of range, or of another sign than seconds) or does not fit.
pub fn duration_us(d: &prost_types::Duration) -> Option<i64> {
    let sign_ok = (d.seconds >= 0 && d.nanos >= 0) || (d.seconds <= 0 && d.nanos <= 0);
    if !(-999_999_999..=999_999_999).contains(&d.nanos) || !sign_ok {
        return None;
    }
    d.seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(d.nanos / 1000))
}

/// A protobuf Duration of `us` microseconds.
pub fn duration(us: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: us / 1_000_000,
        nanos: ((us % 1_000_000) * 1000) as i32,
    }
}

/// The policy fields of a request, before validation.
pub fn policy_input(p: &pb::Policy) -> PolicyInput {
    let range = p.priority_range.unwrap_or_default();
    let gpu = p.global_gpu_constraints.clone().unwrap_or_default();
    PolicyInput {
        priority_min: range.min.into(),
        priority_max: range.max.into(),
        max_gprs: p.max_gprs.into(),
        max_exit_duration_us: match &p.max_exit_duration_per_gpr {
            None => Some(0),
            Some(d) => duration_us(d),
        },
        enforce_idle_timeout: p.enforce_idle_timeout,
        requeue_on_failure: p.requeue_on_failure,
        enable_auto_eviction: p.enable_auto_eviction,
        gpu_shapes: gpu.gpu_shapes,
        max_gpu_per_gpr: gpu.max_gpu_per_gpr.into(),
        max_memory_per_gpr_bytes: gpu.max_memory_per_gpr_bytes,
    }
}

impl From<Policy> for pb::Policy {
    fn from(p: Policy) -> Self {
        let r = &p.rules;
        pb::Policy {
            etag: p.etag(),
            priority_range: Some(pb::PriorityRange {
                min: r.priority_min,
                max: r.priority_max,
            }),
            max_gprs: r.max_gprs,
            max_exit_duration_per_gpr: Some(duration(r.max_exit_duration_us)),
            enforce_idle_timeout: r.enforce_idle_timeout,
            requeue_on_failure: r.requeue_on_failure,
            enable_auto_eviction: r.enable_auto_eviction,
            global_gpu_constraints: Some(pb::GpuConstraints {
                gpu_shapes: r.gpu_shapes.clone(),
                max_gpu_per_gpr: r.max_gpu_per_gpr,
                max_memory_per_gpr_bytes: r.max_memory_per_gpr_bytes,
            }),
            workspace: p.workspace,
            updated_by: p.updated_by,
            update_time: Some(timestamp(p.update_time)),
        }
    }
}
