//! The streaming benchmark's backend: `ListItems` streams the number of
//! items asked for, `Chat` answers every message with itself.

use std::net::SocketAddr;
use std::pin::Pin;

use clap::Parser;
use futures_util::{Stream, stream};
use protogate_bench_streams::pb::stream_service_server::{StreamService, StreamServiceServer};
use protogate_bench_streams::pb::{ChatMessage, Item, ListItemsRequest};
use tonic::{Request, Response, Status, Streaming};

/// The most items one call may ask for.
const MAX_ITEMS: i32 = 100_000;

#[derive(Parser)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:50161")]
    listen: SocketAddr,
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

struct Service;

fn item(i: i32) -> Item {
    Item {
        id: format!("item-{i:05}"),
        name: format!("Item number {i}"),
        price_cents: 100 + i64::from(i % 1000),
        in_stock: i % 3 != 0,
        tags: vec!["bench".to_owned(), "stream".to_owned()],
    }
}

#[tonic::async_trait]
impl StreamService for Service {
    type ListItemsStream = Boxed<Item>;
    type ChatStream = Boxed<ChatMessage>;

    async fn list_items(
        &self,
        request: Request<ListItemsRequest>,
    ) -> Result<Response<Self::ListItemsStream>, Status> {
        let count = request.into_inner().count;
        if !(0..=MAX_ITEMS).contains(&count) {
            return Err(Status::invalid_argument(format!(
                "count must be 0..={MAX_ITEMS}"
            )));
        }
        Ok(Response::new(Box::pin(stream::iter(
            (0..count).map(|i| Ok(item(i))),
        ))))
    }

    async fn chat(
        &self,
        request: Request<Streaming<ChatMessage>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        Ok(Response::new(Box::pin(request.into_inner())))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    eprintln!("bench-stream-backend: listening on {}", args.listen);
    tonic::transport::Server::builder()
        .add_service(StreamServiceServer::new(Service))
        .serve(args.listen)
        .await?;
    Ok(())
}
