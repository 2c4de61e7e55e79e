use super::*;

fn set(files: &[(&str, &str)]) -> TemplateSet {
    let (set, diagnostics) = TemplateSet::read(files.iter().copied(), &BTreeSet::new());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    set
}

const SOURCE: &str = "platform/ci-templates";

fn source() -> TemplateSource {
    TemplateSource {
        gitlab_project: Some(SOURCE.to_string()),
        github_repo: Some("acme/ci-templates".to_string()),
    }
}

/// Checks every governed pin of an app's CI file (read by the real parsers)
/// against `target`, with `current` as the release it is on; one line per
/// problem, `ok` when there is none, then the parser's diagnostics.
#[track_caller]
fn check(app_path: &str, app: &str, current: &TemplateSet, target: &TemplateSet, expect: &str) {
    let facts = if app_path.contains(".github/") {
        scan::github::parse(app_path, app)
    } else {
        scan::gitlab::parse(app_path, app)
    };
    let mut actual = String::new();
    let pins: Vec<&TemplateRef> = facts
        .templates
        .iter()
        .filter(|p| source().matches(p))
        .collect();
    let mut problems: Vec<Problem> = pins
        .iter()
        .flat_map(|p| check_pin(p, target, "v2.0.0", Some(current)))
        .collect();
    problems.sort();
    for p in &problems {
        let kind = serde_json::to_value(p.kind).expect("kind");
        actual.push_str(&format!(
            "L{} {}: {}\n",
            p.at.line,
            kind.as_str().unwrap_or("?"),
            p.message
        ));
    }
    if problems.is_empty() {
        actual.push_str(&format!("ok ({} pins)\n", pins.len()));
    }
    for d in &facts.diagnostics {
        actual.push_str(&format!("{d}\n"));
    }
    assert_eq!(
        actual,
        expect.trim_start_matches('\n'),
        "\n--- actual ---\n{actual}"
    );
}

const BUILD_V1: &str = r#"spec:
  inputs:
    image_name:
      default: ""
    language:
      default: go
      options: [go, java, rust]
    retries:
      type: number
      default: 1
    tag:
      default: v1
      regex: ^v\d+$
    sbom:
      type: boolean
      default: false
---
stages: [lint, test, build]
.build-base:
  image: kaniko
lint:
  stage: lint
  script: [lint]
unit-tests:
  stage: test
  script: [make test]
build-image:
  extends: .build-base
  stage: build
  script: [build]
sast:
  stage: test
  script: [scan]
"#;

const BUILD_V2: &str = r#"spec:
  inputs:
    image:
    language:
      default: go
      options: [go, java]
    retries:
      type: number
      default: 1
    tag:
      default: v1
      regex: ^v\d+$
    sbom:
      type: boolean
      default: false
---
stages: [test, build]
unit-tests:
  stage: test
  script: [make test]
build-image:
  stage: build
  script: [build]
"#;

const DEPLOY: &str = "spec:\n  inputs:\n    environment:\n      default: production\n      options: [staging, production]\n---\ndeploy:\n  stage: deploy\n  script: [deploy]\n";

fn v1() -> TemplateSet {
    set(&[
        ("templates/build.yml", BUILD_V1),
        ("templates/deploy.yml", DEPLOY),
    ])
}

fn v2() -> TemplateSet {
    set(&[
        ("templates/build.yml", BUILD_V2),
        ("templates/deploy.yml", DEPLOY),
    ])
}

#[test]
fn project_include_with_every_input_problem() {
    check(
        "svc/.gitlab-ci.yml",
        r#"include:
  - project: platform/ci-templates
    ref: v1.3.0
    file: templates/build.yml
    inputs:
      image_name: registry/app
      language: rust
      retries: "3"
      tag: latest
      sbom: true
"#,
        &v1(),
        &v2(),
        r#"
L2 missing-input: input image is mandatory in v2.0.0 and not set
L2 unknown-input: input image_name is not declared in v2.0.0 (removed or misspelt)
L2 type-mismatch: input retries is a number but the app passes "3"
L2 not-in-options: input language value rust is not one of the options (go, java)
L2 regex-mismatch: input tag value "latest" does not match "^v\\d+$"
"#,
    );
}

#[test]
fn component_with_inputs_that_fit() {
    check(
        "svc/.gitlab-ci.yml",
        r#"include:
  - component: gitlab.acme.internal/platform/ci-templates/build@1.3.0
    inputs:
      image: registry/app
      language: java
      retries: 2
      tag: v7
  - component: gitlab.acme.internal/platform/ci-templates/deploy@1.3.0
    inputs:
      environment: staging
  - component: gitlab.acme.internal/other/project/x@1.0.0
"#,
        &v1(),
        &v2(),
        "ok (2 pins)\n",
    );
}

#[test]
fn component_inputs_from_expressions_are_not_judged() {
    check(
        "svc/.gitlab-ci.yml",
        r#"include:
  - component: gitlab.acme.internal/platform/ci-templates/build@1.3.0
    inputs:
      image: $CI_REGISTRY_IMAGE
      language: $[[ inputs.lang ]]
"#,
        &v1(),
        &v2(),
        "ok (1 pins)\n",
    );
}

#[test]
fn jobs_extended_needed_or_overridden_and_stages_that_were_removed() {
    check(
        "svc/.gitlab-ci.yml",
        r#"include:
  - project: platform/ci-templates
    ref: v1.3.0
    file: [templates/build.yml, templates/deploy.yml]
    inputs:
      image: registry/app
lint:
  allow_failure: true
my-build:
  extends: .build-base
  script: [make]
e2e:
  stage: lint
  needs: [sast, unit-tests, my-build]
  script: [e2e]
unit-tests:
  variables: {A: b}
"#,
        &v1(),
        &v2(),
        "
L4 unknown-input: input image is not declared in v2.0.0 (removed or misspelt)
L7 removed-job: job lint is removed in v2.0.0; the app's job lint only overrides some of its keys (no script of its own)
L10 removed-job: job .build-base is removed in v2.0.0; the app's job my-build extends it
L13 removed-stage: stage lint is removed in v2.0.0; the app's job e2e runs in it
L14 removed-job: job sast is removed in v2.0.0; the app's job e2e needs it
",
    );
}

#[test]
fn a_file_that_no_longer_exists() {
    check(
        "svc/.gitlab-ci.yml",
        "include:\n  - project: platform/ci-templates\n    ref: v1.3.0\n    file: templates/lint.yml\n",
        &v1(),
        &v2(),
        "L2 missing-file: templates/lint.yml does not exist in v2.0.0\n",
    );
}

#[test]
fn unknown_include_forms_are_diagnostics_and_pin_nothing() {
    check(
        "svc/.gitlab-ci.yml",
        "include:\n  - remote_file: x.yml\n  - component: no-version-here\n  - 42\n",
        &v1(),
        &v2(),
        r#"
ok (0 pins)
svc/.gitlab-ci.yml:2: warning: include entry has none of local, project, remote, template or component
svc/.gitlab-ci.yml:3: warning: invalid component no-version-here: expected host/project/name@version
svc/.gitlab-ci.yml:4: warning: include entry must be a string or a mapping, found "42"
"#,
    );
}

const WF_V1: &str = r#"on:
  workflow_call:
    inputs:
      image_name:
        type: string
        default: ""
      sbom:
        type: boolean
        default: false
    secrets:
      registry_password:
        required: true
      legacy_token:
        required: false
    outputs:
      image_digest:
        value: x
      sbom_url:
        value: y
jobs:
  build:
    runs-on: ubuntu-24.04
"#;

const WF_V2: &str = r#"on:
  workflow_call:
    inputs:
      image:
        type: string
        required: true
      sbom:
        type: boolean
        default: false
    secrets:
      registry_password:
        required: true
      signing_key:
        required: true
    outputs:
      image_digest:
        value: x
jobs:
  build:
    runs-on: ubuntu-24.04
"#;

fn wf_v1() -> TemplateSet {
    set(&[(".github/workflows/build.yml", WF_V1)])
}

fn wf_v2() -> TemplateSet {
    set(&[(".github/workflows/build.yml", WF_V2)])
}

#[test]
fn reusable_workflow_inputs_secrets_and_outputs() {
    check(
        "svc/.github/workflows/ci.yml",
        r#"on: push
jobs:
  build:
    uses: acme/ci-templates/.github/workflows/build.yml@v1.3.0
    with:
      image_name: registry/app
      sbom: "yes"
    secrets:
      registry_password: ${{ secrets.REGISTRY }}
      legacy_token: ${{ secrets.LEGACY }}
  report:
    runs-on: ubuntu-24.04
    steps:
      - run: echo ${{ needs.build.outputs.sbom_url }} ${{ needs.build.outputs.image_digest }}
"#,
        &wf_v1(),
        &wf_v2(),
        r#"
L4 missing-input: input image is mandatory in v2.0.0 and not set
L4 unknown-input: input image_name is not declared in v2.0.0 (removed or misspelt)
L4 type-mismatch: input sbom is a boolean but the app passes "yes"
L4 missing-secret: secret signing_key is required in v2.0.0 and neither passed nor inherited
L10 unknown-secret: secret legacy_token is passed but not declared in v2.0.0
L14 removed-output: output sbom_url is not declared in v2.0.0; the app's job report reads it
"#,
    );
}

#[test]
fn reusable_workflow_that_inherits_secrets_and_fits() {
    check(
        "svc/.github/workflows/ci.yml",
        r#"on: push
jobs:
  build:
    uses: acme/ci-templates/.github/workflows/build.yml@v1.3.0
    with:
      image: ${{ vars.IMAGE }}
      sbom: true
    secrets: inherit
  other:
    uses: someone/else/.github/workflows/build.yml@v1
"#,
        &wf_v1(),
        &wf_v2(),
        "ok (1 pins)\n",
    );
}

#[test]
fn fleet_check_names_each_app_and_its_current_release() {
    use model::{Fleet, Service};
    let parse = |path: &str, text: &str| scan::gitlab::parse(path, text).templates;
    let fleet = Fleet {
        services: vec![
            Service {
                name: "billing".into(),
                templates: parse(
                    "billing/.gitlab-ci.yml",
                    "include:\n  - project: platform/ci-templates\n    ref: v1.0.0\n    file: templates/build.yml\n    inputs: {image_name: x}\n",
                ),
                ..Service::default()
            },
            Service {
                name: "ledger".into(),
                templates: parse(
                    "ledger/.gitlab-ci.yml",
                    "include:\n  - component: h/platform/ci-templates/build@1.0\n    inputs: {image: x}\n",
                ),
                ..Service::default()
            },
            Service {
                name: "search".into(),
                ..Service::default()
            },
        ],
        ..Fleet::default()
    };
    let tags = [
        crate::version::Tag {
            name: "v1.0.0".into(),
            commit: "a".repeat(40),
        },
        crate::version::Tag {
            name: "v2.0.0".into(),
            commit: "b".repeat(40),
        },
    ];
    let (releases, _) = Releases::from_tags("ci-templates", &tags);
    let target = releases.by_tag("v2.0.0").expect("target");
    let needed = releases_needed(&fleet, &source(), &releases, target);
    assert_eq!(
        needed.iter().map(String::as_str).collect::<Vec<_>>(),
        ["v1.0.0", "v2.0.0"]
    );
    let sets: BTreeMap<String, TemplateSet> =
        [("v1.0.0".to_string(), v1()), ("v2.0.0".to_string(), v2())].into();
    let result = check_fleet(&fleet, &source(), &releases, &sets, target);
    assert_eq!(result.template, SOURCE);
    assert_eq!(result.not_using, ["search"]);
    let breaking: Vec<&str> = result.breaking().map(|a| a.service.as_str()).collect();
    let safe: Vec<&str> = result.safe().map(|a| a.service.as_str()).collect();
    assert_eq!(breaking, ["billing"]);
    assert_eq!(safe, ["ledger"]);
    assert_eq!(result.apps[1].current_versions(), ["v1.0.0"]);
    assert_eq!(result.apps[1].pins[0].file, "templates/build.yml");
}
