//! gRPC server reflection, `grpc.reflection.v1` and `grpc.reflection.v1alpha`,
//! for the shop's services, answered by protogate's reflection service
//! ([`protogate::server::reflection`]) from the encoded `FileDescriptorSet`s
//! the backends are built from, every file sent as it was encoded.
//!
//! Not `tonic_reflection::server::Builder`: it decodes each file into
//! `prost_types::FileDescriptorProto` and encodes it again for every answer,
//! and prost keeps no unknown fields, so extension options such as
//! `google.api.http` and `google.api.field_behavior` would be missing from
//! its answers.

use anyhow::{Context as _, anyhow};
use prost::Message;
use prost_reflect::DescriptorPool;

pub(crate) use protogate::server::reflection::Reflection;

/// `google.protobuf.FileDescriptorSet` with its files left encoded.
#[derive(Clone, PartialEq, Message)]
struct EncodedFileSet {
    /// `repeated FileDescriptorProto file = 1`.
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// The reflection of `services` over the files of `sets`, encoded
/// `FileDescriptorSet`s (the first file of a name wins).
///
/// Errors: a set or file does not decode, or a service is defined in none
/// of the files.
pub(crate) fn reflection(sets: &[&[u8]], services: &[&str]) -> anyhow::Result<Reflection> {
    let mut pool = DescriptorPool::new();
    let mut files = Vec::new();
    for set in sets {
        let set = EncodedFileSet::decode(*set).context("decoding a FileDescriptorSet")?;
        files.extend(set.file);
    }
    // Imports first: a file is added once every file it imports is in.
    let mut pending: Vec<(String, Vec<u8>)> = Vec::new();
    for encoded in files {
        let proto = prost_types::FileDescriptorProto::decode(encoded.as_slice())
            .context("decoding a FileDescriptorProto")?;
        if pool.get_file_by_name(proto.name()).is_none()
            && !pending.iter().any(|(name, _)| name == proto.name())
        {
            pending.push((proto.name().to_owned(), encoded));
        }
    }
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|(_, encoded)| {
            let set = EncodedFileSet {
                file: vec![encoded.clone()],
            };
            pool.decode_file_descriptor_set(set.encode_to_vec().as_slice())
                .is_err()
        });
        if pending.len() == before {
            let names: Vec<&str> = pending.iter().map(|(n, _)| n.as_str()).collect();
            return Err(anyhow!("files whose imports are missing: {names:?}"));
        }
    }
    Reflection::for_services(&pool, services).map_err(|e| anyhow!(e))
}
