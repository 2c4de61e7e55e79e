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
