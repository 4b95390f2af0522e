//! The Model Context Protocol, revision 2025-11-25, over Streamable HTTP
//! ([spec]): routed methods offered to AI agents as tools.
//!
//! Stateless: every message is one POST answered with one JSON response
//! (no session id, so clients open no GET stream; GET and DELETE are 405).
//! `tools/list` offers the methods `mcp.tools` selects, each described from
//! its proto comments, with input and output schemas from the OpenAPI
//! generator ([`crate::openapi::message_schema`]); the list is built once
//! per loaded gateway. `tools/call` goes through the same steps as a REST
//! call of the method (the client's bearer token against the method's auth
//! rules, rate limits, the backend choice and breaker, metrics); a failed
//! call is a tool error carrying the `google.rpc.Status`, while MCP's own
//! errors (unknown tool, malformed messages) are JSON-RPC errors.
//!
//! [spec]: https://modelcontextprotocol.io/specification/2025-11-25/basic/transports

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::Instrument;

use super::pipeline::{self, Call, UpstreamCall};
use crate::error::{GatewayError, JSON};
use crate::gateway::Gateway;
use crate::upstream::stream::Outgoing;
use crate::upstream::{CallError, Deadline};

/// The revisions spoken, newest first; the first is offered to clients
/// that ask for another.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// The tools of one loaded gateway.
#[derive(Debug, Default)]
pub struct Tools {
    /// `tools/list`'s answer, as JSON.
    list: Value,
    by_name: HashMap<String, Tool>,
}

#[derive(Debug)]
struct Tool {
    /// `/package.Service/Method`.
    path: String,
    /// Server streaming: the reply is the messages, collected.
    streaming: bool,
}

impl Tools {
    /// One tool per routed unary or server-streaming method that
    /// `mcp.tools` selects, in route order.
    pub fn build(gw: &Gateway) -> Self {
        let options = &gw.config().mcp;
        let comments = crate::openapi::comments::Comments::index(gw.pool());
        let json = gw.config().transcode.json;
        let mut list = Vec::new();
        let mut by_name = HashMap::new();
        for plan in gw.routes().routes() {
            let method = &plan.route.method;
            let full_name = method.full_name();
            if method.is_client_streaming() || !options.tools.iter().any(|p| p.matches(full_name)) {
                continue;
            }
            let name = full_name.replace('.', "_");
            if by_name.contains_key(&name) {
                continue;
            }
            let input = crate::openapi::message_schema(gw.pool(), &comments, json, &method.input());
            if input.get("type").and_then(Value::as_str) != Some("object") {
                tracing::warn!(
                    method = full_name,
                    "not offered as an MCP tool: its input is not an object"
                );
                continue;
            }
            let reply =
                crate::openapi::message_schema(gw.pool(), &comments, json, &method.output());
            let streaming = method.is_server_streaming();
            let output = if streaming { collected(reply) } else { reply };
            let (summary, description) = crate::openapi::comments::summary_and_description(
                comments.get(method.parent_file().name(), method.path()),
            );
            let description = match (summary, description) {
                (Some(s), Some(d)) => format!("{s}\n\n{d}"),
                (Some(s), None) => s,
                (None, Some(d)) => d,
                (None, None) => format!("Calls {full_name}."),
            };
            let read_only = gw
                .method(plan.route.grpc_path.path())
                .is_some_and(|(m, _)| m.no_side_effects);
            list.push(json!({
                "name": name,
                "title": format!("{}.{}", method.parent_service().name(), method.name()),
                "description": description,
                "inputSchema": input,
                "outputSchema": output,
                "annotations": {"readOnlyHint": read_only},
            }));
            by_name.insert(
                name,
                Tool {
                    path: plan.route.grpc_path.path().to_owned(),
                    streaming,
                },
            );
        }
        Self {
            list: json!({ "tools": list }),
            by_name,
        }
    }

    /// How many tools are offered.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The output of a server-streaming tool: `{"messages": [reply, ...]}`.
fn collected(mut reply: Value) -> Value {
    let defs = reply.as_object_mut().and_then(|m| m.remove("$defs"));
    let mut out = json!({
        "type": "object",
        "properties": {"messages": {"type": "array", "items": reply}},
    });
    if let (Some(defs), Some(map)) = (defs, out.as_object_mut()) {
        map.insert("$defs".to_owned(), defs);
    }
    out
}

/// A JSON-RPC error.
struct RpcError {
    code: i64,
    message: String,
}

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Answers one POST to the MCP endpoint.
pub async fn handle(gw: Gateway, tools: Arc<Tools>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if let Some(refused) = refuse(&gw, &parts) {
        return refused;
    }
    let admitted = match pipeline::admit(&gw) {
        Ok(admitted) => admitted,
        Err(e) => return e.into_response(),
    };
    let body = match pipeline::read_body(&parts, body, gw.config().transcode.max_body_bytes).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let message: Value = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(e) => {
            return rpc_error(
                Value::Null,
                PARSE_ERROR,
                &format!("not JSON: {e}"),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let Some(object) = message.as_object() else {
        return rpc_error(
            Value::Null,
            INVALID_REQUEST,
            "one JSON-RPC message per request, an object",
            StatusCode::BAD_REQUEST,
        );
    };
    let Some(method) = object.get("method").and_then(Value::as_str) else {
        // A response to a request of ours: there are none.
        return StatusCode::ACCEPTED.into_response();
    };
    let Some(id) = object
        .get("id")
        .filter(|id| id.is_string() || id.is_number())
        .cloned()
    else {
        // A notification (`notifications/initialized`, cancellations): nothing to answer.
        return StatusCode::ACCEPTED.into_response();
    };
    let params = object.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "initialize" => Ok(initialize(&params)),
        "ping" => Ok(json!({})),
        "tools/list" => match listing_allowed(&gw, &parts).await {
            Ok(()) => Ok(tools.list.clone()),
            Err(e) => Ok(tool_error(&e)),
        },
        "tools/call" => call(&gw, &tools, &parts, &params, started).await,
        other => Err(RpcError {
            code: METHOD_NOT_FOUND,
            message: format!("method {other:?} is not served"),
        }),
    };
    drop(admitted);
    match result {
        Ok(result) => respond(json!({"jsonrpc": "2.0", "id": id, "result": result})),
        Err(e) => rpc_error(id, e.code, &e.message, StatusCode::OK),
    }
}

/// Requests refused before they are read: a page of a site that is not
/// allowed (the spec's defence against DNS rebinding), or a protocol
/// revision the gateway does not speak.
fn refuse(gw: &Gateway, parts: &http::request::Parts) -> Option<Response> {
    if let Some(origin) = parts.headers.get(http::header::ORIGIN) {
        let allowed = gw.config().cors.as_ref().is_some_and(|cors| {
            cors.allowed_origins
                .as_ref()
                .is_none_or(|list| list.iter().any(|o| o == origin))
        });
        if !allowed {
            let origin = origin.to_str().unwrap_or_default().to_owned();
            tracing::info!(%origin, "MCP request from an origin that is not allowed");
            return Some(GatewayError::CrossOrigin { origin }.into_response());
        }
    }
    if let Some(version) = parts.headers.get("mcp-protocol-version")
        && !PROTOCOL_VERSIONS
            .iter()
            .any(|v| version.as_bytes() == v.as_bytes())
    {
        return Some(rpc_error(
            Value::Null,
            INVALID_REQUEST,
            &format!(
                "MCP-Protocol-Version must be one of {}",
                PROTOCOL_VERSIONS.join(", ")
            ),
            StatusCode::BAD_REQUEST,
        ));
    }
    None
}

/// `initialize`: the client's revision when spoken, else the newest.
fn initialize(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .filter(|a| PROTOCOL_VERSIONS.contains(a))
        .unwrap_or(PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "protogate", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "Each tool calls one method of the APIs behind this gateway; credentials are those of the HTTP request.",
    })
}

/// The tool list is as open as the gateway's own endpoints (`/openapi.json`).
async fn listing_allowed(gw: &Gateway, parts: &http::request::Parts) -> Result<(), GatewayError> {
    let auth = gw.auth();
    auth.authenticate(auth.gateway_endpoints(), &parts.headers, parts.uri.query())
        .await?;
    Ok(())
}

/// `tools/call`: the tool's method through the pipeline.
async fn call(
    gw: &Gateway,
    tools: &Tools,
    parts: &http::request::Parts,
    params: &Value,
    started: Instant,
) -> Result<Value, RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError {
            code: INVALID_PARAMS,
            message: "tools/call needs a tool name".to_owned(),
        })?;
    let unknown = || RpcError {
        code: INVALID_PARAMS,
        message: format!("unknown tool {name:?}"),
    };
    let tool = tools.by_name.get(name).ok_or_else(unknown)?;
    let (method, plan) = gw.method(&tool.path).ok_or_else(unknown)?;
    let arguments = params
        .get("arguments")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let span = crate::telemetry::request_span(&parts.method, &parts.headers);
    crate::telemetry::route_matched(&span, &parts.method, &method.label);
    let outcome = run(gw, tool, parts, method, plan, &arguments)
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    let status = match &outcome {
        Ok(_) => 200,
        Err(e) => e.status().as_u16(),
    };
    match &outcome {
        Ok(_) => tracing::info!(tool = name, "tool call done"),
        Err(e) => tracing::info!(tool = name, cause = %e.log_cause(), "tool call failed"),
    }
    gw.metrics().request(
        Some(&method.label),
        &parts.method,
        status,
        started.elapsed(),
    );
    Ok(match outcome {
        Ok(structured) => json!({
            "content": [{"type": "text", "text": structured.to_string()}],
            "structuredContent": structured,
            "isError": false,
        }),
        Err(e) => tool_error(&e),
    })
}

/// A failed call as a tool error: the `google.rpc.Status` as text.
fn tool_error(error: &GatewayError) -> Value {
    let status = String::from_utf8_lossy(&error.body()).into_owned();
    json!({"content": [{"type": "text", "text": status}], "isError": true})
}

async fn run(
    gw: &Gateway,
    tool: &Tool,
    parts: &http::request::Parts,
    method: &crate::plan::MethodPlan,
    plan: &crate::plan::RoutePlan,
    arguments: &Value,
) -> Result<Value, GatewayError> {
    let call = Call::prepare_tool(gw, parts, method, plan).await?;
    let route = &plan.route;
    let arguments = arguments.to_string();
    let input = crate::transcode::message_from_json(
        route.method.input(),
        arguments.as_bytes(),
        route.unknown_json_fields,
    )?;
    let input = match &plan.validation {
        Some(rules) => {
            let written = crate::validate::Written {
                body: Some((arguments.as_bytes(), None)),
                ..Default::default()
            };
            rules.check(&input, &written)?.unwrap_or(input)
        }
        None => input,
    };
    let target = call.target;
    let to_json = |reply: &[u8]| -> Result<Value, GatewayError> {
        let bad = |cause: String| GatewayError::BadBackend {
            backend: target.name.to_string(),
            cause,
        };
        let text = crate::transcode::message_to_json(
            route.method.output(),
            reply,
            &gw.config().transcode.json,
        )
        .map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))
    };
    let mut timing = UpstreamCall::start(gw, target);
    if !tool.streaming {
        let deadline = Deadline::after(target.timeout);
        let reply = gw
            .upstreams()
            .unary(target, route, Bytes::from(input), call.metadata, deadline)
            .await;
        timing.finish(
            reply
                .as_ref()
                .map_or_else(CallError::code, |_| tonic::Code::Ok),
        );
        let reply = reply.map_err(|e| pipeline::call_error(gw, &target.name, e))?;
        return to_json(&reply.message);
    }
    let deadline = Deadline::after(plan.limits.stream_max_duration.min(target.timeout));
    let requests = futures_util::stream::iter([Outgoing::Message(Bytes::from(input))]);
    let opened = gw
        .upstreams()
        .streaming(target, route, requests, call.metadata, deadline)
        .await;
    let mut reply = match opened {
        Ok(reply) => reply,
        Err(e) => {
            timing.finish(e.code());
            return Err(pipeline::call_error(gw, &target.name, e));
        }
    };
    let max = gw.config().mcp.max_stream_messages;
    let mut messages = Vec::new();
    while messages.len() < max {
        match tokio::time::timeout_at(deadline.at, reply.messages.message()).await {
            Ok(Ok(Some(message))) => messages.push(to_json(&message)?),
            Ok(Ok(None)) => break,
            Ok(Err(status)) => {
                let error = crate::upstream::stream::reply_error(status);
                timing.finish(error.code());
                return Err(pipeline::call_error(gw, &target.name, error));
            }
            // What arrived in time is the answer.
            Err(_) => break,
        }
    }
    timing.finish(tonic::Code::Ok);
    // Dropping the stream cancels what the backend would still send.
    Ok(json!({ "messages": messages }))
}

fn respond(message: Value) -> Response {
    let body = serde_json::to_vec(&message).unwrap_or_default();
    ([(CONTENT_TYPE, JSON)], Body::from(body)).into_response()
}

fn rpc_error(id: Value, code: i64, message: &str, status: StatusCode) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (status, [(CONTENT_TYPE, JSON)], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialize_answers_the_asked_revision_or_the_newest() {
        for (asked, want) in [
            (Some("2025-11-25"), "2025-11-25"),
            (Some("2025-06-18"), "2025-06-18"),
            (Some("2024-11-05"), "2025-11-25"),
            (None, "2025-11-25"),
        ] {
            let params = asked.map_or(Value::Null, |a| json!({"protocolVersion": a}));
            assert_eq!(initialize(&params)["protocolVersion"], want, "{asked:?}");
        }
    }

    #[test]
    fn collected_messages_keep_their_definitions_at_the_root() {
        let reply = json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/X"}}, "$defs": {"X": {}}});
        let out = collected(reply);
        assert_eq!(
            out["properties"]["messages"]["items"]["properties"]["x"]["$ref"],
            "#/$defs/X"
        );
        assert_eq!(out["$defs"], json!({"X": {}}));
        assert!(
            out["properties"]["messages"]["items"]
                .get("$defs")
                .is_none()
        );
    }
}
