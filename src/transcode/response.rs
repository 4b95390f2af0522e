//! Reply bytes into proto3 JSON, honouring `response_body` and the JSON options.
//!
//! Messages serialize straight into the output buffer through prost-reflect.
//! A `response_body` field that is not a message (a repeated field, a map or
//! a scalar) is written by [`FieldValue`] with the same proto3 JSON rules.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, SerializeOptions, Value};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::TranscodeError;
use crate::config::JsonOptions;
use crate::http_rule::Route;

/// Decodes the reply for `route` and writes it as JSON.
///
/// # Errors
/// [`TranscodeError::BadReply`] when the bytes are not a valid output message.
pub fn response(
    route: &Route,
    reply: &[u8],
    json: &JsonOptions,
) -> Result<Vec<u8>, TranscodeError> {
    let output = route.method.output();
    let bad = |reason: String| TranscodeError::BadReply {
        message: output.full_name().to_owned(),
        reason,
    };
    let message = DynamicMessage::decode(output.clone(), reply).map_err(|e| bad(e.to_string()))?;
    let options = serialize_options(json);
    let mut out = Vec::with_capacity(reply.len() * 2 + 16);
    let mut ser = serde_json::Serializer::new(&mut out);
    let written = match &route.response_body {
        None => message.serialize_with_options(&mut ser, &options),
        Some(path) => {
            let mut current = message;
            let (parents, leaf) = path.fields().split_at(path.fields().len() - 1);
            for field in parents {
                current = match current.get_field(field).into_owned() {
                    Value::Message(m) => m,
                    _ => return Err(bad(format!("{} is not a message", field.name()))),
                };
            }
            let value = current.get_field(&leaf[0]);
            FieldValue {
                field: &leaf[0],
                value: &value,
                options: &options,
                json,
            }
            .serialize(&mut ser)
        }
    };
    written.map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

/// prost-reflect options for the configured JSON output.
pub fn serialize_options(json: &JsonOptions) -> SerializeOptions {
    SerializeOptions::new()
        .skip_default_fields(!json.emit_unpopulated)
        .use_proto_field_name(json.use_proto_names)
        .use_enum_numbers(json.enums_as_ints)
}

/// One field's value in proto3 JSON.
struct FieldValue<'a> {
    field: &'a FieldDescriptor,
    value: &'a Value,
    options: &'a SerializeOptions,
    json: &'a JsonOptions,
}

impl Serialize for FieldValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&self.with(item))?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let value_field = self.field.kind();
                let value_field = match value_field {
                    Kind::Message(entry) => entry.map_entry_value_field(),
                    _ => return Err(serde::ser::Error::custom("map field without an entry type")),
                };
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    let key = match key {
                        MapKey::Bool(b) => b.to_string(),
                        MapKey::I32(n) => n.to_string(),
                        MapKey::I64(n) => n.to_string(),
                        MapKey::U32(n) => n.to_string(),
                        MapKey::U64(n) => n.to_string(),
                        MapKey::String(s) => s.clone(),
                    };
                    map.serialize_entry(
                        &key,
                        &FieldValue {
                            field: &value_field,
                            value,
                            options: self.options,
                            json: self.json,
                        },
                    )?;
                }
                map.end()
            }
            single => self.with(single).serialize(s),
        }
    }
}

impl<'a> FieldValue<'a> {
    fn with(&self, value: &'a Value) -> Single<'a> {
        Single {
            kind: self.field.kind(),
            value,
            options: self.options,
            json: self.json,
        }
    }
}

/// One non-repeated value.
struct Single<'a> {
    kind: Kind,
    value: &'a Value,
    options: &'a SerializeOptions,
    json: &'a JsonOptions,
}

impl Serialize for Single<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Message(m) => m.serialize_with_options(s, self.options),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::I32(n) => s.serialize_i32(*n),
            Value::U32(n) => s.serialize_u32(*n),
            // proto3 JSON writes 64-bit integers as strings: JavaScript numbers lose precision.
            Value::I64(n) => s.collect_str(n),
            Value::U64(n) => s.collect_str(n),
            Value::F32(f) if f.is_finite() => s.serialize_f32(*f),
            Value::F32(f) => float(s, f64::from(*f)),
            Value::F64(f) => float(s, *f),
            Value::String(text) => s.serialize_str(text),
            Value::Bytes(b) => s.serialize_str(&STANDARD.encode(b)),
            Value::EnumNumber(n) => match &self.kind {
                Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => s.serialize_unit(),
                Kind::Enum(e) if !self.json.enums_as_ints => match e.get_value(*n) {
                    Some(v) => s.serialize_str(v.name()),
                    None => s.serialize_i32(*n),
                },
                _ => s.serialize_i32(*n),
            },
            Value::List(_) | Value::Map(_) => {
                Err(serde::ser::Error::custom("nested repeated value"))
            }
        }
    }
}

fn float<S: Serializer>(s: S, f: f64) -> Result<S::Ok, S::Error> {
    if f.is_nan() {
        s.serialize_str("NaN")
    } else if f == f64::INFINITY {
        s.serialize_str("Infinity")
    } else if f == f64::NEG_INFINITY {
        s.serialize_str("-Infinity")
    } else {
        s.serialize_f64(f)
    }
}

/// A whole encoded message of type `desc` as proto3 JSON (see
/// [`super::request::message_from_json`]).
///
/// # Errors
/// [`TranscodeError::BadReply`] when the bytes are not a `desc`.
pub fn message_to_json(
    desc: prost_reflect::MessageDescriptor,
    bytes: &[u8],
    json: &JsonOptions,
) -> Result<Vec<u8>, TranscodeError> {
    let bad = |reason: String| TranscodeError::BadReply {
        message: desc.full_name().to_owned(),
        reason,
    };
    let message = DynamicMessage::decode(desc.clone(), bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(bytes.len() * 2 + 16);
    message
        .serialize_with_options(
            &mut serde_json::Serializer::new(&mut out),
            &serialize_options(json),
        )
        .map_err(|e| bad(e.to_string()))?;
    Ok(out)
}
