//! One field value from one string, as path variables and query parameters carry them.
//!
//! Scalars follow proto3 JSON's string forms (`"NaN"`, base64 bytes, enum
//! names or numbers); well-known types take their JSON string forms
//! (RFC 3339 timestamps, `"1.5s"` durations, comma-separated field masks) and
//! wrappers take their inner scalar.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};

/// Parses `text` as a value of `field`'s kind (for a repeated field: one element).
///
/// # Errors
/// A lower-case reason such as `expected int32`.
pub fn parse(field: &FieldDescriptor, text: &str) -> Result<Value, String> {
    parse_kind(&field.kind(), text)
}

fn parse_kind(kind: &Kind, text: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("expected {what}");
    Ok(match kind {
        Kind::Double => Value::F64(parse_float(text, f64::MAX).ok_or_else(|| bad("a double"))?),
        Kind::Float => {
            Value::F32(parse_float(text, f64::from(f32::MAX)).ok_or_else(|| bad("a float"))? as f32)
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(text.parse().map_err(|_| bad("int32"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(text.parse().map_err(|_| bad("int64"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(text.parse().map_err(|_| bad("uint32"))?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(text.parse().map_err(|_| bad("uint64"))?),
        Kind::Bool => Value::Bool(match text {
            "true" | "True" | "TRUE" | "1" => true,
            "false" | "False" | "FALSE" | "0" => false,
            _ => return Err(bad("true or false")),
        }),
        Kind::String => Value::String(text.to_owned()),
        Kind::Bytes => Value::Bytes(
            [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .ok_or_else(|| bad("base64"))?
                .into(),
        ),
        Kind::Enum(e) => {
            let value = match e.get_value_by_name(text) {
                Some(v) => v,
                None => text
                    .parse::<i32>()
                    .ok()
                    .and_then(|n| e.get_value(n))
                    .ok_or_else(|| format!("unknown value {text:?} for enum {}", e.full_name()))?,
            };
            Value::EnumNumber(value.number())
        }
        Kind::Message(m) => Value::Message(parse_well_known(m, text)?),
    })
}

/// proto3 JSON floats: decimal, exponent, `NaN`, `Infinity`, `-Infinity`;
/// finite numbers beyond `max` are out of range rather than infinite.
fn parse_float(text: &str, max: f64) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        // Rust also accepts "inf"/"nan" spellings that proto3 JSON does not.
        t if t
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        t => t.parse::<f64>().ok().filter(|f| f.abs() <= max),
    }
}

/// Whether a message type can be set from one string.
pub fn is_scalar_like(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

fn parse_well_known(message: &MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    match message.full_name() {
        "google.protobuf.Timestamp" | "google.protobuf.Duration" => {
            // prost-reflect owns the RFC 3339 / "1.5s" grammars; reuse them via a JSON string.
            let quoted = serde_json::to_string(text).map_err(|e| e.to_string())?;
            let mut de = serde_json::Deserializer::from_str(&quoted);
            DynamicMessage::deserialize(message.clone(), &mut de).map_err(|_| {
                if message.full_name() == "google.protobuf.Timestamp" {
                    "expected an RFC 3339 timestamp such as 2026-01-15T09:30:00Z".to_owned()
                } else {
                    "expected a duration such as 1.5s".to_owned()
                }
            })
        }
        "google.protobuf.FieldMask" => {
            let mut mask = DynamicMessage::new(message.clone());
            let paths = text
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(snake_case_path(p)))
                .collect();
            mask.set_field_by_name("paths", Value::List(paths));
            Ok(mask)
        }
        name if is_scalar_like(message) && name.ends_with("Value") => {
            let inner = message
                .get_field_by_name("value")
                .ok_or_else(|| format!("{name} has no value field"))?;
            let mut wrapper = DynamicMessage::new(message.clone());
            wrapper.set_field(&inner, parse_kind(&inner.kind(), text)?);
            Ok(wrapper)
        }
        name => Err(format!("{name} cannot be set from a single string")),
    }
}

/// `displayName.firstPart` → `display_name.first_part`; snake_case is kept as is.
fn snake_case_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for (i, c) in path.chars().enumerate() {
        if c.is_ascii_uppercase() {
            // Not before the first letter: "ID" is "i_d", never "_i_d".
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::pool_from_source;

    const PROTO: &str = r#"
syntax = "proto3";
package v;
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";
enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }
message All {
  double d = 1; float f = 2; int32 i32 = 3; int64 i64 = 4; uint32 u32 = 5; uint64 u64 = 6;
  sint32 s32 = 7; sint64 s64 = 8; fixed32 fx32 = 9; fixed64 fx64 = 10; sfixed32 sf32 = 11; sfixed64 sf64 = 12;
  bool b = 13; string s = 14; bytes by = 15; Color color = 16;
  google.protobuf.Timestamp ts = 17; google.protobuf.Duration dur = 18; google.protobuf.FieldMask mask = 19;
  google.protobuf.Int32Value w32 = 20; google.protobuf.StringValue ws = 21; google.protobuf.BoolValue wb = 22;
  google.protobuf.Struct st = 23;
}
"#;

    #[test]
    fn parses_every_kind() {
        let pool = pool_from_source(PROTO);
        let msg = pool.get_message_by_name("v.All").unwrap();
        for (field, text, want) in [
            ("d", "1.5", Ok("F64(1.5)")),
            ("d", "-Infinity", Ok("F64(-inf)")),
            ("d", "inf", Err("expected a double")),
            ("d", "1e999", Err("expected a double")),
            ("f", "1e39", Err("expected a float")),
            ("f", "-3.4e38", Ok("F32(-3.4e38)")),
            ("d", "1e3", Ok("F64(1000.0)")),
            ("f", "NaN", Ok("F32(NaN)")),
            ("i32", "-7", Ok("I32(-7)")),
            ("i32", "abc", Err("expected int32")),
            ("i32", "2147483648", Err("expected int32")),
            ("i64", "9007199254740993", Ok("I64(9007199254740993)")),
            ("u32", "-1", Err("expected uint32")),
            (
                "u64",
                "18446744073709551615",
                Ok("U64(18446744073709551615)"),
            ),
            ("s32", "-3", Ok("I32(-3)")),
            ("s64", "-3", Ok("I64(-3)")),
            ("fx32", "3", Ok("U32(3)")),
            ("fx64", "3", Ok("U64(3)")),
            ("sf32", "-3", Ok("I32(-3)")),
            ("sf64", "-3", Ok("I64(-3)")),
            ("b", "true", Ok("Bool(true)")),
            ("b", "0", Ok("Bool(false)")),
            ("b", "yes", Err("expected true or false")),
            ("s", "a b", Ok("String(\"a b\")")),
            ("by", "aGk=", Ok("Bytes(b\"hi\")")),
            ("by", "aGk", Ok("Bytes(b\"hi\")")),
            ("by", "-_8", Ok("Bytes(b\"\\xfb\\xff\")")),
            ("by", "!!", Err("expected base64")),
            ("color", "GREEN", Ok("EnumNumber(2)")),
            ("color", "1", Ok("EnumNumber(1)")),
            (
                "color",
                "PURPLE",
                Err("unknown value \"PURPLE\" for enum v.Color"),
            ),
            ("color", "9", Err("unknown value \"9\" for enum v.Color")),
            ("ts", "bad", Err("expected an RFC 3339 timestamp")),
            ("dur", "1h", Err("expected a duration such as 1.5s")),
            (
                "st",
                "{}",
                Err("google.protobuf.Struct cannot be set from a single string"),
            ),
            ("w32", "x", Err("expected int32")),
        ] {
            let f = msg.get_field_by_name(field).unwrap();
            let got = parse(&f, text).map(|v| format!("{v:?}"));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{field}={text}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{field}={text}: {got}"),
                (got, want) => panic!("{field}={text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn parses_well_known_types() {
        let pool = pool_from_source(PROTO);
        let msg = pool.get_message_by_name("v.All").unwrap();
        let json = |field: &str, text: &str| {
            let f = msg.get_field_by_name(field).unwrap();
            let Value::Message(m) = parse(&f, text).unwrap() else {
                panic!("{field}: not a message")
            };
            serde_json::to_string(&m).unwrap()
        };
        assert_eq!(
            json("ts", "2026-01-15T09:30:00Z"),
            "\"2026-01-15T09:30:00Z\""
        );
        assert_eq!(
            json("ts", "2026-01-15T10:30:00+01:00"),
            "\"2026-01-15T09:30:00Z\""
        );
        assert_eq!(json("dur", "1.5s"), "\"1.500s\"");
        assert_eq!(
            json("mask", "displayName, email,address.postal_code"),
            "\"displayName,email,address.postalCode\""
        );
        assert_eq!(json("w32", "5"), "5");
        assert_eq!(json("ws", "hi"), "\"hi\"");
        assert_eq!(json("wb", "false"), "false");
    }
}
