//! protogate's one change to this crate: the etcd protos are compiled by
//! protox (pure Rust) instead of `protoc`, so building needs no protobuf
//! compiler on the machine. tonic-prost-build then generates the same code
//! from the descriptor set protox made.

#[cfg(feature = "build-server")]
fn should_build_server() -> bool {
    true
}

#[cfg(not(feature = "build-server"))]
fn should_build_server() -> bool {
    false
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "proto";
    println!("cargo:rerun-if-changed={proto_root}");

    let files = [
        "etcd/api/authpb/auth.proto",
        "etcd/api/etcdserverpb/rpc.proto",
        "etcd/api/mvccpb/kv.proto",
        "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
        "etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    ];
    let set = protox::compile(files, [proto_root])?;
    tonic_prost_build::configure()
        .build_server(should_build_server())
        .compile_fds(set)?;
    Ok(())
}
