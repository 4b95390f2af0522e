//! Versions side by side: the example's user API v1 (proto files) and v2
//! (descriptors by reflection) on two backends, v1 deprecated, path
//! prefixes, config HTTP rules and fallback routes.

use protogate::config::{ApiConfig, ServicePattern};
use serde_json::Value;

use crate::support::{
    Stack, TempDir, config_text, eventually, start_in_process, start_in_process_with,
};

#[tokio::test]
async fn v1_and_v2_are_served_side_by_side_from_two_backends() {
    let stack = start_in_process().await;
    let v1 = stack.get("/v1/users/1").await;
    assert_eq!(v1.status, 200);
    assert_eq!(v1.json["displayName"], "Ada Lovelace");
    let v2 = stack.get("/v2/users/1").await;
    assert_eq!(v2.status, 200, "{}", v2.json);
    assert_eq!(v2.json["givenName"], "Ada");
    assert_eq!(v2.json["familyName"], "Lovelace");
    assert_eq!(v2.json["status"], "USER_STATUS_ACTIVE");
    assert!(v2.json.get("displayName").is_none());
    let list = stack.get("/v2/users?pageSize=2").await;
    assert_eq!(list.json["users"].as_array().unwrap().len(), 2);

    // Given its route by `http.rules` in gateway.yaml: the proto has none.
    let deactivated = stack
        .call(
            "POST",
            "/v2/users/2:deactivate",
            Some(r#"{"reason":"left"}"#),
        )
        .await;
    assert_eq!(deactivated.status, 200, "{}", deactivated.json);
    assert_eq!(deactivated.json["status"], "USER_STATUS_DEACTIVATED");
    // Each version has its own backend and state.
    assert_eq!(
        stack.get("/v2/users/2").await.json["status"],
        "USER_STATUS_DEACTIVATED"
    );
    assert_eq!(stack.get("/v1/users/2").await.status, 200);
}

#[tokio::test]
async fn deprecated_version_says_so_on_every_answer_and_in_openapi() {
    let stack = start_in_process().await;
    for path in ["/v1/users/1", "/v1/users/999"] {
        let reply = stack.get(path).await;
        assert_eq!(reply.headers["deprecation"], "@1793491200", "{path}");
        assert_eq!(
            reply.headers["sunset"], "Wed, 30 Jun 2027 00:00:00 GMT",
            "{path}"
        );
        assert_eq!(
            reply.headers["link"], "</openapi/v2.json>; rel=\"successor-version\"",
            "{path}"
        );
    }
    let v2 = stack.get("/v2/users/1").await;
    assert!(v2.headers.get("deprecation").is_none());
    assert!(v2.headers.get("sunset").is_none());

    let doc = stack.get("/openapi.json").await.json;
    let op = |path: &str| doc["paths"][path]["get"].clone();
    assert_eq!(op("/v1/users/{id}")["deprecated"], true);
    assert_eq!(op("/v2/users/{id}")["deprecated"], Value::Null);
    let v2_doc = stack.get("/openapi/v2.json").await.json;
    assert!(v2_doc["paths"]["/v2/users/{id}:deactivate"]["post"].is_object());
}

#[tokio::test]
async fn prefix_mounts_an_api_under_a_path() {
    let stack = start_in_process_with(|c| {
        c.apis = vec![ApiConfig {
            services: vec![ServicePattern::Package("shop.user.v2".into())],
            prefix: Some("/api".into()),
            deprecation: None,
        }];
    })
    .await;
    assert_eq!(stack.get("/api/v2/users/1").await.json["givenName"], "Ada");
    assert_eq!(stack.get("/v2/users/1").await.status, 404);
    assert_eq!(stack.get("/v1/users/1").await.status, 200);
    let doc = stack.get("/openapi.json").await.json;
    assert!(doc["paths"]["/api/v2/users/{id}"].is_object());
}

#[tokio::test]
async fn reflection_only_backend_with_fallback_routes() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("reflection");
    // No proto names the v2 API; the backend tells.
    let yaml = config_text(
        &format!(
            "  users2:\n    address: http://{}\n    reflection: true\n",
            backends.users_v2
        ),
        "transcoding:\n  fallback_routes: true\n",
    );
    let config = protogate::config::load(&dir.write_config(&yaml)).unwrap();
    let stack = Stack::in_process(config).await;
    assert_eq!(stack.get("/v2/users/3").await.json["givenName"], "Alan");
    // DeactivateUser has no rule here: the fallback route reaches it.
    let reply = stack
        .call(
            "POST",
            "/shop.user.v2.UserService/DeactivateUser",
            Some(r#"{"id":"3"}"#),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.json["status"], "USER_STATUS_DEACTIVATED");
    // Annotated methods keep only their annotated routes.
    let reply = stack
        .call(
            "POST",
            "/shop.user.v2.UserService/GetUser",
            Some(r#"{"id":"3"}"#),
        )
        .await;
    assert_eq!(reply.status, 404);
    // The v1 protos still come from files beside it, but no backend serves them.
    assert_eq!(stack.get("/v1/users/1").await.status, 404);
}

#[tokio::test]
async fn issue_15_a_reflection_backend_down_at_start_is_retried_and_swapped_in() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = TempDir::new("reflection-late");
    let yaml = config_text(
        &format!(
            "  users2:\n    address: http://{closed_addr}\n    reflection: true\n    connect_timeout: 1s\n    required: true\n    health_check: {{ interval: 100ms, timeout: 500ms, unhealthy_threshold: 1 }}\n"
        ),
        "",
    );
    let config = protogate::config::load(&dir.write_config(&yaml)).unwrap();
    // The gateway starts all the same, without the backend's routes.
    let (stack, live) = Stack::in_process_live(config).await;
    let _watch = live.watch().unwrap();
    assert_eq!(stack.get("/v2/users/1").await.status, 404);
    let (status, _, ready) = stack.get_text("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["pending_reflection"], serde_json::json!(["users2"]));
    let (_, _, metrics) = stack.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"protogate_reflection_pending{backend="users2"} 1"#),
        "{metrics}"
    );

    // The backend comes up: its routes are swapped in by themselves.
    let _backends = shop::spawn(shop::Addresses {
        users_v2: closed_addr,
        ..Default::default()
    })
    .await
    .unwrap();
    eventually(60, "the v2 routes are served", || async {
        stack.get("/v2/users/1").await.status == 200
    })
    .await;
    assert_eq!(stack.get("/v2/users/1").await.json["givenName"], "Ada");
    eventually(30, "ready", || async {
        stack.get_text("/readyz").await.0 == 200
    })
    .await;
    let (_, _, metrics) = stack.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"protogate_reflection_pending{backend="users2"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"protogate_reflection_retries_total{backend="users2"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn issue_15_check_and_openapi_work_without_the_reflection_backend() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("reflection-offline");
    let yaml = config_text(
        &format!(
            "  users:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n  users2:\n    address: http://{closed_addr}\n    reflection: true\n    connect_timeout: 1s\n",
            backends.users
        ),
        "",
    );
    let path = dir.write_config(&yaml);
    let path = path.to_str().unwrap().to_owned();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_protogate"))
                .args(&args)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let args = |extra: &[&str]| -> Vec<String> {
        extra
            .iter()
            .map(|s| (*s).to_owned())
            .chain(["--config".to_owned(), path.clone()])
            .collect()
    };
    let (code, stdout, stderr) = run(args(&["check"])).await.unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("/v1/users/{id}"), "{stdout}");
    assert!(
        stdout.contains("warning: backend users2: reflection does not answer"),
        "{stdout}"
    );
    let (code, _, stderr) = run(args(&["check", "--require-reflection"])).await.unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("users2"), "{stderr}");

    let (code, stdout, stderr) = run(args(&["openapi"])).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(doc["paths"].get("/v1/users/{id}").is_some(), "{stdout}");
    let (code, _, _) = run(args(&["openapi", "--require-reflection"]))
        .await
        .unwrap();
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn issue_15_cached_descriptors_serve_a_reflection_backend_that_is_down() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let v2 = backends.users_v2;
    let dir = TempDir::new("reflection-cache");
    let yaml = config_text(
        &format!(
            "  users2:\n    address: http://{v2}\n    reflection: true\n    connect_timeout: 1s\n"
        ),
        "",
    )
    .replace("descriptors:\n", "descriptors:\n  cache_dir: cache\n");
    let path = dir.write_config(&yaml);
    // Up: its descriptors are kept.
    let gateway = protogate::Gateway::load(protogate::config::load(&path).unwrap())
        .await
        .unwrap();
    assert!(gateway.pending_reflection().is_empty());
    let cache = path.parent().unwrap().join("cache/users2.reflection.binpb");
    assert!(cache.exists(), "{}", cache.display());
    drop(gateway);

    // Down at the next start: its routes come from the cache (503: the
    // route is there, the backend is not), and readyz says so.
    drop(backends);
    let stack = Stack::in_process(protogate::config::load(&path).unwrap()).await;
    let reply = stack.get("/v2/users/1").await;
    assert_eq!(reply.status, 503, "{}", reply.json);
    let (_, _, ready) = stack.get_text("/readyz").await;
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(
        ready["cached_reflection"],
        serde_json::json!(["users2"]),
        "{ready}"
    );
    assert!(ready.get("pending_reflection").is_none(), "{ready}");

    // A corrupt cache is ignored: the backend is pending, nothing crashes.
    std::fs::write(&cache, b"\xff\xfe not a cache").unwrap();
    let gateway = protogate::Gateway::load(protogate::config::load(&path).unwrap())
        .await
        .unwrap();
    assert_eq!(gateway.pending_reflection(), ["users2"]);
}
