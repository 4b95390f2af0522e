//! Descriptors at run time: `.proto` files compiled in-process and binary
//! `FileDescriptorSet`s, merged into one [`DescriptorPool`].
//!
//! Everything is compiled once, at startup, with protox (no `protoc`). The
//! bundled `google/api` and `google/rpc` files ([`embedded`]) are always in the
//! pool. Turning the pool into routes is `http_rule`'s job.

pub mod cache;
pub mod embedded;
pub mod reflection;

use std::path::Path;

use anyhow::{Context, anyhow};
use prost::Message;
use prost_reflect::DescriptorPool;
use protox::Compiler;
use protox::file::{
    ChainFileResolver, DescriptorSetFileResolver, GoogleFileResolver, IncludeFileResolver,
};

use crate::config::DescriptorSources;

/// Files always compiled into the pool so error details and annotations resolve.
const ALWAYS: &[&str] = &[
    "google/api/annotations.proto",
    "google/api/httpbody.proto",
    "google/api/field_behavior.proto",
    "google/rpc/status.proto",
    "google/rpc/code.proto",
    "google/rpc/error_details.proto",
];

/// A protox error with where it is: `file:line:column: message`, from the
/// first label of its diagnostic (lines and columns from 1).
fn located(error: &protox::Error) -> String {
    use miette::Diagnostic;
    let at = error
        .labels()
        .and_then(|mut labels| labels.next())
        .zip(error.source_code())
        .and_then(|(label, source)| source.read_span(label.inner(), 0, 0).ok())
        .map(|span| (span.line() + 1, span.column() + 1));
    match (error.file(), at) {
        (Some(file), Some((line, column))) => format!("{file}:{line}:{column}: {error}"),
        (Some(file), None) => format!("{file}: {error}"),
        _ => error.to_string(),
    }
}

/// Compiles the configured protos and descriptor sets into one pool.
///
/// Imports resolve from the include directories first, then from the
/// descriptor sets, then from the bundled google files and the protobuf
/// well-known types.
///
/// # Errors
/// A missing or unreadable file, a syntax or type error in a proto (with its
/// file and line), or a descriptor set that does not decode.
pub fn load(sources: &DescriptorSources) -> anyhow::Result<DescriptorPool> {
    let mut resolver = ChainFileResolver::new();
    for dir in &sources.include {
        if !dir.is_dir() {
            return Err(anyhow!(
                "include directory {} does not exist",
                dir.display()
            ));
        }
        resolver.add(IncludeFileResolver::new(dir.clone()));
    }
    let mut set_files = Vec::new();
    for path in &sources.descriptor_sets {
        let (names, set) = read_descriptor_set(path)?;
        set_files.extend(names);
        resolver.add(set);
    }
    resolver.add(embedded::EmbeddedFileResolver);
    resolver.add(GoogleFileResolver::new());

    let mut compiler = Compiler::with_file_resolver(resolver);
    compiler.include_source_info(true);
    for proto in &sources.protos {
        compiler
            .open_file(proto)
            .map_err(|e| anyhow!("{}", located(&e)))
            .with_context(|| format!("cannot compile {}", proto.display()))?;
    }
    for name in set_files
        .iter()
        .map(String::as_str)
        .chain(ALWAYS.iter().copied())
    {
        compiler
            .open_file(name)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("cannot load {name}"))?;
    }
    Ok(compiler.descriptor_pool())
}

/// The bundled files `names` (and what they import) as a pool of their own.
///
/// # Errors
/// A name that is not bundled.
pub fn bundled_pool(names: &[&str]) -> anyhow::Result<DescriptorPool> {
    let mut resolver = ChainFileResolver::new();
    resolver.add(embedded::EmbeddedFileResolver);
    resolver.add(GoogleFileResolver::new());
    let mut compiler = Compiler::with_file_resolver(resolver);
    for name in names {
        compiler
            .open_file(name)
            .map_err(|e| anyhow!("cannot load bundled {name}: {e}"))?;
    }
    Ok(compiler.descriptor_pool())
}

fn read_descriptor_set(path: &Path) -> anyhow::Result<(Vec<String>, DescriptorSetFileResolver)> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read descriptor set {}", path.display()))?;
    let names = prost_types::FileDescriptorSet::decode(bytes.as_slice())
        .with_context(|| format!("{} is not a FileDescriptorSet", path.display()))?
        .file
        .into_iter()
        .map(|f| f.name().to_owned())
        .collect();
    // decode() keeps extension options (google.api.http) that prost_types would drop.
    let set = DescriptorSetFileResolver::decode(bytes.as_slice())
        .with_context(|| format!("{} is not a FileDescriptorSet", path.display()))?;
    Ok((names, set))
}

/// Compiles one in-memory proto file (plus the bundled files) for unit tests.
#[cfg(test)]
pub fn pool_from_source(source: &str) -> DescriptorPool {
    pool_from_files(&[("test.proto", source)])
}

/// Compiles in-memory proto files, by name, for unit tests.
#[cfg(test)]
pub fn pool_from_files(files: &[(&str, &str)]) -> DescriptorPool {
    struct InMemory(Vec<(String, String)>);
    impl protox::file::FileResolver for InMemory {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            match self.0.iter().find(|(n, _)| n == name) {
                Some((n, source)) => protox::file::File::from_source(n, source),
                None => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let owned = files
        .iter()
        .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
        .collect();
    let mut resolver = ChainFileResolver::new();
    resolver.add(InMemory(owned));
    resolver.add(embedded::EmbeddedFileResolver);
    resolver.add(GoogleFileResolver::new());
    let mut compiler = Compiler::with_file_resolver(resolver);
    compiler.include_source_info(true);
    for (name, _) in files {
        compiler.open_file(name).unwrap_or_else(|e| panic!("{e}"));
    }
    for name in ALWAYS {
        compiler.open_file(name).unwrap();
    }
    compiler.descriptor_pool()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_files_are_always_loaded() {
        let dir = std::env::temp_dir().join(format!("protogate-desc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.proto"),
            "syntax = \"proto3\"; package a; import \"google/api/annotations.proto\";\n\
             message M { string s = 1; }\n\
             service S { rpc Get(M) returns (M) { option (google.api.http) = { get: \"/m/{s}\" }; } }\n",
        )
        .unwrap();
        let pool = load(&DescriptorSources {
            include: vec![dir.clone()],
            protos: vec!["a.proto".into()],
            descriptor_sets: vec![],
        })
        .unwrap();
        assert!(pool.get_service_by_name("a.S").is_some());
        assert!(pool.get_message_by_name("google.rpc.BadRequest").is_some());
        assert!(pool.get_extension_by_name("google.api.http").is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("protogate-desc-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("bad.proto"),
            "syntax = \"proto3\";\nmessage M { string s = ; }\n",
        )
        .unwrap();
        let err = load(&DescriptorSources {
            include: vec![dir.clone()],
            protos: vec!["bad.proto".into()],
            descriptor_sets: vec![],
        })
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("bad.proto"), "{msg}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
