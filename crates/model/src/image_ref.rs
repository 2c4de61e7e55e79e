//! Container image references, parsed the way Docker and the OCI distribution spec read them.
//!
//! `nginx` means `docker.io/library/nginx` with no tag (which pulls `latest`);
//! `localhost:5000/team/app:1.2@sha256:...` carries a registry with a port, a
//! nested repository, a tag and a digest. Invalid references are rejected with
//! the reason, so a diagnostic can tell the user what to fix.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The registry Docker assumes when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A content digest such as `sha256:4f5c...`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    pub(crate) algorithm: String,
    pub(crate) hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Digest, ImageRefError> {
        let (algorithm, hex) = s.split_once(':').ok_or_else(|| {
            ImageRefError::Digest(s.to_string(), "missing ':' after the algorithm")
        })?;
        let valid_algorithm = !algorithm.is_empty()
            && algorithm.split(['+', '.', '-', '_']).all(|part| {
                part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && part.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if !valid_algorithm {
            return Err(ImageRefError::Digest(s.to_string(), "invalid algorithm"));
        }
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ImageRefError::Digest(
                s.to_string(),
                "digest is not hexadecimal",
            ));
        }
        let expected_len = match algorithm {
            "sha256" => Some(64),
            "sha512" => Some(128),
            _ => None,
        };
        match expected_len {
            Some(len) if hex.len() != len => {
                return Err(ImageRefError::Digest(
                    s.to_string(),
                    "wrong digest length for the algorithm",
                ));
            }
            None if hex.len() < 32 => {
                return Err(ImageRefError::Digest(
                    s.to_string(),
                    "digest shorter than 128 bits",
                ));
            }
            _ => {}
        }
        if (algorithm == "sha256" || algorithm == "sha512")
            && hex.chars().any(|c| c.is_ascii_uppercase())
        {
            return Err(ImageRefError::Digest(
                s.to_string(),
                "digest must be lowercase hexadecimal",
            ));
        }
        Ok(Digest {
            algorithm: algorithm.to_string(),
            hex: hex.to_string(),
        })
    }
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid image reference {0:?}: {1}")]
    Invalid(String, &'static str),
    #[error("invalid digest {0:?}: {1}")]
    Digest(String, &'static str),
}

/// How firmly a reference pins the bits it pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pinning {
    /// `@sha256:...`: immutable.
    Digest,
    /// A tag other than `latest`: mutable, but conventionally stable.
    Tag,
    /// The `latest` tag, written out.
    Latest,
    /// No tag and no digest: pulls `latest` implicitly.
    None,
}

impl fmt::Display for Pinning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pinning::Digest => "digest",
            Pinning::Tag => "tag",
            Pinning::Latest => "latest",
            Pinning::None => "none",
        })
    }
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) tag: Option<String>,
    pub(crate) digest: Option<Digest>,
}

impl ImageRef {
    /// Parses a reference in any form Docker accepts.
    ///
    /// # Errors
    /// Returns the reason when `s` is not a valid reference (uppercase repository,
    /// bad tag, malformed digest, empty path component, ...).
    pub fn parse(s: &str) -> Result<ImageRef, ImageRefError> {
        if s.is_empty() {
            return Err(ImageRefError::Empty);
        }
        let invalid = |reason| ImageRefError::Invalid(s.to_string(), reason);
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains whitespace"));
        }
        let (name_and_tag, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.parse::<Digest>()?)),
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].find(':') {
            Some(i) => (
                &name_and_tag[..last_slash + i],
                Some(&name_and_tag[last_slash + i + 1..]),
            ),
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(invalid)?;
        }
        if name.is_empty() {
            return Err(invalid("missing repository name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("repository name longer than 255 characters"));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => (first, rest),
            _ => (DEFAULT_REGISTRY, name),
        };
        validate_registry(registry).map_err(invalid)?;
        for component in path.split('/') {
            validate_path_component(component).map_err(invalid)?;
        }
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        Ok(ImageRef {
            registry: registry.to_string(),
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host, with its port if any (`docker.io` when none was written).
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// The repository path inside the registry (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest: the image's identity across versions.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    pub fn pinning(&self) -> Pinning {
        match (&self.digest, self.tag.as_deref()) {
            (Some(_), _) => Pinning::Digest,
            (None, Some("latest")) => Pinning::Latest,
            (None, Some(_)) => Pinning::Tag,
            (None, None) => Pinning::None,
        }
    }

    /// Whether this image comes from under `prefix`, compared on whole path
    /// components so that `registry.acme/base` does not admit `registry.acme/base-evil`.
    ///
    /// The prefix is read as Docker reads names: `busybox`, `library/busybox`,
    /// `docker.io/busybox` and `index.docker.io/busybox` all admit
    /// `docker.io/library/busybox`. A single Docker Hub component is also a
    /// namespace: `docker.io/bitnami` admits `docker.io/bitnami/redis`.
    pub fn is_under(&self, prefix: &str) -> bool {
        let name = self.name();
        normalized_prefixes(prefix).iter().any(|prefix| {
            name == *prefix
                || name
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// The short form Docker prints: `nginx:1.27` rather than `docker.io/library/nginx:1.27`.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        self.with_suffix(name)
    }

    fn with_suffix(&self, mut out: String) -> String {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
        out
    }
}

/// The fully qualified forms a name prefix may stand for (see `ImageRef::is_under`).
fn normalized_prefixes(prefix: &str) -> Vec<String> {
    let prefix = prefix.trim_end_matches('/');
    let (registry, path) = match prefix.split_once('/') {
        Some((first, rest)) if looks_like_registry(first) => (first, rest),
        None if looks_like_registry(prefix) => (prefix, ""),
        _ => (DEFAULT_REGISTRY, prefix),
    };
    let registry = if registry == "index.docker.io" {
        DEFAULT_REGISTRY
    } else {
        registry
    };
    if path.is_empty() {
        return vec![registry.to_string()];
    }
    let mut prefixes = vec![format!("{registry}/{path}")];
    if registry == DEFAULT_REGISTRY && !path.contains('/') {
        prefixes.push(format!("{registry}/library/{path}"));
    }
    prefixes
}

fn looks_like_registry(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn validate_registry(registry: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or("unterminated IPv6 registry address")?;
        if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err("invalid IPv6 registry address");
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("invalid registry port")?),
        };
        (None, port)
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let valid = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !valid {
            return Err("invalid registry host");
        }
    }
    if port.is_some_and(|port| {
        port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.parse::<u16>().is_err()
    }) {
        return Err("invalid registry port");
    }
    Ok(())
}

fn validate_path_component(component: &str) -> Result<(), &'static str> {
    if component.is_empty() {
        return Err("empty path component");
    }
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository name must be lowercase");
    }
    let bytes = component.as_bytes();
    if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return Err("path component must start and end with a letter or digit");
    }
    // Between alphanumeric runs only `.`, `_`, `__` or a run of `-` may stand.
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_lowercase() || bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let separator = &component[start..i];
        let allowed = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return Err("invalid character or separator in repository name");
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), &'static str> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok {
        return Err("tag must start with a letter, digit or '_'");
    }
    if tag.len() > MAX_TAG_LEN {
        return Err("tag longer than 128 characters");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
        return Err("invalid character in tag");
    }
    Ok(())
}

impl fmt::Display for ImageRef {
    /// The fully qualified form: `docker.io/library/nginx:1.27@sha256:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

impl FromStr for ImageRef {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<ImageRef, ImageRefError> {
        ImageRef::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ImageRef, D::Error> {
        let s = String::deserialize(deserializer)?;
        ImageRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
