//! Request message building: body, then path variables, then query parameters.
//!
//! The body is read once for duplicate keys ([`duplicate_keys`]), then
//! deserialized straight from bytes into a `DynamicMessage` (no
//! `serde_json::Value` step). Path variables then set their fields, so the
//! path wins over the body; the query may only set fields neither binds.

use prost::Message;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, MessageDescriptor, Value,
};
use serde::de::{DeserializeSeed, IgnoredAny};

use super::{TranscodeError, duplicate_keys, query, value};
use crate::config::UnknownFields;
use crate::http_rule::{BodyRule, Route};

/// Builds and encodes the request message for `route`.
///
/// `values` are the captured path values (parallel to `route.path_fields`),
/// `query` the raw query string and `body` the raw body.
///
/// # Errors
/// A [`TranscodeError`] naming the parameter, variable or JSON field at fault.
pub fn request(
    route: &Route,
    values: &[String],
    query: Option<&str>,
    body: &[u8],
) -> Result<Vec<u8>, TranscodeError> {
    let input = route.method.input();
    let body = body.trim_ascii();
    let mut message = match &route.body {
        BodyRule::None => {
            check_unbound_body(body, route.unknown_json_fields)?;
            DynamicMessage::new(input)
        }
        BodyRule::Whole if body.is_empty() => DynamicMessage::new(input),
        BodyRule::Whole => deserialize(input, body, route.unknown_json_fields, "")?,
        BodyRule::Field(path) => {
            let mut message = DynamicMessage::new(input);
            if !body.is_empty() {
                let value =
                    body_field_value(path.leaf(), body, route.unknown_json_fields, path.dotted())?;
                slot(&mut message, path.parents())?.set_field(path.leaf(), value);
            }
            message
        }
    };

    for (path, raw) in route.path_fields.iter().zip(values) {
        let parsed =
            value::parse(path.leaf(), raw).map_err(|reason| TranscodeError::InvalidPathValue {
                field: path.dotted().to_owned(),
                value: raw.clone(),
                reason,
            })?;
        slot(&mut message, path.parents())?.set_field(path.leaf(), parsed);
    }

    if let Some(query) = query.filter(|q| !q.is_empty()) {
        query::apply(&mut message, route, query)?;
    }
    Ok(message.encode_to_vec())
}

/// Checks the body sent to a binding without `body`, where no body field is
/// mapped: nothing, `{}` and `null` (what many clients send with every
/// request) are fine. Under `reject` anything else is an error; under
/// `ignore` any JSON is dropped, but what is not JSON still is an error.
/// `body` is already trimmed.
///
/// # Errors
/// [`TranscodeError::BodyFields`] naming the keys of an object,
/// [`TranscodeError::UnexpectedBody`] for other JSON, and
/// [`TranscodeError::InvalidBody`] for what is not JSON.
pub(super) fn check_unbound_body(
    body: &[u8],
    unknown: UnknownFields,
) -> Result<(), TranscodeError> {
    if body.is_empty() {
        return Ok(());
    }
    let reject = unknown == UnknownFields::Reject;
    let mut json = serde_json::Deserializer::from_slice(body);
    let shape = UnboundBody { keys: reject }
        .deserialize(&mut json)
        .and_then(|shape| json.end().map(|()| shape))
        .map_err(|e| TranscodeError::InvalidBody {
            field: None,
            reason: e.to_string(),
        })?;
    match shape {
        Unbound::Fields(fields) if reject => Err(TranscodeError::BodyFields { fields }),
        Unbound::Other if reject => Err(TranscodeError::UnexpectedBody),
        _ => Ok(()),
    }
}

/// What a body on a binding without `body` holds.
enum Unbound {
    /// `{}` or `null`.
    Empty,
    /// An object's keys as sent, each once (empty unless asked for).
    Fields(Vec<String>),
    /// Any other JSON value.
    Other,
}

/// Reads any JSON value to its [`Unbound`] shape; `keys`: collect an object's keys.
struct UnboundBody {
    keys: bool,
}

impl<'de> DeserializeSeed<'de> for UnboundBody {
    type Value = Unbound;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Unbound, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UnboundBody {
    type Value = Unbound;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Unbound, E> {
        Ok(Unbound::Empty)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Unbound, A::Error> {
        let mut fields = Vec::new();
        let mut any = false;
        if self.keys {
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                any = true;
                if !fields.contains(&key) {
                    fields.push(key);
                }
            }
        } else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                any = true;
            }
        }
        Ok(if any {
            Unbound::Fields(fields)
        } else {
            Unbound::Empty
        })
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Unbound, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Unbound::Other)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Unbound, E> {
        Ok(Unbound::Other)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Unbound, E> {
        Ok(Unbound::Other)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Unbound, E> {
        Ok(Unbound::Other)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Unbound, E> {
        Ok(Unbound::Other)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Unbound, E> {
        Ok(Unbound::Other)
    }
}

/// The message that holds the last field of a path, creating parents on the way.
pub(super) fn slot<'a>(
    message: &'a mut DynamicMessage,
    parents: &[FieldDescriptor],
) -> Result<&'a mut DynamicMessage, TranscodeError> {
    let mut current = message;
    for field in parents {
        current = match current.get_field_mut(field) {
            Value::Message(m) => m,
            // Route building only resolves paths through singular message fields.
            _ => {
                return Err(TranscodeError::Internal(format!(
                    "{} is not a message field",
                    field.full_name()
                )));
            }
        };
    }
    Ok(current)
}

/// Parses the body as the value of one field (`body: "field"`).
fn body_field_value(
    leaf: &FieldDescriptor,
    body: &[u8],
    unknown: UnknownFields,
    dotted: &str,
) -> Result<Value, TranscodeError> {
    if let prost_reflect::Kind::Message(m) = leaf.kind()
        && !leaf.is_list()
        && !leaf.is_map()
    {
        return Ok(Value::Message(deserialize(m, body, unknown, dotted)?));
    }
    // Repeated, map and scalar fields have no standalone deserializer: parse
    // `{"<field>": <body>}` into the parent type and take the field back out.
    // The body must first be one JSON value on its own, or `["a"], "x": 1`
    // would smuggle a sibling field in.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        return Err(TranscodeError::InvalidBody {
            field: Some(dotted.to_owned()),
            reason: format!("{dotted}: {e}"),
        });
    }
    let mut wrapped = Vec::with_capacity(body.len() + leaf.name().len() + 5);
    wrapped.extend_from_slice(b"{\"");
    wrapped.extend_from_slice(leaf.name().as_bytes());
    wrapped.extend_from_slice(b"\":");
    wrapped.extend_from_slice(body);
    wrapped.push(b'}');
    let parent_prefix = dotted.rsplit_once('.').map_or("", |(p, _)| p);
    let parent = deserialize(
        leaf.parent_message().clone(),
        &wrapped,
        unknown,
        parent_prefix,
    )?;
    Ok(parent.get_field(leaf).into_owned())
}

/// Deserializes `body` as a `desc` message; `prefix` is the dotted path of
/// where it sits in the request, for error paths.
/// The name in prost-reflect's "unrecognized field name 'x'" error.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split_once("unrecognized field name '")?.1;
    rest.split_once('\'').map(|(name, _)| name)
}

fn deserialize(
    desc: MessageDescriptor,
    body: &[u8],
    unknown: UnknownFields,
    prefix: &str,
) -> Result<DynamicMessage, TranscodeError> {
    // prost-reflect lets the last of two equal keys win, so look first.
    if let Some(duplicate) = duplicate_keys::find(&desc, body) {
        let path = duplicate.path();
        let field = match prefix {
            "" => path,
            p if path.starts_with('[') => format!("{p}{path}"),
            p => format!("{p}.{path}"),
        };
        return Err(TranscodeError::InvalidBody {
            reason: format!("{field}: {}", duplicate.reason),
            field: Some(field),
        });
    }
    let options = DeserializeOptions::new().deny_unknown_fields(unknown == UnknownFields::Reject);
    let mut json = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let result = DynamicMessage::deserialize_with_options(
        desc,
        serde_path_to_error::Deserializer::new(&mut json, &mut track),
        &options,
    )
    .and_then(|m| json.end().map(|()| m));
    result.map_err(|e| {
        let path = track.path().to_string();
        // serde_path_to_error writes "?" for a key it has not read yet.
        let path = path.trim_end_matches(".?");
        let field = match (prefix, path) {
            (p, "." | "?") => (!p.is_empty()).then(|| p.to_owned()),
            ("", path) => Some(path.to_owned()),
            (p, path) => Some(format!("{p}.{path}")),
        };
        // An unknown field's path ends at its message: name the field itself.
        let message = e.to_string();
        let field = match unknown_field(&message) {
            Some(name) => Some(match field {
                Some(parent) => format!("{parent}.{name}"),
                None => name.to_owned(),
            }),
            None => field,
        };
        TranscodeError::InvalidBody {
            reason: match &field {
                Some(f) => format!("{f}: {e}"),
                None => e.to_string(),
            },
            field,
        }
    })
}

/// A whole message from proto3 JSON, encoded: what a call that sends its
/// message as the body (Connect, gRPC's JSON codec) is built from, with no
/// HTTP rule between.
///
/// # Errors
/// [`TranscodeError::InvalidBody`] naming the field at fault.
pub fn message_from_json(
    desc: MessageDescriptor,
    body: &[u8],
    unknown: UnknownFields,
) -> Result<Vec<u8>, TranscodeError> {
    if body.trim_ascii().is_empty() {
        return Ok(Vec::new());
    }
    Ok(deserialize(desc, body, unknown, "")?.encode_to_vec())
}
