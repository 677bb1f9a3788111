//! The core: validated input types, the access model, records and their rules, and the use
//! cases that decide and then write through `store`. Nothing here knows of tonic.

pub mod access;
pub mod members;
pub mod model;
pub mod page;
pub mod policy;
pub mod validate;
pub mod workspaces;
