//! Generates the gRPC code and the reflection descriptor set from `proto/`, with a vendored
//! protoc so that no system protoc is needed.

use std::{error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let protos = [
        "proto/workspaced/v1/common.proto",
        "proto/workspaced/v1/workspace.proto",
        "proto/workspaced/v1/membership.proto",
        "proto/workspaced/v1/policy.proto",
        "proto/workspaced/v1/event.proto",
    ];
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // The well-known types' .proto files ship with the vendored protoc.
    let wkt_include = protoc_bin_vendored::include_path()?;

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("workspaced_descriptor.bin"))
        // Undecodable requests are bad input (INVALID_ARGUMENT), not INTERNAL.
        .codec_path("crate::codec::WorkspacedCodec")
        .compile_with_config(
            config,
            &protos.map(PathBuf::from),
            &[PathBuf::from("proto"), wkt_include],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
