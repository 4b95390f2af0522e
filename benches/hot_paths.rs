//! Micro-benchmarks of the per-request hot paths: route lookup in a
//! 1,000-route table, request building, reply JSON and JSON→wire, each by
//! the fast path and by the `DynamicMessage` reference, for the bench rig's
//! messages.
//!
//! `cargo bench --bench hot_paths`

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use prost::Message;
use prost_reflect::DynamicMessage;
use protogate::config::{self, DescriptorSources, JsonOptions};
use protogate::http_rule::RouteTable;
use protogate::transcode::fast::RequestPlans;
use protogate::transcode::{self, Transcoder};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A pool and table for `bench.proto`, or for a generated proto with `methods` routes.
fn table(methods: Option<usize>) -> (prost_reflect::DescriptorPool, RouteTable) {
    let dir = std::env::temp_dir().join(format!(
        "protogate-bench-{}-{}",
        std::process::id(),
        methods.unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (proto, service) = match methods {
        None => ("bench/v1/bench.proto".to_owned(), "bench.v1.*"),
        Some(n) => {
            let mut src = String::from(
                "syntax = \"proto3\"; package gen.v1; import \"google/api/annotations.proto\";\nmessage M { string id = 1; string name = 2; }\nservice Big {\n",
            );
            for i in 0..n {
                src.push_str(&format!(
                    "  rpc Get{i}(M) returns (M) {{ option (google.api.http) = {{ get: \"/v1/res{i}/{{id}}/items/{{name}}\" }}; }}\n"
                ));
            }
            src.push_str("}\n");
            std::fs::write(dir.join("gen.proto"), src).unwrap();
            ("gen.proto".to_owned(), "gen.v1.*")
        }
    };
    let config = config::parse(
        &format!(
            "descriptors:\n  protos: [{proto}]\nbackends:\n  b:\n    address: http://127.0.0.1:1\n    services: [{service}]\n"
        ),
        Path::new("bench.yaml"),
    )
    .unwrap();
    let pool = protogate::descriptor::load(&DescriptorSources {
        include: vec![root().join("tests/fixtures/protos"), dir],
        protos: vec![proto.into()],
        descriptor_sets: vec![],
    })
    .unwrap();
    let routes = RouteTable::build(&pool, &config).unwrap();
    (pool, routes)
}

fn route_lookup(c: &mut Criterion) {
    for n in [10, 1000] {
        let (_, routes) = table(Some(n));
        let path = format!("/v1/res{}/abc/items/def", n / 2);
        c.bench_function(&format!("route lookup, {n} routes"), |b| {
            b.iter(|| {
                routes
                    .lookup(&Method::GET, black_box(&path))
                    .unwrap()
                    .values
                    .len()
            })
        });
    }
}

fn request_building(c: &mut Criterion) {
    let (_, routes) = table(None);
    let codec = Transcoder::build(&routes, &JsonOptions::default());
    let found = routes.lookup(&Method::GET, "/v1/items/item-01234").unwrap();
    let get_item = codec.route(found.route);
    c.bench_function("request: path + enum query (get_item), fast path", |b| {
        b.iter(|| {
            get_item
                .request(&found.values, black_box(Some("view=ITEM_VIEW_FULL")), b"")
                .unwrap()
        })
    });
    c.bench_function(
        "request: path + enum query (get_item), DynamicMessage reference",
        |b| {
            b.iter(|| {
                transcode::request(
                    found.route,
                    &found.values,
                    black_box(Some("view=ITEM_VIEW_FULL")),
                    b"",
                )
                .unwrap()
            })
        },
    );
    let echo = routes.lookup(&Method::POST, "/v1/echo").unwrap();
    let echo_codec = codec.route(echo.route);
    let body = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/cases/echo.json"))
        .unwrap_or_else(|_| br#"{"message":"hello from the benchmark, a hundred bytes of JSON or so","sequence":42,"tags":["a","b","c"]}"#.to_vec());
    c.bench_function("request: JSON body (echo), fast path", |b| {
        b.iter(|| {
            echo_codec
                .request(&echo.values, None, black_box(&body))
                .unwrap()
        })
    });
    c.bench_function("request: JSON body (echo), DynamicMessage reference", |b| {
        b.iter(|| transcode::request(echo.route, &echo.values, None, black_box(&body)).unwrap())
    });
}

fn replies(c: &mut Criterion) {
    let (pool, routes) = table(None);
    let json = JsonOptions::default();
    let codec = Transcoder::build(&routes, &json);
    let list = routes.lookup(&Method::GET, "/v1/items").unwrap();
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/bench/list_items.json")).unwrap();
    let desc = pool
        .get_message_by_name("bench.v1.ListItemsResponse")
        .unwrap();
    let reply = DynamicMessage::deserialize(desc, &mut serde_json::Deserializer::from_str(&text))
        .unwrap()
        .encode_to_vec();
    c.bench_function("reply: list_items, fast path", |b| {
        let list_codec = codec.route(list.route);
        b.iter(|| list_codec.response(black_box(&reply)).unwrap())
    });
    c.bench_function("reply: list_items, DynamicMessage reference", |b| {
        b.iter(|| transcode::response(list.route, black_box(&reply), &json).unwrap())
    });
    let echo = routes.lookup(&Method::POST, "/v1/echo").unwrap();
    let desc = pool.get_message_by_name("bench.v1.EchoResponse").unwrap();
    let reply = DynamicMessage::deserialize(
        desc,
        &mut serde_json::Deserializer::from_str(
            r#"{"message":"hello from the benchmark, a hundred bytes of JSON or so","sequence":42,"tags":["a","b","c"],"messageLength":59}"#,
        ),
    )
    .unwrap()
    .encode_to_vec();
    c.bench_function("reply: echo, fast path", |b| {
        let echo_codec = codec.route(echo.route);
        b.iter(|| echo_codec.response(black_box(&reply)).unwrap())
    });
    c.bench_function("reply: echo, DynamicMessage reference", |b| {
        b.iter(|| transcode::response(echo.route, black_box(&reply), &json).unwrap())
    });
}

/// JSON → wire on the big message, as a client-side upload of it would be.
fn json_to_wire(c: &mut Criterion) {
    let (pool, _) = table(None);
    let text = std::fs::read(root().join("tests/fixtures/bench/list_items.json")).unwrap();
    let desc = pool
        .get_message_by_name("bench.v1.ListItemsResponse")
        .unwrap();
    let plans = RequestPlans::build([&desc]);
    let index = plans.index_of(&desc).unwrap();
    c.bench_function("JSON→wire: list_items, fast path", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(text.len());
            plans
                .encode(index, black_box(&text), true, &mut out)
                .unwrap();
            out
        })
    });
    c.bench_function("JSON→wire: list_items, DynamicMessage reference", |b| {
        b.iter(|| {
            DynamicMessage::deserialize(
                desc.clone(),
                &mut serde_json::Deserializer::from_slice(black_box(&text)),
            )
            .unwrap()
            .encode_to_vec()
        })
    });
}

criterion_group!(
    benches,
    route_lookup,
    request_building,
    replies,
    json_to_wire
);
criterion_main!(benches);
