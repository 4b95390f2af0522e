//! Native gRPC through the gateway: the four call kinds of the example
//! shop with tonic's generated clients, the method's REST auth rules over
//! gRPC metadata, gateway-made errors as gRPC statuses, and a backend
//! that dies mid-stream.

use std::time::Duration;

use shop::pb::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop::pb::shop::inventory::v1::{GetStockRequest, ReserveStockRequest};
use shop::pb::shop::order::v1::order_service_client::OrderServiceClient;
use shop::pb::shop::order::v1::{
    GetOrderRequest, OrderStatus, OrderStatusUpdate, WatchOrderRequest,
};
use shop::pb::shop::user::v1::GetUserRequest;
use shop::pb::shop::user::v1::user_service_client::UserServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{API_KEY, dev_token, start};

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn every_call_kind_passes_through_with_the_methods_auth() {
    let stack = start().await;
    let channel = channel(stack.addr()).await;

    // Unary, public.
    let mut users = UserServiceClient::new(channel.clone());
    let user = users
        .get_user(GetUserRequest { id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.id, 1);
    assert!(!user.display_name.is_empty());
    // The backend's own status, as it sent it.
    let missing = users
        .get_user(GetUserRequest { id: 999 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // Unary, needs a token with the orders scope, as over REST.
    let mut orders = OrderServiceClient::new(channel.clone());
    let get = || GetOrderRequest {
        name: "users/1/orders/1001".into(),
    };
    let refused = orders.get_order(get()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("Authorization: Bearer"),
        "{}",
        refused.message()
    );
    let wrong_scope = orders
        .get_order(with_token(get(), &dev_token("users")))
        .await
        .unwrap_err();
    assert_eq!(
        wrong_scope.code(),
        Code::PermissionDenied,
        "{wrong_scope:?}"
    );
    let token = dev_token("orders");
    let order = orders
        .get_order(with_token(get(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.name, "users/1/orders/1001");

    // Server streaming.
    let mut watch = orders
        .watch_order(with_token(
            WatchOrderRequest {
                name: "users/1/orders/1002".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), OrderStatus::Pending);

    // Bidirectional: an update moves the watched order on.
    let updates = tokio_stream::iter([OrderStatusUpdate {
        name: "users/1/orders/1002".into(),
        status: OrderStatus::Paid.into(),
        reason: String::new(),
    }]);
    let mut acks = orders
        .sync_order_status(with_token(updates, &token))
        .await
        .unwrap()
        .into_inner();
    let ack = acks.message().await.unwrap().unwrap();
    assert!(ack.accepted, "{ack:?}");
    assert!(acks.message().await.unwrap().is_none());
    let next = watch.message().await.unwrap().unwrap();
    assert_eq!(next.status(), OrderStatus::Paid);
    drop(watch);

    // Client streaming, with the API key from metadata.
    let mut inventory = InventoryServiceClient::new(channel.clone());
    let reserve = |quantity| ReserveStockRequest {
        sku: "sku-espresso".into(),
        quantity,
        ..Default::default()
    };
    let no_key = inventory
        .bulk_reserve(tokio_stream::iter([reserve(1)]))
        .await
        .unwrap_err();
    assert_eq!(no_key.code(), Code::Unauthenticated, "{no_key:?}");
    let mut request = tonic::Request::new(tokio_stream::iter([reserve(1), reserve(2)]));
    request
        .metadata_mut()
        .insert("x-api-key", API_KEY.parse().unwrap());
    let bulk = inventory.bulk_reserve(request).await.unwrap().into_inner();
    assert_eq!(bulk.count, 2);
    let mut request = tonic::Request::new(GetStockRequest {
        sku: "sku-espresso".into(),
    });
    request
        .metadata_mut()
        .insert("x-api-key", API_KEY.parse().unwrap());
    let stock = inventory.get_stock(request).await.unwrap().into_inner();
    assert_eq!(stock.reserved, 3, "{stock:?}");
}

#[tokio::test]
async fn methods_not_routed_and_grpc_services_are_unimplemented() {
    let stack = start().await;
    let channel = channel(stack.addr()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let error = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unimplemented, "{error:?}");
    assert!(
        error.message().contains("/grpc.health.v1.Health/Check"),
        "{}",
        error.message()
    );
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let error = grpc
        .unary::<GetUserRequest, shop::pb::shop::user::v1::User, _>(
            tonic::Request::new(GetUserRequest { id: 1 }),
            "/shop.user.v1.UserService/NoSuchMethod".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unimplemented, "{error:?}");
}

#[tokio::test]
async fn passthrough_can_be_switched_off() {
    let stack = crate::support::start_with(|config| config.protocols.grpc = false).await;
    let mut users = UserServiceClient::new(channel(stack.addr()).await);
    let error = users.get_user(GetUserRequest { id: 1 }).await.unwrap_err();
    assert_eq!(error.code(), Code::Unimplemented, "{error:?}");
    // REST is unchanged.
    assert_eq!(stack.get("/v1/users/1").await.status, 200);
}

#[tokio::test]
async fn a_backend_down_or_dying_mid_stream_ends_the_call_with_unavailable() {
    // The backends run on a runtime of their own, so they can die at once.
    let (addresses, runtime) = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let backends = runtime.block_on(shop::spawn_ephemeral()).unwrap();
        (backends, runtime)
    })
    .join()
    .unwrap();
    let mut config = crate::support::default_config(&addresses);
    config
        .backends
        .iter_mut()
        .for_each(|b| b.health_check = None);
    let (addr, stop) = crate::support::serve(config).await;
    let _stack = crate::support::Stack::for_gateway(addr, stop);
    let mut orders = OrderServiceClient::new(channel(addr).await);
    let token = dev_token("orders");
    let mut watch = orders
        .watch_order(with_token(
            WatchOrderRequest {
                name: "users/1/orders/1002".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());

    // Killed: its runtime and every socket of it gone.
    runtime.shutdown_background();
    drop(addresses);
    let error = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the stream ends")
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    // Which ends the stream first is a race: the gateway seeing the
    // connection go, or the dying server's own goodbye status passed on.
    assert!(
        error.message().contains("backend orders is unavailable")
            || error
                .message()
                .contains("the order service is shutting down"),
        "{}",
        error.message()
    );

    // Down: a new call is refused by the gateway with UNAVAILABLE too.
    let error = orders
        .get_order(with_token(
            GetOrderRequest {
                name: "users/1/orders/1001".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
}

/// The scenario of `tests/clients/*/grpc_scenario.*`: its requests, hex-encoded.
fn scenario_requests() -> String {
    use prost::Message;
    let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    serde_json::json!({
        "get_user": hex(GetUserRequest { id: 2 }.encode_to_vec()),
        "get_order": hex(GetOrderRequest { name: "users/1/orders/1001".into() }.encode_to_vec()),
        "watch": hex(WatchOrderRequest { name: "users/2/orders/1003".into() }.encode_to_vec()),
        "reserve": hex(ReserveStockRequest {
            sku: "sku-grinder".into(),
            quantity: 1,
            ..Default::default()
        }
        .encode_to_vec()),
        "update": hex(OrderStatusUpdate {
            name: "users/1/orders/1002".into(),
            status: OrderStatus::Cancelled.into(),
            reason: "changed my mind".into(),
        }
        .encode_to_vec()),
    })
    .to_string()
}

/// Checks what a client printed for the scenario.
fn check_scenario(client: &str, out: &str) {
    use prost::Message;
    use shop::pb::shop::inventory::v1::BulkReserveResponse;
    use shop::pb::shop::order::v1::{Order, OrderStatusAck, OrderStatusChange};
    use shop::pb::shop::user::v1::User;
    let out: serde_json::Value =
        serde_json::from_str(out).unwrap_or_else(|e| panic!("{client}: {e}: {out}"));
    let bytes = |v: &serde_json::Value| -> Vec<u8> {
        let text = v.as_str().unwrap_or_else(|| panic!("{client}: {v}"));
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    };
    let user = User::decode(&*bytes(&out["get_user"])).unwrap();
    assert_eq!(user.id, 2, "{client}");
    let order = Order::decode(&*bytes(&out["get_order"])).unwrap();
    assert_eq!(order.name, "users/1/orders/1001", "{client}");
    let first = OrderStatusChange::decode(&*bytes(&out["watch_first"])).unwrap();
    assert_eq!(first.status(), OrderStatus::Shipped, "{client}");
    let bulk = BulkReserveResponse::decode(&*bytes(&out["bulk"])).unwrap();
    assert_eq!(bulk.count, 2, "{client}");
    let acks: Vec<OrderStatusAck> = out["sync"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| OrderStatusAck::decode(&*bytes(a)).unwrap())
        .collect();
    assert_eq!(acks.len(), 1, "{client}: {acks:?}");
    assert!(acks[0].accepted, "{client}: {acks:?}");
    assert_eq!(acks[0].status(), OrderStatus::Cancelled, "{client}");
    for anonymous in [
        "get_order_anonymous",
        "watch_anonymous",
        "bulk_anonymous",
        "sync_anonymous",
    ] {
        assert_eq!(
            out[anonymous]["code"],
            Code::Unauthenticated as i32,
            "{client}: {anonymous}: {}",
            out[anonymous]
        );
        let message = out[anonymous]["message"].as_str().unwrap();
        assert!(
            message.contains("missing credentials"),
            "{client}: {message}"
        );
    }
    assert_eq!(
        out["unrouted"]["code"],
        Code::Unimplemented as i32,
        "{client}"
    );
}

#[tokio::test]
async fn python_grpcio_calls_every_kind_through_the_gateway() {
    let stack = start().await;
    let args = [
        stack.addr().to_string(),
        dev_token("orders"),
        API_KEY.to_owned(),
        scenario_requests(),
    ];
    let script = std::fs::read_to_string(
        crate::support::root().join("tests/clients/python/grpc_scenario.py"),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::python::run(crate::reflection_server::GRPCIO, &script, &args)
    })
    .await
    .unwrap();
    check_scenario("grpcio", &out);
}

#[tokio::test]
async fn node_grpc_js_calls_every_kind_through_the_gateway() {
    let stack = start().await;
    let args = [
        stack.addr().to_string(),
        dev_token("orders"),
        API_KEY.to_owned(),
        scenario_requests(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::node::run("grpc_scenario.mjs", &args)
    })
    .await
    .unwrap();
    check_scenario("@grpc/grpc-js", &out);
}

// Against the probe backend, which can be slow, flaky or break off.

mod probe_calls {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tonic::Code;
    use tonic::codegen::http::uri::PathAndQuery;
    use tonic_prost::ProstCodec;

    use crate::probe::{CountReply, CountRequest, EchoReply, EchoRequest};
    use crate::support::eventually;

    async fn grpc(addr: std::net::SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
        let mut grpc = tonic::client::Grpc::new(super::channel(addr).await);
        grpc.ready().await.unwrap();
        grpc
    }

    const ECHO: PathAndQuery = PathAndQuery::from_static("/probe.v1.Probe/Echo");

    async fn echo(
        grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoReply>, tonic::Status> {
        grpc.ready().await.unwrap();
        grpc.unary(request, ECHO, ProstCodec::default()).await
    }

    fn text(text: &str) -> EchoRequest {
        EchoRequest {
            text: text.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn metadata_trailers_and_backend_statuses_cross_as_sent() {
        let (stack, _) = crate::probe::start("").await;
        let mut grpc = grpc(stack.0.addr()).await;
        let mut request = tonic::Request::new(text("hi"));
        request
            .metadata_mut()
            .insert("x-tenant", "acme".parse().unwrap());
        request.metadata_mut().insert_bin(
            "x-blob-bin",
            tonic::metadata::MetadataValue::from_bytes(b"\x00\x01"),
        );
        request
            .metadata_mut()
            .insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        request.set_timeout(Duration::from_secs(30));
        let reply = echo(&mut grpc, request).await.unwrap();
        let seen = &reply.get_ref().metadata;
        assert_eq!(
            seen.get("x-tenant").map(String::as_str),
            Some("acme"),
            "{seen:?}"
        );
        assert_eq!(
            seen.get("x-blob-bin").map(String::as_str),
            Some("AAE"),
            "{seen:?}"
        );
        // The gateway's view of the client, not the client's claim.
        assert_eq!(
            seen.get("x-forwarded-for").map(String::as_str),
            Some("127.0.0.1"),
            "{seen:?}"
        );
        let timeout = seen.get("grpc-timeout").expect("a deadline is sent");
        assert!(
            timeout.ends_with('m') || timeout.ends_with('u'),
            "{timeout}"
        );
        assert_eq!(
            seen.get("content-type").map(String::as_str),
            Some("application/grpc")
        );
        // The backend's own trailers reach the client.
        let mut grpc2 = grpc.clone();
        grpc2.ready().await.unwrap();
        let streamed = grpc2
            .client_streaming::<_, EchoRequest, EchoReply, _>(
                tonic::Request::new(tokio_stream::iter([text("a")])),
                PathAndQuery::from_static("/probe.v1.Probe/Collect"),
                ProstCodec::default(),
            )
            .await
            .unwrap();
        assert_eq!(streamed.get_ref().text, "a");

        // A backend's status with details arrives as sent: code, message, details.
        let error = echo(
            &mut grpc,
            tonic::Request::new(EchoRequest {
                fault: 6,
                ..Default::default()
            }),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert_eq!(error.message(), "bad input");
        let details =
            <protogate::transcode::status::RpcStatus as prost::Message>::decode(error.details())
                .unwrap();
        assert_eq!(details.details.len(), 2, "{details:?}");
        // A backend that answers HTTP without gRPC: the spec's HTTP-to-gRPC codes.
        let error = echo(
            &mut grpc,
            tonic::Request::new(EchoRequest {
                fault: 8,
                ..Default::default()
            }),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code(), Code::Unavailable, "{error:?}");
        // A backend that resets the stream after its reply's headers.
        let error = echo(
            &mut grpc,
            tonic::Request::new(EchoRequest {
                fault: 9,
                ..Default::default()
            }),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code(), Code::Internal, "{error:?}");
        assert!(error.message().contains("backend probe"), "{error:?}");
    }

    #[tokio::test]
    async fn deadlines_retries_size_and_rate_limits_apply() {
        let extra = "methods:\n  probe.v1.Probe.Echo:\n    idempotent: true\n\
                     transcoding:\n  max_body_bytes: 1024\n\
                     rate_limit:\n  by_address: { requests: 6, per: 1h, burst: 6 }\n\
                     server:\n  max_grpc_timeout: 300ms\n";
        let (stack, probe) = crate::probe::start_with(extra, |c| {
            c.backends[0].retry.attempts = 3;
            c.backends[0].retry.backoff = Duration::from_millis(5);
        })
        .await;
        let mut grpc = grpc(stack.0.addr()).await;

        // 1: the client's deadline, capped and enforced by the gateway.
        let mut slow = tonic::Request::new(EchoRequest {
            delay_ms: 10_000,
            ..Default::default()
        });
        slow.set_timeout(Duration::from_secs(60));
        let error = echo(&mut grpc, slow).await.unwrap_err();
        assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");

        // 2: an idempotent method is retried after UNAVAILABLE.
        probe.flaky.store(2, Ordering::SeqCst);
        let before = probe.echoes.load(Ordering::SeqCst);
        let reply = echo(&mut grpc, tonic::Request::new(text("again")))
            .await
            .unwrap();
        assert_eq!(reply.get_ref().text, "again");
        assert_eq!(probe.echoes.load(Ordering::SeqCst) - before, 3);

        // 3, 4: messages over the limit, one or in a stream, never reach it.
        let big = "x".repeat(2000);
        let error = echo(&mut grpc, tonic::Request::new(text(&big)))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
        grpc.ready().await.unwrap();
        let error = grpc
            .client_streaming::<_, EchoRequest, EchoReply, _>(
                tonic::Request::new(tokio_stream::iter([text("small"), text(&big)])),
                PathAndQuery::from_static("/probe.v1.Probe/Collect"),
                ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");

        // 5, 6, then over the limit: RESOURCE_EXHAUSTED with Retry-After.
        for _ in 0..2 {
            echo(&mut grpc, tonic::Request::new(text("ok")))
                .await
                .unwrap();
        }
        let error = echo(&mut grpc, tonic::Request::new(text("one too many")))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
        assert!(error.metadata().get("retry-after").is_some(), "{error:?}");

        // Counted by method, with the HTTP status each code maps to.
        let (_, _, metrics) = stack.0.get_text("/metrics").await;
        for line in [
            r#"protogate_http_requests_total{route="/probe.v1.Probe/Echo",method="POST",status="429"} 2"#,
            r#"protogate_http_requests_total{route="/probe.v1.Probe/Echo",method="POST",status="504"} 1"#,
            r#"protogate_http_requests_total{route="/probe.v1.Probe/Echo",method="POST",status="200"} 3"#,
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
        }
    }

    /// Opens a `Count` stream.
    async fn count(
        grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
        request: CountRequest,
    ) -> tonic::Streaming<CountReply> {
        grpc.ready().await.unwrap();
        grpc.server_streaming::<CountRequest, CountReply, _>(
            tonic::Request::new(request),
            PathAndQuery::from_static("/probe.v1.Probe/Count"),
            ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner()
    }

    #[tokio::test]
    async fn streams_keep_backpressure_and_end_with_a_status() {
        let (stack, probe) = crate::probe::start("streaming:\n  idle_timeout: 1s\n").await;
        let mut grpc = grpc(stack.0.addr()).await;

        // Replies are made as the client reads them: a client that stops
        // reading holds the backend back, one that leaves cancels it.
        let mut replies = count(
            &mut grpc,
            CountRequest {
                n: 1_000_000,
                pad_bytes: 1024,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(replies.message().await.unwrap().unwrap().i, 1);
        // Windows of ~7 MiB along the way (client, gateway, backend) hold a
        // few thousand 1 KiB replies; a million would mean none held.
        let produced = crate::support::settled(30, "production stalls", 5, 100_000, || {
            probe.produced.load(Ordering::SeqCst)
        })
        .await;
        assert!(produced > 1, "{produced}");
        drop(replies);
        eventually(10, "the backend's stream is cancelled", || {
            let cancelled = probe.streams_cancelled.clone();
            async move { cancelled.load(Ordering::SeqCst) == 1 }
        })
        .await;

        // A stream the backend breaks off ends with a status, not a reset.
        let mut replies = count(
            &mut grpc,
            CountRequest {
                n: 5,
                reset_after: 2,
                ..Default::default()
            },
        )
        .await;
        let mut got = 0;
        let error = loop {
            match replies.message().await {
                Ok(Some(_)) => got += 1,
                Ok(None) => panic!("the stream ended without an error"),
                Err(e) => break e,
            }
        };
        assert_eq!(got, 2);
        assert_eq!(error.code(), Code::Internal, "{error:?}");

        // A quiet stream ends at the idle timeout.
        let mut replies = count(
            &mut grpc,
            CountRequest {
                n: 3,
                hold_after_first: true,
                ..Default::default()
            },
        )
        .await;
        assert!(replies.message().await.unwrap().is_some());
        let error = replies.message().await.unwrap_err();
        assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
        assert_eq!(error.message(), "stream idle after 1s");
    }
}
