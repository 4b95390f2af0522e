//! Differential tests: the fast path against the `DynamicMessage` path on
//! random messages of the example, bench and all-kinds schemas, and on
//! random and hand-made wire bytes.

use std::path::PathBuf;

use proptest::prelude::*;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, MessageDescriptor, Value};

use super::*;
use crate::config::{DescriptorSources, JsonOptions};

const ALL_KINDS: &str = r#"
syntax = "proto3";
package k.v1;
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/field_mask.proto";
enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }
message Inner { string s = 1; repeated int32 r = 2; Inner next = 3; }
message All {
  double d = 1; float f = 2; int32 i32 = 3; int64 i64 = 4; uint32 u32 = 5; uint64 u64 = 6;
  sint32 s32 = 7; sint64 s64 = 8; fixed32 fx32 = 9; fixed64 fx64 = 10; sfixed32 sf32 = 11; sfixed64 sf64 = 12;
  bool b = 13; string s = 14; bytes by = 15; Color color = 16;
  repeated double rd = 17; repeated sint64 rs64 = 18; repeated string rs = 19; repeated Color rc = 20;
  repeated Inner inners = 21; Inner inner = 22;
  map<string, int64> m_s = 23; map<int32, Inner> m_i = 24; map<bool, Color> m_b = 25; map<uint64, string> m_u = 26;
  oneof pick { string o_s = 27; Inner o_m = 28; int32 o_i = 29; }
  optional int32 opt = 30;
  google.protobuf.Timestamp ts = 31; google.protobuf.Duration dur = 32;
  google.protobuf.Int32Value w32 = 33; google.protobuf.StringValue ws = 34;
  google.protobuf.FieldMask mask = 35; repeated fixed32 rfx = 36; repeated float rf = 37;
  map<string, float> m_f = 38;
}
"#;

fn pool() -> DescriptorPool {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("protogate-fast-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("all_kinds.proto"), ALL_KINDS).unwrap();
    crate::descriptor::load(&DescriptorSources {
        include: vec![root.join("protos"), root.join("tests/fixtures/protos"), dir],
        protos: vec![
            "shop/user/v1/user.proto".into(),
            "shop/order/v1/order.proto".into(),
            "shop/inventory/v1/inventory.proto".into(),
            "bench/v1/bench.proto".into(),
            "all_kinds.proto".into(),
        ],
        descriptor_sets: vec![],
    })
    .unwrap()
}

static POOL: std::sync::LazyLock<DescriptorPool> = std::sync::LazyLock::new(pool);

const ROOTS: &[&str] = &[
    "k.v1.All",
    "bench.v1.ListItemsResponse",
    "bench.v1.EchoResponse",
    "shop.user.v1.User",
    "shop.user.v1.ListUsersResponse",
    "shop.order.v1.Order",
    "shop.inventory.v1.StockLevel",
    "shop.inventory.v1.Reservation",
];

/// A tiny deterministic generator: proptest picks the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a", "Z", " ", "\"", "\\", "\n", "\u{1}", "é", "✓", "😀", "/", "<",
        ];
        (0..self.below(6))
            .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
            .collect()
    }
}

fn random_message(desc: &MessageDescriptor, rng: &mut Rng, depth: usize) -> DynamicMessage {
    let mut msg = DynamicMessage::new(desc.clone());
    match desc.full_name() {
        "google.protobuf.Timestamp" => {
            msg.set_field_by_name(
                "seconds",
                Value::I64(rng.below(4_000_000_000) as i64 - 1_000_000_000),
            );
            msg.set_field_by_name(
                "nanos",
                Value::I32(rng.below(1_000_000_000) as i32 * (rng.below(2) as i32)),
            );
            return msg;
        }
        "google.protobuf.Duration" => {
            let secs = rng.below(100_000) as i64;
            let nanos = rng.below(1_000_000_000) as i32;
            let neg = rng.chance(30);
            msg.set_field_by_name("seconds", Value::I64(if neg { -secs } else { secs }));
            msg.set_field_by_name("nanos", Value::I32(if neg { -nanos } else { nanos }));
            return msg;
        }
        "google.protobuf.FieldMask" => {
            msg.set_field_by_name("paths", Value::List(vec![Value::String("a.b_c".into())]));
            return msg;
        }
        _ => {}
    }
    let mut oneofs_done = Vec::new();
    for field in desc.fields() {
        if !rng.chance(60) {
            continue;
        }
        if let Some(oneof) = field.containing_oneof() {
            if oneofs_done.contains(&oneof.name().to_owned()) {
                continue;
            }
            oneofs_done.push(oneof.name().to_owned());
        }
        let kind = field.kind();
        if field.is_map() {
            let Kind::Message(entry) = kind else { continue };
            let key_kind = entry.map_entry_key_field().kind();
            let value_kind = entry.map_entry_value_field().kind();
            let mut map = std::collections::HashMap::new();
            for _ in 0..rng.below(4) {
                let key = match key_kind {
                    Kind::String => MapKey::String(rng.string()),
                    Kind::Bool => MapKey::Bool(rng.chance(50)),
                    Kind::Int32 => MapKey::I32(rng.next() as i32),
                    Kind::Uint64 => MapKey::U64(rng.next()),
                    _ => continue,
                };
                if let Some(v) = random_value(&value_kind, rng, depth) {
                    map.insert(key, v);
                }
            }
            msg.set_field(&field, Value::Map(map));
        } else if field.is_list() {
            let items: Vec<Value> = (0..rng.below(4))
                .filter_map(|_| random_value(&kind, rng, depth))
                .collect();
            msg.set_field(&field, Value::List(items));
        } else if let Some(v) = random_value(&kind, rng, depth) {
            msg.set_field(&field, v);
        }
    }
    msg
}

fn random_value(kind: &Kind, rng: &mut Rng, depth: usize) -> Option<Value> {
    let small = |rng: &mut Rng| rng.chance(30);
    Some(match kind {
        Kind::Double => Value::F64(match rng.below(6) {
            0 => 0.0,
            1 => f64::NAN,
            2 => f64::INFINITY,
            3 => -1.5e-300,
            _ => f64::from_bits(rng.next()),
        }),
        Kind::Float => Value::F32(if small(rng) {
            0.0
        } else {
            f32::from_bits(rng.next() as u32)
        }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(if small(rng) { 0 } else { rng.next() as i32 })
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(if small(rng) { 0 } else { rng.next() as i64 })
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(if small(rng) { 0 } else { rng.next() as u32 }),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(if small(rng) { 0 } else { rng.next() }),
        Kind::Bool => Value::Bool(rng.chance(50)),
        Kind::String => Value::String(rng.string()),
        Kind::Bytes => Value::Bytes(
            (0..rng.below(7))
                .map(|_| rng.next() as u8)
                .collect::<Vec<_>>()
                .into(),
        ),
        Kind::Enum(e) => {
            let values: Vec<i32> = e.values().map(|v| v.number()).collect();
            Value::EnumNumber(if rng.chance(10) {
                77
            } else {
                values[rng.below(values.len() as u64) as usize]
            })
        }
        Kind::Message(m) => {
            if depth > 3
                || (m.full_name().starts_with("google.protobuf.")
                    && !matches!(
                        m.full_name(),
                        "google.protobuf.Timestamp"
                            | "google.protobuf.Duration"
                            | "google.protobuf.FieldMask"
                            | "google.protobuf.Int32Value"
                            | "google.protobuf.StringValue"
                    ))
            {
                return None;
            }
            Value::Message(random_message(m, rng, depth + 1))
        }
    })
}

fn reference(
    desc: &MessageDescriptor,
    wire: &[u8],
    json: &JsonOptions,
) -> Option<serde_json::Value> {
    let msg = DynamicMessage::decode(desc.clone(), wire).ok()?;
    let mut out = Vec::new();
    msg.serialize_with_options(
        &mut serde_json::Serializer::new(&mut out),
        &crate::transcode::response::serialize_options(json),
    )
    .ok()?;
    Some(serde_json::from_slice(&out).expect("reference JSON parses"))
}

fn fast(plans: &ReplyPlans, desc: &MessageDescriptor, wire: &[u8]) -> Result<serde_json::Value> {
    let mut out = Vec::new();
    plans.write(plans.index_of(desc).expect("planned"), wire, &mut out)?;
    Ok(serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "fast JSON does not parse ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    }))
}

/// NaN is not equal to itself as a float, but its JSON is the string "NaN" on both sides.
fn agree(
    desc: &MessageDescriptor,
    plans: &ReplyPlans,
    wire: &[u8],
    json: &JsonOptions,
) -> std::result::Result<(), String> {
    let slow = reference(desc, wire, json);
    match (slow, fast(plans, desc, wire)) {
        (Some(a), Ok(b)) if a == b => Ok(()),
        (Some(a), Ok(b)) => Err(format!(
            "{}: reference {a}\n fast      {b}",
            desc.full_name()
        )),
        (None, Ok(b)) => Err(format!(
            "{}: reference fails, fast wrote {b}",
            desc.full_name()
        )),
        (_, Err(Fallback)) => Ok(()),
    }
}

fn options() -> [JsonOptions; 3] {
    [
        JsonOptions::default(),
        JsonOptions {
            use_proto_names: true,
            ..JsonOptions::default()
        },
        JsonOptions {
            enums_as_ints: true,
            ..JsonOptions::default()
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn fast_path_agrees_with_dynamic_message(seed in 1u64..) {
        for json in options() {
            let roots: Vec<MessageDescriptor> = ROOTS.iter().map(|n| POOL.get_message_by_name(n).unwrap()).collect();
            let plans = ReplyPlans::build(roots.iter(), &json).unwrap();
            let mut rng = Rng(seed);
            for desc in &roots {
                let wire = random_message(desc, &mut rng, 0).encode_to_vec();
                // Valid, canonical wire bytes never need the fallback.
                let fast_result = fast(&plans, desc, &wire);
                prop_assert!(fast_result.is_ok(), "{}: fell back on canonical bytes", desc.full_name());
                if let Err(e) = agree(desc, &plans, &wire, &json) {
                    return Err(TestCaseError::fail(e));
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_disagree_or_panic(wire in proptest::collection::vec(any::<u8>(), 0..64)) {
        let roots: Vec<MessageDescriptor> = ROOTS.iter().map(|n| POOL.get_message_by_name(n).unwrap()).collect();
        let plans = ReplyPlans::build(roots.iter(), &JsonOptions::default()).unwrap();
        for desc in &roots {
            if let Err(e) = agree(desc, &plans, &wire, &JsonOptions::default()) {
                return Err(TestCaseError::fail(e));
            }
        }
    }
}

#[test]
fn non_canonical_wire_falls_back_or_agrees() {
    let desc = POOL.get_message_by_name("k.v1.All").unwrap();
    let json = JsonOptions::default();
    let plans = ReplyPlans::build([&desc], &json).unwrap();
    // field 19 (repeated string) split around field 3; field 3 (int32) given twice;
    // two oneof members; a duplicated map key; a packed and an unpacked run of field 36.
    let cases: &[(&str, &[u8])] = &[
        (
            "split repeated",
            &[0x9a, 0x01, 1, b'a', 0x18, 1, 0x9a, 0x01, 1, b'b'],
        ),
        ("singular twice", &[0x18, 1, 0x18, 2]),
        ("two oneof members", &[0xda, 0x01, 1, b'x', 0xe8, 0x01, 5]),
        (
            "duplicate map key",
            &[
                0xba, 0x01, 5, 0x0a, 1, b'k', 0x10, 1, 0xba, 0x01, 5, 0x0a, 1, b'k', 0x10, 2,
            ],
        ),
        (
            "packed then unpacked",
            &[0xa2, 0x02, 4, 1, 0, 0, 0, 0xa5, 0x02, 2, 0, 0, 0],
        ),
        ("empty packed run", &[0xa2, 0x02, 0]),
        ("explicit zero", &[0x18, 0]),
        ("unknown field", &[0xf8, 0x3e, 9, 0x18, 4]),
        ("group wire type", &[0x1b, 0x1c]),
        ("truncated", &[0x9a, 0x01, 5, b'a']),
        ("invalid utf-8", &[0x72, 2, 0xff, 0xfe]),
    ];
    for (name, wire) in cases {
        if let Err(e) = agree(&desc, &plans, wire, &json) {
            panic!("{name}: {e}");
        }
    }
    // The first two must fall back: their JSON needs the whole message.
    assert_eq!(fast(&plans, &desc, cases[0].1), Err(Fallback));
    assert_eq!(fast(&plans, &desc, cases[1].1), Err(Fallback));
    assert!(
        fast(&plans, &desc, cases[4].1).is_ok(),
        "mixed packed/unpacked of one run is fine"
    );
}

#[test]
fn emit_unpopulated_is_left_to_the_reference() {
    let desc = POOL.get_message_by_name("k.v1.All").unwrap();
    assert!(
        ReplyPlans::build(
            [&desc],
            &JsonOptions {
                emit_unpopulated: true,
                ..JsonOptions::default()
            }
        )
        .is_none()
    );
}

#[test]
fn review_findings_agree_with_the_reference() {
    let all = POOL.get_message_by_name("k.v1.All").unwrap();
    let json = JsonOptions::default();
    let plans = ReplyPlans::build([&all], &json).unwrap();
    let cases: &[(&str, &[u8])] = &[
        // -0.0 equals 0.0: omitted like the default.
        ("double -0.0", &[0x09, 0, 0, 0, 0, 0, 0, 0, 0x80]),
        ("float -0.0", &[0x15, 0, 0, 0, 0x80]),
        // A varint of 2^32 is a zero int32.
        ("int32 of 2^32", &[0x18, 0x80, 0x80, 0x80, 0x80, 0x10]),
        // Map keys with the wrong wire type are invalid, not "".
        (
            "string key as varint",
            &[0xba, 0x01, 4, 0x08, 0x00, 0x10, 0x05],
        ),
        ("int32 key as fixed32", &[0xc2, 0x01, 5, 0x0d, 1, 0, 0, 0]),
        // A map entry without its value.
        ("missing float value", &[0xb2, 0x02, 3, 0x0a, 1, b'k']),
    ];
    for (name, wire) in cases {
        if let Err(e) = agree(&all, &plans, wire, &json) {
            panic!("{name}: {e}");
        }
    }
    // Replies that are well-known types have their own JSON forms: no plan.
    let ts = POOL
        .get_message_by_name("google.protobuf.Timestamp")
        .unwrap();
    let plans = ReplyPlans::build([&ts, &all], &json).unwrap();
    assert!(plans.index_of(&ts).is_none());
    assert!(plans.index_of(&all).is_some());
}

// The request direction: JSON → wire against `DynamicMessage::deserialize`.

fn request_plans() -> (Vec<MessageDescriptor>, RequestPlans) {
    let roots: Vec<MessageDescriptor> = ROOTS
        .iter()
        .map(|n| POOL.get_message_by_name(n).unwrap())
        .collect();
    let plans = RequestPlans::build(roots.iter());
    (roots, plans)
}

/// Both sides decoded and rendered as JSON with the same options.
fn agree_request(
    desc: &MessageDescriptor,
    plans: &RequestPlans,
    json: &[u8],
    deny_unknown: bool,
) -> std::result::Result<(), String> {
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(deny_unknown);
    let mut de = serde_json::Deserializer::from_slice(json);
    let slow = DynamicMessage::deserialize_with_options(desc.clone(), &mut de, &options)
        .and_then(|m| de.end().map(|()| m));
    let mut wire = Vec::new();
    let index = plans.index_of(desc).expect("planned");
    let fast = plans.encode(index, json, deny_unknown, &mut wire);
    let text = String::from_utf8_lossy(json);
    match (slow, fast) {
        (_, Err(Fallback)) => Ok(()),
        (Err(e), Ok(())) => Err(format!(
            "{}: reference rejects ({e}), fast accepts: {text}",
            desc.full_name()
        )),
        (Ok(m), Ok(())) => {
            let json_options = JsonOptions::default();
            let want = reference(desc, &m.encode_to_vec(), &json_options);
            let got = reference(desc, &wire, &json_options);
            if got.is_none() {
                return Err(format!(
                    "{}: fast wrote undecodable bytes {wire:?} for {text}",
                    desc.full_name()
                ));
            }
            if want == got {
                Ok(())
            } else {
                Err(format!(
                    "{}: {text}\n reference {want:?}\n fast      {got:?}",
                    desc.full_name()
                ))
            }
        }
    }
}

fn request_json_options() -> [JsonOptions; 4] {
    let [a, b, c] = options();
    [
        a,
        b,
        c,
        JsonOptions {
            emit_unpopulated: true,
            ..JsonOptions::default()
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn fast_request_agrees_with_dynamic_message(seed in 1u64..) {
        let (roots, plans) = request_plans();
        for json in request_json_options() {
            let serialize = crate::transcode::response::serialize_options(&json);
            let mut rng = Rng(seed);
            for desc in &roots {
                let message = random_message(desc, &mut rng, 0);
                let mut text = Vec::new();
                message
                    .serialize_with_options(&mut serde_json::Serializer::new(&mut text), &serialize)
                    .unwrap();
                // JSON the reference writes never needs the fallback.
                let mut wire = Vec::new();
                let index = plans.index_of(desc).unwrap();
                prop_assert!(
                    plans.encode(index, &text, true, &mut wire).is_ok(),
                    "{}: fell back on {}", desc.full_name(), String::from_utf8_lossy(&text)
                );
                if let Err(e) = agree_request(desc, &plans, &text, true) {
                    return Err(TestCaseError::fail(e));
                }
            }
        }
    }

    #[test]
    fn json_shaped_bodies_never_disagree_or_panic(
        body in r#"\{ ?("(i32|i64|u32|u64|s32|s64|fx32|fx64|sf32|sf64|d|f|b|s|by|color|rd|rs64|rs|rc|inner|inners|mS|m_i|mB|m_u|oS|o_m|oI|opt|ts|dur|w32|ws|mask|rfx|rf|m_f|x|\[e\])": ?(1|-1|0|-0|1.0|1.5|1e3|1e999|"1"|"1e3"|"-0"|"NaN"|"Infinity"|"x"|"AQ=="|"AQ"|"_-8"|"RED"|"NOPE"|2147483648|-9223372036854775809|18446744073709551616|true|null|\[\]|\[1, ?"2", ?null\]|\[\{\}\]|\{\}|\{"1": ?1\}|\{"true": ?"RED", ?"x": ?2\}|\{"s": ?"a", ?"next": ?\{"r": ?\[1\]\}\}|"2024-01-02T03:04:05Z"|"1.5s"|"a,bC"),? ?){0,5}\}"#,
    ) {
        let (_, plans) = request_plans();
        let all = POOL.get_message_by_name("k.v1.All").unwrap();
        for deny in [true, false] {
            if let Err(e) = agree_request(&all, &plans, body.as_bytes(), deny) {
                return Err(TestCaseError::fail(e));
            }
        }
    }

    #[test]
    fn arbitrary_request_bytes_never_disagree_or_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let (roots, plans) = request_plans();
        for desc in &roots {
            if let Err(e) = agree_request(desc, &plans, &body, true) {
                return Err(TestCaseError::fail(e));
            }
        }
    }
}

#[test]
fn request_edge_cases_agree_with_the_reference() {
    let (_, plans) = request_plans();
    let all = POOL.get_message_by_name("k.v1.All").unwrap();
    let long = "x".repeat(300);
    let many: Vec<String> = (0..40).map(|i| format!(r#""k{i}": {i}"#)).collect();
    let many = many.join(", ");
    let cases: Vec<(&str, String, Option<bool>)> = vec![
        // (name, JSON, Some(expect the fast path to answer) / None: either)
        ("empty", "{}".into(), Some(true)),
        ("integral float for int", r#"{"i32": 1.0, "u64": 1e3}"#.into(), Some(true)),
        ("fractional float for int", r#"{"i32": 1.5}"#.into(), Some(false)),
        ("int out of range", r#"{"i32": 2147483648}"#.into(), Some(false)),
        ("numeric strings", r#"{"i64": "-5", "f": "1.5", "d": "-Infinity"}"#.into(), Some(true)),
        ("url-safe base64", r#"{"by": "_-8"}"#.into(), Some(true)),
        ("unpadded base64", r#"{"by": "AQ"}"#.into(), Some(true)),
        ("duplicate key", r#"{"s": "a", "s": "b"}"#.into(), Some(false)),
        ("json and proto name of one field", r#"{"mS": {}, "m_s": {}}"#.into(), Some(false)),
        ("two oneof members", r#"{"oS": "a", "oI": 1}"#.into(), Some(false)),
        ("a oneof member and a null one", r#"{"oS": "a", "oI": null}"#.into(), Some(true)),
        ("null fields", r#"{"s": null, "inner": null, "rs": null, "mS": null}"#.into(), Some(true)),
        ("null list element", r#"{"rs": ["a", null]}"#.into(), Some(false)),
        ("null map value", r#"{"mS": {"a": null}}"#.into(), Some(false)),
        ("default values", r#"{"i32": 0, "s": "", "b": false, "d": -0.0, "color": "COLOR_UNSPECIFIED"}"#.into(), Some(true)),
        ("optional zero", r#"{"opt": 0}"#.into(), Some(true)),
        ("oneof zero", r#"{"oI": 0}"#.into(), Some(true)),
        ("enum by number, unknown number", r#"{"color": 77, "rc": [1, "GREEN", 99]}"#.into(), Some(true)),
        ("unknown enum name", r#"{"color": "NOPE"}"#.into(), Some(false)),
        ("map keys", r#"{"m_i": {"-1": {}, "01": {"s": "x"}}, "mB": {"true": "RED"}, "m_u": {"7": "a"}}"#.into(), Some(true)),
        ("bad map keys", r#"{"mB": {"yes": "RED"}}"#.into(), Some(false)),
        ("duplicate map key", r#"{"mS": {"a": "1", "a": "2"}}"#.into(), Some(false)),
        ("duplicate int map key", r#"{"m_i": {"1": {}, "01": {}}}"#.into(), Some(false)),
        ("a null then a value", r#"{"s": null, "s": "b"}"#.into(), Some(false)),
        ("a value then a null", r#"{"inner": {}, "inner": null}"#.into(), Some(false)),
        ("many map keys", format!(r#"{{"mS": {{{many}}}}}"#), Some(true)),
        ("many map keys, one twice", format!(r#"{{"mS": {{{many}, "k7": 1}}}}"#), Some(false)),
        ("long nested message", format!(r#"{{"inner": {{"s": "{long}", "next": {{"s": "{long}"}}}}}}"#), Some(true)),
        ("long packed run", format!(r#"{{"rfx": [{}]}}"#, vec!["4294967295"; 50].join(",")), Some(true)),
        ("well-known types", r#"{"ts": "2024-01-02T03:04:05.5Z", "dur": "-1.5s", "w32": 5, "ws": "x", "mask": "a,bC"}"#.into(), Some(true)),
        ("bad timestamp", r#"{"ts": "yesterday"}"#.into(), Some(false)),
        ("unknown field", r#"{"nope": 1}"#.into(), Some(false)),
        ("extension syntax", r#"{"[k.v1.ext]": 1}"#.into(), Some(false)),
        ("not an object", "[1]".into(), Some(false)),
        ("trailing data", r#"{} {}"#.into(), Some(false)),
        ("bool as string", r#"{"b": "true"}"#.into(), Some(false)),
        ("float range", r#"{"f": 1e39}"#.into(), Some(false)),
        ("NaN float", r#"{"f": "NaN", "rf": ["NaN", 1, "-Infinity"]}"#.into(), Some(true)),
    ];
    for (name, json, expect_fast) in &cases {
        if let Err(e) = agree_request(&all, &plans, json.as_bytes(), true) {
            panic!("{name}: {e}");
        }
        let mut wire = Vec::new();
        let fast = plans
            .encode(
                plans.index_of(&all).unwrap(),
                json.as_bytes(),
                true,
                &mut wire,
            )
            .is_ok();
        if let Some(expected) = expect_fast {
            assert_eq!(fast, *expected, "{name}: fast path answered = {fast}");
        }
    }
    // A map entry the lenient policy drops still counts as its key.
    let mut wire = Vec::new();
    assert_eq!(
        plans.encode(
            plans.index_of(&all).unwrap(),
            br#"{"mB": {"true": "NOPE", "true": "RED"}}"#,
            false,
            &mut wire
        ),
        Err(Fallback)
    );
    // The lenient policy skips unknown fields and enum names, as the reference does.
    for json in [
        r#"{"nope": {"deep": [1]}, "s": "a"}"#,
        r#"{"color": "NOPE", "rc": ["RED", "NOPE"], "m_b": {"true": "NOPE"}}"#,
    ] {
        agree_request(&all, &plans, json.as_bytes(), false).unwrap();
        let mut wire = Vec::new();
        assert!(
            plans
                .encode(
                    plans.index_of(&all).unwrap(),
                    json.as_bytes(),
                    false,
                    &mut wire
                )
                .is_ok(),
            "{json}"
        );
    }
}

#[test]
fn deep_request_nesting_falls_back() {
    let (_, plans) = request_plans();
    let all = POOL.get_message_by_name("k.v1.All").unwrap();
    let depth = 120;
    let json = format!(
        r#"{{"inner": {}{}}}"#,
        r#"{"next": "#.repeat(depth),
        "}".repeat(depth + 1)
    );
    agree_request(&all, &plans, json.as_bytes(), true).unwrap();
    let mut wire = Vec::new();
    assert_eq!(
        plans.encode(
            plans.index_of(&all).unwrap(),
            json.as_bytes(),
            true,
            &mut wire
        ),
        Err(Fallback)
    );
}
