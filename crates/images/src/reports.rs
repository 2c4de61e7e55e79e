//! Scanner reports: Trivy JSON (SchemaVersion 2), CycloneDX JSON and Grype JSON,
//! read into one shape: the scanned image, its layers, and each finding with
//! the layer (`DiffID`) it was found in. SPDX JSON SBOMs (2.2, 2.3) read into
//! the same shape with packages and no findings: `cve` matches them against
//! the packages other reports find vulnerable.
//!
//! Unknown fields are ignored (scanners add fields often); a report that is
//! not JSON, or not the expected shape, yields an error diagnostic at the line
//! `serde_json` reports, and whatever could be read.

use model::{Diagnostic, Digest, ImageRef, Provenance};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    Trivy,
    CycloneDx,
    Grype,
    Spdx,
}

/// Severity as the scanners spell it, normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Negligible,
    Unknown,
}

impl Severity {
    pub fn parse(s: &str) -> Severity {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" => Severity::Low,
            "negligible" | "none" | "info" => Severity::Negligible,
            _ => Severity::Unknown,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Negligible => "NEGLIGIBLE",
            Severity::Unknown => "UNKNOWN",
        })
    }
}

/// One finding: a vulnerability in a package, in a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vulnerability {
    /// `CVE-2023-38545`, `GHSA-...`.
    pub id: String,
    pub package: String,
    pub installed: Option<String>,
    pub fixed: Option<String>,
    pub severity: Severity,
    /// The uncompressed layer digest (`rootfs.diff_ids` entry) the package was found in.
    pub layer: Option<String>,
    pub at: Provenance,
}

/// What one report says about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    pub path: String,
    pub format: ReportFormat,
    /// The image scanned, when the report names it as an image reference.
    pub artifact: Option<ImageRef>,
    /// The repository or folder scanned, as the report names it (a path or a
    /// URL), when it scanned source rather than an image (`trivy repo`,
    /// `trivy fs`): its findings belong to the service built from it.
    pub source: Option<String>,
    /// `name@digest` references of the scanned image (Trivy `RepoDigests`, Grype `repoDigests`).
    pub repo_digests: Vec<ImageRef>,
    /// The image's `rootfs.diff_ids`, bottom layer first.
    pub diff_ids: Vec<String>,
    pub vulnerabilities: Vec<Vulnerability>,
    /// Every package an SBOM lists (SPDX); scanner reports list findings instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
}

/// A package an SBOM lists in the image or source it describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// The package URL (`pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1`).
    pub purl: Option<String>,
    /// The layer it came from, when the SBOM says (Trivy's `LayerDiffID`).
    pub layer: Option<String>,
    pub at: Provenance,
}

impl Package {
    /// Whether a finding's package (`package`, at `installed`) is this one.
    /// Scanners name a package by its name (`log4j-core`, `lodash`) or, for
    /// Maven, `group:artifact` (Trivy); the purl gives both spellings.
    pub fn is(&self, package: &str, installed: Option<&str>) -> bool {
        let (purl_name, purl_version) = self.purl.as_deref().map_or((None, None), purl_parts);
        let named = package == self.name
            || purl_name.as_ref().is_some_and(|(namespace, name)| {
                package == name
                    || namespace.as_deref().is_some_and(|ns| {
                        package == format!("{ns}:{name}") || package == format!("{ns}/{name}")
                    })
            });
        named && installed.is_none_or(|v| v == self.version || purl_version.is_some_and(|p| p == v))
    }
}

/// A purl's `(namespace, name)` and version: `pkg:TYPE/NAMESPACE/NAME@VERSION?...#...`,
/// percent-decoding `%40` (npm scopes) only.
fn purl_parts(purl: &str) -> (Option<(Option<String>, String)>, Option<&str>) {
    let Some(rest) = purl.strip_prefix("pkg:") else {
        return (None, None);
    };
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (path, version) = match rest.rsplit_once('@') {
        Some((path, version)) if !path.is_empty() => (path, Some(version)),
        _ => (rest, None),
    };
    let mut parts: Vec<String> = path.split('/').map(|p| p.replace("%40", "@")).collect();
    if parts.len() < 2 {
        return (None, version);
    }
    let name = parts.pop().unwrap_or_default();
    let namespace = (parts.len() > 1).then(|| parts[1..].join("/"));
    (Some((namespace, name)), version)
}

impl ScanReport {
    fn new(path: &str, format: ReportFormat) -> ScanReport {
        ScanReport {
            path: path.to_string(),
            format,
            artifact: None,
            source: None,
            repo_digests: Vec::new(),
            diff_ids: Vec::new(),
            vulnerabilities: Vec::new(),
            packages: Vec::new(),
        }
    }

    /// Findings per severity.
    pub fn counts(&self) -> BTreeMap<Severity, usize> {
        let mut counts = BTreeMap::new();
        for v in &self.vulnerabilities {
            *counts.entry(v.severity).or_default() += 1;
        }
        counts
    }

    /// The image's name (`registry/repository`), from the artifact or a repo digest.
    pub fn image_name(&self) -> Option<String> {
        self.artifact
            .as_ref()
            .or(self.repo_digests.first())
            .map(ImageRef::name)
    }

    /// The digests the scanned image is known by.
    pub fn digests(&self) -> Vec<&Digest> {
        self.repo_digests
            .iter()
            .chain(self.artifact.iter())
            .filter_map(ImageRef::digest)
            .collect()
    }
}

/// Reads a report of a known format.
pub fn parse(format: ReportFormat, path: &str, text: &str) -> (ScanReport, Vec<Diagnostic>) {
    match format {
        ReportFormat::Trivy => trivy(path, text),
        ReportFormat::CycloneDx => cyclonedx(path, text),
        ReportFormat::Grype => grype(path, text),
        ReportFormat::Spdx => spdx(path, text),
    }
}

/// Finds the line of each finding by searching its id forward in the text:
/// reports list findings in document order.
struct LineCursor<'t> {
    text: &'t str,
    offset: usize,
}

impl LineCursor<'_> {
    fn line_of_next(&mut self, needle: &str) -> u32 {
        let quoted = format!("\"{needle}\"");
        match self.text[self.offset..].find(&quoted) {
            Some(i) => {
                self.offset += i + quoted.len();
                crate::line_of(self.text, self.offset)
            }
            None => crate::line_of(self.text, self.offset),
        }
    }
}

fn image_ref(
    path: &str,
    what: &str,
    s: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<ImageRef> {
    if s.is_empty() {
        return None;
    }
    match ImageRef::parse(s) {
        Ok(r) => Some(r),
        // A scanned archive (`image.tar.gz`) is no reference: not worth a warning.
        Err(_) if s.ends_with(".tar") || s.ends_with(".tar.gz") || s.contains(' ') => None,
        Err(e) => {
            diagnostics.push(Diagnostic::warning(path, None, format!("{what}: {e}")));
            None
        }
    }
}

/// Reads `null` as the field's default: Trivy writes `null` for an empty
/// list (a VM report's `diff_ids`), and other scanners do likewise for lists
/// and objects they have nothing to put in.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TrivyReport {
    schema_version: Option<u32>,
    #[serde(deserialize_with = "nullable")]
    artifact_name: String,
    /// `container_image`, `vm`, `repository`, `filesystem`, ...; older
    /// reports leave it out, and they are image reports.
    #[serde(deserialize_with = "nullable")]
    artifact_type: String,
    #[serde(deserialize_with = "nullable")]
    metadata: TrivyMetadata,
    results: Option<Vec<TrivyResult>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TrivyMetadata {
    #[serde(rename = "DiffIDs")]
    diff_ids: Option<Vec<String>>,
    repo_digests: Option<Vec<String>>,
    image_config: Option<ImageConfig>,
    /// The scanned repository's remote, in `repository` reports of newer Trivy.
    #[serde(rename = "RepoURL")]
    repo_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ImageConfig {
    rootfs: Option<RootFs>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RootFs {
    #[serde(deserialize_with = "nullable")]
    diff_ids: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TrivyResult {
    vulnerabilities: Option<Vec<TrivyVulnerability>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TrivyVulnerability {
    #[serde(rename = "VulnerabilityID")]
    #[serde(deserialize_with = "nullable")]
    vulnerability_id: String,
    #[serde(deserialize_with = "nullable")]
    pkg_name: String,
    installed_version: Option<String>,
    fixed_version: Option<String>,
    #[serde(deserialize_with = "nullable")]
    severity: String,
    layer: Option<TrivyLayer>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TrivyLayer {
    #[serde(rename = "DiffID")]
    diff_id: Option<String>,
}

/// Reads a Trivy JSON report (`trivy image -f json`, SchemaVersion 2).
pub fn trivy(path: &str, text: &str) -> (ScanReport, Vec<Diagnostic>) {
    let mut report = ScanReport::new(path, ReportFormat::Trivy);
    let mut diagnostics = Vec::new();
    let raw: TrivyReport = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return (report, vec![crate::json_error(path, "Trivy report", &e)]),
    };
    match raw.schema_version {
        Some(2) => {}
        Some(v) => diagnostics.push(Diagnostic::warning(
            path,
            Some(1),
            format!("Trivy SchemaVersion {v}: only 2 is known; reading it as 2"),
        )),
        None => diagnostics.push(Diagnostic::warning(
            path,
            Some(1),
            "no SchemaVersion: is this a Trivy JSON report?",
        )),
    }
    // Only an image report's ArtifactName is an image reference: a VM's is a
    // disk file (`disk.img`), a repository's a path or URL.
    match raw.artifact_type.as_str() {
        "" | "container_image" => {
            report.artifact = image_ref(path, "ArtifactName", &raw.artifact_name, &mut diagnostics);
        }
        // The remote names the repository better than the folder it was
        // cloned to in CI (`/workspace`).
        "repository" | "filesystem" => {
            report.source = raw
                .metadata
                .repo_url
                .clone()
                .into_iter()
                .chain([raw.artifact_name.clone()])
                .find(|s| !s.is_empty());
        }
        _ => {}
    }
    for d in raw.metadata.repo_digests.unwrap_or_default() {
        if let Some(r) = image_ref(path, "RepoDigests", &d, &mut diagnostics) {
            report.repo_digests.push(r);
        }
    }
    report.diff_ids = raw
        .metadata
        .image_config
        .and_then(|c| c.rootfs)
        .map(|r| r.diff_ids)
        .filter(|d| !d.is_empty())
        .or(raw.metadata.diff_ids)
        .unwrap_or_default();
    let mut cursor = LineCursor { text, offset: 0 };
    for result in raw.results.unwrap_or_default() {
        for v in result.vulnerabilities.unwrap_or_default() {
            let line = cursor.line_of_next(&v.vulnerability_id);
            if v.vulnerability_id.is_empty() {
                diagnostics.push(Diagnostic::warning(
                    path,
                    Some(line),
                    "vulnerability without VulnerabilityID skipped",
                ));
                continue;
            }
            report.vulnerabilities.push(Vulnerability {
                id: v.vulnerability_id,
                package: v.pkg_name,
                installed: v.installed_version,
                fixed: v.fixed_version.filter(|f| !f.is_empty()),
                severity: Severity::parse(&v.severity),
                layer: v.layer.and_then(|l| l.diff_id).filter(|d| !d.is_empty()),
                at: Provenance::new(path, line),
            });
        }
    }
    (report, diagnostics)
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CdxBom {
    #[serde(deserialize_with = "nullable")]
    bom_format: String,
    metadata: Option<CdxMetadata>,
    #[serde(deserialize_with = "nullable")]
    components: Vec<CdxComponent>,
    #[serde(deserialize_with = "nullable")]
    vulnerabilities: Vec<CdxVulnerability>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CdxMetadata {
    component: Option<CdxComponent>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CdxComponent {
    #[serde(rename = "bom-ref")]
    #[serde(deserialize_with = "nullable")]
    bom_ref: String,
    #[serde(deserialize_with = "nullable")]
    name: String,
    version: Option<String>,
    #[serde(deserialize_with = "nullable")]
    properties: Vec<CdxProperty>,
    #[serde(deserialize_with = "nullable")]
    components: Vec<CdxComponent>,
}

impl CdxComponent {
    fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CdxProperty {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CdxVulnerability {
    #[serde(deserialize_with = "nullable")]
    id: String,
    #[serde(deserialize_with = "nullable")]
    ratings: Vec<CdxRating>,
    #[serde(deserialize_with = "nullable")]
    affects: Vec<CdxAffect>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CdxRating {
    severity: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CdxAffect {
    #[serde(rename = "ref")]
    #[serde(deserialize_with = "nullable")]
    reference: String,
}

/// Reads a CycloneDX JSON SBOM with a `vulnerabilities` section (VEX). The
/// layer of each affected component comes from Trivy's
/// `aquasecurity:trivy:LayerDiffID` property; the image's layers from
/// `aquasecurity:trivy:DiffID` on the metadata component.
pub fn cyclonedx(path: &str, text: &str) -> (ScanReport, Vec<Diagnostic>) {
    let mut report = ScanReport::new(path, ReportFormat::CycloneDx);
    let mut diagnostics = Vec::new();
    let bom: CdxBom = match serde_json::from_str(text) {
        Ok(bom) => bom,
        Err(e) => {
            return (
                report,
                vec![crate::json_error(path, "CycloneDX document", &e)],
            );
        }
    };
    if bom.bom_format != "CycloneDX" {
        diagnostics.push(Diagnostic::warning(
            path,
            Some(1),
            format!("bomFormat is {:?}, not \"CycloneDX\"", bom.bom_format),
        ));
    }
    if let Some(component) = bom.metadata.as_ref().and_then(|m| m.component.as_ref()) {
        let reference = component
            .property("aquasecurity:trivy:Reference")
            .or_else(|| component.property("aquasecurity:trivy:RepoTag"))
            .unwrap_or(&component.name);
        report.artifact = image_ref(path, "metadata.component", reference, &mut diagnostics);
        report.diff_ids = component
            .properties
            .iter()
            .filter(|p| p.name == "aquasecurity:trivy:DiffID")
            .map(|p| p.value.clone())
            .collect();
        for p in component
            .properties
            .iter()
            .filter(|p| p.name == "aquasecurity:trivy:RepoDigest")
        {
            if let Some(r) = image_ref(path, "RepoDigest", &p.value, &mut diagnostics) {
                report.repo_digests.push(r);
            }
        }
    }
    let mut by_ref: BTreeMap<&str, &CdxComponent> = BTreeMap::new();
    let mut stack: Vec<&CdxComponent> = bom.components.iter().collect();
    while let Some(c) = stack.pop() {
        by_ref.insert(c.bom_ref.as_str(), c);
        stack.extend(c.components.iter());
    }
    let mut cursor = LineCursor { text, offset: 0 };
    for v in &bom.vulnerabilities {
        let line = cursor.line_of_next(&v.id);
        let severity = v
            .ratings
            .iter()
            .filter_map(|r| r.severity.as_deref())
            .map(Severity::parse)
            .min()
            .unwrap_or(Severity::Unknown);
        for affect in &v.affects {
            let Some(component) = by_ref.get(affect.reference.as_str()) else {
                diagnostics.push(Diagnostic::warning(
                    path,
                    Some(line),
                    format!(
                        "{} affects {:?}, which is no component of the SBOM",
                        v.id, affect.reference
                    ),
                ));
                continue;
            };
            report.vulnerabilities.push(Vulnerability {
                id: v.id.clone(),
                package: component.name.clone(),
                installed: component.version.clone(),
                fixed: None,
                severity,
                layer: component
                    .property("aquasecurity:trivy:LayerDiffID")
                    .map(str::to_string),
                at: Provenance::new(path, line),
            });
        }
    }
    (report, diagnostics)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GrypeDocument {
    matches: Option<Vec<GrypeMatch>>,
    source: Option<GrypeSource>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GrypeMatch {
    #[serde(deserialize_with = "nullable")]
    vulnerability: GrypeVulnerability,
    #[serde(deserialize_with = "nullable")]
    artifact: GrypeArtifact,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GrypeVulnerability {
    #[serde(deserialize_with = "nullable")]
    id: String,
    #[serde(deserialize_with = "nullable")]
    severity: String,
    fix: Option<GrypeFix>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GrypeFix {
    #[serde(deserialize_with = "nullable")]
    versions: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GrypeArtifact {
    #[serde(deserialize_with = "nullable")]
    name: String,
    version: Option<String>,
    #[serde(deserialize_with = "nullable")]
    locations: Vec<GrypeLocation>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GrypeLocation {
    #[serde(rename = "layerID")]
    layer_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GrypeSource {
    #[serde(rename = "type")]
    #[serde(deserialize_with = "nullable")]
    kind: String,
    target: serde_json::Value,
}

/// Reads a Grype JSON report (`grype -o json`). `locations[].layerID` is the
/// layer's diff ID; `source.target` describes the scanned image.
pub fn grype(path: &str, text: &str) -> (ScanReport, Vec<Diagnostic>) {
    let mut report = ScanReport::new(path, ReportFormat::Grype);
    let mut diagnostics = Vec::new();
    let doc: GrypeDocument = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(e) => return (report, vec![crate::json_error(path, "Grype report", &e)]),
    };
    if let Some(source) = &doc.source
        && source.kind == "image"
    {
        let target = &source.target;
        if let Some(input) = target["userInput"].as_str() {
            report.artifact = image_ref(path, "source.target.userInput", input, &mut diagnostics);
        }
        for d in target["repoDigests"].as_array().into_iter().flatten() {
            if let Some(r) = d
                .as_str()
                .and_then(|d| image_ref(path, "repoDigests", d, &mut diagnostics))
            {
                report.repo_digests.push(r);
            }
        }
        report.diff_ids = target["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(str::to_string))
            .collect();
    }
    if doc.matches.is_none() {
        diagnostics.push(Diagnostic::warning(
            path,
            Some(1),
            "no \"matches\": is this a Grype JSON report?",
        ));
    }
    let mut cursor = LineCursor { text, offset: 0 };
    for m in doc.matches.unwrap_or_default() {
        let line = cursor.line_of_next(&m.vulnerability.id);
        if m.vulnerability.id.is_empty() {
            continue;
        }
        report.vulnerabilities.push(Vulnerability {
            id: m.vulnerability.id,
            package: m.artifact.name,
            installed: m.artifact.version,
            fixed: m
                .vulnerability
                .fix
                .and_then(|f| f.versions.into_iter().next()),
            severity: Severity::parse(&m.vulnerability.severity),
            layer: m.artifact.locations.into_iter().find_map(|l| l.layer_id),
            at: Provenance::new(path, line),
        });
    }
    (report, diagnostics)
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SpdxDocument {
    #[serde(deserialize_with = "nullable")]
    spdx_version: String,
    #[serde(rename = "SPDXID", deserialize_with = "nullable")]
    spdx_id: String,
    #[serde(deserialize_with = "nullable")]
    document_describes: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    packages: Vec<SpdxPackage>,
    #[serde(deserialize_with = "nullable")]
    relationships: Vec<SpdxRelationship>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SpdxPackage {
    #[serde(rename = "SPDXID", deserialize_with = "nullable")]
    spdx_id: String,
    #[serde(deserialize_with = "nullable")]
    name: String,
    version_info: Option<String>,
    primary_package_purpose: Option<String>,
    #[serde(deserialize_with = "nullable")]
    external_refs: Vec<SpdxExternalRef>,
    #[serde(deserialize_with = "nullable")]
    attribution_texts: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SpdxExternalRef {
    #[serde(deserialize_with = "nullable")]
    reference_type: String,
    #[serde(deserialize_with = "nullable")]
    reference_locator: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SpdxRelationship {
    #[serde(deserialize_with = "nullable")]
    spdx_element_id: String,
    #[serde(deserialize_with = "nullable")]
    related_spdx_element: String,
    #[serde(deserialize_with = "nullable")]
    relationship_type: String,
}

impl SpdxPackage {
    fn purl(&self) -> Option<&str> {
        self.external_refs
            .iter()
            .find(|r| r.reference_type == "purl")
            .map(|r| r.reference_locator.as_str())
    }

    /// An image: a container by purpose (SPDX 2.3), by purl, or by Trivy's id.
    fn is_image(&self) -> bool {
        self.primary_package_purpose.as_deref() == Some("CONTAINER")
            || self.purl().is_some_and(|p| p.starts_with("pkg:oci/"))
            || self.spdx_id.starts_with("SPDXRef-ContainerImage")
    }
}

/// Reads an SPDX JSON SBOM (`syft -o spdx-json`, `trivy image -f spdx-json`,
/// SPDX 2.2 or 2.3). The package the document describes says what was
/// scanned: a container image becomes the report's image; anything else (a
/// directory, a repository) its source. Every other package with a version is
/// listed in `packages`.
pub fn spdx(path: &str, text: &str) -> (ScanReport, Vec<Diagnostic>) {
    let mut report = ScanReport::new(path, ReportFormat::Spdx);
    let mut diagnostics = Vec::new();
    let doc: SpdxDocument = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(e) => return (report, vec![crate::json_error(path, "SPDX document", &e)]),
    };
    if !doc.spdx_version.starts_with("SPDX-2.") {
        diagnostics.push(Diagnostic::warning(
            path,
            Some(1),
            format!(
                "spdxVersion is {:?}; SPDX 2.2 and 2.3 are read",
                doc.spdx_version
            ),
        ));
    }
    // What the document describes: `DESCRIBES` from the document (Trivy once
    // wrote `DESCRIBE`), or the older `documentDescribes` list.
    let document = if doc.spdx_id.is_empty() {
        "SPDXRef-DOCUMENT"
    } else {
        doc.spdx_id.as_str()
    };
    let described: Vec<&str> = doc
        .relationships
        .iter()
        .filter(|r| {
            r.spdx_element_id == document
                && matches!(r.relationship_type.as_str(), "DESCRIBES" | "DESCRIBE")
        })
        .map(|r| r.related_spdx_element.as_str())
        .chain(doc.document_describes.iter().map(String::as_str))
        .collect();
    let root = doc
        .packages
        .iter()
        .find(|p| described.contains(&p.spdx_id.as_str()));
    match root {
        Some(root) if root.is_image() => {
            report.artifact = image_ref(path, "the described image", &root.name, &mut diagnostics);
            report.diff_ids = root
                .attribution_texts
                .iter()
                .filter_map(|t| t.strip_prefix("DiffID: "))
                .map(str::to_string)
                .collect();
        }
        Some(root) if !root.name.is_empty() => report.source = Some(root.name.clone()),
        _ => diagnostics.push(Diagnostic::warning(
            path,
            Some(1),
            "the document describes no package: its packages belong to no image or source",
        )),
    }
    let mut cursor = LineCursor { text, offset: 0 };
    for p in &doc.packages {
        let Some(version) = p.version_info.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        if root.is_some_and(|r| r.spdx_id == p.spdx_id) || p.is_image() {
            continue;
        }
        let line = cursor.line_of_next(&p.spdx_id);
        report.packages.push(Package {
            name: p.name.clone(),
            version: version.to_string(),
            purl: p.purl().map(str::to_string),
            layer: p
                .attribution_texts
                .iter()
                .find_map(|t| t.strip_prefix("LayerDiffID: "))
                .map(str::to_string),
            at: Provenance::new(path, line),
        });
    }
    (report, diagnostics)
}
