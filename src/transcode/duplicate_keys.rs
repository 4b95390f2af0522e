//! Duplicate keys in a JSON request body: one field, or one map key, given twice.
//!
//! serde_json and prost-reflect let the last of two equal keys win;
//! protobuf's own JSON parsers reject them, and so does the gateway. A field
//! is one key whichever of its names is used (`displayName` and
//! `display_name`), a `null` counts as given, and map keys compare as the
//! keys they parse to (`"1"` and `"01"` in an integer map). Free-form JSON
//! (`Struct`, `Value`, `ListValue`, and `Any`, whose type is known only once
//! `@type` is read) compares keys as written. Unknown fields are skipped
//! unread, as the policies drop or reject them anyway.
//!
//! [`find`] reads the JSON tokens once, guided by the descriptor, building
//! nothing; it looks for duplicates only and leaves every other error to
//! the deserializer. The reference path runs it before deserializing; the
//! fast path spots duplicates itself (field bits, encoded map keys) and
//! hands such bodies to the reference, which words the error from here.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;

use prost_reflect::{Kind, MessageDescriptor};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A key given twice, where the JSON has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicate {
    /// Why it is a duplicate: `duplicate field "name"`, `duplicate map key "a"`.
    pub reason: String,
    /// Path segments from the duplicate key up to the root (built while unwinding).
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl Duplicate {
    /// The dotted JSON path of the second key, as serde_path_to_error writes
    /// paths: `items[1].name`, `labels.a`.
    pub fn path(&self) -> String {
        let mut path = String::new();
        for segment in self.segments.iter().rev() {
            match segment {
                Segment::Key(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Segment::Index(i) => {
                    path.push('[');
                    path.push_str(&i.to_string());
                    path.push(']');
                }
            }
        }
        path
    }
}

/// The first duplicate key in `json` read as a `desc` message, if any.
/// JSON that does not parse, or does not fit `desc`, is no duplicate here.
pub(crate) fn find(desc: &MessageDescriptor, json: &[u8]) -> Option<Duplicate> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(json);
    // Only `found` matters: any other error is the deserializer's to word.
    let _ = Check {
        expect: Expect::message(desc.clone()),
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

/// What a JSON value should hold.
enum Expect {
    /// A message's fields.
    Message(MessageDescriptor),
    /// Free-form JSON: every object's keys compare as written.
    Raw,
    /// The elements of a repeated field.
    List(Kind),
    /// The entries of a map field: key kind, value kind.
    Map(Kind, Kind),
    /// Nothing that holds keys.
    Scalar,
}

impl Expect {
    fn message(desc: MessageDescriptor) -> Self {
        match desc.full_name() {
            "google.protobuf.Struct"
            | "google.protobuf.Value"
            | "google.protobuf.ListValue"
            | "google.protobuf.Any" => Expect::Raw,
            _ => Expect::Message(desc),
        }
    }

    fn value(kind: Kind) -> Self {
        match kind {
            Kind::Message(m) => Expect::message(m),
            _ => Expect::Scalar,
        }
    }

    fn field(kind: Kind, is_list: bool, is_map: bool) -> Self {
        match kind {
            Kind::Message(entry) if is_map => Expect::Map(
                entry.map_entry_key_field().kind(),
                entry.map_entry_value_field().kind(),
            ),
            kind if is_list => Expect::List(kind),
            kind => Expect::value(kind),
        }
    }
}

/// Checks one JSON value against what it should hold.
struct Check<'f> {
    expect: Expect,
    found: &'f mut Option<Duplicate>,
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.expect {
            Expect::Scalar => d.deserialize_ignored_any(IgnoredAny).map(|_| ()),
            _ => d.deserialize_any(self),
        }
    }
}

/// Runs `next` for the value under `key`; on a duplicate below, adds `key`
/// to its path.
fn under<T, E>(
    found: &mut Option<Duplicate>,
    key: &str,
    next: impl FnOnce(&mut Option<Duplicate>) -> Result<T, E>,
) -> Result<T, E> {
    let result = next(found);
    if result.is_err()
        && let Some(d) = found
    {
        d.segments.push(Segment::Key(key.to_owned()));
    }
    result
}

/// Records the duplicate `key` and returns the error that stops the walk.
fn duplicate<E: serde::de::Error>(found: &mut Option<Duplicate>, key: &str, reason: String) -> E {
    *found = Some(Duplicate {
        reason,
        segments: vec![Segment::Key(key.to_owned())],
    });
    E::custom("duplicate key")
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Check { expect, found } = self;
        match expect {
            Expect::Message(desc) => {
                let mut seen = Numbers::default();
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    let field = desc
                        .get_field_by_json_name(&key)
                        .or_else(|| desc.get_field_by_name(&key));
                    let (number, by_json, expect) = if let Some(f) = &field {
                        let expect = Expect::field(f.kind(), f.is_list(), f.is_map());
                        (f.number(), *key == *f.json_name(), expect)
                    } else if let Some(e) = desc.get_extension_by_json_name(&key) {
                        (
                            e.number(),
                            true,
                            Expect::field(e.kind(), e.is_list(), e.is_map()),
                        )
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    if let Some(before_by_json) = seen.insert(number, by_json) {
                        let reason = match &field {
                            Some(f) if before_by_json != by_json => {
                                let other = if by_json { f.name() } else { f.json_name() };
                                format!("duplicate field {key:?}: {other:?} names the same field")
                            }
                            _ => format!("duplicate field {key:?}"),
                        };
                        return Err(duplicate(found, &key, reason));
                    }
                    under(found, &key, |found| {
                        map.next_value_seed(Check { expect, found })
                    })?;
                }
            }
            Expect::Map(key_kind, value_kind) => {
                let mut seen = Keys::default();
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    if !seen.insert(MapKey::parse(&key_kind, key.clone())) {
                        let reason = format!("duplicate map key {key:?}");
                        return Err(duplicate(found, &key, reason));
                    }
                    let expect = Expect::value(value_kind.clone());
                    under(found, &key, |found| {
                        map.next_value_seed(Check { expect, found })
                    })?;
                }
            }
            Expect::Raw => {
                let mut seen = Keys::default();
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    if !seen.insert(key.clone()) {
                        let reason = format!("duplicate key {key:?}");
                        return Err(duplicate(found, &key, reason));
                    }
                    under(found, &key, |found| {
                        map.next_value_seed(Check {
                            expect: Expect::Raw,
                            found,
                        })
                    })?;
                }
            }
            // The wrong shape: the deserializer's error to report.
            Expect::List(_) | Expect::Scalar => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Check { expect, found } = self;
        // `Some(kind)`: a repeated field's elements; `None`: free-form values.
        let element = match expect {
            Expect::List(kind) => Some(kind),
            Expect::Raw => None,
            _ => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(());
            }
        };
        for index in 0.. {
            let expect = element.clone().map_or(Expect::Raw, Expect::value);
            let more = seq.next_element_seed(Check {
                expect,
                found: &mut *found,
            });
            match more {
                Ok(Some(())) => {}
                Ok(None) => break,
                Err(e) => {
                    if let Some(d) = found {
                        d.segments.push(Segment::Index(index));
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object key, borrowed from the body unless it has escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// A map key as the value it parses to, as prost-reflect parses it; a key
/// that does not parse stays text (the deserializer rejects it anyway).
#[derive(PartialEq, Eq, Hash)]
enum MapKey<'de> {
    Text(Cow<'de, str>),
    Int(i128),
    Bool(bool),
}

impl<'de> MapKey<'de> {
    fn parse(kind: &Kind, key: Cow<'de, str>) -> Self {
        let parsed = match kind {
            Kind::Int32
            | Kind::Sint32
            | Kind::Sfixed32
            | Kind::Int64
            | Kind::Sint64
            | Kind::Sfixed64 => i64::from_str(&key).ok().map(|v| MapKey::Int(v.into())),
            Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64 => {
                u64::from_str(&key).ok().map(|v| MapKey::Int(v.into()))
            }
            Kind::Bool => bool::from_str(&key).ok().map(MapKey::Bool),
            _ => None,
        };
        parsed.unwrap_or(MapKey::Text(key))
    }
}

/// Field numbers one object has given, each with whether its JSON name was
/// used: a bit per number up to 64 (nearly every field), a sorted list beyond.
#[derive(Default)]
struct Numbers {
    low: u64,
    low_by_json: u64,
    high: Vec<(u32, bool)>,
}

impl Numbers {
    /// Adds `number`; when it was there already, whether it came by its JSON name.
    fn insert(&mut self, number: u32, by_json: bool) -> Option<bool> {
        if (1..=64).contains(&number) {
            let bit = 1u64 << (number - 1);
            if self.low & bit != 0 {
                return Some(self.low_by_json & bit != 0);
            }
            self.low |= bit;
            if by_json {
                self.low_by_json |= bit;
            }
            return None;
        }
        match self.high.binary_search_by_key(&number, |&(n, _)| n) {
            Ok(i) => Some(self.high[i].1),
            Err(i) => {
                self.high.insert(i, (number, by_json));
                None
            }
        }
    }
}

/// The keys one object has given: scanned while few (the common case),
/// hashed once many, so a large map is not quadratic.
struct Keys<K> {
    few: Vec<K>,
    many: HashSet<K>,
}

impl<K> Default for Keys<K> {
    fn default() -> Self {
        Self {
            few: Vec::new(),
            many: HashSet::new(),
        }
    }
}

impl<K: Hash + Eq> Keys<K> {
    const FEW: usize = 16;

    /// Adds `key`; `false` when it was there already.
    fn insert(&mut self, key: K) -> bool {
        if self.many.is_empty() {
            if self.few.contains(&key) {
                return false;
            }
            if self.few.len() < Self::FEW {
                self.few.push(key);
                return true;
            }
            self.many.extend(self.few.drain(..));
        }
        self.many.insert(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::pool_from_source;

    const PROTO: &str = r#"
syntax = "proto3";
package d.v1;
import "google/protobuf/struct.proto";
message Inner { string s = 1; Inner next = 2; map<bool, string> flags = 3; }
message M {
  string display_name = 1;
  Inner inner = 2;
  repeated Inner inners = 3;
  map<string, Inner> by_name = 4;
  map<sint64, string> by_number = 5;
  map<uint32, string> by_unsigned = 6;
  google.protobuf.Struct attrs = 7;
  repeated google.protobuf.Value values = 8;
  string far = 1000;
  string farther = 70;
}
"#;

    #[test]
    fn finds_the_first_duplicate_and_its_path() {
        let pool = pool_from_source(PROTO);
        let desc = pool.get_message_by_name("d.v1.M").unwrap();
        for (json, want) in [
            (r#"{"displayName": "a"}"#, None),
            (
                r#"{"displayName": "a", "display_name": "b"}"#,
                Some((
                    "display_name",
                    r#"duplicate field "display_name": "displayName" names the same field"#,
                )),
            ),
            (
                r#"{"display_name": "a", "displayName": "b"}"#,
                Some((
                    "displayName",
                    r#"duplicate field "displayName": "display_name" names the same field"#,
                )),
            ),
            (
                r#"{"displayName": null, "displayName": null}"#,
                Some(("displayName", r#"duplicate field "displayName""#)),
            ),
            (r#"{"far": "a", "farther": "b", "displayName": "c"}"#, None),
            (
                r#"{"farther": "a", "far": "b", "farther": "c"}"#,
                Some(("farther", r#"duplicate field "farther""#)),
            ),
            (
                r#"{"far": "a", "far": "b"}"#,
                Some(("far", r#"duplicate field "far""#)),
            ),
            (
                r#"{"inner": {"next": {"s": "a", "s": "b"}}}"#,
                Some(("inner.next.s", r#"duplicate field "s""#)),
            ),
            (
                r#"{"inners": [{}, {"next": {}, "next": {}}]}"#,
                Some(("inners[1].next", r#"duplicate field "next""#)),
            ),
            (
                r#"{"byName": {"a": {}, "b": {"s": "x", "s": "y"}}}"#,
                Some(("byName.b.s", r#"duplicate field "s""#)),
            ),
            (
                r#"{"byName": {"a": {}, "a": {}}}"#,
                Some(("byName.a", r#"duplicate map key "a""#)),
            ),
            (
                r#"{"byNumber": {"-1": "a", "1": "b", "+1": "c"}}"#,
                Some(("byNumber.+1", r#"duplicate map key "+1""#)),
            ),
            (
                r#"{"byUnsigned": {"7": "a", "007": "b"}}"#,
                Some(("byUnsigned.007", r#"duplicate map key "007""#)),
            ),
            (r#"{"inner": {"flags": {"true": "a", "false": "b"}}}"#, None),
            (
                r#"{"inner": {"flags": {"true": "a", "true": "b"}}}"#,
                Some(("inner.flags.true", r#"duplicate map key "true""#)),
            ),
            (
                r#"{"attrs": {"a": {"a": 1}, "b": [{"a": 1}, {"a": 1}]}}"#,
                None,
            ),
            (
                r#"{"attrs": {"a": [{"b": 1}, {"c": 1, "c": 2}]}}"#,
                Some(("attrs.a[1].c", r#"duplicate key "c""#)),
            ),
            (
                r#"{"values": [1, {"k": 1, "k": 1}]}"#,
                Some(("values[1].k", r#"duplicate key "k""#)),
            ),
            // Unknown fields are skipped unread; so are values of the wrong shape.
            (r#"{"nope": {"a": 1, "a": 2}, "nope": 1}"#, None),
            (
                r#"{"inner": [{"s": 1, "s": 2}], "inners": {"a": 1, "a": 2}}"#,
                None,
            ),
            // Not JSON, or not an object: for the deserializer.
            ("{", None),
            ("[1, 1]", None),
            // A duplicate before a syntax error is still reported.
            (
                r#"{"far": 1, "far": 2, "#,
                Some(("far", r#"duplicate field "far""#)),
            ),
        ] {
            let got = find(&desc, json.as_bytes());
            let got = got.as_ref().map(|d| (d.path(), d.reason.as_str()));
            let want = want.map(|(path, reason)| (path.to_owned(), reason));
            assert_eq!(got, want, "{json}");
        }
    }

    #[test]
    fn many_keys_are_checked_past_the_scan() {
        let pool = pool_from_source(PROTO);
        let desc = pool.get_message_by_name("d.v1.M").unwrap();
        let keys: Vec<String> = (0..100).map(|i| format!(r#""k{i}": {{}}"#)).collect();
        let distinct = format!(r#"{{"byName": {{{}}}}}"#, keys.join(", "));
        assert_eq!(find(&desc, distinct.as_bytes()), None);
        let twice = format!(r#"{{"byName": {{{}, "k42": {{}}}}}}"#, keys.join(", "));
        let found = find(&desc, twice.as_bytes()).unwrap();
        assert_eq!(found.path(), "byName.k42");
    }
}
