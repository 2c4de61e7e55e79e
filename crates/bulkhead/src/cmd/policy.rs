//! `bulkhead policy ...`: Rego policy enforcement.
//!
//! The glue between the file system and the pure `policy` crate: reads the
//! fleet (through the scan), manifest files, Gatekeeper templates, constraints
//! and gator suites, and renders findings as a table, JSON, SARIF or JUnit.

mod cache;

use crate::args::{self, Exit, StateArgs};
use crate::output;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use model::{Diagnostic, Severity};
use orchestrator::cluster::{self, ClusterError, Connection, watch, watch::Mirror};
use policy::admission::{self, FailurePolicy};
use policy::builtin::TemplateWindow;
use policy::{BundleConfig, Finding, GatekeeperSet, Level, Outcome, Policies};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a fleet, or manifest files, against the built-in bundle and Gatekeeper constraints.
    ///
    /// A PATH that is a folder is scanned as a fleet: every service is checked
    /// with the service rules (approved base images, base image pinning,
    /// catalog owner and tier, CI template support window) and every
    /// Kubernetes manifest the scan found with the manifest rules (no :latest
    /// or missing tag, digest pinning, allowed registries, resource limits,
    /// blue-green Service selectors) and with the constraints of --policy. A
    /// PATH that is a YAML file is checked as manifests only. Each finding
    /// names its file and line.
    ///
    /// Configuration comes from bulkhead.toml (`[images]` approved_registries are
    /// the approved base prefixes; [templates] repo gives the newest release)
    /// and the flags below, which win.
    ///
    /// Exit status: 0 when nothing denies, 1 on a deny (or a warning with
    /// --strict), 2 on errors.
    ///
    /// Example: bulkhead policy check --path ./fleet --policy gatekeeper/ --format sarif > policy.sarif
    Check(CheckArgs),
    /// Run gator-format test suites (kind: Suite) like `gator verify`.
    ///
    /// Each test loads a ConstraintTemplate and a Constraint; each case
    /// reviews an object (or an AdmissionReview) and checks its assertions
    /// (violations: yes, no or a count; message: a substring).
    ///
    /// Exit status: 0 when every case passes, 1 when any fails, 2 on errors.
    ///
    /// Example: bulkhead policy verify gatekeeper/suite.yaml
    Verify(VerifyArgs),
    /// Decide AdmissionReview requests (JSON files, or - for stdin) and print the responses.
    ///
    /// The same evaluation an admission webhook makes, without the server:
    /// useful to test a review captured from a cluster.
    ///
    /// Exit status: 0 when every request is allowed, 1 when any is denied, 2 on errors.
    ///
    /// Example: bulkhead policy admit review.json --budget 500ms
    Admit(AdmitArgs),
    /// Serve a ValidatingAdmissionWebhook over HTTPS (rustls).
    ///
    /// AdmissionReview v1 requests (POST /validate, or /) are decided like
    /// `policy admit`: the uid is echoed, denials deny with their messages,
    /// warnings are passed through, dry-run requests are decided the same way.
    /// A policy that fails or runs out of --budget denies (fail-closed), or
    /// with --fail-open allows with a warning. A malformed review gets HTTP 400.
    /// GET /healthz answers ok; GET /metrics is Prometheus text
    /// (bulkhead_admission_decisions_total{result}, bulkhead_admission_duration_seconds).
    ///
    /// The first stdout line is `listening on https://ADDR`; with --self-signed
    /// the second is `caBundle: BASE64`, the value for the webhook
    /// configuration's clientConfig.caBundle. Stops on SIGINT or SIGTERM.
    ///
    /// With --inventory DIR, every manifest under DIR is the referential data
    /// (`data.inventory`) Gatekeeper constraints look up, as `policy check`
    /// builds it from a fleet (a unique Ingress host, say); the folder is
    /// watched and reloaded when a file is added, changed or removed (a bad
    /// file keeps the previous inventory and is reported on stderr).
    ///
    /// With --inventory-cluster CONTEXT, the inventory is the cluster itself:
    /// each of --inventory-kinds is listed in every namespace, then watched,
    /// and every change is served as it arrives. A watch that fails keeps
    /// the inventory in force (reported on stderr) and is resumed with a
    /// bounded backoff; an expired one lists again.
    ///
    /// Example: bulkhead policy serve --cert tls.crt --key tls.key --listen 0.0.0.0:8443 --policy gatekeeper/ --inventory cluster-objects/
    ///
    /// Example: bulkhead policy serve --cert tls.crt --key tls.key --policy gatekeeper/ --inventory-cluster prod
    Serve(ServeArgs),
    /// Export the built-in image rules for another enforcement engine, or the
    /// objects that run the webhook on a cluster.
    ///
    /// Example: bulkhead policy export kyverno --allowed-registry registry.acme.internal/
    #[command(subcommand)]
    Export(ExportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Kyverno ClusterPolicies equivalent to the built-in image rules (YAML on stdout).
    ///
    /// Example: bulkhead policy export kyverno --allowed-registry registry.acme.internal/ > kyverno.yaml
    Kyverno(ExportArgs),
    /// The ValidatingWebhookConfiguration, Service, Deployment and
    /// PodDisruptionBudget that run `policy serve` on a cluster (YAML on stdout).
    ///
    /// The caBundle is filled from --ca (default: --cert, a self-signed
    /// certificate), after checking that --cert verifies against it for
    /// NAME.NAMESPACE.svc, as the API server will. The webhook reviews every
    /// namespace but kube-system and its own. failurePolicy is Fail (refuse
    /// what cannot be reviewed) unless --fail-open; the output explains both.
    ///
    /// Example: bulkhead policy export webhook --image registry.acme.internal/bulkhead:0.4.0 --cert tls.crt --policy-configmap bulkhead-policy | kubectl apply -f -
    Webhook(Box<WebhookArgs>),
}

#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Name of every object, and of the Service the API server calls.
    #[arg(long, value_name = "NAME", default_value = "bulkhead-admission")]
    name: String,
    /// Namespace of the Service and Deployment (left out of the reviews).
    #[arg(long, value_name = "NAMESPACE", default_value = "bulkhead-system")]
    namespace: String,
    /// The bulkhead image the Deployment runs.
    #[arg(long, value_name = "IMAGE")]
    image: String,
    /// Webhook replicas.
    #[arg(long, value_name = "N", default_value_t = 2)]
    replicas: u32,
    /// The serving certificate chain (PEM), valid for NAME.NAMESPACE.svc.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// The CA (PEM) that signed --cert: the caBundle (default: --cert itself).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Name of the kubernetes.io/tls Secret object holding tls.crt and tls.key
    /// (default: NAME-tls); the Deployment mounts it.
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,
    /// failurePolicy Ignore: admit what the webhook cannot review in time.
    #[arg(long)]
    fail_open: bool,
    /// The API server's timeout for one review, whole seconds from 1s to 30s.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = args::duration)]
    timeout: Duration,
    /// A ConfigMap of Gatekeeper templates and constraints, mounted as --policy.
    #[arg(long, value_name = "NAME")]
    policy_configmap: Option<String>,
    /// A ConfigMap of manifests, mounted as --inventory (data.inventory).
    #[arg(long, value_name = "NAME")]
    inventory_configmap: Option<String>,
    /// Keep data.inventory as a live copy of the cluster (list and watch,
    /// `--inventory-cluster --kubeconfig in-cluster`): the pods run as their own
    /// ServiceAccount with its token; `bulkhead cluster rbac` binds it.
    #[arg(long, conflicts_with = "inventory_configmap")]
    live_inventory: bool,
    /// Image prefix workloads may pull from, passed on to the webhook. Repeatable.
    #[arg(long, value_name = "PREFIX")]
    allowed_registry: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Gatekeeper ConstraintTemplates and Constraints: YAML files or folders of them. Repeatable.
    #[arg(long, value_name = "PATH")]
    policy: Vec<PathBuf>,
    /// Do not run the built-in bundle (only --policy constraints).
    #[arg(long)]
    no_builtin: bool,
    /// Image prefix workloads may pull from (registry/path, whole components). Repeatable.
    #[arg(long, value_name = "PREFIX")]
    allowed_registry: Vec<String>,
    /// Approved base image prefix (default: `[images]` approved_registries). Repeatable.
    #[arg(long, value_name = "PREFIX")]
    approved_base: Vec<String>,
    /// Newest CI template release (default: the highest vX.Y.Z tag of [templates] repo).
    #[arg(long, value_name = "VERSION")]
    template_latest: Option<String>,
    /// Supported major lines before the newest.
    #[arg(long, value_name = "N", default_value_t = 1)]
    template_window: u32,
    /// Time budget of one evaluation.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = args::duration)]
    budget: Duration,
    #[arg(long, hide = true, value_parser = args::millis, conflicts_with = "budget")]
    budget_ms: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Fleet folders or manifest files, like --path (default: the current folder).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// A fleet folder or manifest file. Repeatable; positional PATHs add to it.
    #[arg(long = "path", value_name = "PATH")]
    path: Vec<PathBuf>,
    #[command(flatten)]
    bundle: BundleArgs,
    #[command(flatten)]
    state: StateArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Table)]
    format: CheckFormat,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Fail on warnings too.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Table,
    Json,
    /// SARIF 2.1.0, for code scanning UIs.
    Sarif,
    /// JUnit XML, for CI test reports.
    Junit,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// gator suite files (kind: Suite).
    #[arg(required = true)]
    suites: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AdmitArgs {
    /// AdmissionReview JSON files; - reads stdin.
    #[arg(required = true)]
    reviews: Vec<PathBuf>,
    #[command(flatten)]
    bundle: BundleArgs,
    /// Allow when a policy cannot decide (error or time budget); the default denies.
    #[arg(long)]
    fail_open: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("tls").required(true).args(["cert", "self_signed"]))]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, printed on the first line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: std::net::SocketAddr,
    /// PEM certificate chain served to the API server.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Generate a self-signed certificate for --host (development) and print its caBundle.
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    self_signed: bool,
    /// DNS name or IP address the self-signed certificate is valid for, such as
    /// the webhook Service's `NAME.NAMESPACE.svc`. Repeatable.
    #[arg(long, value_name = "HOST", requires = "self_signed", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    host: Vec<String>,
    #[command(flatten)]
    bundle: BundleArgs,
    /// Allow when a policy cannot decide (error or time budget); the default denies.
    #[arg(long)]
    fail_open: bool,
    /// A folder of manifests (YAML, searched recursively) that Gatekeeper
    /// constraints see as data.inventory; reloaded when its files change.
    #[arg(long, value_name = "DIR")]
    inventory: Option<PathBuf>,
    /// How often --inventory is checked for changes.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = args::duration, requires = "inventory")]
    inventory_poll: Duration,
    /// Keep data.inventory as a live copy of this kubeconfig context's
    /// cluster (list, then watch); without a value, the current context.
    #[arg(long, value_name = "CONTEXT", num_args = 0..=1, default_missing_value = "",
          conflicts_with = "inventory")]
    inventory_cluster: Option<String>,
    /// The kubeconfig of --inventory-cluster (default: $KUBECONFIG, else
    /// ~/.kube/config); `in-cluster` uses the pod's service account.
    #[arg(long, value_name = "PATH", requires = "inventory_cluster")]
    kubeconfig: Option<PathBuf>,
    /// The kinds (plurals) --inventory-cluster copies, comma-separated: any of
    /// namespaces, services, ingresses, pods, deployments, statefulsets,
    /// daemonsets, jobs, cronjobs, configmaps. `bulkhead cluster rbac`
    /// grants list and watch on all of them.
    #[arg(long, value_name = "KINDS", value_delimiter = ',',
          default_values_t = orchestrator::cluster::watch::DEFAULT_KINDS.map(String::from),
          requires = "inventory_cluster")]
    inventory_kinds: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Image prefix workloads may pull from. Repeatable.
    #[arg(long, value_name = "PREFIX")]
    allowed_registry: Vec<String>,
}

pub fn run(command: PolicyCommand) -> Result<Exit> {
    match command {
        PolicyCommand::Check(args) => check(args),
        PolicyCommand::Verify(args) => verify(args),
        PolicyCommand::Admit(args) => admit(args),
        PolicyCommand::Serve(args) => serve(args),
        PolicyCommand::Export(ExportCommand::Kyverno(args)) => {
            let config = BundleConfig {
                allowed_registries: args.allowed_registry,
                ..BundleConfig::default()
            };
            output::print(&policy::kyverno::export(&config))?;
            Ok(Exit::Ran)
        }
        PolicyCommand::Export(ExportCommand::Webhook(args)) => export_webhook(*args),
    }
}

fn export_webhook(args: WebhookArgs) -> Result<Exit> {
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let cert = read(&args.cert)?;
    let (ca, ca_path) = match &args.ca {
        Some(path) => (read(path)?, path),
        None => (cert.clone(), &args.cert),
    };
    let host = format!("{}.{}.svc", args.name, args.namespace);
    let ca_bundle = ::admission::tls::ca_bundle_for(
        &cert,
        &args.cert.display().to_string(),
        &ca,
        &ca_path.display().to_string(),
        &host,
    )?;
    let timeout = args.timeout.as_secs();
    if args.timeout.subsec_nanos() != 0 || !(1..=30).contains(&timeout) {
        bail!(
            "--timeout {}: the API server takes whole seconds from 1s to 30s",
            yaml::format_duration(args.timeout)
        );
    }
    let spec = policy::webhook::WebhookSpec {
        tls_secret: args
            .tls_name
            .unwrap_or_else(|| format!("{}-tls", args.name)),
        name: args.name,
        namespace: args.namespace,
        image: args.image,
        replicas: args.replicas,
        ca_bundle,
        fail_open: args.fail_open,
        timeout_seconds: timeout as u32,
        policy_config_map: args.policy_configmap,
        inventory_config_map: args.inventory_configmap,
        live_inventory: args.live_inventory,
        extra_args: args
            .allowed_registry
            .into_iter()
            .flat_map(|r| ["--allowed-registry".to_string(), r])
            .collect(),
    };
    output::print(&policy::webhook::manifests(&spec)?)?;
    Ok(Exit::Ran)
}

/// Loads the bundle and constraints.
fn load_policies(args: &BundleArgs) -> Result<Policies> {
    prepare_policies(args, None)?.compile()
}

/// The policies read but not yet compiled, and their identity: the bytes
/// that decide what they answer (bundle configuration and sources,
/// constraint files, budget), for the outcome cache and the kept report.
struct Prepared {
    config: Option<BundleConfig>,
    gatekeeper: GatekeeperSet,
    budget: Duration,
    /// A 128-bit hash of everything above.
    identity: Vec<u8>,
}

impl Prepared {
    /// Compiles the bundle's Rego: the part a kept report saves.
    fn compile(self) -> Result<Policies> {
        let mut policies = Policies::new().with_budget(self.budget);
        if let Some(config) = &self.config {
            policies = policies.with_builtin(config)?;
        }
        Ok(policies.with_gatekeeper(self.gatekeeper))
    }
}

/// Reads the constraints and settles the bundle's configuration. `fleet`
/// (its `bulkhead.toml` and root) gives the defaults the flags leave open.
fn prepare_policies(
    args: &BundleArgs,
    fleet: Option<(&discover::Config, &Path)>,
) -> Result<Prepared> {
    let mut config = BundleConfig {
        allowed_registries: args.allowed_registry.clone(),
        approved_base_prefixes: args.approved_base.clone(),
        ..BundleConfig::default()
    };
    let mut latest = args.template_latest.clone();
    let mut sources = Vec::new();
    if let Some((c, root)) = fleet {
        if config.approved_base_prefixes.is_empty() {
            config.approved_base_prefixes = c.images.approved_registries.clone();
        }
        sources.extend(
            c.templates
                .project
                .iter()
                .chain(&c.templates.github)
                .cloned(),
        );
        if latest.is_none()
            && let Some(repo) = &c.templates.repo
        {
            latest = newest_release(&root.join(repo));
        }
    }
    config.templates = latest.map(|latest| TemplateWindow {
        latest,
        window: args.template_window,
        sources,
    });
    let budget = args.budget_ms.unwrap_or(args.budget);
    let mut identity = serde_json::to_vec(&json!({
        "builtin": (!args.no_builtin).then_some(&config),
        "sources": policy::builtin::SOURCES,
        "budget_ns": budget.as_nanos().to_string(),
    }))?;
    let mut set = GatekeeperSet::new();
    let mut errors = Vec::new();
    for path in &args.policy {
        for file in discover::files::yaml_files(path, true)? {
            let text = discover::files::read_text(&file)?;
            identity.extend(
                cache::key(&[file.display().to_string().as_bytes(), text.as_bytes()]).bytes(),
            );
            for d in set.add_yaml(&file.display().to_string(), &text) {
                match d.severity {
                    Severity::Error => errors.push(d),
                    _ => eprintln!("{d}"),
                }
            }
        }
    }
    errors.extend(set.unbound());
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        bail!("invalid policies:\n{}", list.join("\n"));
    }
    Ok(Prepared {
        config: (!args.no_builtin).then_some(config),
        gatekeeper: set,
        budget,
        // The policies' bytes (the bundle's Rego among them) are hashed once, not
        // again into every service's and file's key.
        identity: cache::key(&[&identity]).into_bytes(),
    })
}

/// The highest `vX.Y.Z` tag of a git repository, if it is one.
fn newest_release(repo: &Path) -> Option<String> {
    let tags = vcs::Repo::open(repo).ok()?.tags().ok()?;
    tags.into_iter()
        .filter_map(|t| {
            let parts: Vec<u64> = t
                .name
                .trim_start_matches('v')
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            (parts.len() == 3).then_some((parts, t.name))
        })
        .max()
        .map(|(_, name)| name)
}

/// What `policy check` prints with --format json.
#[derive(Debug, Serialize)]
struct CheckReport {
    schema: &'static str,
    summary: Summary,
    findings: Vec<Finding>,
    diagnostics: Vec<Diagnostic>,
}

/// A [`CheckReport`] as the policy cache keeps it.
#[derive(Debug, Deserialize)]
struct KeptReport {
    summary: Summary,
    findings: Vec<Finding>,
    diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    services: usize,
    manifest_files: usize,
    deny: usize,
    warn: usize,
}

fn check(args: CheckArgs) -> Result<Exit> {
    let mut paths = args.path.clone();
    paths.extend(args.paths.iter().cloned());
    if paths.is_empty() {
        paths.push(PathBuf::from("."));
    }
    let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) = paths.into_iter().partition(|p| p.is_dir());
    let scan_options = discover::ScanOptions {
        paths: dirs,
        state_dir: args.state.state.clone(),
        use_cache: true,
    };
    // A check of fleet folders alone keeps its report beside the fleet's
    // fingerprint, taken before anything is read. When the stats of what
    // the fingerprint listed, the repositories' commits and the policies are
    // all as they were, that report is the answer: neither the scan nor a
    // rule runs, and no folder is read.
    let (walked, prepared) = if files.is_empty() {
        let fleet = discover::FleetStats::locate(&scan_options)?;
        let prepared = prepare_policies(&args.bundle, Some((&fleet.config, &fleet.root)))?;
        let key_of = |digest: &str| cache::key(&[b"report", &prepared.identity, digest.as_bytes()]);
        let dir = fleet.state_dir.path();
        if let Some(kept) = cache::Cache::kept_report::<KeptReport>(dir)
            && kept.key == key_of(&fleet.recheck(&kept.watch))
        {
            let report = CheckReport {
                schema: "bulkhead.policy/v1",
                summary: kept.report.summary,
                findings: kept.report.findings,
                diagnostics: kept.report.diagnostics,
            };
            return answer(&report, &args);
        }
        let walked = fleet.walk();
        let key = key_of(&walked.digest);
        (Some((walked, key)), Some(prepared))
    } else {
        (None, None)
    };
    let outcome = if scan_options.paths.is_empty() {
        None
    } else {
        Some(output::scan(&scan_options)?)
    };
    let prepared = match prepared {
        Some(prepared) => prepared,
        None => prepare_policies(
            &args.bundle,
            outcome.as_ref().map(|o| (&o.config, o.root.as_path())),
        )?,
    };
    let identity = prepared.identity.clone();
    let policies = prepared.compile()?;
    // Outcomes are kept between runs only beside a scanned fleet's state.
    let state_dir = outcome.as_ref().map(|o| o.state_dir.path().to_path_buf());
    let cache = state_dir
        .as_deref()
        .map(cache::Cache::load)
        .unwrap_or_default();
    let mut fresh = std::collections::HashMap::new();
    // Whether every outcome is an answer to keep (no evaluation error).
    let mut complete = true;
    // (display path, file on disk)
    let mut manifests: Vec<(String, PathBuf)> = files
        .iter()
        .map(|f| (f.display().to_string(), f.clone()))
        .collect();
    let mut result = Outcome::default();
    let mut services = 0;
    if let Some(outcome) = &outcome {
        let fleet = &outcome.fleet;
        let mut seen = BTreeSet::new();
        let places = fleet
            .workloads
            .iter()
            .map(|w| &w.at)
            .chain(fleet.routes.iter().map(|r| &r.at))
            .chain(fleet.services.iter().flat_map(|s| &s.declared_at));
        for at in places {
            let is_yaml = at.path.ends_with(".yaml") || at.path.ends_with(".yml");
            if is_yaml && !at.path.ends_with("catalog-info.yaml") && seen.insert(at.path.clone()) {
                manifests.push((at.path.clone(), outcome.root.join(&at.path)));
            }
        }
        if policies.checks_services() {
            let inputs = policy::ServiceInputs::new(fleet);
            let checked = on_every_core(&fleet.services, |part| {
                let mut mine = policies.clone();
                part.iter()
                    .map(|service| {
                        let input = inputs.of(service);
                        let key =
                            cache::key(&[&identity, b"service", &serde_json::to_vec(&input)?]);
                        Ok(match cache.get(&key) {
                            Some(known) => (key, known.clone(), true),
                            None => {
                                let outcome = mine.check_service_input(service, &input);
                                // An evaluation error (a budget run out) is not an answer to keep.
                                let keep = outcome.diagnostics.is_empty();
                                (key, outcome, keep)
                            }
                        })
                    })
                    .collect()
            })?;
            for (key, outcome, keep) in checked {
                if keep {
                    fresh.insert(key, outcome.clone());
                } else {
                    complete = false;
                }
                result.extend(outcome);
            }
        }
        services = fleet.services.len();
    }
    let manifest_files = manifests.len();
    let (checked, all_kept) =
        check_manifests(&policies, &manifests, &identity, &cache, &mut fresh)?;
    result.extend(checked);
    complete &= all_kept;
    policy::sort_findings(&mut result.findings);
    let deny = result
        .findings
        .iter()
        .filter(|f| f.level == Level::Deny)
        .count();
    let warn = result.findings.len() - deny;
    let report = CheckReport {
        schema: "bulkhead.policy/v1",
        summary: Summary {
            services,
            manifest_files,
            deny,
            warn,
        },
        findings: result.findings,
        diagnostics: result.diagnostics,
    };
    if let Some(dir) = &state_dir {
        // The report is kept only when it is whole and the fingerprint it
        // answers was settled (no file too recently written to trust its stats).
        let kept = walked
            .as_ref()
            .filter(|(walked, _)| complete && walked.settled)
            .map(|(walked, key)| (key.as_str(), walked.watch.as_str(), &report));
        if let Err(e) = cache::Cache::save(dir, fresh, kept) {
            eprintln!("warning: policy outcomes not kept: {e}");
        }
    }
    answer(&report, &args)
}

/// Prints `report` in the format asked for; the exit status says whether it passes.
fn answer(report: &CheckReport, args: &CheckArgs) -> Result<Exit> {
    let format = if args.json {
        CheckFormat::Json
    } else {
        args.format
    };
    // JSON is rendered whole and written at once: stdout written as it is
    // serialised costs a system call per line, 77,000 at 10,000 services.
    match format {
        CheckFormat::Table => output::print(&table(report))?,
        CheckFormat::Json => output::print(&json_text(report)?)?,
        CheckFormat::Sarif => output::print(&json_text(&sarif(&report.findings))?)?,
        CheckFormat::Junit => output::print(&junit(&report.findings, args.strict))?,
    }
    let Summary { deny, warn, .. } = report.summary;
    Ok(Exit::answer(deny == 0 && !(args.strict && warn > 0)))
}

/// `value` as `output::print_json` writes it: pretty, with a final line break.
fn json_text(value: &impl Serialize) -> Result<String> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

/// Checks manifest files on every core. Every file is read first; when
/// Gatekeeper constraints are loaded, every file is parsed too, so that they
/// see every object of the fleet as `data.inventory` (a uniqueness rule then
/// holds across repositories, which a cluster's Gatekeeper can only do inside
/// one cluster). Then each thread checks its share with its own clone of the
/// policies, taking the outcome of a file from `cache` when its key (policies,
/// path, text, and with constraints every file's path and text) is known.
/// Also says whether every outcome is one to keep (no evaluation error).
fn check_manifests(
    policies: &Policies,
    files: &[(String, PathBuf)],
    identity: &[u8],
    cache: &cache::Cache,
    fresh: &mut std::collections::HashMap<String, Outcome>,
) -> Result<(Outcome, bool)> {
    let texts = on_every_core(files, |part| {
        part.iter()
            .map(|(shown, file)| Ok((shown.clone(), discover::files::read_text(file)?)))
            .collect()
    })?;
    let with_inventory = !policies.gatekeeper().is_empty();
    let mut scope = identity.to_vec();
    scope.extend_from_slice(b"manifest");
    let policies = if with_inventory {
        let mut all: Vec<&[u8]> = Vec::with_capacity(texts.len() * 2);
        for (shown, text) in &texts {
            all.push(shown.as_bytes());
            all.push(text.as_bytes());
        }
        scope.extend(cache::key(&all).bytes());
        let loaded = on_every_core(&texts, |part| {
            Ok(part
                .iter()
                .map(|(shown, text)| policy::load_manifests(shown, text).0)
                .collect())
        })?;
        let inventory: policy::Inventory = loaded
            .iter()
            .flat_map(|objects| objects.iter().map(|o| &o.value))
            .collect();
        policies.clone().with_inventory(&inventory)
    } else {
        policies.clone()
    };
    let outcomes = on_every_core(&texts, |part| {
        let mut mine = policies.clone();
        Ok(part
            .iter()
            .map(|(shown, text)| {
                let key = cache::key(&[&scope, shown.as_bytes(), text.as_bytes()]);
                match cache.get(&key) {
                    Some(known) => (key, known.clone(), true),
                    None => {
                        let (objects, diagnostics) = policy::load_manifests(shown, text);
                        let read = diagnostics.len();
                        let outcome = mine.check_manifest_objects(shown, &objects, diagnostics);
                        // Diagnostics past the file's own are evaluation errors: not kept.
                        let keep = outcome.diagnostics.len() == read;
                        (key, outcome, keep)
                    }
                }
            })
            .collect())
    })?;
    let mut all = Outcome::default();
    let mut complete = true;
    for (key, outcome, keep) in outcomes {
        if keep {
            fresh.insert(key, outcome.clone());
        } else {
            complete = false;
        }
        all.extend(outcome);
    }
    Ok((all, complete))
}

/// Runs `work` over `items` in one chunk per core and returns its results in
/// the items' order.
fn on_every_core<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&[T]) -> Result<Vec<R>> + Sync,
) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(|| work(part)))
            .collect();
        let mut all = Vec::with_capacity(items.len());
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("a policy worker panicked"))??,
            );
        }
        Ok(all)
    })
}

fn place(f: &Finding) -> String {
    f.at.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}

fn table(report: &CheckReport) -> String {
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| {
            vec![
                place(f),
                f.level.to_string(),
                f.policy.clone(),
                f.message.clone(),
            ]
        })
        .collect();
    let mut out = if rows.is_empty() {
        String::new()
    } else {
        model::report::table(&["WHERE", "LEVEL", "POLICY", "MESSAGE"], &rows)
    };
    for d in &report.diagnostics {
        out.push_str(&format!("{d}\n"));
    }
    let s = &report.summary;
    out.push_str(&format!(
        "\n{} deny, {} warn ({} services, {} manifest files)\n",
        s.deny, s.warn, s.services, s.manifest_files
    ));
    out
}

/// A minimal, valid SARIF 2.1.0 log.
fn sarif(findings: &[Finding]) -> serde_json::Value {
    let rules: BTreeSet<&str> = findings.iter().map(|f| f.policy.as_str()).collect();
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let mut result = json!({
                "ruleId": f.policy,
                "level": match f.level { Level::Deny => "error", Level::Warn => "warning" },
                "message": { "text": format!("{}: {}", f.subject, f.message) },
            });
            if let Some(at) = &f.at {
                result["locations"] = json!([{ "physicalLocation": {
                    "artifactLocation": { "uri": at.path },
                    "region": { "startLine": at.line.max(1) },
                }}]);
            }
            result
        })
        .collect();
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": { "driver": {
                "name": "bulkhead",
                "informationUri": "https://github.com/bulkhead/bulkhead",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(|r| json!({ "id": r })).collect::<Vec<_>>(),
            }},
            "results": results,
        }]
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// JUnit XML: one test case per finding (a failure when it fails the build), or one passing case.
fn junit(findings: &[Finding], strict: bool) -> String {
    let fails = |f: &Finding| f.level == Level::Deny || strict;
    let failures = findings.iter().filter(|f| fails(f)).count();
    let tests = findings.len().max(1);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"bulkhead policy check\" tests=\"{tests}\" failures=\"{failures}\">\n  <testsuite name=\"bulkhead policy check\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n"
    );
    if findings.is_empty() {
        out.push_str("    <testcase classname=\"bulkhead.policy\" name=\"no violations\"/>\n");
    }
    for f in findings {
        let name = xml_escape(&format!("{} {} ({})", f.policy, f.subject, place(f)));
        let classname = xml_escape(f.at.as_ref().map_or("bulkhead.policy", |a| a.path.as_str()));
        out.push_str(&format!(
            "    <testcase classname=\"{classname}\" name=\"{name}\">\n"
        ));
        let message = xml_escape(&f.message);
        if fails(f) {
            out.push_str(&format!(
                "      <failure type=\"{}\" message=\"{message}\">{}: {message}</failure>\n",
                f.level,
                xml_escape(&place(f))
            ));
        } else {
            out.push_str(&format!("      <system-out>warn: {message}</system-out>\n"));
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn verify(args: VerifyArgs) -> Result<Exit> {
    let mut all_passed = true;
    for suite in &args.suites {
        let text = discover::files::read_text(suite)?;
        let dir = suite.parent().unwrap_or(Path::new(".")).to_path_buf();
        let report = policy::suite::run(&text, &mut |rel| {
            discover::files::read_text(&dir.join(rel)).map_err(|e| e.to_string())
        });
        all_passed &= report.passed();
        output::print(&report.render(&suite.display().to_string()))?;
    }
    Ok(Exit::answer(all_passed))
}

fn admit(args: AdmitArgs) -> Result<Exit> {
    let mut policies = load_policies(&args.bundle)?;
    let failure = if args.fail_open {
        FailurePolicy::Open
    } else {
        FailurePolicy::Closed
    };
    let mut all_allowed = true;
    for path in &args.reviews {
        let body = if path.as_os_str() == "-" {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)
                .context("reading stdin")?;
            body
        } else {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        };
        let decision = admission::decide(&mut policies, &body, failure)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        all_allowed &= decision.allowed;
        output::print_json(&decision.response())?;
    }
    Ok(Exit::answer(all_allowed))
}

/// `data.inventory` from every manifest under `dir`, read as `policy check`
/// reads a fleet's manifests. Returns it with the number of objects.
///
/// # Errors
/// A file that cannot be read, or a manifest that does not parse (with its file and line).
fn load_inventory(dir: &Path) -> Result<(policy::Inventory, usize)> {
    let mut objects = Vec::new();
    for file in discover::files::yaml_files(dir, true)? {
        let text = discover::files::read_text(&file)?;
        let (loaded, diagnostics) = policy::load_manifests(&file.display().to_string(), &text);
        if let Some(error) = diagnostics.iter().find(|d| d.severity == Severity::Error) {
            bail!("inventory {}: {error}", dir.display());
        }
        objects.extend(loaded);
    }
    let inventory: policy::Inventory = objects.iter().map(|o| &o.value).collect();
    Ok((inventory, objects.len()))
}

/// Polls `dir` every `every` and, when its files changed, serves `base` with
/// the new inventory. Runs for the life of the process.
fn watch_inventory(
    dir: PathBuf,
    every: Duration,
    base: Policies,
    reloader: ::admission::Reloader,
    mut seen: Vec<(PathBuf, u64, Option<std::time::SystemTime>)>,
) -> Result<()> {
    std::thread::Builder::new()
        .name("inventory-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Ok(now) = discover::files::yaml_fingerprint(&dir, true) else {
                    continue;
                };
                if now == seen {
                    continue;
                }
                seen = now;
                match load_inventory(&dir) {
                    Ok((inventory, objects)) => {
                        let generation = reloader.replace(base.clone().with_inventory(&inventory));
                        eprintln!(
                            "inventory reloaded from {}: {objects} objects (generation {generation})",
                            dir.display()
                        );
                    }
                    Err(e) => eprintln!("inventory not reloaded, the previous one stays: {e:#}"),
                }
            }
        })
        .context("starting the inventory watcher")?;
    Ok(())
}

/// A live copy of the cluster the flags name, listed once, and how to
/// follow it: (copy, each kind's version, a way to connect again).
type ClusterInventory = (
    Mirror,
    Vec<String>,
    Arc<dyn Fn() -> Result<Connection, ClusterError> + Send + Sync>,
);

/// Lists the kinds `--inventory-cluster` names in the cluster of `context`.
///
/// # Errors
/// A kind that is not one the copy knows, a kubeconfig that cannot be used,
/// or a first list that fails (naming the rule `cluster rbac` grants on a 403).
fn list_cluster_inventory(args: &ServeArgs, context: &str) -> Result<ClusterInventory> {
    let kinds = args
        .inventory_kinds
        .iter()
        .map(|plural| {
            watch::kind(plural.trim()).map_err(|e| anyhow::anyhow!("--inventory-kinds {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let path = args.kubeconfig.clone().unwrap_or_else(|| {
        orchestrator::kubeconfig::default_path(&|name| std::env::var(name).ok())
    });
    let context = (!context.is_empty()).then(|| context.to_string());
    let open = Arc::new(move || Connection::open(&path, context.as_deref()));
    let connection = open().context("--inventory-cluster")?;
    let (mirror, versions) = Mirror::list(&connection, kinds, cluster::DEFAULT_PAGE_SIZE)
        .with_context(|| {
            format!(
                "--inventory-cluster: listing the cluster of context {}",
                connection.context
            )
        })?;
    let counts: Vec<String> = mirror
        .counts()
        .iter()
        .map(|(plural, n)| format!("{n} {plural}"))
        .collect();
    eprintln!(
        "inventory listed from the cluster of context {}: {}",
        connection.context,
        counts.join(", ")
    );
    Ok((mirror, versions, open))
}

/// Follows the cluster copy and serves `base` with each new inventory.
/// A failure keeps the inventory in force and is reported with the count so far.
fn follow_cluster_inventory(
    (mirror, versions, open): ClusterInventory,
    base: Policies,
    reloader: ::admission::Reloader,
) -> Result<()> {
    let report = Arc::new(move |report: watch::Report<'_>| match report {
        watch::Report::Changed { objects, what } => {
            let count = objects.len();
            let inventory: policy::Inventory = objects.into_iter().collect();
            let generation = reloader.replace(base.clone().with_inventory(&inventory));
            eprintln!(
                "inventory updated from the cluster: {what} ({count} objects, generation {generation})"
            );
        }
        watch::Report::Failed {
            error,
            failures,
            retry,
        } => eprintln!(
            "inventory watch failed ({failures} failures so far), the inventory in force stays; retrying in {}: {error}",
            yaml::format_duration(retry)
        ),
    });
    Arc::new(mirror)
        .follow(versions, open, cluster::DEFAULT_PAGE_SIZE, report)
        .context("starting the inventory watches")
}

fn serve(args: ServeArgs) -> Result<Exit> {
    let base = load_policies(&args.bundle)?;
    let mut inventory_watch = None;
    let mut cluster_inventory = None;
    let policies = match &args.inventory {
        None if args.inventory_cluster.is_some() => {
            let context = args.inventory_cluster.as_deref().unwrap_or_default();
            let listed = list_cluster_inventory(&args, context)?;
            let inventory: policy::Inventory = listed.0.with_objects(|o| o.into_iter().collect());
            cluster_inventory = Some(listed);
            base.clone().with_inventory(&inventory)
        }
        Some(dir) => {
            if !dir.is_dir() {
                bail!("--inventory {}: not a folder", dir.display());
            }
            let fingerprint = discover::files::yaml_fingerprint(dir, true)?;
            let (inventory, objects) = load_inventory(dir)?;
            eprintln!("inventory loaded from {}: {objects} objects", dir.display());
            inventory_watch = Some(fingerprint);
            base.clone().with_inventory(&inventory)
        }
        None => base.clone(),
    };
    let mut ca_bundle = None;
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let read =
                |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            ::admission::tls::server_config(
                &read(cert)?,
                &cert.display().to_string(),
                &read(key)?,
                &key.display().to_string(),
            )?
        }
        _ => {
            let generated = ::admission::tls::SelfSigned::generate(&args.host)?;
            ca_bundle = Some(generated.ca_bundle());
            generated.server_config()?
        }
    };
    let server = ::admission::Server::bind(::admission::Config {
        listen: args.listen,
        tls,
        policies,
        failure: if args.fail_open {
            FailurePolicy::Open
        } else {
            FailurePolicy::Closed
        },
    })?;
    if let Some(listed) = cluster_inventory {
        follow_cluster_inventory(listed, base.clone(), server.reloader())?;
    }
    if let (Some(dir), Some(seen)) = (&args.inventory, inventory_watch) {
        watch_inventory(
            dir.clone(),
            args.inventory_poll,
            base,
            server.reloader(),
            seen,
        )?;
    }
    server.run_until_signal(|server| -> Result<()> {
        output::print(&format!("listening on https://{}\n", server.local_addr()))?;
        if let Some(ca_bundle) = ca_bundle {
            output::print(&format!("caBundle: {ca_bundle}\n"))?;
            eprintln!(
                "self-signed certificate for {}: paste the caBundle into the ValidatingWebhookConfiguration's clientConfig.caBundle",
                args.host.join(", ")
            );
        }
        Ok(())
    })?;
    Ok(Exit::Ran)
}
