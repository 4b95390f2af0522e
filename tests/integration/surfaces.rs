//! One route table, one policy: the same auth rule refuses the same method
//! however it is called (REST, native gRPC, gRPC-Web, Connect, MCP), and
//! lets the same credential through on every surface.

use crate::support::{dev_token, start};

/// `GetOrder` of users/1/orders/1001, framed as gRPC.
fn framed_get_order() -> Vec<u8> {
    let message = prost::Message::encode_to_vec(&shop::pb::shop::order::v1::GetOrderRequest {
        name: "users/1/orders/1001".into(),
    });
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

/// The gRPC code each surface answered `GetOrder` with, with `token` (or none).
async fn codes(addr: std::net::SocketAddr, token: Option<&str>) -> Vec<(&'static str, i64)> {
    let base = format!("http://{addr}");
    let http1 = reqwest::Client::new();
    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let auth = |request: reqwest::RequestBuilder| match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let mut out = Vec::new();

    // REST: the code in the JSON error, 0 for a 200.
    let rest = auth(http1.get(format!("{base}/v1/users/1/orders/1001")))
        .send()
        .await
        .unwrap();
    let status = rest.status();
    let body: serde_json::Value = serde_json::from_slice(&rest.bytes().await.unwrap()).unwrap();
    out.push((
        "rest",
        if status == 200 {
            0
        } else {
            body["code"].as_i64().unwrap()
        },
    ));

    // Native gRPC: grpc-status in the headers (trailers-only) or trailers.
    let mut grpc = tonic::client::Grpc::new(
        tonic::transport::Channel::from_shared(base.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(shop::pb::shop::order::v1::GetOrderRequest {
        name: "users/1/orders/1001".into(),
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let reply = grpc
        .unary::<_, shop::pb::shop::order::v1::Order, _>(
            request,
            "/shop.order.v1.OrderService/GetOrder".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    out.push(("grpc", reply.map_or_else(|e| e.code() as i64, |_| 0)));

    // gRPC-Web: the status in headers, or in the body's last frame.
    let web = auth(http1.post(format!("{base}/shop.order.v1.OrderService/GetOrder")))
        .header("content-type", "application/grpc-web+proto")
        .body(framed_get_order())
        .send()
        .await
        .unwrap();
    let header = web
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().parse::<i64>().unwrap());
    let body = web.bytes().await.unwrap();
    let code = header.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body);
        let at = text.find("grpc-status: ").unwrap() + "grpc-status: ".len();
        text[at..].split('\r').next().unwrap().parse().unwrap()
    });
    out.push(("grpc-web", code));

    // Connect, over HTTP/2: the code's name in the JSON error.
    let connect = auth(http2.post(format!("{base}/shop.order.v1.OrderService/GetOrder")))
        .header("content-type", "application/json")
        .header("connect-protocol-version", "1")
        .body(r#"{"name":"users/1/orders/1001"}"#)
        .send()
        .await
        .unwrap();
    let ok = connect.status() == 200;
    let body: serde_json::Value = serde_json::from_slice(&connect.bytes().await.unwrap()).unwrap();
    let code = match body["code"].as_str() {
        _ if ok => 0,
        Some("unauthenticated") => 16,
        Some("permission_denied") => 7,
        other => panic!("connect: {other:?}"),
    };
    out.push(("connect", code));

    // MCP: the google.rpc.Status of a tool error.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shop_order_v1_OrderService_GetOrder","arguments":{"name":"users/1/orders/1001"}}}"#;
    let mcp = auth(http1.post(format!("{base}/mcp")))
        .header("content-type", "application/json")
        .body(call)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&mcp.bytes().await.unwrap()).unwrap();
    let result = &body["result"];
    let code = if result["isError"] == true {
        let status: serde_json::Value =
            serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
        status["code"].as_i64().unwrap()
    } else {
        0
    };
    out.push(("mcp", code));
    out
}

#[tokio::test]
async fn one_auth_rule_decides_on_every_surface() {
    let stack = start().await;
    let every = |code| {
        ["rest", "grpc", "grpc-web", "connect", "mcp"]
            .into_iter()
            .map(|s| (s, code))
            .collect::<Vec<_>>()
    };
    // No token: UNAUTHENTICATED everywhere.
    assert_eq!(codes(stack.addr(), None).await, every(16));
    // A token without the `orders` scope: PERMISSION_DENIED everywhere.
    assert_eq!(
        codes(stack.addr(), Some(&dev_token("users"))).await,
        every(7)
    );
    // The right token: let through everywhere.
    assert_eq!(
        codes(stack.addr(), Some(&dev_token("orders"))).await,
        every(0)
    );
}
