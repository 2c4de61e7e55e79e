//! The ground truth: every fact the generator planted, in the shape written to
//! `ground-truth.json`. Field order is declaration order and maps are sorted, so the JSON is
//! stable byte for byte.

use std::collections::BTreeMap;

use serde::Serialize;

/// Everything a scanner or impact analysis should find in the generated fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroundTruth {
    pub seed: u64,
    pub services_count: usize,
    /// Sorted by name.
    pub services: Vec<ServiceTruth>,
    /// Image references (final-stage base FROMs and workload images) that float on `latest`:
    /// an explicit `:latest` tag or no tag at all. Sorted, unique.
    pub latest_images: Vec<String>,
    /// Image references (final-stage base FROMs and workload images) not pinned by digest.
    /// Builder-stage toolchain images are not counted. Sorted, unique.
    pub unpinned_images: Vec<String>,
    /// Build-template pins per version, normalised to `vX.Y.Z` (component includes write the
    /// version without the `v`).
    pub template_pins: BTreeMap<String, usize>,
    /// Every tag of the ci-templates repo, in release order.
    pub template_tags: Vec<String>,
    /// The entries of `base-images/images.json`.
    pub base_images: Vec<BaseImage>,
    pub critical_cve: CriticalCve,
    /// Host names from `inventory/hosts.yaml`.
    pub hosts: Vec<String>,
}

/// What was planted in one service repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceTruth {
    pub name: String,
    /// Repo path relative to the fleet root.
    pub repo: String,
    pub language: Language,
    pub layer: Layer,
    /// The Backstage group name, without the `group:` prefix.
    pub owner: String,
    pub tier: u8,
    /// Whether the tier is a `tier` label or a `bulkhead.io/tier` annotation.
    pub tier_source: TierSource,
    /// Namespace of the Deployment and Service.
    pub namespace: String,
    pub system: String,
    /// Resolved dependencies (catalog `dependsOn` ∪ env references), sorted.
    pub depends_on: Vec<String>,
    /// The subset of `depends_on` that is also visible in container env values, sorted.
    pub env_dependencies: Vec<String>,
    /// Env references to services that do not exist, sorted.
    pub unresolved_dependencies: Vec<String>,
    /// Container images exactly as written in the Deployment (app first, then sidecars).
    pub images: Vec<String>,
    /// Pinning of the app container image.
    pub image_pinning: Pinning,
    /// `images:` overrides in `deploy/kustomization.yaml`, if the repo has one.
    pub kustomize_images: Vec<KustomizeImage>,
    /// The final-stage FROM with ARGs resolved, exactly as written otherwise.
    pub base_image: String,
    pub base_pinning: Pinning,
    pub base_registry_approved: bool,
    /// Builder-stage FROM images (ARGs resolved), excluding references to earlier stages.
    pub builder_images: Vec<String>,
    /// Dockerfile syntax variants used, for parser coverage: `syntax-directive`, `arg-base`,
    /// `arg-toolchain`, `platform`, `heredoc`, `continuation`, `stage-from-stage`.
    pub dockerfile_features: Vec<String>,
    /// The CI file that pins the template.
    pub ci_file: String,
    pub template: TemplatePin,
    pub routes: Vec<RouteTruth>,
    pub breaks_on_v2: bool,
    pub v2_break_reasons: Vec<String>,
    /// The final base image descends from the OS base carrying the critical CVE.
    pub critical_cve: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Go,
    Java,
    Python,
    Node,
    Rust,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Go => "go",
            Self::Java => "java",
            Self::Python => "python",
            Self::Node => "node",
            Self::Rust => "rust",
        }
    }
}

/// Position in the service DAG; dependencies only point to lower layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Edge,
    Bff,
    Domain,
    Data,
}

impl Layer {
    /// 0 for edge, growing downwards: an edge `a -> b` is valid when `rank(a) < rank(b)`.
    pub fn rank(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TierSource {
    Label,
    Annotation,
}

/// How an image reference is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pinning {
    /// `name[:tag]@sha256:...`
    Digest,
    /// `name:tag` with a tag other than `latest`.
    Tag,
    /// `name:latest`
    Latest,
    /// `name` alone (resolves to `latest`).
    #[serde(rename = "none")]
    Untagged,
}

impl Pinning {
    /// Classifies a reference the way a registry client resolves it.
    pub fn of(reference: &str) -> Self {
        if reference.contains('@') {
            return Self::Digest;
        }
        let last_segment = reference.rsplit('/').next().unwrap_or(reference);
        match last_segment.split_once(':') {
            Some((_, "latest")) => Self::Latest,
            Some(_) => Self::Tag,
            None => Self::Untagged,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KustomizeImage {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateKind {
    GitlabProject,
    GitlabComponent,
    GithubWorkflow,
}

/// The service's pin of the shared build template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplatePin {
    pub kind: TemplateKind,
    pub source: String,
    pub file: String,
    /// As written (`v1.3.0`, or `1.3.0` for components).
    pub version: String,
    /// Inputs passed to the build template.
    pub inputs: BTreeMap<String, InputValue>,
    /// Other ci-templates files included at the same version (the deploy template).
    pub extra_files: Vec<String>,
}

/// A template input value as written in the app's CI file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum InputValue {
    Bool(bool),
    Str(String),
}

impl InputValue {
    /// The YAML scalar for this value.
    pub(crate) fn yaml(&self) -> String {
        match self {
            Self::Bool(value) => value.to_string(),
            Self::Str(value) if value.is_empty() => "\"\"".to_owned(),
            Self::Str(value) => value.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RouteKind {
    #[serde(rename = "HTTPRoute")]
    HttpRoute,
    Ingress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteTruth {
    pub host: String,
    pub path: String,
    pub kind: RouteKind,
    pub public: bool,
}

/// One published base image, as listed in `base-images/images.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseImage {
    pub name: String,
    pub tag: String,
    pub digest: String,
    pub dockerfile: String,
    /// The image this one is built FROM, as written in its Dockerfile.
    pub base: String,
}

/// The planted critical vulnerability and its blast radius.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CriticalCve {
    pub id: String,
    pub package: String,
    pub severity: String,
    /// The one OS base image carrying it (repository, without tag or digest).
    pub os_base: String,
    /// Language bases built on that OS base, which inherit it.
    pub language_bases: Vec<String>,
    /// Services whose final base image is on that chain, sorted.
    pub services: Vec<String>,
}
