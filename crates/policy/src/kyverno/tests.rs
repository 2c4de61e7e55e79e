//! The Kyverno export is valid YAML with the expected policies and patterns.

use crate::BundleConfig;
use crate::kyverno::export;
use yaml::{Node, load};

#[test]
fn exports_cluster_policies_for_the_image_rules() {
    let config = BundleConfig {
        allowed_registries: vec![
            "registry.acme.internal/apps/".into(),
            "docker.io/library".into(),
        ],
        ..BundleConfig::default()
    };
    let text = export(&config);
    let (docs, error) = load(&text);
    assert_eq!(error, None);
    let names: Vec<&str> = docs
        .iter()
        .filter_map(|d| d.at(&["metadata", "name"]).and_then(Node::as_str))
        .collect();
    assert_eq!(
        names,
        [
            "bulkhead-disallow-latest-tag",
            "bulkhead-require-image-digest",
            "bulkhead-allowed-registries",
            "bulkhead-container-limits"
        ]
    );
    for doc in &docs {
        assert_eq!(
            doc.get("kind").and_then(Node::as_str),
            Some("ClusterPolicy")
        );
    }
    let registries = &docs[2]
        .at(&["spec", "rules"])
        .and_then(Node::as_seq)
        .expect("rules")[0];
    let pattern = registries
        .at(&["validate", "pattern", "spec", "containers"])
        .and_then(Node::as_seq)
        .and_then(|c| c[0].get("image"))
        .and_then(Node::as_str);
    assert_eq!(
        pattern,
        Some("registry.acme.internal/apps/* | docker.io/library/*")
    );
    assert_eq!(
        docs[1]
            .at(&["spec", "validationFailureAction"])
            .and_then(Node::as_str),
        Some("Audit")
    );
}

#[test]
fn no_registry_policy_without_allowed_registries() {
    assert!(!export(&BundleConfig::default()).contains("bulkhead-allowed-registries"));
}
