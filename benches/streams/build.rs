//! Generates the stream service's messages, client and server from
//! `stream.proto` (protox: there is no protoc at build time).

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let includes = [
        manifest_dir.join("protos"),
        manifest_dir.join("../../protos"),
    ];
    println!("cargo:rerun-if-changed={}", includes[0].display());
    let mut compiler = protox::Compiler::new(&includes)?;
    compiler.include_imports(true);
    compiler.open_files(["benchstream/v1/stream.proto"])?;
    let mut set = compiler.file_descriptor_set();
    set.file.retain(|f| f.package() == "benchstream.v1");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(set)?;
    Ok(())
}
