//! One more instance of `shop.user.v1.UserService`, for tests that need
//! several servers of one service (balancing, health checks, failover): it
//! counts the requests it serves and its health status can be flipped.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let any_port = "127.0.0.1:0".parse()?;
//! let (a, b) = (shop::spawn_users_v1(any_port).await?, shop::spawn_users_v1(any_port).await?);
//! // ... point a backend with endpoints a.addr and b.addr at them, call it ...
//! b.set_serving(false).await;
//! println!("a served {}, b served {}", a.served(), b.served());
//! # Ok(())
//! # }
//! ```

use crate::backends::Servers;
use crate::pb::shop::user::v1::user_service_server::{SERVICE_NAME, UserServiceServer};
use crate::users::Users;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// A running `shop.user.v1.UserService` with fresh seed data, health and
/// reflection, started by [`spawn_users_v1`]. Dropping it stops the server;
/// [`Instance::shutdown`] also waits until it has stopped.
#[derive(Debug)]
pub struct Instance {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// UserService requests received.
    served: Arc<AtomicU64>,
    health: HealthReporter,
    server: Servers,
}

impl Instance {
    /// Number of UserService requests it has served (all UserService methods
    /// are unary); health checks and reflection are not counted. A request is
    /// counted before its handler runs, so the count includes it once the
    /// caller has the response.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Sets the health status, SERVING or NOT_SERVING, of both the whole
    /// server ("") and `shop.user.v1.UserService`; `Watch` streams see the
    /// change. The service keeps answering either way.
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in ["", SERVICE_NAME] {
            self.health.set_service_status(service, status).await;
        }
    }

    /// Stops the server gracefully and waits for it to finish.
    ///
    /// Errors: the server failed or panicked.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.server.shutdown().await
    }
}

/// Binds `addr` (port 0 picks a free port) and serves a fresh
/// `shop.user.v1.UserService` there, with `grpc.health.v1.Health` and gRPC
/// reflection like every shop backend.
///
/// Must be called inside a tokio runtime. Errors: `addr` cannot be bound.
pub async fn spawn_users_v1(addr: SocketAddr) -> anyhow::Result<Instance> {
    spawn_users_v1_describing(addr, crate::FILE_DESCRIPTOR_SET).await
}

/// [`spawn_users_v1`] whose reflection answers from `descriptors`, an
/// encoded `FileDescriptorSet` that must define
/// `shop.user.v1.UserService`: the same service deployed from an edited
/// proto, for schema changes seen through reflection.
///
/// Must be called inside a tokio runtime. Errors: `addr` cannot be bound,
/// or `descriptors` do not decode or lack the service.
pub async fn spawn_users_v1_describing(
    addr: SocketAddr,
    descriptors: &[u8],
) -> anyhow::Result<Instance> {
    let served = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&served);
    // An interceptor runs once per request of the service it wraps, so
    // Health and reflection calls on the same server are not counted.
    let users = UserServiceServer::with_interceptor(Users::new(), move |request| {
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(request)
    });
    let mut server = Servers::new();
    let (addr, health) = server
        .start_describing(
            addr,
            SERVICE_NAME,
            Server::builder().add_service(users),
            descriptors,
        )
        .await?;
    tracing::info!(%addr, "extra shop.user.v1.UserService instance listening");
    Ok(Instance {
        addr,
        served,
        health,
        server,
    })
}
