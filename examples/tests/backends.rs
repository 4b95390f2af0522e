//! Starts the backends on ephemeral ports and calls each service through its
//! generated tonic client, as the gateway's integration tests will: the shop
//! services, grpc.health.v1 and gRPC server reflection.

use std::net::SocketAddr;
use std::time::Duration;

use shop::pb::shop::inventory::v1::{
    ReserveStockRequest, inventory_service_client::InventoryServiceClient,
};
use shop::pb::shop::order::v1::{
    GetOrderRequest, OrderStatus, order_service_client::OrderServiceClient,
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
