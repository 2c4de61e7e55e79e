use super::*;
use crate::test_support::render_templates;

const PATH: &str = "svc/.gitlab-ci.yml";

#[track_caller]
fn check(text: &str, expect: &str) {
    let actual = render_templates(&parse(PATH, text), PATH);
    ::test_support::expect_text(&actual, expect);
}

#[test]
fn project_include_with_ref_file_and_inputs() {
    check(
        r#"
stages: [build]
include:
  - project: platform/ci-templates
    ref: v1.3.0
    file: templates/build.yml
    inputs:
      image_name: "x"
build:
  script: make
"#,
        r#"
gitlab-project platform/ci-templates templates/build.yml @v1.3.0 {image_name: "x"} L4
"#,
    );
}

#[test]
fn project_file_list_gives_one_reference_per_file_at_its_line() {
    check(
        r#"
include:
  - project: platform/ci-templates
    ref: 5a1b2c3d4e5f60718293a4b5c6d7e8f901234567
    file:
      - /templates/build.yml
      - /templates/test.yml
"#,
        r#"
gitlab-project platform/ci-templates /templates/build.yml @5a1b2c3d4e5f60718293a4b5c6d7e8f901234567 L6
gitlab-project platform/ci-templates /templates/test.yml @5a1b2c3d4e5f60718293a4b5c6d7e8f901234567 L7
"#,
    );
}

#[test]
fn project_without_ref_is_unpinned() {
    check(
        r#"
include:
  project: platform/ci-templates
  file: build.yml
"#,
        r#"
gitlab-project platform/ci-templates build.yml L3
warning L3: unpinned include of platform/ci-templates: follows the default branch
"#,
    );
}

#[test]
fn numeric_looking_ref_keeps_its_text() {
    check(
        "include:\n  - project: a/b\n    ref: 1.10\n    file: x.yml\n",
        "gitlab-project a/b x.yml @1.10 L2\n",
    );
}

#[test]
fn string_includes_are_local_unless_they_are_urls() {
    check(
        r#"
include:
  - /templates/.lint.yml
  - ci/deploy.yml
  - https://gitlab.example.com/ops/ci/-/raw/v2/base.yml
  - HTTP://mirror.example.com/base.yml
"#,
        r#"
gitlab-local . /templates/.lint.yml L3
gitlab-local . ci/deploy.yml L4
gitlab-remote https://gitlab.example.com/ops/ci/-/raw/v2/base.yml L5
gitlab-remote HTTP://mirror.example.com/base.yml L6
"#,
    );
}

#[test]
fn single_string_include() {
    check(
        "include: '.gitlab/ci/build.yml'\n",
        "gitlab-local . .gitlab/ci/build.yml L1\n",
    );
    check(
        "include: https://example.com/ci.yml\n",
        "gitlab-remote https://example.com/ci.yml L1\n",
    );
}

#[test]
fn unsupported_scheme_is_reported() {
    check(
        "include: ftp://example.com/ci.yml\n",
        "warning L1: include ftp://example.com/ci.yml: unsupported URL scheme ftp (GitLab fetches http and https only)\n",
    );
}

#[test]
fn every_mapping_form() {
    check(
        r#"
include:
  - local: /templates/local.yml
    rules:
      - if: $CI_COMMIT_BRANCH == "main"
  - remote: https://example.com/remote.yml
  - template: Auto-DevOps.gitlab-ci.yml
  - component: $CI_SERVER_FQDN/platform/components/build@1.2.0
    inputs:
      stage: build
"#,
        r#"
gitlab-local . /templates/local.yml L3
gitlab-remote https://example.com/remote.yml L6
gitlab-template Auto-DevOps.gitlab-ci.yml L7
gitlab-component $CI_SERVER_FQDN/platform/components build @1.2.0 {stage: "build"} L8
"#,
    );
}

#[test]
fn component_versions() {
    check(
        r#"
include:
  - component: gitlab.example.com/platform/ci/sast@1.2.0
  - component: gitlab.example.com/platform/ci/sast@~latest
  - component: gitlab.example.com/group/sub/proj/lint@e3262fdd0914fa823210cdb79a8c421e2cef79d8
  - component: gitlab.example.com/platform/ci/sast@main
  - component: gitlab.example.com/platform/ci/sast@feature/x
"#,
        r#"
gitlab-component gitlab.example.com/platform/ci sast @1.2.0 L3
gitlab-component gitlab.example.com/platform/ci sast @~latest L4
gitlab-component gitlab.example.com/group/sub/proj lint @e3262fdd0914fa823210cdb79a8c421e2cef79d8 L5
gitlab-component gitlab.example.com/platform/ci sast @main L6
gitlab-component gitlab.example.com/platform/ci sast @feature/x L7
"#,
    );
}

#[test]
fn inputs_keep_their_yaml_types() {
    check(
        r#"
include:
  - component: gitlab.example.com/platform/ci/build@2.0.0
    inputs:
      image_name: orders
      replicas: 3
      ratio: 0.5
      push: true
      quoted: "3"
      tags: [linux, 1, false]
      opts:
        cache: null
"#,
        r#"
gitlab-component gitlab.example.com/platform/ci build @2.0.0 {image_name: "orders", opts: {"cache":null}, push: true, quoted: "3", ratio: 0.5, replicas: 3, tags: ["linux",1,false]} L3
"#,
    );
}

#[test]
fn inputs_on_local_and_project_entries() {
    check(
        r#"
include:
  - local: /t.yml
    inputs: {env: prod}
  - project: p/q
    ref: v1
    file: [a.yml, b.yml]
    inputs: {level: 2}
"#,
        r#"
gitlab-local . /t.yml {env: "prod"} L3
gitlab-project p/q a.yml @v1 {level: 2} L7
gitlab-project p/q b.yml @v1 {level: 2} L7
"#,
    );
}

#[test]
fn spec_header_before_the_configuration() {
    check(
        r#"
spec:
  inputs:
    stage:
      default: test
---
include:
  - project: platform/ci-templates
    ref: v2.0.0
    file: base.yml
lint:
  stage: $[[ inputs.stage ]]
  script: lint
"#,
        r#"
gitlab-project platform/ci-templates base.yml @v2.0.0 L8
"#,
    );
}

#[test]
fn header_with_an_include_of_its_own_is_not_configuration() {
    // Newer GitLab reads input definitions from files named under `spec:`;
    // those are not pipeline configuration and the header is skipped whole.
    check(
        "spec:\n  include:\n    - local: inputs.yml\n---\ninclude: ci/a.yml\n",
        "gitlab-local . ci/a.yml L5\n",
    );
}

#[test]
fn child_pipelines_are_read_with_their_job() {
    check(
        r#"
deploy:
  trigger:
    include:
      - local: ci/deploy.yml
      - project: platform/pipelines
        ref: v3
        file: child.yml
      - artifact: generated.yml
        job: generate
    strategy: depend
docs:
  trigger:
    include: ci/docs.yml
"#,
        r#"
gitlab-local . ci/deploy.yml job=deploy L5
gitlab-project platform/pipelines child.yml @v3 job=deploy L6
gitlab-local . ci/docs.yml job=docs L14
"#,
    );
}

#[test]
fn bad_shapes_are_reported_and_skipped() {
    check(
        r#"
include:
  - 42
  - true
  - [nested.yml]
  - project: platform/ci-templates
    ref: v1
  - component: gitlab.example.com/platform/ci/build
  - component: build@1.0
  - local: a.yml
    remote: https://example.com/b.yml
  - rules: [{if: $X}]
  - local: [a.yml]
  - project: p/q
    ref: [v1]
    file: a.yml
  - project: p/q
    ref: v1
    file: [ok.yml, {x: 1}]
  - project: p/q
    ref: v1
    file: []
  - local: ''
  - local: fine.yml
    inputs: [a, b]
  - ""
"#,
        r#"
gitlab-project p/q ok.yml @v1 L19
gitlab-local . fine.yml L24
warning L3: include entry must be a string or a mapping, found "42"
warning L4: include entry must be a string or a mapping, found "true"
warning L5: include entry must be a string or a mapping, found a list
warning L6: include of project platform/ci-templates has no file
warning L8: invalid component gitlab.example.com/platform/ci/build: expected host/project/name@version
warning L9: invalid component build@1.0: expected host/project/name@version
warning L10: include entry mixes local and remote; GitLab accepts only one
warning L12: include entry has none of local, project, remote, template or component
warning L13: include local must be a non-empty string, found a list
warning L15: ref of project p/q must be a string, found a list
warning L19: file of project p/q must be a string, found a mapping
warning L22: include of project p/q has an empty file list
warning L23: include local must be a non-empty string, found ""
warning L25: include inputs must be a mapping, found a list
warning L26: empty include
"#,
    );
}

#[test]
fn include_that_is_a_number_or_empty() {
    check(
        "include: 3\n",
        "warning L1: include entry must be a string or a mapping, found \"3\"\n",
    );
    check("include:\n", "warning L1: empty include\n");
    check("include: []\n", "");
}

#[test]
fn yaml_syntax_error_is_an_error_with_its_line() {
    check(
        "include:\n  - local: a.yml\n  - project: [unclosed\n",
        "error L4: invalid YAML: while parsing a flow sequence, expected ',' or ']'\n",
    );
}

#[test]
fn documents_before_a_syntax_error_are_still_read() {
    check(
        "spec:\n  inputs: {}\n---\ninclude: a.yml\n---\nx: [\n",
        "gitlab-local . a.yml L4\nerror L7: invalid YAML: while parsing a node, did not find expected node content\n",
    );
}

#[test]
fn empty_file_comment_only_and_null_document() {
    check("", "");
    check("# nothing here\n", "");
    check("---\n...\n", "");
}

#[test]
fn scalar_or_list_file_is_reported() {
    check(
        "just a string\n",
        "warning L1: expected a mapping of keywords and jobs at the top level\n",
    );
    check(
        "- include: a.yml\n",
        "warning L1: expected a mapping of keywords and jobs at the top level\n",
    );
}

#[test]
fn anchors_and_merge_keys_are_resolved() {
    check(
        r#"
.pin: &pin
  project: platform/ci-templates
  ref: v4.1.0
include:
  - <<: *pin
    file: build.yml
  - <<: *pin
    file: test.yml
"#,
        r#"
gitlab-project platform/ci-templates build.yml @v4.1.0 L6
gitlab-project platform/ci-templates test.yml @v4.1.0 L8
"#,
    );
}

/// Every truncation and a sweep of single-byte corruptions of a file that uses
/// all include forms: the parser must return, never panic.
#[test]
fn never_panics_on_damaged_input() {
    let text = r#"spec:
  inputs: {stage: {default: test}}
---
include:
  - 'a.yml'
  - https://e.com/x.yml
  - local: b.yml
    inputs: {a: [1, {b: "é"}]}
  - project: p/q
    ref: v1
    file: [c.yml, d.yml]
  - template: T.gitlab-ci.yml
  - component: h/p/n@1.0
j:
  trigger:
    include: [{local: c.yml}, {artifact: x, job: y}]
"#;
    for (end, _) in text.char_indices() {
        let _ = parse(PATH, &text[..end]);
    }
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        for replacement in [b' ', b'-', b':', b'[', b'{', b'@', b'\n', b'&', b'*', b'"'] {
            let mut damaged = bytes.to_vec();
            damaged[i] = replacement;
            let _ = parse(PATH, &String::from_utf8_lossy(&damaged));
        }
    }
}

/// `kind name by-job L<line>` for every use attached to the first reference;
/// all references of one file carry the same list.
#[track_caller]
fn check_uses(text: &str, expect: &str) {
    let facts = parse(PATH, text);
    let first = facts.templates.first().expect("a template reference");
    for t in &facts.templates {
        assert_eq!(
            t.uses, first.uses,
            "every reference of the file carries the uses"
        );
    }
    let actual: String = first
        .uses
        .iter()
        .map(|u| {
            let kind = serde_json::to_value(u.kind).expect("kind serializes");
            format!(
                "{} {} by {} L{}\n",
                kind.as_str().unwrap_or("?"),
                u.name,
                u.job,
                u.at.line
            )
        })
        .collect();
    ::test_support::expect_text(&actual, expect);
}

#[test]
fn jobs_that_lean_on_template_jobs_and_stages_are_recorded() {
    check_uses(
        r#"
include:
  - project: platform/ci-templates
    ref: v1.3.0
    file: [templates/build.yml, templates/deploy.yml]
lint:
  allow_failure: true
.local-base:
  image: alpine
e2e:
  extends: [.local-base, .template-base]
  stage: verify
  needs:
    - build-image
    - job: unit-tests
      artifacts: false
    - job: sbom
      optional: true
    - pipeline: $PARENT_PIPELINE_ID
      job: generate
    - e2e-setup
  script: make e2e
e2e-setup:
  stage: .pre
  script: true
"#,
        r#"
extends .template-base by e2e L11
needs build-image by e2e L14
needs unit-tests by e2e L15
overrides lint by lint L6
stage .pre by e2e-setup L24
stage verify by e2e L12
"#,
    );
}

#[test]
fn a_file_that_declares_its_stages_relies_on_none_of_the_template() {
    check_uses(
        r#"
stages: [lint, test]
include:
  - component: gitlab.example.com/p/ci/build@1.0.0
lint:
  stage: lint
  extends: .lint-base
"#,
        r#"
extends .lint-base by lint L7
"#,
    );
}
