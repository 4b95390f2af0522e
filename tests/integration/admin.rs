//! The admin API on a listener of its own: the live route table, request
//! explanations, schema swaps and the redacted config, against the example
//! gateway in front of the real shop backends (users v2 by reflection).

use std::net::SocketAddr;
use std::sync::Arc;

use protogate::server::Live;
use serde_json::Value;

use crate::support::{Stack, client, example_config_file, serve_live};

struct Admin {
    addr: SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl Admin {
    async fn start(live: Arc<Live>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            protogate::server::admin::serve(listener, live)
                .await
                .unwrap();
        });
        Self { addr, _task: task }
    }

    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let reply = client()
            .get(format!("http://{}{path_and_query}", self.addr))
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        assert_eq!(reply.headers()["content-type"], "application/json");
        let text = reply.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap())
    }
}

async fn example() -> (
    shop::Backends,
    Stack,
    Arc<Live>,
    Admin,
    crate::support::TempDir,
) {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let (dir, path) = example_config_file(&backends);
    let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let admin = Admin::start(live.clone()).await;
    (backends, Stack::for_gateway(addr, stop), live, admin, dir)
}

#[tokio::test]
async fn routes_list_the_live_table_with_its_sources() {
    let (_backends, stack, live, admin, _dir) = example().await;
    let (status, body) = admin.get("/routes").await;
    assert_eq!(status, 200);
    assert_eq!(body["generation"], 1);
    let routes = body["routes"].as_array().unwrap();
    assert_eq!(routes.len(), live.gateway().routes().routes().len());

    let get_user = routes
        .iter()
        .find(|r| r["method"] == "GET" && r["template"] == "/v1/users/{id}")
        .unwrap();
    assert_eq!(get_user["rpc"], "shop.user.v1.UserService.GetUser");
    assert_eq!(get_user["binding"], 0);
    assert_eq!(get_user["kind"], "unary");
    assert_eq!(get_user["backends"][0]["name"], "users");
    assert_eq!(get_user["source"]["from"], "descriptors");
    assert_eq!(get_user["source"]["file"], "shop/user/v1/user.proto");

    let v2 = routes
        .iter()
        .find(|r| r["rpc"] == "shop.user.v2.UserService.GetUser")
        .unwrap();
    assert_eq!(v2["source"]["from"], "reflection");
    assert_eq!(v2["source"]["backend"], "users-v2");
    assert_eq!(
        v2["source"]["digest"],
        live.gateway().reflection_digest("users-v2").unwrap()
    );

    // A route that needs credentials says which.
    let protected = routes
        .iter()
        .find(|r| r["auth"]["public"] == false)
        .unwrap();
    assert!(
        !protected["auth"]["accepts"].as_str().unwrap().is_empty(),
        "{protected}"
    );
    // A streaming method is marked as one.
    assert!(routes.iter().any(|r| r["kind"] == "server_streaming"));

    // OpenAPI and /routes describe the same methods, binding for binding:
    // operation ids are `Service_Method` (`Service_v1_Method` where two
    // versions share a service name), numbered from the second binding on.
    let doc = stack.get("/openapi.json").await.json;
    let mut documented = Vec::new();
    for (_, item) in doc["paths"].as_object().unwrap() {
        for (_, operation) in item.as_object().unwrap() {
            if let Some(id) = operation["operationId"].as_str() {
                let id = id.trim_end_matches(|c: char| c.is_ascii_digit());
                let (service, method) = (id.split('_').next(), id.rsplit('_').next());
                documented.push(format!("{}_{}", service.unwrap(), method.unwrap()));
            }
        }
    }
    let mut routed: Vec<String> = routes
        .iter()
        .map(|r| {
            let rpc = r["rpc"].as_str().unwrap();
            let parts: Vec<&str> = rpc.rsplitn(3, '.').collect();
            format!("{}_{}", parts[1], parts[0])
        })
        .collect();
    documented.sort();
    routed.sort();
    assert!(!routed.is_empty());
    assert_eq!(documented, routed);
}

#[tokio::test]
async fn explain_says_where_each_part_of_a_request_goes() {
    let (_backends, _stack, _live, admin, _dir) = example().await;
    let (status, body) = admin
        .get("/explain?method=GET&path=%2Fv1%2Fusers%2F7%3Frole%3DROLE_ADMIN")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["matched"], true);
    assert_eq!(body["route"]["template"], "/v1/users/{id}");
    assert_eq!(body["path_variables"][0]["field"], "id");
    assert_eq!(body["path_variables"][0]["value"], "7");
    assert_eq!(body["request_message"], "shop.user.v1.GetUserRequest");
    assert_eq!(body["route"]["backends"][0]["name"], "users");
    // GetUserRequest has no role: the gateway would answer 400.
    assert_eq!(body["query_parameters"][0]["name"], "role");
    assert!(body["query_parameters"][0]["field"].is_null());
    assert_eq!(body["from_path_and_query"]["status"], 400, "{body}");

    let (_, listed) = admin
        .get("/explain?method=get&path=/v1/users?pageSize=5%26role=ROLE_ADMIN")
        .await;
    assert_eq!(listed["matched"], true, "{listed}");
    let fields: Vec<&str> = listed["query_parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["page_size", "role"]);
    assert_eq!(
        listed["from_path_and_query"]["message"],
        serde_json::json!({ "pageSize": 5, "role": "ROLE_ADMIN" })
    );

    let (_, wrong_method) = admin.get("/explain?method=PUT&path=/v1/users/7").await;
    assert_eq!(wrong_method["matched"], false);
    assert_eq!(wrong_method["status"], 405);
    let allow: Vec<&str> = wrong_method["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        allow.contains(&"GET") && allow.contains(&"DELETE"),
        "{allow:?}"
    );

    let (_, unknown) = admin.get("/explain?method=GET&path=/v1/userz/7").await;
    assert_eq!(unknown["matched"], false);
    assert_eq!(unknown["status"], 404);
    assert!(unknown["closest"].as_array().is_some(), "{unknown}");

    let (status, bad) = admin.get("/explain?method=GET").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("path="), "{bad}");
}

#[tokio::test]
async fn schema_diff_and_config_show_swaps_and_hide_secrets() {
    let (_backends, _stack, live, admin, dir) = example().await;
    let (_, empty) = admin.get("/schema/diff").await;
    assert_eq!(empty["swaps"], serde_json::json!([]));
    assert!(empty["refused"].is_null());

    // A reload that adds a binding is a compatible swap.
    let path = dir.0.join("gateway.yaml");
    let mut yaml: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let rule: serde_norway::Value = serde_norway::from_str(
        "selector: shop.user.v1.UserService.GetUser\nget: /v1/users/{id}\nadditional_bindings:\n  - get: /v1/customers/{id}\n  - get: /v1/people/{id}\n",
    )
    .unwrap();
    yaml["http"]["rules"].as_sequence_mut().unwrap().push(rule);
    dir.write_config(&serde_norway::to_string(&yaml).unwrap());
    live.reload().await.unwrap();
    let (_, diff) = admin.get("/schema/diff").await;
    assert_eq!(diff["generation"], 2);
    let swap = &diff["swaps"][0];
    assert_eq!(swap["applied"], true);
    assert_eq!(swap["cause"], "reload");
    assert_eq!(swap["changes"][0]["rule"], "ROUTE_ADDED", "{swap}");
    assert_eq!(swap["changes"][0]["subject"], "GET /v1/people/{id}");

    let (status, config) = admin.get("/config").await;
    assert_eq!(status, 200);
    assert_eq!(config["generation"], 2);
    let keys = &config["config"]["auth"]["api_keys"]["keys"];
    assert_eq!(keys[0]["sha256"], "<redacted>", "{keys}");
    assert!(keys[0]["name"].is_string());
    let raw = serde_json::to_string(&config).unwrap();
    assert!(
        !raw.contains("c8508ef6b8945d666ebda9da5ac196d24548fc98ba6eac51b11805cd15a6d4c8"),
        "a key hash leaked"
    );
    // The effective config: what the file leaves out, with its default,
    // and listed as defaulted.
    assert_eq!(config["config"]["server"]["request_id"], true);
    assert_eq!(config["config"]["backends"]["orders"]["timeout"], "30s");
    let defaulted: Vec<&str> = config["defaulted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(defaulted.contains(&"server.request_id"), "{defaulted:?}");
    let listen = &config["config"]["server"]["listen"];
    assert_eq!(*listen, live.gateway().config().listen.to_string());

    // The config as loaded, not the file now on disk.
    dir.write_config("not: [a config");
    let (_, again) = admin.get("/config").await;
    assert_eq!(again["config"], config["config"]);
}

#[tokio::test]
async fn a_silent_connection_to_the_admin_api_is_closed() {
    use tokio::io::AsyncReadExt;
    let backends = shop::spawn_ephemeral().await.unwrap();
    let (_dir, path) = example_config_file(&backends);
    let mut config = protogate::config::load(&path).unwrap();
    config.edge.header_read_timeout = std::time::Duration::from_millis(200);
    let (addr, stop, live) = serve_live(config).await;
    let _stack = Stack::for_gateway(addr, stop);
    let admin = Admin::start(live).await;
    let mut silent = tokio::net::TcpStream::connect(admin.addr).await.unwrap();
    let mut buf = [0u8; 16];
    // Closed by the gateway (read returns 0), long before this bound.
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), silent.read(&mut buf))
        .await
        .expect("the silent connection is still open after 30s");
    assert_eq!(read.unwrap(), 0);
    // The listener still answers others.
    let (status, _) = admin.get("/routes").await;
    assert_eq!(status, 200);
}
