//! Compiles the shop protos with protox (pure Rust; there is no protoc on the
//! build machines) and generates tonic servers and clients from the result.
//!
//! Besides the generated code, OUT_DIR receives `shop_descriptor_set.bin`:
//! the encoded `FileDescriptorSet` of the shop protos and everything they
//! import, with source comments. It is encoded by protox rather than from
//! `prost_types`, because `prost_types` drops extension options such as
//! `google.api.http`, which the gateway needs.

use std::{env, error::Error, fs, path::PathBuf};

/// The shop protos, relative to the include directory.
const PROTOS: &[&str] = &[
    "shop/user/v1/user.proto",
    "shop/user/v2/user.proto",
    "shop/order/v1/order.proto",
    "shop/inventory/v1/inventory.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let include = manifest_dir.join("../protos");
    // The shop protos import google/api/*.proto from the same tree, so a
    // change anywhere under it may change the generated code.
    println!("cargo:rerun-if-changed={}", include.display());

    // buf/validate/validate.proto, as the gateway bundles it.
    let validate = manifest_dir.join("../vendor/prost-protovalidate-types/proto");
    let mut compiler = protox::Compiler::new([&include, &validate])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;

    fs::write(
        out_dir.join("shop_descriptor_set.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // google.protobuf types map to prost_types by default (extern path).
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
