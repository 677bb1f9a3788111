//! PolicyService. Not built yet: every RPC answers UNIMPLEMENTED through the generated default
//! methods, so nothing claims otherwise.

use crate::pb::v1::policy_service_server::PolicyService;

/// The PolicyService implementation.
#[derive(Debug, Clone)]
pub struct PolicyApi;

#[tonic::async_trait]
impl PolicyService for PolicyApi {}
