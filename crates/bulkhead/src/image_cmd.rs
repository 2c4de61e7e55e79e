//! `bulkhead images ...` and `bulkhead cve ID`: base image governance.
//!
//! The glue between the fleet scan (`discover`), the files named in
//! `bulkhead.toml` (`[images] base_repo`, `[reports] trivy/cyclonedx/grype`,
//! `[cluster] snapshots`), the registry client (`registry`), git (`vcs`) and
//! the pure analyses (`images`).

use crate::cli::{Format, FormatArgs};
use crate::output;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use images::reports::ReportFormat;
use images::{Catalog, RunningContainer};
use model::report::table;
use model::{Diagnostic, Fleet, ImageRef};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Exit status when the answer is "no": a FROM with problems, an upgrade that failed.
const EXIT_FINDINGS: u8 = 1;

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Every FROM in the fleet, classified: digest, tag only, latest or no tag,
    /// unapproved registry, unknown base.
    ///
    /// Approved registries come from `[images]` approved_registries in
    /// bulkhead.toml (prefixes matched on whole path components); known bases
    /// from the base images repository (`[images]` base_repo, its images.json)
    /// and the scanner reports (`[reports]`).
    ///
    /// Exit status: 0 when every final-stage FROM is pinned by digest to an
    /// approved, known base; 1 otherwise; 2 on errors.
    Check(ImagesArgs),
    /// The lineage of every known image: app -> language base -> OS base.
    Lineage(ImagesArgs),
    /// Every image reference in the fleet: final and builder FROMs, workload
    /// containers, each with its pinning (digest, tag, latest, none), whether
    /// its registry is approved, its lineage and the open CRITICAL/HIGH
    /// findings it carries (from the nearest scanned image in its lineage).
    Audit(ImagesArgs),
    /// Inspect an image in its registry: digest, platforms, layers, base.
    ///
    /// Resolves the tag to a digest (HEAD, Docker-Content-Digest), reads the
    /// manifest or index and the config, and names the base image from the
    /// org.opencontainers.image.base.name annotation or, when it is missing,
    /// by matching the config's rootfs.diff_ids prefix against the known bases.
    /// Only plain http:// registries are supported.
    ///
    /// Example: bulkhead images inspect 127.0.0.1:5000/apps/orders:1.0 --path ./fleet
    Inspect(InspectArgs),
    /// Move every Dockerfile built on an image to a new reference, one commit per repository.
    ///
    /// For each service whose final stage is built FROM the image named by
    /// --to (same registry/repository) with another tag or digest, creates the
    /// branch `bulkhead/base-<image>-<tag>` on top of HEAD with one commit that
    /// rewrites only the reference on the FROM line (or on the ARG line whose
    /// default the FROM uses); every other byte stays. The working tree is not
    /// touched. Without --apply, prints what would change.
    ///
    /// Example: bulkhead images upgrade --to registry.acme.internal/base/go-1.22:2024.11@sha256:... --apply
    Upgrade(UpgradeArgs),
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The fleet root, holding bulkhead.toml (scanned now; unchanged files come from the cache).
    #[arg(long, default_value = ".")]
    path: PathBuf,
    /// State directory (default: .bulkhead/ at the fleet root).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image (host:port/repository:tag or @digest).
    reference: String,
    /// Registry base URL (default: http://<the reference's registry>).
    #[arg(long, value_name = "URL")]
    registry_url: Option<String>,
    /// Platform to pick from an image index.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Seconds to wait for each registry request.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The new reference (registry/repository:tag@digest).
    #[arg(long, value_name = "REF")]
    to: String,
    /// Only move what uses exactly this reference: final-stage FROMs, and
    /// also the image fields of workload containers in manifests.
    #[arg(long, value_name = "REF")]
    from: Option<String>,
    /// Create the branches and commits; without it, only print the edits.
    #[arg(long)]
    apply: bool,
    #[command(flatten)]
    fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct CveArgs {
    /// The vulnerability id (CVE-2023-38545, GHSA-...).
    id: String,
    /// Add "timings" (scan and load, query, in milliseconds) to the JSON output.
    #[arg(long)]
    timings: bool,
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    format: FormatArgs,
}

pub fn run(command: ImagesCommand) -> Result<ExitCode> {
    match command {
        ImagesCommand::Check(args) => check(args),
        ImagesCommand::Lineage(args) => lineage(args),
        ImagesCommand::Audit(args) => audit(args),
        ImagesCommand::Inspect(args) => inspect(args),
        ImagesCommand::Upgrade(args) => upgrade(args),
    }
}

/// The scanned fleet with everything the image commands read beside it.
struct Context {
    root: PathBuf,
    fleet: Fleet,
    config: discover::Config,
    catalog: Catalog,
    running: Vec<RunningContainer>,
    diagnostics: Vec<Diagnostic>,
}

impl Context {
    fn load(args: &FleetArgs) -> Result<Context> {
        let outcome = crate::cli::run_scan(vec![args.path.clone()], args.state.clone(), true)?;
        let root = outcome.root;
        let config = outcome.config;
        let mut diagnostics = Vec::new();
        let mut bases = Vec::new();
        if let Some(repo) = &config.images.base_repo {
            let rel = format!(
                "{}/{}",
                repo.trim_end_matches('/'),
                images::bases::CATALOG_FILE
            );
            match std::fs::read_to_string(root.join(&rel)) {
                Ok(text) => {
                    let (b, d) = images::bases::parse_catalog(&rel, repo, &text);
                    bases = b;
                    diagnostics.extend(d);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => diagnostics.push(Diagnostic::error(&rel, None, format!("reading: {e}"))),
            }
        }
        let mut reports = Vec::new();
        for (format, entries) in [
            (ReportFormat::Trivy, &config.reports.trivy),
            (ReportFormat::CycloneDx, &config.reports.cyclonedx),
            (ReportFormat::Grype, &config.reports.grype),
        ] {
            for (rel, text) in read_json_files(&root, entries, &mut diagnostics) {
                let (report, d) = images::reports::parse(format, &rel, &text);
                reports.push(report);
                diagnostics.extend(d);
            }
        }
        let mut running = Vec::new();
        for (rel, text) in read_json_files(&root, &config.cluster.snapshots, &mut diagnostics) {
            let cluster = Path::new(&rel)
                .file_stem()
                .map_or_else(|| rel.clone(), |s| s.to_string_lossy().to_string());
            let (r, d) = images::cluster::parse_snapshot(&rel, &cluster, &text);
            running.extend(r);
            diagnostics.extend(d);
        }
        let catalog = Catalog::new(bases, &outcome.fleet.dockerfiles, reports);
        for d in &diagnostics {
            eprintln!("{d}");
        }
        Ok(Context {
            root,
            fleet: outcome.fleet,
            config,
            catalog,
            running,
            diagnostics,
        })
    }
}

/// The `.json` files named by `entries` (files, or folders read one level deep), sorted.
fn read_json_files(
    root: &Path,
    entries: &[String],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for entry in entries {
        let path = root.join(entry);
        if path.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(dir) => {
                    let mut names: Vec<String> = dir
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .filter(|n| n.ends_with(".json"))
                        .collect();
                    names.sort();
                    files.extend(
                        names
                            .into_iter()
                            .map(|n| format!("{}/{n}", entry.trim_end_matches('/'))),
                    );
                }
                Err(e) => diagnostics.push(Diagnostic::error(
                    entry,
                    None,
                    format!("reading the folder: {e}"),
                )),
            }
        } else {
            files.push(entry.clone());
        }
    }
    files
        .into_iter()
        .filter_map(|rel| match std::fs::read_to_string(root.join(&rel)) {
            Ok(text) => Some((rel, text)),
            Err(e) => {
                diagnostics.push(Diagnostic::error(&rel, None, format!("reading: {e}")));
                None
            }
        })
        .collect()
}

fn check(args: ImagesArgs) -> Result<ExitCode> {
    let context = Context::load(&args.fleet)?;
    let checks = images::check::check_fleet(
        &context.fleet,
        &context.catalog,
        &context.config.images.approved_registries,
        context.config.images.base_repo.as_deref(),
    );
    let failing = checks
        .iter()
        .filter(|c| c.role == images::StageRole::Final && !c.base_repo && !c.problems.is_empty())
        .count();
    match args.format.get() {
        Format::Json => output::print_json(&CheckJson {
            schema: "bulkhead.images-check/v1",
            froms: &checks,
            diagnostics: &context.diagnostics,
        })?,
        format => {
            let rows: Vec<Vec<String>> = checks
                .iter()
                .map(|c| {
                    vec![
                        c.at.to_string(),
                        c.service.clone().unwrap_or_else(|| "-".into()),
                        format!("{:?}", c.role).to_lowercase(),
                        c.written.clone(),
                        c.pinning.map_or("-".into(), |p| p.to_string()),
                        if c.problems.is_empty() {
                            "ok".into()
                        } else {
                            c.problems
                                .iter()
                                .map(|p| p.text())
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                    ]
                })
                .collect();
            let mut text = table(
                &["FROM", "SERVICE", "STAGE", "IMAGE", "PINNING", "PROBLEMS"],
                &rows,
            );
            if format == Format::Markdown {
                text = format!("```\n{text}```\n");
            }
            text.push_str(&format!(
                "\n{} FROM line(s), {failing} final-stage FROM(s) with problems\n",
                checks.len()
            ));
            output::print(&text)?;
        }
    }
    Ok(if failing > 0 {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Serialize)]
struct CheckJson<'a> {
    schema: &'static str,
    froms: &'a [images::FromCheck],
    diagnostics: &'a [Diagnostic],
}

fn audit(args: ImagesArgs) -> Result<ExitCode> {
    let context = Context::load(&args.fleet)?;
    let approved = &context.config.images.approved_registries;
    let froms = images::check::check_fleet(
        &context.fleet,
        &context.catalog,
        approved,
        context.config.images.base_repo.as_deref(),
    );
    let rows = images::audit::audit(&context.fleet, &context.catalog, &froms, approved);
    match args.format.get() {
        Format::Json => output::print_json(&AuditJson {
            schema: "bulkhead.images-audit/v1",
            images: &rows,
            diagnostics: &context.diagnostics,
        })?,
        format => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.at.to_string(),
                        r.service.clone().unwrap_or_else(|| "-".into()),
                        r.kind.text().to_string(),
                        r.image.clone(),
                        r.pinning.map_or("-".into(), |p| p.to_string()),
                        match r.approved {
                            Some(true) => "yes".into(),
                            Some(false) => "no".into(),
                            None => "-".into(),
                        },
                        r.lineage
                            .iter()
                            .skip(1)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" -> "),
                        r.critical.to_string(),
                        r.high.to_string(),
                    ]
                })
                .collect();
            let mut text = table(
                &[
                    "AT", "SERVICE", "USE", "IMAGE", "PINNING", "APPROVED", "BASES", "CRITICAL",
                    "HIGH",
                ],
                &cells,
            );
            if format == Format::Markdown {
                text = format!("```\n{text}```\n");
            }
            text.push_str(&format!(
                "\n{} image reference(s), {} carrying CRITICAL findings\n",
                rows.len(),
                rows.iter().filter(|r| r.critical > 0).count()
            ));
            output::print(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct AuditJson<'a> {
    schema: &'static str,
    images: &'a [images::AuditRow],
    diagnostics: &'a [Diagnostic],
}

fn lineage(args: ImagesArgs) -> Result<ExitCode> {
    let context = Context::load(&args.fleet)?;
    #[derive(Serialize)]
    struct Line {
        image: String,
        lineage: Vec<String>,
        via: Vec<Option<images::catalog::ParentVia>>,
        services: Vec<String>,
    }
    let mut lines: Vec<Line> = context
        .catalog
        .images
        .keys()
        .map(|name| {
            let chain = context.catalog.lineage(name);
            Line {
                image: name.clone(),
                lineage: chain.iter().map(|(n, _)| n.clone()).collect(),
                via: chain.iter().map(|(_, v)| *v).collect(),
                services: Vec::new(),
            }
        })
        .collect();
    for service in &context.fleet.services {
        for base in &service.base_images {
            if let Some(line) = lines.iter_mut().find(|l| l.image == base.name()) {
                line.services.push(service.name.clone());
            }
        }
    }
    match args.format.get() {
        Format::Json => output::print_json(&lines)?,
        _ => {
            let rows: Vec<Vec<String>> = lines
                .iter()
                .map(|l| vec![l.lineage.join(" -> "), l.services.len().to_string()])
                .collect();
            output::print(&table(&["LINEAGE", "SERVICES"], &rows))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let reference = ImageRef::parse(&args.reference)
        .with_context(|| format!("image reference {:?}", args.reference))?;
    let context = Context::load(&args.fleet)?;
    let url = args
        .registry_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", reference.registry()));
    let client =
        registry::Client::new(&url)?.with_timeout(std::time::Duration::from_secs(args.timeout));
    let (os, arch) = args
        .platform
        .split_once('/')
        .with_context(|| format!("--platform {:?}: expected os/architecture", args.platform))?;
    let tag_or_digest = reference
        .digest()
        .map(ToString::to_string)
        .or_else(|| reference.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".to_string());
    let inspection = client
        .inspect(reference.repository(), &tag_or_digest, (os, arch))
        .with_context(|| format!("inspecting {reference} at {url}"))?;
    let (base, via) = match &inspection.base {
        Some((name, digest)) => (
            Some(format!(
                "{name}{}",
                digest.as_ref().map(|d| format!("@{d}")).unwrap_or_default()
            )),
            "annotation",
        ),
        None => (
            context
                .catalog
                .base_by_diff_ids(&inspection.config.rootfs.diff_ids, &reference.name())
                .map(|b| b.name.clone()),
            "diff_ids prefix",
        ),
    };
    #[derive(Serialize)]
    struct InspectJson {
        reference: String,
        digest: String,
        manifest_digest: String,
        media_type: String,
        diff_ids: Vec<String>,
        base: Option<String>,
        base_via: Option<&'static str>,
    }
    let out = InspectJson {
        reference: reference.to_string(),
        digest: inspection.digest.to_string(),
        manifest_digest: inspection.manifest.digest.to_string(),
        media_type: inspection.manifest.media_type.clone(),
        diff_ids: inspection.config.rootfs.diff_ids.clone(),
        base_via: base.as_ref().map(|_| via),
        base,
    };
    match args.format.get() {
        Format::Json => output::print_json(&out)?,
        _ => output::print(&format!(
            "image:    {}\ndigest:   {}\nmanifest: {} ({})\nlayers:   {}\nbase:     {}\n",
            out.reference,
            out.digest,
            out.manifest_digest,
            out.media_type,
            out.diff_ids.len(),
            out.base
                .as_ref()
                .map_or_else(|| "unknown".to_string(), |b| format!("{b} (by {via})"))
        ))?,
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ImpactImageArgs {
    /// The image that changes (registry/repository; a tag or digest is ignored).
    reference: String,
    /// What it changes to, for the report's title and plan (default: "a new build").
    #[arg(long, value_name = "REF")]
    to: Option<String>,
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    format: FormatArgs,
}

pub fn impact_image(args: ImpactImageArgs) -> Result<ExitCode> {
    let reference = ImageRef::parse(&args.reference)
        .with_context(|| format!("image reference {:?}", args.reference))?;
    let context = Context::load(&args.fleet)?;
    if context.catalog.get(&reference.name()).is_none()
        && !context.fleet.services.iter().any(|s| {
            s.base_images
                .iter()
                .chain(&s.images)
                .any(|i| i.name() == reference.name())
        })
    {
        eprintln!(
            "note: no base image catalog entry, scanner report, FROM or workload names {}",
            reference.name()
        );
    }
    let answer = images::cve::image(
        images::CveQuery {
            fleet: &context.fleet,
            catalog: &context.catalog,
            running: &context.running,
        },
        &reference,
    );
    let to = args.to.as_deref().unwrap_or("a new build");
    let report = images::cve::image_report(&answer, &context.fleet, &context.catalog, to);
    eprintln!(
        "{}: {} image(s), {} service(s)",
        answer.id,
        answer.images.len(),
        answer.services.len()
    );
    match args.format.get() {
        Format::Json => output::print_json(&ImpactImageJson {
            schema: "bulkhead.impact-image/v1",
            image: &answer,
            report: &report,
        })?,
        Format::Table => output::print(&model::report::render_table(&report))?,
        Format::Markdown => output::print(&model::report::render_markdown(&report))?,
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct ImpactImageJson<'a> {
    schema: &'static str,
    image: &'a images::CveAnswer,
    report: &'a model::ImpactReport,
}

pub fn cve(args: CveArgs) -> Result<ExitCode> {
    let loading = Instant::now();
    let context = Context::load(&args.fleet)?;
    let load_ms = loading.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let answer = images::cve::cve(
        images::CveQuery {
            fleet: &context.fleet,
            catalog: &context.catalog,
            running: &context.running,
        },
        &args.id,
    );
    let report = images::cve::impact_report(&answer, &context.fleet);
    let query_ms = started.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "{}: {} image(s), {} service(s); answered in {query_ms:.2} ms after the scan",
        answer.id,
        answer.images.len(),
        answer.services.len(),
    );
    if answer.introduced.is_empty() {
        eprintln!(
            "note: no scanner report lists {}; reports read: {}",
            args.id,
            context.catalog.reports.len()
        );
    }
    match args.format.get() {
        Format::Json => output::print_json(&CveJson {
            schema: "bulkhead.cve/v1",
            cve: &answer,
            report: &report,
            timings: args.timings.then_some(Timings { load_ms, query_ms }),
        })?,
        Format::Table => output::print(&model::report::render_table(&report))?,
        Format::Markdown => output::print(&model::report::render_markdown(&report))?,
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct CveJson<'a> {
    schema: &'static str,
    cve: &'a images::CveAnswer,
    report: &'a model::ImpactReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    timings: Option<Timings>,
}

/// Where the time of a query went: the scan and the files it reads, then the analysis.
#[derive(Serialize)]
struct Timings {
    /// Scan (through the cache), base catalog, scanner reports and cluster snapshots.
    load_ms: f64,
    /// The CVE answer and its impact report, from the loaded fleet.
    query_ms: f64,
}

fn upgrade(args: UpgradeArgs) -> Result<ExitCode> {
    let to = ImageRef::parse(&args.to).with_context(|| format!("--to {:?}", args.to))?;
    let from = args
        .from
        .as_deref()
        .map(|f| ImageRef::parse(f).with_context(|| format!("--from {f:?}")))
        .transpose()?;
    let context = Context::load(&args.fleet)?;
    let name = to.name();
    let by_repo = images::check::services_by_repo(&context.fleet);
    let branch = format!(
        "bulkhead/base-{}-{}",
        to.repository().rsplit('/').next().unwrap_or("image"),
        to.tag()
            .map(str::to_string)
            .or_else(|| to.digest().map(|d| d.hex()[..12].to_string()))
            .unwrap_or_else(|| "latest".into())
    );
    let repo_of = |path: &str| {
        images::check::owners(&by_repo, path)
            .first()
            .and_then(|s| context.fleet.service(s))
            .and_then(|s| s.repo.clone())
    };
    // Repository -> the edits to make there, in one commit.
    let mut planned: std::collections::BTreeMap<String, Vec<PlannedEdit>> = Default::default();
    for dockerfile in &context.fleet.dockerfiles {
        let stage = match &from {
            Some(from) => images::upgrade::stage_built_on(dockerfile, from, &to),
            None => images::upgrade::stage_to_upgrade(dockerfile, &name, &to),
        };
        let (Some(stage), Some(repo)) = (stage, repo_of(&dockerfile.path)) else {
            continue;
        };
        planned.entry(repo).or_default().push(PlannedEdit {
            path: dockerfile.path.clone(),
            target: EditTarget::From(stage),
        });
    }
    // Pinned image fields in manifests: only with --from, which says exactly what to replace.
    if let Some(from) = &from {
        for workload in &context.fleet.workloads {
            for container in &workload.containers {
                if container.image_ref.as_ref() != Some(from)
                    || container.image_ref.as_ref() == Some(&to)
                {
                    continue;
                }
                let Some(repo) = repo_of(&container.at.path) else {
                    continue;
                };
                planned.entry(repo).or_default().push(PlannedEdit {
                    path: container.at.path.clone(),
                    target: EditTarget::Field {
                        line: container.at.line,
                        written: container.image.clone(),
                    },
                });
            }
        }
    }
    let mut failed = 0;
    let mut done = 0;
    for (repo_path, edits) in &planned {
        match upgrade_repo(&context.root, repo_path, edits, &args, &branch) {
            Ok(text) => {
                done += edits.len();
                output::print(&text)?;
            }
            Err(e) => {
                failed += 1;
                output::print(&format!("{repo_path}: failed: {e:#}\n"))?;
            }
        }
    }
    eprintln!(
        "{done} file edit(s) in {} repositor(ies) {}, {failed} repositor(ies) failed{}",
        planned.len() - failed,
        if args.apply { "committed" } else { "to change" },
        if args.apply {
            ""
        } else {
            "; dry run, add --apply to commit"
        }
    );
    Ok(if failed > 0 {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}

/// One reference to rewrite in one file.
struct PlannedEdit<'a> {
    /// Relative to the fleet root.
    path: String,
    target: EditTarget<'a>,
}

enum EditTarget<'a> {
    /// A Dockerfile's final-stage `FROM` (or the `ARG` default it uses).
    From(&'a model::Stage),
    /// A manifest's `image:` field, in the container starting at `line`.
    Field { line: u32, written: String },
}

/// Applies `edits` to the files at HEAD of `repo_path`; with --apply, commits
/// them on `branch` in one commit. Returns what was (or would be) done.
fn upgrade_repo(
    root: &Path,
    repo_path: &str,
    edits: &[PlannedEdit<'_>],
    args: &UpgradeArgs,
    branch: &str,
) -> Result<String> {
    let repo = vcs::Repo::open(&root.join(repo_path))?;
    let mut files: Vec<(String, String)> = Vec::new();
    let mut summary = String::new();
    let mut lines = Vec::new();
    for edit in edits {
        let rel = edit
            .path
            .strip_prefix(repo_path)
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or(&edit.path)
            .to_string();
        let index = match files.iter().position(|(p, _)| *p == rel) {
            Some(i) => i,
            None => {
                let bytes = repo
                    .show("HEAD", &rel)?
                    .with_context(|| format!("{rel} is not committed on HEAD of {repo_path}"))?;
                let text = String::from_utf8(bytes)
                    .with_context(|| format!("{} is not UTF-8", edit.path))?;
                files.push((rel.clone(), text));
                files.len() - 1
            }
        };
        let text = &files[index].1;
        let (new, done) = match &edit.target {
            EditTarget::From(stage) => {
                images::upgrade::rewrite_from(&edit.path, text, stage, &args.to)?
            }
            EditTarget::Field { line, written } => {
                images::upgrade::rewrite_image_field(&edit.path, text, *line, written, &args.to)?
            }
        };
        files[index].1 = new;
        summary.push_str(&format!(
            "{}:{}: {} -> {}\n",
            edit.path, done.line, done.from, done.to
        ));
        lines.push(format!("{rel} line {} was {}", done.line, done.from));
    }
    if !args.apply {
        return Ok(summary);
    }
    let message = format!(
        "Move the base image to {}\n\nbulkhead images upgrade: {}.\nRoll back by reverting this commit.\n",
        args.to,
        lines.join("; ")
    );
    if repo.resolve(branch)?.is_some() {
        bail!("branch {branch} already exists in {repo_path}");
    }
    let changes: Vec<vcs::FileChange> = files
        .into_iter()
        .map(|(path, content)| vcs::FileChange {
            path,
            content: content.into_bytes(),
        })
        .collect();
    let commit = repo.commit_on_new_branch("HEAD", branch, &changes, &message)?;
    Ok(format!(
        "{summary}  committed {} on {branch} in {repo_path}\n",
        &commit[..12.min(commit.len())]
    ))
}
