//! Release versions: `vMAJOR.MINOR.PATCH` tags, their order, the size of the
//! step between two of them, and how a pin (`v1.3.0`, `1.3.0`, `1.3`, `~latest`,
//! a commit id) resolves to a release.

use model::Diagnostic;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// A semantic version. Build metadata (`+...`) is dropped, as semver says it
/// does not take part in precedence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// The pre-release part after `-` (`rc.1`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<String>,
}

/// Why a text is not a semantic version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a release version (expected vMAJOR.MINOR.PATCH)")]
pub struct VersionError {
    pub text: String,
}

impl Version {
    /// Parses `v1.2.3`, `1.2.3` and `1.2.3-rc.1`; a leading `v` is optional.
    ///
    /// # Errors
    /// When the text is not three dot-separated numbers (optionally followed by
    /// a pre-release), such as `latest`, `v1.2` or `1.2.x`.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let error = || VersionError {
            text: text.to_string(),
        };
        let bare = text.strip_prefix('v').unwrap_or(text);
        let bare = bare.split_once('+').map_or(bare, |(v, _)| v);
        let (core, pre) = match bare.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => (core, Some(pre.to_string())),
            Some(_) => return Err(error()),
            None => (bare, None),
        };
        let mut numbers = core.split('.').map(|part| {
            let leading_zero = part.len() > 1 && part.starts_with('0');
            if part.is_empty() || leading_zero || !part.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                part.parse::<u64>().ok()
            }
        });
        match (
            numbers.next().flatten(),
            numbers.next().flatten(),
            numbers.next().flatten(),
            numbers.next(),
        ) {
            (Some(major), Some(minor), Some(patch), None) => Ok(Version {
                major,
                minor,
                patch,
                pre,
            }),
            _ => Err(error()),
        }
    }

    /// The size of the step from `self` to `newer`, read the way Cargo reads
    /// versions: below 1.0.0 the minor number is the compatibility boundary, so
    /// `0.8.0 -> 0.9.0` is a major step and `0.8.0 -> 0.8.1` a minor one.
    pub fn bump_to(&self, newer: &Version) -> Bump {
        if newer <= self {
            return Bump::None;
        }
        if newer.major != self.major {
            return Bump::Major;
        }
        if self.major == 0 {
            return if newer.minor != self.minor {
                Bump::Major
            } else {
                Bump::Minor
            };
        }
        if newer.minor != self.minor {
            Bump::Minor
        } else {
            Bump::Patch
        }
    }

    /// The compatibility line the version belongs to: the major number, or
    /// `0.minor` below 1.0.0.
    pub fn line(&self) -> (u64, u64) {
        if self.major == 0 {
            (0, self.minor)
        } else {
            (self.major, 0)
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                // A pre-release comes before its release.
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => compare_pre(a, b),
            })
    }
}

/// Semver precedence of pre-release identifiers: numeric ones compare as
/// numbers and sort before alphanumeric ones; a longer list wins a tie.
fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// How big a release step is (or must be), from nothing to major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    None,
    Patch,
    Minor,
    Major,
}

impl fmt::Display for Bump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bump::None => "none",
            Bump::Patch => "patch",
            Bump::Minor => "minor",
            Bump::Major => "major",
        })
    }
}

/// A git tag of the templates repository and the commit it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    pub commit: String,
}

/// A tag that names a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub tag: String,
    pub version: Version,
    pub commit: String,
}

/// The releases of a templates repository, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Releases {
    releases: Vec<Release>,
}

impl Releases {
    /// Keeps the tags that are release versions. Every other tag (`latest`,
    /// `v1`, `nightly-2024`) becomes an info diagnostic on `repo`, so a typo in
    /// a release tag is visible instead of silently ignored.
    pub fn from_tags(repo: &str, tags: &[Tag]) -> (Releases, Vec<Diagnostic>) {
        let mut releases = Vec::new();
        let mut diagnostics = Vec::new();
        for tag in tags {
            match Version::parse(&tag.name) {
                Ok(version) => releases.push(Release {
                    tag: tag.name.clone(),
                    version,
                    commit: tag.commit.clone(),
                }),
                Err(e) => diagnostics.push(Diagnostic {
                    path: repo.to_string(),
                    line: None,
                    severity: model::Severity::Info,
                    message: format!("tag {}: {e}; not a release, ignored", tag.name),
                }),
            }
        }
        // `v1.2.0` and `1.2.0` may both exist; the first in tag order wins, deterministically.
        releases.sort_by(|a, b| a.version.cmp(&b.version).then_with(|| a.tag.cmp(&b.tag)));
        releases.dedup_by(|b, a| {
            let duplicate = a.version == b.version;
            if duplicate {
                diagnostics.push(Diagnostic::warning(
                    repo,
                    None,
                    format!(
                        "tags {} and {} name the same version; using {}",
                        a.tag, b.tag, a.tag
                    ),
                ));
            }
            duplicate
        });
        (Releases { releases }, diagnostics)
    }

    pub fn all(&self) -> &[Release] {
        &self.releases
    }

    /// The newest release that is not a pre-release.
    pub fn latest(&self) -> Option<&Release> {
        self.releases.iter().rev().find(|r| r.version.pre.is_none())
    }

    /// The release with this exact tag name.
    pub fn by_tag(&self, tag: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.tag == tag)
    }

    /// The release a pin means. Accepts the tag itself (`v1.3.0`), the version
    /// without `v` (`1.3.0`, as GitLab components write it), a partial version
    /// (`1.3`, `v1`: the newest matching release, as GitLab components and
    /// GitHub major tags resolve), `~latest`, and a commit id (or a prefix of
    /// at least 7 hex digits) that a release tag points at.
    pub fn resolve(&self, pin: &str) -> Option<&Release> {
        let pin = pin.trim();
        if let Some(release) = self.by_tag(pin) {
            return Some(release);
        }
        if pin == "~latest" {
            return self.latest();
        }
        if let Ok(version) = Version::parse(pin) {
            return self.releases.iter().find(|r| r.version == version);
        }
        // A commit id (or a prefix of one) that a release points at; checked before
        // partial versions because `1234567` is a number too.
        let is_commit = pin.len() >= 7 && pin.bytes().all(|b| b.is_ascii_hexdigit());
        if is_commit {
            let pin = pin.to_ascii_lowercase();
            if let Some(release) = self
                .releases
                .iter()
                .rev()
                .find(|r| r.commit.starts_with(&pin))
            {
                return Some(release);
            }
        }
        let bare = pin.strip_prefix('v').unwrap_or(pin);
        let parts: Vec<Option<u64>> = bare.split('.').map(|p| p.parse().ok()).collect();
        if !parts.is_empty() && parts.len() < 3 && parts.iter().all(Option::is_some) {
            let parts: Vec<u64> = parts.into_iter().flatten().collect();
            return self.releases.iter().rev().find(|r| {
                r.version.pre.is_none()
                    && r.version.major == parts[0]
                    && parts.get(1).is_none_or(|m| r.version.minor == *m)
            });
        }
        None
    }
}

/// Writes `version` the way `like` was written: with or without the leading
/// `v` (component pins say `1.3.0`, tags and workflow refs `v1.3.0`).
pub fn spelled_like(version: &str, like: &str) -> String {
    let bare = version.strip_prefix('v').unwrap_or(version);
    if like.starts_with('v') {
        format!("v{bare}")
    } else {
        bare.to_string()
    }
}

#[cfg(test)]
mod tests;
