//! Where a fact came from, and what went wrong while reading it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The file (relative to the fleet root, `/`-separated) and 1-based line a fact was read from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Provenance {
    pub path: String,
    pub line: u32,
}

impl Provenance {
    pub fn new(path: impl Into<String>, line: u32) -> Provenance {
        Provenance {
            path: path.into(),
            line,
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path, self.line)
    }
}

/// How much a diagnostic matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file, or part of it, could not be read; facts from it are missing.
    Error,
    /// The file was read, but something in it is suspicious or unresolved.
    Warning,
    /// Worth knowing; nothing is missing.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// A problem found while reading the fleet. A bad file yields diagnostics, never an aborted scan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Diagnostic {
    pub path: String,
    /// 1-based; `None` when the problem concerns the whole file (unreadable, too large, binary).
    pub line: Option<u32>,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, line: Option<u32>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            line,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn warning(path: impl Into<String>, line: Option<u32>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            line,
            severity: Severity::Warning,
            message: message.into(),
        }
    }

    /// A warning about the fact found at `at`.
    pub fn warning_at(at: &Provenance, message: impl Into<String>) -> Self {
        Diagnostic::warning(at.path.clone(), Some(at.line), message)
    }

    /// An error about the fact found at `at`.
    pub fn error_at(at: &Provenance, message: impl Into<String>) -> Self {
        Diagnostic::error(at.path.clone(), Some(at.line), message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.path, line, self.severity, self.message
            ),
            None => write!(f, "{}: {}: {}", self.path, self.severity, self.message),
        }
    }
}
