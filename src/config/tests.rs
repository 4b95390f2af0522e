//! Loading whole files: defaults, paths, and errors that name the file, the
//! key and the problem.

use super::*;

const MINIMAL: &str = "
descriptors:
  include: [protos]
  protos: [a.proto]
backends:
  users:
    address: http://127.0.0.1:50051
    services: [shop.user.v1.UserService]
";

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL, Path::new("/etc/pg/gateway.yaml")).unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.descriptors.include, vec![PathBuf::from("/etc/pg/protos")]);
    assert_eq!(c.backends[0].timeout, DEFAULT_TIMEOUT);
    assert_eq!(c.transcode.unknown_query_parameters, UnknownFields::Reject);
    assert_eq!(c.transcode.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert!(!c.strict_descriptors);
}

#[test]
fn descriptors_strict_is_read() {
    for (strict, want) in [("true", true), ("false", false)] {
        let text = MINIMAL.replace(
            "  protos: [a.proto]\n",
            &format!("  protos: [a.proto]\n  strict: {strict}\n"),
        );
        let c = parse(&text, Path::new("gateway.yaml")).unwrap();
        assert_eq!(c.strict_descriptors, want, "strict: {strict}");
    }
}

#[test]
fn errors_name_file_key_and_problem() {
    for (text, want) in [
        (
            MINIMAL.replace("address:", "adress:"),
            "gateway.yaml: backends.users: unknown field `adress`",
        ),
        (
            MINIMAL.replace("http://127.0.0.1:50051", "127.0.0.1:50051"),
            "gateway.yaml: backends.users.address: \"127.0.0.1:50051\" must look like http://host:port",
        ),
        (
            format!("{MINIMAL}server:\n  listen: nowhere\n"),
            "gateway.yaml: server.listen: \"nowhere\" is not host:port",
        ),
        (
            format!("{MINIMAL}transcoding:\n  unknown_query_parameters: maybe\n"),
            "gateway.yaml: transcoding.unknown_query_parameters: unknown variant `maybe`",
        ),
        (
            MINIMAL.replace("shop.user.v1.UserService", "shop..User"),
            "gateway.yaml: backends.users.services: \"shop..User\" is not a service name",
        ),
        (
            format!(
                "{MINIMAL}  orders:\n    address: http://127.0.0.1:1\n    services: [a.B]\n    timeout: 0s\n"
            ),
            "gateway.yaml: backends.orders.timeout: must be greater than 0",
        ),
        (
            format!("{MINIMAL}methods:\n  a.B.C:\n    timeout: soon\n"),
            "gateway.yaml: methods.a.B.C.timeout:",
        ),
        (
            format!("{MINIMAL}metadata:\n  forward_request_headers: [Content-Type]\n"),
            "gateway.yaml: metadata.forward_request_headers: \"Content-Type\" is reserved",
        ),
        (
            format!("{MINIMAL}metadata:\n  forward_request_headers: [Authorization]\n"),
            "gateway.yaml: metadata.forward_request_headers: \"authorization\" is not forwarded by this list: on routes the gateway does not authenticate it is forwarded by default (metadata.forward_authorization)",
        ),
        (
            format!(
                "{MINIMAL}metadata:\n  forward_request_headers: [x-api-key]\nauth:\n  api_keys:\n    from: {{ header: x-api-key }}\n    keys: [{{ name: a, sha256: c8508ef6b8945d666ebda9da5ac196d24548fc98ba6eac51b11805cd15a6d4c8 }}]\n"
            ),
            "gateway.yaml: metadata.forward_request_headers: \"x-api-key\" carries a credential the gateway checks: it reaches backends only as the verified credential, with auth.forward.credentials",
        ),
        (
            "backends: {}\ndescriptors:\n  protos: [a.proto]\n".to_owned(),
            "gateway.yaml: backends: define at least one backend",
        ),
        (
            MINIMAL.replace(
                "address: http://127.0.0.1:50051",
                "address: http://127.0.0.1:50051\n    endpoints: [http://127.0.0.1:1]",
            ),
            "gateway.yaml: backends.users: give `address` or `endpoints`, not both",
        ),
        (
            MINIMAL.replace(
                "address: http://127.0.0.1:50051",
                "endpoints: [http://127.0.0.1:1, http://127.0.0.1:1]",
            ),
            "gateway.yaml: backends.users.endpoints: \"http://127.0.0.1:1\" is listed twice",
        ),
        (
            MINIMAL.replace("http://127.0.0.1:50051", "http://users.internal"),
            "gateway.yaml: backends.users.address: \"http://users.internal\" must look like http://host:port",
        ),
        (
            MINIMAL.replace("services: [shop.user.v1.UserService]", "services: []"),
            "gateway.yaml: backends.users.services: list at least one service (or set `reflection: true`",
        ),
        (
            format!("{MINIMAL}    weight: 0\n"),
            "gateway.yaml: backends.users.weight: must be between 1 and 10000",
        ),
        (
            format!("{MINIMAL}    balance: random\n"),
            "gateway.yaml: backends.users.balance: unknown variant `random`",
        ),
        (
            format!("{MINIMAL}    health_check: {{ unhealthy_threshold: 0 }}\n"),
            "gateway.yaml: backends.users.health_check.unhealthy_threshold: must be greater than 0",
        ),
        (
            format!("{MINIMAL}apis:\n  - services: [shop.*]\n    prefix: api\n"),
            "gateway.yaml: apis[0].prefix: \"api\" must be literal path segments",
        ),
        (
            format!("{MINIMAL}apis:\n  - services: [shop.*]\n    prefix: /a/{{x}}\n"),
            "gateway.yaml: apis[0].prefix: \"/a/{x}\" must be literal path segments",
        ),
        (
            format!("{MINIMAL}apis:\n  - services: [shop.*]\n    deprecated: {{ since: soon }}\n"),
            "gateway.yaml: apis[0].deprecated.since: \"soon\" is not a date",
        ),
        (
            format!(
                "{MINIMAL}apis:\n  - services: [shop.*]\n    deprecated: {{ since: 2027-01-01, sunset: 2026-01-01 }}\n"
            ),
            "gateway.yaml: apis[0].deprecated.sunset: comes before `since`",
        ),
        (
            format!(
                "{MINIMAL}apis:\n  - services: [shop.*]\n    deprecated: {{ since: 2027-01-01, successor: \"<x>\" }}\n"
            ),
            "gateway.yaml: apis[0].deprecated.successor: \"<x>\" is not a URL or path",
        ),
        (
            format!("{MINIMAL}http:\n  rules:\n    - selector: Get\n      get: /x\n"),
            "gateway.yaml: http.rules[0].selector: \"Get\" is not a method name",
        ),
        (
            format!(
                "{MINIMAL}http:\n  rules:\n    - {{ selector: a.B.C, get: /x }}\n    - {{ selector: a.B.C, get: /y }}\n"
            ),
            "gateway.yaml: http.rules[1].selector: a.B.C has two rules",
        ),
        (
            format!("{MINIMAL}traffic:\n  override_header: \"bad header\"\n"),
            "gateway.yaml: traffic.override_header: \"bad header\" is not a valid header name",
        ),
    ] {
        let got = parse(&text, Path::new("gateway.yaml"))
            .unwrap_err()
            .to_string();
        assert!(got.starts_with(want), "got {got:?}\nwant prefix {want:?}");
    }
}

#[test]
fn reflection_backends_need_no_protos_or_services() {
    let text = "backends:\n  users:\n    endpoints: [http://127.0.0.1:1, http://localhost:2]\n    reflection: true\n";
    let c = parse(text, Path::new("gateway.yaml")).unwrap();
    let users = &c.backends[0];
    assert!(users.reflection && users.services.is_empty());
    assert_eq!(users.endpoints.len(), 2);
    assert_eq!(users.balance, Balance::P2c);
    assert!(!users.required && users.health_check.is_none());
    assert_eq!(users.outlier, OutlierOptions::default());
    let err = parse(
        &text.replace("reflection: true", "services: [a.B]"),
        Path::new("gateway.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("gateway.yaml: descriptors:"), "{err}");
}

#[test]
fn required_backends_get_the_default_health_checks() {
    let backend = "backends:\n  users:\n    address: http://127.0.0.1:1\n    reflection: true\n";
    for (extra, want) in [
        ("", None),
        ("    required: false\n", None),
        ("    required: true\n", Some((Duration::from_secs(5), 2))),
        (
            "    required: true\n    health_check: { interval: 1s, unhealthy_threshold: 3 }\n",
            Some((Duration::from_secs(1), 3)),
        ),
    ] {
        let c = parse(&format!("{backend}{extra}"), Path::new("gateway.yaml")).unwrap();
        let got = c.backends[0]
            .health_check
            .as_ref()
            .map(|h| (h.interval, h.unhealthy_threshold));
        assert_eq!(got, want, "{extra:?}");
    }
}

#[test]
fn reflection_refresh_needs_reflection_and_a_period() {
    let backend =
        |extra: &str| format!("backends:\n  users:\n    address: http://127.0.0.1:1\n{extra}");
    for (extra, want) in [
        ("    reflection: true\n", Ok(None)),
        (
            "    reflection: true\n    reflection_refresh: 30s\n",
            Ok(Some(Duration::from_secs(30))),
        ),
        (
            "    reflection: true\n    reflection_refresh: 0s\n",
            Err("backends.users.reflection_refresh"),
        ),
        (
            "    services: [a.B]\n    reflection_refresh: 30s\n",
            Err("only a backend with `reflection: true` is refreshed"),
        ),
    ] {
        let got = parse(&backend(extra), Path::new("gateway.yaml"));
        match (got, want) {
            (Ok(c), Ok(want)) => assert_eq!(c.backends[0].reflection_refresh, want, "{extra:?}"),
            (Err(e), Err(want)) => {
                let e = format!("{e:#}");
                assert!(e.contains(want), "{extra:?}: {e}");
            }
            (got, want) => panic!("{extra:?}: {got:?} instead of {want:?}"),
        }
    }
    let c = parse(
        &backend("    reflection: true\n"),
        Path::new("gateway.yaml"),
    )
    .unwrap();
    assert!(!c.reload.refuse_breaking);
    let c = parse(
        &format!(
            "{}reload:\n  refuse_breaking: true\n",
            backend("    reflection: true\n")
        ),
        Path::new("gateway.yaml"),
    )
    .unwrap();
    assert!(c.reload.refuse_breaking);
}

#[test]
fn drain_delay_defaults_to_zero() {
    for (server, want) in [
        ("", Duration::ZERO),
        ("server:\n  drain_delay: 5s\n", Duration::from_secs(5)),
        ("server:\n  drain_delay: 0s\n", Duration::ZERO),
    ] {
        let text = format!(
            "{server}backends:\n  users:\n    address: http://127.0.0.1:1\n    reflection: true\n"
        );
        let c = parse(&text, Path::new("gateway.yaml")).unwrap();
        assert_eq!(c.drain_delay, want, "{server:?}");
    }
}

#[test]
fn range_errors_name_the_key_and_the_line_of_the_value() {
    for (extra, want) in [
        (
            "    weight: 0\n",
            "backends.users.weight: must be between 1 and 10000 at line 9 column 13",
        ),
        (
            "    retry: { attempts: 11 }\n",
            "backends.users.retry.attempts: must be between 1 and 10 at line 9 column 24",
        ),
        (
            "    outlier_detection:\n      failure_rate: 1.5\n",
            "backends.users.outlier_detection.failure_rate: must be between 0 and 1 at line 10 column 21",
        ),
        (
            "    max_response_bytes: 0\n",
            "backends.users.max_response_bytes: must be greater than 0 at line 9 column 25",
        ),
        (
            "server:\n  idle_timeout: 0s\n",
            "server.idle_timeout: must be greater than 0 at line 10 column 17",
        ),
        (
            "tracing:\n  sample_ratio: -0.5\n",
            "tracing.sample_ratio: must be between 0 and 1 at line 10 column 17",
        ),
        (
            "rate_limit:\n  by_caller: { requests: 0, per: 1s }\n",
            "rate_limit.by_caller.requests: must be greater than 0 at line 10 column 26",
        ),
    ] {
        let got = parse(&format!("{MINIMAL}{extra}"), Path::new("gateway.yaml"))
            .unwrap_err()
            .to_string();
        assert_eq!(got, format!("gateway.yaml: {want}"), "{extra:?}");
    }
}

#[test]
fn header_names_are_checked_where_they_are_written() {
    for (extra, want) in [
        (
            "traffic:\n  override_header: \"bad header\"\n",
            "traffic.override_header: \"bad header\" is not a valid header name at line 10 column 20",
        ),
        (
            "cors:\n  allowed_origins: [\"https://a.example\"]\n  allowed_headers: [x-ok, \"x bad\"]\n",
            "cors.allowed_headers[1]: \"x bad\" is not a valid header name at line 11 column 27",
        ),
    ] {
        let got = parse(&format!("{MINIMAL}{extra}"), Path::new("gateway.yaml"))
            .unwrap_err()
            .to_string();
        assert_eq!(got, format!("gateway.yaml: {want}"), "{extra:?}");
    }
    let c = parse(
        &format!(
            "{MINIMAL}cors:\n  allowed_origins: [\"https://a.example\"]\n  expose_headers: [X-Total-Count]\n"
        ),
        Path::new("gateway.yaml"),
    )
    .unwrap();
    assert_eq!(c.cors.unwrap().expose_headers, ["x-total-count"]);
}

#[test]
fn the_committed_json_schema_is_the_generated_one() {
    let committed = include_str!("../../docs/gateway.schema.json");
    assert!(
        committed == super::json_schema(),
        "docs/gateway.schema.json is stale: cargo run -q -- config-schema > docs/gateway.schema.json"
    );
    let schema: serde_json::Value = serde_json::from_str(committed).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let backend = &schema["$defs"]["BackendSection"];
    // Unknown keys are errors in the file, so they are in the schema.
    assert_eq!(backend["additionalProperties"], false);
    assert!(
        backend["properties"]["reflection_refresh"]["description"]
            .as_str()
            .unwrap()
            .contains("period")
    );
    assert_eq!(schema["required"], serde_json::json!(["backends"]));
}
