use http::Method;
use prost_reflect::DynamicMessage;
use serde_json::{Value, json};

use super::*;
use crate::config::{self, JsonOptions};
use crate::descriptor::pool_from_source;
use crate::http_rule::RouteTable;

const PROTO: &str = r#"
syntax = "proto3";
package t.v1;
import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";

enum Kind { KIND_UNSPECIFIED = 0; KIND_A = 1; KIND_B = 2; }
message Page { int32 size = 1; string token = 2; }
message Item { string name = 1; int64 id = 2; Kind kind = 3; repeated string tags = 4; }
message Req {
  string name = 1;
  int64 id = 2;
  Page page = 3;
  repeated string tag = 4;
  Kind kind = 5;
  google.protobuf.Timestamp after = 6;
  google.protobuf.Duration ttl = 7;
  google.protobuf.FieldMask update_mask = 8;
  google.protobuf.Int32Value limit = 9;
  Item item = 10;
  repeated Item items = 11;
  map<string, string> labels = 12;
  bool flag = 13;
  double ratio = 14;
  bytes blob = 15;
  oneof choice { string left = 16; string right = 17; }
  string display_name = 18;
  repeated int64 ids = 19;
  google.protobuf.Struct attrs = 20;
  map<int32, string> by_number = 21;
  map<string, Kind> kinds = 22;
}
message Resp { string name = 1; repeated Item items = 2; map<string, int32> counts = 3; int64 total = 4; Item first = 5; repeated int64 ids = 6; Kind kind = 7; }

service S {
  rpc Get(Req) returns (Resp) { option (google.api.http) = { get: "/v1/items/{id}" }; }
  rpc GetNested(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{name=shelves/*}/items/{item.id}" }; }
  rpc Create(Req) returns (Resp) { option (google.api.http) = { post: "/v1/items" body: "item" }; }
  rpc CreateAll(Req) returns (Resp) { option (google.api.http) = { post: "/v1/all/{name}" body: "*" }; }
  rpc Tags(Req) returns (Resp) { option (google.api.http) = { put: "/v1/tags" body: "tag" }; }
  rpc List(Req) returns (Resp) { option (google.api.http) = { get: "/v1/list" response_body: "items" }; }
  rpc Counts(Req) returns (Resp) { option (google.api.http) = { get: "/v1/counts" response_body: "counts" }; }
  rpc Total(Req) returns (Resp) { option (google.api.http) = { get: "/v1/total" response_body: "total" }; }
  rpc First(Req) returns (Resp) { option (google.api.http) = { get: "/v1/first" response_body: "first" }; }
  rpc Put(Req) returns (Resp) { option (google.api.http) = { put: "/v1/ids/{id}" body: "*" }; }
  rpc Patch(Item) returns (Resp) { option (google.api.http) = { patch: "/v1/kinds/{kind}" body: "*" }; }
  rpc Update(Req) returns (Resp) { option (google.api.http) = { patch: "/v1/items/{item.id}" body: "item" }; }
  rpc Labels(Req) returns (Resp) { option (google.api.http) = { put: "/v1/labels" body: "labels" }; }
}
"#;

struct Fixture {
    table: RouteTable,
    codec: Arc<Transcoder>,
}

fn fixture(extra_config: &str) -> Fixture {
    let config = config::for_test("t.v1.S", extra_config);
    let table = RouteTable::build(&pool_from_source(PROTO), &config).unwrap();
    Fixture {
        codec: Transcoder::build(&table, &JsonOptions::default()),
        table,
    }
}

impl Fixture {
    /// Builds the request for `method path?query` with `body`, decoded back
    /// to JSON, by the reference and by the codec's fast path, which must agree.
    fn build(&self, method: &str, target: &str, body: &str) -> Result<Value, TranscodeError> {
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let found = self.table.lookup(&m, path).unwrap();
        let route = found.route;
        let decode = |bytes: Vec<u8>| {
            let msg = DynamicMessage::decode(route.method.input(), bytes.as_slice()).unwrap();
            serde_json::to_value(&msg).unwrap()
        };
        // The codec adds what AIP-134 asks on top of the reference: a PATCH's mask.
        let reference = request(route, &found.values, query, body.as_bytes())
            .map(|mut wire| {
                super::update_mask::fill(
                    route,
                    query.filter(|q| !q.is_empty()),
                    body.as_bytes(),
                    &mut wire,
                );
                wire
            })
            .map(decode);
        let fast = self
            .codec
            .route(route)
            .request(&found.values, query, body.as_bytes())
            .map(decode);
        assert_eq!(reference, fast, "{method} {target} {body}");
        reference
    }

    /// Whether the codec's fast path answers (rather than the reference).
    fn fast_answers(&self, method: &str, target: &str, body: &str) -> bool {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let found = self.table.lookup(&m, path).unwrap();
        let codec = self.codec.route(found.route);
        let plan = codec.request.unwrap();
        codec
            .fast_request(plan.body, &found.values, query, body.as_bytes())
            .unwrap()
            .is_some()
    }
}

#[test]
fn path_values_override_the_body_even_when_zero() {
    let f = fixture("");
    for (method, target, body, want) in [
        (
            "PUT",
            "/v1/ids/7",
            r#"{"id": "5", "name": "n"}"#,
            json!({"id": "7", "name": "n"}),
        ),
        // A zero from the path must still beat the body's value on the wire.
        (
            "PUT",
            "/v1/ids/0",
            r#"{"id": "5", "name": "n"}"#,
            json!({"name": "n"}),
        ),
        (
            "PATCH",
            "/v1/kinds/KIND_UNSPECIFIED",
            r#"{"kind": "KIND_B", "id": 3}"#,
            json!({"id": "3"}),
        ),
        (
            "PATCH",
            "/v1/items/0",
            r#"{"id": "9", "name": "x", "tags": ["a"]}"#,
            json!({"item": {"name": "x", "tags": ["a"]}, "updateMask": "name,tags"}),
        ),
        (
            "PATCH",
            "/v1/items/4",
            r#"{"name": "x"}"#,
            json!({"item": {"id": "4", "name": "x"}, "updateMask": "name"}),
        ),
    ] {
        assert_eq!(
            f.build(method, target, body).unwrap(),
            want,
            "{method} {target} {body}"
        );
        assert!(f.fast_answers(method, target, body), "{method} {target}");
    }
}

#[test]
fn builds_request_messages() {
    let f = fixture("");
    for (method, target, body, want) in [
        ("GET", "/v1/items/42", "", json!({"id": "42"})),
        (
            "GET",
            "/v1/shelves/s%201/items/7",
            "",
            json!({"name": "shelves/s 1", "item": {"id": "7"}}),
        ),
        (
            "GET",
            "/v1/items/1?page.size=10&page.token=abc",
            "",
            json!({"id": "1", "page": {"size": 10, "token": "abc"}}),
        ),
        (
            "GET",
            "/v1/items/1?tag=a&tag=b",
            "",
            json!({"id": "1", "tag": ["a", "b"]}),
        ),
        (
            "GET",
            "/v1/items/1?tag=a%2Bb+c&tag=%E2%9C%93",
            "",
            json!({"id": "1", "tag": ["a+b c", "\u{2713}"]}),
        ),
        (
            "GET",
            "/v1/items/1?ids=1&ids=2",
            "",
            json!({"id": "1", "ids": ["1", "2"]}),
        ),
        (
            "GET",
            "/v1/items/1?kind=KIND_B",
            "",
            json!({"id": "1", "kind": "KIND_B"}),
        ),
        (
            "GET",
            "/v1/items/1?kind=1",
            "",
            json!({"id": "1", "kind": "KIND_A"}),
        ),
        // JSON names work too, and `+` is a space.
        (
            "GET",
            "/v1/items/1?displayName=Ada+L&display_name_unused=",
            "",
            json!("error"),
        ),
        (
            "GET",
            "/v1/items/1?displayName=Ada+L",
            "",
            json!({"id": "1", "displayName": "Ada L"}),
        ),
        (
            "GET",
            "/v1/items/1?after=2026-01-15T09:30:00Z&ttl=90s&limit=5",
            "",
            json!({"id": "1", "after": "2026-01-15T09:30:00Z", "ttl": "90s", "limit": 5}),
        ),
        (
            "GET",
            "/v1/items/1?update_mask=displayName,page.size",
            "",
            json!({"id": "1", "updateMask": "displayName,page.size"}),
        ),
        (
            "GET",
            "/v1/items/1?flag=true&ratio=0.5&blob=aGk%3D",
            "",
            json!({"id": "1", "flag": true, "ratio": 0.5, "blob": "aGk="}),
        ),
        (
            "GET",
            "/v1/items/1?item.tags=x",
            "",
            json!({"id": "1", "item": {"tags": ["x"]}}),
        ),
        (
            "POST",
            "/v1/items?name=n",
            r#"{"name": "i", "id": "5", "kind": "KIND_A"}"#,
            json!({"name": "n", "item": {"name": "i", "id": "5", "kind": "KIND_A"}}),
        ),
        // Proto field names are accepted in the body as well as JSON names.
        (
            "POST",
            "/v1/all/x",
            r#"{"display_name": "d", "page": {"size": 3}}"#,
            json!({"name": "x", "displayName": "d", "page": {"size": 3}}),
        ),
        // The path wins over the body.
        (
            "POST",
            "/v1/all/x",
            r#"{"name": "other"}"#,
            json!({"name": "x"}),
        ),
        ("POST", "/v1/all/x", "", json!({"name": "x"})),
        (
            "PUT",
            "/v1/tags",
            r#"["a", "b"]"#,
            json!({"tag": ["a", "b"]}),
        ),
        (
            "GET",
            "/v1/items/1?left=l",
            "",
            json!({"id": "1", "left": "l"}),
        ),
    ] {
        let got = f.build(method, target, body);
        match (&got, &want) {
            (Err(_), Value::String(s)) if s == "error" => {}
            (Ok(got), want) => assert_eq!(got, want, "{method} {target} {body}"),
            (Err(e), _) => panic!("{method} {target} {body}: {e}"),
        }
    }
}

#[test]
fn rejects_bad_input_naming_the_field() {
    let f = fixture("");
    for (method, target, body, want_field, want_message) in [
        (
            "GET",
            "/v1/items/abc",
            "",
            Some("id"),
            r#"invalid value "abc" for path variable "id": expected int64"#,
        ),
        (
            "GET",
            "/v1/items/1?nope=1",
            "",
            Some("nope"),
            r#"unknown query parameter "nope""#,
        ),
        (
            "GET",
            "/v1/items/1?page.nope=1",
            "",
            Some("page.nope"),
            r#"unknown query parameter "page.nope""#,
        ),
        (
            "GET",
            "/v1/items/1?id=2",
            "",
            Some("id"),
            r#"query parameter "id" sets a field already bound by the path"#,
        ),
        (
            "GET",
            "/v1/items/1?page.size=ten",
            "",
            Some("page.size"),
            r#"invalid value "ten" for query parameter "page.size": expected int32"#,
        ),
        (
            "GET",
            "/v1/items/1?kind=KIND_C",
            "",
            Some("kind"),
            r#"unknown value "KIND_C" for enum t.v1.Kind"#,
        ),
        (
            "GET",
            "/v1/items/1?items.name=x",
            "",
            Some("items.name"),
            "is not a singular message field",
        ),
        (
            "GET",
            "/v1/items/1?items=x",
            "",
            Some("items"),
            "repeated message fields cannot be set from the query",
        ),
        (
            "GET",
            "/v1/items/1?page=x",
            "",
            Some("page"),
            "message fields cannot be set from the query",
        ),
        (
            "GET",
            "/v1/items/1?labels=x",
            "",
            Some("labels"),
            "map fields cannot be set from the query",
        ),
        (
            "GET",
            "/v1/items/1?name=a&name=b",
            "",
            Some("name"),
            "given more than once",
        ),
        (
            "GET",
            "/v1/items/1?name=%FF",
            "",
            Some("name"),
            "is not valid percent-encoded UTF-8",
        ),
        (
            "GET",
            "/v1/items/1?ratio=1e999",
            "",
            Some("ratio"),
            "expected a double",
        ),
        (
            "GET",
            "/v1/items/1?left=a&right=b",
            "",
            Some("right"),
            "both are in oneof \"choice\"",
        ),
        (
            "GET",
            "/v1/items/1?after=yesterday",
            "",
            Some("after"),
            "expected an RFC 3339 timestamp",
        ),
        (
            "POST",
            "/v1/items",
            "{",
            Some("item"),
            "invalid JSON body: item: EOF while parsing",
        ),
        (
            "POST",
            "/v1/items",
            r#"{"nope": 1}"#,
            Some("item.nope"),
            "nope",
        ),
        (
            "POST",
            "/v1/items",
            r#"{"id": "x"}"#,
            Some("item.id"),
            "invalid JSON body: item.id:",
        ),
        (
            "POST",
            "/v1/items",
            r#"{"kind": "KIND_Z"}"#,
            Some("item.kind"),
            "invalid JSON body: item.kind:",
        ),
        (
            "POST",
            "/v1/items",
            r#"{} trailing"#,
            Some("item"),
            "trailing characters",
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"page": {"size": "big"}}"#,
            Some("page.size"),
            "invalid JSON body: page.size:",
        ),
        (
            "POST",
            "/v1/all/x?tag=a",
            "",
            Some("tag"),
            "already bound by the body",
        ),
        ("POST", "/v1/all/x", r#"[1]"#, None, "invalid JSON body"),
        (
            "PUT",
            "/v1/tags",
            r#"[1]"#,
            Some("tag[0]"),
            "invalid JSON body: tag[0]",
        ),
        // A sibling field smuggled in after the value of `body: "tag"`.
        (
            "PUT",
            "/v1/tags",
            r#"["a"], "name": "x""#,
            Some("tag"),
            "trailing characters at line 1 column 6",
        ),
    ] {
        let err = f
            .build(method, target, body)
            .map(|v| format!("built {v}"))
            .unwrap_err_string();
        let (field, message) = err;
        assert!(
            message.contains(want_message),
            "{method} {target} {body}\n got: {message}\nwant: {want_message}"
        );
        assert_eq!(
            field.as_deref(),
            want_field,
            "{method} {target} {body}: {message}"
        );
    }
}

/// Issue "Correct on the wire": a binding without `body` takes the empty
/// bodies clients send by habit (`{}`, `null`), never fields from one.
#[test]
fn bodyless_binding_takes_empty_json_and_no_fields() {
    let reject = fixture("");
    let ignore = fixture("transcoding:\n  unknown_json_fields: ignore\n");
    let id = || Ok(json!({"id": "42"}));
    let no_body = "this method does not take a request body";
    let fields = r#"this method does not take a request body; the body sets "name", "nope""#;
    for (f, policy, body, want) in [
        (&reject, "reject", "", id()),
        (&reject, "reject", " \r\n\t", id()),
        (&reject, "reject", "{}", id()),
        (&reject, "reject", " {\n} ", id()),
        (&reject, "reject", "null", id()),
        (&reject, "reject", "\n null \t", id()),
        (
            &reject,
            "reject",
            r#"{"name": "x", "nope": 1}"#,
            Err((Some("name"), fields)),
        ),
        (
            &reject,
            "reject",
            r#"{"name": null}"#,
            Err((Some("name"), r#"the body sets "name""#)),
        ),
        (&reject, "reject", "[1]", Err((None, no_body))),
        (&reject, "reject", "[]", Err((None, no_body))),
        (&reject, "reject", r#""x""#, Err((None, no_body))),
        (&reject, "reject", "5", Err((None, no_body))),
        (
            &reject,
            "reject",
            "{",
            Err((None, "invalid JSON body: EOF while parsing")),
        ),
        (
            &reject,
            "reject",
            "{} {}",
            Err((None, "invalid JSON body: trailing characters")),
        ),
        (&reject, "reject", "nul", Err((None, "invalid JSON body: "))),
        // Under `ignore` any JSON is dropped; what is not JSON still is a 400.
        (&ignore, "ignore", "{}", id()),
        (&ignore, "ignore", r#"{"name": "x", "id": "7"}"#, id()),
        (&ignore, "ignore", r#"{"a": 1, "a": 2}"#, id()),
        (&ignore, "ignore", "[1]", id()),
        (&ignore, "ignore", r#""x""#, id()),
        (&ignore, "ignore", "5", id()),
        (
            &ignore,
            "ignore",
            "{",
            Err((None, "invalid JSON body: EOF while parsing")),
        ),
        (
            &ignore,
            "ignore",
            "[1] x",
            Err((None, "invalid JSON body: trailing characters")),
        ),
    ] {
        let got = f
            .build("GET", "/v1/items/42", body)
            .map_err(|e| (e.field().map(str::to_owned), e.to_string()));
        match (&got, &want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{policy} {body:?}"),
            (Err((field, message)), Err((want_field, want_message))) => {
                assert!(
                    message.contains(want_message),
                    "{policy} {body:?}\n got: {message}\nwant: {want_message}"
                );
                assert_eq!(
                    field.as_deref(),
                    *want_field,
                    "{policy} {body:?}: {message}"
                );
            }
            _ => panic!("{policy} {body:?}: got {got:?}, want {want:?}"),
        }
    }
    // Both paths answer without the reference.
    assert!(reject.fast_answers("GET", "/v1/items/42", " null "));
    assert!(ignore.fast_answers("GET", "/v1/items/42", r#"{"name": "x"}"#));
}

trait UnwrapErrString {
    fn unwrap_err_string(self) -> (Option<String>, String);
}

impl UnwrapErrString for Result<String, TranscodeError> {
    fn unwrap_err_string(self) -> (Option<String>, String) {
        match self {
            Ok(built) => panic!("expected an error, {built}"),
            Err(e) => (e.field().map(str::to_owned), e.to_string()),
        }
    }
}

#[test]
fn ignore_policy_drops_unknown_input() {
    let f = fixture(
        "transcoding:\n  unknown_query_parameters: ignore\n  unknown_json_fields: ignore\n",
    );
    assert_eq!(
        f.build("GET", "/v1/items/1?nope=1", "").unwrap(),
        json!({"id": "1"})
    );
    assert_eq!(
        f.build("POST", "/v1/items", r#"{"nope": 1, "name": "n"}"#)
            .unwrap(),
        json!({"item": {"name": "n"}})
    );

    let per_method = fixture("methods:\n  t.v1.S.Get:\n    unknown_query_parameters: ignore\n");
    assert_eq!(
        per_method.build("GET", "/v1/items/1?nope=1", "").unwrap(),
        json!({"id": "1"})
    );
    assert!(per_method.build("GET", "/v1/list?nope=1", "").is_err());
}

/// Issue "Correct on the wire": a query parameter naming a field the path or
/// body binds is a 400 under `reject` (http.proto maps only unbound fields to
/// the query) and dropped under `ignore`, the path's or body's value winning.
#[test]
fn query_parameters_for_bound_fields_by_policy() {
    let reject = fixture("");
    let ignore = fixture("transcoding:\n  unknown_query_parameters: ignore\n");
    for (method, target, body, want_reject, want_ignore) in [
        (
            "GET",
            "/v1/items/1?id=2",
            "",
            Err((Some("id"), "already bound by the path")),
            Ok(json!({"id": "1"})),
        ),
        // Dropped unparsed.
        (
            "GET",
            "/v1/items/1?id=abc",
            "",
            Err((Some("id"), "already bound by the path")),
            Ok(json!({"id": "1"})),
        ),
        // The path binds `item.id`: `item.id` is bound, `item.name` is not.
        (
            "GET",
            "/v1/shelves/s/items/7?item.id=9&item.name=x",
            "",
            Err((Some("item.id"), "already bound by the path")),
            Ok(json!({"name": "shelves/s", "item": {"id": "7", "name": "x"}})),
        ),
        (
            "GET",
            "/v1/shelves/s/items/7?item.name=x",
            "",
            Ok(json!({"name": "shelves/s", "item": {"id": "7", "name": "x"}})),
            Ok(json!({"name": "shelves/s", "item": {"id": "7", "name": "x"}})),
        ),
        (
            "GET",
            "/v1/shelves/s/items/7?name=other",
            "",
            Err((Some("name"), "already bound by the path")),
            Ok(json!({"name": "shelves/s", "item": {"id": "7"}})),
        ),
        // `body: "item"` binds everything under `item`.
        (
            "POST",
            "/v1/items?item.name=q&item.tags=t&name=n",
            r#"{"name": "i"}"#,
            Err((Some("item.name"), "already bound by the body")),
            Ok(json!({"name": "n", "item": {"name": "i"}})),
        ),
        (
            "POST",
            "/v1/items?item.id=3",
            "",
            Err((Some("item.id"), "already bound by the body")),
            Ok(json!({})),
        ),
        // Path and body both bind under `item`; the path still wins.
        (
            "PATCH",
            "/v1/items/4?item.id=5&item.name=q",
            r#"{"name": "x"}"#,
            Err((Some("item.id"), "already bound by the path")),
            Ok(json!({"item": {"id": "4", "name": "x"}, "updateMask": "name"})),
        ),
        (
            "POST",
            "/v1/all/x?name=y&tag=a",
            r#"{"tag": ["b"]}"#,
            Err((Some("name"), "already bound by the path")),
            Ok(json!({"name": "x", "tag": ["b"]})),
        ),
        // A oneof in the input: the reference answers; same outcome.
        (
            "GET",
            "/v1/items/1?left=l&id=2",
            "",
            Err((Some("id"), "already bound by the path")),
            Ok(json!({"id": "1", "left": "l"})),
        ),
    ] {
        for (f, policy, want) in [
            (&reject, "reject", want_reject),
            (&ignore, "ignore", want_ignore),
        ] {
            let got = f
                .build(method, target, body)
                .map_err(|e| (e.field().map(str::to_owned), e.to_string()));
            match (&got, &want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{policy} {method} {target}"),
                (Err((field, message)), Err((want_field, want_message))) => {
                    assert!(
                        message.contains(want_message),
                        "{policy} {method} {target}\n got: {message}\nwant: {want_message}"
                    );
                    assert_eq!(field.as_deref(), *want_field, "{policy} {method} {target}");
                }
                _ => panic!("{policy} {method} {target}: got {got:?}, want {want:?}"),
            }
        }
    }
}

/// Issue "Correct on the wire": a key given twice in one JSON object is a
/// 400 naming it, at any depth, as protobuf's own JSON parsers answer; a
/// field's JSON and proto names are one key, and so are `"1"` and `"01"`
/// in a map with integer keys.
#[test]
fn duplicate_json_keys_are_rejected_at_every_level() {
    let reject = fixture("");
    let ignore = fixture("transcoding:\n  unknown_json_fields: ignore\n");
    let many: Vec<String> = (0..20).map(|i| format!(r#""k{i}": "v""#)).collect();
    let many_labels = format!(r#"{{"labels": {{{}}}}}"#, many.join(", "));
    let many_twice = format!(r#"{{"labels": {{{}, "k3": "again"}}}}"#, many.join(", "));
    for (method, target, body, field, message) in [
        (
            "POST",
            "/v1/all/x",
            r#"{"displayName": "a", "displayName": "b"}"#,
            "displayName",
            r#"duplicate field "displayName""#,
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"displayName": "a", "display_name": "b"}"#,
            "display_name",
            r#"duplicate field "display_name": "displayName" names the same field"#,
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"display_name": "a", "displayName": "b"}"#,
            "displayName",
            r#"duplicate field "displayName": "display_name" names the same field"#,
        ),
        // `null` leaves a field unset, but the key is given all the same.
        (
            "POST",
            "/v1/all/x",
            r#"{"displayName": null, "displayName": "b"}"#,
            "displayName",
            r#"duplicate field "displayName""#,
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"left": "a", "left": "b"}"#,
            "left",
            r#"duplicate field "left""#,
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"page": {"size": 1, "size": 2}}"#,
            "page.size",
            r#"duplicate field "size""#,
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"items": [{"name": "a"}, {"name": "a", "name": "b"}]}"#,
            "items[1].name",
            r#"duplicate field "name""#,
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"labels": {"a": "1", "a": "2"}}"#,
            "labels.a",
            r#"duplicate map key "a""#,
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"labels": {"a": "1", "\u0061": "2"}}"#,
            "labels.a",
            r#"duplicate map key "a""#,
        ),
        (
            "POST",
            "/v1/all/x",
            &many_twice,
            "labels.k3",
            r#"duplicate map key "k3""#,
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"byNumber": {"1": "a", "01": "b"}}"#,
            "byNumber.01",
            r#"duplicate map key "01""#,
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"attrs": {"a": 1, "a": 2}}"#,
            "attrs.a",
            r#"duplicate key "a""#,
        ),
        (
            "POST",
            "/v1/all/x",
            r#"{"attrs": {"x": {"a": [{"b": 1, "b": 2}]}}}"#,
            "attrs.x.a[0].b",
            r#"duplicate key "b""#,
        ),
        (
            "POST",
            "/v1/items",
            r#"{"name": "a", "name": "b"}"#,
            "item.name",
            r#"duplicate field "name""#,
        ),
        (
            "PUT",
            "/v1/labels",
            r#"{"a": "1", "a": "2"}"#,
            "labels.a",
            r#"duplicate map key "a""#,
        ),
        // A query and a oneof in the input: the reference path alone.
        (
            "POST",
            "/v1/all/x?left=l",
            r#"{"displayName": "a", "display_name": "b"}"#,
            "display_name",
            r#"duplicate field "display_name""#,
        ),
    ] {
        for (f, policy) in [(&reject, "reject"), (&ignore, "ignore")] {
            let err = f
                .build(method, target, body)
                .map(|v| format!("built {v}"))
                .unwrap_err_string();
            let (got_field, got_message) = err;
            assert!(
                got_message.starts_with("invalid JSON body: ") && got_message.contains(message),
                "{policy} {target} {body}\n got: {got_message}\nwant: {message}"
            );
            assert_eq!(
                got_field.as_deref(),
                Some(field),
                "{policy} {target} {body}"
            );
        }
    }
    // Under `ignore` an unknown key's value is skipped, twice or not; an
    // unknown enum name drops its map entry, but the key still counts.
    assert_eq!(
        ignore
            .build("POST", "/v1/all/x", r#"{"nope": 1, "nope": 2}"#)
            .unwrap(),
        json!({"name": "x"})
    );
    assert_eq!(
        ignore
            .build(
                "POST",
                "/v1/all/x",
                r#"{"kinds": {"a": "NOPE", "b": "KIND_A"}}"#
            )
            .unwrap(),
        json!({"name": "x", "kinds": {"b": "KIND_A"}})
    );
    let dropped_twice = ignore
        .build(
            "POST",
            "/v1/all/x",
            r#"{"kinds": {"a": "NOPE", "a": "KIND_A"}}"#,
        )
        .unwrap_err();
    assert_eq!(dropped_twice.field(), Some("kinds.a"), "{dropped_twice}");
    // Equal keys in different objects are no duplicates, and the fast path
    // still answers those bodies itself.
    for body in [
        r#"{"labels": {"a": "1", "b": "2"}, "page": {"size": 1}, "item": {"name": "x"}}"#,
        r#"{"attrs": {"a": 1, "b": {"a": 2}}, "items": [{"name": "a"}, {"name": "a"}]}"#,
        r#"{"byNumber": {"1": "a", "2": "b"}, "display_name": "d"}"#,
        &many_labels,
    ] {
        reject.build("POST", "/v1/all/x", body).unwrap();
        assert!(reject.fast_answers("POST", "/v1/all/x", body), "{body}");
    }
}

fn render(f: &Fixture, path: &str, reply: &str, json: JsonOptions) -> Value {
    let found = f.table.lookup(&Method::GET, path).unwrap();
    let out = found.route.method.output();
    let mut de = serde_json::Deserializer::from_str(reply);
    let msg = DynamicMessage::deserialize(out, &mut de).unwrap();
    let bytes = prost::Message::encode_to_vec(&msg);
    let rendered = response(found.route, &bytes, &json).unwrap();
    serde_json::from_slice(&rendered).unwrap()
}

#[test]
fn renders_responses_and_response_body() {
    let f = fixture("");
    let reply = r#"{"name": "n", "items": [{"name": "a", "id": "1"}, {"name": "b", "kind": "KIND_B"}], "counts": {"x": 1}, "total": "9007199254740993", "first": {"name": "a"}, "ids": ["1"], "kind": "KIND_A"}"#;
    let plain = JsonOptions::default();
    assert_eq!(
        render(&f, "/v1/items/1", reply, plain)["total"],
        json!("9007199254740993")
    );
    for (path, want) in [
        (
            "/v1/list",
            json!([{"name": "a", "id": "1"}, {"name": "b", "kind": "KIND_B"}]),
        ),
        ("/v1/counts", json!({"x": 1})),
        ("/v1/total", json!("9007199254740993")),
        ("/v1/first", json!({"name": "a"})),
    ] {
        assert_eq!(render(&f, path, reply, plain), want, "{path}");
    }
    let options = JsonOptions {
        emit_unpopulated: true,
        use_proto_names: true,
        enums_as_ints: true,
    };
    let got = render(&f, "/v1/items/1", r#"{"kind": "KIND_B"}"#, options);
    assert_eq!(got["kind"], json!(2));
    assert_eq!(got["items"], json!([]));
    assert_eq!(got["total"], json!("0"));
    let got = render(&f, "/v1/list", reply, options);
    assert_eq!(
        got[1],
        json!({"name": "b", "id": "0", "kind": 2, "tags": []})
    );
}

#[test]
fn undecodable_reply_is_internal() {
    let f = fixture("");
    let found = f.table.lookup(&Method::GET, "/v1/items/1").unwrap();
    let err = response(found.route, &[0xff, 0xff, 0xff], &JsonOptions::default()).unwrap_err();
    assert!(err.is_internal(), "{err}");
}

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    static FIXTURE: std::sync::LazyLock<Fixture> = std::sync::LazyLock::new(|| fixture(""));

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn on_arbitrary_query_strings(query in "[a-zA-Z_.=&%0-9+]{0,60}") {
            FIXTURE.build("GET", &format!("/v1/items/1?{query}"), "").ok();
        }

        #[test]
        fn on_arbitrary_bodies(body in proptest::collection::vec(any::<u8>(), 0..80)) {
            for path in ["/v1/items", "/v1/all/x", "/v1/tags"] {
                let method = if path == "/v1/tags" { Method::PUT } else { Method::POST };
                let found = FIXTURE.table.lookup(&method, path).unwrap();
                let _ = request(found.route, &found.values, None, &body);
                let _ = FIXTURE.codec.route(found.route).request(&found.values, None, &body);
            }
        }

        #[test]
        fn on_json_shaped_bodies(body in r#"\{("(name|id|kind|tags|page|x)": ?(1|"a"|\[\]|\{\}|null|true|-0|1e999|"KIND_A"),? ?){0,4}\}"#) {
            FIXTURE.build("POST", "/v1/all/x", &body).ok();
            FIXTURE.build("POST", "/v1/items", &body).ok();
        }

        #[test]
        fn on_arbitrary_replies(reply in proptest::collection::vec(any::<u8>(), 0..80)) {
            for path in ["/v1/items/1", "/v1/list", "/v1/counts", "/v1/total"] {
                let found = FIXTURE.table.lookup(&Method::GET, path).unwrap();
                let _ = response(found.route, &reply, &JsonOptions::default());
            }
        }
    }
}
