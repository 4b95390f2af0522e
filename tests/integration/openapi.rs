//! The OpenAPI document of the example API: golden file, serving, CLI, docs UI.

use std::process::Command;

use serde_json::Value;

use crate::support::{example_config_file, root, start_in_process};

const GOLDEN: &str = "tests/golden/shop.openapi.json";

#[tokio::test]
async fn served_document_matches_the_golden_file() {
    let stack = start_in_process().await;
    let (status, headers, text) = stack.get_text("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let path = root().join(GOLDEN);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, format!("{text}\n")).unwrap();
    }
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file exists")).unwrap();
    let served: Value = serde_json::from_str(&text).unwrap();
    assert!(
        golden == served,
        "{GOLDEN} is stale; rerun with UPDATE_GOLDEN=1 and review the diff"
    );
}

#[tokio::test]
async fn yaml_document_is_the_same_document() {
    let stack = start_in_process().await;
    let json = stack.get("/openapi.json").await.json;
    let (_, headers, text) = stack.get_text("/openapi.yaml").await;
    assert_eq!(headers["content-type"], "application/yaml");
    let yaml: Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(json, yaml);
}

#[tokio::test]
async fn docs_ui_is_served_offline() {
    let stack = start_in_process().await;
    let (status, _, html) = stack.get_text("/docs/").await;
    assert_eq!(status, 200);
    assert!(html.contains("swagger-ui"), "{html}");
    // Assets come from the gateway itself, not a CDN.
    assert!(!html.contains("https://"), "{html}");
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
    ] {
        let (status, _, body) = stack.get_text(asset).await;
        assert_eq!(status, 200, "{asset}");
        assert!(body.len() > 100, "{asset}");
        if asset.ends_with("initializer.js") {
            assert!(body.contains("/openapi.json"), "{body}");
        }
    }
}

#[tokio::test]
async fn docs_can_be_turned_off() {
    let stack = crate::support::start_in_process_with(|c| c.openapi.enabled = false).await;
    assert_eq!(stack.get("/openapi.json").await.status, 404);
}

#[tokio::test]
async fn multi_segment_parameters_work_with_encoded_slashes() {
    // What Swagger UI sends for name = "users/1/orders/1001".
    let stack = start_in_process().await;
    let reply = stack.get("/v1/users%2F1%2Forders%2F1001").await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_eq!(reply.json["name"], "users/1/orders/1001");
    let strict =
        crate::support::start_in_process_with(|c| c.transcode.match_encoded_slashes = false).await;
    assert_eq!(
        strict.get("/v1/users%2F1%2Forders%2F1001").await.status,
        404
    );
    let (status, _) = stack.raw_get("/v1/users%2F..%2Fx").await;
    assert_eq!(status, 400);
}

// Multi-threaded: the backends answer the child process's reflection calls
// while this thread waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_prints_the_same_document() {
    let backends = shop::spawn_ephemeral().await.unwrap();
    let (_dir, config) = example_config_file(&backends);
    let run = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_protogate"))
            .arg("openapi")
            .arg("--config")
            .arg(&config)
            .args(["--format", format])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: Value = serde_json::from_str(&run("json")).unwrap();
    let yaml: Value = serde_norway::from_str(&run("yaml")).unwrap();
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(GOLDEN)).unwrap()).unwrap();
    assert_eq!(json, golden);
    assert_eq!(yaml, golden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_version_documents_are_served() {
    let stack = start_in_process().await;
    let all = stack.get("/openapi.json").await.json;
    let paths = |doc: &Value| -> Vec<String> {
        doc["paths"].as_object().unwrap().keys().cloned().collect()
    };
    let v1 = stack.get("/openapi/v1.json").await;
    let v2 = stack.get("/openapi/v2.json").await;
    assert_eq!((v1.status.as_u16(), v2.status.as_u16()), (200, 200));
    assert!(
        paths(&v1.json).iter().all(|p| p.starts_with("/v1/")),
        "{:?}",
        paths(&v1.json)
    );
    assert!(
        paths(&v2.json).iter().all(|p| p.starts_with("/v2/")),
        "{:?}",
        paths(&v2.json)
    );
    assert_eq!(
        paths(&v1.json).len() + paths(&v2.json).len(),
        paths(&all).len()
    );
    // Within one version a service's short name is unique again.
    assert_eq!(v2.json["tags"][0]["name"], "UserService");
    assert_eq!(
        all["paths"]["/v2/users/{id}"]["get"]["operationId"],
        "UserService_v2_GetUser"
    );
    let (_, _, yaml) = stack.get_text("/openapi/v2.yaml").await;
    assert_eq!(serde_norway::from_str::<Value>(&yaml).unwrap(), v2.json);
    for missing in ["/openapi/v9.json", "/openapi/v1.xml", "/openapi/v1"] {
        let reply = stack.get(missing).await;
        assert_eq!(
            (reply.status.as_u16(), &reply.json["code"]),
            (404, &Value::from(5)),
            "{missing}"
        );
    }
    let backends = shop::spawn_ephemeral().await.unwrap();
    let (_dir, config) = example_config_file(&backends);
    let out = Command::new(env!("CARGO_BIN_EXE_protogate"))
        .arg("openapi")
        .arg("--config")
        .arg(&config)
        .args(["--api-version", "v9"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no API version \"v9\"; served versions: v1, v2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
