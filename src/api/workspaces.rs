//! WorkspaceService: decode and validate each request, call the domain, convert the answer.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{SharedCtx, convert};
use crate::{
    domain::{
        page,
        validate::{self, Violations},
        workspaces::{ListWorkspaces, NewWorkspace, WorkspaceChanges, WorkspaceRef},
    },
    pb::v1::{self as pb, workspace_service_server::WorkspaceService},
};

/// The WorkspaceService implementation.
#[derive(Debug, Clone)]
pub struct WorkspaceApi {
    ctx: SharedCtx,
}

impl WorkspaceApi {
    /// A service over `ctx`.
    pub fn new(ctx: SharedCtx) -> Self {
        WorkspaceApi { ctx }
    }
}

/// The fields UpdateWorkspace may change.
const UPDATABLE: [&str; 4] = ["display_name", "description", "labels", "visibility"];

fn total(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[tonic::async_trait]
impl WorkspaceService for WorkspaceApi {
    #[tracing::instrument(skip_all)]
    async fn create_workspace(
        &self,
        req: Request<pb::CreateWorkspaceRequest>,
    ) -> Result<Response<pb::CreateWorkspaceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let mut v = Violations::default();
        let w = r.workspace.unwrap_or_default();
        let name = convert::workspace_name(&mut v, "workspace.name", &w.name);
        let display_name = v.check(
            "workspace.display_name",
            validate::text(&w.display_name, convert::MAX_DISPLAY_NAME),
        );
        let description = v.check(
            "workspace.description",
            validate::text(&w.description, convert::MAX_DESCRIPTION),
        );
        let labels = convert::labels(&mut v, "workspace.labels", &w.labels);
        let visibility = v.check("workspace.visibility", convert::visibility(w.visibility));
        if !r.request_id.is_empty() {
            v.check("request_id", validate::resource_id(&r.request_id));
        }
        v.finish()?;
        let (Some(name), Some(display_name), Some(description), Some(labels), Some(visibility)) =
            (name, display_name, description, labels, visibility)
        else {
            return Err(super::unvalidated());
        };
        let ws = self
            .ctx
            .workspaces
            .create(
                &p,
                NewWorkspace {
                    name,
                    display_name,
                    description,
                    labels,
                    visibility,
                },
                &r.request_id,
            )
            .await?;
        Ok(Response::new(pb::CreateWorkspaceResponse {
            workspace: Some(ws.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_workspace(
        &self,
        req: Request<pb::GetWorkspaceRequest>,
    ) -> Result<Response<pb::GetWorkspaceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let mut v = Violations::default();
        let by = match (r.name.is_empty(), r.id.is_empty()) {
            (false, true) => {
                convert::workspace_name(&mut v, "name", &r.name).map(WorkspaceRef::Name)
            }
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
        v.finish()?;
        let ws = self
            .ctx
            .workspaces
            .get(&p, by.ok_or_else(super::unvalidated)?)
            .await?;
        Ok(Response::new(pb::GetWorkspaceResponse {
            workspace: Some(ws.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_workspaces(
        &self,
        req: Request<pb::ListWorkspacesRequest>,
    ) -> Result<Response<pb::ListWorkspacesResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let mut v = Violations::default();
        let state = v.check("state", convert::state_filter(r.state));
        let labels = convert::labels(&mut v, "labels", &r.labels);
        let member = if r.member.is_empty() {
            Some(None)
        } else {
            v.check("member", validate::subject(&r.member)).map(Some)
        };
        let filter = ListWorkspaces {
            state: state.flatten(),
            member: member.flatten(),
            labels: labels.unwrap_or_default(),
        };
        let page = page::parse(r.page_size, &r.page_token, &filter.fingerprint(), &mut v);
        v.finish()?;
        let page = page.ok_or_else(super::unvalidated)?;
        let out = self.ctx.workspaces.list(&p, filter, page).await?;
        Ok(Response::new(pb::ListWorkspacesResponse {
            workspaces: out.items.into_iter().map(Into::into).collect(),
            next_page_token: out.next_page_token,
            total_size: total(out.total_size),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_workspace(
        &self,
        req: Request<pb::UpdateWorkspaceRequest>,
    ) -> Result<Response<pb::UpdateWorkspaceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let mut v = Violations::default();
        let w = r.workspace.unwrap_or_default();
        let name = convert::workspace_name(&mut v, "workspace.name", &w.name);
        let paths = super::mask_paths(&mut v, r.update_mask.as_ref(), &UPDATABLE);
        let mut changes = WorkspaceChanges::default();
        for path in &paths {
            match path.as_str() {
                "display_name" => {
                    changes.display_name = v.check(
                        "workspace.display_name",
                        validate::text(&w.display_name, convert::MAX_DISPLAY_NAME),
                    )
                }
                "description" => {
                    changes.description = v.check(
                        "workspace.description",
                        validate::text(&w.description, convert::MAX_DESCRIPTION),
                    )
                }
                "labels" => changes.labels = convert::labels(&mut v, "workspace.labels", &w.labels),
                "visibility" => {
                    changes.visibility =
                        v.check("workspace.visibility", convert::visibility(w.visibility))
                }
                _ => {}
            }
        }
        v.finish()?;
        let name = name.ok_or_else(super::unvalidated)?;
        let ws = self
            .ctx
            .workspaces
            .update(&p, &name, changes, &r.etag)
            .await?;
        Ok(Response::new(pb::UpdateWorkspaceResponse {
            workspace: Some(ws.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_workspace(
        &self,
        req: Request<pb::DeleteWorkspaceRequest>,
    ) -> Result<Response<pb::DeleteWorkspaceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let name = parse_name("name", &r.name)?;
        self.ctx.workspaces.delete(&p, &name, &r.etag).await?;
        Ok(Response::new(pb::DeleteWorkspaceResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn archive_workspace(
        &self,
        req: Request<pb::ArchiveWorkspaceRequest>,
    ) -> Result<Response<pb::ArchiveWorkspaceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let name = parse_name("name", &r.name)?;
        let ws = self
            .ctx
            .workspaces
            .set_archived(&p, &name, &r.etag, true)
            .await?;
        Ok(Response::new(pb::ArchiveWorkspaceResponse {
            workspace: Some(ws.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn unarchive_workspace(
        &self,
        req: Request<pb::UnarchiveWorkspaceRequest>,
    ) -> Result<Response<pb::UnarchiveWorkspaceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let name = parse_name("name", &r.name)?;
        let ws = self
            .ctx
            .workspaces
            .set_archived(&p, &name, &r.etag, false)
            .await?;
        Ok(Response::new(pb::UnarchiveWorkspaceResponse {
            workspace: Some(ws.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn register_resource(
        &self,
        req: Request<pb::RegisterResourceRequest>,
    ) -> Result<Response<pb::RegisterResourceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let (name, kind, id) = resource_ref(&r.workspace, &r.kind, &r.resource_id)?;
        let res = self.ctx.workspaces.register(&p, &name, kind, id).await?;
        Ok(Response::new(pb::RegisterResourceResponse {
            resource: Some(res.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn unregister_resource(
        &self,
        req: Request<pb::UnregisterResourceRequest>,
    ) -> Result<Response<pb::UnregisterResourceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let (name, kind, id) = resource_ref(&r.workspace, &r.kind, &r.resource_id)?;
        self.ctx
            .workspaces
            .unregister(&p, &name, &kind, &id)
            .await?;
        Ok(Response::new(pb::UnregisterResourceResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_resources(
        &self,
        req: Request<pb::ListResourcesRequest>,
    ) -> Result<Response<pb::ListResourcesResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let mut v = Violations::default();
        let name = convert::workspace_name(&mut v, "workspace", &r.workspace);
        let kind = if r.kind.is_empty() {
            Some(None)
        } else {
            v.check("kind", validate::resource_kind(&r.kind)).map(Some)
        };
        let fingerprint = serde_json::json!({
            "rpc": "ListResources",
            "workspace": r.workspace,
            "kind": r.kind,
        })
        .to_string();
        let page = page::parse(r.page_size, &r.page_token, &fingerprint, &mut v);
        v.finish()?;
        let (Some(name), Some(kind), Some(page)) = (name, kind, page) else {
            return Err(super::unvalidated());
        };
        let out = self
            .ctx
            .workspaces
            .list_resources(&p, &name, kind, page, &fingerprint)
            .await?;
        Ok(Response::new(pb::ListResourcesResponse {
            resources: out.items.into_iter().map(Into::into).collect(),
            next_page_token: out.next_page_token,
            total_size: total(out.total_size),
        }))
    }
}

fn parse_name(field: &str, s: &str) -> Result<String, Status> {
    let mut v = Violations::default();
    let name = convert::workspace_name(&mut v, field, s);
    v.finish()?;
    Ok(name.unwrap_or_default())
}

fn resource_ref(workspace: &str, kind: &str, id: &str) -> Result<(String, String, String), Status> {
    let mut v = Violations::default();
    let name = convert::workspace_name(&mut v, "workspace", workspace);
    let kind = v.check("kind", validate::resource_kind(kind));
    let id = v.check("resource_id", validate::resource_id(id));
    v.finish()?;
    match (name, kind, id) {
        (Some(n), Some(k), Some(i)) => Ok((n, k, i)),
        _ => Err(super::unvalidated()),
    }
}
