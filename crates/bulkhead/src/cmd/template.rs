//! `bulkhead template ...`: shared CI template governance.
//!
//! The glue between the fleet scan (`discover`), the templates repository
//! read with git at each release tag (`vcs`) and the pure analyses
//! (`templates`). Every command records the commit of each release tag in the
//! state directory and warns when one has moved.

mod render;
mod state;

use crate::args::{self, Exit, Format, FormatArgs};
use crate::output;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use discover::StateDir;
use model::{Diagnostic, Fleet, TemplateKind};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use templates::{
    AdoptionPlan, Bump, PlanOptions, Release, Releases, Tag, TemplateSet, TemplateSource,
};

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Every interface change between two releases, and whether the version step is big enough.
    ///
    /// Reads the template files at both tags of the templates repository (GitLab
    /// `spec: inputs:` headers, jobs and stages; GitHub `workflow_call` inputs,
    /// secrets and outputs) and classifies each change: major (input removed,
    /// new mandatory input, optional -> mandatory, type changed, options
    /// narrowed, regex tightened, job or stage removed or renamed, required
    /// secret added, output removed), minor (new optional input, options
    /// widened, ...), warning (default changed: at least minor) or patch.
    /// See docs/templates.md for the full table. NEW may also be a branch or
    /// commit not released yet: the command then says which version to tag.
    ///
    /// Also reports release tags moved to another commit since bulkhead first
    /// read them: a release must never be modified in place.
    ///
    /// Exit status: 0 when the step from OLD to NEW is at least the required
    /// one, 1 when it is smaller (or OLD or NEW was moved), 2 on errors.
    ///
    /// Example: bulkhead template diff v1.4.2 v2.0.0 --path ./fleet
    Diff(DiffArgs),
    /// Which apps would break on a release, and exactly why, without running a pipeline.
    ///
    /// Checks every app that pins the templates (include: project/ref/file,
    /// include: component, uses: .../workflow.yml@ref) against VERSION:
    /// missing mandatory inputs, unknown inputs, values of the wrong type,
    /// outside the options or not matching the regex, template files that no
    /// longer exist, jobs the app extends, needs or overrides and stages its
    /// jobs run in that VERSION removed, outputs it reads, secrets it passes.
    ///
    /// Exit status: 0 when every app is safe, 1 when any would break, 2 on errors.
    ///
    /// Example: bulkhead template check v2.0.0 --path ./fleet --format markdown
    Check(CheckArgs),
    /// Representative apps and adoption waves for a release, as an impact report.
    ///
    /// Representatives are the fewest apps that together exercise every
    /// (template file, input set, value class, language) combination in use,
    /// preferring less critical tiers and owners not yet represented. Then
    /// waves: representatives, the remaining apps from the least critical tier
    /// to tier 1, at most --wave-size apps each, each gated on its pipelines
    /// and a soak time. Apps that would break are left out until fixed. The
    /// plan is saved in the state directory; `template bump` follows it.
    ///
    /// Example: bulkhead template plan v2.0.0 --wave-size 10 --soak 48h
    Plan(PlanArgs),
    /// Commit the new pin in each app repository of one wave (or roll it back).
    ///
    /// For every app of wave N of the saved plan (computed and saved if there
    /// is none), creates the branch bulkhead/template-VERSION on top of the
    /// repository's HEAD with one commit that changes only the version on the
    /// pin line(s); every other byte of the CI file stays as it was. The commit
    /// message says why, from which version, in which wave, and how to roll
    /// back. The working tree and the checked-out branch are not touched.
    /// Without --apply, prints the diffs that would be committed.
    ///
    /// With --rollback, creates bulkhead/template-rollback-VERSION instead, on
    /// HEAD of each repository that adopted VERSION, re-pinning the version the
    /// plan recorded before the bump: the file is restored exactly.
    ///
    /// Exit status: 0 when every app of the wave is done (or had nothing to
    /// do), 1 when any failed, 2 on errors.
    ///
    /// With --open-pr, each app's branch is pushed and its pull or merge
    /// request opened (or updated, when one is open for the branch, as on a
    /// re-run), described by the app's impact report and the pin diff. An app
    /// that fails (after retries) is reported and the others go on.
    ///
    /// Example: bulkhead template bump v2.0.0 --wave 1 --apply --open-pr --forge gitlab --token-env GITLAB_TOKEN
    Bump(BumpArgs),
    /// How many apps are on each release, and who straggles on unsupported lines.
    ///
    /// A release line is a major version (or 0.minor below 1.0.0). With the
    /// default --window 1, the newest line and the one before (N-1) are
    /// supported; apps on older lines, on versions that are no release, or
    /// unpinned, are listed with their owners.
    ///
    /// Example: bulkhead template adoption --path ./fleet --window 1
    Adoption(AdoptionArgs),
}

/// The fleet and its templates repository.
#[derive(Debug, Args)]
pub struct TemplateFleetArgs {
    #[command(flatten)]
    fleet: args::FleetArgs,
    /// The templates git repository (default: [templates] repo in bulkhead.toml).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older release tag (v1.4.2; 1.4.2 works too).
    old: String,
    /// The newer release tag, or any git revision of the templates repository.
    new: String,
    #[command(flatten)]
    fleet: TemplateFleetArgs,
    #[command(flatten)]
    format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The release to check every app against (v2.0.0).
    #[arg(value_name = "VERSION")]
    release: String,
    #[command(flatten)]
    fleet: TemplateFleetArgs,
    #[command(flatten)]
    format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The release to adopt (v2.0.0).
    #[arg(value_name = "VERSION")]
    release: String,
    #[command(flatten)]
    waves: WaveArgs,
    #[command(flatten)]
    fleet: TemplateFleetArgs,
    #[command(flatten)]
    format: FormatArgs,
}

#[derive(Debug, Args)]
pub struct WaveArgs {
    /// Most apps in one wave after the representatives (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 20)]
    wave_size: usize,
    /// How long each wave soaks before the next one starts.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = args::duration)]
    soak: Duration,
}

#[derive(Debug, Args)]
pub struct BumpArgs {
    /// The release the wave moves to (v2.0.0).
    #[arg(value_name = "VERSION")]
    release: String,
    /// The wave to bump, as numbered by `template plan` (1 = representatives).
    #[arg(long, value_name = "N")]
    wave: usize,
    /// Create the branches and commits; without it, only print the diffs.
    #[arg(long)]
    apply: bool,
    /// Re-pin the previous version instead, in the repositories that adopted VERSION.
    #[arg(long)]
    rollback: bool,
    #[command(flatten)]
    pr: args::PrArgs,
    /// Used only when no plan is saved yet.
    #[command(flatten)]
    waves: WaveArgs,
    #[command(flatten)]
    fleet: TemplateFleetArgs,
}

#[derive(Debug, Args)]
pub struct AdoptionArgs {
    /// How many release lines before the newest are supported (1 = N-1).
    #[arg(long, value_name = "N", default_value_t = 1)]
    window: u64,
    #[command(flatten)]
    fleet: TemplateFleetArgs,
    #[command(flatten)]
    format: FormatArgs,
}

pub fn run(command: TemplateCommand) -> Result<Exit> {
    match command {
        TemplateCommand::Diff(args) => diff(args),
        TemplateCommand::Check(args) => check(args),
        TemplateCommand::Plan(args) => plan(args),
        TemplateCommand::Bump(args) => bump(args),
        TemplateCommand::Adoption(args) => adoption(args),
    }
}

/// The fleet, its templates repository and the releases in it.
struct Context {
    root: PathBuf,
    state_dir: StateDir,
    repo: vcs::Repo,
    /// The templates repository, relative to the fleet root when inside it.
    label: String,
    source: TemplateSource,
    releases: Releases,
    moved: Vec<state::MovedTag>,
    diagnostics: Vec<Diagnostic>,
    fleet: Option<Fleet>,
}

impl Context {
    /// Loads the context; `scan` says whether the fleet is needed.
    fn load(args: &TemplateFleetArgs, scan: bool) -> Result<Context> {
        let (root, config, state_dir, fleet) = if scan {
            let outcome = output::scan(&args.fleet.scan_options())?;
            (
                outcome.root,
                outcome.config,
                outcome.state_dir,
                Some(outcome.fleet),
            )
        } else {
            let path = &args.fleet.path;
            let root = std::fs::canonicalize(path)
                .with_context(|| format!("{}: no such fleet folder", path.display()))?;
            let config = discover::Config::load(&root)?;
            let state_dir = args.fleet.state.resolve(&root);
            (root, config, state_dir, None)
        };
        let repo_dir = match (&args.templates, &config.templates.repo) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => root.join(dir),
            (None, None) => bail!(
                "no templates repository: set [templates] repo in {} or pass --templates DIR",
                root.join(discover::config::FILE_NAME).display()
            ),
        };
        let repo = vcs::Repo::open(&repo_dir)
            .with_context(|| format!("opening the templates repository {}", repo_dir.display()))?;
        let label = std::fs::canonicalize(&repo_dir)
            .ok()
            .and_then(|dir| dir.strip_prefix(&root).ok().map(Path::to_path_buf))
            .map_or_else(
                || repo_dir.display().to_string(),
                |rel| rel.display().to_string(),
            );
        let tags: Vec<Tag> = repo
            .tags()?
            .into_iter()
            .map(|t| Tag {
                name: t.name,
                commit: t.commit,
            })
            .collect();
        let moved = state::record_tags(&state_dir, &label, &tags)?;
        let (releases, diagnostics) = Releases::from_tags(&label, &tags);
        let mut source = TemplateSource {
            gitlab_project: config.templates.project.clone(),
            github_repo: config.templates.github.clone(),
        };
        if let Some(fleet) = &fleet
            && source.gitlab_project.is_none()
            && source.github_repo.is_none()
        {
            source = infer_source(fleet, &repo_dir);
            eprintln!(
                "note: [templates] project and github are not set in bulkhead.toml; governing pins of {}",
                [&source.gitlab_project, &source.github_repo]
                    .iter()
                    .filter_map(|s| s.as_deref())
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
        }
        let context = Context {
            root,
            state_dir,
            repo,
            label,
            source,
            releases,
            moved,
            diagnostics,
            fleet,
        };
        context.warn_moved_tags();
        Ok(context)
    }

    fn fleet(&self) -> &Fleet {
        static EMPTY: std::sync::OnceLock<Fleet> = std::sync::OnceLock::new();
        self.fleet
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Fleet::default))
    }

    /// One line per moved tag on stderr, with how many apps pin it when the fleet is known.
    fn warn_moved_tags(&self) {
        for moved in &self.moved {
            eprintln!("warning: {}", self.moved_message(moved));
        }
    }

    fn moved_message(&self, moved: &state::MovedTag) -> String {
        let pinned = self.fleet.as_ref().map_or(0, |fleet| {
            fleet
                .services
                .iter()
                .filter(|s| {
                    self.source.pins(s).iter().any(|p| {
                        p.version
                            .as_deref()
                            .and_then(|v| self.releases.resolve(v))
                            .is_some_and(|r| r.tag == moved.tag)
                    })
                })
                .count()
        });
        let who = if pinned > 0 {
            format!(" ({pinned} app(s) pin it)")
        } else {
            String::new()
        };
        format!(
            "release tag {} moved from {} to {} after apps pinned it{who}: never modify a release in place; restore it (git tag -f {} {}) and publish a new version",
            moved.tag,
            short(&moved.recorded),
            short(&moved.now),
            moved.tag,
            short(&moved.recorded),
        )
    }

    /// The release a tag or version names.
    fn release(&self, version: &str) -> Result<&Release> {
        self.releases.resolve(version).with_context(|| {
            let known: Vec<&str> = self.releases.all().iter().map(|r| r.tag.as_str()).collect();
            format!(
                "{version} is no release of {} (releases: {})",
                self.label,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    }

    /// The template files apps name by path: they are templates even without a spec header.
    fn wanted_files(&self) -> BTreeSet<String> {
        self.fleet()
            .services
            .iter()
            .flat_map(|s| self.source.pins(s))
            .filter(|p| p.kind == TemplateKind::GitlabProject)
            .map(templates::check::pinned_file)
            .collect()
    }

    /// The template files at a commit.
    fn template_set(&self, commit: &str, name: &str) -> Result<TemplateSet> {
        let files: Vec<String> = self
            .repo
            .files(commit)?
            .into_iter()
            .filter(|p| {
                let lower = p.to_ascii_lowercase();
                lower.ends_with(".yml") || lower.ends_with(".yaml")
            })
            .collect();
        let paths: Vec<&str> = files.iter().map(String::as_str).collect();
        let contents = self.repo.show_many(commit, &paths)?;
        let texts: Vec<(&str, String)> = paths
            .iter()
            .zip(contents)
            .filter_map(|(path, bytes)| Some((*path, String::from_utf8(bytes?).ok()?)))
            .collect();
        let (set, diagnostics) = TemplateSet::read(
            texts.iter().map(|(p, t)| (*p, t.as_str())),
            &self.wanted_files(),
        );
        for d in diagnostics {
            eprintln!("{}@{name}: {d}", self.label);
        }
        Ok(set)
    }

    /// The template sets of the given releases, by tag.
    fn template_sets(&self, tags: &BTreeSet<String>) -> Result<BTreeMap<String, TemplateSet>> {
        let mut sets = BTreeMap::new();
        for tag in tags {
            if let Some(release) = self.releases.by_tag(tag) {
                sets.insert(tag.clone(), self.template_set(&release.commit, tag)?);
            }
        }
        Ok(sets)
    }

    fn print_diagnostics(&self) {
        for d in &self.diagnostics {
            eprintln!("{d}");
        }
    }
}

/// Without `[templates] project`/`github`: the pins whose repository has the templates folder's name.
fn infer_source(fleet: &Fleet, repo_dir: &Path) -> TemplateSource {
    let name = repo_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut gitlab: BTreeMap<String, usize> = BTreeMap::new();
    let mut github: BTreeMap<String, usize> = BTreeMap::new();
    for pin in fleet.services.iter().flat_map(|s| &s.templates) {
        let last = pin.source.rsplit('/').next().unwrap_or("");
        if last != name {
            continue;
        }
        match pin.kind {
            TemplateKind::GitlabProject => *gitlab.entry(pin.source.clone()).or_default() += 1,
            TemplateKind::GithubWorkflow => *github.entry(pin.source.clone()).or_default() += 1,
            _ => {}
        }
    }
    let most = |m: BTreeMap<String, usize>| m.into_iter().max_by_key(|(_, n)| *n).map(|(s, _)| s);
    TemplateSource {
        gitlab_project: most(gitlab),
        github_repo: most(github),
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// Output of `template diff --format json`.
#[derive(Debug, Serialize)]
struct DiffJson<'a> {
    schema: &'static str,
    repo: &'a str,
    old: Side<'a>,
    new: Side<'a>,
    changes: &'a [templates::InterfaceChange],
    required_bump: Bump,
    /// `None` when NEW is no release.
    actual_bump: Option<Bump>,
    under_bumped: bool,
    suggested_version: Option<String>,
    moved_tags: Vec<String>,
    diagnostics: &'a [Diagnostic],
}

#[derive(Debug, Serialize)]
struct Side<'a> {
    name: &'a str,
    commit: &'a str,
}

fn diff(args: DiffArgs) -> Result<Exit> {
    let context = Context::load(&args.fleet, false)?;
    context.print_diagnostics();
    let old = context.release(&args.old)?.clone();
    let (new_name, new_commit, new_release) = match context.releases.resolve(&args.new) {
        Some(r) => (r.tag.clone(), r.commit.clone(), Some(r.clone())),
        None => {
            let commit = context.repo.resolve(&args.new)?.with_context(|| {
                format!(
                    "{} is neither a release nor a revision of {}",
                    args.new, context.label
                )
            })?;
            (args.new.clone(), commit, None)
        }
    };
    let old_set = context.template_set(&old.commit, &old.tag)?;
    let new_set = context.template_set(&new_commit, &new_name)?;
    let changes = templates::diff_sets(&old_set, &new_set);
    let required = templates::required_bump(&changes);
    let newer = new_release
        .as_ref()
        .is_some_and(|n| n.version > old.version);
    let actual = new_release
        .as_ref()
        .map(|n| old.version.bump_to(&n.version));
    let under = newer && actual.is_some_and(|a| a < required);
    let suggested = (!newer || under)
        .then(|| next_version(&old, required))
        .flatten();
    let moved: Vec<&state::MovedTag> = context
        .moved
        .iter()
        .filter(|m| m.tag == old.tag || m.tag == new_name)
        .collect();
    let verdict = render::DiffVerdict {
        old: &old.tag,
        new: &new_name,
        required,
        actual,
        newer,
        under,
        suggested: suggested.as_deref(),
        moved: moved.iter().map(|m| context.moved_message(m)).collect(),
    };
    match args.format.get() {
        Format::Json => output::print_json(&DiffJson {
            schema: "bulkhead.template-diff/v1",
            repo: &context.label,
            old: Side {
                name: &old.tag,
                commit: &old.commit,
            },
            new: Side {
                name: &new_name,
                commit: &new_commit,
            },
            changes: &changes,
            required_bump: required,
            actual_bump: actual,
            under_bumped: under,
            suggested_version: suggested.clone(),
            moved_tags: verdict.moved.clone(),
            diagnostics: &context.diagnostics,
        })?,
        Format::Table => output::print(&render::diff_table(&context.label, &changes, &verdict))?,
        Format::Markdown => {
            output::print(&render::diff_markdown(&context.label, &changes, &verdict))?;
        }
    }
    Ok(Exit::answer(!under && moved.is_empty()))
}

/// The version after `release` that carries a change of size `bump` (Cargo's reading below 1.0.0).
fn next_version(release: &Release, bump: Bump) -> Option<String> {
    let v = &release.version;
    let (major, minor, patch) = match (bump, v.major) {
        (Bump::None, _) => return None,
        (Bump::Major, 0) => (0, v.minor + 1, 0),
        (Bump::Major, _) => (v.major + 1, 0, 0),
        (Bump::Minor, 0) | (Bump::Patch, _) => (v.major, v.minor, v.patch + 1),
        (Bump::Minor, _) => (v.major, v.minor + 1, 0),
    };
    let bare = format!("{major}.{minor}.{patch}");
    Some(templates::version::spelled_like(&bare, &release.tag))
}

/// The fleet checked against a release, with everything loaded for it.
struct Checked {
    context: Context,
    target: Release,
    sets: BTreeMap<String, TemplateSet>,
    check: templates::FleetCheck,
}

fn load_check(fleet_args: &TemplateFleetArgs, version: &str) -> Result<Checked> {
    let context = Context::load(fleet_args, true)?;
    context.print_diagnostics();
    let target = context.release(version)?.clone();
    check_release(context, target)
}

/// Checks every app of the fleet against `target`, reading the template
/// releases the check needs.
fn check_release(context: Context, target: Release) -> Result<Checked> {
    let needed = templates::check::releases_needed(
        context.fleet(),
        &context.source,
        &context.releases,
        &target,
    );
    let sets = context.template_sets(&needed)?;
    let check = templates::check_fleet(
        context.fleet(),
        &context.source,
        &context.releases,
        &sets,
        &target,
    );
    Ok(Checked {
        context,
        target,
        sets,
        check,
    })
}

/// Output of `template check --format json`.
#[derive(Debug, Serialize)]
struct CheckJson<'a> {
    schema: &'static str,
    template: &'a str,
    version: &'a str,
    breaking: Vec<&'a templates::AppCheck>,
    safe: Vec<&'a templates::AppCheck>,
    not_using: &'a [String],
    moved_tags: Vec<String>,
    diagnostics: &'a [Diagnostic],
}

fn check(args: CheckArgs) -> Result<Exit> {
    let checked = load_check(&args.fleet, &args.release)?;
    let check = &checked.check;
    match args.format.get() {
        Format::Json => output::print_json(&CheckJson {
            schema: "bulkhead.template-check/v1",
            template: &check.template,
            version: &check.version,
            breaking: check.breaking().collect(),
            safe: check.safe().collect(),
            not_using: &check.not_using,
            moved_tags: checked
                .context
                .moved
                .iter()
                .map(|m| checked.context.moved_message(m))
                .collect(),
            diagnostics: &checked.context.diagnostics,
        })?,
        Format::Table => output::print(&render::check_table(check))?,
        Format::Markdown => output::print(&render::check_markdown(check))?,
    }
    Ok(Exit::answer(check.breaking().next().is_none()))
}

fn make_plan(checked: &Checked, waves: &WaveArgs) -> AdoptionPlan {
    let options = PlanOptions {
        wave_size: waves.wave_size,
        soak: waves.soak,
    };
    let empty = TemplateSet::default();
    templates::plan(
        &checked.check,
        checked.context.fleet(),
        &checked.context.releases,
        checked.sets.get(&checked.target.tag).unwrap_or(&empty),
        &checked.context.source,
        &options,
    )
}

fn plan(args: PlanArgs) -> Result<Exit> {
    let checked = load_check(&args.fleet, &args.release)?;
    let plan = make_plan(&checked, &args.waves);
    let context = &checked.context;
    let saved = state::save_plan(&context.state_dir, &context.label, &plan)?;
    // "What breaks" shows the interface changes from the oldest release in use.
    let in_use: Vec<&Release> = checked
        .sets
        .keys()
        .filter_map(|t| context.releases.by_tag(t))
        .filter(|r| r.version < checked.target.version)
        .collect();
    let oldest = in_use.iter().min_by(|a, b| a.version.cmp(&b.version));
    let newest = in_use.iter().max_by(|a, b| a.version.cmp(&b.version));
    let changes = match oldest {
        Some(oldest) => templates::diff_sets(
            &checked.sets[&oldest.tag],
            &checked.sets[&checked.target.tag],
        ),
        None => Vec::new(),
    };
    let from = match (oldest, newest) {
        (Some(a), Some(b)) if a.tag == b.tag => Some(a.tag.clone()),
        (Some(a), Some(b)) => Some(format!("{}..{}", a.tag, b.tag)),
        _ => None,
    };
    let report = templates::impact_report(&plan, context.fleet(), &changes, from);
    match args.format.get() {
        Format::Json => output::print_json(&report)?,
        Format::Table => {
            output::print(&model::report::render_table(&report))?;
            output::print(&render::plan_coverage(&plan))?;
        }
        Format::Markdown => output::print(&model::report::render_markdown(&report))?,
    }
    eprintln!(
        "plan saved to {}; next: bulkhead template bump {} --wave 1 (add --apply to commit)",
        saved.display(),
        plan.version
    );
    Ok(Exit::Ran)
}

fn adoption(args: AdoptionArgs) -> Result<Exit> {
    let context = Context::load(&args.fleet, true)?;
    context.print_diagnostics();
    let report = templates::adoption::adoption(
        context.fleet(),
        &context.source,
        &context.releases,
        args.window,
    );
    match args.format.get() {
        Format::Json => output::print_json(&report)?,
        Format::Table => output::print(&render::adoption_table(&report))?,
        Format::Markdown => output::print(&render::adoption_markdown(&report))?,
    }
    Ok(Exit::Ran)
}

/// What happened to one app of a bumped wave.
enum Outcome {
    Done(String),
    Skipped(String),
    Failed(String),
}

fn bump(args: BumpArgs) -> Result<Exit> {
    let context = Context::load(&args.fleet, true)?;
    context.print_diagnostics();
    let target = context.release(&args.release)?.clone();
    let plan = match state::load_plan(&context.state_dir, &context.label, &target.tag) {
        Some((plan, path)) => {
            eprintln!("using the plan saved in {}", path.display());
            plan
        }
        None if args.rollback => bail!(
            "no saved plan for {} in {}: a rollback needs the wave's apps and their previous versions as planned (use the state directory the bump used)",
            target.tag,
            context.state_dir.path().display()
        ),
        None => {
            let checked = check_release(context, target.clone())?;
            let plan = make_plan(&checked, &args.waves);
            let path = state::save_plan(&checked.context.state_dir, &checked.context.label, &plan)?;
            eprintln!("no saved plan: planned now and saved to {}", path.display());
            return bump_wave(&checked.context, &plan, &args);
        }
    };
    bump_wave(&context, &plan, &args)
}

fn bump_wave(context: &Context, plan: &AdoptionPlan, args: &BumpArgs) -> Result<Exit> {
    let Some(wave) = plan.wave(args.wave) else {
        bail!(
            "the plan for {} has no wave {} (waves 1 to {})",
            plan.version,
            args.wave,
            plan.waves.len()
        );
    };
    let forge = args.pr.config()?;
    let mut failed = 0;
    for app in &wave.apps {
        let outcome = bump_app(context, plan, wave, app, args, forge.as_ref())
            .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
        let line = match outcome {
            Outcome::Done(text) => text,
            Outcome::Skipped(why) => format!("{}: {why}\n", app.service),
            Outcome::Failed(why) => {
                failed += 1;
                format!("{}: failed: {why}\n", app.service)
            }
        };
        output::print(&line)?;
    }
    let what = if args.rollback { "rollback" } else { "bump" };
    eprintln!(
        "wave {} ({}): {} app(s), {failed} failed{}",
        wave.number,
        wave.name,
        wave.apps.len(),
        if args.apply {
            String::new()
        } else {
            format!("; dry run, add --apply to commit the {what}")
        }
    );
    Ok(Exit::answer(failed == 0))
}

fn bump_app(
    context: &Context,
    plan: &AdoptionPlan,
    wave: &templates::plan::PlannedWave,
    app: &templates::plan::PlannedApp,
    args: &BumpArgs,
    forge: Option<&forge::Config>,
) -> Result<Outcome> {
    let Some(repo_path) = &app.repo else {
        return Ok(Outcome::Failed(
            "no repository known for it: bump its pins by hand".to_string(),
        ));
    };
    let repo = vcs::Repo::open(&context.root.join(repo_path))?;
    let branch = if args.rollback {
        format!("bulkhead/template-rollback-{}", plan.version)
    } else {
        format!("bulkhead/template-{}", plan.version)
    };
    // Pins by CI file, relative to the repository.
    let mut files: BTreeMap<String, Vec<&templates::plan::PlannedPin>> = BTreeMap::new();
    for pin in &app.pins {
        let rel = pin
            .at
            .path
            .strip_prefix(repo_path.as_str())
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or(&pin.at.path);
        files.entry(rel.to_string()).or_default().push(pin);
    }
    let mut changes = Vec::new();
    let mut edits = Vec::new();
    let mut diffs = String::new();
    let mut not_adopted: Vec<String> = Vec::new();
    for (rel, pins) in &files {
        let bytes = repo
            .show("HEAD", rel)?
            .with_context(|| format!("{rel} is not committed on HEAD of {repo_path}"))?;
        let original =
            String::from_utf8(bytes).with_context(|| format!("{repo_path}/{rel} is not UTF-8"))?;
        let mut text = original.clone();
        let mut done_lines = BTreeSet::new();
        for pin in pins {
            let target = templates::version::spelled_like(&plan.version, &pin.from);
            let (from, to) = if args.rollback {
                (target.clone(), pin.from.clone())
            } else {
                (pin.from.clone(), target.clone())
            };
            let Some(line) = templates::pin::version_line(&text, pin.kind, pin.at.line) else {
                bail!("{}: cannot find the version of this pin", pin.at);
            };
            if !done_lines.insert(line) {
                continue;
            }
            let path = format!("{repo_path}/{rel}");
            match templates::pin::rewrite_pin(&path, &text, pin.kind, pin.at.line, &from, &to) {
                Ok((new, edit)) => {
                    edits.push(format!(
                        "{rel}:{}: {} {} -> {}",
                        edit.line, pin.file, edit.from, edit.to
                    ));
                    text = new;
                }
                // Already on `to`: a bump merged before, or a rollback of a bump never merged.
                Err(_)
                    if templates::pin::rewrite_pin(
                        &path,
                        &text,
                        pin.kind,
                        pin.at.line,
                        &to,
                        &from,
                    )
                    .is_ok() =>
                {
                    if args.rollback {
                        not_adopted.push(format!("{rel}:{line}"));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if text != original {
            diffs.push_str(&templates::pin::unified_diff(
                &format!("{repo_path}/{rel}"),
                &original,
                &text,
            ));
            changes.push(vcs::FileChange {
                path: rel.clone(),
                content: text.into_bytes(),
            });
        }
    }
    if changes.is_empty() {
        return Ok(Outcome::Skipped(if args.rollback {
            format!(
                "HEAD still pins the previous version at {}; nothing to roll back (if bulkhead/template-{} was never merged, delete it instead)",
                not_adopted.join(", "),
                plan.version
            )
        } else {
            format!("already on {}", plan.version)
        }));
    }
    let header = format!(
        "# {} ({}): branch {branch} in {repo_path}\n",
        app.service,
        if args.rollback { "rollback" } else { "bump" }
    );
    if !args.apply {
        return Ok(Outcome::Done(format!("{header}{diffs}")));
    }
    if repo.resolve(&branch)?.is_some() {
        let same = changes
            .iter()
            .map(|c| Ok(repo.show(&branch, &c.path)?.as_deref() == Some(&c.content[..])))
            .collect::<Result<Vec<bool>>>()?
            .into_iter()
            .all(|s| s);
        return Ok(if same {
            match forge {
                Some(config) => {
                    let message = commit_message(context, plan, wave, app, args.rollback, &edits);
                    Outcome::Done(format!(
                        "{}: branch {branch} already holds this change\n{}",
                        app.service,
                        publish_app(context, &repo, config, args, app, &branch, &message, &diffs)?
                    ))
                }
                None => Outcome::Skipped(format!("branch {branch} already holds this change")),
            }
        } else {
            Outcome::Failed(format!(
                "branch {branch} already exists with other content; delete it (git -C {repo_path} branch -D {branch}) to redo"
            ))
        });
    }
    let message = commit_message(context, plan, wave, app, args.rollback, &edits);
    let commit = repo.commit_on_new_branch("HEAD", &branch, &changes, &message)?;
    let published = match forge {
        Some(config) => publish_app(context, &repo, config, args, app, &branch, &message, &diffs)?,
        None => String::new(),
    };
    Ok(Outcome::Done(format!(
        "{}: committed {} on {branch} in {repo_path}\n{published}",
        app.service,
        short(&commit)
    )))
}

/// Pushes an app's branch and opens or updates its change: titled by the
/// commit's subject, described by its body, the app's impact report and the diff.
#[allow(clippy::too_many_arguments)]
fn publish_app(
    context: &Context,
    repo: &vcs::Repo,
    config: &forge::Config,
    args: &BumpArgs,
    app: &templates::plan::PlannedApp,
    branch: &str,
    message: &str,
    diffs: &str,
) -> Result<String> {
    let (title, body) = message.split_once('\n').unwrap_or((message, ""));
    let mut description = format!("{}\n\n```diff\n{diffs}```\n\n", body.trim());
    if let Some(report) = context
        .fleet
        .as_ref()
        .and_then(|fleet| impact::services(fleet, std::slice::from_ref(&app.service)).ok())
    {
        description.push_str(&model::report::render_markdown(&report));
    }
    args::publish(
        repo,
        config,
        args.pr.base.as_deref(),
        branch,
        title,
        &description,
    )
}

/// The commit message: what changed, why, and how to undo it.
fn commit_message(
    context: &Context,
    plan: &AdoptionPlan,
    wave: &templates::plan::PlannedWave,
    app: &templates::plan::PlannedApp,
    rollback: bool,
    edits: &[String],
) -> String {
    let template = &plan.template;
    let to = &plan.version;
    let from: Vec<&str> = app
        .pins
        .iter()
        .map(|p| p.from.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let from = from.join(", ");
    let pins: String = edits.iter().map(|e| format!("- {e}\n")).collect();
    let (n, name) = (wave.number, &wave.name);
    let (subject, body, trailer_from, trailer_to) = if rollback {
        (
            format!("ci: roll back {template} to {from} (wave {n}: {name})"),
            vec![
                format!(
                    "Re-pin the shared CI template {template} from {to} back to {from}, the version this repository was on before wave {n} of the {to} adoption. Only the version changes: the pin lines are again exactly as they were before the bump."
                ),
                format!("Pins:\n{pins}"),
                format!(
                    "To adopt {to} again once the cause of the rollback is fixed, merge the branch that `bulkhead template bump {to} --wave {n} --apply` creates."
                ),
            ],
            to.as_str(),
            from.as_str(),
        )
    } else {
        (
            format!("ci: adopt {template} {to} (wave {n}: {name})"),
            vec![
                format!(
                    "Move this repository's pins of the shared CI template {template} from {from} to {to}. `bulkhead template check {to}` found nothing here that {to} breaks (inputs, jobs, stages, secrets, outputs), so this commit changes only the version."
                ),
                format!("Pins:\n{pins}"),
                format!(
                    "{to} is adopted in waves; this repository is in wave {n} of {count} ({name}). Gate: {gate}.",
                    count = plan.waves.len(),
                    gate = wave.gate
                ),
                format!(
                    "To roll back, merge the branch that `bulkhead template bump {to} --wave {n} --rollback --apply` creates, or revert this commit: both re-pin {from}."
                ),
            ],
            from.as_str(),
            to.as_str(),
        )
    };
    let mut message = format!("{subject}\n\n");
    for paragraph in body {
        if paragraph.starts_with("Pins:") {
            message.push_str(&paragraph);
        } else {
            message.push_str(&wrap(&paragraph, 72));
        }
        message.push('\n');
    }
    message.push_str(&format!(
        "Bulkhead-Template: {template}\nBulkhead-Template-Repo: {}\nBulkhead-Template-From: {trailer_from}\nBulkhead-Template-To: {trailer_to}\nBulkhead-Wave: {n}\n",
        context.label
    ));
    if rollback {
        message.push_str("Bulkhead-Rollback: true\n");
    }
    message
}

/// Wraps a paragraph at `width` columns (words longer than that stay whole).
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(tag: &str) -> Release {
        Release {
            tag: tag.into(),
            version: templates::Version::parse(tag).expect("valid"),
            commit: String::new(),
        }
    }

    #[test]
    fn next_versions_follow_the_required_bump() {
        let cases = [
            ("v1.4.2", Bump::Major, Some("v2.0.0")),
            ("v1.4.2", Bump::Minor, Some("v1.5.0")),
            ("v1.4.2", Bump::Patch, Some("v1.4.3")),
            ("1.4.2", Bump::Patch, Some("1.4.3")),
            ("v0.8.0", Bump::Major, Some("v0.9.0")),
            ("v0.8.0", Bump::Minor, Some("v0.8.1")),
            ("v1.4.2", Bump::None, None),
        ];
        for (tag, bump, expect) in cases {
            assert_eq!(
                next_version(&release(tag), bump).as_deref(),
                expect,
                "{tag} {bump}"
            );
        }
    }
}
