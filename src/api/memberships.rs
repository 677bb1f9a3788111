//! MembershipService: decode and validate each request, call the domain, convert the answer.

use tonic::{Request, Response, Status};

use super::{SharedCtx, convert, unvalidated};
use crate::{
    domain::{
        access::{Permission, Role},
        memberships::Who,
        page,
        validate::{self, Violations},
    },
    error::echo,
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

#[tonic::async_trait]
impl MembershipService for MembershipApi {
    #[tracing::instrument(skip_all)]
    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let mut v = Violations::default();
        let name = convert::workspace_name(&mut v, "workspace", &r.workspace);
        let who = who(&mut v, &r.subject, &r.email);
        let role = v.check("role", convert::role(r.role));
        v.finish()?;
        let (Some(name), Some(who), Some(role)) = (name, who, role) else {
            return Err(unvalidated());
        };
        let member = self.ctx.memberships.add(&p, &name, who, role).await?;
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
        let r = req.into_inner();
        let mut v = Violations::default();
        let name = convert::workspace_name(&mut v, "workspace", &r.workspace);
        let subject = v.check("subject", validate::subject(&r.subject));
        v.finish()?;
        let (Some(name), Some(subject)) = (name, subject) else {
            return Err(unvalidated());
        };
        let member = self.ctx.memberships.get(&p, &name, &subject).await?;
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
        let r = req.into_inner();
        let mut v = Violations::default();
        let name = convert::workspace_name(&mut v, "workspace", &r.workspace);
        let subject = v.check("subject", validate::subject(&r.subject));
        let role = v.check("role", convert::role(r.role));
        v.finish()?;
        let (Some(name), Some(subject), Some(role)) = (name, subject, role) else {
            return Err(unvalidated());
        };
        let member = self
            .ctx
            .memberships
            .update(&p, &name, &subject, role, &r.etag)
            .await?;
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
        let r = req.into_inner();
        let mut v = Violations::default();
        let name = convert::workspace_name(&mut v, "workspace", &r.workspace);
        let who = who(&mut v, &r.subject, &r.email);
        v.finish()?;
        let (Some(name), Some(who)) = (name, who) else {
            return Err(unvalidated());
        };
        let removed = self.ctx.memberships.remove(&p, &name, who).await?;
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
        let r = req.into_inner();
        let mut v = Violations::default();
        let name = convert::workspace_name(&mut v, "workspace", &r.workspace);
        let role = if r.role == pb::Role::Unspecified as i32 {
            Some(None)
        } else {
            v.check("role", convert::role(r.role)).map(Some)
        };
        let fingerprint = serde_json::json!({
            "rpc": "ListMembers",
            "workspace": r.workspace,
            "role": r.role,
        })
        .to_string();
        let page = page::parse(r.page_size, &r.page_token, &fingerprint, &mut v);
        v.finish()?;
        let (Some(name), Some(role), Some(page)) = (name, role, page) else {
            return Err(unvalidated());
        };
        let out = self
            .ctx
            .memberships
            .list(&p, &name, role, page, &fingerprint)
            .await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: out.items.into_iter().map(Into::into).collect(),
            next_page_token: out.next_page_token,
            total_size: i32::try_from(out.total_size).unwrap_or(i32::MAX),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn check_access(
        &self,
        req: Request<pb::CheckAccessRequest>,
    ) -> Result<Response<pb::CheckAccessResponse>, Status> {
        let p = self.ctx.principal(&req).await?;
        let r = req.into_inner();
        let mut v = Violations::default();
        let name = convert::workspace_name(&mut v, "workspace", &r.workspace);
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
        let subject = if r.subject.is_empty() {
            Some(None)
        } else {
            v.check("subject", validate::subject(&r.subject)).map(Some)
        };
        v.finish()?;
        let (Some(name), Some(permission), Some(subject)) = (name, permission, subject) else {
            return Err(unvalidated());
        };
        let (allowed, role) = self
            .ctx
            .memberships
            .check(
                &p,
                &name,
                permission,
                subject.as_deref(),
                r.fully_consistent,
            )
            .await?;
        Ok(Response::new(pb::CheckAccessResponse {
            allowed,
            role: pb::Role::from(role) as i32,
        }))
    }
}

impl From<Role> for pb::Role {
    fn from(r: Role) -> Self {
        pb::Role::from(Some(r))
    }
}
