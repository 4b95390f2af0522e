//! JSON ⇄ protobuf for one route: the gateway's message work, behind one narrow boundary.
//!
//! In: a matched route, its captured path values, the raw query string and
//! the body bytes; out: the encoded request message ([`request`]). In: the
//! encoded reply; out: JSON bytes ([`response`]). Nothing here knows about
//! HTTP types or sockets, so a faster codec can replace the internals and be
//! checked against this one.

mod duplicate_keys;
pub mod etag;
pub mod fast;
pub mod http_body;
mod query;
mod request;
pub mod response;
pub mod status;
mod update_mask;
pub mod value;

pub use request::{message_from_json, request};
pub use response::{message_to_json, response};

use crate::config::{self, JsonOptions};
use std::sync::Arc;

use crate::http_rule::{BodyRule, Route, RoutePayload, RouteTable};

/// Whether `message`, or a singular message field it reaches, has a real oneof.
fn has_oneof(
    message: &prost_reflect::MessageDescriptor,
    visited: &mut Vec<prost_reflect::MessageDescriptor>,
) -> bool {
    if visited.contains(message) {
        return false;
    }
    visited.push(message.clone());
    message.oneofs().any(|o| !o.is_synthetic())
        || message.fields().any(|f| match f.kind() {
            prost_reflect::Kind::Message(m) if !f.is_list() && !f.is_map() => {
                has_oneof(&m, visited)
            }
            _ => false,
        })
}

/// The message plans of a loaded gateway, shared by its routes: the fast
/// paths' compiled types. Each route's [`RouteCodec`] points into them.
#[derive(Debug)]
pub struct Transcoder {
    json: JsonOptions,
    replies: Option<fast::ReplyPlans>,
    requests: fast::RequestPlans,
}

/// The transcoding of one route: its fast plans where its types have them,
/// the `DynamicMessage` reference otherwise and whenever a fast path gives up.
#[derive(Debug, Clone)]
pub struct RouteCodec {
    shared: Arc<Transcoder>,
    route: Arc<Route>,
    request: Option<RequestPlan>,
    /// Index of the reply plan, when the whole reply is the body.
    reply: Option<usize>,
    /// Where its messages carry an etag.
    etag: Arc<etag::EtagFields>,
}

#[derive(Debug, Clone, Copy)]
struct RequestPlan {
    body: BodyPlan,
    /// The input reaches a oneof: a query parameter might set a member
    /// while the body or path set another, a conflict only the reference sees.
    query_oneofs: bool,
}

/// How the fast request path reads a route's body.
#[derive(Debug, Clone, Copy)]
enum BodyPlan {
    /// No body: path variables (and the query) only.
    None,
    /// `body: "*"`: the input message's plan.
    Whole(usize),
    /// `body: "field"`: the plan of the leaf's message and the leaf's number.
    Field(usize, u32),
}

impl Transcoder {
    /// Compiles reply plans for the output of every route whose whole reply
    /// message is the body, and request plans for every route's input.
    pub fn build<P: RoutePayload>(routes: &RouteTable<P>, json: &JsonOptions) -> Arc<Self> {
        let routes = || routes.routes().iter().map(RoutePayload::route);
        let outputs: Vec<_> = routes()
            .filter(|r| r.response_body.is_none())
            .map(|r| r.method.output())
            .collect();
        let inputs: Vec<_> = routes().map(|r| r.method.input()).collect();
        Arc::new(Self {
            json: *json,
            replies: fast::ReplyPlans::build(outputs.iter(), json),
            requests: fast::RequestPlans::build(inputs.iter()),
        })
    }

    /// The transcoding of `route`, whose types were among those built.
    pub fn route(self: &Arc<Self>, route: &Arc<Route>) -> RouteCodec {
        let reply = self.replies.as_ref().and_then(|plans| {
            route
                .response_body
                .is_none()
                .then(|| plans.index_of(&route.method.output()))?
        });
        let request = (|| {
            let input = self.requests.index_of(&route.method.input())?;
            let body = match &route.body {
                BodyRule::None => BodyPlan::None,
                BodyRule::Whole => BodyPlan::Whole(input),
                BodyRule::Field(path) => BodyPlan::Field(
                    self.requests.index_of(path.leaf().parent_message())?,
                    path.leaf().number(),
                ),
            };
            Some(RequestPlan {
                body,
                query_oneofs: has_oneof(&route.method.input(), &mut Vec::new()),
            })
        })();
        RouteCodec {
            shared: self.clone(),
            route: route.clone(),
            request,
            reply,
            etag: Arc::new(etag::EtagFields::of(route)),
        }
    }
}

impl RouteCodec {
    /// The route this codec transcodes.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }

    /// Where the route's messages carry an etag.
    pub fn etag(&self) -> &etag::EtagFields {
        &self.etag
    }

    /// Builds and encodes the route's request message (see [`request`]).
    ///
    /// # Errors
    /// A [`TranscodeError`] naming the parameter, variable or JSON field at fault.
    pub fn request(
        &self,
        values: &[String],
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Vec<u8>, TranscodeError> {
        let query = query.filter(|q| !q.is_empty());
        let fast = match &self.request {
            Some(plan) if !(plan.query_oneofs && query.is_some()) => {
                self.fast_request(plan.body, values, query, body)?
            }
            _ => None,
        };
        let mut wire = match fast {
            Some(wire) => wire,
            None => request(&self.route, values, query, body)?,
        };
        update_mask::fill(&self.route, query, body, &mut wire);
        Ok(wire)
    }

    /// The fast request path: the body's wire bytes, then each path value
    /// written explicitly (a later field wins on the wire, as the path wins
    /// over the body), then the query's fields, which nothing else binds.
    /// `Ok(None)` when the body needs the reference.
    fn fast_request(
        &self,
        plan: BodyPlan,
        values: &[String],
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, TranscodeError> {
        let route = &*self.route;
        let requests = &self.shared.requests;
        let body = body.trim_ascii();
        let deny = route.unknown_json_fields == config::UnknownFields::Reject;
        let mut out = Vec::with_capacity(body.len() + 64);
        let encoded = match plan {
            BodyPlan::None => {
                request::check_unbound_body(body, route.unknown_json_fields)?;
                Ok(())
            }
            _ if body.is_empty() => Ok(()),
            BodyPlan::Whole(index) => requests.encode(index, body, deny, &mut out),
            BodyPlan::Field(index, number) => {
                let BodyRule::Field(path) = &route.body else {
                    return Ok(None);
                };
                fast::request::put_nested(path.parents(), &mut out, |out| {
                    requests.encode_field(index, number, body, deny, out)
                })
            }
        };
        if encoded.is_err() {
            return Ok(None);
        }
        for (path, raw) in route.path_fields.iter().zip(values) {
            let leaf = path.leaf();
            let parsed =
                value::parse(leaf, raw).map_err(|reason| TranscodeError::InvalidPathValue {
                    field: path.dotted().to_owned(),
                    value: raw.clone(),
                    reason,
                })?;
            let written = fast::request::put_nested(path.parents(), &mut out, |out| {
                fast::request::put_explicit(&leaf.kind(), leaf.number(), &parsed, out)
            });
            if written.is_err() {
                return Ok(None);
            }
        }
        if let Some(query) = query {
            let mut message = prost_reflect::DynamicMessage::new(route.method.input());
            query::apply(&mut message, route, query)?;
            prost::Message::encode(&message, &mut out)
                .map_err(|e| TranscodeError::Internal(e.to_string()))?;
        }
        Ok(Some(out))
    }

    /// Renders a reply of the route as JSON.
    ///
    /// # Errors
    /// [`TranscodeError::BadReply`] when the bytes are not a valid reply.
    pub fn response(&self, reply: &[u8]) -> Result<Vec<u8>, TranscodeError> {
        if let Some(plans) = &self.shared.replies
            && let Some(index) = self.reply
        {
            let mut out = Vec::with_capacity(reply.len() * 2 + 16);
            if plans.write(index, reply, &mut out).is_ok() {
                return Ok(out);
            }
        }
        response(&self.route, reply, &self.shared.json)
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
    /// A query parameter names a field the path or body already binds
    /// (under `unknown_query_parameters: reject`).
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
    /// A body other than `{}` or `null` sent to a route that takes none.
    #[error("this method does not take a request body")]
    UnexpectedBody,
    /// A JSON object with fields sent to a route that takes no body.
    #[error(
        "this method does not take a request body; the body sets {}",
        quoted(fields)
    )]
    BodyFields {
        /// The object's keys as sent, each once.
        fields: Vec<String>,
    },
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
            Self::BodyFields { fields } => fields.first().map(String::as_str),
            Self::UnexpectedBody | Self::BadReply { .. } | Self::Internal(_) => None,
        }
    }
}

/// `"a", "b"`: names as a message quotes them.
fn quoted(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests;
