//! Domain records into protobuf answers.

use chrono::{DateTime, Utc};

use crate::{
    domain::{
        access::{Grant, Role, Visibility},
        gpu_requests::Admission,
        memberships::Decision,
        model::{
            Event, EventKind, EventObject, GpuRequest, GpuUsage, Member, MemberKey, Policy,
            Resource, Workspace, WorkspaceState,
        },
        quota::QuotaViolation,
    },
    pb::v1 as pb,
};

/// A List response's `total_size`, saturated at the field's range.
pub(crate) fn total(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A protobuf timestamp.
pub(crate) fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
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

impl From<Member> for pb::Member {
    fn from(m: Member) -> Self {
        let etag = m.etag();
        let (subject, group) = match m.key {
            MemberKey::Subject(s) => (s, String::new()),
            MemberKey::Group(g) => (String::new(), g),
        };
        pb::Member {
            etag,
            workspace: m.workspace,
            subject,
            group,
            email: m.email.unwrap_or_default(),
            role: pb::Role::from(Some(m.role)) as i32,
            added_by: m.added_by,
            create_time: Some(timestamp(m.create_time)),
            update_time: Some(timestamp(m.update_time)),
            expire_time: m.expire_time.map(timestamp),
        }
    }
}

impl From<Option<Grant>> for pb::Grant {
    fn from(g: Option<Grant>) -> Self {
        match g {
            None => pb::Grant::Unspecified,
            Some(Grant::Membership) => pb::Grant::Membership,
            Some(Grant::Group) => pb::Grant::Group,
            Some(Grant::Visibility) => pb::Grant::Visibility,
            Some(Grant::PlatformRole) => pb::Grant::PlatformRole,
        }
    }
}

impl From<Decision> for pb::CheckAccessResponse {
    fn from(d: Decision) -> Self {
        pb::CheckAccessResponse {
            allowed: d.allowed,
            role: pb::Role::from(d.role) as i32,
            granted_by: pb::Grant::from(d.granted_by) as i32,
            group: d.group.unwrap_or_default(),
        }
    }
}

/// A protobuf Duration of `us` microseconds.
pub(crate) fn duration(us: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: us / 1_000_000,
        nanos: ((us % 1_000_000) * 1000) as i32,
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

impl From<QuotaViolation> for pb::QuotaViolation {
    fn from(q: QuotaViolation) -> Self {
        pb::QuotaViolation {
            field: q.field,
            description: q.description,
        }
    }
}

impl From<GpuRequest> for pb::GpuRequest {
    fn from(r: GpuRequest) -> Self {
        let s = r.spec;
        pb::GpuRequest {
            workspace: r.workspace,
            id: r.id,
            gpu_shape: s.gpu_shape,
            gpu_count: s.gpu_count,
            memory_bytes: s.memory_bytes,
            priority: s.priority,
            exit_duration: Some(duration(s.exit_duration_us)),
            admitted_by: r.admitted_by,
            admit_time: Some(timestamp(r.admit_time)),
            expire_time: Some(timestamp(r.expire_time)),
        }
    }
}

impl From<GpuUsage> for pb::GpuUsage {
    fn from(u: GpuUsage) -> Self {
        pb::GpuUsage {
            workspace: u.workspace,
            active_gprs: total(u64::try_from(u.active_gprs).unwrap_or(0)),
            max_gprs: u.max_gprs,
            gpus_by_shape: u.gpus_by_shape.into_iter().collect(),
            memory_bytes: u.memory_bytes,
        }
    }
}

impl From<Admission> for pb::AdmitGpuRequestResponse {
    fn from(a: Admission) -> Self {
        pb::AdmitGpuRequestResponse {
            admitted: a.admitted.is_some(),
            violations: a.violations.into_iter().map(Into::into).collect(),
            gpu_request: a.admitted.map(Into::into),
            usage: Some(a.usage.into()),
        }
    }
}

impl From<EventKind> for pb::EventType {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::WorkspaceCreated => pb::EventType::WorkspaceCreated,
            EventKind::WorkspaceUpdated => pb::EventType::WorkspaceUpdated,
            EventKind::WorkspaceArchived => pb::EventType::WorkspaceArchived,
            EventKind::WorkspaceUnarchived => pb::EventType::WorkspaceUnarchived,
            EventKind::WorkspaceDeleted => pb::EventType::WorkspaceDeleted,
            EventKind::MemberAdded => pb::EventType::MemberAdded,
            EventKind::MemberUpdated => pb::EventType::MemberUpdated,
            EventKind::MemberRemoved => pb::EventType::MemberRemoved,
            EventKind::PolicyUpdated => pb::EventType::PolicyUpdated,
            EventKind::ResourceRegistered => pb::EventType::ResourceRegistered,
            EventKind::ResourceUnregistered => pb::EventType::ResourceUnregistered,
            EventKind::GpuRequestAdmitted => pb::EventType::GpuRequestAdmitted,
            EventKind::GpuRequestReleased => pb::EventType::GpuRequestReleased,
        }
    }
}

impl From<Event> for pb::Event {
    fn from(e: Event) -> Self {
        use pb::event::Object;
        pb::Event {
            revision: e.revision,
            time: Some(timestamp(e.time)),
            r#type: pb::EventType::from(e.kind) as i32,
            workspace: e.workspace,
            actor: e.actor,
            request_id: e.request_id,
            method: e.method,
            object: Some(match e.object {
                EventObject::Workspace(w) => Object::WorkspaceState(w.into()),
                EventObject::Member(m) => Object::Member(m.into()),
                EventObject::Policy(p) => Object::Policy(p.into()),
                EventObject::Resource(r) => Object::Resource(r.into()),
                EventObject::GpuRequest(g) => Object::GpuRequest(g.into()),
            }),
        }
    }
}
