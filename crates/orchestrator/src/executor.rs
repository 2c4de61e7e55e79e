//! The executor contract: the few idempotent operations a rollout needs from
//! whatever routes traffic (the bulkhead gateway, a GitOps repository, a
//! Kubernetes API server).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Pod labels a selector matches, such as `{version: green}`.
pub type Labels = BTreeMap<String, String>;

/// One pool of a weighted split (a canary step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedPool {
    pub selector: Labels,
    pub weight: u32,
}

impl WeightedPool {
    /// The pools of a rollout's `SetWeights` action.
    pub fn of(weights: &[(rollout::Selector, u32)]) -> Vec<WeightedPool> {
        weights
            .iter()
            .map(|(selector, weight)| WeightedPool {
                selector: selector.clone(),
                weight: *weight,
            })
            .collect()
    }
}

/// One workload's image replaced in place (a rolling update by image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMove {
    /// The routed service, which names the workload (the Deployment).
    pub service: String,
    pub from: String,
    pub to: String,
}

/// Why an executor could not perform an operation.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{target}: {detail}")]
    Refused { target: String, detail: String },
    #[error("{target}: {error}")]
    Http {
        /// What was being called (`gateway`); the HTTP error names the URL.
        target: String,
        /// Shown in this error's message, not as its cause: the HTTP error
        /// already names its own cause, which would print twice.
        error: http_client::HttpError,
    },
    #[error(transparent)]
    Git(#[from] vcs::GitError),
    #[error("{path}:{line}: {detail}")]
    Manifest {
        path: String,
        line: u32,
        detail: String,
    },
    #[error("{0}")]
    Kubernetes(String),
}

/// Performs routing changes. Every operation is idempotent: performing it
/// again after a crash leaves the same routing and no second change record.
pub trait Executor {
    /// A short name for messages (`gateway`, `gitops`, `kubernetes`).
    fn kind(&self) -> &'static str;

    /// Points the service's traffic at the endpoints `selector` matches.
    ///
    /// # Errors
    /// When the backend refuses or cannot be reached; nothing changed then.
    fn set_selector(&mut self, service: &str, selector: &Labels) -> Result<(), ExecError>;

    /// Splits the service's traffic over pools by weight.
    ///
    /// # Errors
    /// When the backend refuses or cannot be reached; nothing changed then.
    fn set_weights(&mut self, service: &str, pools: &[WeightedPool]) -> Result<(), ExecError>;

    /// The routing of every service the backend knows, exactly as it reports
    /// it, for the before/after comparison that proves services were untouched.
    ///
    /// # Errors
    /// When the backend cannot be read.
    fn routing(&mut self) -> Result<BTreeMap<String, String>, ExecError>;

    /// The image reference the service's workload runs now that names the
    /// same image as `to` (or its only one), for the rollback of a rolling
    /// update by image.
    ///
    /// # Errors
    /// When the backend has no such workload or image, or cannot replace images.
    fn image(&mut self, service: &str, to: &str) -> Result<String, ExecError> {
        Err(ExecError::Refused {
            target: self.kind().to_string(),
            detail: format!(
                "cannot replace the image of {service} with {to}: use --executor kubernetes or gitops"
            ),
        })
    }

    /// Replaces images in place and waits until the new ones run: every
    /// move given at once (one wave, one change), then the wait.
    ///
    /// # Errors
    /// When the backend refuses, or the new images do not become ready
    /// (a Deployment past its progress deadline, an Application Degraded).
    fn set_images(&mut self, moves: &[ImageMove]) -> Result<(), ExecError> {
        Err(ExecError::Refused {
            target: self.kind().to_string(),
            detail: format!(
                "cannot replace images ({}): use --executor kubernetes or gitops",
                moves
                    .iter()
                    .map(|m| m.service.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

/// The repository of an image reference, without its tag and digest
/// (`reg:5000/a/b:1.2@sha256:..` -> `reg:5000/a/b`).
pub fn image_name(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => without_digest,
    }
}
