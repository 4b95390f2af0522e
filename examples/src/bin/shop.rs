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

use anyhow::Context as _;
use clap::Parser;
use std::net::SocketAddr;
use std::process::ExitCode;
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
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    backends.shutdown().await
}
