use super::*;
use crate::test_support::render_templates;

const PATH: &str = "svc/.github/workflows/ci.yml";

#[track_caller]
fn check(text: &str, expect: &str) {
    let actual = render_templates(&parse(PATH, text), PATH);
    ::test_support::expect_text(&actual, expect);
}

#[test]
fn reusable_workflow_with_inputs_and_inherited_secrets() {
    check(
        r#"
name: ci
on:
  push:
    branches: [main]
jobs:
  build:
    uses: acme/ci-templates/.github/workflows/build.yml@v1.3.0
    with:
      image_name: orders
      push: true
      replicas: 2
      platforms: [linux/amd64, linux/arm64]
    secrets: inherit
"#,
        r#"
github-workflow acme/ci-templates .github/workflows/build.yml @v1.3.0 {image_name: "orders", platforms: ["linux/amd64","linux/arm64"], push: true, replicas: 2} job=build L8
"#,
    );
}

#[test]
fn local_reusable_workflow_needs_no_ref() {
    check(
        r#"
on: pull_request
jobs:
  lint:
    uses: ./.github/workflows/lint.yml
    with: {strict: false}
    secrets:
      token: ${{ secrets.TOKEN }}
"#,
        r#"
github-workflow . .github/workflows/lint.yml {strict: false} job=lint L5
"#,
    );
}

#[test]
fn actions_with_and_without_path_and_sha_pins() {
    check(
        r#"
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: setup
        uses: actions/setup-go@v5
        with:
          go-version: "1.22"
          cache: true
      - uses: github/codeql-action/init@v3
      - uses: aws-actions/configure-aws-credentials@e3dd6a429d7300a6a4c196c26e071d42e0343502
      - uses: acme/actions/deploy/k8s@release/v2
      - run: make test
"#,
        r#"
github-action actions/checkout @v4 job=test L7
github-action actions/setup-go @v5 {cache: true, go-version: "1.22"} job=test L9
github-action github/codeql-action init @v3 job=test L13
github-action aws-actions/configure-aws-credentials @e3dd6a429d7300a6a4c196c26e071d42e0343502 job=test L14
github-action acme/actions deploy/k8s @release/v2 job=test L15
"#,
    );
}

#[test]
fn local_and_docker_steps() {
    // docker:// names a container image, not a template: it yields nothing.
    check(
        r#"
jobs:
  build:
    steps:
      - uses: ./.github/actions/setup
        with: {level: 3}
      - uses: ./
      - uses: docker://alpine:3.20
        with:
          args: echo hi
"#,
        r#"
github-action . .github/actions/setup {level: 3} job=build L5
github-action . job=build L7
"#,
    );
}

#[test]
fn unpinned_uses_are_reported_and_kept() {
    check(
        r#"
jobs:
  a:
    uses: acme/ci-templates/.github/workflows/build.yml
  b:
    steps:
      - uses: actions/checkout
      - uses: actions/cache@
"#,
        r#"
github-workflow acme/ci-templates .github/workflows/build.yml job=a L4
github-action actions/checkout job=b L7
github-action actions/cache job=b L8
warning L4: unpinned reusable workflow acme/ci-templates/.github/workflows/build.yml in job a: no @ref (GitHub requires a tag, branch or commit SHA)
warning L7: unpinned action actions/checkout in job b: no @ref (GitHub requires a tag, branch or commit SHA)
warning L8: unpinned action actions/cache in job b: no @ref (GitHub requires a tag, branch or commit SHA)
"#,
    );
}

#[test]
fn matrix_jobs_keep_expressions_as_written() {
    check(
        r#"
on:
  workflow_dispatch:
jobs:
  test:
    strategy:
      matrix:
        go: ["1.21", "1.22"]
        os: [ubuntu-latest, macos-latest]
    runs-on: ${{ matrix.os }}
    steps:
      - uses: actions/setup-go@v5
        with:
          go-version: ${{ matrix.go }}
  call:
    strategy:
      matrix:
        target: [dev, prod]
    uses: acme/deploy/.github/workflows/deploy.yml@v2
    with:
      environment: ${{ matrix.target }}
"#,
        r#"
github-action actions/setup-go @v5 {go-version: "${{ matrix.go }}"} job=test L12
github-workflow acme/deploy .github/workflows/deploy.yml @v2 {environment: "${{ matrix.target }}"} job=call L19
"#,
    );
}

#[test]
fn jobs_and_steps_of_the_wrong_shape() {
    check(
        "on: push\njobs: [build, test]\n",
        "warning L2: jobs must be a mapping of job ids, found a list\n",
    );
    check(
        "on: push\njobs: build\n",
        "warning L2: jobs must be a mapping of job ids, found \"build\"\n",
    );
    check(
        r#"
jobs:
  a: just text
  b:
    steps: {uses: actions/checkout@v4}
  c:
    steps:
      - actions/checkout@v4
      - uses: [actions/checkout@v4]
      - uses: actions/checkout@v4
        with: [a, b]
  d:
    uses: acme/ci-templates@v1
  e:
    uses: docker://alpine
  f:
    steps:
      - uses: checkout@v4
      - uses: /abs@v1
      - uses: ''
"#,
        r#"
github-action actions/checkout @v4 job=c L10
warning L3: job a must be a mapping, found "just text"
warning L5: steps of job b must be a list, found a mapping
warning L8: step of job c must be a mapping, found "actions/checkout@v4"
warning L9: uses in job c must be a non-empty string, found a list
warning L11: with in job c must be a mapping, found a list
warning L13: invalid reusable workflow acme/ci-templates@v1 in job d: expected owner/repo/path/to/workflow.yml@ref or ./path
warning L15: invalid reusable workflow docker://alpine in job e: expected owner/repo/path/to/workflow.yml@ref or ./path
warning L18: invalid action checkout@v4 in job f: expected owner/repo[/path]@ref, ./path or docker://image
warning L19: invalid action /abs@v1 in job f: expected owner/repo[/path]@ref, ./path or docker://image
warning L20: uses in job f must be a non-empty string, found ""
"#,
    );
}

#[test]
fn workflow_without_jobs_yields_nothing() {
    check("name: x\non: push\n", "");
    check("jobs:\n", "");
}

#[test]
fn yaml_syntax_error_is_an_error_with_its_line() {
    check(
        "on: push\njobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n    with: {a: [1\n",
        "error L7: invalid YAML: while parsing a flow sequence, expected ',' or ']'\n",
    );
}

#[test]
fn empty_file_and_scalar_file() {
    check("", "");
    check("# only a comment\n", "");
    check(
        "42\n",
        "warning L1: expected a mapping with on: and jobs: at the top level\n",
    );
}

/// Every truncation and a sweep of single-byte corruptions of a workflow that
/// uses every form: the parser must return, never panic.
#[test]
fn never_panics_on_damaged_input() {
    let text = r#"on: {push: {branches: [main]}}
jobs:
  call:
    uses: o/r/.github/workflows/w.yml@v1
    with: {a: 1, b: [x, "é"]}
    secrets: inherit
  local:
    uses: ./.github/workflows/l.yml
  steps:
    strategy: {matrix: {v: [1, 2]}}
    steps:
      - uses: actions/checkout@0123456789abcdef0123456789abcdef01234567
      - uses: o/r/p@v2
        with: {x: ${{ matrix.v }}}
      - uses: ./act
      - uses: docker://alpine
"#;
    for (end, _) in text.char_indices() {
        let _ = parse(PATH, &text[..end]);
    }
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        for replacement in [b' ', b'-', b':', b'[', b'{', b'@', b'/', b'\n', b'.', b'"'] {
            let mut damaged = bytes.to_vec();
            damaged[i] = replacement;
            let _ = parse(PATH, &String::from_utf8_lossy(&damaged));
        }
    }
}

/// `job: kind name by-job L<line>` for the uses of every reusable-workflow reference.
#[track_caller]
fn check_uses(text: &str, expect: &str) {
    let facts = parse(PATH, text);
    let mut actual = String::new();
    for t in &facts.templates {
        for u in &t.uses {
            let kind = serde_json::to_value(u.kind).expect("kind serializes");
            actual.push_str(&format!(
                "{}: {} {} by {} L{}\n",
                t.job.as_deref().unwrap_or("?"),
                kind.as_str().unwrap_or("?"),
                u.name,
                u.job,
                u.at.line
            ));
        }
    }
    let expect = expect.trim_start_matches('\n');
    assert_eq!(actual, expect, "\n--- actual ---\n{actual}");
}

#[test]
fn secrets_passed_and_outputs_read_are_recorded() {
    check_uses(
        r#"
on: push
jobs:
  build:
    uses: acme/ci-templates/.github/workflows/build.yml@v1.4.2
    secrets:
      registry_password: ${{ secrets.REGISTRY }}
  deploy:
    uses: acme/ci-templates/.github/workflows/deploy.yml@v1.4.2
    with:
      digest: ${{ needs.build.outputs.image_digest }}
    secrets: inherit
  notify:
    runs-on: ubuntu-24.04
    steps:
      - run: echo "${{ needs.build.outputs.image_digest }} ${{ needs.deploy.outputs.url }} ${{ needs.build.result }}"
"#,
        r#"
build: output image_digest by deploy L11
build: output image_digest by notify L16
build: secret registry_password by build L7
deploy: output url by notify L16
deploy: inherits-secrets inherit by deploy L12
"#,
    );
}
