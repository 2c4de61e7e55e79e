//! The architecture's rules checked against the code, with ARCHITECTURE.md
//! as their only copy: the arrows of its "Layers" block against `cargo
//! metadata`, both ways, and the pure crates its "Invariants" name against
//! the clippy configuration that forbids them I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const DOC: &str = "ARCHITECTURE.md";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn architecture() -> String {
    test_support::read(root().join(DOC))
}

/// One crate's line of the layers block.
#[derive(Debug, PartialEq)]
struct Layer {
    /// 1-based, in ARCHITECTURE.md.
    line: usize,
    /// What the parentheses after the crate's name say.
    note: String,
    /// The workspace crates it points at.
    deps: BTreeSet<String>,
}

/// The lines of the fenced block under `## Layers`, with their 1-based numbers.
fn layers_block(doc: &str) -> Result<Vec<(usize, &str)>, String> {
    let mut lines = doc.lines().enumerate().map(|(i, l)| (i + 1, l));
    lines
        .by_ref()
        .find(|(_, l)| l.trim_end() == "## Layers")
        .ok_or(format!("{DOC}: no `## Layers` section"))?;
    let (open, _) = lines
        .by_ref()
        .take_while(|(_, l)| !l.starts_with("## "))
        .find(|(_, l)| l.starts_with("```"))
        .ok_or(format!("{DOC}: the Layers section has no fenced block"))?;
    let block: Vec<(usize, &str)> = lines.take_while(|(_, l)| !l.starts_with("```")).collect();
    match block.is_empty() {
        true => Err(format!("{DOC}:{open}: the layers block is empty")),
        false => Ok(block),
    }
}

/// `text` without its parenthesised notes, and the first note's contents.
fn strip_notes(text: &str) -> Result<(String, String), &'static str> {
    let (mut bare, mut note, mut first) = (String::new(), String::new(), None::<String>);
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => {
                if depth > 0 {
                    note.push(c);
                }
                depth += 1;
            }
            ')' => {
                depth = depth.checked_sub(1).ok_or("a `)` closes nothing")?;
                if depth == 0 {
                    first.get_or_insert(std::mem::take(&mut note));
                } else {
                    note.push(c);
                }
            }
            _ if depth > 0 => note.push(c),
            _ => bare.push(c),
        }
    }
    match depth {
        0 => Ok((bare, first.unwrap_or_default())),
        _ => Err("a `(` is never closed"),
    }
}

fn crate_name(text: &str) -> Option<String> {
    let name = text.trim();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| name.to_string())
}

/// Every line is `crate (notes) --> dep (notes), dep, ...; remarks`, or
/// `crate (notes) --> (nothing in the workspace...)`.
fn layers(doc: &str) -> Result<BTreeMap<String, Layer>, Vec<String>> {
    let block = layers_block(doc).map_err(|e| vec![e])?;
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (line, text) in block {
        if text.trim().is_empty() {
            continue;
        }
        let mut error = |message: &str| errors.push(format!("{DOC}:{line}: {message}: {text}"));
        let Some((left, right)) = text.split_once("-->") else {
            error("a line of the layers block needs `-->`");
            continue;
        };
        if right.contains("-->") {
            error("one crate per line, one `-->` per line");
            continue;
        }
        let (name, note) = match strip_notes(left) {
            Ok((bare, note)) => (crate_name(&bare), note),
            Err(e) => {
                error(e);
                continue;
            }
        };
        let Some(name) = name else {
            error("the left of `-->` must be one crate name");
            continue;
        };
        let deps = if right.trim_start().starts_with("(nothing in the workspace") {
            Some(BTreeSet::new())
        } else {
            match strip_notes(right) {
                Ok((bare, _)) => {
                    let list = bare.split(';').next().unwrap_or_default();
                    list.split(',').map(crate_name).collect::<Option<_>>()
                }
                Err(e) => {
                    error(e);
                    continue;
                }
            }
        };
        let Some(deps) = deps else {
            error(
                "the right of `-->` must be crate names separated by commas (notes in parentheses), or `(nothing in the workspace)`",
            );
            continue;
        };
        if let Some(earlier) = out.get(&name).map(|l: &Layer| l.line) {
            error(&format!("{name} already has line {earlier}"));
            continue;
        }
        out.insert(name, Layer { line, note, deps });
    }
    match errors.is_empty() {
        true => Ok(out),
        false => Err(errors),
    }
}

/// Every difference between the documented arrows and the code's, one message each.
fn compare(
    doc: &BTreeMap<String, Layer>,
    code: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, deps) in code {
        let Some(layer) = doc.get(name) else {
            problems.push(format!(
                "crate {name} is missing from {DOC}'s layers block: add `{name} --> {}`",
                match deps.is_empty() {
                    true => "(nothing in the workspace)".to_string(),
                    false => deps.iter().cloned().collect::<Vec<_>>().join(", "),
                }
            ));
            continue;
        };
        for dep in deps.difference(&layer.deps) {
            problems.push(format!(
                "{name} --> {dep} is in crates/{name}/Cargo.toml but not on {DOC}:{}",
                layer.line
            ));
        }
        for dep in layer.deps.difference(deps) {
            problems.push(format!(
                "{DOC}:{}: {name} --> {dep} is not in the code: crates/{name}/Cargo.toml has no dependency on {dep}",
                layer.line
            ));
        }
    }
    for (name, layer) in doc {
        if !code.contains_key(name) {
            problems.push(format!(
                "{DOC}:{}: {name} is not a workspace crate",
                layer.line
            ));
        }
    }
    problems
}

/// The crates the Invariants bullet that says "do no I/O" names, in backticks before those words.
fn pure_crates(doc: &str) -> Result<Vec<String>, String> {
    let doc = format!("\n{doc}");
    let section = doc
        .split("\n## Invariants\n")
        .nth(1)
        .ok_or(format!("{DOC}: no `## Invariants` section"))?;
    let section = section.split("\n## ").next().unwrap_or_default();
    let bullet = section
        .split("\n- ")
        .find(|b| b.contains("do no I/O"))
        .ok_or(format!(
            "{DOC}: no invariant says which crates \"do no I/O\""
        ))?;
    let names = bullet.split("do no I/O").next().unwrap_or_default();
    let crates: Vec<String> = names
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    match crates.is_empty() {
        true => Err(format!("{DOC}: the \"do no I/O\" invariant names no crate")),
        false => Ok(crates),
    }
}

fn metadata() -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata JSON")
}

fn packages(meta: &serde_json::Value) -> &[serde_json::Value] {
    meta["packages"].as_array().expect("packages")
}

/// A dependency that is built into the crate: not a dev-dependency.
fn shipped(dep: &serde_json::Value) -> bool {
    dep["kind"].as_str() != Some("dev")
}

#[test]
fn the_layers_block_and_the_code_have_the_same_arrows() {
    let doc = layers(&architecture()).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let meta = metadata();
    let members: BTreeSet<&str> = packages(&meta)
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let code: BTreeMap<String, BTreeSet<String>> = packages(&meta)
        .iter()
        .map(|p| {
            let deps = p["dependencies"].as_array().expect("deps").iter();
            let deps = deps
                .filter(|d| shipped(d))
                .filter_map(|d| d["name"].as_str())
                .filter(|d| members.contains(d))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().expect("name").to_string(), deps)
        })
        .collect();
    let problems = compare(&doc, &code);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn crates_keep_their_names_clap_and_their_dev_only_helpers_in_place() {
    let doc = layers(&architecture()).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let pure = pure_crates(&architecture()).unwrap_or_else(|e| panic!("{e}"));
    let dev_only: BTreeSet<&str> = doc
        .iter()
        .filter(|(_, layer)| layer.note.starts_with("dev-only"))
        .map(|(name, _)| name.as_str())
        .collect();
    let meta = metadata();
    for package in packages(&meta) {
        let name = package["name"].as_str().expect("name");
        let manifest = Path::new(package["manifest_path"].as_str().expect("path"));
        let folder = manifest
            .parent()
            .and_then(Path::file_name)
            .and_then(|f| f.to_str());
        assert_eq!(folder, Some(name), "folder name must equal crate name");
        for dep in package["dependencies"].as_array().expect("deps") {
            let dep_name = dep["name"].as_str().expect("dep name");
            if dep_name == "clap" {
                assert_eq!(name, "bulkhead", "only the binary knows clap");
            }
            if shipped(dep) {
                assert!(
                    !dev_only.contains(dep_name),
                    "{name} depends on {dep_name}, which {DOC} says is dev-only: make it a dev-dependency"
                );
            }
            if pure.iter().any(|p| p == name) && shipped(dep) {
                assert!(
                    !["ignore", "tokio", "hyper", "rusqlite", "toml"].contains(&dep_name),
                    "{name} is pure and must not depend on {dep_name}"
                );
            }
        }
    }
}

/// What every pure crate's clippy.toml must forbid, at the least.
const FORBIDDEN: &[&str] = &[
    "std::fs::read_to_string",
    "std::fs::write",
    "std::fs::read_dir",
    "std::fs::File",
    "std::fs::OpenOptions",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "std::net::ToSocketAddrs",
    "std::process::Command",
    "std::process::exit",
    "std::time::SystemTime::now",
    "std::time::Instant::now",
    "std::env::var",
];

#[test]
fn pure_crates_have_clippy_forbid_their_io() {
    let root = root();
    let pure = pure_crates(&architecture()).unwrap_or_else(|e| panic!("{e}"));
    let meta = metadata();
    let members: BTreeSet<&str> = packages(&meta)
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    // Clippy looks for its configuration from the crate's folder upwards: one
    // above the crates would forbid I/O to the crates whose job it is.
    for dir in [root.clone(), root.join("crates")] {
        for file in ["clippy.toml", ".clippy.toml"] {
            assert!(
                !dir.join(file).exists(),
                "{} would apply to every crate",
                dir.join(file).display()
            );
        }
    }
    let first = root.join("crates").join(&pure[0]).join("clippy.toml");
    let config = test_support::read(&first);
    for path in FORBIDDEN {
        assert!(
            config.contains(&format!("path = \"{path}\"")),
            "{} does not forbid {path}",
            first.display()
        );
    }
    for name in &pure {
        assert!(
            members.contains(name.as_str()),
            "{DOC} names {name} as pure, but it is not a workspace crate"
        );
        let file = root.join("crates").join(name).join("clippy.toml");
        assert!(
            file.exists(),
            "{name} is pure ({DOC}, Invariants) but has no clippy.toml: copy {}",
            first.display()
        );
        assert!(
            test_support::read(&file) == config,
            "{} differs from {}: the pure crates share one configuration",
            file.display(),
            first.display()
        );
        // An exception is a targeted `#[allow]` that says why.
        for (path, text) in rust_files(&root.join("crates").join(name)) {
            for (i, line) in text.lines().enumerate() {
                if line.contains("clippy::disallowed_") && !line.contains("reason") {
                    panic!(
                        "{}:{}: allowing I/O in a pure crate needs a `reason = \"...\"`",
                        path.display(),
                        i + 1
                    );
                }
            }
        }
    }
    for name in members.iter().filter(|m| !pure.iter().any(|p| p == *m)) {
        let file = root.join("crates").join(name).join("clippy.toml");
        assert!(
            !file.exists() || test_support::read(&file) != config,
            "{name} does I/O, yet {} forbids it",
            file.display()
        );
    }
}

/// The `.rs` files under `dir`, with their text.
fn rust_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = test_support::read(&path);
                out.push((path, text));
            }
        }
    }
    out
}

/// A layers block and the code's arrows in, the parse and the problems out.
#[test]
fn the_layers_check_reports_each_difference() {
    let doc = "\
# A

## Layers

```
app (binary: clap) --> lib (its parser, mostly), util; never net
lib --> util
util (pure) --> (nothing in the workspace: values only)
gone --> util
```

## Invariants
";
    let parsed = layers(doc).expect("parses");
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        parsed["app"],
        Layer {
            line: 6,
            note: "binary: clap".into(),
            deps: set(&["lib", "util"])
        }
    );
    assert_eq!(parsed["util"].deps, set(&[]));
    assert_eq!(parsed["util"].note, "pure");
    let code: BTreeMap<String, BTreeSet<String>> = [
        ("app", set(&["lib", "net"])),
        ("lib", set(&["util"])),
        ("util", set(&[])),
        ("net", set(&[])),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect();
    assert_eq!(
        compare(&parsed, &code),
        [
            "app --> net is in crates/app/Cargo.toml but not on ARCHITECTURE.md:6",
            "ARCHITECTURE.md:6: app --> util is not in the code: crates/app/Cargo.toml has no dependency on util",
            "crate net is missing from ARCHITECTURE.md's layers block: add `net --> (nothing in the workspace)`",
            "ARCHITECTURE.md:9: gone is not a workspace crate",
        ]
    );
}

#[test]
fn the_layers_block_refuses_what_it_cannot_read() {
    let cases = [
        ("a --> b --> c", "one crate per line, one `-->` per line"),
        ("a b --> c", "the left of `-->` must be one crate name"),
        ("a --> b c", "the right of `-->` must be crate names"),
        ("a (note --> b", "a `(` is never closed"),
        ("a --> b)", "a `)` closes nothing"),
        ("a, b", "a line of the layers block needs `-->`"),
        ("a --> b\na --> c", "a already has line 3"),
    ];
    for (block, expected) in cases {
        let doc = format!("## Layers\n```\n{block}\n```\n");
        let errors = layers(&doc).expect_err(block);
        assert!(
            errors.len() == 1 && errors[0].contains(expected),
            "{block}: {errors:?}"
        );
    }
}

#[test]
fn the_pure_crates_come_from_the_invariant() {
    let doc = "## Invariants\n\n- Other.\n- `a`, `b` and\n  `c` do no I/O: no `std::fs`.\n- `d` is not.\n\n## Next\n";
    assert_eq!(pure_crates(doc).unwrap(), ["a", "b", "c"]);
    assert!(pure_crates("## Invariants\n- none here\n").is_err());
}
