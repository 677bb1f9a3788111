//! One method per RPC on `TestServer`, so a test states its case instead of a request
//! literal: `s.archive_workspace(&alice, "old", "")`. Each takes the caller's token and the
//! fields a test varies, and returns the response's payload or the `Status`, for the test to
//! `unwrap` or assert on. Where a test needs a request the short form cannot express (both
//! `name` and `id`, more than one of `subject`, `email` and `group`, `fully_consistent`), the
//! `_with` form takes every field. ListWorkspaces, ListMembers, ListResources, CheckGpuQuota and
//! AdmitGpuRequest take their request message, built with `..Default::default()`; so do the
//! `_msg` forms of AddMember, UpdateMember and CheckAccess, for what no other form expresses
//! (all three selectors, a group's end, a subject's groups), built with `add_request`,
//! `update_request` and `check_request`. A group member has its own short forms
//! (`add_group_member`, `get_group_member`, `update_group_member`, `remove_group_member`).
//! ListEvents and WatchEvents take their request message too.

use tonic::Status;
use workspaced::pb::v1 as pb;

use super::{TestServer, add_request, check_request, platform_admin, req, update_request};

/// A field mask of `paths`.
fn mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    }
}

/// WorkspaceService.
impl TestServer {
    /// CreateWorkspace without a request id.
    pub async fn create_workspace(
        &self,
        token: &str,
        ws: pb::Workspace,
    ) -> Result<pb::Workspace, Status> {
        self.create_workspace_with_request_id(token, ws, "").await
    }

    /// CreateWorkspace with `request_id`, which makes a retry return the first workspace.
    pub async fn create_workspace_with_request_id(
        &self,
        token: &str,
        ws: pb::Workspace,
        request_id: &str,
    ) -> Result<pb::Workspace, Status> {
        let msg = pb::CreateWorkspaceRequest {
            workspace: Some(ws),
            request_id: request_id.into(),
        };
        self.workspaces()
            .create_workspace(req(msg, token))
            .await
            .map(|r| r.into_inner().workspace.expect("workspace"))
    }

    /// GetWorkspace by name.
    pub async fn get_workspace(&self, token: &str, name: &str) -> Result<pb::Workspace, Status> {
        self.get_workspace_with(token, name, "").await
    }

    /// GetWorkspace by id.
    pub async fn get_workspace_by_id(
        &self,
        token: &str,
        id: &str,
    ) -> Result<pb::Workspace, Status> {
        self.get_workspace_with(token, "", id).await
    }

    /// GetWorkspace with both selectors as given (exactly one is valid).
    pub async fn get_workspace_with(
        &self,
        token: &str,
        name: &str,
        id: &str,
    ) -> Result<pb::Workspace, Status> {
        let msg = pb::GetWorkspaceRequest {
            name: name.into(),
            id: id.into(),
        };
        self.workspaces()
            .get_workspace(req(msg, token))
            .await
            .map(|r| r.into_inner().workspace.expect("workspace"))
    }

    /// ListWorkspaces.
    pub async fn list_workspaces(
        &self,
        token: &str,
        msg: pb::ListWorkspacesRequest,
    ) -> Result<pb::ListWorkspacesResponse, Status> {
        self.workspaces()
            .list_workspaces(req(msg, token))
            .await
            .map(|r| r.into_inner())
    }

    /// UpdateWorkspace of the fields in `paths`; an empty `etag` skips the check.
    pub async fn update_workspace(
        &self,
        token: &str,
        ws: pb::Workspace,
        paths: &[&str],
        etag: &str,
    ) -> Result<pb::Workspace, Status> {
        let msg = pb::UpdateWorkspaceRequest {
            workspace: Some(ws),
            update_mask: Some(mask(paths)),
            etag: etag.into(),
        };
        self.workspaces()
            .update_workspace(req(msg, token))
            .await
            .map(|r| r.into_inner().workspace.expect("workspace"))
    }

    /// DeleteWorkspace; an empty `etag` skips the check.
    pub async fn delete_workspace(
        &self,
        token: &str,
        name: &str,
        etag: &str,
    ) -> Result<(), Status> {
        let msg = pb::DeleteWorkspaceRequest {
            name: name.into(),
            etag: etag.into(),
        };
        self.workspaces()
            .delete_workspace(req(msg, token))
            .await
            .map(|_| ())
    }

    /// ArchiveWorkspace; an empty `etag` skips the check.
    pub async fn archive_workspace(
        &self,
        token: &str,
        name: &str,
        etag: &str,
    ) -> Result<pb::Workspace, Status> {
        let msg = pb::ArchiveWorkspaceRequest {
            name: name.into(),
            etag: etag.into(),
        };
        self.workspaces()
            .archive_workspace(req(msg, token))
            .await
            .map(|r| r.into_inner().workspace.expect("workspace"))
    }

    /// UnarchiveWorkspace; an empty `etag` skips the check.
    pub async fn unarchive_workspace(
        &self,
        token: &str,
        name: &str,
        etag: &str,
    ) -> Result<pb::Workspace, Status> {
        let msg = pb::UnarchiveWorkspaceRequest {
            name: name.into(),
            etag: etag.into(),
        };
        self.workspaces()
            .unarchive_workspace(req(msg, token))
            .await
            .map(|r| r.into_inner().workspace.expect("workspace"))
    }

    /// RegisterResource.
    pub async fn register_resource(
        &self,
        token: &str,
        ws: &str,
        kind: &str,
        id: &str,
    ) -> Result<pb::Resource, Status> {
        let msg = pb::RegisterResourceRequest {
            workspace: ws.into(),
            kind: kind.into(),
            resource_id: id.into(),
        };
        self.workspaces()
            .register_resource(req(msg, token))
            .await
            .map(|r| r.into_inner().resource.expect("resource"))
    }

    /// UnregisterResource.
    pub async fn unregister_resource(
        &self,
        token: &str,
        ws: &str,
        kind: &str,
        id: &str,
    ) -> Result<(), Status> {
        let msg = pb::UnregisterResourceRequest {
            workspace: ws.into(),
            kind: kind.into(),
            resource_id: id.into(),
        };
        self.workspaces()
            .unregister_resource(req(msg, token))
            .await
            .map(|_| ())
    }

    /// ListResources.
    pub async fn list_resources(
        &self,
        token: &str,
        msg: pb::ListResourcesRequest,
    ) -> Result<pb::ListResourcesResponse, Status> {
        self.workspaces()
            .list_resources(req(msg, token))
            .await
            .map(|r| r.into_inner())
    }
}

/// MembershipService.
impl TestServer {
    /// AddMember with the request as given (see `add_request`).
    pub async fn add_member_msg(
        &self,
        token: &str,
        msg: pb::AddMemberRequest,
    ) -> Result<pb::Member, Status> {
        self.members()
            .add_member(req(msg, token))
            .await
            .map(|r| r.into_inner().member.expect("member"))
    }

    /// AddMember by subject.
    pub async fn add_member(
        &self,
        token: &str,
        ws: &str,
        subject: &str,
        role: pb::Role,
    ) -> Result<pb::Member, Status> {
        self.add_member_with(token, ws, subject, "", role).await
    }

    /// AddMember by the email a principal signed in with.
    pub async fn add_member_by_email(
        &self,
        token: &str,
        ws: &str,
        email: &str,
        role: pb::Role,
    ) -> Result<pb::Member, Status> {
        self.add_member_with(token, ws, "", email, role).await
    }

    /// AddMember with both selectors as given (exactly one is valid).
    pub async fn add_member_with(
        &self,
        token: &str,
        ws: &str,
        subject: &str,
        email: &str,
        role: pb::Role,
    ) -> Result<pb::Member, Status> {
        let msg = add_request(ws, subject, email, "", role);
        self.add_member_msg(token, msg).await
    }

    /// AddMember of `subject` with a membership that ends at `end`.
    pub async fn add_member_until(
        &self,
        token: &str,
        ws: &str,
        subject: &str,
        role: pb::Role,
        end: prost_types::Timestamp,
    ) -> Result<pb::Member, Status> {
        let msg = pb::AddMemberRequest {
            expire_time: Some(end),
            ..add_request(ws, subject, "", "", role)
        };
        self.add_member_msg(token, msg).await
    }

    /// AddMember of `group`, ending at `end` if given.
    pub async fn add_group_member(
        &self,
        token: &str,
        ws: &str,
        group: &str,
        role: pb::Role,
        end: Option<prost_types::Timestamp>,
    ) -> Result<pb::Member, Status> {
        let msg = pb::AddMemberRequest {
            expire_time: end,
            ..add_request(ws, "", "", group, role)
        };
        self.add_member_msg(token, msg).await
    }

    /// GetMember by subject.
    pub async fn get_member(
        &self,
        token: &str,
        ws: &str,
        subject: &str,
    ) -> Result<pb::Member, Status> {
        self.get_member_with(token, ws, subject, "").await
    }

    /// GetMember of `group`.
    pub async fn get_group_member(
        &self,
        token: &str,
        ws: &str,
        group: &str,
    ) -> Result<pb::Member, Status> {
        self.get_member_with(token, ws, "", group).await
    }

    /// GetMember with both selectors as given (exactly one is valid).
    pub async fn get_member_with(
        &self,
        token: &str,
        ws: &str,
        subject: &str,
        group: &str,
    ) -> Result<pb::Member, Status> {
        let msg = pb::GetMemberRequest {
            workspace: ws.into(),
            subject: subject.into(),
            group: group.into(),
        };
        self.members()
            .get_member(req(msg, token))
            .await
            .map(|r| r.into_inner().member.expect("member"))
    }

    /// UpdateMember with the request as given (see `update_request`).
    pub async fn update_member_msg(
        &self,
        token: &str,
        msg: pb::UpdateMemberRequest,
    ) -> Result<pb::Member, Status> {
        self.members()
            .update_member(req(msg, token))
            .await
            .map(|r| r.into_inner().member.expect("member"))
    }

    /// UpdateMember to `role`; an empty `etag` skips the check.
    pub async fn update_member(
        &self,
        token: &str,
        ws: &str,
        subject: &str,
        role: pb::Role,
        etag: &str,
    ) -> Result<pb::Member, Status> {
        self.update_member_with(token, ws, subject, "", role, etag)
            .await
    }

    /// UpdateMember of `group` to `role`; an empty `etag` skips the check.
    pub async fn update_group_member(
        &self,
        token: &str,
        ws: &str,
        group: &str,
        role: pb::Role,
        etag: &str,
    ) -> Result<pb::Member, Status> {
        self.update_member_with(token, ws, "", group, role, etag)
            .await
    }

    /// UpdateMember with both selectors as given (exactly one is valid), keeping the end; an
    /// empty `etag` skips the check.
    pub async fn update_member_with(
        &self,
        token: &str,
        ws: &str,
        subject: &str,
        group: &str,
        role: pb::Role,
        etag: &str,
    ) -> Result<pb::Member, Status> {
        let msg = pb::UpdateMemberRequest {
            etag: etag.into(),
            ..update_request(ws, subject, group, role)
        };
        self.update_member_msg(token, msg).await
    }

    /// UpdateMember of `subject` to `role`, with `expire_time` and `clear_expire_time` as given
    /// (neither keeps the end it has).
    pub async fn update_member_expiry(
        &self,
        token: &str,
        ws: &str,
        subject: &str,
        role: pb::Role,
        expire_time: Option<prost_types::Timestamp>,
        clear_expire_time: bool,
    ) -> Result<pb::Member, Status> {
        let msg = pb::UpdateMemberRequest {
            expire_time,
            clear_expire_time,
            ..update_request(ws, subject, "", role)
        };
        self.update_member_msg(token, msg).await
    }

    /// RemoveMember by subject; returns `removed_count`.
    pub async fn remove_member(&self, token: &str, ws: &str, subject: &str) -> Result<i32, Status> {
        self.remove_member_with(token, ws, subject, "", "").await
    }

    /// RemoveMember by email; returns `removed_count`.
    pub async fn remove_member_by_email(
        &self,
        token: &str,
        ws: &str,
        email: &str,
    ) -> Result<i32, Status> {
        self.remove_member_with(token, ws, "", email, "").await
    }

    /// RemoveMember of `group`; returns `removed_count`.
    pub async fn remove_group_member(
        &self,
        token: &str,
        ws: &str,
        group: &str,
    ) -> Result<i32, Status> {
        self.remove_member_with(token, ws, "", "", group).await
    }

    /// RemoveMember with the three selectors as given (exactly one is valid); returns
    /// `removed_count`.
    pub async fn remove_member_with(
        &self,
        token: &str,
        ws: &str,
        subject: &str,
        email: &str,
        group: &str,
    ) -> Result<i32, Status> {
        let msg = pb::RemoveMemberRequest {
            workspace: ws.into(),
            subject: subject.into(),
            email: email.into(),
            group: group.into(),
        };
        self.members()
            .remove_member(req(msg, token))
            .await
            .map(|r| r.into_inner().removed_count)
    }

    /// ListMembers.
    pub async fn list_members(
        &self,
        token: &str,
        msg: pb::ListMembersRequest,
    ) -> Result<pb::ListMembersResponse, Status> {
        self.members()
            .list_members(req(msg, token))
            .await
            .map(|r| r.into_inner())
    }

    /// CheckAccess with the request as given (see `check_request`).
    pub async fn check_access_msg(
        &self,
        token: &str,
        msg: pb::CheckAccessRequest,
    ) -> Result<pb::CheckAccessResponse, Status> {
        self.members()
            .check_access(req(msg, token))
            .await
            .map(|r| r.into_inner())
    }

    /// CheckAccess of `permission` for `subject` (empty: the caller), from the replica's view.
    pub async fn check_access(
        &self,
        token: &str,
        ws: &str,
        permission: &str,
        subject: &str,
    ) -> Result<pb::CheckAccessResponse, Status> {
        self.check_access_with(token, ws, permission, subject, false)
            .await
    }

    /// CheckAccess, `fully_consistent` as given.
    pub async fn check_access_with(
        &self,
        token: &str,
        ws: &str,
        permission: &str,
        subject: &str,
        fully_consistent: bool,
    ) -> Result<pb::CheckAccessResponse, Status> {
        let msg = pb::CheckAccessRequest {
            fully_consistent,
            ..check_request(ws, permission, subject, &[])
        };
        self.check_access_msg(token, msg).await
    }

    /// BatchCheckAccess of `checks`; the results, in order.
    pub async fn batch_check_access(
        &self,
        token: &str,
        checks: Vec<pb::CheckAccessRequest>,
    ) -> Result<Vec<pb::CheckAccessResponse>, Status> {
        self.members()
            .batch_check_access(req(pb::BatchCheckAccessRequest { checks }, token))
            .await
            .map(|r| r.into_inner().results)
    }
}

/// PolicyService.
impl TestServer {
    /// GetPolicy.
    pub async fn get_policy(&self, token: &str, ws: &str) -> Result<pb::Policy, Status> {
        let msg = pb::GetPolicyRequest {
            workspace: ws.into(),
        };
        self.policies()
            .get_policy(req(msg, token))
            .await
            .map(|r| r.into_inner().policy.expect("policy"))
    }

    /// ListPolicies.
    pub async fn list_policies(
        &self,
        token: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::ListPoliciesResponse, Status> {
        let msg = pb::ListPoliciesRequest {
            page_size,
            page_token: page_token.into(),
        };
        self.policies()
            .list_policies(req(msg, token))
            .await
            .map(|r| r.into_inner())
    }

    /// UpdatePolicy of the fields in `paths`; an empty `etag` skips the check.
    pub async fn update_policy(
        &self,
        token: &str,
        policy: pb::Policy,
        paths: &[&str],
        etag: &str,
    ) -> Result<pb::Policy, Status> {
        let msg = pb::UpdatePolicyRequest {
            policy: Some(policy),
            update_mask: Some(mask(paths)),
            etag: etag.into(),
        };
        self.policies()
            .update_policy(req(msg, token))
            .await
            .map(|r| r.into_inner().policy.expect("policy"))
    }

    /// CheckGpuQuota.
    pub async fn check_gpu_quota(
        &self,
        token: &str,
        msg: pb::CheckGpuQuotaRequest,
    ) -> Result<pb::CheckGpuQuotaResponse, Status> {
        self.policies()
            .check_gpu_quota(req(msg, token))
            .await
            .map(|r| r.into_inner())
    }

    /// AdmitGpuRequest.
    pub async fn admit_gpu_request(
        &self,
        token: &str,
        msg: pb::AdmitGpuRequestRequest,
    ) -> Result<pb::AdmitGpuRequestResponse, Status> {
        self.policies()
            .admit_gpu_request(req(msg, token))
            .await
            .map(|r| r.into_inner())
    }

    /// AdmitGpuRequest of `id` asking for `gpus` GPUs of shape `a100`, with a lease of
    /// `lease_secs` seconds (0 for the default).
    pub async fn admit_gpus(
        &self,
        token: &str,
        ws: &str,
        id: &str,
        gpus: i32,
        lease_secs: i64,
    ) -> Result<pb::AdmitGpuRequestResponse, Status> {
        let msg = pb::AdmitGpuRequestRequest {
            workspace: ws.into(),
            id: id.into(),
            gpu_shape: "a100".into(),
            gpu_count: gpus,
            lease_duration: (lease_secs > 0).then_some(prost_types::Duration {
                seconds: lease_secs,
                nanos: 0,
            }),
            ..Default::default()
        };
        self.admit_gpu_request(token, msg).await
    }

    /// RenewGpuRequest for `lease_secs` seconds (0 for the default).
    pub async fn renew_gpu_request(
        &self,
        token: &str,
        ws: &str,
        id: &str,
        lease_secs: i64,
    ) -> Result<pb::GpuRequest, Status> {
        let msg = pb::RenewGpuRequestRequest {
            workspace: ws.into(),
            id: id.into(),
            lease_duration: (lease_secs > 0).then_some(prost_types::Duration {
                seconds: lease_secs,
                nanos: 0,
            }),
        };
        self.policies()
            .renew_gpu_request(req(msg, token))
            .await
            .map(|r| r.into_inner().gpu_request.expect("gpu_request"))
    }

    /// ReleaseGpuRequest.
    pub async fn release_gpu_request(&self, token: &str, ws: &str, id: &str) -> Result<(), Status> {
        let msg = pb::ReleaseGpuRequestRequest {
            workspace: ws.into(),
            id: id.into(),
        };
        self.policies()
            .release_gpu_request(req(msg, token))
            .await
            .map(drop)
    }

    /// ListGpuRequests.
    pub async fn list_gpu_requests(
        &self,
        token: &str,
        ws: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::ListGpuRequestsResponse, Status> {
        let msg = pb::ListGpuRequestsRequest {
            workspace: ws.into(),
            page_size,
            page_token: page_token.into(),
        };
        self.policies()
            .list_gpu_requests(req(msg, token))
            .await
            .map(|r| r.into_inner())
    }

    /// GetGpuUsage.
    pub async fn get_gpu_usage(&self, token: &str, ws: &str) -> Result<pb::GpuUsage, Status> {
        let msg = pb::GetGpuUsageRequest {
            workspace: ws.into(),
        };
        self.policies()
            .get_gpu_usage(req(msg, token))
            .await
            .map(|r| r.into_inner().usage.expect("usage"))
    }
}

/// EventService.
impl TestServer {
    /// ListEvents.
    pub async fn list_events(
        &self,
        token: &str,
        msg: pb::ListEventsRequest,
    ) -> Result<pb::ListEventsResponse, Status> {
        self.events()
            .list_events(req(msg, token))
            .await
            .map(|r| r.into_inner())
    }

    /// The first page of `ws`'s events of `types`, as a platform admin reads it.
    pub async fn events_of_types(&self, ws: &str, types: &[pb::EventType]) -> Vec<pb::Event> {
        let msg = pb::ListEventsRequest {
            workspace: ws.into(),
            types: types.iter().map(|t| *t as i32).collect(),
            ..Default::default()
        };
        let page = self.list_events(&platform_admin(), msg).await;
        page.unwrap().events
    }

    /// WatchEvents: the stream of its messages.
    pub async fn watch_events(
        &self,
        token: &str,
        msg: pb::WatchEventsRequest,
    ) -> Result<tonic::Streaming<pb::WatchEventsResponse>, Status> {
        self.events()
            .watch_events(req(msg, token))
            .await
            .map(|r| r.into_inner())
    }
}
