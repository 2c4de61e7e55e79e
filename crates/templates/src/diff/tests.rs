use super::*;
use crate::interface::{github, gitlab};

fn render(changes: &[InterfaceChange]) -> String {
    changes
        .iter()
        .map(|c| {
            let line = c.at.as_ref().map_or(0, |a| a.line);
            format!("{} {} L{line}: {}\n", c.severity, c.subject, c.reason)
        })
        .collect()
}

/// Diffs two GitLab templates; the expectation lists every change, then the required bump.
#[track_caller]
fn check_gitlab(old: &str, new: &str, expect: &str) {
    let (old, _) = gitlab("templates/t.yml", old);
    let (new, _) = gitlab("templates/t.yml", new);
    let changes = diff(&old, &new);
    let actual = format!("{}=> {}\n", render(&changes), required_bump(&changes));
    assert_eq!(
        actual,
        expect.trim_start_matches('\n'),
        "\n--- actual ---\n{actual}"
    );
}

#[track_caller]
fn check_github(old: &str, new: &str, expect: &str) {
    let (old, _) = github(".github/workflows/w.yml", old);
    let (new, _) = github(".github/workflows/w.yml", new);
    let changes = diff(&old.expect("reusable"), &new.expect("reusable"));
    let actual = format!("{}=> {}\n", render(&changes), required_bump(&changes));
    assert_eq!(
        actual,
        expect.trim_start_matches('\n'),
        "\n--- actual ---\n{actual}"
    );
}

/// A GitLab template with `inputs` as the body of its `spec: inputs:` header.
fn gl(inputs: &str, config: &str) -> String {
    format!("spec:\n  inputs:\n{inputs}---\n{config}")
}

const JOBS: &str =
    "stages: [lint, test]\nlint:\n  stage: lint\n  script: [lint]\n.base:\n  image: alpine\n";

#[test]
fn identical_templates_need_no_release() {
    let t = gl("    a:\n      default: x\n", JOBS);
    check_gitlab(&t, &t, "=> none\n");
}

#[test]
fn gitlab_input_removed_is_major() {
    check_gitlab(
        &gl("    image_name:\n      default: \"\"\n    keep:\n", JOBS),
        &gl("    keep:\n", JOBS),
        "
major input image_name L3: input image_name removed: apps that set it fail with an unknown input
=> major
",
    );
}

#[test]
fn gitlab_new_input_without_default_is_major_with_default_minor() {
    check_gitlab(
        &gl("    a:\n      default: x\n", JOBS),
        &gl(
            "    a:\n      default: x\n    image:\n    platforms:\n      default: linux/amd64\n",
            JOBS,
        ),
        "
major input image L5: new mandatory input image (no default): every app that does not set it fails
minor input platforms L6: new optional input platforms: existing apps keep working
=> major
",
    );
    check_gitlab(
        &gl("    a:\n      default: x\n", JOBS),
        &gl("    a:\n      default: x\n    b:\n      default: y\n", JOBS),
        "
minor input b L5: new optional input b: existing apps keep working
=> minor
",
    );
}

#[test]
fn gitlab_optional_to_mandatory_is_major_and_back_minor() {
    check_gitlab(
        &gl("    image:\n      default: \"\"\n", JOBS),
        &gl("    image:\n      description: now required\n", JOBS),
        "
major input image L3: input image is now mandatory: apps that relied on its default fail
patch input image L3: input image description changed
=> major
",
    );
    check_gitlab(
        &gl("    image:\n", JOBS),
        &gl("    image:\n      default: x\n", JOBS),
        "
minor input image L3: input image is now optional
=> minor
",
    );
}

#[test]
fn gitlab_type_changed_is_major() {
    check_gitlab(
        &gl("    retries:\n      default: \"2\"\n", JOBS),
        &gl("    retries:\n      type: number\n      default: 2\n", JOBS),
        "
major input retries L3: input retries changed type from string to number: apps passing a string fail
warning input retries L3: input retries default changed from \"2\" to 2: apps that do not set it behave differently
=> major
",
    );
}

#[test]
fn gitlab_options_narrowed_or_introduced_are_major_widened_or_dropped_minor() {
    let old = gl(
        "    language:\n      default: go\n      options: [go, java, rust]\n",
        JOBS,
    );
    check_gitlab(
        &old,
        &gl(
            "    language:\n      default: go\n      options: [go, java]\n",
            JOBS,
        ),
        "
major input language L3: input language options narrowed: rust no longer accepted
=> major
",
    );
    check_gitlab(
        &old,
        &gl(
            "    language:\n      default: go\n      options: [go, java, rust, node]\n",
            JOBS,
        ),
        "
minor input language L3: input language options widened: node accepted
=> minor
",
    );
    check_gitlab(
        &old,
        &gl("    language:\n      default: go\n", JOBS),
        "
minor input language L3: input language accepts any value now
=> minor
",
    );
    check_gitlab(
        &gl("    env:\n      default: staging\n", JOBS),
        &gl(
            "    env:\n      default: staging\n      options: [staging, production]\n",
            JOBS,
        ),
        "
major input env L3: input env now accepts only staging, production: any other value fails
=> major
",
    );
}

#[test]
fn gitlab_regex_added_or_tightened_is_major_removed_minor() {
    let loose = gl("    tag:\n      default: v1\n      regex: ^v\\d+\n", JOBS);
    let tight = gl("    tag:\n      default: v1\n      regex: ^v\\d+$\n", JOBS);
    let none = gl("    tag:\n      default: v1\n", JOBS);
    check_gitlab(
        &loose,
        &tight,
        r#"
major input tag L3: input tag regex changed from "^v\\d+" to "^v\\d+$": values the old one accepted may be rejected
=> major
"#,
    );
    check_gitlab(
        &none,
        &loose,
        r#"
major input tag L3: input tag now must match "^v\\d+": values that do not fail
=> major
"#,
    );
    check_gitlab(
        &loose,
        &none,
        r#"
minor input tag L3: input tag no longer has to match "^v\\d+"
=> minor
"#,
    );
}

#[test]
fn gitlab_default_changed_is_a_warning_needing_at_least_minor() {
    check_gitlab(
        &gl("    cache:\n      type: boolean\n      default: true\n", JOBS),
        &gl("    cache:\n      type: boolean\n      default: false\n", JOBS),
        "
warning input cache L3: input cache default changed from true to false: apps that do not set it behave differently
=> minor
",
    );
}

#[test]
fn gitlab_jobs_removed_renamed_added_and_changed() {
    let old = "lint:\n  script: [lint]\nunit:\n  script: [make test]\n.base:\n  image: alpine\nbuild:\n  script: [make]\n";
    let new =
        "tests:\n  script: [make test]\nbuild:\n  script: [make all]\nsbom:\n  script: [syft]\n";
    check_gitlab(
        old,
        new,
        "
major job .base L5: job .base removed: apps that extend, need or override it fail
major job lint L1: job lint removed: apps that extend, need or override it fail
major job unit L1: job unit renamed to tests: apps that extend, need or override unit fail
minor job sbom L5: new job sbom: pipelines run one more job
patch job build L3: job build definition changed
=> major
",
    );
}

#[test]
fn gitlab_stages_removed_and_added() {
    check_gitlab(
        "stages: [lint, test, build]\nj:\n  script: x\n",
        "stages: [test, build, scan]\nj:\n  script: x\n",
        "
major stage lint L1: stage lint removed: app jobs in that stage fail with an unknown stage
minor stage scan L1: new stage scan
=> major
",
    );
    // Declaring stages where there were none drops GitLab's default ones.
    check_gitlab(
        "j:\n  script: x\n",
        "stages: [build, test]\nj:\n  script: x\n",
        "
major stage deploy L1: stage deploy removed: app jobs in that stage fail with an unknown stage
=> major
",
    );
}

#[test]
fn gitlab_the_planted_v2_release() {
    let v1 = gl(
        "    image:\n      default: \"\"\n    image_name:\n      default: \"\"\n    language:\n      default: go\n      options: [go, java, python, node, rust]\n    docker_context:\n      default: .\n",
        "stages: [lint, test]\nlint:\n  stage: lint\n  script: [lint]\nunit-tests:\n  stage: test\n  script: [make test]\n",
    );
    let v2 = gl(
        "    image:\n    language:\n      default: go\n      options: [go, java, python, node]\n",
        "stages: [test]\nunit-tests:\n  stage: test\n  script: [make test]\n",
    );
    check_gitlab(
        &v1,
        &v2,
        "
major input docker_context L10: input docker_context removed: apps that set it fail with an unknown input
major input image L3: input image is now mandatory: apps that relied on its default fail
major input image_name L5: input image_name removed: apps that set it fail with an unknown input
major input language L4: input language options narrowed: rust no longer accepted
major job lint L14: job lint removed: apps that extend, need or override it fail
major stage lint L13: stage lint removed: app jobs in that stage fail with an unknown stage
=> major
",
    );
}

const WORKFLOW_HEAD: &str = "on:\n  workflow_call:\n";

fn wf(body: &str, jobs: &str) -> String {
    format!("{WORKFLOW_HEAD}{body}jobs:\n{jobs}")
}

const WF_JOBS: &str = "  build:\n    runs-on: ubuntu-24.04\n";

#[test]
fn github_inputs_every_rule() {
    let old = wf(
        "    inputs:\n      image_name:\n        type: string\n      image:\n        type: string\n        default: \"\"\n      sbom:\n        type: boolean\n        default: false\n      retries:\n        type: string\n      lang:\n        type: string\n        required: true\n",
        WF_JOBS,
    );
    let new = wf(
        "    inputs:\n      image:\n        type: string\n        required: true\n      sbom:\n        type: boolean\n        default: true\n      retries:\n        type: number\n      lang:\n        type: string\n      token_name:\n        type: string\n        required: true\n      platforms:\n        type: string\n        default: linux/amd64\n",
        WF_JOBS,
    );
    check_github(
        &old,
        &new,
        "
major input image L4: input image is now mandatory: apps that relied on its default fail
major input image_name L4: input image_name removed: apps that set it fail with an unknown input
major input retries L10: input retries changed type from string to number: apps passing a string fail
major input token_name L14: new mandatory input token_name (required: true): every app that does not set it fails
warning input sbom L7: input sbom default changed from false to true: apps that do not set it behave differently
minor input lang L12: input lang is now optional
minor input platforms L17: new optional input platforms: existing apps keep working
=> major
",
    );
}

#[test]
fn github_secrets_and_outputs() {
    let old = wf(
        "    secrets:\n      registry_password:\n        required: true\n      old_token:\n        required: false\n      cosign_key:\n        required: false\n      kube:\n        required: true\n    outputs:\n      image_digest:\n        value: x\n      sbom_url:\n        value: y\n",
        WF_JOBS,
    );
    let new = wf(
        "    secrets:\n      registry_password:\n        required: true\n      cosign_key:\n        required: true\n      kube:\n        required: false\n      signing_key:\n        required: true\n      slack:\n        required: false\n    outputs:\n      image_digest:\n        value: x\n      provenance:\n        value: z\n",
        WF_JOBS,
    );
    check_github(
        &old,
        &new,
        "
major output sbom_url L15: output sbom_url removed: callers that read it get nothing
major secret cosign_key L6: secret cosign_key is now required: callers that do not pass it fail
major secret old_token L6: secret old_token removed: callers that pass it explicitly fail
major secret signing_key L10: new required secret signing_key: callers that neither pass it nor inherit secrets fail
minor output provenance L17: new output provenance
minor secret kube L8: secret kube is now optional
minor secret slack L12: new optional secret slack
=> major
",
    );
}

#[test]
fn github_jobs_removed_and_changed() {
    check_github(
        &wf("", "  lint:\n    runs-on: a\n  build:\n    runs-on: b\n"),
        &wf("", "  build:\n    runs-on: c\n"),
        "
major job lint L4: job lint removed: apps that extend, need or override it fail
patch job build L4: job build definition changed
=> major
",
    );
}

#[test]
fn template_files_removed_and_added() {
    let a = TemplateSet::read(
        [
            ("templates/build.yml", "j:\n  script: x\n"),
            ("templates/old.yml", "j:\n  script: x\n"),
        ],
        &Default::default(),
    )
    .0;
    let b = TemplateSet::read(
        [
            ("templates/build.yml", "j:\n  script: x\n"),
            ("templates/new.yml", "j:\n  script: x\n"),
        ],
        &Default::default(),
    )
    .0;
    let changes = diff_sets(&a, &b);
    assert_eq!(
        render(&changes),
        "minor file templates/new.yml L1: new template file: nobody uses it yet\n\
         major file templates/old.yml L1: template file removed: every app that includes it fails\n"
    );
    assert_eq!(required_bump(&changes), Bump::Major);
}
