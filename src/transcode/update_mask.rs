//! AIP-134: a PATCH that sends no `update_mask` updates what its body names.
//!
//! As grpc-gateway's `allow_patch_feature`: the mask is filled from the
//! keys present in the body field, nested objects of singular messages as
//! dotted paths, by proto names. A well-known type (`Timestamp`, `Struct`,
//! ...), a map, a list or an empty object is one path of its own. A field
//! the URL path binds names the resource and is left out.

use prost::encoding::{WireType, encode_key, encode_varint};
use prost_reflect::{Kind, MessageDescriptor};
use serde_json::{Map, Value};

use crate::http_rule::{BodyRule, Route};

/// Appends the mask the body names to `wire`, when the route fills one and
/// the client sent none in the query.
pub(super) fn fill(route: &Route, query: Option<&str>, body: &[u8], wire: &mut Vec<u8>) {
    let Some(mask) = &route.fill_update_mask else {
        return;
    };
    let names_mask = |key: &str| {
        [mask.name(), mask.json_name()]
            .iter()
            .any(|n| key == *n || key.strip_prefix(n).is_some_and(|r| r.starts_with('.')))
    };
    if query.is_some_and(|q| {
        q.split('&')
            .any(|kv| names_mask(kv.split('=').next().unwrap_or_default()))
    }) {
        return;
    }
    let BodyRule::Field(path) = &route.body else {
        return;
    };
    let Kind::Message(resource) = path.leaf().kind() else {
        return;
    };
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let mut paths = Vec::new();
    collect(&resource, &object, "", &mut paths);
    // What the URL binds identifies the resource; the body cannot change it.
    let prefix = format!("{}.", path.dotted());
    paths.retain(|p| {
        !route
            .path_fields
            .iter()
            .any(|bound| bound.dotted().strip_prefix(&prefix) == Some(p.as_str()))
    });
    let mut encoded = Vec::new();
    for p in &paths {
        prost::encoding::string::encode(1, p, &mut encoded);
    }
    encode_key(mask.number(), WireType::LengthDelimited, wire);
    encode_varint(encoded.len() as u64, wire);
    wire.extend_from_slice(&encoded);
}

/// The paths of `object`'s keys in `message`, after `prefix`.
fn collect(
    message: &MessageDescriptor,
    object: &Map<String, Value>,
    prefix: &str,
    out: &mut Vec<String>,
) {
    for (key, value) in object {
        let Some(field) = message
            .get_field_by_json_name(key)
            .or_else(|| message.get_field_by_name(key))
        else {
            continue;
        };
        let name = format!("{prefix}{}", field.name());
        match (field.kind(), value) {
            (Kind::Message(inner), Value::Object(nested))
                if !field.is_list()
                    && !field.is_map()
                    && !nested.is_empty()
                    && !inner.full_name().starts_with("google.protobuf.") =>
            {
                collect(&inner, nested, &format!("{name}."), out);
            }
            _ => out.push(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_name_the_body_keys_by_proto_name() {
        let pool = crate::descriptor::pool_from_source(
            r#"syntax = "proto3"; package t;
            import "google/protobuf/field_mask.proto";
            import "google/protobuf/timestamp.proto";
            message Address { string city = 1; string zip_code = 2; }
            message User {
              string display_name = 1; Address address = 2; map<string, string> labels = 3;
              google.protobuf.Timestamp birth_time = 4; repeated string tags = 5;
            }"#,
        );
        let user = pool.get_message_by_name("t.User").unwrap();
        for (body, want) in [
            (r#"{"displayName": "x"}"#, vec!["display_name"]),
            (r#"{"display_name": "x"}"#, vec!["display_name"]),
            (
                r#"{"address": {"zipCode": "1", "city": "A"}}"#,
                vec!["address.city", "address.zip_code"],
            ),
            (r#"{"address": {}}"#, vec!["address"]),
            (r#"{"labels": {"a": "b"}}"#, vec!["labels"]),
            (
                r#"{"birthTime": "2020-01-01T00:00:00Z"}"#,
                vec!["birth_time"],
            ),
            (r#"{"tags": ["a"], "nope": 1}"#, vec!["tags"]),
        ] {
            let Ok(Value::Object(object)) = serde_json::from_str::<Value>(body) else {
                panic!("{body}");
            };
            let mut got = Vec::new();
            collect(&user, &object, "", &mut got);
            assert_eq!(got, want, "{body}");
        }
    }
}
