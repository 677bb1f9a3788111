//! WorkspaceService: each method turns its request into the domain's input (see
//! `requests`), calls the use case and converts the answer (`convert`).

use tonic::{Request, Response, Status};

use super::{SharedCtx, convert};
use crate::{
    domain::workspaces::{
        CreateWorkspace, ListResources, ResourceRef, UpdateWorkspace, WorkspaceEtag,
        WorkspaceListing, WorkspaceRef,
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

#[tonic::async_trait]
impl WorkspaceService for WorkspaceApi {
    #[tracing::instrument(skip_all)]
    async fn create_workspace(
        &self,
        req: Request<pb::CreateWorkspaceRequest>,
    ) -> Result<Response<pb::CreateWorkspaceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = CreateWorkspace::try_from(req.into_inner())?;
        let ws = self.ctx.workspaces.create(&p, input).await?;
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
        let by = WorkspaceRef::try_from(req.into_inner())?;
        let ws = self.ctx.workspaces.get(&p, by).await?;
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
        let input = WorkspaceListing::try_from(req.into_inner())?;
        let out = self.ctx.workspaces.list(&p, input).await?;
        Ok(Response::new(pb::ListWorkspacesResponse {
            workspaces: out.items.into_iter().map(Into::into).collect(),
            next_page_token: out.next_page_token,
            total_size: convert::total(out.total_size),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_workspace(
        &self,
        req: Request<pb::UpdateWorkspaceRequest>,
    ) -> Result<Response<pb::UpdateWorkspaceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = UpdateWorkspace::try_from(req.into_inner())?;
        let ws = self.ctx.workspaces.update(&p, input).await?;
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
        let input = WorkspaceEtag::try_from(req.into_inner())?;
        self.ctx.workspaces.delete(&p, input).await?;
        Ok(Response::new(pb::DeleteWorkspaceResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn archive_workspace(
        &self,
        req: Request<pb::ArchiveWorkspaceRequest>,
    ) -> Result<Response<pb::ArchiveWorkspaceResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = WorkspaceEtag::try_from(req.into_inner())?;
        let ws = self.ctx.workspaces.set_archived(&p, input, true).await?;
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
        let input = WorkspaceEtag::try_from(req.into_inner())?;
        let ws = self.ctx.workspaces.set_archived(&p, input, false).await?;
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
        let input = ResourceRef::try_from(req.into_inner())?;
        let res = self.ctx.workspaces.register(&p, input).await?;
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
        let input = ResourceRef::try_from(req.into_inner())?;
        self.ctx.workspaces.unregister(&p, input).await?;
        Ok(Response::new(pb::UnregisterResourceResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_resources(
        &self,
        req: Request<pb::ListResourcesRequest>,
    ) -> Result<Response<pb::ListResourcesResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = ListResources::try_from(req.into_inner())?;
        let out = self.ctx.workspaces.list_resources(&p, input).await?;
        Ok(Response::new(pb::ListResourcesResponse {
            resources: out.items.into_iter().map(Into::into).collect(),
            next_page_token: out.next_page_token,
            total_size: convert::total(out.total_size),
        }))
    }
}
