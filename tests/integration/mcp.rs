//! MCP tools generated from the descriptors, called with the official MCP
//! Python SDK over Streamable HTTP: initialize, list, calls with valid and
//! invalid input, with and without a token, and against a backend that is down.

use protogate::config::ServicePattern;
use serde_json::Value;

use crate::support::{UNREACHABLE, dev_token, start_with};

/// The MCP SDK the tests speak with.
pub const MCP: &[&str] = &["mcp==1.30.0"];

async fn scenario(addr: std::net::SocketAddr) -> Value {
    let script = std::fs::read_to_string(
        crate::support::root().join("tests/clients/python/mcp_scenario.py"),
    )
    .unwrap();
    let args = [format!("http://{addr}/mcp"), dev_token("orders")];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::python::run(MCP, &script, &args)
    })
    .await
    .unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn mcp_on(config: &mut protogate::config::Config) {
    config.mcp.enabled = true;
    config.mcp.tools = vec![
        ServicePattern::Package("shop.user.v1".into()),
        ServicePattern::Exact("shop.order.v1.OrderService.GetOrder".into()),
        ServicePattern::Exact("shop.order.v1.OrderService.WatchOrder".into()),
    ];
    config.mcp.max_stream_messages = 1;
}

#[tokio::test]
async fn mcp_clients_list_and_call_the_selected_methods() {
    let stack = start_with(mcp_on).await;
    let out = scenario(stack.addr()).await;
    assert_eq!(out["protocol"], "2025-11-25", "{out}");
    assert_eq!(out["server"], "protogate");
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "shop_order_v1_OrderService_GetOrder",
            "shop_order_v1_OrderService_WatchOrder",
            "shop_user_v1_UserService_CreateUser",
            "shop_user_v1_UserService_DeleteUser",
            "shop_user_v1_UserService_GetUser",
            "shop_user_v1_UserService_ListUsers",
            "shop_user_v1_UserService_UpdateUser",
        ],
        "{out}"
    );
    // Described from the proto, typed by the OpenAPI generator's schema.
    let tool = &out["get_user_tool"];
    assert!(
        tool["description"]
            .as_str()
            .unwrap()
            .starts_with("Returns one user by id."),
        "{tool}"
    );
    assert_eq!(tool["input"]["type"], "object");
    assert!(tool["input"]["properties"]["id"].is_object(), "{tool}");
    assert_eq!(tool["read_only"], true);
    // The SDK checked this against the tool's outputSchema.
    assert_eq!(out["get_user"]["isError"], false, "{out}");
    assert_eq!(out["get_user"]["structured"]["displayName"], "Ada Lovelace");
    // Input that does not fit the message: a tool error naming the field.
    assert_eq!(out["invalid"]["isError"], true, "{out}");
    let invalid: Value = serde_json::from_str(out["invalid"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(invalid["code"], 3, "{invalid}");
    assert!(
        invalid["message"].as_str().unwrap().contains("id"),
        "{invalid}"
    );
    // The token of the MCP client, checked by the method's own rule.
    assert_eq!(out["get_order"]["isError"], false, "{out}");
    assert_eq!(
        out["get_order"]["structured"]["name"],
        "users/1/orders/1001"
    );
    assert_eq!(out["anonymous"]["isError"], true, "{out}");
    let refused: Value = serde_json::from_str(out["anonymous"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(refused["code"], 16, "{refused}");
    // A server stream, collected up to mcp.max_stream_messages.
    let messages = out["watch"]["structured"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{out}");
    assert_eq!(messages[0]["status"], "ORDER_STATUS_SHIPPED");
    // MCP's own errors are JSON-RPC errors.
    assert_eq!(out["unknown"]["code"], -32602, "{out}");

    // Calls are counted by method, as every surface's are.
    let (_, _, metrics) = stack.get_text("/metrics").await;
    let line = r#"protogate_http_requests_total{route="/shop.user.v1.UserService/GetUser",method="POST",status="400"} 1"#;
    assert!(metrics.lines().any(|l| l == line), "{line}");
}

#[tokio::test]
async fn a_tool_whose_backend_is_down_answers_a_tool_error() {
    let stack = start_with(|config| {
        mcp_on(config);
        for backend in &mut config.backends {
            if backend.name == "orders" {
                backend.endpoints = vec![format!("http://{UNREACHABLE}").parse().unwrap()];
                backend.health_check = None;
            }
        }
    })
    .await;
    let out = scenario(stack.addr()).await;
    assert_eq!(out["get_order"]["isError"], true, "{out}");
    let status: Value = serde_json::from_str(out["get_order"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(status["code"], 14, "{status}");
    assert_eq!(status["message"], "backend orders is unavailable");
    // The other backends' tools still work.
    assert_eq!(out["get_user"]["isError"], false, "{out}");
}

#[tokio::test]
async fn the_endpoint_answers_only_mcp() {
    let stack = start_with(mcp_on).await;
    let client = reqwest::Client::new();
    let get = client.get(stack.url("/mcp")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    let not_json = client
        .post(stack.url("/mcp"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let body: Value = serde_json::from_slice(&not_json.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], -32700);
    let unknown = client
        .post(stack.url("/mcp"))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"resources/list"}"#)
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&unknown.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (body["id"].clone(), body["error"]["code"].clone()),
        (7.into(), (-32601).into())
    );
    let foreign = client
        .post(stack.url("/mcp"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
}
