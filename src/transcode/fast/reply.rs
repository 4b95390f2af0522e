//! The fast reply path: protobuf wire bytes straight to proto3 JSON.
//!
//! Per message type, a [`Plan`] built once at startup maps field numbers to
//! pre-rendered JSON keys, kinds and enum names; writing a reply walks the
//! wire bytes once and appends JSON to one buffer, with no message tree.
//! Anything whose JSON would depend on more than the bytes seen so far (a
//! singular field or oneof given twice, a repeated field split on the wire,
//! a duplicated map key), anything malformed, and options it does not cover
//! (`emit_unpopulated`, `response_body`) make it give up; the caller then
//! uses the `DynamicMessage` path, which is the reference. Both are checked
//! against each other by the differential tests.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor, SerializeOptions};

use crate::config::JsonOptions;

use super::wire::{WireType, skip, take, take_len, varint, zigzag_decode32, zigzag_decode64};
use super::{Fallback, Result};

/// Nesting deeper than this falls back (the reference decoder has the same limit).
const MAX_DEPTH: usize = 100;

/// Compiled plans for a set of message types.
#[derive(Debug, Default)]
pub struct ReplyPlans {
    messages: Vec<MessagePlan>,
    by_name: HashMap<String, usize>,
    options: SerializeOptions,
}

#[derive(Debug)]
struct MessagePlan {
    /// Sorted by number.
    fields: Vec<(u32, FieldPlan)>,
}

#[derive(Debug)]
struct FieldPlan {
    /// Bit in the per-message "seen" mask.
    bit: u64,
    /// Bits of the other members of its oneof.
    oneof_mask: u64,
    /// `"name":`.
    key: Box<[u8]>,
    kind: Value,
    repeated: bool,
    /// Map entries: the value's kind (the key's is `map_key`).
    map_key: Option<Value>,
    /// Written even when it holds the default (messages, oneof members, `optional`).
    presence: bool,
}

#[derive(Debug, Clone)]
enum Value {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    /// Enum names by number, pre-rendered with quotes; `None` writes numbers.
    Enum {
        names: Option<std::sync::Arc<HashMap<i32, Box<[u8]>>>>,
        /// The default value's number (the first value, for closed enums).
        default: i32,
    },
    Null,
    Message(usize),
    Timestamp,
    Duration,
    /// Other well-known types: through `DynamicMessage` for this value only.
    WellKnown(MessageDescriptor),
}

impl ReplyPlans {
    /// Compiles plans for `roots` and every message they reach. `None` when
    /// the options are ones the fast path does not cover.
    pub fn build<'a>(
        roots: impl IntoIterator<Item = &'a MessageDescriptor>,
        json: &JsonOptions,
    ) -> Option<Self> {
        if json.emit_unpopulated {
            return None;
        }
        let mut plans = ReplyPlans {
            options: crate::transcode::response::serialize_options(json),
            ..ReplyPlans::default()
        };
        for root in roots {
            // A reply that is itself a well-known type has a JSON form of its own.
            if root.full_name().starts_with("google.protobuf.") {
                continue;
            }
            // A root that cannot be planned leaves no half-built plans behind.
            let mark = plans.messages.len();
            if plans.compile(root, json).is_none() {
                plans.messages.truncate(mark);
                plans.by_name.retain(|_, i| *i < mark);
            }
        }
        Some(plans)
    }

    /// The plan index for a message type compiled by [`ReplyPlans::build`].
    pub fn index_of(&self, message: &MessageDescriptor) -> Option<usize> {
        self.by_name.get(message.full_name()).copied()
    }

    fn compile(&mut self, message: &MessageDescriptor, json: &JsonOptions) -> Option<usize> {
        if let Some(&i) = self.by_name.get(message.full_name()) {
            return Some(i);
        }
        let fields: Vec<FieldDescriptor> = message.fields().collect();
        // Extensions are written by the reference but not known to a plan.
        if fields.len() > 64 || !message.descriptor_proto().extension_range.is_empty() {
            return None;
        }
        let index = self.messages.len();
        self.messages.push(MessagePlan { fields: Vec::new() });
        self.by_name.insert(message.full_name().to_owned(), index);
        let mut compiled = Vec::with_capacity(fields.len());
        for (i, field) in fields.iter().enumerate() {
            let name = if json.use_proto_names {
                field.name()
            } else {
                field.json_name()
            };
            let key = format!("{}:", serde_json::to_string(name).ok()?)
                .into_bytes()
                .into_boxed_slice();
            let oneof_mask = field.containing_oneof().map_or(0, |o| {
                o.fields()
                    .filter(|f| f != field)
                    .filter_map(|f| fields.iter().position(|x| *x == f))
                    .fold(0u64, |m, p| m | (1 << p))
            });
            let (kind, map_key, repeated) = if field.is_map() {
                let Kind::Message(entry) = field.kind() else {
                    return None;
                };
                let key_kind = self.compile_value(&entry.map_entry_key_field().kind(), json)?;
                (
                    self.compile_value(&entry.map_entry_value_field().kind(), json)?,
                    Some(key_kind),
                    true,
                )
            } else {
                (
                    self.compile_value(&field.kind(), json)?,
                    None,
                    field.is_list(),
                )
            };
            compiled.push((
                field.number(),
                FieldPlan {
                    bit: 1 << i,
                    oneof_mask,
                    key,
                    presence: field.supports_presence(),
                    kind,
                    repeated,
                    map_key,
                },
            ));
        }
        compiled.sort_by_key(|(n, _)| *n);
        self.messages[index].fields = compiled;
        Some(index)
    }

    fn compile_value(&mut self, kind: &Kind, json: &JsonOptions) -> Option<Value> {
        Some(match kind {
            Kind::Double => Value::Double,
            Kind::Float => Value::Float,
            Kind::Int32 => Value::Int32,
            Kind::Int64 => Value::Int64,
            Kind::Uint32 => Value::Uint32,
            Kind::Uint64 => Value::Uint64,
            Kind::Sint32 => Value::Sint32,
            Kind::Sint64 => Value::Sint64,
            Kind::Fixed32 => Value::Fixed32,
            Kind::Fixed64 => Value::Fixed64,
            Kind::Sfixed32 => Value::Sfixed32,
            Kind::Sfixed64 => Value::Sfixed64,
            Kind::Bool => Value::Bool,
            Kind::String => Value::String,
            Kind::Bytes => Value::Bytes,
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => Value::Null,
            Kind::Enum(e) if json.enums_as_ints => Value::Enum {
                names: None,
                default: e.default_value().number(),
            },
            Kind::Enum(e) => Value::Enum {
                default: e.default_value().number(),
                names: Some(std::sync::Arc::new(
                    e.values()
                        .map(|v| {
                            Some((
                                v.number(),
                                serde_json::to_string(v.name())
                                    .ok()?
                                    .into_bytes()
                                    .into_boxed_slice(),
                            ))
                        })
                        .collect::<Option<HashMap<_, _>>>()?,
                )),
            },
            Kind::Message(m) => match m.full_name() {
                "google.protobuf.Timestamp" => Value::Timestamp,
                "google.protobuf.Duration" => Value::Duration,
                name if name.starts_with("google.protobuf.") => Value::WellKnown(m.clone()),
                _ => Value::Message(self.compile(m, json)?),
            },
        })
    }

    /// Writes the JSON of the message with plan `index` from its wire bytes.
    ///
    /// # Errors
    /// [`Fallback`] when only the reference path can answer (see the module docs).
    pub fn write(&self, index: usize, wire: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.message(index, wire, out, 0)
    }

    fn message(&self, index: usize, mut buf: &[u8], out: &mut Vec<u8>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Fallback);
        }
        let plan = self.messages.get(index).ok_or(Fallback)?;
        out.push(b'{');
        let mut seen = 0u64;
        let mut wrote_any = false;
        // The repeated field whose JSON array (or map object) is open.
        let mut open: Option<&FieldPlan> = None;
        let mut open_elems = 0usize;
        let mut map_keys: Vec<Vec<u8>> = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            // Keys are u32 and field numbers 1..2^29; the reference rejects the rest.
            let key = u32::try_from(key).map_err(|_| Fallback)?;
            // Groups and invalid wire types fall back, known field or not.
            let (number, wire_type) = (key >> 3, WireType::of_tag(key.into())?);
            if number == 0 {
                return Err(Fallback);
            }
            let Ok(pos) = plan.fields.binary_search_by_key(&number, |(n, _)| *n) else {
                // Unknown fields are not part of the JSON.
                skip(wire_type, &mut buf)?;
                continue;
            };
            let field = &plan.fields[pos].1;
            if field.repeated {
                let same = open.is_some_and(|o| std::ptr::eq(o, field));
                if !same {
                    if seen & field.bit != 0 {
                        return Err(Fallback); // split on the wire
                    }
                    // An empty packed run writes nothing, as an empty list.
                    if wire_type == WireType::Len
                        && field.map_key.is_none()
                        && is_packable(&field.kind)
                    {
                        let mut peek = buf;
                        let len = varint(&mut peek)? as usize;
                        if len == 0 {
                            let _ = take_len(&mut buf)?;
                            continue;
                        }
                    }
                    close(&mut open, out);
                    seen |= field.bit;
                    if wrote_any {
                        out.push(b',');
                    }
                    wrote_any = true;
                    out.extend_from_slice(&field.key);
                    out.push(if field.map_key.is_some() { b'{' } else { b'[' });
                    open = Some(field);
                    open_elems = 0;
                    map_keys.clear();
                }
                if let Some(key_kind) = &field.map_key {
                    if wire_type != WireType::Len {
                        return Err(Fallback);
                    }
                    let entry = take_len(&mut buf)?;
                    if open_elems > 0 {
                        out.push(b',');
                    }
                    self.map_entry(key_kind, &field.kind, entry, out, &mut map_keys, depth)?;
                    open_elems += 1;
                } else if wire_type == WireType::Len && is_packable(&field.kind) {
                    let mut packed = take_len(&mut buf)?;
                    let element_wire = wire_type_of(&field.kind);
                    while !packed.is_empty() {
                        if open_elems > 0 {
                            out.push(b',');
                        }
                        self.write_value(&field.kind, element_wire, &mut packed, out, depth, true)?;
                        open_elems += 1;
                    }
                } else {
                    if open_elems > 0 {
                        out.push(b',');
                    }
                    self.write_value(&field.kind, wire_type, &mut buf, out, depth, true)?;
                    open_elems += 1;
                }
                continue;
            }
            close(&mut open, out);
            if seen & (field.bit | field.oneof_mask) != 0 {
                return Err(Fallback); // last-one-wins semantics need the whole message
            }
            seen |= field.bit;
            let mark = out.len();
            if wrote_any {
                out.push(b',');
            }
            out.extend_from_slice(&field.key);
            let written =
                self.write_value(&field.kind, wire_type, &mut buf, out, depth, field.presence)?;
            if written {
                wrote_any = true;
            } else {
                out.truncate(mark);
            }
        }
        close(&mut open, out);
        out.push(b'}');
        Ok(())
    }

    /// One `"key":value` of a map.
    fn map_entry(
        &self,
        key_kind: &Value,
        value_kind: &Value,
        mut entry: &[u8],
        out: &mut Vec<u8>,
        keys: &mut Vec<Vec<u8>>,
        depth: usize,
    ) -> Result<()> {
        let mut key: Option<&[u8]> = None;
        let mut value: Option<(WireType, &[u8])> = None;
        while !entry.is_empty() {
            let tag = varint(&mut entry)?;
            if tag > u64::from(u32::MAX) || tag >> 3 == 0 {
                return Err(Fallback);
            }
            let wire_type = WireType::of_tag(tag)?;
            let start = entry;
            skip(wire_type, &mut entry)?;
            let raw = &start[..start.len() - entry.len()];
            match tag >> 3 {
                1 if key.is_none() => {
                    if wire_type != wire_type_of(key_kind) {
                        return Err(Fallback);
                    }
                    key = Some(raw);
                }
                2 if value.is_none() => value = Some((wire_type, raw)),
                1 | 2 => return Err(Fallback),
                _ => {}
            }
        }
        // Keys are JSON strings whatever their proto type.
        let mut rendered = Vec::with_capacity(16);
        match (key_kind, key) {
            (Value::String, Some(mut raw)) => {
                let s = std::str::from_utf8(take_len(&mut raw)?).map_err(|_| Fallback)?;
                serde_json::to_writer(&mut rendered, s).map_err(|_| Fallback)?;
            }
            (Value::String, None) => rendered.extend_from_slice(b"\"\""),
            (kind, raw) => {
                rendered.push(b'"');
                match raw {
                    Some(mut raw) => {
                        let wire = wire_type_of(kind);
                        let mut scratch = Vec::with_capacity(24);
                        self.write_value(kind, wire, &mut raw, &mut scratch, depth, true)?;
                        rendered.extend(scratch.iter().filter(|b| **b != b'"'));
                    }
                    None if matches!(kind, Value::Bool) => rendered.extend_from_slice(b"false"),
                    None => rendered.push(b'0'),
                }
                rendered.push(b'"');
            }
        }
        if keys.contains(&rendered) {
            return Err(Fallback);
        }
        out.extend_from_slice(&rendered);
        keys.push(rendered);
        out.push(b':');
        match value {
            Some((wire, mut raw)) => {
                self.write_value(value_kind, wire, &mut raw, out, depth, true)?;
            }
            None => self.write_default(value_kind, out)?,
        }
        Ok(())
    }

    /// The JSON of a value absent from a map entry.
    fn write_default(&self, kind: &Value, out: &mut Vec<u8>) -> Result<()> {
        match kind {
            Value::String | Value::Bytes => out.extend_from_slice(b"\"\""),
            Value::Bool => out.extend_from_slice(b"false"),
            Value::Int64 | Value::Uint64 | Value::Sint64 | Value::Fixed64 | Value::Sfixed64 => {
                out.extend_from_slice(b"\"0\"")
            }
            Value::Message(i) => self.message(*i, &[], out, 0)?,
            Value::Double | Value::Float => out.extend_from_slice(b"0.0"),
            Value::Enum { names, default } => match names.as_ref().and_then(|m| m.get(default)) {
                Some(name) => out.extend_from_slice(name),
                None => out.extend_from_slice(itoa::Buffer::new().format(*default).as_bytes()),
            },
            Value::Null => out.extend_from_slice(b"null"),
            Value::Timestamp => {
                use std::io::Write;
                write!(out, "\"{}\"", prost_types::Timestamp::default()).map_err(|_| Fallback)?;
            }
            Value::Duration => {
                use std::io::Write;
                write!(out, "\"{}\"", prost_types::Duration::default()).map_err(|_| Fallback)?;
            }
            Value::WellKnown(desc) => prost_reflect::DynamicMessage::new(desc.clone())
                .serialize_with_options(&mut serde_json::Serializer::new(&mut *out), &self.options)
                .map_err(|_| Fallback)?,
            _ => out.push(b'0'),
        }
        Ok(())
    }

    /// Writes one value; returns whether it was written (`false` for an
    /// implicit-presence field holding its default, which JSON omits).
    fn write_value(
        &self,
        kind: &Value,
        wire: WireType,
        buf: &mut &[u8],
        out: &mut Vec<u8>,
        depth: usize,
        always: bool,
    ) -> Result<bool> {
        let expect = |w: WireType| if wire == w { Ok(()) } else { Err(Fallback) };
        let mut itoa = itoa::Buffer::new();
        match kind {
            Value::Int32
            | Value::Int64
            | Value::Uint32
            | Value::Uint64
            | Value::Sint32
            | Value::Sint64
            | Value::Bool => {
                expect(WireType::Varint)?;
                let v = varint(buf)?;
                // The default test is on the value as its type reads it: a
                // 64-bit varint of 2^32 is a zero int32.
                let zero = match kind {
                    Value::Int32 | Value::Uint32 | Value::Sint32 => v as u32 == 0,
                    _ => v == 0,
                };
                if zero && !always {
                    return Ok(false);
                }
                match kind {
                    Value::Int32 => out.extend_from_slice(itoa.format(v as i32).as_bytes()),
                    Value::Uint32 => out.extend_from_slice(itoa.format(v as u32).as_bytes()),
                    Value::Sint32 => {
                        out.extend_from_slice(itoa.format(zigzag_decode32(v as u32)).as_bytes())
                    }
                    Value::Int64 => quoted(out, itoa.format(v as i64)),
                    Value::Uint64 => quoted(out, itoa.format(v)),
                    Value::Sint64 => quoted(out, itoa.format(zigzag_decode64(v))),
                    _ => out.extend_from_slice(if v != 0 { b"true" } else { b"false" }),
                }
            }
            Value::Enum { names, .. } => {
                expect(WireType::Varint)?;
                let n = varint(buf)? as i32;
                if n == 0 && !always {
                    return Ok(false);
                }
                match names.as_ref().and_then(|m| m.get(&n)) {
                    Some(name) => out.extend_from_slice(name),
                    None => out.extend_from_slice(itoa.format(n).as_bytes()),
                }
            }
            Value::Null => {
                expect(WireType::Varint)?;
                let n = varint(buf)? as i32;
                if n == 0 && !always {
                    return Ok(false);
                }
                out.extend_from_slice(b"null");
            }
            Value::Fixed32 | Value::Sfixed32 | Value::Float => {
                expect(WireType::I32)?;
                let raw = u32::from_le_bytes(take::<4>(buf)?);
                // -0.0 equals 0.0, so the reference omits it like 0.0.
                let zero = if matches!(kind, Value::Float) {
                    f32::from_bits(raw) == 0.0
                } else {
                    raw == 0
                };
                if zero && !always {
                    return Ok(false);
                }
                match kind {
                    Value::Fixed32 => out.extend_from_slice(itoa.format(raw).as_bytes()),
                    Value::Sfixed32 => out.extend_from_slice(itoa.format(raw as i32).as_bytes()),
                    _ => {
                        let f = f32::from_bits(raw);
                        float(out, f64::from(f), |o| serde_json::to_writer(o, &f))?;
                    }
                }
            }
            Value::Fixed64 | Value::Sfixed64 | Value::Double => {
                expect(WireType::I64)?;
                let raw = u64::from_le_bytes(take::<8>(buf)?);
                let zero = if matches!(kind, Value::Double) {
                    f64::from_bits(raw) == 0.0
                } else {
                    raw == 0
                };
                if zero && !always {
                    return Ok(false);
                }
                match kind {
                    Value::Fixed64 => quoted(out, itoa.format(raw)),
                    Value::Sfixed64 => quoted(out, itoa.format(raw as i64)),
                    _ => {
                        let f = f64::from_bits(raw);
                        float(out, f, |o| serde_json::to_writer(o, &f))?;
                    }
                }
            }
            Value::String => {
                expect(WireType::Len)?;
                let bytes = take_len(buf)?;
                if bytes.is_empty() && !always {
                    return Ok(false);
                }
                let s = std::str::from_utf8(bytes).map_err(|_| Fallback)?;
                serde_json::to_writer(&mut *out, s).map_err(|_| Fallback)?;
            }
            Value::Bytes => {
                expect(WireType::Len)?;
                let bytes = take_len(buf)?;
                if bytes.is_empty() && !always {
                    return Ok(false);
                }
                out.push(b'"');
                let start = out.len();
                out.resize(start + bytes.len().div_ceil(3) * 4, 0);
                let n = STANDARD
                    .encode_slice(bytes, &mut out[start..])
                    .map_err(|_| Fallback)?;
                out.truncate(start + n);
                out.push(b'"');
            }
            Value::Message(index) => {
                expect(WireType::Len)?;
                let bytes = take_len(buf)?;
                self.message(*index, bytes, out, depth + 1)?;
            }
            Value::Timestamp => {
                expect(WireType::Len)?;
                let ts = prost_types::Timestamp::decode(take_len(buf)?).map_err(|_| Fallback)?;
                // The reference's range and format: RFC 3339 via prost_types' Display.
                if !(-62_135_596_800..=253_402_300_799).contains(&ts.seconds)
                    || !(0..1_000_000_000).contains(&ts.nanos)
                {
                    return Err(Fallback);
                }
                use std::io::Write;
                write!(out, "\"{ts}\"").map_err(|_| Fallback)?;
            }
            Value::Duration => {
                expect(WireType::Len)?;
                let d = prost_types::Duration::decode(take_len(buf)?).map_err(|_| Fallback)?;
                if d.seconds.unsigned_abs() > 315_576_000_000
                    || d.nanos.unsigned_abs() > 999_999_999
                {
                    return Err(Fallback);
                }
                use std::io::Write;
                write!(out, "\"{d}\"").map_err(|_| Fallback)?;
            }
            Value::WellKnown(desc) => {
                expect(WireType::Len)?;
                // Its decoder starts a fresh recursion budget; stay well inside the reference's.
                if depth > MAX_DEPTH / 2 {
                    return Err(Fallback);
                }
                let message = prost_reflect::DynamicMessage::decode(desc.clone(), take_len(buf)?)
                    .map_err(|_| Fallback)?;
                message
                    .serialize_with_options(
                        &mut serde_json::Serializer::new(&mut *out),
                        &self.options,
                    )
                    .map_err(|_| Fallback)?;
            }
        }
        Ok(true)
    }
}

fn close(open: &mut Option<&FieldPlan>, out: &mut Vec<u8>) {
    if let Some(field) = open.take() {
        out.push(if field.map_key.is_some() { b'}' } else { b']' });
    }
}

/// The wire type a singular value of `kind` is encoded with.
fn wire_type_of(kind: &Value) -> WireType {
    match kind {
        Value::Fixed64 | Value::Sfixed64 | Value::Double => WireType::I64,
        Value::Fixed32 | Value::Sfixed32 | Value::Float => WireType::I32,
        Value::String
        | Value::Bytes
        | Value::Message(_)
        | Value::Timestamp
        | Value::Duration
        | Value::WellKnown(_) => WireType::Len,
        _ => WireType::Varint,
    }
}

fn is_packable(kind: &Value) -> bool {
    wire_type_of(kind).is_packable()
}

fn quoted(out: &mut Vec<u8>, digits: &str) {
    out.push(b'"');
    out.extend_from_slice(digits.as_bytes());
    out.push(b'"');
}

fn float(
    out: &mut Vec<u8>,
    f: f64,
    finite: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
) -> Result<()> {
    if f.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if f == f64::INFINITY {
        out.extend_from_slice(b"\"Infinity\"");
    } else if f == f64::NEG_INFINITY {
        out.extend_from_slice(b"\"-Infinity\"");
    } else {
        finite(out).map_err(|_| Fallback)?;
    }
    Ok(())
}
