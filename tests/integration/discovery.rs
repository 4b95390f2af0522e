//! Backends discovered in a real etcd: instances registered with leases
//! (as `shop --etcd` and Go services register them), watched by the
//! gateway; a revoked lease, a new instance, etcd stopped and restarted,
//! etcd down at startup, and a canary chosen by registered metadata.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use shop::Instance;
use shop::registry::{Entry, Registration};

use crate::servers::Etcd;
use crate::support::{Stack, TempDir, config_text, eventually, serve};

async fn instance() -> Instance {
    shop::spawn_users_v1(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

/// Registers `instance` under `/services/users/` with `version` metadata.
async fn register(etcd: &Etcd, instance: &Instance, version: &str) -> Registration {
    let mut metadata = serde_json::Map::new();
    metadata.insert("version".into(), version.into());
    let entry = Entry::new("/services/", "users", instance.addr, &metadata);
    Registration::register(&[etcd.url()], vec![entry], Duration::from_secs(30))
        .await
        .unwrap()
}

fn discovered(name: &str, url: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    discovery:\n      etcd: {{ endpoints: [{url}], prefix: /services/users/, timeout: 1s{extra} }}\n    services: [shop.user.v1.UserService]\n"
    )
}

async fn gateway(dir: &TempDir, yaml: &str) -> Stack {
    let config = protogate::config::load(&dir.write_config(yaml)).unwrap();
    let (addr, stop) = serve(config).await;
    Stack::for_gateway(addr, stop)
}

/// The `users` backend in `/readyz`: its endpoint addresses and its registry state.
async fn users(stack: &Stack) -> (Vec<String>, String) {
    let (_, _, body) = stack.get_text("/readyz").await;
    let ready: Value = serde_json::from_str(&body).unwrap();
    let backend = ready["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "users")
        .unwrap()
        .clone();
    let addresses = backend["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap().to_owned())
        .collect();
    (
        addresses,
        backend["discovery"]["state"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

async fn has_endpoints(stack: &Stack, instances: Vec<SocketAddr>) -> bool {
    let (mut got, _) = users(stack).await;
    let mut want: Vec<String> = instances
        .iter()
        .map(|addr| format!("http://{addr}"))
        .collect();
    got.sort();
    want.sort();
    got == want
}

async fn calls(stack: &Stack, n: usize) {
    for _ in 0..n {
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
}

#[tokio::test]
async fn instances_join_and_leave_with_their_leases_and_etcd_outages_keep_the_known_ones() {
    let mut etcd = Etcd::start().await;
    let (first, second) = (instance().await, instance().await);
    let _first_lease = register(&etcd, &first, "v1").await;
    let second_lease = register(&etcd, &second, "v1").await;
    let dir = TempDir::new("discovery");
    let stack = gateway(
        &dir,
        &config_text(&discovered("users", &etcd.url(), ""), ""),
    )
    .await;
    // Listed at startup: both serve at once.
    assert!(has_endpoints(&stack, vec![first.addr, second.addr]).await);
    assert_eq!(users(&stack).await.1, "connected");
    calls(&stack, 40).await;
    assert!(
        first.served() >= 5 && second.served() >= 5,
        "{} {}",
        first.served(),
        second.served()
    );

    // The second instance "dies": its lease goes, then the process.
    second_lease.revoke().await.unwrap();
    eventually(30, "the revoked instance leaves", || {
        has_endpoints(&stack, vec![first.addr])
    })
    .await;
    second.shutdown().await.unwrap();
    let before = first.served();
    calls(&stack, 50).await;
    assert_eq!(
        first.served() - before,
        50,
        "every call after it left went to the live one"
    );

    // A third registers itself, in the plain host:port form, without a lease.
    let third = instance().await;
    let mut client = etcd.client().await;
    let key = format!("/services/users/{}", third.addr);
    client
        .put(key.as_str(), third.addr.to_string(), None)
        .await
        .unwrap();
    eventually(30, "the new instance joins", || {
        has_endpoints(&stack, vec![first.addr, third.addr])
    })
    .await;
    calls(&stack, 40).await;
    assert!(
        third.served() >= 5,
        "the new instance takes traffic: {}",
        third.served()
    );

    // etcd goes away: the known endpoints keep serving.
    etcd.stop();
    eventually(30, "the registry shows as unreachable", || async {
        users(&stack).await.1 == "unreachable"
    })
    .await;
    let (_, _, metrics) = stack.get_text("/metrics").await;
    assert!(
        metrics.contains("protogate_discovery_connected{backend=\"users\"} 0"),
        "{metrics}"
    );
    calls(&stack, 30).await;
    assert!(has_endpoints(&stack, vec![first.addr, third.addr]).await);

    // Back: the watch resumes and sees changes again.
    etcd.resume().await;
    eventually(60, "the watch resumes", || async {
        users(&stack).await.1 == "connected"
    })
    .await;
    let mut client = etcd.client().await;
    client.delete(key.as_str(), None).await.unwrap();
    eventually(30, "a change after the outage arrives", || {
        has_endpoints(&stack, vec![first.addr])
    })
    .await;
    let (_, _, metrics) = stack.get_text("/metrics").await;
    assert!(
        metrics.contains("protogate_discovery_connected{backend=\"users\"} 1"),
        "{metrics}"
    );
    calls(&stack, 20).await;
}

#[tokio::test]
async fn a_gateway_starts_with_etcd_down_and_serves_once_instances_are_listed() {
    let mut etcd = Etcd::start().await;
    etcd.stop();
    let dir = TempDir::new("discovery-down");
    let stack = gateway(
        &dir,
        &config_text(&discovered("users", &etcd.url(), ""), ""),
    )
    .await;
    let (endpoints, state) = users(&stack).await;
    assert!(endpoints.is_empty());
    assert_eq!(state, "unreachable");
    let refused = stack.get("/v1/users/1").await;
    assert_eq!(refused.status, 503, "{:?}", refused.json);
    assert_eq!(refused.json["code"], 14, "{:?}", refused.json);

    etcd.resume().await;
    let live = instance().await;
    let _lease = register(&etcd, &live, "v1").await;
    eventually(60, "the instance is listed once etcd is up", || {
        has_endpoints(&stack, vec![live.addr])
    })
    .await;
    calls(&stack, 10).await;
}

#[tokio::test]
async fn registered_metadata_splits_one_prefix_into_a_weighted_canary() {
    let etcd = Etcd::start().await;
    let (stable, canary) = (instance().await, instance().await);
    let _leases = (
        register(&etcd, &stable, "v1").await,
        register(&etcd, &canary, "v2").await,
    );
    let backends = format!(
        "{}    weight: 90\n{}    weight: 10\n",
        discovered("users", &etcd.url(), ", metadata: { version: v1 }"),
        discovered("users-canary", &etcd.url(), ", metadata: { version: v2 }"),
    );
    let dir = TempDir::new("discovery-canary");
    let stack = gateway(&dir, &config_text(&backends, "")).await;
    assert!(
        has_endpoints(&stack, vec![stable.addr]).await,
        "{:?}",
        users(&stack).await
    );
    calls(&stack, 400).await;
    // 10 % of 400: mean 40, standard deviation 6.
    let to_canary = canary.served();
    assert_eq!(stable.served() + to_canary, 400);
    assert!(
        (15..=70).contains(&to_canary),
        "canary served {to_canary} of 400"
    );
}
