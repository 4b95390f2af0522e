//! JSON ⇄ protobuf for one route: the gateway's message work, behind one narrow boundary.
//!
//! In: a matched route, its captured path values, the raw query string and
//! the body bytes; out: the encoded request message ([`request`]). In: the
//! encoded reply; out: JSON bytes ([`response`]). Nothing here knows about
//! HTTP types or sockets, so a faster codec can replace the internals and be
//! checked against this one.

mod query;
mod request;
mod response;
pub mod status;
pub mod value;

pub use request::request;
pub use response::response;

/// Why a request could not be transcoded, or a reply could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// A query parameter names no field.
    #[error("unknown query parameter {param:?}")]
    UnknownQueryParameter { param: String },
    /// A query parameter names a field the path or body already binds.
    #[error("query parameter {param:?} sets a field already bound by the {by}")]
    BoundQueryParameter { param: String, by: &'static str },
    /// A query parameter names a field that cannot come from the query.
    #[error("query parameter {param:?}: {reason}")]
    UnsupportedQueryParameter { param: String, reason: String },
    /// A query parameter is not valid percent-encoded UTF-8.
    #[error("query parameter {param:?} is not valid percent-encoded UTF-8")]
    QueryEncoding { param: String },
    /// A query parameter's value does not parse.
    #[error("invalid value {value:?} for query parameter {param:?}: {reason}")]
    InvalidQueryValue {
        param: String,
        value: String,
        reason: String,
    },
    /// A path variable's value does not parse.
    #[error("invalid value {value:?} for path variable {field:?}: {reason}")]
    InvalidPathValue {
        field: String,
        value: String,
        reason: String,
    },
    /// The JSON body does not parse into the message.
    #[error("invalid JSON body: {reason}")]
    InvalidBody {
        /// The field at fault, when known (dotted JSON path).
        field: Option<String>,
        reason: String,
    },
    /// A body sent to a route that takes none.
    #[error("this method does not take a request body")]
    UnexpectedBody,
    /// The backend's reply does not decode as the declared output type.
    #[error("cannot decode the {message} reply: {reason}")]
    BadReply { message: String, reason: String },
    /// A state route building rules out.
    #[error("{0}")]
    Internal(String),
}

impl TranscodeError {
    /// Whether the gateway or backend is at fault rather than the client.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::BadReply { .. } | Self::Internal(_))
    }

    /// The error without the request values it quotes, for logs.
    pub fn redacted(&self) -> String {
        match self {
            Self::InvalidQueryValue { param, reason, .. } => {
                format!("invalid value for query parameter {param:?}: {reason}")
            }
            Self::InvalidPathValue { field, reason, .. } => {
                format!("invalid value for path variable {field:?}: {reason}")
            }
            // serde's messages quote the offending input.
            Self::InvalidBody { field: Some(f), .. } => format!("invalid JSON body at {f:?}"),
            Self::InvalidBody { field: None, .. } => "invalid JSON body".to_owned(),
            other => other.to_string(),
        }
    }

    /// The request field the error is about, for `google.rpc.BadRequest` details.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::UnknownQueryParameter { param }
            | Self::QueryEncoding { param }
            | Self::BoundQueryParameter { param, .. }
            | Self::UnsupportedQueryParameter { param, .. }
            | Self::InvalidQueryValue { param, .. } => Some(param),
            Self::InvalidPathValue { field, .. } => Some(field),
            Self::InvalidBody { field, .. } => field.as_deref(),
            Self::UnexpectedBody | Self::BadReply { .. } | Self::Internal(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
