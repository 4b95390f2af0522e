//! The README's configuration table (`| key | what | default |`) checked
//! against the defaults of a [`Config`] read from a minimal file, so the
//! documented defaults cannot drift from the code.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;

/// Each row's first key, and the backticked values of its default cell.
fn readme_rows(readme: &str) -> BTreeMap<String, Vec<String>> {
    let table = readme
        .split("| key | what | default |")
        .nth(1)
        .expect("README has the configuration table");
    let mut rows = BTreeMap::new();
    for line in table.lines().skip(2) {
        let Some(line) = line.strip_prefix('|') else {
            break;
        };
        let cells: Vec<&str> = line.split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 3, "three cells: {line}");
        let key = backticked(cells[0]).into_iter().next().expect("a key");
        let default = backticked(cells[2].trim_end_matches('|'));
        assert!(rows.insert(key.clone(), default).is_none(), "{key} twice");
    }
    rows
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn d(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn s(value: impl ToString) -> String {
    value.to_string()
}

/// One value for keys that share a row and a default (`false`), else each.
fn shared(values: &[String]) -> Vec<String> {
    if values.windows(2).all(|w| w[0] == w[1]) {
        values[..1].to_vec()
    } else {
        values.to_vec()
    }
}

/// A default of none is a cell without a backticked value.
fn none(is_none: bool) -> Vec<String> {
    if is_none {
        Vec::new()
    } else {
        vec!["(set by default)".into()]
    }
}

/// The values of a row whose first default is in words (off, none) when
/// that holds; else a value no cell has, so the row fails.
fn off_then(off: bool, values: impl FnOnce() -> Vec<String>) -> Option<Vec<String>> {
    Some(if off {
        values()
    } else {
        vec!["(not off by default)".into()]
    })
}

fn unknown(u: UnknownFields) -> String {
    match u {
        UnknownFields::Reject => "reject",
        UnknownFields::Ignore => "ignore",
    }
    .into()
}

#[test]
fn readme_defaults_are_the_defaults_of_the_code() {
    let backend = "backends:\n  b:\n    address: http://127.0.0.1:1\n    reflection: true\n";
    let c = parse(backend, Path::new("gateway.yaml")).unwrap();
    // Sections whose defaults apply once the section is there.
    let set = parse(
        &format!(
            "{backend}    health_check: {{}}\n    retry: {{}}\n    outlier_detection: {{}}\n\
             cors:\n  allowed_origins: [https://app.example]\n\
             server:\n  tls: {{ cert: c.pem, key: k.pem, client_ca: ca.pem }}\n"
        ),
        Path::new("gateway.yaml"),
    )
    .unwrap();
    let b = &c.backends[0];
    let health = set.backends[0].health_check.clone().unwrap();
    let retry = &set.backends[0].retry;
    let o = &set.backends[0].outlier;
    let cors = set.cors.clone().unwrap();
    let t = &c.transcode;
    let join = |list: Vec<String>| list.join(", ");

    // `None`: the default is said in words (no value to compare).
    let code: Vec<(&str, Option<Vec<String>>)> = vec![
        ("server.listen", Some(vec![s(c.listen)])),
        ("server.max_grpc_timeout", Some(vec![d(c.max_grpc_timeout)])),
        ("server.drain_delay", Some(vec![d(c.drain_delay)])),
        ("server.shutdown_grace", Some(vec![d(c.shutdown_grace)])),
        (
            "server.header_read_timeout",
            Some(vec![d(c.edge.header_read_timeout)]),
        ),
        ("server.idle_timeout", Some(vec![d(c.edge.idle_timeout)])),
        (
            "server.max_uri_bytes",
            Some(vec![s(c.edge.max_uri_bytes), s(c.edge.max_header_bytes)]),
        ),
        (
            "server.max_concurrent_requests",
            Some(vec![s(c.edge.max_concurrent_requests)]),
        ),
        ("server.compression", Some(vec![s(c.edge.compression)])),
        ("server.request_id", Some(vec![s(c.edge.request_id)])),
        ("server.tls.cert", Some(none(c.tls.is_none()))),
        (
            "server.tls.client_ca",
            Some(vec![s(set.tls.unwrap().client_cert_optional)]),
        ),
        (
            "rate_limit.by_caller",
            Some(none(c.rate_limit.by_caller.is_none())),
        ),
        (
            "rate_limit.by_address",
            Some(none(c.rate_limit.by_address.is_none())),
        ),
        (
            "rate_limit.store.redis",
            off_then(c.rate_limit.store.is_none(), || {
                let store = parse(
                    "descriptors:\n  protos: [a.proto]\nbackends:\n  b:\n    address: http://127.0.0.1:1\n    services: [a.B]\nrate_limit:\n  store: { redis: { url: \"redis://127.0.0.1:6379\" } }\n",
                    Path::new("gateway.yaml"),
                )
                .unwrap()
                .rate_limit
                .store
                .unwrap();
                vec![store.key_prefix, d(store.timeout)]
            }),
        ),
        (
            "rate_limit.on_store_error",
            Some(vec![s(match c.rate_limit.on_store_error {
                super::OnStoreError::Allow => "allow",
                super::OnStoreError::Deny => "deny",
                super::OnStoreError::Local => "local",
            })]),
        ),
        ("cors.allowed_origins", Some(none(c.cors.is_none()))),
        (
            "cors.allowed_methods",
            Some(
                [
                    vec![
                        join(cors.allowed_methods.iter().map(s).collect()),
                        join(cors.allowed_headers.iter().map(s).collect()),
                    ],
                    // What the CORS layer always exposes besides the list.
                    if cors.expose_headers.is_empty() {
                        vec![s("x-request-id"), s("deprecation"), s("sunset")]
                    } else {
                        cors.expose_headers.iter().map(s).collect()
                    },
                    vec![s(cors.allow_credentials), d(cors.max_age)],
                ]
                .concat(),
            ),
        ),
        (
            "descriptors.include",
            Some(none(c.descriptors.include.is_empty())),
        ),
        (
            "descriptors.protos",
            Some(none(c.descriptors.protos.is_empty())),
        ),
        (
            "descriptors.cache_dir",
            Some(none(
                c.descriptor_cache.is_none() || std::env::var_os(DESCRIPTOR_CACHE_ENV).is_some(),
            )),
        ),
        ("descriptors.strict", Some(vec![s(c.strict_descriptors)])),
        (
            "descriptors.descriptor_sets",
            Some(none(c.descriptors.descriptor_sets.is_empty())),
        ),
        ("backends.<name>.address", None),
        ("backends.<name>.endpoints", None),
        (
            "backends.<name>.discovery.etcd",
            off_then(b.discovery.is_none(), || {
                let etcd = parse(
                    "descriptors:\n  protos: [a.proto]\nbackends:\n  b:\n    discovery: { etcd: { endpoints: [\"http://127.0.0.1:2379\"], prefix: /s/ } }\n    services: [a.B]\n",
                    Path::new("gateway.yaml"),
                )
                .unwrap()
                .backends
                .remove(0)
                .discovery
                .unwrap();
                vec![d(etcd.timeout)]
            }),
        ),
        ("backends.<name>.services", None),
        (
            "backends.<name>.reflection",
            Some(vec![s(parse(
                &format!(
                    "descriptors:\n  protos: [a.proto]\n{}",
                    backend.replace("reflection: true", "services: [a.B]")
                ),
                Path::new("gateway.yaml"),
            )
            .unwrap()
            .backends[0]
                .reflection)]),
        ),
        (
            "backends.<name>.balance",
            Some(vec![s(match b.balance {
                Balance::P2c => "p2c",
                Balance::RoundRobin => "round_robin",
            })]),
        ),
        ("backends.<name>.weight", Some(none(b.weight.is_none()))),
        (
            "backends.<name>.reflection_refresh",
            Some(none(b.reflection_refresh.is_none())),
        ),
        (
            "backends.<name>.health_check",
            off_then(b.health_check.is_none(), || {
                vec![
                    d(health.interval),
                    d(health.timeout),
                    format!("{:?}", health.service),
                    s(health.unhealthy_threshold),
                    s(health.healthy_threshold),
                ]
            }),
        ),
        (
            "backends.<name>.outlier_detection",
            off_then(b.outlier == *o, || {
                vec![
                    s(o.consecutive_failures),
                    s(o.failure_rate),
                    s(o.minimum_calls),
                    d(o.window),
                    d(o.ejection_time),
                    s(o.fail_open),
                ]
            }),
        ),
        (
            "backends.<name>.tls",
            Some(none(BackendTls::default().ca.is_none())),
        ),
        ("backends.<name>.dns_refresh", Some(vec![d(b.dns_refresh)])),
        ("backends.<name>.required", Some(vec![s(b.required)])),
        (
            "backends.<name>.retry",
            off_then(b.retry.attempts == 1, || {
                vec![
                    s(retry.attempts),
                    d(retry.backoff),
                    d(retry.max_backoff),
                    s(retry.budget),
                ]
            }),
        ),
        ("backends.<name>.timeout", Some(vec![d(b.timeout)])),
        (
            "backends.<name>.connect_timeout",
            Some(vec![d(b.connect_timeout)]),
        ),
        (
            "backends.<name>.max_response_bytes",
            Some(vec![s(b.max_response_bytes)]),
        ),
        (
            "transcoding.json.emit_unpopulated",
            Some(shared(&[
                s(t.json.emit_unpopulated),
                s(t.json.use_proto_names),
                s(t.json.enums_as_ints),
            ])),
        ),
        (
            "transcoding.unknown_query_parameters",
            Some(shared(&[
                unknown(t.unknown_query_parameters),
                unknown(t.unknown_json_fields),
            ])),
        ),
        (
            "transcoding.max_body_bytes",
            Some(vec![s(t.max_body_bytes)]),
        ),
        (
            "transcoding.match_encoded_slashes",
            Some(vec![s(t.match_encoded_slashes)]),
        ),
        (
            "transcoding.forward_debug_info",
            Some(vec![s(t.forward_debug_info)]),
        ),
        (
            "transcoding.fallback_routes",
            Some(vec![s(t.fallback_routes)]),
        ),
        ("apis[].services", Some(none(c.apis.is_empty()))),
        ("http.rules[]", Some(none(c.http_rules.is_empty()))),
        (
            "traffic.override_header",
            Some(none(c.traffic.override_header.is_none())),
        ),
        (
            "reload.watch",
            Some(vec![s(c.reload.watch), d(c.reload.debounce)]),
        ),
        (
            "reload.refuse_breaking",
            Some(vec![s(c.reload.refuse_breaking)]),
        ),
        ("admin.listen", Some(none(c.admin.listen.is_none()))),
        ("reflection_server", Some(vec![s(c.reflection_server)])),
        ("protocols.grpc", Some(vec![s(c.protocols.grpc)])),
        ("protocols.grpc_web", Some(vec![s(c.protocols.grpc_web)])),
        ("protocols.connect", Some(vec![s(c.protocols.connect)])),
        ("mcp.enabled", Some(vec![s(c.mcp.enabled), s(&c.mcp.path)])),
        ("mcp.tools", Some(none(c.mcp.tools.is_empty()))),
        (
            "mcp.max_stream_messages",
            Some(vec![s(c.mcp.max_stream_messages)]),
        ),
        ("admin.allow_remote", Some(vec![s(false)])),
        (
            "streaming.default_framing",
            Some(vec![s(match c.streaming.default_framing {
                Framing::Ndjson => "ndjson",
                Framing::Sse => "sse",
                Framing::Json => "json",
            })]),
        ),
        (
            "streaming.max_duration",
            Some(vec![
                d(c.streaming.max_duration),
                d(c.streaming.idle_timeout),
            ]),
        ),
        (
            "streaming.websocket_origins",
            Some(none(c.streaming.websocket_origins.is_empty())),
        ),
        (
            "tracing.otlp_endpoint",
            Some(none(c.tracing.otlp_endpoint.is_none())),
        ),
        (
            "tracing.service_name",
            Some(vec![
                c.tracing.service_name.clone(),
                s(c.tracing.sample_ratio),
            ]),
        ),
        (
            "metadata.forward_request_headers",
            Some(none(c.metadata.forward_request_headers.is_empty())),
        ),
        (
            "metadata.trust_forwarded_for",
            Some(vec![s(c.metadata.trust_forwarded_for)]),
        ),
        (
            "metadata.forward_authorization",
            Some(vec![s(c.metadata.forward_authorization)]),
        ),
        ("metadata.forwarded", Some(vec![s(c.metadata.forwarded)])),
        ("openapi.enabled", Some(vec![s(c.openapi.enabled)])),
        (
            "openapi.title",
            off_then(c.openapi.description.is_none(), || {
                vec![c.openapi.title.clone(), c.openapi.version.clone()]
            }),
        ),
        ("openapi.servers", Some(none(c.openapi.servers.is_empty()))),
        (
            "auth.*",
            Some(none(c.auth.jwt.is_empty() && c.auth.api_keys.is_none())),
        ),
        ("methods.<pkg.Service.Method>.timeout", None),
        ("methods.<pkg.Service.Method>.idempotent", None),
        (
            "methods.<pkg.Service.Method>.cache_control",
            Some(none(MethodOverrides::default().cache_control.is_none())),
        ),
        ("methods.<pkg.Service.Method>.validation", None),
        (
            "methods.<pkg.Service.Method>.patch_update_mask",
            Some(vec![s(MethodOverrides::default()
                .patch_update_mask
                .unwrap_or(true))]),
        ),
        (
            "methods.<pkg.Service.Method>.status",
            Some(vec!["name".to_owned()]),
        ),
        (
            "validation.enabled",
            Some(vec![
                s(c.validation.enabled),
                match c.validation.output_only {
                    super::validation::OutputOnly::Drop => "drop".to_owned(),
                    super::validation::OutputOnly::Reject => "reject".to_owned(),
                },
            ]),
        ),
        (
            "transcoding.conventional_status",
            Some(vec![s(t.conventional_status)]),
        ),
    ];

    let readme = readme_rows(include_str!("../../README.md"));
    for (key, want) in &code {
        let got = readme
            .get(*key)
            .unwrap_or_else(|| panic!("the README's config table has no row for {key}"));
        if let Some(want) = want {
            assert_eq!(got, want, "README default of {key}");
        }
    }
    for key in readme.keys() {
        assert!(
            code.iter().any(|(k, _)| k == key),
            "README row {key} is not checked against the code"
        );
    }
}
