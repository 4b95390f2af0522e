//! Rate limits shared by replicas through a real Redis: three gateways
//! enforce one limit together, fall back as `on_store_error` says while
//! Redis is down (killed, or frozen so it never answers), and share again
//! once it is back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::servers::{Redis, free_port};
use crate::support::{Stack, TempDir, config_text, eventually, serve};

/// Tokens per second of the shared limit.
const RATE: f64 = 20.0;
/// Tokens a full bucket holds.
const BURST: f64 = 5.0;

fn config(users: SocketAddr, redis: &str, policy: &str) -> String {
    config_with(
        users,
        redis,
        policy,
        &format!("{{ requests: {RATE}, per: 1s, burst: {BURST} }}"),
    )
}

fn config_with(users: SocketAddr, redis: &str, policy: &str, rate: &str) -> String {
    config_text(
        &format!(
            "  users:\n    address: http://{users}\n    services: [shop.user.v1.UserService]\n"
        ),
        &format!(
            "rate_limit:\n  by_address: {rate}\n  store:\n    redis: {{ url: \"{redis}\", timeout: 500ms, key_prefix: \"test:{}:\" }}\n  on_store_error: {policy}\n",
            free_port()
        ),
    )
}

async fn replicas(dir: &TempDir, yaml: &str, n: usize) -> Vec<Arc<Stack>> {
    let path = dir.write_config(yaml);
    let mut out = Vec::new();
    for _ in 0..n {
        let (addr, stop) = serve(protogate::config::load(&path).unwrap()).await;
        out.push(Arc::new(Stack::for_gateway(addr, stop)));
    }
    out
}

/// Requests admitted (200) by all `replicas` together while two clients per
/// replica call as fast as they can for `seconds`, and how long that took.
/// Any answer but 200 or 429 fails the test.
async fn admitted(replicas: &[Arc<Stack>], seconds: u64) -> (u64, Duration) {
    let ok = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for replica in replicas.iter().chain(replicas.iter()) {
        let (replica, ok) = (replica.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            while Instant::now() < until {
                let reply = replica.get("/v1/users/1").await;
                match reply.status.as_u16() {
                    200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => {}
                    other => panic!("unexpected {other}: {:?}", reply.json),
                }
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), start.elapsed())
}

/// What one bucket admits in `elapsed`: a full burst, then `RATE` a second.
fn expected(elapsed: Duration) -> f64 {
    BURST + RATE * elapsed.as_secs_f64()
}

async fn metric(stack: &Stack, line: &str) -> bool {
    let (_, _, text) = stack.get_text("/metrics").await;
    text.lines().any(|l| l == line)
}

async fn all_replicas(replicas: &[Arc<Stack>], line: &str) -> bool {
    for replica in replicas {
        if !metric(replica, line).await {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn three_replicas_enforce_one_limit_fall_back_while_redis_is_down_and_share_again() {
    let mut redis = Redis::start().await;
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("shared-limits");
    let replicas = replicas(&dir, &config(backends.users, &redis.url(), "local"), 3).await;
    eventually(30, "every replica reaches redis", || {
        all_replicas(&replicas, "protogate_rate_limit_store_up 1")
    })
    .await;

    let (ok, elapsed) = admitted(&replicas, 3).await;
    let want = expected(elapsed);
    eprintln!("shared: {ok} admitted in {elapsed:?}, one bucket admits {want:.1}");
    assert!(
        (ok as f64 - want).abs() <= want * 0.10,
        "three replicas admitted {ok}, one shared limit allows {want:.1}"
    );

    // Redis dies: each replica falls back to its own buckets and keeps answering.
    redis.stop();
    let (ok, elapsed) = admitted(&replicas, 2).await;
    let one = expected(elapsed);
    eprintln!("redis down: {ok} admitted in {elapsed:?} ({one:.1} per replica)");
    assert!(
        ok as f64 > one * 1.5,
        "with local fallback every replica admits its own limit: {ok}"
    );
    for replica in &replicas {
        assert!(metric(replica, "protogate_rate_limit_store_up 0").await);
        let (_, _, text) = replica.get_text("/metrics").await;
        assert!(
            text.lines()
                .any(|l| l
                    .starts_with("protogate_rate_limit_store_fallbacks_total{policy=\"local\"}")),
            "{text}"
        );
    }

    // Back: shared limiting resumes (a restarted Redis starts with full buckets).
    redis.resume().await;
    eventually(30, "every replica reconnects", || {
        all_replicas(&replicas, "protogate_rate_limit_store_up 1")
    })
    .await;
    let (ok, elapsed) = admitted(&replicas, 3).await;
    let want = expected(elapsed);
    eprintln!("shared again: {ok} admitted in {elapsed:?}, one bucket admits {want:.1}");
    assert!(
        (ok as f64 - want).abs() <= want * 0.10,
        "after Redis came back three replicas admitted {ok}, one limit allows {want:.1}"
    );
}

#[tokio::test]
async fn a_frozen_redis_is_timed_out_and_the_policy_decides() {
    let redis = Redis::start().await;
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("frozen-redis");
    let deny = replicas(&dir, &config(backends.users, &redis.url(), "deny"), 1)
        .await
        .remove(0);
    let dir2 = TempDir::new("frozen-redis-allow");
    let allow = replicas(&dir2, &config(backends.users, &redis.url(), "allow"), 1)
        .await
        .remove(0);
    for stack in [&deny, &allow] {
        eventually(30, "the replica reaches redis", || {
            metric(stack, "protogate_rate_limit_store_up 1")
        })
        .await;
        let reply = stack.get("/v1/users/1").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["ratelimit-limit"], "5");
    }

    // SIGSTOP: connections stay open, nothing is answered.
    let pid = redis.pid();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let refused = deny.get("/v1/users/1").await;
    assert_eq!(refused.status, 503, "{:?}", refused.json);
    assert_eq!(refused.json["code"], 14, "{:?}", refused.json);
    assert_eq!(refused.headers["retry-after"], "1");
    let passed = allow.get("/v1/users/1").await;
    assert_eq!(passed.status, 200, "{:?}", passed.json);
    assert!(
        passed.headers.get("ratelimit-limit").is_none(),
        "unlimited while the store is down"
    );
    assert!(metric(&deny, "protogate_rate_limit_store_up 0").await);
    let (_, _, text) = deny.get_text("/metrics").await;
    assert!(
        text.lines().any(
            |l| l.starts_with("protogate_rate_limit_store_errors_total ") && !l.ends_with(" 0")
        ),
        "{text}"
    );

    signal("-CONT");
    for stack in [&deny, &allow] {
        eventually(30, "the replica reconnects", || {
            metric(stack, "protogate_rate_limit_store_up 1")
        })
        .await;
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
    drop(redis);
}

#[tokio::test]
async fn a_gateway_starts_with_redis_down_and_limits_locally() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("redis-down");
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    // One token an hour: what passes is the burst, whatever the machine's speed.
    let yaml = config_with(
        backends.users,
        &nowhere,
        "local",
        "{ requests: 1, per: 1h, burst: 5 }",
    );
    let stack = replicas(&dir, &yaml, 1).await.remove(0);
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..7 {
            out.push(stack.get("/v1/users/1").await.status.as_u16());
        }
        out
    };
    // The local bucket: the burst passes, then 429s (not 5xx).
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    assert!(metric(&stack, "protogate_rate_limit_store_up 0").await);
}
