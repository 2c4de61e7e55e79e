use super::*;

/// One line per input, job, stage, secret and output, then the diagnostics.
fn render(interface: Option<&Interface>, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    if let Some(i) = interface {
        for input in i.inputs.values() {
            out.push_str(&format!(
                "input {} {}{}",
                input.name,
                input.ty.name(),
                if input.required { " required" } else { "" }
            ));
            if let Some(d) = &input.default {
                out.push_str(&format!(" default={d}"));
            }
            if !input.options.is_empty() {
                let options: Vec<String> = input.options.iter().map(ToString::to_string).collect();
                out.push_str(&format!(" options=[{}]", options.join(",")));
            }
            if let Some(r) = &input.regex {
                out.push_str(&format!(" regex={r}"));
            }
            out.push_str(&format!(" L{}\n", input.at.line));
        }
        for job in i.jobs.values() {
            out.push_str(&format!("job {}", job.name));
            if let Some(stage) = &job.stage {
                out.push_str(&format!(" stage={stage}"));
            }
            out.push_str(&format!(" L{}\n", job.at.line));
        }
        let stages: Vec<&str> = i.stages.iter().map(|s| s.name.as_str()).collect();
        if !stages.is_empty() {
            out.push_str(&format!("stages {}\n", stages.join(",")));
        }
        for s in i.secrets.values() {
            out.push_str(&format!(
                "secret {}{} L{}\n",
                s.name,
                if s.required { " required" } else { "" },
                s.at.line
            ));
        }
        for o in i.outputs.values() {
            out.push_str(&format!("output {} L{}\n", o.name, o.at.line));
        }
    } else {
        out.push_str("not a template\n");
    }
    for d in diagnostics {
        out.push_str(&format!("{d}\n"));
    }
    out
}

#[track_caller]
fn check_gitlab(text: &str, expect: &str) {
    let (interface, diagnostics) = gitlab("templates/t.yml", text);
    let actual = render(Some(&interface), &diagnostics);
    assert_eq!(
        actual,
        expect.trim_start_matches('\n'),
        "\n--- actual ---\n{actual}"
    );
}

#[track_caller]
fn check_github(text: &str, expect: &str) {
    let (interface, diagnostics) = github(".github/workflows/w.yml", text);
    let actual = render(interface.as_ref(), &diagnostics);
    assert_eq!(
        actual,
        expect.trim_start_matches('\n'),
        "\n--- actual ---\n{actual}"
    );
}

#[test]
fn gitlab_spec_header_inputs_jobs_and_stages() {
    check_gitlab(
        r#"spec:
  inputs:
    image:
      description: "Image to publish."
    language:
      default: go
      options: [go, java]
    retries:
      type: number
      default: 2
    run_tests:
      type: boolean
      default: true
    targets:
      type: array
      default: [linux/amd64]
    tag:
      regex: ^v\d+\.\d+$
      default: v1.0
    bare:
---
stages: [lint, test]
.base: &base
  image: alpine
.anchor-list: &list
  - echo
lint:
  <<: *base
  stage: lint
  script: [make lint]
variables:
  A: b
"#,
        r#"
input bare string required L20
input image string required L3
input language string default="go" options=["go","java"] L5
input retries number default=2 L8
input run_tests boolean default=true L11
input tag string default="v1.0" regex=^v\d+\.\d+$ L17
input targets array default=["linux/amd64"] L14
job .base L23
job lint stage=lint L27
stages lint,test
"#,
    );
}

#[test]
fn gitlab_without_header_has_no_inputs_and_default_stages() {
    check_gitlab(
        "build:\n  script: make\n",
        r#"
job build L1
stages .pre,build,test,deploy,.post
"#,
    );
}

#[test]
fn malformed_spec_headers_are_diagnostics() {
    check_gitlab(
        "spec: [inputs]\n---\njob:\n  script: x\n",
        r#"
job job L3
stages .pre,build,test,deploy,.post
templates/t.yml:1: error: malformed spec header: spec must be a mapping, found a list
"#,
    );
    check_gitlab(
        "spec:\n  inputs: [a, b]\n---\n",
        r#"
stages .pre,build,test,deploy,.post
templates/t.yml:2: error: malformed spec header: inputs must be a mapping of input names, found a list
"#,
    );
    check_gitlab(
        r#"spec:
  inputs:
    a: 3
    b:
      type: text
      default: 1
    c:
      type: boolean
      default: "yes"
    d:
      options: go
    e:
      default: rust
      options: [go]
    f:
      regex: "(unclosed"
    g:
      type: number
      regex: ^1$
      default: 1
---
"#,
        r#"
input b string default=1 L4
input c boolean default="yes" L7
input d string required L10
input e string default="rust" options=["go"] L12
input f string required regex=(unclosed L15
input g number default=1 regex=^1$ L17
stages .pre,build,test,deploy,.post
templates/t.yml:3: error: malformed spec header: input a must be a mapping, found "3"
templates/t.yml:5: error: input b: unknown type "text"; expected string, number, boolean or array (read as string)
templates/t.yml:6: warning: input b: default 1 is not a string; GitLab rejects the template
templates/t.yml:9: warning: input c: default "yes" is not a boolean; GitLab rejects the template
templates/t.yml:11: error: input d: options must be a list, found "go"
templates/t.yml:14: warning: input e: default "rust" is not one of the options
templates/t.yml:16: error: input f: invalid regex "(unclosed": regex parse error:
    (unclosed
    ^
error: unclosed group
templates/t.yml:19: warning: input g: regex applies to string inputs only
"#,
    );
    // A header alone, and a YAML error, still give what could be read.
    check_gitlab(
        "spec:\n  inputs:\n    a:\n",
        r#"
input a string required L3
stages .pre,build,test,deploy,.post
templates/t.yml:1: warning: spec header is not followed by --- and the configuration; GitLab reads this file as jobs
"#,
    );
    check_gitlab(
        "spec:\n  inputs:\n    a:\n---\njob: [\n",
        r#"
input a string required L3
stages .pre,build,test,deploy,.post
templates/t.yml:6: error: invalid YAML: while parsing a node, did not find expected node content
"#,
    );
}

#[test]
fn github_reusable_workflow_inputs_secrets_outputs_jobs() {
    check_github(
        r#"name: build
on:
  workflow_call:
    inputs:
      image:
        type: string
        required: true
      sbom:
        type: boolean
        required: false
        default: false
      retries:
        type: number
        default: 3
      untyped:
        required: false
      odd:
        type: choice
    secrets:
      registry_password:
        required: true
      token:
    outputs:
      image_digest:
        value: ${{ jobs.build.outputs.digest }}
jobs:
  build:
    runs-on: ubuntu-24.04
  scan:
    needs: build
"#,
        r#"
input image string required L5
input odd string L17
input retries number default=3 L12
input sbom boolean default=false L8
input untyped string L15
job build L27
job scan L29
secret registry_password required L20
secret token L22
output image_digest L24
.github/workflows/w.yml:15: warning: input untyped has no type; GitHub requires one for workflow_call (read as string)
.github/workflows/w.yml:17: error: input odd: unknown type choice; workflow_call inputs are boolean, number or string (read as string)
"#,
    );
}

#[test]
fn github_workflow_call_in_list_and_string_forms() {
    check_github(
        "on: [push, workflow_call]\njobs:\n  a:\n    runs-on: x\n",
        "job a L3\n",
    );
    check_github("on: workflow_call\njobs: {}\n", "");
    check_github(
        "on: {push: {}, workflow_call: [x]}\njobs: {}\n",
        ".github/workflows/w.yml:1: error: workflow_call must be a mapping, found a list\n",
    );
    check_github(
        "on:\n  workflow_call:\n    inputs: [a]\n",
        ".github/workflows/w.yml:3: error: workflow_call inputs must be a mapping, found a list\n",
    );
}

#[test]
fn a_workflow_that_is_not_reusable_is_no_template() {
    check_github("on: push\njobs:\n  a: {}\n", "not a template\n");
    check_github("on: {push: {}}\n", "not a template\n");
    check_github("just text\n", "not a template\n");
}

#[test]
fn template_sets_pick_the_template_files() {
    let files = [
        (
            "templates/build.yml",
            "spec:\n  inputs:\n    a:\n---\nj:\n  script: x\n",
        ),
        ("templates/plain/template.yml", "j:\n  script: x\n"),
        (
            "ci/other.yml",
            "spec:\n  inputs:\n    b:\n---\nj: {script: x}\n",
        ),
        ("ci/named-by-an-app.yml", "j: {script: x}\n"),
        ("ci/unrelated.yml", "key: value\n"),
        (".gitlab-ci.yml", "test:\n  script: make\n"),
        (
            ".github/workflows/build.yml",
            "on: {workflow_call: {}}\njobs: {a: {}}\n",
        ),
        (".github/workflows/ci.yml", "on: push\njobs: {a: {}}\n"),
        ("README.md", "spec:\n"),
    ];
    let wanted: BTreeSet<String> = ["ci/named-by-an-app.yml".to_string()].into();
    let (set, diagnostics) = TemplateSet::read(files.iter().copied(), &wanted);
    let names: Vec<&str> = set.files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            ".github/workflows/build.yml",
            "ci/named-by-an-app.yml",
            "ci/other.yml",
            "templates/build.yml",
            "templates/plain/template.yml"
        ]
    );
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(
        set.component("plain").map(|i| i.path.as_str()),
        Some("templates/plain/template.yml")
    );
    assert_eq!(
        set.component("build").map(|i| i.path.as_str()),
        Some("templates/build.yml")
    );
    assert!(set.component("nope").is_none());
}

/// Every truncation and a sweep of byte corruptions of a template: reading
/// must return, never panic.
#[test]
fn never_panics_on_damaged_templates() {
    let gitlab_text = "spec:\n  inputs:\n    a: {type: number, default: 1, options: [1, 2], regex: x}\n    b:\n---\nstages: [s]\nj:\n  stage: s\n  script: [x]\n";
    let github_text = "on:\n  workflow_call:\n    inputs: {a: {type: string, required: true}}\n    secrets: {s: {required: true}}\n    outputs: {o: {value: x}}\njobs: {j: {runs-on: x}}\n";
    for text in [gitlab_text, github_text] {
        for (end, _) in text.char_indices() {
            let _ = gitlab("t.yml", &text[..end]);
            let _ = github("t.yml", &text[..end]);
        }
        let bytes = text.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b' ', b'-', b':', b'[', b'{', b'\n', b'&', b'*', b'"'] {
                let mut damaged = bytes.to_vec();
                damaged[i] = replacement;
                let damaged = String::from_utf8_lossy(&damaged);
                let _ = gitlab("t.yml", &damaged);
                let _ = github("t.yml", &damaged);
            }
        }
    }
}
