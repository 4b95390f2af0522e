//! REST semantics from the schema: success statuses and `Location` by
//! convention (AIP-133), PATCH masks filled from the body (AIP-134),
//! conditional requests on etags (AIP-154), and their switches.

use std::collections::HashMap;

use protogate::config::MethodOverrides;

use crate::support::{start_in_process_with, start_with};

/// The `methods:` of a config whose `methods:` section is `yaml`.
fn methods(yaml: &str) -> HashMap<String, MethodOverrides> {
    let text = format!(
        "descriptors:\n  protos: [a.proto]\nbackends:\n  b:\n    address: http://127.0.0.1:1\n    services: [a.B]\n{yaml}"
    );
    protogate::config::parse(&text, std::path::Path::new("x.yaml"))
        .unwrap()
        .methods
}

#[tokio::test]
async fn creates_answer_201_with_the_location_of_what_they_made() {
    let stack = start_with(|_| {}).await.with_credentials();
    let user = stack
        .call(
            "POST",
            "/v1/users",
            Some(r#"{"email": "mary@example.com", "displayName": "Mary Jackson"}"#),
        )
        .await;
    assert_eq!(user.status, 201, "{}", user.json);
    let location = user.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!("/v1/users/{}", user.json["id"].as_str().unwrap())
    );
    assert_eq!(stack.get(&location).await.json["email"], "mary@example.com");
    // A child resource: the name through the service's GET template.
    let order = stack
        .call(
            "POST",
            "/v1/users/1/orders",
            Some(r#"{"items": [{"sku": "sku-espresso", "quantity": 1, "unitPrice": {"currencyCode": "USD", "units": "3"}}]}"#),
        )
        .await;
    assert_eq!(order.status, 201, "{}", order.json);
    let name = order.json["name"].as_str().unwrap();
    assert_eq!(order.headers["location"], format!("/v1/{name}").as_str());
    // Not a create: 200, no Location.
    let cancelled = stack
        .call("POST", &format!("/v1/{name}:cancel"), Some("{}"))
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.json);
    assert!(cancelled.headers.get("location").is_none());
}

#[tokio::test]
async fn statuses_follow_config_over_conventions() {
    let stack = start_in_process_with(|c| {
        let text = "methods:\n  shop.user.v1.UserService.CreateUser:\n    status: 200\n  shop.user.v1.UserService.DeleteUser:\n    status: 202\n";
        c.methods = methods(text);
    })
    .await
    .with_credentials();
    let user = stack
        .call(
            "POST",
            "/v1/users",
            Some(r#"{"email": "d@example.com", "displayName": "D"}"#),
        )
        .await;
    assert_eq!(user.status, 200);
    assert!(user.headers.get("location").is_none());
    let deleted = stack.call("DELETE", "/v1/users/3", None).await;
    assert_eq!(deleted.status, 202);
    // Off: every success is 200.
    let plain = start_in_process_with(|c| c.transcode.conventional_status = false)
        .await
        .with_credentials();
    let user = plain
        .call(
            "POST",
            "/v1/users",
            Some(r#"{"email": "e@example.com", "displayName": "E"}"#),
        )
        .await;
    assert_eq!(user.status, 200);
}

#[tokio::test]
async fn long_running_operations_are_accepted() {
    let (gw, _probe) = crate::validation::start("").await;
    let reply = gw
        .call_with(
            "POST",
            "/v1/exports",
            Some(r#"{"text": "operations/1"}"#),
            &[],
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.json);
    assert_eq!(reply.json["name"], "operations/1");
}

#[tokio::test]
async fn a_patch_without_a_mask_updates_what_its_body_names() {
    let stack = start_in_process_with(|_| {}).await.with_credentials();
    let before = stack.get("/v1/users/2").await.json;
    let reply = stack
        .call(
            "PATCH",
            "/v1/users/2",
            Some(r#"{"displayName": "Renamed"}"#),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.json["displayName"], "Renamed");
    // Only the named field changed.
    assert_eq!(reply.json["email"], before["email"]);
    assert_eq!(reply.json["role"], before["role"]);
    // Switched off for the method: the mask is the client's to send, and it is REQUIRED.
    let strict = start_in_process_with(|c| {
        let text =
            "methods:\n  shop.user.v1.UserService.UpdateUser:\n    patch_update_mask: false\n";
        c.methods = methods(text);
    })
    .await
    .with_credentials();
    let reply = strict
        .call(
            "PATCH",
            "/v1/users/2",
            Some(r#"{"displayName": "Renamed"}"#),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.json);
    assert_eq!(
        reply.json["details"][0]["fieldViolations"][0]["field"],
        "updateMask"
    );
}

#[tokio::test]
async fn etags_make_reads_conditional_and_writes_safe() {
    let stack = start_in_process_with(|c| {
        let text = "methods:\n  shop.inventory.v1.InventoryService.GetStock:\n    cache_control: max-age=60\n";
        c.methods = methods(text);
    })
    .await;
    let key = [("x-api-key", "dev-inventory-key")];
    let stock = stack
        .call_with("GET", "/v1/inventory/sku-espresso", None, &key)
        .await;
    assert_eq!(stock.status, 200);
    assert_eq!(stock.headers["etag"], "\"120-0\"");
    assert_eq!(stock.headers["cache-control"], "max-age=60");
    assert_eq!(stock.json["etag"], "120-0");
    // The client has it: 304, no body.
    let fresh = stack
        .call_with(
            "GET",
            "/v1/inventory/sku-espresso",
            None,
            &[key[0], ("if-none-match", "\"120-0\"")],
        )
        .await;
    assert_eq!(fresh.status, 304);
    assert_eq!(fresh.json, serde_json::Value::Null);
    assert_eq!(fresh.headers["etag"], "\"120-0\"");
    // A stale one: the whole answer.
    let stale = stack
        .call_with(
            "GET",
            "/v1/inventory/sku-espresso",
            None,
            &[key[0], ("if-none-match", "\"1-1\"")],
        )
        .await;
    assert_eq!(stale.status, 200);
    // A write under If-Match: done while the stock is as seen...
    let if_match = [key[0], ("if-match", "\"120-0\"")];
    let reserve = || {
        stack.call_with(
            "POST",
            "/v1/inventory/sku-espresso:reserve",
            Some(r#"{"quantity": 2}"#),
            &if_match,
        )
    };
    let done = reserve().await;
    assert_eq!(done.status, 200, "{}", done.json);
    // ...refused with 412 once it changed.
    let refused = reserve().await;
    assert_eq!(refused.status, 412, "{}", refused.json);
    assert_eq!(refused.json["code"], 9);
    // Without If-Match the same backend status stays a 400.
    let short = stack
        .call_with(
            "POST",
            "/v1/inventory/sku-grinder:reserve",
            Some(r#"{"quantity": 9}"#),
            &key,
        )
        .await;
    assert_eq!(short.status, 400, "{}", short.json);
}
