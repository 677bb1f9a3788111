//! MembershipService: each method turns its request into the domain's input (see
//! `requests`), calls the use case and converts the answer (`convert`).

use tonic::{Request, Response, Status};

use super::{SharedCtx, convert, requests};
use crate::{
    domain::{
        access::Role,
        memberships::{AddMember, CheckAccess, ListMembers, MemberRef, RemoveMember, UpdateMember},
    },
    pb::v1::{self as pb, membership_service_server::MembershipService},
};

/// The MembershipService implementation.
#[derive(Debug, Clone)]
pub struct MembershipApi {
    ctx: SharedCtx,
}

impl MembershipApi {
    /// A service over `ctx`.
    pub fn new(ctx: SharedCtx) -> Self {
        MembershipApi { ctx }
    }
}

#[tonic::async_trait]
impl MembershipService for MembershipApi {
    #[tracing::instrument(skip_all)]
    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = AddMember::try_from(req.into_inner())?;
        let member = self.ctx.memberships.add(&p, input).await?;
        Ok(Response::new(pb::AddMemberResponse {
            member: Some(member.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_member(
        &self,
        req: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = MemberRef::try_from(req.into_inner())?;
        let member = self.ctx.memberships.get(&p, input).await?;
        Ok(Response::new(pb::GetMemberResponse {
            member: Some(member.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_member(
        &self,
        req: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::UpdateMemberResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = UpdateMember::try_from(req.into_inner())?;
        let member = self.ctx.memberships.update(&p, input).await?;
        Ok(Response::new(pb::UpdateMemberResponse {
            member: Some(member.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = RemoveMember::try_from(req.into_inner())?;
        let removed = self.ctx.memberships.remove(&p, input).await?;
        Ok(Response::new(pb::RemoveMemberResponse {
            removed_count: i32::try_from(removed).unwrap_or(i32::MAX),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = ListMembers::try_from(req.into_inner())?;
        let out = self.ctx.memberships.list(&p, input).await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: out.items.into_iter().map(Into::into).collect(),
            next_page_token: out.next_page_token,
            total_size: convert::total(out.total_size),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn check_access(
        &self,
        req: Request<pb::CheckAccessRequest>,
    ) -> Result<Response<pb::CheckAccessResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = CheckAccess::try_from(req.into_inner())?;
        let decision = self.ctx.memberships.check(&p, input).await?;
        Ok(Response::new(decision.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn batch_check_access(
        &self,
        req: Request<pb::BatchCheckAccessRequest>,
    ) -> Result<Response<pb::BatchCheckAccessResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let checks = requests::batch_checks(req.into_inner())?;
        let decisions = self.ctx.memberships.check_batch(&p, checks).await?;
        Ok(Response::new(pb::BatchCheckAccessResponse {
            results: decisions.into_iter().map(Into::into).collect(),
        }))
    }
}

impl From<Role> for pb::Role {
    fn from(r: Role) -> Self {
        pb::Role::from(Some(r))
    }
}
