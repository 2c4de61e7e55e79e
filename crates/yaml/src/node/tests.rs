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

/// Files in the shapes a generated fleet writes them (manifest, catalog entry,
/// CI files, kustomization, hosts inventory): the plain block loader must take them.
const FLEET_SHAPES: &[&str] = &[
    "# accounts: production workload (blue pool) and its Service.\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: accounts-blue\n  namespace: data\n  labels:\n    app: accounts\n    version: blue\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: accounts\n  template:\n    metadata:\n      labels:\n        app: accounts\n    spec:\n      containers:\n        - name: accounts\n          image: registry.acme.internal/apps/accounts:2.3.0@sha256:ec89f1890d7e1e01c38c423d3c86171bee14ecbd112d775aa18bf86f5f5cd1a3\n          ports:\n            - name: http\n              containerPort: 8080\n          env:\n            - name: SESSIONS_INDEXER_3_URL\n              value: http://sessions-indexer-3:8080/\n          resources:\n            limits:\n              cpu: 500m\n              memory: 256Mi\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: accounts\nspec:\n  selector:\n    app: accounts\n  ports:\n    - name: http\n      port: 8080\n      targetPort: http\n",
    "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: accounts\n  description: Domain service of the data-platform system.\n  annotations:\n    gitlab.com/project-slug: services/accounts\n    bulkhead.io/tier: \"2\"\n  tags: [python]\nspec:\n  type: service\n  owner: group:team-data\n  dependsOn:\n    - component:sessions-indexer-3\n    - component:pricing-db\n",
    "# CI for accounts: shared templates from platform/ci-templates.\ninclude:\n  - component: gitlab.acme.internal/platform/ci-templates/build@1.4.0\n    inputs:\n      run_tests: true\n\nvariables:\n  GIT_DEPTH: \"20\"\n",
    "# CI for delivery-33.\nname: ci\n\non:\n  push:\n    branches: [main]\n  pull_request:\n\njobs:\n  checks:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v4\n      - uses: actions/setup-java@v4\n        with:\n          java-version: \"21\"\n      - run: make test\n\n  build:\n    needs: checks\n    uses: acme/ci-templates/.github/workflows/build.yml@v1.2.0\n    with:\n      image_name: registry.acme.internal/apps/delivery-33\n    secrets: inherit\n",
    "# Jobs specific to bookings-api.\nintegration-tests:\n  stage: test\n  image: registry.acme.internal/ci/java-toolchain:2024.01\n  script:\n    - make integration-test\n",
    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: storefront\nresources:\n  - k8s.yaml\nimages:\n  - name: registry.acme.internal/apps/carriers-39\n    newTag: \"1.4.0\"\n    digest: sha256:4f2abaa5aae2bcaa5c634e2a25011612f3ef2ddb7420694d92fffc231dabe0c4\n",
    "# Hosts patched by bulkhead, with their maintenance windows.\ngroups: [web, workers, db]\nhosts:\n  - name: web-01\n    address: web-01.acme.internal\n    groups: [web]\n    maintenance_window:\n      days: [sat, sun]\n      start: \"02:00\"\n      timezone: Europe/Berlin\n    transport: ssh\n",
];

/// Block YAML at the edges of what the plain block loader reads: empty
/// values, indentless and nested sequences, comments in odd places, quotes,
/// flow sequences, `{}` and `[]`, keys with colons, document markers.
const BLOCK_EDGES: &[&str] = &[
    "a:\nb: 1\n",
    "a:\n  b:\nc:\n",
    "a:\n- x\n- y\nb: 2\n",
    "a:\n  - x\n  -\n  - z\n",
    "- a: 1\n  b: 2\n-   c: 3\n",
    "- a:\n  - x\n  b: 1\n",
    "- a:\n    b: 1\n- -\n",
    "-\n  a: 1\n- # note\n  - x\n",
    "a: # note\n  b: 1\nc: # note\nd: 2\n",
    "x: 1\n  # indented note\ny: 2\n",
    "k: v # note\nl: \"q\" # note\nm: a#b\nn: 'it''s'\no: \"\"\np: ''\n",
    "a: []\nb: {}\nc: [x, \"y\", 'z']\nd: [ a b ,c ]\n",
    "test:unit: x\nhttp://h: y\n.hidden: 1\n$schema: s\nwith space: v\n",
    "v: a:b c\nw: a,b [c] {d}\n",
    "---\na: 1\n---\nb: 2\n",
    "# only a note\n",
    "",
    "---\n",
    "a: 1\n---\n",
    "a: 1\n--- # note\nb: 2\n",
    "a: 1\n...\n",
    "  a: 1\n",
    "a: b: c\n",
    "a: b:\n",
    "a: x\n  y\n",
    "- x\n  y\n",
    "a:\n  value\n",
    "a: \"x\" y\n",
    "a: \"x\":\n",
    "a: [x\n",
    "a: [x,]\n",
    "a: [x, [y]]\n",
    "a: {b: 1}\n",
    "a: &x 1\nb: *x\n",
    "a: !tag 1\n",
    "a: |\n  x\n",
    "a: -1\n",
    "\"a\": 1\n",
    "<<: {}\n",
    "a: \"x\\ty\"\n",
    "a:\tb\n",
    "a: b\r\n",
    "a: é\n",
    "- - x\n",
    "a: 1\n- b\n",
    "a:\n   b: 1\n  c: 2\n",
    "- a: 1\n b: 2\n",
    "? a\n: b\n",
    "a: 1\na: 2\n",
    "a: ~\nb: null\nc: - x\n",
];

/// Asserts that whenever the plain block loader answers, the general loader
/// gives the same documents and no error.
fn agrees(text: &str) -> bool {
    let Some(fast) = block::load(text) else {
        return false;
    };
    let (general, error) = load_general(text);
    assert_eq!(
        error, None,
        "block loader accepted what the general one refuses: {text:?}"
    );
    assert_eq!(fast, general, "{text:?}");
    true
}

/// Every YAML file under `testdata/`, by path.
fn testdata_yaml() -> Vec<(String, String)> {
    test_support::read_tree(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata"),
        &[".yaml", ".yml"],
    )
}

#[test]
fn the_plain_block_loader_reads_fleet_files() {
    for text in FLEET_SHAPES {
        assert!(agrees(text), "not taken by the block loader: {text:?}");
    }
}

#[test]
fn the_plain_block_loader_answers_as_the_general_one_or_not_at_all() {
    let taken = BLOCK_EDGES.iter().filter(|t| agrees(t)).count();
    assert!(taken >= 15, "only {taken} edge cases taken");
    let files = testdata_yaml();
    assert!(files.len() > 100, "testdata has {} YAML files", files.len());
    let taken = files.iter().filter(|(_, text)| agrees(text)).count();
    assert!(
        taken > files.len() / 4,
        "{taken} of {} files taken",
        files.len()
    );
}

/// Small edits of real files (a byte removed or inserted, a line's
/// indentation changed, a line repeated): each mutant the block loader
/// accepts must load to what the general loader makes of it.
#[test]
fn mutated_files_load_the_same_or_go_to_the_general_loader() {
    const INSERTED: &[u8] = b" -:#'\"[]{},\n&*|>?!x";
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound.max(1) as u64) as usize
    };
    let mut corpus: Vec<String> = FLEET_SHAPES
        .iter()
        .chain(BLOCK_EDGES)
        .map(|t| (*t).to_string())
        .collect();
    corpus.extend(
        testdata_yaml()
            .into_iter()
            .map(|(_, text)| text)
            .filter(|text| block::load(text).is_some()),
    );
    let mut taken = 0;
    for text in &corpus {
        for _ in 0..40 {
            let mut bytes = text.clone().into_bytes();
            let at = next(bytes.len() + 1);
            match next(4) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 => bytes.insert(at, INSERTED[next(INSERTED.len())]),
                _ => {
                    let lines: Vec<&str> = text.split('\n').collect();
                    let line = next(lines.len());
                    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_string()).collect();
                    match next(3) {
                        0 => out[line] = format!(" {}", out[line]),
                        1 => {
                            out[line] = out[line]
                                .strip_prefix(' ')
                                .unwrap_or(&out[line])
                                .to_string()
                        }
                        _ => out.insert(line, lines[line].to_string()),
                    }
                    bytes = out.join("\n").into_bytes();
                }
            }
            if let Ok(mutant) = String::from_utf8(bytes)
                && agrees(&mutant)
            {
                taken += 1;
            }
        }
    }
    assert!(
        taken > 100,
        "only {taken} mutants taken by the block loader"
    );
}
