//! An OCI distribution API client: what bulkhead needs to inspect images in a registry.
//!
//! Manifests and image indexes (OCI and Docker v2 media types, asked for with
//! the right `Accept` header and verified against their digest), config blobs
//! (`rootfs.diff_ids`), tag lists, tag -> digest resolution (`HEAD` and
//! `Docker-Content-Digest`), the base-image annotations
//! `org.opencontainers.image.base.name` / `.base.digest`, and pushes: blobs
//! (skipped when present), manifests, and whole images built by [`image`],
//! each checked against the digest the registry reports.
//!
//! Authentication follows the registry's challenge: a `401` with
//! `WWW-Authenticate: Bearer realm=...,service=...,scope=...` makes the client
//! fetch a token from the realm (with Basic credentials when it has them) and
//! retry; `Basic` challenges are answered with the credentials.
//!
//! Transport: plain `http://` only, through the blocking [`http_client`];
//! every request has a deadline.

pub mod image;
pub mod sha256;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_client as http;
use model::Digest;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// The annotation naming the image an image is built on.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json;q=0.9";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Url(String),
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: http::HttpError,
    },
    #[error("{what}: the registry answered {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{what}: {detail}")]
    Protocol { what: String, detail: String },
    #[error("{what}: authentication failed: {detail}")]
    Auth { what: String, detail: String },
}

/// A content descriptor (`mediaType`, `digest`, `size`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        manifests: Vec<Descriptor>,
    },
}

/// A manifest or index as served, with its verified digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub digest: Digest,
    pub kind: ManifestKind,
    pub annotations: BTreeMap<String, String>,
    pub bytes: Vec<u8>,
}

impl Manifest {
    /// The base image the annotations name (`org.opencontainers.image.base.name`), with its digest.
    pub fn base_annotation(&self) -> Option<(String, Option<Digest>)> {
        let name = self.annotations.get(BASE_NAME)?.clone();
        let digest = self
            .annotations
            .get(BASE_DIGEST)
            .and_then(|d| d.parse().ok());
        Some((name, digest))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The parts of an image config bulkhead reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub created: Option<String>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// Everything `bulkhead images inspect` shows about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub repository: String,
    pub reference: String,
    /// The digest of what the reference names (an index for multi-platform images).
    pub digest: Digest,
    /// The platform image manifest chosen (itself when not an index).
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// From the annotations of the image manifest, else of the index.
    pub base: Option<(String, Option<Digest>)>,
}

/// The outcome of a blob push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPush {
    pub digest: Digest,
    /// False when the repository already held the blob and nothing was sent.
    pub uploaded: bool,
}

/// A client for one registry.
#[derive(Debug)]
pub struct Client {
    base: http::Url,
    timeout: Duration,
    credentials: Option<(String, String)>,
    /// The last bearer token obtained, per scope.
    tokens: Mutex<BTreeMap<String, String>>,
    /// Set once the registry has asked for Basic credentials: later requests
    /// send them up front, so an upload's body never meets a 401 (a registry
    /// answering 401 before reading the body resets the connection under it).
    basic_wanted: AtomicBool,
}

impl Client {
    /// A client for the registry at `url` (`http://127.0.0.1:5000`).
    ///
    /// # Errors
    /// When the URL is not a plain `http://` URL.
    pub fn new(url: &str) -> Result<Client, RegistryError> {
        // The client is tested against plain-http registries only (the real
        // `docker-registry` here serves no TLS): https stays refused.
        if url.starts_with("https://") {
            return Err(RegistryError::Url(format!(
                "{url}: only http:// is supported; put an https registry behind a local mirror"
            )));
        }
        let base = http::Url::parse(url).map_err(RegistryError::Url)?;
        Ok(Client {
            base,
            timeout: Duration::from_secs(30),
            credentials: None,
            tokens: Mutex::new(BTreeMap::new()),
            basic_wanted: AtomicBool::new(false),
        })
    }

    /// Sets the deadline of each request (default 30 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Credentials for Basic challenges and for the token realm.
    #[must_use]
    pub fn with_credentials(mut self, user: &str, password: &str) -> Client {
        self.credentials = Some((user.to_string(), password.to_string()));
        self
    }

    /// `GET /v2/`: whether the registry speaks the distribution API (and lets us in).
    ///
    /// # Errors
    /// When it does not answer 200 (after authentication).
    pub fn ping(&self) -> Result<(), RegistryError> {
        self.send("GET", "/v2/", &[], &[], "GET /v2/").map(|_| ())
    }

    /// The digest a tag (or digest) names: `HEAD` on the manifest, `Docker-Content-Digest`.
    ///
    /// # Errors
    /// When the manifest does not exist or the registry sends no valid digest header.
    pub fn resolve(&self, repository: &str, reference: &str) -> Result<Digest, RegistryError> {
        let what = format!("resolving {repository}:{reference}");
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self.send(
            "HEAD",
            &path,
            &[("Accept", MANIFEST_ACCEPT.to_string())],
            &[],
            &what,
        )?;
        header_digest(&response, &what)
    }

    /// The manifest or index `reference` names, verified against its digest.
    ///
    /// # Errors
    /// When it does not exist, is not JSON of a known kind, or its bytes do not match the digest.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<Manifest, RegistryError> {
        let what = format!("manifest {repository}:{reference}");
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self.send(
            "GET",
            &path,
            &[("Accept", MANIFEST_ACCEPT.to_string())],
            &[],
            &what,
        )?;
        let computed = sha256_digest(&response.body);
        let expected = match reference.parse::<Digest>() {
            Ok(d) => Some(d),
            Err(_) => header_digest(&response, &what).ok(),
        };
        if let Some(expected) = &expected
            && expected.algorithm() == "sha256"
            && *expected != computed
        {
            return Err(RegistryError::Protocol {
                what,
                detail: format!("content digest {computed} does not match {expected}"),
            });
        }
        let raw: RawManifest =
            serde_json::from_slice(&response.body).map_err(|e| RegistryError::Protocol {
                what: what.clone(),
                detail: format!("invalid manifest JSON: {e}"),
            })?;
        let media_type = raw
            .media_type
            .or_else(|| response.header("Content-Type").map(str::to_string))
            .unwrap_or_default();
        let kind = match (raw.manifests, raw.config) {
            (Some(manifests), _) => ManifestKind::Index { manifests },
            (None, Some(config)) => ManifestKind::Image {
                config,
                layers: raw.layers,
            },
            (None, None) => {
                return Err(RegistryError::Protocol {
                    what,
                    detail: format!("neither an image manifest nor an index ({media_type})"),
                });
            }
        };
        Ok(Manifest {
            media_type,
            digest: computed,
            kind,
            annotations: raw.annotations,
            bytes: response.body,
        })
    }

    /// A blob, verified against its digest.
    ///
    /// # Errors
    /// When it does not exist or its bytes do not match.
    pub fn blob(&self, repository: &str, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {repository}@{digest}");
        let path = format!("/v2/{repository}/blobs/{digest}");
        let response = self.send("GET", &path, &[], &[], &what)?;
        if digest.algorithm() == "sha256" && sha256_digest(&response.body) != *digest {
            return Err(RegistryError::Protocol {
                what,
                detail: "content does not match the digest".into(),
            });
        }
        Ok(response.body)
    }

    /// An image config blob.
    ///
    /// # Errors
    /// As [`Client::blob`], or when it is not an image config.
    pub fn config(&self, repository: &str, digest: &Digest) -> Result<ImageConfig, RegistryError> {
        let bytes = self.blob(repository, digest)?;
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
            what: format!("config {repository}@{digest}"),
            detail: format!("invalid image config: {e}"),
        })
    }

    /// The repository's tags.
    ///
    /// # Errors
    /// When the repository does not exist or the answer is not a tag list.
    pub fn tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let what = format!("tags of {repository}");
        let response = self.send(
            "GET",
            &format!("/v2/{repository}/tags/list"),
            &[],
            &[],
            &what,
        )?;
        let list: TagList =
            serde_json::from_slice(&response.body).map_err(|e| RegistryError::Protocol {
                what,
                detail: format!("invalid tag list: {e}"),
            })?;
        let mut tags = list.tags.unwrap_or_default();
        tags.sort();
        Ok(tags)
    }

    /// Resolves `reference`, picks the `os/architecture` image from an index,
    /// and reads its config and base annotations.
    ///
    /// # Errors
    /// Any request failing, or an index without that platform.
    pub fn inspect(
        &self,
        repository: &str,
        reference: &str,
        platform: (&str, &str),
    ) -> Result<Inspection, RegistryError> {
        let top = self.manifest(repository, reference)?;
        let digest = top.digest.clone();
        let mut base = top.base_annotation();
        let manifest = match &top.kind {
            ManifestKind::Image { .. } => top,
            ManifestKind::Index { manifests } => {
                let chosen = manifests
                    .iter()
                    .find(|m| {
                        m.platform
                            .as_ref()
                            .is_some_and(|p| p.os == platform.0 && p.architecture == platform.1)
                    })
                    .ok_or_else(|| RegistryError::Protocol {
                        what: format!("{repository}:{reference}"),
                        detail: format!("the index has no {}/{} image", platform.0, platform.1),
                    })?;
                let image = self.manifest(repository, &chosen.digest.to_string())?;
                if let Some(b) = image.base_annotation() {
                    base = Some(b);
                }
                image
            }
        };
        let ManifestKind::Image { config, .. } = &manifest.kind else {
            return Err(RegistryError::Protocol {
                what: format!("{repository}:{reference}"),
                detail: "an index inside an index".into(),
            });
        };
        let config = self.config(repository, &config.digest)?;
        Ok(Inspection {
            repository: repository.to_string(),
            reference: reference.to_string(),
            digest,
            manifest,
            config,
            base,
        })
    }

    /// Whether the repository holds a blob: `HEAD /v2/NAME/blobs/DIGEST`.
    ///
    /// # Errors
    /// Any answer other than 2xx or 404 (after authentication).
    pub fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let what = format!("checking blob {repository}@{digest}");
        match self.send(
            "HEAD",
            &format!("/v2/{repository}/blobs/{digest}"),
            &[],
            &[],
            &what,
        ) {
            Ok(_) => Ok(true),
            Err(RegistryError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Uploads a blob unless the repository already holds it, and returns its digest.
    ///
    /// # Errors
    /// As [`Client::upload_blob`].
    pub fn push_blob(&self, repository: &str, bytes: &[u8]) -> Result<Digest, RegistryError> {
        self.upload_blob(repository, bytes).map(|p| p.digest)
    }

    /// Uploads a blob unless the repository already holds it (`HEAD` first),
    /// monolithically (`POST` then `PUT <Location>?digest=`), and checks the
    /// digest the registry reports against the bytes sent.
    ///
    /// # Errors
    /// When the registry refuses the upload, sends no `Location`, or reports
    /// another digest.
    pub fn upload_blob(&self, repository: &str, bytes: &[u8]) -> Result<BlobPush, RegistryError> {
        let digest = sha256_digest(bytes);
        if self.blob_exists(repository, &digest)? {
            return Ok(BlobPush {
                digest,
                uploaded: false,
            });
        }
        let what = format!("uploading blob {digest} to {repository}");
        let started = self.send(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            &[],
            &[],
            &what,
        )?;
        let location = started
            .header("Location")
            .ok_or_else(|| RegistryError::Protocol {
                what: what.clone(),
                detail: "no Location header".into(),
            })?;
        let target = match location.split_once("://") {
            Some(_) => {
                http::Url::parse(location)
                    .map_err(RegistryError::Url)?
                    .target
            }
            None => location.to_string(),
        };
        let separator = if target.contains('?') { '&' } else { '?' };
        let target = format!(
            "{target}{separator}digest={}",
            http::encode(&digest.to_string())
        );
        let done = self.send(
            "PUT",
            &target,
            &[("Content-Type", "application/octet-stream".to_string())],
            bytes,
            &what,
        )?;
        check_reported(&done, &digest, &what)?;
        Ok(BlobPush {
            digest,
            uploaded: true,
        })
    }

    /// Uploads a manifest under a tag or digest and returns its digest, as
    /// the registry reports it and checked against the bytes sent.
    ///
    /// # Errors
    /// When `reference` is a digest the bytes do not have, when the registry
    /// refuses the manifest (unknown blobs, invalid manifest), or reports
    /// another digest.
    pub fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let what = format!("pushing manifest {repository}:{reference}");
        let digest = sha256_digest(bytes);
        if let Ok(named) = reference.parse::<Digest>()
            && named != digest
        {
            return Err(RegistryError::Protocol {
                what,
                detail: format!("the manifest's digest is {digest}, not {named}"),
            });
        }
        let done = self.send(
            "PUT",
            &format!("/v2/{repository}/manifests/{reference}"),
            &[("Content-Type", media_type.to_string())],
            bytes,
            &what,
        )?;
        check_reported(&done, &digest, &what)?;
        Ok(digest)
    }

    /// Pushes a built image: its layers and config (each skipped when
    /// present), then its manifest under each tag. Returns the manifest digest.
    ///
    /// # Errors
    /// As [`Client::upload_blob`] and [`Client::push_manifest`].
    pub fn push_image(
        &self,
        repository: &str,
        image: &image::Image,
        tags: &[&str],
    ) -> Result<Digest, RegistryError> {
        for layer in &image.layers {
            self.upload_blob(repository, &layer.blob)?;
        }
        self.upload_blob(repository, &image.config)?;
        for tag in tags {
            self.push_manifest(repository, tag, OCI_MANIFEST, &image.manifest)?;
        }
        Ok(image.digest.clone())
    }

    /// Sends a request, answering one authentication challenge; a status
    /// outside 2xx is an error.
    fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
        body: &[u8],
        what: &str,
    ) -> Result<http::Response, RegistryError> {
        let url = http::Url {
            target: target.to_string(),
            ..self.base.clone()
        };
        let scope_key = scope_of(target, method);
        let mut all: Vec<(&str, String)> = headers.to_vec();
        if let Some(basic) = self
            .basic()
            .filter(|_| self.basic_wanted.load(Ordering::Relaxed))
        {
            all.push(("Authorization", basic));
        } else if let Some(token) = self
            .tokens
            .lock()
            .ok()
            .and_then(|t| t.get(&scope_key).cloned())
        {
            all.push(http::bearer(&token));
        }
        let wrap = |source| RegistryError::Http {
            what: what.to_string(),
            source,
        };
        let mut response = http::request(method, &url, &all, body, self.timeout).map_err(wrap)?;
        if response.status == 401 {
            let challenge = response
                .header("WWW-Authenticate")
                .unwrap_or_default()
                .to_string();
            let authorization = self.answer_challenge(&challenge, &scope_key, what)?;
            let mut retry: Vec<(&str, String)> = headers.to_vec();
            retry.push(("Authorization", authorization));
            response = http::request(method, &url, &retry, body, self.timeout).map_err(wrap)?;
            if response.status == 401 {
                return Err(RegistryError::Auth {
                    what: what.to_string(),
                    detail: "the registry refused the credentials".into(),
                });
            }
        }
        if !(200..300).contains(&response.status) {
            let mut text = String::from_utf8_lossy(&response.body).trim().to_string();
            if text.len() > 300 {
                text.truncate(300);
                text.push('…');
            }
            return Err(RegistryError::Status {
                what: what.to_string(),
                status: response.status,
                body: text,
            });
        }
        Ok(response)
    }

    /// The Basic `Authorization` value, when credentials are set.
    fn basic(&self) -> Option<String> {
        self.credentials
            .as_ref()
            .map(|(u, p)| format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))))
    }

    /// The `Authorization` value that answers a `WWW-Authenticate` challenge.
    fn answer_challenge(
        &self,
        challenge: &str,
        scope_key: &str,
        what: &str,
    ) -> Result<String, RegistryError> {
        let auth_error = |detail: String| RegistryError::Auth {
            what: what.to_string(),
            detail,
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let basic = self.basic();
        if scheme.eq_ignore_ascii_case("basic") {
            self.basic_wanted.store(true, Ordering::Relaxed);
            return basic.ok_or_else(|| {
                auth_error("the registry wants Basic credentials and none are set".into())
            });
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(auth_error(format!("unsupported challenge {challenge:?}")));
        }
        let params = parse_challenge(params);
        let realm = params
            .get("realm")
            .ok_or_else(|| auth_error(format!("Bearer challenge without realm: {challenge:?}")))?;
        let mut realm_url =
            http::Url::parse(realm).map_err(|e| auth_error(format!("token realm: {e}")))?;
        let mut query = Vec::new();
        for key in ["service", "scope"] {
            if let Some(v) = params.get(key) {
                query.push(format!("{key}={}", http::encode(v)));
            }
        }
        if !query.is_empty() {
            let sep = if realm_url.target.contains('?') {
                '&'
            } else {
                '?'
            };
            realm_url.target = format!("{}{sep}{}", realm_url.target, query.join("&"));
        }
        let headers: Vec<(&str, String)> =
            basic.into_iter().map(|b| ("Authorization", b)).collect();
        let response = http::request("GET", &realm_url, &headers, &[], self.timeout)
            .map_err(|e| auth_error(format!("token request: {e}")))?;
        if response.status != 200 {
            return Err(auth_error(format!(
                "the token server answered {}",
                response.status
            )));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&response.body)
            .map_err(|e| auth_error(format!("token answer: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_error("the token server sent no token".into()))?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(scope_key.to_string(), token.clone());
        }
        Ok(format!("Bearer {token}"))
    }
}

/// The `sha256:` digest of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    format!("sha256:{}", sha256::hex(bytes))
        .parse()
        .expect("a sha256 hex string is a valid digest")
}

/// Checks the `Docker-Content-Digest` of a push's answer against what was sent.
fn check_reported(
    response: &http::Response,
    sent: &Digest,
    what: &str,
) -> Result<(), RegistryError> {
    let reported = header_digest(response, what)?;
    if reported != *sent {
        return Err(RegistryError::Protocol {
            what: what.to_string(),
            detail: format!(
                "the registry reports digest {reported} for content whose digest is {sent}"
            ),
        });
    }
    Ok(())
}

fn header_digest(response: &http::Response, what: &str) -> Result<Digest, RegistryError> {
    let value =
        response
            .header("Docker-Content-Digest")
            .ok_or_else(|| RegistryError::Protocol {
                what: what.to_string(),
                detail: "no Docker-Content-Digest header".into(),
            })?;
    value.parse().map_err(|e| RegistryError::Protocol {
        what: what.to_string(),
        detail: format!("Docker-Content-Digest: {e}"),
    })
}

/// The token cache key: repository and whether the request writes.
fn scope_of(target: &str, method: &str) -> String {
    let repo = target
        .strip_prefix("/v2/")
        .and_then(|r| {
            ["/manifests/", "/blobs/", "/tags/"]
                .iter()
                .find_map(|m| r.find(m).map(|i| &r[..i]))
        })
        .unwrap_or("");
    let write = matches!(method, "PUT" | "POST" | "PATCH" | "DELETE");
    format!("{repo}:{}", if write { "push" } else { "pull" })
}

/// `realm="https://auth",service="registry",scope="repository:a:pull"` -> map.
pub fn parse_challenge(params: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        rest = remaining.trim_start_matches([',', ' ']);
    }
    out
}

#[cfg(test)]
mod tests;
