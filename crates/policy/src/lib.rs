//! Policy enforcement's pure half (`admission` is its I/O edge, the webhook
//! server): Rego policies, evaluated by regorus, over the fleet graph,
//! Kubernetes manifests and admission reviews.
//!
//! Companies that enforce policy already run OPA Gatekeeper or Kyverno and
//! already have policy libraries, so bulkhead runs Rego rather than a language
//! of its own: the built-in bundle ([`builtin`], Rego files in `rego/`) and
//! Gatekeeper `ConstraintTemplate`s with their `Constraint`s ([`gatekeeper`]),
//! tested with gator-format suites ([`suite`]).
//!
//! The crate does no I/O: Rego sources, manifests and reviews come in as
//! text or values. A [`Policies`] value is loaded once and cloned per thread
//! (regorus evaluates through `&mut`); clones share the parsed modules.
//! Bad input (invalid Rego, a malformed template, a broken manifest) becomes
//! a [`model::Diagnostic`], never a panic.

pub mod admission;
pub mod builtin;
pub mod gatekeeper;
mod input;
pub mod inventory;
pub mod kyverno;
pub mod suite;
mod vm;
pub mod webhook;

pub use admission::{AdmissionDecision, ReviewError};
pub use builtin::BundleConfig;
pub use gatekeeper::{Constraint, GatekeeperSet, Template};
pub use input::{ManifestObject, ServiceInputs, load_manifests};
pub use inventory::Inventory;

use model::{Diagnostic, Fleet, Provenance, Service};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

/// Whether a finding blocks (`deny`) or only informs (`warn`; fails CI only with `--strict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Deny,
    Warn,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Deny => "deny",
            Level::Warn => "warn",
        })
    }
}

/// One violation of one rule by one object or service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `builtin/<rule>` for the bundle, `<ConstraintKind>/<constraint name>` for Gatekeeper.
    pub policy: String,
    pub level: Level,
    pub message: String,
    /// Where the violation is written; `None` when nothing in the files says.
    pub at: Option<Provenance>,
    /// What was checked: `Deployment payments/orders-blue` or `service orders`.
    pub subject: String,
    /// The image the finding is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Gatekeeper's `details`, when the policy gave any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// Findings plus the problems met on the way.
/// Serialisable both ways, so a caller can keep outcomes between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Outcome {
    pub fn extend(&mut self, other: Outcome) {
        self.findings.extend(other.findings);
        self.diagnostics.extend(other.diagnostics);
    }
}

/// Why a policy could not be loaded or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: invalid Rego: {message}")]
    Rego { path: String, message: String },
    #[error("evaluating {what}: {message}")]
    Eval { what: String, message: String },
    #[error("evaluating {what}: the time budget of {budget:?} ran out")]
    Timeout { what: String, budget: Duration },
}

/// Everything that is enforced: the built-in bundle (optional) and Gatekeeper constraints.
///
/// Load once, clone per thread: evaluation needs `&mut self`.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    builtin: Option<builtin::Bundle>,
    gatekeeper: GatekeeperSet,
    budget: Option<Duration>,
}

impl Policies {
    /// No policies at all; add the bundle or constraints.
    pub fn new() -> Policies {
        Policies::default()
    }

    /// The built-in bundle with its configuration.
    ///
    /// # Errors
    /// Only if the shipped Rego does not compile, which the tests rule out.
    pub fn with_builtin(mut self, config: &BundleConfig) -> Result<Policies, PolicyError> {
        self.builtin = Some(builtin::Bundle::load(config, self.budget)?);
        Ok(self)
    }

    /// Gatekeeper templates and constraints, bound to each other.
    pub fn with_gatekeeper(mut self, set: GatekeeperSet) -> Policies {
        self.gatekeeper = set;
        self.apply_budget();
        self
    }

    /// Stops any single evaluation after `budget` (a policy that loops cannot hang a review).
    pub fn with_budget(mut self, budget: Duration) -> Policies {
        self.budget = Some(budget);
        self.apply_budget();
        self
    }

    fn apply_budget(&mut self) {
        if let Some(budget) = self.budget {
            if let Some(b) = &mut self.builtin {
                b.set_budget(budget);
            }
            self.gatekeeper.set_budget(budget);
        }
    }

    /// The objects Gatekeeper constraints see as `data.inventory` (over a
    /// fleet: every manifest of it, so uniqueness holds across repositories).
    pub fn with_inventory(mut self, inventory: &Inventory) -> Policies {
        self.gatekeeper.set_inventory(inventory);
        self
    }

    pub fn gatekeeper(&self) -> &GatekeeperSet {
        &self.gatekeeper
    }

    /// Checks every Kubernetes object of one manifest file. `path` goes into every provenance.
    pub fn check_manifest_file(&mut self, path: &str, text: &str) -> Outcome {
        let (objects, diagnostics) = load_manifests(path, text);
        self.check_manifest_objects(path, &objects, diagnostics)
    }

    /// Checks the objects [`load_manifests`] read from one file, keeping the
    /// diagnostics it gave: for callers that read every file first (to fill
    /// the inventory) and check them after.
    pub fn check_manifest_objects(
        &mut self,
        path: &str,
        objects: &[ManifestObject],
        diagnostics: Vec<Diagnostic>,
    ) -> Outcome {
        let mut outcome = Outcome {
            diagnostics,
            ..Outcome::default()
        };
        let siblings: Vec<Value> = objects
            .iter()
            .filter_map(ManifestObject::pod_labels)
            .collect();
        for object in objects {
            match self.check_object(object, &siblings) {
                Ok(findings) => outcome.findings.extend(findings),
                Err(e) => outcome.diagnostics.push(Diagnostic::error(
                    path,
                    Some(object.line),
                    e.to_string(),
                )),
            }
        }
        outcome
    }

    /// Checks one object. `siblings` are the pod label sets of workloads written beside it.
    ///
    /// # Errors
    /// When a policy fails to evaluate (a builtin error, the time budget).
    pub fn check_object(
        &mut self,
        object: &ManifestObject,
        siblings: &[Value],
    ) -> Result<Vec<Finding>, PolicyError> {
        let mut findings = Vec::new();
        let subject = object.subject();
        if let Some(bundle) = &mut self.builtin {
            let input = json!({ "object": object.value, "siblings": siblings });
            for raw in bundle.manifest(&subject, regorus::Value::from(input))? {
                let at = raw
                    .field
                    .as_ref()
                    .map(|field| object.provenance_of(field))
                    .unwrap_or_else(|| object.provenance());
                findings.push(raw.into_finding(&subject, Some(at)));
            }
        }
        for violation in self.gatekeeper.review(&object.value, None, None)? {
            findings.push(Finding {
                policy: violation.policy,
                level: violation.level,
                message: violation.message,
                at: Some(object.provenance()),
                subject: subject.clone(),
                image: None,
                details: violation.details,
            });
        }
        Ok(findings)
    }

    /// Checks one service of the fleet graph with the bundle's service rules
    /// (over a whole fleet, build [`ServiceInputs`] once and use [`Policies::check_service_input`]).
    pub fn check_service(&mut self, fleet: &Fleet, service: &Service) -> Outcome {
        let input = ServiceInputs::new(fleet).of(service);
        self.check_service_input(service, &input)
    }

    /// Whether the bundle's service rules run at all (they are the bundle's).
    pub fn checks_services(&self) -> bool {
        self.builtin.is_some()
    }

    /// Checks one service with the bundle's service rules, given its input
    /// ([`ServiceInputs::of`]).
    pub fn check_service_input(&mut self, service: &Service, input: &Value) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(bundle) = &mut self.builtin else {
            return outcome;
        };
        let subject = format!("service {}", service.name);
        let input = input::to_rego(input);
        match bundle.service(&subject, input) {
            Ok(raws) => {
                for raw in raws {
                    let at = raw.at.clone();
                    outcome.findings.push(raw.into_finding(&subject, at));
                }
            }
            Err(e) => {
                let at = service.declared_at.first();
                outcome.diagnostics.push(Diagnostic::error(
                    at.map_or("", |a| a.path.as_str()),
                    at.map(|a| a.line),
                    e.to_string(),
                ));
            }
        }
        outcome
    }

    /// Whether evaluating a review needs its whole request (Gatekeeper
    /// constraints read `input.review`); the bundle reads only the object.
    pub fn reads_request(&self) -> bool {
        !self.gatekeeper.constraints().is_empty()
    }

    /// Decides one admission request (the `request` of an AdmissionReview).
    ///
    /// # Errors
    /// When a policy fails to evaluate; the caller chooses fail-open or fail-closed.
    pub fn admit(&mut self, request: &Value) -> Result<Vec<Finding>, PolicyError> {
        let object = request.get("object").unwrap_or(&Value::Null);
        let subject = input::subject_of(object);
        // The request is converted to a Rego value once: the bundle's input and
        // every constraint's `input.review` share it.
        let review = self.reads_request().then(|| input::to_rego(request));
        let rego_object = match &review {
            Some(review) if request.get("object").is_some() => review["object"].clone(),
            _ => input::to_rego(object),
        };
        let mut findings = self.admit_object(&subject, rego_object)?;
        for violation in self
            .gatekeeper
            .review(object, Some(request), review.as_ref())?
        {
            findings.push(Finding {
                policy: violation.policy,
                level: violation.level,
                message: violation.message,
                at: None,
                subject: subject.clone(),
                image: None,
                details: violation.details,
            });
        }
        Ok(findings)
    }

    /// The bundle's findings for the object of an admission request.
    ///
    /// # Errors
    /// When a rule fails to evaluate.
    pub(crate) fn admit_object(
        &mut self,
        subject: &str,
        object: regorus::Value,
    ) -> Result<Vec<Finding>, PolicyError> {
        let Some(bundle) = &mut self.builtin else {
            return Ok(Vec::new());
        };
        let input = input::rego_object([
            ("object", object),
            ("siblings", regorus::Value::new_array()),
        ]);
        Ok(bundle
            .manifest(subject, input)?
            .into_iter()
            .map(|raw| raw.into_finding(subject, None))
            .collect())
    }
}

/// Sorts findings by place, then policy, so that output is stable.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (&a.at, &a.policy, &a.message, &a.subject).cmp(&(&b.at, &b.policy, &b.message, &b.subject))
    });
}

#[cfg(test)]
mod tests;
