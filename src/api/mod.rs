//! The gRPC surface: one file per service, each method only decoding its request into the
//! use case's input (`requests`), calling the domain and converting the answer (`convert`).
//! What every service shares, the context and the caller, lives here.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::{
    domain::{
        access::Principal, events::Events, gpu_requests::GpuRequests, memberships::Memberships,
        policies::Policies, principals::Principals, workspaces::Workspaces,
    },
    error::Error,
};

pub mod convert;
pub mod events;
pub mod memberships;
pub mod policies;
pub mod requests;
pub mod workspaces;

/// What every service implementation shares.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The workspace use cases.
    pub workspaces: Workspaces,
    /// The membership use cases.
    pub memberships: Memberships,
    /// The policy use cases.
    pub policies: Policies,
    /// GPU admission, served by PolicyService.
    pub gpu_requests: GpuRequests,
    /// Principals seen, so that members can be added by email.
    pub principals: Principals,
    /// The change history.
    pub events: Events,
}

impl Ctx {
    /// The authenticated caller of `req`, remembered for lookups by email.
    pub async fn principal<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let p = req
            .extensions()
            .get::<Principal>()
            .cloned()
            // The interceptor runs before every method; a missing principal is a wiring bug.
            .ok_or_else(|| Error::Internal("request reached a handler unauthenticated".into()))?;
        self.principals.remember(&p).await?;
        Ok(p)
    }
}

/// Shared handle to the context.
pub type SharedCtx = Arc<Ctx>;
