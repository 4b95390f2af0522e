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

/// PROTO with `service Bad { rpcs }` beside Things, built for `services`
/// plus `extra` config.
fn build_with(rpcs: &str, services: &str, extra: &str) -> RouteTable {
    let proto = PROTO.replace(
        "service Things",
        &format!("service Bad {{ {rpcs} }}\nservice Things"),
    );
    RouteTable::build(
        &pool_from_source(&proto),
        &config::for_test(services, extra),
    )
    .unwrap_or_else(|e| panic!("{rpcs}: {e}"))
}

fn problems(table: &RouteTable) -> Vec<String> {
    table
        .problems()
        .iter()
        .map(|p| format!("{}: {p}", p.kind))
        .collect()
}

fn routed_to(table: &RouteTable, method: Method, path: &str) -> Option<String> {
    table
        .lookup(&method, path)
        .ok()
        .map(|m| m.route.method.full_name().to_owned())
}

/// Issue "Correct on the wire": one bad binding used to fail the whole build.
#[test]
fn broken_bindings_are_left_out_and_the_rest_routed() {
    for (binding, want) in [
        (
            r#"get: "/v1/{nope}""#,
            r#"field: t.v1.Bad.A: GET /v1/{nope}: path variable "nope": field "nope" does not exist in t.v1.Req"#,
        ),
        (
            r#"get: "/v1/{tags}""#,
            r#"field: t.v1.Bad.A: GET /v1/{tags}: path variable "tags" must name a singular scalar or enum field"#,
        ),
        (
            r#"get: "/v1/{inner}""#,
            r#"field: t.v1.Bad.A: GET /v1/{inner}: path variable "inner" must name a singular scalar or enum field"#,
        ),
        (
            r#"get: "/v1/{tags.x}""#,
            r#"field: t.v1.Bad.A: GET /v1/{tags.x}: path variable "tags.x": field "tags" is not a singular message, so "tags.x" cannot go through it"#,
        ),
        (
            r#"post: "/v1/a" body: "missing""#,
            r#"field: t.v1.Bad.A: POST /v1/a: body "missing": field "missing" does not exist in t.v1.Req"#,
        ),
        (
            r#"get: "/v1/a" response_body: "nope""#,
            r#"field: t.v1.Bad.A: GET /v1/a: response_body "nope": field "nope" does not exist in t.v1.Resp"#,
        ),
        (
            r#"get: "v1/a""#,
            r#"template: t.v1.Bad.A: GET v1/a: template "v1/a" must start with '/'"#,
        ),
        (
            r#"get: "/v1/{id}/**/x""#,
            r#"template: t.v1.Bad.A: GET /v1/{id}/**/x: template "/v1/{id}/**/x": '**' must be the last segment"#,
        ),
        (
            r#"custom { kind: "" path: "/v1/a" }"#,
            "rule: t.v1.Bad.A: google.api.http: binding 1 has a custom pattern with an empty kind",
        ),
        (
            r#"custom { kind: "NOT A TOKEN" path: "/v1/a" }"#,
            r#"rule: t.v1.Bad.A: NOT A TOKEN /v1/a: invalid HTTP method "NOT A TOKEN""#,
        ),
        (
            r#"body: "*""#,
            "rule: t.v1.Bad.A: google.api.http: binding 1 has no HTTP method and path",
        ),
        (
            r#"get: "/v1/a" additional_bindings { get: "/v1/b" }"#,
            "rule: t.v1.Bad.A: google.api.http: additional binding 1 has additional_bindings of its own",
        ),
    ] {
        // The broken binding beside a good one of the same method and a good method.
        let rpcs = format!(
            r#"rpc A(Req) returns (Resp) {{ option (google.api.http) = {{ get: "/v1/bad/{{id}}" additional_bindings {{ {binding} }} }}; }}
               rpc B(Req) returns (Resp) {{ option (google.api.http) = {{ get: "/v1/good/{{id}}" }}; }}"#
        );
        let table = build_with(&rpcs, "t.v1.Bad", "");
        assert_eq!(problems(&table), [want], "{binding}");
        assert!(table.problems()[0].kind.is_error(), "{binding}");
        assert_eq!(
            routed_to(&table, Method::GET, "/v1/bad/1").as_deref(),
            Some("t.v1.Bad.A"),
            "{binding}"
        );
        assert_eq!(
            routed_to(&table, Method::GET, "/v1/good/1").as_deref(),
            Some("t.v1.Bad.B"),
            "{binding}"
        );
        assert_eq!(table.routes().len(), 2, "{binding}");
    }
}

#[test]
fn a_broken_main_binding_keeps_the_additional_ones() {
    let table = build_with(
        r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{tags}" additional_bindings { get: "/v1/bad/{id}" } }; }"#,
        "t.v1.Bad",
        "",
    );
    assert_eq!(
        problems(&table),
        [
            r#"field: t.v1.Bad.A: GET /v1/{tags}: path variable "tags" must name a singular scalar or enum field"#
        ]
    );
    assert_eq!(
        routed_to(&table, Method::GET, "/v1/bad/1").as_deref(),
        Some("t.v1.Bad.A")
    );
    assert_eq!(table.routes()[0].binding, 1);
}

#[test]
fn bindings_answering_the_same_requests_go_to_the_first_in_precedence() {
    for (case, rpcs, services, extra, want, lookups) in [
        (
            "by full method name, not declaration order",
            r#"rpc B(Req) returns (Resp) { option (google.api.http) = { get: "/v1/bad/{name}" }; }
               rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/bad/{id}" }; }"#,
            "t.v1.Bad",
            "",
            vec![
                "conflict: t.v1.Bad.B: GET /v1/bad/{name}: answers the same requests as GET /v1/bad/{id} of t.v1.Bad.A, which keeps them",
            ],
            vec![(Method::GET, "/v1/bad/1", Some("t.v1.Bad.A"))],
        ),
        (
            "across services too: t.v1.Bad sorts before t.v1.Things",
            r#"rpc Z(Req) returns (Resp) { option (google.api.http) = { get: "/v1/things/{name}" }; }"#,
            "t.v1.*",
            "",
            vec![
                "conflict: t.v1.Things.Get: GET /v1/things/{id}: answers the same requests as GET /v1/things/{name} of t.v1.Bad.Z, which keeps them",
            ],
            vec![
                (Method::GET, "/v1/things/1", Some("t.v1.Bad.Z")),
                // Get's other binding is still routed.
                (
                    Method::GET,
                    "/v1/shelves/1/things/2",
                    Some("t.v1.Things.Get"),
                ),
            ],
        ),
        (
            "a config rule beats annotations",
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/bad/x" }; }
               rpc Z(Req) returns (Resp);"#,
            "t.v1.Bad",
            "http:\n  rules:\n    - selector: t.v1.Bad.Z\n      get: /v1/bad/x\n",
            vec![
                "conflict: t.v1.Bad.A: GET /v1/bad/x: answers the same requests as GET /v1/bad/x of t.v1.Bad.Z, which keeps them",
            ],
            vec![(Method::GET, "/v1/bad/x", Some("t.v1.Bad.Z"))],
        ),
        (
            "config rules by their order in the file",
            r#"rpc A(Req) returns (Resp);
               rpc Z(Req) returns (Resp);"#,
            "t.v1.Bad",
            "http:\n  rules:\n    - selector: t.v1.Bad.Z\n      get: /v1/bad/x\n    - selector: t.v1.Bad.A\n      get: /v1/bad/x\n",
            vec![
                "conflict: t.v1.Bad.A: GET /v1/bad/x: answers the same requests as GET /v1/bad/x of t.v1.Bad.Z, which keeps them",
            ],
            vec![(Method::GET, "/v1/bad/x", Some("t.v1.Bad.Z"))],
        ),
        (
            "an annotation beats a fallback route",
            r#"rpc A(Req) returns (Resp);
               rpc B(Req) returns (Resp) { option (google.api.http) = { post: "/t.v1.Bad/A" body: "*" }; }"#,
            "t.v1.Bad",
            "transcoding:\n  fallback_routes: true\n",
            vec![
                r#"conflict: t.v1.Bad.A: POST /t.v1.Bad/A: answers the same requests as POST /t.v1.Bad/A of t.v1.Bad.B, which keeps them"#,
            ],
            vec![(Method::POST, "/t.v1.Bad/A", Some("t.v1.Bad.B"))],
        ),
        (
            "the same pattern with another body is a conflict within one method",
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { post: "/v1/bad" body: "*" additional_bindings { post: "/v1/bad" body: "inner" } }; }"#,
            "t.v1.Bad",
            "",
            vec![
                "conflict: t.v1.Bad.A: POST /v1/bad: answers the same requests as POST /v1/bad of t.v1.Bad.A, which keeps them",
            ],
            vec![(Method::POST, "/v1/bad", Some("t.v1.Bad.A"))],
        ),
        (
            "an exact repeat is routed once, with a warning",
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/bad/{id}" additional_bindings { get: "/v1/bad/{id}" } }; }"#,
            "t.v1.Bad",
            "",
            vec![
                "duplicate: t.v1.Bad.A: GET /v1/bad/{id}: repeats an earlier binding of the method exactly; routed once",
            ],
            vec![(Method::GET, "/v1/bad/1", Some("t.v1.Bad.A"))],
        ),
        (
            "a * custom kind and an exact method do not conflict",
            r#"rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/bad/{id}" }; }
               rpc B(Req) returns (Resp) { option (google.api.http) = { custom { kind: "*" path: "/v1/bad/{id}" } }; }"#,
            "t.v1.Bad",
            "",
            vec![],
            vec![
                (Method::GET, "/v1/bad/1", Some("t.v1.Bad.A")),
                (Method::PUT, "/v1/bad/1", Some("t.v1.Bad.B")),
            ],
        ),
    ] {
        let table = build_with(rpcs, services, extra);
        assert_eq!(problems(&table), want, "{case}");
        for (method, path, want) in lookups {
            assert_eq!(
                routed_to(&table, method.clone(), path).as_deref(),
                want,
                "{case}: {method} {path}"
            );
        }
    }
}

#[test]
fn the_routed_order_and_indexes_follow_the_descriptors() {
    // B is declared first and keeps its place although A wins the conflict.
    let table = build_with(
        r#"rpc B(Req) returns (Resp) { option (google.api.http) = { get: "/v1/b" additional_bindings { get: "/v1/x" } }; }
           rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/x" }; }"#,
        "t.v1.Bad",
        "",
    );
    let got: Vec<(usize, &str, &str)> = table
        .routes()
        .iter()
        .map(|r| (r.index, r.method.name(), r.template.source.as_str()))
        .collect();
    assert_eq!(got, [(0, "B", "/v1/b"), (1, "A", "/v1/x")]);
}

#[test]
fn config_rule_bindings_are_checked_like_annotations() {
    let table = build_with(
        "rpc A(Req) returns (Resp);",
        "t.v1.Bad",
        "http:\n  rules:\n    - selector: t.v1.Bad.A\n      get: /v1/{nope}\n      additional_bindings:\n        - get: /v1/bad/{id}\n",
    );
    assert_eq!(
        problems(&table),
        [
            r#"field: t.v1.Bad.A: GET /v1/{nope}: path variable "nope": field "nope" does not exist in t.v1.Req"#
        ]
    );
    assert_eq!(
        routed_to(&table, Method::GET, "/v1/bad/1").as_deref(),
        Some("t.v1.Bad.A")
    );
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
