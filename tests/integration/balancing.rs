//! Several endpoints per backend: balancing, active and passive health,
//! weighted splits, DNS names and `/readyz`, against real user services.

use std::net::SocketAddr;

use serde_json::Value;
use shop::Instance;

use crate::support::{Stack, TempDir, config_text, eventually, serve};

async fn instances(n: usize) -> Vec<Instance> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            shop::spawn_users_v1(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .unwrap(),
        );
    }
    out
}

fn endpoints(instances: &[Instance]) -> String {
    instances
        .iter()
        .map(|i| format!("http://{}", i.addr))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Serves a gateway loaded from `yaml` written to `dir`.
async fn gateway(dir: &TempDir, yaml: &str) -> Stack {
    let path = dir.write_config(yaml);
    let config = protogate::config::load(&path).unwrap();
    let (addr, stop) = serve(config).await;
    Stack::for_gateway(addr, stop)
}

async fn readyz(stack: &Stack) -> (u16, Value) {
    let (status, _, body) = stack.get_text("/readyz").await;
    (status.as_u16(), serde_json::from_str(&body).unwrap())
}

fn states(ready: &Value, backend: &str) -> Vec<String> {
    ready["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == backend)
        .unwrap()["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn calls_spread_over_endpoints_and_skip_a_killed_one() {
    let mut users = instances(3).await;
    let dir = TempDir::new("killed");
    let stack = gateway(
        &dir,
        &config_text(
            &format!(
                "  users:\n    endpoints: [{}]\n    services: [shop.user.v1.UserService]\n    health_check: {{ interval: 100ms, timeout: 500ms, unhealthy_threshold: 1 }}\n",
                endpoints(&users)
            ),
            "",
        ),
    )
    .await;
    for _ in 0..60 {
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
    let served: Vec<u64> = users.iter().map(Instance::served).collect();
    assert!(served.iter().all(|&n| n >= 5), "{served:?}");

    let killed = users.remove(1);
    let killed_addr = killed.addr;
    killed.shutdown().await.unwrap();
    // Calls keep coming while the endpoint dies. New connections to it are
    // refused and move on; a call racing its shutdown may fail. Once it is
    // out, none may.
    let (during, failed_during) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    eventually(5, "killed endpoint marked unhealthy", || {
        let (stack, during, failed_during) = (&stack, &during, &failed_during);
        async move {
            during.set(during.get() + 1);
            if stack.get("/v1/users/1").await.status != 200 {
                failed_during.set(failed_during.get() + 1);
            }
            let (_, ready) = readyz(stack).await;
            ready["backends"][0]["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| {
                    e["address"] == format!("http://{killed_addr}") && e["state"] == "unhealthy"
                })
        }
    })
    .await;
    eprintln!(
        "calls while the endpoint died: {}, failed: {}",
        during.get(),
        failed_during.get()
    );
    let before: u64 = users.iter().map(Instance::served).sum();
    for _ in 0..100 {
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
    let after: u64 = users.iter().map(Instance::served).sum();
    assert_eq!(
        after - before,
        100,
        "the live endpoints served every call after ejection"
    );
    let (status, _) = readyz(&stack).await;
    assert_eq!(status, 200, "two of three endpoints are enough");
}

#[tokio::test]
async fn passive_ejection_without_health_checks() {
    let users = instances(2).await;
    // Nothing listens on the first address: without active checks only the
    // failed calls tell, and after one the endpoint is ejected.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = TempDir::new("eject");
    let stack = gateway(
        &dir,
        &config_text(
            &format!(
                "  users:\n    endpoints: [http://{closed_addr}, {}]\n    services: [shop.user.v1.UserService]\n    outlier_detection: {{ consecutive_failures: 1, ejection_time: 1h }}\n",
                endpoints(&users)
            ),
            "",
        ),
    )
    .await;
    for _ in 0..50 {
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
    let (_, ready) = readyz(&stack).await;
    assert_eq!(states(&ready, "users"), ["ejected", "healthy", "healthy"]);
    let served: u64 = users.iter().map(Instance::served).sum();
    assert_eq!(served, 50);
}

#[tokio::test]
async fn not_serving_endpoint_gets_no_traffic_until_it_recovers() {
    let users = instances(2).await;
    let dir = TempDir::new("health");
    let stack = gateway(
        &dir,
        &config_text(
            &format!(
                "  users:\n    endpoints: [{}]\n    services: [shop.user.v1.UserService]\n    health_check: {{ interval: 100ms, service: shop.user.v1.UserService, unhealthy_threshold: 2, healthy_threshold: 2 }}\n    required: true\n",
                endpoints(&users)
            ),
            "",
        ),
    )
    .await;
    users[0].set_serving(false).await;
    eventually(5, "endpoint unhealthy", || async {
        states(&readyz(&stack).await.1, "users") == ["unhealthy", "healthy"]
    })
    .await;
    let before = users[0].served();
    for _ in 0..40 {
        assert_eq!(stack.get("/v1/users/2").await.status, 200);
    }
    assert_eq!(
        users[0].served(),
        before,
        "an unhealthy endpoint gets no calls"
    );

    users[1].set_serving(false).await;
    eventually(5, "not ready without a healthy endpoint", || async {
        readyz(&stack).await.0 == 503
    })
    .await;
    let reply = stack.get("/v1/users/2").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json["code"], 14);
    assert_eq!(reply.json["message"], "backend users is unavailable");

    users[0].set_serving(true).await;
    eventually(5, "ready again", || async { readyz(&stack).await.0 == 200 }).await;
    assert_eq!(stack.get("/v1/users/2").await.status, 200);
}

#[tokio::test]
async fn canary_split_follows_weights_and_the_override_header() {
    let stable = instances(1).await;
    let canary = instances(1).await;
    let dir = TempDir::new("canary");
    let stack = gateway(
        &dir,
        &config_text(
            &format!(
                "  stable:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n    weight: 90\n  canary:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n    weight: 10\n",
                stable[0].addr, canary[0].addr
            ),
            "traffic:\n  override_header: x-protogate-backend\n",
        ),
    )
    .await;
    const CALLS: u64 = 2000;
    for _ in 0..CALLS {
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
    let to_canary = canary[0].served();
    assert_eq!(to_canary + stable[0].served(), CALLS);
    // 10 % of 2,000 is 200 with a standard deviation of 13.4; allow 4.5 of them.
    assert!((140..=260).contains(&to_canary), "{to_canary}");

    for _ in 0..20 {
        let reply = stack
            .call_with(
                "GET",
                "/v1/users/1",
                None,
                &[("x-protogate-backend", "canary")],
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(canary[0].served(), to_canary + 20);
    let reply = stack
        .call_with(
            "GET",
            "/v1/users/1",
            None,
            &[("x-protogate-backend", "nope")],
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json["message"],
        "x-protogate-backend names no backend of this route"
    );
}

#[tokio::test]
async fn host_names_resolve_to_every_address() {
    let users = instances(1).await;
    let port = users[0].addr.port();
    let dir = TempDir::new("dns");
    let stack = gateway(
        &dir,
        &config_text(
            &format!(
                "  users:\n    address: http://localhost:{port}\n    services: [shop.user.v1.UserService]\n    dns_refresh: 1s\n"
            ),
            "",
        ),
    )
    .await;
    let (_, ready) = readyz(&stack).await;
    let addresses: Vec<&str> = ready["backends"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    assert!(
        addresses.contains(&format!("http://127.0.0.1:{port}").as_str()),
        "{addresses:?}"
    );
    assert!(
        addresses.iter().all(|a| !a.contains("localhost")),
        "{addresses:?}"
    );
    for _ in 0..10 {
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
}

#[tokio::test]
async fn readyz_reports_backends_and_waits_only_for_required_ones() {
    let users = instances(1).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let backends = |required: bool| {
        format!(
            "  users:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n    health_check: {{}}\n  spare:\n    address: http://{closed_addr}\n    services: [shop.order.v1.OrderService]\n    health_check: {{ timeout: 200ms }}\n    required: {required}\n",
            users[0].addr
        )
    };
    let yaml = |required| {
        config_text(&backends(required), "").replace(
            "protos: [shop/user/v1/user.proto]",
            "protos: [shop/user/v1/user.proto, shop/order/v1/order.proto]",
        )
    };
    let dir = TempDir::new("ready");
    let stack = gateway(&dir, &yaml(true)).await;
    let (status, ready) = readyz(&stack).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "not_ready");
    assert_eq!(ready["config"]["generation"], 1);
    assert_eq!(states(&ready, "users"), ["healthy"]);
    assert_eq!(states(&ready, "spare"), ["unhealthy"]);

    let optional = TempDir::new("ready-optional");
    let stack = gateway(&optional, &yaml(false)).await;
    let (status, ready) = readyz(&stack).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    let (status, _, body) = stack.get_text("/healthz").await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
}

#[tokio::test]
async fn split_skips_a_backend_that_cannot_answer() {
    let stable = instances(1).await;
    let canary = instances(1).await;
    let dir = TempDir::new("canary-down");
    let stack = gateway(
        &dir,
        &config_text(
            &format!(
                "  stable:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n    weight: 50\n  canary:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n    weight: 50\n    health_check: {{ interval: 100ms, unhealthy_threshold: 1 }}\n",
                stable[0].addr, canary[0].addr
            ),
            "",
        ),
    )
    .await;
    canary[0].set_serving(false).await;
    eventually(5, "canary unhealthy", || async {
        states(&readyz(&stack).await.1, "canary") == ["unhealthy"]
    })
    .await;
    let before = canary[0].served();
    for _ in 0..100 {
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
    assert_eq!(
        canary[0].served(),
        before,
        "its share went to the other backend"
    );
}

#[tokio::test]
async fn circuit_breaker_opens_fails_fast_half_opens_and_closes() {
    let mut users = instances(1).await;
    let addr = users[0].addr;
    let dir = TempDir::new("breaker");
    let stack = gateway(
        &dir,
        &config_text(
            &format!(
                "  users:\n    endpoints: [{}]\n    services: [shop.user.v1.UserService]\n    outlier_detection: {{ consecutive_failures: 2, ejection_time: 1s }}\n",
                endpoints(&users)
            ),
            "",
        ),
    )
    .await;
    assert_eq!(stack.get("/v1/users/1").await.status, 200);

    // The backend goes away: two failed calls open the breaker.
    users.remove(0).shutdown().await.unwrap();
    for _ in 0..2 {
        let reply = stack.get("/v1/users/1").await;
        assert_eq!(reply.status, 503, "{}", reply.json);
        assert!(reply.headers.get("retry-after").is_none());
    }
    let (_, ready) = readyz(&stack).await;
    assert_eq!(states(&ready, "users"), ["ejected"]);

    // Open: answered at once, without a call, with the time to wait.
    let reply = stack.get("/v1/users/1").await;
    assert_eq!(reply.status, 503, "{}", reply.json);
    assert_eq!(reply.json["code"], 14);
    assert!(
        reply.json["message"]
            .as_str()
            .unwrap()
            .contains("circuit open"),
        "{}",
        reply.json
    );
    assert_eq!(reply.headers["retry-after"], "1");
    let (_, _, metrics) = stack.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"protogate_backend_endpoints{backend="users",state="ejected"} 1"#),
        "{metrics}"
    );

    // Back on the same port; after the ejection, half-open: the trial call
    // answers and closes the breaker.
    let back = shop::spawn_users_v1(addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, ready) = readyz(&stack).await;
    assert_eq!(states(&ready, "users"), ["half_open"]);
    assert_eq!(stack.get("/v1/users/1").await.status, 200);
    let (_, ready) = readyz(&stack).await;
    assert_eq!(states(&ready, "users"), ["healthy"]);
    for _ in 0..5 {
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
    assert_eq!(back.served(), 6);
}

#[tokio::test]
async fn readyz_shows_a_backend_whose_only_endpoint_is_ejected_as_unavailable() {
    for (required, want_status, want) in [(true, 503, "not_ready"), (false, 200, "ready")] {
        let mut users = instances(1).await;
        let dir = TempDir::new("ejected-ready");
        // Health checks pass at startup and not again for an hour: only the
        // breaker sees the backend go.
        let stack = gateway(
            &dir,
            &config_text(
                &format!(
                    "  users:\n    endpoints: [{}]\n    services: [shop.user.v1.UserService]\n    health_check: {{ interval: 1h }}\n    outlier_detection: {{ consecutive_failures: 2, ejection_time: 1h }}\n    required: {required}\n",
                    endpoints(&users)
                ),
                "",
            ),
        )
        .await;
        let (status, ready) = readyz(&stack).await;
        assert_eq!(status, 200, "required: {required}: {ready}");
        assert_eq!(ready["backends"][0]["available"], true, "{ready}");

        users.remove(0).shutdown().await.unwrap();
        for _ in 0..2 {
            let reply = stack.get("/v1/users/1").await;
            assert_eq!(reply.status, 503, "{}", reply.json);
        }
        let (status, ready) = readyz(&stack).await;
        assert_eq!(states(&ready, "users"), ["ejected"], "{ready}");
        assert_eq!(ready["backends"][0]["available"], false, "{ready}");
        assert_eq!(
            (status, ready["status"].as_str()),
            (want_status, Some(want)),
            "required: {required}: {ready}"
        );
    }
}

#[tokio::test]
async fn a_required_backend_without_health_check_gets_the_default_checks() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = TempDir::new("required-checked");
    let stack = gateway(
        &dir,
        &config_text(
            &format!(
                "  users:\n    address: http://{closed_addr}\n    services: [shop.user.v1.UserService]\n    required: true\n"
            ),
            "",
        ),
    )
    .await;
    // The first check ran before serving: the endpoint is known to be down.
    let (status, ready) = readyz(&stack).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(states(&ready, "users"), ["unhealthy"], "{ready}");
}

#[tokio::test]
async fn backend_killed_mid_load_gets_503s_and_recovers_when_it_returns() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut users = instances(1).await;
    let addr = users[0].addr;
    let dir = TempDir::new("killed-mid-load");
    let stack = Arc::new(
        gateway(
            &dir,
            &config_text(
                &format!(
                    "  users:\n    endpoints: [{}]\n    services: [shop.user.v1.UserService]\n    connect_timeout: 1s\n    outlier_detection: {{ consecutive_failures: 3, ejection_time: 200ms }}\n",
                    endpoints(&users)
                ),
                "",
            ),
        )
        .await,
    );
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, u32>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stack, statuses, stop) = (stack.clone(), statuses.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let status = stack.get("/v1/users/1").await.status.as_u16();
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                }
            })
        })
        .collect();
    let count = |status: u16| statuses.lock().unwrap().get(&status).copied().unwrap_or(0);
    eventually(30, "calls answered under load", || async {
        count(200) >= 20
    })
    .await;
    users.remove(0).shutdown().await.unwrap();
    eventually(30, "503s while the backend is down", || async {
        count(503) >= 20
    })
    .await;
    let during = statuses.lock().unwrap().clone();
    let back = shop::spawn_users_v1(addr).await.unwrap();
    // Once it is back, every call is answered again.
    let ok_in_a_row = std::cell::Cell::new(0);
    eventually(60, "calls succeed after the backend returns", || {
        let (stack, ok) = (stack.clone(), &ok_in_a_row);
        async move {
            if stack.get("/v1/users/1").await.status == 200 {
                ok.set(ok.get() + 1);
            } else {
                ok.set(0);
            }
            ok.get() >= 20
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let all = statuses.lock().unwrap().clone();
    eprintln!("while the backend was down: {during:?}; in all: {all:?}");
    assert!(
        all.keys().all(|s| [200, 503].contains(s)),
        "only answers and 503s: {all:?}"
    );
    assert!(during.get(&503).copied().unwrap_or(0) > 0, "{during:?}");
    assert!(during.get(&200).copied().unwrap_or(0) > 0, "{during:?}");
    assert!(back.served() >= 20);
    assert_eq!(stack.get_text("/healthz").await.0, 200);
}

#[tokio::test]
async fn split_skips_a_backend_whose_breakers_are_open() {
    let stable = instances(1).await;
    let mut canary = instances(1).await;
    let dir = TempDir::new("canary-open");
    let stack = gateway(
        &dir,
        &config_text(
            &format!(
                "  stable:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n    weight: 50\n  canary:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n    weight: 50\n    outlier_detection: {{ consecutive_failures: 2, ejection_time: 1h }}\n",
                stable[0].addr, canary[0].addr
            ),
            "",
        ),
    )
    .await;
    // No active checks: only failed calls tell the canary is gone.
    canary.remove(0).shutdown().await.unwrap();
    eventually(5, "the canary's breaker opens", || async {
        let _ = stack.get("/v1/users/1").await;
        states(&readyz(&stack).await.1, "canary") == ["ejected"]
    })
    .await;
    let before = stable[0].served();
    for _ in 0..100 {
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
    assert_eq!(stable[0].served() - before, 100, "the canary's share too");
}
