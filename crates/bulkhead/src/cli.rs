//! The command line: one clap-derived type per command, doc comments as help.

use crate::output;
use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Change-impact control for microservice fleets.
///
/// bulkhead reads a fleet's real files (Dockerfiles, CI files, Kubernetes
/// manifests, Backstage catalog entries) into one graph and answers, for any
/// change: what breaks, who is impacted, how fast you can roll back, and how to
/// monitor it.
///
/// Start with `bulkhead demo`, or `bulkhead lab init /tmp/fleet` then
/// `bulkhead scan /tmp/fleet`.
#[derive(Debug, Parser)]
#[command(
    name = "bulkhead",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a fleet into the fleet graph and print what it holds.
    ///
    /// Walks each PATH (a folder of git repositories, or a monorepo), honours
    /// .gitignore, skips .git, vendor/ and node_modules/, and never follows a
    /// symlink. Bad files become diagnostics; the scan still reports the rest.
    /// The result is saved in the state directory for later commands, and a
    /// rescan re-reads only files that changed.
    ///
    /// Exit status: 0 when the scan ran (even with diagnostics), 2 when it could not.
    Scan(ScanArgs),
    /// Answer the four questions for a change before you make it.
    #[command(subcommand)]
    Impact(ImpactCommand),
    /// The built-in sample fleet.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Generate the sample fleet in a temporary folder, scan it, and show one impact answer.
    Demo(DemoArgs),
    /// Govern the shared CI templates: semver checks, static checks of every
    /// app, representative apps and adoption waves, bump and rollback commits.
    #[command(subcommand)]
    Template(crate::template_cmd::TemplateCommand),
    /// Patch hosts in rolling batches within their maintenance windows:
    /// save the old .debs, snapshot, upgrade, health-check, and roll back
    /// automatically (downgrade or snapshot restore) when a host fails.
    #[command(subcommand)]
    Patch(crate::patch_cmd::PatchCommand),
    /// Enforce Rego policies: the built-in bundle and Gatekeeper constraints
    /// over the fleet, manifests and admission reviews; gator suites; Kyverno export.
    #[command(subcommand)]
    Policy(crate::policy_cmd::PolicyCommand),
    /// Govern base images: lineage, FROM pinning and approved bases, registry
    /// inspection, upgrade commits.
    #[command(subcommand)]
    #[command(alias = "image")]
    Images(crate::image_cmd::ImagesCommand),
    /// Which images, services, running workloads and public routes a CVE
    /// reaches, with the emergency upgrade plan.
    ///
    /// Reads the scanner reports named in bulkhead.toml (`[reports]` trivy,
    /// cyclonedx, grype), ties each finding to the layer it came from and,
    /// through the lineage, to the image that introduced it (OS base, language
    /// base or the app), then follows every image built on it to the services
    /// whose Dockerfiles use it, their workloads, cluster snapshots (`[cluster]`
    /// snapshots) and public routes. Ranked internet-facing first, then by tier.
    ///
    /// Example: bulkhead cve CVE-2023-38545 --path ./fleet --format markdown
    Cve(crate::image_cmd::CveArgs),
    /// Run the ingress gateway: path routing to label-selected pools, an admin
    /// API for the blue -> green switch, canary weights and draining (docs/gateway.md).
    ///
    /// Prints `proxy listening on http://ADDR` for each listener and
    /// `admin listening on http://ADDR` first, then one JSON access-log line per request.
    ///
    /// Example: BULKHEAD_ADMIN_TOKEN=... bulkhead gateway --config gateway.yaml --admin 127.0.0.1:9901
    Gateway(crate::gateway_cmd::GatewayArgs),
    /// Roll a change set out in dependency-ordered waves with analysis gates:
    /// blue-green, canary or rolling per service, a failing service rolled
    /// back alone, its dependents held, every transition recorded before it
    /// is acted on (docs/rollouts.md).
    ///
    /// Example: bulkhead rollout plan --services payments,orders --path ./fleet
    #[command(subcommand)]
    Rollout(crate::rollout_cmd::RolloutCommand),
    /// Run the trace collector: OTLP/HTTP and OTLP/gRPC in, a durable span
    /// store, Jaeger's query API out (Jaeger UI and Grafana read it; docs/tracing.md).
    ///
    /// A span is answered 200 only once it is committed, so an acknowledged
    /// span survives the collector being killed. Overload is refused with 429
    /// (gRPC: UNAVAILABLE) and Retry-After, never buffered without bound.
    /// Prints `otlp-http listening on http://ADDR`, `otlp-grpc listening on
    /// http://ADDR` and `query listening on http://ADDR` first; logs are JSON
    /// lines on stderr. Ctrl-C or SIGTERM stops it after committing what is queued.
    ///
    /// Example: bulkhead collector --data /var/lib/bulkhead/traces --query 127.0.0.1:16686
    Collector(crate::trace_cmd::CollectorArgs),
    /// Show a trace from the collector: a waterfall with the critical path
    /// marked, latency per service, and one line naming the root cause.
    ///
    /// `bulkhead trace search` finds traces (slow, failed, by operation or
    /// attribute). Both read any Jaeger-compatible query API (--collector).
    ///
    /// Example: bulkhead trace 4bf92f3577b34da6a3ce929d0e0e4736
    ///
    /// Example: bulkhead trace search --service checkout --error --min-duration 200ms
    Trace(crate::trace_cmd::TraceArgs),
}

#[derive(Debug, Args)]
struct ScanArgs {
    /// Folders to scan (default: the current folder).
    paths: Vec<PathBuf>,
    #[command(flatten)]
    state: StateArgs,
    /// Print the fleet as JSON (schema: docs/scan-json.md).
    #[arg(long)]
    json: bool,
    /// Parse every file again instead of reusing facts of unchanged files.
    #[arg(long)]
    no_cache: bool,
}

#[derive(Debug, Args)]
struct StateArgs {
    /// State directory (default: .bulkhead/ at the fleet root).
    #[arg(long, value_name = "DIR", global = true)]
    state: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ImpactCommand {
    /// Blast radius of changing one or more services together.
    ///
    /// Lists every transitive caller with its owner and tier, the public routes
    /// that reach them, the services provably untouched, how to roll back and
    /// what to watch, and waves ordered providers-first.
    ///
    /// Example: bulkhead impact services payments,orders --path ./fleet --format markdown
    Services(ImpactServicesArgs),
    /// Blast radius of changing a base image: every image built on it, the
    /// services built on those (Dockerfile file:line), their workloads,
    /// running containers and public routes, ranked by exposure and tier,
    /// with the rebuild and rollout plan.
    ///
    /// Example: bulkhead impact image registry.acme.internal/base/debian-12 --path ./fleet
    Image(crate::image_cmd::ImpactImageArgs),
}

#[derive(Debug, Args)]
struct ImpactServicesArgs {
    /// Service names, comma-separated.
    #[arg(value_delimiter = ',', required = true)]
    names: Vec<String>,
    /// The fleet (scanned now; unchanged files come from the state's cache).
    #[arg(long, default_value = ".")]
    path: PathBuf,
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    format: FormatArgs,
}

/// `--format` with `--json` as its shorthand, shared by every reporting command.
#[derive(Debug, Args)]
pub(crate) struct FormatArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Same as --format json.
    #[arg(long)]
    json: bool,
}

impl FormatArgs {
    pub(crate) fn get(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    /// For a pull-request comment.
    Markdown,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Write a realistic, deterministic sample fleet as real git repositories.
    ///
    /// Service repos in five languages (Dockerfile, CI file, Kubernetes
    /// manifests, catalog-info.yaml), a ci-templates repo with tagged releases
    /// up to an incompatible v2.0.0, a base-images repo, Trivy reports, a hosts
    /// inventory, and ground-truth.json listing every planted fact. The same
    /// seed gives byte-identical output.
    Init(LabInitArgs),
    /// Run a demo microservice that propagates traces and fails on purpose.
    ///
    /// Answers every path with JSON naming itself, its version and the results
    /// of calling each --calls URL, passing the trace context on (W3C
    /// traceparent/tracestate, and B3). Writes one JSON log line per request
    /// with trace_id and span_id on stdout; the first line is
    /// {"event":"listening","addr":"HOST:PORT",...}. Exports spans over
    /// OTLP/HTTP to --otlp-endpoint. A downstream failure is answered with 502
    /// and error.origin naming the service that failed first.
    ///
    /// Other routes: /healthz, /readyz, /metrics (Prometheus), /admin/faults
    /// (GET, PUT, DELETE; needs --admin-token), POST /test (the W3C
    /// trace-context test service protocol). SIGTERM or Ctrl-C stops it
    /// gracefully: open requests finish and queued spans are flushed.
    ///
    /// Example: bulkhead lab service --name orders --version 1.0.0
    /// --listen 127.0.0.1:8081 --calls http://127.0.0.1:8082/
    #[command(disable_version_flag = true)]
    Service(Box<LabServiceArgs>),
}

#[derive(Debug, Args)]
struct LabInitArgs {
    /// Where to write the fleet (must be empty or not exist).
    dir: PathBuf,
    /// Number of services.
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Debug, Args)]
struct LabServiceArgs {
    /// Service name, as it appears in responses, logs, spans and metrics.
    #[arg(long)]
    name: String,
    /// Service version, for example 1.4.0 or green.
    #[arg(long = "version", value_name = "VERSION")]
    service_version: String,
    /// Address to listen on; port 0 picks a free port (printed in the first log line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Downstream services called on every request: http:// URLs, comma-separated.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    calls: Vec<lab_service::HttpUrl>,
    /// Call the downstream services all at once instead of one after the other.
    #[arg(long)]
    parallel: bool,
    /// Timeout of one downstream call, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    call_timeout_ms: u64,
    /// Export spans over OTLP/HTTP (JSON) to this collector; /v1/traces is appended.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<lab_service::HttpUrl>,
    /// Longest time a span waits before it is exported, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    otlp_interval_ms: u64,
    /// Spans per export request.
    #[arg(long, value_name = "N", default_value_t = 512)]
    otlp_batch_size: usize,
    /// Spans queued while the collector is slow; more are dropped (spans_dropped_total).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    otlp_queue: usize,
    /// Fault: share of requests answered with HTTP 500, from 0.0 to 1.0.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    error_rate: f64,
    /// Fault: latency added to every request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
    /// Fault: random latency added on top of --latency-ms, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_jitter_ms: u64,
    /// How the jitter is drawn: uniform in [0, jitter], or exponential with mean
    /// jitter (a long tail, capped at 10x).
    #[arg(long, value_enum, value_name = "KIND", default_value_t = LatencyDistribution::Uniform)]
    latency_distribution: LatencyDistribution,
    /// Fault: fail calls to this downstream (a URL exactly as in --calls) without
    /// making them. Repeatable.
    #[arg(long, value_name = "URL")]
    fail_call: Vec<String>,
    /// Fault: answer /readyz with 503.
    #[arg(long)]
    not_ready: bool,
    /// Seed for ids and fault decisions: the same seed and the same requests give
    /// the same answers.
    #[arg(long)]
    seed: Option<u64>,
    /// Bearer token that enables the admin endpoint (/admin/faults). Prefer the
    /// BULKHEAD_LAB_ADMIN_TOKEN environment variable, which other users cannot
    /// read from the process list. With neither, the admin endpoint is disabled
    /// and answers 403.
    #[arg(long, value_name = "TOKEN")]
    admin_token: Option<String>,
    /// Worker threads; 1 runs a single-threaded runtime (lightest).
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LatencyDistribution {
    Uniform,
    Exponential,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Number of services in the sample fleet.
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Keep the generated fleet in this folder instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

impl Cli {
    pub fn run(self) -> Result<ExitCode> {
        match self.command {
            Command::Scan(args) => scan(args),
            Command::Impact(ImpactCommand::Services(args)) => impact_services(args),
            Command::Impact(ImpactCommand::Image(args)) => crate::image_cmd::impact_image(args),
            Command::Lab(LabCommand::Init(args)) => lab_init(args),
            Command::Lab(LabCommand::Service(args)) => lab_service(*args),
            Command::Demo(args) => demo(args),
            Command::Template(command) => crate::template_cmd::run(command),
            Command::Patch(command) => crate::patch_cmd::run(command),
            Command::Policy(command) => crate::policy_cmd::run(command),
            Command::Images(command) => crate::image_cmd::run(command),
            Command::Cve(args) => crate::image_cmd::cve(args),
            Command::Gateway(args) => crate::gateway_cmd::run(args),
            Command::Rollout(command) => crate::rollout_cmd::run(command),
            Command::Collector(args) => crate::trace_cmd::collector(args),
            Command::Trace(args) => crate::trace_cmd::trace(args),
        }
    }
}

pub(crate) fn run_scan(
    paths: Vec<PathBuf>,
    state: Option<PathBuf>,
    use_cache: bool,
) -> Result<discover::ScanOutcome> {
    let options = discover::ScanOptions {
        paths,
        state_dir: state,
        use_cache,
    };
    let outcome = output::with_progress(|progress| discover::scan(&options, progress))?;
    if let Some(e) = &outcome.state_error {
        eprintln!("warning: scan state not saved ({e}); the next scan reads every file again");
    }
    Ok(outcome)
}

fn scan(args: ScanArgs) -> Result<ExitCode> {
    let outcome = run_scan(args.paths, args.state.state, !args.no_cache)?;
    if args.json {
        output::print_json(&output::ScanJson::new(&outcome))?;
    } else {
        output::print(&output::scan_table(&outcome))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn impact_services(args: ImpactServicesArgs) -> Result<ExitCode> {
    let outcome = run_scan(vec![args.path], args.state.state, true)?;
    let report = impact::services(&outcome.fleet, &args.names)?;
    match args.format.get() {
        Format::Table => output::print(&model::report::render_table(&report))?,
        Format::Json => output::print_json(&report)?,
        Format::Markdown => output::print(&model::report::render_markdown(&report))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn lab_init(args: LabInitArgs) -> Result<ExitCode> {
    let spec = lab::generate::FleetSpec {
        services: args.services,
        seed: args.seed,
        git: true,
    };
    eprintln!(
        "writing a {}-service sample fleet to {} (seed {})",
        args.services,
        args.dir.display(),
        args.seed
    );
    let summary = lab::generate::write_fleet(&args.dir, &spec)
        .with_context(|| format!("writing the sample fleet to {}", args.dir.display()))?;
    output::print(&format!(
        "wrote {} services in {} repositories ({} files) to {}\nground truth: {}\nnext: bulkhead scan {}\n",
        summary.services,
        summary.repos,
        summary.files,
        args.dir.display(),
        summary.ground_truth.display(),
        args.dir.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn lab_service(args: LabServiceArgs) -> Result<ExitCode> {
    let name = args.name.clone();
    let admin_token = args
        .admin_token
        .or_else(|| std::env::var("BULKHEAD_LAB_ADMIN_TOKEN").ok())
        .and_then(lab_service::AdminToken::new);
    let mut config = lab_service::Config::new(args.name, args.service_version);
    config.listen = args.listen;
    config.calls = args.calls;
    config.call_mode = if args.parallel {
        lab_service::CallMode::Parallel
    } else {
        lab_service::CallMode::Sequential
    };
    config.call_timeout = std::time::Duration::from_millis(args.call_timeout_ms);
    config.otlp = args.otlp_endpoint.map(|endpoint| {
        let mut otlp = lab_service::OtlpConfig::new(endpoint);
        otlp.interval = std::time::Duration::from_millis(args.otlp_interval_ms);
        otlp.batch_size = args.otlp_batch_size;
        otlp.queue = args.otlp_queue;
        otlp
    });
    config.faults = lab_service::Faults {
        error_rate: args.error_rate,
        latency_ms: args.latency_ms,
        latency_jitter_ms: args.latency_jitter_ms,
        jitter: match args.latency_distribution {
            LatencyDistribution::Uniform => lab_service::Jitter::Uniform,
            LatencyDistribution::Exponential => lab_service::Jitter::Exponential,
        },
        fail_calls: args.fail_call,
        not_ready: args.not_ready,
    };
    config.seed = args.seed;
    config.admin_token = admin_token;
    config.worker_threads = args.threads.max(1);
    lab_service::run(config).with_context(|| format!("lab service {name}"))?;
    Ok(ExitCode::SUCCESS)
}

fn demo(args: DemoArgs) -> Result<ExitCode> {
    let (dir, _temp) = match args.keep {
        Some(dir) => (dir, None),
        None => {
            let temp = output::TempDir::new("bulkhead-demo")?;
            (temp.path().join("fleet"), Some(temp))
        }
    };
    lab_init(LabInitArgs {
        dir: dir.clone(),
        services: args.services,
        seed: 42,
    })?;
    let outcome = run_scan(vec![dir], None, true)?;
    output::print(&output::fleet_summary(&outcome))?;
    let Some(target) = output::most_called_service(&outcome.fleet) else {
        return Ok(ExitCode::SUCCESS);
    };
    output::print(&format!("\n$ bulkhead impact services {target}\n\n"))?;
    let report = impact::services(&outcome.fleet, &[target])?;
    output::print(&model::report::render_table(&report))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory as _;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
