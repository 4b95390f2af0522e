//! Generates the baseline's code from `bench.proto`: prost messages and a
//! tonic client (tonic-prost-build) plus serde impls in the proto3 JSON
//! mapping (pbjson-build). Compiled with protox, as there is no protoc.

use std::{env, error::Error, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let root = manifest_dir.join("../..");
    let includes = [root.join("tests/fixtures/protos"), root.join("protos")];
    println!("cargo:rerun-if-changed={}", includes[0].display());

    let mut compiler = protox::Compiler::new(&includes)?;
    compiler.include_imports(true);
    compiler.open_files(["bench/v1/bench.proto"])?;
    let mut set = compiler.file_descriptor_set();
    // Only bench.proto's own code: its one well-known type is `wkt::Timestamp`.
    set.file.retain(|f| f.package() == "bench.v1");

    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .extern_path(".google.protobuf.Timestamp", "crate::wkt::Timestamp")
        .compile_fds(set.clone())?;
    pbjson_build::Builder::new()
        .register_descriptors(&compiler.file_descriptor_set().encode_to_vec())?
        .out_dir(&out_dir)
        .build(&[".bench.v1"])?;
    Ok(())
}
