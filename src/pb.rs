//! The generated protobuf and gRPC code of `proto/workspaced/v1`, and its descriptor set for
//! server reflection.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// Package `workspaced.v1`.
pub mod v1 {
    tonic::include_proto!("workspaced.v1");
}

/// The encoded `FileDescriptorSet` of every workspaced proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("workspaced_descriptor");
