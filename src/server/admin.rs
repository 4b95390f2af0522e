//! The admin API: what the running gateway does, for operators, on a
//! listener of its own (`admin.listen`, loopback unless
//! `admin.allow_remote`). JSON only, read only:
//!
//! * `GET /routes`: the live route table;
//! * `GET /explain?method=GET&path=/v1/users/1?view=FULL`: which route a
//!   request matches and why (or why none), where each path variable, query
//!   parameter and the body go, who may call it, which backends serve it;
//! * `GET /schema/diff`: the last schema swaps with their diffs, applied or
//!   refused;
//! * `GET /config`: the effective config (the file as loaded, with every
//!   default filled in and listed in `defaulted`), secrets redacted.
//!
//! Every answer reads the gateway current when it arrives.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use prost_reflect::{Kind, MessageDescriptor};
use serde::Serialize;
use serde_json::{Value, json};

use super::reload::Live;
use crate::gateway::Gateway;
use crate::http_rule::{BodyRule, LookupError, RouteMatch};
use crate::plan::RoutePlan;

/// The admin router over `live`.
pub fn router(live: Arc<Live>) -> Router {
    Router::new()
        .route("/routes", get(routes))
        .route("/explain", get(explain))
        .route("/schema/diff", get(schema_diff))
        .route("/config", get(config))
        .with_state(live)
}

/// The admin API's task; dropping it stops the API.
pub struct AdminTask {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AdminTask {
    /// The address the admin API listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for AdminTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the admin API on `admin.listen`, if the config sets one, before
/// the main listener serves: an address in use fails startup.
///
/// # Errors
/// The admin address cannot be bound.
pub async fn start(live: &Arc<Live>) -> anyhow::Result<Option<AdminTask>> {
    use anyhow::Context as _;

    let Some(addr) = live.gateway().config().admin.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("admin.listen: cannot listen on {addr}"))?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!("admin API listening on http://{addr}");
    let live = live.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = serve(listener, live).await {
            tracing::error!(error = %e, "the admin API stopped");
        }
    });
    Ok(Some(AdminTask { addr, task }))
}

/// Serves the admin API on `listener` until the process ends, with the
/// main listener's connection limits: a connection that sends no request
/// within `server.header_read_timeout`, or stays idle for
/// `server.idle_timeout`, is closed (read from the config at startup).
///
/// # Errors
/// Never: accept errors are logged and the loop goes on.
pub async fn serve(listener: tokio::net::TcpListener, live: Arc<Live>) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use tower::ServiceExt;

    use super::connection::{self, Activity, Counted, Timeouts};

    let edge = live.gateway().config().edge.clone();
    let timeouts = Timeouts {
        first_request: edge.header_read_timeout,
        idle: edge.idle_timeout,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let app = router(live);
    // Never turned: admin connections end with the process.
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "admin API: cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let builder = builder.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let activity = Activity::new();
            let service = {
                let activity = activity.clone();
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let in_flight = activity.begin();
                    let answer = app.clone().oneshot(request.map(axum::body::Body::new));
                    async move {
                        let response = answer.await?;
                        Ok::<_, std::convert::Infallible>(
                            response.map(|body| Counted::new(body, in_flight)),
                        )
                    }
                })
            };
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            let graceful = |c: std::pin::Pin<&mut _>| auto::Connection::graceful_shutdown(c);
            if let Err(e) =
                connection::drive(connection, graceful, activity, timeouts, stopped).await
            {
                tracing::debug!(error = %e, %remote, "admin connection ended with an error");
            }
        });
    }
}

fn json_answer(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => (
            status,
            [(http::header::CONTENT_TYPE, crate::error::JSON)],
            body,
        )
            .into_response(),
        Err(e) => crate::error::GatewayError::Internal(e.to_string()).into_response(),
    }
}

/// One route as `/routes` and `/explain` show it.
#[derive(Debug, Serialize)]
struct RouteView {
    method: String,
    template: String,
    /// 0 for the method's main rule, 1.. for its additional bindings.
    binding: usize,
    rpc: String,
    kind: &'static str,
    backends: Vec<BackendView>,
    auth: AuthView,
    body: String,
    response_body: String,
    source: SourceView,
}

#[derive(Debug, Serialize)]
struct BackendView {
    name: String,
    weight: u32,
    timeout: String,
}

#[derive(Debug, Serialize)]
struct AuthView {
    public: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    accepts: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    claims: Vec<(String, Vec<String>)>,
}

/// Where the method's descriptor came from.
#[derive(Debug, Serialize)]
struct SourceView {
    file: String,
    /// `descriptors` (proto files, descriptor sets) or `reflection`.
    from: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<String>,
    /// SHA-256 of the backend's descriptors, for `reflection`.
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

fn route_view(gw: &Gateway, plan: &RoutePlan) -> RouteView {
    let route = &plan.route;
    let method = &route.method;
    let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => "unary",
        (false, true) => "server_streaming",
        (true, false) => "client_streaming",
        (true, true) => "bidi_streaming",
    };
    let reflected = route.backends.iter().find_map(|b| {
        gw.reflection_digest(&b.name)
            .map(|digest| (b.name.clone(), digest.to_owned()))
    });
    let source = match reflected {
        Some((backend, digest)) => SourceView {
            file: method.parent_file().name().to_owned(),
            from: "reflection",
            backend: Some(backend),
            digest: Some(digest),
        },
        None => SourceView {
            file: method.parent_file().name().to_owned(),
            from: "descriptors",
            backend: None,
            digest: None,
        },
    };
    RouteView {
        method: route.http_method.to_string(),
        template: route.template.source.clone(),
        binding: route.binding,
        rpc: method.full_name().to_owned(),
        kind,
        backends: plan
            .backends
            .targets()
            .iter()
            .map(|t| BackendView {
                name: t.name.to_string(),
                weight: t.weight,
                timeout: humantime::format_duration(t.timeout).to_string(),
            })
            .collect(),
        auth: AuthView {
            public: plan.auth.public,
            accepts: if plan.auth.public {
                String::new()
            } else {
                plan.auth.accepts().to_owned()
            },
            scopes: plan.auth.scopes.clone(),
            claims: plan.auth.claims().to_vec(),
        },
        body: match &route.body {
            BodyRule::None => String::new(),
            BodyRule::Whole => "*".to_owned(),
            BodyRule::Field(field) => field.to_string(),
        },
        response_body: route
            .response_body
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        source,
    }
}

async fn routes(State(live): State<Arc<Live>>) -> Response {
    let gw = live.gateway();
    let routes: Vec<RouteView> = gw
        .routes()
        .routes()
        .iter()
        .map(|plan| route_view(&gw, plan))
        .collect();
    json_answer(
        StatusCode::OK,
        &json!({ "generation": gw.generation(), "routes": routes }),
    )
}

async fn schema_diff(State(live): State<Arc<Live>>) -> Response {
    let history = live.schema_history();
    json_answer(
        StatusCode::OK,
        &json!({
            "generation": live.gateway().generation(),
            "swaps": history.swaps(),
            "refused": history.refused(),
        }),
    )
}

#[derive(Debug, serde::Deserialize)]
struct ExplainQuery {
    method: Option<String>,
    path: Option<String>,
}

async fn explain(State(live): State<Arc<Live>>, Query(q): Query<ExplainQuery>) -> Response {
    let gw = live.gateway();
    let (Some(method), Some(target)) = (q.method, q.path) else {
        return json_answer(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "give the request as ?method=GET&path=/v1/... (the path may carry its query)" }),
        );
    };
    match explanation(&gw, &method, &target) {
        Ok(value) => json_answer(StatusCode::OK, &value),
        Err(message) => json_answer(StatusCode::BAD_REQUEST, &json!({ "error": message })),
    }
}

/// What the gateway would do with `method target`, as JSON; the CLI's
/// `protogate explain` prints the same.
///
/// # Errors
/// The method or path is not one a request could carry.
pub fn explanation(gw: &Gateway, method: &str, target: &str) -> Result<Value, String> {
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{method:?} is not an HTTP method"))?;
    let uri: http::Uri = target
        .parse()
        .map_err(|e| format!("{target:?} is not a path: {e}"))?;
    let path = uri.path();
    let query = uri.query().unwrap_or_default();
    match gw.routes().lookup(&method, path) {
        Ok(found) => Ok(matched(gw, &found, query)),
        Err(LookupError::MethodNotAllowed { allowed, .. }) => Ok(json!({
            "matched": false,
            "reason": format!("the path is routed, but not for {method}"),
            "status": 405,
            "allow": allowed,
        })),
        Err(error) => Ok(json!({
            "matched": false,
            "reason": error.to_string(),
            "status": 404,
            "closest": closest(gw, path),
        })),
    }
}

fn matched(gw: &Gateway, found: &RouteMatch<'_, RoutePlan>, query: &str) -> Value {
    let plan = found.route;
    let route = &plan.route;
    let input = route.method.input();
    let path_variables: Vec<Value> = route
        .path_fields
        .iter()
        .zip(&found.values)
        .map(|(field, value)| json!({ "field": field.to_string(), "value": value }))
        .collect();
    let query_parameters: Vec<Value> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |raw: &str| {
                percent_encoding::percent_decode_str(&raw.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let (name, value) = (decode(name), decode(value));
            json!({ "name": name, "value": value, "field": resolve(&input, &name) })
        })
        .collect();
    // The gateway's own transcoding of the path and query, without a body:
    // the message it would send, or the 400 it would answer.
    let built = match crate::transcode::request(route, &found.values, Some(query), b"") {
        Ok(bytes) => prost_reflect::DynamicMessage::decode(input.clone(), bytes.as_slice())
            .map_err(|e| e.to_string())
            .and_then(|message| {
                message
                    .serialize_with_options(
                        serde_json::value::Serializer,
                        &prost_reflect::SerializeOptions::new(),
                    )
                    .map_err(|e| e.to_string())
            })
            .map_or_else(
                |e| json!({ "error": e }),
                |message| json!({ "message": message }),
            ),
        Err(error) => json!({ "status": 400, "error": error.to_string() }),
    };
    let body = match &route.body {
        BodyRule::None => "no body: the request message comes from the path and query".to_owned(),
        BodyRule::Whole => format!("the JSON body is the whole {} message", input.full_name()),
        BodyRule::Field(field) => format!("the JSON body is the field {field}"),
    };
    let deadline = plan
        .backends
        .targets()
        .iter()
        .map(|t| t.timeout)
        .max()
        .unwrap_or_default();
    json!({
        "matched": true,
        "route": route_view(gw, plan),
        "request_message": input.full_name(),
        "path_variables": path_variables,
        "query_parameters": query_parameters,
        "from_path_and_query": built,
        "body": body,
        "backend_choice": if plan.backends.targets().len() > 1 {
            "by weight, per request (traffic.override_header may name one)"
        } else {
            "the only backend"
        },
        "deadline": format!(
            "{} unless the client's Grpc-Timeout is shorter (capped at {})",
            humantime::format_duration(deadline),
            humantime::format_duration(plan.limits.max_grpc_timeout)
        ),
    })
}

/// The proto path of the field a query parameter names (dotted, by proto
/// or JSON names), or `None`.
fn resolve(message: &MessageDescriptor, name: &str) -> Option<String> {
    let mut current = message.clone();
    let mut path = Vec::new();
    let mut parts = name.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))?;
        path.push(field.name().to_owned());
        if parts.peek().is_some() {
            match field.kind() {
                Kind::Message(inner) => current = inner,
                _ => return None,
            }
        }
    }
    Some(path.join("."))
}

/// Up to three templates closest to `path`: most leading literal segments
/// in common, then fewest segments apart.
fn closest(gw: &Gateway, path: &str) -> Vec<String> {
    let wanted: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut scored: Vec<(usize, usize, String)> = gw
        .routes()
        .routes()
        .iter()
        .map(|plan| {
            let template = &plan.route.template.source;
            let segments: Vec<&str> = template.trim_matches('/').split('/').collect();
            let common = wanted
                .iter()
                .zip(&segments)
                .take_while(|(a, b)| a == b || b.starts_with('{') || **b == "*")
                .count();
            (
                common,
                segments.len().abs_diff(wanted.len()),
                format!("{} {template}", plan.route.http_method),
            )
        })
        .filter(|(common, _, _)| *common > 0)
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    scored.dedup_by(|a, b| a.2 == b.2);
    scored.into_iter().take(3).map(|(_, _, t)| t).collect()
}

async fn config(State(live): State<Arc<Live>>) -> Response {
    let gw = live.gateway();
    let config = gw.config();
    let (mut effective, defaulted) = crate::config::effective::effective(&config.written);
    // `--listen` overrides the file.
    if let Some(server) = effective.get_mut("server").and_then(Value::as_object_mut) {
        server.insert("listen".into(), config.listen.to_string().into());
    }
    json_answer(
        StatusCode::OK,
        &json!({
            "source": config.source.display().to_string(),
            "generation": gw.generation(),
            "loaded_at": humantime::format_rfc3339_seconds(gw.loaded_at()).to_string(),
            "config": effective,
            "defaulted": defaulted,
        }),
    )
}
