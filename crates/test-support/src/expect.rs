//! Expectations that can rewrite themselves: a test renders what it found as
//! text and compares it with the expected text; when the change is wanted,
//! `UPDATE_EXPECT=1` writes the new text over the old instead of failing, and
//! the diff of the test's source or expectation file is what gets reviewed.

use crate::text::dedent;
use std::collections::BTreeMap;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The environment variable that turns mismatches into rewrites when set to `1`.
pub const UPDATE_ENV: &str = "UPDATE_EXPECT";

fn updating() -> bool {
    std::env::var_os(UPDATE_ENV).is_some_and(|v| v == "1")
}

/// Compares `actual` with the contents of the file at `path` (a missing
/// file expects nothing); with `UPDATE_EXPECT=1`, a mismatch rewrites the file.
#[track_caller]
pub fn expect_file(actual: &str, path: impl AsRef<Path>) {
    let path = path.as_ref();
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if actual == expected {
        return;
    }
    if updating() {
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    panic!(
        "{} does not hold what the test found; review the difference, then rerun with {UPDATE_ENV}=1 to accept it\n{}",
        path.display(),
        difference(&expected, actual)
    );
}

/// Compares `actual` (its trailing whitespace aside) with `expect`, text
/// written indented in the test and read through [`dedent`].
///
/// With `UPDATE_EXPECT=1`, a mismatch rewrites `expect` in the test's source
/// instead: the call this function was called from, through callers marked
/// `#[track_caller]`, must have that literal as its last argument.
#[track_caller]
pub fn expect_text(actual: &str, expect: &str) {
    let expected = dedent(expect);
    let actual = match actual.trim_end() {
        "" => String::new(),
        text => format!("{text}\n"),
    };
    if actual == expected {
        return;
    }
    let caller = Location::caller();
    if updating() {
        rewrite(caller, &actual);
        return;
    }
    panic!(
        "{caller}: the expectation differs from what the test found; review the difference, then rerun with {UPDATE_ENV}=1 to accept it\n{}",
        difference(&expected, &actual)
    );
}

/// Both texts, lines that differ marked, the first of them named.
fn difference(expected: &str, actual: &str) -> String {
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    let first = (0..old.len().max(new.len()))
        .find(|&i| old.get(i) != new.get(i))
        .unwrap_or(0);
    let mut out = format!("first difference at line {}\n--- expected\n", first + 1);
    for (i, line) in old.iter().enumerate() {
        let mark = if new.get(i) == Some(line) { ' ' } else { '-' };
        out.push_str(&format!("{mark}{line}\n"));
    }
    out.push_str("--- actual\n");
    for (i, line) in new.iter().enumerate() {
        let mark = if old.get(i) == Some(line) { ' ' } else { '+' };
        out.push_str(&format!("{mark}{line}\n"));
    }
    out
}

/// Lines added or removed by earlier rewrites in this process, per source
/// file: callers report the lines the file had when it was compiled.
static SHIFTS: Mutex<BTreeMap<PathBuf, Vec<(u32, isize)>>> = Mutex::new(BTreeMap::new());

#[track_caller]
fn rewrite(caller: &Location<'_>, actual: &str) {
    // Cargo compiles workspace members from the workspace root, so the
    // caller's file is relative to it; this crate sits two folders below.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = root.join(caller.file());
    let mut shifts = SHIFTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let shifts = shifts.entry(file.clone()).or_default();
    let line = caller.line() as isize
        + shifts
            .iter()
            .filter(|(at, _)| *at < caller.line())
            .map(|(_, by)| by)
            .sum::<isize>();
    let by = rewrite_at(&file, line, caller.column(), actual)
        .unwrap_or_else(|e| panic!("{caller}: {e}"));
    shifts.push((caller.line(), by));
}

/// Replaces the last string literal argument of the call at `line` and
/// `column` of `file` with `actual`; returns how many lines that added.
fn rewrite_at(file: &Path, line: isize, column: u32, actual: &str) -> Result<isize, String> {
    let source =
        std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let start = offset(&source, line, column)
        .ok_or_else(|| format!("line {line} is not in {}", file.display()))?;
    let (from, to) = last_literal_argument(&source[start..])
        .ok_or("the call's last argument is not a string literal to rewrite")?;
    let (from, to) = (start + from, start + to);
    let literal = raw_literal(actual);
    let by = lines(&literal) - lines(&source[from..to]);
    let updated = format!("{}{literal}{}", &source[..from], &source[to..]);
    std::fs::write(file, updated).map_err(|e| format!("writing {}: {e}", file.display()))?;
    Ok(by)
}

fn lines(text: &str) -> isize {
    isize::try_from(text.matches('\n').count()).unwrap_or(isize::MAX)
}

/// The byte offset of 1-based `line` and `column` (in characters).
fn offset(source: &str, line: isize, column: u32) -> Option<usize> {
    let mut start = 0;
    for _ in 1..line {
        start += source[start..].find('\n')? + 1;
    }
    let text = &source[start..];
    let column = usize::try_from(column).ok()?.checked_sub(1)?;
    let at = text
        .char_indices()
        .nth(column)
        .map_or(text.len(), |(i, _)| i);
    Some(start + at)
}

/// `r#"` + newline + text + `"#`, with as many `#` as the text needs.
fn raw_literal(text: &str) -> String {
    let mut hashes = 1;
    while text.contains(&format!("\"{}", "#".repeat(hashes))) {
        hashes += 1;
    }
    let hashes = "#".repeat(hashes);
    let newline = if text.is_empty() { "" } else { "\n" };
    format!("r{hashes}\"{newline}{text}\"{hashes}")
}

/// The byte range of the string literal that is the last argument of the
/// call `code` starts with (`name(arguments)`), if the last argument is one.
fn last_literal_argument(code: &str) -> Option<(usize, usize)> {
    let bytes = code.as_bytes();
    let mut i = code.find('(')? + 1;
    let mut depth = 1;
    let mut last = None;
    while i < bytes.len() {
        let b = bytes[i];
        let literal = match b {
            b'"' => quoted_end(&code[i..]),
            b'r' if !identifier_byte(bytes[i - 1]) => raw_len(&code[i..]),
            _ => None,
        };
        if let Some(len) = literal {
            if depth == 1 {
                last = Some((i, i + len));
            }
            i += len;
            continue;
        }
        if b == b'/' && matches!(bytes.get(i + 1), Some(b'/' | b'*')) {
            i += match bytes[i + 1] {
                b'/' => code[i..].find('\n')?,
                _ => code[i..].find("*/")? + 2,
            };
            continue;
        }
        if depth == 1 && !b.is_ascii_whitespace() && b != b',' && b != b')' {
            // Something other than a literal follows: the last argument is not one.
            last = None;
        }
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return last;
                }
            }
            b'\'' => {
                // A character literal ('x', '\n', '"'); a lifetime has no closing quote.
                let rest = &code[i + 1..];
                let close = if rest.starts_with('\\') {
                    rest.get(2..).and_then(|r| r.find('\'')).map(|n| n + 3)
                } else {
                    rest.chars()
                        .next()
                        .filter(|c| rest[c.len_utf8()..].starts_with('\''))
                        .map(|c| c.len_utf8() + 1)
                };
                if let Some(len) = close {
                    i += len + 1;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The length of the `"..."` literal `code` starts with, escapes honoured.
fn quoted_end(code: &str) -> Option<usize> {
    let bytes = code.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The length of the raw literal (`r"..."`, `r#"..."#`, ...) `code` starts with.
fn raw_len(code: &str) -> Option<usize> {
    let hashes = code[1..].bytes().take_while(|&b| b == b'#').count();
    if code.as_bytes().get(1 + hashes) != Some(&b'"') {
        return None;
    }
    let body = 2 + hashes;
    let close = format!("\"{}", "#".repeat(hashes));
    Some(body + code[body..].find(&close)? + close.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_literal_argument() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"check("a", "b")"#, Some(r#""b""#)),
            (
                "check(\"a\", r#\"\nx \"q\" \n\"#,\n)",
                Some("r#\"\nx \"q\" \n\"#"),
            ),
            ("check(\"a\", r#\"x\"#, more)", None),
            (r#"check(f("x"), "y\"z") + "after""#, Some(r#""y\"z""#)),
            ("check(text, expect) // \"not this\"", None),
            (
                "check(\n  // a \"comment\"\n  'x', '\\'', \"last\",\n)",
                Some("\"last\""),
            ),
            ("check(\"a\", r\"raw\")", Some("r\"raw\"")),
            ("check(for_each(\"nested\"))", None),
            ("check(\"input\", &expected)", None),
            ("check(\"input\", \"a\".trim())", None),
        ];
        for (code, expected) in cases {
            let found = last_literal_argument(code).map(|(from, to)| &code[from..to]);
            assert_eq!(found, *expected, "{code}");
        }
    }

    #[test]
    fn raw_literals_use_enough_hashes() {
        assert_eq!(raw_literal(""), "r#\"\"#");
        assert_eq!(raw_literal("a\n"), "r#\"\na\n\"#");
        assert_eq!(raw_literal("say \"#hi\"\n"), "r##\"\nsay \"#hi\"\n\"##");
    }

    #[test]
    fn offsets_count_lines_and_characters() {
        let source = "one\ntwö x\nthree";
        assert_eq!(offset(source, 1, 1), Some(0));
        assert_eq!(&source[offset(source, 2, 5).unwrap()..], "x\nthree");
        assert_eq!(offset(source, 9, 1), None);
    }

    #[test]
    fn rewrites_two_calls_in_one_file_in_any_order() {
        let dir = crate::TempDir::new("expect-rewrite");
        let file = dir.write(
            "t.rs",
            "fn a() {\n    check(\"in\", \"\n        old\n    \");\n}\nfn b() {\n    check(\"in\", \"\");\n}\n",
        );
        // The second call first: the first call's line does not move.
        assert_eq!(rewrite_at(&file, 7, 5, "two\nlines\n"), Ok(3));
        assert_eq!(rewrite_at(&file, 2, 5, "new\n"), Ok(0));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "fn a() {\n    check(\"in\", r#\"\nnew\n\"#);\n}\nfn b() {\n    check(\"in\", r#\"\ntwo\nlines\n\"#);\n}\n"
        );
    }

    #[test]
    fn matching_text_passes_whatever_the_indentation() {
        expect_text("a\n  b\n", "\n        a\n          b\n    ");
        expect_text("", "");
        expect_text("x   \n\n", "x");
    }

    #[test]
    fn a_mismatch_names_the_first_differing_line() {
        assert_eq!(
            difference("a\nb\n", "a\nc\nd\n"),
            "first difference at line 2\n--- expected\n a\n-b\n--- actual\n a\n+c\n+d\n"
        );
    }
}
