//! Hot reload: routes and backends swapped under load without losing a
//! request, bad configs refused, file changes and SIGHUP picked up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::{Stack, TempDir, client, config_text, eventually, serve_live};

fn users_backend(addr: std::net::SocketAddr) -> String {
    format!("  users:\n    address: http://{addr}\n    services: [shop.user.v1.UserService]\n")
}

#[tokio::test]
async fn reload_under_load_loses_no_request() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("reload-load");
    let plain = config_text(&users_backend(backends.users), "");
    // A new backend timeout replaces the backend (and its connection); the
    // deprecation changes every route.
    let changed = config_text(
        &format!("{}    timeout: 5s\n", users_backend(backends.users)),
        "apis:\n  - services: [shop.user.v1.*]\n    deprecated: { since: 2026-01-01 }\n",
    );
    let path = dir.write_config(&plain);
    let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let stack = Stack::for_gateway(addr, stop);

    // Clients call a path every config serves while the routes change under them.
    let running = Arc::new(AtomicBool::new(true));
    let (sent, ok) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (running, sent, ok) = (running.clone(), sent.clone(), ok.clone());
        let (http, url) = (client(), stack.url("/v1/users/1"));
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while running.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(r.status().to_string()),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }
    for round in 0..6 {
        let yaml = if round % 2 == 0 { &changed } else { &plain };
        dir.write_config(yaml);
        let gateway = live.reload().await.unwrap();
        assert_eq!(gateway.generation(), round + 2);
        // Load on each config, counted in answers, not in time: a busy
        // machine answers fewer calls per 100ms.
        let enough = ok.load(Ordering::Relaxed) + 20;
        eventually(30, "20 calls answered after the reload", || async {
            ok.load(Ordering::Relaxed) >= enough
        })
        .await;
    }
    running.store(false, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    let (sent, ok) = (sent.load(Ordering::Relaxed), ok.load(Ordering::Relaxed));
    eprintln!("requests across 6 reloads: {sent} sent, {ok} answered 200");
    assert!(sent > 100, "only {sent} requests made");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(ok, sent);
}

#[tokio::test]
async fn bad_reload_keeps_the_running_config() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("reload-bad");
    let good = config_text(&users_backend(backends.users), "");
    let path = dir.write_config(&good);
    let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let stack = Stack::for_gateway(addr, stop);
    for (bad, want) in [
        ("backends: [", "gateway.yaml"),
        (
            &good.replace("shop.user.v1.UserService", "shop.user.v1.Nope") as &str,
            "shop.user.v1.Nope is not in the loaded descriptors",
        ),
        (
            &good.replace("user.proto]", "missing.proto]"),
            "cannot compile shop/user/v1/missing.proto",
        ),
    ] {
        dir.write_config(bad);
        let err = format!("{:#}", live.reload().await.map(|_| ()).unwrap_err());
        assert!(err.contains(want), "{err}");
        assert_eq!(live.gateway().generation(), 1);
        assert_eq!(stack.get("/v1/users/1").await.status, 200);
    }
}

#[tokio::test]
async fn file_change_reloads_keeps_unchanged_backends_and_ignores_a_broken_file() {
    let users = shop::spawn_users_v1(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let dir = TempDir::new("reload-watch");
    let backend = |connect: &str| {
        format!(
            "  users:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n    connect_timeout: {connect}\n    health_check: {{ interval: 1h }}\n",
            users.addr
        )
    };
    let watch = "reload:\n  debounce: 100ms\n";
    let path = dir.write_config(&config_text(&backend("5s"), watch));
    let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let _watch = live.watch().unwrap();
    let stack = Stack::for_gateway(addr, stop);
    let state = || async {
        let (_, _, body) = stack.get_text("/readyz").await;
        let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
        ready["backends"][0]["endpoints"][0]["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(stack.get("/api/v1/users/1").await.status, 404);
    // Checked once at startup, then not for an hour: the gateway still
    // believes the endpoint healthy, unless a rebuilt backend checks again.
    users.set_serving(false).await;

    let prefixed = "apis:\n  - services: [shop.user.v1.*]\n    prefix: /api\n";
    dir.write_config(&config_text(&backend("5s"), &format!("{watch}{prefixed}")));
    eventually(10, "the new prefix served", || async {
        stack.get("/api/v1/users/1").await.status == 200
    })
    .await;
    assert_eq!(live.gateway().generation(), 2);
    assert_eq!(state().await, "healthy", "the unchanged backend was kept");
    // Reloading reads the file; reads are not changes, so no reload follows.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(live.gateway().generation(), 2);

    // A broken file is logged and ignored.
    dir.write_config("descriptors: {");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(live.gateway().generation(), 2);
    assert_eq!(stack.get("/api/v1/users/1").await.status, 200);

    // The watch goes on after a failure; a changed backend is built anew.
    dir.write_config(&config_text(&backend("4s"), &format!("{watch}{prefixed}")));
    eventually(10, "reloaded after the broken file", || async {
        live.gateway().generation() == 3
    })
    .await;
    assert_eq!(
        state().await,
        "unhealthy",
        "the changed backend was checked anew"
    );
}

#[tokio::test]
async fn symlinked_config_swaps_are_seen_every_time() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    // The layout of a Kubernetes ConfigMap volume: gateway.yaml links into
    // ..data, itself a link to a timestamped directory swapped on update.
    let dir = TempDir::new("reload-symlink");
    let version = |n: u32, prefix: &str| {
        let v = dir.0.join(format!("..v{n}"));
        std::fs::create_dir_all(&v).unwrap();
        let extra = format!(
            "reload:\n  debounce: 100ms\napis:\n  - services: [shop.user.v1.*]\n    prefix: {prefix}\n"
        );
        std::fs::write(
            v.join("gateway.yaml"),
            config_text(&users_backend(backends.users), &extra),
        )
        .unwrap();
        let tmp = dir.0.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..v{n}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.0.join("..data")).unwrap();
    };
    version(1, "/a");
    let path = dir.0.join("gateway.yaml");
    std::os::unix::fs::symlink("..data/gateway.yaml", &path).unwrap();
    let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let _watch = live.watch().unwrap();
    let stack = Stack::for_gateway(addr, stop);
    assert_eq!(stack.get("/a/v1/users/1").await.status, 200);
    for (n, prefix) in [(2, "/b"), (3, "/c")] {
        version(n, prefix);
        let url = format!("{prefix}/v1/users/1");
        eventually(10, &format!("update {n} seen"), || async {
            stack.get(&url).await.status == 200
        })
        .await;
    }
    assert_eq!(live.gateway().generation(), 3);
}

#[tokio::test]
async fn sighup_reloads_the_binary() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("reload-hup");
    let users = users_backend(backends.users);
    let path = dir.write_config(&config_text(&users, "reload:\n  watch: false\n"));
    let child = crate::support::spawn_gateway(&path).await;
    let url = child.url.clone();
    let http = client();
    let status = |path: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.get(format!("{url}{path}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    eventually(20, "the binary serves", || async {
        status("/v1/users/1").await == 200
    })
    .await;
    dir.write_config(&config_text(
        &users,
        "reload:\n  watch: false\napis:\n  - services: [shop.user.v1.*]\n    prefix: /api\n",
    ));
    // watch: false, so only the signal reloads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status("/api/v1/users/1").await, 404);
    let pid = child.process.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually(10, "reloaded on SIGHUP", || async {
        status("/api/v1/users/1").await == 200
    })
    .await;
    assert_eq!(status("/v1/users/1").await, 404);
}

#[tokio::test]
async fn requests_in_flight_finish_on_the_config_they_started_with() {
    let (probe_addr, probe) = crate::probe::spawn().await;
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("reload-inflight");
    let probe_config = format!(
        "descriptors:\n  include: [{}]\n  protos: [probe/v1/probe.proto]\nbackends:\n  probe:\n    address: http://{probe_addr}\n    services: [probe.v1.Probe]\n",
        crate::support::root()
            .join("tests/fixtures/protos")
            .display()
    );
    let path = dir.write_config(&probe_config);
    let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let stack = Arc::new(Stack::for_gateway(addr, stop));

    // A slow call is in flight when a config without its route and backend is swapped in.
    let slow = {
        let stack = stack.clone();
        tokio::spawn(async move {
            stack
                .call(
                    "POST",
                    "/v1/echo",
                    Some(r#"{"text":"still here","delayMs":"500"}"#),
                )
                .await
        })
    };
    eventually(30, "the slow call reaches the backend", || async {
        probe.echoes.load(Ordering::SeqCst) == 1
    })
    .await;
    dir.write_config(&config_text(&users_backend(backends.users), ""));
    live.reload().await.unwrap();
    assert_eq!(
        stack
            .call("POST", "/v1/echo", Some(r#"{"text":"new"}"#))
            .await
            .status,
        404
    );
    assert_eq!(stack.get("/v1/users/1").await.status, 200);

    let reply = slow.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.json["text"], "still here");
}

#[tokio::test]
async fn reload_asks_reflection_backends_again() {
    // The backend at one address changes what it serves between reloads.
    let first = shop::spawn_ephemeral().await.unwrap();
    let addr = first.users_v2;
    let dir = TempDir::new("reload-reflection");
    let yaml = config_text(
        &format!("  dynamic:\n    address: http://{addr}\n    reflection: true\n"),
        "",
    );
    let path = dir.write_config(&yaml);
    let (gateway, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let stack = Stack::for_gateway(gateway, stop);
    assert_eq!(stack.get("/v2/users/1").await.status, 200);
    assert_eq!(stack.get("/v1/inventory/sku-espresso").await.status, 404);

    first.shutdown().await.unwrap();
    let second = shop::spawn(shop::Addresses {
        inventory: addr,
        ..Default::default()
    })
    .await
    .unwrap();
    live.reload().await.unwrap();
    assert_eq!(stack.get("/v2/users/1").await.status, 404);
    let stock = stack.get("/v1/inventory/sku-espresso").await;
    assert_eq!(stock.status, 200, "{}", stock.json);
    assert_eq!(stock.json["sku"], "sku-espresso");
    drop(second);
}

#[tokio::test]
async fn issue_15_an_edited_proto_file_reloads() {
    let users = shop::spawn_users_v1(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let dir = TempDir::new("reload-proto");
    // The user proto copied beside the config, with its route moved.
    let original =
        std::fs::read_to_string(crate::support::root().join("protos/shop/user/v1/user.proto"))
            .unwrap();
    assert!(original.contains("get: \"/v1/users/{id}\""));
    let protos = dir.0.join("protos/shop/user/v1");
    std::fs::create_dir_all(&protos).unwrap();
    let proto = protos.join("user.proto");
    std::fs::write(&proto, &original).unwrap();
    let yaml = format!(
        "descriptors:\n  include: [protos, {}]\n  protos: [shop/user/v1/user.proto]\nbackends:\n  users:\n    address: http://{}\n    services: [shop.user.v1.UserService]\nreload:\n  debounce: 100ms\n",
        crate::support::root().join("protos").display(),
        users.addr
    );
    let path = dir.write_config(&yaml);
    let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let _watch = live.watch().unwrap();
    let stack = Stack::for_gateway(addr, stop);
    assert_eq!(stack.get("/v1/users/1").await.status, 200);
    assert_eq!(stack.get("/v1/people/1").await.status, 404);

    std::fs::write(
        &proto,
        original.replace("get: \"/v1/users/{id}\"", "get: \"/v1/people/{id}\""),
    )
    .unwrap();
    eventually(10, "the edited proto's route served", || async {
        stack.get("/v1/people/1").await.status == 200
    })
    .await;
    assert_eq!(live.gateway().generation(), 2);
}

/// Issue 15: a log written beside the config does not wake the watcher (it
/// used to: every "not reloading" line was itself a change), and a config
/// saved unchanged is logged as unchanged.
#[tokio::test]
async fn issue_15_a_log_beside_the_config_is_not_a_change() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let dir = TempDir::new("reload-log-beside");
    let users = users_backend(backends.users);
    let yaml = config_text(&users, "reload:\n  debounce: 50ms\n");
    let path = dir.write_config(&yaml);
    let log = dir.0.join("gateway.log");
    let gateway = crate::support::spawn_gateway_logging(
        &path,
        &[],
        std::fs::File::create(&log).unwrap().into(),
    )
    .await;
    let http = client();
    let status = |p: &str| {
        let request = http.get(format!("{}{p}", gateway.url)).send();
        async move { request.await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    // Requests write log lines beside the config.
    for _ in 0..3 {
        assert_eq!(status("/v1/nothing").await, 404);
    }
    let count = |what: &str| std::fs::read_to_string(&log).unwrap().matches(what).count();
    const UNCHANGED: &str = "not reloading";
    // Saved with the same bytes: one check, logged as unchanged.
    std::fs::write(&path, &yaml).unwrap();
    eventually(10, "the unchanged save is logged", || async {
        count(UNCHANGED) >= 1
    })
    .await;
    // A real change reloads.
    dir.write_config(&config_text(
        &users,
        "reload:\n  debounce: 50ms\napis:\n  - services: [shop.user.v1.*]\n    prefix: /api\n",
    ));
    eventually(10, "the change is served", || async {
        status("/api/v1/users/1").await == 200
    })
    .await;
    eventually(10, "the reload is logged", || async {
        count("configuration reloaded") == 1
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches(UNCHANGED).count(), 1, "{text}");
}
