//! `bulkhead rollout`: progressive delivery of a change set in dependency
//! ordered waves with analysis gates and isolated rollback (docs/rollouts.md).

use crate::args::{Exit, FleetArgs, Format, FormatArgs};
use crate::output;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use model::report::table;
use orchestrator::driver::{Outcome, RollbackTime, rollback_times};
use orchestrator::operator::{self, OperateError};
use orchestrator::state::{ArgoTarget, StateDb, Target};
use rollout::{Event, Plan, PlanOptions, Rollout, Specs};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Plan a change set: waves in dependency order (providers first),
    /// lower tiers first within a level, a gate per wave, the services each
    /// analysis covers (the service and its callers), what a failure holds
    /// back, and the blast radius, rendered as an impact report.
    ///
    /// The same inputs always give the same plan. `--format json` writes a
    /// plan file that `start --plan` runs unchanged.
    ///
    /// Example: bulkhead rollout plan --services payments,orders --to green --path ./fleet
    Plan(PlanArgs),
    /// Plan (or load a plan file) and run it through an executor until every
    /// service is settled or a human is needed.
    ///
    /// Every transition is written to the state database before it is acted
    /// on; one line per transition goes to stderr. A service whose analysis
    /// fails is rolled back alone and the services depending on it in later
    /// waves are held; the rest proceed. At the end the routing of every
    /// service outside the change set is compared with its routing at the
    /// start.
    ///
    /// Exit status: 0 every service promoted, 1 finished with a service
    /// rolled back, held or aborted, 2 usage or I/O errors, 3 waiting for a
    /// human (`promote`, `resume` or `abort` carry on).
    ///
    /// Example: bulkhead rollout start --services payments,orders --path ./fleet
    /// --executor gateway --gateway-admin http://127.0.0.1:9901 --admin-token-env BULKHEAD_ADMIN_TOKEN
    Start(Box<StartArgs>),
    /// Show a rollout: waves, each service's phase and analyses, rollback
    /// times, what waits for a human, and whether services outside the change
    /// set kept their routing. Reads the state database only, so it works
    /// while another process drives the rollout.
    ///
    /// Example: bulkhead rollout status --path ./fleet --follow
    Status(StatusArgs),
    /// Pass a manual gate: a blue-green promotion without
    /// autoPromotionEnabled, an indefinite canary pause, or an inconclusive
    /// analysis (accepted). Without SERVICE: every service awaiting a human.
    ///
    /// A running driver applies it within 50 ms; with none, this command
    /// applies it and drives the rollout on.
    ///
    /// Example: bulkhead rollout promote payments --path ./fleet
    Promote(ServiceOperatorArgs),
    /// Start nothing new until `resume`; rollbacks still happen.
    ///
    /// Example: bulkhead rollout pause --path ./fleet
    Pause(OperatorArgs),
    /// Continue: after `pause`, after a crash (actions recorded but maybe not
    /// performed are performed again; they are idempotent), or to measure
    /// an inconclusive analysis again. Drives the rollout until it is
    /// settled or a human is needed; exit status as for `start`.
    ///
    /// Example: bulkhead rollout resume --path ./fleet
    Resume(OperatorArgs),
    /// Roll back at once to the stable pool: every started service of the
    /// change set, or only SERVICE.
    ///
    /// Example: bulkhead rollout abort payments --path ./fleet
    Abort(ServiceOperatorArgs),
    /// Roll a promoted SERVICE back to its stable pool.
    ///
    /// Example: bulkhead rollout undo payments --path ./fleet
    Undo(UndoArgs),
}

#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// The changed services, comma-separated.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    services: Vec<String>,
    /// The services whose manifests (YAML files) differ between --from-ref
    /// and --to-ref of the git repository at --path.
    #[arg(
        long,
        value_name = "REF",
        requires = "to_ref",
        conflicts_with = "services"
    )]
    from_ref: Option<String>,
    /// The newer ref of the two (a tag, branch or commit).
    #[arg(long, value_name = "REF", requires = "from_ref")]
    to_ref: Option<String>,
    /// The version rolled out (default: green when blue is live, and the reverse).
    #[arg(long, value_name = "VERSION")]
    to: Option<String>,
    /// The version live now.
    #[arg(long, value_name = "VERSION", default_value = "blue")]
    stable: String,
    /// The pod label that tells versions apart.
    #[arg(long, value_name = "LABEL", default_value = "version")]
    version_label: String,
    /// The fleet, and the state directory holding rollouts.db.
    #[command(flatten)]
    fleet: FleetArgs,
    /// Rollout and AnalysisTemplate documents: a YAML file or a folder of
    /// them (default: the fleet's rollouts/ folder, when it exists). A
    /// service without a Rollout gets blue-green with the built-in gate.
    #[arg(long, value_name = "PATH")]
    specs: Option<PathBuf>,
    /// Upgrade consumers before the services they call.
    #[arg(long)]
    consumers_first: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    change: ChangeArgs,
    #[command(flatten)]
    format: FormatArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExecutorKind {
    /// The bulkhead gateway's admin API.
    Gateway,
    /// Commits to a manifests repository that Argo CD or Flux syncs.
    Gitops,
    /// Patches Services, HTTPRoutes and Deployments through the Kubernetes API.
    Kubernetes,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// Run this plan (from `rollout plan --format json`) instead of planning.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["services", "from_ref"])]
    plan: Option<PathBuf>,
    /// What changes the routing.
    #[arg(long, value_enum, default_value_t = ExecutorKind::Gateway)]
    executor: ExecutorKind,
    /// The gateway's admin API (executor gateway).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9901")]
    gateway_admin: String,
    /// Environment variable holding the gateway admin token (its name is
    /// recorded, so `resume` reads it again; the token never is).
    #[arg(long, value_name = "NAME")]
    admin_token_env: Option<String>,
    /// The gateway's Prometheus endpoint for the gateway metrics gate
    /// (default: the admin API's /metrics with the executor gateway).
    #[arg(long, value_name = "URL")]
    gateway_metrics: Option<String>,
    /// The manifests repository (executor gitops).
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// The branch the GitOps controller syncs (executor gitops).
    #[arg(long, value_name = "BRANCH", default_value = "main")]
    branch: String,
    /// The Kubernetes API, plain http:// (`kubectl proxy`) (executor kubernetes, without --kubeconfig).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8001")]
    kube_api: String,
    /// Reach the cluster as kubectl does, through this kubeconfig: HTTPS with
    /// the cluster's CA, and a token, client certificate or exec plugin;
    /// `in-cluster` uses the pod's service account (executor kubernetes, and
    /// the Argo CD Application of --argocd-app).
    #[arg(long, value_name = "PATH", conflicts_with = "kube_token_env")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current-context).
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    context: Option<String>,
    /// The namespace of the Services and HTTPRoutes (executor kubernetes;
    /// default: the kubeconfig context's, else `default`).
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Environment variable holding a Kubernetes bearer token (never stored).
    #[arg(long, value_name = "NAME")]
    kube_token_env: Option<String>,
    /// Roll SERVICE out by replacing its image with REF in place (its
    /// strategy must be rolling): the container of the Deployment named after
    /// it (executor kubernetes), or every reference to the image in the
    /// repository's manifests, kustomizations and Helm values (executor
    /// gitops). The image it runs now is read at the start and is what a
    /// rollback puts back. Repeatable.
    #[arg(long = "image", value_name = "SERVICE=REF", value_parser = image_arg)]
    images: Vec<(String, String)>,
    /// Push the branch to this remote after each commit (executor gitops;
    /// Argo CD syncs from it).
    #[arg(long, value_name = "REMOTE")]
    remote: Option<String>,
    /// After each commit, wait until this Argo CD Application is Synced at
    /// the commit and Healthy, read through the Kubernetes API of
    /// --kubeconfig; Degraded fails the step (executor gitops).
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    argocd_app: Option<String>,
    /// The namespace of the Argo CD Application objects.
    #[arg(long, value_name = "NS", default_value = "argocd")]
    argocd_namespace: String,
    /// How long a Deployment's rollout (executor kubernetes) or an Argo CD
    /// sync (executor gitops) is waited for before the step fails.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::args::duration)]
    wait: Duration,
    /// Print every patch the rollout would send, as `kubectl diff` prints
    /// it (the object's YAML before and after, every gate taken as passed),
    /// and change nothing: objects are only read (executor kubernetes).
    #[arg(long)]
    dry_run: bool,
}

/// `SERVICE=REF` of `--image`.
fn image_arg(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((service, image)) if !service.is_empty() && !image.is_empty() => {
            Ok((service.to_string(), image.to_string()))
        }
        _ => Err(format!(
            "{text:?} is not SERVICE=REF (such as orders=registry.example/orders:2.1)"
        )),
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The rollout (default: the latest).
    #[arg(long, value_name = "ID")]
    rollout: Option<i64>,
    /// Print each transition as it is recorded until the rollout is
    /// finished or waits for a human.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    format: FormatArgs,
    /// The fleet whose state directory holds rollouts.db.
    #[command(flatten)]
    fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// The rollout (default: the latest).
    #[arg(long, value_name = "ID")]
    rollout: Option<i64>,
    /// The fleet whose state directory holds rollouts.db.
    #[command(flatten)]
    fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct ServiceOperatorArgs {
    /// Only this service of the change set.
    service: Option<String>,
    #[command(flatten)]
    operator: OperatorArgs,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The promoted service to roll back.
    service: String,
    #[command(flatten)]
    operator: OperatorArgs,
}

pub fn run(command: RolloutCommand) -> Result<Exit> {
    match command {
        RolloutCommand::Plan(args) => plan_cmd(args),
        RolloutCommand::Start(args) => start_cmd(*args),
        RolloutCommand::Status(args) => status_cmd(args),
        RolloutCommand::Promote(a) => operate(a.operator, Event::Promote { service: a.service }),
        RolloutCommand::Pause(a) => operate(a, Event::Pause),
        RolloutCommand::Resume(a) => operate(a, Event::Resume),
        RolloutCommand::Abort(a) => operate(a.operator, Event::Abort { service: a.service }),
        RolloutCommand::Undo(a) => operate(
            a.operator,
            Event::Undo {
                service: Some(a.service),
            },
        ),
    }
}

/// Reads the rollout specs: a file, or every .yaml/.yml file in a folder (sorted).
fn load_specs(change: &ChangeArgs) -> Result<Specs> {
    let path = match &change.specs {
        Some(p) => Some(p.clone()),
        None => Some(change.fleet.path.join("rollouts")).filter(|p| p.is_dir()),
    };
    let mut specs = Specs::default();
    let Some(path) = path else {
        return Ok(specs);
    };
    for file in discover::files::yaml_files(&path, false)? {
        let text = discover::files::read_text(&file)?;
        specs.add(&file.display().to_string(), &text);
    }
    Ok(specs)
}

/// The services whose YAML files differ between two refs of the repository at `root`.
fn changed_between(fleet: &model::Fleet, root: &Path, from: &str, to: &str) -> Result<Vec<String>> {
    let repo = vcs::Repo::open(root).with_context(|| {
        format!(
            "--from-ref needs --path to be a git repository ({})",
            root.display()
        )
    })?;
    for rev in [from, to] {
        if repo.resolve(rev)?.is_none() {
            bail!("{rev} names no commit in {}", root.display());
        }
    }
    let yaml = |p: &String| p.ends_with(".yaml") || p.ends_with(".yml");
    let mut paths: Vec<String> = repo.files(from)?.into_iter().filter(yaml).collect();
    paths.extend(repo.files(to)?.into_iter().filter(yaml));
    paths.sort();
    paths.dedup();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let before = repo.show_many(from, &refs)?;
    let after = repo.show_many(to, &refs)?;
    let changed: Vec<&String> = paths
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| b != a)
        .map(|(p, _)| p)
        .collect();
    let mut services: Vec<String> = fleet
        .services
        .iter()
        .filter(|s| {
            changed.iter().any(|path| {
                s.declared_at.iter().any(|d| &d.path == *path)
                    || s.repo
                        .as_ref()
                        .is_some_and(|r| path.starts_with(&format!("{}/", r.trim_end_matches('/'))))
            })
        })
        .map(|s| s.name.clone())
        .collect();
    services.sort();
    if services.is_empty() {
        bail!(
            "no service's manifests changed between {from} and {to} ({} YAML file(s) changed)",
            changed.len()
        );
    }
    eprintln!(
        "{} YAML file(s) changed between {from} and {to}: services {}",
        changed.len(),
        services.join(", ")
    );
    Ok(services)
}

fn make_plan(change: &ChangeArgs) -> Result<Plan> {
    if change.services.is_empty() && change.from_ref.is_none() {
        bail!("name the changed services with --services a,b,c (or --from-ref A --to-ref B)");
    }
    let outcome = output::scan(&change.fleet.scan_options())?;
    let services = match (&change.from_ref, &change.to_ref) {
        (Some(from), Some(to)) => changed_between(&outcome.fleet, &outcome.root, from, to)?,
        _ => change.services.clone(),
    };
    let specs = load_specs(change)?;
    let options = PlanOptions {
        consumers_first: change.consumers_first,
        version_label: change.version_label.clone(),
        stable_version: change.stable.clone(),
    };
    Ok(rollout::plan(
        &outcome.fleet,
        &services,
        change.to.as_deref(),
        &specs,
        &options,
    )?)
}

fn plan_table(plan: &Plan) -> String {
    let mut out = format!(
        "{} service(s) to {} in {} wave(s)\n\n",
        plan.services.len(),
        plan.to_version,
        plan.waves.len()
    );
    let mut rows = Vec::new();
    for (index, wave) in plan.waves.iter().enumerate() {
        for name in &wave.services {
            let s = &plan.rollouts[name];
            rows.push(vec![
                (index + 1).to_string(),
                name.clone(),
                s.tier.map_or("-".to_string(), |t| t.to_string()),
                s.strategy.name().to_string(),
                s.analysis_services.join(","),
                if s.holds_on_failure.is_empty() {
                    "-".to_string()
                } else {
                    s.holds_on_failure.join(",")
                },
                s.blast_radius.len().to_string(),
            ]);
        }
    }
    out.push_str(&table(
        &[
            "WAVE",
            "SERVICE",
            "TIER",
            "STRATEGY",
            "ANALYSED ON",
            "HOLDS ON FAILURE",
            "BLAST RADIUS",
        ],
        &rows,
    ));
    out.push('\n');
    for (index, wave) in plan.waves.iter().enumerate() {
        out.push_str(&format!("gate {}: {}\n", index + 1, wave.gate));
    }
    for note in &plan.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

fn plan_cmd(args: PlanArgs) -> Result<Exit> {
    let plan = make_plan(&args.change)?;
    match args.format.get() {
        Format::Json => output::print_json(&plan)?,
        Format::Table => output::print(&format!(
            "{}\n{}",
            plan_table(&plan),
            model::report::render_table(&plan.report)
        ))?,
        Format::Markdown => output::print(&model::report::render_markdown(&plan.report))?,
    }
    Ok(Exit::Ran)
}

fn target(args: &StartArgs) -> Result<Target> {
    Ok(match args.executor {
        ExecutorKind::Gateway => Target::Gateway {
            admin: args.gateway_admin.trim_end_matches('/').to_string(),
            token_env: args.admin_token_env.clone(),
            metrics: args
                .gateway_metrics
                .clone()
                .unwrap_or_else(|| format!("{}/metrics", args.gateway_admin.trim_end_matches('/'))),
        },
        ExecutorKind::Gitops => Target::Gitops {
            repo: args
                .repo
                .clone()
                .context("--executor gitops needs --repo DIR (the manifests repository)")?,
            branch: args.branch.clone(),
            metrics: args.gateway_metrics.clone(),
            metrics_token_env: args.admin_token_env.clone(),
            remote: args.remote.clone(),
            argocd: match (&args.argocd_app, &args.kubeconfig) {
                (Some(application), Some(kubeconfig)) => Some(ArgoTarget {
                    application: application.clone(),
                    namespace: args.argocd_namespace.clone(),
                    kubeconfig: absolute_kubeconfig(kubeconfig),
                    context: args.context.clone(),
                    wait_seconds: Some(args.wait.as_secs()),
                }),
                _ => None,
            },
        },
        ExecutorKind::Kubernetes => Target::Kubernetes {
            api: args.kube_api.clone(),
            namespace: args.namespace.clone().unwrap_or_else(|| {
                // With a kubeconfig, empty means the context's namespace.
                if args.kubeconfig.is_some() {
                    String::new()
                } else {
                    "default".to_string()
                }
            }),
            token_env: args.kube_token_env.clone(),
            metrics: args.gateway_metrics.clone(),
            metrics_token_env: args.admin_token_env.clone(),
            kubeconfig: args.kubeconfig.as_deref().map(absolute_kubeconfig),
            context: args.context.clone(),
            wait_seconds: Some(args.wait.as_secs()),
        },
    })
}

/// The kubeconfig as recorded, so `resume` from another folder finds it.
fn absolute_kubeconfig(path: &Path) -> PathBuf {
    if path.as_os_str() == orchestrator::kubernetes::IN_CLUSTER {
        path.to_path_buf()
    } else {
        std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
    }
}

fn start_cmd(args: StartArgs) -> Result<Exit> {
    let mut plan = match &args.plan {
        Some(file) => {
            let text = discover::files::read_text(file)?;
            serde_json::from_str::<Plan>(&text).with_context(|| {
                format!(
                    "{} is not a rollout plan (write one with `bulkhead rollout plan --format json`)",
                    file.display()
                )
            })?
        }
        None => make_plan(&args.change)?,
    };
    for (service, to) in &args.images {
        plan.takes_image(service)
            .with_context(|| format!("--image {service}={to}"))?;
    }
    if args.dry_run {
        return dry_run(&args, plan);
    }
    let target = target(&args)?;
    let (mut executor, sources) = orchestrator::connect(&target)?;
    take_images(&args, &mut plan, executor.as_mut())?;
    let before = orchestrator::outside_routing(executor.as_mut(), &plan)
        .context("reading the routing of the services outside the change set")?;
    let mut db = StateDb::open(args.change.fleet.state_dir().path())?;
    let id = db.create(&Rollout::new(plan), &target)?;
    db.save_snapshot(id, "before", &before)?;
    eprintln!(
        "rollout {id}: {} service(s) outside the change set recorded; state in {}",
        before.len(),
        db.path().display()
    );
    drive(&mut db, id, executor, sources, None)
}

/// Puts each `--image SERVICE=REF` in the plan, with the image the
/// service's workload runs now (what a rollback puts back).
fn take_images(
    args: &StartArgs,
    plan: &mut Plan,
    executor: &mut dyn orchestrator::Executor,
) -> Result<()> {
    for (service, to) in &args.images {
        let route = plan
            .service(service)
            .map_or_else(|| service.clone(), |p| p.route.clone());
        let from = executor
            .image(&route, to)
            .with_context(|| format!("--image {service}={to}: reading the image it runs now"))?;
        plan.set_image(service, &from, to)
            .with_context(|| format!("--image {service}={to}"))?;
        eprintln!("{service}: image {from} -> {to}");
    }
    Ok(())
}

/// `rollout start --dry-run`: the rollout's patches as diffs, nothing written.
fn dry_run(args: &StartArgs, mut plan: Plan) -> Result<Exit> {
    use orchestrator::cluster::{Connection, diff};
    if args.executor != ExecutorKind::Kubernetes {
        bail!("--dry-run needs --executor kubernetes");
    }
    let connection = match &args.kubeconfig {
        Some(path) => Connection::open(path, args.context.as_deref())?,
        None => {
            let token = args
                .kube_token_env
                .as_deref()
                .map(|name| std::env::var(name).with_context(|| format!("--kube-token-env {name}")))
                .transpose()?;
            Connection::plain(&args.kube_api, token, "default")?
        }
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| connection.namespace.clone());
    let mut executor = diff::DiffExecutor::new(connection, &namespace);
    take_images(args, &mut plan, &mut executor)?;
    let performed = diff::rehearse(plan, &mut executor)?;
    output::print(&executor.diffs.concat())?;
    for (step, action) in performed.iter().enumerate() {
        eprintln!("step {}: {action}", step + 1);
    }
    eprintln!(
        "dry run: {} patch(es) of {} step(s) in namespace {namespace}; nothing was changed",
        executor.diffs.len(),
        performed.len()
    );
    Ok(Exit::Ran)
}

/// Drives a rollout (recovering first), then reports and picks the exit status.
fn drive(
    db: &mut StateDb,
    id: i64,
    executor: Box<dyn orchestrator::Executor>,
    sources: orchestrator::analysis::Sources,
    event: Option<Event>,
) -> Result<Exit> {
    let outcome = match operator::drive(db, id, executor, sources, event) {
        Err(OperateError::Busy { pid, .. }) => {
            bail!(
                "rollout {id} is being driven by process {pid}; use promote/pause/abort to act on it"
            )
        }
        outcome => outcome?,
    };
    report(db, id)?;
    Ok(match outcome {
        Outcome::WaitingForHuman => Exit::Waiting,
        Outcome::Finished => {
            let status = db.load(id)?.status();
            Exit::answer(status.promoted == status.services.len())
        }
    })
}

/// The comparison of the routing outside the change set, start vs end.
#[derive(Debug, Serialize)]
struct Untouched {
    services: usize,
    /// `None` until the rollout finished.
    identical: Option<bool>,
    changed: Vec<String>,
}

fn untouched(db: &StateDb, id: i64) -> Result<Option<Untouched>> {
    let Some(before) = db.snapshot(id, "before")? else {
        return Ok(None);
    };
    let after = db.snapshot(id, "after")?;
    let changed: Vec<String> = after.as_ref().map_or_else(Vec::new, |after| {
        let mut names: Vec<String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .cloned()
            .collect();
        names.dedup();
        names
    });
    Ok(Some(Untouched {
        services: before.len(),
        identical: after.map(|_| changed.is_empty()),
        changed,
    }))
}

#[derive(Debug, Serialize)]
struct StatusJson {
    id: i64,
    /// `created`, `running`, `waiting`, `finished`.
    status: String,
    driver: Option<u32>,
    target: Target,
    rollout: rollout::Status,
    rollbacks: Vec<RollbackTime>,
    untouched: Option<Untouched>,
    /// Actions recorded but not yet performed (performed again by `resume`).
    open_actions: usize,
    /// Every recorded transition: the event and the actions it ordered.
    transitions: Vec<orchestrator::state::Transition>,
}

fn status_json(db: &StateDb, id: i64) -> Result<StatusJson> {
    let row = db.row(id)?;
    Ok(StatusJson {
        id,
        status: row.status,
        driver: row.driver,
        target: row.target,
        rollout: db.load(id)?.status(),
        rollbacks: rollback_times(db, id)?,
        untouched: untouched(db, id)?,
        open_actions: db.open_actions(id)?.len(),
        transitions: db.transitions(id)?,
    })
}

fn status_text(s: &StatusJson) -> String {
    let r = &s.rollout;
    let mut out = format!(
        "rollout {} · {} · wave {}/{}{}{}\n\n",
        s.id,
        s.status,
        r.wave,
        r.waves,
        if r.paused { " · paused" } else { "" },
        s.driver
            .map_or(String::new(), |p| format!(" · driven by process {p}"))
    );
    let rows: Vec<Vec<String>> = r
        .services
        .iter()
        .map(|svc| {
            let detail = svc.phase.detail().to_string();
            vec![
                svc.wave.to_string(),
                svc.service.clone(),
                svc.strategy.clone(),
                svc.phase.name().to_string(),
                format!("{}%", svc.candidate_percent),
                svc.analyses
                    .last()
                    .map_or("-".to_string(), |a| format!("{} ({})", a.verdict, a.id)),
                detail,
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "WAVE",
            "SERVICE",
            "STRATEGY",
            "PHASE",
            "NEW",
            "LAST ANALYSIS",
            "DETAIL",
        ],
        &rows,
    ));
    out.push_str(&format!(
        "\n{} promoted, {} rolled back, {} held, {} aborted of {}\n",
        r.promoted,
        r.rolled_back,
        r.held,
        r.aborted,
        r.services.len()
    ));
    for rb in &s.rollbacks {
        out.push_str(&format!(
            "rollback of {} ({}): traffic on the stable pool {:.1} ms after the decision\n",
            rb.service, rb.trigger, rb.millis
        ));
    }
    if let Some(u) = &s.untouched {
        out.push_str(&match u.identical {
            Some(true) => format!(
                "untouched: {} service(s) outside the change set, routing identical before and after\n",
                u.services
            ),
            Some(false) => format!(
                "CHANGED outside the change set: {} (routing differs from the start)\n",
                u.changed.join(", ")
            ),
            None => format!(
                "untouched: {} service(s) outside the change set recorded; compared when the rollout finishes\n",
                u.services
            ),
        });
    }
    for a in &r.awaiting_human {
        out.push_str(&format!("awaiting a human: {a}\n"));
    }
    out
}

fn report(db: &StateDb, id: i64) -> Result<()> {
    let s = status_json(db, id)?;
    eprint!("\n{}", status_text(&s));
    Ok(())
}

fn rollout_id(db: &StateDb, given: Option<i64>) -> Result<i64> {
    Ok(match given {
        Some(id) => {
            db.row(id)?;
            id
        }
        None => db.latest()?,
    })
}

fn status_cmd(args: StatusArgs) -> Result<Exit> {
    let db = StateDb::open(args.fleet.state_dir().path())?;
    let id = rollout_id(&db, args.rollout)?;
    if args.follow {
        let mut shown = 0;
        loop {
            let transitions = db.transitions(id)?;
            for t in transitions.iter().skip(shown) {
                let actions: Vec<String> = t
                    .actions
                    .iter()
                    .map(orchestrator::driver::action_name)
                    .collect();
                output::print(&format!(
                    "#{} {} -> {}\n",
                    t.seq,
                    orchestrator::driver::event_name(&t.event),
                    if actions.is_empty() {
                        "-".to_string()
                    } else {
                        actions.join("; ")
                    }
                ))?;
            }
            shown = transitions.len();
            let row = db.row(id)?;
            if row.status == "finished" || (row.status == "waiting" && row.driver.is_none()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let s = status_json(&db, id)?;
    match args.format.get() {
        Format::Json => output::print_json(&s)?,
        Format::Table | Format::Markdown => output::print(&status_text(&s))?,
    }
    Ok(Exit::Ran)
}

/// Delivers an operator event: to the running driver through the database
/// inbox, or, when none runs, applies it here (and, for promote and resume,
/// drives the rollout on).
fn operate(args: OperatorArgs, event: Event) -> Result<Exit> {
    let mut db = StateDb::open(args.fleet.state_dir().path())?;
    let id = rollout_id(&db, args.rollout)?;
    let driving = db.row(id)?.driver;
    if let Some(pid) = operator::send_to_driver(&db, id, &event)? {
        eprintln!("rollout {id}: applied by the driver (process {pid})");
        output::print(&status_text(&status_json(&db, id)?))?;
        return Ok(Exit::Ran);
    }
    if let Some(pid) = driving.filter(|p| *p != std::process::id()) {
        eprintln!("rollout {id}: the driver (process {pid}) stopped first; applying here");
    }
    if operator::keeps_driving(&event) {
        let (executor, sources) = orchestrator::connect(&db.row(id)?.target)?;
        return drive(&mut db, id, executor, sources, Some(event));
    }
    let finished = operator::apply(&mut db, id, event)?;
    let s = status_json(&db, id)?;
    output::print(&status_text(&s))?;
    if !finished {
        eprintln!("rollout {id}: run `bulkhead rollout resume` to carry on");
    }
    Ok(Exit::Ran)
}
