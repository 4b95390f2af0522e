//! AIP-154 etags: where a route's messages carry one, read from a reply's
//! wire bytes and written into a request's.

use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use crate::http_rule::{BodyRule, Route};

/// The `etag` fields of one route, found once when it is built.
#[derive(Debug, Clone, Default)]
pub struct EtagFields {
    /// The number of the reply's top-level `string etag`.
    pub reply: Option<u32>,
    /// Where a client's `If-Match` goes: the request's own `string etag`,
    /// else the body field's (the resource of an update).
    pub request: Option<(Vec<FieldDescriptor>, u32)>,
}

fn etag_of(message: &MessageDescriptor) -> Option<u32> {
    let field = message.get_field_by_name("etag")?;
    (field.kind() == Kind::String && !field.is_list()).then(|| field.number())
}

impl EtagFields {
    /// The etag fields of `route`'s messages.
    pub fn of(route: &Route) -> Self {
        let reply = if route.response_body.is_none() && !route.raw_response {
            etag_of(&route.method.output())
        } else {
            None
        };
        let input = route.method.input();
        let request = etag_of(&input).map(|n| (Vec::new(), n)).or_else(|| {
            let BodyRule::Field(path) = &route.body else {
                return None;
            };
            let leaf = path.leaf();
            let Kind::Message(resource) = leaf.kind() else {
                return None;
            };
            if leaf.is_list() || leaf.is_map() {
                return None;
            }
            let mut parents = path.parents().to_vec();
            parents.push(leaf.clone());
            etag_of(&resource).map(|n| (parents, n))
        });
        Self { reply, request }
    }
}

/// The last top-level string field `number` of `wire`; `None` when unset,
/// empty or not UTF-8.
pub fn read(mut wire: &[u8], number: u32) -> Option<String> {
    let mut found = None;
    while !wire.is_empty() {
        let (tag, wire_type) = decode_key(&mut wire).ok()?;
        if tag == number && wire_type == WireType::LengthDelimited {
            let len = usize::try_from(decode_varint(&mut wire).ok()?).ok()?;
            let bytes = wire.get(..len)?;
            found = std::str::from_utf8(bytes).ok().map(str::to_owned);
            wire = &wire[len..];
        } else {
            skip_field(wire_type, tag, &mut wire, DecodeContext::default()).ok()?;
        }
    }
    found.filter(|s| !s.is_empty())
}

/// The last top-level value of scalar `field` in `wire` as text: a string
/// as it is, an integer in decimal; `None` when unset or empty. Read from
/// the wire bytes, so a reply is not decoded for one field.
pub fn read_scalar(mut wire: &[u8], field: &FieldDescriptor) -> Option<String> {
    let number = field.number();
    let mut found = None;
    while !wire.is_empty() {
        let (tag, wire_type) = decode_key(&mut wire).ok()?;
        match wire_type {
            WireType::Varint if tag == number => {
                let v = decode_varint(&mut wire).ok()?;
                found = Some(match field.kind() {
                    Kind::Int32 | Kind::Int64 => (v as i64).to_string(),
                    Kind::Sint32 | Kind::Sint64 => {
                        ((v >> 1) as i64 ^ -((v & 1) as i64)).to_string()
                    }
                    Kind::Uint32 | Kind::Uint64 => v.to_string(),
                    _ => return None,
                });
            }
            WireType::LengthDelimited if tag == number && field.kind() == Kind::String => {
                let len = usize::try_from(decode_varint(&mut wire).ok()?).ok()?;
                let bytes = wire.get(..len)?;
                found = std::str::from_utf8(bytes).ok().map(str::to_owned);
                wire = &wire[len..];
            }
            _ => skip_field(wire_type, tag, &mut wire, DecodeContext::default()).ok()?,
        }
    }
    found.filter(|s| !s.is_empty())
}

/// Appends `value` as the etag at `at` (a later field wins on the wire,
/// and an embedded message merges, so it replaces what the body set).
pub fn write(at: &(Vec<FieldDescriptor>, u32), value: &str, wire: &mut Vec<u8>) {
    super::fast::request::put_nested(&at.0, wire, |out| {
        prost::encoding::string::encode(at.1, &value.to_owned(), out);
    });
}

/// An etag as the `ETag` header carries it: quoted, unless the value is
/// quoted already (`"v"` or `W/"v"`).
pub fn header_value(etag: &str) -> String {
    if etag.starts_with('"') || etag.starts_with("W/\"") {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

/// The etag an `If-Match` value names, as the field holds it: the quotes
/// [`header_value`] added taken off; `None` for `*`.
pub fn from_header(value: &str) -> Option<String> {
    let value = value.trim();
    if value == "*" || value.is_empty() {
        return None;
    }
    Some(
        value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map_or_else(|| value.to_owned(), str::to_owned),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_read_from_the_wire_and_quoted_once() {
        let mut wire = Vec::new();
        prost::encoding::string::encode(1, &"name".to_owned(), &mut wire);
        prost::encoding::string::encode(7, &"v1".to_owned(), &mut wire);
        prost::encoding::int32::encode(8, &5, &mut wire);
        prost::encoding::string::encode(7, &"v2".to_owned(), &mut wire);
        assert_eq!(read(&wire, 7).as_deref(), Some("v2"));
        assert_eq!(read(&wire, 9), None);
        assert_eq!(read(&[0xff], 7), None);
        let pool = crate::descriptor::pool_from_source(
            "syntax = \"proto3\"; package t; message M { string name = 1; int64 id = 10; sint32 s = 11; }",
        );
        let m = pool.get_message_by_name("t.M").unwrap();
        let mut ints = Vec::new();
        prost::encoding::int64::encode(10, &-3, &mut ints);
        prost::encoding::sint32::encode(11, &-5, &mut ints);
        prost::encoding::string::encode(1, &"users/1".to_owned(), &mut ints);
        let field = |n: &str| m.get_field_by_name(n).unwrap();
        assert_eq!(read_scalar(&ints, &field("id")).as_deref(), Some("-3"));
        assert_eq!(read_scalar(&ints, &field("s")).as_deref(), Some("-5"));
        assert_eq!(
            read_scalar(&ints, &field("name")).as_deref(),
            Some("users/1")
        );
        assert_eq!(read_scalar(&wire, &field("id")), None);
        for (field, header) in [("v2", "\"v2\""), ("\"q\"", "\"q\""), ("W/\"w\"", "W/\"w\"")] {
            assert_eq!(header_value(field), header);
        }
        for (header, field) in [
            ("\"v2\"", Some("v2")),
            ("W/\"w\"", Some("W/\"w\"")),
            ("*", None),
        ] {
            assert_eq!(from_header(header).as_deref(), field, "{header}");
        }
    }
}
