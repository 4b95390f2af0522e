//! The crate's top-level modules form layers: a module may use the modules
//! of lower layers, and those of its own layer only without a cycle. This
//! test reads every file under `src/`, finds its references to other
//! top-level modules (`use crate::x…`, `use crate::{x, y::…}`, inline
//! `crate::x::…`; not in comments, string literals or `#[cfg(test)]` code)
//! and fails on an import that goes up, or round, a layer.
//!
//! The layers, lowest first, and why each module sits where it does:
//!
//! 0. `watch`, `cause`: leaves that import nothing: file events and SIGHUP,
//!    debounced; an error's source chain as one line.
//! 1. `config`: the validated `gateway.yaml`; everything reads it.
//! 2. `descriptor`, `tls`, `telemetry`: built from the config at startup.
//!    `tls` reuses `descriptor`'s error-cause chain; `telemetry` (spans,
//!    the subscriber) sits this low because upstream calls open spans.
//! 3. `http_rule`: the route table, from descriptors and config.
//! 4. `transcode`, `auth`, `upstream`, `openapi`, `rate_limit`, `schema`:
//!    the steps of a request, over routes. `openapi` reads `auth` and
//!    `transcode`, `rate_limit` reads `auth`'s principal; `schema` compares
//!    two route tables' methods and types; `validate` checks a request
//!    message against its descriptors' rules.
//! 5. `error`, `metrics`, `plan`: `error` maps every step's error to one
//!    HTTP answer, so it sits above the steps; `metrics` counts per route
//!    and per backend (`http_rule` and `upstream` types) and `gateway` owns
//!    it; `plan` joins what each step resolved for a route into its plan.
//! 6. `gateway`: the loaded state the server serves.
//! 7. `server`: HTTP in.
//! 8. `cli` and the crate root (`lib.rs`, `main.rs`).
//!
//! `src/foo.rs` and `src/foo/**` are module `foo`. Violations print as
//! `src/file.rs:LINE: module a imports b (layer 4 → 5)`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first; see the module header for the reasons.
const LAYERS: &[&[&str]] = &[
    &["watch", "cause"],
    &["config"],
    &["descriptor", "tls", "telemetry"],
    &["http_rule"],
    &[
        "transcode",
        "auth",
        "upstream",
        "openapi",
        "rate_limit",
        "schema",
        "validate",
    ],
    &["error", "metrics", "plan"],
    &["gateway"],
    &["server"],
    &["cli", ROOT],
];

/// The crate root's name here: `lib.rs`, `main.rs`, and any `crate::Item`
/// that is not a module.
const ROOT: &str = "crate";

/// Upward imports allowed for a while, as (importer, imported): none. An
/// entry is a debt: an import not listed fails the test, and so does a
/// listed one that no longer occurs.
const PENDING: &[(&str, &str)] = &[];

#[test]
fn no_module_imports_a_higher_layer_or_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let report = check(&src);
    for line in &report.lines {
        println!("{line}");
    }
    println!(
        "layering: {} upward imports ({} allowed by PENDING), {} imports in same-layer cycles",
        report.upward, report.pending, report.cycles
    );
    assert!(
        report.failures.is_empty(),
        "layering violations:\n{}",
        report.failures.join("\n")
    );
}

/// What [`check`] found.
#[derive(Debug, Default)]
struct Report {
    /// Every upward or cyclic import, as printed.
    lines: Vec<String>,
    /// Why the test fails.
    failures: Vec<String>,
    /// Upward imports (one per reference), PENDING ones included.
    upward: usize,
    /// Of those, how many PENDING allows.
    pending: usize,
    /// References that close a cycle within one layer.
    cycles: usize,
}

/// One reference from a file to another top-level module.
#[derive(Debug, Clone)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
}

fn check(src: &Path) -> Report {
    let mut report = Report::default();
    let layer_of = |module: &str| LAYERS.iter().position(|layer| layer.contains(&module));

    // Two passes: `#[cfg(test)] mod tests;` in one file makes another
    // file test code.
    let mut files = Vec::new();
    collect_files(src, &mut files);
    files.sort();
    let mut scans = Vec::new();
    let mut test_paths: Vec<PathBuf> = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(src).expect("under src").to_path_buf();
        let source = std::fs::read_to_string(path).expect("readable source file");
        let scan = scan(&source);
        let dir = module_dir(&relative);
        test_paths.extend(scan.test_modules.iter().map(|name| dir.join(name)));
        scans.push((relative, scan));
    }
    let modules: BTreeSet<String> = scans
        .iter()
        .map(|(relative, _)| module_of(relative))
        .collect();

    let mut imports = Vec::new();
    for (relative, scan) in &scans {
        let is_test = test_paths
            .iter()
            .any(|test| relative == &test.with_extension("rs") || relative.starts_with(test));
        if is_test {
            continue;
        }
        let from = module_of(relative);
        for (name, line) in &scan.references {
            let to = if modules.contains(name) {
                name.clone()
            } else {
                ROOT.to_owned()
            };
            if to != from {
                imports.push(Import {
                    file: format!("src/{}", relative.display()),
                    line: *line,
                    from: from.clone(),
                    to,
                });
            }
        }
    }

    for module in &modules {
        if layer_of(module).is_none() {
            report
                .failures
                .push(format!("module {module} is in no layer: add it to LAYERS"));
        }
    }

    let mut pending_seen = BTreeSet::new();
    let mut same_layer: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for import in &imports {
        let (Some(from), Some(to)) = (layer_of(&import.from), layer_of(&import.to)) else {
            continue;
        };
        if from < to {
            let line = format!(
                "{}:{}: module {} imports {} (layer {from} → {to})",
                import.file, import.line, import.from, import.to
            );
            report.upward += 1;
            if PENDING.contains(&(import.from.as_str(), import.to.as_str())) {
                report.pending += 1;
                pending_seen.insert((import.from.as_str(), import.to.as_str()));
                report.lines.push(format!("{line} [PENDING]"));
            } else {
                report.lines.push(line.clone());
                report.failures.push(line);
            }
        } else if from == to {
            same_layer
                .entry(import.from.as_str())
                .or_default()
                .insert(import.to.as_str());
        }
    }
    for &(from, to) in PENDING {
        if !pending_seen.contains(&(from, to)) {
            report.failures.push(format!(
                "PENDING lists {from} → {to}, but {from} no longer imports {to} upward: delete the entry"
            ));
        }
    }

    // An import a → b within a layer is part of a cycle when b reaches a.
    for import in &imports {
        if layer_of(&import.from) != layer_of(&import.to) {
            continue;
        }
        if let Some(path) = find_path(&same_layer, &import.to, &import.from) {
            let layer = layer_of(&import.from).expect("checked above");
            let line = format!(
                "{}:{}: module {} imports {} (layer {layer} → {layer}, cycle {} → {})",
                import.file,
                import.line,
                import.from,
                import.to,
                import.from,
                path.join(" → ")
            );
            report.cycles += 1;
            report.lines.push(line.clone());
            report.failures.push(line);
        }
    }
    report
}

/// The modules from `start` to `goal` over `edges`, if `goal` is reachable.
fn find_path<'a>(
    edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    start: &'a str,
    goal: &str,
) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut seen = BTreeSet::from([start]);
    while let Some(node) = queue.pop_front() {
        if node == goal {
            let mut path = vec![node];
            let mut at = node;
            while let Some(&prev) = came_from.get(at) {
                path.push(prev);
                at = prev;
            }
            path.reverse();
            return Some(path);
        }
        for &next in edges.get(node).into_iter().flatten() {
            if seen.insert(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module of a file relative to `src/`.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .expect("a file name")
        .as_os_str()
        .to_string_lossy();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => ROOT.to_owned(),
        Some(name) => name.to_owned(),
        None => first.into_owned(),
    }
}

/// Where the files of a file's child modules live: beside `mod.rs`,
/// `lib.rs` and `main.rs`, else in the directory named after the file.
fn module_dir(relative: &Path) -> PathBuf {
    let parent = relative.parent().unwrap_or(Path::new(""));
    match relative.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib" | "main") | None => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
    }
}

/// What one file refers to.
#[derive(Debug, Default, PartialEq)]
struct Scan {
    /// The first segment after each `crate::`, with its line.
    references: Vec<(String, usize)>,
    /// Names of `#[cfg(test)] mod name;`: files of test code.
    test_modules: Vec<String>,
}

fn scan(source: &str) -> Scan {
    let code = blank_comments_and_literals(source);
    let (code, test_modules) = blank_test_items(&code);
    Scan {
        references: references(&code),
        test_modules,
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Overwrites `chars[from..to]` with spaces, keeping newlines so line
/// numbers hold.
fn blank(chars: &mut [char], from: usize, to: usize) {
    let to = to.min(chars.len());
    for c in &mut chars[from..to] {
        if *c != '\n' {
            *c = ' ';
        }
    }
}

/// `source` with comments and string and char literals blanked.
fn blank_comments_and_literals(source: &str) -> String {
    let mut chars: Vec<char> = source.chars().collect();
    let at = |chars: &[char], i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = at(&chars, i + 1);
        let prev = if i == 0 { '\0' } else { chars[i - 1] };
        let end = if c == '/' && next == '/' {
            (i..chars.len())
                .find(|&j| chars[j] == '\n')
                .unwrap_or(chars.len())
        } else if c == '/' && next == '*' {
            // Block comments nest.
            let (mut depth, mut j) = (0, i);
            while j < chars.len() {
                if chars[j] == '/' && at(&chars, j + 1) == '*' {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && at(&chars, j + 1) == '/' {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if (c == 'r' && !is_ident(prev)) || ((c == 'b' || c == 'c') && next == 'r') {
            // A raw string (`r#"…"#`, `br"…"`), else just an identifier.
            let start = if c == 'r' { i + 1 } else { i + 2 };
            let hashes = (start..chars.len())
                .take_while(|&j| chars[j] == '#')
                .count();
            if at(&chars, start + hashes) != '"' || c != 'r' && is_ident(prev) {
                i += 1;
                continue;
            }
            let mut j = start + hashes + 1;
            while j < chars.len()
                && !(chars[j] == '"' && (1..=hashes).all(|k| at(&chars, j + k) == '#'))
            {
                j += 1;
            }
            j + 1 + hashes
        } else if c == '\'' && next == '\\' {
            // An escaped char: '\n', '\'', '\u{..}'.
            (i + 3..chars.len())
                .find(|&j| chars[j] == '\'')
                .map_or(chars.len(), |j| j + 1)
        } else if c == '\'' && at(&chars, i + 2) == '\'' {
            i + 3
        } else {
            // Code, or a lifetime.
            i += 1;
            continue;
        };
        blank(&mut chars, i, end);
        i = end;
    }
    chars.into_iter().collect()
}

/// `code` with each `#[cfg(test)]` item blanked, and the names of the
/// `#[cfg(test)] mod name;` among them.
fn blank_test_items(code: &str) -> (String, Vec<String>) {
    const ATTR: &str = "#[cfg(test)]";
    let mut chars: Vec<char> = code.chars().collect();
    let mut test_modules = Vec::new();
    let mut i = 0;
    while let Some(start) = find(&chars, ATTR, i) {
        let mut j = start + ATTR.chars().count();
        // Further attributes of the same item.
        loop {
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if chars.get(j) == Some(&'#') {
                j = close(&chars, j + 1).unwrap_or(chars.len());
            } else {
                break;
            }
        }
        let header_end = (j..chars.len())
            .find(|&k| matches!(chars[k], ';' | '{'))
            .unwrap_or(chars.len());
        let header: String = chars[j..header_end].iter().collect();
        let mut words = header
            .split_whitespace()
            .skip_while(|w| w.starts_with("pub"));
        let first = words.next();
        // A `use` ends at its `;` even when it has `{…}` groups.
        let is_use = first == Some("use");
        if first == Some("mod") && chars.get(header_end) == Some(&';') {
            test_modules.extend(words.next().map(str::to_owned));
        }
        let mut depth = 0usize;
        let mut end = chars.len();
        for (k, &c) in chars.iter().enumerate().skip(j) {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && c == '}' && !is_use {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        blank(&mut chars, start, end);
        i = end;
    }
    (chars.into_iter().collect(), test_modules)
}

/// The index of the first `needle` in `chars` from `from`.
fn find(chars: &[char], needle: &str, from: usize) -> Option<usize> {
    let needle: Vec<char> = needle.chars().collect();
    (from..chars.len()).find(|&i| chars[i..].starts_with(&needle))
}

/// Just past the bracket closing the one at `open`.
fn close(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(k + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The first segment after each `crate::`, and in each `crate::{…}` group
/// (the first segment of each member), with its line.
fn references(code: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let line_of = |i: usize| 1 + chars[..i].iter().filter(|&&c| c == '\n').count();
    let skip_ws = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let ident_at =
        |i: usize| -> String { chars[i..].iter().take_while(|&&c| is_ident(c)).collect() };
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = find(&chars, "crate", from) {
        from = at + 5;
        let before = if at == 0 { ' ' } else { chars[at - 1] };
        if is_ident(before) || before == '$' || chars.get(at + 5).is_some_and(|&c| is_ident(c)) {
            continue;
        }
        let i = skip_ws(at + 5);
        if !chars[i..].starts_with(&[':', ':']) {
            continue;
        }
        let i = skip_ws(i + 2);
        if chars.get(i) == Some(&'{') {
            // Each member's first segment; nested groups are skipped.
            let mut k = i + 1;
            let mut member_start = true;
            let mut depth = 0usize;
            while k < chars.len() {
                let c = chars[k];
                if member_start && is_ident(c) {
                    let name = ident_at(k);
                    if name != "self" {
                        out.push((name.clone(), line_of(k)));
                    }
                    member_start = false;
                    k += name.chars().count();
                    continue;
                }
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => member_start = true,
                    _ => {}
                }
                k += 1;
            }
        } else {
            let name = ident_at(i);
            if !name.is_empty() {
                out.push((name, line_of(i)));
            }
        }
    }
    out
}

#[test]
fn scan_finds_crate_paths_in_code_only() {
    let cases: &[(&str, &[(&str, usize)])] = &[
        ("use crate::{a::B, c::{d, e}};", &[("a", 1), ("c", 1)]),
        (
            "use crate::{\n    a::B,\n    c::{d, e},\n    f,\n};",
            &[("a", 2), ("c", 3), ("f", 4)],
        ),
        ("use crate::{self, g};", &[("g", 1)]),
        ("use crate::x;", &[("x", 1)]),
        ("fn f() { crate::x::y(); }", &[("x", 1)]),
        ("let v = crate :: x :: y();", &[("x", 1)]),
        ("// uses crate::z\nfn f() {}", &[]),
        ("/// See [`crate::z::Z`].\n//! crate::z", &[]),
        (
            "/* crate::z /* nested */ crate::z */ crate::w::f()",
            &[("w", 1)],
        ),
        ("let s = \"crate::z\";", &[]),
        ("let s = \"a \\\" crate::z\"; crate::w::f()", &[("w", 1)]),
        ("let s = r#\"crate::z \" \"#; crate::w::f()", &[("w", 1)]),
        ("let s = b\"crate::z\";", &[]),
        ("let c = '\"'; crate::w::f(); let d = '\\'';", &[("w", 1)]),
        (
            "fn f<'a>(s: &'a str) -> &'a str { crate::w::g(s) }",
            &[("w", 1)],
        ),
        ("pub(crate) fn f() {}", &[]),
        ("let my_crate::x = 1; $crate::y", &[]),
        (
            "#[cfg(test)]\nmod tests {\n    use crate::t;\n}\nuse crate::u;",
            &[("u", 5)],
        ),
        (
            "#[cfg(test)]\nuse crate::{t, s};\nuse crate::u;",
            &[("u", 3)],
        ),
        (
            "#[cfg(test)]\n/// Doc.\n#[allow(dead_code)]\nfn f() { crate::t::g() }\ncrate::u::h()",
            &[("u", 5)],
        ),
    ];
    for (source, want) in cases {
        let got = scan(source).references;
        let want: Vec<(String, usize)> = want.iter().map(|&(m, l)| (m.to_owned(), l)).collect();
        assert_eq!(got, want, "{source:?}");
    }
}

#[test]
fn scan_names_the_files_of_test_modules() {
    let got = scan("#[cfg(test)]\nmod tests;\nmod real;\n#[cfg(test)]\npub(crate) mod twin;");
    assert_eq!(got.test_modules, ["tests", "twin"]);
    assert!(got.references.is_empty());
    for (file, dir) in [
        ("lib.rs", ""),
        ("auth/mod.rs", "auth"),
        ("transcode/fast.rs", "transcode/fast"),
        ("http_rule/route_table.rs", "http_rule/route_table"),
    ] {
        assert_eq!(module_dir(Path::new(file)), Path::new(dir), "{file}");
    }
    for (file, module) in [
        ("lib.rs", ROOT),
        ("main.rs", ROOT),
        ("tls.rs", "tls"),
        ("auth/jwt.rs", "auth"),
        ("transcode/fast/wire.rs", "transcode"),
    ] {
        assert_eq!(module_of(Path::new(file)), module, "{file}");
    }
}
