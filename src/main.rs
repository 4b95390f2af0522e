//! The `protogate` binary: parse the command line, start logging, run.

use clap::Parser;

/// Many small, short-lived allocations per request (headers, bodies, frames):
/// mimalloc serves them faster than glibc's malloc, with less fragmentation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = protogate::cli::Cli::parse();
    match protogate::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
