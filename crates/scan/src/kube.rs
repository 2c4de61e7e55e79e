//! Kubernetes manifests: the workloads and images a fleet runs, the Services
//! that name them, and the routes (Ingress, Gateway API `HTTPRoute`, exposed
//! Services) through which traffic reaches them.
//!
//! One YAML document in, [`Facts`] out. Objects are recognised by API group
//! *and* kind, as the API server does, so a Knative `Service` or a Flux
//! `Kustomization` is not mistaken for the core object of the same name.
//! Unknown kinds yield nothing. Known kinds with a broken shape yield a
//! warning with the line, plus whatever could still be read: a workload whose
//! container lacks a name still reports the image it runs, because image
//! impact is what the fleet graph is for.

use model::{
    Container, Diagnostic, EnvVar, Facts, ImageOverride, ImageRef, KubeService, Provenance, Route,
    RouteKind, Workload, WorkloadKind,
};
use yaml::{Node, Value};

/// Reads one Kubernetes object (or a `List` of them).
pub fn object(path: &str, doc: &Node) -> Facts {
    let mut reader = Reader::new(path);
    reader.object(doc, None);
    reader.facts
}

/// Reads the `images:` of a kustomization file that omits `apiVersion` and
/// `kind`, which kustomize allows; only the file name says what it is.
pub fn kustomization(path: &str, doc: &Node) -> Facts {
    let mut reader = Reader::new(path);
    reader.kustomization(doc);
    reader.facts
}

struct Reader<'a> {
    path: &'a str,
    facts: Facts,
}

/// The API group of an `apiVersion`: `apps/v1` -> `apps`, `v1` -> `` (the core group).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

fn str_at<'n>(node: &'n Node, path: &[&str]) -> Option<&'n str> {
    node.at(path).and_then(Node::as_str)
}

fn namespace_of(doc: &Node) -> String {
    str_at(doc, &["metadata", "namespace"])
        .unwrap_or("default")
        .to_string()
}

fn labels_at(node: Option<&Node>) -> std::collections::BTreeMap<String, String> {
    node.map(Node::string_map).unwrap_or_default()
}

impl<'a> Reader<'a> {
    fn new(path: &'a str) -> Self {
        Reader {
            path,
            facts: Facts::default(),
        }
    }

    fn at(&self, node: &Node) -> Provenance {
        Provenance::new(self.path, node.line)
    }

    fn warn(&mut self, node: &Node, message: impl Into<String>) {
        let at = self.at(node);
        self.facts
            .diagnostics
            .push(Diagnostic::warning_at(&at, message));
    }

    /// `inherited` is the (group, kind) of a typed list such as `DeploymentList`,
    /// whose items the API server returns without `apiVersion` and `kind`.
    fn object(&mut self, doc: &Node, inherited: Option<(&str, &str)>) {
        let kind = doc
            .get("kind")
            .and_then(Node::as_str)
            .or(inherited.map(|(_, kind)| kind))
            .unwrap_or("");
        let group = doc
            .get("apiVersion")
            .and_then(Node::as_str)
            .map(group_of)
            .or(inherited.map(|(group, _)| group))
            .unwrap_or("");
        match (group, kind) {
            ("apps" | "extensions", "Deployment") => self.workload(doc, WorkloadKind::Deployment),
            ("apps" | "extensions", "DaemonSet") => self.workload(doc, WorkloadKind::DaemonSet),
            ("apps", "StatefulSet") => self.workload(doc, WorkloadKind::StatefulSet),
            ("batch", "Job") => self.workload(doc, WorkloadKind::Job),
            ("batch", "CronJob") => self.workload(doc, WorkloadKind::CronJob),
            ("", "Pod") => self.workload(doc, WorkloadKind::Pod),
            ("", "Service") => self.service(doc),
            ("networking.k8s.io" | "extensions", "Ingress") => self.ingress(doc),
            ("gateway.networking.k8s.io", "HTTPRoute") => self.http_route(doc),
            ("kustomize.config.k8s.io", "Kustomization") => self.kustomization(doc),
            // `kind: List` is what kubectl prints; `DeploymentList` and friends are
            // what the API server returns. ReplicaSets are deliberately not
            // workloads: kubectl output lists them beside the Deployments that own
            // them, and counting both would run every image twice.
            (_, list) if list.ends_with("List") => self.list(doc, group, list),
            _ => {}
        }
    }

    fn list(&mut self, doc: &Node, group: &str, kind: &str) {
        let item_kind = &kind[..kind.len() - "List".len()];
        let Some(items) = doc.get("items") else {
            return;
        };
        if items.is_null() {
            return;
        }
        let Some(items) = items.as_seq() else {
            self.warn(items, format!("{kind}: items is not a list"));
            return;
        };
        let inherited = (!item_kind.is_empty()).then_some((group, item_kind));
        for item in items {
            if item.as_map().is_some() {
                self.object(item, inherited);
            } else {
                self.warn(item, format!("{kind}: item is not an object"));
            }
        }
    }

    /// `metadata.name`, or a warning naming what lacks it.
    fn name(&mut self, doc: &Node, kind: &str) -> Option<String> {
        let name = str_at(doc, &["metadata", "name"]).map(str::to_string);
        if name.is_none() {
            self.warn(doc, format!("{kind} has no metadata.name; skipped"));
        }
        name
    }

    fn workload(&mut self, doc: &Node, kind: WorkloadKind) {
        let Some(name) = self.name(doc, &format!("{kind:?}")) else {
            return;
        };
        let what = format!("{kind:?} {name}");
        let template_path: &[&str] = match kind {
            WorkloadKind::Pod => &[],
            WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template"],
            _ => &["spec", "template"],
        };
        let template = doc.at(template_path);
        let pod_labels = labels_at(template.and_then(|t| t.at(&["metadata", "labels"])));
        let mut containers = Vec::new();
        match template
            .and_then(|t| t.get("spec"))
            .filter(|s| !s.is_null())
        {
            Some(spec) => {
                self.containers(spec, "containers", &what, &mut containers);
                self.containers(spec, "initContainers", &what, &mut containers);
            }
            None => {
                let spec_path = [template_path, &["spec"]].concat().join(".");
                self.warn(
                    doc,
                    format!("{what} has no {spec_path}; its containers are unknown"),
                );
            }
        }
        self.facts.workloads.push(Workload {
            kind,
            cluster: String::new(),
            namespace: namespace_of(doc),
            name,
            labels: labels_at(doc.at(&["metadata", "labels"])),
            pod_labels,
            containers,
            at: self.at(doc),
        });
    }

    /// Reads `spec.<key>` (`containers` or `initContainers`) into `out`.
    fn containers(&mut self, spec: &Node, key: &str, what: &str, out: &mut Vec<Container>) {
        let init = key == "initContainers";
        let items = match spec.get(key).filter(|n| !n.is_null()) {
            None if init => return,
            None => {
                self.warn(spec, format!("{what} has no containers"));
                return;
            }
            Some(node) => match node.as_seq() {
                Some(items) => items,
                None => {
                    self.warn(node, format!("{what}: {key} is not a list"));
                    return;
                }
            },
        };
        for item in items {
            if item.as_map().is_none() {
                self.warn(item, format!("{what}: container is not a mapping"));
                continue;
            }
            out.push(self.container(item, init, what));
        }
    }

    fn container(&mut self, item: &Node, init: bool, what: &str) -> Container {
        let name = item.get("name").and_then(Node::as_str);
        if name.is_none() {
            self.warn(item, format!("{what}: container has no name"));
        }
        let name = name.unwrap_or("").to_string();
        let label = if name.is_empty() {
            format!("{what}: unnamed container")
        } else {
            format!("{what}: container {name}")
        };
        let (image, image_ref) = match item.get("image") {
            Some(node) if node.as_str().is_some() => {
                let image = node.as_str().unwrap_or("").to_string();
                let image_ref = match ImageRef::parse(&image) {
                    Ok(image_ref) => Some(image_ref),
                    Err(e) => {
                        self.warn(node, format!("{label}: {e}"));
                        None
                    }
                };
                (image, image_ref)
            }
            _ => {
                self.warn(item, format!("{label} has no image"));
                (String::new(), None)
            }
        };
        let limits = item.at(&["resources", "limits"]);
        let has_resource_limits = ["cpu", "memory"].iter().any(|key| {
            limits
                .and_then(|l| l.get(key))
                .is_some_and(|v| !v.is_null())
        });
        Container {
            env: self.env(item, &label),
            name,
            image,
            image_ref,
            init,
            has_resource_limits,
            at: self.at(item),
        }
    }

    fn env(&mut self, container: &Node, label: &str) -> Vec<EnvVar> {
        let Some(env) = container.get("env").filter(|n| !n.is_null()) else {
            return Vec::new();
        };
        let Some(items) = env.as_seq() else {
            self.warn(env, format!("{label}: env is not a list"));
            return Vec::new();
        };
        let mut vars = Vec::new();
        for item in items {
            let Some(name) = item.get("name").and_then(Node::as_str) else {
                self.warn(item, format!("{label}: env entry has no name"));
                continue;
            };
            let from = item.get("valueFrom").filter(|n| !n.is_null());
            let value = match (from, item.get("value")) {
                (Some(_), _) => None,
                // Kubernetes reads an absent or null value as the empty string.
                (None, None) => Some(String::new()),
                (None, Some(v)) => match &v.value {
                    Value::Scalar { .. } => Some(v.as_str().unwrap_or("").to_string()),
                    _ => {
                        self.warn(v, format!("{label}: env {name}: value is not a string"));
                        None
                    }
                },
            };
            vars.push(EnvVar {
                name: name.to_string(),
                value,
                at: self.at(item),
            });
        }
        vars
    }

    fn service(&mut self, doc: &Node) {
        let Some(name) = self.name(doc, "Service") else {
            return;
        };
        let namespace = namespace_of(doc);
        let spec = doc.get("spec");
        let service_type = spec
            .and_then(|s| s.get("type"))
            .and_then(Node::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let mut ports = Vec::new();
        let port_items = spec.and_then(|s| s.get("ports")).filter(|n| !n.is_null());
        match port_items.map(|n| (n, n.as_seq())) {
            None => {}
            Some((_, Some(items))) => {
                for item in items {
                    let Some(node) = item.get("port") else {
                        self.warn(item, format!("Service {name}: ports entry has no port"));
                        continue;
                    };
                    match node.as_str().and_then(|p| p.parse::<u16>().ok()) {
                        Some(port) => ports.push(port),
                        None => self.warn(
                            node,
                            format!("Service {name}: port {} is not a port number", show(node)),
                        ),
                    }
                }
            }
            Some((node, None)) => self.warn(node, format!("Service {name}: ports is not a list")),
        }
        if matches!(service_type.as_str(), "LoadBalancer" | "NodePort") {
            self.facts.routes.push(Route {
                kind: RouteKind::ExposedService,
                name: name.clone(),
                namespace: namespace.clone(),
                host: None,
                path: "/".to_string(),
                backend: name.clone(),
                public: true,
                at: self.at(doc),
            });
        }
        self.facts.kube_services.push(KubeService {
            namespace,
            name,
            selector: labels_at(spec.and_then(|s| s.get("selector"))),
            service_type,
            ports,
            at: self.at(doc),
        });
    }

    fn ingress(&mut self, doc: &Node) {
        let Some(name) = self.name(doc, "Ingress") else {
            return;
        };
        let namespace = namespace_of(doc);
        let Some(spec) = doc.get("spec").filter(|n| !n.is_null()) else {
            self.warn(doc, format!("Ingress {name} has no spec"));
            return;
        };
        // Internal controllers are conventionally told apart by class name
        // (`nginx-internal`, `internal-alb`); anything else is assumed reachable
        // from outside, the safe side for impact analysis.
        let public = ![
            spec.get("ingressClassName"),
            doc.at(&["metadata", "annotations", "kubernetes.io/ingress.class"]),
        ]
        .into_iter()
        .flatten()
        .filter_map(Node::as_str)
        .any(|class| class.to_ascii_lowercase().contains("internal"));
        let what = format!("Ingress {name}");
        let route = |reader: &mut Self, host: Option<&str>, path: &str, backend: &Node| {
            if let Some(service) = reader.ingress_backend(backend, &what) {
                reader.facts.routes.push(Route {
                    kind: RouteKind::Ingress,
                    name: name.clone(),
                    namespace: namespace.clone(),
                    host: host.map(str::to_string),
                    path: path.to_string(),
                    backend: service,
                    public,
                    at: reader.at(backend),
                });
            }
        };
        // `defaultBackend` in networking.k8s.io/v1, `backend` in the beta APIs.
        if let Some(backend) = spec
            .get("defaultBackend")
            .or_else(|| spec.get("backend"))
            .filter(|n| !n.is_null())
        {
            route(self, None, "/", backend);
        }
        let Some(rules) = spec.get("rules").filter(|n| !n.is_null()) else {
            return;
        };
        let Some(rules) = rules.as_seq() else {
            self.warn(rules, format!("{what}: rules is not a list"));
            return;
        };
        for rule in rules {
            let host = rule.get("host").and_then(Node::as_str);
            let Some(paths) = rule.at(&["http", "paths"]).filter(|n| !n.is_null()) else {
                continue;
            };
            let Some(paths) = paths.as_seq() else {
                self.warn(paths, format!("{what}: http.paths is not a list"));
                continue;
            };
            for item in paths {
                let path = item.get("path").and_then(Node::as_str).unwrap_or("/");
                match item.get("backend").filter(|n| !n.is_null()) {
                    Some(backend) => route(self, host, path, backend),
                    None => self.warn(item, format!("{what}: path {path} has no backend")),
                }
            }
        }
    }

    /// The Service an Ingress backend sends to: `service.name` (v1) or
    /// `serviceName` (beta). `None` for a `resource` backend, which is not a Service.
    fn ingress_backend(&mut self, backend: &Node, what: &str) -> Option<String> {
        let service = str_at(backend, &["service", "name"])
            .or_else(|| str_at(backend, &["serviceName"]))
            .map(str::to_string);
        if service.is_none() && backend.get("resource").is_none() {
            self.warn(backend, format!("{what}: backend names no service"));
        }
        service
    }

    fn http_route(&mut self, doc: &Node) {
        let Some(name) = self.name(doc, "HTTPRoute") else {
            return;
        };
        let what = format!("HTTPRoute {name}");
        let namespace = namespace_of(doc);
        let Some(spec) = doc.get("spec").filter(|n| !n.is_null()) else {
            self.warn(doc, format!("{what} has no spec"));
            return;
        };
        let hostnames = spec.get("hostnames").map(Node::strings).unwrap_or_default();
        let hosts: Vec<Option<&str>> = if hostnames.is_empty() {
            vec![None]
        } else {
            hostnames.iter().map(|h| Some(h.as_str())).collect()
        };
        // Same convention as Ingress classes: a Gateway named `...internal...`
        // serves the inside only.
        let public = !spec
            .get("parentRefs")
            .and_then(Node::as_seq)
            .unwrap_or(&[])
            .iter()
            .filter_map(|parent| str_at(parent, &["name"]))
            .any(|gateway| gateway.to_ascii_lowercase().contains("internal"));
        let Some(rules) = spec.get("rules").filter(|n| !n.is_null()) else {
            return;
        };
        let Some(rules) = rules.as_seq() else {
            self.warn(rules, format!("{what}: rules is not a list"));
            return;
        };
        for rule in rules {
            // A rule without matches matches every request: PathPrefix `/`.
            let mut paths: Vec<&str> = rule
                .get("matches")
                .and_then(Node::as_seq)
                .unwrap_or(&[])
                .iter()
                .map(|m| str_at(m, &["path", "value"]).unwrap_or("/"))
                .collect();
            if paths.is_empty() {
                paths.push("/");
            }
            let Some(backends) = rule.get("backendRefs").filter(|n| !n.is_null()) else {
                continue;
            };
            let Some(backends) = backends.as_seq() else {
                self.warn(backends, format!("{what}: backendRefs is not a list"));
                continue;
            };
            // Matches that differ only in headers or methods lead to the same
            // route; one is enough.
            let first = self.facts.routes.len();
            for backend in backends {
                let kind = str_at(backend, &["kind"]).unwrap_or("Service");
                let group = str_at(backend, &["group"]).unwrap_or("");
                if kind != "Service" || !group.is_empty() {
                    continue;
                }
                let Some(service) = str_at(backend, &["name"]) else {
                    self.warn(backend, format!("{what}: backendRef has no name"));
                    continue;
                };
                for host in &hosts {
                    for path in &paths {
                        let route = Route {
                            kind: RouteKind::HTTPRoute,
                            name: name.clone(),
                            namespace: namespace.clone(),
                            host: host.map(str::to_string),
                            path: path.to_string(),
                            backend: service.to_string(),
                            public,
                            at: self.at(backend),
                        };
                        if !self.facts.routes[first..].contains(&route) {
                            self.facts.routes.push(route);
                        }
                    }
                }
            }
        }
    }

    fn kustomization(&mut self, doc: &Node) {
        let Some(images) = doc.get("images").filter(|n| !n.is_null()) else {
            return;
        };
        let Some(images) = images.as_seq() else {
            self.warn(images, "kustomization: images is not a list");
            return;
        };
        for item in images {
            let Some(name) = item.get("name").and_then(Node::as_str) else {
                self.warn(item, "kustomization: image entry has no name");
                continue;
            };
            let field = |key: &str| item.get(key).and_then(Node::string);
            self.facts.image_overrides.push(ImageOverride {
                name: name.to_string(),
                new_name: field("newName"),
                new_tag: field("newTag"),
                digest: field("digest"),
                at: self.at(item),
            });
        }
    }
}

/// A node as it reads in a message: a scalar's text, else its shape.
fn show(node: &Node) -> String {
    match &node.value {
        Value::Scalar { text, .. } => format!("{text:?}"),
        Value::Seq(_) => "(a list)".to_string(),
        Value::Map(_) => "(a mapping)".to_string(),
    }
}

#[cfg(test)]
mod tests;
