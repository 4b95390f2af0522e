//! Command line: `serve`, `check`, `openapi`, `token`, `hash-key`, `probe`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config;
use crate::gateway::Gateway;
use crate::openapi::Format;
use crate::server::Live;
use crate::telemetry::LogFormat;

/// REST/JSON gateway for gRPC services, driven by protobuf descriptors at run time.
#[derive(Debug, Parser)]
#[command(name = "protogate", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PROTOGATE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway.
    Serve {
        /// Config file.
        #[arg(long, short, default_value = "gateway.yaml", env = "PROTOGATE_CONFIG")]
        config: PathBuf,
        /// Listen address, overriding `server.listen`.
        #[arg(long, env = "PROTOGATE_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// Validate the config and descriptors and print the route table; exit
    /// non-zero when a binding cannot be routed.
    Check {
        /// Config file.
        #[arg(long, short, default_value = "gateway.yaml", env = "PROTOGATE_CONFIG")]
        config: PathBuf,
        /// Fail when a `reflection: true` backend does not answer (by
        /// default a warning: its routes are left out).
        #[arg(long)]
        require_reflection: bool,
    },
    /// Print the OpenAPI document without starting a server.
    Openapi {
        /// Config file.
        #[arg(long, short, default_value = "gateway.yaml", env = "PROTOGATE_CONFIG")]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Only this API version's document (e.g. v1); default all routes.
        #[arg(long = "api-version")]
        api_version: Option<String>,
        /// Fail when a `reflection: true` backend does not answer (by
        /// default a warning: its routes are left out).
        #[arg(long)]
        require_reflection: bool,
    },
    /// Say which route a request would match and what the gateway would do
    /// with it (the admin API's `/explain`), without starting a server.
    Explain {
        /// Config file.
        #[arg(long, short, default_value = "gateway.yaml", env = "PROTOGATE_CONFIG")]
        config: PathBuf,
        /// Fail when a `reflection: true` backend does not answer (by
        /// default a warning: its routes are left out).
        #[arg(long)]
        require_reflection: bool,
        /// The request's HTTP method, e.g. GET.
        method: String,
        /// Its path, with the query if any: /v1/users/1?view=FULL.
        path: String,
    },
    /// Print the JSON Schema (2020-12) of gateway.yaml, for editors and
    /// validators.
    ConfigSchema,
    /// Mint a JWT for local development.
    Token(TokenArgs),
    /// Print the SHA-256 of an API key, as `auth.api_keys` wants it.
    HashKey {
        /// The key.
        key: String,
    },
    /// Exit 0 when a gateway endpoint answers 2xx: a health check for
    /// images without curl (Docker HEALTHCHECK).
    Probe {
        /// The URL to check.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Accept any certificate: for probing the gateway's own HTTPS
        /// port on loopback, where the certificate names the public host.
        #[arg(long)]
        insecure: bool,
    },
}

/// `protogate token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// HMAC secret.
    #[arg(long, conflicts_with = "key", required_unless_present = "key")]
    pub secret: Option<String>,
    /// Private key in PEM (RSA, EC or Ed25519).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Signing algorithm.
    #[arg(long, default_value = "HS256")]
    pub alg: String,
    /// `iss`.
    #[arg(long)]
    pub issuer: String,
    /// `aud`.
    #[arg(long)]
    pub audience: String,
    /// `sub`.
    #[arg(long)]
    pub subject: String,
    /// `scope`, space-separated.
    #[arg(long)]
    pub scope: Option<String>,
    /// Lifetime.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,
    /// `kid` header.
    #[arg(long)]
    pub kid: Option<String>,
    /// Extra claims, `name=value` (JSON values allowed).
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever stopped the command; `main` prints it and exits non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.log_format;
    if !matches!(cli.command, Command::Serve { .. }) {
        crate::telemetry::init(format, None)?;
    }
    match cli.command {
        Command::Serve { config, listen } => {
            let mut config = config::load(&config)?;
            // Spans are exported only if the config says where.
            // Dropped last, so every line, the last one included, is written.
            let mut telemetry = crate::telemetry::init(format, Some(&config.tracing))?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let addr = config.listen;
            let gateway = Gateway::load(config).await?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let bound = listener.local_addr()?;
            let scheme = if gateway.config().tls.is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!(
                routes = gateway.routes().routes().len(),
                "protogate listening on {scheme}://{bound}"
            );
            let live = Live::with_listen_override(gateway, listen);
            let _watch = live.watch()?;
            let _admin = crate::server::admin::start(&live).await?;
            let served = crate::server::serve(listener, live, shutdown_signal()).await;
            telemetry.shutdown().await;
            served?;
            tracing::info!("protogate stopped");
            Ok(())
        }
        Command::Check {
            config,
            require_reflection,
        } => {
            let config = config::load(&config)?;
            if let Some(tls) = &config.tls {
                crate::tls::ServerTlsState::load(tls).context("server.tls")?;
            }
            let gateway = Gateway::load(config).await?;
            offline(&gateway, require_reflection)?;
            let mut out = std::io::stdout().lock();
            print_routes(&gateway, &mut out)?;
            let left_out = left_out(&gateway);
            anyhow::ensure!(
                left_out == 0,
                "{left_out} binding(s) cannot be routed; serve would leave them out"
            );
            Ok(())
        }
        Command::ConfigSchema => {
            let mut out = std::io::stdout().lock();
            out.write_all(config::json_schema().as_bytes())?;
            Ok(())
        }
        Command::Explain {
            config,
            require_reflection,
            method,
            path,
        } => {
            let gateway = Gateway::load(config::load(&config)?).await?;
            offline(&gateway, require_reflection)?;
            let explained = crate::server::admin::explanation(&gateway, &method, &path)
                .map_err(|e| anyhow::anyhow!(e))?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &explained)?;
            writeln!(out)?;
            Ok(())
        }
        Command::Openapi {
            config,
            format,
            api_version,
            require_reflection,
        } => {
            let gateway = Gateway::load(config::load(&config)?).await?;
            offline(&gateway, require_reflection)?;
            let built;
            let docs = if gateway.config().openapi.enabled {
                gateway.openapi()
            } else {
                built = crate::gateway::OpenApiDocs::build(
                    gateway.routes(),
                    gateway.pool(),
                    gateway.config(),
                    gateway.auth(),
                )?;
                &built
            };
            let doc = match &api_version {
                None => &docs.all,
                Some(v) => docs.versions.get(v).ok_or_else(|| {
                    let known: Vec<&str> = docs.versions.keys().map(String::as_str).collect();
                    anyhow::anyhow!(
                        "no API version {v:?}; served versions: {}",
                        known.join(", ")
                    )
                })?,
            };
            let text = doc.get(format);
            let mut out = std::io::stdout().lock();
            out.write_all(text)?;
            if !text.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        Command::Token(args) => {
            println!("{}", mint(&args)?);
            Ok(())
        }
        Command::HashKey { key } => {
            println!("{}", crate::auth::api_key::hash_hex(&key));
            Ok(())
        }
        Command::Probe {
            url,
            timeout,
            insecure,
        } => {
            crate::auth::install_tls_provider();
            let response = reqwest::Client::builder()
                .timeout(timeout)
                .tls_danger_accept_invalid_certs(insecure)
                .build()?
                .get(&url)
                .send()
                .await
                .with_context(|| format!("{url} did not answer"))?;
            anyhow::ensure!(
                response.status().is_success(),
                "{url} answered {}",
                response.status()
            );
            Ok(())
        }
    }
}

/// Signs a development token from command-line arguments.
///
/// # Errors
/// Unreadable keys, bad claims, or a key that does not fit the algorithm.
pub fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    use crate::auth::token::{SigningKey, TokenSpec};
    let algorithm: jsonwebtoken::Algorithm = args
        .alg
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown algorithm {:?}", args.alg))?;
    let key = match (&args.secret, &args.key) {
        (Some(secret), _) => SigningKey::Secret(secret.clone().into_bytes()),
        (None, Some(path)) => SigningKey::Pem(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        (None, None) => anyhow::bail!("give --secret or --key"),
    };
    let mut claims = serde_json::Map::new();
    for claim in &args.claims {
        let (name, value) = claim
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--claim {claim:?}: expected NAME=VALUE"))?;
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        claims.insert(name.to_owned(), value);
    }
    crate::auth::token::mint(
        &TokenSpec {
            algorithm,
            issuer: args.issuer.clone(),
            audience: args.audience.clone(),
            subject: args.subject.clone(),
            scope: args.scope.clone(),
            ttl: args.ttl,
            key_id: args.kid.clone(),
            claims,
        },
        &key,
    )
}

/// Bindings left out of the gateway's route table (duplicates aside).
fn left_out(gateway: &Gateway) -> usize {
    gateway
        .routes()
        .problems()
        .iter()
        .filter(|p| p.kind.is_error())
        .count()
}

/// `check` and `openapi` work without the backends: a reflection backend
/// that does not answer is a warning (its routes are left out), or with
/// `--require-reflection` an error.
fn offline(gateway: &Gateway, require_reflection: bool) -> anyhow::Result<()> {
    let pending = gateway.pending_reflection();
    if require_reflection && !pending.is_empty() {
        anyhow::bail!(
            "reflection does not answer for backend(s) {} (--require-reflection)",
            pending.join(", ")
        );
    }
    Ok(())
}

/// Writes the route table (HTTP method, template, gRPC method, backend),
/// then each binding left out (`error:`) or routed once (`warning:`).
///
/// # Errors
/// Write errors.
pub fn print_routes(gateway: &Gateway, out: &mut impl Write) -> std::io::Result<()> {
    let rows: Vec<[String; 4]> = gateway
        .routes()
        .routes()
        .iter()
        .map(|plan| {
            let r = &plan.route;
            [
                r.http_method.to_string(),
                r.template.source.clone(),
                r.method.full_name().to_owned(),
                r.backends
                    .iter()
                    .map(|b| {
                        if r.backends.len() > 1 {
                            format!("{}({})", b.name, b.weight)
                        } else {
                            b.name.clone()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0).max(6), width(1).max(4), width(2).max(6));
    writeln!(
        out,
        "{:w0$}  {:w1$}  {:w2$}  BACKEND",
        "METHOD", "PATH", "TARGET"
    )?;
    for [m, t, g, b] in &rows {
        writeln!(out, "{m:w0$}  {t:w1$}  {g:w2$}  {b}")?;
    }
    let problems = gateway.routes().problems();
    for p in problems {
        let level = if p.kind.is_error() {
            "error"
        } else {
            "warning"
        };
        writeln!(out, "{level}: {p}")?;
    }
    let pending = gateway.pending_reflection();
    for backend in pending {
        writeln!(
            out,
            "warning: backend {backend}: reflection does not answer; its routes are not listed"
        )?;
    }
    let source = gateway.config().source.display();
    match (left_out(gateway), problems.len() + pending.len()) {
        (0, 0) => writeln!(out, "{} routes, config {source} is valid", rows.len()),
        (0, warnings) => writeln!(
            out,
            "{} routes, {warnings} warning(s), config {source} is valid",
            rows.len()
        ),
        (errors, _) => writeln!(
            out,
            "{} routes, {errors} binding(s) left out, config {source} is not valid",
            rows.len()
        ),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
