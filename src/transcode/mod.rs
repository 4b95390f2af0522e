//! JSON ⇄ protobuf for one route: the gateway's message work, behind one narrow boundary.
//!
//! In: a matched route, its captured path values, the raw query string and
//! the body bytes; out: the encoded request message ([`request`]). In: the
//! encoded reply; out: JSON bytes ([`response`]). Nothing here knows about
//! HTTP types or sockets, so a faster codec can replace the internals and be
//! checked against this one.

pub mod fast;
mod query;
mod request;
pub mod response;
pub mod status;
pub mod value;

pub use request::request;
pub use response::response;

use crate::config::JsonOptions;
use crate::http_rule::{Route, RouteTable};

/// The reply codec of a loaded gateway: the fast wire→JSON path where a
/// route's reply type has a plan, the `DynamicMessage` path otherwise and
/// whenever the fast path gives up.
#[derive(Debug)]
pub struct Codec {
    json: JsonOptions,
    plans: Option<fast::Plans>,
    /// Plan index per route index.
    by_route: Vec<Option<usize>>,
}

impl Codec {
    /// Compiles plans for every route whose whole reply message is the body.
    pub fn build(routes: &RouteTable, json: &JsonOptions) -> Self {
        let fast_routes = || routes.routes().iter().filter(|r| r.response_body.is_none());
        let outputs: Vec<_> = fast_routes().map(|r| r.method.output()).collect();
        let plans = fast::Plans::build(outputs.iter(), json);
        let by_route = routes
            .routes()
            .iter()
            .map(|r| {
                let plans = plans.as_ref()?;
                r.response_body
                    .is_none()
                    .then(|| plans.index_of(&r.method.output()))?
            })
            .collect();
        Self {
            json: *json,
            plans,
            by_route,
        }
    }

    /// Renders a reply of `route` as JSON.
    ///
    /// # Errors
    /// [`TranscodeError::BadReply`] when the bytes are not a valid reply.
    pub fn response(&self, route: &Route, reply: &[u8]) -> Result<Vec<u8>, TranscodeError> {
        if let Some(plans) = &self.plans
            && let Some(Some(index)) = self.by_route.get(route.index)
        {
            let mut out = Vec::with_capacity(reply.len() * 2 + 16);
            if plans.write(*index, reply, &mut out).is_ok() {
                return Ok(out);
            }
        }
        response(route, reply, &self.json)
    }
}

/// Why a request could not be transcoded, or a reply could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// A query parameter names no field.
    #[error("unknown query parameter {param:?}")]
    UnknownQueryParameter {
        /// The parameter name as sent.
        param: String,
    },
    /// A query parameter names a field the path or body already binds.
    #[error("query parameter {param:?} sets a field already bound by the {by}")]
    BoundQueryParameter {
        /// The parameter name as sent.
        param: String,
        /// What already binds the field: "path" or "body".
        by: &'static str,
    },
    /// A query parameter names a field that cannot come from the query.
    #[error("query parameter {param:?}: {reason}")]
    UnsupportedQueryParameter {
        /// The parameter name as sent.
        param: String,
        /// Why the field cannot come from the query.
        reason: String,
    },
    /// A query parameter is not valid percent-encoded UTF-8.
    #[error("query parameter {param:?} is not valid percent-encoded UTF-8")]
    QueryEncoding {
        /// The parameter name as sent.
        param: String,
    },
    /// A query parameter's value does not parse.
    #[error("invalid value {value:?} for query parameter {param:?}: {reason}")]
    InvalidQueryValue {
        /// The parameter name as sent.
        param: String,
        /// The value as sent.
        value: String,
        /// Why the value does not parse.
        reason: String,
    },
    /// A path variable's value does not parse.
    #[error("invalid value {value:?} for path variable {field:?}: {reason}")]
    InvalidPathValue {
        /// The bound field's dotted path.
        field: String,
        /// The captured value.
        value: String,
        /// Why the value does not parse.
        reason: String,
    },
    /// The JSON body does not parse into the message.
    #[error("invalid JSON body: {reason}")]
    InvalidBody {
        /// The field at fault, when known (dotted JSON path).
        field: Option<String>,
        /// Why the body does not parse.
        reason: String,
    },
    /// A body sent to a route that takes none.
    #[error("this method does not take a request body")]
    UnexpectedBody,
    /// The backend's reply does not decode as the declared output type.
    #[error("cannot decode the {message} reply: {reason}")]
    BadReply {
        /// Full name of the declared output type.
        message: String,
        /// Why the reply does not decode.
        reason: String,
    },
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
