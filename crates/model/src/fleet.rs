//! The assembled fleet graph: services with their owners, tiers, dependencies,
//! images, base images, template pins and routes, built from parsed [`Facts`].
//!
//! [`assemble`] is pure: it resolves names (Kubernetes Service names to the
//! services whose pods they select, catalog entity references to services,
//! env values such as `payments:8080` to the service they address) and records
//! a diagnostic for every reference it cannot resolve instead of dropping it.

use crate::diagnostic::{Diagnostic, Provenance};
use crate::facts::{Dockerfile, Facts, Host, ImageOverride, Route, TemplateRef, Workload};
use crate::image_ref::ImageRef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

/// The team that owns a service (`team-payments`; Backstage's `group:` prefix removed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Owner(pub String);

impl Owner {
    /// Normalises a Backstage owner reference: `group:default/team-a` -> `team-a`.
    pub fn from_entity_ref(reference: &str) -> Owner {
        let name = reference
            .split_once(':')
            .map_or(reference, |(_, rest)| rest);
        Owner(name.rsplit('/').next().unwrap_or(name).to_string())
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Business criticality: 1 is the most critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tier(pub u8);

impl Tier {
    /// Reads `1`, `tier1`, `tier-1` or `t1`; tiers run from 1 to 9.
    pub fn parse(s: &str) -> Option<Tier> {
        let s = s.trim().to_ascii_lowercase();
        let digits = s
            .strip_prefix("tier")
            .or_else(|| s.strip_prefix('t'))
            .unwrap_or(&s)
            .trim_start_matches(['-', '_', ' ']);
        match digits.parse::<u8>() {
            Ok(n @ 1..=9) => Some(Tier(n)),
            _ => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A source repository (a git repository, or the fleet root when it is none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Repo {
    /// The folder, relative to the fleet root (`""` for the root itself).
    pub path: String,
    pub git: bool,
    /// The commit checked out, when it is a git repository.
    pub head: Option<String>,
    /// The URL of its `origin` remote (else its first remote), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

impl Repo {
    /// The repository's name on its remote: the URL's last path component
    /// without `.git` (`git@gitlab.acme:shop/orders-service.git` -> `orders-service`).
    pub fn remote_name(&self) -> Option<&str> {
        let url = self.remote.as_deref()?.trim().trim_end_matches('/');
        let url = url.strip_suffix(".git").unwrap_or(url);
        let name = url.rsplit(['/', ':']).next()?;
        (!name.is_empty() && !name.starts_with('.')).then_some(name)
    }
}

/// How a dependency was learned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DependencyVia {
    /// The catalog's `spec.dependsOn`.
    Catalog { reference: String },
    /// A container's environment variable whose value addresses the service.
    Env { variable: String, value: String },
}

/// One dependency edge with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dependency {
    /// The service depended on (or the unresolved name).
    pub target: String,
    pub via: DependencyVia,
    pub at: Provenance,
}

/// A service: the unit of ownership, deployment and rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// The repository folder that holds its catalog entry or manifests.
    pub repo: Option<String>,
    pub owner: Option<Owner>,
    pub tier: Option<Tier>,
    pub system: Option<String>,
    pub lifecycle: Option<String>,
    /// Names of the services it calls, sorted.
    pub depends_on: Vec<String>,
    /// Every piece of evidence for `depends_on`.
    pub dependencies: Vec<Dependency>,
    /// References to services that do not exist in the fleet.
    pub unresolved_dependencies: Vec<Dependency>,
    /// Images its workloads run (after kustomize overrides), sorted.
    pub images: Vec<ImageRef>,
    /// Final-stage `FROM` images of its Dockerfiles, with `ARG`s resolved.
    pub base_images: Vec<ImageRef>,
    /// Images used only by builder stages.
    pub builder_images: Vec<ImageRef>,
    pub templates: Vec<TemplateRef>,
    /// `namespace/name` of its workloads.
    pub workloads: Vec<String>,
    /// Kubernetes Service names that select its pods.
    pub kube_services: Vec<String>,
    pub routes: Vec<Route>,
    /// Where the service is declared (catalog entry, workloads).
    pub declared_at: Vec<Provenance>,
}

impl Service {
    pub fn public_routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(|r| r.public)
    }
}

/// An image and the image it is built on: one step of a lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `registry/repository`, without tag or digest.
    pub name: String,
    pub base: ImageRef,
    /// The Dockerfile that builds it.
    pub at: Provenance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    DependsOn,
    Pins,
    From,
    RoutesTo,
    Runs,
}

/// A typed edge of the fleet graph between two node ids such as `service:orders`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
    pub at: Provenance,
}

/// The whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    pub repos: Vec<Repo>,
    /// Sorted by name.
    pub services: Vec<Service>,
    pub workloads: Vec<Workload>,
    pub dockerfiles: Vec<Dockerfile>,
    pub images: Vec<Image>,
    pub routes: Vec<Route>,
    pub hosts: Vec<Host>,
    /// Sorted by path and line.
    pub diagnostics: Vec<Diagnostic>,
}

impl Fleet {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.services[i])
    }

    /// For each service, the services that call it directly.
    pub fn callers(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut callers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for service in &self.services {
            for dep in &service.depends_on {
                callers
                    .entry(dep.as_str())
                    .or_default()
                    .insert(service.name.as_str());
            }
        }
        callers
    }

    /// Every service that calls one of `changed`, directly or through others, with
    /// its distance (1 = direct caller) and the service it reaches the change through.
    pub fn transitive_callers<'a>(
        &'a self,
        changed: &[&'a str],
    ) -> BTreeMap<&'a str, (u32, &'a str)> {
        let callers = self.callers();
        let mut reached: BTreeMap<&str, (u32, &str)> = BTreeMap::new();
        let mut queue: VecDeque<(&str, u32)> = changed.iter().map(|c| (*c, 0)).collect();
        let changed: BTreeSet<&str> = changed.iter().copied().collect();
        while let Some((name, distance)) = queue.pop_front() {
            for caller in callers.get(name).into_iter().flatten() {
                if changed.contains(caller) || reached.contains_key(caller) {
                    continue;
                }
                reached.insert(caller, (distance + 1, name));
                queue.push_back((caller, distance + 1));
            }
        }
        reached
    }

    /// The graph's edges, derived from the services, workloads and images.
    pub fn edges(&self) -> Vec<Edge> {
        let mut edges = Vec::new();
        for service in &self.services {
            let node = format!("service:{}", service.name);
            for dep in &service.dependencies {
                edges.push(Edge {
                    from: node.clone(),
                    to: format!("service:{}", dep.target),
                    kind: EdgeKind::DependsOn,
                    at: dep.at.clone(),
                });
            }
            for template in &service.templates {
                let version = template.version.as_deref().unwrap_or("unpinned");
                edges.push(Edge {
                    from: format!("repo:{}", service.repo.as_deref().unwrap_or("")),
                    to: format!("template:{}@{version}", template.source),
                    kind: EdgeKind::Pins,
                    at: template.at.clone(),
                });
            }
            for route in &service.routes {
                edges.push(Edge {
                    from: format!(
                        "route:{}{}",
                        route.host.as_deref().unwrap_or("*"),
                        route.path
                    ),
                    to: node.clone(),
                    kind: EdgeKind::RoutesTo,
                    at: route.at.clone(),
                });
            }
        }
        for workload in &self.workloads {
            for container in &workload.containers {
                if let Some(image) = &container.image_ref {
                    edges.push(Edge {
                        from: format!("workload:{}/{}", workload.namespace, workload.name),
                        to: format!("image:{image}"),
                        kind: EdgeKind::Runs,
                        at: container.at.clone(),
                    });
                }
            }
        }
        for image in &self.images {
            edges.push(Edge {
                from: format!("image:{}", image.name),
                to: format!("image:{}", image.base),
                kind: EdgeKind::From,
                at: image.at.clone(),
            });
        }
        edges.sort();
        edges.dedup();
        edges
    }
}

/// What [`assemble`] needs besides the parsed facts.
#[derive(Debug, Clone, Default)]
pub struct AssembleInput {
    pub facts: Facts,
    pub repos: Vec<Repo>,
    /// Folders holding the fleet's shared artefacts (the CI templates and base
    /// images repositories): their Dockerfiles and CI files make no app.
    pub shared: Vec<String>,
}

/// Builds the fleet graph from facts. Never fails: what cannot be resolved becomes a diagnostic.
pub fn assemble(input: AssembleInput) -> Fleet {
    let AssembleInput {
        facts,
        mut repos,
        shared,
    } = input;
    repos.sort();
    // Maps only looked up, never walked in order, are hashed: at 10,000 services a
    // lookup by path costs one hash where a B-tree compared a dozen long paths.
    let repo_dirs: HashMap<String, ()> = repos.iter().map(|r| (r.path.clone(), ())).collect();
    let mut diagnostics = facts.diagnostics;
    // Boxed: a map node shifts its values on every insert, and a service is large.
    let mut services: BTreeMap<String, Box<Service>> = BTreeMap::new();
    // Where each service lives: the folder its CI files and Dockerfiles are looked up in.
    let mut homes: HashMap<String, BTreeSet<String>> = HashMap::new();

    for entity in facts
        .catalog
        .iter()
        .filter(|e| e.kind.eq_ignore_ascii_case("component"))
    {
        let service = services.entry(entity.name.clone()).or_default();
        service.name = entity.name.clone();
        service.owner = service
            .owner
            .take()
            .or_else(|| entity.owner.as_deref().map(Owner::from_entity_ref));
        service.tier = service.tier.or(entity.tier.map(Tier));
        service.system = service.system.take().or_else(|| entity.system.clone());
        service.lifecycle = service
            .lifecycle
            .take()
            .or_else(|| entity.lifecycle.clone());
        service.declared_at.push(entity.at.clone());
        homes
            .entry(parent_dir(&entity.at.path).to_string())
            .or_default()
            .insert(entity.name.clone());
    }

    let workloads = apply_image_overrides(facts.workloads, &facts.image_overrides);
    let has_catalog: HashSet<String> = services.keys().cloned().collect();
    for workload in &workloads {
        let name = workload.service_name().to_string();
        let service = services.entry(name.clone()).or_default();
        service.name = name.clone();
        service.declared_at.push(workload.at.clone());
        service
            .workloads
            .push(format!("{}/{}", workload.namespace, workload.name));
        if service.tier.is_none() {
            service.tier = workload.labels.get("tier").and_then(|t| Tier::parse(t));
        }
        for container in &workload.containers {
            if let Some(image) = &container.image_ref {
                service.images.push(image.clone());
            }
        }
        if !has_catalog.contains(&name) {
            let home = deepest(&repo_dirs, &workload.at.path).map_or_else(
                || parent_dir(&workload.at.path).to_string(),
                |(dir, _)| dir.to_string(),
            );
            homes.entry(home).or_default().insert(name);
        }
    }
    let remote_names: BTreeMap<&str, &str> = repos
        .iter()
        .filter_map(|r| Some((r.path.as_str(), r.remote_name()?)))
        .collect();
    infer_apps(
        &mut services,
        &mut homes,
        &Folders {
            repos: &repo_dirs,
            remote_names: &remote_names,
            shared: &shared,
        },
        &facts.dockerfiles,
        &facts.templates,
    );
    for service in services.values_mut() {
        service.repo = service
            .declared_at
            .first()
            .and_then(|at| deepest(&repo_dirs, &at.path))
            .map(|(dir, _)| dir.to_string());
    }

    // Names by which a service can be called: its own name and every Kubernetes
    // Service that selects its pods.
    let mut callable: HashMap<String, String> =
        services.keys().map(|n| (n.clone(), n.clone())).collect();
    let namespaces: BTreeSet<&str> = workloads.iter().map(|w| w.namespace.as_str()).collect();
    // Workloads by (namespace, pod label, value): a selector's candidates are the
    // workloads carrying its first label, which keeps matching linear in fleet size.
    let mut by_label: BTreeMap<(&str, &str, &str), Vec<&Workload>> = BTreeMap::new();
    for w in &workloads {
        for (k, v) in &w.pod_labels {
            by_label
                .entry((w.namespace.as_str(), k.as_str(), v.as_str()))
                .or_default()
                .push(w);
        }
    }
    for kube_service in &facts.kube_services {
        let candidates = kube_service.selector.iter().next().and_then(|(k, v)| {
            by_label.get(&(kube_service.namespace.as_str(), k.as_str(), v.as_str()))
        });
        let targets: BTreeSet<&str> = candidates
            .into_iter()
            .flatten()
            .filter(|w| kube_service.selects(&w.pod_labels))
            .map(|w| w.service_name())
            .collect();
        match targets.len() {
            1 => {
                let target = targets.into_iter().next().unwrap_or_default().to_string();
                if let Some(service) = services.get_mut(&target) {
                    service.kube_services.push(kube_service.name.clone());
                }
                callable.insert(kube_service.name.clone(), target);
            }
            0 if services.contains_key(&kube_service.name) => {}
            0 => diagnostics.push(Diagnostic::warning_at(
                &kube_service.at,
                format!("Service {} selects no workload in the fleet", kube_service.name),
            )),
            _ => diagnostics.push(Diagnostic::warning_at(
                &kube_service.at,
                format!(
                    "Service {} selects pods of several services ({}); calls to it are not attributed",
                    kube_service.name,
                    targets.into_iter().collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    for entity in facts
        .catalog
        .iter()
        .filter(|e| e.kind.eq_ignore_ascii_case("component"))
    {
        for reference in &entity.depends_on {
            let target = entity_ref_name(reference);
            let dep = |target: &str| Dependency {
                target: target.to_string(),
                via: DependencyVia::Catalog {
                    reference: reference.clone(),
                },
                at: entity.at.clone(),
            };
            let service = services
                .get_mut(&entity.name)
                .expect("catalog components were inserted above");
            match callable.get(target) {
                Some(resolved) => service.dependencies.push(dep(resolved)),
                None => {
                    diagnostics.push(Diagnostic::warning_at(
                        &entity.at,
                        format!(
                            "{} dependsOn {reference}, which is not a service in the fleet",
                            entity.name
                        ),
                    ));
                    service.unresolved_dependencies.push(dep(target));
                }
            }
        }
    }

    for workload in &workloads {
        let owner = workload.service_name().to_string();
        for env in workload.containers.iter().flat_map(|c| &c.env) {
            let Some(value) = &env.value else { continue };
            let Some(host) = service_host(value, &namespaces) else {
                continue;
            };
            let dep = |target: &str| Dependency {
                target: target.to_string(),
                via: DependencyVia::Env {
                    variable: env.name.clone(),
                    value: value.clone(),
                },
                at: env.at.clone(),
            };
            let service = services
                .get_mut(&owner)
                .expect("workload services were inserted above");
            match callable.get(host) {
                Some(resolved) if *resolved == owner => {}
                Some(resolved) => service.dependencies.push(dep(resolved)),
                None => {
                    diagnostics.push(Diagnostic::warning_at(
                        &env.at,
                        format!(
                            "{}={value} addresses service {host}, which is not in the fleet",
                            env.name
                        ),
                    ));
                    service.unresolved_dependencies.push(dep(host));
                }
            }
        }
    }

    let images = attach_build_facts(&mut services, &homes, &facts.dockerfiles, &facts.templates);

    for route in &facts.routes {
        match callable.get(&route.backend) {
            Some(target) => {
                if let Some(service) = services.get_mut(target) {
                    service.routes.push(route.clone());
                }
            }
            None => diagnostics.push(Diagnostic::warning_at(
                &route.at,
                format!(
                    "{} {} routes to Service {}, which selects no service in the fleet",
                    kind_name(route),
                    route.name,
                    route.backend
                ),
            )),
        }
    }

    for service in services.values_mut() {
        service.dependencies.sort();
        service
            .dependencies
            .dedup_by(|a, b| a.target == b.target && a.via == b.via);
        service.unresolved_dependencies.sort();
        service
            .unresolved_dependencies
            .dedup_by(|a, b| a.target == b.target);
        service.depends_on = service
            .dependencies
            .iter()
            .map(|d| d.target.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for list in [
            &mut service.images,
            &mut service.base_images,
            &mut service.builder_images,
        ] {
            list.sort();
            list.dedup();
        }
        service.kube_services.sort();
        service.kube_services.dedup();
        service.workloads.sort();
        service.workloads.dedup();
        service.declared_at.sort();
        service.declared_at.dedup();
    }

    diagnostics.sort();
    diagnostics.dedup();
    let mut routes = facts.routes;
    routes.sort_by(|a, b| a.at.cmp(&b.at));
    Fleet {
        repos,
        services: services.into_values().map(|s| *s).collect(),
        workloads,
        dockerfiles: facts.dockerfiles,
        images,
        routes,
        hosts: facts.hosts,
        diagnostics,
    }
}

/// The folders [`infer_apps`] reads: repositories, their remotes' names, and
/// the shared repositories that make no app.
struct Folders<'a> {
    repos: &'a HashMap<String, ()>,
    remote_names: &'a BTreeMap<&'a str, &'a str>,
    shared: &'a [String],
}

/// CI template inputs that name the image an app builds.
const IMAGE_INPUTS: &[&str] = &["image", "image_name", "image-name", "IMAGE", "IMAGE_NAME"];

/// Makes an app of every folder with a Dockerfile or a CI template pin that
/// no catalog entry or manifest claims: many fleets have neither. The folder
/// is the deepest repository holding the file, or, in the fleet root's own
/// repository (a monorepo, or a plain folder), the file's top-level folder.
/// The app is named after its repository's remote (`.../orders-service.git`),
/// else after the folder.
///
/// Manifests may live elsewhere (a GitOps repository) and declare the
/// service already. The folder becomes that service's home, instead of a new
/// app, when the service has the app's name, or runs an image the app builds:
/// the image its CI template inputs name (`image:`, `image_name:`), else, when
/// its CI names none, an image whose last path component is the app's name.
fn infer_apps(
    services: &mut BTreeMap<String, Box<Service>>,
    homes: &mut HashMap<String, BTreeSet<String>>,
    folders: &Folders<'_>,
    dockerfiles: &[Dockerfile],
    templates: &[TemplateRef],
) {
    let files = dockerfiles
        .iter()
        .map(|d| (Provenance::new(&d.path, 1), None))
        .chain(templates.iter().map(|t| (t.at.clone(), Some(t))));
    // Each app folder: where it was found, and the images its CI names.
    let mut found: BTreeMap<String, (Provenance, BTreeSet<String>)> = BTreeMap::new();
    for (at, template) in files {
        if deepest(homes, &at.path).is_some() {
            continue;
        }
        let folder = match deepest(folders.repos, &at.path) {
            Some((dir, _)) if !dir.is_empty() => dir,
            _ => match at.path.split_once('/') {
                Some((top, _)) => top,
                None => continue,
            },
        };
        let name = folder.rsplit('/').next().unwrap_or(folder);
        let is_shared = folders
            .shared
            .iter()
            .any(|s| s.trim_end_matches('/') == folder);
        if name.starts_with('.') || is_shared {
            continue;
        }
        let entry = found
            .entry(folder.to_string())
            .or_insert_with(|| (at, BTreeSet::new()));
        let named = template
            .into_iter()
            .flat_map(|t| IMAGE_INPUTS.iter().filter_map(|k| t.inputs.get(*k)))
            .filter_map(|v| ImageRef::parse(v.as_str()?).ok());
        entry.1.extend(named.map(|i| i.name()));
    }
    for (folder, (at, built)) in found {
        let name = folders
            .remote_names
            .get(folder.as_str())
            .map_or_else(|| folder.rsplit('/').next().unwrap_or(&folder), |n| *n)
            .to_string();
        let runs_built = |service: &Service| {
            service.images.iter().any(|i| {
                if built.is_empty() {
                    i.repository().rsplit('/').next() == Some(name.as_str())
                } else {
                    built.contains(&i.name())
                }
            })
        };
        let joined: Vec<String> = if services.contains_key(&name) {
            vec![name.clone()]
        } else {
            services
                .values()
                .filter(|s| runs_built(s))
                .map(|s| s.name.clone())
                .collect()
        };
        if joined.is_empty() {
            let service = services.entry(name.clone()).or_default();
            service.name = name.clone();
            service.declared_at.push(at);
            homes.entry(folder).or_default().insert(name);
        } else {
            homes.entry(folder).or_default().extend(joined);
        }
    }
}

fn kind_name(route: &Route) -> &'static str {
    match route.kind {
        crate::facts::RouteKind::Ingress => "Ingress",
        crate::facts::RouteKind::HTTPRoute => "HTTPRoute",
        crate::facts::RouteKind::ExposedService => "Service",
    }
}

/// Gives each Dockerfile and CI template pin to the services whose home folder is
/// the deepest one containing the file, and returns the image lineage it implies.
fn attach_build_facts(
    services: &mut BTreeMap<String, Box<Service>>,
    homes: &HashMap<String, BTreeSet<String>>,
    dockerfiles: &[Dockerfile],
    templates: &[TemplateRef],
) -> Vec<Image> {
    let owners_of = |path: &str| deepest(homes, path).map(|(_, names)| names);
    let mut images = Vec::new();
    for dockerfile in dockerfiles {
        let Some(owners) = owners_of(&dockerfile.path) else {
            continue;
        };
        let base = dockerfile.final_base();
        for name in owners {
            let Some(service) = services.get_mut(name) else {
                continue;
            };
            if let Some(base) = base {
                service.base_images.push(base.clone());
                // The service's own images are the ones this Dockerfile builds.
                for image in &service.images {
                    images.push(Image {
                        name: image.name(),
                        base: base.clone(),
                        at: dockerfile
                            .final_stage()
                            .map_or_else(|| Provenance::new(&dockerfile.path, 1), |s| s.at.clone()),
                    });
                }
            }
            service
                .builder_images
                .extend(dockerfile.builder_images().into_iter().cloned());
        }
    }
    for template in templates {
        let Some(owners) = owners_of(&template.at.path) else {
            continue;
        };
        for name in owners {
            if let Some(service) = services.get_mut(name) {
                service.templates.push(template.clone());
            }
        }
    }
    images.sort_by(|a, b| (&a.name, &a.at).cmp(&(&b.name, &b.at)));
    images.dedup();
    images
}

/// Applies kustomization `images:` overrides to the workloads in the kustomization's folder tree.
fn apply_image_overrides(
    mut workloads: Vec<Workload>,
    overrides: &[ImageOverride],
) -> Vec<Workload> {
    if overrides.is_empty() {
        return workloads;
    }
    // Overrides by the folder of their kustomization, each with its image name parsed once.
    let mut by_dir: BTreeMap<String, Vec<(&ImageOverride, Option<String>)>> = BTreeMap::new();
    for o in overrides {
        let name = ImageRef::parse(&o.name).ok().map(|n| n.name());
        by_dir
            .entry(parent_dir(&o.at.path).to_string())
            .or_default()
            .push((o, name));
    }
    for workload in &mut workloads {
        let in_scope: Vec<&(&ImageOverride, Option<String>)> = ancestors(&workload.at.path)
            .filter_map(|dir| by_dir.get(dir))
            .flatten()
            .collect();
        if in_scope.is_empty() {
            continue;
        }
        for container in &mut workload.containers {
            let Some(image) = &container.image_ref else {
                continue;
            };
            let Some((o, _)) = in_scope.iter().find(|(o, name)| {
                name.as_deref() == Some(image.name().as_str()) || o.name == image.repository()
            }) else {
                continue;
            };
            let mut written = o.new_name.clone().unwrap_or_else(|| image.name());
            match (o.new_tag.as_deref(), image.tag()) {
                (Some(tag), _) | (None, Some(tag)) => {
                    written.push(':');
                    written.push_str(tag);
                }
                (None, None) => {}
            }
            if let Some(digest) = o.digest.as_ref().map(ToString::to_string).or_else(|| {
                // A new tag without a digest drops the old digest, as kustomize does.
                if o.new_tag.is_some() {
                    None
                } else {
                    image.digest().map(ToString::to_string)
                }
            }) {
                written.push('@');
                written.push_str(&digest);
            }
            if let Ok(image) = ImageRef::parse(&written) {
                container.image = written;
                container.image_ref = Some(image);
            }
        }
    }
    workloads
}

/// The service name an env value addresses, if it has the shape of an in-cluster address:
/// `name:port`, `scheme://name[:port][/path]`, or `name[.ns][.svc[.cluster.local]][:port]`.
pub fn service_host<'v>(value: &'v str, namespaces: &BTreeSet<&str>) -> Option<&'v str> {
    let value = value.trim();
    let (authority, has_scheme) = match value.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+') =>
        {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            (authority.rsplit('@').next().unwrap_or(authority), true)
        }
        Some(_) => return None,
        None => (value, false),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if port.is_some_and(|port| port.parse::<u16>().map_or(true, |p| p == 0)) {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let is_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.starts_with(|c: char| c.is_ascii_lowercase())
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !labels.iter().all(|l| is_label(l)) || labels[0] == "localhost" {
        return None;
    }
    let in_cluster = match labels.as_slice() {
        [_] => has_scheme || port.is_some(),
        [_, ns] => namespaces.contains(ns) && (has_scheme || port.is_some()),
        [_, _, "svc"] | [_, _, "svc", "cluster", "local"] => true,
        _ => false,
    };
    in_cluster.then_some(labels[0])
}

fn entity_ref_name(reference: &str) -> &str {
    let name = reference
        .split_once(':')
        .map_or(reference, |(_, rest)| rest);
    name.rsplit('/').next().unwrap_or(name)
}

/// The deepest folder of `map` that contains `path`, with its value.
fn deepest<'m, T>(map: &'m HashMap<String, T>, path: &str) -> Option<(&'m str, &'m T)> {
    ancestors(path)
        .find_map(|dir| map.get_key_value(dir))
        .map(|(k, v)| (k.as_str(), v))
}

/// The folders containing `path`, deepest first, ending with the fleet root `""`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(parent_dir(path));
    std::iter::from_fn(move || {
        let dir = next?;
        next = (!dir.is_empty()).then(|| parent_dir(dir));
        Some(dir)
    })
}

fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

#[cfg(test)]
mod tests;
