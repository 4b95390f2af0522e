//! The generated-code baseline for the benchmarks: the three `bench.proto`
//! routes written by hand as axum handlers, calling a tonic client generated
//! from `bench.proto`, with JSON by pbjson's generated serde impls. It is
//! what a team would write without a gateway, so protogate's reflection
//! can be measured against it in the same run (`scripts/bench.sh`).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use clap::Parser;
use serde::Deserialize;
use tonic::transport::Channel;

/// Code generated from `bench.proto`.
pub mod bench {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("bench.v1");
    include!(concat!(env!("OUT_DIR"), "/bench.v1.serde.rs"));
}

/// `google.protobuf.Timestamp` with its proto3 JSON form (RFC 3339, `Z`).
mod wkt {
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

    /// Wire-compatible with `google.protobuf.Timestamp`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Timestamp {
        /// Seconds since the Unix epoch.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds within the second.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    impl Serialize for Timestamp {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let ts = prost_types::Timestamp {
                seconds: self.seconds,
                nanos: self.nanos,
            };
            s.collect_str(&ts)
        }
    }

    impl<'de> Deserialize<'de> for Timestamp {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            let ts = prost_types::Timestamp::from_str(&text).map_err(de::Error::custom)?;
            Ok(Timestamp {
                seconds: ts.seconds,
                nanos: ts.nanos,
            })
        }
    }
}

use bench::bench_service_client::BenchServiceClient;
use bench::{EchoRequest, GetItemRequest, ItemView, ListItemsRequest};

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: SocketAddr,
    /// The bench backend.
    #[arg(long, default_value = "127.0.0.1:50151")]
    backend: String,
}

type Client = BenchServiceClient<Channel>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // Lazy: the backend may start after this process.
    let channel = Channel::from_shared(format!("http://{}", args.backend))?.connect_lazy();
    let app = Router::new()
        .route("/v1/echo", post(echo))
        .route("/v1/items/{id}", get(get_item))
        .route("/v1/items", get(list_items))
        .with_state(BenchServiceClient::new(channel));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn echo(State(mut client): State<Client>, body: Bytes) -> Response {
    let request: EchoRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    json(client.echo(request).await)
}

#[derive(Deserialize)]
struct ItemQuery {
    view: Option<String>,
}

async fn get_item(
    State(mut client): State<Client>,
    Path(id): Path<String>,
    Query(query): Query<ItemQuery>,
) -> Response {
    let view = match query.view.as_deref().map(ItemView::from_str_name) {
        None => ItemView::Unspecified,
        Some(Some(v)) => v,
        Some(None) => return (StatusCode::BAD_REQUEST, "unknown view").into_response(),
    };
    json(
        client
            .get_item(GetItemRequest {
                id,
                view: view.into(),
            })
            .await,
    )
}

#[derive(Deserialize)]
struct ListQuery {
    page_size: Option<i32>,
    page_token: Option<String>,
}

async fn list_items(State(mut client): State<Client>, Query(query): Query<ListQuery>) -> Response {
    json(
        client
            .list_items(ListItemsRequest {
                page_size: query.page_size.unwrap_or_default(),
                page_token: query.page_token.unwrap_or_default(),
            })
            .await,
    )
}

fn json<T: serde::Serialize>(reply: Result<tonic::Response<T>, tonic::Status>) -> Response {
    match reply {
        Ok(reply) => match serde_json::to_vec(reply.get_ref()) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Err(status) => (StatusCode::BAD_GATEWAY, status.message().to_owned()).into_response(),
    }
}
