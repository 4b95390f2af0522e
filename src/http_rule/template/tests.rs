use http::Method;

use super::*;
use crate::config;
use crate::descriptor::pool_from_source;
use crate::http_rule::RouteTable;

fn lit(s: &str) -> Segment {
    Segment::Literal(s.to_owned())
}

#[test]
fn parses_spec_templates() {
    use Segment::{DeepWildcard as DW, Wildcard as W};
    for (template, segments, vars, verb) in [
        ("/", vec![], vec![], None),
        (
            "/v1/messages",
            vec![lit("v1"), lit("messages")],
            vec![],
            None,
        ),
        (
            "/v1/messages/{message_id}",
            vec![lit("v1"), lit("messages"), W],
            vec![("message_id", 2, 3)],
            None,
        ),
        (
            "/v1/{name=messages/*}",
            vec![lit("v1"), lit("messages"), W],
            vec![("name", 1, 3)],
            None,
        ),
        (
            "/v1/users/{user_id}/messages/{message.id}",
            vec![lit("v1"), lit("users"), W, lit("messages"), W],
            vec![("user_id", 2, 3), ("message.id", 4, 5)],
            None,
        ),
        (
            "/v1/{name=shelves/*/books/*}:publish",
            vec![lit("v1"), lit("shelves"), W, lit("books"), W],
            vec![("name", 1, 5)],
            Some("publish"),
        ),
        (
            "/v1/{name=**}",
            vec![lit("v1"), DW],
            vec![("name", 1, 2)],
            None,
        ),
        (
            "/v1/a/**:verb",
            vec![lit("v1"), lit("a"), DW],
            vec![],
            Some("verb"),
        ),
        ("/v1/*/x", vec![lit("v1"), W, lit("x")], vec![], None),
        ("/:check", vec![], vec![], Some("check")),
        (
            "/v1/inventory:batchGet",
            vec![lit("v1"), lit("inventory")],
            vec![],
            Some("batchGet"),
        ),
    ] {
        let got = PathTemplate::parse(template).unwrap_or_else(|e| panic!("{template}: {e}"));
        assert_eq!(got.segments, segments, "{template}");
        let got_vars: Vec<_> = got
            .variables
            .iter()
            .map(|v| (v.field_path_string(), v.start, v.end))
            .collect();
        let want_vars: Vec<_> = vars
            .into_iter()
            .map(|(f, s, e)| (f.to_owned(), s, e))
            .collect();
        assert_eq!(got_vars, want_vars, "{template}");
        assert_eq!(got.verb.as_deref(), verb, "{template}");
    }
}

#[test]
fn rejects_bad_templates() {
    for (template, want) in [
        ("v1/x", "must start with '/'"),
        ("", "must start with '/'"),
        ("/v1/{name", "unexpected end"),
        ("/v1/{name=a/{b}}", "cannot be nested"),
        ("/v1/**/x", "'**' must be the last"),
        ("/v1/{a}/{a}", "bound more than once"),
        ("/v1//x", "unexpected '/'"),
        ("/v1/x/", "unexpected end"),
        ("/v1/{1a}", "unexpected '1'"),
        ("/v1/{a b}", "unexpected ' '"),
        ("/v1/x:", "unexpected end"),
        ("/v1/x:a/b", "unexpected '/'"),
        ("/v1/../x", "'.' and '..'"),
        ("/v1/{}", "unexpected '}'"),
        ("/v1/x}", "unexpected '}'"),
        ("/v1/a=b", "unexpected '='"),
    ] {
        let err = PathTemplate::parse(template)
            .map(|t| format!("parsed as {t:?}"))
            .unwrap_err_or_msg();
        assert!(
            err.contains(want),
            "{template:?}: got {err:?}, want {want:?}"
        );
    }
}

trait ErrOrMsg {
    fn unwrap_err_or_msg(self) -> String;
}
impl ErrOrMsg for Result<String, TemplateError> {
    fn unwrap_err_or_msg(self) -> String {
        match self {
            Ok(s) => s,
            Err(e) => e.to_string(),
        }
    }
}

/// A route table whose one route is `GET template`, on a request message
/// with the fields the capture cases bind (`name`, `id`, `a.b.c`).
fn table_for(template: &str) -> RouteTable {
    let proto = format!(
        r#"
syntax = "proto3";
package t.v1;
import "google/api/annotations.proto";

message C {{ string c = 1; }}
message B {{ C b = 1; }}
message Req {{ string name = 1; string id = 2; B a = 3; }}
message Resp {{}}

service T {{
  rpc Get(Req) returns (Resp) {{ option (google.api.http) = {{ get: "{template}" }}; }}
}}
"#
    );
    let table = RouteTable::build(&pool_from_source(&proto), &config::for_test("t.v1.T", ""))
        .unwrap_or_else(|e| panic!("{template}: {e}"));
    assert!(
        table.problems().is_empty(),
        "{template}: {:?}",
        table.problems()
    );
    table
}

/// Matching and decoding of one template, through the route table that
/// serves it.
#[test]
fn captures_and_decodes() {
    for (template, path, field, want) in [
        (
            "/v1/{name=shelves/*}",
            "/v1/shelves/1",
            "name",
            Some("shelves/1"),
        ),
        ("/v1/{name=shelves/*}", "/v1/books/1", "name", None),
        ("/v1/users/{id}", "/v1/users/42", "id", Some("42")),
        ("/v1/users/{id}", "/v1/users/", "id", None),
        ("/v1/users/{id}", "/v1/users/42/x", "id", None),
        // Single-segment variables decode everything, %2F included.
        ("/v1/users/{id}", "/v1/users/a%2Fb%20c", "id", Some("a/b c")),
        // Multi-segment variables keep %2F encoded.
        (
            "/v1/{name=**}",
            "/v1/a/b%2Fc/d%20e",
            "name",
            Some("a/b%2Fc/d e"),
        ),
        (
            "/v1/{name=shelves/*}",
            "/v1/shelves/a%2fb",
            "name",
            Some("shelves/a%2fb"),
        ),
        ("/v1/{name=**}", "/v1", "name", Some("")),
        (
            "/v1/{name=**}:undelete",
            "/v1/a/b:undelete",
            "name",
            Some("a/b"),
        ),
        ("/v1/{name=**}:undelete", "/v1/a/b", "name", None),
        ("/v1/{name=a/**}", "/v1/a/b/c", "name", Some("a/b/c")),
        ("/v1/{name=a/**}", "/v1/b/c", "name", None),
        // Literals match percent-encoded requests.
        ("/v1/shelves/{id}", "/v1/shel%76es/7", "id", Some("7")),
        ("/v1/x/{id}:cancel", "/v1/x/7:cancel", "id", Some("7")),
        ("/v1/x/{id}", "/v1/x/7:cancel", "id", Some("7:cancel")),
        ("/v1/{a.b.c}", "/v1/%E2%9C%93", "a.b.c", Some("\u{2713}")),
    ] {
        let table = table_for(template);
        let got = table.lookup(&Method::GET, path).ok().and_then(|found| {
            let var = found
                .route
                .template
                .variables
                .iter()
                .position(|v| v.field_path_string() == field)?;
            found.values.get(var).cloned()
        });
        assert_eq!(got.as_deref(), want, "{template} vs {path}");
    }
}

#[test]
fn malformed_escapes_are_detected() {
    for (raw, want) in [
        ("/v1/things/a", true),
        ("/v1/things/a%20b", true),
        ("/v1/%E2%9C%93", true),
        ("%2f%2F", true),
        ("%41%", false),
        ("/v1/things/a%zzb", false),
        ("/v1/things/%", false),
        ("/v1/things/%4", false),
        ("/v1/things/%4g", false),
        ("/v1/things/%g4", false),
        ("/v1/x:ver%zz", false),
        ("%%41", false),
        // Not ASCII after the `%`: not an escape, and no panic on a char boundary.
        ("%\u{e9}", false),
        ("%4\u{e9}", false),
    ] {
        assert_eq!(has_valid_escapes(raw), want, "{raw:?}");
    }
}

#[test]
fn dot_segments_are_detected() {
    for (seg, want) in [
        (".", true),
        ("..", true),
        ("%2e", true),
        ("%2E%2e", true),
        ("...", false),
        ("a.", false),
    ] {
        assert_eq!(is_dot_segment(seg), want, "{seg}");
    }
}
