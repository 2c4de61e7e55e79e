//! The built-in policy bundle: Rego files shipped in `crates/policy/rego/`.
//!
//! | rule | over | level |
//! |---|---|---|
//! | `approved-base` | services: final-stage `FROM` | deny |
//! | `image-tag` (no `:latest`, no missing tag) | manifests, base images | deny |
//! | `image-digest` | manifests, base images | warn |
//! | `allowed-registries` | manifests | deny |
//! | `container-limits` | manifests | deny |
//! | `blue-green-selector` | manifests (Services) | deny |
//! | `catalog-metadata` (owner, tier) | services | deny |
//! | `template-window` | services: CI template pins | deny (warn for non-release refs) |
//!
//! Prefixes (`approved_base_prefixes`, `allowed_registries`) are compared on
//! whole path components of the fully qualified image name: `registry.acme/base/`
//! admits `registry.acme/base/go`, never `registry.acme/base-evil/go`.

use crate::vm::Rule;
use crate::{Finding, Level, PolicyError};
use model::Provenance;
use regorus::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// The bundle's Rego sources: (file name, text).
pub const SOURCES: &[(&str, &str)] = &[
    ("images.rego", include_str!("../rego/images.rego")),
    ("manifest.rego", include_str!("../rego/manifest.rego")),
    ("service.rego", include_str!("../rego/service.rego")),
];

/// What the bundle is told about the company: `data.bulkhead.config` in Rego.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleConfig {
    /// Prefixes base images must come from (`registry.acme.internal/base/`); empty turns the rule off.
    #[serde(default)]
    pub approved_base_prefixes: Vec<String>,
    /// Prefixes workload images must come from; empty turns the rule off.
    #[serde(default)]
    pub allowed_registries: Vec<String>,
    /// The CI template support window; `None` turns the rule off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<TemplateWindow>,
    /// The pod label that tells blue from green (default `version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
}

/// Pins must be on the latest major line or at most `window` lines before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateWindow {
    /// The newest release (`v2.0.0`).
    pub latest: String,
    pub window: u32,
    /// Template sources governed (`platform/ci-templates`, `acme/ci-templates`); empty = every pin.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// The compiled bundle: its two entry points, each with its own engine.
#[derive(Debug, Clone)]
pub(crate) struct Bundle {
    manifest: Rule,
    service: Rule,
}

/// A finding as the Rego rules return it.
#[derive(Debug, Clone)]
pub(crate) struct RawFinding {
    pub rule: String,
    pub msg: String,
    pub field: Option<Vec<Value>>,
    pub at: Option<Provenance>,
    pub image: Option<String>,
    pub level: Option<Level>,
}

impl RawFinding {
    /// Reads a finding from the rules' result. Its texts are taken as they
    /// are, without a detour through a JSON tree (the webhook reads one or two
    /// per denied review); its place, when given, is converted.
    fn read(item: &regorus::Value) -> Result<RawFinding, String> {
        let text = |key: &str| match &item[key] {
            regorus::Value::String(s) => Ok(Some(s.to_string())),
            regorus::Value::Undefined | regorus::Value::Null => Ok(None),
            other => Err(format!("{key} is not a string: {other}")),
        };
        fn typed<T: DeserializeOwned>(
            item: &regorus::Value,
            key: &str,
        ) -> Result<Option<T>, String> {
            match &item[key] {
                regorus::Value::Undefined | regorus::Value::Null => Ok(None),
                value => serde_json::to_value(value)
                    .and_then(serde_json::from_value)
                    .map(Some)
                    .map_err(|e| format!("{key}: {e}")),
            }
        }
        Ok(RawFinding {
            rule: text("rule")?.ok_or("no rule")?,
            msg: text("msg")?.ok_or("no msg")?,
            field: typed(item, "field")?,
            at: typed(item, "at")?,
            image: text("image")?,
            level: None,
        })
    }

    pub fn into_finding(self, subject: &str, at: Option<Provenance>) -> Finding {
        Finding {
            policy: format!("builtin/{}", self.rule),
            level: self.level.unwrap_or(Level::Deny),
            message: self.msg,
            at,
            subject: subject.to_string(),
            image: self.image,
            details: None,
        }
    }
}

/// The rule over one Kubernetes object.
const MANIFEST_RULE: &str = "data.bulkhead.manifest.findings";
/// The rule over one service of the fleet graph.
const SERVICE_RULE: &str = "data.bulkhead.service.findings";

impl Bundle {
    pub fn load(config: &BundleConfig, budget: Option<Duration>) -> Result<Bundle, PolicyError> {
        let mut engine = Engine::new();
        for (name, text) in SOURCES {
            engine
                .add_policy(format!("rego/{name}"), (*text).to_string())
                .map_err(|e| PolicyError::Rego {
                    path: format!("rego/{name}"),
                    message: e.to_string(),
                })?;
        }
        let data = serde_json::json!({ "bulkhead": { "config": config } });
        engine
            .add_data(regorus::Value::from(data))
            .map_err(|e| PolicyError::Rego {
                path: "data.bulkhead.config".to_string(),
                message: e.to_string(),
            })?;
        let rule = |path: &str, probes: Vec<Value>| {
            let probes: Vec<regorus::Value> =
                probes.into_iter().map(regorus::Value::from).collect();
            Rule::compiled(engine.clone(), path.to_string(), &probes).map_err(|message| {
                PolicyError::Eval {
                    what: path.to_string(),
                    message,
                }
            })
        };
        let mut bundle = Bundle {
            manifest: rule(MANIFEST_RULE, manifest_probe())?,
            service: rule(SERVICE_RULE, service_probe())?,
        };
        if let Some(budget) = budget {
            bundle.set_budget(budget);
        }
        Ok(bundle)
    }

    pub fn set_budget(&mut self, budget: Duration) {
        self.manifest.set_budget(budget);
        self.service.set_budget(budget);
    }

    /// The manifest and the service rule.
    #[cfg(test)]
    pub fn rules(&self) -> [&Rule; 2] {
        [&self.manifest, &self.service]
    }

    /// The manifest rules' findings for `{object, siblings}`.
    pub fn manifest(
        &mut self,
        subject: &str,
        input: regorus::Value,
    ) -> Result<Vec<RawFinding>, PolicyError> {
        findings(&mut self.manifest, subject, input)
    }

    /// The service rules' findings for `{service, base_images}`.
    pub fn service(
        &mut self,
        subject: &str,
        input: regorus::Value,
    ) -> Result<Vec<RawFinding>, PolicyError> {
        findings(&mut self.service, subject, input)
    }
}

/// Evaluates a `findings` rule (`{"deny": set, "warn": set}`) for one input.
fn findings(
    rule: &mut Rule,
    subject: &str,
    input: regorus::Value,
) -> Result<Vec<RawFinding>, PolicyError> {
    let result = rule
        .eval(input)
        .map_err(|e| eval_error(subject, &e, rule.budget()))?;
    let mut findings = Vec::new();
    for (key, level) in [("deny", Level::Deny), ("warn", Level::Warn)] {
        let Ok(items) = result[key].as_set() else {
            continue;
        };
        for item in items.iter_sorted() {
            let mut raw = RawFinding::read(item).map_err(|e| PolicyError::Eval {
                what: subject.to_string(),
                message: format!("unexpected finding {item}: {e}"),
            })?;
            raw.level = Some(level);
            findings.push(raw);
        }
    }
    Ok(findings)
}

/// A Pod that breaks most manifest rules, and a blue-green Service: the
/// compiled rules must answer them as the interpreter does.
fn manifest_probe() -> Vec<Value> {
    let service = serde_json::json!({
        "object": {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "probe", "namespace": "probe"},
            "spec": {"selector": {"app": "a"}},
        },
        "siblings": [{"app": "a", "version": "blue"}],
    });
    let pod = serde_json::json!({
        "object": {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "probe", "namespace": "probe", "labels": {"app": "a", "version": "blue"}},
            "spec": {
                "containers": [
                    {"name": "a", "image": "nginx"},
                    {"name": "b", "image": "registry.acme/base/go:1.2@sha256:00", "resources": {"limits": {"cpu": "1"}}},
                ],
                "initContainers": [{"name": "i", "image": "localhost:5000/x/y:latest"}],
            },
        },
        "siblings": [{"app": "a", "version": "blue"}],
    });
    vec![pod, service]
}

/// A service with base images, template pins and no owner.
fn service_probe() -> Vec<Value> {
    vec![serde_json::json!({
        "service": {
            "name": "probe",
            "declared_at": [{"path": "catalog-info.yaml", "line": 1}],
            "tier": "gold",
            "templates": [
                {"kind": "gitlab-project", "source": "platform/ci-templates", "version": "v1.0.0", "at": {"path": ".gitlab-ci.yml", "line": 2}},
                {"kind": "github-workflow", "source": "acme/ci-templates", "version": "main", "at": {"path": "ci.yml", "line": 3}},
            ],
        },
        "base_images": [{"image": "nginx:latest", "at": {"path": "Dockerfile", "line": 1}}],
    })]
}

/// Turns a regorus error into ours, telling a spent time budget apart.
pub(crate) fn eval_error(
    what: &str,
    e: &impl std::fmt::Display,
    budget: Option<Duration>,
) -> PolicyError {
    let message = e.to_string();
    match budget {
        Some(budget) if message.contains("exceeded time limit") => PolicyError::Timeout {
            what: what.to_string(),
            budget,
        },
        _ => PolicyError::Eval {
            what: what.to_string(),
            message,
        },
    }
}

#[cfg(test)]
mod tests;
