//! The effective config: the file as written with every default the JSON
//! Schema names filled in, in the file's own shape, for the admin API's
//! `/config`. The schema's defaults are checked against the code's by the
//! tests below, so what this shows is what the gateway runs with.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The config's JSON Schema as a value, built once.
fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::to_value(schemars::schema_for!(super::FileConfig)).unwrap_or_default()
    })
}

/// `written` with the schema's defaults added where a key is absent, and
/// the dotted paths of the keys that were added. A section with no default
/// (a backend's `health_check`, `server.tls`) stays absent: absent means off.
pub fn effective(written: &Value) -> (Value, Vec<String>) {
    let root = schema();
    let mut value = written.clone();
    let mut added = Vec::new();
    fill(&mut value, root, root, "", &mut added);
    (value, added)
}

/// The object schema a property's schema stands for: through `$ref`s and
/// the non-null branch of an `Option`'s `anyOf`.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    loop {
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        {
            match root.get("$defs").and_then(|d| d.get(name)) {
                Some(next) => schema = next,
                None => return schema,
            }
        } else if let Some(branch) = schema.get("anyOf").and_then(Value::as_array).and_then(|b| {
            b.iter()
                .find(|s| s.get("type") != Some(&Value::from("null")))
        }) {
            schema = branch;
        } else {
            return schema;
        }
    }
}

fn fill(value: &mut Value, schema: &Value, root: &Value, path: &str, added: &mut Vec<String>) {
    let schema = resolve(root, schema);
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                fill_properties(map, properties, root, path, added);
            } else if let Some(each) = schema.get("additionalProperties").filter(|s| s.is_object())
            {
                for (key, inner) in map.iter_mut() {
                    fill(inner, each, root, &join(path, key), added);
                }
            }
        }
        Value::Array(items) => {
            if let Some(each) = schema.get("items") {
                for (i, inner) in items.iter_mut().enumerate() {
                    fill(inner, each, root, &format!("{path}[{i}]"), added);
                }
            }
        }
        _ => {}
    }
}

fn fill_properties(
    map: &mut Map<String, Value>,
    properties: &Map<String, Value>,
    root: &Value,
    path: &str,
    added: &mut Vec<String>,
) {
    for (key, property) in properties {
        let here = join(path, key);
        if !map.contains_key(key) {
            let Some(default) = property.get("default") else {
                continue;
            };
            // Null, "" or an empty list is the same as absent; it says nothing.
            let empty = match default {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                _ => false,
            };
            if empty {
                continue;
            }
            if !default.is_object() {
                added.push(here.clone());
            }
            map.insert(key.clone(), default.clone());
        }
        if let Some(inner) = map.get_mut(key) {
            fill(inner, property, root, &here, added);
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Keys whose values are secrets: JWT secrets, API key hashes, private
/// keys, passwords and tokens.
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "secret",
        "sha256",
        "password",
        "token",
        "private",
        "credential",
    ]
    .iter()
    .any(|word| key.contains(word))
        || key == "key"
        || key.ends_with("_key")
}

/// Replaces every secret value with `"<redacted>"`: values of
/// [`secret_key`]s and anything that looks like a PEM private key.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if secret_key(key) && !inner.is_null() && !inner.is_boolean() {
                    *inner = Value::String("<redacted>".to_owned());
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) if s.contains("PRIVATE KEY") => {
            *s = "<redacted>".to_owned();
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Files that between them reach every section with defaults: each is
    /// read as written and again with the schema's defaults filled in, and
    /// both must give the same config. A schema default that is not the
    /// code's changes the second.
    const FILES: &[&str] = &[
        "backends:\n  b:\n    address: http://127.0.0.1:1\n    reflection: true\n",
        r"
server:
  tls: { cert: c.pem, key: k.pem, client_ca: ca.pem }
backends:
  b:
    address: http://127.0.0.1:1
    services: [a.B]
    health_check: {}
    retry: {}
  c:
    address: http://127.0.0.1:2
    reflection: true
    required: true
descriptors:
  protos: [a.proto]
cors:
  allowed_origins: [https://app.example]
auth:
  jwt:
    dev: { issuer: dev, audiences: [api], algorithms: [HS256], secret: s3cret }
  api_keys:
    keys: [{ name: ci, sha256: '0000000000000000000000000000000000000000000000000000000000000000' }]
methods:
  a.B.C: { timeout: 2s }
apis:
  - services: [a.B]
    prefix: /api
mcp:
  enabled: true
  tools: [a.B.*]
rate_limit:
  by_caller: { requests: 5, per: 1s }
tracing:
  otlp_endpoint: http://127.0.0.1:4317
",
    ];

    fn read(text: &str) -> String {
        let mut config = super::super::parse(text, Path::new("gateway.yaml")).unwrap();
        config.written = Default::default();
        format!("{config:?}")
    }

    #[test]
    fn the_schema_defaults_are_the_code_defaults() {
        for text in FILES {
            let written: Value = serde_norway::from_str(text).unwrap();
            let (filled, added) = effective(&written);
            assert!(added.len() > 20, "few defaults filled in: {added:?}");
            let filled_text = serde_norway::to_string(&filled).unwrap();
            assert_eq!(read(text), read(&filled_text), "filled in:\n{filled_text}");
        }
    }

    #[test]
    fn defaults_fill_what_is_absent_and_keep_what_is_written() {
        let written = serde_json::json!({
            "server": { "listen": "0.0.0.0:9000" },
            "backends": { "b": { "address": "http://x:1", "timeout": "2s" } },
        });
        let (filled, added) = effective(&written);
        assert_eq!(filled["server"]["listen"], "0.0.0.0:9000");
        assert_eq!(filled["server"]["max_uri_bytes"], 8192);
        assert_eq!(filled["backends"]["b"]["timeout"], "2s");
        assert_eq!(filled["backends"]["b"]["connect_timeout"], "5s");
        assert_eq!(
            filled["backends"]["b"]["outlier_detection"]["window"],
            "10s"
        );
        assert_eq!(filled["reload"]["debounce"], "500ms");
        // Absent means off: no defaults invent these sections.
        assert!(filled["backends"]["b"].get("health_check").is_none());
        assert!(filled["server"].get("tls").is_none());
        assert!(filled.get("cors").is_none());
        assert!(added.contains(&"backends.b.outlier_detection.window".to_owned()));
        assert!(
            !added
                .iter()
                .any(|p| p == "server.listen" || p == "backends.b.timeout")
        );
    }

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let mut value = serde_json::json!({
            "auth": {
                "jwt": { "dev": { "issuer": "dev", "secret": "s3cret", "secret_env": "JWT_SECRET" } },
                "api_keys": { "keys": [ { "name": "ci", "sha256": "ab12", "scopes": ["read"] } ] },
                "forward": { "credentials": false },
            },
            "server": { "tls": { "cert": "c.pem", "key": "k.pem" } },
            "backends": { "b": { "tls": { "client_key": "x.pem", "ca": "ca.pem" } } },
            "inline": "-----BEGIN PRIVATE KEY-----\nMII...",
            "rate_limit": { "per_caller": { "requests_per_second": 5 } },
        });
        redact(&mut value);
        assert_eq!(value["auth"]["jwt"]["dev"]["secret"], "<redacted>");
        assert_eq!(value["auth"]["jwt"]["dev"]["secret_env"], "<redacted>");
        assert_eq!(value["auth"]["jwt"]["dev"]["issuer"], "dev");
        assert_eq!(value["auth"]["api_keys"]["keys"][0]["sha256"], "<redacted>");
        assert_eq!(value["auth"]["api_keys"]["keys"][0]["name"], "ci");
        assert_eq!(value["auth"]["forward"]["credentials"], false);
        assert_eq!(value["server"]["tls"]["key"], "<redacted>");
        assert_eq!(value["server"]["tls"]["cert"], "c.pem");
        assert_eq!(value["backends"]["b"]["tls"]["client_key"], "<redacted>");
        assert_eq!(value["backends"]["b"]["tls"]["ca"], "ca.pem");
        assert_eq!(value["inline"], "<redacted>");
        assert_eq!(value["rate_limit"]["per_caller"]["requests_per_second"], 5);
    }
}
