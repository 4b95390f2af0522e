//! The one error type of the request path and its one HTTP rendering.
//!
//! Every failure, the gateway's own or a backend's, answers with the
//! `google.rpc.Status` JSON shape `{"code", "message", "details"}` and the HTTP
//! status from [`http_status`]. Internal causes are logged, not sent.

use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use tonic::Code;

use crate::auth::AuthError;
use crate::http_rule::LookupError;
use crate::transcode::TranscodeError;

/// `Content-Type` of every JSON answer.
pub const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A failed request, ready to be rendered.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route, wrong method, or a path the gateway refuses.
    #[error(transparent)]
    Route(#[from] LookupError),
    /// Credentials missing, invalid, or not enough for this route.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The request could not be turned into a message.
    #[error(transparent)]
    Transcode(#[from] TranscodeError),
    /// The backend refused a conditional write (`If-Match`) with
    /// `FAILED_PRECONDITION` or `ABORTED`: the etag did not match.
    #[error("{}", .0.message)]
    PreconditionFailed(Box<UpstreamStatus>),
    /// The request message breaks the schema's validation rules.
    #[error(transparent)]
    Invalid(Box<crate::validate::Invalid>),
    /// A request header has a bad value.
    #[error("invalid {header} header: {reason}")]
    BadHeader {
        /// Name of the header.
        header: &'static str,
        /// Why the value is invalid.
        reason: String,
    },
    /// A binary metadata header that is not base64.
    #[error(transparent)]
    BadBinaryHeader(#[from] crate::upstream::metadata::BadBinaryHeader),
    /// The traffic override header names a backend the route does not have.
    #[error(transparent)]
    UnknownBackend(#[from] crate::upstream::UnknownBackend),
    /// No stream framing the client accepts.
    #[error(
        "cannot answer with {accept:?}; accept application/x-ndjson, text/event-stream or application/json"
    )]
    NotAcceptable {
        /// The `Accept` header as sent.
        accept: String,
    },
    /// No reply type the client accepts.
    #[error("cannot answer with {accept:?}; accept application/json or application/x-protobuf")]
    NotAcceptableReply {
        /// The `Accept` header as sent.
        accept: String,
    },
    /// A line of a streamed request body is not a valid message.
    #[error("line {line}: {message}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it, as the client is told.
        message: String,
        /// The transcoding error behind it, whose redacted form is logged.
        cause: Option<Box<TranscodeError>>,
    },
    /// A stream went quiet for too long, or stayed open too long.
    #[error("stream {what} after {timeout:?}")]
    StreamTimeout {
        /// "idle" or "too long".
        what: &'static str,
        /// The limit that passed.
        timeout: std::time::Duration,
    },
    /// The caller or address is over its rate limit.
    #[error(transparent)]
    RateLimited(#[from] crate::rate_limit::RateLimited),
    /// Too many requests in flight; this one is refused at once.
    #[error("the gateway is overloaded; retry shortly")]
    Overloaded,
    /// The shared rate-limit store did not answer and `on_store_error` is
    /// `deny`.
    #[error("the rate limit cannot be checked; retry shortly")]
    LimitStoreDown,
    /// The request target is too long.
    #[error("request target exceeds the limit of {limit} bytes")]
    UriTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request headers are too large.
    #[error("request headers exceed the limit of {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A page of another site tried to open a WebSocket.
    #[error("WebSockets from origin {origin:?} are not allowed")]
    CrossOrigin {
        /// The `Origin` header as sent.
        origin: String,
    },
    /// The gateway is shutting down and ends its open streams.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The body is larger than allowed.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The body size limit in bytes.
        limit: usize,
    },
    /// The body could not be read from the client.
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    /// A native gRPC call to a method the gateway does not route.
    #[error("{path} is not served as a gRPC method by this gateway")]
    NotServed {
        /// The request path, `/package.Service/Method`.
        path: String,
    },
    /// A native gRPC request that breaks the protocol's framing.
    #[error("invalid gRPC request: {0}")]
    BadGrpcRequest(&'static str),
    /// The backend answered with a non-OK status.
    #[error("backend returned {}: {}", .0.code, .0.message)]
    Upstream(Box<UpstreamStatus>),
    /// The backend could not be reached.
    #[error("backend {backend} is unavailable: {cause}")]
    Unavailable {
        /// Name of the backend.
        backend: String,
        /// Why it could not be reached.
        cause: String,
    },
    /// Every endpoint's circuit breaker is open: answered at once, without
    /// a call.
    #[error("backend {backend} is unavailable: circuit open, retry in {retry_after}s")]
    CircuitOpen {
        /// Name of the backend.
        backend: String,
        /// Seconds until an endpoint takes a trial call.
        retry_after: u64,
    },
    /// The backend's answer was not a valid gRPC reply of the declared type.
    #[error("backend {backend} sent an invalid response: {cause}")]
    BadBackend {
        /// Name of the backend.
        backend: String,
        /// What was wrong with the response.
        cause: String,
    },
    /// The request body did not arrive in time.
    #[error("the request body did not arrive within {timeout:?}")]
    BodyTimeout {
        /// How long the body was waited for.
        timeout: std::time::Duration,
    },
    /// The body's content type is neither JSON (or something curl sends
    /// for JSON) nor protobuf.
    #[error(
        "unsupported content type {content_type:?}; send application/json or application/x-protobuf"
    )]
    UnsupportedMediaType {
        /// The content type as sent.
        content_type: String,
    },
    /// The deadline passed before the backend answered.
    #[error("deadline of {timeout:?} exceeded calling backend {backend}")]
    DeadlineExceeded {
        /// Name of the backend.
        backend: String,
        /// The deadline that passed.
        timeout: std::time::Duration,
    },
    /// A bug or an impossible state; the cause is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A backend's status, already rendered for the client.
#[derive(Debug)]
pub struct UpstreamStatus {
    /// The gRPC code.
    pub code: Code,
    /// The gRPC message.
    pub message: String,
    /// `details` decoded from `grpc-status-details-bin`, as a JSON array.
    pub details: Option<Box<RawValue>>,
    /// `Grpc-Metadata-*` / `Grpc-Trailer-*` headers from the backend's metadata.
    pub headers: HeaderMap,
}

/// HTTP status for a gRPC code: the table grpc-gateway, Envoy and Google APIs share.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // 499 is nginx's "client closed request"; there is no standard constant.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        // The system is not in a state for this call; the client must change
        // something first, so it is the client's error, not a conflict.
        Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        // Concurrency conflicts (e.g. a lost read-modify-write race).
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<crate::validate::Invalid> for GatewayError {
    fn from(invalid: crate::validate::Invalid) -> Self {
        Self::Invalid(Box::new(invalid))
    }
}

impl GatewayError {
    /// The gRPC code this error reports.
    pub fn code(&self) -> Code {
        match self {
            Self::Route(LookupError::NotFound { .. }) => Code::NotFound,
            Self::Route(LookupError::MethodNotAllowed { .. }) => Code::Unimplemented,
            Self::Route(
                LookupError::DotSegment { .. }
                | LookupError::BadEncoding { .. }
                | LookupError::BadEscape { .. },
            ) => Code::InvalidArgument,
            Self::Transcode(e) if e.is_internal() => Code::Internal,
            Self::Transcode(_)
            | Self::Invalid(_)
            | Self::BadHeader { .. }
            | Self::BadBinaryHeader(_)
            | Self::BodyRead(_)
            | Self::UnknownBackend(_)
            | Self::NotAcceptable { .. }
            | Self::NotAcceptableReply { .. }
            | Self::BadLine { .. }
            | Self::BadGrpcRequest(_) => Code::InvalidArgument,
            Self::NotServed { .. } => Code::Unimplemented,
            Self::StreamTimeout { .. } => Code::DeadlineExceeded,
            Self::ShuttingDown => Code::Unavailable,
            Self::CrossOrigin { .. } => Code::PermissionDenied,
            Self::Overloaded | Self::LimitStoreDown => Code::Unavailable,
            Self::RateLimited(_) => Code::ResourceExhausted,
            Self::UriTooLong { .. } | Self::HeadersTooLarge { .. } => Code::InvalidArgument,
            Self::BodyTooLarge { .. } => Code::ResourceExhausted,
            Self::Upstream(s) | Self::PreconditionFailed(s) => s.code,
            Self::Auth(e) if e.is_forbidden() => Code::PermissionDenied,
            Self::Auth(_) => Code::Unauthenticated,
            Self::Unavailable { .. } | Self::CircuitOpen { .. } => Code::Unavailable,
            Self::BadBackend { .. } => Code::Internal,
            Self::BodyTimeout { .. } => Code::DeadlineExceeded,
            Self::UnsupportedMediaType { .. } => Code::InvalidArgument,
            Self::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            // More precise than the code table for these two gateway errors.
            Self::Route(LookupError::MethodNotAllowed { .. }) => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            // The backend broke the protocol: a bad gateway, not our own failure.
            Self::BadBackend { .. } => StatusCode::BAD_GATEWAY,
            // The client was too slow, not the backend.
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::NotAcceptable { .. } | Self::NotAcceptableReply { .. } => {
                StatusCode::NOT_ACCEPTABLE
            }
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            other => http_status(other.code()),
        }
    }

    /// The cause for the log: the full internal detail, but never values
    /// taken from the request (they may carry tokens or personal data).
    pub fn log_cause(&self) -> String {
        match self {
            Self::Transcode(e) => e.redacted(),
            Self::Route(e) => e.redacted(),
            Self::BadLine {
                line,
                cause: Some(e),
                ..
            } => format!("line {line}: {}", e.redacted()),
            Self::NotAcceptable { .. } | Self::NotAcceptableReply { .. } => {
                "cannot answer with the Accept header's types".to_owned()
            }
            Self::CrossOrigin { .. } => "WebSocket from an origin that is not allowed".to_owned(),
            Self::UnsupportedMediaType { .. } => "unsupported content type".to_owned(),
            other => other.to_string(),
        }
    }

    /// A bad line of a streamed request: the client hears the message, the
    /// log the redacted cause.
    pub fn bad_line(line: usize, error: TranscodeError) -> Self {
        Self::BadLine {
            line,
            message: if error.is_internal() {
                "internal error".to_owned()
            } else {
                error.to_string()
            },
            cause: Some(Box::new(error)),
        }
    }

    /// The message sent to the client: never internal causes.
    pub fn client_message(&self) -> String {
        match self {
            Self::Upstream(s) | Self::PreconditionFailed(s) => s.message.clone(),
            Self::Unavailable { backend, .. } => format!("backend {backend} is unavailable"),
            Self::CircuitOpen { .. } => self.to_string(),
            Self::BadBackend { backend, .. } => {
                format!("backend {backend} sent an invalid response")
            }
            Self::Internal(_) => "internal error".to_owned(),
            Self::Transcode(e) if e.is_internal() => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: i32,
    message: &'a str,
    details: Details<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Details<'a> {
    Raw(&'a RawValue),
    Empty([(); 0]),
}

#[derive(Serialize)]
struct BadRequest<'a> {
    #[serde(rename = "@type")]
    type_url: &'static str,
    #[serde(rename = "fieldViolations")]
    field_violations: Vec<FieldViolation<'a>>,
}

#[derive(Serialize)]
struct FieldViolation<'a> {
    field: &'a str,
    description: &'a str,
}

/// Renders `{"code", "message", "details"}`; `details` is `[]` when absent.
pub fn status_body(code: Code, message: &str, details: Option<&RawValue>) -> Vec<u8> {
    let body = Body {
        code: code as i32,
        message,
        details: details.map_or(Details::Empty([]), Details::Raw),
    };
    serde_json::to_vec(&body)
        .unwrap_or_else(|_| br#"{"code":13,"message":"internal error","details":[]}"#.to_vec())
}

impl GatewayError {
    /// The JSON body, `{"code", "message", "details"}`, as a response or
    /// as the last message of a stream that failed.
    pub fn body(&self) -> Vec<u8> {
        self.rendered().1
    }

    /// The headers and body of the answer.
    fn rendered(&self) -> (HeaderMap, Vec<u8>) {
        let code = self.code();
        let message = self.client_message();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, JSON);
        let details = match &self {
            Self::Upstream(s) | Self::PreconditionFailed(s) => {
                headers.extend(s.headers.clone());
                s.details.as_deref().map(|d| d.to_owned())
            }
            Self::Transcode(e) => e.field().and_then(|field| {
                let detail = [BadRequest {
                    type_url: "type.googleapis.com/google.rpc.BadRequest",
                    field_violations: vec![FieldViolation {
                        field,
                        description: &message,
                    }],
                }];
                serde_json::value::to_raw_value(&detail).ok()
            }),
            Self::Invalid(invalid) => {
                let detail = [BadRequest {
                    type_url: "type.googleapis.com/google.rpc.BadRequest",
                    field_violations: invalid
                        .violations
                        .iter()
                        .map(|(field, description)| FieldViolation { field, description })
                        .collect(),
                }];
                serde_json::value::to_raw_value(&detail).ok()
            }
            Self::Auth(e) => {
                if let Ok(v) = HeaderValue::from_str(&e.challenge()) {
                    headers.insert(WWW_AUTHENTICATE, v);
                }
                None
            }
            Self::Route(LookupError::MethodNotAllowed { allowed, .. }) => {
                if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                    headers.insert(ALLOW, v);
                }
                None
            }
            Self::Overloaded | Self::LimitStoreDown => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                None
            }
            Self::CircuitOpen { retry_after, .. } => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from(*retry_after));
                None
            }
            Self::RateLimited(limited) => {
                // RFC 9110 Retry-After, and the IETF RateLimit fields.
                headers.insert(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(limited.retry_after),
                );
                headers.insert("ratelimit-limit", HeaderValue::from(limited.limit));
                headers.insert("ratelimit-remaining", HeaderValue::from(0u32));
                headers.insert("ratelimit-reset", HeaderValue::from(limited.retry_after));
                None
            }
            _ => None,
        };
        (headers, status_body(code, &message, details.as_deref()))
    }
}

/// `google.rpc.BadRequest`, encoded for `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct BadRequestProto {
    #[prost(message, repeated, tag = "1")]
    field_violations: Vec<FieldViolationProto>,
}

/// `google.rpc.BadRequest.FieldViolation`.
#[derive(Clone, PartialEq, prost::Message)]
struct FieldViolationProto {
    #[prost(string, tag = "1")]
    field: String,
    #[prost(string, tag = "2")]
    description: String,
}

impl GatewayError {
    /// The encoded `google.rpc.Status` of this error with its details, for
    /// `grpc-status-details-bin` and Connect's error details: the
    /// violations of an invalid request. `None` when it has no details.
    pub fn status_details(&self) -> Option<Vec<u8>> {
        let Self::Invalid(invalid) = self else {
            return None;
        };
        let detail = BadRequestProto {
            field_violations: invalid
                .violations
                .iter()
                .map(|(field, description)| FieldViolationProto {
                    field: field.clone(),
                    description: description.clone(),
                })
                .collect(),
        };
        let status = crate::transcode::status::RpcStatus {
            code: self.code() as i32,
            message: self.client_message(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.BadRequest".to_owned(),
                value: prost::Message::encode_to_vec(&detail),
            }],
        };
        Some(prost::Message::encode_to_vec(&status))
    }

    /// The metadata a gRPC answer of this error carries besides its status:
    /// the headers of its HTTP answer (a challenge, `Retry-After`, ...)
    /// but the content type. A backend's status keeps its own metadata.
    pub fn grpc_metadata(&self) -> HeaderMap {
        if matches!(self, Self::Upstream(_) | Self::PreconditionFailed(_)) {
            return HeaderMap::new();
        }
        let (mut headers, _) = self.rendered();
        headers.remove(CONTENT_TYPE);
        headers
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (headers, body) = self.rendered();
        (status, headers, body).into_response()
    }
}

impl From<crate::rate_limit::Refused> for GatewayError {
    fn from(refused: crate::rate_limit::Refused) -> Self {
        match refused {
            crate::rate_limit::Refused::Limited(limited) => Self::RateLimited(limited),
            crate::rate_limit::Refused::StoreDown => Self::LimitStoreDown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_http_statuses() {
        for (code, want) in [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
        ] {
            assert_eq!(http_status(code).as_u16(), want, "{code:?}");
        }
    }

    #[test]
    fn gateway_errors_have_their_own_statuses() {
        let not_allowed = GatewayError::Route(LookupError::MethodNotAllowed {
            method: "DELETE".into(),
            path: "/v1/x".into(),
            allowed: vec!["GET".into(), "POST".into()],
        });
        assert_eq!(
            (not_allowed.status().as_u16(), not_allowed.code()),
            (405, Code::Unimplemented)
        );
        let resp = not_allowed.into_response();
        assert_eq!(resp.headers()[ALLOW], "GET, POST");
        let too_large = GatewayError::BodyTooLarge { limit: 10 };
        assert_eq!(
            (too_large.status().as_u16(), too_large.code()),
            (413, Code::ResourceExhausted)
        );
        let internal = GatewayError::Internal("secret cause".into());
        assert_eq!(internal.client_message(), "internal error");
        let down = GatewayError::Unavailable {
            backend: "users".into(),
            cause: "tcp connect error 10.0.0.1".into(),
        };
        assert_eq!(
            (down.status().as_u16(), down.client_message().as_str()),
            (503, "backend users is unavailable")
        );
    }

    #[test]
    fn status_body_has_the_rpc_status_shape() {
        let body = status_body(Code::NotFound, "no \"x\"", None);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": 5, "message": "no \"x\"", "details": []})
        );
    }
}
