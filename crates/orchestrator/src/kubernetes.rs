//! The Kubernetes executor, through kube-rs: a selector change is a JSON
//! merge patch of the Service's `spec.selector`; a weights change patches the
//! `weight` of the backendRefs of the HTTPRoute named after the service
//! (Gateway API), guarded by the route's `resourceVersion` so a concurrent
//! edit makes it fail instead of being overwritten.
//!
//! Two ways in: a plain `http://` URL (`kubectl proxy`, an in-cluster
//! sidecar), or a kubeconfig context (`--kubeconfig`, `--context`): HTTPS with
//! the cluster's CA, and a bearer token, a client certificate or an exec
//! credential plugin, as `kubectl` uses them (`kubeconfig.rs`, `kubernetes/tls.rs`).

mod tls;

use crate::executor::{ExecError, Executor, Labels, WeightedPool};
use crate::gitops::backend_name;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use std::collections::BTreeMap;

/// The `--kubeconfig` value that means "the service account of the pod this runs in".
pub const IN_CLUSTER: &str = "in-cluster";

/// The field manager recorded on every change.
const MANAGER: &str = "bulkhead-rollout";

pub struct KubernetesExecutor {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    namespace: String,
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
        let uri: hyper::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = namespace.to_string();
        if let Some(token) = token {
            // AuthInfo keeps the token in a secret type; building it from JSON
            // avoids a dependency on that type's crate.
            config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
                .map_err(|e| bad(format!("token: {e}")))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("starting the client runtime: {e}")))?;
        let client = {
            let _guard = runtime.enter();
            kube::Client::try_from(config).map_err(|e| bad(e.to_string()))?
        };
        Ok(KubernetesExecutor {
            runtime,
            client,
            namespace: namespace.to_string(),
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
        let bad = |detail: String| ExecError::Refused {
            target: path.display().to_string(),
            detail,
        };
        let read = |file: &std::path::Path| std::fs::read(file).map_err(|e| e.to_string());
        let cluster = if path == std::path::Path::new(IN_CLUSTER) {
            let env = |name: &str| std::env::var(name).ok();
            crate::kubeconfig::in_cluster(
                &env,
                std::path::Path::new(crate::kubeconfig::SERVICE_ACCOUNT),
                &read,
            )
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| bad(format!("reading: {e}")))?;
            crate::kubeconfig::resolve(path, &text, context, &read)
        }
        .map_err(|e| bad(e.to_string()))?;
        let namespace = namespace
            .map(str::to_string)
            .or_else(|| cluster.namespace.clone())
            .unwrap_or_else(|| "default".to_string());
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let token = match &cluster.auth {
            crate::kubeconfig::Auth::Token(token) => Some(token.clone()),
            crate::kubeconfig::Auth::Exec { command, args, env } => {
                Some(crate::kubeconfig::exec_token(command, args, env, dir).map_err(bad)?)
            }
            crate::kubeconfig::Auth::None | crate::kubeconfig::Auth::ClientCertificate { .. } => {
                None
            }
        };
        if cluster.server.starts_with("http://") {
            return KubernetesExecutor::new(&cluster.server, &namespace, token);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("starting the client runtime: {e}")))?;
        let client = {
            let _guard = runtime.enter();
            kube::Client::new(tls::api(&cluster, token).map_err(bad)?, namespace.clone())
        };
        Ok(KubernetesExecutor {
            runtime,
            client,
            namespace,
        })
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn routes(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &http_route())
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
        Ok(())
    }

    /// Sets the weight of each backendRef named by [`backend_name`]; every
    /// pool must have its backendRef in the route.
    fn set_weights(&mut self, service: &str, pools: &[WeightedPool]) -> Result<(), ExecError> {
        let what = format!("HTTPRoute {}/{service}", self.namespace);
        let api = self.routes();
        let route = self
            .runtime
            .block_on(api.get(service))
            .map_err(kube_error(format!("reading {what}")))?;
        let wanted: BTreeMap<String, u32> = pools
            .iter()
            .map(|p| (backend_name(service, &p.selector), p.weight))
            .collect();
        let mut rules = route.data["spec"]["rules"].clone();
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
        if let Some(missing) = wanted.keys().find(|k| !seen.contains(k)) {
            return Err(ExecError::Kubernetes(format!(
                "{what} has no backendRef named {missing}"
            )));
        }
        // A merge patch replaces lists whole: send every rule, guarded by the
        // version read, so a concurrent edit is refused rather than lost.
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": route.metadata.resource_version },
            "spec": { "rules": rules },
        });
        self.runtime
            .block_on(api.patch(service, &PatchParams::apply(MANAGER), &Patch::Merge(&patch)))
            .map_err(kube_error(format!("patching {what}")))?;
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
}

#[cfg(test)]
mod tests;
