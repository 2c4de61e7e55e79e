//! Whole-crate behaviour: a manifest file with several documents, bad YAML, Lists, the inventory.

use crate::{BundleConfig, GatekeeperSet, Inventory, Policies, load_manifests};

#[test]
fn bad_yaml_keeps_the_documents_before_the_error() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n    - {name: c, image: 'nginx:latest', resources: {limits: {cpu: 1}}}\n---\nkind: [\n";
    let mut policies = Policies::new()
        .with_builtin(&BundleConfig::default())
        .expect("bundle");
    let outcome = policies.check_manifest_file("bad.yaml", text);
    assert_eq!(outcome.diagnostics.len(), 1);
    assert!(outcome.diagnostics[0].message.contains("invalid YAML"));
    assert!(
        outcome
            .findings
            .iter()
            .any(|f| f.policy == "builtin/image-tag" && f.at.as_ref().map(|a| a.line) == Some(6))
    );
}

#[test]
fn lists_are_unpacked_and_non_objects_skipped() {
    let text = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Pod\n    metadata: {name: a}\n  - apiVersion: v1\n    kind: Pod\n    metadata: {name: b}\n---\njust: data\n";
    let (objects, diagnostics) = load_manifests("l.yaml", text);
    assert_eq!(diagnostics, vec![]);
    let subjects: Vec<(String, u32)> = objects.iter().map(|o| (o.subject(), o.line)).collect();
    assert_eq!(
        subjects,
        [("Pod a".to_string(), 4), ("Pod b".to_string(), 7)]
    );
}

#[test]
fn policies_clone_per_thread_and_agree() {
    let policies = Policies::new()
        .with_builtin(&BundleConfig::default())
        .expect("bundle");
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n    - {name: c, image: nginx}\n";
    let results: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let mut mine = policies.clone();
                s.spawn(move || mine.check_manifest_file("p.yaml", text).findings.len())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(results, [3, 3, 3, 3]);
}

#[test]
fn constraints_see_the_inventory_given_to_the_policies() {
    let mut set = GatekeeperSet::new();
    for (path, text) in [
        (
            "template.yaml",
            include_str!("../testdata/gatekeeper/uniqueingresshost-template.yaml"),
        ),
        (
            "constraint.yaml",
            include_str!("../testdata/gatekeeper/uniqueingresshost-constraint.yaml"),
        ),
    ] {
        assert!(set.add_yaml(path, text).is_empty());
    }
    let shop = include_str!("../testdata/gatekeeper/samples/ingress-shop.yaml");
    let (others, _) = load_manifests(
        "other-repo/ingresses.yaml",
        include_str!("../testdata/gatekeeper/samples/inventory-ingresses.yaml"),
    );
    let inventory: Inventory = others.iter().map(|o| &o.value).collect();
    let mut without = Policies::new().with_gatekeeper(set);
    let mut with = without.clone().with_inventory(&inventory);
    assert!(
        without
            .check_manifest_file("shop/ingress.yaml", shop)
            .findings
            .is_empty()
    );
    let findings = with.check_manifest_file("shop/ingress.yaml", shop).findings;
    let got: Vec<(String, String, String)> = findings
        .iter()
        .map(|f| {
            (
                f.policy.clone(),
                f.message.clone(),
                f.at.as_ref().map(ToString::to_string).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(
            "K8sUniqueIngressHost/unique-ingress-host".to_string(),
            "ingress host conflicts with an existing ingress <shop.example.com>".to_string(),
            "shop/ingress.yaml:1".to_string()
        )]
    );
}
