use super::*;
use crate::config;
use crate::descriptor::pool_from_source;

/// The schema before every case.
const BEFORE: &str = r#"
syntax = "proto3";
package t.v1;
import "google/api/annotations.proto";
service Shop {
  rpc GetItem(GetItemRequest) returns (Item) {
    option (google.api.http) = { get: "/v1/items/{id}" };
  }
  rpc CreateItem(CreateItemRequest) returns (Item) {
    option (google.api.http) = { post: "/v1/items" body: "item" };
  }
}
message GetItemRequest { string id = 1; }
message CreateItemRequest { Item item = 1; }
message Item {
  string id = 1;
  int32 quantity = 2;
  Status status = 3;
  repeated string tags = 4;
  map<string, string> labels = 5;
  oneof price { int64 cents = 6; string text = 7; }
  Detail detail = 8;
}
message Detail { string note = 1; }
enum Status { STATUS_UNSPECIFIED = 0; STATUS_ACTIVE = 1; STATUS_GONE = 2; }
"#;

fn surface(source: &str) -> Surface {
    let pool = pool_from_source(source);
    let config = config::for_test("t.v1.*", "");
    Surface::of(&RouteTable::build(&pool, &config).unwrap())
}

/// (case, edit applied to BEFORE, expected changes as "severity rule subject").
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const CASES: &[Case] = &[
    ("nothing changed", &[], &[]),
    (
        "field added",
        &[("Detail detail = 8;", "Detail detail = 8; string color = 9;")],
        &["compatible FIELD_ADDED t.v1.Item.color"],
    ),
    (
        "field removed",
        &[("  Detail detail = 8;\n", "")],
        &["breaking FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED t.v1.Item.detail"],
    ),
    (
        "field removed, number reserved",
        &[("  Detail detail = 8;\n", "  reserved 8;\n")],
        &["breaking FIELD_NO_DELETE_UNLESS_NAME_RESERVED t.v1.Item.detail"],
    ),
    (
        "field removed, number and name reserved",
        &[(
            "  Detail detail = 8;\n",
            "  reserved 8; reserved \"detail\";\n",
        )],
        &["compatible FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED t.v1.Item.detail"],
    ),
    (
        "field renamed",
        &[("int32 quantity = 2;", "int32 count = 2;")],
        &["breaking FIELD_SAME_NAME t.v1.Item.quantity"],
    ),
    (
        "JSON name changed",
        &[(
            "int32 quantity = 2;",
            "int32 quantity = 2 [json_name = \"qty\"];",
        )],
        &["breaking FIELD_SAME_JSON_NAME t.v1.Item.quantity"],
    ),
    (
        "type in another group",
        &[("int32 quantity = 2;", "int64 quantity = 2;")],
        &["breaking FIELD_WIRE_JSON_COMPATIBLE_TYPE t.v1.Item.quantity"],
    ),
    (
        "type in the same group",
        &[("int32 quantity = 2;", "uint32 quantity = 2;")],
        &["compatible FIELD_WIRE_JSON_COMPATIBLE_TYPE t.v1.Item.quantity"],
    ),
    (
        "message type replaced",
        &[
            ("Detail detail = 8;", "Other detail = 8;"),
            (
                "message Detail",
                "message Other { string note = 1; }\nmessage Detail",
            ),
        ],
        &["breaking FIELD_WIRE_JSON_COMPATIBLE_TYPE t.v1.Item.detail"],
    ),
    (
        "singular to repeated",
        &[("int32 quantity = 2;", "repeated int32 quantity = 2;")],
        &["breaking FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY t.v1.Item.quantity"],
    ),
    (
        "presence added",
        &[("int32 quantity = 2;", "optional int32 quantity = 2;")],
        &[],
    ),
    (
        "out of the oneof",
        &[(
            "oneof price { int64 cents = 6; string text = 7; }",
            "int64 cents = 6; oneof price { string text = 7; }",
        )],
        &["breaking FIELD_SAME_ONEOF t.v1.Item.cents"],
    ),
    (
        "nested message field removed",
        &[("message Detail { string note = 1; }", "message Detail { }")],
        &["breaking FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED t.v1.Detail.note"],
    ),
    (
        "enum value removed",
        &[(" STATUS_GONE = 2;", "")],
        &["breaking ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED t.v1.Status.STATUS_GONE"],
    ),
    (
        "enum value removed, reserved",
        &[(
            " STATUS_GONE = 2;",
            " reserved 2; reserved \"STATUS_GONE\";",
        )],
        &["compatible ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED t.v1.Status.STATUS_GONE"],
    ),
    (
        "enum value renamed",
        &[("STATUS_GONE = 2;", "STATUS_DELETED = 2;")],
        &["breaking ENUM_VALUE_SAME_NAME t.v1.Status.STATUS_GONE"],
    ),
    (
        "enum value added",
        &[("STATUS_GONE = 2;", "STATUS_GONE = 2; STATUS_NEW = 3;")],
        &["compatible ENUM_VALUE_ADDED t.v1.Status.STATUS_NEW"],
    ),
    (
        "method added",
        &[(
            "rpc CreateItem",
            "rpc DeleteItem(GetItemRequest) returns (Item) {\n    option (google.api.http) = { delete: \"/v1/items/{id}\" };\n  }\n  rpc CreateItem",
        )],
        &[
            "compatible ROUTE_ADDED DELETE /v1/items/{id}",
            "compatible RPC_ADDED t.v1.Shop.DeleteItem",
        ],
    ),
    (
        "method removed",
        &[(
            "rpc CreateItem(CreateItemRequest) returns (Item) {\n    option (google.api.http) = { post: \"/v1/items\" body: \"item\" };\n  }\n",
            "",
        )],
        &[
            "breaking ROUTE_NO_DELETE POST /v1/items",
            "breaking RPC_NO_DELETE t.v1.Shop.CreateItem",
        ],
    ),
    (
        "route moved",
        &[("get: \"/v1/items/{id}\"", "get: \"/v2/items/{id}\"")],
        &[
            "breaking ROUTE_NO_DELETE GET /v1/items/{id}",
            "compatible ROUTE_ADDED GET /v2/items/{id}",
        ],
    ),
    (
        "body changed",
        &[("body: \"item\"", "body: \"*\"")],
        &["breaking ROUTE_SAME_BODY POST /v1/items"],
    ),
    (
        "response type changed",
        &[(
            "rpc GetItem(GetItemRequest) returns (Item)",
            "rpc GetItem(GetItemRequest) returns (Detail)",
        )],
        &["breaking RPC_SAME_RESPONSE_TYPE t.v1.Shop.GetItem"],
    ),
    (
        "server streaming now",
        &[(
            "returns (Item) {\n    option (google.api.http) = { get:",
            "returns (stream Item) {\n    option (google.api.http) = { get:",
        )],
        &["breaking RPC_SAME_SERVER_STREAMING t.v1.Shop.GetItem"],
    ),
];

#[test]
fn changes_are_classified_by_the_wire_json_rules() {
    let before = surface(BEFORE);
    for (name, edits, expected) in CASES {
        let mut after = BEFORE.to_owned();
        for (from, to) in *edits {
            assert!(
                after.contains(from),
                "{name}: the edit {from:?} does not apply"
            );
            after = after.replacen(from, to, 1);
        }
        let diff = diff(&before, &surface(&after));
        let got: Vec<String> = diff
            .changes
            .iter()
            .map(|c| format!("{} {} {}", c.severity, c.rule, c.subject))
            .collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(got_sorted, want, "{name}: {diff:#?}");
        assert_eq!(
            diff.is_breaking(),
            expected.iter().any(|e| e.starts_with("breaking")),
            "{name}"
        );
        assert!(diff.changes.iter().all(|c| c.backend == "b"), "{name}");
    }
}

#[test]
fn the_same_schema_compiled_twice_has_no_changes() {
    assert!(diff(&surface(BEFORE), &surface(BEFORE)).is_empty());
}
