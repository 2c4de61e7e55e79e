//! gator suites over the Gatekeeper-library-style templates in testdata/gatekeeper.

use crate::suite::{SuiteReport, run};
use std::collections::BTreeMap;

/// The testdata files, by the names the suites use.
fn files() -> BTreeMap<&'static str, &'static str> {
    macro_rules! file {
        ($name:literal) => {
            (
                $name,
                include_str!(concat!("../../testdata/gatekeeper/", $name)),
            )
        };
    }
    BTreeMap::from([
        file!("allowedrepos-template.yaml"),
        file!("allowedrepos-constraint.yaml"),
        file!("requiredlabels-template.yaml"),
        file!("requiredlabels-constraint.yaml"),
        file!("disallowedtags-template.yaml"),
        file!("disallowedtags-constraint.yaml"),
        file!("imagedigests-template.yaml"),
        file!("imagedigests-constraint.yaml"),
        file!("samples/pod-good.yaml"),
        file!("samples/pod-evil.yaml"),
        file!("samples/pod-kube-system.yaml"),
        file!("samples/deploy-unlabelled.yaml"),
        file!("samples/deploy-exempt.yaml"),
        file!("samples/review-evil.yaml"),
        file!("uniqueingresshost-template.yaml"),
        file!("uniqueingresshost-constraint.yaml"),
        file!("samples/ingress-shop.yaml"),
        file!("samples/inventory-ingresses.yaml"),
        file!("samples/inventory-self.yaml"),
    ])
}

fn check(suite: &str, extra: &[(&str, &str)]) -> SuiteReport {
    let mut files = files();
    files.extend(extra.iter().copied());
    run(suite, &mut |path| {
        files
            .get(path)
            .map(|s| s.to_string())
            .ok_or_else(|| format!("{path}: no such file"))
    })
}

#[test]
fn the_compat_suite_passes_case_by_case() {
    let report = check(include_str!("../../testdata/gatekeeper/suite.yaml"), &[]);
    let rendered = report.render("suite.yaml");
    assert!(report.passed(), "{rendered}");
    assert_eq!(report.tests.len(), 4);
    assert_eq!(
        report.tests.iter().map(|t| t.cases.len()).sum::<usize>(),
        11
    );
    assert!(
        rendered.contains("    --- PASS: lookalike-repo-denied\n"),
        "{rendered}"
    );
    assert!(rendered.ends_with("ok\tsuite.yaml\n"), "{rendered}");
}

#[test]
fn a_wrong_assertion_fails_that_case_only() {
    let report = check(
        include_str!("../../testdata/gatekeeper/failing-suite.yaml"),
        &[],
    );
    assert!(!report.passed());
    let cases = &report.tests[0].cases;
    assert!(cases[0].passed());
    assert_eq!(
        cases[1].failures,
        vec!["want at least one violation, got 0: []".to_string()]
    );
    assert!(
        report
            .render("f.yaml")
            .contains("    --- FAIL: wrong-expectation\n")
    );
}

#[test]
fn counts_and_message_filters_are_exact() {
    let suite = "kind: Suite\ntests:\n- name: t\n  template: disallowedtags-template.yaml\n  constraint: disallowedtags-constraint.yaml\n  cases:\n  - name: c\n    object: samples/pod-evil.yaml\n    assertions:\n    - violations: 1\n    - violations: 3\n      message: nothing-like-this\n    - violations: maybe\n";
    let report = check(suite, &[]);
    let failures = &report.tests[0].cases[0].failures;
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures[0].starts_with("want 1 violation(s), got 2"));
    assert!(failures[1].contains("with message containing \"nothing-like-this\", got 0"));
    assert!(failures[2].contains("violations must be yes, no or a count"));
}

#[test]
fn broken_inputs_fail_with_a_reason_not_a_panic() {
    let bad_rego = "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: x}\nspec:\n  crd: {spec: {names: {kind: K8sBroken}}}\n  targets:\n  - target: admission.k8s.gatekeeper.sh\n    rego: |\n      package broken\n      violation[{\"msg\": msg}] {\n        msg := \n      }\n";
    let no_kind = "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: x}\nspec:\n  targets: []\n";
    let constraint =
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sBroken\nmetadata: {name: c}\n";
    let suite = |template: &str| {
        format!(
            "kind: Suite\ntests:\n- name: t\n  template: {template}\n  constraint: c.yaml\n  cases:\n  - name: one\n    object: samples/pod-good.yaml\n    assertions: [{{violations: no}}]\n"
        )
    };
    for (template, text, reason) in [
        ("bad.yaml", bad_rego, "invalid Rego"),
        ("nokind.yaml", no_kind, "no spec.crd.spec.names.kind"),
        ("missing.yaml", "", "no ConstraintTemplate"),
        ("yaml.yaml", "a: [b", "invalid YAML"),
    ] {
        let report = check(
            &suite(template),
            &[(template, text), ("c.yaml", constraint)],
        );
        assert!(!report.passed());
        let error = report.tests[0].error.as_deref().unwrap_or("");
        assert!(error.contains(reason), "{template}: {error}");
        assert!(!report.tests[0].cases[0].passed());
    }
    let report = check("kind: NotASuite\n", &[]);
    assert_eq!(
        report.error.as_deref(),
        Some("not a gator suite (kind: Suite)")
    );
    let report = check("tests: [", &[]);
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or("")
            .contains("invalid YAML")
    );
}

#[test]
fn inventory_files_become_data_inventory_per_case() {
    let report = check(
        include_str!("../../testdata/gatekeeper/inventory-suite.yaml"),
        &[],
    );
    let rendered = report.render("inventory-suite.yaml");
    assert!(report.passed(), "{rendered}");
    let cases: Vec<&str> = report.tests[0]
        .cases
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        cases,
        [
            "no-inventory",
            "only-itself-and-others",
            "host-taken-in-another-namespace",
            "inventory-does-not-leak-into-the-next-case"
        ]
    );
}

#[test]
fn a_broken_inventory_fails_its_case_with_the_reason() {
    let suite = "\
kind: Suite
tests:
- name: t
  template: uniqueingresshost-template.yaml
  constraint: uniqueingresshost-constraint.yaml
  cases:
  - name: missing
    object: samples/ingress-shop.yaml
    inventory: [samples/absent.yaml]
    assertions: [{violations: no}]
  - name: nameless
    object: samples/ingress-shop.yaml
    inventory: [nameless.yaml]
    assertions: [{violations: no}]
";
    let nameless = "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: web\n";
    let report = check(suite, &[("nameless.yaml", nameless)]);
    let failures: Vec<&[String]> = report.tests[0]
        .cases
        .iter()
        .map(|c| c.failures.as_slice())
        .collect();
    assert_eq!(
        failures,
        [
            &["samples/absent.yaml: no such file".to_string()][..],
            &[
                "nameless.yaml:1: an inventory object needs apiVersion, kind and metadata.name"
                    .to_string()
            ][..],
        ]
    );
}
