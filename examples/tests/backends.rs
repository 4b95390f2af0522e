//! Starts the backends on ephemeral ports and calls each service through its
//! generated tonic client, as the gateway's integration tests will: the shop
//! services, grpc.health.v1 and gRPC server reflection.

use std::net::SocketAddr;
use std::time::Duration;

use shop::pb::google::api::HttpBody;
use shop::pb::shop::inventory::v1::{
    GetStockRequest, ReserveStockRequest, inventory_service_client::InventoryServiceClient,
};
use shop::pb::shop::order::v1::{
    CancelOrderRequest, ExportOrdersRequest, GetInvoiceRequest, GetOrderRequest, OrderStatus,
    OrderStatusUpdate, UploadAttachmentRequest, WatchOrderRequest,
    order_service_client::OrderServiceClient,
};
use shop::pb::shop::user::v1::{
    DeleteUserRequest, GetUserRequest, user_service_client::UserServiceClient,
};
use shop::pb::shop::user::v2;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::{v1 as reflection_v1, v1alpha as reflection_v1alpha};
use tonic_types::StatusExt;

#[tokio::test]
async fn clients_reach_every_service() {
    let backends = shop::spawn_ephemeral().await.unwrap();

    let mut users = UserServiceClient::connect(format!("http://{}", backends.users))
        .await
        .unwrap();
    let ada = users
        .get_user(GetUserRequest { id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ada.display_name, "Ada Lovelace");

    let mut orders = OrderServiceClient::connect(format!("http://{}", backends.orders))
        .await
        .unwrap();
    let order = orders
        .get_order(GetOrderRequest {
            name: "users/2/orders/1003".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.status(), OrderStatus::Shipped);

    // Error details must survive the trip through grpc-status-details-bin.
    let mut inventory = InventoryServiceClient::connect(format!("http://{}", backends.inventory))
        .await
        .unwrap();
    let err = inventory
        .reserve_stock(ReserveStockRequest {
            sku: "sku-grinder".into(),
            quantity: 6,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let failure = err.get_details_precondition_failure().unwrap();
    assert_eq!(failure.violations[0].description, "only 5 available");

    backends.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_spawn_starts_from_seed_data() {
    let first = shop::spawn_ephemeral().await.unwrap();
    let second = shop::spawn_ephemeral().await.unwrap();
    assert_ne!(first.users, second.users);

    let mut client = UserServiceClient::connect(format!("http://{}", first.users))
        .await
        .unwrap();
    client
        .delete_user(DeleteUserRequest { id: 1 })
        .await
        .unwrap();

    let mut client = UserServiceClient::connect(format!("http://{}", second.users))
        .await
        .unwrap();
    let ada = client.get_user(GetUserRequest { id: 1 }).await.unwrap();
    assert_eq!(ada.into_inner().id, 1);
}

#[tokio::test]
async fn dropping_backends_stops_the_servers() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let addrs = [
        backends.users,
        backends.orders,
        backends.inventory,
        backends.users_v2,
    ];
    drop(backends);
    for addr in addrs {
        assert_refused(addr).await;
    }
}

/// Waits for `addr` to refuse connections: the listener closes once the
/// server task sees the shutdown signal.
async fn assert_refused(addr: SocketAddr) {
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} still accepts connections");
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A connection for the clients that tonic-health and tonic-reflection
/// generate without `connect`.
async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url(addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn users_v2_splits_names_and_tracks_status() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let mut users = v2::user_service_client::UserServiceClient::connect(url(backends.users_v2))
        .await
        .unwrap();

    let ada = users
        .get_user(v2::GetUserRequest { id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (ada.given_name.as_str(), ada.family_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert_eq!(ada.email, "ada@example.com");
    assert_eq!(ada.status(), v2::UserStatus::Active);

    let page = users
        .list_users(v2::ListUsersRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = page.users.iter().map(|u| u.given_name.as_str()).collect();
    assert_eq!(names, ["Ada", "Grace"]);
    assert_eq!((page.next_page_token.as_str(), page.total_size), ("2", 3));

    let edsger = users
        .create_user(v2::CreateUserRequest {
            user: Some(v2::User {
                email: "edsger@example.com".into(),
                given_name: "Edsger".into(),
                family_name: "Dijkstra".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edsger.id, 4);
    assert_eq!(edsger.status(), v2::UserStatus::Active);

    let err = users
        .create_user(v2::CreateUserRequest {
            user: Some(v2::User {
                email: "nobody".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["user.email", "user.given_name"]);

    let deactivated = users
        .deactivate_user(v2::DeactivateUserRequest {
            id: "4".into(),
            reason: "left the shop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deactivated.status(), v2::UserStatus::Deactivated);
    assert_eq!(deactivated.status_reason, "left the shop");

    let active = users
        .list_users(v2::ListUsersRequest {
            status: v2::UserStatus::Active.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = active.users.iter().map(|u| u.id).collect();
    assert_eq!(ids, [1, 2, 3]);

    let err = users
        .deactivate_user(v2::DeactivateUserRequest {
            id: "42".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // v1 keeps its own table.
    let mut v1_users = UserServiceClient::connect(url(backends.users))
        .await
        .unwrap();
    let err = v1_users
        .get_user(GetUserRequest { id: 4 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// `grpc.health.v1.Health/Check` of `service` at `addr`.
async fn health(addr: SocketAddr, service: &str) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(channel(addr).await);
    let response = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(response.into_inner().status())
}

/// Every backend's address and the shop service it serves.
fn services(backends: &shop::Backends) -> [(SocketAddr, &'static str); 4] {
    [
        (backends.users, "shop.user.v1.UserService"),
        (backends.orders, "shop.order.v1.OrderService"),
        (backends.inventory, "shop.inventory.v1.InventoryService"),
        (backends.users_v2, "shop.user.v2.UserService"),
    ]
}

/// A path template of a google.api.http option in `service`'s proto file.
fn http_template(service: &str) -> &'static [u8] {
    match service {
        "shop.user.v1.UserService" => b"/v1/users/{id}",
        "shop.order.v1.OrderService" => b"/v1/{name=users/*/orders/*}",
        "shop.inventory.v1.InventoryService" => b"/v1/inventory/{sku}",
        "shop.user.v2.UserService" => b"/v2/users/{id}",
        other => panic!("no template for {other}"),
    }
}

#[tokio::test]
async fn every_backend_reports_serving() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    for (addr, service) in services(&backends) {
        for name in ["", service] {
            let status = health(addr, name).await.unwrap();
            assert_eq!(status, ServingStatus::Serving, "{service} {name:?}");
        }
        // A service the server does not serve is unknown, not unhealthy.
        let err = health(addr, "shop.nope.v1.Nope").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{service}");
    }
}

/// Sends `requests` on one `grpc.reflection.v1` stream; returns the answers.
async fn reflect_v1(
    addr: SocketAddr,
    requests: Vec<reflection_v1::server_reflection_request::MessageRequest>,
) -> Vec<reflection_v1::server_reflection_response::MessageResponse> {
    let mut client =
        reflection_v1::server_reflection_client::ServerReflectionClient::new(channel(addr).await);
    let requests = requests
        .into_iter()
        .map(|message| reflection_v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(message),
        });
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut messages = Vec::new();
    while let Some(answer) = answers.message().await.unwrap() {
        messages.push(answer.message_response.unwrap());
    }
    messages
}

/// Sends `requests` on one `grpc.reflection.v1alpha` stream; returns the answers.
async fn reflect_v1alpha(
    addr: SocketAddr,
    requests: Vec<reflection_v1alpha::server_reflection_request::MessageRequest>,
) -> Vec<reflection_v1alpha::server_reflection_response::MessageResponse> {
    let mut client = reflection_v1alpha::server_reflection_client::ServerReflectionClient::new(
        channel(addr).await,
    );
    let requests =
        requests
            .into_iter()
            .map(|message| reflection_v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(message),
            });
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut messages = Vec::new();
    while let Some(answer) = answers.message().await.unwrap() {
        messages.push(answer.message_response.unwrap());
    }
    messages
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn reflection_v1_lists_services_and_keeps_http_options() {
    use reflection_v1::server_reflection_request::MessageRequest;
    use reflection_v1::server_reflection_response::MessageResponse;

    let backends = shop::spawn_ephemeral().await.unwrap();
    for (addr, service) in services(&backends) {
        let answers = reflect_v1(
            addr,
            vec![
                MessageRequest::ListServices(String::new()),
                MessageRequest::FileContainingSymbol(service.into()),
                MessageRequest::FileContainingSymbol("shop.nope.v1.Nope".into()),
                // The stream stays open after an error.
                MessageRequest::FileByFilename("google/api/http.proto".into()),
            ],
        )
        .await;
        let [list, file, missing, by_name] = answers.try_into().unwrap();

        let MessageResponse::ListServicesResponse(list) = list else {
            panic!("{service}: {list:?}");
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                service,
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ]
        );

        let MessageResponse::FileDescriptorResponse(file) = file else {
            panic!("{service}: {file:?}");
        };
        // The service's file first, then its imports, annotations.proto among them.
        let files = &file.file_descriptor_proto;
        assert!(contains(&files[0], http_template(service)), "{service}");
        assert!(
            files
                .iter()
                .any(|f| contains(f, b"google/api/annotations.proto")),
            "{service}"
        );

        let MessageResponse::ErrorResponse(missing) = missing else {
            panic!("{service}: {missing:?}");
        };
        assert_eq!(missing.error_code, Code::NotFound as i32);

        assert!(
            matches!(by_name, MessageResponse::FileDescriptorResponse(_)),
            "{service}: {by_name:?}"
        );
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_services_and_keeps_http_options() {
    use reflection_v1alpha::server_reflection_request::MessageRequest;
    use reflection_v1alpha::server_reflection_response::MessageResponse;

    let backends = shop::spawn_ephemeral().await.unwrap();
    let answers = reflect_v1alpha(
        backends.users_v2,
        vec![
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("shop.user.v2.UserService".into()),
        ],
    )
    .await;
    let [list, file] = answers.try_into().unwrap();
    let MessageResponse::ListServicesResponse(list) = list else {
        panic!("{list:?}");
    };
    assert_eq!(list.service[0].name, "shop.user.v2.UserService");
    let MessageResponse::FileDescriptorResponse(file) = file else {
        panic!("{file:?}");
    };
    assert!(contains(&file.file_descriptor_proto[0], b"/v2/users/{id}"));
}

/// A canary: tonic-reflection's own server re-encodes files through
/// prost_types, which drops extension options, so the shop serves its own
/// (src/reflection.rs). If this fails, tonic-reflection keeps options now
/// and src/reflection.rs may give way to it.
#[tokio::test]
async fn tonic_reflection_builder_drops_http_options() {
    use reflection_v1::server_reflection_request::MessageRequest;
    use reflection_v1::server_reflection_response::MessageResponse;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shop::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(reflection)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let answers = reflect_v1(
        addr,
        vec![MessageRequest::FileContainingSymbol(
            "shop.user.v2.UserService".into(),
        )],
    )
    .await;
    let Some(MessageResponse::FileDescriptorResponse(file)) = answers.into_iter().next() else {
        panic!("no file");
    };
    let file = &file.file_descriptor_proto[0];
    assert!(contains(file, b"DeactivateUser"), "not the v2 user file");
    assert!(!contains(file, b"/v2/users/{id}"), "options kept now");
    server.abort();
}

#[tokio::test]
async fn instance_counts_requests_and_flips_health() {
    let instance = shop::spawn_users_v1("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let service = "shop.user.v1.UserService";
    let mut users = UserServiceClient::connect(url(instance.addr))
        .await
        .unwrap();
    for id in [1, 2, 42] {
        let _ = users.get_user(GetUserRequest { id }).await;
    }
    assert_eq!(instance.served(), 3);

    let mut health_client = HealthClient::new(channel(instance.addr).await);
    let mut watch = health_client
        .watch(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    instance.set_serving(false).await;
    for name in ["", service] {
        let status = health(instance.addr, name).await.unwrap();
        assert_eq!(status, ServingStatus::NotServing, "{name:?}");
    }
    let next = watch.message().await.unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);

    instance.set_serving(true).await;
    assert_eq!(
        health(instance.addr, "").await.unwrap(),
        ServingStatus::Serving
    );
    // Health checks and reflection are not counted; the service still answers.
    reflect_v1(
        instance.addr,
        vec![reflection_v1::server_reflection_request::MessageRequest::ListServices(String::new())],
    )
    .await;
    assert_eq!(instance.served(), 3);

    let addr = instance.addr;
    drop(watch);
    drop(health_client);
    drop(users);
    instance.shutdown().await.unwrap();
    assert_refused(addr).await;
}

#[tokio::test]
async fn dropping_an_instance_stops_it() {
    let instance = shop::spawn_users_v1("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = instance.addr;
    drop(instance);
    assert_refused(addr).await;
}

/// Waits, boundedly, for `condition` to hold.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..250 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits, boundedly, for the next message of a response stream.
async fn next<T>(stream: &mut tonic::Streaming<T>) -> Result<Option<T>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("no message within 5s")
}

async fn order_client(backends: &shop::Backends) -> OrderServiceClient<tonic::transport::Channel> {
    OrderServiceClient::connect(url(backends.orders))
        .await
        .unwrap()
}

fn watch_request(name: &str) -> WatchOrderRequest {
    WatchOrderRequest { name: name.into() }
}

#[tokio::test]
async fn watch_order_sends_current_status_then_changes_until_terminal() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let mut orders = order_client(&backends).await;

    let mut watch = orders
        .watch_order(watch_request("users/1/orders/1002"))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut watch).await.unwrap().unwrap();
    assert_eq!(first.name, "users/1/orders/1002");
    assert_eq!(first.status(), OrderStatus::Pending);
    // Never changed: the change that placed it.
    assert_eq!(
        first.change_time.unwrap().to_string(),
        "2026-02-02T16:45:00Z"
    );
    assert_eq!(backends.active_watches(), 1);

    orders
        .cancel_order(CancelOrderRequest {
            name: "users/1/orders/1002".into(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap();
    let cancelled = next(&mut watch).await.unwrap().unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(cancelled.reason, "changed my mind");
    assert!(cancelled.change_time.unwrap().seconds > first.change_time.unwrap().seconds);
    // Terminal: the stream ends with OK.
    assert!(next(&mut watch).await.unwrap().is_none());
    assert_eq!(
        (backends.active_watches(), backends.cancelled_watches()),
        (0, 0)
    );

    // An order already in a terminal status: one message, then the end.
    let mut shipped = orders
        .watch_order(watch_request("users/2/orders/1003"))
        .await
        .unwrap()
        .into_inner();
    let only = next(&mut shipped).await.unwrap().unwrap();
    assert_eq!(only.status(), OrderStatus::Shipped);
    assert!(next(&mut shipped).await.unwrap().is_none());

    for (name, code) in [
        ("users/1/orders/9999", Code::NotFound),
        ("orders/1001", Code::InvalidArgument),
    ] {
        let err = orders.watch_order(watch_request(name)).await.unwrap_err();
        assert_eq!(err.code(), code, "{name}");
    }
    assert_eq!(backends.cancelled_watches(), 0);
}

#[tokio::test]
async fn dropping_a_watch_counts_as_cancelled() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let mut orders = order_client(&backends).await;
    let mut watch = orders
        .watch_order(watch_request("users/1/orders/1001"))
        .await
        .unwrap()
        .into_inner();
    next(&mut watch).await.unwrap().unwrap();
    assert_eq!(
        (backends.active_watches(), backends.cancelled_watches()),
        (1, 0)
    );

    // The client resets the stream; the connection stays up.
    drop(watch);
    eventually("a cancelled watch", || backends.cancelled_watches() == 1).await;
    assert_eq!(backends.active_watches(), 0);

    // Still counted once, and a finished watch is not counted at all.
    orders
        .cancel_order(CancelOrderRequest {
            name: "users/1/orders/1001".into(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let mut watch = orders
        .watch_order(watch_request("users/1/orders/1001"))
        .await
        .unwrap()
        .into_inner();
    while next(&mut watch).await.unwrap().is_some() {}
    assert_eq!(backends.cancelled_watches(), 1);
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let mut orders = order_client(&backends).await;
    let mut watch = orders
        .watch_order(watch_request("users/1/orders/1001"))
        .await
        .unwrap()
        .into_inner();
    next(&mut watch).await.unwrap().unwrap();

    tokio::time::timeout(Duration::from_secs(5), backends.shutdown())
        .await
        .expect("shutdown waits for the open watch")
        .unwrap();
    let err = next(&mut watch).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn sync_order_status_acks_each_update_before_the_next() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let mut orders = order_client(&backends).await;
    let mut watch = orders
        .watch_order(watch_request("users/1/orders/1002"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next(&mut watch).await.unwrap().unwrap().status(),
        OrderStatus::Pending
    );

    let (updates, rx) = tokio::sync::mpsc::channel(1);
    let update = |name: &str, status: OrderStatus, reason: &str| OrderStatusUpdate {
        name: name.into(),
        status: status.into(),
        reason: reason.into(),
    };
    updates
        .send(update(
            "users/1/orders/1002",
            OrderStatus::Paid,
            "paid by card",
        ))
        .await
        .unwrap();
    let mut acks = orders
        .sync_order_status(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    // Each ack arrives while the request stream is still open.
    let mut ack = next(&mut acks).await.unwrap().unwrap();
    assert_eq!(
        (
            ack.name.as_str(),
            ack.status(),
            ack.accepted,
            ack.reason.as_str()
        ),
        ("users/1/orders/1002", OrderStatus::Paid, true, "")
    );
    let paid = next(&mut watch).await.unwrap().unwrap();
    assert_eq!(
        (paid.status(), paid.reason.as_str()),
        (OrderStatus::Paid, "paid by card")
    );

    for (sent, want_status, want_reason) in [
        (
            update("users/1/orders/1002", OrderStatus::Pending, ""),
            OrderStatus::Paid,
            "cannot change from ORDER_STATUS_PAID to ORDER_STATUS_PENDING",
        ),
        (
            update("users/1/orders/4242", OrderStatus::Paid, ""),
            OrderStatus::Unspecified,
            "no such order",
        ),
        (
            update("users/2/orders/1003", OrderStatus::Cancelled, ""),
            OrderStatus::Shipped,
            "cannot change from ORDER_STATUS_SHIPPED to ORDER_STATUS_CANCELLED",
        ),
    ] {
        let case = format!("{sent:?}");
        updates.send(sent).await.unwrap();
        ack = next(&mut acks).await.unwrap().unwrap();
        assert!(!ack.accepted, "{case}");
        assert_eq!(ack.status(), want_status, "{case}");
        assert_eq!(ack.reason, want_reason, "{case}");
    }

    updates
        .send(update(
            "users/1/orders/1002",
            OrderStatus::Shipped,
            "handed to DHL",
        ))
        .await
        .unwrap();
    ack = next(&mut acks).await.unwrap().unwrap();
    assert!(ack.accepted);
    assert_eq!(ack.status(), OrderStatus::Shipped);
    let shipped = next(&mut watch).await.unwrap().unwrap();
    assert_eq!(shipped.status(), OrderStatus::Shipped);
    assert!(next(&mut watch).await.unwrap().is_none());

    drop(updates);
    assert!(next(&mut acks).await.unwrap().is_none());
    let order = orders
        .get_order(GetOrderRequest {
            name: "users/1/orders/1002".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.status(), OrderStatus::Shipped);
}

#[tokio::test]
async fn get_invoice_returns_csv() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let mut orders = order_client(&backends).await;
    let invoice = orders
        .get_invoice(GetInvoiceRequest {
            name: "users/1/orders/1001".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(invoice.content_type, "text/csv; charset=utf-8");
    assert_eq!(
        String::from_utf8(invoice.data).unwrap(),
        "sku,quantity,unit_price,line_total,currency\n\
         sku-espresso,2,12.50,25.00,USD\n\
         sku-grinder,1,89.99,89.99,USD\n\
         total,,,114.99,USD\n"
    );

    let err = orders
        .get_invoice(GetInvoiceRequest {
            name: "users/1/orders/9999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn export_orders_streams_a_chunk_per_order() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let orders = order_client(&backends).await;
    let export = |parent: &str| {
        let mut orders = orders.clone();
        let parent = parent.to_string();
        async move {
            let mut chunks = orders
                .export_orders(ExportOrdersRequest { parent })
                .await?
                .into_inner();
            let mut all = Vec::new();
            while let Some(chunk) = next(&mut chunks).await? {
                all.push(chunk);
            }
            Ok::<_, tonic::Status>(all)
        }
    };
    let text = |chunk: &HttpBody| String::from_utf8(chunk.data.clone()).unwrap();

    let chunks = export("users/1").await.unwrap();
    let types: Vec<_> = chunks.iter().map(|c| c.content_type.as_str()).collect();
    assert_eq!(types, ["text/csv; charset=utf-8", "", ""]);
    let lines: Vec<_> = chunks.iter().map(text).collect();
    assert_eq!(
        lines,
        [
            "name,status,total_units,currency,create_time\n",
            "users/1/orders/1001,ORDER_STATUS_PAID,114,USD,2026-01-20T10:00:00Z\n",
            "users/1/orders/1002,ORDER_STATUS_PENDING,45,USD,2026-02-02T16:45:00Z\n",
        ]
    );

    // A user without orders gets the header only.
    assert_eq!(export("users/3").await.unwrap().len(), 1);
    for (parent, code) in [
        ("users/9", Code::NotFound),
        ("customers/1", Code::InvalidArgument),
    ] {
        let err = export(parent).await.unwrap_err();
        assert_eq!(err.code(), code, "{parent}");
    }
}

fn upload_chunk(name: &str, content_type: &str, data: Vec<u8>) -> UploadAttachmentRequest {
    UploadAttachmentRequest {
        name: name.into(),
        file: Some(HttpBody {
            content_type: content_type.into(),
            data,
            extensions: Vec::new(),
        }),
    }
}

#[tokio::test]
async fn upload_attachment_hashes_a_multi_chunk_file() {
    use sha2::{Digest as _, Sha256};

    let backends = shop::spawn_ephemeral().await.unwrap();
    let mut orders = order_client(&backends).await;
    let name = "users/1/orders/1001";
    let parts: Vec<Vec<u8>> = (0..3u8)
        .map(|i| vec![i; 100_000 + usize::from(i)])
        .collect();
    let whole = parts.concat();
    let chunks: Vec<_> = parts
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            // Later chunks leave the content type, and the last the name, empty.
            let content_type = if i == 0 { "application/pdf" } else { "" };
            let chunk_name = if i == 2 { "" } else { name };
            upload_chunk(chunk_name, content_type, data)
        })
        .collect();
    let attachment = orders
        .upload_attachment(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(attachment.name, "users/1/orders/1001/attachments/1");
    assert_eq!(attachment.content_type, "application/pdf");
    assert_eq!(attachment.size_bytes, 300_003);
    assert_eq!(attachment.chunks, 3);
    let want: String = Sha256::digest(&whole)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(attachment.sha256, want);

    let second = orders
        .upload_attachment(tokio_stream::iter([upload_chunk(name, "", b"hi".to_vec())]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.name, "users/1/orders/1001/attachments/2");
    assert_eq!(second.content_type, "application/octet-stream");
    assert_eq!((second.size_bytes, second.chunks), (2, 1));
}

#[tokio::test]
async fn upload_attachment_rejects_bad_uploads() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let mut orders = order_client(&backends).await;
    let name = "users/1/orders/1001";
    let mebibyte = || upload_chunk(name, "", vec![7; 1024 * 1024]);

    let sixteen_mib: Vec<_> = (0..16).map(|_| mebibyte()).collect();
    let at_limit = orders
        .upload_attachment(tokio_stream::iter(sixteen_mib))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(at_limit.size_bytes, 16 * 1024 * 1024);

    for (case, chunks, code, message) in [
        ("empty", vec![], Code::InvalidArgument, "no chunks"),
        (
            "two orders",
            vec![
                upload_chunk(name, "text/plain", b"a".to_vec()),
                upload_chunk("users/1/orders/1002", "", b"b".to_vec()),
            ],
            Code::InvalidArgument,
            "chunk 2 names users/1/orders/1002",
        ),
        (
            "unknown order",
            vec![upload_chunk("users/1/orders/9999", "", b"a".to_vec())],
            Code::NotFound,
            "users/1/orders/9999",
        ),
        (
            "too large",
            (0..17).map(|_| mebibyte()).collect(),
            Code::ResourceExhausted,
            "16777216 bytes",
        ),
    ] {
        let err = orders
            .upload_attachment(tokio_stream::iter(chunks))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{case}: {err:?}");
        assert!(err.message().contains(message), "{case}: {err:?}");
    }
}

fn reserve(sku: &str, quantity: i32) -> ReserveStockRequest {
    ReserveStockRequest {
        sku: sku.into(),
        quantity,
        order_name: "users/1/orders/1002".into(),
        ttl: None,
        etag: String::new(),
    }
}

#[tokio::test]
async fn bulk_reserve_is_all_or_nothing() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let mut inventory = InventoryServiceClient::connect(url(backends.inventory))
        .await
        .unwrap();
    let levels = {
        let inventory = inventory.clone();
        move |sku: &'static str| {
            let mut inventory = inventory.clone();
            async move {
                let level = inventory
                    .get_stock(GetStockRequest { sku: sku.into() })
                    .await
                    .unwrap()
                    .into_inner();
                (level.available, level.reserved)
            }
        }
    };

    let done = inventory
        .bulk_reserve(tokio_stream::iter([
            reserve("sku-espresso", 10),
            reserve("sku-grinder", 2),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.count, 2);
    let ids: Vec<_> = done.reservations.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["res-1", "res-2"]);
    assert_eq!(levels("sku-espresso").await, (110, 10));
    assert_eq!(levels("sku-grinder").await, (3, 2));

    let err = inventory
        .bulk_reserve(tokio_stream::iter([
            reserve("sku-espresso", 5),
            reserve("sku-grinder", 3),
            reserve("sku-kettle", 1),
            reserve("sku-espresso", 1),
        ]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "message 3: not enough stock of sku-kettle to reserve 1"
    );
    let failure = err.get_details_precondition_failure().unwrap();
    assert_eq!(failure.violations[0].subject, "sku-kettle");
    // The first two were released.
    assert_eq!(levels("sku-espresso").await, (110, 10));
    assert_eq!(levels("sku-grinder").await, (3, 2));

    let err = inventory
        .bulk_reserve(tokio_stream::iter([reserve("sku-toaster", 1)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "message 1: sku sku-toaster not found");

    let nothing = inventory
        .bulk_reserve(tokio_stream::iter(Vec::<ReserveStockRequest>::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nothing.count, 0);
}

#[tokio::test]
async fn bulk_reserve_fails_as_soon_as_a_request_fails() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let mut inventory = InventoryServiceClient::connect(url(backends.inventory))
        .await
        .unwrap();
    let (requests, rx) = tokio::sync::mpsc::channel(4);
    requests.send(reserve("sku-espresso", 1)).await.unwrap();
    requests.send(reserve("sku-espresso", 0)).await.unwrap();
    // `requests` stays open: the answer cannot wait for the end of the stream.
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        inventory.bulk_reserve(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("no answer before the end of the request stream")
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("message 2: "), "{err:?}");
    let fields: Vec<_> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["quantity"]);
    drop(requests);
}

#[test]
fn the_binary_writes_no_colour_codes_into_a_pipe() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shop"))
        .args([
            "--users",
            "127.0.0.1:0",
            "--orders",
            "127.0.0.1:0",
            "--inventory",
            "127.0.0.1:0",
            "--users-v2",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout)
        .lines()
        .map(Result::unwrap)
        .find(|l| l.contains("listening"));
    child.kill().unwrap();
    child.wait().unwrap();
    let line = line.expect("a listening line");
    assert!(!line.contains('\u{1b}'), "{line:?}");
}
