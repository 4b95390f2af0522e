//! The `protogate` binary's commands and startup errors.

use std::process::Command;

use crate::support::{example_config_file, root};

fn protogate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_protogate"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("protogate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_prints_the_route_table() {
    // users v2 is described by reflection, so its backend must be up.
    let backends = shop::spawn_ephemeral().await.unwrap();
    let (_dir, config) = example_config_file(&backends);
    let config = config.to_str().unwrap().to_owned();
    let (ok, stdout, stderr) =
        tokio::task::spawn_blocking(move || protogate(&["check", "--config", &config]))
            .await
            .unwrap();
    assert!(ok, "{stderr}");
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["METHOD", "PATH", "TARGET", "BACKEND"]);
    assert!(lines.contains(&vec![
        "POST",
        "/v1/{name=users/*/orders/*}:cancel",
        "shop.order.v1.OrderService.CancelOrder",
        "orders"
    ]));
    assert!(lines.contains(&vec![
        "GET",
        "/v1/customers/{id}",
        "shop.user.v1.UserService.GetUser",
        "users"
    ]));
    assert!(lines.contains(&vec![
        "POST",
        "/v2/users/{id}:deactivate",
        "shop.user.v2.UserService.DeactivateUser",
        "users-v2"
    ]));
    // At least the example's 24 routes: a service added to gateway.yaml
    // adds its own.
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    let routes: usize = last
        .split_once(" routes, config ")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no route count: {stdout}"));
    assert!(
        routes >= 24 && last.ends_with("gateway.yaml is valid"),
        "{stdout}"
    );
}

#[test]
fn bad_config_names_file_and_key_and_exits_non_zero() {
    let dir = std::env::temp_dir().join(format!("protogate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "typo.yaml",
            "descriptors:\n  protos: [a.proto]\nbackends:\n  users:\n    adress: http://127.0.0.1:1\n    services: [a.B]\n",
            "typo.yaml: backends.users: unknown field `adress`",
        ),
        (
            "missing-proto.yaml",
            "descriptors:\n  include: [.]\n  protos: [nope.proto]\nbackends:\n  users:\n    address: http://127.0.0.1:1\n    services: [a.B]\n",
            "cannot compile nope.proto",
        ),
        (
            "unknown-service.yaml",
            &format!(
                "descriptors:\n  include: [{}]\n  protos: [shop/user/v1/user.proto]\nbackends:\n  users:\n    address: http://127.0.0.1:1\n    services: [shop.user.v1.UserServise]\n",
                root().join("protos").display()
            ),
            "backends.users.services: shop.user.v1.UserServise is not in the loaded descriptors",
        ),
    ];
    for (name, text, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let (ok, _, stderr) = protogate(&["check", "--config", path.to_str().unwrap()]);
        assert!(!ok, "{name} should fail");
        assert!(stderr.contains(want), "{name}: {stderr}");
    }
    let (ok, _, stderr) =
        protogate(&["serve", "--config", dir.join("typo.yaml").to_str().unwrap()]);
    assert!(!ok && stderr.contains("unknown field `adress`"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_checks_an_endpoint() {
    let stack = crate::support::start().await;
    let url = stack.url("/healthz");
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || protogate(&["probe", "--url", &url]))
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    let url = stack.url("/nowhere");
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || protogate(&["probe", "--url", &url]))
        .await
        .unwrap();
    assert!(!ok);
    assert!(stderr.contains("answered 404"), "{stderr}");
    let (ok, _, stderr) = tokio::task::spawn_blocking(|| {
        protogate(&[
            "probe",
            "--url",
            "http://127.0.0.1:9/healthz",
            "--timeout",
            "1s",
        ])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(stderr.contains("did not answer"), "{stderr}");
}

#[test]
fn issue_15_a_proto_syntax_error_names_file_line_and_column() {
    let dir = crate::support::TempDir::new("proto-syntax");
    std::fs::write(
        dir.0.join("broken.proto"),
        "syntax = \"proto3\";\npackage a.v1;\nmessage M {\n  string x = 1\n}\nservice S { rpc G(M) returns (M); }\n",
    )
    .unwrap();
    let config = dir.write_config(
        "descriptors:\n  include: [.]\n  protos: [broken.proto]\nbackends:\n  a:\n    address: http://127.0.0.1:1\n    services: [a.v1.S]\n",
    );
    let (ok, _, stderr) = protogate(&["check", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("broken.proto:5:1: expected ';' or '[', but found '}'"),
        "{stderr}"
    );
}

#[tokio::test]
async fn explain_prints_what_the_gateway_would_do() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let (_dir, config) = example_config_file(&backends);
    let config = config.to_str().unwrap().to_owned();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        protogate(&["explain", "--config", &config, "GET", "/v1/users/1"])
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    let explained: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(explained["matched"], true, "{stdout}");
    assert_eq!(
        explained["route"]["rpc"],
        "shop.user.v1.UserService.GetUser"
    );
    assert_eq!(explained["from_path_and_query"]["message"]["id"], "1");

    let config = _dir.0.join("gateway.yaml").to_str().unwrap().to_owned();
    let (ok, stdout, _) = tokio::task::spawn_blocking(move || {
        protogate(&["explain", "--config", &config, "FETCH ME", "/v1/users/1"])
    })
    .await
    .unwrap();
    assert!(!ok, "{stdout}");
}

#[tokio::test]
async fn the_admin_api_listens_apart_and_only_on_loopback_unless_allowed() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let (dir, config) = example_config_file(&backends);
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(&config).unwrap();
    dir.write_config(&format!(
        "{text}\nadmin:\n  listen: 127.0.0.1:{admin_port}\n"
    ));
    let gateway = crate::support::spawn_gateway(&config).await;
    let admin = format!("http://127.0.0.1:{admin_port}");
    crate::support::eventually(20, "the admin API answers", || async {
        crate::support::client()
            .get(format!("{admin}/routes"))
            .send()
            .await
            .is_ok()
    })
    .await;
    let routes = crate::support::client()
        .get(format!("{admin}/routes"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let routes: serde_json::Value = serde_json::from_str(&routes).unwrap();
    assert!(routes["routes"].as_array().unwrap().len() > 10, "{routes}");
    // Not on the API's listener.
    let on_api = crate::support::client()
        .get(format!("{}/routes", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404);
    drop(gateway);

    dir.write_config(&format!("{text}\nadmin:\n  listen: 0.0.0.0:{admin_port}\n"));
    let path = config.to_str().unwrap().to_owned();
    let (ok, _, stderr) =
        tokio::task::spawn_blocking(move || protogate(&["check", "--config", &path]))
            .await
            .unwrap();
    assert!(!ok);
    assert!(stderr.contains("admin.listen: 0.0.0.0:"), "{stderr}");
    assert!(stderr.contains("allow_remote"), "{stderr}");
    dir.write_config(&format!(
        "{text}\nadmin:\n  listen: 0.0.0.0:{admin_port}\n  allow_remote: true\n"
    ));
    let path = config.to_str().unwrap().to_owned();
    let (ok, _, stderr) =
        tokio::task::spawn_blocking(move || protogate(&["check", "--config", &path]))
            .await
            .unwrap();
    assert!(ok, "{stderr}");
}
