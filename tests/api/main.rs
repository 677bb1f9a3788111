//! Integration tests: the real server in-process on an ephemeral port, called through the
//! generated tonic clients. SQLite by default; PostgreSQL when
//! `WORKSPACED_TEST_DATABASE_URL` is set.
//!
//! `TEST_LOG=1 cargo test --test api NAME -- --nocapture` shows the servers' logs
//! (`RUST_LOG` filters them); `common/rpc.rs` has one helper per RPC.

// Helpers are `pub` for the test modules; this binary exports nothing. Helpers panic on
// failure like the tests that call them.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod common;
mod events;
mod gpu;
mod groups;
mod hostile;
mod limits;
mod lists;
mod matrix;
mod members;
mod newcomer;
mod operations;
mod outage;
mod policies;
mod queries;
mod races;
mod resources;
mod storage;
mod tls;
mod workspaces;
