use http::Method;
use proptest::prelude::*;

use super::*;
use crate::config;
use crate::descriptor::pool_from_source;

const PROTO: &str = r#"
syntax = "proto3";
package t.v1;
import "google/api/annotations.proto";

message Inner { string name = 1; int64 id = 2; }
message Req {
  string name = 1;
  int64 id = 2;
  Inner inner = 3;
  repeated string tags = 4;
  string verb_target = 5;
}
message Resp { string name = 1; repeated Inner items = 2; }

service Things {
  rpc Get(Req) returns (Resp) {
    option (google.api.http) = {
      get: "/v1/things/{id}"
      additional_bindings { get: "/v1/{name=shelves/*/things/*}" }
    };
  }
  rpc GetSpecial(Req) returns (Resp) { option (google.api.http) = { get: "/v1/things/special" }; }
  rpc Create(Req) returns (Resp) { option (google.api.http) = { post: "/v1/things" body: "*" }; }
  rpc Update(Req) returns (Resp) { option (google.api.http) = { patch: "/v1/things/{inner.id}" body: "inner" }; }
  rpc Cancel(Req) returns (Resp) { option (google.api.http) = { post: "/v1/things/{id}:cancel" body: "*" }; }
  rpc Deep(Req) returns (Resp) { option (google.api.http) = { get: "/v1/files/{name=**}" }; }
  rpc DeepVerb(Req) returns (Resp) { option (google.api.http) = { post: "/v1/files/{name=**}:undelete" }; }
  rpc StarMiddle(Req) returns (Resp) { option (google.api.http) = { get: "/v1/shelves/{name}/special" }; }
  rpc Head(Req) returns (Resp) { option (google.api.http) = { custom { kind: "HEAD" path: "/v1/things/{id}" } }; }
  rpc AnyMethod(Req) returns (Resp) { option (google.api.http) = { custom { kind: "*" path: "/v1/any/{name}" } }; }
  rpc List(Req) returns (Resp) { option (google.api.http) = { get: "/v1/lists" response_body: "items" }; }
  rpc Unmapped(Req) returns (Resp);
}
"#;

fn config_for(services: &str) -> config::Config {
    config::for_test(services, "")
}

static TABLE: std::sync::LazyLock<RouteTable> = std::sync::LazyLock::new(|| {
    RouteTable::build(&pool_from_source(PROTO), &config_for("t.v1.Things")).unwrap()
});

fn table() -> &'static RouteTable {
    &TABLE
}

#[test]
fn lookup_precedence_and_captures() {
    let table = table();
    for (method, path, want_method, want_values) in [
        ("GET", "/v1/things/42", "Get", vec!["42"]),
        // Literal beats `*`.
        ("GET", "/v1/things/special", "GetSpecial", vec![]),
        (
            "GET",
            "/v1/shelves/s1/things/t1",
            "Get",
            vec!["shelves/s1/things/t1"],
        ),
        // The verb binding wins over `{id}` capturing "7:cancel".
        ("POST", "/v1/things/7:cancel", "Cancel", vec!["7"]),
        ("PATCH", "/v1/things/9", "Update", vec!["9"]),
        ("POST", "/v1/things", "Create", vec![]),
        // `**` takes any depth, and nothing.
        ("GET", "/v1/files/a/b/c.txt", "Deep", vec!["a/b/c.txt"]),
        ("GET", "/v1/files", "Deep", vec![""]),
        ("POST", "/v1/files/a/b:undelete", "DeepVerb", vec!["a/b"]),
        // `*` then literal; `**` keeps %2F encoded, `*` decodes it.
        (
            "GET",
            "/v1/shelves/a%2Fb/special",
            "StarMiddle",
            vec!["a/b"],
        ),
        ("GET", "/v1/files/a%2Fb/c", "Deep", vec!["a%2Fb/c"]),
        ("HEAD", "/v1/things/3", "Head", vec!["3"]),
        ("DELETE", "/v1/any/x", "AnyMethod", vec!["x"]),
        ("PUT", "/v1/any/x", "AnyMethod", vec!["x"]),
        ("GET", "/v1/lists", "List", vec![]),
    ] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let got = table
            .lookup(&m, path)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(got.route.method.name(), want_method, "{method} {path}");
        assert_eq!(got.values, want_values, "{method} {path}");
    }
}

#[test]
fn lookup_errors() {
    let table = table();
    for (method, path, want) in [
        ("GET", "/v2/things/1", "404"),
        ("GET", "/v1/things/1/extra", "404"),
        ("GET", "/v1/things/", "404"),
        ("GET", "relative", "404"),
        ("DELETE", "/v1/things/1", "405 GET,HEAD,PATCH"),
        ("GET", "/v1/things", "405 POST"),
        ("GET", "/v1/things/1:cancel", "200"),
        ("GET", "/v1/things/../secret", "400"),
        ("GET", "/v1/files/a/%2e%2E/b", "400"),
        ("GET", "/v1/files/./b", "400"),
        // Dot segments hidden in front of a verb are refused too (review finding).
        ("POST", "/v1/files/a/..:undelete", "400"),
        ("POST", "/v1/things/..:cancel", "400"),
        ("POST", "/v1/things/.%2E:cancel", "400"),
        ("GET", "/v1/things/%FF%FE", "400 encoding"),
        // Malformed escapes anywhere: variable, literal, verb (issue "Correct on the wire").
        ("GET", "/v1/things/a%zzb", "400 escape"),
        ("GET", "/v1/things/%", "400 escape"),
        ("GET", "/v1/things/1%4", "400 escape"),
        ("GET", "/v1/th%zzings/1", "400 escape"),
        ("GET", "/v1/things/spec%ial", "400 escape"),
        ("POST", "/v1/things/7:cancel%zz", "400 escape"),
        ("POST", "/v1/things/7:can%zzcel", "400 escape"),
        ("GET", "/v1/files/a/%zz/b", "400 escape"),
        ("GET", "/v2/nowhere/%zz", "400 escape"),
        ("GET", "/v1/th%69ngs/1", "200"),
        ("GET", "/v1/things/%E2%9C%93", "200"),
        // Encoded slashes stay inside their segment unless switched on.
        ("GET", "/v1/shelves%2Fs1%2Fthings%2Ft1", "404"),
    ] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let got = match table.lookup(&m, path) {
            Ok(_) => "200".to_owned(),
            Err(LookupError::NotFound { .. }) => "404".to_owned(),
            Err(LookupError::MethodNotAllowed { allowed, .. }) => {
                format!("405 {}", allowed.join(","))
            }
            Err(LookupError::DotSegment { .. }) => "400".to_owned(),
            Err(LookupError::BadEncoding { .. }) => "400 encoding".to_owned(),
            Err(LookupError::BadEscape { .. }) => "400 escape".to_owned(),
        };
        assert_eq!(got, want, "{method} {path}");
    }
}

#[test]
fn encoded_slash_fallback_when_switched_on() {
    let mut config = config_for("t.v1.Things");
    config.transcode.match_encoded_slashes = true;
    let table = RouteTable::build(&pool_from_source(PROTO), &config).unwrap();
    for (method, path, want) in [
        (
            "GET",
            "/v1/shelves%2Fs1%2Fthings%2Ft1",
            Ok(vec!["shelves/s1/things/t1"]),
        ),
        // A direct match wins: `{id}` is single-segment and decodes %2F.
        ("GET", "/v1/things/a%2Fb", Ok(vec!["a/b"])),
        ("GET", "/v1/files%2F..%2Fx", Err("dot")),
        ("DELETE", "/v1/shelves%2Fs1%2Fthings%2Ft1", Err("405")),
    ] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let got = match table.lookup(&m, path) {
            Ok(found) => Ok(found.values),
            Err(LookupError::DotSegment { .. }) => Err("dot"),
            Err(LookupError::MethodNotAllowed { .. }) => Err("405"),
            Err(e) => panic!("{path}: {e}"),
        };
        let want = want.map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>());
        assert_eq!(got, want, "{method} {path}");
    }
}

#[test]
fn precomputes_route_details() {
    let table = table();
    let update = table
        .routes()
        .iter()
        .find(|r| r.method.name() == "Update")
        .unwrap();
    assert_eq!(update.grpc_path.as_str(), "/t.v1.Things/Update");
    assert_eq!(update.path_fields[0].dotted(), "inner.id");
    assert!(matches!(&update.body, BodyRule::Field(p) if p.dotted() == "inner"));
    let list = table
        .routes()
        .iter()
        .find(|r| r.method.name() == "List")
        .unwrap();
    assert_eq!(
        list.response_body.as_ref().map(FieldPath::dotted),
        Some("items")
    );
    assert_eq!(
        table
            .routes()
            .iter()
            .filter(|r| r.method.name() == "Get")
            .count(),
        2
    );
    assert!(table.routes().iter().all(|r| r.method.name() != "Unmapped"));
}

#[test]
fn startup_errors_name_method_and_template() {
    for (rpc, want) in [
        (
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{nope}" }; }"#,
            r#"t.v1.Bad.A: GET /v1/{nope}: path variable "nope": field "nope" does not exist in t.v1.Req"#,
        ),
        (
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{tags}" }; }"#,
            r#"t.v1.Bad.A: GET /v1/{tags}: path variable "tags" must name a singular scalar or enum field"#,
        ),
        (
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{inner}" }; }"#,
            "must name a singular scalar or enum field",
        ),
        (
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{tags.x}" }; }"#,
            r#"field "tags" is not a singular message"#,
        ),
        (
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { post: "/v1/a" body: "missing" }; }"#,
            r#"t.v1.Bad.A: POST /v1/a: body "missing": field "missing" does not exist"#,
        ),
        (
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/a" response_body: "nope" }; }"#,
            r#"response_body "nope": field "nope" does not exist in t.v1.Resp"#,
        ),
        (
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "v1/a" }; }"#,
            r#"t.v1.Bad.A: template "v1/a" must start with '/'"#,
        ),
        (
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{id}" }; }
               rpc B(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{name}" }; }"#,
            "conflicting routes: GET /v1/{id} (t.v1.Bad.A) and GET /v1/{name} (t.v1.Bad.B)",
        ),
        (
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/a" additional_bindings { get: "/v1/a" } }; }"#,
            "conflicting routes: GET /v1/a (t.v1.Bad.A) and GET /v1/a (t.v1.Bad.A)",
        ),
        (
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { custom { kind: "" path: "/v1/a" } }; }"#,
            "t.v1.Bad.A: binding 0 has a custom pattern with an empty kind",
        ),
    ] {
        let proto = PROTO.replace(
            "service Things",
            &format!("service Bad {{ {rpc} }}\nservice Things"),
        );
        let err = RouteTable::build(&pool_from_source(&proto), &config_for("t.v1.Bad"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{rpc}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn unknown_configured_names_are_startup_errors() {
    let pool = pool_from_source(PROTO);
    let err = RouteTable::build(&pool, &config_for("t.v1.Thingz"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "backends.b.services: t.v1.Thingz is not in the loaded descriptors"
    );
    let mut cfg = config_for("t.v1.*");
    cfg.methods
        .insert("t.v1.Things.Nope".into(), Default::default());
    let err = RouteTable::build(&pool, &cfg).unwrap_err().to_string();
    assert_eq!(
        err,
        "methods.t.v1.Things.Nope: t.v1.Things.Nope is not in the loaded descriptors"
    );
}

#[test]
fn api_prefix_and_deprecation_apply_to_their_services() {
    let cfg = config::for_test(
        "t.v1.*",
        "apis:\n  - services: [t.v1.Things]\n    prefix: /api/\n    deprecated:\n      since: 2026-01-01\n      sunset: 2027-06-30\n      successor: /openapi/v2.json\n",
    );
    let proto = PROTO.replace(
        "service Things",
        "service Other { rpc Call(Req) returns (Resp) { option (google.api.http) = { get: \"/v1/other\" }; } }\nservice Things",
    );
    let table = RouteTable::build(&pool_from_source(&proto), &cfg).unwrap();
    let found = table.lookup(&Method::GET, "/api/v1/things/42").unwrap();
    assert_eq!(found.route.method.name(), "Get");
    assert_eq!(found.values, ["42"]);
    assert_eq!(found.route.template.source, "/api/v1/things/{id}");
    let headers = found.route.deprecation.as_deref().unwrap();
    assert_eq!(headers["deprecation"], "@1767225600");
    assert_eq!(headers["sunset"], "Wed, 30 Jun 2027 00:00:00 GMT");
    assert!(matches!(
        table.lookup(&Method::GET, "/v1/things/42"),
        Err(LookupError::NotFound { .. })
    ));
    // Other services keep their paths and carry no deprecation.
    let other = table.lookup(&Method::GET, "/v1/other").unwrap().route;
    assert!(other.deprecation.is_none());
    assert!(
        table
            .routes()
            .iter()
            .all(|r| r.deprecation.is_some() == (r.method.parent_service().name() == "Things"))
    );
}

#[test]
fn config_rules_replace_annotations_and_bind_unannotated_methods() {
    let cfg = config::for_test(
        "t.v1.Things",
        "http:\n  rules:\n    - selector: t.v1.Things.Unmapped\n      post: /v1/things/{id}:unmap\n      body: \"*\"\n      additional_bindings:\n        - get: /v1/unmapped/{name}\n    - selector: t.v1.Things.GetSpecial\n      get: /v1/special-things\n",
    );
    let table = RouteTable::build(&pool_from_source(PROTO), &cfg).unwrap();
    for (method, path, want) in [
        (Method::POST, "/v1/things/7:unmap", Some("Unmapped")),
        (Method::GET, "/v1/unmapped/x", Some("Unmapped")),
        (Method::GET, "/v1/special-things", Some("GetSpecial")),
        // The annotation a config rule replaces is gone; {id} now takes "special".
        (Method::GET, "/v1/things/special", Some("Get")),
    ] {
        let got = table
            .lookup(&method, path)
            .ok()
            .map(|m| m.route.method.name().to_owned());
        assert_eq!(got.as_deref(), want, "{method} {path}");
    }
}

#[test]
fn config_rule_errors_name_the_rule() {
    for (extra, want) in [
        (
            "http:\n  rules:\n    - selector: t.v1.Things.Nope\n      get: /x\n",
            "http.rules[0].selector: t.v1.Things.Nope is not in the loaded descriptors",
        ),
        (
            "http:\n  rules:\n    - selector: t.v1.Things.Unmapped\n      get: /x\n      post: /y\n",
            "t.v1.Things.Unmapped: binding 0 sets more than one of get, put, post",
        ),
        (
            "http:\n  rules:\n    - selector: t.v1.Things.Unmapped\n      body: \"*\"\n",
            "t.v1.Things.Unmapped: binding 0 has no HTTP method and path",
        ),
        (
            "http:\n  rules:\n    - selector: t.v1.Things.Unmapped\n      get: /v1/{nope}\n",
            "path variable \"nope\": field \"nope\" does not exist",
        ),
        (
            "http:\n  rules:\n    - selector: t.v1.Other.Call\n      get: /v1/other\n",
            "http.rules[0].selector: no backend serves t.v1.Other.Call",
        ),
        (
            "apis:\n  - services: [t.v1.*]\n  - services: [t.v1.Things]\n",
            "service t.v1.Things is in apis[0] and apis[1]",
        ),
    ] {
        let proto = PROTO.replace(
            "service Things",
            "service Other { rpc Call(Req) returns (Resp); }\nservice Things",
        );
        let cfg = config::for_test("t.v1.Things", extra);
        let err = RouteTable::build(&pool_from_source(&proto), &cfg)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{extra}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn fallback_routes_only_when_switched_on_and_only_for_unbound_methods() {
    let path = "/t.v1.Things/Unmapped";
    assert!(table().lookup(&Method::POST, path).is_err());
    let cfg = config::for_test("t.v1.Things", "transcoding:\n  fallback_routes: true\n");
    let table = RouteTable::build(&pool_from_source(PROTO), &cfg).unwrap();
    let found = table.lookup(&Method::POST, path).unwrap();
    assert_eq!(found.route.method.name(), "Unmapped");
    assert_eq!(found.route.body, BodyRule::Whole);
    // Annotated methods get no second route.
    assert!(table.lookup(&Method::POST, "/t.v1.Things/Get").is_err());
}

#[test]
fn several_backends_split_a_service_only_with_weights() {
    let two = |w1: &str, w2: &str| {
        config::parse(
            &format!(
                "descriptors:\n  protos: [x.proto]\nbackends:\n  a:\n    address: http://127.0.0.1:1\n    services: [t.v1.Things]\n{w1}  b:\n    address: http://127.0.0.1:2\n    services: [t.v1.*]\n{w2}"
            ),
            std::path::Path::new("gateway.yaml"),
        )
        .unwrap()
    };
    let pool = pool_from_source(PROTO);
    let err = RouteTable::build(&pool, &two("", "    weight: 10\n"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "service t.v1.Things is matched by backends a and b; set `weight` on each to split its traffic"
    );
    let table = RouteTable::build(&pool, &two("    weight: 90\n", "    weight: 10\n")).unwrap();
    let route = table.lookup(&Method::GET, "/v1/things/1").unwrap().route;
    let split: Vec<(&str, u32)> = route
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.weight))
        .collect();
    assert_eq!(split, [("a", 90), ("b", 10)]);
    assert_eq!(route.total_weight, 100);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn template_parser_never_panics(s in "\\PC{0,40}") {
        let _ = PathTemplate::parse(&s);
    }

    #[test]
    fn template_parser_never_panics_on_template_alphabet(s in "[/{}*=:.a-c_1%]{0,30}") {
        if let Ok(t) = PathTemplate::parse(&s) {
            // A parsed template's variables point inside its segments.
            for v in &t.variables {
                prop_assert!(v.start < v.end && v.end <= t.segments.len());
            }
        }
    }

    #[test]
    fn lookup_never_panics(method in "(GET|POST|PATCH|DELETE|HEAD|PUT|X)", path in "/[a-z0-9/%:.*{}]{0,40}") {
        let table = table();
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        if let Ok(found) = table.lookup(&m, &path) {
            prop_assert_eq!(found.values.len(), found.route.path_fields.len());
        }
    }
}
