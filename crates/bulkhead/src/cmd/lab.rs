//! `bulkhead lab`: the sample fleet generator and the demo service it runs.

use crate::args::{self, Exit};
use crate::output;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Read when neither --admin-token-env nor --admin-token-file is given, so
/// that scripts written before those flags keep their admin endpoint.
const LEGACY_TOKEN_ENV: &str = "BULKHEAD_LAB_ADMIN_TOKEN";

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Write a realistic, deterministic sample fleet as real git repositories.
    ///
    /// Service repos in five languages (Dockerfile, CI file, Kubernetes
    /// manifests, catalog-info.yaml), a ci-templates repo with tagged releases
    /// up to an incompatible v2.0.0, a base-images repo, Trivy reports, a hosts
    /// inventory, and ground-truth.json listing every planted fact. The same
    /// seed gives byte-identical output.
    ///
    /// Example: bulkhead lab init /tmp/fleet --services 100 --seed 42
    Init(InitArgs),
    /// Run a demo microservice that propagates traces and fails on purpose.
    ///
    /// Answers every path with JSON naming itself, its version and the results
    /// of calling each --calls URL, passing the trace context on (W3C
    /// traceparent/tracestate, and B3). Writes one JSON log line per request
    /// with trace_id and span_id on stdout; the first line is
    /// {"event":"listening","addr":"HOST:PORT",...}. Exports spans over
    /// OTLP/HTTP (JSON or protobuf) to --otlp-endpoint. A downstream failure is answered with 502
    /// and error.origin naming the service that failed first.
    ///
    /// Other routes: /healthz, /readyz, /metrics (Prometheus), /admin/faults
    /// (GET, PUT, DELETE; needs an admin token), POST /test (the W3C
    /// trace-context test service protocol). SIGTERM or Ctrl-C stops it
    /// gracefully: open requests finish and queued spans are flushed.
    ///
    /// Example: bulkhead lab service --name orders --service-version 1.0.0
    /// --listen 127.0.0.1:8081 --calls http://127.0.0.1:8082/ --latency 20ms
    Service(Box<ServiceArgs>),
    /// Run a live local fleet in the foreground: services, gateway, collector, load.
    ///
    /// Writes the sample fleet in DIR (or reuses the lab there), then starts,
    /// as supervised child processes of this executable: one `lab service` per
    /// live service, picked from the public services and what they call (the
    /// longest call chain first, so one request crosses six services), each
    /// with the fault-injection token of DIR/admin-token; the
    /// ingress `gateway` on --listen, through which every call between services
    /// goes too, routed by `Host` (the callee's name); and the `collector`,
    /// storing spans in DIR/traces. A thread sends steady load to the public
    /// routes. With `prometheus` on PATH, it runs too, scraping every /metrics
    /// (DIR/prometheus.yml, data in DIR/prometheus), and rollout gates use
    /// PromQL. With `docker-registry` on PATH, it runs on loopback (storage in
    /// DIR/registry) and the lab publishes its base and app images to it, with
    /// base annotations (DIR/registry.json). The admission webhook (`policy
    /// serve --self-signed`, policies in DIR/policy, CA in DIR/webhook-ca.pem)
    /// runs too, and dpkg roots under DIR/hosts are the lab's hosts
    /// (DIR/hosts/hosts.yaml). A missing program is named, and the lab runs
    /// without it. DIR/cluster/lab.json is a
    /// `kubectl get -o json` snapshot of the running services, which
    /// `bulkhead cve --path DIR` reads. Logs go to DIR/logs/NAME.log; DIR/lab.json records pids and
    /// addresses. A child that dies is reported and restarted with backoff.
    /// Ctrl-C, SIGTERM or `bulkhead lab down` stops everything.
    ///
    /// Example: bulkhead lab up --dir /tmp/lab --services 12 --listen 127.0.0.1:8080
    Up(UpArgs),
    /// Stop the lab running in DIR and every process it started.
    ///
    /// Asks the `lab up` supervisor to stop its children gracefully, waits for
    /// it, then kills any recorded process still alive.
    ///
    /// Example: bulkhead lab down --dir /tmp/lab
    Down(DirArgs),
    /// List the lab's processes: pid, address, version, requests/s, restarts and health.
    ///
    /// Health is each process's own check: /readyz of a service, the admin
    /// API of the gateway, /healthz of the collector.
    ///
    /// Example: bulkhead lab status --dir /tmp/lab --json
    Status(StatusArgs),
    /// Carry out one enterprise scenario for real on the running lab.
    ///
    /// Each scenario does the change (a CVE in the base image, a new CI
    /// template major, ten services upgraded at once, a failing request traced
    /// across the fleet, image enforcement, a host patch with rollback), then
    /// prints the four answers (what breaks, who is impacted, how fast we roll
    /// back, how we monitor it) with the evidence it measured, the checks it
    /// made against the ground truth, and every command it ran. Exits 1 when
    /// a check fails. Scenarios: cve, pipeline, ten-services, trace, enforce,
    /// patch.
    ///
    /// Example: bulkhead lab scenario cve --dir /tmp/lab --json
    Scenario(ScenarioArgs),
    /// Start a lab, run the scenarios, stop the lab, print one report.
    ///
    /// Spawns `bulkhead lab up` in DIR, waits until every process answers its
    /// health check (--ready-timeout), runs each scenario in turn (a scenario
    /// that cannot run to the end counts as failed and the tour goes on), then
    /// stops the lab as `lab down` does and checks that no process it started
    /// is left. Prints, per scenario, pass or fail, its time and its four
    /// answers. Exits 0 only when every scenario passed.
    ///
    /// Example: bulkhead lab tour --dir /tmp/tour --services 12 --scenarios pipeline,trace
    Tour(TourArgs),
}

#[derive(Debug, Args)]
pub struct TourArgs {
    /// The lab's folder: a new or empty one gets a sample fleet, a stopped lab is reused.
    #[arg(long, default_value = "bulkhead-lab")]
    pub dir: PathBuf,
    /// Live services (each one process).
    #[arg(long, default_value_t = 12)]
    pub services: usize,
    /// Services of the fleet generated in a new DIR.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub fleet_size: usize,
    /// Seed of the generated fleet.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The ingress address (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Requests per second sent to the public routes (at most 200).
    #[arg(long, value_name = "R", default_value_t = 5.0)]
    pub rate: f64,
    /// The scenarios to run, comma-separated, in this order (default: all,
    /// cve, pipeline, ten-services, trace, enforce, patch).
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub scenarios: Vec<lab::scenario::Scenario>,
    /// Time between a rollout gate's measurements; shorter gates make a shorter tour.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = args::duration)]
    pub gate_interval: Duration,
    /// How long the lab may take until every process is healthy.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = args::duration)]
    pub ready_timeout: Duration,
    #[command(flatten)]
    pub format: args::FormatArgs,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The lab's folder: a new or empty one gets a sample fleet, a lab is reused.
    #[arg(long, default_value = "bulkhead-lab")]
    pub dir: PathBuf,
    /// Live services (each one process).
    #[arg(long, default_value_t = 12)]
    pub services: usize,
    /// Services of the fleet generated in a new DIR.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub fleet_size: usize,
    /// Seed of the generated fleet.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The ingress address (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Requests per second sent to the public routes (0: no load; at most 200).
    #[arg(long, value_name = "R", default_value_t = 5.0)]
    pub rate: f64,
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// The lab's folder.
    #[arg(long, default_value = "bulkhead-lab")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub format: args::FormatArgs,
}

#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// The scenario: cve, pipeline, ten-services, trace, enforce or patch.
    #[arg(value_name = "NAME")]
    pub name: lab::scenario::Scenario,
    #[command(flatten)]
    pub dir: DirArgs,
    /// Time between a rollout gate's measurements (ten-services, cve).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = args::duration)]
    pub gate_interval: Duration,
    #[command(flatten)]
    pub format: args::FormatArgs,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the fleet (must be empty or not exist).
    pub dir: PathBuf,
    /// Number of services.
    #[arg(long, default_value_t = 100)]
    pub services: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Service name, as it appears in responses, logs, spans and metrics.
    #[arg(long)]
    name: String,
    /// Service version, for example 1.4.0 or green.
    #[arg(long, value_name = "VERSION")]
    service_version: String,
    /// Address to listen on; port 0 picks a free port (printed in the first log line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Downstream services called on every request: http:// URLs, comma-separated.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    calls: Vec<lab_service::HttpUrl>,
    /// Connect every downstream call to this address (a gateway) and send the
    /// URL's host as `Host`, so that the gateway routes it by host.
    #[arg(long, value_name = "ADDR")]
    via: Option<std::net::SocketAddr>,
    /// Call the downstream services all at once instead of one after the other.
    #[arg(long)]
    parallel: bool,
    /// Timeout of one downstream call.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = args::duration)]
    call_timeout: Duration,
    #[arg(long, hide = true, value_parser = args::millis, conflicts_with = "call_timeout")]
    call_timeout_ms: Option<Duration>,
    /// Export spans over OTLP/HTTP to this collector; /v1/traces is appended.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<lab_service::HttpUrl>,
    /// Longest time a span waits before it is exported.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = args::duration)]
    otlp_interval: Duration,
    #[arg(long, hide = true, value_parser = args::millis, conflicts_with = "otlp_interval")]
    otlp_interval_ms: Option<Duration>,
    /// The OTLP/HTTP encoding of the exported spans: http/json or http/protobuf.
    #[arg(long, value_name = "PROTOCOL", default_value = "http/json", value_parser = telemetry::otlp::Protocol::parse)]
    otlp_protocol: telemetry::otlp::Protocol,
    /// Spans per export request.
    #[arg(long, value_name = "N", default_value_t = 512)]
    otlp_batch_size: usize,
    /// Spans queued while the collector is slow; more are dropped (spans_dropped_total).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    otlp_queue: usize,
    /// Fault: share of requests answered with HTTP 500, from 0.0 to 1.0.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    error_rate: f64,
    /// Fault: latency added to every request.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = args::duration)]
    latency: Duration,
    #[arg(long, hide = true, value_parser = args::millis, conflicts_with = "latency")]
    latency_ms: Option<Duration>,
    /// Fault: random latency added on top of --latency.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = args::duration)]
    latency_jitter: Duration,
    #[arg(long, hide = true, value_parser = args::millis, conflicts_with = "latency_jitter")]
    latency_jitter_ms: Option<Duration>,
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
    /// The environment variable holding the bearer token that enables the admin
    /// endpoint (/admin/faults). With neither this nor --admin-token-file,
    /// BULKHEAD_LAB_ADMIN_TOKEN is read; without a token the admin endpoint is
    /// disabled and answers 403.
    #[arg(long, value_name = "NAME", conflicts_with = "admin_token_file")]
    admin_token_env: Option<String>,
    /// A file holding the admin endpoint's bearer token.
    #[arg(long, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,
    /// Worker threads; 1 runs a single-threaded runtime (lightest).
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LatencyDistribution {
    Uniform,
    Exponential,
}

pub fn run(command: LabCommand) -> Result<Exit> {
    match command {
        LabCommand::Init(args) => init(&args),
        LabCommand::Service(args) => service(*args),
        LabCommand::Up(args) => up(&args),
        LabCommand::Down(args) => down(&args),
        LabCommand::Status(args) => status(&args),
        LabCommand::Scenario(args) => scenario(&args),
        LabCommand::Tour(args) => tour(&args),
    }
}

fn tour(args: &TourArgs) -> Result<Exit> {
    if !(0.0..=lab::up::MAX_RATE).contains(&args.rate) {
        anyhow::bail!(
            "--rate {} is out of range: 0 to {} requests per second",
            args.rate,
            lab::up::MAX_RATE
        );
    }
    let spec = lab::tour::TourSpec {
        dir: args.dir.clone(),
        exe: std::env::current_exe().context("finding the bulkhead executable")?,
        up_args: vec![
            "--services".into(),
            args.services.to_string(),
            "--fleet-size".into(),
            args.fleet_size.to_string(),
            "--seed".into(),
            args.seed.to_string(),
            "--listen".into(),
            args.listen.to_string(),
            "--rate".into(),
            args.rate.to_string(),
        ],
        scenarios: if args.scenarios.is_empty() {
            lab::scenario::Scenario::ALL.to_vec()
        } else {
            args.scenarios.clone()
        },
        gate_interval: args.gate_interval,
        ready_timeout: args.ready_timeout,
    };
    let report = lab::tour::run(&spec, &mut |line| eprintln!("{line}"))?;
    if args.format.get() == args::Format::Json {
        output::print_json(&report)?;
    } else {
        output::print(&report.to_text())?;
    }
    Ok(if report.passed { Exit::Ran } else { Exit::No })
}

fn scenario(args: &ScenarioArgs) -> Result<Exit> {
    let exe = std::env::current_exe().context("finding the bulkhead executable")?;
    let mut lab = lab::scenario::Lab::open(&args.dir.dir, &exe)?;
    lab.gate_interval = args.gate_interval;
    let report = lab::scenario::run(args.name, &mut lab)?;
    if args.format.get() == args::Format::Json {
        output::print_json(&report)?;
    } else {
        output::print(&report.to_text())?;
    }
    Ok(if report.passed { Exit::Ran } else { Exit::No })
}

fn up(args: &UpArgs) -> Result<Exit> {
    if !(0.0..=lab::up::MAX_RATE).contains(&args.rate) {
        anyhow::bail!(
            "--rate {} is out of range: 0 to {} requests per second",
            args.rate,
            lab::up::MAX_RATE
        );
    }
    let spec = lab::up::UpSpec {
        dir: args.dir.clone(),
        fleet_services: args.fleet_size,
        live: args.services,
        seed: args.seed,
        listen: args.listen,
        rate: args.rate,
        exe: std::env::current_exe().context("finding the bulkhead executable")?,
    };
    let stop = lab::up::stop_on_signal()?;
    let mut announce = |text: &str| {
        if let Err(e) = output::print(text) {
            eprintln!("lab: {e:#}");
        }
    };
    lab::up::up(&spec, &stop, &mut announce)?;
    eprintln!("lab: stopped");
    Ok(Exit::Ran)
}

fn down(args: &DirArgs) -> Result<Exit> {
    let killed = lab::up::down(&args.dir, Duration::from_secs(30))?;
    if !killed.is_empty() {
        eprintln!("lab: killed processes that did not stop: {killed:?}");
    }
    output::print(&format!("lab in {} stopped\n", args.dir.display()))?;
    Ok(Exit::Ran)
}

fn status(args: &StatusArgs) -> Result<Exit> {
    let record = lab::up::status(&args.dir.dir)?;
    if args.format.get() == args::Format::Json {
        output::print(&format!("{}\n", serde_json::to_string_pretty(&record)?))?;
        return Ok(Exit::Ran);
    }
    let mut text = format!("lab {}\n", record["state"].as_str().unwrap_or("unknown"));
    for p in record["processes"].as_array().into_iter().flatten() {
        let rate = p["requests_per_s"]
            .as_f64()
            .map_or_else(|| "-".to_string(), |r| format!("{r}/s"));
        text.push_str(&format!(
            "{:<28} {:<10} pid {:<8} {:<22} {:<8} {:>8} restarts {:<3} {}\n",
            p["name"].as_str().unwrap_or(""),
            p["kind"].as_str().unwrap_or(""),
            p["pid"],
            p["addr"].as_str().unwrap_or(""),
            p["version"].as_str().unwrap_or(""),
            rate,
            p["restarts"],
            p["health"].as_str().unwrap_or(""),
        ));
    }
    text.push_str(&format!(
        "prometheus: {}\n",
        record["addresses"]["prometheus"]
            .as_str()
            .unwrap_or(lab::up::PROMETHEUS_MISSING)
    ));
    text.push_str(&format!(
        "registry: {}\nwebhook: {} (CA {})\nrollout gates: {}\n",
        record["addresses"]["registry"]
            .as_str()
            .unwrap_or(lab::up::REGISTRY_MISSING),
        record["addresses"]["webhook"].as_str().unwrap_or("-"),
        record["addresses"]["webhook_ca"].as_str().unwrap_or("-"),
        record["gates"].as_str().unwrap_or("gateway"),
    ));
    if let Some(missing) = record["missing"].as_array().filter(|m| !m.is_empty()) {
        let names: Vec<&str> = missing.iter().filter_map(|m| m.as_str()).collect();
        text.push_str(&format!(
            "missing: {} (not on PATH): the lab runs without them\n",
            names.join(", ")
        ));
    }
    let load = &record["load"];
    text.push_str(&format!(
        "load: {} requests/s, {} sent, {} failed\n",
        load["requests_per_s"], load["sent"], load["failed"]
    ));
    output::print(&text)?;
    Ok(Exit::Ran)
}

pub fn init(args: &InitArgs) -> Result<Exit> {
    write_fleet(&args.dir, args.services, args.seed)?;
    Ok(Exit::Ran)
}

/// Writes the sample fleet and says where it is.
pub fn write_fleet(dir: &Path, services: usize, seed: u64) -> Result<()> {
    let spec = lab::generate::FleetSpec {
        services,
        seed,
        git: true,
    };
    eprintln!(
        "writing a {services}-service sample fleet to {} (seed {seed})",
        dir.display(),
    );
    let summary = lab::generate::write_fleet(dir, &spec)
        .with_context(|| format!("writing the sample fleet to {}", dir.display()))?;
    output::print(&format!(
        "wrote {} services in {} repositories ({} files) to {}\nground truth: {}\nnext: bulkhead scan --path {}\n",
        summary.services,
        summary.repos,
        summary.files,
        dir.display(),
        summary.ground_truth.display(),
        dir.display()
    ))
}

/// Runs `bulkhead lab service ARGS` when that is the command line, parsing
/// only the service's own arguments; `None` for any other command line, for a
/// request of help, and for arguments that do not parse, which then take the
/// whole command tree's path (and its help and error messages).
///
/// Why: a lab runs one such process per live service, fifty of them, and
/// building the whole command tree copies every command's help text into
/// each process and touches every command's parser code, which stays resident.
pub fn service_only(argv: &[std::ffi::OsString]) -> Option<Result<Exit>> {
    use clap::{Command, FromArgMatches as _};
    if argv.get(1).is_none_or(|a| a != "lab") || argv.get(2).is_none_or(|a| a != "service") {
        return None;
    }
    let command = ServiceArgs::augment_args(
        Command::new("service")
            .bin_name("bulkhead lab service")
            .disable_help_flag(true)
            .disable_version_flag(true),
    );
    let matches = command.try_get_matches_from(&argv[2..]).ok()?;
    let args = ServiceArgs::from_arg_matches(&matches).ok()?;
    Some(service(args))
}

fn service(args: ServiceArgs) -> Result<Exit> {
    let name = args.name.clone();
    let token = match (&args.admin_token_env, &args.admin_token_file) {
        (None, None) => std::env::var(LEGACY_TOKEN_ENV).ok(),
        (env, file) => args::read_secret("admin-token", env.as_deref(), file.as_deref())?,
    };
    let mut config = lab_service::Config::new(args.name, args.service_version);
    config.listen = args.listen;
    config.calls = args.calls;
    config.via = args.via;
    config.call_mode = if args.parallel {
        lab_service::CallMode::Parallel
    } else {
        lab_service::CallMode::Sequential
    };
    config.call_timeout = args.call_timeout_ms.unwrap_or(args.call_timeout);
    let interval = args.otlp_interval_ms.unwrap_or(args.otlp_interval);
    config.otlp = args.otlp_endpoint.map(|endpoint| {
        let mut otlp = lab_service::OtlpConfig::new(endpoint);
        otlp.interval = interval;
        otlp.batch_size = args.otlp_batch_size;
        otlp.queue = args.otlp_queue;
        otlp.protocol = args.otlp_protocol;
        otlp
    });
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    config.faults = lab_service::Faults {
        error_rate: args.error_rate,
        latency_ms: millis(args.latency_ms.unwrap_or(args.latency)),
        latency_jitter_ms: millis(args.latency_jitter_ms.unwrap_or(args.latency_jitter)),
        jitter: match args.latency_distribution {
            LatencyDistribution::Uniform => lab_service::Jitter::Uniform,
            LatencyDistribution::Exponential => lab_service::Jitter::Exponential,
        },
        fail_calls: args.fail_call,
        not_ready: args.not_ready,
    };
    config.seed = args.seed;
    config.admin_token = token.and_then(lab_service::AdminToken::new);
    config.worker_threads = args.threads.max(1);
    lab_service::run(config).with_context(|| format!("lab service {name}"))?;
    Ok(Exit::Ran)
}
