//! PolicyService: decode and validate each request, call the domain, convert the answer.

use tonic::{Request, Response, Status};

use super::{SharedCtx, convert, mask_paths, unvalidated};
use crate::{
    domain::{model::PolicyRules, page, quota::GpuRequest, rules, validate::Violations},
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
        let r = req.into_inner();
        let mut v = Violations::default();
        let name = convert::workspace_name(&mut v, "workspace", &r.workspace);
        v.finish()?;
        let name = name.ok_or_else(unvalidated)?;
        let policy = self.ctx.policies.get(&p, &name).await?;
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
        let r = req.into_inner();
        let mut v = Violations::default();
        let fingerprint = serde_json::json!({ "rpc": "ListPolicies" }).to_string();
        let page = page::parse(r.page_size, &r.page_token, &fingerprint, &mut v);
        v.finish()?;
        let page = page.ok_or_else(unvalidated)?;
        let out = self.ctx.policies.list(&p, page, &fingerprint).await?;
        Ok(Response::new(pb::ListPoliciesResponse {
            policies: out.items.into_iter().map(Into::into).collect(),
            next_page_token: out.next_page_token,
            total_size: i32::try_from(out.total_size).unwrap_or(i32::MAX),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_policy(
        &self,
        req: Request<pb::UpdatePolicyRequest>,
    ) -> Result<Response<pb::UpdatePolicyResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let mut v = Violations::default();
        let given = r.policy.unwrap_or_default();
        let name = convert::workspace_name(&mut v, "policy.workspace", &given.workspace);
        let paths = mask_paths(&mut v, r.update_mask.as_ref(), &rules::UPDATABLE);
        let input = convert::policy_input(&given);
        // Validated here, at the edge, so that bad input is answered before anything else.
        rules::apply(
            &mut PolicyRules::default(),
            &input,
            &paths,
            "policy.",
            &mut v,
        );
        v.finish()?;
        let name = name.ok_or_else(unvalidated)?;
        let updated = self
            .ctx
            .policies
            .update(&p, &name, &r.etag, |rules, v| {
                rules::apply(rules, &input, &paths, "policy.", v)
            })
            .await?;
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
        let r = req.into_inner();
        let mut v = Violations::default();
        let name = convert::workspace_name(&mut v, "workspace", &r.workspace);
        for (field, n) in [
            ("gpu_count", r.gpu_count as i64),
            ("memory_bytes", r.memory_bytes),
            ("priority", r.priority as i64),
        ] {
            if n < 0 {
                v.add(field, "must not be negative");
            }
        }
        let exit_duration_us = match r.exit_duration.as_ref().map(convert::duration_us) {
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
        v.finish()?;
        let (Some(name), Some(exit_duration_us)) = (name, exit_duration_us) else {
            return Err(unvalidated());
        };
        let violations = self
            .ctx
            .policies
            .check_quota(
                &p,
                &name,
                &GpuRequest {
                    gpu_shape: r.gpu_shape,
                    gpu_count: r.gpu_count as i64,
                    memory_bytes: r.memory_bytes,
                    priority: r.priority as i64,
                    exit_duration_us,
                },
            )
            .await?;
        Ok(Response::new(pb::CheckGpuQuotaResponse {
            allowed: violations.is_empty(),
            violations: violations
                .into_iter()
                .map(|q| pb::QuotaViolation {
                    field: q.field,
                    description: q.description,
                })
                .collect(),
        }))
    }
}
