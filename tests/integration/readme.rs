//! The README's `curl` calls, run with real curl against a fresh stack, in
//! order, each compared with the JSON the README shows after it.

use std::process::Command;

use serde_json::Value;

use crate::support::{TempDir, absolute_paths, example_config, root, serve, start_live_with};

/// What the README asks the reader to run, in order.
enum Step {
    /// `export NAME=$(command)`: run it and keep the output in NAME.
    Export { name: String, command: String },
    /// A curl call and what the README shows after it.
    Call {
        command: String,
        expected: String,
        kind: Expect,
    },
}

/// How a call's output is compared with the README, by the block's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// ```json: the same JSON value.
    Json,
    /// ```json excerpt: part of the JSON value: the keys shown, with
    /// values that are excerpts of the answer's; each element of a list
    /// shown is an excerpt of one of the answer's (an empty list is empty).
    JsonExcerpt,
    /// ```ndjson: the same JSON values, one per line.
    Ndjson,
    /// ```http: each status line and header shown is printed (`-D -`).
    Headers,
    /// ```csv or ```text: the same text.
    Text,
}

/// The fenced blocks of `text`, as (language, body).
pub(crate) fn blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push((lang.trim().to_owned(), body.join("\n")));
        }
    }
    blocks
}

/// The README's section under `heading`, up to the next `## ` heading.
pub(crate) fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no `{heading}`"));
    let rest = &readme[start + 1..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| i + heading.len());
    &rest[..end]
}

/// The steps: ```sh blocks that export a variable or call curl (each call
/// followed by a ```json block).
fn examples(readme: &str) -> Vec<Step> {
    let blocks = blocks(readme);
    let mut out = Vec::new();
    for (i, (lang, body)) in blocks.iter().enumerate() {
        if lang != "sh" {
            continue;
        }
        if let Some(rest) = body.strip_prefix("export ")
            && let Some((name, value)) = rest.split_once('=')
            && let Some(command) = value.strip_prefix("$(").and_then(|v| v.strip_suffix(')'))
        {
            out.push(Step::Export {
                name: name.to_owned(),
                command: command.to_owned(),
            });
        } else if body.starts_with("curl ") || body.contains("| curl ") {
            let kind = match blocks.get(i + 1).map(|(l, _)| l.as_str()) {
                Some("json") => Expect::Json,
                Some("json excerpt") => Expect::JsonExcerpt,
                Some("ndjson") => Expect::Ndjson,
                Some("http") => Expect::Headers,
                Some("csv" | "text") => Expect::Text,
                _ => panic!(
                    "README: `{body}` must be followed by a ```json, ```ndjson, ```http, ```csv or ```text block"
                ),
            };
            out.push(Step::Call {
                command: body.clone(),
                expected: blocks[i + 1].1.clone(),
                kind,
            });
        }
    }
    out
}

/// Where the README's `localhost:8080` (the gateway) and `localhost:9901`
/// (its admin API) are in the test.
struct Hosts {
    gateway: String,
    admin: String,
}

/// Runs a README command with `sh`: the test's addresses for the README's
/// and the built binary for `cargo run -q --`.
async fn run(command: &str, hosts: &Hosts, env: &[(String, String)]) -> std::process::Output {
    let runnable = command
        .replace("localhost:8080", &hosts.gateway)
        .replace("localhost:9901", &hosts.admin)
        .replace("cargo run -q --", env!("CARGO_BIN_EXE_protogate"));
    let env = env.to_vec();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .arg("-c")
            .arg(&runnable)
            .current_dir(root())
            .envs(env)
            .output()
    })
    .await
    .unwrap()
    .expect("sh and curl are installed");
    assert!(
        output.status.success(),
        "`{command}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && s.ends_with('Z')
}

/// JSON equality, except that a README timestamp with fractional seconds
/// (the clock time of a record created by an earlier call; seed data uses
/// whole seconds) matches any timestamp.
pub(crate) fn same(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::String(w), Value::String(g)) if is_timestamp(w) && w.contains('.') => {
            is_timestamp(g)
        }
        (Value::Object(w), Value::Object(g)) => {
            w.len() == g.len()
                && w.iter()
                    .all(|(k, v)| g.get(k).is_some_and(|gv| same(v, gv)))
        }
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| same(a, b))
        }
        (w, g) => w == g,
    }
}

/// [`same`] for a README excerpt of `got` (see [`Expect::JsonExcerpt`]).
fn excerpt(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| excerpt(v, gv))),
        (Value::Array(w), Value::Array(g)) if w.is_empty() => g.is_empty(),
        (Value::Array(w), Value::Array(g)) => w.iter().all(|wv| g.iter().any(|gv| excerpt(wv, gv))),
        (w, g) => same(w, g),
    }
}

#[tokio::test]
async fn readme_curl_examples_are_true() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let steps = examples(&readme);
    let calls = steps
        .iter()
        .filter(|s| matches!(s, Step::Call { .. }))
        .count();
    assert!(calls >= 15, "found only {calls} curl examples");
    let (stack, live) =
        start_live_with(|c| c.admin.listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let admin = protogate::server::admin::start(&live)
        .await
        .unwrap()
        .expect("an admin listener");
    let hosts = Hosts {
        gateway: stack.addr().to_string(),
        admin: admin.addr().to_string(),
    };
    let mut env: Vec<(String, String)> = Vec::new();
    for step in steps {
        match step {
            Step::Export { name, command } => {
                let output = run(&command, &hosts, &env).await;
                env.push((
                    name,
                    String::from_utf8_lossy(&output.stdout).trim().to_owned(),
                ));
            }
            Step::Call {
                command,
                expected,
                kind,
            } => {
                let output = run(&command, &hosts, &env).await;
                let got = String::from_utf8_lossy(&output.stdout).into_owned();
                check(&command, kind, &expected, &got);
            }
        }
    }
}

/// Compares a call's output with what the README shows.
fn check(command: &str, kind: Expect, expected: &str, got: &str) {
    let json = |text: &str, what: &str| -> Value {
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("`{command}`: {what} is not JSON ({e}): {text}"))
    };
    match kind {
        Expect::Json => {
            let (want, got) = (json(expected, "README"), json(got, "output"));
            assert!(
                same(&want, &got),
                "`{command}`\nREADME: {want}\n   got: {got}"
            );
        }
        Expect::JsonExcerpt => {
            let (want, got) = (json(expected, "README"), json(got, "output"));
            assert!(
                excerpt(&want, &got),
                "`{command}`\nREADME excerpt: {want}\n           got: {got}"
            );
        }
        Expect::Ndjson => {
            let lines = |text: &str, what: &str| -> Vec<Value> {
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| json(l, what))
                    .collect()
            };
            let (want, got) = (lines(expected, "README"), lines(got, "output"));
            assert!(
                want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| same(w, g)),
                "`{command}`\nREADME: {want:?}\n   got: {got:?}"
            );
        }
        Expect::Headers => {
            let got = got.to_ascii_lowercase();
            let got: Vec<&str> = got.lines().map(str::trim_end).collect();
            for line in expected.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    got.contains(&line.trim_end().to_ascii_lowercase().as_str()),
                    "`{command}`: README shows `{line}`; got:\n{}",
                    got.join("\n")
                );
            }
        }
        Expect::Text => assert_eq!(got.trim_end(), expected.trim_end(), "`{command}`"),
    }
}

#[test]
fn timestamp_wildcard_is_narrow() {
    let want: Value =
        serde_json::json!({"t": "2026-11-21T12:03:16.959894461Z", "u": "2026-01-15T09:30:00Z"});
    assert!(same(
        &want,
        &serde_json::json!({"t": "2027-01-01T00:00:00Z", "u": "2026-01-15T09:30:00Z"})
    ));
    assert!(!same(
        &want,
        &serde_json::json!({"t": "yesterday", "u": "2026-01-15T09:30:00Z"})
    ));
    assert!(!same(
        &want,
        &serde_json::json!({"t": "2027-01-01T00:00:00Z", "u": "2026-01-15T09:31:00Z"})
    ));
    assert!(!same(
        &want,
        &serde_json::json!({"t": "2027-01-01T00:00:00Z"})
    ));
}

/// The `## Your own service` blocks of `lang`, in order.
fn own_service_blocks(lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    blocks(section(&readme, "## Your own service"))
        .into_iter()
        .filter(|(l, _)| l == lang)
        .map(|(_, body)| body)
        .collect()
}

#[test]
fn own_service_minimal_config_checks_as_shown() {
    let proto = &own_service_blocks("proto")[0];
    let config = &own_service_blocks("yaml")[0];
    let transcript = &own_service_blocks("text")[0];
    let dir = TempDir::new("own-service");
    let gateway = dir.0.join("my-gateway");
    std::fs::create_dir_all(gateway.join("protos/greeter/v1")).unwrap();
    std::fs::write(gateway.join("protos/greeter/v1/greeter.proto"), proto).unwrap();
    std::fs::write(gateway.join("gateway.yaml"), config).unwrap();

    // The lines after `$ protogate check ...`, up to the next command.
    let mut lines = transcript.lines();
    let command = lines.next().unwrap();
    assert_eq!(
        command,
        "$ protogate check --config my-gateway/gateway.yaml"
    );
    let shown: Vec<&str> = lines.take_while(|l| !l.starts_with("$ ")).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_protogate"))
        .args(["check", "--config", "my-gateway/gateway.yaml"])
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim_end(), shown.join("\n"), "README's check output");
}

/// Adds the mapping entries and list items of `add` to `base`, as the
/// README's `# ...` snippets mean.
fn merge(base: &mut serde_norway::Value, add: serde_norway::Value) {
    use serde_norway::Value as Yaml;
    match (base, add) {
        (Yaml::Mapping(base), Yaml::Mapping(add)) => {
            for (key, value) in add {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (Yaml::Sequence(base), Yaml::Sequence(add)) => base.extend(add),
        (base, add) => *base = add,
    }
}

// The shipped gateway.yaml with the README's service added: the tests'
// config keeps loading (the added backend is not one they start), the
// example's routes and auth stay, and the new route is public.
#[tokio::test]
async fn own_service_beside_the_example_is_routed_with_its_rule() {
    let proto = &own_service_blocks("proto")[0];
    let addition = &own_service_blocks("yaml")[1];
    let dir = TempDir::new("own-service-example");
    std::fs::create_dir_all(dir.0.join("protos/greeter/v1")).unwrap();
    std::fs::write(dir.0.join("protos/greeter/v1/greeter.proto"), proto).unwrap();

    let text = std::fs::read_to_string(root().join("gateway.yaml")).unwrap();
    let mut yaml: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    absolute_paths(&mut yaml, &root());
    merge(&mut yaml, serde_norway::from_str(addition).unwrap());
    // The README puts the proto under the example's include directory;
    // here it sits in an include directory of its own.
    merge(
        &mut yaml,
        serde_norway::from_str(&format!(
            "descriptors: {{ include: [{}] }}",
            dir.0.join("protos").display()
        ))
        .unwrap(),
    );
    let path = dir.write_config(&serde_norway::to_string(&yaml).unwrap());

    let backends = shop::spawn_ephemeral().await.expect("backends start");
    let (addr, stop) = serve(example_config(&path, &backends)).await;
    let stack = crate::support::Stack::for_gateway(addr, stop);
    let hello = stack.get("/v1/hello/ada").await;
    assert_eq!(
        (hello.status.as_u16(), &hello.json["code"]),
        (503, &serde_json::json!(14)),
        "public, and its backend is not running: {:?}",
        hello.json
    );
    assert_eq!(stack.get("/v1/users/1").await.status, 200);
    let orders = stack.get("/v1/users/1/orders/1001").await;
    assert_eq!(orders.status, 401, "the example's auth still holds");
}
