//! Runs the four shop backends until Ctrl-C:
//!
//! ```text
//! cargo run -p shop --bin shop -- [--users 127.0.0.1:50051] [--orders 127.0.0.1:50052]
//!                                 [--inventory 127.0.0.1:50053] [--users-v2 127.0.0.1:50054]
//! ```
//!
//! Each also serves `grpc.health.v1.Health` and gRPC server reflection, so
//! `grpcurl -plaintext 127.0.0.1:50054 list` works. Log verbosity follows
//! `RUST_LOG` (default `info`).
//!
//! With `--etcd http://127.0.0.1:2379`, each backend registers itself under
//! `<--etcd-prefix><backend>/<address>` (`/services/orders/127.0.0.1:50052`)
//! with a lease, in the Go endpoints JSON format, `--version-tag` as its
//! `version` metadata; Ctrl-C or SIGTERM revokes the lease. Port 0 picks free ports, so
//! several instances run side by side.

use clap::Parser;
use std::net::SocketAddr;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Example gRPC backends (users v1 and v2, orders, inventory) for protogate.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address of shop.user.v1.UserService.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    users: SocketAddr,
    /// Address of shop.order.v1.OrderService.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50052")]
    orders: SocketAddr,
    /// Address of shop.inventory.v1.InventoryService.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50053")]
    inventory: SocketAddr,
    /// Address of shop.user.v2.UserService.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50054")]
    users_v2: SocketAddr,
    /// etcd client URL to register in (repeat for a cluster).
    #[arg(long, value_name = "URL")]
    etcd: Vec<String>,
    /// Key prefix of the registrations; each backend's name follows it.
    #[arg(long, value_name = "PREFIX", default_value = "/services/")]
    etcd_prefix: String,
    /// `version` metadata of the registrations (a canary registers `v2`).
    #[arg(long, value_name = "TAG", default_value = "v1")]
    version_tag: String,
    /// IP to register instead of the listening one (needed when listening
    /// on 0.0.0.0: a pod registers its pod IP).
    #[arg(long, value_name = "IP")]
    advertise_ip: Option<std::net::IpAddr>,
    /// Lease TTL: how long the entries outlive a dead process.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    ttl: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colour codes only for a person at a terminal, not in files or pipes.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Listening from the start, so a signal that comes right after the
    // registration is not missed (nor fatal), and SIGTERM (a stopping pod)
    // revokes the lease as Ctrl-C does.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let backends = shop::spawn(shop::Addresses {
        users: args.users,
        orders: args.orders,
        inventory: args.inventory,
        users_v2: args.users_v2,
    })
    .await?;
    println!("shop.user.v1.UserService           on {}", backends.users);
    println!("shop.order.v1.OrderService         on {}", backends.orders);
    println!(
        "shop.inventory.v1.InventoryService on {}",
        backends.inventory
    );
    println!(
        "shop.user.v2.UserService           on {}",
        backends.users_v2
    );
    let registration = if args.etcd.is_empty() {
        None
    } else {
        let unspecified = [
            backends.users,
            backends.orders,
            backends.inventory,
            backends.users_v2,
        ]
        .iter()
        .any(|a| a.ip().is_unspecified());
        if unspecified && args.advertise_ip.is_none() {
            anyhow::bail!("listening on an unspecified address: give --advertise-ip to register");
        }
        let entries = shop::registry::shop_entries(
            &args.etcd_prefix,
            &backends,
            &args.version_tag,
            args.advertise_ip,
        );
        let keys: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
        let registration = shop::registry::Registration::register(
            &args.etcd,
            entries,
            std::time::Duration::from_secs(args.ttl),
        )
        .await?;
        println!(
            "registered in etcd under lease {:x}: {}",
            registration.lease(),
            keys.join(", ")
        );
        Some(registration)
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    if let Some(registration) = registration
        && let Err(e) = registration.revoke().await
    {
        eprintln!("warning: {e:#}");
    }
    backends.shutdown().await
}
