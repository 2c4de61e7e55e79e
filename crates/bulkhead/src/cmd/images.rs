//! `bulkhead images ...`: base image governance.
//!
//! The glue between the fleet scan and the image inputs `bulkhead.toml` names
//! (`discover`), the registry client (`registry`), git (`vcs`) and the pure
//! analyses (`images`). `cve` and `impact image` load the same way ([`Loaded`]).

use crate::args::{self, Exit, FleetArgs, Format, FormatArgs};
use crate::output;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use model::report::table;
use model::{Diagnostic, Fleet, ImageRef};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    ///
    /// Example: bulkhead images check --path ./fleet --format markdown
    Check(ImagesArgs),
    /// The lineage of every known image: app -> language base -> OS base.
    ///
    /// Example: bulkhead images lineage --path ./fleet --json
    Lineage(ImagesArgs),
    /// Every image reference in the fleet: final and builder FROMs, workload
    /// containers, and the containers running in its clusters (saved
    /// `[cluster]` snapshots, live reads of `--cluster` or `[cluster]`
    /// contexts), each with its pinning (digest, tag, latest, none), whether
    /// its registry is approved, its lineage and the open CRITICAL/HIGH
    /// findings it carries (from the nearest scanned image in its lineage).
    ///
    /// Example: bulkhead images audit --path ./fleet --cluster prod
    Audit(AuditArgs),
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
    /// Move every Dockerfile, kustomization and Helm values file on an image to a new reference, one commit per repository.
    ///
    /// For each service whose final stage is built FROM the image named by
    /// --to (same registry/repository) with another tag or digest, creates the
    /// branch `bulkhead/base-<image>-<tag>` on top of HEAD with one commit that
    /// rewrites only the reference on the FROM line (or on the ARG line whose
    /// default the FROM uses); every other byte stays. In the same commit go
    /// kustomization `images:` entries (newName/newTag/digest) and Helm values
    /// files (`values*.yaml` beside a Chart.yaml: repository/tag/digest blocks
    /// and image strings) on that image, as committed at HEAD. The working
    /// tree is not touched. Without --apply, prints what would change.
    ///
    /// With --open-pr, each repository's branch is pushed and its pull or
    /// merge request opened (or updated, when one is open for the branch),
    /// described by the impact report of the services it touches. A
    /// repository that fails (after retries) is reported and the others go on;
    /// the exit status is then 1.
    ///
    /// Example: bulkhead images upgrade --to registry.acme.internal/base/go-1.22:2024.11@sha256:... --apply --open-pr --token-env GITHUB_TOKEN
    Upgrade(UpgradeArgs),
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    images: ImagesArgs,
    #[command(flatten)]
    cluster: super::cluster::ClusterArgs,
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
    /// How long to wait for each registry request (a bare number is seconds, as before).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    timeout: Duration,
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
    /// Only move what uses exactly this reference: final-stage FROMs,
    /// kustomization and Helm values entries, and also the image fields of
    /// workload containers in manifests.
    #[arg(long, value_name = "REF")]
    from: Option<String>,
    /// Create the branches and commits; without it, only print the edits.
    #[arg(long)]
    apply: bool,
    #[command(flatten)]
    pr: args::PrArgs,
    #[command(flatten)]
    fleet: FleetArgs,
}

/// `--timeout`: a duration, or whole seconds as the flag took before durations.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    if text.trim().bytes().all(|b| b.is_ascii_digit()) {
        args::seconds(text)
    } else {
        args::duration(text)
    }
}

pub fn run(command: ImagesCommand) -> Result<Exit> {
    match command {
        ImagesCommand::Check(args) => check(args),
        ImagesCommand::Lineage(args) => lineage(args),
        ImagesCommand::Audit(args) => audit(args),
        ImagesCommand::Inspect(args) => inspect(args),
        ImagesCommand::Upgrade(args) => upgrade(args),
    }
}

/// The scanned fleet with everything the image commands read beside it
/// (`discover` reads the files `bulkhead.toml` names; `images` parses them).
pub struct Loaded {
    pub root: PathBuf,
    pub fleet: Fleet,
    pub config: discover::Config,
    pub inputs: images::Inputs,
}

impl Loaded {
    pub fn load(args: &FleetArgs) -> Result<Loaded> {
        let outcome = output::scan(&args.scan_options())?;
        let inputs = discover::load_image_inputs(&outcome);
        Ok(Loaded::of(outcome, inputs))
    }

    /// As [`Loaded::load`], with the clusters `clusters` names read live
    /// beside the saved snapshots.
    pub fn load_live(args: &FleetArgs, clusters: &super::cluster::ClusterArgs) -> Result<Loaded> {
        let outcome = output::scan(&args.scan_options())?;
        let mut files = discover::read_image_inputs(&outcome.root, &outcome.config);
        files
            .snapshots
            .extend(clusters.read(&outcome.root, &outcome.config)?);
        let inputs = images::inputs::parse(&files, &outcome.fleet.dockerfiles);
        Ok(Loaded::of(outcome, inputs))
    }

    fn of(outcome: discover::ScanOutcome, inputs: images::Inputs) -> Loaded {
        for d in &inputs.diagnostics {
            eprintln!("{d}");
        }
        Loaded {
            root: outcome.root,
            fleet: outcome.fleet,
            config: outcome.config,
            inputs,
        }
    }

    pub fn query(&self) -> images::CveQuery<'_> {
        images::CveQuery {
            fleet: &self.fleet,
            catalog: &self.inputs.catalog,
            running: &self.inputs.running,
        }
    }
}

fn check(args: ImagesArgs) -> Result<Exit> {
    let context = Loaded::load(&args.fleet)?;
    let checks = images::check::check_fleet(
        &context.fleet,
        &context.inputs.catalog,
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
            diagnostics: &context.inputs.diagnostics,
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
    Ok(Exit::answer(failing == 0))
}

#[derive(Serialize)]
struct CheckJson<'a> {
    schema: &'static str,
    froms: &'a [images::FromCheck],
    diagnostics: &'a [Diagnostic],
}

fn audit(args: AuditArgs) -> Result<Exit> {
    let AuditArgs {
        images: args,
        cluster,
    } = args;
    let context = Loaded::load_live(&args.fleet, &cluster)?;
    let approved = &context.config.images.approved_registries;
    let froms = images::check::check_fleet(
        &context.fleet,
        &context.inputs.catalog,
        approved,
        context.config.images.base_repo.as_deref(),
    );
    let rows = images::audit::audit(
        &context.fleet,
        &context.inputs.catalog,
        &froms,
        &context.inputs.running,
        approved,
    );
    match args.format.get() {
        Format::Json => output::print_json(&AuditJson {
            schema: "bulkhead.images-audit/v1",
            images: &rows,
            diagnostics: &context.inputs.diagnostics,
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
    Ok(Exit::Ran)
}

#[derive(Serialize)]
struct AuditJson<'a> {
    schema: &'static str,
    images: &'a [images::AuditRow],
    diagnostics: &'a [Diagnostic],
}

fn lineage(args: ImagesArgs) -> Result<Exit> {
    let context = Loaded::load(&args.fleet)?;
    #[derive(Serialize)]
    struct Line {
        image: String,
        lineage: Vec<String>,
        via: Vec<Option<images::catalog::ParentVia>>,
        services: Vec<String>,
    }
    let mut lines: Vec<Line> = context
        .inputs
        .catalog
        .images
        .keys()
        .map(|name| {
            let chain = context.inputs.catalog.lineage(name);
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
    Ok(Exit::Ran)
}

fn inspect(args: InspectArgs) -> Result<Exit> {
    let reference = ImageRef::parse(&args.reference)
        .with_context(|| format!("image reference {:?}", args.reference))?;
    let context = Loaded::load(&args.fleet)?;
    let url = args
        .registry_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", reference.registry()));
    let client = registry::Client::new(&url)?.with_timeout(args.timeout);
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
                .inputs
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
    Ok(Exit::Ran)
}

fn upgrade(args: UpgradeArgs) -> Result<Exit> {
    let to = ImageRef::parse(&args.to).with_context(|| format!("--to {:?}", args.to))?;
    let from = args
        .from
        .as_deref()
        .map(|f| ImageRef::parse(f).with_context(|| format!("--from {f:?}")))
        .transpose()?;
    let context = Loaded::load(&args.fleet)?;
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
    let selection = images::yaml_refs::Selection {
        from: from.as_ref(),
        to: &to,
        to_written: &args.to,
    };
    let mut failed = 0;
    for repo in context.fleet.repos.iter().filter(|r| r.git) {
        match yaml_files_to_move(&context.root, &repo.path, &selection) {
            Ok(found) => {
                if !found.is_empty() {
                    let edits = planned.entry(repo.path.clone()).or_default();
                    // A manifest image a kustomization sets moves there: the
                    // manifest's own line holds another reference.
                    if found.iter().any(|(_, k)| *k == YamlKind::Kustomization) {
                        let vcs_repo = vcs::Repo::open(&context.root.join(&repo.path))?;
                        edits.retain(|e| match &e.target {
                            EditTarget::Field { written, .. } => {
                                let rel = e
                                    .path
                                    .strip_prefix(&format!("{}/", repo.path))
                                    .unwrap_or(&e.path);
                                vcs_repo.show("HEAD", rel).ok().flatten().is_some_and(|b| {
                                    String::from_utf8_lossy(&b).contains(written.as_str())
                                })
                            }
                            _ => true,
                        });
                    }
                    edits.extend(found.into_iter().map(|(path, kind)| PlannedEdit {
                        path,
                        target: EditTarget::Yaml(kind),
                    }));
                }
            }
            Err(e) => {
                failed += 1;
                output::print(&format!("{}: failed: {e:#}\n", repo.path))?;
            }
        }
    }
    let forge = args.pr.config()?;
    let mut done = 0;
    for (repo_path, edits) in &planned {
        let pr = forge.as_ref().map(|config| {
            let services: BTreeSet<String> = edits
                .iter()
                .flat_map(|e| images::check::owners(&by_repo, &e.path))
                .map(str::to_string)
                .collect();
            (config, describe(&context.fleet, &services, &args.to))
        });
        match upgrade_repo(
            &context.root,
            repo_path,
            edits,
            &args,
            &branch,
            &selection,
            pr,
        ) {
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
    Ok(Exit::answer(failed == 0))
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
    /// The selected references of a kustomization or Helm values file.
    Yaml(YamlKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum YamlKind {
    Kustomization,
    HelmValues,
}

impl YamlKind {
    /// What a file at `path` (in a repository whose files are `all`) is, if either.
    fn of(path: &str, all: &std::collections::BTreeSet<&str>) -> Option<YamlKind> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if matches!(
            name,
            "kustomization.yaml" | "kustomization.yml" | "Kustomization"
        ) {
            return Some(YamlKind::Kustomization);
        }
        let chart = if dir.is_empty() {
            "Chart.yaml".to_string()
        } else {
            format!("{dir}/Chart.yaml")
        };
        (name.starts_with("values")
            && (name.ends_with(".yaml") || name.ends_with(".yml"))
            && all.contains(chart.as_str()))
        .then_some(YamlKind::HelmValues)
    }

    fn rewrite(
        self,
        path: &str,
        text: &str,
        selection: &images::yaml_refs::Selection<'_>,
    ) -> Result<Option<images::yaml_refs::Rewrite>, images::upgrade::UpgradeError> {
        match self {
            YamlKind::Kustomization => {
                images::yaml_refs::rewrite_kustomization(path, text, selection)
            }
            YamlKind::HelmValues => images::yaml_refs::rewrite_helm_values(path, text, selection),
        }
    }
}

/// The kustomizations and Helm values files committed at HEAD of the
/// repository `repo_path` that hold a selected reference (fleet-relative paths).
fn yaml_files_to_move(
    root: &Path,
    repo_path: &str,
    selection: &images::yaml_refs::Selection<'_>,
) -> Result<Vec<(String, YamlKind)>> {
    let repo = vcs::Repo::open(&root.join(repo_path))?;
    let files = repo.files("HEAD")?;
    let all: std::collections::BTreeSet<&str> = files.iter().map(String::as_str).collect();
    let candidates: Vec<(&str, YamlKind)> = files
        .iter()
        .filter_map(|f| YamlKind::of(f, &all).map(|k| (f.as_str(), k)))
        .collect();
    let paths: Vec<&str> = candidates.iter().map(|(p, _)| *p).collect();
    let texts = repo.show_many("HEAD", &paths)?;
    let mut found = Vec::new();
    for ((rel, kind), bytes) in candidates.into_iter().zip(texts) {
        let Some(text) = bytes.and_then(|b| String::from_utf8(b).ok()) else {
            continue;
        };
        let shown = fleet_path(repo_path, rel);
        if kind.rewrite(&shown, &text, selection)?.is_some() {
            found.push((shown, kind));
        }
    }
    Ok(found)
}

/// `rel` (inside the repository at `repo_path`) relative to the fleet root.
fn fleet_path(repo_path: &str, rel: &str) -> String {
    if repo_path.is_empty() {
        rel.to_string()
    } else {
        format!("{repo_path}/{rel}")
    }
}

/// Applies `edits` to the files at HEAD of `repo_path`; with --apply, commits
/// them on `branch` in one commit. Returns what was (or would be) done.
fn upgrade_repo(
    root: &Path,
    repo_path: &str,
    edits: &[PlannedEdit<'_>],
    args: &UpgradeArgs,
    branch: &str,
    selection: &images::yaml_refs::Selection<'_>,
    pr: Option<(&forge::Config, String)>,
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
                let (new, done) = images::upgrade::rewrite_from(&edit.path, text, stage, &args.to)?;
                (new, vec![done])
            }
            EditTarget::Field { line, written } => {
                let (new, done) = images::upgrade::rewrite_image_field(
                    &edit.path, text, *line, written, &args.to,
                )?;
                (new, vec![done])
            }
            EditTarget::Yaml(kind) => kind
                .rewrite(&edit.path, text, selection)?
                .with_context(|| format!("{} no longer holds the reference", edit.path))?,
        };
        files[index].1 = new;
        for done in done {
            summary.push_str(&format!(
                "{}:{}: {} -> {}\n",
                edit.path, done.line, done.from, done.to
            ));
            lines.push(format!("{rel} line {} was {}", done.line, done.from));
        }
    }
    if !args.apply {
        return Ok(summary);
    }
    let message = format!(
        "Move the base image to {}\n\nbulkhead images upgrade: {}.\nRoll back by reverting this commit.\n",
        args.to,
        lines.join("; ")
    );
    let changes: Vec<vcs::FileChange> = files
        .into_iter()
        .map(|(path, content)| vcs::FileChange {
            path,
            content: content.into_bytes(),
        })
        .collect();
    let mut report = summary;
    if repo.resolve(branch)?.is_some() {
        // A re-run: the branch holding exactly this change is published again, never rewritten.
        let same = changes
            .iter()
            .map(|c| Ok(repo.show(branch, &c.path)?.as_deref() == Some(&c.content[..])))
            .collect::<Result<Vec<bool>>>()?
            .into_iter()
            .all(|s| s);
        if !same || pr.is_none() {
            bail!(
                "branch {branch} already exists in {repo_path}{}",
                if same { "" } else { " with other content" }
            );
        }
        report.push_str(&format!(
            "  branch {branch} already holds this change in {repo_path}\n"
        ));
    } else {
        let commit = repo.commit_on_new_branch("HEAD", branch, &changes, &message)?;
        report.push_str(&format!(
            "  committed {} on {branch} in {repo_path}\n",
            &commit[..12.min(commit.len())]
        ));
    }
    if let Some((config, description)) = pr {
        let title = format!("Move the base image to {}", args.to);
        report.push_str(&args::publish(
            &repo,
            config,
            args.pr.base.as_deref(),
            branch,
            &title,
            &description,
        )?);
    }
    Ok(report)
}

/// A change's description: what moves, and the impact report of the
/// services whose files change, rendered as for a pull-request comment.
fn describe(fleet: &Fleet, services: &BTreeSet<String>, to: &str) -> String {
    let mut text = format!(
        "bulkhead images upgrade moves these repositories' references to `{to}`. Roll back by reverting the commit.\n\n"
    );
    let names: Vec<String> = services.iter().cloned().collect();
    match impact::services(fleet, &names) {
        Ok(report) if !names.is_empty() => text.push_str(&model::report::render_markdown(&report)),
        _ => text.push_str("No service of the fleet builds from these files: no impact report.\n"),
    }
    text
}
