//! The Kubernetes executor, through kube-rs:
//!
//! - blue-green: a JSON merge patch of the Service's `spec.selector`;
//! - canary: the `weight` of the backendRefs of the Gateway API HTTPRoute
//!   named after the service, guarded by the route's `resourceVersion` so a
//!   concurrent edit is never overwritten: on a 409 Conflict the route is
//!   read again and the patch retried, a bounded number of times. A
//!   selector change sets that route's weights too (all on one pool), so
//!   the end of a canary, an abort and an undo move the route's traffic;
//! - rolling by image: the Deployment's container image, guarded the same
//!   way, then its rollout status is watched as `kubectl rollout status`
//!   does (observedGeneration, updated and available replicas, the
//!   Progressing condition's ProgressDeadlineExceeded) until done or the
//!   wait's limit.
//!
//! Two ways in: a plain `http://` URL (`kubectl proxy`, an in-cluster
//! sidecar), or a kubeconfig context (`--kubeconfig`, `--context`): HTTPS with
//! the cluster's CA, and a bearer token, a client certificate or an exec
//! credential plugin, as `kubectl` uses them (`kubeconfig.rs`, `kubernetes/tls.rs`).

pub(crate) mod tls;

use crate::executor::{ExecError, Executor, ImageMove, Labels, WeightedPool, image_name};
use crate::gitops::backend_name;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The `--kubeconfig` value that means "the service account of the pod this runs in".
pub const IN_CLUSTER: &str = "in-cluster";

/// The field manager recorded on every change.
const MANAGER: &str = "bulkhead-rollout";

/// How many times a patch refused with 409 Conflict is tried in all, each
/// time on the object read again.
pub const CONFLICT_ATTEMPTS: usize = 5;

/// How long a Deployment's rollout (or an Argo CD sync) is waited for by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(600);

/// How often a Deployment or an Application is read again while waiting.
pub const POLL: Duration = Duration::from_millis(200);

pub struct KubernetesExecutor {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    namespace: String,
    wait: Duration,
}

impl std::fmt::Debug for KubernetesExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesExecutor")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn kube_error(what: String) -> impl Fn(kube::Error) -> ExecError {
    move |e| ExecError::Kubernetes(format!("{what}: {e}"))
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(response) if response.code == 409)
}

/// Where a Deployment's rollout is, read from its object as `kubectl rollout status` reads it.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    Done,
    Waiting(String),
    Failed(String),
}

fn deployment_progress(d: &Deployment) -> Progress {
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting("waiting for the controller to observe the new spec".into());
    }
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Progress::Failed(format!(
            "ProgressDeadlineExceeded: {}",
            c.message.as_deref().unwrap_or("no progress")
        ));
    }
    let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < wanted {
        Progress::Waiting(format!("{updated} of {wanted} new replicas updated"))
    } else if replicas > updated {
        Progress::Waiting(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ))
    } else if available < updated {
        Progress::Waiting(format!(
            "{available} of {updated} updated replicas available"
        ))
    } else {
        Progress::Done
    }
}

/// The index of the container that runs `to`'s image (by repository), or
/// the only container.
pub(crate) fn container_for(d: &Deployment, to: &str) -> Result<usize, String> {
    let containers = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let same = |c: &&k8s_openapi::api::core::v1::Container| {
        c.image.as_deref().map(image_name) == Some(image_name(to))
    };
    if let Some(i) = containers.iter().position(|c| same(&c)) {
        return Ok(i);
    }
    match containers {
        [_] => Ok(0),
        _ => Err(format!(
            "no container runs {} (containers: {})",
            image_name(to),
            containers
                .iter()
                .map(|c| format!("{} {}", c.name, c.image.as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn http_route() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

impl KubernetesExecutor {
    /// Talks to the API server at `url` (`http://127.0.0.1:8001` for
    /// `kubectl proxy`), in `namespace`, with a bearer token when given.
    ///
    /// # Errors
    /// When the URL is invalid or the client cannot be built.
    pub fn new(
        url: &str,
        namespace: &str,
        token: Option<String>,
    ) -> Result<KubernetesExecutor, ExecError> {
        let bad = |detail: String| ExecError::Refused {
            target: url.to_string(),
            detail,
        };
        if !url.starts_with("http://") {
            return Err(bad(
                "only http:// is supported: use `kubectl proxy` or an in-cluster sidecar".into(),
            ));
        }
        let (runtime, client) = crate::cluster::Connection::plain(url, token, namespace)
            .map_err(|e| bad(e.detail))?
            .into_client();
        Ok(KubernetesExecutor {
            runtime,
            client,
            namespace: namespace.to_string(),
            wait: DEFAULT_WAIT,
        })
    }

    /// Talks to the cluster of `context` (default: the current context) in
    /// the kubeconfig at `path`, in `namespace` (default: the context's, else
    /// `default`). The path [`IN_CLUSTER`] means the pod's own service account.
    ///
    /// # Errors
    /// A kubeconfig that cannot be read or used, or an exec plugin that fails.
    pub fn from_kubeconfig(
        path: &std::path::Path,
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<KubernetesExecutor, ExecError> {
        let connection =
            crate::cluster::Connection::open(path, context).map_err(|e| ExecError::Refused {
                target: e.what,
                detail: e.detail,
            })?;
        let namespace = namespace
            .map(str::to_string)
            .unwrap_or_else(|| connection.namespace.clone());
        let (runtime, client) = connection.into_client();
        Ok(KubernetesExecutor {
            runtime,
            client,
            namespace,
            wait: DEFAULT_WAIT,
        })
    }

    /// Waits at most `wait` for a Deployment's rollout (default [`DEFAULT_WAIT`]).
    #[must_use]
    pub fn waiting_at_most(mut self, wait: Duration) -> KubernetesExecutor {
        self.wait = wait;
        self
    }

    /// How long a rollout or sync is waited for.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Reads one object of `resource` in `namespace`, as JSON; `None` when
    /// the API server answers 404.
    ///
    /// # Errors
    /// When the API server cannot be reached or refuses otherwise.
    pub fn get_json(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, ExecError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, resource);
        let object = self
            .runtime
            .block_on(api.get_opt(name))
            .map_err(kube_error(format!(
                "reading {} {namespace}/{name}",
                resource.kind
            )))?;
        Ok(object.map(|o| serde_json::to_value(o).expect("objects serialize")))
    }

    /// Merge-patches one object of `resource` in `namespace`.
    ///
    /// # Errors
    /// When the object does not exist, or the API server refuses or cannot be reached.
    pub fn merge_patch_json(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), ExecError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, resource);
        self.runtime
            .block_on(api.patch(name, &PatchParams::apply(MANAGER), &Patch::Merge(patch)))
            .map_err(kube_error(format!(
                "patching {} {namespace}/{name}",
                resource.kind
            )))?;
        Ok(())
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn routes(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &http_route())
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Reads the HTTPRoute `name`, lets `edit` change its rules, and
    /// merge-patches them guarded by the version read; a 409 Conflict (a
    /// concurrent edit) reads it again and retries, [`CONFLICT_ATTEMPTS`]
    /// times in all. `Ok(false)` when there is no such route, or `edit`
    /// leaves it as it is.
    fn patch_route(
        &self,
        name: &str,
        edit: &dyn Fn(&mut serde_json::Value) -> Result<bool, ExecError>,
    ) -> Result<bool, ExecError> {
        let what = format!("HTTPRoute {}/{name}", self.namespace);
        let api = self.routes();
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let Some(route) = self
                .runtime
                .block_on(api.get_opt(name))
                .map_err(kube_error(format!("reading {what}")))?
            else {
                return Ok(false);
            };
            let mut rules = route.data["spec"]["rules"].clone();
            if !edit(&mut rules)? {
                return Ok(false);
            }
            // A merge patch replaces lists whole: send every rule, guarded by the
            // version read, so a concurrent edit is refused rather than lost.
            let patch = serde_json::json!({
                "metadata": { "resourceVersion": route.metadata.resource_version },
                "spec": { "rules": rules },
            });
            match self.runtime.block_on(api.patch(
                name,
                &PatchParams::apply(MANAGER),
                &Patch::Merge(&patch),
            )) {
                Ok(_) => return Ok(true),
                Err(e) if is_conflict(&e) && attempt < CONFLICT_ATTEMPTS => {}
                Err(e) if is_conflict(&e) => {
                    return Err(ExecError::Kubernetes(format!(
                        "patching {what}: still 409 Conflict after {CONFLICT_ATTEMPTS} attempts, each on the route read again (another writer keeps changing it): {e}"
                    )));
                }
                Err(e) => return Err(kube_error(format!("patching {what}"))(e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Sets the image of one Deployment's container, guarded by its
    /// `resourceVersion` and retried on 409 Conflict like a route.
    fn patch_image(&self, image: &ImageMove) -> Result<(), ExecError> {
        let what = format!("Deployment {}/{}", self.namespace, image.service);
        let api = self.deployments();
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let deployment = self
                .runtime
                .block_on(api.get(&image.service))
                .map_err(kube_error(format!("reading {what}")))?;
            let index = container_for(&deployment, &image.to)
                .map_err(|e| ExecError::Kubernetes(format!("{what}: {e}")))?;
            let mut containers = deployment
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|s| s.containers.clone())
                .unwrap_or_default();
            if containers[index].image.as_deref() == Some(image.to.as_str()) {
                return Ok(());
            }
            containers[index].image = Some(image.to.clone());
            let patch = serde_json::json!({
                "metadata": { "resourceVersion": deployment.metadata.resource_version },
                "spec": { "template": { "spec": { "containers": containers } } },
            });
            match self.runtime.block_on(api.patch(
                &image.service,
                &PatchParams::apply(MANAGER),
                &Patch::Merge(&patch),
            )) {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) && attempt < CONFLICT_ATTEMPTS => {}
                Err(e) if is_conflict(&e) => {
                    return Err(ExecError::Kubernetes(format!(
                        "patching {what}: still 409 Conflict after {CONFLICT_ATTEMPTS} attempts, each on the Deployment read again: {e}"
                    )));
                }
                Err(e) => return Err(kube_error(format!("patching {what}"))(e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Reads the Deployment again until its rollout is done, failed, or the wait's limit passed.
    fn await_rollout(&self, name: &str, image: &str) -> Result<(), ExecError> {
        let what = format!("Deployment {}/{name}", self.namespace);
        let api = self.deployments();
        let started = Instant::now();
        loop {
            let deployment = self
                .runtime
                .block_on(api.get(name))
                .map_err(kube_error(format!("reading {what}")))?;
            match deployment_progress(&deployment) {
                Progress::Done => return Ok(()),
                Progress::Failed(why) => {
                    return Err(ExecError::Kubernetes(format!(
                        "{what} did not roll out {image}: {why}"
                    )));
                }
                Progress::Waiting(why) if started.elapsed() >= self.wait => {
                    return Err(ExecError::Kubernetes(format!(
                        "{what} did not roll out {image} within {}s: {why}",
                        self.wait.as_secs()
                    )));
                }
                Progress::Waiting(_) => std::thread::sleep(POLL),
            }
        }
    }
}

impl Executor for KubernetesExecutor {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    /// Merge-patches `spec.selector`: the labels given are set, others (such as `app`) stay.
    fn set_selector(&mut self, service: &str, selector: &Labels) -> Result<(), ExecError> {
        let patch = serde_json::json!({ "spec": { "selector": selector } });
        let api = self.services();
        let params = PatchParams::apply(MANAGER);
        self.runtime
            .block_on(api.patch(service, &params, &Patch::Merge(&patch)))
            .map_err(kube_error(format!(
                "patching Service {}/{service}",
                self.namespace
            )))?;
        // A canary's route: every weight on the backendRef of this pool.
        let backend = backend_name(service, selector);
        self.patch_route(service, &|rules| {
            let backends: Vec<&mut serde_json::Value> = rules
                .as_array_mut()
                .into_iter()
                .flatten()
                .flat_map(|r| r["backendRefs"].as_array_mut().into_iter().flatten())
                .collect();
            if !backends.iter().any(|b| b["name"] == backend.as_str()) {
                return Ok(false);
            }
            let mut changed = false;
            for b in backends {
                let weight = serde_json::json!(if b["name"] == backend.as_str() {
                    100
                } else {
                    0
                });
                changed |= b["weight"] != weight;
                b["weight"] = weight;
            }
            Ok(changed)
        })?;
        Ok(())
    }

    /// Sets the weight of each backendRef named by [`backend_name`]; every
    /// pool must have its backendRef in the route.
    fn set_weights(&mut self, service: &str, pools: &[WeightedPool]) -> Result<(), ExecError> {
        let what = format!("HTTPRoute {}/{service}", self.namespace);
        let wanted: BTreeMap<String, u32> = pools
            .iter()
            .map(|p| (backend_name(service, &p.selector), p.weight))
            .collect();
        let found = self.patch_route(service, &|rules| {
            let mut seen = Vec::new();
            for rule in rules.as_array_mut().into_iter().flatten() {
                for backend in rule["backendRefs"].as_array_mut().into_iter().flatten() {
                    let name = backend["name"].as_str().unwrap_or_default().to_string();
                    if let Some(weight) = wanted.get(&name) {
                        backend["weight"] = serde_json::json!(weight);
                        seen.push(name);
                    }
                }
            }
            match wanted.keys().find(|k| !seen.contains(k)) {
                Some(missing) => Err(ExecError::Kubernetes(format!(
                    "{what} has no backendRef named {missing}"
                ))),
                None => Ok(true),
            }
        })?;
        if !found {
            return Err(ExecError::Kubernetes(format!(
                "{what} not found: a canary needs an HTTPRoute named after the service, with a backendRef per pool ({})",
                wanted.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    fn routing(&mut self) -> Result<BTreeMap<String, String>, ExecError> {
        let api = self.services();
        let list = self
            .runtime
            .block_on(api.list(&kube::api::ListParams::default()))
            .map_err(kube_error(format!(
                "listing Services in {}",
                self.namespace
            )))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|service| {
                let name = service.metadata.name?;
                let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
                Some((
                    name,
                    serde_json::to_string(&selector).expect("labels serialize"),
                ))
            })
            .collect())
    }

    fn image(&mut self, service: &str, to: &str) -> Result<String, ExecError> {
        let what = format!("Deployment {}/{service}", self.namespace);
        let deployment = self
            .runtime
            .block_on(self.deployments().get(service))
            .map_err(kube_error(format!("reading {what}")))?;
        let index = container_for(&deployment, to)
            .map_err(|e| ExecError::Kubernetes(format!("{what}: {e}")))?;
        deployment
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.into_iter().nth(index))
            .and_then(|c| c.image)
            .ok_or_else(|| ExecError::Kubernetes(format!("{what}: its container has no image")))
    }

    /// Patches every Deployment first, so they roll out side by side, then
    /// waits for each.
    fn set_images(&mut self, moves: &[ImageMove]) -> Result<(), ExecError> {
        for image in moves {
            self.patch_image(image)?;
        }
        for image in moves {
            self.await_rollout(&image.service, &image.to)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
