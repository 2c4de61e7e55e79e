//! The base-images catalog: `images.json` at the root of the base images
//! repository lists every published base with its tag, digest, Dockerfile
//! and the image it is built on.
//!
//! ```json
//! [{ "name": "registry.acme.internal/base/go-1.22", "tag": "2024.10",
//!    "digest": "sha256:...", "dockerfile": "lang/go-1.22/Dockerfile",
//!    "base": "registry.acme.internal/base/debian-12:2024.10@sha256:..." }]
//! ```
//!
//! It is a convention of bulkhead's sample fleet and easy to produce from any
//! image build pipeline; without it, bases are known from scanner reports and
//! the registry.

use model::{Diagnostic, Digest, ImageRef, Provenance};
use serde::{Deserialize, Serialize};

/// The name of the catalog file in the base images repository.
pub const CATALOG_FILE: &str = "images.json";

/// One published base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImage {
    /// `registry/repository`.
    pub name: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
    /// The image it is built on.
    pub base: Option<ImageRef>,
    /// Its Dockerfile, relative to the fleet root.
    pub dockerfile: Option<String>,
    pub at: Provenance,
}

#[derive(Deserialize)]
struct RawBase {
    name: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    dockerfile: Option<String>,
    #[serde(default)]
    base: Option<String>,
}

/// Reads `images.json`; `repo` is the base repository's folder relative to the
/// fleet root, used to make Dockerfile paths fleet-relative.
pub fn parse_catalog(path: &str, repo: &str, text: &str) -> (Vec<BaseImage>, Vec<Diagnostic>) {
    let raw: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            return (
                Vec::new(),
                vec![crate::json_error(path, "base image catalog", &e)],
            );
        }
    };
    let mut bases = Vec::new();
    let mut diagnostics = Vec::new();
    let mut offset = 0;
    for value in raw {
        let entry: RawBase = match serde_json::from_value(value) {
            Ok(entry) => entry,
            Err(e) => {
                diagnostics.push(Diagnostic::error(
                    path,
                    None,
                    format!("base image entry skipped: {e}"),
                ));
                continue;
            }
        };
        let quoted = format!("\"{}\"", entry.name);
        if let Some(i) = text[offset..].find(&quoted) {
            offset += i + quoted.len();
        }
        let at = Provenance::new(path, crate::line_of(text, offset));
        let name = match ImageRef::parse(&entry.name) {
            Ok(r) if r.tag().is_none() && r.digest().is_none() => r.name(),
            Ok(_) => {
                diagnostics.push(Diagnostic::warning_at(
                    &at,
                    format!("name {:?} should carry no tag or digest", entry.name),
                ));
                continue;
            }
            Err(e) => {
                diagnostics.push(Diagnostic::error_at(&at, e.to_string()));
                continue;
            }
        };
        let digest = entry
            .digest
            .as_deref()
            .and_then(|d| match d.parse::<Digest>() {
                Ok(d) => Some(d),
                Err(e) => {
                    diagnostics.push(Diagnostic::warning_at(&at, e.to_string()));
                    None
                }
            });
        let base = entry
            .base
            .as_deref()
            .and_then(|b| match ImageRef::parse(b) {
                Ok(b) => Some(b),
                Err(e) => {
                    diagnostics.push(Diagnostic::warning_at(&at, e.to_string()));
                    None
                }
            });
        let dockerfile = entry.dockerfile.map(|d| {
            if repo.is_empty() {
                d
            } else {
                format!("{}/{d}", repo.trim_end_matches('/'))
            }
        });
        bases.push(BaseImage {
            name,
            tag: entry.tag,
            digest,
            base,
            dockerfile,
            at,
        });
    }
    (bases, diagnostics)
}
