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
}
