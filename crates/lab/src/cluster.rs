//! The lab's cluster snapshot: its running services as `kubectl get
//! pods,deployments -A -o json` would print them, so that `bulkhead cve`
//! finds the lab's running workloads the way it finds a real cluster's.
//!
//! Each live service is one Deployment (what is meant to run) and, while its
//! processes run, one Pod per process (what runs: the pid is in the Pod's
//! name, the version in its labels, and the image digest it runs in
//! `imageID`); a new version started beside the first is one more Pod.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// Where `bulkhead.toml`'s `[cluster] snapshots` finds the snapshot, relative to DIR.
/// The cluster takes the file's name: `lab`.
pub const SNAPSHOT: &str = "cluster/lab.json";

/// One live service as the snapshot shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub version: String,
    /// The image reference the fleet's manifests give it.
    pub image: String,
    /// Its process, while it runs.
    pub pid: Option<u32>,
    pub addr: String,
}

/// The `List` of Deployments and Pods of `workloads`.
pub fn snapshot(workloads: &[Workload]) -> Value {
    let mut items = Vec::new();
    let mut deployed = std::collections::BTreeSet::new();
    // One Deployment per service: its first workload (the version the lab started with).
    for w in workloads
        .iter()
        .filter(|w| deployed.insert((&w.namespace, &w.name)))
    {
        let labels = json!({"app": w.name, "version": w.version});
        let container = json!({"name": w.name, "image": w.image});
        items.push(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": w.name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [container]},
                },
            },
            "status": {"replicas": 1, "readyReplicas": u8::from(w.pid.is_some())},
        }));
    }
    for w in workloads {
        let Some(pid) = w.pid else { continue };
        let name = format!("{}-{pid}", w.name);
        let mut status =
            json!({"name": w.name, "image": w.image, "ready": true, "restartCount": 0});
        if let Some(digest) = digest(&w.image) {
            let repository = w.image.split('@').next().unwrap_or_default();
            let repository = repository
                .rsplit_once(':')
                .filter(|(_, tag)| !tag.contains('/'))
                .map_or(repository, |(name, _)| name);
            status["imageID"] = Value::String(format!("docker-pullable://{repository}@{digest}"));
        }
        items.push(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": w.namespace,
                "labels": {"app": w.name, "version": w.version},
                "annotations": {"lab.bulkhead.dev/pid": pid.to_string(), "lab.bulkhead.dev/address": w.addr},
                "ownerReferences": [{"kind": "Deployment", "name": w.name}],
            },
            "spec": {"containers": [{"name": w.name, "image": w.image}]},
            "status": {"phase": "Running", "containerStatuses": [status]},
        }));
    }
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// The `sha256:…` digest an image reference pins, if any.
fn digest(image: &str) -> Option<&str> {
    image
        .split_once('@')
        .map(|(_, d)| d)
        .filter(|d| d.starts_with("sha256:"))
}

/// `bulkhead.toml` with the lab's snapshot listed under `[cluster] snapshots`,
/// or `None` when it already names it or has a `[cluster]` table of its own
/// (which the lab leaves to its author).
pub fn with_snapshot_entry(toml: &str) -> Option<String> {
    if toml.contains(SNAPSHOT) || toml.lines().any(|l| l.trim() == "[cluster]") {
        return None;
    }
    let mut out = toml.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let _ = write!(
        out,
        "\n# Written by `bulkhead lab up`: the lab's running services.\n[cluster]\nsnapshots = [\"{SNAPSHOT}\"]\n"
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(name: &str, image: &str, pid: Option<u32>) -> Workload {
        Workload {
            name: name.into(),
            namespace: "shop".into(),
            version: "1.0.0".into(),
            image: image.into(),
            pid,
            addr: "127.0.0.1:7001".into(),
        }
    }

    /// (kind, name, version label) of each item of a snapshot.
    fn items(list: &Value) -> Vec<(&str, &str, &str)> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["kind"].as_str().unwrap(),
                    i["metadata"]["name"].as_str().unwrap(),
                    i["metadata"]["labels"]["version"].as_str().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_running_service_is_a_deployment_and_a_pod_with_its_digest() {
        let list = snapshot(&[
            workload(
                "orders",
                "registry.acme.internal/apps/orders:2.3.4@sha256:1b38",
                Some(41),
            ),
            workload("web", "registry.acme.internal/apps/web:latest", None),
        ]);
        assert_eq!(
            items(&list),
            [
                ("Deployment", "orders", "1.0.0"),
                ("Deployment", "web", "1.0.0"),
                ("Pod", "orders-41", "1.0.0")
            ],
            "a service whose process is down has no pod"
        );
        let pod = &list["items"][2];
        assert_eq!(pod["metadata"]["labels"]["app"], "orders");
        assert_eq!(pod["metadata"]["namespace"], "shop");
        assert_eq!(
            pod["status"]["containerStatuses"][0]["imageID"],
            "docker-pullable://registry.acme.internal/apps/orders@sha256:1b38"
        );
        assert_eq!(
            list["items"][1]["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.acme.internal/apps/web:latest"
        );
    }

    #[test]
    fn a_new_version_beside_the_first_is_one_more_pod_of_the_same_deployment() {
        let mut green = workload("orders", "apps/orders:1.0.1@sha256:99", Some(52));
        green.version = "1.0.1".into();
        let list = snapshot(&[
            workload("orders", "apps/orders:1.0.0@sha256:11", Some(41)),
            green,
        ]);
        assert_eq!(
            items(&list),
            [
                ("Deployment", "orders", "1.0.0"),
                ("Pod", "orders-41", "1.0.0"),
                ("Pod", "orders-52", "1.0.1")
            ]
        );
        assert_eq!(
            list["items"][2]["status"]["containerStatuses"][0]["imageID"],
            "docker-pullable://apps/orders@sha256:99"
        );
    }

    #[test]
    fn the_snapshot_entry_is_added_once_and_never_over_a_cluster_table() {
        let added = with_snapshot_entry("[images]\nbase_repo = \"b\"").unwrap();
        assert!(
            added.ends_with("[cluster]\nsnapshots = [\"cluster/lab.json\"]\n"),
            "{added}"
        );
        assert_eq!(with_snapshot_entry(&added), None);
        assert_eq!(
            with_snapshot_entry("[cluster]\nsnapshots = [\"prod.json\"]\n"),
            None
        );
    }
}
