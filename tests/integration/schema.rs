//! The live schema: reflection asked again on a period
//! (`reflection_refresh`), a diff on every swap, and breaking swaps refused
//! on request (`reload.refuse_breaking`). The backend is a real
//! `shop.user.v1.UserService` whose reflection describes edited copies of
//! `user.proto`, restarted on the same address between refreshes as a
//! redeployed service would be.

use std::net::SocketAddr;
use std::sync::Arc;

use protogate::server::Live;
use protox::file::{ChainFileResolver, GoogleFileResolver, IncludeFileResolver};

use crate::support::{Stack, TempDir, eventually, root, serve_live};

/// `user.proto` after `edit`, compiled with its imports into an encoded
/// `FileDescriptorSet` (extension options such as `google.api.http` kept).
fn user_descriptors(edit: impl Fn(String) -> String) -> Vec<u8> {
    let dir = TempDir::new("schema-proto");
    let original = std::fs::read_to_string(root().join("protos/shop/user/v1/user.proto")).unwrap();
    let edited = edit(original);
    let protos = dir.0.join("protos");
    std::fs::create_dir_all(protos.join("shop/user/v1")).unwrap();
    std::fs::write(protos.join("shop/user/v1/user.proto"), edited).unwrap();
    let mut resolver = ChainFileResolver::new();
    resolver.add(IncludeFileResolver::new(protos));
    resolver.add(IncludeFileResolver::new(root().join("protos")));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler.open_file("shop/user/v1/user.proto").unwrap();
    compiler.encode_file_descriptor_set()
}

fn replaced(from: &'static str, to: &'static str) -> impl Fn(String) -> String {
    move |proto: String| {
        assert!(proto.contains(from), "{from:?} is not in user.proto");
        proto.replacen(from, to, 1)
    }
}

const NICKNAME: (&str, &str) = (
    "  Address address = 8;\n",
    "  Address address = 8;\n  // What friends call the user.\n  string nickname = 11;\n",
);
const NO_ROLE: (&str, &str) = ("  Role role = 4;\n", "");

async fn start(extra: &str) -> (Stack, Arc<Live>, shop::Instance, TempDir) {
    let backend = shop::spawn_users_v1_describing(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &user_descriptors(|p| p),
    )
    .await
    .unwrap();
    let dir = TempDir::new("schema-refresh");
    let yaml = format!(
        "backends:\n  users:\n    address: http://{}\n    reflection: true\n    reflection_refresh: 100ms\n{extra}",
        backend.addr
    );
    let path = dir.write_config(&yaml);
    let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    (Stack::for_gateway(addr, stop), live, backend, dir)
}

/// Stops `backend` and serves `descriptors` at its address instead.
async fn redeploy(backend: shop::Instance, descriptors: &[u8]) -> shop::Instance {
    let addr = backend.addr;
    backend.shutdown().await.unwrap();
    shop::spawn_users_v1_describing(addr, descriptors)
        .await
        .unwrap()
}

async fn metrics(stack: &Stack) -> String {
    stack.get_text("/metrics").await.2
}

/// The value of the sample `name{labels}` in the exposition, 0 if absent.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn refreshes(stack: &Stack, result: &str) -> u64 {
    sample(
        &metrics(stack).await,
        &format!("protogate_reflection_refreshes_total{{backend=\"users\",result=\"{result}\"}}"),
    )
}

fn user_fields(stack_doc: &serde_json::Value) -> Vec<String> {
    let mut fields: Vec<String> =
        stack_doc["components"]["schemas"]["shop.user.v1.User"]["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
    fields.sort();
    fields
}

#[tokio::test]
async fn refreshed_reflection_swaps_changes_and_reports_each_one() {
    let (stack, live, backend, _dir) = start("").await;
    let _watch = live.watch().unwrap();
    assert_eq!(stack.get("/v1/users/1").await.status, 200);

    // Unchanged answers swap nothing and record nothing.
    eventually(20, "two unchanged refreshes", || async {
        refreshes(&stack, "unchanged").await >= 2
    })
    .await;
    assert_eq!(live.gateway().generation(), 1);
    assert!(live.schema_history().swaps().is_empty());

    // A backend that stops answering keeps its routes.
    let addr = backend.addr;
    backend.shutdown().await.unwrap();
    eventually(20, "a failed refresh", || async {
        refreshes(&stack, "failed").await >= 1
    })
    .await;
    assert_eq!(live.gateway().generation(), 1);
    assert!(live.gateway().routes().routes().len() >= 5);

    // Back with a field added: compatible, swapped in.
    let backend =
        shop::spawn_users_v1_describing(addr, &user_descriptors(replaced(NICKNAME.0, NICKNAME.1)))
            .await
            .unwrap();
    eventually(20, "the compatible schema swapped in", || async {
        live.gateway().generation() == 2
    })
    .await;
    let swaps = live.schema_history().swaps();
    assert_eq!(swaps.len(), 1, "{swaps:#?}");
    let swap = &swaps[0];
    assert!(swap.applied);
    assert_eq!(
        (
            swap.cause.as_str(),
            swap.from_generation,
            swap.to_generation
        ),
        ("reflection refresh", 1, 2)
    );
    assert_eq!((swap.compatible, swap.breaking), (1, 0), "{swap:#?}");
    assert_eq!(swap.changes[0].rule, "FIELD_ADDED");
    assert_eq!(swap.changes[0].subject, "shop.user.v1.User.nickname");
    assert_eq!(swap.changes[0].backend, "users");
    let doc = stack.get("/openapi.json").await.json;
    assert!(
        user_fields(&doc).contains(&"nickname".to_owned()),
        "{:?}",
        user_fields(&doc)
    );
    assert_eq!(stack.get("/v1/users/1").await.status, 200);
    let text = metrics(&stack).await;
    assert_eq!(
        sample(
            &text,
            "protogate_schema_changes_total{kind=\"compatible\",backend=\"users\"}"
        ),
        1,
        "{text}"
    );

    // A field removed: breaking, and by default swapped in and reported.
    let _backend = redeploy(backend, &user_descriptors(replaced(NO_ROLE.0, NO_ROLE.1))).await;
    eventually(20, "the breaking schema swapped in", || async {
        live.gateway().generation() == 3
    })
    .await;
    let swap = live.schema_history().swaps().pop().unwrap();
    assert!(swap.applied);
    let breaking: Vec<(&str, &str)> = swap
        .changes
        .iter()
        .filter(|c| c.severity == protogate::schema::Severity::Breaking)
        .map(|c| (c.rule, c.subject.as_str()))
        .collect();
    assert_eq!(
        breaking,
        [
            (
                "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
                "shop.user.v1.User.role"
            ),
            (
                "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
                "shop.user.v1.User.nickname"
            ),
        ],
        "{swap:#?}"
    );
    assert!(!user_fields(&stack.get("/openapi.json").await.json).contains(&"role".to_owned()));
    let text = metrics(&stack).await;
    assert_eq!(
        sample(
            &text,
            "protogate_schema_changes_total{kind=\"breaking\",backend=\"users\"}"
        ),
        2,
        "{text}"
    );
    // Nothing refused: readiness says nothing of the schema.
    assert!(
        stack
            .get("/readyz")
            .await
            .json
            .get("schema_refused")
            .is_none()
    );
}

#[tokio::test]
async fn a_breaking_swap_is_refused_when_asked_and_the_old_schema_serves() {
    let (stack, live, backend, _dir) = start("reload:\n  refuse_breaking: true\n").await;
    let _watch = live.watch().unwrap();
    let fields = user_fields(&stack.get("/openapi.json").await.json);
    assert!(fields.contains(&"role".to_owned()), "{fields:?}");

    let backend = redeploy(backend, &user_descriptors(replaced(NO_ROLE.0, NO_ROLE.1))).await;
    eventually(20, "the breaking swap refused", || async {
        !live.schema_history().swaps().is_empty()
    })
    .await;
    let swap = live.schema_history().swaps().pop().unwrap();
    assert!(!swap.applied, "{swap:#?}");
    assert_eq!((swap.from_generation, swap.to_generation), (1, 1));
    assert_eq!(swap.breaking, 1, "{swap:#?}");
    assert_eq!(live.gateway().generation(), 1);
    assert_eq!(user_fields(&stack.get("/openapi.json").await.json), fields);
    let ready = stack.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.json);
    assert_eq!(
        ready.json["schema_refused"]["breaking"], 1,
        "{}",
        ready.json
    );
    assert_eq!(
        ready.json["schema_refused"]["changes"][0]["subject"],
        "shop.user.v1.User.role"
    );
    let text = metrics(&stack).await;
    assert!(
        sample(&text, "protogate_config_reloads_total{result=\"failed\"}") >= 1,
        "{text}"
    );

    // The same refused answer is not asked for again.
    let seen = refreshes(&stack, "unchanged").await;
    eventually(20, "three more refreshes", || async {
        refreshes(&stack, "unchanged").await >= seen + 3
    })
    .await;
    assert_eq!(live.schema_history().swaps().len(), 1);
    assert_eq!(live.gateway().generation(), 1);

    // The backend back on the serving schema: nothing to swap, nothing refused.
    let _backend = redeploy(backend, &user_descriptors(|p| p)).await;
    eventually(20, "the refusal cleared", || async {
        stack
            .get("/readyz")
            .await
            .json
            .get("schema_refused")
            .is_none()
    })
    .await;
    assert_eq!(live.gateway().generation(), 1);
    assert_eq!(live.schema_history().swaps().len(), 1);
}

#[tokio::test]
async fn a_config_reload_that_removes_a_route_is_a_breaking_diff() {
    let users = shop::spawn_users_v1(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let dir = TempDir::new("schema-reload");
    let yaml = |extra: &str| {
        crate::support::config_text(
            &format!(
                "  users:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n",
                users.addr
            ),
            extra,
        )
    };
    let path = dir.write_config(&yaml(""));
    let (addr, stop, live) = serve_live(protogate::config::load(&path).unwrap()).await;
    let stack = Stack::for_gateway(addr, stop);
    // A custom binding added, then taken away again with refusal on.
    let rule = "http:\n  rules:\n    - selector: shop.user.v1.UserService.GetUser\n      get: /v1/users/{id}\n      additional_bindings:\n        - get: /v1/customers/{id}\n        - get: /v1/people/{id}\n";
    dir.write_config(&yaml(rule));
    live.reload().await.unwrap();
    assert_eq!(stack.get("/v1/people/1").await.status, 200);
    let swap = live.schema_history().swaps().pop().unwrap();
    assert_eq!(
        (swap.cause.as_str(), swap.compatible, swap.breaking),
        ("reload", 1, 0),
        "{swap:#?}"
    );

    dir.write_config(&yaml("reload:\n  refuse_breaking: true\n"));
    let error = live.reload().await.unwrap_err().to_string();
    assert!(error.contains("1 breaking change"), "{error}");
    assert!(error.contains("ROUTE_NO_DELETE"), "{error}");
    assert_eq!(stack.get("/v1/people/1").await.status, 200);
    assert_eq!(live.gateway().generation(), 2);

    // Accepting it: refusal off in the same edit.
    dir.write_config(&yaml(""));
    live.reload().await.unwrap();
    assert_eq!(stack.get("/v1/people/1").await.status, 404);
    assert!(
        stack
            .get("/readyz")
            .await
            .json
            .get("schema_refused")
            .is_none()
    );
}

/// What the background refresh fetched is what the reload builds from: it
/// does not ask the backend a second time (here it could not: it is gone).
#[tokio::test]
async fn a_reload_builds_from_the_answer_already_fetched() {
    let (_stack, live, backend, _dir) = start("").await;
    let gateway = live.gateway();
    let config = gateway.config().clone();
    let users = &config.backends[0];
    let found = protogate::gateway::fetch(users).await.unwrap();
    backend.shutdown().await.unwrap();

    let mut answers = protogate::gateway::Answers::default();
    answers.insert(users, found.clone());
    let next = gateway.reload_with(config.clone(), answers).await.unwrap();
    assert!(next.pending_reflection().is_empty());
    assert_eq!(
        next.routes().routes().len(),
        gateway.routes().routes().len()
    );

    // An answer from other endpoints than the config names now is not used.
    let mut moved = config.clone();
    moved.backends[0].endpoints = vec!["http://127.0.0.1:9".parse().unwrap()];
    let mut answers = protogate::gateway::Answers::default();
    answers.insert(users, found);
    let next = gateway.reload_with(moved, answers).await.unwrap();
    assert_eq!(next.pending_reflection(), ["users"]);
}
