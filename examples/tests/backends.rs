//! Starts the backends on ephemeral ports and calls each service through its
//! generated tonic client, as the gateway's integration tests will.

use shop::pb::shop::inventory::v1::{
    ReserveStockRequest, inventory_service_client::InventoryServiceClient,
};
use shop::pb::shop::order::v1::{
    GetOrderRequest, OrderStatus, order_service_client::OrderServiceClient,
};
use shop::pb::shop::user::v1::{
    DeleteUserRequest, GetUserRequest, user_service_client::UserServiceClient,
};
use tonic::Code;
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
    let addr = backends.users;
    drop(backends);

    // The listener closes once the server task sees the shutdown signal.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused, "{addr} still accepts connections");
}
