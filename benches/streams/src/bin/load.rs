//! The streaming benchmark's load driver, for gRPC targets (the backend
//! itself or a gRPC proxy in front of it):
//!
//! - `bidi`: many concurrent `Chat` streams, each sending one message and
//!   waiting for its echo before the next (the ghz pattern), spread over a
//!   few HTTP/2 connections;
//! - `server`: concurrent `ListItems` calls of `count` items each, back to
//!   back.
//!
//! Prints one tab-separated line: messages per second, p50 and p99 in
//! milliseconds (per round trip for `bidi`, per whole call for `server`),
//! and the number of calls that failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use clap::{Parser, Subcommand};
use protogate_bench_streams::pb::stream_service_client::StreamServiceClient;
use protogate_bench_streams::pb::{ChatMessage, ListItemsRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
struct Args {
    /// The gRPC target, `host:port` (plaintext HTTP/2).
    #[arg(long)]
    addr: String,
    /// HTTP/2 connections the streams are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Concurrent ping-pong bidi streams.
    Bidi {
        /// Concurrent streams.
        #[arg(long, default_value_t = 64)]
        streams: usize,
        /// Bytes of text in each message.
        #[arg(long, default_value_t = 64)]
        text_len: usize,
    },
    /// Concurrent server-streaming calls.
    Server {
        /// Concurrent calls.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Items per call.
        #[arg(long, default_value_t = 1000)]
        count: i32,
    },
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What one task measured.
#[derive(Default)]
struct Tally {
    messages: u64,
    latencies: Vec<Duration>,
    errors: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let endpoint = Endpoint::from_shared(format!("http://{}", args.addr))?;
        channels.push(endpoint.connect().await?);
    }
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let mut tasks = Vec::new();
    match args.mode {
        Mode::Bidi { streams, text_len } => {
            let text = "x".repeat(text_len);
            for i in 0..streams {
                let channel = channels[i % channels.len()].clone();
                tasks.push(tokio::spawn(bidi(channel, text.clone(), phase.clone())));
            }
        }
        Mode::Server { concurrency, count } => {
            for i in 0..concurrency {
                let channel = channels[i % channels.len()].clone();
                tasks.push(tokio::spawn(server(channel, count, phase.clone())));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    phase.store(MEASURE, Ordering::SeqCst);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    phase.store(STOP, Ordering::SeqCst);
    let elapsed = start.elapsed();

    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await?;
        total.messages += tally.messages;
        total.errors += tally.errors;
        total.latencies.extend(tally.latencies);
    }
    total.latencies.sort_unstable();
    let quantile = |q: f64| {
        let n = total.latencies.len();
        if n == 0 {
            return f64::NAN;
        }
        let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        total.latencies[i].as_secs_f64() * 1e3
    };
    println!(
        "{:.0}\t{:.2}\t{:.2}\t{}",
        total.messages as f64 / elapsed.as_secs_f64(),
        quantile(0.5),
        quantile(0.99),
        total.errors
    );
    Ok(())
}

/// One ping-pong stream until the phase says stop; a failed stream is
/// counted and opened again.
async fn bidi(channel: Channel, text: String, phase: Arc<AtomicU8>) -> Tally {
    let mut tally = Tally::default();
    let mut seq = 0i64;
    while phase.load(Ordering::Relaxed) != STOP {
        let (tx, rx) = mpsc::channel(1);
        let mut client = StreamServiceClient::new(channel.clone());
        let message = |seq| ChatMessage {
            seq,
            text: text.clone(),
        };
        let mut sent = Instant::now();
        if tx.send(message(seq)).await.is_err() {
            tally.errors += 1;
            continue;
        }
        let mut replies = match client.chat(ReceiverStream::new(rx)).await {
            Ok(response) => response.into_inner(),
            Err(_) => {
                tally.errors += 1;
                continue;
            }
        };
        loop {
            match replies.message().await {
                Ok(Some(reply)) if reply.seq == seq => {}
                _ => {
                    tally.errors += 1;
                    break;
                }
            }
            let current = phase.load(Ordering::Relaxed);
            if current == MEASURE {
                tally.messages += 1;
                tally.latencies.push(sent.elapsed());
            } else if current == STOP {
                return tally;
            }
            seq += 1;
            sent = Instant::now();
            if tx.send(message(seq)).await.is_err() {
                tally.errors += 1;
                break;
            }
        }
    }
    tally
}

/// Server-streaming calls back to back until the phase says stop; a call
/// counts when it has been read to its end.
async fn server(channel: Channel, count: i32, phase: Arc<AtomicU8>) -> Tally {
    let mut tally = Tally::default();
    let mut client = StreamServiceClient::new(channel);
    while phase.load(Ordering::Relaxed) != STOP {
        let started = Instant::now();
        let mut received = 0i32;
        let outcome = async {
            let mut stream = client
                .list_items(ListItemsRequest { count })
                .await?
                .into_inner();
            while stream.message().await?.is_some() {
                received += 1;
            }
            Ok::<_, tonic::Status>(())
        }
        .await;
        if outcome.is_err() || received != count {
            tally.errors += 1;
            continue;
        }
        if phase.load(Ordering::Relaxed) == MEASURE {
            tally.messages += u64::from(received.unsigned_abs());
            tally.latencies.push(started.elapsed());
        }
    }
    tally
}
