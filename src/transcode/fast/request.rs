//! The fast request path: proto3 JSON straight to protobuf wire bytes.
//!
//! Per message type, a [`RequestPlans`] entry built at startup maps JSON keys
//! (JSON and proto names, JSON first, as the reference looks them up) to
//! pre-encoded tags, kinds, enum numbers and presence. Encoding reads the
//! JSON tokens once with `serde_json` and appends wire bytes to one buffer;
//! a nested message's length is reserved as one byte and widened in place
//! if the message turns out longer. Each value is read by the same rules
//! as the reference (`prost-reflect`'s deserializer), so both accept the
//! same inputs and produce the same message. A key given twice (a field by
//! either name, `null` or not; a map key, compared encoded; a key in
//! free-form JSON), two members of one oneof, a `null` where the reference
//! treats it specially and any error give [`Fallback`]: the reference then
//! parses the body again and words the error. Well-known types are read by
//! the reference for that value only.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use prost::Message;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use serde::Deserialize;
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use super::wire::{
    WireType, begin_len, end_len, put_tag, put_varint, zigzag_encode32, zigzag_encode64,
};
use super::{Fallback, Result};
use crate::transcode::duplicate_keys;

/// Nesting deeper than this falls back (serde_json stops at 128 anyway).
const MAX_DEPTH: usize = 100;

/// Compiled JSON→wire plans for a set of message types.
#[derive(Debug)]
pub struct RequestPlans {
    messages: Vec<MessagePlan>,
    by_name: HashMap<String, usize>,
    /// For values read by the reference (well-known types), by unknown-field policy.
    strict: DeserializeOptions,
    lenient: DeserializeOptions,
}

#[derive(Debug, Default)]
struct MessagePlan {
    fields: Vec<FieldPlan>,
    /// JSON and proto names to an index into `fields`.
    keys: HashMap<Box<str>, usize>,
}

#[derive(Debug)]
struct FieldPlan {
    number: u32,
    /// Bit in the per-message "seen" mask.
    bit: u64,
    /// Bits of the other members of its oneof.
    oneof_mask: u64,
    kind: Enc,
    shape: Shape,
    /// Written even when it holds the default (oneof members, `optional`).
    presence: bool,
}

#[derive(Debug)]
enum Shape {
    Singular,
    Repeated { packed: bool },
    Map { key: Enc },
}

#[derive(Debug, Clone)]
enum Enc {
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
    Enum(Arc<HashMap<Box<str>, i32>>),
    Message(usize),
    /// Well-known types: read by the reference, for this value only.
    WellKnown(MessageDescriptor),
    /// `Struct`, `Value`, `ListValue`, `Any`: free-form JSON, read by the
    /// reference after a look for duplicate keys, which it lets pass.
    FreeForm(MessageDescriptor),
    /// `google.protobuf.NullValue`: `null` means a value here; left to the reference.
    NullValue,
}

impl RequestPlans {
    /// Compiles plans for `roots` and every message they reach. A root that
    /// cannot be planned (extensions, more than 64 fields, a well-known type)
    /// gets no plan and always takes the reference path.
    pub fn build<'a>(roots: impl IntoIterator<Item = &'a MessageDescriptor>) -> Self {
        let mut plans = RequestPlans {
            messages: Vec::new(),
            by_name: HashMap::new(),
            strict: DeserializeOptions::new().deny_unknown_fields(true),
            lenient: DeserializeOptions::new().deny_unknown_fields(false),
        };
        for root in roots {
            if root.full_name().starts_with("google.protobuf.") {
                continue;
            }
            let mark = plans.messages.len();
            if plans.compile(root).is_none() {
                plans.messages.truncate(mark);
                plans.by_name.retain(|_, i| *i < mark);
            }
        }
        plans
    }

    /// The plan index for a message type compiled by [`RequestPlans::build`].
    pub fn index_of(&self, message: &MessageDescriptor) -> Option<usize> {
        self.by_name.get(message.full_name()).copied()
    }

    fn compile(&mut self, message: &MessageDescriptor) -> Option<usize> {
        if let Some(&i) = self.by_name.get(message.full_name()) {
            return Some(i);
        }
        let fields: Vec<FieldDescriptor> = message.fields().collect();
        if fields.len() > 64 || !message.descriptor_proto().extension_range.is_empty() {
            return None;
        }
        let index = self.messages.len();
        self.messages.push(MessagePlan::default());
        self.by_name.insert(message.full_name().to_owned(), index);
        let mut plan = MessagePlan::default();
        for (i, field) in fields.iter().enumerate() {
            let oneof_mask = field.containing_oneof().map_or(0, |o| {
                o.fields()
                    .filter(|f| f != field)
                    .filter_map(|f| fields.iter().position(|x| *x == f))
                    .fold(0u64, |m, p| m | (1 << p))
            });
            let (kind, shape) = if field.is_map() {
                let Kind::Message(entry) = field.kind() else {
                    return None;
                };
                let key = self.compile_kind(&entry.map_entry_key_field().kind())?;
                let value = self.compile_kind(&entry.map_entry_value_field().kind())?;
                (value, Shape::Map { key })
            } else if field.is_list() {
                let packed = field.is_packed();
                (
                    self.compile_kind(&field.kind())?,
                    Shape::Repeated { packed },
                )
            } else {
                (self.compile_kind(&field.kind())?, Shape::Singular)
            };
            plan.fields.push(FieldPlan {
                number: field.number(),
                bit: 1 << i,
                oneof_mask,
                kind,
                shape,
                presence: field.supports_presence(),
            });
        }
        // JSON names win over proto names, as in the reference's lookup.
        for (i, field) in fields.iter().enumerate() {
            plan.keys.insert(field.name().into(), i);
        }
        for (i, field) in fields.iter().enumerate() {
            plan.keys.insert(field.json_name().into(), i);
        }
        self.messages[index] = plan;
        Some(index)
    }

    fn compile_kind(&mut self, kind: &Kind) -> Option<Enc> {
        if let Some(scalar) = scalar_enc(kind) {
            return Some(scalar);
        }
        Some(match kind {
            Kind::String => Enc::String,
            Kind::Bytes => Enc::Bytes,
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => Enc::NullValue,
            Kind::Enum(e) => Enc::Enum(Arc::new(
                e.values().map(|v| (v.name().into(), v.number())).collect(),
            )),
            Kind::Message(m)
                if matches!(
                    m.full_name(),
                    "google.protobuf.Struct"
                        | "google.protobuf.Value"
                        | "google.protobuf.ListValue"
                        | "google.protobuf.Any"
                ) =>
            {
                Enc::FreeForm(m.clone())
            }
            Kind::Message(m) if m.full_name().starts_with("google.protobuf.") => {
                Enc::WellKnown(m.clone())
            }
            Kind::Message(m) => Enc::Message(self.compile(m)?),
            _ => return None,
        })
    }

    /// Appends the wire bytes of the JSON object `json` as message `index`.
    ///
    /// # Errors
    /// [`Fallback`] when only the reference can answer (see the module docs).
    pub fn encode(
        &self,
        index: usize,
        json: &[u8],
        deny_unknown: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let seed = MessageSeed {
            cx: self.cx(deny_unknown),
            index,
            out,
            depth: 0,
        };
        seed.deserialize(&mut de).map_err(|_| Fallback)?;
        de.end().map_err(|_| Fallback)
    }

    /// Appends the wire bytes of field `number` of message `index` holding
    /// the JSON value `json` (a `body: "field"` body). `null` leaves the
    /// field unset, except for a message field, which must be an object.
    ///
    /// # Errors
    /// [`Fallback`] as for [`RequestPlans::encode`].
    pub fn encode_field(
        &self,
        index: usize,
        number: u32,
        json: &[u8],
        deny_unknown: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let plan = self.messages.get(index).ok_or(Fallback)?;
        let field = plan
            .fields
            .iter()
            .find(|f| f.number == number)
            .ok_or(Fallback)?;
        let mut de = serde_json::Deserializer::from_slice(json);
        let cx = self.cx(deny_unknown);
        let result =
            if matches!(field.kind, Enc::Message(_)) && matches!(field.shape, Shape::Singular) {
                // The reference reads a message body as the message itself, so
                // `null` is an error there, not an unset field.
                FieldSeed {
                    cx,
                    field,
                    out,
                    depth: 0,
                }
                .singular(&mut de)
                .map(|_| ())
            } else {
                FieldSeed {
                    cx,
                    field,
                    out,
                    depth: 0,
                }
                .deserialize(&mut de)
                .map(|_| ())
            };
        result.map_err(|_| Fallback)?;
        de.end().map_err(|_| Fallback)
    }

    fn cx(&self, deny_unknown: bool) -> Cx<'_> {
        Cx {
            plans: self,
            deny_unknown,
            options: if deny_unknown {
                &self.strict
            } else {
                &self.lenient
            },
        }
    }
}

/// What every seed of one encoding shares.
#[derive(Clone, Copy)]
struct Cx<'a> {
    plans: &'a RequestPlans,
    deny_unknown: bool,
    options: &'a DeserializeOptions,
}

/// Reads one JSON object into the fields of one message.
struct MessageSeed<'a, 'o> {
    cx: Cx<'a>,
    index: usize,
    out: &'o mut Vec<u8>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(D::Error::custom("too deep"));
        }
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let plan = self
            .cx
            .plans
            .messages
            .get(self.index)
            .ok_or_else(|| A::Error::custom("no plan"))?;
        // Every key given, `null` included (a field given twice is a
        // duplicate), and the fields a value was given for (for oneofs).
        let mut given = 0u64;
        let mut present = 0u64;
        while let Some(key) = map.next_key_seed(KeySeed(plan))? {
            let Some(i) = key else {
                if self.cx.deny_unknown {
                    return Err(A::Error::custom("unknown field"));
                }
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let field = &plan.fields[i];
            if given & field.bit != 0 {
                // The reference words the error.
                return Err(A::Error::custom("duplicate field"));
            }
            given |= field.bit;
            let is_present = map.next_value_seed(FieldSeed {
                cx: self.cx,
                field,
                out: self.out,
                depth: self.depth,
            })?;
            if is_present {
                if present & field.oneof_mask != 0 {
                    return Err(A::Error::custom("two members of a oneof"));
                }
                present |= field.bit;
            }
        }
        Ok(())
    }
}

/// A JSON key: `Some(field index)` or `None` for a name no field has.
struct KeySeed<'a>(&'a MessagePlan);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> std::result::Result<Self::Value, E> {
        match self.0.keys.get(key) {
            Some(&i) => Ok(Some(i)),
            // An extension's name: the reference resolves those.
            None if key.starts_with('[') => Err(E::custom("extension")),
            None => Ok(None),
        }
    }
}

/// One field's JSON value, appended as tagged wire bytes. Its value is
/// whether the field was given (`false` for `null`, as the reference
/// leaves the field unset).
struct FieldSeed<'a, 'o> {
    cx: Cx<'a>,
    field: &'a FieldPlan,
    out: &'o mut Vec<u8>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<bool, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field value")
    }

    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<bool, E> {
        match (&self.field.kind, &self.field.shape) {
            // `null` is a value of these; the reference knows what to make of it.
            (Enc::NullValue, Shape::Singular) => Err(E::custom("null value")),
            (Enc::FreeForm(m), Shape::Singular) if m.full_name() == "google.protobuf.Value" => {
                Err(E::custom("null value"))
            }
            _ => Ok(false),
        }
    }

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<bool, E> {
        self.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<bool, D::Error> {
        match self.field.shape {
            Shape::Singular => self.singular(d),
            Shape::Repeated { packed } => {
                let packed = packed && is_packable(&self.field.kind);
                d.deserialize_seq(ListSeed { seed: self, packed })?;
                Ok(true)
            }
            Shape::Map { ref key } => {
                d.deserialize_map(MapSeed { seed: self, key })?;
                Ok(true)
            }
        }
    }
}

impl<'a> FieldSeed<'a, '_> {
    /// A singular value (never `null`); implicit-presence defaults are not written.
    fn singular<'de, D: Deserializer<'de>>(self, d: D) -> std::result::Result<bool, D::Error> {
        let field = self.field;
        let mark = self.out.len();
        let written = write_value(self.cx, &field.kind, field.number, d, self.out, self.depth)?;
        match written {
            Written::Absent => Ok(false),
            Written::Default if !field.presence => {
                self.out.truncate(mark);
                Ok(true)
            }
            Written::Default | Written::Value => Ok(true),
        }
    }
}

/// What [`write_value`] appended.
enum Written {
    /// Nothing: an unknown enum name the lenient policy skips.
    Absent,
    /// The type's default value (omitted for implicit presence).
    Default,
    /// Anything else.
    Value,
}

/// Reads one value of `kind` and appends it as field `number`.
fn write_value<'de, D: Deserializer<'de>>(
    cx: Cx<'_>,
    kind: &Enc,
    number: u32,
    d: D,
    out: &mut Vec<u8>,
    depth: usize,
) -> std::result::Result<Written, D::Error> {
    let written = |zero: bool| {
        if zero {
            Written::Default
        } else {
            Written::Value
        }
    };
    Ok(match kind {
        Enc::String => {
            put_tag(out, number, WireType::Len);
            d.deserialize_str(StrSeed(out))?
        }
        Enc::Bytes => {
            put_tag(out, number, WireType::Len);
            let mark = begin_len(out);
            d.deserialize_str(BytesSeed(out))?;
            let empty = out.len() == mark;
            end_len(out, mark);
            written(empty)
        }
        Enc::Message(index) => {
            put_tag(out, number, WireType::Len);
            let mark = begin_len(out);
            MessageSeed {
                cx,
                index: *index,
                out,
                depth: depth + 1,
            }
            .deserialize(d)?;
            end_len(out, mark);
            Written::Value
        }
        Enc::WellKnown(desc) => {
            let message = DynamicMessage::deserialize_with_options(desc.clone(), d, cx.options)?;
            put_message(number, &message, out).map_err(D::Error::custom)?;
            Written::Value
        }
        Enc::FreeForm(desc) => {
            let raw = <&RawValue>::deserialize(d)?;
            if duplicate_keys::find(desc, raw.get().as_bytes()).is_some() {
                return Err(D::Error::custom("duplicate key"));
            }
            let mut json = serde_json::Deserializer::from_str(raw.get());
            let message =
                DynamicMessage::deserialize_with_options(desc.clone(), &mut json, cx.options)
                    .map_err(D::Error::custom)?;
            put_message(number, &message, out).map_err(D::Error::custom)?;
            Written::Value
        }
        Enc::Enum(names) => match d.deserialize_any(EnumSeed(names, cx.deny_unknown))? {
            Some(n) => {
                put_tag(out, number, WireType::Varint);
                put_varint(out, n as i64 as u64);
                written(n == 0)
            }
            None => Written::Absent,
        },
        Enc::NullValue => return Err(D::Error::custom("NullValue")),
        scalar => {
            let value = read_scalar(scalar, d)?;
            put_tag(out, number, wire_type(scalar));
            put_scalar(scalar, value, out);
            written(value.is_zero())
        }
    })
}

/// Appends field `number` holding `message`.
fn put_message(
    number: u32,
    message: &DynamicMessage,
    out: &mut Vec<u8>,
) -> std::result::Result<(), prost::EncodeError> {
    put_tag(out, number, WireType::Len);
    put_varint(out, message.encoded_len() as u64);
    message.encode(out)
}

/// A JSON array into a repeated field: one packed run or one tagged value per element.
struct ListSeed<'a, 'o> {
    seed: FieldSeed<'a, 'o>,
    packed: bool,
}

impl<'de> Visitor<'de> for ListSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let FieldSeed {
            cx,
            field,
            out,
            depth,
        } = self.seed;
        if self.packed {
            let start = out.len();
            put_tag(out, field.number, WireType::Len);
            let mark = begin_len(out);
            while seq
                .next_element_seed(PackedSeed {
                    cx,
                    kind: &field.kind,
                    out,
                })?
                .is_some()
            {}
            if out.len() == mark {
                out.truncate(start); // an empty list writes nothing
            } else {
                end_len(out, mark);
            }
        } else {
            while seq
                .next_element_seed(ElementSeed {
                    cx,
                    kind: &field.kind,
                    number: field.number,
                    out,
                    depth,
                })?
                .is_some()
            {}
        }
        Ok(())
    }
}

/// One element of an unpacked repeated field, written whatever its value.
struct ElementSeed<'a, 'o> {
    cx: Cx<'a>,
    kind: &'a Enc,
    number: u32,
    out: &'o mut Vec<u8>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        let mark = self.out.len();
        let written = write_value(self.cx, self.kind, self.number, d, self.out, self.depth)?;
        if matches!(written, Written::Absent) {
            self.out.truncate(mark);
        }
        Ok(())
    }
}

/// One element of a packed run: the value with no tag.
struct PackedSeed<'a, 'o> {
    cx: Cx<'a>,
    kind: &'a Enc,
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for PackedSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        if let Enc::Enum(names) = self.kind {
            if let Some(n) = d.deserialize_any(EnumSeed(names, self.cx.deny_unknown))? {
                put_varint(self.out, n as i64 as u64);
            }
            return Ok(());
        }
        let value = read_scalar(self.kind, d)?;
        put_scalar(self.kind, value, self.out);
        Ok(())
    }
}

/// A JSON object into a map field: one entry message per key.
struct MapSeed<'a, 'o> {
    seed: FieldSeed<'a, 'o>,
    key: &'a Enc,
}

impl<'de> Visitor<'de> for MapSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let FieldSeed {
            cx,
            field,
            out,
            depth,
        } = self.seed;
        let mut keys = MapKeys::default();
        loop {
            let start = out.len();
            put_tag(out, field.number, WireType::Len);
            let mark = begin_len(out);
            if map
                .next_key_seed(MapKeySeed {
                    kind: self.key,
                    out,
                })?
                .is_none()
            {
                out.truncate(start);
                break;
            }
            let key_len = out.len() - mark;
            if !keys.is_new(out, mark) {
                return Err(A::Error::custom("duplicate map key"));
            }
            let written = map.next_value_seed(ValueSeed {
                cx,
                kind: &field.kind,
                out,
                depth,
            })?;
            if matches!(written, Written::Absent) {
                // The reference skips the entry (an unknown enum name); its
                // key still counts.
                keys.dropped(&out[mark..mark + key_len]);
                out.truncate(start);
            } else {
                let before = out.len();
                end_len(out, mark);
                // Widening the length moved the entry's bytes right.
                keys.kept(mark + (out.len() - before), key_len);
            }
        }
        if keys.all_distinct(out) {
            Ok(())
        } else {
            Err(A::Error::custom("duplicate map key"))
        }
    }
}

/// The keys one JSON object of a map field has given, compared as their
/// encoded bytes: equal keys encode alike (`"1"` and `"01"` are one int key).
/// While few (the common case), each new key is scanned against the others
/// in place, with no allocation; past that, all are sorted and compared
/// once at the end, so a large map is not quadratic.
#[derive(Default)]
struct MapKeys {
    /// Where each kept key's bytes are in the output, the first few inline.
    few: [(usize, usize); MapKeys::FEW],
    count: usize,
    more: Vec<(usize, usize)>,
    /// Keys of entries the lenient policy dropped.
    dropped: Vec<Box<[u8]>>,
}

impl MapKeys {
    const FEW: usize = 8;

    /// Whether the key just written at `out[at..]` is new, as far as the
    /// scan goes (once past it, [`MapKeys::all_distinct`] decides).
    fn is_new(&self, out: &[u8], at: usize) -> bool {
        let key = &out[at..];
        self.past_scan()
            || (self.few[..self.count]
                .iter()
                .all(|&(start, len)| out.get(start..start + len) != Some(key))
                && self.dropped.iter().all(|d| **d != *key))
    }

    /// Notes a kept entry's key at `out[at..at + len]`.
    fn kept(&mut self, at: usize, len: usize) {
        if self.count < Self::FEW && self.more.is_empty() {
            self.few[self.count] = (at, len);
            self.count += 1;
        } else {
            self.more.push((at, len));
        }
    }

    /// Notes a dropped entry's key (rare: an unknown enum name under `ignore`).
    fn dropped(&mut self, key: &[u8]) {
        self.dropped.push(key.into());
    }

    /// Whether there are too many keys to scan each new one against.
    fn past_scan(&self) -> bool {
        !self.more.is_empty() || self.dropped.len() > Self::FEW
    }

    /// Whether all keys differ; only sorts once past the scan.
    fn all_distinct(&self, out: &[u8]) -> bool {
        if !self.past_scan() {
            return true;
        }
        let mut all: Vec<&[u8]> =
            Vec::with_capacity(self.count + self.more.len() + self.dropped.len());
        for &(start, len) in self.few[..self.count].iter().chain(&self.more) {
            match out.get(start..start + len) {
                Some(key) => all.push(key),
                None => return false,
            }
        }
        all.extend(self.dropped.iter().map(|d| &**d));
        all.sort_unstable();
        all.windows(2).all(|pair| pair[0] != pair[1])
    }
}

/// A map entry's value (field 2), written whatever its value.
struct ValueSeed<'a, 'o> {
    cx: Cx<'a>,
    kind: &'a Enc,
    out: &'o mut Vec<u8>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Written;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Written, D::Error> {
        write_value(self.cx, self.kind, 2, d, self.out, self.depth)
    }
}

/// A map key, written as entry field 1 from its JSON string form.
struct MapKeySeed<'a, 'o> {
    kind: &'a Enc,
    out: &'o mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for MapKeySeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for MapKeySeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> std::result::Result<(), E> {
        put_map_key(self.kind, key, self.out).map_err(|()| E::custom("bad map key"))
    }
}

/// Writes a map key from its JSON string form, parsed as the reference does.
fn put_map_key(kind: &Enc, key: &str, out: &mut Vec<u8>) -> std::result::Result<(), ()> {
    let value = match kind {
        Enc::String => {
            put_tag(out, 1, WireType::Len);
            put_varint(out, key.len() as u64);
            out.extend_from_slice(key.as_bytes());
            return Ok(());
        }
        Enc::Int32 | Enc::Sint32 | Enc::Sfixed32 => {
            Scalar::I32(i32::from_str(key).map_err(|_| ())?)
        }
        Enc::Int64 | Enc::Sint64 | Enc::Sfixed64 => {
            Scalar::I64(i64::from_str(key).map_err(|_| ())?)
        }
        Enc::Uint32 | Enc::Fixed32 => Scalar::U32(u32::from_str(key).map_err(|_| ())?),
        Enc::Uint64 | Enc::Fixed64 => Scalar::U64(u64::from_str(key).map_err(|_| ())?),
        Enc::Bool => Scalar::Bool(bool::from_str(key).map_err(|_| ())?),
        _ => return Err(()),
    };
    put_tag(out, 1, wire_type(kind));
    put_scalar(kind, value, out);
    Ok(())
}

/// A JSON string appended as a length-delimited value.
struct StrSeed<'o>(&'o mut Vec<u8>);

impl Visitor<'_> for StrSeed<'_> {
    type Value = Written;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Written, E> {
        put_varint(self.0, s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        Ok(if s.is_empty() {
            Written::Default
        } else {
            Written::Value
        })
    }
}

/// The reference's base64 rules: either alphabet, padding optional, trailing bits allowed.
const BASE64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_allow_trailing_bits(true)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, BASE64_CONFIG);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, BASE64_CONFIG);

/// A base64 JSON string decoded straight into the output.
struct BytesSeed<'o>(&'o mut Vec<u8>);

impl Visitor<'_> for BytesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<(), E> {
        let start = self.0.len();
        match STANDARD.decode_vec(s, self.0) {
            Ok(()) => Ok(()),
            Err(base64::DecodeError::InvalidByte(_, b'-' | b'_')) => {
                self.0.truncate(start);
                URL_SAFE
                    .decode_vec(s, self.0)
                    .map_err(|_| E::custom("invalid base64"))
            }
            Err(_) => Err(E::custom("invalid base64")),
        }
    }
}

/// An enum given by name or number; `None` for an unknown name the lenient policy skips.
struct EnumSeed<'a>(&'a HashMap<Box<str>, i32>, bool);

impl Visitor<'_> for EnumSeed<'_> {
    type Value = Option<i32>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or integer")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Option<i32>, E> {
        match self.0.get(v) {
            Some(&n) => Ok(Some(n)),
            None if self.1 => Err(E::custom("unknown enum value")),
            None => Ok(None),
        }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Option<i32>, E> {
        i32::try_from(v).map(Some).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Option<i32>, E> {
        i32::try_from(v).map(Some).map_err(E::custom)
    }
}

/// A parsed scalar, before its wire encoding.
#[derive(Debug, Clone, Copy)]
enum Scalar {
    I32(i32),
    I64(i64),
    U32(u32),
    U64(u64),
    F32(f32),
    F64(f64),
    Bool(bool),
}

impl Scalar {
    /// Whether the reference treats it as the default (`-0.0` included).
    fn is_zero(self) -> bool {
        match self {
            Scalar::I32(v) => v == 0,
            Scalar::I64(v) => v == 0,
            Scalar::U32(v) => v == 0,
            Scalar::U64(v) => v == 0,
            Scalar::F32(v) => v == 0.0,
            Scalar::F64(v) => v == 0.0,
            Scalar::Bool(v) => !v,
        }
    }
}

/// Reads a numeric or boolean value by the reference's rules for `kind`.
fn read_scalar<'de, D: Deserializer<'de>>(
    kind: &Enc,
    d: D,
) -> std::result::Result<Scalar, D::Error> {
    Ok(match kind {
        Enc::Double => Scalar::F64(d.deserialize_any(NumberSeed::F64)?.f64()),
        Enc::Float => Scalar::F32(d.deserialize_any(NumberSeed::F32)?.f32()),
        Enc::Int32 | Enc::Sint32 | Enc::Sfixed32 => d.deserialize_any(NumberSeed::I32)?,
        Enc::Int64 | Enc::Sint64 | Enc::Sfixed64 => d.deserialize_any(NumberSeed::I64)?,
        Enc::Uint32 | Enc::Fixed32 => d.deserialize_any(NumberSeed::U32)?,
        Enc::Uint64 | Enc::Fixed64 => d.deserialize_any(NumberSeed::U64)?,
        Enc::Bool => Scalar::Bool(d.deserialize_any(BoolSeed)?),
        _ => return Err(D::Error::custom("not a scalar")),
    })
}

impl Scalar {
    fn f64(self) -> f64 {
        match self {
            Scalar::F64(v) => v,
            _ => 0.0,
        }
    }

    fn f32(self) -> f32 {
        match self {
            Scalar::F32(v) => v,
            _ => 0.0,
        }
    }
}

/// Numbers as JSON numbers or decimal strings, with the reference's range
/// checks: integral floats are accepted for integer fields, strings parse
/// with `FromStr`, floats also take `"NaN"` and `"±Infinity"`.
#[derive(Clone, Copy)]
enum NumberSeed {
    I32,
    I64,
    U32,
    U64,
    F32,
    F64,
}

impl Visitor<'_> for NumberSeed {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or a decimal string")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Scalar, E> {
        Ok(match self {
            NumberSeed::I32 => Scalar::I32(v.try_into().map_err(E::custom)?),
            NumberSeed::I64 => Scalar::I64(v),
            NumberSeed::U32 => Scalar::U32(v.try_into().map_err(E::custom)?),
            NumberSeed::U64 => Scalar::U64(v.try_into().map_err(E::custom)?),
            NumberSeed::F32 => Scalar::F32(v as f32),
            NumberSeed::F64 => Scalar::F64(v as f64),
        })
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Scalar, E> {
        Ok(match self {
            NumberSeed::I32 => Scalar::I32(v.try_into().map_err(E::custom)?),
            NumberSeed::I64 => Scalar::I64(v.try_into().map_err(E::custom)?),
            NumberSeed::U32 => Scalar::U32(v.try_into().map_err(E::custom)?),
            NumberSeed::U64 => Scalar::U64(v),
            NumberSeed::F32 => Scalar::F32(v as f32),
            NumberSeed::F64 => Scalar::F64(v as f64),
        })
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<Scalar, E> {
        let integral = |min: f64, max: f64| {
            if v.fract() != 0.0 {
                Err(E::custom("expected integer value"))
            } else if v < min || v > max {
                Err(E::custom("float value out of range"))
            } else {
                Ok(())
            }
        };
        Ok(match self {
            NumberSeed::I32 => {
                integral(f64::from(i32::MIN), f64::from(i32::MAX))?;
                Scalar::I32(v as i32)
            }
            NumberSeed::I64 => {
                integral(i64::MIN as f64, i64::MAX as f64)?;
                Scalar::I64(v as i64)
            }
            NumberSeed::U32 => {
                integral(0.0, f64::from(u32::MAX))?;
                Scalar::U32(v as u32)
            }
            NumberSeed::U64 => {
                integral(0.0, u64::MAX as f64)?;
                Scalar::U64(v as u64)
            }
            NumberSeed::F32 => {
                if v < f64::from(f32::MIN) || v > f64::from(f32::MAX) {
                    return Err(E::custom("float value out of range"));
                }
                Scalar::F32(v as f32)
            }
            NumberSeed::F64 => Scalar::F64(v),
        })
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Scalar, E> {
        Ok(match self {
            NumberSeed::I32 => Scalar::I32(v.parse().map_err(E::custom)?),
            NumberSeed::I64 => Scalar::I64(v.parse().map_err(E::custom)?),
            NumberSeed::U32 => Scalar::U32(v.parse().map_err(E::custom)?),
            NumberSeed::U64 => Scalar::U64(v.parse().map_err(E::custom)?),
            NumberSeed::F32 => Scalar::F32(match (f32::from_str(v), v) {
                (Ok(f), _) => f,
                (Err(_), "Infinity") => f32::INFINITY,
                (Err(_), "-Infinity") => f32::NEG_INFINITY,
                (Err(_), "NaN") => f32::NAN,
                (Err(e), _) => return Err(E::custom(e)),
            }),
            NumberSeed::F64 => Scalar::F64(match (f64::from_str(v), v) {
                (Ok(f), _) => f,
                (Err(_), "Infinity") => f64::INFINITY,
                (Err(_), "-Infinity") => f64::NEG_INFINITY,
                (Err(_), "NaN") => f64::NAN,
                (Err(e), _) => return Err(E::custom(e)),
            }),
        })
    }
}

/// Booleans are JSON `true`/`false` only.
struct BoolSeed;

impl Visitor<'_> for BoolSeed {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> std::result::Result<bool, E> {
        Ok(v)
    }
}

/// Appends field `number` of `kind` holding `value`, even when it is the
/// default: path variables override whatever the body set for the field,
/// and an omitted zero would let the body's value win.
///
/// # Errors
/// [`Fallback`] for values a path variable cannot hold (lists, maps).
pub fn put_explicit(kind: &Kind, number: u32, value: &Value, out: &mut Vec<u8>) -> Result<()> {
    let scalar = match (kind, value) {
        (Kind::String, Value::String(s)) => {
            put_tag(out, number, WireType::Len);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
            return Ok(());
        }
        (Kind::Bytes, Value::Bytes(b)) => {
            put_tag(out, number, WireType::Len);
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
            return Ok(());
        }
        (Kind::Message(_), Value::Message(m)) => {
            put_tag(out, number, WireType::Len);
            put_varint(out, m.encoded_len() as u64);
            m.encode(out).map_err(|_| Fallback)?;
            return Ok(());
        }
        (Kind::Enum(_), Value::EnumNumber(n)) => {
            put_tag(out, number, WireType::Varint);
            put_varint(out, *n as i64 as u64);
            return Ok(());
        }
        (_, Value::I32(v)) => Scalar::I32(*v),
        (_, Value::I64(v)) => Scalar::I64(*v),
        (_, Value::U32(v)) => Scalar::U32(*v),
        (_, Value::U64(v)) => Scalar::U64(*v),
        (_, Value::F32(v)) => Scalar::F32(*v),
        (_, Value::F64(v)) => Scalar::F64(*v),
        (_, Value::Bool(v)) => Scalar::Bool(*v),
        _ => return Err(Fallback),
    };
    let enc = scalar_enc(kind).ok_or(Fallback)?;
    put_tag(out, number, wire_type(&enc));
    put_scalar(&enc, scalar, out);
    Ok(())
}

/// The encoding of a numeric or boolean kind.
fn scalar_enc(kind: &Kind) -> Option<Enc> {
    Some(match kind {
        Kind::Double => Enc::Double,
        Kind::Float => Enc::Float,
        Kind::Int32 => Enc::Int32,
        Kind::Int64 => Enc::Int64,
        Kind::Uint32 => Enc::Uint32,
        Kind::Uint64 => Enc::Uint64,
        Kind::Sint32 => Enc::Sint32,
        Kind::Sint64 => Enc::Sint64,
        Kind::Fixed32 => Enc::Fixed32,
        Kind::Fixed64 => Enc::Fixed64,
        Kind::Sfixed32 => Enc::Sfixed32,
        Kind::Sfixed64 => Enc::Sfixed64,
        Kind::Bool => Enc::Bool,
        _ => return None,
    })
}

fn put_scalar(kind: &Enc, value: Scalar, out: &mut Vec<u8>) {
    match (kind, value) {
        (Enc::Int32, Scalar::I32(v)) => put_varint(out, v as i64 as u64),
        (Enc::Sint32, Scalar::I32(v)) => put_varint(out, u64::from(zigzag_encode32(v))),
        (Enc::Sfixed32, Scalar::I32(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (Enc::Int64, Scalar::I64(v)) => put_varint(out, v as u64),
        (Enc::Sint64, Scalar::I64(v)) => put_varint(out, zigzag_encode64(v)),
        (Enc::Sfixed64, Scalar::I64(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (Enc::Uint32, Scalar::U32(v)) => put_varint(out, u64::from(v)),
        (Enc::Fixed32, Scalar::U32(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (Enc::Uint64, Scalar::U64(v)) => put_varint(out, v),
        (Enc::Fixed64, Scalar::U64(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (Enc::Float, Scalar::F32(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (Enc::Double, Scalar::F64(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (Enc::Bool, Scalar::Bool(v)) => out.push(u8::from(v)),
        // read_scalar pairs every kind with its own variant.
        _ => {}
    }
}

/// The wire type a value of `kind` is encoded with.
fn wire_type(kind: &Enc) -> WireType {
    match kind {
        Enc::Double | Enc::Fixed64 | Enc::Sfixed64 => WireType::I64,
        Enc::Float | Enc::Fixed32 | Enc::Sfixed32 => WireType::I32,
        Enc::String | Enc::Bytes | Enc::Message(_) | Enc::WellKnown(_) | Enc::FreeForm(_) => {
            WireType::Len
        }
        _ => WireType::Varint,
    }
}

fn is_packable(kind: &Enc) -> bool {
    wire_type(kind).is_packable()
}

/// Runs `inner` to encode a value inside the singular message fields
/// `parents` (outermost first), then patches their lengths; returns what
/// `inner` returned.
pub fn put_nested<T>(
    parents: &[FieldDescriptor],
    out: &mut Vec<u8>,
    inner: impl FnOnce(&mut Vec<u8>) -> T,
) -> T {
    let mut marks = Vec::with_capacity(parents.len());
    for parent in parents {
        put_tag(out, parent.number(), WireType::Len);
        marks.push(begin_len(out));
    }
    let result = inner(out);
    for mark in marks.into_iter().rev() {
        end_len(out, mark);
    }
    result
}
