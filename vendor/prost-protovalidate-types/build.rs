//! protogate's one change to this crate: `validate.proto` is compiled by
//! protox (pure Rust) instead of `protoc`, so building needs no protobuf
//! compiler on the machine. prost-build then generates the same code from
//! the descriptor set protox wrote.
use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "proto";
    let files = &["buf/validate/validate.proto"];

    for f in files {
        println!("cargo:rerun-if-changed={proto_dir}/{f}");
    }

    let base_path = PathBuf::from(
        env::var("OUT_DIR")
            .map_err(|err| format!("missing OUT_DIR environment variable: {err}"))?,
    );
    let descriptor_path = base_path.join("file_descriptor_set.bin");

    let set = protox::compile(files, [proto_dir])?;
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&set))?;
    let mut config = prost_build::Config::new();
    config.skip_protoc_run();

    #[cfg(feature = "reflect")]
    prost_reflect_build::Builder::new()
        .file_descriptor_set_path(&descriptor_path)
        .descriptor_pool("DESCRIPTOR_POOL")
        .compile_protos_with_config(config, files, &[proto_dir])?;

    #[cfg(not(feature = "reflect"))]
    config
        .file_descriptor_set_path(&descriptor_path)
        .compile_protos(files, &[proto_dir])?;

    Ok(())
}
