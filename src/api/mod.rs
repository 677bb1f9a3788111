//! The gRPC surface: one file per service, each method only decoding its request, calling the
//! domain and converting the answer. Shared request plumbing lives here.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::{
    domain::{
        access::Principal, memberships::Memberships, policies::Policies, principals::Principals,
        validate::Violations, workspaces::Workspaces,
    },
    error::{Error, echo},
};

pub mod convert;
pub mod memberships;
pub mod policies;
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
    /// Principals seen, so that members can be added by email.
    pub principals: Principals,
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

/// The error for a field that validation passed but did not produce, which cannot happen:
/// answered as INTERNAL rather than a panic on a request path.
pub(crate) fn unvalidated() -> Status {
    Error::Internal("a validated field is missing".into()).into()
}

/// Validates an update mask against `updatable`; `*` means all of them.
pub(crate) fn mask_paths(
    v: &mut Violations,
    mask: Option<&prost_types::FieldMask>,
    updatable: &[&str],
) -> Vec<String> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "at least one field must be provided");
        return Vec::new();
    }
    if paths.iter().any(|p| p == "*") {
        return updatable.iter().map(|s| s.to_string()).collect();
    }
    for p in paths {
        if !updatable.contains(&p.as_str()) {
            v.add(
                "update_mask",
                format!(
                    "\"{}\" is not an updatable field; updatable: {}",
                    echo(p),
                    updatable.join(", ")
                ),
            );
        }
    }
    paths.to_vec()
}
