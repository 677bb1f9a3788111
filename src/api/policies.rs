//! PolicyService: each method turns its request into the domain's input (see `requests`),
//! calls the use case and converts the answer (`convert`).

use tonic::{Request, Response, Status};

use super::{SharedCtx, convert, requests};
use crate::{
    domain::{
        gpu_requests::{AdmitGpuRequest, GpuRequestRef, ListGpuRequests, RenewGpuRequest},
        policies::{CheckGpuQuota, ListPolicies, UpdatePolicy},
    },
    pb::v1::{self as pb, policy_service_server::PolicyService},
};

/// The PolicyService implementation.
#[derive(Debug, Clone)]
pub struct PolicyApi {
    ctx: SharedCtx,
}

impl PolicyApi {
    /// A service over `ctx`.
    pub fn new(ctx: SharedCtx) -> Self {
        PolicyApi { ctx }
    }
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    #[tracing::instrument(skip_all)]
    async fn get_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::GetPolicyResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let name = requests::get_policy(req.into_inner())?;
        let policy = self.ctx.policies.get(&p, name).await?;
        Ok(Response::new(pb::GetPolicyResponse {
            policy: Some(policy.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_policies(
        &self,
        req: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = ListPolicies::try_from(req.into_inner())?;
        let out = self.ctx.policies.list(&p, input).await?;
        Ok(Response::new(pb::ListPoliciesResponse {
            policies: out.items.into_iter().map(Into::into).collect(),
            next_page_token: out.next_page_token,
            total_size: convert::total(out.total_size),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_policy(
        &self,
        req: Request<pb::UpdatePolicyRequest>,
    ) -> Result<Response<pb::UpdatePolicyResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = UpdatePolicy::try_from(req.into_inner())?;
        let updated = self.ctx.policies.update(&p, input).await?;
        Ok(Response::new(pb::UpdatePolicyResponse {
            policy: Some(updated.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn check_gpu_quota(
        &self,
        req: Request<pb::CheckGpuQuotaRequest>,
    ) -> Result<Response<pb::CheckGpuQuotaResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = CheckGpuQuota::try_from(req.into_inner())?;
        let violations = self.ctx.policies.check_quota(&p, input).await?;
        Ok(Response::new(pb::CheckGpuQuotaResponse {
            allowed: violations.is_empty(),
            violations: violations.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn admit_gpu_request(
        &self,
        req: Request<pb::AdmitGpuRequestRequest>,
    ) -> Result<Response<pb::AdmitGpuRequestResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = AdmitGpuRequest::try_from(req.into_inner())?;
        let admission = self.ctx.gpu_requests.admit(&p, input).await?;
        Ok(Response::new(admission.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn renew_gpu_request(
        &self,
        req: Request<pb::RenewGpuRequestRequest>,
    ) -> Result<Response<pb::RenewGpuRequestResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = RenewGpuRequest::try_from(req.into_inner())?;
        let renewed = self.ctx.gpu_requests.renew(&p, input).await?;
        Ok(Response::new(pb::RenewGpuRequestResponse {
            gpu_request: Some(renewed.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn release_gpu_request(
        &self,
        req: Request<pb::ReleaseGpuRequestRequest>,
    ) -> Result<Response<pb::ReleaseGpuRequestResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = GpuRequestRef::try_from(req.into_inner())?;
        self.ctx.gpu_requests.release(&p, input).await?;
        Ok(Response::new(pb::ReleaseGpuRequestResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_gpu_requests(
        &self,
        req: Request<pb::ListGpuRequestsRequest>,
    ) -> Result<Response<pb::ListGpuRequestsResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let input = ListGpuRequests::try_from(req.into_inner())?;
        let out = self.ctx.gpu_requests.list(&p, input).await?;
        Ok(Response::new(pb::ListGpuRequestsResponse {
            gpu_requests: out.items.into_iter().map(Into::into).collect(),
            next_page_token: out.next_page_token,
            total_size: convert::total(out.total_size),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_gpu_usage(
        &self,
        req: Request<pb::GetGpuUsageRequest>,
    ) -> Result<Response<pb::GetGpuUsageResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let name = requests::get_gpu_usage(req.into_inner())?;
        let usage = self.ctx.gpu_requests.usage(&p, name).await?;
        Ok(Response::new(pb::GetGpuUsageResponse {
            usage: Some(usage.into()),
        }))
    }
}
