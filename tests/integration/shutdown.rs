//! Stopping without dropping requests: on SIGTERM `/readyz` turns 503 while
//! the listener goes on serving for `server.drain_delay`, then the gateway
//! drains and exits 0.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{TempDir, client, config_text, eventually, serve_live, spawn_gateway};

/// One user service and a config for it with `server` settings.
async fn users_config(dir: &TempDir, server: &str) -> (shop::Instance, std::path::PathBuf) {
    let users = shop::spawn_users_v1(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let path = dir.write_config(&config_text(
        &format!(
            "  users:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n",
            users.addr
        ),
        &format!("{server}reload:\n  watch: false\n"),
    ));
    (users, path)
}

#[tokio::test]
async fn readyz_answers_draining_once_a_shutdown_begins_and_across_reloads() {
    let dir = TempDir::new("draining");
    let (_users, path) = users_config(&dir, "").await;
    let (addr, _stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let http = client();
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("http://{addr}{path}"));
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            (status, body)
        }
    };
    let (status, ready) = get("/readyz").await;
    assert_eq!(
        (status, &ready["status"]),
        (200, &"ready".into()),
        "{ready}"
    );

    live.drain();
    live.reload().await.unwrap();
    let (status, ready) = get("/readyz").await;
    assert_eq!(
        (status, &ready["status"]),
        (503, &"draining".into()),
        "{ready}"
    );
    assert_eq!(ready["config"]["generation"], 2, "{ready}");
    assert_eq!(ready["backends"][0]["available"], true, "{ready}");
    // Still serving: liveness and API calls.
    assert_eq!(get("/healthz").await.0, 200);
    let (status, user) = get("/v1/users/1").await;
    assert_eq!(status, 200, "{user}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_serving_for_the_drain_delay_then_exits_zero() {
    let dir = TempDir::new("drain-delay");
    let (_users, path) =
        users_config(&dir, "server:\n  drain_delay: 3s\n  shutdown_grace: 5s\n").await;
    let mut gateway = spawn_gateway(&path).await;
    let url = format!("{}/v1/users/1", gateway.url);

    // Clients calling in a loop: three over keep-alive connections, three
    // on a new connection per request.
    let keep_alive = client();
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let counts: Arc<Vec<AtomicUsize>> = Arc::new((0..6).map(|_| AtomicUsize::new(0)).collect());
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let http = if i < 3 {
                keep_alive.clone()
            } else {
                fresh.clone()
            };
            let (url, stop, failures, counts) =
                (url.clone(), stop.clone(), failures.clone(), counts.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            counts[i].fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("client {i}: {}", r.status())),
                        Err(e) => failures.lock().unwrap().push(format!("client {i}: {e:?}")),
                    }
                }
            })
        })
        .collect();
    let served = |counts: &[AtomicUsize]| -> Vec<usize> {
        counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    };
    eventually(10, "every client is served", || {
        let all = served(&counts).iter().all(|&n| n > 0);
        async move { all }
    })
    .await;

    let pid = gateway.process.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());

    let probe = client();
    let readyz = format!("{}/readyz", gateway.url);
    eventually(10, "/readyz answers 503 after SIGTERM", || {
        let (probe, readyz) = (probe.clone(), readyz.clone());
        async move {
            match probe.get(readyz).send().await {
                Ok(r) if r.status() == 503 => {
                    let body: serde_json::Value =
                        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                    assert_eq!(body["status"], "draining", "{body}");
                    true
                }
                _ => false,
            }
        }
    })
    .await;
    // Every client, new connections too, keeps being served while draining.
    let at_flip = served(&counts);
    eventually(
        10,
        "every client is served after /readyz turned 503",
        || {
            let now = served(&counts);
            let all = now.iter().zip(&at_flip).all(|(n, before)| *n >= before + 3);
            async move { all }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}");

    let mut exit = None;
    eventually(20, "the gateway exits after the drain delay", || {
        let status = gateway.process.try_wait().unwrap();
        exit = status;
        async move { status.is_some() }
    })
    .await;
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "{exit:?}");
}
