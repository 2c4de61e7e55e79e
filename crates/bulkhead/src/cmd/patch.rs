//! `bulkhead patch`: rolling host patching with snapshots, maintenance
//! windows, health checks and automatic rollback (docs/patching.md).

use crate::args::{Exit, FleetArgs, Format, FormatArgs};
use crate::output;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use discover::{StateDir, StateFile};
use hostops::state::{Recorded, StateDb, rollback_durations, step_durations};
use hostops::{Finish, Options};
use patch::{BatchSpec, HostState, Inventory, PatchPlan, PlanOptions, Run, RunOutcome, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Test hook: stop a run (as if killed) after this many steps were performed.
const STOP_AFTER_ENV: &str = "BULKHEAD_PATCH_TEST_STOP_AFTER_STEPS";

#[derive(Debug, Subcommand)]
pub enum PatchCommand {
    /// Show which hosts would be patched, when, in which batches, with which
    /// package changes, reboot needs and kernel updates, as an impact report.
    ///
    /// Asks every selected host what `apt-get dist-upgrade` would change
    /// (after `apt-get update`), unless --offline. Hosts outside their
    /// maintenance window are listed with the time it opens.
    ///
    /// Example: bulkhead patch plan --path ./fleet --group web --batch 1,25%
    Plan(PlanArgs),
    /// Patch the selected hosts, batch by batch.
    ///
    /// Per host: pre-checks (dpkg --audit, dpkg lock), record the package
    /// state, save the .deb of every package about to change, snapshot (when
    /// configured), non-interactive dist-upgrade, health checks. A host that
    /// fails is rolled back (downgrade from the saved .debs, else its
    /// snapshot) and verified equal to the recorded state. A batch with more
    /// than --max-fail-percent failed hosts stops the run. Every step is
    /// recorded in the state database before it runs: after a crash,
    /// `bulkhead patch run --resume` continues, rolling back a host whose
    /// upgrade was cut short.
    ///
    /// Exit status: 0 every host patched or deferred, 1 a host failed or the
    /// run halted, 2 usage or I/O errors.
    ///
    /// Example: bulkhead patch run --path ./fleet --group web --batch 1,25%
    Run(RunArgs),
    /// Show a run: each host's state, steps with durations, rollback times.
    ///
    /// Example: bulkhead patch status --path ./fleet --json
    Status(StatusArgs),
    /// Roll one host of a run back to the package state recorded before its
    /// upgrade, and verify it.
    ///
    /// Exit status: 0 rolled back and verified, 1 the rollback failed.
    ///
    /// Example: bulkhead patch rollback web-1 --path ./fleet
    Rollback(RollbackArgs),
}

#[derive(Debug, Args)]
pub struct SelectArgs {
    /// The hosts inventory (YAML: hosts with address, groups,
    /// maintenance_window, package_manager, transport, snapshot,
    /// health_checks; see docs/patching.md). Default: `[hosts] inventory` of the
    /// fleet's bulkhead.toml, else inventory/hosts.yaml under --path.
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// Only these hosts (comma-separated). With --group, a host named by either is selected.
    #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
    hosts: Vec<String>,
    /// Only the hosts in these groups (comma-separated).
    #[arg(long, value_name = "GROUP,...", value_delimiter = ',')]
    group: Vec<String>,
    /// Hosts patched together: a count (2), a share of the selected hosts
    /// (25%, rounded down, at least 1), or a list whose last item repeats, like
    /// Ansible's serial (1,2,25%: one canary, then two, then a quarter at a time).
    #[arg(long, value_name = "N|N%|N,N%,...", default_value = "1")]
    batch: BatchSpec,
    /// Stop after a batch in which more than this share of the attempted hosts
    /// failed (0: the first failure stops the run).
    #[arg(long, value_name = "PERCENT", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    max_fail_percent: u32,
    /// Judge maintenance windows at this time instead of the clock, RFC 3339
    /// (2025-06-07T02:30:00+02:00). For dry runs and tests.
    #[arg(long, value_name = "RFC3339", value_parser = parse_now)]
    now: Option<Timestamp>,
    /// Patch hosts even outside their maintenance windows.
    #[arg(long)]
    ignore_window: bool,
}

/// The fleet whose state directory holds the run database (`patch.db`).
#[derive(Debug, Args)]
pub struct PatchStateArgs {
    #[command(flatten)]
    fleet: FleetArgs,
}

impl PatchStateArgs {
    fn dir(&self) -> StateDir {
        self.fleet.state_dir()
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Plan from the inventory alone, without asking the hosts.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    format: FormatArgs,
    #[command(flatten)]
    state: PatchStateArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Continue the last unfinished (killed) run instead of starting a new one.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    format: FormatArgs,
    #[command(flatten)]
    state: PatchStateArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run (default: the latest).
    #[arg(long, value_name = "ID")]
    run: Option<i64>,
    #[command(flatten)]
    format: FormatArgs,
    #[command(flatten)]
    state: PatchStateArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The host to roll back.
    host: String,
    /// The run whose recorded state is restored (default: the latest run with this host).
    #[arg(long, value_name = "ID")]
    run: Option<i64>,
    /// Judge maintenance windows at this time (RFC 3339); a rollback ignores windows.
    #[arg(long, value_name = "RFC3339", value_parser = parse_now)]
    now: Option<Timestamp>,
    #[command(flatten)]
    format: FormatArgs,
    #[command(flatten)]
    state: PatchStateArgs,
}

fn parse_now(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(text).map_err(|e| e.to_string())
}

fn system_now() -> Timestamp {
    Timestamp::from_unix_millis(hostops::state::now_ms())
}

pub fn run(command: PatchCommand) -> Result<Exit> {
    match command {
        PatchCommand::Plan(args) => plan_cmd(args),
        PatchCommand::Run(args) => run_cmd(args),
        PatchCommand::Status(args) => status_cmd(args),
        PatchCommand::Rollback(args) => rollback_cmd(args),
    }
}

/// `--inventory`, else `[hosts] inventory` of the fleet's bulkhead.toml, else `inventory/hosts.yaml`.
fn inventory_path(select: &SelectArgs, fleet: &FleetArgs) -> Result<PathBuf> {
    if let Some(path) = &select.inventory {
        return Ok(path.clone());
    }
    let config = discover::Config::load(&fleet.path)?;
    let rel = config
        .hosts
        .inventory
        .unwrap_or_else(|| "inventory/hosts.yaml".to_string());
    Ok(fleet.path.join(rel))
}

fn load_inventory(path: &Path) -> Result<Inventory> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut inv = patch::inventory::parse(&path.display().to_string(), &text);
    for d in &inv.diagnostics {
        eprintln!("{d}");
    }
    if inv.hosts.is_empty() {
        bail!("{} has no usable hosts", path.display());
    }
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    inv.resolve_paths(&base);
    Ok(inv)
}

fn plan_options(s: &SelectArgs) -> PlanOptions {
    PlanOptions {
        hosts: s.hosts.clone(),
        groups: s.group.clone(),
        batch: s.batch.clone(),
        max_fail_percent: s.max_fail_percent,
        now: s.now.unwrap_or_else(system_now),
        ignore_window: s.ignore_window,
    }
}

/// Plans, asking the hosts unless `offline`.
fn make_plan(select: &SelectArgs, state: &PatchStateArgs, offline: bool) -> Result<PatchPlan> {
    let inv = load_inventory(&inventory_path(select, &state.fleet)?)?;
    let options = plan_options(select);
    let (selected, _) = patch::plan::select(&inv, &options)?;
    let facts = if offline {
        BTreeMap::new()
    } else {
        eprintln!(
            "asking {} host(s) what they would upgrade ...",
            selected.len()
        );
        hostops::gather_facts(&selected, &state.dir().file(StateFile::PatchFacts))
    };
    Ok(patch::plan::plan(
        &inv,
        &options,
        &hostops::zoneinfo::resolve,
        &facts,
    )?)
}

fn plan_cmd(args: PlanArgs) -> Result<Exit> {
    let plan = make_plan(&args.select, &args.state, args.offline)?;
    let state = args.state.dir();
    let timing = if state.file(StateFile::PatchDb).exists() {
        StateDb::open(state.path())?.rollback_timing()?
    } else {
        None
    };
    output::print_report(&plan.to_report(timing), args.format.get())?;
    Ok(Exit::Ran)
}

/// The latest run that was neither finished nor is complete.
fn unfinished_run(db: &StateDb) -> Result<Option<i64>> {
    for row in db.runs()? {
        if row.finished_ms.is_none() {
            let (run, _) = db.load(row.id)?;
            if run.outcome() == RunOutcome::InProgress || !run.interrupted().is_empty() {
                return Ok(Some(row.id));
            }
        }
    }
    Ok(None)
}

fn run_cmd(args: RunArgs) -> Result<Exit> {
    let dir = args.state.dir();
    let state = dir.path();
    let db = StateDb::open(state)?;
    let pending = unfinished_run(&db)?;
    let id = match (pending, args.resume) {
        (Some(id), true) => {
            eprintln!("resuming run {id}");
            id
        }
        (None, true) => bail!(
            "there is no unfinished run to resume in {}",
            db.path().display()
        ),
        (Some(id), false) => bail!(
            "run {id} is unfinished (was it killed?): `bulkhead patch run --resume` continues it; `bulkhead patch status --run {id}` shows it"
        ),
        (None, false) => {
            let plan = make_plan(&args.select, &args.state, false)?;
            let id = db.create_run(&plan)?;
            eprintln!(
                "run {id}: {} host(s) in {} batch(es)",
                plan.hosts.len(),
                plan.batches.len()
            );
            id
        }
    };
    let fixed = args.select.now;
    let clock = move || fixed.unwrap_or_else(system_now);
    let stop_after = std::env::var(STOP_AFTER_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    let progress = |line: &str| eprintln!("{line}");
    let options = Options {
        state_dir: state,
        clock: &clock,
        only_host: None,
        stop_after_steps: stop_after,
        progress: &progress,
    };
    let (_, finish) = hostops::execute(&db, id, &options)?;
    if finish == Finish::Stopped {
        eprintln!(
            "run {id} stopped by the {STOP_AFTER_ENV} test hook; `bulkhead patch run --resume` continues it"
        );
        return Ok(Exit::No);
    }
    let (run, events) = db.load(id)?;
    print_status(id, &run, &events, args.format.get())?;
    Ok(Exit::answer(run.outcome() == RunOutcome::Succeeded))
}

fn status_cmd(args: StatusArgs) -> Result<Exit> {
    let db = open_existing(&args.state.dir())?;
    let id = match args.run {
        Some(id) => id,
        None => db
            .latest_run()?
            .with_context(|| format!("no runs in {}", db.path().display()))?,
    };
    let (run, events) = db.load(id)?;
    print_status(id, &run, &events, args.format.get())?;
    Ok(Exit::Ran)
}

fn open_existing(state: &StateDir) -> Result<StateDb> {
    if !state.file(StateFile::PatchDb).exists() {
        bail!(
            "no patch runs recorded in {} (bulkhead patch run creates them)",
            state.path().display()
        );
    }
    Ok(StateDb::open(state.path())?)
}

fn rollback_cmd(args: RollbackArgs) -> Result<Exit> {
    let dir = args.state.dir();
    let state = dir.path();
    let db = open_existing(&dir)?;
    let id = match args.run {
        Some(id) => id,
        None => {
            let mut found = None;
            for row in db.runs()? {
                if db.plan(row.id)?.host(&args.host).is_some() {
                    found = Some(row.id);
                    break;
                }
            }
            found.with_context(|| format!("no run patched host {}", args.host))?
        }
    };
    let fixed = args.now;
    let clock = move || fixed.unwrap_or_else(system_now);
    let progress = |line: &str| eprintln!("{line}");
    let options = Options {
        state_dir: state,
        clock: &clock,
        only_host: None,
        stop_after_steps: None,
        progress: &progress,
    };
    let user = std::env::var("USER").unwrap_or_else(|_| "the operator".into());
    let result = hostops::rollback_host(
        &db,
        id,
        &args.host,
        &format!("rollback requested by {user}"),
        &options,
    )?;
    let (run, events) = db.load(id)?;
    print_status(id, &run, &events, args.format.get())?;
    Ok(Exit::answer(matches!(result, HostState::RolledBack { .. })))
}

/// `bulkhead patch status --format json`.
#[derive(Debug, Serialize)]
struct StatusJson<'a> {
    schema: &'static str,
    run: i64,
    outcome: RunOutcome,
    halt: Option<patch::Halt>,
    hosts: Vec<HostJson<'a>>,
}

#[derive(Debug, Serialize)]
struct HostJson<'a> {
    name: &'a str,
    batch: usize,
    state: HostState,
    steps: Vec<StepJson>,
    rollback_seconds: Option<f64>,
    upgraded: Option<&'a [patch::PackageChange]>,
    reboot: Option<&'a patch::RebootNeed>,
    snapshot: Option<&'a str>,
    saved_debs: Option<&'a [patch::SavedDeb]>,
}

#[derive(Debug, Serialize)]
struct StepJson {
    step: patch::Step,
    ok: bool,
    seconds: f64,
}

fn outcome_text(run: &Run) -> String {
    match (run.outcome(), run.halt()) {
        (RunOutcome::Halted, Some(h)) => format!(
            "halted: batch {} failed on {} of {} host(s), over the {}% threshold",
            h.batch + 1,
            h.failed,
            h.attempted,
            run.plan().max_fail_percent
        ),
        (RunOutcome::Succeeded, _) => "succeeded".into(),
        (RunOutcome::Failed, _) => "finished with failed hosts".into(),
        (RunOutcome::InProgress, _) => "unfinished".into(),
        (RunOutcome::Halted, None) => "halted".into(),
    }
}

fn print_status(id: i64, run: &Run, events: &[Recorded], format: Format) -> Result<()> {
    let steps = step_durations(events);
    let rollbacks: BTreeMap<String, i64> = rollback_durations(events).into_iter().collect();
    let plan = run.plan();
    let hosts: Vec<HostJson> = plan
        .hosts
        .iter()
        .map(|h| {
            let name = h.spec.name.as_str();
            let record = run.host(name).expect("host in run");
            HostJson {
                name,
                batch: plan
                    .batches
                    .iter()
                    .position(|b| b.iter().any(|n| n == name))
                    .map_or(0, |b| b + 1),
                state: run.host_state(name).expect("host in run"),
                steps: steps
                    .iter()
                    .filter(|(n, ..)| n == name)
                    .map(|(_, step, ms, ok)| StepJson {
                        step: *step,
                        ok: *ok,
                        seconds: *ms as f64 / 1000.0,
                    })
                    .collect(),
                rollback_seconds: rollbacks.get(name).map(|ms| *ms as f64 / 1000.0),
                upgraded: record.upgraded.as_deref(),
                reboot: record.reboot.as_ref(),
                snapshot: record.snapshot.as_deref(),
                saved_debs: record.debs.as_deref(),
            }
        })
        .collect();
    if format == Format::Json {
        return output::print_json(&StatusJson {
            schema: "bulkhead.patch-status/v1",
            run: id,
            outcome: run.outcome(),
            halt: run.halt(),
            hosts,
        });
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let mut detail = h.state.reason().unwrap_or_default().to_string();
            if let HostState::Active { next } = &h.state {
                detail = format!("next: {next}");
            }
            if let (HostState::Patched, Some(changes)) = (&h.state, h.upgraded) {
                detail = if changes.is_empty() {
                    "up to date".into()
                } else {
                    changes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if let Some(r) = h.reboot {
                    detail.push_str(&format!("; reboot {r}"));
                }
            }
            if let Some(s) = h.rollback_seconds {
                detail.push_str(&format!(" (rolled back in {s:.3} s)"));
            }
            let total: f64 = h.steps.iter().map(|s| s.seconds).sum();
            vec![
                h.name.to_string(),
                h.batch.to_string(),
                h.state.label().to_string(),
                format!("{total:.2}s"),
                detail,
            ]
        })
        .collect();
    let mut text = format!("Run {id}: {}\n", outcome_text(run));
    if format == Format::Markdown {
        text = format!(
            "## bulkhead patch run {id}: {}\n\n| host | batch | state | time | detail |\n|---|---|---|---|---|\n",
            outcome_text(run)
        );
        for r in &rows {
            text.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4].replace('|', "\\|")
            ));
        }
    } else {
        text.push_str(&model::report::table(
            &["HOST", "BATCH", "STATE", "TIME", "DETAIL"],
            &rows,
        ));
    }
    output::print(&text)
}
