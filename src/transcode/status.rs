//! `grpc-status-details-bin` rendered as the `details` JSON array.
//!
//! The bytes are a `google.rpc.Status`; each `Any` detail is resolved
//! through the descriptor pool (the bundled `google/rpc` types are always
//! there) and written with its `@type`. A detail whose type the pool does not
//! know is written as `{"@type", "value"}` with the raw bytes in base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::value::RawValue;

use crate::config::JsonOptions;

/// The `details` array from encoded `google.rpc.Status` bytes; `None` when they do not decode.
///
/// `google.rpc.DebugInfo` (stack traces, internal detail) is dropped unless
/// `keep_debug_info` is set: an edge gateway should not hand it to clients.
pub fn details(
    pool: &DescriptorPool,
    status_bin: &[u8],
    json: &JsonOptions,
    keep_debug_info: bool,
) -> Option<Box<RawValue>> {
    let status = RpcStatus::decode(status_bin).ok()?;
    let options = super::response::serialize_options(json);
    let any_desc = pool.get_message_by_name("google.protobuf.Any")?;
    let mut out = Vec::with_capacity(status_bin.len() * 2);
    out.push(b'[');
    let shown = status
        .details
        .iter()
        .filter(|d| keep_debug_info || !d.type_url.ends_with("/google.rpc.DebugInfo"));
    for (i, detail) in shown.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let type_name = detail.type_url.rsplit('/').next().unwrap_or_default();
        let known = pool.get_message_by_name(type_name).is_some();
        let written = known
            && DynamicMessage::decode(any_desc.clone(), detail.encode_to_vec().as_slice())
                .ok()
                .and_then(|any| {
                    let mut buf = Vec::new();
                    any.serialize_with_options(&mut serde_json::Serializer::new(&mut buf), &options)
                        .ok()
                        .map(|()| buf)
                })
                .map(|buf| out.extend_from_slice(&buf))
                .is_some();
        if !written {
            let raw = serde_json::json!({"@type": detail.type_url, "value": STANDARD.encode(&detail.value)});
            out.extend_from_slice(raw.to_string().as_bytes());
        }
    }
    out.push(b']');
    RawValue::from_string(String::from_utf8(out).ok()?).ok()
}

/// The delay of a `google.rpc.RetryInfo` detail, in whole seconds rounded
/// up, for a `Retry-After` header; `None` without one.
pub fn retry_after(status_bin: &[u8]) -> Option<u64> {
    /// `google.rpc.RetryInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        retry_delay: Option<prost_types::Duration>,
    }
    let status = RpcStatus::decode(status_bin).ok()?;
    let detail = status
        .details
        .iter()
        .find(|d| d.type_url.rsplit('/').next() == Some("google.rpc.RetryInfo"))?;
    let delay = RetryInfo::decode(detail.value.as_slice())
        .ok()?
        .retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    Some(seconds + u64::from(delay.nanos > 0))
}

/// `google.rpc.Status` as `grpc-status-details-bin` carries it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Error details, each an `Any`.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}
