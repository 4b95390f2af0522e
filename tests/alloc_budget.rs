//! The allocation budget of one request: the heap allocations the gateway
//! makes to answer a small unary call, counted on the gateway's own thread.
//!
//! The gateway runs on a current-thread runtime on a thread of its own, so
//! everything it does for a request (accepting, the HTTP/1 connection, the
//! pipeline, the HTTP/2 call to the backend, its connection task, timers)
//! runs there; the backend and the client run on another runtime and are
//! not counted. The gateway's runtime only makes progress while its thread is
//! inside `block_on`, so a phase counts exactly the work done between two
//! signals: a warm-up (connections, lazy state) and then the measured
//! requests.
//!
//! Counts do not depend on the machine's speed: a regression in allocations
//! per request fails here on any machine. The budgets are what the request
//! path allocates today plus a small margin for the boundary between phases
//! (the last response's tail work lands in the next phase).

use std::path::PathBuf;
use std::sync::mpsc;

use allocation_counter::AllocationInfo;
use protogate::Gateway;
use protogate::server::Live;
use tokio::sync::oneshot;

/// Requests per measured phase.
const REQUESTS: u64 = 200;

/// The gateway on a thread of its own, run phase by phase.
struct CountedGateway {
    addr: std::net::SocketAddr,
    phases: mpsc::Sender<Phase>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Run the gateway until `until` fires, then report what it allocated.
struct Phase {
    until: oneshot::Receiver<()>,
    counted: mpsc::Sender<AllocationInfo>,
}

impl CountedGateway {
    fn start(yaml: String) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (phases, phase_rx) = mpsc::channel::<Phase>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let addr = runtime.block_on(async {
                let config = protogate::config::parse(&yaml, &root().join("alloc.yaml")).unwrap();
                let gateway = Gateway::load(config).await.unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(protogate::server::serve(
                    listener,
                    Live::new(gateway),
                    async {
                        let _ = stop_rx.await;
                    },
                ));
                addr
            });
            ready_tx.send(addr).unwrap();
            while let Ok(phase) = phase_rx.recv() {
                let info = allocation_counter::measure(|| {
                    runtime.block_on(async {
                        let _ = phase.until.await;
                    });
                });
                let _ = phase.counted.send(info);
            }
            let _ = stop_tx.send(());
        });
        let addr = ready_rx.recv().unwrap();
        Self {
            addr,
            phases,
            thread: Some(thread),
        }
    }

    /// Lets the gateway run while `work` runs (on the caller's runtime) and
    /// returns what the gateway allocated meanwhile.
    async fn phase<F: Future<Output = ()>>(&self, work: F) -> AllocationInfo {
        let (done, until) = oneshot::channel();
        let (counted, count) = mpsc::channel();
        self.phases.send(Phase { until, counted }).unwrap();
        work.await;
        done.send(()).unwrap();
        tokio::task::spawn_blocking(move || count.recv().unwrap())
            .await
            .unwrap()
    }
}

impl Drop for CountedGateway {
    fn drop(&mut self) {
        // Closing the phase channel ends the thread's loop.
        let (phases, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.phases, phases));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config for the example user service at `users`, with `extra` YAML
/// (auth, rate limits) appended.
fn config(users: std::net::SocketAddr, extra: &str) -> String {
    let protos = root().join("protos");
    format!(
        "descriptors:\n  include: [{}]\n  protos: [shop/user/v1/user.proto]\n\
         backends:\n  users:\n    address: http://{users}\n    services: [shop.user.v1.UserService]\n{extra}",
        protos.display()
    )
}

/// What one request of `send` costs the gateway, after a warm-up.
async fn per_request<F, Fut>(gateway: &CountedGateway, send: F) -> (f64, f64)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    gateway
        .phase(async {
            for i in 0..20 {
                send(i).await;
            }
        })
        .await;
    let counted = gateway
        .phase(async {
            for i in 0..REQUESTS {
                send(1_000 + i).await;
            }
        })
        .await;
    assert!(
        counted.count_total > 0,
        "nothing counted: the counting allocator is not installed"
    );
    (
        counted.count_total as f64 / REQUESTS as f64,
        counted.bytes_total as f64 / REQUESTS as f64,
    )
}

/// A client that keeps one connection, as a load generator does.
fn client() -> reqwest::Client {
    protogate::auth::install_tls_provider();
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap()
}

/// Sends `request` with `headers` and reads the whole answer, which must be a success.
async fn expect_ok(mut request: reqwest::RequestBuilder, headers: &[(&str, &str)]) {
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let reply = request.send().await.unwrap();
    assert!(
        reply.status().is_success(),
        "{}",
        reply.text().await.unwrap()
    );
    reply.bytes().await.unwrap();
}

struct Case {
    name: &'static str,
    extra: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// Allocations per request the gateway may make on a GET with a path
    /// variable, and on a POST with a JSON body.
    get_budget: f64,
    post_budget: f64,
}

const CASES: &[Case] = &[
    Case {
        name: "no auth, no rate limit",
        extra: "",
        headers: &[],
        get_budget: 72.0,
        post_budget: 72.0,
    },
    Case {
        name: "an API key and a rate limit",
        extra: "auth:\n  api_keys:\n    from: { header: x-api-key }\n    keys:\n      - name: bot\n        sha256: c8508ef6b8945d666ebda9da5ac196d24548fc98ba6eac51b11805cd15a6d4c8\n  default: { allow: [api_key] }\n\
                rate_limit:\n  by_caller: { requests: 100000, per: 1s }\n",
        headers: &[("x-api-key", "dev-inventory-key")],
        get_budget: 86.0,
        post_budget: 86.0,
    },
    Case {
        // The same token on every call: verified once, then remembered.
        name: "a JWT (HS256)",
        extra: "auth:\n  jwt:\n    dev:\n      issuer: https://issuer.example\n      audiences: [api]\n      algorithms: [HS256]\n      secret: alloc-budget-secret-alloc-budget-secret\n  default: { allow: [dev] }\n",
        headers: &[(
            "authorization",
            concat!(
                "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.",
                "eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiYXBpIiwic3ViIjoiYnVkZ2V0IiwiZXhwIjo0MTAyNDQ0ODAwfQ.",
                "o09BRTsZnAUfKfpKGGmFrDS4HHRLid3TtAFCWw5uzVs"
            ),
        )],
        get_budget: 74.0,
        post_budget: 74.0,
    },
];

#[test]
fn a_small_unary_call_stays_within_its_allocation_budget() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let backends = shop::spawn_ephemeral().await.unwrap();
        let mut report = Vec::new();
        let mut over = Vec::new();
        for (n, case) in CASES.iter().enumerate() {
            let gateway = CountedGateway::start(config(backends.users, case.extra));
            let http = client();
            let base = format!("http://{}", gateway.addr);
            let get = |_: u64| expect_ok(http.get(format!("{base}/v1/users/1")), case.headers);
            let (get_allocs, get_bytes) = per_request(&gateway, get).await;
            let post = |i: u64| {
                let i = i + 10_000 * n as u64;
                let request = http
                    .post(format!("{base}/v1/users"))
                    .header("content-type", "application/json")
                    .body(format!(
                        r#"{{"email":"u{i:06}@example.com","displayName":"User {i:06}"}}"#
                    ));
                expect_ok(request, case.headers)
            };
            let (post_allocs, post_bytes) = per_request(&gateway, post).await;
            report.push(format!(
                "{}: GET {get_allocs:.1} allocations ({get_bytes:.0} B), POST {post_allocs:.1} allocations ({post_bytes:.0} B) per request",
                case.name
            ));
            if get_allocs > case.get_budget {
                over.push(format!("{}: GET {get_allocs:.1} > {}", case.name, case.get_budget));
            }
            if post_allocs > case.post_budget {
                over.push(format!("{}: POST {post_allocs:.1} > {}", case.name, case.post_budget));
            }
            drop(gateway);
        }
        eprintln!("{}", report.join("\n"));
        assert!(over.is_empty(), "over budget:\n{}\n\nall:\n{}", over.join("\n"), report.join("\n"));
    });
}

/// The future of one request is allocated (and moved) for every call, so
/// its size is part of the budget: the rarely taken stream and WebSocket
/// paths and the dial of a backend connection are boxed so that a unary
/// call does not carry their state. (Sizes are of the test build.)
#[test]
fn a_request_future_stays_small() {
    // 4744 once the retry loop was shared with gRPC passthrough and the
    // dispatcher learnt the gRPC, gRPC-Web and Connect surfaces.
    const BUDGET: usize = 4800;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let yaml = config("127.0.0.1:9".parse().unwrap(), "");
        let config = protogate::config::parse(&yaml, &root().join("alloc.yaml")).unwrap();
        let gateway = Gateway::load(config).await.unwrap();
        let request = http::Request::new(axum::body::Body::empty());
        let future = protogate::server::handler::handle(axum::extract::State(gateway), request);
        let size = std::mem::size_of_val(&future);
        eprintln!("request future: {size} bytes");
        assert!(size <= BUDGET, "request future {size} bytes > {BUDGET}");
    });
}
