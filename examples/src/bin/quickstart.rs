//! The quick start in one command: the three shop backends and protogate in
//! front of them, all on loopback, as `gateway.yaml` describes.
//!
//! ```text
//! cargo run -p shop --bin quickstart [-- --config gateway.yaml]
//! ```
//!
//! The backends listen where `gateway.yaml`'s `backends` point; the gateway
//! listens on `server.listen` (127.0.0.1:8080). Ctrl-C stops everything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use clap::Parser;
use protogate::Gateway;
use protogate::config::Config;
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
    telemetry::init(LogFormat::Text);
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
    let backends = shop::spawn(
        backend_addr(&config, "users")?,
        backend_addr(&config, "orders")?,
        backend_addr(&config, "inventory")?,
    )
    .await?;
    println!(
        "shop backends: users on {}, orders on {}, inventory on {}",
        backends.users, backends.orders, backends.inventory
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
    protogate::server::serve(listener, gateway, protogate::cli::shutdown_signal()).await?;
    backends.shutdown().await
}

/// The socket address of a backend named in the config.
fn backend_addr(config: &Config, name: &str) -> anyhow::Result<SocketAddr> {
    let backend = config
        .backends
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| anyhow!("{}: no backend named {name}", config.source.display()))?;
    let authority = backend
        .address
        .authority()
        .ok_or_else(|| anyhow!("backend {name} has no host:port"))?;
    authority
        .as_str()
        .parse()
        .with_context(|| format!("backend {name}: {authority} is not an IP:port on this machine"))
}
