//! The lab's infrastructure around its services: the images it publishes to
//! its OCI registry, the admission webhook's policy and CA, its dpkg hosts,
//! and the small clients the scenarios use to reach them (an AdmissionReview
//! over TLS, a process's request counters).
//!
//! Images are built by [`registry::image`], deterministically: an OS base is
//! one layer with its package list, a language base adds a layer on top, an
//! app adds one more; each manifest names its base in the
//! `org.opencontainers.image.base.*` annotations. The same fleet gives the
//! same digests, so a rebuild with a fixed package is what changes a digest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use registry::image::{self, ImageSpec, LayerFiles};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::up::FleetService;

/// What the lab published to its registry, relative to DIR.
pub const REGISTRY_JSON: &str = "registry.json";
/// The admission webhook's Gatekeeper policies, relative to DIR.
pub const POLICY_DIR: &str = "policy";
/// The constraint listing image digests the webhook refuses.
pub const WITHDRAWN_DIGESTS: &str = "policy/withdrawn-digests.yaml";
/// The webhook's CA certificate (PEM), written once it has started.
pub const WEBHOOK_CA: &str = "webhook-ca.pem";
/// The lab's dpkg hosts and their inventory, relative to DIR.
pub const HOSTS_DIR: &str = "hosts";
pub const HOSTS_INVENTORY: &str = "hosts/hosts.yaml";
/// The package the lab's OS base ships in a vulnerable and a fixed version.
pub const VULNERABLE_PACKAGE: (&str, &str, &str) = ("libexpat1", "2.5.0-1", "2.5.0-1+deb12u1");
/// The version the lab's services report, and the tag of their images.
pub const SERVICE_VERSION: &str = "1.0.0";

/// `docker-registry`'s configuration: loopback, storage in `storage`, no auth.
pub fn registry_config(addr: SocketAddr, storage: &Path) -> String {
    format!(
        "version: 0.1\nlog:\n  level: warn\n  formatter: json\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
        storage.display()
    )
}

/// One image in the lab's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The name the fleet uses (`registry.acme.internal/base/debian-12`).
    pub name: String,
    /// Its repository in the lab's registry (`base/debian-12`).
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// The image it is built on, `name:tag@digest`.
    pub base: Option<String>,
    /// For an app image: the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl Published {
    /// `name:tag@digest`, as a manifest pins it.
    pub fn reference(&self) -> String {
        format!("{}:{}@{}", self.name, self.tag, self.digest)
    }

    /// The same image in the lab's registry: `HOST:PORT/repository:tag`.
    pub fn local(&self, registry: &str) -> String {
        let host = registry.trim_start_matches("http://");
        format!("{host}/{}:{}", self.repository, self.tag)
    }
}

/// `DIR/registry.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegistryRecord {
    pub url: String,
    pub images: Vec<Published>,
    /// How long publishing took.
    pub ms: u64,
}

impl RegistryRecord {
    /// The newest published image called `name` (with `service` for app images).
    pub fn find(&self, name: &str) -> Option<&Published> {
        self.images.iter().rev().find(|p| p.name == name)
    }

    /// Reads `DIR/registry.json`.
    ///
    /// # Errors
    /// It is missing or malformed.
    pub fn read(dir: &Path) -> Result<RegistryRecord, String> {
        let path = dir.join(REGISTRY_JSON);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes `DIR/registry.json` through a temporary file.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let path = dir.join(REGISTRY_JSON);
        let tmp = dir.join(format!("{REGISTRY_JSON}.tmp"));
        let text = serde_json::to_string_pretty(self).unwrap_or_default() + "\n";
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

/// An image name without its tag and digest.
pub fn name_of(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => no_digest,
    }
}

/// The repository path of `name` under its registry host.
fn repository_of(name: &str) -> String {
    match name.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') => rest.to_string(),
        _ => name.to_string(),
    }
}

/// What a base image is made of, as the lab builds it.
#[derive(Debug, Clone)]
struct Base {
    name: String,
    tag: String,
    /// Its own base: a published one by name, or an upstream `name:tag@digest`.
    parent: Option<String>,
}

/// Reads `base-images/images.json`: OS bases first, then the bases built on them.
fn bases(dir: &Path) -> Result<Vec<Base>, String> {
    let path = dir.join("base-images/images.json");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let list: Vec<Value> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(list
        .iter()
        .filter_map(|b| {
            Some(Base {
                name: b["name"].as_str()?.to_string(),
                tag: b["tag"].as_str().unwrap_or("latest").to_string(),
                parent: b["base"].as_str().map(String::from),
            })
        })
        .collect())
}

/// The files of an OS base: its release and its package list (with the
/// package the lab's CVE is about, vulnerable or fixed).
fn os_layer(name: &str, fixed: bool) -> LayerFiles {
    let (package, vulnerable, fixed_version) = VULNERABLE_PACKAGE;
    let version = if fixed { fixed_version } else { vulnerable };
    let status = format!(
        "Package: base-files\nStatus: install ok installed\nVersion: 12.4\n\nPackage: {package}\nStatus: install ok installed\nVersion: {version}\n"
    );
    LayerFiles {
        files: vec![
            (
                "etc/os-release".into(),
                format!("NAME={name}\n").into_bytes(),
            ),
            ("var/lib/dpkg/status".into(), status.into_bytes()),
        ],
        gzip: true,
    }
}

fn file_layer(path: String, text: String) -> LayerFiles {
    LayerFiles {
        files: vec![(path, text.into_bytes())],
        gzip: true,
    }
}

/// Builds and pushes images to the lab's registry.
#[derive(Debug)]
pub struct Publisher {
    client: registry::Client,
    url: String,
    /// Layers of each pushed image by name, for the images built on it.
    layers: BTreeMap<String, Vec<LayerFiles>>,
    pub record: RegistryRecord,
}

impl Publisher {
    /// A publisher for the registry at `url` (`http://HOST:PORT`).
    ///
    /// # Errors
    /// The URL is not a plain http:// URL.
    pub fn new(url: &str) -> Result<Publisher, String> {
        let client = registry::Client::new(url)
            .map_err(|e| e.to_string())?
            .with_timeout(Duration::from_secs(10));
        Ok(Publisher {
            client,
            url: url.to_string(),
            layers: BTreeMap::new(),
            record: RegistryRecord {
                url: url.to_string(),
                ..RegistryRecord::default()
            },
        })
    }

    /// Waits until the registry answers `/v2/`.
    ///
    /// # Errors
    /// It did not within `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.client.ping() {
                Ok(()) => return Ok(()),
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(format!("the registry at {} did not answer: {e}", self.url));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Builds `layers` on top of `base` (a published name) and pushes it as `name:tag`.
    fn push(
        &mut self,
        name: &str,
        tag: &str,
        base: Option<&str>,
        upstream: Option<&str>,
        own: LayerFiles,
        service: Option<&str>,
    ) -> Result<Published, String> {
        let (mut layers, base_ref) = match base.and_then(|b| self.record.find(b).cloned()) {
            Some(parent) => (
                self.layers.get(&parent.name).cloned().unwrap_or_default(),
                Some((format!("{}:{}", parent.name, parent.tag), parent.digest)),
            ),
            None => {
                // An upstream base the lab does not publish: named, not layered.
                let pinned = upstream
                    .and_then(|u| u.split_once('@'))
                    .map(|(n, d)| (n.to_string(), d.to_string()));
                (Vec::new(), pinned)
            }
        };
        layers.push(own);
        let base_digest = match &base_ref {
            Some((n, d)) => Some((
                n.clone(),
                d.parse::<model::Digest>()
                    .map_err(|e| format!("{name}: base digest {d}: {e}"))?,
            )),
            None => None,
        };
        let built = image::build(&ImageSpec {
            os: "linux".into(),
            architecture: "amd64".into(),
            layers: layers.clone(),
            base: base_digest,
        })
        .map_err(|e| format!("building {name}: {e}"))?;
        let repository = repository_of(name);
        let digest = self
            .client
            .push_image(&repository, &built, &[tag])
            .map_err(|e| format!("pushing {name}:{tag}: {e}"))?;
        self.layers.insert(name.to_string(), layers);
        let published = Published {
            name: name.to_string(),
            repository,
            tag: tag.to_string(),
            digest: digest.to_string(),
            base: base_ref.map(|(n, d)| format!("{n}@{d}")),
            service: service.map(String::from),
        };
        self.record.images.push(published.clone());
        Ok(published)
    }

    /// Publishes the bases of `base-images/images.json`: all of them with
    /// the vulnerable package, or, with `fixed: Some(ROOT)`, ROOT rebuilt
    /// with the fixed package and every base built on it, tagged `tag`.
    ///
    /// # Errors
    /// images.json is unreadable, or a push fails.
    pub fn publish_bases(
        &mut self,
        dir: &Path,
        fixed: Option<&str>,
        tag: Option<&str>,
    ) -> Result<Vec<Published>, String> {
        let bases = bases(dir)?;
        let names: Vec<String> = bases.iter().map(|b| b.name.clone()).collect();
        let parent_of = |b: &Base| {
            b.parent
                .as_deref()
                .map(name_of)
                .filter(|p| names.iter().any(|n| n == p))
                .map(String::from)
        };
        let mut out: Vec<Published> = Vec::new();
        // Parents before children, whatever order the file lists them in.
        let mut pending: Vec<Base> = bases;
        while !pending.is_empty() {
            let before = pending.len();
            let mut later = Vec::new();
            for b in pending {
                let parent = parent_of(&b);
                let parent_done = parent
                    .as_deref()
                    .is_none_or(|p| out.iter().any(|o| o.name == p));
                let wanted = match fixed {
                    None => true,
                    Some(root) => b.name == root || parent_done && parent.is_some(),
                };
                if !parent_done {
                    later.push(b);
                    continue;
                }
                if !wanted {
                    continue;
                }
                let own = match &parent {
                    None => os_layer(&b.name, fixed.is_some()),
                    Some(_) => file_layer(
                        format!("opt/{}/RELEASE", repository_of(&b.name).replace('/', "-")),
                        format!("{}\n", b.name),
                    ),
                };
                let tag = tag.unwrap_or(&b.tag).to_string();
                out.push(self.push(
                    &b.name,
                    &tag,
                    parent.as_deref(),
                    b.parent.as_deref(),
                    own,
                    None,
                )?);
            }
            if later.len() == before {
                // What is left is built on a base that was not rebuilt.
                break;
            }
            pending = later;
        }
        Ok(out)
    }

    /// Publishes one app image per service, `apps/NAME:version`, on the base
    /// its Dockerfile names (the newest published image of that name).
    ///
    /// # Errors
    /// A push fails.
    pub fn publish_apps(
        &mut self,
        services: &[(String, String, Option<String>)],
        version: &str,
    ) -> Result<Vec<Published>, String> {
        let mut out = Vec::new();
        for (service, image, base) in services {
            let base_name = base.as_deref().map(name_of);
            let own = file_layer(
                format!("app/{service}/VERSION"),
                format!("{service} {version}\n"),
            );
            out.push(self.push(
                name_of(image),
                version,
                base_name,
                base.as_deref(),
                own,
                Some(service),
            )?);
        }
        Ok(out)
    }
}

/// The live services' (name, image name, base image reference), from the ground truth.
///
/// # Errors
/// The ground truth is unreadable.
pub fn app_images(
    dir: &Path,
    live: &[FleetService],
) -> Result<Vec<(String, String, Option<String>)>, String> {
    let path = dir.join(crate::generate::GROUND_TRUTH);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let truth: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(live
        .iter()
        .map(|s| {
            let entry = truth["services"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["name"] == s.name.as_str());
            let image = s
                .image
                .clone()
                .unwrap_or_else(|| format!("registry.acme.internal/apps/{}", s.name));
            let base = entry
                .and_then(|t| t["base_image"].as_str())
                .map(String::from);
            (s.name.clone(), name_of(&image).to_string(), base)
        })
        .collect())
}

/// Publishes the lab's bases and the live services' images, and records them in `DIR/registry.json`.
///
/// # Errors
/// The registry does not answer, or a push fails.
pub fn publish(dir: &Path, url: &str, live: &[FleetService]) -> Result<RegistryRecord, String> {
    let started = std::time::Instant::now();
    let mut publisher = Publisher::new(url)?;
    publisher.wait_ready(Duration::from_secs(30))?;
    publisher.publish_bases(dir, None, None)?;
    let apps = app_images(dir, live)?;
    publisher.publish_apps(&apps, SERVICE_VERSION)?;
    publisher.record.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    publisher.record.write(dir)?;
    Ok(publisher.record)
}

/// The Gatekeeper template and constraint that refuse withdrawn image digests.
pub fn withdrawn_digests_policy(digests: &[String]) -> String {
    let mut list = String::new();
    for d in digests {
        let _ = writeln!(list, "      - \"{d}\"");
    }
    let list = if list.is_empty() {
        " []\n".to_string()
    } else {
        format!("\n{list}")
    };
    format!(
        "# Written by `bulkhead lab up`; the cve scenario adds the digests a CRITICAL CVE withdraws.
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: labwithdrawndigests
spec:
  crd:
    spec:
      names:
        kind: LabWithdrawnDigests
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package labwithdrawndigests

        containers[c] {{ c := input.review.object.spec.containers[_] }}
        containers[c] {{ c := input.review.object.spec.template.spec.containers[_] }}

        violation[{{\"msg\": msg}}] {{
          c := containers[_]
          d := input.parameters.digests[_]
          endswith(c.image, concat(\"\", [\"@\", d]))
          msg := sprintf(\"container <%v> runs %v: digest %v is withdrawn (a CRITICAL CVE)\", [c.name, c.image, d])
        }}
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: LabWithdrawnDigests
metadata:
  name: withdrawn-digests
spec:
  parameters:
    digests:{list}"
    )
}

/// The constraint that refuses images without a digest.
pub const DIGEST_REQUIRED_POLICY: &str = "# Written by `bulkhead lab up`: workloads admitted to the lab pin every image by digest.
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: labdigestrequired
spec:
  crd:
    spec:
      names:
        kind: LabDigestRequired
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package labdigestrequired

        containers[c] { c := input.review.object.spec.containers[_] }
        containers[c] { c := input.review.object.spec.template.spec.containers[_] }

        violation[{\"msg\": msg}] {
          c := containers[_]
          not contains(c.image, \"@sha256:\")
          msg := sprintf(\"container <%v> runs %v without a digest: pin it as NAME:TAG@sha256:...\", [c.name, c.image])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: LabDigestRequired
metadata:
  name: digest-required
";

/// Writes the webhook's policies into `DIR/policy`, keeping a withdrawn-digests list already there.
///
/// # Errors
/// The folder cannot be written.
pub fn write_policies(dir: &Path) -> Result<PathBuf, String> {
    let folder = dir.join(POLICY_DIR);
    std::fs::create_dir_all(&folder).map_err(|e| format!("creating {}: {e}", folder.display()))?;
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(folder.join("digest-required.yaml"), DIGEST_REQUIRED_POLICY)?;
    let withdrawn = dir.join(WITHDRAWN_DIGESTS);
    if !withdrawn.is_file() {
        write(withdrawn, &withdrawn_digests_policy(&[]))?;
    }
    Ok(folder)
}

/// The `caBundle:` the webhook printed last in its log, as PEM.
pub fn ca_from_log(log: &str) -> Option<String> {
    use base64::Engine as _;
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("caBundle: "))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Builds the lab's hosts anew: dpkg roots on demo 1.0, each with a
/// repository offering its next release (1.3 fails its health check), and
/// the inventory `patch` reads.
///
/// # Errors
/// dpkg or apt-ftparchive fail, or a file cannot be written.
pub fn build_hosts(dir: &Path, releases: &[(&str, &'static str)]) -> Result<PathBuf, String> {
    let folder = dir.join(HOSTS_DIR);
    let inventory = dir.join(HOSTS_INVENTORY);
    // Fresh hosts every time: a patch scenario starts from demo 1.0 on every host.
    match std::fs::remove_dir_all(&folder) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", folder.display())),
    }
    let bed = hostops::testbed::Testbed::new(&folder.join("bed"))?;
    let mut yaml = String::from(
        "# Written by `bulkhead lab up`: the lab's hosts are dpkg roots (transport local).\nhosts:\n",
    );
    for (host, version) in releases {
        let repo = bed.repo(
            &format!("{host}-demo-{version}"),
            &[
                ("demo", version),
                ("libdemo", "1.1"),
                ("demo-extras", "1.1"),
                ("libdemo", "1.0"),
                ("demo", "1.0"),
            ],
        )?;
        let root = bed.root(host, &repo, &[("libdemo", "1.0"), ("demo", "1.0")])?;
        let relative = root
            .strip_prefix(&folder)
            .unwrap_or(&root)
            .display()
            .to_string();
        let _ = write!(
            yaml,
            "  - name: {host}\n    groups: [lab]\n    transport: {{local: {relative}}}\n    maintenance_window: {MAINTENANCE_WINDOW}\n    health_checks:\n      - command: '{}'\n",
            hostops::testbed::HEALTH_COMMAND
        );
    }
    std::fs::write(&inventory, yaml)
        .map_err(|e| format!("writing {}: {e}", inventory.display()))?;
    Ok(inventory)
}

/// When the lab's hosts may be patched.
pub const MAINTENANCE_WINDOW: &str =
    r#"{days: [sat, sun], start: "02:00", end: "05:00", timezone: UTC}"#;

/// The lab's hosts and the demo release each one's repository offers: the
/// third fails its health check after the upgrade.
pub const HOSTS: &[(&str, &str)] = &[
    ("lab-host-1", "1.1"),
    ("lab-host-2", "1.1"),
    ("lab-host-3", "1.3"),
    ("lab-host-4", "1.1"),
];

/// Posts `body` to `https://ADDR/PATH`, trusting only the CA in `ca_pem`.
/// Returns the status and body.
///
/// # Errors
/// The CA is unreadable, TLS fails, or the answer is not HTTP.
pub fn post_tls(
    addr: &str,
    ca_pem: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the webhook CA: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the webhook CA: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())
        .and_then(|()| tls.write_all(body))
        .and_then(|()| tls.flush())
        .map_err(|e| format!("https://{addr}{path}: {e}"))?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // A server that closes without close_notify still sent its whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(format!("https://{addr}{path}: {e}")),
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("https://{addr}{path}: no HTTP answer"))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("https://{addr}{path}: no status in {head:?}"))?;
    Ok((status, answer[split + 4..].to_vec()))
}

/// The share of a service's requests the gateway answered with 5xx over
/// the last 10 s, in PromQL (`{{service}}` is the rollout's placeholder); 0
/// without errors, and without traffic.
pub const ERROR_RATE_QUERY: &str = r#"(sum(rate(bulkhead_gateway_requests_total{service="{{service}}",code="5xx"}[10s])) or vector(0)) / (sum(rate(bulkhead_gateway_requests_total{service="{{service}}"}[10s])) > 0 or vector(1))"#;

/// The `provider` of a rollout gate on a service's error rate, in YAML
/// flow form: PromQL against the lab's Prometheus when it runs, else the
/// gateway's own metrics (the rollout then scrapes the gateway's admin API).
pub fn error_rate_provider(prometheus: Option<&str>) -> String {
    match prometheus {
        Some(address) => format!(
            "{{prometheus: {{address: \"{address}\", query: \"{}\"}}}}",
            ERROR_RATE_QUERY.replace('"', "\\\"")
        ),
        None => "{gateway: {metric: error-rate}}".to_string(),
    }
}

/// The sum of a process's request counters in its `/metrics` text: the
/// first of `names` present.
pub fn requests_total(metrics: &str, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|name| {
        let mut found = false;
        let mut sum = 0.0;
        for line in metrics.lines().filter(|l| !l.starts_with('#')) {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                continue;
            }
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                found = true;
                sum += v;
            }
        }
        found.then_some(sum)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counters_are_summed_over_their_labels() {
        let text = "# TYPE http_requests_total counter\nhttp_requests_total{code=\"2xx\"} 10\nhttp_requests_total{code=\"5xx\"} 2\nhttp_requests_total_other 99\n";
        assert_eq!(
            requests_total(text, &["nope", "http_requests_total"]),
            Some(12.0)
        );
        assert_eq!(requests_total(text, &["nope"]), None);
    }

    #[test]
    fn gates_read_prometheus_when_it_runs_and_the_gateway_otherwise() {
        assert_eq!(error_rate_provider(None), "{gateway: {metric: error-rate}}");
        let promql = error_rate_provider(Some("http://127.0.0.1:9090"));
        assert!(
            promql.starts_with("{prometheus: {address: \"http://127.0.0.1:9090\", query: \"(sum(rate(bulkhead_gateway_requests_total{service=\\\"{{service}}\\\",code=\\\"5xx\\\"}[10s]))"),
            "{promql}"
        );
    }

    #[test]
    fn names_and_repositories_drop_tags_digests_and_hosts() {
        assert_eq!(
            name_of("registry.acme.internal/base/go-1.22:2024.10@sha256:ab"),
            "registry.acme.internal/base/go-1.22"
        );
        assert_eq!(name_of("127.0.0.1:5000/apps/x"), "127.0.0.1:5000/apps/x");
        assert_eq!(
            repository_of("registry.acme.internal/base/go-1.22"),
            "base/go-1.22"
        );
        assert_eq!(repository_of("library/debian"), "library/debian");
    }

    #[test]
    fn the_ca_is_the_last_bundle_the_webhook_printed() {
        let log = "listening on https://127.0.0.1:1\ncaBundle: b2xk\nlistening on https://127.0.0.1:1\ncaBundle: bmV3\n";
        assert_eq!(ca_from_log(log).as_deref(), Some("new"));
        assert_eq!(ca_from_log("nothing\n"), None);
    }
}
