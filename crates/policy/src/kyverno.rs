//! Kyverno export: ClusterPolicies equivalent to the bundle's image rules,
//! for companies that enforce with Kyverno instead of Gatekeeper.
//!
//! Pod rules only: Kyverno's auto-generation applies them to Deployments,
//! StatefulSets, Jobs and CronJobs. Base-image rules have no Kyverno
//! equivalent (a cluster never sees a Dockerfile) and are not exported.

use crate::BundleConfig;

/// The ClusterPolicies as one multi-document YAML stream.
pub fn export(config: &BundleConfig) -> String {
    let mut out = String::new();
    out.push_str(&policy(
        "bulkhead-disallow-latest-tag",
        "No :latest or missing image tag",
        "Enforce",
        &[
            ("require-image-tag", "An image tag is required (bulkhead builtin/image-tag).", "\"*:*\""),
            ("validate-image-tag", "Using a mutable image tag such as 'latest' is not allowed (bulkhead builtin/image-tag).", "\"!*:latest\""),
        ],
    ));
    out.push_str(&policy(
        "bulkhead-require-image-digest",
        "Images pinned by digest",
        "Audit",
        &[(
            "require-image-digest",
            "Images must be pinned by digest (bulkhead builtin/image-digest).",
            "\"*@sha256:*\"",
        )],
    ));
    if !config.allowed_registries.is_empty() {
        // Kyverno's `*` matches `/` too; ending every prefix with `/` keeps the
        // whole-component comparison: `registry/apps/*` does not admit `registry/apps-evil/x`.
        let pattern = config
            .allowed_registries
            .iter()
            .map(|p| format!("{}/*", p.trim_end_matches('/')))
            .collect::<Vec<_>>()
            .join(" | ");
        out.push_str(&policy(
            "bulkhead-allowed-registries",
            "Images from allowed registries only",
            "Enforce",
            &[(
                "allowed-registries",
                &format!(
                    "Images must come from {} (bulkhead builtin/allowed-registries).",
                    config.allowed_registries.join(", ")
                ),
                &format!("\"{pattern}\""),
            )],
        ));
    }
    out.push_str(LIMITS);
    out
}

fn policy(name: &str, title: &str, action: &str, rules: &[(&str, &str, &str)]) -> String {
    let mut out = format!(
        "---\napiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: {name}\n  annotations:\n    policies.kyverno.io/title: {title}\n    policies.kyverno.io/category: bulkhead\n    policies.kyverno.io/description: Exported from the bulkhead built-in policy bundle.\nspec:\n  validationFailureAction: {action}\n  background: true\n  rules:\n"
    );
    for (rule, message, pattern) in rules {
        out.push_str(&format!(
            "    - name: {rule}\n      match:\n        any:\n          - resources:\n              kinds: [Pod]\n      validate:\n        message: \"{message}\"\n        pattern:\n          spec:\n            =(ephemeralContainers):\n              - image: {pattern}\n            =(initContainers):\n              - image: {pattern}\n            containers:\n              - image: {pattern}\n"
        ));
    }
    out
}

const LIMITS: &str = "---\napiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: bulkhead-container-limits\n  annotations:\n    policies.kyverno.io/title: Containers have resource limits\n    policies.kyverno.io/category: bulkhead\n    policies.kyverno.io/description: Exported from the bulkhead built-in policy bundle.\nspec:\n  validationFailureAction: Enforce\n  background: true\n  rules:\n    - name: container-limits\n      match:\n        any:\n          - resources:\n              kinds: [Pod]\n      validate:\n        message: \"Containers must set resources.limits.cpu or memory (bulkhead builtin/container-limits).\"\n        anyPattern:\n          - spec:\n              containers:\n                - resources:\n                    limits:\n                      memory: \"?*\"\n          - spec:\n              containers:\n                - resources:\n                    limits:\n                      cpu: \"?*\"\n";

#[cfg(test)]
mod tests;
