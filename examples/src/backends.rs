//! Starts the four shop services, each on its own tonic server and port, as
//! tokio tasks in the caller's runtime. Every server also answers
//! `grpc.health.v1.Health` and gRPC server reflection (v1 and v1alpha), as a
//! production backend would; [`Servers::start`] is the one place that wires
//! them.

use crate::inventory::Inventory;
use crate::orders::Orders;
use crate::pb::shop::inventory::v1::inventory_service_server::{self, InventoryServiceServer};
use crate::pb::shop::order::v1::order_service_server::{self, OrderServiceServer};
use crate::pb::shop::user::v1::user_service_server::{self, UserServiceServer};
use crate::pb::shop::user::v2::user_service_server as user_v2_service_server;
use crate::users::Users;
use crate::users_v2::UsersV2;
use anyhow::Context as _;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Where [`spawn`] binds each service. Port 0 picks a free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// `shop.user.v1.UserService`.
    pub users: SocketAddr,
    /// `shop.order.v1.OrderService`.
    pub orders: SocketAddr,
    /// `shop.inventory.v1.InventoryService`.
    pub inventory: SocketAddr,
    /// `shop.user.v2.UserService`.
    pub users_v2: SocketAddr,
}

impl Default for Addresses {
    /// A free port of 127.0.0.1 for every service.
    fn default() -> Self {
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Addresses {
            users: any_port,
            orders: any_port,
            inventory: any_port,
            users_v2: any_port,
        }
    }
}

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
    /// Address of `shop.user.v2.UserService`.
    pub users_v2: SocketAddr,
    /// The order service being served, for its watch counts.
    order_service: Orders,
    servers: Servers,
}

impl Backends {
    /// `OrderService.WatchOrder` streams now open; see
    /// [`Orders::active_watches`].
    pub fn active_watches(&self) -> u64 {
        self.order_service.active_watches()
    }

    /// `OrderService.WatchOrder` streams whose client went away before the
    /// stream finished; see [`Orders::cancelled_watches`].
    pub fn cancelled_watches(&self) -> u64 {
        self.order_service.cancelled_watches()
    }

    /// Stops the servers gracefully and waits for them to finish. Open
    /// `OrderService.WatchOrder` streams end with UNAVAILABLE rather than
    /// holding the shutdown up.
    ///
    /// Errors: a server failed or panicked.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.servers.shutdown().await
    }
}

/// Binds the four addresses, serves fresh, seeded services on them and
/// returns once all listeners are bound. The returned [`Backends`] holds the
/// actual addresses.
///
/// Must be called inside a tokio runtime. Errors: an address cannot be bound;
/// servers started before the failure are stopped.
pub async fn spawn(addresses: Addresses) -> anyhow::Result<Backends> {
    let mut servers = Servers::new();
    let (users, _) = servers
        .start(
            addresses.users,
            user_service_server::SERVICE_NAME,
            Server::builder().add_service(UserServiceServer::new(Users::new())),
        )
        .await?;
    let order_service = Orders::new().with_stop(servers.stopping());
    let (orders, _) = servers
        .start(
            addresses.orders,
            order_service_server::SERVICE_NAME,
            Server::builder().add_service(OrderServiceServer::new(order_service.clone())),
        )
        .await?;
    let (inventory, _) = servers
        .start(
            addresses.inventory,
            inventory_service_server::SERVICE_NAME,
            Server::builder().add_service(InventoryServiceServer::new(Inventory::new())),
        )
        .await?;
    let (users_v2, _) = servers
        .start(
            addresses.users_v2,
            user_v2_service_server::SERVICE_NAME,
            Server::builder().add_service(user_v2_service_server::UserServiceServer::new(
                UsersV2::new(),
            )),
        )
        .await?;
    tracing::info!(%users, %orders, %inventory, %users_v2, "shop backends listening");
    Ok(Backends {
        users,
        orders,
        inventory,
        users_v2,
        order_service,
        servers,
    })
}

/// [`spawn`] with all four services on free ports of 127.0.0.1.
pub async fn spawn_ephemeral() -> anyhow::Result<Backends> {
    spawn(Addresses::default()).await
}

/// Tonic servers that stop together: when `stop` changes or is dropped.
#[derive(Debug)]
pub(crate) struct Servers {
    stop: watch::Sender<()>,
    tasks: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl Servers {
    pub(crate) fn new() -> Self {
        Servers {
            stop: watch::Sender::new(()),
            tasks: Vec::new(),
        }
    }

    /// Changes, or is dropped, when the servers stop.
    pub(crate) fn stopping(&self) -> watch::Receiver<()> {
        self.stop.subscribe()
    }

    /// Binds `addr` and serves `router`, which serves the shop service named
    /// `service`, plus:
    ///
    /// - `grpc.health.v1.Health`, reporting the whole server ("") and
    ///   `service` SERVING until the returned reporter says otherwise;
    /// - gRPC server reflection, v1 and v1alpha, over
    ///   [`FILE_DESCRIPTOR_SET`](crate::FILE_DESCRIPTOR_SET) and the health
    ///   and reflection protos, listing `service` and those three.
    ///
    /// Returns the bound address. Errors: `addr` cannot be bound.
    pub(crate) async fn start(
        &mut self,
        addr: SocketAddr,
        service: &str,
        router: Router,
    ) -> anyhow::Result<(SocketAddr, HealthReporter)> {
        self.start_describing(addr, service, router, crate::FILE_DESCRIPTOR_SET)
            .await
    }

    /// [`Servers::start`] with reflection describing the shop from
    /// `descriptors`, an encoded `FileDescriptorSet`, instead of the protos
    /// it was built from.
    pub(crate) async fn start_describing(
        &mut self,
        addr: SocketAddr,
        service: &str,
        router: Router,
        descriptors: &[u8],
    ) -> anyhow::Result<(SocketAddr, HealthReporter)> {
        let (health, health_server) = tonic_health::server::health_reporter();
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
        let reflection = crate::reflection::reflection(
            &[
                descriptors,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ],
            &[
                service,
                tonic_health::pb::health_server::SERVICE_NAME,
                tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
                tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
            ],
        )
        .with_context(|| format!("indexing descriptors for the reflection of {service}"))?;
        let router = router
            .add_service(health_server)
            .add_service(reflection.v1())
            .add_service(reflection.v1alpha());

        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {service} to {addr}"))?;
        let local_addr = listener
            .local_addr()
            .with_context(|| format!("reading the address of {service}"))?;
        // TCP_NODELAY, as tonic's own `serve` sets it: with Nagle, small gRPC
        // responses can wait for the client's delayed ACK (~40 ms on Linux).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut stopped = self.stop.subscribe();
        self.tasks
            .push(tokio::spawn(router.serve_with_incoming_shutdown(
                incoming,
                async move {
                    // Err means the sender was dropped with its owner: stop as well.
                    let _ = stopped.changed().await;
                },
            )));
        Ok((local_addr, health))
    }

    /// Stops the servers gracefully and waits for them to finish.
    ///
    /// Errors: a server failed or panicked.
    pub(crate) async fn shutdown(self) -> anyhow::Result<()> {
        let Servers { stop, tasks } = self;
        drop(stop);
        for task in tasks {
            task.await
                .context("backend server task panicked")?
                .context("backend server failed")?;
        }
        Ok(())
    }
}
