//! Property tests of the transcoder's fast paths against the
//! `DynamicMessage` reference, on messages generated from their descriptor:
//! every field kind, enums, repeated fields, maps, nested messages to a
//! bounded depth, oneofs and well-known types. The strategies are built from
//! the `MessageDescriptor`, so a failure shrinks to a minimal message (fewer
//! fields set, shorter lists, smaller numbers) rather than to a seed.
//!
//! Only the public API: the descriptors are loaded as the gateway loads them,
//! the routes come from `RouteTable::build`, the codecs from
//! `Transcoder::build`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use http::Method;
use proptest::prelude::*;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value,
};
use protogate::config::{self, DescriptorSources, JsonOptions};
use protogate::http_rule::RouteTable;
use protogate::transcode::{self, Transcoder};

/// Every kind of field, each service method taking and returning one
/// message with the whole body bound (`body: "*"`).
const PROTO: &str = r#"
syntax = "proto3";
package props.v1;
import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/empty.proto";

enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }
message Inner { string s = 1; repeated int32 r = 2; Inner next = 3; map<string, Color> tags = 4; }
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
  map<string, float> m_f = 38; repeated bytes rby = 39; map<sfixed64, bytes> m_sf = 40;
  google.protobuf.Empty empty = 41; repeated google.protobuf.Timestamp rts = 42;
  oneof other { Color o_c = 43; bytes o_b = 44; }
}

service Props {
  rpc All(All) returns (All) { option (google.api.http) = { post: "/v1/all" body: "*" }; }
  rpc Inner(Inner) returns (Inner) { option (google.api.http) = { post: "/v1/inner" body: "*" }; }
}
"#;

/// The routes under test: their paths and the message each takes and returns.
const ROUTES: &[(&str, &str)] = &[("/v1/all", "props.v1.All"), ("/v1/inner", "props.v1.Inner")];

/// How deep nested messages go: `Inner.next` recurses.
const MAX_DEPTH: u32 = 3;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("protogate-properties-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("props.proto"), PROTO).unwrap();
    let pool = protogate::descriptor::load(&DescriptorSources {
        include: vec![root.join("tests/fixtures/protos"), dir.clone()],
        protos: vec!["props.proto".into()],
        descriptor_sets: vec![],
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    pool
});

static TABLE: LazyLock<RouteTable> = LazyLock::new(|| {
    let config = config::parse(
        "descriptors:\n  protos: [props.proto]\nbackends:\n  b:\n    address: http://127.0.0.1:1\n    services: [props.v1.Props]\n",
        Path::new("props.yaml"),
    )
    .unwrap();
    RouteTable::build(&POOL, &config).unwrap()
});

/// The JSON options whose replies the fast path renders.
fn json_options() -> [JsonOptions; 3] {
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

// Strategies from descriptors.

/// Messages of `desc`: each field unset or set, each oneof unset or one of
/// its members, nested messages down to [`MAX_DEPTH`].
fn message(desc: MessageDescriptor, depth: u32) -> BoxedStrategy<DynamicMessage> {
    if let Some(known) = well_known(&desc) {
        return known;
    }
    let mut parts: Vec<BoxedStrategy<Vec<(FieldDescriptor, Value)>>> = Vec::new();
    for field in desc.fields() {
        // Members of a real oneof are chosen below; proto3 `optional` is a
        // synthetic oneof of one field, an ordinary field with presence.
        if field.containing_oneof().is_some_and(|o| !o.is_synthetic()) {
            continue;
        }
        let set = field_value(&field, depth);
        parts.push(
            proptest::option::of(set)
                .prop_map(move |v| v.map(|v| (field.clone(), v)).into_iter().collect())
                .boxed(),
        );
    }
    for oneof in desc.oneofs().filter(|o| !o.is_synthetic()) {
        let mut members: Vec<BoxedStrategy<Vec<(FieldDescriptor, Value)>>> =
            vec![Just(Vec::new()).boxed()];
        for field in oneof.fields() {
            members.push(
                field_value(&field, depth)
                    .prop_map(move |v| vec![(field.clone(), v)])
                    .boxed(),
            );
        }
        parts.push(proptest::strategy::Union::new(members).boxed());
    }
    parts
        .prop_map(move |fields| {
            let mut msg = DynamicMessage::new(desc.clone());
            for (field, value) in fields.into_iter().flatten() {
                msg.set_field(&field, value);
            }
            msg
        })
        .boxed()
}

/// Values a field can hold: a list for a repeated field, a map for a map field.
fn field_value(field: &FieldDescriptor, depth: u32) -> BoxedStrategy<Value> {
    let kind = field.kind();
    if field.is_map() {
        let entry = kind.as_message().expect("a map field's kind is its entry");
        let key = map_key(&entry.map_entry_key_field().kind());
        let value = single(&entry.map_entry_value_field().kind(), depth + 1);
        return proptest::collection::vec((key, value), 0..3)
            .prop_map(|pairs| Value::Map(pairs.into_iter().collect::<HashMap<_, _>>()))
            .boxed();
    }
    if field.is_list() {
        return proptest::collection::vec(single(&kind, depth + 1), 0..3)
            .prop_map(Value::List)
            .boxed();
    }
    single(&kind, depth + 1)
}

/// One value of `kind`; a message past [`MAX_DEPTH`] is empty.
fn single(kind: &Kind, depth: u32) -> BoxedStrategy<Value> {
    match kind {
        Kind::Double => any::<f64>().prop_map(Value::F64).boxed(),
        Kind::Float => any::<f32>().prop_map(Value::F32).boxed(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => any::<i32>().prop_map(Value::I32).boxed(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => any::<i64>().prop_map(Value::I64).boxed(),
        Kind::Uint32 | Kind::Fixed32 => any::<u32>().prop_map(Value::U32).boxed(),
        Kind::Uint64 | Kind::Fixed64 => any::<u64>().prop_map(Value::U64).boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::String => text().prop_map(Value::String).boxed(),
        Kind::Bytes => proptest::collection::vec(any::<u8>(), 0..6)
            .prop_map(|b| Value::Bytes(b.into()))
            .boxed(),
        Kind::Enum(e) => {
            let numbers: Vec<i32> = e.values().map(|v| v.number()).collect();
            // Mostly declared values, sometimes one the descriptor does not know.
            prop_oneof![
                4 => proptest::sample::select(numbers),
                1 => Just(99),
            ]
            .prop_map(Value::EnumNumber)
            .boxed()
        }
        Kind::Message(m) if depth >= MAX_DEPTH => {
            Just(Value::Message(DynamicMessage::new(m.clone()))).boxed()
        }
        Kind::Message(m) => message(m.clone(), depth).prop_map(Value::Message).boxed(),
    }
}

/// Keys of a map whose key is of `kind`.
fn map_key(kind: &Kind) -> BoxedStrategy<MapKey> {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => any::<i32>().prop_map(MapKey::I32).boxed(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => any::<i64>().prop_map(MapKey::I64).boxed(),
        Kind::Uint32 | Kind::Fixed32 => any::<u32>().prop_map(MapKey::U32).boxed(),
        Kind::Uint64 | Kind::Fixed64 => any::<u64>().prop_map(MapKey::U64).boxed(),
        Kind::Bool => any::<bool>().prop_map(MapKey::Bool).boxed(),
        Kind::String => text().prop_map(MapKey::String).boxed(),
        other => unreachable!("{other:?} is no map key kind"),
    }
}

/// Short strings with what JSON must escape and what UTF-8 spends bytes on.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just('a'),
        Just('"'),
        Just('\\'),
        Just('\n'),
        Just('\u{1}'),
        Just('/'),
        Just('<'),
        any::<char>(),
    ];
    proptest::collection::vec(piece, 0..6).prop_map(String::from_iter)
}

/// Well-known types whose JSON form accepts only some values: valid ones.
fn well_known(desc: &MessageDescriptor) -> Option<BoxedStrategy<DynamicMessage>> {
    let build = {
        let desc = desc.clone();
        move |fields: Vec<(&str, Value)>| {
            let mut msg = DynamicMessage::new(desc.clone());
            for (name, value) in fields {
                msg.set_field_by_name(name, value);
            }
            msg
        }
    };
    Some(match desc.full_name() {
        // 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
        "google.protobuf.Timestamp" => (-62_135_596_800i64..=253_402_300_799, 0..1_000_000_000i32)
            .prop_map(move |(s, n)| {
                build(vec![("seconds", Value::I64(s)), ("nanos", Value::I32(n))])
            })
            .boxed(),
        // Seconds and nanos share a sign; at most 10,000 years.
        "google.protobuf.Duration" => (0..=315_576_000_000i64, 0..1_000_000_000i32, any::<bool>())
            .prop_map(move |(s, n, negative)| {
                let sign = if negative { -1 } else { 1 };
                build(vec![
                    ("seconds", Value::I64(sign * s)),
                    ("nanos", Value::I32(sign as i32 * n)),
                ])
            })
            .boxed(),
        // Paths that survive the lowerCamelCase round trip.
        "google.protobuf.FieldMask" => {
            proptest::collection::vec("[a-z]{1,3}(_[a-z]{1,3}){0,2}(\\.[a-z]{1,3}){0,1}", 0..3)
                .prop_map(move |paths| {
                    build(vec![(
                        "paths",
                        Value::List(paths.into_iter().map(Value::String).collect()),
                    )])
                })
                .boxed()
        }
        _ => return None,
    })
}

// The checks.

/// The route at `path` and the message it takes and returns.
fn route(path: &str) -> (Arc<protogate::http_rule::Route>, MessageDescriptor) {
    let found = TABLE.lookup(&Method::POST, path).unwrap();
    let desc = found.route.method.input();
    (found.route.clone(), desc)
}

/// A message for the route at `path`.
#[derive(Clone)]
struct Case {
    path: &'static str,
    message: DynamicMessage,
}

/// The message as JSON: a `DynamicMessage`'s own `Debug` prints its
/// descriptor, which never ends for a recursive message (`Inner.next`).
impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let json = serde_json::to_string(&self.message).map_err(|_| std::fmt::Error)?;
        write!(f, "{} {json}", self.path)
    }
}

/// A message of each route, with the route.
fn messages() -> impl Strategy<Value = Vec<Case>> {
    ROUTES
        .iter()
        .map(|(path, name)| {
            let desc = POOL.get_message_by_name(name).unwrap();
            message(desc, 0).prop_map(move |message| Case { path, message })
        })
        .collect::<Vec<_>>()
}

/// The message decoded from `wire` as JSON, or why it does not decode.
fn decoded(desc: &MessageDescriptor, wire: &[u8]) -> Result<serde_json::Value, String> {
    let msg = DynamicMessage::decode(desc.clone(), wire).map_err(|e| e.to_string())?;
    serde_json::to_value(&msg).map_err(|e| e.to_string())
}

/// JSON text as a value, or the text when it does not parse.
fn parsed(out: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(out).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(out)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A reply's wire bytes render to the same JSON by the route's codec
    /// (fast path) as by the reference. Compared as JSON values: the fast
    /// path writes map entries in wire order, the reference sorts them.
    #[test]
    fn replies_render_as_the_reference_renders_them(cases in messages()) {
        for json in json_options() {
            let codec = Transcoder::build(&*TABLE, &json);
            for Case { path, message } in &cases {
                let (route, _) = route(path);
                let wire = message.encode_to_vec();
                let want = transcode::response(&route, &wire, &json).map(|out| parsed(&out));
                let got = codec.route(&route).response(&wire).map(|out| parsed(&out));
                prop_assert_eq!(got, want, "{} with {:?}", path, json);
            }
        }
    }

    /// The JSON a client would send for a message (as the gateway renders
    /// it) builds the same request by the route's codec as by the reference.
    #[test]
    fn request_bodies_build_as_the_reference_builds_them(cases in messages()) {
        for json in json_options() {
            let codec = Transcoder::build(&*TABLE, &json);
            let options = transcode::response::serialize_options(&json);
            for Case { path, message } in &cases {
                let (route, desc) = route(path);
                let mut body = Vec::new();
                message.serialize_with_options(&mut serde_json::Serializer::new(&mut body), &options)
                    .unwrap();
                let text = String::from_utf8_lossy(&body).into_owned();
                let want = transcode::request(&route, &[], None, &body)
                    .map(|wire| decoded(&desc, &wire));
                let got = codec
                    .route(&route)
                    .request(&[], None, &body)
                    .map(|wire| decoded(&desc, &wire));
                prop_assert_eq!(got, want, "{} {}", path, text);
            }
        }
    }
}
