//! The Connect protocol through the gateway, with Connect-ES's own clients
//! (`@connectrpc/connect-node`): unary calls in JSON and binary, by POST and
//! GET, errors with details, and streams of every kind over HTTP/2; its
//! gRPC transport over the gateway's native gRPC.

use crate::grpc_web::{check_common, connect_scenario};
use crate::support::start;

#[tokio::test]
async fn connect_es_calls_every_kind_through_the_gateway() {
    for transport in [
        "connect-h2",
        "connect",
        "connect-h2-proto",
        "connect-proto",
        "connect-h2-get",
        "connect-h2-proto-get",
        "grpc",
    ] {
        // A fresh shop each time: the scenario changes an order.
        let stack = start().await;
        let out = connect_scenario(stack.addr(), transport).await;
        check_common(transport, &out);
        if transport.contains("h2") || transport == "grpc" {
            assert_eq!(out["bulk_count"], 2, "{transport}: {out}");
            assert_eq!(out["sync"][0]["accepted"], true, "{transport}: {out}");
        }
        let (_, _, metrics) = stack.get_text("/metrics").await;
        let got = |line: &str| metrics.lines().any(|l| l == line);
        let by_get = r#"protogate_http_requests_total{route="/shop.user.v1.UserService/GetUser",method="GET",status="200"} 1"#;
        assert_eq!(
            got(by_get),
            transport.ends_with("-get"),
            "{transport}: {by_get}"
        );
    }
}

#[tokio::test]
async fn connect_gets_are_cacheable_where_configured() {
    let stack = start().await;
    let client = reqwest::Client::new();
    let get = |path: &str, etag: Option<&str>| {
        let mut request = client.get(stack.url(path));
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        request.send()
    };
    let user =
        "/shop.user.v1.UserService/GetUser?connect=v1&encoding=json&message=%7B%22id%22%3A1%7D";
    let first = get(user, None).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "public, max-age=60");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    let again = get(user, Some(&etag)).await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    // Another message, another tag.
    let other =
        "/shop.user.v1.UserService/GetUser?connect=v1&encoding=json&message=%7B%22id%22%3A2%7D";
    assert_eq!(get(other, Some(&etag)).await.unwrap().status(), 200);
    // Base64url binary messages: GetUserRequest { id: 1 }.
    let binary = "/shop.user.v1.UserService/GetUser?connect=v1&encoding=proto&base64=1&message=CAE";
    let reply = get(binary, None).await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["content-type"], "application/proto");
    // A method without the setting is not marked cacheable; one with side
    // effects takes no GET at all.
    let orders = "/shop.user.v1.UserService/ListUsers?connect=v1&encoding=json&message=%7B%7D";
    let reply = get(orders, None).await.unwrap();
    assert_eq!(reply.status(), 200);
    assert!(reply.headers().get("cache-control").is_none());
    let create = "/shop.user.v1.UserService/CreateUser?connect=v1&encoding=json&message=%7B%7D";
    let reply = client
        .get(stack.url(create))
        .bearer_auth(crate::support::dev_token("users"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let body: serde_json::Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], "invalid_argument", "{body}");
}
