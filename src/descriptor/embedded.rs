//! The `google/api` and `google/rpc` protos compiled into the binary.
//!
//! Users' protos can import `google/api/annotations.proto` without shipping
//! it, and error details (`google.rpc.BadRequest`, ...) always decode, even
//! when the configured descriptors do not mention them.

use protox::file::{File, FileResolver};

/// Bundled files, by import name.
pub const FILES: &[(&str, &str)] = &[
    (
        "google/api/annotations.proto",
        include_str!("../../protos/google/api/annotations.proto"),
    ),
    (
        "google/api/http.proto",
        include_str!("../../protos/google/api/http.proto"),
    ),
    (
        "google/api/httpbody.proto",
        include_str!("../../protos/google/api/httpbody.proto"),
    ),
    (
        "google/api/field_behavior.proto",
        include_str!("../../protos/google/api/field_behavior.proto"),
    ),
    (
        "google/rpc/status.proto",
        include_str!("../../protos/google/rpc/status.proto"),
    ),
    (
        "google/rpc/code.proto",
        include_str!("../../protos/google/rpc/code.proto"),
    ),
    (
        "google/rpc/error_details.proto",
        include_str!("../../protos/google/rpc/error_details.proto"),
    ),
];

/// Resolves imports of the bundled files.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmbeddedFileResolver;

impl FileResolver for EmbeddedFileResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match FILES.iter().find(|(n, _)| *n == name) {
            Some((n, source)) => File::from_source(n, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}
