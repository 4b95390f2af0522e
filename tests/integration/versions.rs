//! Versions side by side: the example's user API v1 (proto files) and v2
//! (descriptors by reflection) on two backends, v1 deprecated, path
//! prefixes, config HTTP rules and fallback routes.

use protogate::config::{ApiConfig, ServicePattern};
use serde_json::Value;

use crate::support::{Stack, TempDir, config_text, serve, start, start_with};

#[tokio::test]
async fn v1_and_v2_are_served_side_by_side_from_two_backends() {
    let stack = start().await;
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
    let stack = start().await;
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
    let stack = start_with(|c| {
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
    let (addr, stop) = serve(config).await;
    let stack = Stack::for_gateway(addr, stop);
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
async fn reflection_failure_is_a_clear_startup_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = TempDir::new("reflection-down");
    let yaml = config_text(
        &format!(
            "  users2:\n    address: http://{closed_addr}\n    reflection: true\n    connect_timeout: 1s\n"
        ),
        "",
    );
    let config = protogate::config::load(&dir.write_config(&yaml)).unwrap();
    let err = format!(
        "{:#}",
        protogate::Gateway::load(config)
            .await
            .map(|_| ())
            .unwrap_err()
    );
    assert!(
        err.contains("cannot load descriptors by reflection"),
        "{err}"
    );
    assert!(err.contains("backend users2"), "{err}");
    assert!(err.contains(&closed_addr.to_string()), "{err}");
}
