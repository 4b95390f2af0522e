//! Unit tests of the rules' compilation, the PGV rewrite and the names of
//! violated fields.

use prost_reflect::{DynamicMessage, ReflectMessage, Value};

use super::*;
use crate::config::validation::ValidationOptions;
use crate::descriptor::pool_from_source;

const PROTO: &str = r#"
syntax = "proto3";
package t;
import "buf/validate/validate.proto";
import "validate/validate.proto";
import "google/api/field_behavior.proto";
import "google/protobuf/field_mask.proto";

message Item { int32 quantity = 1 [(buf.validate.field).int32.gt = 0]; }
message Legacy {
  string name = 1 [(validate.rules).string = {min_len: 2, ignore_empty: true}];
  repeated string tags = 2 [(validate.rules).repeated = {min_items: 1, items: {string: {max_len: 3}}}];
  Item item = 3 [(validate.rules).message.required = true];
  map<string, string> labels = 4 [(validate.rules).map = {no_sparse: true}];
  oneof pay {
    option (validate.required) = true;
    string card = 5;
  }
}
message Disabled {
  option (validate.disabled) = true;
  string name = 1 [(validate.rules).string.min_len = 2];
}
message Order {
  string display_name = 1 [(buf.validate.field).string.min_len = 2];
  repeated Item items = 2;
  map<string, Item> by_sku = 3;
}
message Book {
  string title = 1 [(google.api.field_behavior) = REQUIRED];
  string isbn = 2 [(google.api.field_behavior) = IMMUTABLE];
  string create_time = 3 [(google.api.field_behavior) = OUTPUT_ONLY];
}
message UpdateBookRequest {
  Book book = 1;
  google.protobuf.FieldMask update_mask = 2;
}
message Plain { string text = 1; }
service S {
  rpc L(Legacy) returns (Plain);
  rpc D(Disabled) returns (Plain);
  rpc O(Order) returns (Plain);
  rpc U(UpdateBookRequest) returns (Plain);
  rpc P(Plain) returns (Plain);
}
"#;

fn method(pool: &DescriptorPool, name: &str) -> MethodDescriptor {
    pool.get_service_by_name("t.S")
        .and_then(|s| s.methods().find(|m| m.name() == name))
        .unwrap()
}

fn rules(options: ValidationOptions) -> (DescriptorPool, Validation) {
    let pool = pool_from_source(PROTO);
    let methods: Vec<_> = pool.get_service_by_name("t.S").unwrap().methods().collect();
    let validation = Validation::build(&pool, methods.iter().map(|m| (m, options))).unwrap();
    (pool, validation)
}

/// The fields `json` (a request of `name`) is refused on, as written.
fn refused(name: &str, json: &str, options: ValidationOptions) -> Vec<String> {
    let (pool, validation) = rules(options);
    let method = method(&pool, name);
    let Some(rules) = validation.method(&method, &options, &[]) else {
        return Vec::new();
    };
    let message = crate::transcode::message_from_json(
        method.input(),
        json.as_bytes(),
        crate::config::UnknownFields::Reject,
    )
    .unwrap();
    let written = Written {
        body: Some((json.as_bytes(), None)),
        ..Default::default()
    };
    match rules.check(&message, &written) {
        Ok(_) => Vec::new(),
        Err(e) => e.violations.into_iter().map(|(f, _)| f).collect(),
    }
}

#[test]
fn pgv_rules_are_enforced_as_their_protovalidate_twins() {
    let all = ValidationOptions::default();
    for (json, want) in [
        (r#"{"tags":["a"],"item":{"quantity":1},"card":"c"}"#, vec![]),
        // ignore_empty: an empty name passes, a short one does not.
        (
            r#"{"name":"x","tags":["a"],"item":{"quantity":1},"card":"c"}"#,
            vec!["name"],
        ),
        // repeated.items, message.required, the oneof's required.
        (r#"{"tags":["abcd"]}"#, vec!["tags[0]", "item", "pay"]),
        // Rules reached through a PGV-checked message: buf.validate's own.
        (
            r#"{"tags":["a"],"item":{"quantity":0},"card":"c"}"#,
            vec!["item.quantity"],
        ),
    ] {
        let mut got = refused("L", json, all);
        got.sort();
        let mut want: Vec<String> = want.into_iter().map(str::to_owned).collect();
        want.sort();
        assert_eq!(got, want, "{json}");
    }
}

#[test]
fn a_message_marked_disabled_keeps_no_pgv_rules() {
    let all = ValidationOptions::default();
    assert!(refused("D", r#"{"name":"x"}"#, all).is_empty());
}

#[test]
fn rules_without_a_protovalidate_twin_are_reported() {
    let (_, validation) = rules(ValidationOptions::default());
    assert_eq!(validation.uncovered, ["t.Legacy.labels: map.no_sparse"]);
}

#[test]
fn rule_families_are_switched_apart() {
    let only = |pgv: bool, protovalidate: bool| ValidationOptions {
        pgv,
        protovalidate,
        ..ValidationOptions::default()
    };
    let json = r#"{"tags":["a"],"item":{"quantity":0},"card":"c","name":"x"}"#;
    let mut both = refused("L", json, only(true, true));
    both.sort();
    assert_eq!(both, ["item.quantity", "name"]);
    // PGV alone: the name's PGV rule, not the item's buf.validate rule.
    assert_eq!(refused("L", json, only(true, false)), ["name"]);
    // protovalidate alone: the item's rule only.
    assert_eq!(refused("L", json, only(false, true)), ["item.quantity"]);
}

#[test]
fn methods_without_rules_get_no_check() {
    let (pool, validation) = rules(ValidationOptions::default());
    let all = ValidationOptions::default();
    assert!(validation.method(&method(&pool, "P"), &all, &[]).is_none());
    assert!(validation.method(&method(&pool, "O"), &all, &[]).is_some());
    let off = ValidationOptions {
        enabled: false,
        ..all
    };
    assert!(validation.method(&method(&pool, "O"), &off, &[]).is_none());
}

#[test]
fn violated_fields_are_named_as_the_client_wrote_them() {
    let all = ValidationOptions::default();
    for (json, want) in [
        (r#"{"displayName":"x"}"#, "displayName"),
        (r#"{"display_name":"x"}"#, "display_name"),
        (
            r#"{"displayName":"ok","items":[{"quantity":1},{"quantity":0}]}"#,
            "items[1].quantity",
        ),
        (
            r#"{"displayName":"ok","bySku":{"a-1":{"quantity":0}}}"#,
            r#"bySku["a-1"].quantity"#,
        ),
        (
            r#"{"displayName":"ok","by_sku":{"a-1":{"quantity":0}}}"#,
            r#"by_sku["a-1"].quantity"#,
        ),
    ] {
        assert_eq!(refused("O", json, all), [want], "{json}");
    }
}

#[test]
fn names_follow_the_path_template_the_query_and_protobuf_clients() {
    let pool = pool_from_source(PROTO);
    let order = pool.get_message_by_name("t.Order").unwrap();
    let field = order.get_field_by_name("display_name").unwrap();
    let path = [Element::field(&field)];
    assert_eq!(Written::default().name(&path), "displayName");
    let query = Written {
        query: Some("a=1&display_name=x"),
        ..Default::default()
    };
    assert_eq!(query.name(&path), "display_name");
    let proto = Written {
        proto_names: true,
        ..Default::default()
    };
    assert_eq!(proto.name(&path), "display_name");
    // A body field: the path below it is looked up in the body.
    let item = pool.get_message_by_name("t.Item").unwrap();
    let items = order.get_field_by_name("items").unwrap();
    let nested = [
        Element::index(&items, 0),
        Element::field(&item.get_field_by_name("quantity").unwrap()),
    ];
    assert_eq!(Written::default().name(&nested), "items[0].quantity");
}

#[test]
fn field_behavior_clears_output_only_and_checks_the_mask() {
    let all = ValidationOptions::default();
    let (pool, validation) = rules(all);
    let rules = validation.method(&method(&pool, "U"), &all, &[]).unwrap();
    let input = method(&pool, "U").input();
    let build = |json: &str| {
        crate::transcode::message_from_json(
            input.clone(),
            json.as_bytes(),
            crate::config::UnknownFields::Reject,
        )
        .unwrap()
    };
    // An update's resource needs no REQUIRED title; an output-only field is cleared.
    let sent = build(r#"{"book":{"createTime":"t"},"updateMask":"isbn2"}"#);
    let cleared = rules.check(&sent, &Written::default()).unwrap().unwrap();
    let decoded = DynamicMessage::decode(input.clone(), cleared.as_slice()).unwrap();
    let book = decoded.get_field_by_name("book").unwrap();
    assert_eq!(
        book.as_message().unwrap().get_field_by_name("create_time"),
        Some(std::borrow::Cow::Owned(Value::String(String::new())))
    );
    assert_eq!(decoded.descriptor().full_name(), "t.UpdateBookRequest");
    // The mask may not name an immutable field.
    let sent = build(r#"{"book":{},"updateMask":"title,isbn"}"#);
    let refused = rules.check(&sent, &Written::default()).unwrap_err();
    assert_eq!(refused.violations.len(), 1, "{refused:?}");
    assert_eq!(refused.violations[0].0, "updateMask");
}

#[test]
fn a_message_that_does_not_decode_is_refused() {
    let all = ValidationOptions::default();
    let (pool, validation) = rules(all);
    let rules = validation.method(&method(&pool, "O"), &all, &[]).unwrap();
    let err = rules.check(&[0xff, 0xff], &Written::default()).unwrap_err();
    assert!(
        err.violations[0].1.contains("not a valid message"),
        "{err:?}"
    );
}

#[test]
fn format_rules_have_words() {
    for (rule, want) in [
        ("string.email", "value must be an email address"),
        (
            "string.email_empty",
            "value is empty, which is not an email address",
        ),
        ("string.uuid", "value must be a UUID"),
        ("required", "exactly one field is required in oneof"),
        ("custom.thing", "value violates rule custom.thing"),
    ] {
        assert_eq!(format_message(rule), want, "{rule}");
    }
}
