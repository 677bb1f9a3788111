//! Requests into the domain's inputs: each request is parsed here, once, into the typed
//! input of its use case (`WorkspaceName`, `Role`, a checked page token...), and every bad
//! field becomes one field violation of a single INVALID_ARGUMENT.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::{
    domain::{
        access::{Permission, Role, Visibility},
        events::{ListEvents, WatchEvents},
        gpu_requests::{
            AdmitGpuRequest, DEFAULT_LEASE, GpuRequestRef, ListGpuRequests, MAX_LEASE, MIN_LEASE,
            RenewGpuRequest,
        },
        memberships::{
            AddMember, CheckAccess, ExpireChange, ListMembers, MemberRef, RemoveMember,
            UpdateMember, Who,
        },
        model::{EventKind, GprSpec, MemberKey, PolicyRules, WorkspaceState},
        page,
        policies::{CheckGpuQuota, ListPolicies, UpdatePolicy},
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
pub(crate) const MAX_DISPLAY_NAME: usize = 100;
/// Largest description, in characters.
pub(crate) const MAX_DESCRIPTION: usize = 1000;

/// Parses a visibility; unset means private.
pub(crate) fn visibility(v: i32) -> Result<Visibility, String> {
    match pb::Visibility::try_from(v) {
        Ok(pb::Visibility::Unspecified | pb::Visibility::Private) => Ok(Visibility::Private),
        Ok(pb::Visibility::Internal) => Ok(Visibility::Internal),
        Ok(pb::Visibility::Public) => Ok(Visibility::Public),
        Err(_) => Err(format!("{v} is not a Visibility")),
    }
}

/// Parses a state filter; unset means every state.
pub(crate) fn state_filter(v: i32) -> Result<Option<WorkspaceState>, String> {
    match pb::WorkspaceState::try_from(v) {
        Ok(pb::WorkspaceState::Unspecified) => Ok(None),
        Ok(pb::WorkspaceState::Active) => Ok(Some(WorkspaceState::Active)),
        Ok(pb::WorkspaceState::Archived) => Ok(Some(WorkspaceState::Archived)),
        Err(_) => Err(format!("{v} is not a WorkspaceState")),
    }
}

/// Parses a workspace name field, recording a violation on `field`.
pub(crate) fn workspace_name(v: &mut Violations, field: &str, s: &str) -> Option<WorkspaceName> {
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
            v.check("request_id", validate::new_id(&r.request_id));
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
        let member_group = optional(&mut v, "member_group", &r.member_group, validate::group);
        let filter = ListWorkspaces {
            state: state.flatten(),
            member: member.flatten(),
            member_group: member_group.flatten(),
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
        let made = resource_ref(&r.workspace, &r.kind, &r.resource_id)?;
        validate::visible(&made.resource_id).map_err(|e| Error::invalid("resource_id", e))?;
        Ok(made)
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
pub(crate) fn get_policy(r: pb::GetPolicyRequest) -> Result<WorkspaceName> {
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

/// The fields of a GPU pod request that a policy judges, as CheckGpuQuota and
/// AdmitGpuRequest carry them: counts and the exit duration must not be negative. A
/// negative priority is the policy's to judge (Kubernetes priorities may be negative; no
/// range holds one), and so is any printable shape a scheduler names (`nvidia.com/gpu`,
/// `A100 80GB`): the policy's list decides whether it is allowed.
fn gpr_spec(
    v: &mut Violations,
    gpu_shape: String,
    gpu_count: i32,
    memory_bytes: i64,
    priority: i32,
    exit_duration: Option<&prost_types::Duration>,
) -> Option<GprSpec> {
    if !gpu_shape.is_empty() {
        v.check("gpu_shape", validate::new_id(&gpu_shape));
    }
    for (field, n) in [
        ("gpu_count", i64::from(gpu_count)),
        ("memory_bytes", memory_bytes),
    ] {
        if n < 0 {
            v.add(field, "must not be negative");
        }
    }
    let exit_duration_us = match exit_duration.map(duration_us) {
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
    Some(GprSpec {
        gpu_shape,
        gpu_count,
        memory_bytes,
        priority,
        exit_duration_us: exit_duration_us?,
    })
}

impl TryFrom<pb::CheckGpuQuotaRequest> for CheckGpuQuota {
    type Error = Error;

    fn try_from(r: pb::CheckGpuQuotaRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let request = gpr_spec(
            &mut v,
            r.gpu_shape,
            r.gpu_count,
            r.memory_bytes,
            r.priority,
            r.exit_duration.as_ref(),
        );
        v.done(|| {
            Some(CheckGpuQuota {
                workspace: workspace?,
                request: request?,
            })
        })
    }
}

/// A lease's length: unset means `DEFAULT_LEASE`; else within `MIN_LEASE..=MAX_LEASE`.
fn lease(d: Option<&prost_types::Duration>) -> Result<TimeDelta, String> {
    let Some(d) = d else {
        return Ok(DEFAULT_LEASE);
    };
    let us = duration_us(d).ok_or("is not a valid duration")?;
    // The bounds are checked to the nanosecond, so that neither is passed by a fraction
    // of a microsecond; the lease is kept in microseconds, as it is stored.
    let exact = TimeDelta::try_seconds(d.seconds)
        .and_then(|s| s.checked_add(&TimeDelta::nanoseconds(d.nanos.into())))
        .ok_or("is not a valid duration")?;
    if !(MIN_LEASE..=MAX_LEASE).contains(&exact) {
        return Err("must be between 1s and 24h".into());
    }
    Ok(TimeDelta::microseconds(us))
}

/// A GPU pod request named by workspace and id.
fn gpr_ref(v: &mut Violations, workspace: &str, id: &str) -> Option<GpuRequestRef> {
    let workspace = workspace_name(v, "workspace", workspace);
    let id = v.check("id", validate::resource_id(id));
    Some(GpuRequestRef {
        workspace: workspace?,
        id: id?,
    })
}

impl TryFrom<pb::AdmitGpuRequestRequest> for AdmitGpuRequest {
    type Error = Error;

    fn try_from(r: pb::AdmitGpuRequestRequest) -> Result<Self> {
        let mut v = Violations::default();
        let gpr = gpr_ref(&mut v, &r.workspace, &r.id);
        if let Err(e) = validate::visible(&r.id) {
            v.add("id", e);
        }
        let spec = gpr_spec(
            &mut v,
            r.gpu_shape,
            r.gpu_count,
            r.memory_bytes,
            r.priority,
            r.exit_duration.as_ref(),
        );
        let lease = v.check("lease_duration", lease(r.lease_duration.as_ref()));
        v.done(|| {
            let gpr = gpr?;
            Some(AdmitGpuRequest {
                workspace: gpr.workspace,
                id: gpr.id,
                spec: spec?,
                lease: lease?,
            })
        })
    }
}

impl TryFrom<pb::RenewGpuRequestRequest> for RenewGpuRequest {
    type Error = Error;

    fn try_from(r: pb::RenewGpuRequestRequest) -> Result<Self> {
        let mut v = Violations::default();
        let gpr = gpr_ref(&mut v, &r.workspace, &r.id);
        let lease = v.check("lease_duration", lease(r.lease_duration.as_ref()));
        v.done(|| {
            Some(RenewGpuRequest {
                gpr: gpr?,
                lease: lease?,
            })
        })
    }
}

impl TryFrom<pb::ReleaseGpuRequestRequest> for GpuRequestRef {
    type Error = Error;

    fn try_from(r: pb::ReleaseGpuRequestRequest) -> Result<Self> {
        let mut v = Violations::default();
        let gpr = gpr_ref(&mut v, &r.workspace, &r.id);
        v.done(|| gpr)
    }
}

impl TryFrom<pb::ListGpuRequestsRequest> for ListGpuRequests {
    type Error = Error;

    fn try_from(r: pb::ListGpuRequestsRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let fingerprint = serde_json::json!({
            "rpc": "ListGpuRequests",
            "workspace": r.workspace,
        })
        .to_string();
        let page = page::parse(r.page_size, &r.page_token, &fingerprint, &mut v);
        v.done(|| {
            Some(ListGpuRequests {
                workspace: workspace?,
                page: page?,
                fingerprint,
            })
        })
    }
}

/// GetGpuUsage's input: the workspace.
pub(crate) fn get_gpu_usage(r: pb::GetGpuUsageRequest) -> Result<WorkspaceName> {
    let mut v = Violations::default();
    let name = workspace_name(&mut v, "workspace", &r.workspace);
    v.done(|| name)
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
    // A path beside `*` is still checked: an unknown or immutable one is refused, not
    // swallowed by the wildcard. One violation names the first few bad paths: a mask of
    // thousands must not make a description of megabytes.
    const NAMED: usize = 10;
    let bad: Vec<&String> = paths
        .iter()
        .filter(|p| *p != "*" && !updatable.contains(&p.as_str()))
        .collect();
    if !bad.is_empty() {
        let named: Vec<String> = bad
            .iter()
            .take(NAMED)
            .map(|p| format!("\"{}\"", echo(p)))
            .collect();
        let more = match bad.len().saturating_sub(NAMED) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        let are = if bad.len() == 1 {
            "is not an updatable field"
        } else {
            "are not updatable fields"
        };
        v.add(
            "update_mask",
            format!(
                "{}{more} {are}; updatable: {}",
                named.join(", "),
                updatable.join(", ")
            ),
        );
    }
    if paths.iter().any(|p| p == "*") {
        return updatable.iter().map(|s| s.to_string()).collect();
    }
    paths.to_vec()
}

/// Most groups one check may name: a token's own are bounded by its size.
pub(crate) const MAX_CHECK_GROUPS: usize = 1000;

/// Parses exactly one of `subject`, `email` and `group`.
fn who(v: &mut Violations, subject: &str, email: &str, group: &str) -> Option<Who> {
    match (subject.is_empty(), email.is_empty(), group.is_empty()) {
        (false, true, true) => v
            .check("subject", validate::subject(subject))
            .map(Who::Subject),
        (true, false, true) => v.check("email", validate::email(email)).map(Who::Email),
        (true, true, false) => v.check("group", validate::group(group)).map(Who::Group),
        _ => {
            v.add(
                "subject",
                "exactly one of subject, email and group must be set",
            );
            None
        }
    }
}

/// Parses exactly one of `subject` and `group`.
fn member_key(v: &mut Violations, subject: &str, group: &str) -> Option<MemberKey> {
    match (subject.is_empty(), group.is_empty()) {
        (false, true) => v
            .check("subject", validate::subject(subject))
            .map(MemberKey::Subject),
        (true, false) => v
            .check("group", validate::group(group))
            .map(MemberKey::Group),
        _ => {
            v.add("subject", "exactly one of subject and group must be set");
            None
        }
    }
}

/// Parses a membership's end: unset is `None`; a set one must be a valid timestamp after
/// `now`.
fn expire_time(
    t: Option<&prost_types::Timestamp>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    let Some(t) = t else { return Ok(None) };
    // chrono reads nanos of 1e9 and over as a leap second; protobuf allows none.
    let at = u32::try_from(t.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .filter(|at| (1..=9999).contains(&chrono::Datelike::year(at)))
        .ok_or_else(|| "must be a valid timestamp between the years 1 and 9999".to_owned())?;
    // Kept at the databases' microseconds, so that what a write answers is what reads give;
    // judged as kept, so that nothing is stored already ended.
    let at = chrono::SubsecRound::trunc_subsecs(at, 6);
    if at <= now {
        return Err(format!(
            "must be in the future (it is {}, the server's time is {})",
            at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    Ok(Some(at))
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
        let who = who(&mut v, &r.subject, &r.email, &r.group);
        // A new member's subject or group is a new id; an email only looks one up.
        for (field, id) in [("subject", &r.subject), ("group", &r.group)] {
            if let Err(e) = validate::visible(id) {
                v.add(field, e);
            }
        }
        let role = v.check("role", role(r.role));
        let expire_time = v.check(
            "expire_time",
            expire_time(r.expire_time.as_ref(), Utc::now()),
        );
        v.done(|| {
            Some(AddMember {
                workspace: workspace?,
                who: who?,
                role: role?,
                expire_time: expire_time?,
            })
        })
    }
}

impl TryFrom<pb::GetMemberRequest> for MemberRef {
    type Error = Error;

    fn try_from(r: pb::GetMemberRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let key = member_key(&mut v, &r.subject, &r.group);
        v.done(|| {
            Some(MemberRef {
                workspace: workspace?,
                key: key?,
            })
        })
    }
}

impl TryFrom<pb::UpdateMemberRequest> for UpdateMember {
    type Error = Error;

    fn try_from(r: pb::UpdateMemberRequest) -> Result<Self> {
        let mut v = Violations::default();
        let workspace = workspace_name(&mut v, "workspace", &r.workspace);
        let key = member_key(&mut v, &r.subject, &r.group);
        let role = v.check("role", role(r.role));
        let expire = match (r.expire_time.as_ref(), r.clear_expire_time) {
            (Some(_), true) => {
                v.add(
                    "clear_expire_time",
                    "must not be set together with expire_time",
                );
                None
            }
            (None, true) => Some(ExpireChange::Clear),
            (t, false) => v
                .check("expire_time", expire_time(t, Utc::now()))
                .map(|t| t.map_or(ExpireChange::Keep, ExpireChange::Set)),
        };
        v.done(|| {
            Some(UpdateMember {
                member: MemberRef {
                    workspace: workspace?,
                    key: key?,
                },
                role: role?,
                expire: expire?,
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
        let who = who(&mut v, &r.subject, &r.email, &r.group);
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

/// Parses one check, naming its fields after `prefix` (empty for CheckAccess, `checks[3].`
/// for an item of a batch).
fn check_access(
    v: &mut Violations,
    prefix: &str,
    r: pb::CheckAccessRequest,
) -> Option<CheckAccess> {
    let field = |name: &str| format!("{prefix}{name}");
    let workspace = workspace_name(v, &field("workspace"), &r.workspace);
    let permission = v.check(
        &field("permission"),
        Permission::parse(&r.permission).ok_or_else(|| {
            format!(
                "unknown permission \"{}\"; known: {}",
                echo(&r.permission),
                Permission::ALL.map(|p| p.as_str()).join(", ")
            )
        }),
    );
    let subject = optional(v, &field("subject"), &r.subject, validate::subject);
    // A caller checking itself is judged by its token's groups: the field is ignored.
    let groups = if r.subject.is_empty() {
        Some(Vec::new())
    } else if r.groups.len() > MAX_CHECK_GROUPS {
        v.add(
            field("groups"),
            format!("must name at most {MAX_CHECK_GROUPS} groups"),
        );
        None
    } else {
        let mut ok = true;
        for (i, g) in r.groups.iter().enumerate() {
            ok &= v
                .check(&field(&format!("groups[{i}]")), validate::group(g))
                .is_some();
        }
        ok.then_some(r.groups)
    };
    Some(CheckAccess {
        workspace: workspace?,
        permission: permission?,
        subject: subject?,
        groups: groups?,
        consistent: r.fully_consistent,
    })
}

impl TryFrom<pb::CheckAccessRequest> for CheckAccess {
    type Error = Error;

    fn try_from(r: pb::CheckAccessRequest) -> Result<Self> {
        let mut v = Violations::default();
        let check = check_access(&mut v, "", r);
        v.done(|| check)
    }
}

/// Most checks in one BatchCheckAccess.
pub(crate) const MAX_BATCH_CHECKS: usize = 100;

/// BatchCheckAccess's checks: 1 to 100, every bad field of every item reported at once.
pub(crate) fn batch_checks(r: pb::BatchCheckAccessRequest) -> Result<Vec<CheckAccess>> {
    let mut v = Violations::default();
    let n = r.checks.len();
    if !(1..=MAX_BATCH_CHECKS).contains(&n) {
        v.add(
            "checks",
            format!("must hold 1 to {MAX_BATCH_CHECKS} checks, not {n}"),
        );
        return v.done(|| None);
    }
    let checks: Vec<Option<CheckAccess>> = r
        .checks
        .into_iter()
        .enumerate()
        .map(|(i, c)| check_access(&mut v, &format!("checks[{i}]."), c))
        .collect();
    v.done(|| checks.into_iter().collect())
}

/// Checks the label map at `field`.
pub(crate) fn labels(
    v: &mut Violations,
    field: &str,
    l: &HashMap<String, String>,
) -> Option<std::collections::BTreeMap<String, String>> {
    validate::labels(field, l, v)
}

/// Parses a role that must be set.
pub(crate) fn role(v: i32) -> Result<Role, String> {
    match pb::Role::try_from(v) {
        Ok(pb::Role::Viewer) => Ok(Role::Viewer),
        Ok(pb::Role::Editor) => Ok(Role::Editor),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Unspecified) => Err("must be ROLE_VIEWER, ROLE_EDITOR or ROLE_ADMIN".into()),
        Err(_) => Err(format!("{v} is not a Role")),
    }
}

/// A protobuf Duration in microseconds, a fraction of one rounded away from zero (limits are
/// kept in whole microseconds, so a duration a nanosecond over one is over it); `None` when
/// it is not a valid Duration (nanos out of range, or of another sign than seconds) or does
/// not fit.
pub(crate) fn duration_us(d: &prost_types::Duration) -> Option<i64> {
    let sign_ok = (d.seconds >= 0 && d.nanos >= 0) || (d.seconds <= 0 && d.nanos <= 0);
    if !(-999_999_999..=999_999_999).contains(&d.nanos) || !sign_ok {
        return None;
    }
    let micros = if d.nanos >= 0 {
        (d.nanos + 999) / 1000
    } else {
        (d.nanos - 999) / 1000
    };
    d.seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(micros))
}

/// The policy fields of a request, before validation.
pub(crate) fn policy_input(p: &pb::Policy) -> PolicyInput {
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

/// Parses an event kind of a filter; unset is refused, as it matches nothing.
fn event_kind(v: i32) -> Result<EventKind, String> {
    match pb::EventType::try_from(v) {
        Ok(pb::EventType::Unspecified) => Err("EVENT_TYPE_UNSPECIFIED matches no event".into()),
        Ok(t) => EventKind::ALL
            .into_iter()
            .find(|k| pb::EventType::from(*k) == t)
            .ok_or_else(|| format!("{v} is not an EventType")),
        Err(_) => Err(format!("{v} is not an EventType")),
    }
}

/// The filters ListEvents and WatchEvents share: an optional workspace, a revision to go
/// on after, and kinds (one violation for the first bad one), each once in the contract's
/// order, however often and in whatever order they were sent: a filter is a set, and a
/// long list must not reach the database as as many parameters, nor a page token.
fn event_filters(
    v: &mut Violations,
    workspace: &str,
    after_revision: i64,
    types: &[i32],
) -> (
    Option<Option<WorkspaceName>>,
    Option<i64>,
    Option<Vec<EventKind>>,
) {
    let workspace = optional(v, "workspace", workspace, WorkspaceName::parse);
    let after = if after_revision < 0 {
        v.add("after_revision", "must not be negative");
        None
    } else {
        Some(after_revision)
    };
    let kinds = v.check(
        "types",
        types
            .iter()
            .map(|t| event_kind(*t))
            .collect::<std::result::Result<HashSet<_>, _>>()
            .map(|sent| {
                EventKind::ALL
                    .into_iter()
                    .filter(|k| sent.contains(k))
                    .collect::<Vec<_>>()
            }),
    );
    (workspace, after, kinds)
}

impl TryFrom<pb::ListEventsRequest> for ListEvents {
    type Error = Error;

    fn try_from(r: pb::ListEventsRequest) -> Result<Self> {
        let mut v = Violations::default();
        let (workspace, after, kinds) =
            event_filters(&mut v, &r.workspace, r.after_revision, &r.types);
        let fingerprint = serde_json::json!({
            "rpc": "ListEvents",
            "workspace": r.workspace,
            "after_revision": r.after_revision,
            "types": kinds.iter().flatten().map(|k| pb::EventType::from(*k) as i32).collect::<Vec<_>>(),
        })
        .to_string();
        let page = page::parse_sized(
            page::EVENT_PAGES,
            r.page_size,
            &r.page_token,
            &fingerprint,
            &mut v,
        );
        v.done(|| {
            Some(ListEvents {
                workspace: workspace?,
                after_revision: after?,
                kinds: kinds?,
                page: page?,
                fingerprint,
            })
        })
    }
}

impl TryFrom<pb::WatchEventsRequest> for WatchEvents {
    type Error = Error;

    fn try_from(r: pb::WatchEventsRequest) -> Result<Self> {
        let mut v = Violations::default();
        let (workspace, after, kinds) =
            event_filters(&mut v, &r.workspace, r.after_revision, &r.types);
        v.done(|| {
            Some(WatchEvents {
                workspace: workspace?,
                after_revision: after?,
                kinds: kinds?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_convert_to_microseconds_or_are_refused() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        let cases = [
            (d(0, 0), Some(0)),
            (d(1, 500_000), Some(1_000_500)),
            (d(-1, -500_000), Some(-1_000_500)),
            (d(0, 999), Some(1)),
            (d(0, 1), Some(1)),
            (d(0, 1000), Some(1)),
            (d(-1, -500_001), Some(-1_000_501)),
            (d(1, -1), None),
            (d(-1, 1), None),
            (d(0, 1_000_000_000), None),
            (d(i64::MAX, 0), None),
        ];
        for (given, expected) in cases {
            assert_eq!(duration_us(&given), expected, "{given:?}");
        }
    }

    #[test]
    fn roles_must_be_set_and_known() {
        let cases = [
            (pb::Role::Viewer as i32, Some(Role::Viewer)),
            (pb::Role::Editor as i32, Some(Role::Editor)),
            (pb::Role::Admin as i32, Some(Role::Admin)),
            (pb::Role::Unspecified as i32, None),
            (42, None),
        ];
        for (given, expected) in cases {
            assert_eq!(role(given).ok(), expected, "{given}");
        }
    }

    #[test]
    fn update_masks_name_updatable_fields() {
        let mask = |paths: &[&str]| prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        };
        let updatable = ["a", "b"];
        let cases: [(Option<prost_types::FieldMask>, Vec<&str>, usize); 7] = [
            (None, vec![], 1),
            (Some(mask(&[])), vec![], 1),
            (Some(mask(&["*"])), vec!["a", "b"], 0),
            (Some(mask(&["b"])), vec!["b"], 0),
            // One violation for the mask, naming each bad path.
            (Some(mask(&["a", "c", "d"])), vec!["a", "c", "d"], 1),
            // Beside the wildcard, a path is still checked.
            (Some(mask(&["*", "c"])), vec!["a", "b"], 1),
            (Some(mask(&["b", "*"])), vec!["a", "b"], 0),
        ];
        for (given, paths, bad) in cases {
            let mut v = Violations::default();
            assert_eq!(mask_paths(&mut v, given.as_ref(), &updatable), paths);
            let errors = match v.finish() {
                Ok(()) => 0,
                Err(Error::InvalidArgument(fields)) => {
                    let described = &fields[0].description;
                    for path in paths.iter().filter(|p| !updatable.contains(p)) {
                        assert!(described.contains(&format!("\"{path}\"")), "{described}");
                    }
                    fields.len()
                }
                Err(e) => panic!("{e}"),
            };
            assert_eq!(errors, bad, "{given:?}");
        }
    }

    #[test]
    fn a_member_is_named_by_exactly_one_of_subject_email_and_group() {
        let cases = [
            ("alice", "", "", true),
            ("", "alice@example.com", "", true),
            ("", "", "ml-team", true),
            ("", "", "", false),
            ("alice", "alice@example.com", "", false),
            ("alice", "", "ml-team", false),
            ("", "alice@example.com", "ml-team", false),
            ("bad\u{7}", "", "", false),
            ("", "", "bad\u{7}", false),
        ];
        for (subject, email, group, ok) in cases {
            let mut v = Violations::default();
            let parsed = who(&mut v, subject, email, group);
            assert_eq!(parsed.is_some(), ok, "{subject:?} {email:?} {group:?}");
            assert_eq!(v.finish().is_ok(), ok, "{subject:?} {email:?} {group:?}");
        }
    }

    #[test]
    fn an_expire_time_must_be_a_valid_future_instant() {
        let now = Utc::now();
        let ts = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        let s = now.timestamp();
        let cases = [
            (None, true),
            (Some(ts(s + 60, 0)), true),
            (Some(ts(s - 60, 0)), false),
            (Some(ts(s + 60, -1)), false),
            (Some(ts(s + 60, 1_000_000_000)), false),
            // At :59 chrono would take it for a leap second.
            (Some(ts((s / 60 + 2) * 60 + 59, 1_500_000_000)), false),
            (Some(ts(i64::MAX, 0)), false),
            (Some(ts(253_402_300_800, 0)), false), // the year 10000
        ];
        for (t, ok) in cases {
            assert_eq!(expire_time(t.as_ref(), now).is_ok(), ok, "{t:?}");
        }
        let later = expire_time(Some(&ts(s + 60, 123_456_789)), now)
            .unwrap()
            .unwrap();
        assert_eq!(later.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn a_batch_names_each_bad_field_by_its_index_and_bounds_its_size() {
        let ok = || pb::CheckAccessRequest {
            workspace: "w".into(),
            permission: "workspaces.get".into(),
            ..Default::default()
        };
        let mut bad = ok();
        bad.permission = "nope".into();
        bad.workspace = "Bad".into();
        let batch = |checks| pb::BatchCheckAccessRequest { checks };
        let Err(Error::InvalidArgument(fields)) = batch_checks(batch(vec![ok(), ok(), bad])) else {
            panic!("accepted")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["checks[2].workspace", "checks[2].permission"]);
        for n in [0, 101] {
            let Err(Error::InvalidArgument(fields)) = batch_checks(batch(vec![ok(); n])) else {
                panic!("{n} accepted")
            };
            assert_eq!(fields.len(), 1);
            assert_eq!(fields[0].field, "checks");
        }
        assert_eq!(batch_checks(batch(vec![ok(); 100])).unwrap().len(), 100);
    }

    #[test]
    fn every_bad_field_of_a_request_is_reported_at_once() {
        let bad = pb::AddMemberRequest {
            workspace: "Bad_Name".into(),
            role: 0,
            ..Default::default()
        };
        let Err(Error::InvalidArgument(fields)) = AddMember::try_from(bad) else {
            panic!("accepted")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["workspace", "subject", "role"]);
    }
}
