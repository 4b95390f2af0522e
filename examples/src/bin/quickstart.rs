//! The quick start in one command: the four shop backends and protogate in
//! front of them, all on loopback, as `gateway.yaml` describes.
//!
//! ```text
//! cargo run -p shop --bin quickstart [-- --config gateway.yaml]
//! ```
//!
//! The backends listen where `gateway.yaml`'s backends `users`, `orders`,
//! `inventory` and `users-v2` point (each on its first endpoint); without a
//! `users-v2` backend, users v2 runs on a free port, unrouted. The gateway
//! listens on `server.listen` (127.0.0.1:8080) and reloads when
//! `gateway.yaml` changes. Ctrl-C stops everything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::Parser;
use protogate::Gateway;
use protogate::config::Config;
use protogate::server::Live;
use protogate::telemetry::{self, LogFormat};

/// Starts the example backends and the gateway together.
#[derive(Debug, Parser)]
struct Args {
    /// Gateway config; defaults to the repository's gateway.yaml.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let path = args.config.unwrap_or_else(|| {
        let here = PathBuf::from("gateway.yaml");
        if here.exists() {
            here
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway.yaml")
        }
    });
    let config = protogate::config::load(&path)?;
    let mut telemetry = telemetry::init(LogFormat::Text, Some(&config.tracing))?;
    let required = |name| {
        backend_addr(&config, name)?
            .ok_or_else(|| anyhow!("{}: no backend named {name}", config.source.display()))
    };
    let backends = shop::spawn(shop::Addresses {
        users: required("users")?,
        orders: required("orders")?,
        inventory: required("inventory")?,
        users_v2: backend_addr(&config, "users-v2")?.unwrap_or(shop::Addresses::default().users_v2),
    })
    .await?;
    println!(
        "shop backends: users on {}, orders on {}, inventory on {}, users v2 on {}",
        backends.users, backends.orders, backends.inventory, backends.users_v2
    );
    let listen = config.listen;
    let gateway = Gateway::load(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    println!(
        "protogate listening on {url} ({} routes)",
        gateway.routes().routes().len()
    );
    println!("try: curl -s {url}/v1/users/1");
    // Edits to gateway.yaml (and SIGHUP) reload the gateway, as with `protogate serve`.
    let live = Live::new(gateway);
    let watch = live.watch()?;
    let admin = protogate::server::admin::start(&live).await?;
    if let Some(addr) = live.gateway().config().admin.listen {
        println!("admin API on http://{addr} (/routes, /explain, /schema/diff, /config)");
    }
    let served = protogate::server::serve(listener, live, protogate::cli::shutdown_signal()).await;
    telemetry.shutdown().await;
    served?;
    // The reload task holds the gateway and its backend connections; the
    // backends stop only once those are gone.
    drop((watch, admin));
    backends.shutdown().await
}

/// The socket address of the first endpoint of the backend `name`, or None
/// if the config has no such backend. One server is started per backend:
/// further endpoints get none, and the gateway's health checks find them
/// down.
///
/// Errors: the backend has no endpoint, or it is not an IP:port.
fn backend_addr(config: &Config, name: &str) -> anyhow::Result<Option<SocketAddr>> {
    let Some(backend) = config.backends.iter().find(|b| b.name == name) else {
        return Ok(None);
    };
    let (first, others) = backend
        .endpoints
        .split_first()
        .ok_or_else(|| anyhow!("backend {name} has no endpoint"))?;
    if !others.is_empty() {
        tracing::warn!(
            backend = name,
            endpoint = %first,
            "quickstart serves only the first endpoint of a backend"
        );
    }
    let authority = first
        .authority()
        .ok_or_else(|| anyhow!("backend {name}: {first} has no host:port"))?;
    let addr = authority.as_str().parse().with_context(|| {
        format!("backend {name}: {authority} is not an IP:port on this machine")
    })?;
    Ok(Some(addr))
}
