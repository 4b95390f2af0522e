//! The protos compiled into the binary: `google/api`, `google/rpc`, the
//! validation rules (`buf/validate`, protoc-gen-validate's `validate`) and
//! grpc-gateway's OpenAPI options (`protoc-gen-openapiv2/options`).
//!
//! Users' protos can import `google/api/annotations.proto` or
//! `buf/validate/validate.proto` without shipping them, and error details
//! (`google.rpc.BadRequest`, ...) always decode, even when the configured
//! descriptors do not mention them.

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
    (
        "buf/validate/validate.proto",
        include_str!("../../vendor/prost-protovalidate-types/proto/buf/validate/validate.proto"),
    ),
    (
        "validate/validate.proto",
        include_str!("../../protos/validate/validate.proto"),
    ),
    (
        "protoc-gen-openapiv2/options/annotations.proto",
        include_str!("../../protos/protoc-gen-openapiv2/options/annotations.proto"),
    ),
    (
        "protoc-gen-openapiv2/options/openapiv2.proto",
        include_str!("../../protos/protoc-gen-openapiv2/options/openapiv2.proto"),
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
