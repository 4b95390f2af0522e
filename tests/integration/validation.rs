//! Validation at the edge (tests/fixtures/protos/rules): protovalidate,
//! protoc-gen-validate and field-behaviour rules enforced before the call,
//! every violation listed by its field as the client wrote it, and an
//! invalid request never reaching the backend.

use std::path::Path;

use serde_json::{Value, json};

use crate::probe::{Probe, spawn};
use crate::support::{Reply, Stack, root, serve};

/// A gateway in front of the probe serving `rules.v1.Rules`, then `extra`.
pub async fn start(extra: &str) -> (Stack, Probe) {
    let (backend, probe) = spawn().await;
    let text = format!(
        "descriptors:\n  include: [{}]\n  protos: [rules/v1/rules.proto]\n\
         backends:\n  probe:\n    address: http://{backend}\n    services: [rules.v1.Rules]\n\
         reload:\n  watch: false\n{extra}",
        root().join("tests/fixtures/protos").display()
    );
    let config = protogate::config::parse(&text, Path::new("rules.yaml")).unwrap();
    let (addr, stop) = serve(config).await;
    (Stack::for_gateway(addr, stop), probe)
}

/// A valid `rules.v1.Order`, as JSON.
pub fn order() -> Value {
    json!({
        "text": "ok",
        "name": "widget",
        "code": "ABC",
        "ref": "ord-1",
        "email": "a@example.com",
        "id": "6f1c2a9e-4b3d-4c7e-9a1b-2c3d4e5f6a7b",
        "site": "https://example.com/x",
        "ip": "10.0.0.1",
        "tier": "gold",
        "count": 3,
        "ratio": 0.5,
        "tags": ["a", "b"],
        "items": [{"sku": "s1", "quantity": 1}],
        "color": "COLOR_RED",
        "primary": {"sku": "p", "quantity": 2},
        "total": "10",
        "discount": "1",
        "even": "ab",
        "stock": {"s1": 4},
        "card": "visa"
    })
}

/// The `fieldViolations` of a 400 answer as `(field, description)`.
pub fn violations(reply: &Reply) -> Vec<(String, String)> {
    assert_eq!(reply.status, 400, "{}", reply.json);
    assert_eq!(reply.json["code"], 3, "{}", reply.json);
    let details = reply.json["details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let bad = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .unwrap_or_else(|| panic!("no BadRequest in {}", reply.json));
    bad["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["field"].as_str().unwrap().to_owned(),
                v["description"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn fields(reply: &Reply) -> Vec<String> {
    let mut f: Vec<String> = violations(reply).into_iter().map(|(f, _)| f).collect();
    f.sort();
    f
}

fn calls(probe: &Probe) -> usize {
    probe.received.lock().unwrap().len()
}

#[tokio::test]
async fn a_valid_order_reaches_the_backend() {
    let (gw, probe) = start("").await;
    let reply = gw
        .call_with("POST", "/v1/orders", Some(&order().to_string()), &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    let sent = probe.received.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "/rules.v1.Rules/CreateOrder");
    // Unchanged by validation: the message the transcoder built.
    assert!(sent[0].1.windows(6).any(|w| w == b"widget"));
}

#[tokio::test]
async fn every_broken_protovalidate_rule_is_listed_and_the_backend_is_not_called() {
    let (gw, probe) = start("").await;
    let mut bad = order();
    for (key, value) in [
        ("name", json!("ab")),
        ("code", json!("abc")),
        ("ref", json!("x-1")),
        ("email", json!("not-an-email")),
        ("id", json!("nope")),
        ("site", json!("::")),
        ("ip", json!("10.0.0")),
        ("tier", json!("bronze")),
        ("count", json!(10)),
        ("ratio", json!(0)),
        ("tags", json!(["a", "a"])),
        (
            "items",
            json!([{"sku": "s1", "quantity": 1}, {"sku": "", "quantity": 0}]),
        ),
        ("color", json!(7)),
        ("discount", json!("20")),
        ("even", json!("abc")),
        ("stock", json!({"s1": -1})),
    ] {
        bad[key] = value;
    }
    bad.as_object_mut().unwrap().remove("primary");
    bad.as_object_mut().unwrap().remove("card");
    let reply = gw
        .call_with("POST", "/v1/orders", Some(&bad.to_string()), &[])
        .await;
    let got = fields(&reply);
    let want = [
        "", // the message-level CEL rule names no field
        "code",
        "color",
        "count",
        "email",
        "even",
        "id",
        "ip",
        "items[1].quantity",
        "items[1].sku",
        "name",
        "pay",
        "primary",
        "ratio",
        "ref",
        "site",
        "stock[\"s1\"]",
        "tags",
        "tier",
    ];
    assert_eq!(got, want, "{}", reply.json);
    let all = violations(&reply);
    let said = |field: &str| {
        all.iter()
            .find(|(f, _)| f == field)
            .map(|(_, d)| d.clone())
            .unwrap_or_default()
    };
    assert_eq!(said(""), "discount must be below total");
    assert_eq!(said("even"), "length must be even");
    assert_eq!(said("pay"), "exactly one field is required in oneof");
    assert!(said("email").contains("email"), "{}", said("email"));
    assert!(said("name").contains('3'), "{}", said("name"));
    assert!(
        reply.json["message"]
            .as_str()
            .unwrap()
            .contains("items[1].quantity"),
        "{}",
        reply.json
    );
    assert_eq!(calls(&probe), 0, "the backend saw an invalid request");
}

#[tokio::test]
async fn fields_are_named_as_the_client_wrote_them() {
    let (gw, _probe) = start("").await;
    // Nested fields by their path from the request message.
    let mut bad = order();
    bad["primary"] = json!({"sku": "", "quantity": 1});
    let reply = gw
        .call_with("POST", "/v1/orders", Some(&bad.to_string()), &[])
        .await;
    assert_eq!(fields(&reply), ["primary.sku"]);
    // The path variable: its name in the template.
    let reply = gw.call_with("GET", "/v1/orders/ab", None, &[]).await;
    let got = fields(&reply);
    assert!(got.contains(&"name".to_owned()), "{got:?}");
}

#[tokio::test]
async fn pgv_rules_are_enforced_as_their_protovalidate_twins() {
    let (gw, probe) = start("").await;
    let good = json!({
        "name": "widget", "code": "ABC", "email": "a@example.com", "count": 5,
        "tags": ["t"], "color": "COLOR_GREEN", "primary": {"sku": "p", "quantity": 1},
        "cash": "yes"
    });
    let reply = gw
        .call_with("POST", "/v1/legacy", Some(&good.to_string()), &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    // `nick` is ignored when empty, checked when set.
    let mut nick = good.clone();
    nick["nick"] = json!("x");
    let reply = gw
        .call_with("POST", "/v1/legacy", Some(&nick.to_string()), &[])
        .await;
    assert_eq!(fields(&reply), ["nick"]);
    let bad = json!({"name": "ab", "code": "abc", "email": "x", "count": 0, "color": 9});
    let reply = gw
        .call_with("POST", "/v1/legacy", Some(&bad.to_string()), &[])
        .await;
    assert_eq!(
        fields(&reply),
        [
            "code", "color", "count", "email", "name", "pay", "primary", "tags"
        ],
        "{}",
        reply.json
    );
    assert_eq!(calls(&probe), 1);
}

#[tokio::test]
async fn field_behavior_requires_drops_output_only_and_guards_immutable_fields() {
    let (gw, probe) = start("").await;
    // REQUIRED: the book's title, inside the body field.
    let reply = gw
        .call_with("POST", "/v1/shelves/1/books", Some(r#"{"isbn":"1"}"#), &[])
        .await;
    assert_eq!(fields(&reply), ["book.title"], "{}", reply.json);
    // OUTPUT_ONLY: dropped before the call.
    let reply = gw
        .call_with(
            "POST",
            "/v1/shelves/1/books",
            Some(r#"{"title":"T","create_time":"yesterday"}"#),
            &[],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    let sent = probe.received.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent.0, "/rules.v1.Rules/CreateBook");
    assert!(
        !sent.1.windows(9).any(|w| w == b"yesterday"),
        "the output-only field reached the backend"
    );
    assert!(sent.1.windows(1).any(|w| w == b"T"));
    // An update names only what changes: the title is not required, but the
    // mask may not name the immutable isbn.
    let reply = gw
        .call_with(
            "PATCH",
            "/v1/shelves/1/books/2?update_mask=isbn",
            Some(r#"{"isbn":"2"}"#),
            &[],
        )
        .await;
    let got = violations(&reply);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "update_mask");
    assert!(got[0].1.contains("isbn"), "{got:?}");
    let reply = gw
        .call_with(
            "PATCH",
            "/v1/shelves/1/books/2?updateMask=secret",
            Some(r#"{"secret":"s"}"#),
            &[],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(calls(&probe), 2);
}

#[tokio::test]
async fn output_only_fields_are_refused_under_reject() {
    let (gw, probe) = start("validation:\n  output_only: reject\n").await;
    let reply = gw
        .call_with(
            "POST",
            "/v1/shelves/1/books",
            Some(r#"{"title":"T","createTime":"yesterday"}"#),
            &[],
        )
        .await;
    assert_eq!(fields(&reply), ["book.createTime"]);
    // Named as written: the proto name when the client used it.
    let reply = gw
        .call_with(
            "POST",
            "/v1/shelves/1/books",
            Some(r#"{"title":"T","create_time":"yesterday"}"#),
            &[],
        )
        .await;
    assert_eq!(fields(&reply), ["book.create_time"]);
    assert_eq!(calls(&probe), 0);
}

#[tokio::test]
async fn validation_is_switched_per_method_and_by_rule_family() {
    let (gw, probe) = start(
        "validation:\n  rules: [field_behavior]\n\
         methods:\n  rules.v1.Rules.CreateBook:\n    validation:\n      enabled: false\n",
    )
    .await;
    // protovalidate off: the bad order passes to the backend.
    let mut bad = order();
    bad["name"] = json!("ab");
    let reply = gw
        .call_with("POST", "/v1/orders", Some(&bad.to_string()), &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    // Validation off for CreateBook: a book without a title passes too.
    let reply = gw
        .call_with("POST", "/v1/shelves/1/books", Some("{}"), &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    // PGV off: the legacy rules are not enforced.
    let reply = gw
        .call_with("POST", "/v1/legacy", Some(r#"{"name":"ab"}"#), &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(calls(&probe), 3);
}

#[tokio::test]
async fn a_method_without_rules_is_not_checked() {
    let (gw, probe) = start("").await;
    let reply = gw
        .call_with("POST", "/v1/plain", Some(r#"{"text":"x","count":-5}"#), &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(calls(&probe), 1);
}
