//! MembershipService. Not built yet: every RPC answers UNIMPLEMENTED through the generated
//! default methods, so nothing claims otherwise.

use crate::pb::v1::membership_service_server::MembershipService;

/// The MembershipService implementation.
#[derive(Debug, Clone)]
pub struct MembershipApi;

#[tonic::async_trait]
impl MembershipService for MembershipApi {}
