//! Waiting for Argo CD: after a commit, its `Application`
//! (`argoproj.io/v1alpha1`, read through the Kubernetes API) must report
//! that commit as synced (`status.sync.revision`, `status.sync.status`
//! Synced) and the workloads healthy (`status.health.status` Healthy).
//! Degraded health, or a failed sync operation, at that commit is a failure;
//! so is the wait's limit passing first.

use crate::executor::ExecError;
use crate::kubernetes::{KubernetesExecutor, POLL};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use std::time::Instant;

/// The annotation that asks Argo CD to compare the Application with git
/// now, instead of at its next poll (three minutes by default).
const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

fn application() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

/// One Argo CD Application, reached through a Kubernetes API client.
#[derive(Debug)]
pub struct ArgoCd {
    kube: KubernetesExecutor,
    /// Where the Application object lives (Argo CD's own namespace, `argocd`).
    namespace: String,
    name: String,
}

/// Where an Application is relative to the commit waited for.
#[derive(Debug, PartialEq, Eq)]
enum Sync {
    Done,
    Waiting(String),
    Failed(String),
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(value, |v, key| &v[*key])
        .as_str()
        .unwrap_or("")
}

fn judge(app: &Value, revision: &str) -> Sync {
    let synced_to = text(app, &["status", "sync", "revision"]);
    let sync = text(app, &["status", "sync", "status"]);
    let health = text(app, &["status", "health", "status"]);
    let operation = &app["status"]["operationState"];
    let short = &revision[..revision.len().min(12)];
    if text(operation, &["syncResult", "revision"]) == revision
        && matches!(text(operation, &["phase"]), "Failed" | "Error")
    {
        return Sync::Failed(format!(
            "the sync of {short} failed: {}",
            text(operation, &["message"])
        ));
    }
    if synced_to != revision {
        let at = if synced_to.is_empty() {
            "no revision".to_string()
        } else {
            synced_to[..synced_to.len().min(12)].to_string()
        };
        return Sync::Waiting(format!("sync {sync} at {at}, health {health}"));
    }
    match (sync, health) {
        (_, "Degraded") => {
            let message = text(app, &["status", "health", "message"]);
            Sync::Failed(format!(
                "Degraded at {short}{}",
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            ))
        }
        ("Synced", "Healthy") => Sync::Done,
        _ => Sync::Waiting(format!("sync {sync} at {short}, health {health}")),
    }
}

impl ArgoCd {
    /// The Application `name` in `namespace`, read with `kube`'s client; its
    /// wait limit is the one a sync is waited for.
    pub fn new(kube: KubernetesExecutor, namespace: &str, name: &str) -> ArgoCd {
        ArgoCd {
            kube,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn what(&self) -> String {
        format!("Argo CD Application {}/{}", self.namespace, self.name)
    }

    /// Asks for a refresh, then reads the Application until it is synced and
    /// healthy at `revision` (a full commit id).
    ///
    /// # Errors
    /// When the Application does not exist, is Degraded or its sync failed
    /// at `revision`, the wait's limit passed, or the API cannot be reached.
    pub fn await_revision(&self, revision: &str) -> Result<(), ExecError> {
        let resource = application();
        self.kube.merge_patch_json(
            &resource,
            &self.namespace,
            &self.name,
            &serde_json::json!({"metadata": {"annotations": {REFRESH_ANNOTATION: "normal"}}}),
        )?;
        let started = Instant::now();
        loop {
            let Some(app) = self.kube.get_json(&resource, &self.namespace, &self.name)? else {
                return Err(ExecError::Kubernetes(format!("{} not found", self.what())));
            };
            match judge(&app, revision) {
                Sync::Done => return Ok(()),
                Sync::Failed(why) => {
                    return Err(ExecError::Kubernetes(format!("{}: {why}", self.what())));
                }
                Sync::Waiting(why) if started.elapsed() >= self.kube.wait() => {
                    return Err(ExecError::Kubernetes(format!(
                        "{} not Synced and Healthy at {} within {}s: {why}",
                        self.what(),
                        &revision[..revision.len().min(12)],
                        self.kube.wait().as_secs()
                    )));
                }
                Sync::Waiting(_) => std::thread::sleep(POLL),
            }
        }
    }
}

#[cfg(test)]
mod tests;
