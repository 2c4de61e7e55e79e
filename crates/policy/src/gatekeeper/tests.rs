//! Constraint matching and evaluation through `Policies`, as `policy check` and admission use them.

use crate::gatekeeper::{GatekeeperSet, LabelSelector, Match};
use crate::{Level, Policies, PolicyError};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const REPOS_TEMPLATE: &str = include_str!("../../testdata/gatekeeper/allowedrepos-template.yaml");
const REPOS_CONSTRAINT: &str =
    include_str!("../../testdata/gatekeeper/allowedrepos-constraint.yaml");
const LABELS_TEMPLATE: &str =
    include_str!("../../testdata/gatekeeper/requiredlabels-template.yaml");
const LABELS_CONSTRAINT: &str =
    include_str!("../../testdata/gatekeeper/requiredlabels-constraint.yaml");

fn set(files: &[&str]) -> GatekeeperSet {
    let mut set = GatekeeperSet::new();
    for (i, text) in files.iter().enumerate() {
        let diagnostics = set.add_yaml(&format!("f{i}.yaml"), text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
    }
    set
}

fn pod(ns: &str, image: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns, "labels": labels},
           "spec": {"containers": [{"name": "app", "image": image}]}})
}

#[test]
fn templates_bind_to_constraints_by_kind_and_parameters_reach_the_rego() {
    let set = set(&[
        REPOS_TEMPLATE,
        REPOS_CONSTRAINT,
        LABELS_TEMPLATE,
        LABELS_CONSTRAINT,
    ]);
    assert_eq!(set.templates().len(), 2);
    assert_eq!(set.unbound(), vec![]);
    let mut policies = Policies::new().with_gatekeeper(set);
    let findings = policies
        .admit(&json!({"object": pod("shop", "quay.io/x/y:1", json!({}))}))
        .expect("evaluates");
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].policy, "K8sAllowedRepos/repo-is-acme");
    assert_eq!(findings[0].level, Level::Deny);
    assert!(
        findings[0]
            .message
            .contains("[\"registry.acme.internal/apps/\"]"),
        "{}",
        findings[0].message
    );
    assert_eq!(findings[0].details, Some(json!({"image": "quay.io/x/y:1"})));
}

#[test]
fn enforcement_action_warn_gives_warnings_and_libs_work_in_v1() {
    let mut policies = Policies::new().with_gatekeeper(set(&[LABELS_TEMPLATE, LABELS_CONSTRAINT]));
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "payments-eu", "labels": {"owner": "a"}}});
    let findings = policies
        .admit(&json!({"object": deploy}))
        .expect("evaluates");
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].level, Level::Warn);
    assert_eq!(findings[0].message, "you must provide labels: [\"tier\"]");
}

#[test]
fn match_kinds_namespaces_and_exclusions() {
    let m = Match {
        kinds: vec![
            (vec!["".into()], vec!["Pod".into()]),
            (vec!["apps".into()], vec!["*".into()]),
        ],
        namespaces: Some(vec!["shop".into(), "pay*".into(), "*-prod".into()]),
        excluded_namespaces: vec!["payments-legacy".into()],
        label_selector: None,
        scope: None,
    };
    let deploy = |ns: &str| json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x", "namespace": ns}});
    for (object, want) in [
        (pod("shop", "i", json!({})), true),
        (pod("payments", "i", json!({})), true),
        (pod("eu-prod", "i", json!({})), true),
        (pod("payments-legacy", "i", json!({})), false),
        (pod("other", "i", json!({})), false),
        (deploy("shop"), true),
        (
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "shop"}}),
            false,
        ),
        (
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "shop"}}),
            false,
        ),
    ] {
        assert_eq!(m.matches(&object, None), want, "{object}");
    }
    // The admission request's kind and namespace win over the object's.
    let request = json!({"kind": {"group": "", "kind": "Pod"}, "namespace": "other"});
    assert!(!m.matches(&pod("shop", "i", json!({})), Some(&request)));
}

#[test]
fn label_selector_operators() {
    let labels: BTreeMap<String, String> = [("app", "orders"), ("tier", "1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let selector = |labels: &[(&str, &str)], exprs: &[(&str, &str, &[&str])]| LabelSelector {
        match_labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        match_expressions: exprs
            .iter()
            .map(|(k, o, v)| {
                (
                    k.to_string(),
                    o.to_string(),
                    v.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect(),
    };
    assert!(selector(&[("app", "orders")], &[]).matches(&labels));
    assert!(!selector(&[("app", "pay")], &[]).matches(&labels));
    assert!(selector(&[], &[("tier", "In", &["1", "2"])]).matches(&labels));
    assert!(!selector(&[], &[("tier", "NotIn", &["1"])]).matches(&labels));
    assert!(selector(&[], &[("team", "NotIn", &["x"])]).matches(&labels));
    assert!(selector(&[], &[("app", "Exists", &[])]).matches(&labels));
    assert!(selector(&[], &[("team", "DoesNotExist", &[])]).matches(&labels));
    assert!(!selector(&[], &[("app", "Bogus", &[])]).matches(&labels));
}

#[test]
fn dryrun_constraints_are_not_enforced() {
    let dryrun = REPOS_CONSTRAINT.replace(
        "spec:\n  match:",
        "spec:\n  enforcementAction: dryrun\n  match:",
    );
    let mut policies = Policies::new().with_gatekeeper(set(&[REPOS_TEMPLATE, &dryrun]));
    assert_eq!(
        policies
            .admit(&json!({"object": pod("shop", "quay.io/x:1", json!({}))}))
            .expect("ok"),
        vec![]
    );
}

#[test]
fn bad_documents_are_diagnostics_with_lines() {
    let mut set = GatekeeperSet::new();
    let text = "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sNothing\nmetadata: {name: orphan}\n---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sBad\nmetadata: {name: b}\nspec: {enforcementAction: maybe}\n---\napiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: t}\nspec:\n  crd: {spec: {names: {kind: K8sUndefined}}}\n  targets:\n  - target: admission.k8s.gatekeeper.sh\n    rego: |\n      package undefined\n      violation[{\"msg\": m}] { m := no_such_function(input.review) }\n";
    let diagnostics = set.add_yaml("gk.yaml", text);
    let lines: Vec<(Option<u32>, bool)> = diagnostics
        .iter()
        .map(|d| (d.line, d.message.contains("K8s")))
        .collect();
    assert_eq!(
        lines,
        vec![(Some(5), true), (Some(10), true)],
        "{diagnostics:?}"
    );
    let unbound = set.unbound();
    assert_eq!(unbound.len(), 1);
    assert!(
        unbound[0]
            .message
            .contains("no ConstraintTemplate defines kind K8sNothing")
    );
}

#[test]
fn a_looping_policy_runs_out_of_its_time_budget() {
    let template = "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: slow}\nspec:\n  crd: {spec: {names: {kind: K8sSlow}}}\n  targets:\n  - target: admission.k8s.gatekeeper.sh\n    rego: |\n      package slow\n      violation[{\"msg\": \"slow\"}] {\n        n := input.parameters.n\n        count([x | a := numbers.range(1, n)[_]; b := numbers.range(1, n)[_]; x := a * b]) > 0\n      }\n";
    let constraint = "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sSlow\nmetadata: {name: s}\nspec:\n  parameters: {n: 100000}\n";
    let mut policies = Policies::new()
        .with_gatekeeper(set(&[template, constraint]))
        .with_budget(Duration::from_millis(20));
    let error = policies
        .admit(&json!({"object": pod("shop", "i", json!({}))}))
        .expect_err("times out");
    assert!(matches!(error, PolicyError::Timeout { .. }), "{error}");
}

/// Rules with several bodies, as gatekeeper-library writes them: (what, Rego, rewrite).
const SEVERAL_BODIES: &[(&str, &str, Option<&str>)] = &[
    (
        "a partial set rule",
        "package p\nviolation[{\"msg\": m}] {\n  m := \"a\"\n} {\n  m := \"b\"\n}\n",
        Some(
            "package p\nviolation[{\"msg\": m}] {\n  m := \"a\"\n} violation[{\"msg\": m}] {\n  m := \"b\"\n}\n",
        ),
    ),
    (
        "a function, bodies on their own lines",
        "package p\nf(o) = s {\n  s := o.a\n}\n{\n  s := o.b\n}\n",
        Some("package p\nf(o) = s {\n  s := o.a\n}\nf(o) = s {\n  s := o.b\n}\n"),
    ),
    (
        "braces in strings and comments are not bodies",
        "package p\nr { x := \"} {\" } # } {\ns { true }\n",
        None,
    ),
    (
        "else is left alone",
        "package p\nr = 1 { false } else = 2 { true }\n",
        None,
    ),
];

#[test]
fn rules_with_several_bodies_become_one_rule_per_body_on_the_same_lines() {
    for (what, rego, want) in SEVERAL_BODIES {
        let got = super::rewrite::split_rule_bodies(rego);
        assert_eq!(got.as_deref(), *want, "{what}");
        if let Some(got) = got {
            assert_eq!(got.lines().count(), rego.lines().count(), "{what}");
        }
    }
}

#[test]
fn a_set_rule_with_several_bodies_reports_every_body_that_holds() {
    let template = "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: multi}\nspec:\n  crd: {spec: {names: {kind: K8sMulti}}}\n  targets:\n  - target: admission.k8s.gatekeeper.sh\n    rego: |\n      package multi\n      violation[{\"msg\": msg}] {\n        input.review.object.kind == \"Pod\"\n        msg := \"a pod\"\n      } {\n        input.review.object.metadata.namespace == \"shop\"\n        msg := \"in shop\"\n      } {\n        input.review.object.kind == \"Service\"\n        msg := \"a service\"\n      }\n";
    let constraint =
        "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sMulti\nmetadata: {name: m}\n";
    let mut policies = Policies::new().with_gatekeeper(set(&[template, constraint]));
    let findings = policies
        .admit(&json!({"object": pod("shop", "i", json!({}))}))
        .expect("evaluates");
    let mut messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
    messages.sort();
    assert_eq!(messages, ["a pod", "in shop"]);
}
