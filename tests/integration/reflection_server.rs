//! The gateway's own gRPC server reflection, merged from every descriptor
//! source, asked by real reflection clients: Python's grpcio-reflection
//! (`ProtoReflectionDescriptorDatabase`, v1alpha) and the gateway's own
//! tonic client (v1 first), against the example gateway, whose `users-v2`
//! backend is loaded by reflection and the others from proto files.

use std::time::Duration;

use crate::support::{Stack, example_config_file, serve_live};

pub const GRPCIO: &[&str] = &["grpcio-reflection==1.85.1"];

const CLIENT: &str = r#"
import json, sys, grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

channel = grpc.insecure_channel(sys.argv[1])
db = ProtoReflectionDescriptorDatabase(channel)
pool = DescriptorPool(db)
out = {"services": sorted(db.get_services())}
v2 = pool.FindServiceByName("shop.user.v2.UserService")
out["v2_methods"] = sorted(m.name for m in v2.methods)
out["methods"] = sorted(m.full_name for s in out["services"] for m in pool.FindServiceByName(s).methods)
user = pool.FindMessageTypeByName("shop.user.v1.User")
out["user_fields"] = [f.name for f in user.fields]
out["order_file"] = db.FindFileContainingSymbol("shop.order.v1.OrderService").name
try:
    pool.FindServiceByName("grpc.health.v1.Health")
    out["health"] = "found"
except KeyError:
    out["health"] = "not found"
print(json.dumps(out))
"#;

#[tokio::test]
async fn routed_services_are_described_by_reflection_at_the_edge() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let (_dir, path) = example_config_file(&backends);
    let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let _stack = Stack::for_gateway(addr, stop);

    let target = addr.to_string();
    let out = tokio::task::spawn_blocking(move || crate::python::run(GRPCIO, CLIENT, &[&target]))
        .await
        .unwrap();
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    let services: Vec<&str> = out["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        [
            "shop.inventory.v1.InventoryService",
            "shop.order.v1.OrderService",
            "shop.user.v1.UserService",
            "shop.user.v2.UserService",
        ]
    );
    // Reflection, the route table (and so /routes and OpenAPI, which
    // tests/integration/admin.rs compares with it) name the same services.
    let mut routed: Vec<String> = live
        .gateway()
        .routes()
        .routes()
        .iter()
        .map(|plan| plan.route.method.parent_service().full_name().to_owned())
        .collect();
    routed.sort();
    routed.dedup();
    assert_eq!(routed, services);
    // Method for method: every method reflection describes is routed.
    let mut routed_methods: Vec<String> = live
        .gateway()
        .routes()
        .routes()
        .iter()
        .map(|plan| plan.route.method.full_name().to_owned())
        .collect();
    routed_methods.sort();
    routed_methods.dedup();
    let described: Vec<&str> = out["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(routed_methods, described);
    let v2_methods = out["v2_methods"].as_array().unwrap();
    assert!(v2_methods.iter().any(|m| m == "DeactivateUser"), "{out}");
    let fields = out["user_fields"].as_array().unwrap();
    assert!(fields.iter().any(|f| f == "display_name"), "{out}");
    assert_eq!(out["order_file"], "shop/order/v1/order.proto");
    assert_eq!(out["health"], "not found", "{out}");

    // v1, with the gateway's own reflection client: the same services, and
    // files that keep their google.api.http options.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let found = protogate::descriptor::reflection::fetch(endpoint, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        found.protocol,
        protogate::descriptor::reflection::Protocol::V1
    );
    let mut listed = found.services.clone();
    listed.sort();
    assert_eq!(listed, services);
    let mut pool = prost_reflect::DescriptorPool::global();
    protogate::descriptor::reflection::add_to_pool(&mut pool, &found.files).unwrap();
    let get_user = pool
        .get_service_by_name("shop.user.v2.UserService")
        .unwrap()
        .methods()
        .find(|m| m.name() == "GetUser")
        .unwrap();
    let http = get_user
        .options()
        .extensions()
        .find(|(ext, _)| ext.full_name() == "google.api.http")
        .map(|(_, v)| format!("{v:?}"));
    assert!(
        http.is_some_and(|h| h.contains("/v2/users/")),
        "google.api.http lost"
    );
}

#[tokio::test]
async fn reflection_can_be_switched_off() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let (dir, path) = example_config_file(&backends);
    let text = std::fs::read_to_string(&path).unwrap();
    dir.write_config(&format!("{text}\nreflection_server: false\n"));
    let (addr, stop, _live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let _stack = Stack::for_gateway(addr, stop);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let error = protogate::descriptor::reflection::fetch(endpoint, Duration::from_secs(20))
        .await
        .unwrap_err();
    // A gRPC answer, not an HTTP error page: UNIMPLEMENTED.
    assert!(
        error
            .to_string()
            .contains("does not serve gRPC server reflection"),
        "{error}"
    );
}

#[tokio::test]
async fn protected_reflection_answers_grpc_statuses() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_request};
    let stack = crate::support::start_with(|c| c.auth.protect_gateway_endpoints = true).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", stack.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let list = || {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        }])
    };
    let mut client = ServerReflectionClient::new(channel);
    let refused = client.server_reflection_info(list()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    // The gateway's own status, not a client's reading of an HTTP 401.
    assert!(
        refused.message().starts_with("missing credentials"),
        "{refused:?}"
    );
    let mut request = tonic::Request::new(list());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", crate::support::dev_token("orders"))
            .parse()
            .unwrap(),
    );
    let mut replies = client
        .server_reflection_info(request)
        .await
        .unwrap()
        .into_inner();
    assert!(replies.message().await.unwrap().is_some());
}
