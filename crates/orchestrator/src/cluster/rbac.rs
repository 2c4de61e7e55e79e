//! The RBAC objects bulkhead needs on a cluster, with exactly the verbs and
//! resources it uses: a ClusterRole for the live read (every namespace's
//! workloads) and a Role for rollouts in one namespace, each bound to one
//! service account.

use serde_json::{Value, json};

/// One RBAC rule: verbs on resources of one API group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The API group, empty for the core group.
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// Which commands send these requests.
    pub why: &'static str,
}

/// The live read (`cluster snapshot`, `cve --cluster`, `images audit
/// --cluster`): one paged list per kind, in every namespace.
pub const READ: &[Rule] = &[
    Rule {
        group: "",
        resources: &["pods"],
        verbs: &["list"],
        why: "cluster snapshot, cve --cluster, images audit --cluster",
    },
    Rule {
        group: "apps",
        resources: &["daemonsets", "deployments", "statefulsets"],
        verbs: &["list"],
        why: "cluster snapshot, cve --cluster, images audit --cluster",
    },
    Rule {
        group: "batch",
        resources: &["cronjobs", "jobs"],
        verbs: &["list"],
        why: "cluster snapshot, cve --cluster, images audit --cluster",
    },
];

/// Rollouts (`rollout start --executor kubernetes`, its `--dry-run`, and
/// the GitOps executor's wait for Argo CD) in one namespace.
pub const ROLLOUT: &[Rule] = &[
    Rule {
        group: "",
        resources: &["services"],
        verbs: &["get", "list", "patch"],
        why: "blue-green: the Service selector; list: the routing of the services outside the change set",
    },
    Rule {
        group: "gateway.networking.k8s.io",
        resources: &["httproutes"],
        verbs: &["get", "patch"],
        why: "canary: the HTTPRoute backendRefs weights",
    },
    Rule {
        group: "apps",
        resources: &["deployments"],
        verbs: &["get", "patch"],
        why: "rolling: the Deployment's image and its rollout status",
    },
    Rule {
        group: "argoproj.io",
        resources: &["applications"],
        verbs: &["get"],
        why: "gitops: the Argo CD Application's sync and health",
    },
];

/// The names the objects get.
pub const READ_ROLE: &str = "bulkhead-cluster-read";
pub const ROLLOUT_ROLE: &str = "bulkhead-rollout";

/// Whether `rules` allow `verb` on `resource` of `group`.
pub fn allows(rules: &[Rule], verb: &str, group: &str, resource: &str) -> bool {
    rules
        .iter()
        .any(|r| r.group == group && r.resources.contains(&resource) && r.verbs.contains(&verb))
}

fn rules_json(rules: &[Rule]) -> Value {
    rules
        .iter()
        .map(|r| {
            json!({
                "apiGroups": [r.group],
                "resources": r.resources,
                "verbs": r.verbs,
            })
        })
        .collect()
}

/// The ClusterRole and its binding for the read, the Role and its binding
/// for rollouts in `namespace`, all bound to the service account `account`
/// of `namespace`.
pub fn objects(namespace: &str, account: &str) -> Vec<Value> {
    let subject = json!([{ "kind": "ServiceAccount", "name": account, "namespace": namespace }]);
    let labels = json!({ "app.kubernetes.io/managed-by": "bulkhead" });
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": { "name": READ_ROLE, "labels": labels },
            "rules": rules_json(READ),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": { "name": READ_ROLE, "labels": labels },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": READ_ROLE },
            "subjects": subject,
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": { "name": ROLLOUT_ROLE, "namespace": namespace, "labels": labels },
            "rules": rules_json(ROLLOUT),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": { "name": ROLLOUT_ROLE, "namespace": namespace, "labels": labels },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLLOUT_ROLE },
            "subjects": subject,
        }),
    ]
}

/// [`objects`] as YAML documents for `kubectl apply -f -`, each rule
/// preceded by a comment saying which commands need it.
pub fn yaml(namespace: &str, account: &str) -> String {
    let mut out = String::new();
    for (index, object) in objects(namespace, account).iter().enumerate() {
        if index > 0 {
            out.push_str("---\n");
        }
        let rules = match object["kind"].as_str() {
            Some("ClusterRole") => READ,
            Some("Role") => ROLLOUT,
            _ => &[],
        };
        for rule in rules {
            out.push_str(&format!(
                "# {}/{}: {}\n",
                if rule.group.is_empty() {
                    "core"
                } else {
                    rule.group
                },
                rule.resources.join(","),
                rule.why
            ));
        }
        out.push_str(&super::diff::yaml(object));
    }
    out
}
