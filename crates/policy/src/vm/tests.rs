//! Bytecode and interpreter give the same answers; what bytecode cannot express stays interpreted.

use super::Rule;
use crate::builtin::{Bundle, BundleConfig, TemplateWindow};
use crate::load_manifests;
use serde_json::{Value, json};

const SAMPLES: &[&str] = &[
    include_str!("../../testdata/gatekeeper/samples/deploy-exempt.yaml"),
    include_str!("../../testdata/gatekeeper/samples/deploy-unlabelled.yaml"),
    include_str!("../../testdata/gatekeeper/samples/pod-evil.yaml"),
    include_str!("../../testdata/gatekeeper/samples/pod-good.yaml"),
    include_str!("../../testdata/gatekeeper/samples/pod-kube-system.yaml"),
    // Every workload kind, init and ephemeral containers, a blue-green Service beside its pools.
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: orders-blue, namespace: shop}\nspec:\n  template:\n    metadata: {labels: {app: orders, version: blue}}\n    spec:\n      containers:\n      - {name: a, image: 'registry.acme.internal/apps/orders:1.2@sha256:ab', resources: {limits: {memory: 1Gi}}}\n      - {name: b, image: 'localhost:5000/tools/x'}\n      initContainers:\n      - {name: i, image: 'index.docker.io/library/busybox:latest'}\n      ephemeralContainers:\n      - {name: e, image: 'quay.io/debug:1'}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: orders, namespace: shop}\nspec:\n  selector: {app: orders}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: pinned, namespace: shop, annotations: {bulkhead.io/strategy: blue-green}}\nspec:\n  selector: {app: orders, version: blue}\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - {name: c, image: 'registry.acme.internal/base-evil/go:1', resources: {limits: {cpu: 1}}}\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: c, image: 42}\n      - not-an-object\n",
    // Ill-typed objects: the bundle must not pass a builtin a wrong type, or bytecode and
    // interpreter part ways (see the module doc).
    "apiVersion: v1\nkind: Pod\nmetadata: just-a-string\nspec:\n  containers:\n  - {name: 7, image: 'nginx:latest', resources: 3}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: [1], annotations: 5}\nspec:\n  containers: {image: 'nginx'}\n  initContainers: text\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: n, labels: 3}\nspec: 5\n---\napiVersion: v1\nkind: Service\nmetadata: {name: 5, annotations: {bulkhead.io/strategy: blue-green}}\nspec: {selector: 9}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, annotations: [x]}\nspec: {selector: {app: orders}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: t}\nspec: [1]\n---\napiVersion: v1\nkind: Service\nmetadata: 4\nspec: {selector: [a, b]}\n---\napiVersion: v1\nkind: [Pod]\nmetadata: {name: k}\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {jobTemplate: [1]}\n",
];

fn objects() -> Vec<Value> {
    SAMPLES
        .iter()
        .flat_map(|text| load_manifests("sample.yaml", text).0)
        .map(|object| object.value)
        .collect()
}

fn configs() -> [BundleConfig; 2] {
    [
        BundleConfig::default(),
        BundleConfig {
            approved_base_prefixes: vec!["registry.acme.internal/base/".into()],
            allowed_registries: vec!["registry.acme.internal/apps/".into(), "docker.io".into()],
            templates: Some(TemplateWindow {
                latest: "v3.1.0".into(),
                window: 1,
                sources: vec!["platform/ci-templates".into()],
            }),
            version_label: Some("track".into()),
        },
    ]
}

#[test]
fn the_bundle_runs_as_bytecode() {
    for config in configs() {
        let bundle = Bundle::load(&config, None).expect("bundle loads");
        assert!(bundle.rules().iter().all(|rule| rule.is_compiled()));
    }
}

#[test]
fn bytecode_answers_the_bundle_as_the_interpreter_does() {
    let siblings = json!([{"app": "orders", "version": "blue"}, {"app": "orders", "track": "a"}]);
    let services = [
        json!({"service": {"name": "a", "declared_at": [], "templates": []}, "base_images": []}),
        json!({"service": {"name": "b", "owner": "team", "tier": "gold",
            "declared_at": [{"path": "catalog-info.yaml", "line": 3}],
            "templates": [
                {"kind": "gitlab-project", "source": "platform/ci-templates", "version": "v1.0.0", "at": {"path": "a", "line": 1}},
                {"kind": "gitlab-component", "source": "gitlab.com/platform/ci-templates", "version": "v3.0.0", "at": {"path": "a", "line": 2}},
                {"kind": "github-workflow", "source": "other/x", "version": "main", "at": {"path": "a", "line": 3}},
                {"kind": "gitlab-project", "source": "platform/ci-templates", "at": {"path": "a", "line": 4}},
                {"kind": "gitlab-project", "source": "platform/ci-templates", "version": "vv1.0.0", "at": {"path": "a", "line": 5}},
                {"kind": "gitlab-project", "source": "platform/ci-templates", "version": "1.0", "at": {"path": "a", "line": 6}},
                {"kind": "gitlab-project", "source": "platform/ci-templates", "version": "1.0.0.1", "at": {"path": "a", "line": 7}},
                {"kind": "gitlab-project", "source": "platform/ci-templates", "version": 1, "at": {"path": "a", "line": 8}}]},
            "base_images": [
                {"image": "registry.acme.internal/base/go:1.22", "at": {"path": "Dockerfile", "line": 4}},
                {"image": "nginx", "at": {"path": "web/Dockerfile", "line": 1}}]}),
    ];
    for config in configs() {
        let bundle = Bundle::load(&config, None).expect("bundle loads");
        let [manifest, service] = bundle.rules();
        let mut inputs = Vec::new();
        for object in objects() {
            inputs.push((manifest, json!({"object": object, "siblings": siblings})));
            inputs.push((manifest, json!({"object": object, "siblings": []})));
        }
        inputs.extend(services.iter().map(|s| (service, s.clone())));
        for (rule, input) in inputs {
            let input = regorus::Value::from(input);
            let compiled = rule.clone().eval(input.clone());
            let interpreted = rule.without_bytecode().eval(input.clone());
            assert_eq!(compiled, interpreted, "{input}");
        }
    }
}

#[test]
fn a_rule_bytecode_cannot_express_is_interpreted() {
    // RVM does not compile `with`; the interpreter evaluates the rule instead.
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(
            "with.rego".into(),
            "package t\nimport rego.v1\nns := input.ns\nforced := n if {\n  n := ns with input.ns as \"forced\"\n}\n".into(),
        )
        .expect("valid Rego");
    let probe = regorus::Value::from(json!({"ns": "a"}));
    let mut rule = Rule::compiled(engine, "data.t.forced".into(), &[probe]).expect("evaluates");
    assert!(!rule.is_compiled());
    assert_eq!(
        rule.eval(regorus::Value::from(json!({"ns": "shop"}))),
        Ok(regorus::Value::from("forced"))
    );
}

#[test]
fn a_rule_is_interpreted_when_bytecode_answers_a_probe_differently() {
    // A builtin's type error: an error in the interpreter, an undefined body in RVM.
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(
            "strict.rego".into(),
            "package t\nimport rego.v1\nx if startswith(input.a, \"r\")\n".into(),
        )
        .expect("valid Rego");
    let probes = [json!({"a": "r"}), json!({"a": 42})].map(regorus::Value::from);
    let mut rule = Rule::compiled(engine, "data.t.x".into(), &probes).expect("evaluates");
    assert!(!rule.is_compiled());
    let error = rule
        .eval(regorus::Value::from(json!({"a": 42})))
        .expect_err("a type error");
    assert!(
        error.contains("`startswith` expects string argument"),
        "{error}"
    );
}
