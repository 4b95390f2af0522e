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
    assert!(reply.status.is_success(), "{}", reply.json);
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
    assert!(reply.status.is_success(), "{}", reply.json);
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
    assert!(reply.status.is_success(), "{}", reply.json);
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
    assert!(reply.status.is_success(), "{}", reply.json);
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
    assert!(reply.status.is_success(), "{}", reply.json);
    // Validation off for CreateBook: a book without a title passes too.
    let reply = gw
        .call_with("POST", "/v1/shelves/1/books", Some("{}"), &[])
        .await;
    assert!(reply.status.is_success(), "{}", reply.json);
    // PGV off: the legacy rules are not enforced.
    let reply = gw
        .call_with("POST", "/v1/legacy", Some(r#"{"name":"ab"}"#), &[])
        .await;
    assert!(reply.status.is_success(), "{}", reply.json);
    assert_eq!(calls(&probe), 3);
}

#[tokio::test]
async fn a_method_without_rules_is_not_checked() {
    let (gw, probe) = start("").await;
    let reply = gw
        .call_with("POST", "/v1/plain", Some(r#"{"text":"x","count":-5}"#), &[])
        .await;
    assert!(reply.status.is_success(), "{}", reply.json);
    assert_eq!(calls(&probe), 1);
}

/// The served document's schema of `message`, as a validator: the whole
/// document is the root resource, so its `$ref`s resolve.
fn openapi_validator(document: &Value, message: &str) -> jsonschema::Validator {
    let mut root = document.clone();
    root["$ref"] = json!(format!("#/components/schemas/{message}"));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{message}: {e}"))
}

/// One rule kind: a request of `message` at `path`, the JSON field to
/// change, a value the rule refuses and one it accepts.
struct Case {
    kind: &'static str,
    path: &'static str,
    message: &'static str,
    field: &'static str,
    bad: Value,
    good: Value,
}

fn legacy() -> Value {
    json!({
        "name": "widget", "code": "ABC", "email": "a@example.com", "count": 5,
        "tags": ["t"], "color": "COLOR_GREEN", "primary": {"sku": "p", "quantity": 1},
        "cash": "yes"
    })
}

/// `base` with `field` set to `value` (`null`: removed).
fn with(base: &Value, field: &str, value: &Value) -> Value {
    let mut out = base.clone();
    match value {
        Value::Null => {
            out.as_object_mut().unwrap().remove(field);
        }
        v => out[field] = v.clone(),
    }
    out
}

#[tokio::test]
async fn what_openapi_calls_invalid_the_gateway_refuses_and_what_it_calls_valid_passes() {
    let (gw, probe) = start("").await;
    let document = gw.call_with("GET", "/openapi.json", None, &[]).await.json;
    let order_msg = "rules.v1.Order";
    let legacy_msg = "rules.v1.Legacy";
    let cases = [
        ("string.min_len", "name", json!("ab"), json!("abc")),
        (
            "string.max_len",
            "name",
            json!("abcdefghijk"),
            json!("abcdefghij"),
        ),
        ("string.pattern", "code", json!("AB1"), json!("XYZ")),
        ("string.prefix", "ref", json!("or-1"), json!("ord-2")),
        (
            "string.email",
            "email",
            json!("a.example.com"),
            json!("b@example.org"),
        ),
        (
            "string.uuid",
            "id",
            json!("6f1c2a9e-4b3d-4c7e-9a1b"),
            json!("00000000-0000-4000-8000-000000000000"),
        ),
        (
            "string.uri",
            "site",
            json!("no scheme"),
            json!("urn:isbn:0451450523"),
        ),
        (
            "string.ipv4",
            "ip",
            json!("256.1.1.1"),
            json!("192.168.0.1"),
        ),
        ("string.in", "tier", json!("bronze"), json!("silver")),
        ("int32.gte", "count", json!(0), json!(1)),
        ("int32.lt", "count", json!(10), json!(9)),
        ("double.gt", "ratio", json!(0.0), json!(0.01)),
        ("double.lte", "ratio", json!(1.5), json!(1.0)),
        (
            "repeated.max_items",
            "tags",
            json!(["a", "b", "c", "d"]),
            json!(["a", "b", "c"]),
        ),
        (
            "repeated.unique",
            "tags",
            json!(["a", "a"]),
            json!(["a", "b"]),
        ),
        (
            "repeated.min_items",
            "items",
            json!([]),
            json!([{"sku": "x", "quantity": 1}]),
        ),
        (
            "repeated.items (nested)",
            "items",
            json!([{"sku": "x", "quantity": 101}]),
            json!([{"sku": "x", "quantity": 100}]),
        ),
        ("enum.defined_only", "color", json!(7), json!("COLOR_GREEN")),
        (
            "required",
            "primary",
            Value::Null,
            json!({"sku": "y", "quantity": 5}),
        ),
        ("map.values", "stock", json!({"a": -1}), json!({"a": 0})),
    ]
    .into_iter()
    .map(|(kind, field, bad, good)| Case {
        kind,
        path: "/v1/orders",
        message: order_msg,
        field,
        bad,
        good,
    })
    .chain(
        [
            ("pgv string.min_len", "name", json!("ab"), json!("abc")),
            ("pgv string.pattern", "code", json!("abc"), json!("QQQ")),
            (
                "pgv string.email",
                "email",
                json!("nope"),
                json!("c@example.com"),
            ),
            ("pgv uint32.lte", "count", json!(10), json!(9)),
            ("pgv uint32.gte", "count", json!(0), json!(1)),
            ("pgv repeated.min_items", "tags", json!([]), json!(["x"])),
            (
                "pgv enum.defined_only",
                "color",
                json!(5),
                json!("COLOR_RED"),
            ),
            (
                "pgv message.required",
                "primary",
                Value::Null,
                json!({"sku": "q", "quantity": 1}),
            ),
            ("pgv ignore_empty", "nick", json!("x"), json!("")),
        ]
        .into_iter()
        .map(|(kind, field, bad, good)| Case {
            kind,
            path: "/v1/legacy",
            message: legacy_msg,
            field,
            bad,
            good,
        }),
    )
    .collect::<Vec<_>>();
    let validators = [
        (order_msg, openapi_validator(&document, order_msg)),
        (legacy_msg, openapi_validator(&document, legacy_msg)),
    ];
    let schema = |message: &str| &validators.iter().find(|(m, _)| *m == message).unwrap().1;
    for case in &cases {
        let base = if case.message == order_msg {
            order()
        } else {
            legacy()
        };
        assert!(
            schema(case.message).is_valid(&base),
            "{}: the base request",
            case.kind
        );
        for (value, valid) in [(&case.bad, false), (&case.good, true)] {
            let request = with(&base, case.field, value);
            // OpenAPI's verdict, by the served schema.
            assert_eq!(
                schema(case.message).is_valid(&request),
                valid,
                "{}: OpenAPI on {}={value}",
                case.kind,
                case.field
            );
            // The gateway's verdict agrees.
            let before = calls(&probe);
            let reply = gw
                .call_with("POST", case.path, Some(&request.to_string()), &[])
                .await;
            if valid {
                assert!(reply.status.is_success(), "{}: {}", case.kind, reply.json);
                assert_eq!(calls(&probe), before + 1, "{}", case.kind);
            } else {
                let fields = fields(&reply);
                assert!(
                    fields.iter().any(|f| f.starts_with(case.field)),
                    "{}: {fields:?}",
                    case.kind
                );
                assert_eq!(
                    calls(&probe),
                    before,
                    "{}: the backend was called",
                    case.kind
                );
            }
        }
    }
    // field_behavior: REQUIRED missing or empty, OUTPUT_ONLY and INPUT_ONLY documented.
    let book = "rules.v1.Book";
    let book_schema = openapi_validator(&document, book);
    for (body, valid) in [
        (json!({"title": "T"}), true),
        (json!({"title": ""}), false),
        (json!({"isbn": "1"}), false),
    ] {
        assert_eq!(book_schema.is_valid(&body), valid, "OpenAPI on {body}");
        let reply = gw
            .call_with("POST", "/v1/shelves/1/books", Some(&body.to_string()), &[])
            .await;
        assert_eq!(
            reply.status.is_success(),
            valid,
            "gateway on {body}: {} {}",
            reply.status,
            reply.json
        );
    }
    let props = &document["components"]["schemas"][book]["properties"];
    assert_eq!(props["createTime"]["readOnly"], true);
    assert_eq!(props["secret"]["writeOnly"], true);
}

/// `rules.v1.Book`, for clients that speak protobuf.
#[derive(Clone, PartialEq, prost::Message)]
struct Book {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    title: String,
    #[prost(string, tag = "3")]
    isbn: String,
    #[prost(string, tag = "4")]
    create_time: String,
}

/// `rules.v1.CreateBookRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct CreateBookRequest {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(string, tag = "2")]
    parent: String,
    #[prost(message, optional, tag = "3")]
    book: Option<Book>,
}

/// `rules.v1.Reply`.
#[derive(Clone, PartialEq, prost::Message)]
struct RulesReply {
    #[prost(string, tag = "1")]
    text: String,
}

/// `google.rpc.BadRequest` and its violations, to read error details.
#[derive(Clone, PartialEq, prost::Message)]
struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    field_violations: Vec<FieldViolation>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FieldViolation {
    #[prost(string, tag = "1")]
    field: String,
    #[prost(string, tag = "2")]
    description: String,
}

/// The violated fields of an encoded `google.rpc.Status`.
fn detail_fields(status: &[u8]) -> Vec<String> {
    use prost::Message;
    let status = protogate::transcode::status::RpcStatus::decode(status).unwrap();
    let any = status
        .details
        .iter()
        .find(|d| d.type_url.ends_with("google.rpc.BadRequest"))
        .expect("a BadRequest detail");
    BadRequest::decode(any.value.as_slice())
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

fn book_request(title: &str) -> CreateBookRequest {
    CreateBookRequest {
        text: "t".into(),
        parent: "shelves/1".into(),
        book: Some(Book {
            title: title.into(),
            create_time: "yesterday".into(),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn native_grpc_calls_are_validated_with_details_in_the_status() {
    let (gw, probe) = start("").await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", gw.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let path: http::uri::PathAndQuery = "/rules.v1.Rules/CreateBook".parse().unwrap();
    grpc.ready().await.unwrap();
    let error = grpc
        .unary::<_, RulesReply, _>(
            tonic::Request::new(book_request("")),
            path.clone(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    // A protobuf client named the field by its proto name.
    assert_eq!(detail_fields(error.details()), ["book.title"]);
    assert_eq!(calls(&probe), 0);
    grpc.ready().await.unwrap();
    grpc.unary::<_, RulesReply, _>(
        tonic::Request::new(book_request("T")),
        path,
        tonic_prost::ProstCodec::default(),
    )
    .await
    .unwrap();
    let sent = probe.received.lock().unwrap().last().cloned().unwrap();
    let sent = <CreateBookRequest as prost::Message>::decode(sent.1.as_slice()).unwrap();
    let book = sent.book.unwrap();
    assert_eq!(book.title, "T");
    assert_eq!(
        book.create_time, "",
        "the output-only field reached the backend"
    );
}

/// One gRPC-Web message frame of `message`, gzip-compressed.
fn gzip_frame(message: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(message).unwrap();
    let packed = gz.finish().unwrap();
    let mut frame = vec![1];
    frame.extend_from_slice(&(packed.len() as u32).to_be_bytes());
    frame.extend_from_slice(&packed);
    frame
}

#[tokio::test]
async fn compressed_grpc_web_messages_are_opened_and_validated() {
    let (gw, probe) = start("").await;
    let url = format!("http://{}/rules.v1.Rules/CreateBook", gw.addr());
    let send = |message: CreateBookRequest| {
        gw.client()
            .post(&url)
            .header("content-type", "application/grpc-web+proto")
            .header("grpc-encoding", "gzip")
            .body(gzip_frame(&prost::Message::encode_to_vec(&message)))
            .send()
    };
    let reply = send(book_request("")).await.unwrap();
    let status = reply
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(status.as_deref(), Some("3"), "{:?}", reply.headers());
    assert_eq!(calls(&probe), 0);
    let reply = send(book_request("T")).await.unwrap();
    assert_eq!(reply.status(), 200);
    let body = reply.bytes().await.unwrap();
    assert!(body.windows(14).any(|w| w == b"grpc-status: 0"), "{body:?}");
    let sent = probe.received.lock().unwrap().last().cloned().unwrap();
    let sent = <CreateBookRequest as prost::Message>::decode(sent.1.as_slice()).unwrap();
    assert_eq!(sent.book.unwrap().create_time, "");
    // A coding the gateway cannot open is refused, not passed unchecked.
    let reply = gw
        .client()
        .post(&url)
        .header("content-type", "application/grpc-web+proto")
        .header("grpc-encoding", "snappy")
        .body(gzip_frame(b"\x12\x01x"))
        .send()
        .await
        .unwrap();
    let status = reply.headers().get("grpc-status").cloned();
    assert_eq!(status.unwrap(), "3");
    assert_eq!(calls(&probe), 1);
}

#[tokio::test]
async fn connect_and_mcp_calls_are_validated() {
    let (gw, probe) = start("mcp:\n  enabled: true\n  tools: [rules.v1.Rules.CreateBook]\n").await;
    let reply = gw
        .call_with(
            "POST",
            "/rules.v1.Rules/CreateBook",
            Some(r#"{"parent":"shelves/1","book":{"isbn":"1"}}"#),
            &[("connect-protocol-version", "1")],
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.json);
    assert_eq!(reply.json["code"], "invalid_argument", "{}", reply.json);
    let detail = &reply.json["details"][0];
    assert_eq!(detail["type"], "google.rpc.BadRequest", "{}", reply.json);
    use base64::Engine;
    let value = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(detail["value"].as_str().unwrap())
        .unwrap();
    let bad = <BadRequest as prost::Message>::decode(value.as_slice()).unwrap();
    assert_eq!(bad.field_violations[0].field, "book.title");
    assert!(!bad.field_violations[0].description.is_empty());
    assert_eq!(calls(&probe), 0);

    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "rules_v1_Rules_CreateBook", "arguments": {"parent": "shelves/1", "book": {}}}
    });
    let reply = gw
        .call_with(
            "POST",
            "/mcp",
            Some(&call.to_string()),
            &[("accept", "application/json, text/event-stream")],
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.json);
    let result = &reply.json["result"];
    assert_eq!(result["isError"], true, "{}", reply.json);
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("book.title"), "{text}");
    assert_eq!(calls(&probe), 0);
}

/// Each message of a client stream is checked as it comes, on every
/// surface that carries one: REST NDJSON lines and native gRPC frames.
#[tokio::test]
async fn client_stream_messages_are_validated_one_by_one() {
    use shop::pb::shop::inventory::v1::ReserveStockRequest;
    use shop::pb::shop::inventory::v1::inventory_service_client::InventoryServiceClient;
    let stack = crate::support::start().await;
    let key = crate::support::API_KEY;
    // NDJSON: the second line has no quantity, which is REQUIRED.
    let reply = stack
        .client()
        .post(format!("http://{}/v1/inventory:bulkReserve", stack.addr()))
        .header("x-api-key", key)
        .header("content-type", "application/x-ndjson")
        .body("{\"sku\":\"sku-espresso\",\"quantity\":1}\n{\"sku\":\"sku-grinder\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let body: Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("line 2: invalid shop.inventory.v1.ReserveStockRequest: quantity"),
        "{message}"
    );
    // Native gRPC: the same, with the violation in the status details.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", stack.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut inventory = InventoryServiceClient::new(channel);
    let reserve = |quantity| ReserveStockRequest {
        sku: "sku-espresso".into(),
        quantity,
        ..Default::default()
    };
    let mut request = tonic::Request::new(tokio_stream::iter([reserve(1), reserve(0)]));
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    let error = inventory.bulk_reserve(request).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    // The gateway's refusal, not the backend's ("message 2: ...").
    assert!(
        error
            .message()
            .starts_with("invalid shop.inventory.v1.ReserveStockRequest"),
        "{error:?}"
    );
    assert_eq!(detail_fields(error.details()), ["quantity"]);
    // Valid streams pass on both.
    let mut request = tonic::Request::new(tokio_stream::iter([reserve(1), reserve(2)]));
    request
        .metadata_mut()
        .insert("x-api-key", key.parse().unwrap());
    let bulk = inventory.bulk_reserve(request).await.unwrap().into_inner();
    assert_eq!(bulk.count, 2);
}
