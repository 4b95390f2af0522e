//! The fast paths: protobuf wire ⇄ proto3 JSON with no message tree.
//!
//! Both directions compile per-message plans from the descriptors once at
//! startup and then stream: a reply's wire bytes are walked once while JSON
//! is appended to one buffer ([`reply`]); a request's JSON tokens are read
//! once while wire bytes are appended to one buffer, nested lengths patched
//! in place ([`request`]). The wire format itself (wire types, varints,
//! tags, lengths) is [`wire`], one for both. Whenever a fast path cannot be
//! sure to give the same answer as the `DynamicMessage` path (the
//! reference), it returns [`Fallback`] and the caller asks the reference,
//! which also words every error. The differential tests check the two
//! against each other.

pub mod reply;
pub mod request;
mod wire;

pub use reply::ReplyPlans;
pub use request::RequestPlans;

/// The fast path cannot produce the same result as the reference; use that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback;

type Result<T> = std::result::Result<T, Fallback>;

#[cfg(test)]
mod tests;
