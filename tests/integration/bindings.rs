//! Bindings that break `http.proto`'s rules (tests/fixtures/protos/mixed):
//! left out with an error log line and a metric while the rest is served;
//! `check` lists them and exits 1; `descriptors.strict` makes them fatal.

use std::process::Command;

use serde_json::Value;

use crate::support::{Stack, TempDir, client, root};

/// Left out of `mixed.proto`, as `check` prints them.
const LEFT_OUT: [&str; 4] = [
    r#"error: mixed.v1.Mixed.ByTags: GET /v1/tags/{tags}: path variable "tags" must name a singular scalar or enum field"#,
    r#"error: mixed.v1.Mixed.Create: POST /v1/mixed: body "nope": field "nope" does not exist in mixed.v1.Request"#,
    r#"error: mixed.v1.Mixed.Get: GET /v1/mixed/{missing}/x: path variable "missing": field "missing" does not exist in mixed.v1.Request"#,
    "error: mixed.v1.Mixed.Shadow: GET /v1/mixed/{id}: answers the same requests as GET /v1/mixed/{text} of mixed.v1.Mixed.Get, which keeps them",
];

/// A config serving `proto` (a fixture) from the probe at `backend`.
fn config(proto: &str, service: &str, backend: &str, strict: bool, extra: &str) -> String {
    format!(
        "descriptors:\n  include: [{}]\n  protos: [{proto}]\n  strict: {strict}\nbackends:\n  probe:\n    address: http://{backend}\n    services: [{service}]\nreload:\n  watch: false\n{extra}",
        root().join("tests/fixtures/protos").display()
    )
}

fn mixed(backend: &str, strict: bool) -> String {
    config(
        "mixed/v1/mixed.proto",
        "mixed.v1.Mixed",
        backend,
        strict,
        "",
    )
}

/// Runs the binary to its end: exit code, stdout, stderr.
fn protogate(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_protogate"))
        .args(args)
        .output()
        .expect("protogate runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `protogate_route_problems` samples of a metrics page, sorted.
fn route_problems(metrics: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("protogate_route_problems{"))
        .collect();
    lines.sort_unstable();
    lines
}

/// Issue "Correct on the wire": one bad annotation kept the gateway from starting.
#[tokio::test]
async fn good_bindings_are_served_beside_broken_ones() {
    let (probe_addr, _probe) = crate::probe::spawn().await;
    let dir = TempDir::new("bindings-serve");
    let path = dir.write_config(&mixed(&probe_addr.to_string(), false));
    let log = dir.0.join("stderr.log");
    let gateway = crate::support::spawn_gateway_logging(
        &path,
        &[],
        std::fs::File::create(&log).unwrap().into(),
    )
    .await;
    let http = client();
    let call = |method: reqwest::Method, path: &str, body: Option<&str>| {
        let mut request = http.request(method, format!("{}{path}", gateway.url));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        async move {
            let reply = request.send().await.unwrap();
            let status = reply.status().as_u16();
            let body = reply.bytes().await.unwrap();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };

    // The good bindings reach the backend.
    let (status, json) = call(reqwest::Method::GET, "/v1/mixed/hello", None).await;
    assert_eq!(
        (status, &json["text"]),
        (200, &Value::from("hello")),
        "{json}"
    );
    let (status, json) = call(
        reqwest::Method::POST,
        "/v1/mixed:echo",
        Some(r#"{"text":"hi"}"#),
    )
    .await;
    assert_eq!((status, &json["text"]), (200, &Value::from("hi")), "{json}");
    // The broken ones are not routes.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/tags/a"),
        (reqwest::Method::POST, "/v1/mixed"),
        (reqwest::Method::GET, "/v1/mixed/a/x"),
    ] {
        let (status, json) = call(method.clone(), path, None).await;
        assert_eq!(
            (status, &json["code"]),
            (404, &Value::from(5)),
            "{method} {path}: {json}"
        );
    }

    let metrics = http
        .get(format!("{}/metrics", gateway.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        route_problems(&metrics),
        [
            r#"protogate_route_problems{kind="conflict"} 1"#,
            r#"protogate_route_problems{kind="field"} 3"#,
            r#"protogate_route_problems{kind="rule"} 0"#,
            r#"protogate_route_problems{kind="template"} 0"#,
        ]
    );

    drop(gateway);
    let log = std::fs::read_to_string(&log).unwrap();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("binding left out of the route table"))
        .collect();
    assert_eq!(errors.len(), 4, "{log}");
    let by_tags = errors
        .iter()
        .find(|l| l.contains("method=mixed.v1.Mixed.ByTags"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(by_tags.contains("ERROR"), "{by_tags}");
    assert!(by_tags.contains("rule=GET /v1/tags/{tags}"), "{by_tags}");
    assert!(
        by_tags
            .contains(r#"reason=path variable "tags" must name a singular scalar or enum field"#),
        "{by_tags}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("duplicate binding routed once")),
        "{log}"
    );
}

#[test]
fn check_lists_left_out_bindings_and_exits_1() {
    let dir = TempDir::new("bindings-check");
    let path = dir.write_config(&mixed("127.0.0.1:1", false));
    let (code, stdout, stderr) = protogate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    for want in LEFT_OUT {
        assert!(lines.contains(&want), "want {want:?} in\n{stdout}");
    }
    assert!(
        lines.contains(
            &"warning: mixed.v1.Mixed.Get: GET /v1/mixed/{text}: repeats an earlier binding of the method exactly; routed once"
        ),
        "{stdout}"
    );
    let routes: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .filter(|cells: &Vec<&str>| cells.len() == 4 && cells[2].starts_with("mixed."))
        .collect();
    assert_eq!(
        routes,
        [
            ["GET", "/v1/mixed/{text}", "mixed.v1.Mixed.Get", "probe"],
            ["POST", "/v1/mixed:echo", "mixed.v1.Mixed.Echo", "probe"],
        ]
    );
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("2 routes, 4 binding(s) left out, config ")
            && last.ends_with("gateway.yaml is not valid"),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: 4 binding(s) cannot be routed"),
        "{stderr}"
    );
}

#[test]
fn check_warns_about_a_repeated_binding_and_exits_0() {
    let dir = TempDir::new("bindings-duplicate");
    let rules = "http:\n  rules:\n    - selector: probe.v1.Probe.Echo\n      post: /v1/echo\n      body: \"*\"\n      additional_bindings:\n        - post: /v1/echo\n          body: \"*\"\n";
    let path = dir.write_config(&config(
        "probe/v1/probe.proto",
        "probe.v1.Probe",
        "127.0.0.1:1",
        false,
        rules,
    ));
    let (code, stdout, stderr) = protogate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|l| l
            == "warning: probe.v1.Probe.Echo: POST /v1/echo: repeats an earlier binding of the method exactly; routed once"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("6 routes, 1 warning(s), config ") && last.ends_with("is valid"),
        "{stdout}"
    );
}

#[test]
fn strict_serve_refuses_to_start_and_lists_the_bindings() {
    let dir = TempDir::new("bindings-strict");
    let path = dir.write_config(&mixed("127.0.0.1:1", true));
    let (code, _, stderr) = protogate(&[
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "invalid routes: descriptors.strict is on and these bindings cannot be routed:"
        ),
        "{stderr}"
    );
    for want in LEFT_OUT {
        let problem = want.trim_start_matches("error: ");
        assert!(
            stderr.contains(&format!("\n  {problem}")),
            "want {problem:?} in\n{stderr}"
        );
    }
    // Warnings stay warnings.
    assert!(!stderr.contains("repeats an earlier binding"), "{stderr}");
}

#[tokio::test]
async fn strict_reload_with_problems_keeps_the_running_config() {
    let (probe_addr, _probe) = crate::probe::spawn().await;
    let backend = probe_addr.to_string();
    let dir = TempDir::new("bindings-reload");
    let probe = |strict| {
        config(
            "probe/v1/probe.proto",
            "probe.v1.Probe",
            &backend,
            strict,
            "",
        )
    };
    let path = dir.write_config(&probe(true));
    let (stack, live) = Stack::in_process_live(protogate::config::load(&path).unwrap()).await;
    let echo = || stack.call("POST", "/v1/echo", Some(r#"{"text":"up"}"#));
    let problems = || async { stack.get_text("/metrics").await.2 };

    dir.write_config(&mixed(&backend, true));
    let err = format!("{:#}", live.reload().await.map(|_| ()).unwrap_err());
    assert!(err.contains("descriptors.strict is on"), "{err}");
    assert!(err.contains("mixed.v1.Mixed.ByTags"), "{err}");
    assert_eq!(live.gateway().generation(), 1);
    assert_eq!(echo().await.status, 200);

    // Without strict the same file loads, its problems counted...
    dir.write_config(&mixed(&backend, false));
    assert_eq!(live.reload().await.unwrap().generation(), 2);
    assert_eq!(stack.get("/v1/mixed/x").await.json["text"], "x");
    let metrics = problems().await;
    assert!(
        route_problems(&metrics).contains(&r#"protogate_route_problems{kind="field"} 3"#),
        "{metrics}"
    );
    // ...and back to 0 once a config without them is loaded.
    dir.write_config(&probe(false));
    assert_eq!(live.reload().await.unwrap().generation(), 3);
    let metrics = problems().await;
    assert!(
        route_problems(&metrics).iter().all(|l| l.ends_with(" 0")),
        "{metrics}"
    );
}
