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

fn fast(plans: &Plans, desc: &MessageDescriptor, wire: &[u8]) -> Result<serde_json::Value> {
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
    plans: &Plans,
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
            let plans = Plans::build(roots.iter(), &json).unwrap();
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
        let plans = Plans::build(roots.iter(), &JsonOptions::default()).unwrap();
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
    let plans = Plans::build([&desc], &json).unwrap();
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
        Plans::build(
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
    let plans = Plans::build([&all], &json).unwrap();
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
    let plans = Plans::build([&ts, &all], &json).unwrap();
    assert!(plans.index_of(&ts).is_none());
    assert!(plans.index_of(&all).is_some());
}
