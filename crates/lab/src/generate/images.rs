//! The company base images: OS bases built from upstream images and language bases built on the
//! OS bases (the first two levels of the OS base -> language base -> app lineage), their
//! Dockerfiles, the published-image index `images.json`, and one Trivy report per image.

use serde::Serialize;

use super::rng::{digest, hex};
use super::truth::{BaseImage, Language};
use super::{Commit, FileEntry, RepoPlan, pretty_json};

pub(crate) const BASE_PREFIX: &str = "registry.acme.internal/base/";
pub(crate) const BASE_TAG: &str = "2024.10";
pub(crate) const BASE_REPO: &str = "base-images";
const CREATED: &str = "2024-10-14T06:00:00Z";

/// A vulnerability as the generator plants it; rendered into Trivy's shape.
struct Vuln {
    id: &'static str,
    package: &'static str,
    installed: &'static str,
    fixed: Option<&'static str>,
    severity: &'static str,
    title: &'static str,
}

struct OsBase {
    name: &'static str,
    /// The upstream image it is built FROM, without the digest.
    upstream: &'static str,
    family: &'static str,
    release: &'static str,
    /// Trivy `Type` of the OS package result.
    pkg_type: &'static str,
    install: &'static str,
    vulns: &'static [Vuln],
}

struct LangBase {
    name: &'static str,
    language: Language,
    os: &'static str,
    install: &'static str,
    /// Trivy `Target`, `Type` and findings of the language-package result, if any.
    lang_result: Option<(&'static str, &'static str, &'static [Vuln])>,
}

/// The planted critical CVE: exactly one OS base carries it.
pub(crate) const CRITICAL_CVE: &str = "CVE-2023-38545";
pub(crate) const CRITICAL_PACKAGE: &str = "curl";
pub(crate) const CRITICAL_OS: &str = "debian-12";

const OS_BASES: [OsBase; 3] = [
    OsBase {
        name: "debian-12",
        upstream: "docker.io/library/debian:12-slim",
        family: "debian",
        release: "12.7",
        pkg_type: "debian",
        install: "RUN apt-get update \\\n    && apt-get install -y --no-install-recommends ca-certificates curl tzdata \\\n    && rm -rf /var/lib/apt/lists/*\nRUN useradd --uid 10001 --create-home app\n",
        vulns: &[
            Vuln {
                id: CRITICAL_CVE,
                package: CRITICAL_PACKAGE,
                installed: "7.88.1-10+deb12u3",
                fixed: Some("7.88.1-10+deb12u4"),
                severity: "CRITICAL",
                title: "curl: heap based buffer overflow in the SOCKS5 proxy handshake",
            },
            Vuln {
                id: "CVE-2023-4911",
                package: "libc6",
                installed: "2.36-9+deb12u1",
                fixed: Some("2.36-9+deb12u3"),
                severity: "HIGH",
                title: "glibc: buffer overflow in ld.so leading to privilege escalation",
            },
            Vuln {
                id: "CVE-2023-50495",
                package: "libtinfo6",
                installed: "6.4-4",
                fixed: None,
                severity: "MEDIUM",
                title: "ncurses: segmentation fault via _nc_wrap_entry()",
            },
            Vuln {
                id: "CVE-2011-3374",
                package: "apt",
                installed: "2.6.1",
                fixed: None,
                severity: "LOW",
                title: "apt: it was found that apt-key in apt, all versions, do not correctly validate gpg keys",
            },
        ],
    },
    OsBase {
        name: "alpine-3.20",
        upstream: "docker.io/library/alpine:3.20",
        family: "alpine",
        release: "3.20.3",
        pkg_type: "alpine",
        install: "RUN apk add --no-cache ca-certificates tzdata \\\n    && adduser -D -u 10001 app\n",
        vulns: &[
            Vuln {
                id: "CVE-2024-6119",
                package: "libssl3",
                installed: "3.3.1-r3",
                fixed: Some("3.3.2-r0"),
                severity: "HIGH",
                title: "openssl: Possible denial of service in X.509 name checks",
            },
            Vuln {
                id: "CVE-2023-42363",
                package: "busybox",
                installed: "1.36.1-r29",
                fixed: None,
                severity: "MEDIUM",
                title: "busybox: use-after-free in awk",
            },
        ],
    },
    OsBase {
        name: "ubi-9",
        upstream: "registry.access.redhat.com/ubi9/ubi-minimal:9.4",
        family: "redhat",
        release: "9.4",
        pkg_type: "redhat",
        install: "RUN microdnf install -y ca-certificates tzdata shadow-utils \\\n    && microdnf clean all \\\n    && useradd --uid 10001 app\n",
        vulns: &[Vuln {
            id: "CVE-2024-2961",
            package: "glibc",
            installed: "2.34-100.el9",
            fixed: Some("2.34-100.el9_4.2"),
            severity: "HIGH",
            title: "glibc: Out of bounds write in iconv may lead to remote code execution",
        }],
    },
];

const LANG_BASES: [LangBase; 5] = [
    LangBase {
        name: "go-1.22",
        language: Language::Go,
        os: "debian-12",
        install: "# Go binaries are static; the base only adds what a service needs at run time.\nRUN mkdir -p /app && chown app /app\n",
        lang_result: Some((
            "usr/local/bin/healthcheck",
            "gobinary",
            &[Vuln {
                id: "CVE-2024-34156",
                package: "stdlib",
                installed: "v1.22.5",
                fixed: Some("1.22.7, 1.23.1"),
                severity: "HIGH",
                title: "encoding/gob: golang: Calling Decoder.Decode on a message which contains deeply nested structures can cause a panic due to stack exhaustion",
            }],
        )),
    },
    LangBase {
        name: "java-21",
        language: Language::Java,
        os: "ubi-9",
        install: "RUN microdnf install -y java-21-openjdk-headless \\\n    && microdnf clean all\nENV JAVA_TOOL_OPTIONS=\"-XX:MaxRAMPercentage=75\"\n",
        lang_result: Some((
            "usr/share/java/jackson-databind.jar",
            "jar",
            &[Vuln {
                id: "CVE-2022-42003",
                package: "com.fasterxml.jackson.core:jackson-databind",
                installed: "2.13.4",
                fixed: Some("2.12.7.1, 2.13.4.2"),
                severity: "HIGH",
                title: "jackson-databind: deep wrapper array nesting wrt UNWRAP_SINGLE_VALUE_ARRAYS",
            }],
        )),
    },
    LangBase {
        name: "python-3.12",
        language: Language::Python,
        os: "debian-12",
        install: "RUN apt-get update \\\n    && apt-get install -y --no-install-recommends python3.12 python3-pip \\\n    && rm -rf /var/lib/apt/lists/*\n",
        lang_result: Some((
            "Python",
            "python-pkg",
            &[Vuln {
                id: "CVE-2023-5752",
                package: "pip",
                installed: "23.2.1",
                fixed: Some("23.3"),
                severity: "MEDIUM",
                title: "pip: Mercurial configuration injectable in repo revision when installing via pip",
            }],
        )),
    },
    LangBase {
        name: "node-20",
        language: Language::Node,
        os: "alpine-3.20",
        install: "RUN apk add --no-cache nodejs-current npm\n",
        lang_result: Some((
            "Node.js",
            "node-pkg",
            &[Vuln {
                id: "CVE-2024-28863",
                package: "tar",
                installed: "6.2.0",
                fixed: Some("6.2.1"),
                severity: "MEDIUM",
                title: "node-tar: denial of service while parsing a tar file due to lack of folders depth validation",
            }],
        )),
    },
    LangBase {
        name: "rust-1.80",
        language: Language::Rust,
        os: "debian-12",
        install: "# Rust binaries link glibc dynamically; the OS base already has it.\nRUN mkdir -p /app && chown app /app\n",
        lang_result: None,
    },
];

/// The published base images, with everything derived from the seed.
#[derive(Debug, Clone)]
pub(crate) struct BaseCatalog {
    /// OS bases first, then language bases, as in `images.json`.
    pub(crate) images: Vec<BaseImage>,
    seed: u64,
}

impl BaseCatalog {
    pub(crate) fn new(seed: u64) -> Self {
        let os = OS_BASES.iter().map(|os| BaseImage {
            name: format!("{BASE_PREFIX}{}", os.name),
            tag: BASE_TAG.to_owned(),
            digest: digest(seed, &format!("image/{}", os.name)),
            dockerfile: format!("os/{}/Dockerfile", os.name),
            base: format!(
                "{}@{}",
                os.upstream,
                digest(seed, &format!("upstream/{}", os.upstream))
            ),
        });
        let lang = LANG_BASES.iter().map(|lang| BaseImage {
            name: format!("{BASE_PREFIX}{}", lang.name),
            tag: BASE_TAG.to_owned(),
            digest: digest(seed, &format!("image/{}", lang.name)),
            dockerfile: format!("lang/{}/Dockerfile", lang.name),
            base: pinned_ref(seed, lang.os),
        });
        Self {
            images: os.chain(lang).collect(),
            seed,
        }
    }

    /// The language base for apps written in `language`, as a repository name without tag.
    pub(crate) fn language_base(language: Language) -> String {
        let name = LANG_BASES
            .iter()
            .find(|lang| lang.language == language)
            .map_or("", |lang| lang.name);
        format!("{BASE_PREFIX}{name}")
    }

    /// `registry.acme.internal/base/<name>:<tag>@sha256:...` for a published base.
    pub(crate) fn pinned(&self, language: Language) -> String {
        let repository = Self::language_base(language);
        let name = repository.trim_start_matches(BASE_PREFIX);
        pinned_ref(self.seed, name)
    }

    /// Language base repositories that inherit the critical CVE from their OS base.
    pub(crate) fn critical_language_bases() -> Vec<String> {
        LANG_BASES
            .iter()
            .filter(|lang| lang.os == CRITICAL_OS)
            .map(|lang| format!("{BASE_PREFIX}{}", lang.name))
            .collect()
    }

    pub(crate) fn repo(&self) -> RepoPlan {
        let mut files = vec![FileEntry::new(
            "README.md",
            "# base-images\n\nThe company base images. OS bases (`os/`) are built from pinned upstream images;\nlanguage bases (`lang/`) are built on the OS bases; services build on the language bases.\n`images.json` lists every published image with its digest and its own base.\n\nOnly `registry.acme.internal/base/` is an approved registry for service final stages.\n",
        )];
        for (os, image) in OS_BASES.iter().zip(&self.images) {
            files.push(FileEntry::new(
                &image.dockerfile,
                &format!(
                    "# {name}: company OS base ({family} {release}) with CA certificates and a non-root user.\nFROM {from}\n{install}USER 10001\n",
                    name = os.name,
                    family = os.family,
                    release = os.release,
                    from = image.base,
                    install = os.install,
                ),
            ));
        }
        for (lang, image) in LANG_BASES.iter().zip(&self.images[OS_BASES.len()..]) {
            files.push(FileEntry::new(
                &image.dockerfile,
                &format!(
                    "# {name}: company {language} base on {os}.\nFROM {from}\nUSER root\n{install}USER 10001\nWORKDIR /app\n",
                    name = lang.name,
                    language = lang.language.as_str(),
                    os = lang.os,
                    from = image.base,
                    install = lang.install,
                ),
            ));
        }
        files.push(FileEntry::new("images.json", &pretty_json(&self.images)));
        RepoPlan {
            path: BASE_REPO.to_owned(),
            commits: vec![Commit {
                message: format!("Publish base images {BASE_TAG}"),
                date: "1728885600 +0000".to_owned(),
                files,
                tag: None,
            }],
        }
    }

    /// `reports/trivy/<base-name>.json`, one per published base image.
    pub(crate) fn trivy_reports(&self, dir: &str) -> Vec<FileEntry> {
        let mut out = Vec::new();
        for (os, image) in OS_BASES.iter().zip(&self.images) {
            let layers = vec![self.layer(os.name, 0, 29_149_632)];
            let results = vec![os_result(image, os, &layers[0])];
            out.push(self.report(dir, os.name, image, os, layers, results));
        }
        for (lang, image) in LANG_BASES.iter().zip(&self.images[OS_BASES.len()..]) {
            let Some(os) = OS_BASES.iter().find(|os| os.name == lang.os) else {
                continue;
            };
            let os_layer = self.layer(os.name, 0, 29_149_632);
            let layers = vec![
                os_layer.clone(),
                self.layer(lang.name, 0, 48_234_496),
                self.layer(lang.name, 1, 4_096),
            ];
            let mut results = vec![os_result(image, os, &os_layer)];
            if let Some((target, kind, vulns)) = lang.lang_result {
                results.push(TrivyResult {
                    target: target.to_owned(),
                    class: "lang-pkgs",
                    kind,
                    vulnerabilities: vulns
                        .iter()
                        .map(|vuln| vulnerability(vuln, &purl_lang(kind, vuln), &layers[1]))
                        .collect(),
                });
            }
            out.push(self.report(dir, lang.name, image, os, layers, results));
        }
        out
    }

    fn layer(&self, image: &str, index: usize, size: u64) -> TrivyLayer {
        TrivyLayer {
            size,
            digest: digest(self.seed, &format!("layer/{image}/{index}")),
            diff_id: digest(self.seed, &format!("diff/{image}/{index}")),
        }
    }

    fn report(
        &self,
        dir: &str,
        name: &str,
        image: &BaseImage,
        os: &OsBase,
        layers: Vec<TrivyLayer>,
        results: Vec<TrivyResult>,
    ) -> FileEntry {
        let image_id = digest(self.seed, &format!("config/{name}"));
        let diff_ids: Vec<String> = layers.iter().map(|layer| layer.diff_id.clone()).collect();
        let reference = format!("{}:{}", image.name, image.tag);
        let report = TrivyReport {
            schema_version: 2,
            trivy: TrivyVersion { version: "0.56.2" },
            created_at: CREATED,
            artifact_id: image_id.clone(),
            artifact_name: reference.clone(),
            artifact_type: "container_image",
            metadata: Metadata {
                size: layers.iter().map(|layer| layer.size).sum(),
                os: TrivyOs {
                    family: os.family,
                    name: os.release,
                },
                image_id,
                diff_ids: diff_ids.clone(),
                repo_tags: vec![reference.clone()],
                repo_digests: vec![format!("{}@{}", image.name, image.digest)],
                reference,
                image_config: ImageConfig {
                    architecture: "amd64",
                    created: CREATED,
                    history: layers
                        .iter()
                        .enumerate()
                        .map(|(index, _)| History {
                            created: CREATED,
                            created_by: format!(
                                "RUN /bin/sh -c build step {} # buildkit",
                                index + 1
                            ),
                        })
                        .collect(),
                    os: "linux",
                    rootfs: RootFs {
                        kind: "layers",
                        diff_ids,
                    },
                    config: Config {
                        env: vec![
                            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        ],
                        user: "10001",
                    },
                },
                layers,
            },
            results,
        };
        FileEntry::new(&format!("{dir}/{name}.json"), &pretty_json(&report))
    }
}

/// `registry.acme.internal/base/<name>:<tag>@sha256:...`
fn pinned_ref(seed: u64, name: &str) -> String {
    format!(
        "{BASE_PREFIX}{name}:{BASE_TAG}@{}",
        digest(seed, &format!("image/{name}"))
    )
}

fn os_result(image: &BaseImage, os: &OsBase, layer: &TrivyLayer) -> TrivyResult {
    TrivyResult {
        target: format!(
            "{}:{} ({} {})",
            image.name, image.tag, os.family, os.release
        ),
        class: "os-pkgs",
        kind: os.pkg_type,
        vulnerabilities: os
            .vulns
            .iter()
            .map(|vuln| vulnerability(vuln, &purl_os(os, vuln), layer))
            .collect(),
    }
}

fn purl_os(os: &OsBase, vuln: &Vuln) -> String {
    let (kind, namespace, arch) = match os.family {
        "alpine" => ("apk", "alpine", "x86_64"),
        "redhat" => ("rpm", "redhat", "x86_64"),
        _ => ("deb", "debian", "amd64"),
    };
    format!(
        "pkg:{kind}/{namespace}/{}@{}?arch={arch}&distro={}-{}",
        vuln.package, vuln.installed, os.family, os.release
    )
}

fn purl_lang(kind: &str, vuln: &Vuln) -> String {
    match kind {
        "jar" => format!(
            "pkg:maven/{}@{}",
            vuln.package.replace(':', "/"),
            vuln.installed
        ),
        "python-pkg" => format!("pkg:pypi/{}@{}", vuln.package, vuln.installed),
        "node-pkg" => format!("pkg:npm/{}@{}", vuln.package, vuln.installed),
        _ => format!("pkg:golang/{}@{}", vuln.package, vuln.installed),
    }
}

fn vulnerability(vuln: &Vuln, purl: &str, layer: &TrivyLayer) -> Vulnerability {
    let lower = vuln.id.to_ascii_lowercase();
    Vulnerability {
        vulnerability_id: vuln.id,
        pkg_id: format!("{}@{}", vuln.package, vuln.installed),
        pkg_name: vuln.package,
        pkg_identifier: PkgIdentifier {
            purl: purl.to_owned(),
            uid: hex(0, purl, 16),
        },
        installed_version: vuln.installed,
        fixed_version: vuln.fixed,
        status: if vuln.fixed.is_some() {
            "fixed"
        } else {
            "affected"
        },
        layer: LayerRef {
            digest: layer.digest.clone(),
            diff_id: layer.diff_id.clone(),
        },
        severity_source: "nvd",
        primary_url: format!("https://avd.aquasec.com/nvd/{lower}"),
        title: vuln.title,
        severity: vuln.severity,
        references: vec![format!("https://nvd.nist.gov/vuln/detail/{}", vuln.id)],
    }
}

// Serialisation shapes of a Trivy JSON report (SchemaVersion 2), field order as Trivy writes it.

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyReport {
    schema_version: u32,
    trivy: TrivyVersion,
    created_at: &'static str,
    #[serde(rename = "ArtifactID")]
    artifact_id: String,
    artifact_name: String,
    artifact_type: &'static str,
    metadata: Metadata,
    results: Vec<TrivyResult>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyVersion {
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata {
    size: u64,
    #[serde(rename = "OS")]
    os: TrivyOs,
    #[serde(rename = "ImageID")]
    image_id: String,
    #[serde(rename = "DiffIDs")]
    diff_ids: Vec<String>,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    reference: String,
    image_config: ImageConfig,
    layers: Vec<TrivyLayer>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyOs {
    family: &'static str,
    name: &'static str,
}

/// The OCI image config; Trivy copies it with its own lowercase keys.
#[derive(Serialize)]
struct ImageConfig {
    architecture: &'static str,
    created: &'static str,
    history: Vec<History>,
    os: &'static str,
    rootfs: RootFs,
    config: Config,
}

#[derive(Serialize)]
struct History {
    created: &'static str,
    created_by: String,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Config {
    env: Vec<&'static str>,
    user: &'static str,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyLayer {
    size: u64,
    digest: String,
    #[serde(rename = "DiffID")]
    diff_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyResult {
    target: String,
    class: &'static str,
    #[serde(rename = "Type")]
    kind: &'static str,
    vulnerabilities: Vec<Vulnerability>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: &'static str,
    #[serde(rename = "PkgID")]
    pkg_id: String,
    pkg_name: &'static str,
    pkg_identifier: PkgIdentifier,
    installed_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fixed_version: Option<&'static str>,
    status: &'static str,
    layer: LayerRef,
    severity_source: &'static str,
    #[serde(rename = "PrimaryURL")]
    primary_url: String,
    title: &'static str,
    severity: &'static str,
    references: Vec<String>,
}

#[derive(Serialize)]
struct PkgIdentifier {
    #[serde(rename = "PURL")]
    purl: String,
    #[serde(rename = "UID")]
    uid: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LayerRef {
    digest: String,
    #[serde(rename = "DiffID")]
    diff_id: String,
}
