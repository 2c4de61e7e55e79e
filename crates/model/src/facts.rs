//! Facts: what the parsers read out of one file, before the fleet is assembled.
//!
//! A [`Facts`] value is the whole yield of one or more files; it merges by
//! concatenation, so files can be parsed in any order and in parallel.

use crate::diagnostic::{Diagnostic, Provenance};
use crate::image_ref::ImageRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything read from some files: facts plus the diagnostics found on the way.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dockerfiles: Vec<Dockerfile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<TemplateRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<Workload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kube_services: Vec<KubeService>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub catalog: Vec<CatalogEntity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_overrides: Vec<ImageOverride>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Host>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

impl Facts {
    /// Facts holding only one diagnostic: what a file that could not be read yields.
    pub fn from_diagnostic(diagnostic: Diagnostic) -> Facts {
        Facts {
            diagnostics: vec![diagnostic],
            ..Facts::default()
        }
    }

    /// Appends everything in `other`.
    pub fn extend(&mut self, other: Facts) {
        let Facts {
            dockerfiles,
            templates,
            workloads,
            kube_services,
            routes,
            catalog,
            image_overrides,
            hosts,
            diagnostics,
        } = other;
        self.dockerfiles.extend(dockerfiles);
        self.templates.extend(templates);
        self.workloads.extend(workloads);
        self.kube_services.extend(kube_services);
        self.routes.extend(routes);
        self.catalog.extend(catalog);
        self.image_overrides.extend(image_overrides);
        self.hosts.extend(hosts);
        self.diagnostics.extend(diagnostics);
    }
}

/// A Dockerfile: its stages in order. The last stage is the image that ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dockerfile {
    pub path: String,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// The stage that produces the shipped image.
    pub fn final_stage(&self) -> Option<&Stage> {
        self.stages.last()
    }

    /// The external image the shipped image is built on, following `FROM <stage>` chains.
    pub fn final_base(&self) -> Option<&ImageRef> {
        let last = self.final_stage()?;
        match &self.stages[self.final_chain(last)?].base {
            StageBase::Image(image) => Some(image),
            _ => None,
        }
    }

    /// External images used only by builder stages (stages the final one is not built on).
    pub fn builder_images(&self) -> Vec<&ImageRef> {
        let chain_end = self.final_stage().and_then(|last| self.final_chain(last));
        let mut on_chain = vec![false; self.stages.len()];
        if let Some(last) = self.final_stage() {
            let mut stage = last;
            on_chain[stage.index as usize] = true;
            while Some(stage.index as usize) != chain_end {
                let Some(next) = self.parent_stage(stage) else {
                    break;
                };
                on_chain[next.index as usize] = true;
                stage = next;
            }
        }
        self.stages
            .iter()
            .filter(|s| !on_chain.get(s.index as usize).copied().unwrap_or(false))
            .filter_map(|s| match &s.base {
                StageBase::Image(image) => Some(image),
                _ => None,
            })
            .collect()
    }

    /// The index of the stage that ends the `FROM <stage>` chain starting at `stage`.
    fn final_chain<'a>(&'a self, mut stage: &'a Stage) -> Option<usize> {
        // Each hop goes to an earlier stage, so the walk ends within `stages.len()` steps.
        for _ in 0..=self.stages.len() {
            match self.parent_stage(stage) {
                Some(parent) => stage = parent,
                None if matches!(stage.base, StageBase::Stage(_)) => return None,
                None => return Some(stage.index as usize),
            }
        }
        None
    }

    /// The earlier stage `stage` is built `FROM`, if it is built from a stage.
    fn parent_stage<'a>(&'a self, stage: &Stage) -> Option<&'a Stage> {
        let StageBase::Stage(name) = &stage.base else {
            return None;
        };
        self.stages
            .get(..stage.index as usize)?
            .iter()
            .rev()
            .find(|s| s.name.as_deref() == Some(name.as_str()))
    }
}

/// One `FROM` line and what it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// 0-based position among the file's stages.
    pub index: u32,
    /// The `AS name`, lowercased as Docker treats it.
    pub name: Option<String>,
    pub base: StageBase,
    /// `--platform=` as written (may hold an unexpanded `$BUILDPLATFORM`).
    pub platform: Option<String>,
    /// The `FROM` argument as written, before `ARG` substitution.
    pub written: String,
    pub at: Provenance,
}

/// What a stage is built `FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum StageBase {
    Image(ImageRef),
    /// An earlier stage of the same file, by name.
    Stage(String),
    Scratch,
    /// The reference could not be resolved (unset `ARG`, invalid reference); the reason says why.
    Unresolved {
        expanded: String,
        reason: String,
    },
}

/// Which CI mechanism pins a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateKind {
    /// `include: local:` (same repository).
    GitlabLocal,
    /// `include: project: ... ref: ... file: ...`.
    GitlabProject,
    /// `include: remote: https://...`.
    GitlabRemote,
    /// `include: template:` (GitLab's bundled templates).
    GitlabTemplate,
    /// `include: component: host/path/name@version`.
    GitlabComponent,
    /// `jobs.<id>.uses: owner/repo/.github/workflows/f.yml@ref`.
    GithubWorkflow,
    /// `steps[].uses: owner/repo@ref`.
    GithubAction,
}

/// A CI file's reference to a shared template at a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateRef {
    pub kind: TemplateKind,
    /// The repository or project the template lives in (`platform/ci-templates`,
    /// `gitlab.example.com/platform/ci-templates`, `acme/ci-templates`), or the URL or path.
    pub source: String,
    /// The file or component name inside `source`.
    pub file: Option<String>,
    /// The pinned version (git ref, tag or component version); `None` when unpinned.
    pub version: Option<String>,
    /// `inputs:` (GitLab) or `with:` (GitHub), as JSON values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, serde_json::Value>,
    /// The job that uses it (GitHub reusable workflows and actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// What the CI file relies on the template to define besides its inputs
    /// (jobs it extends, needs or overrides, stages, outputs, secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<TemplateUse>,
    pub at: Provenance,
}

/// One thing a CI file relies on a template to define, besides its inputs.
///
/// Static validation checks these against a new template version: a job the
/// app extends that the new version no longer has breaks the app's pipeline
/// just as surely as a removed input does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TemplateUse {
    pub kind: TemplateUseKind,
    /// The job, stage, output or secret relied on.
    pub name: String,
    /// The app's own job that relies on it.
    pub job: String,
    pub at: Provenance,
}

/// How a CI file relies on something a template defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateUseKind {
    /// GitLab `extends:` naming a job the file does not define.
    Extends,
    /// GitLab `needs:` naming a job the file does not define (optional needs excluded).
    Needs,
    /// A GitLab job with no `script`, `trigger` or `extends` of its own: it only
    /// completes (overrides keys of) an included job of the same name.
    Overrides,
    /// A GitLab job's `stage:` when the file declares no `stages:` of its own.
    Stage,
    /// A GitHub `needs.<job>.outputs.<name>` read of a reusable workflow's output.
    Output,
    /// A secret passed explicitly to a GitHub reusable workflow.
    Secret,
    /// `secrets: inherit`: every secret of the caller is passed.
    InheritsSecrets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    Pod,
}

/// Something that runs containers: a Deployment, a CronJob, a bare Pod...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    /// Empty when the cluster is not known from the files.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    /// The workload's own metadata labels.
    pub labels: BTreeMap<String, String>,
    /// The labels its pods carry (what Service selectors match).
    pub pod_labels: BTreeMap<String, String>,
    pub containers: Vec<Container>,
    pub at: Provenance,
}

impl Workload {
    /// The service this workload belongs to: `app.kubernetes.io/name`, else `app`, else its name.
    pub fn service_name(&self) -> &str {
        ["app.kubernetes.io/name", "app"]
            .iter()
            .find_map(|key| self.pod_labels.get(*key).or_else(|| self.labels.get(*key)))
            .map_or(self.name.as_str(), String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    /// The image as written.
    pub image: String,
    /// The parsed image; `None` when it was invalid (a diagnostic says why).
    pub image_ref: Option<ImageRef>,
    pub init: bool,
    pub env: Vec<EnvVar>,
    pub has_resource_limits: bool,
    pub at: Provenance,
}

/// A literal environment variable (`valueFrom` entries carry no value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub at: Provenance,
}

/// A Kubernetes Service: the stable name others call, selecting pods by label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeService {
    pub namespace: String,
    pub name: String,
    pub selector: BTreeMap<String, String>,
    /// `ClusterIP`, `NodePort`, `LoadBalancer`, `ExternalName`.
    pub service_type: String,
    pub ports: Vec<u16>,
    pub at: Provenance,
}

impl KubeService {
    /// Whether the selector picks pods with these labels (an empty selector picks none).
    pub fn selects(&self, pod_labels: &BTreeMap<String, String>) -> bool {
        !self.selector.is_empty()
            && self
                .selector
                .iter()
                .all(|(k, v)| pod_labels.get(k) == Some(v))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RouteKind {
    Ingress,
    HTTPRoute,
    /// A Service of type `LoadBalancer` or `NodePort`: reachable from outside as a whole.
    ExposedService,
}

/// A way into a service from an ingress: host and path, to a Kubernetes Service name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub kind: RouteKind,
    /// The Ingress, HTTPRoute or Service object that declares the route.
    pub name: String,
    pub namespace: String,
    pub host: Option<String>,
    pub path: String,
    /// The Kubernetes Service the route sends traffic to.
    pub backend: String,
    pub public: bool,
    pub at: Provenance,
}

/// A Backstage catalog entity (`catalog-info.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntity {
    /// `Component`, `System`, `Resource`, `API`, ...
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub spec_type: Option<String>,
    pub owner: Option<String>,
    pub lifecycle: Option<String>,
    pub system: Option<String>,
    /// From the `tier` label or annotation, if it was a valid tier.
    pub tier: Option<u8>,
    /// Entity references as written (`component:payments`, `resource:default/orders-db`).
    pub depends_on: Vec<String>,
    pub at: Provenance,
}

/// A kustomization `images:` entry that rewrites the images of the manifests it builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageOverride {
    pub name: String,
    pub new_name: Option<String>,
    pub new_tag: Option<String>,
    pub digest: Option<String>,
    pub at: Provenance,
}

/// A host from the hosts inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub address: Option<String>,
    pub groups: Vec<String>,
    pub at: Provenance,
}
