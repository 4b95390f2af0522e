//! Logging and distributed tracing.
//!
//! Log lines go to stderr as text or JSON; `RUST_LOG` filters them (default
//! `info`). A server hands its lines to a thread that writes them in
//! batches, so a request's line is not a write to stderr of its own.
//! Request spans are opened by the handler; tokens, keys and bodies are
//! never logged.
//!
//! With `tracing.otlp_endpoint`, request spans are also OpenTelemetry server
//! spans exported over OTLP/gRPC: each continues the client's W3C trace
//! (`traceparent`) and is the parent the backend sees. `RUST_LOG` does not
//! decide what is exported. Without it, trace context goes to backends
//! unchanged and no span work is done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::TracingOptions;

mod json;

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether spans are exported: request spans then carry OpenTelemetry
/// fields and trace context is rewritten. Read on every request, so an
/// atomic rather than a lookup in the subscriber.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The one propagator: W3C trace context.
static PROPAGATOR: std::sync::LazyLock<TraceContextPropagator> =
    std::sync::LazyLock::new(TraceContextPropagator::new);

/// The tracer provider, when spans are exported; [`Telemetry::shutdown`]
/// sends what is still queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Writes out the buffered log lines when dropped.
    _lines: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Where log lines go: stderr itself, or (for a server) a thread that
/// writes them in batches, so a request's log line costs a queue push
/// rather than a write to stderr. The queue blocks when full instead of
/// dropping lines: a log reader that cannot keep up slows the gateway as a
/// full stderr pipe would.
fn stderr_lines(
    buffered: bool,
) -> (
    BoxMakeWriter,
    Option<tracing_appender::non_blocking::WorkerGuard>,
) {
    if !buffered {
        return (BoxMakeWriter::new(std::io::stderr), None);
    }
    let (lines, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("protogate-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    (BoxMakeWriter::new(lines), Some(guard))
}

/// Installs the global subscriber: log lines, and span export when
/// `tracing` names a collector. A second call changes nothing. Must run on
/// the tokio runtime (the exporter's channel lives there).
///
/// # Errors
/// The exporter cannot be built.
pub fn init(format: LogFormat, tracing: Option<&TracingOptions>) -> anyhow::Result<Telemetry> {
    // A server logs per request: its lines go through the writer thread.
    let (writer, guard) = stderr_lines(tracing.is_some());
    let provider = match tracing {
        Some(TracingOptions {
            otlp_endpoint: Some(endpoint),
            service_name,
            sample_ratio,
        }) => Some(provider(endpoint, service_name, *sample_ratio)?),
        _ => None,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: not in container logs or files.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let Some(exporting) = &provider else {
        // No export: one global filter, so spans RUST_LOG turns off cost
        // nothing at all.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colour)
            .with_writer(writer);
        let _ = match format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder
                .fmt_fields(JsonFields::new())
                .event_format(json::JsonLines)
                .try_init(),
        };
        return Ok(Telemetry {
            provider,
            _lines: guard,
        });
    };
    let export = tracing_opentelemetry::layer()
        .with_tracer(exporting.tracer("protogate"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        // Request spans are INFO: exported whatever RUST_LOG says.
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(json::JsonLines)
            .with_writer(writer)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(export)
        .try_init()
        .is_ok();
    if installed {
        EXPORTING.store(true, Ordering::Relaxed);
        if let Some(options) = tracing {
            tracing::info!(endpoint = ?options.otlp_endpoint, sample_ratio = options.sample_ratio, "exporting spans over OTLP");
        }
    }
    Ok(Telemetry {
        provider,
        _lines: guard,
    })
}

fn provider(endpoint: &str, service_name: &str, ratio: f64) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .context("cannot build the OTLP span exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        // Batches on a thread of its own; a full queue drops spans rather
        // than slowing requests.
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(resource)
        .build())
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter. Call after
    /// the server has drained, while the runtime still runs.
    pub async fn shutdown(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        // Blocks until the export thread is done; it needs this runtime's
        // channel task, so wait off the runtime's own threads.
        let done = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(Duration::from_secs(5))
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "spans not exported at shutdown"),
            Err(e) => tracing::warn!(error = %e, "span exporter shutdown failed"),
        }
    }
}

/// The span of one API request. When spans are exported it is an
/// OpenTelemetry server span whose parent is the client's `traceparent`.
pub fn request_span(method: &http::Method, headers: &HeaderMap) -> tracing::Span {
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !EXPORTING.load(Ordering::Relaxed) {
        return tracing::info_span!(
            "request",
            id = %request_id,
            method = %method,
            route = Empty,
            upstream = Empty,
            grpc_code = Empty,
        );
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        id = %request_id,
        method = %method,
        "http.request.method" = %method,
        "http.response.status_code" = Empty,
        route = Empty,
        "http.route" = Empty,
        upstream = Empty,
        grpc_code = Empty,
    );
    let parent = PROPAGATOR.extract(&Headers(headers));
    // Fails only when the span is disabled or already entered.
    let _ = span.set_parent(parent);
    span
}

/// Names the span after its route, `GET /v1/users/{id}`, once matched.
pub fn route_matched(span: &tracing::Span, method: &http::Method, template: &str) {
    span.record("route", template);
    if EXPORTING.load(Ordering::Relaxed) {
        span.record("http.route", template);
        span.context()
            .span()
            .update_name(format!("{method} {template}"));
    }
}

/// Records the answer's status on the span; 5xx marks it failed.
pub fn answered(span: &tracing::Span, status: http::StatusCode) {
    if EXPORTING.load(Ordering::Relaxed) {
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
}

/// The span of a unary backend call; an OpenTelemetry client span, named
/// `package.Service/Method`, when spans are exported.
pub fn upstream_span(backend: &str, grpc_path: &str) -> tracing::Span {
    if !EXPORTING.load(Ordering::Relaxed) {
        return tracing::info_span!("upstream", backend = %backend, method = %grpc_path);
    }
    let name = grpc_path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    tracing::info_span!(
        "upstream",
        otel.name = %name,
        otel.kind = "client",
        otel.status_code = Empty,
        backend = %backend,
        method = %grpc_path,
        "rpc.system" = "grpc",
        "rpc.service" = %service,
        "rpc.method" = %method,
        "rpc.grpc.status_code" = Empty,
    )
}

/// Records a backend call's gRPC code on its span.
pub fn upstream_done(span: &tracing::Span, code: tonic::Code) {
    if EXPORTING.load(Ordering::Relaxed) {
        span.record("rpc.grpc.status_code", code as i64);
        if code != tonic::Code::Ok {
            span.record("otel.status_code", "error");
        }
    }
}

/// Writes the current span's trace context into the backend's metadata,
/// replacing the client's, so the backend's spans are children of the
/// gateway's. Nothing happens when spans are not exported.
pub fn inject(headers: &mut HeaderMap) {
    if EXPORTING.load(Ordering::Relaxed) {
        PROPAGATOR.inject_context(
            &tracing::Span::current().context(),
            &mut HeadersMut(headers),
        );
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        // No empty `tracestate` when the client sent none.
        if value.is_empty() {
            self.0.remove(key);
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::try_from(value),
        ) {
            self.0.insert(name, value);
        }
    }
}
