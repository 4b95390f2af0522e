//! Unary calls: the whole body read within the call's deadline, one
//! request message, one backend call, one reply rendered as the response.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;

use super::pipeline::{self, Call, UpstreamCall};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::upstream::Deadline;
use crate::upstream::metadata::response_headers;

/// Answers a unary call.
///
/// # Errors
/// Anything that fails: the body, the message, the backend call, the reply.
pub(super) async fn call(
    gw: &Gateway,
    parts: &Parts,
    body: Body,
    call: Call<'_>,
) -> Result<Response, GatewayError> {
    let plan = call.plan;
    let target = call.target;
    // One deadline for the whole request: a client trickling its body spends
    // the time the backend call would have had.
    let deadline = Deadline::after(pipeline::timeout(
        parts,
        target.timeout,
        plan.limits.max_grpc_timeout,
    )?);
    let body =
        pipeline::read_body_within(parts, body, plan.limits.max_body_bytes, &deadline).await?;
    let input = pipeline::message(&call, parts, body)?;
    // Before the call: a client that accepts neither type is told at once.
    let reply_type = pipeline::reply_type(parts)?;
    let mut timing = UpstreamCall::start(gw, target);
    let reply = gw
        .upstreams()
        .unary(
            target,
            &plan.route,
            Bytes::from(input),
            call.metadata,
            deadline,
        )
        .await;
    timing.finish(
        reply
            .as_ref()
            .map_or_else(|e| e.code(), |_| tonic::Code::Ok),
    );
    drop(timing);
    let reply = reply.map_err(|e| {
        pipeline::precondition(pipeline::call_error(gw, &target.name, e), parts, plan)
    })?;
    let headers = response_headers(&reply.headers, reply.trailers.as_ref());
    pipeline::render_reply(
        parts,
        plan,
        &target.name,
        &reply.message,
        headers,
        &reply_type,
    )
}
