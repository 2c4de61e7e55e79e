use super::*;

/// Rewrites the pin the real parser finds at `pin_line`; the expectation is
/// the whole new text, and every other line must be byte-identical.
#[track_caller]
fn check(kind: TemplateKind, text: &str, pin_line: u32, from: &str, to: &str, expect: &str) {
    let (new, edit) = rewrite_pin("ci.yml", text, kind, pin_line, from, to)
        .unwrap_or_else(|e| panic!("rewrite failed: {e}"));
    assert_eq!(new, expect, "\n--- actual ---\n{new}");
    let old_lines: Vec<&str> = text.split_inclusive('\n').collect();
    let new_lines: Vec<&str> = new.split_inclusive('\n').collect();
    assert_eq!(old_lines.len(), new_lines.len());
    for (i, (a, b)) in old_lines.iter().zip(&new_lines).enumerate() {
        if i + 1 != edit.line as usize {
            assert_eq!(a, b, "line {} must not change", i + 1);
        }
    }
    // Rewriting back restores the exact bytes.
    let (back, _) = rewrite_pin("ci.yml", &new, kind, pin_line, &edit.to, from)
        .unwrap_or_else(|e| panic!("rewrite back failed: {e}"));
    assert_eq!(back, text);
}

/// The line the parser locates the (only) pin at.
fn pin_line(path: &str, text: &str) -> u32 {
    let facts = if path.contains(".github/") {
        scan::github::parse(path, text)
    } else {
        scan::gitlab::parse(path, text)
    };
    facts.templates[0].at.line
}

#[test]
fn project_include_rewrites_the_ref_line_only() {
    let text = "# CI\ninclude:\n  - project: platform/ci-templates\n    ref: v1.3.0   # pinned\n    file: templates/build.yml\n    inputs:\n      tag: v1.3.0\n";
    let line = pin_line(".gitlab-ci.yml", text);
    assert_eq!(line, 3);
    check(
        TemplateKind::GitlabProject,
        text,
        line,
        "v1.3.0",
        "v2.0.0",
        "# CI\ninclude:\n  - project: platform/ci-templates\n    ref: v2.0.0   # pinned\n    file: templates/build.yml\n    inputs:\n      tag: v1.3.0\n",
    );
}

#[test]
fn project_include_located_at_a_file_list_item() {
    let text =
        "include:\n  - project: p/ci\n    ref: 'v1.3.0'\n    file:\n      - a.yml\n      - b.yml\n";
    check(
        TemplateKind::GitlabProject,
        text,
        6,
        "v1.3.0",
        "v2.0.0",
        "include:\n  - project: p/ci\n    ref: 'v2.0.0'\n    file:\n      - a.yml\n      - b.yml\n",
    );
    // A flow mapping keeps everything on one line.
    check(
        TemplateKind::GitlabProject,
        "include: [{project: p/ci, ref: \"v1.3.0\", file: a.yml}]\r\nx: 1\r\n",
        1,
        "v1.3.0",
        "v1.4.0",
        "include: [{project: p/ci, ref: \"v1.4.0\", file: a.yml}]\r\nx: 1\r\n",
    );
}

#[test]
fn component_is_rewritten_after_the_at_sign_in_its_own_spelling() {
    let text = "include:\n  - inputs:\n      version: 1.3.0\n    component: gitlab.acme.internal/platform/ci-templates/build@1.3.0\n";
    let line = pin_line(".gitlab-ci.yml", text);
    assert_eq!(line, 2, "the entry starts at its first key");
    check(
        TemplateKind::GitlabComponent,
        text,
        line,
        "1.3.0",
        "v2.0.0",
        "include:\n  - inputs:\n      version: 1.3.0\n    component: gitlab.acme.internal/platform/ci-templates/build@2.0.0\n",
    );
}

#[test]
fn reusable_workflow_keeps_crlf_and_no_final_newline() {
    let text = "jobs:\r\n  build:\r\n    uses: acme/ci/.github/workflows/build.yml@v1.3.0 # pin\r\n    with: {v: v1.3.0}";
    let line = pin_line("x/.github/workflows/ci.yml", text);
    check(
        TemplateKind::GithubWorkflow,
        text,
        line,
        "v1.3.0",
        "v2.0.0",
        "jobs:\r\n  build:\r\n    uses: acme/ci/.github/workflows/build.yml@v2.0.0 # pin\r\n    with: {v: v1.3.0}",
    );
}

#[test]
fn versions_are_matched_as_whole_tokens() {
    let text = "jobs:\n  b:\n    uses: a/b/.github/workflows/w.yml@v1.2.0-rc.1\n";
    let err = rewrite_pin(
        "ci.yml",
        text,
        TemplateKind::GithubWorkflow,
        3,
        "v1.2.0",
        "v2.0.0",
    )
    .expect_err("v1.2.0 is not v1.2.0-rc.1");
    assert_eq!(
        err.to_string(),
        "ci.yml:3: the pin does not say v1.2.0 here (was the file changed since the scan?)"
    );
}

#[test]
fn errors_say_where() {
    let cases = [
        (
            TemplateKind::GithubWorkflow,
            "a: 1\n",
            9,
            "ci.yml:9: no such line (the file has 1)",
        ),
        (
            TemplateKind::GitlabProject,
            "include:\n  - local: x.yml\n",
            2,
            "ci.yml:2: no include entry with a ref: starts or lists a file here",
        ),
        (
            TemplateKind::GitlabLocal,
            "include: x.yml\n",
            1,
            "ci.yml: cannot rewrite a GitlabLocal pin",
        ),
    ];
    for (kind, text, line, expect) in cases {
        let err = rewrite_pin("ci.yml", text, kind, line, "v1", "v2").expect_err("fails");
        assert_eq!(err.to_string(), expect);
    }
}

#[test]
fn unified_diff_shows_the_changed_line_with_context() {
    let old = "1\n2\n3\n4\nref: v1\n6\n7\n8\n9\n10\n11\n12\nref: v1\n";
    let new = "1\n2\n3\n4\nref: v2\n6\n7\n8\n9\n10\n11\n12\nref: v2\n";
    assert_eq!(
        unified_diff("svc/.gitlab-ci.yml", old, new),
        "--- a/svc/.gitlab-ci.yml\n+++ b/svc/.gitlab-ci.yml\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-ref: v1\n+ref: v2\n 6\n 7\n 8\n@@ -10,4 +10,4 @@\n 10\n 11\n 12\n-ref: v1\n+ref: v2\n"
    );
    assert_eq!(unified_diff("x", old, old), "");
    assert_eq!(
        unified_diff("x", "a", "b"),
        "--- a/x\n+++ b/x\n@@ -1,1 +1,1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n"
    );
}
