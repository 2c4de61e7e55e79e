//! Rollout specs: per-service `Rollout` and shared `AnalysisTemplate` documents,
//! modelled on Argo Rollouts' fields so its users recognise them.
//!
//! ```yaml
//! apiVersion: bulkhead.dev/v1alpha1
//! kind: Rollout
//! metadata: {name: orders}
//! spec:
//!   service: orders
//!   strategy:
//!     blueGreen:
//!       activeService: orders
//!       previewService: orders-preview
//!       autoPromotionEnabled: true
//!       scaleDownDelaySeconds: 30
//!       postPromotionAnalysis: {templates: [{templateName: error-rate}]}
//! ---
//! apiVersion: bulkhead.dev/v1alpha1
//! kind: AnalysisTemplate
//! metadata: {name: error-rate}
//! spec:
//!   metrics:
//!     - name: error-rate
//!       interval: 10s
//!       count: 3
//!       successCondition: result < 0.05
//!       provider: {gateway: {metric: error-rate}}
//! ```
//!
//! Parsing never fails and never panics: every problem is a [`Diagnostic`] with
//! file and line, and the document (or field) it concerns is skipped. Unknown
//! fields are errors too, because a misspelt `successCondition` would silently
//! weaken a gate. A service without a spec gets [`Strategy::default_for_unspecified`].

use crate::analysis::{
    AnalysisSpec, Condition, DEFAULT_CONSECUTIVE_ERROR_LIMIT, Metric, MetricKind, Provider,
};
use model::{Diagnostic, Provenance};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use yaml::Node;

/// The API version of rollout documents.
pub const API_VERSION: &str = "bulkhead.dev/v1alpha1";

/// Argo Rollouts' default `scaleDownDelaySeconds`.
pub const DEFAULT_SCALE_DOWN_DELAY_SECONDS: u64 = 30;

/// How one service moves to its new version. `A` is the analysis: template
/// references as written ([`TemplateRefs`]) or resolved ([`AnalysisSpec`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Strategy<A = AnalysisSpec> {
    BlueGreen(BlueGreen<A>),
    Canary(Canary<A>),
    Rolling(Rolling<A>),
}

/// Two full pools; the selector switches all traffic at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreen<A = AnalysisSpec> {
    /// The routed (gateway or Kubernetes) Service that carries live traffic; the service's own name when absent.
    pub active_service: Option<String>,
    /// The Service that reaches the new pool before promotion, for pre-promotion analysis.
    pub preview_service: Option<String>,
    /// When false, the switch waits for `promote`.
    pub auto_promotion_enabled: bool,
    /// How long the old pool is kept after the switch, so a rollback stays instant.
    pub scale_down_delay_seconds: u64,
    /// Measured on the preview before the switch.
    pub pre_promotion_analysis: Option<A>,
    /// Measured on live traffic after the switch.
    pub post_promotion_analysis: Option<A>,
}

/// Traffic moves to the new pool in weighted steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary<A = AnalysisSpec> {
    pub steps: Vec<CanaryStep<A>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CanaryStep<A = AnalysisSpec> {
    /// Percent of traffic on the new pool, 0 to 100.
    SetWeight(u32),
    /// Wait this many seconds, or for `promote` when `None`.
    Pause(Option<u64>),
    Analysis(A),
}

/// The new version replaces the old one a batch at a time: each batch moves
/// `batch_percent` more of the traffic, then waits and analyses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rolling<A = AnalysisSpec> {
    /// Percent of traffic moved per batch, 1 to 100.
    pub batch_percent: u32,
    /// Seconds to wait after each batch.
    pub pause_seconds: u64,
    /// Measured after each batch.
    pub analysis: Option<A>,
}

/// AnalysisTemplate names as written, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRefs {
    pub names: Vec<String>,
    pub at: Provenance,
}

impl Strategy {
    /// What a service without a rollout spec gets: blue-green with automatic
    /// promotion, a 30 second scale-down delay, and the built-in analysis (the
    /// gateway's error rate below 5%) on live traffic after the switch.
    pub fn default_for_unspecified() -> Strategy {
        Strategy::BlueGreen(BlueGreen {
            active_service: None,
            preview_service: None,
            auto_promotion_enabled: true,
            scale_down_delay_seconds: DEFAULT_SCALE_DOWN_DELAY_SECONDS,
            pre_promotion_analysis: None,
            post_promotion_analysis: Some(AnalysisSpec::builtin()),
        })
    }
}

impl<A> Strategy<A> {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::BlueGreen(_) => "blue-green",
            Strategy::Canary(_) => "canary",
            Strategy::Rolling(_) => "rolling",
        }
    }

    /// The same strategy with every analysis mapped through `f`.
    ///
    /// # Errors
    /// The first error `f` returns.
    pub fn try_map<B, E>(&self, mut f: impl FnMut(&A) -> Result<B, E>) -> Result<Strategy<B>, E> {
        Ok(match self {
            Strategy::BlueGreen(b) => Strategy::BlueGreen(BlueGreen {
                active_service: b.active_service.clone(),
                preview_service: b.preview_service.clone(),
                auto_promotion_enabled: b.auto_promotion_enabled,
                scale_down_delay_seconds: b.scale_down_delay_seconds,
                pre_promotion_analysis: b
                    .pre_promotion_analysis
                    .as_ref()
                    .map(&mut f)
                    .transpose()?,
                post_promotion_analysis: b
                    .post_promotion_analysis
                    .as_ref()
                    .map(&mut f)
                    .transpose()?,
            }),
            Strategy::Canary(c) => Strategy::Canary(Canary {
                steps: c
                    .steps
                    .iter()
                    .map(|s| {
                        Ok(match s {
                            CanaryStep::SetWeight(w) => CanaryStep::SetWeight(*w),
                            CanaryStep::Pause(d) => CanaryStep::Pause(*d),
                            CanaryStep::Analysis(a) => CanaryStep::Analysis(f(a)?),
                        })
                    })
                    .collect::<Result<_, E>>()?,
            }),
            Strategy::Rolling(r) => Strategy::Rolling(Rolling {
                batch_percent: r.batch_percent,
                pause_seconds: r.pause_seconds,
                analysis: r.analysis.as_ref().map(&mut f).transpose()?,
            }),
        })
    }
}

/// One service's `Rollout` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSpec {
    pub service: String,
    pub strategy: Strategy<TemplateRefs>,
    pub at: Provenance,
}

/// One `AnalysisTemplate` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub name: String,
    pub metrics: Vec<Metric>,
    pub at: Provenance,
}

/// Every rollout document read, by service and template name, with the problems found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Specs {
    pub rollouts: BTreeMap<String, RolloutSpec>,
    pub templates: BTreeMap<String, Template>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A rollout refers to an AnalysisTemplate no document defines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: analysis template {name} is not defined (known: {})", if .known.is_empty() { "none".to_string() } else { .known.join(", ") })]
pub struct UnknownTemplate {
    pub name: String,
    pub at: Provenance,
    pub known: Vec<String>,
}

impl Specs {
    /// Reads every document of one file. `path` goes into provenance and diagnostics.
    pub fn parse(path: &str, text: &str) -> Specs {
        let mut specs = Specs::default();
        specs.add(path, text);
        specs
    }

    /// Adds the documents of one more file. A second `Rollout` for the same
    /// service or a second template with the same name is an error and skipped.
    pub fn add(&mut self, path: &str, text: &str) {
        let (docs, error) = yaml::load(text);
        if let Some(e) = error {
            self.diagnostics.push(Diagnostic::error(
                path,
                Some(e.line),
                format!("invalid YAML: {}", e.message),
            ));
        }
        for doc in &docs {
            if doc.is_null() {
                continue;
            }
            let mut r = Reader {
                path,
                diagnostics: &mut self.diagnostics,
            };
            match r.document(doc) {
                Some(Document::Rollout(spec)) => {
                    if let Some(first) = self.rollouts.get(&spec.service) {
                        let message = format!(
                            "a second rollout for service {} (the first is at {}); this one is skipped",
                            spec.service, first.at
                        );
                        self.diagnostics
                            .push(Diagnostic::error_at(&spec.at, message));
                    } else {
                        self.rollouts.insert(spec.service.clone(), spec);
                    }
                }
                Some(Document::Template(t)) => {
                    if let Some(first) = self.templates.get(&t.name) {
                        let message = format!(
                            "a second analysis template {} (the first is at {}); this one is skipped",
                            t.name, first.at
                        );
                        self.diagnostics.push(Diagnostic::error_at(&t.at, message));
                    } else {
                        self.templates.insert(t.name.clone(), t);
                    }
                }
                None => {}
            }
        }
        self.diagnostics
            .sort_by(|a, b| (&a.path, a.line, &a.message).cmp(&(&b.path, b.line, &b.message)));
    }

    /// Whether any problem is an error (a document or field was skipped).
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == model::Severity::Error)
    }

    /// The strategy for `service` with its analysis templates resolved; the
    /// default strategy when it has no rollout document.
    ///
    /// # Errors
    /// When a referenced AnalysisTemplate is not defined.
    pub fn strategy_for(&self, service: &str) -> Result<Strategy, UnknownTemplate> {
        match self.rollouts.get(service) {
            None => Ok(Strategy::default_for_unspecified()),
            Some(spec) => spec.strategy.try_map(|refs| self.resolve(refs)),
        }
    }

    /// The templates named, merged into one analysis (their metrics in order).
    ///
    /// # Errors
    /// When a name is not a defined template.
    pub fn resolve(&self, refs: &TemplateRefs) -> Result<AnalysisSpec, UnknownTemplate> {
        let mut spec = AnalysisSpec::default();
        for name in &refs.names {
            let Some(t) = self.templates.get(name) else {
                return Err(UnknownTemplate {
                    name: name.clone(),
                    at: refs.at.clone(),
                    known: self.templates.keys().cloned().collect(),
                });
            };
            spec.templates.push(name.clone());
            spec.metrics.extend(t.metrics.iter().cloned());
        }
        Ok(spec)
    }
}

enum Document {
    Rollout(RolloutSpec),
    Template(Template),
}

/// Reads documents, recording a diagnostic for every problem.
struct Reader<'a> {
    path: &'a str,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Reader<'_> {
    fn error(&mut self, line: u32, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::error(self.path, Some(line), message));
    }

    /// The mapping's entries; an error for every key not in `known`.
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
    ) -> Option<BTreeMap<String, &'n Node>> {
        // `blueGreen:` with nothing after it means every default, as in Argo.
        if node.is_null() {
            return Some(BTreeMap::new());
        }
        let Some(pairs) = node.as_map() else {
            self.error(
                node.line,
                format!("{what} must be a mapping, not {}", node.shape()),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, v) in pairs {
            let Some(key) = k.string() else {
                self.error(k.line, format!("{what}: a key that is not text"));
                continue;
            };
            if known.contains(&key.as_str()) {
                out.insert(key, v);
            } else {
                self.error(
                    k.line,
                    format!(
                        "{what}: unknown field `{key}` (known: {})",
                        known.join(", ")
                    ),
                );
            }
        }
        Some(out)
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.string() {
            Some(s) if node.as_map().is_none() && node.as_seq().is_none() => Some(s),
            _ => {
                self.error(
                    node.line,
                    format!("{what} must be text, not {}", node.shape()),
                );
                None
            }
        }
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.as_str() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                self.error(
                    node.line,
                    format!("{what} must be true or false, not {}", node.shape()),
                );
                None
            }
        }
    }

    fn integer(&mut self, node: &Node, what: &str, min: i64, max: i64) -> Option<i64> {
        match node.as_str().and_then(|s| s.trim().parse::<i64>().ok()) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    node.line,
                    format!(
                        "{what} must be a whole number from {min} to {max}, not {}",
                        node.shape()
                    ),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<u64> {
        let Some(text) = node.as_str() else {
            self.error(
                node.line,
                format!("{what} must be a duration, not {}", node.shape()),
            );
            return None;
        };
        match duration_seconds(text) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(node.line, format!("{what}: {e}"));
                None
            }
        }
    }

    fn percent(&mut self, node: &Node, what: &str) -> Option<u32> {
        let parsed = node
            .as_str()
            .map(|s| s.trim().trim_end_matches('%').trim())
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|n| (1..=100).contains(n));
        if parsed.is_none() {
            self.error(
                node.line,
                format!(
                    "{what} must be a percentage from 1 to 100 (25 or 25%), not {}",
                    node.shape()
                ),
            );
        }
        parsed
    }

    fn document(&mut self, doc: &Node) -> Option<Document> {
        let fields = self.fields(doc, "document", &["apiVersion", "kind", "metadata", "spec"])?;
        let kind = fields.get("kind").and_then(|k| k.string());
        match fields.get("apiVersion").and_then(|v| v.string()) {
            Some(v) if v == API_VERSION => {}
            Some(v) => {
                let line = fields["apiVersion"].line;
                self.error(
                    line,
                    format!("apiVersion {v} is not {API_VERSION}; document skipped"),
                );
                return None;
            }
            None => {
                self.error(
                    doc.line,
                    format!("no apiVersion (expected {API_VERSION}); document skipped"),
                );
                return None;
            }
        }
        let name = match fields.get("metadata") {
            Some(m) => self
                .fields(
                    m,
                    "metadata",
                    &["name", "namespace", "labels", "annotations"],
                )
                .and_then(|f| f.get("name").and_then(|n| n.string())),
            None => None,
        };
        let Some(spec) = fields.get("spec") else {
            self.error(doc.line, "no spec; document skipped");
            return None;
        };
        let at = Provenance::new(self.path, doc.line);
        match kind.as_deref() {
            Some("Rollout") => self.rollout(spec, at).map(Document::Rollout),
            Some("AnalysisTemplate") => {
                let Some(name) = name else {
                    self.error(
                        doc.line,
                        "AnalysisTemplate has no metadata.name; document skipped",
                    );
                    return None;
                };
                self.template(&name, spec, at).map(Document::Template)
            }
            Some(other) => {
                let line = fields["kind"].line;
                self.error(
                    line,
                    format!("kind {other} is not Rollout or AnalysisTemplate; document skipped"),
                );
                None
            }
            None => {
                self.error(
                    doc.line,
                    "no kind (Rollout or AnalysisTemplate); document skipped",
                );
                None
            }
        }
    }

    fn rollout(&mut self, spec: &Node, at: Provenance) -> Option<RolloutSpec> {
        let errors_before = self.diagnostics.len();
        let fields = self.fields(spec, "spec", &["service", "strategy"])?;
        let Some(service) = fields
            .get("service")
            .and_then(|s| self.string(s, "spec.service"))
        else {
            self.error(spec.line, "Rollout has no spec.service; document skipped");
            return None;
        };
        let Some(strategy) = fields.get("strategy") else {
            self.error(
                spec.line,
                format!("rollout of {service} has no spec.strategy; document skipped"),
            );
            return None;
        };
        let kinds = self.fields(
            strategy,
            "spec.strategy",
            &["blueGreen", "canary", "rolling"],
        )?;
        if kinds.len() != 1 {
            self.error(
                strategy.line,
                format!(
                    "rollout of {service}: spec.strategy needs exactly one of blueGreen, canary, rolling; document skipped"
                ),
            );
            return None;
        }
        let (kind, node) = kinds.into_iter().next()?;
        let strategy = match kind.as_str() {
            "blueGreen" => self.blue_green(node).map(Strategy::BlueGreen),
            "canary" => self.canary(node).map(Strategy::Canary),
            _ => self.rolling(node).map(Strategy::Rolling),
        };
        if self.diagnostics.len() > errors_before {
            self.error(
                at.line,
                format!("rollout of {service} skipped because of its errors"),
            );
            return None;
        }
        Some(RolloutSpec {
            service,
            strategy: strategy?,
            at,
        })
    }

    fn refs(&mut self, node: &Node, what: &str) -> Option<TemplateRefs> {
        let fields = self.fields(node, what, &["templates"])?;
        let Some(list) = fields.get("templates") else {
            self.error(node.line, format!("{what} has no templates"));
            return None;
        };
        let Some(items) = list.as_seq() else {
            self.error(
                list.line,
                format!("{what}.templates must be a list, not {}", list.shape()),
            );
            return None;
        };
        let mut names = Vec::new();
        for item in items {
            if item.as_map().is_some() {
                let f = self.fields(item, &format!("{what}.templates[]"), &["templateName"])?;
                match f.get("templateName").and_then(|n| n.string()) {
                    Some(name) => names.push(name),
                    None => {
                        self.error(item.line, format!("{what}.templates[] has no templateName"))
                    }
                }
            } else if let Some(name) = self.string(item, &format!("{what}.templates[]")) {
                names.push(name);
            }
        }
        if names.is_empty() {
            self.error(list.line, format!("{what}.templates is empty"));
            return None;
        }
        Some(TemplateRefs {
            names,
            at: Provenance::new(self.path, node.line),
        })
    }

    fn blue_green(&mut self, node: &Node) -> Option<BlueGreen<TemplateRefs>> {
        const WHAT: &str = "spec.strategy.blueGreen";
        let f = self.fields(
            node,
            WHAT,
            &[
                "activeService",
                "previewService",
                "autoPromotionEnabled",
                "scaleDownDelaySeconds",
                "prePromotionAnalysis",
                "postPromotionAnalysis",
            ],
        )?;
        let mut bg = BlueGreen {
            active_service: None,
            preview_service: None,
            auto_promotion_enabled: true,
            scale_down_delay_seconds: DEFAULT_SCALE_DOWN_DELAY_SECONDS,
            pre_promotion_analysis: None,
            post_promotion_analysis: None,
        };
        if let Some(n) = f.get("activeService") {
            bg.active_service = self.string(n, &format!("{WHAT}.activeService"));
        }
        if let Some(n) = f.get("previewService") {
            bg.preview_service = self.string(n, &format!("{WHAT}.previewService"));
        }
        if let Some(n) = f.get("autoPromotionEnabled") {
            bg.auto_promotion_enabled = self
                .bool(n, &format!("{WHAT}.autoPromotionEnabled"))
                .unwrap_or(true);
        }
        if let Some(n) = f.get("scaleDownDelaySeconds") {
            bg.scale_down_delay_seconds = self
                .integer(n, &format!("{WHAT}.scaleDownDelaySeconds"), 0, 86_400)
                .map_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS, |n| n as u64);
        }
        if let Some(n) = f.get("prePromotionAnalysis") {
            bg.pre_promotion_analysis = self.refs(n, &format!("{WHAT}.prePromotionAnalysis"));
        }
        if let Some(n) = f.get("postPromotionAnalysis") {
            bg.post_promotion_analysis = self.refs(n, &format!("{WHAT}.postPromotionAnalysis"));
        }
        Some(bg)
    }

    fn canary(&mut self, node: &Node) -> Option<Canary<TemplateRefs>> {
        const WHAT: &str = "spec.strategy.canary";
        let f = self.fields(node, WHAT, &["steps"])?;
        let Some(list) = f.get("steps") else {
            self.error(node.line, format!("{WHAT} has no steps"));
            return None;
        };
        let Some(items) = list.as_seq() else {
            self.error(
                list.line,
                format!("{WHAT}.steps must be a list, not {}", list.shape()),
            );
            return None;
        };
        let mut steps = Vec::new();
        for item in items {
            let what = format!("{WHAT}.steps[]");
            let Some(step) = self.fields(item, &what, &["setWeight", "pause", "analysis"]) else {
                continue;
            };
            if step.len() != 1 {
                self.error(
                    item.line,
                    format!("{what} needs exactly one of setWeight, pause, analysis"),
                );
                continue;
            }
            let Some((kind, value)) = step.into_iter().next() else {
                continue;
            };
            let parsed = match kind.as_str() {
                "setWeight" => self
                    .integer(value, &format!("{what}.setWeight"), 0, 100)
                    .map(|w| CanaryStep::SetWeight(w as u32)),
                "pause" => self.pause(value, &format!("{what}.pause")),
                _ => self
                    .refs(value, &format!("{what}.analysis"))
                    .map(CanaryStep::Analysis),
            };
            steps.extend(parsed);
        }
        if items.is_empty() {
            self.error(list.line, format!("{WHAT}.steps is empty"));
        }
        Some(Canary { steps })
    }

    fn pause(&mut self, node: &Node, what: &str) -> Option<CanaryStep<TemplateRefs>> {
        if node.is_null() {
            return Some(CanaryStep::Pause(None));
        }
        let f = self.fields(node, what, &["duration"])?;
        match f.get("duration") {
            None => Some(CanaryStep::Pause(None)),
            Some(d) => self
                .duration(d, &format!("{what}.duration"))
                .map(|s| CanaryStep::Pause(Some(s))),
        }
    }

    fn rolling(&mut self, node: &Node) -> Option<Rolling<TemplateRefs>> {
        const WHAT: &str = "spec.strategy.rolling";
        let f = self.fields(node, WHAT, &["batchSize", "maxSurge", "pause", "analysis"])?;
        let batch = match (f.get("batchSize"), f.get("maxSurge")) {
            (Some(_), Some(m)) => {
                self.error(
                    m.line,
                    format!("{WHAT}: give batchSize or maxSurge, not both"),
                );
                return None;
            }
            (Some(n), None) => self.percent(n, &format!("{WHAT}.batchSize"))?,
            (None, Some(n)) => self.percent(n, &format!("{WHAT}.maxSurge"))?,
            (None, None) => 25,
        };
        let pause_seconds = match f.get("pause") {
            None => 0,
            Some(p) => match self.pause(p, &format!("{WHAT}.pause"))? {
                CanaryStep::Pause(Some(s)) => s,
                _ => {
                    self.error(p.line, format!("{WHAT}.pause needs a duration"));
                    return None;
                }
            },
        };
        let analysis = match f.get("analysis") {
            None => None,
            Some(a) => Some(self.refs(a, &format!("{WHAT}.analysis"))?),
        };
        Some(Rolling {
            batch_percent: batch,
            pause_seconds,
            analysis,
        })
    }

    fn template(&mut self, name: &str, spec: &Node, at: Provenance) -> Option<Template> {
        let errors_before = self.diagnostics.len();
        let fields = self.fields(spec, "spec", &["metrics", "args"])?;
        let Some(list) = fields.get("metrics").and_then(|m| m.as_seq()) else {
            self.error(
                spec.line,
                format!("analysis template {name} has no spec.metrics list; document skipped"),
            );
            return None;
        };
        let mut metrics = Vec::new();
        for item in list {
            if let Some(m) = self.metric(name, item) {
                if metrics.iter().any(|x: &Metric| x.name == m.name) {
                    self.error(
                        item.line,
                        format!(
                            "analysis template {name}: metric {} is listed twice",
                            m.name
                        ),
                    );
                } else {
                    metrics.push(m);
                }
            }
        }
        if metrics.is_empty() && self.diagnostics.len() == errors_before {
            self.error(
                spec.line,
                format!("analysis template {name} has no metrics"),
            );
        }
        if self.diagnostics.len() > errors_before {
            self.error(
                at.line,
                format!("analysis template {name} skipped because of its errors"),
            );
            return None;
        }
        Some(Template {
            name: name.to_string(),
            metrics,
            at,
        })
    }

    fn metric(&mut self, template: &str, node: &Node) -> Option<Metric> {
        let what = format!("analysis template {template}: metric");
        let f = self.fields(
            node,
            &what,
            &[
                "name",
                "provider",
                "successCondition",
                "failureCondition",
                "interval",
                "count",
                "failureLimit",
                "inconclusiveLimit",
                "consecutiveErrorLimit",
            ],
        )?;
        let Some(name) = f
            .get("name")
            .and_then(|n| self.string(n, &format!("{what} name")))
        else {
            self.error(node.line, format!("{what} has no name"));
            return None;
        };
        let what = format!("analysis template {template}: metric {name}");
        let Some(provider_node) = f.get("provider") else {
            self.error(node.line, format!("{what} has no provider"));
            return None;
        };
        let provider = self.provider(provider_node, &what)?;
        let condition = |key: &str, this: &mut Self| -> Option<Option<Condition>> {
            match f.get(key) {
                None => Some(None),
                Some(n) => {
                    let text = this.string(n, &format!("{what} {key}"))?;
                    match Condition::parse(&text) {
                        Ok(c) => Some(Some(c)),
                        Err(e) => {
                            this.error(n.line, format!("{what} {key}: {e}"));
                            None
                        }
                    }
                }
            }
        };
        let success_condition = condition("successCondition", self)?;
        let failure_condition = condition("failureCondition", self)?;
        let interval_seconds = match f.get("interval") {
            Some(n) => self.duration(n, &format!("{what} interval"))?,
            None => 10,
        };
        let limit = |key: &str, default: i32, this: &mut Self| -> Option<i32> {
            match f.get(key) {
                None => Some(default),
                Some(n) => this
                    .integer(n, &format!("{what} {key}"), -1, 10_000)
                    .map(|n| n as i32),
            }
        };
        let count = limit("count", 1, self)?;
        if count < 1 {
            let line = f["count"].line;
            self.error(line, format!("{what} count must be at least 1"));
            return None;
        }
        Some(Metric {
            name,
            provider,
            success_condition,
            failure_condition,
            interval_seconds,
            count: count as u32,
            failure_limit: limit("failureLimit", 0, self)?,
            inconclusive_limit: limit("inconclusiveLimit", 0, self)?,
            consecutive_error_limit: limit(
                "consecutiveErrorLimit",
                DEFAULT_CONSECUTIVE_ERROR_LIMIT,
                self,
            )?,
        })
    }

    fn provider(&mut self, node: &Node, what: &str) -> Option<Provider> {
        let what = format!("{what} provider");
        let f = self.fields(node, &what, &["gateway", "prometheus", "traces"])?;
        if f.len() != 1 {
            self.error(
                node.line,
                format!("{what} needs exactly one of gateway, prometheus, traces"),
            );
            return None;
        }
        let (kind, body) = f.into_iter().next()?;
        let what = format!("{what}.{kind}");
        match kind.as_str() {
            "gateway" => {
                let g = self.fields(body, &what, &["metric"])?;
                let metric = self.metric_kind(g.get("metric").copied(), &what)?;
                Some(Provider::Gateway { metric })
            }
            "prometheus" => {
                let p = self.fields(body, &what, &["address", "query"])?;
                let address = self.required(&p, "address", body, &what)?;
                let query = self.required(&p, "query", body, &what)?;
                let unknown = Provider::query_for(&query, "")
                    .split("{{")
                    .skip(1)
                    .map(|rest| rest.split("}}").next().unwrap_or(rest).trim().to_string())
                    .next();
                if let Some(placeholder) = unknown {
                    let line = p.get("query").map_or(body.line, |n| n.line);
                    self.error(
                        line,
                        format!(
                            "{what}.query: placeholder {{{{{placeholder}}}}} is not known; only {{{{service}}}} (or {{{{args.service-name}}}}) is filled in"
                        ),
                    );
                    return None;
                }
                Some(Provider::Prometheus { address, query })
            }
            _ => {
                let t = self.fields(body, &what, &["address", "metric"])?;
                let address = self.required(&t, "address", body, &what)?;
                let metric = self.metric_kind(t.get("metric").copied(), &what)?;
                Some(Provider::Traces { address, metric })
            }
        }
    }

    fn required(
        &mut self,
        fields: &BTreeMap<String, &Node>,
        key: &str,
        parent: &Node,
        what: &str,
    ) -> Option<String> {
        match fields.get(key) {
            Some(n) => self.string(n, &format!("{what}.{key}")),
            None => {
                self.error(parent.line, format!("{what} has no {key}"));
                None
            }
        }
    }

    /// A provider's `metric`; the error rate when absent.
    fn metric_kind(&mut self, node: Option<&Node>, what: &str) -> Option<MetricKind> {
        let Some(node) = node else {
            return Some(MetricKind::ErrorRate);
        };
        let text = self.string(node, &format!("{what}.metric"))?;
        match MetricKind::parse(&text) {
            Some(k) => Some(k),
            None => {
                self.error(
                    node.line,
                    format!("{what}.metric {text} is not error-rate or latency-p99"),
                );
                None
            }
        }
    }
}

/// Whole seconds in a duration of [`yaml::parse_duration`]'s grammar (`30s`, `5m`, `1h30m`, `2d`).
///
/// A bare number of seconds (`30`) is still read: rollout specs documented
/// and accepted it before the grammar was shared, and specs in the field use it.
///
/// # Errors
///
/// Not a duration, or not a whole number of seconds (pauses and intervals count seconds).
pub fn duration_seconds(text: &str) -> Result<u64, String> {
    if let Ok(n) = text.trim().parse::<u64>() {
        return Ok(n);
    }
    let d = yaml::parse_duration(text).map_err(|e| e.to_string())?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{text:?} is not a whole number of seconds"));
    }
    Ok(d.as_secs())
}

#[cfg(test)]
mod tests;
