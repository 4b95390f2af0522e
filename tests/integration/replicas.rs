//! Replicas that agree: three gateways started from one config file answer
//! the same request the same way (routes, auth, errors, the OpenAPI
//! document byte for byte), and still do after the file changes and each
//! reloads it.

use std::sync::Arc;

use protogate::server::Live;

use crate::support::{API_KEY, Stack, TempDir, dev_token, root, serve_live};

/// The repository's gateway.yaml with its paths made absolute and its
/// backends at `backends`.
fn example_yaml(backends: &shop::Backends) -> String {
    let root = root();
    std::fs::read_to_string(root.join("gateway.yaml"))
        .unwrap()
        .replace(
            "include: [protos]",
            &format!("include: [{}/protos]", root.display()),
        )
        .replace(
            "public_key_file: examples/",
            &format!("public_key_file: {}/examples/", root.display()),
        )
        .replace("127.0.0.1:50051", &backends.users.to_string())
        .replace("127.0.0.1:50052", &backends.orders.to_string())
        .replace("127.0.0.1:50053", &backends.inventory.to_string())
        .replace("127.0.0.1:50054", &backends.users_v2.to_string())
}

/// A request every replica must answer alike: label, path, headers.
type Request = (&'static str, String, Vec<(String, String)>);

fn requests() -> Vec<Request> {
    let bearer = (
        "authorization".to_owned(),
        format!("Bearer {}", dev_token("orders")),
    );
    let key = ("x-api-key".to_owned(), API_KEY.to_owned());
    vec![
        ("public", "/v1/users/1".into(), vec![]),
        ("not found", "/v1/users/999".into(), vec![]),
        ("no route", "/v1/nowhere".into(), vec![]),
        ("no token", "/v1/users/1/orders".into(), vec![]),
        ("token", "/v1/users/1/orders".into(), vec![bearer.clone()]),
        (
            "api key",
            "/v1/inventory:batchGet?skus=sku-espresso".into(),
            vec![key.clone()],
        ),
        (
            "wrong credential",
            "/v1/inventory:batchGet?skus=sku-espresso".into(),
            vec![bearer],
        ),
        ("bad query", "/v1/users?page_size=banana".into(), vec![]),
        ("openapi", "/openapi.json".into(), vec![]),
    ]
}

async fn answers(stack: &Stack) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    for (label, path, headers) in requests() {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, _, body) = stack
            .send(reqwest::Method::GET, &path, &headers, None)
            .await;
        out.push((
            label.to_owned(),
            status.as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    out
}

async fn assert_alike(replicas: &[(Stack, Arc<Live>)]) -> Vec<(String, u16, String)> {
    let first = answers(&replicas[0].0).await;
    for (i, (stack, _)) in replicas.iter().enumerate().skip(1) {
        let other = answers(stack).await;
        for (a, b) in first.iter().zip(&other) {
            assert_eq!(a, b, "replica {i} answers {:?} differently", a.0);
        }
    }
    first
}

#[tokio::test]
async fn replicas_of_one_config_answer_alike_before_and_after_a_reload() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("replicas");
    let yaml = example_yaml(&backends);
    let path = dir.write_config(&yaml);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
        replicas.push((Stack::for_gateway(addr, stop), live));
    }
    let before = assert_alike(&replicas).await;
    let statuses: Vec<u16> = before.iter().map(|a| a.1).collect();
    assert_eq!(
        statuses,
        [200, 404, 404, 401, 200, 200, 401, 400, 200],
        "{before:?}"
    );

    // One edit, applied to every replica by its own reload.
    dir.write_config(&yaml.replace(
        "title: Example shop API",
        "title: Example shop API, reloaded",
    ));
    for (_, live) in &replicas {
        assert_eq!(live.reload().await.unwrap().generation(), 2);
    }
    let after = assert_alike(&replicas).await;
    let document = |answers: &[(String, u16, String)]| answers.last().unwrap().2.clone();
    assert_ne!(
        document(&before),
        document(&after),
        "the reload changed the document"
    );
    assert!(document(&after).contains("Example shop API, reloaded"));
}

/// The README's multi-replica example (`scripts/multi-replica.sh`): its
/// config, with the example backends registering themselves in a real etcd
/// and three gateway processes sharing their limit in a real Redis; the
/// section's `curl` calls are run against them and must print what the
/// README shows.
#[tokio::test]
async fn the_readme_multi_replica_example_is_true() {
    use crate::readme::{blocks, same, section};
    use crate::servers::{Etcd, Redis};
    use crate::support::spawn_gateway_with_env;

    let (etcd, redis) = (Etcd::start().await, Redis::start().await);
    let root = root();
    let yaml = std::fs::read_to_string(root.join("examples/multi-replica/gateway.yaml"))
        .unwrap()
        .replace(
            "include: [../../protos]",
            &format!("include: [{}/protos]", root.display()),
        )
        .replace("http://127.0.0.1:2379", &etcd.url())
        .replace("redis://127.0.0.1:6379", &redis.url());
    // Two instances of the backends, registered as `shop --etcd` registers them.
    let mut instances = Vec::new();
    for _ in 0..2 {
        let backends = shop::spawn_ephemeral().await.unwrap();
        let entries = shop::registry::shop_entries("/services/", &backends, "v1", None);
        let lease = shop::registry::Registration::register(
            &[etcd.url()],
            entries,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
        instances.push((backends, lease));
    }
    let dir = TempDir::new("multi-replica");
    let path = dir.write_config(&yaml);
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(spawn_gateway_with_env(&path, &[]).await);
    }

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = blocks(section(&readme, "### Several replicas on one machine"));
    let mut ran = 0;
    for (i, (lang, body)) in blocks.iter().enumerate() {
        if lang != "bash" || !body.contains("curl") {
            continue;
        }
        // The README's ports 8081..8083 are these gateways' ports; through
        // placeholders, so a port inserted is never replaced again.
        let mut command = body.replace("localhost:", "127.0.0.1:");
        for n in 1..=3 {
            command = command.replace(&format!("808{n}"), &format!("\u{1}{n}"));
        }
        for (n, gateway) in gateways.iter().enumerate() {
            let port = gateway.url.rsplit(':').next().unwrap();
            command = command.replace(&format!("\u{1}{}", n + 1), port);
        }
        // Off the test's thread: the backends answer on it meanwhile.
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("bash")
                .args(["-c", &command])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        let (kind, want) = &blocks[i + 1];
        match kind.as_str() {
            "json" => {
                let want: serde_json::Value = serde_json::from_str(want).unwrap();
                let got: serde_json::Value = serde_json::from_str(&got)
                    .unwrap_or_else(|e| panic!("`{body}` printed no JSON ({e}): {got}"));
                assert!(same(&want, &got), "`{body}`\nREADME: {want}\n   got: {got}");
            }
            _ => assert_eq!(got.trim(), want.trim(), "`{body}`"),
        }
        ran += 1;
    }
    assert!(ran >= 2, "the section has {ran} curl examples");
}
