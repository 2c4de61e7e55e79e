//! `bulkhead.toml`: where a fleet keeps its templates, base images, reports and hosts.
//!
//! Every key is optional; a fleet without the file is scanned with the defaults
//! documented in `docs/configuration.md`.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The name of the configuration file at a fleet root.
pub const FILE_NAME: &str = "bulkhead.toml";
/// Files larger than this are reported and skipped unless the config says otherwise.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub scan: ScanConfig,
    #[serde(default)]
    pub templates: TemplatesConfig,
    #[serde(default)]
    pub images: ImagesConfig,
    #[serde(default)]
    pub reports: ReportsConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub hosts: HostsConfig,
    /// A `bulkhead console` serving this fleet: `cve`, `impact` and `scan`
    /// ask it instead of scanning (`--server` and `BULKHEAD_SERVER` come first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    /// Extra gitignore-style patterns to skip, relative to the fleet root.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files larger than this many bytes are skipped with a diagnostic.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            exclude: Vec::new(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

fn default_max_file_bytes() -> u64 {
    DEFAULT_MAX_FILE_BYTES
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    /// The folder (relative to the fleet root) of the CI templates git repository.
    pub repo: Option<String>,
    /// The GitLab project path apps `include:` the templates from.
    pub project: Option<String>,
    /// The GitHub `owner/repo` apps `uses:` the reusable workflows from.
    pub github: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// The folder of the base images repository.
    pub base_repo: Option<String>,
    /// Registry prefixes images may come from, matched on whole path components.
    #[serde(default)]
    pub approved_registries: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// Files or folders of Trivy JSON reports.
    #[serde(default)]
    pub trivy: Vec<String>,
    #[serde(default)]
    pub cyclonedx: Vec<String>,
    #[serde(default)]
    pub grype: Vec<String>,
    /// Files or folders of SPDX JSON SBOMs (packages per image or source).
    #[serde(default)]
    pub spdx: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Saved `kubectl get ... -o json` outputs.
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// Kubeconfig contexts whose clusters `cve` and `images audit` read
    /// live (`--cluster` names others instead).
    #[serde(default)]
    pub contexts: Vec<String>,
    /// The kubeconfig those contexts are in, relative to the fleet root
    /// (default: `$KUBECONFIG`, else `~/.kube/config`; `--kubeconfig` first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsConfig {
    /// The hosts inventory file.
    pub inventory: Option<String>,
}

impl Config {
    /// Parses a configuration file's text; the error names the line and the key at fault.
    ///
    /// # Errors
    /// Returns the TOML error, which says where the problem is.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// Reads `bulkhead.toml` from `root`, or the defaults when there is none.
    ///
    /// # Errors
    /// A file that exists but cannot be read or parsed is an error: scanning with
    /// half a configuration would give wrong answers.
    pub fn load(root: &Path) -> Result<Config, crate::DiscoverError> {
        let path = root.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text)
                .map_err(|message| crate::DiscoverError::Config { path, message }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(crate::DiscoverError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
