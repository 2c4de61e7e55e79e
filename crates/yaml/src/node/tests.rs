use super::*;

fn one(text: &str) -> Node {
    let (mut docs, err) = load(text);
    assert_eq!(err, None, "{text}");
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0)
}

#[test]
fn nodes_keep_their_lines() {
    let doc = one("a: 1\nb:\n  c: x\n  d:\n    - one\n    - two\n");
    assert_eq!(doc.get("a").map(|n| n.line), Some(1));
    assert_eq!(doc.at(&["b", "c"]).map(|n| n.line), Some(3));
    let items = doc
        .at(&["b", "d"])
        .and_then(Node::as_seq)
        .expect("sequence");
    assert_eq!(
        items
            .iter()
            .map(|n| (n.line, n.string()))
            .collect::<Vec<_>>(),
        vec![(5, Some("one".into())), (6, Some("two".into()))]
    );
}

#[test]
fn scalars_are_typed_like_yaml_1_2() {
    let doc = one("n: ~\ne:\nt: true\ni: 42\nf: 1.5\ns: '42'\nv: 1.2.3\n");
    assert!(doc.get("n").is_some_and(Node::is_null));
    assert!(doc.get("e").is_some_and(Node::is_null));
    assert_eq!(
        doc.to_json(),
        serde_json::json!({"n": null, "e": null, "t": true, "i": 42, "f": 1.5, "s": "42", "v": "1.2.3"})
    );
}

#[test]
fn multi_document_streams_keep_documents_before_an_error() {
    let (docs, err) = load("a: 1\n---\nb: 2\n---\nc: [unclosed\n");
    assert_eq!(docs.len(), 2);
    let err = err.expect("syntax error reported");
    assert!(err.line >= 5, "{err:?}");
}

#[test]
fn merge_keys_apply_without_overriding() {
    let doc =
        one(".base: &base\n  image: ruby\n  stage: test\njob:\n  <<: *base\n  stage: build\n");
    assert_eq!(
        doc.at(&["job", "image"]).and_then(Node::as_str),
        Some("ruby")
    );
    assert_eq!(
        doc.at(&["job", "stage"]).and_then(Node::as_str),
        Some("build")
    );
}

#[test]
fn alias_bomb_is_an_error_not_an_explosion() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = i - 1;
        text.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
    }
    let (docs, err) = load(&text);
    assert!(docs.is_empty());
    let err = err.expect("bomb refused");
    assert!(err.message.contains("alias bomb"), "{err:?}");
}

#[test]
fn deep_nesting_is_refused() {
    let text = format!(
        "{}{}",
        "[".repeat(MAX_DEPTH + 10),
        "]".repeat(MAX_DEPTH + 10)
    );
    let (docs, err) = load(&text);
    assert!(docs.is_empty());
    let message = err.expect("refused").message;
    assert!(
        message.contains("nesting") || message.contains("recursion"),
        "{message}"
    );
}

#[test]
fn unknown_alias_and_garbage_are_errors() {
    for text in [
        "a: *nope\n",
        "a: b: c\n",
        "\t- x\n  y: [\n",
        "key: \"unterminated\n",
    ] {
        let (_, err) = load(text);
        assert!(err.is_some(), "{text:?} should fail");
    }
}

/// Every scalar style YAML 1.2 has, as files in the wild write them: (what, document, value of `v`).
const SCALAR_STYLES: &[(&str, &str, &str)] = &[
    ("plain, one line", "v: a b  c\n", "a b  c"),
    ("plain, folded over lines", "v: a\n  b\n\n  c\n", "a b\nc"),
    (
        "plain with a colon and a hash inside",
        "v: a:b c#d # note\n",
        "a:b c#d",
    ),
    ("single-quoted, doubled quote", "v: 'it''s'\n", "it's"),
    (
        "single-quoted, folded",
        "v: 'a\n  b\n\n  c  '\n",
        "a b\nc  ",
    ),
    ("single-quoted keeps backslashes", "v: 'a\\nb'\n", "a\\nb"),
    (
        "double-quoted escapes",
        "v: \"t\\tq\\\"s\\\\ \\x41\\u00e9\\U0001F600\\N\\_\\L\\P\\0\\a\\e\\/\"\n",
        "t\tq\"s\\ A\u{e9}\u{1F600}\u{85}\u{a0}\u{2028}\u{2029}\0\u{7}\u{1b}/",
    ),
    ("double-quoted, folded", "v: \"a\n  b\n\n  c\"\n", "a b\nc"),
    (
        "double-quoted, escaped line break joins",
        "v: \"a\\\n   b\"\n",
        "ab",
    ),
    (
        "double-quoted, escaped space kept before a fold",
        "v: \"a\\ \n  b\"\n",
        "a  b",
    ),
    ("literal, clip", "v: |\n  a\n   b\n\n", "a\n b\n"),
    ("literal, strip", "v: |-\n  a\n  b\n\n", "a\nb"),
    ("literal, keep", "v: |+\n  a\n\n\nw: 1\n", "a\n\n\n"),
    (
        "literal, indentation indicator",
        "v: |2\n    a\n  b\n",
        "  a\nb\n",
    ),
    ("literal, indicator and chomping", "v: |1-\n  a\n", " a"),
    ("literal, chomping before indicator", "v: |-1\n  a\n", " a"),
    ("folded, clip", "v: >\n  a\n  b\n\n  c\n", "a b\nc\n"),
    (
        "folded, more-indented lines kept",
        "v: >\n  a\n    b\n  c\n",
        "a\n  b\nc\n",
    ),
    ("folded, strip", "v: >-\n  a\n  b\n", "a b"),
    ("folded, keep", "v: >+\n  a\n\n", "a\n\n"),
    (
        "folded, indentation indicator",
        "v: >2\n   a\n  b\n",
        " a\nb\n",
    ),
    (
        "block scalar with a comment after the header",
        "v: | # rego\n  a\n",
        "a\n",
    ),
    (
        "double-quoted continued at the key's column, as Go's YAML reads it",
        "s:\n  v: \"When set to `true` the TLS {} is optional, defaults\n  to false.\"\n",
        "When set to `true` the TLS {} is optional, defaults to false.",
    ),
    (
        "single-quoted continued left of the key, as Go's YAML reads it",
        "s:\n  v: 'a ''b''\nc'\n",
        "a 'b' c",
    ),
    (
        "double-quoted continued at the key's column, escapes and folds kept",
        "v: \"a\\\"b\\\nc\n\nd\"\n",
        "a\"bc\nd",
    ),
];

#[test]
fn every_scalar_style_reads_as_yaml_1_2_says() {
    for (what, text, want) in SCALAR_STYLES {
        let (docs, err) = load(text);
        assert_eq!(err, None, "{what}: {text:?}");
        let v = docs
            .first()
            .and_then(|d| d.get("v").or_else(|| d.at(&["s", "v"])));
        assert_eq!(v.and_then(Node::as_str), Some(*want), "{what}: {text:?}");
    }
}

#[test]
fn under_indented_quoted_scalars_keep_their_lines_and_their_neighbours() {
    let text = "a:\n  b: \"x\n  y\"\n  c: 'p\n  q'\n  d: plain\n";
    let doc = one(text);
    let lines: Vec<(u32, Option<&str>)> = ["b", "c", "d"]
        .iter()
        .map(|k| {
            let n = doc.at(&["a", k]).expect(k);
            (n.line, n.as_str())
        })
        .collect();
    assert_eq!(
        lines,
        [(2, Some("x y")), (4, Some("p q")), (6, Some("plain"))]
    );
}

/// Broken quoted scalars stay errors, on their line: (what, document, line of the error).
const BROKEN_QUOTED: &[(&str, &str, u32)] = &[
    ("never closed", "a:\n  b: \"x\n  y\n", 2),
    ("a document marker inside", "b: \"x\n---\ny\"\n", 1),
    ("a bad escape", "b: \"\\q\"\n", 1),
];

#[test]
fn broken_quoted_scalars_are_errors_with_their_line() {
    for (what, text, line) in BROKEN_QUOTED {
        let (_, err) = load(text);
        let err = err.unwrap_or_else(|| panic!("{what}: no error for {text:?}"));
        assert_eq!(err.line, *line, "{what}: {err:?}");
    }
}
