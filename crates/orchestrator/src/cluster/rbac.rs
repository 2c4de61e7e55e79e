//! The RBAC objects bulkhead needs on a cluster, with exactly the verbs and
//! resources it uses: a ClusterRole for the live read (every namespace's
//! workloads, and the admission webhook's copy of the cluster), a Role for rollouts in their namespace and one for Argo CD's
//! Applications in Argo CD's, each bound to one service account.

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
/// --cluster`): one paged list per kind, in every namespace; and the
/// admission webhook's copy of the cluster (`policy serve
/// --inventory-cluster`): a list, then a watch, of each kind it may copy.
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
    Rule {
        group: "",
        resources: &["configmaps", "namespaces", "pods", "services"],
        verbs: &["list", "watch"],
        why: "policy serve --inventory-cluster (data.inventory)",
    },
    Rule {
        group: "networking.k8s.io",
        resources: &["ingresses"],
        verbs: &["list", "watch"],
        why: "policy serve --inventory-cluster (data.inventory)",
    },
    Rule {
        group: "apps",
        resources: &["daemonsets", "deployments", "statefulsets"],
        verbs: &["list", "watch"],
        why: "policy serve --inventory-cluster (data.inventory)",
    },
    Rule {
        group: "batch",
        resources: &["cronjobs", "jobs"],
        verbs: &["list", "watch"],
        why: "policy serve --inventory-cluster (data.inventory)",
    },
];

/// Rollouts (`rollout start --executor kubernetes` and its `--dry-run`)
/// in one namespace.
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
        why: "rolling by image: the Deployment's image, then its rollout status",
    },
];

/// The GitOps executor's wait for Argo CD (`--argocd-app`), in Argo CD's namespace.
pub const ARGOCD: &[Rule] = &[Rule {
    group: "argoproj.io",
    resources: &["applications"],
    verbs: &["get", "patch"],
    why: "gitops: the Application's sync and health; patch: its refresh annotation",
}];

/// The names the objects get.
pub const READ_ROLE: &str = "bulkhead-cluster-read";
pub const ROLLOUT_ROLE: &str = "bulkhead-rollout";
pub const ARGOCD_ROLE: &str = "bulkhead-argocd";

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

fn role(kind: &str, name: &str, namespace: Option<&str>, rules: &[Rule]) -> Value {
    let mut metadata =
        json!({ "name": name, "labels": { "app.kubernetes.io/managed-by": "bulkhead" } });
    if let Some(namespace) = namespace {
        metadata["namespace"] = namespace.into();
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "rules": rules_json(rules),
    })
}

fn binding(role: &Value, subjects: &Value) -> Value {
    let kind = role["kind"].as_str().unwrap_or_default();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": format!("{kind}Binding"),
        "metadata": role["metadata"],
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role["metadata"]["name"] },
        "subjects": subjects,
    })
}

/// The ClusterRole and its binding for the read, the Role and its binding
/// for rollouts in `namespace`, and the Role and its binding for Argo CD's
/// Applications in `argocd`, all bound to the service account `account` of
/// `namespace`.
pub fn objects(namespace: &str, argocd: &str, account: &str) -> Vec<Value> {
    let subjects = json!([{ "kind": "ServiceAccount", "name": account, "namespace": namespace }]);
    let mut out = Vec::new();
    for role in [
        role("ClusterRole", READ_ROLE, None, READ),
        role("Role", ROLLOUT_ROLE, Some(namespace), ROLLOUT),
        role("Role", ARGOCD_ROLE, Some(argocd), ARGOCD),
    ] {
        let bound = binding(&role, &subjects);
        out.push(role);
        out.push(bound);
    }
    out
}

/// [`objects`] as YAML documents for `kubectl apply -f -`, each rule
/// preceded by a comment saying which commands need it.
pub fn yaml(namespace: &str, argocd: &str, account: &str) -> String {
    let mut out = String::new();
    for (index, object) in objects(namespace, argocd, account).iter().enumerate() {
        if index > 0 {
            out.push_str("---\n");
        }
        let rules = match object["metadata"]["name"].as_str() {
            Some(READ_ROLE) if object["kind"] == "ClusterRole" => READ,
            Some(ROLLOUT_ROLE) if object["kind"] == "Role" => ROLLOUT,
            Some(ARGOCD_ROLE) if object["kind"] == "Role" => ARGOCD,
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
