//! Conversions between protobuf messages and domain types. Requests are validated here, at
//! the edge, into domain input; every bad field becomes one field violation.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::{
    domain::{
        access::{Role, Visibility},
        model::Policy,
        model::{Member, Resource, Workspace, WorkspaceState},
        rules::PolicyInput,
        validate::{self, Violations, WorkspaceName},
    },
    error::Result,
    pb::v1 as pb,
};

/// Largest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 100;
/// Largest description, in characters.
pub const MAX_DESCRIPTION: usize = 1000;

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
pub fn workspace_name(v: &mut Violations, field: &str, s: &str) -> Option<String> {
    v.check(field, WorkspaceName::parse(s))
        .map(|n| n.as_str().to_owned())
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
