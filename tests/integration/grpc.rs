//! Native gRPC through the gateway: the four call kinds of the example
//! shop with tonic's generated clients, the method's REST auth rules over
//! gRPC metadata, gateway-made errors as gRPC statuses, and a backend
//! that dies mid-stream.

use std::time::Duration;

use shop::pb::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop::pb::shop::inventory::v1::{GetStockRequest, ReserveStockRequest};
use shop::pb::shop::order::v1::order_service_client::OrderServiceClient;
use shop::pb::shop::order::v1::{
    GetOrderRequest, OrderStatus, OrderStatusUpdate, WatchOrderRequest,
};
use shop::pb::shop::user::v1::GetUserRequest;
use shop::pb::shop::user::v1::user_service_client::UserServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{API_KEY, dev_token, start};

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn every_call_kind_passes_through_with_the_methods_auth() {
    let stack = start().await;
    let channel = channel(stack.addr()).await;

    // Unary, public.
    let mut users = UserServiceClient::new(channel.clone());
    let user = users
        .get_user(GetUserRequest { id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.id, 1);
    assert!(!user.display_name.is_empty());
    // The backend's own status, as it sent it.
    let missing = users
        .get_user(GetUserRequest { id: 999 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // Unary, needs a token with the orders scope, as over REST.
    let mut orders = OrderServiceClient::new(channel.clone());
    let get = || GetOrderRequest {
        name: "users/1/orders/1001".into(),
    };
    let refused = orders.get_order(get()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("Authorization: Bearer"),
        "{}",
        refused.message()
    );
    let wrong_scope = orders
        .get_order(with_token(get(), &dev_token("users")))
        .await
        .unwrap_err();
    assert_eq!(
        wrong_scope.code(),
        Code::PermissionDenied,
        "{wrong_scope:?}"
    );
    let token = dev_token("orders");
    let order = orders
        .get_order(with_token(get(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.name, "users/1/orders/1001");

    // Server streaming.
    let mut watch = orders
        .watch_order(with_token(
            WatchOrderRequest {
                name: "users/1/orders/1002".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), OrderStatus::Pending);

    // Bidirectional: an update moves the watched order on.
    let updates = tokio_stream::iter([OrderStatusUpdate {
        name: "users/1/orders/1002".into(),
        status: OrderStatus::Paid.into(),
        reason: String::new(),
    }]);
    let mut acks = orders
        .sync_order_status(with_token(updates, &token))
        .await
        .unwrap()
        .into_inner();
    let ack = acks.message().await.unwrap().unwrap();
    assert!(ack.accepted, "{ack:?}");
    assert!(acks.message().await.unwrap().is_none());
    let next = watch.message().await.unwrap().unwrap();
    assert_eq!(next.status(), OrderStatus::Paid);
    drop(watch);

    // Client streaming, with the API key from metadata.
    let mut inventory = InventoryServiceClient::new(channel.clone());
    let reserve = |quantity| ReserveStockRequest {
        sku: "sku-espresso".into(),
        quantity,
        ..Default::default()
    };
    let no_key = inventory
        .bulk_reserve(tokio_stream::iter([reserve(1)]))
        .await
        .unwrap_err();
    assert_eq!(no_key.code(), Code::Unauthenticated, "{no_key:?}");
    let mut request = tonic::Request::new(tokio_stream::iter([reserve(1), reserve(2)]));
    request
        .metadata_mut()
        .insert("x-api-key", API_KEY.parse().unwrap());
    let bulk = inventory.bulk_reserve(request).await.unwrap().into_inner();
    assert_eq!(bulk.count, 2);
    let mut request = tonic::Request::new(GetStockRequest {
        sku: "sku-espresso".into(),
    });
    request
        .metadata_mut()
        .insert("x-api-key", API_KEY.parse().unwrap());
    let stock = inventory.get_stock(request).await.unwrap().into_inner();
    assert_eq!(stock.reserved, 3, "{stock:?}");
}

#[tokio::test]
async fn methods_not_routed_and_grpc_services_are_unimplemented() {
    let stack = start().await;
    let channel = channel(stack.addr()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let error = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unimplemented, "{error:?}");
    assert!(
        error.message().contains("/grpc.health.v1.Health/Check"),
        "{}",
        error.message()
    );
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let error = grpc
        .unary::<GetUserRequest, shop::pb::shop::user::v1::User, _>(
            tonic::Request::new(GetUserRequest { id: 1 }),
            "/shop.user.v1.UserService/NoSuchMethod".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unimplemented, "{error:?}");
}

#[tokio::test]
async fn passthrough_can_be_switched_off() {
    let stack = crate::support::start_with(|config| config.protocols.grpc = false).await;
    let mut users = UserServiceClient::new(channel(stack.addr()).await);
    let error = users.get_user(GetUserRequest { id: 1 }).await.unwrap_err();
    assert_eq!(error.code(), Code::Unimplemented, "{error:?}");
    // REST is unchanged.
    assert_eq!(stack.get("/v1/users/1").await.status, 200);
}

#[tokio::test]
async fn a_backend_down_or_dying_mid_stream_ends_the_call_with_unavailable() {
    // The backends run on a runtime of their own, so they can die at once.
    let (addresses, runtime) = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let backends = runtime.block_on(shop::spawn_ephemeral()).unwrap();
        (backends, runtime)
    })
    .join()
    .unwrap();
    let mut config = crate::support::default_config(&addresses);
    config
        .backends
        .iter_mut()
        .for_each(|b| b.health_check = None);
    let (addr, stop) = crate::support::serve(config).await;
    let _stack = crate::support::Stack::for_gateway(addr, stop);
    let mut orders = OrderServiceClient::new(channel(addr).await);
    let token = dev_token("orders");
    let mut watch = orders
        .watch_order(with_token(
            WatchOrderRequest {
                name: "users/1/orders/1002".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());

    // Killed: its runtime and every socket of it gone.
    runtime.shutdown_background();
    drop(addresses);
    let error = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the stream ends")
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(
        error.message().contains("backend orders is unavailable"),
        "{}",
        error.message()
    );

    // Down: a new call is refused by the gateway with UNAVAILABLE too.
    let error = orders
        .get_order(with_token(
            GetOrderRequest {
                name: "users/1/orders/1001".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
}

/// The scenario of `tests/clients/*/grpc_scenario.*`: its requests, hex-encoded.
fn scenario_requests() -> String {
    use prost::Message;
    let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    serde_json::json!({
        "get_user": hex(GetUserRequest { id: 2 }.encode_to_vec()),
        "get_order": hex(GetOrderRequest { name: "users/1/orders/1001".into() }.encode_to_vec()),
        "watch": hex(WatchOrderRequest { name: "users/2/orders/1003".into() }.encode_to_vec()),
        "reserve": hex(ReserveStockRequest {
            sku: "sku-grinder".into(),
            quantity: 1,
            ..Default::default()
        }
        .encode_to_vec()),
        "update": hex(OrderStatusUpdate {
            name: "users/1/orders/1002".into(),
            status: OrderStatus::Cancelled.into(),
            reason: "changed my mind".into(),
        }
        .encode_to_vec()),
    })
    .to_string()
}

/// Checks what a client printed for the scenario.
fn check_scenario(client: &str, out: &str) {
    use prost::Message;
    use shop::pb::shop::inventory::v1::BulkReserveResponse;
    use shop::pb::shop::order::v1::{Order, OrderStatusAck, OrderStatusChange};
    use shop::pb::shop::user::v1::User;
    let out: serde_json::Value =
        serde_json::from_str(out).unwrap_or_else(|e| panic!("{client}: {e}: {out}"));
    let bytes = |v: &serde_json::Value| -> Vec<u8> {
        let text = v.as_str().unwrap_or_else(|| panic!("{client}: {v}"));
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    };
    let user = User::decode(&*bytes(&out["get_user"])).unwrap();
    assert_eq!(user.id, 2, "{client}");
    let order = Order::decode(&*bytes(&out["get_order"])).unwrap();
    assert_eq!(order.name, "users/1/orders/1001", "{client}");
    let first = OrderStatusChange::decode(&*bytes(&out["watch_first"])).unwrap();
    assert_eq!(first.status(), OrderStatus::Shipped, "{client}");
    let bulk = BulkReserveResponse::decode(&*bytes(&out["bulk"])).unwrap();
    assert_eq!(bulk.count, 2, "{client}");
    let acks: Vec<OrderStatusAck> = out["sync"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| OrderStatusAck::decode(&*bytes(a)).unwrap())
        .collect();
    assert_eq!(acks.len(), 1, "{client}: {acks:?}");
    assert!(acks[0].accepted, "{client}: {acks:?}");
    assert_eq!(acks[0].status(), OrderStatus::Cancelled, "{client}");
    for anonymous in [
        "get_order_anonymous",
        "watch_anonymous",
        "bulk_anonymous",
        "sync_anonymous",
    ] {
        assert_eq!(
            out[anonymous]["code"],
            Code::Unauthenticated as i32,
            "{client}: {anonymous}: {}",
            out[anonymous]
        );
        let message = out[anonymous]["message"].as_str().unwrap();
        assert!(
            message.contains("missing credentials"),
            "{client}: {message}"
        );
    }
    assert_eq!(
        out["unrouted"]["code"],
        Code::Unimplemented as i32,
        "{client}"
    );
}

#[tokio::test]
async fn python_grpcio_calls_every_kind_through_the_gateway() {
    let stack = start().await;
    let args = [
        stack.addr().to_string(),
        dev_token("orders"),
        API_KEY.to_owned(),
        scenario_requests(),
    ];
    let script = std::fs::read_to_string(
        crate::support::root().join("tests/clients/python/grpc_scenario.py"),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::python::run(crate::reflection_server::GRPCIO, &script, &args)
    })
    .await
    .unwrap();
    check_scenario("grpcio", &out);
}

#[tokio::test]
async fn node_grpc_js_calls_every_kind_through_the_gateway() {
    let stack = start().await;
    let args = [
        stack.addr().to_string(),
        dev_token("orders"),
        API_KEY.to_owned(),
        scenario_requests(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::node::run("grpc_scenario.mjs", &args)
    })
    .await
    .unwrap();
    check_scenario("@grpc/grpc-js", &out);
}
