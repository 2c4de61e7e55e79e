//! Cluster state from `kubectl get pods,deployments,statefulsets,daemonsets,jobs,cronjobs
//! -A -o json` output (saved, or read live by `orchestrator::cluster`):
//! which image digests run where.
//!
//! Pods say what actually runs (`status.containerStatuses[].imageID` carries
//! the digest the node pulled); Deployments, StatefulSets, DaemonSets, Jobs
//! and CronJobs say what is meant to run (the image as written in the pod
//! template). The cluster's name is not in kubectl's output: the caller
//! passes it (a saved snapshot's file name without extension, a live read's
//! kubeconfig context).

use model::{Diagnostic, Digest, ImageRef, Provenance};
use serde::{Deserialize, Serialize};

/// One container of one pod or Deployment in a cluster snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningContainer {
    pub cluster: String,
    /// `Pod`, `Deployment`, `StatefulSet`, `DaemonSet`, `Job` or `CronJob`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The service it belongs to: `app.kubernetes.io/name`, else `app`, else the owner's name.
    pub service: String,
    pub container: String,
    /// The image as the object names it.
    pub image: String,
    pub image_ref: Option<ImageRef>,
    /// The digest that runs (pods only, from `imageID`).
    pub digest: Option<Digest>,
    pub at: Provenance,
}

/// Reads a `List` (or a single object) as printed by `kubectl get -o json`.
pub fn parse_snapshot(
    path: &str,
    cluster: &str,
    text: &str,
) -> (Vec<RunningContainer>, Vec<Diagnostic>) {
    let doc: serde_json::Value = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(e) => {
            return (
                Vec::new(),
                vec![crate::json_error(path, "kubectl JSON", &e)],
            );
        }
    };
    let items: Vec<&serde_json::Value> = match doc["items"].as_array() {
        Some(items) => items.iter().collect(),
        None if doc["kind"].is_string() => vec![&doc],
        None => {
            return (
                Vec::new(),
                vec![Diagnostic::error(
                    path,
                    Some(1),
                    "neither a kubectl List (items) nor an object (kind)",
                )],
            );
        }
    };
    let mut out = Vec::new();
    let mut diagnostics = Vec::new();
    let mut offset = 0;
    for item in items {
        let kind = item["kind"].as_str().unwrap_or_default();
        let meta = &item["metadata"];
        let name = meta["name"].as_str().unwrap_or_default();
        let quoted = format!("\"{name}\"");
        if let Some(i) = text[offset..].find(&quoted) {
            offset += i + quoted.len();
        }
        let at = Provenance::new(path, crate::line_of(text, offset));
        let namespace = meta["namespace"].as_str().unwrap_or("default");
        let labels = &meta["labels"];
        let owner = meta["ownerReferences"][0]["name"].as_str();
        let service = labels["app.kubernetes.io/name"]
            .as_str()
            .or_else(|| labels["app"].as_str())
            .or(owner)
            .unwrap_or(name)
            .to_string();
        let mut push = |container: &str, image: &str, digest: Option<Digest>| {
            let image_ref = match ImageRef::parse(image) {
                Ok(r) => Some(r),
                Err(e) => {
                    diagnostics.push(Diagnostic::warning_at(
                        &at,
                        format!("{kind} {namespace}/{name}: {e}"),
                    ));
                    None
                }
            };
            out.push(RunningContainer {
                cluster: cluster.to_string(),
                kind: kind.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
                service: service.clone(),
                container: container.to_string(),
                image: image.to_string(),
                image_ref,
                digest,
                at: at.clone(),
            });
        };
        match kind {
            "Pod" => {
                for status in item["status"]["containerStatuses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let image_id = status["imageID"].as_str().unwrap_or_default();
                    push(
                        status["name"].as_str().unwrap_or_default(),
                        status["image"].as_str().unwrap_or_default(),
                        digest_of_image_id(image_id),
                    );
                }
            }
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob" => {
                let template = match kind {
                    "CronJob" => &item["spec"]["jobTemplate"]["spec"]["template"],
                    _ => &item["spec"]["template"],
                };
                for c in template["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    push(
                        c["name"].as_str().unwrap_or_default(),
                        c["image"].as_str().unwrap_or_default(),
                        None,
                    );
                }
            }
            _ => {}
        }
    }
    (out, diagnostics)
}

/// The digest in a container status `imageID`: `docker-pullable://name@sha256:...`,
/// `name@sha256:...` or a bare `sha256:...`.
pub fn digest_of_image_id(image_id: &str) -> Option<Digest> {
    let rest = image_id.rsplit("://").next().unwrap_or(image_id);
    let digest = rest.rsplit_once('@').map_or(rest, |(_, d)| d);
    digest.parse().ok()
}
