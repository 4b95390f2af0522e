//! OpenTelemetry span export: the gateway binary sends its request spans to
//! a real OTLP collector (a tonic server here), continuing the client's
//! trace and passing its own span to the backend as the parent.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};

use crate::support::{GatewayProcess, TempDir, client, eventually, root, spawn_gateway_with_env};

/// Keeps every export request it receives.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(self.clone()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        format!("http://{addr}")
    }

    /// Spans received so far, with their resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let received = self.received.lock().unwrap();
        let mut out = Vec::new();
        for request in received.iter() {
            for resource in &request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .and_then(|a| a.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(AnyValue::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        out.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.clone())
}

/// A collector, the probe backend and the gateway binary exporting to the
/// collector in batches every `batch_ms`; `extra` is more config.
struct Traced {
    collector: Collector,
    gateway: GatewayProcess,
    probe: crate::probe::Probe,
    _dir: TempDir,
}

impl Traced {
    async fn start(extra: &str, batch_ms: &str) -> Self {
        let collector = Collector::default();
        let endpoint = collector.start().await;
        let (probe_addr, probe) = crate::probe::spawn().await;
        let dir = TempDir::new("otlp");
        let config = dir.write_config(&format!(
            "descriptors:\n  include: [{}]\n  protos: [probe/v1/probe.proto]\nbackends:\n  probe:\n    address: http://{probe_addr}\n    services: [probe.v1.Probe]\ntracing:\n  otlp_endpoint: {endpoint}\n{extra}",
            root().join("tests/fixtures/protos").display()
        ));
        let gateway =
            spawn_gateway_with_env(&config, &[("OTEL_BSP_SCHEDULE_DELAY", batch_ms)]).await;
        Self {
            collector,
            gateway,
            probe,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn request_spans_are_exported_and_parent_the_backend_call() {
    // Batches every 100ms instead of 5s, so the test need not wait.
    let traced = Traced::start("  service_name: edge-test\n", "100").await;
    let (collector, gateway) = (&traced.collector, &traced.gateway);
    let http = client();

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let reply: serde_json::Value = serde_json::from_str(
        &http
            .post(format!("{}/v1/echo", gateway.url))
            .header("traceparent", format!("00-{trace}-{client_span}-01"))
            .body(r#"{"text":"traced"}"#)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    // The backend's parent is the gateway's span, in the client's trace.
    let forwarded = reply["metadata"]["traceparent"]
        .as_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = forwarded.split('-').collect();
    assert_eq!(parts.len(), 4, "{forwarded}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", trace, "01"));
    assert_ne!(parts[2], client_span, "a new span id: {forwarded}");
    assert!(
        reply["metadata"].get("tracestate").is_none(),
        "no empty tracestate: {reply}"
    );

    // A request without trace context starts a trace of its own.
    let status = http
        .get(format!("{}/v1/echo/untraced", gateway.url))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_client_error() || status.is_success(), "{status}");

    eventually(10, "both request spans reach the collector", || async {
        collector
            .spans()
            .iter()
            .filter(|(_, s)| s.kind == SpanKind::Server as i32)
            .count()
            >= 2
    })
    .await;
    let spans = collector.spans();
    let (service, span) = spans
        .iter()
        .find(|(_, s)| hex(&s.trace_id) == trace && s.kind == SpanKind::Server as i32)
        .expect("the server span of the traced request");
    assert_eq!(service, "edge-test");
    assert_eq!(span.name, "POST /v1/echo");
    assert_eq!(hex(&span.parent_span_id), client_span);
    // The backend call is a client span under it, and the backend's parent.
    let (_, call) = spans
        .iter()
        .find(|(_, s)| s.kind == SpanKind::Client as i32 && hex(&s.trace_id) == trace)
        .expect("the backend call's span");
    assert_eq!(call.name, "probe.v1.Probe/Echo");
    assert_eq!(call.parent_span_id, span.span_id);
    assert_eq!(hex(&call.span_id), parts[2], "the backend's parent");
    assert_eq!(
        attribute(call, "rpc.grpc.status_code"),
        Some(AnyValue::IntValue(0))
    );
    assert_eq!(
        attribute(call, "rpc.service"),
        Some(AnyValue::StringValue("probe.v1.Probe".into()))
    );
    assert_eq!(
        attribute(span, "http.response.status_code"),
        Some(AnyValue::IntValue(200))
    );
    assert_eq!(
        attribute(span, "http.route"),
        Some(AnyValue::StringValue("/v1/echo".into()))
    );
    let other = spans
        .iter()
        .find(|(_, s)| hex(&s.trace_id) != trace && s.kind == SpanKind::Server as i32)
        .expect("the untraced request's span");
    assert!(other.1.parent_span_id.is_empty(), "a root span");
}

#[tokio::test]
async fn sigterm_drains_requests_sends_queued_spans_and_exits_zero() {
    // Batches every 10 minutes: spans can only arrive by the shutdown's flush.
    let mut traced = Traced::start("server:\n  shutdown_grace: 5s\n", "600000").await;
    let collector = traced.collector.clone();
    let gateway = &mut traced.gateway;
    let http = client();
    let echo = |body: &'static str| {
        let (http, url) = (http.clone(), format!("{}/v1/echo", gateway.url));
        async move { http.post(url).body(body).send().await.unwrap().status() }
    };
    assert_eq!(echo(r#"{"text":"quick"}"#).await, 200);
    let slow = tokio::spawn(echo(r#"{"text":"slow","delayMs":"800"}"#));
    let probe = &traced.probe;
    eventually(30, "the slow call reaches the backend", || async {
        probe.echoes.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    let pid = gateway.process.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());

    // The request in flight finishes; the process then exits 0.
    assert_eq!(slow.await.unwrap(), 200);
    let mut exit = None;
    eventually(10, "the gateway exits after SIGTERM", || {
        let status = gateway.process.try_wait().unwrap();
        exit = status;
        async move { status.is_some() }
    })
    .await;
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "{exit:?}");
    let served = collector
        .spans()
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Server as i32)
        .count();
    assert_eq!(served, 2, "both request spans were sent at shutdown");
}

/// Issue 15: JSON log lines carry lists as arrays, and what a rejected
/// request sent (path, query, headers, body) never reaches the log.
#[tokio::test]
async fn issue_15_json_logs_hold_arrays_and_no_request_values() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("json-log");
    let yaml = crate::support::config_text(
        &format!(
            "  users:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n  users2:\n    address: http://{}\n    reflection: true\n",
            backends.users, backends.users_v2
        ),
        "",
    );
    let path = dir.write_config(&yaml);
    let log = dir.0.join("stderr.log");
    let gateway = crate::support::spawn_gateway_logging(
        &path,
        &[("PROTOGATE_LOG_FORMAT", "json")],
        std::fs::File::create(&log).unwrap().into(),
    )
    .await;
    let http = client();
    let url = |p: &str| format!("{}{p}", gateway.url);
    let rejected = [
        http.get(url("/v1/users?pageSize=secret-query")),
        http.get(url("/v1/secret-path/1")),
        http.delete(url("/v1/users")),
        http.get(url("/v1/users/1"))
            .header("grpc-timeout", "secret-header"),
        http.post(url("/v1/users"))
            .header("content-type", "application/json")
            .body(r#"{"user":{"displayName":"x","secretField":1}}"#),
        http.post(url("/v1/users"))
            .header("content-type", "application/json")
            .body(r#"{"user":{"displayName":secret-body}}"#),
        http.post(url("/v1/users"))
            .header("content-type", "text/secret-type")
            .body("x"),
    ];
    let count = rejected.len();
    let mut statuses = Vec::new();
    for request in rejected {
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [400, 404, 405, 400, 400, 400, 415]);

    let mut text = String::new();
    eventually(20, "every rejection is logged", || {
        text = std::fs::read_to_string(&log).unwrap();
        let n = text.matches("request rejected").count();
        async move { n == count }
    })
    .await;
    assert!(!text.to_lowercase().contains("secret"), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let loaded = lines
        .iter()
        .find(|l| l["fields"]["message"] == "descriptors loaded by reflection")
        .expect("the reflection line");
    let services = loaded["fields"]["services"]
        .as_array()
        .unwrap_or_else(|| panic!("services is an array: {loaded}"));
    assert!(
        services.iter().any(|s| s == "shop.user.v2.UserService"),
        "{loaded}"
    );
    // A rejection on a route names its template (from the request span).
    let on_route: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request rejected")
        .filter_map(|l| l["span"]["route"].as_str())
        .collect();
    assert!(on_route.contains(&"/v1/users"), "{text}");
}

/// Issue 16: a streaming call is a client span like a unary one, open for
/// the stream's life and carrying its final code.
#[tokio::test]
async fn issue_16_a_stream_is_a_client_span_under_the_request() {
    let traced = Traced::start("", "100").await;
    let (collector, gateway) = (&traced.collector, &traced.gateway);
    let trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let body = client()
        .get(format!("{}/v1/count?n=3", gateway.url))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.lines().count(), 3, "{body}");
    let in_trace = |kind: SpanKind| {
        collector
            .spans()
            .into_iter()
            .find(|(_, s)| s.kind == kind as i32 && hex(&s.trace_id) == trace)
            .map(|(_, s)| s)
    };
    eventually(10, "the stream's spans reach the collector", || async {
        in_trace(SpanKind::Server).is_some() && in_trace(SpanKind::Client).is_some()
    })
    .await;
    let (server, call) = (
        in_trace(SpanKind::Server).unwrap(),
        in_trace(SpanKind::Client).unwrap(),
    );
    assert_eq!(call.name, "probe.v1.Probe/Count");
    assert_eq!(call.parent_span_id, server.span_id);
    assert_eq!(
        attribute(&call, "rpc.grpc.status_code"),
        Some(AnyValue::IntValue(0))
    );
}
