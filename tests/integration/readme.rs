//! The README's `curl` calls, run with real curl against a fresh stack, in
//! order, each compared with the JSON the README shows after it.

use std::process::Command;

use serde_json::Value;

use crate::support::{root, start};

/// (command, expected JSON) pairs: each ```sh block that is a curl call and the ```json block after it.
fn examples(readme: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push((lang.trim().to_owned(), body.join("\n")));
        }
    }
    let mut out = Vec::new();
    for pair in blocks.windows(2) {
        let [(lang, body), (next_lang, next_body)] = pair else {
            continue;
        };
        if lang == "sh" && body.starts_with("curl ") {
            assert_eq!(
                next_lang, "json",
                "README: `{body}` must be followed by a ```json block"
            );
            out.push((body.clone(), next_body.clone()));
        }
    }
    out
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && s.ends_with('Z')
}

/// JSON equality, except that a README timestamp with fractional seconds
/// (the clock time of a record created by an earlier call; seed data uses
/// whole seconds) matches any timestamp.
fn same(want: &Value, got: &Value) -> bool {
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

#[tokio::test]
async fn readme_curl_examples_are_true() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let examples = examples(&readme);
    assert!(
        examples.len() >= 12,
        "found only {} curl examples",
        examples.len()
    );
    let stack = start().await;
    let host = stack.addr.to_string();
    for (command, expected) in examples {
        let want: Value = serde_json::from_str(&expected)
            .unwrap_or_else(|e| panic!("README JSON after `{command}`: {e}"));
        let runnable = command.replace("localhost:8080", &host);
        let output = tokio::task::spawn_blocking(move || {
            Command::new("sh").arg("-c").arg(&runnable).output()
        })
        .await
        .unwrap()
        .expect("sh and curl are installed");
        assert!(
            output.status.success(),
            "`{command}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let got: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "`{command}` printed non-JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        assert!(
            same(&want, &got),
            "`{command}`\nREADME: {want}\n   got: {got}"
        );
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
