//! The core: validated input types, the access model, records and their rules, and the use
//! cases that decide and then write through `store`. Nothing here knows of tonic. A service
//! has one name in every layer: `workspaces`, `memberships`, `policies` and `events` in
//! `api`, `domain` and `store`; `gpu_requests` (GPU admission, served by PolicyService) in
//! `domain` and `store`.

pub mod access;
pub mod events;
pub mod gpu_requests;
pub mod guard;
pub mod memberships;
pub mod model;
pub mod page;
pub mod policies;
pub mod principals;
pub mod quota;
pub mod rules;
pub mod validate;
pub mod workspaces;
