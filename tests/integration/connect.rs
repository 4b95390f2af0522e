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
