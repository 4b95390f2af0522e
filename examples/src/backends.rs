//! Starts the three shop services, each on its own tonic server and port,
//! as tokio tasks in the caller's runtime.

use crate::inventory::Inventory;
use crate::orders::Orders;
use crate::pb::shop::inventory::v1::inventory_service_server::InventoryServiceServer;
use crate::pb::shop::order::v1::order_service_server::OrderServiceServer;
use crate::pb::shop::user::v1::user_service_server::UserServiceServer;
use crate::users::Users;
use anyhow::Context as _;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};

/// Running shop backends. Dropping it stops the servers; [`Backends::shutdown`]
/// also waits until they have stopped.
#[derive(Debug)]
pub struct Backends {
    /// Address of `shop.user.v1.UserService`.
    pub users: SocketAddr,
    /// Address of `shop.order.v1.OrderService`.
    pub orders: SocketAddr,
    /// Address of `shop.inventory.v1.InventoryService`.
    pub inventory: SocketAddr,
    /// The servers stop when this changes or is dropped.
    stop: watch::Sender<()>,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl Backends {
    /// Stops the servers gracefully and waits for them to finish.
    ///
    /// Errors: a server failed or panicked.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let Backends { stop, servers, .. } = self;
        drop(stop);
        for server in servers {
            server
                .await
                .context("backend server task panicked")?
                .context("backend server failed")?;
        }
        Ok(())
    }
}

/// Binds the three addresses (port 0 picks a free port), serves fresh,
/// seeded services on them and returns once all listeners are bound. The
/// returned [`Backends`] holds the actual addresses.
///
/// Must be called inside a tokio runtime. Errors: an address cannot be bound.
pub async fn spawn(
    users: SocketAddr,
    orders: SocketAddr,
    inventory: SocketAddr,
) -> anyhow::Result<Backends> {
    let users = bind(users, "user").await?;
    let orders = bind(orders, "order").await?;
    let inventory = bind(inventory, "inventory").await?;
    let (stop, stopped) = watch::channel(());

    let backends = Backends {
        users: users
            .local_addr()
            .context("reading the user service address")?,
        orders: orders
            .local_addr()
            .context("reading the order service address")?,
        inventory: inventory
            .local_addr()
            .context("reading the inventory service address")?,
        servers: vec![
            serve(
                Server::builder().add_service(UserServiceServer::new(Users::new())),
                users,
                stopped.clone(),
            ),
            serve(
                Server::builder().add_service(OrderServiceServer::new(Orders::new())),
                orders,
                stopped.clone(),
            ),
            serve(
                Server::builder().add_service(InventoryServiceServer::new(Inventory::new())),
                inventory,
                stopped,
            ),
        ],
        stop,
    };
    tracing::info!(
        users = %backends.users,
        orders = %backends.orders,
        inventory = %backends.inventory,
        "shop backends listening"
    );
    Ok(backends)
}

/// [`spawn`] with all three services on free ports of 127.0.0.1.
pub async fn spawn_ephemeral() -> anyhow::Result<Backends> {
    let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    spawn(any_port, any_port, any_port).await
}

async fn bind(addr: SocketAddr, service: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {service} service to {addr}"))
}

fn serve(
    router: Router,
    listener: TcpListener,
    mut stopped: watch::Receiver<()>,
) -> JoinHandle<Result<(), tonic::transport::Error>> {
    // TCP_NODELAY, as tonic's own `serve` sets it: with Nagle, small gRPC
    // responses can wait for the client's delayed ACK (~40 ms on Linux).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        // Err means the sender was dropped with its Backends: stop as well.
        let _ = stopped.changed().await;
    }))
}
