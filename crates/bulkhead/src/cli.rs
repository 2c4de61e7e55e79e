//! The command line: the command enum and its dispatch. Each verb's
//! arguments and work live in `cmd/`; shared argument groups in `args`.

use crate::args::Exit;
use crate::cmd;
use anyhow::Result;
use clap::{Parser, Subcommand};

/// Change-impact control for microservice fleets.
///
/// bulkhead reads a fleet's real files (Dockerfiles, CI files, Kubernetes
/// manifests, Backstage catalog entries) into one graph and answers, for any
/// change: what breaks, who is impacted, how fast you can roll back, and how to
/// monitor it.
///
/// Every command that reads a fleet takes --path DIR (default: the current
/// folder) and --state DIR; every command that reports takes --format and
/// --json. Durations are written 250ms, 30s, 5m, 1h30m or 2d. Exit status: 0
/// ran, 1 the answer is "no", 2 could not run, 3 waiting for a person.
///
/// Start with `bulkhead demo`, or `bulkhead lab init /tmp/fleet` then
/// `bulkhead scan --path /tmp/fleet`.
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
    /// Walks each folder (a folder of git repositories, or a monorepo), honours
    /// .gitignore, skips .git, vendor/ and node_modules/, and never follows a
    /// symlink. Bad files become diagnostics; the scan still reports the rest.
    /// The result is saved in the state directory for later commands, and a
    /// rescan re-reads only files that changed.
    ///
    /// Exit status: 0 when the scan ran (even with diagnostics), 2 when it could not.
    ///
    /// Example: bulkhead scan --path ./fleet --format json
    Scan(cmd::scan::ScanArgs),
    /// Answer the four questions for a change before you make it.
    ///
    /// Example: bulkhead impact services payments,orders --path ./fleet
    #[command(subcommand)]
    Impact(cmd::impact::ImpactCommand),
    /// The built-in sample fleet, and the demo service it runs.
    ///
    /// Example: bulkhead lab init /tmp/fleet --services 100 --seed 42
    #[command(subcommand)]
    Lab(cmd::lab::LabCommand),
    /// Generate the sample fleet in a temporary folder, scan it, and show one impact answer.
    ///
    /// Example: bulkhead demo --services 50
    Demo(cmd::demo::DemoArgs),
    /// Govern the shared CI templates: semver checks, static checks of every
    /// app, representative apps and adoption waves, bump and rollback commits.
    ///
    /// Example: bulkhead template check v2.0.0 --path ./fleet
    #[command(subcommand)]
    Template(cmd::template::TemplateCommand),
    /// Patch hosts in rolling batches within their maintenance windows:
    /// save the old .debs, snapshot, upgrade, health-check, and roll back
    /// automatically (downgrade or snapshot restore) when a host fails.
    ///
    /// Example: bulkhead patch plan --path ./fleet --offline
    #[command(subcommand)]
    Patch(cmd::patch::PatchCommand),
    /// Enforce Rego policies: the built-in bundle and Gatekeeper constraints
    /// over the fleet, manifests and admission reviews; gator suites; Kyverno export.
    ///
    /// Example: bulkhead policy check --path ./fleet --format sarif
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Govern base images: lineage, FROM pinning and approved bases, registry
    /// inspection, upgrade commits.
    ///
    /// Example: bulkhead images audit --path ./fleet
    #[command(subcommand)]
    #[command(alias = "image")]
    Images(cmd::images::ImagesCommand),
    /// Which images, services, running workloads and public routes a CVE
    /// reaches, with the emergency upgrade plan.
    ///
    /// Reads the scanner reports named in bulkhead.toml (`[reports]` trivy,
    /// cyclonedx, grype), ties each finding to the layer it came from and,
    /// through the lineage, to the image that introduced it (OS base, language
    /// base or the app), then follows every image built on it to the services
    /// whose Dockerfiles use it, their workloads, the clusters (saved
    /// `[cluster]` snapshots, and live reads of `--cluster` or `[cluster]`
    /// contexts) and public routes. Ranked internet-facing first, then by tier.
    ///
    /// Example: bulkhead cve CVE-2023-38545 --path ./fleet --format markdown
    Cve(cmd::cve::CveArgs),
    /// A live cluster through its kubeconfig: save its workloads as a
    /// snapshot, print the RBAC objects bulkhead needs there.
    ///
    /// Example: bulkhead cluster snapshot --context prod -o clusters/prod.json
    #[command(subcommand)]
    Cluster(cmd::cluster::ClusterCommand),
    /// Run the ingress gateway: path routing to label-selected pools, an admin
    /// API for the blue -> green switch, canary weights and draining (docs/gateway.md).
    ///
    /// Prints `proxy listening on http://ADDR` for each listener and
    /// `admin listening on http://ADDR` first, then one JSON access-log line per request.
    ///
    /// Example: bulkhead gateway --config gateway.yaml --admin 127.0.0.1:9901 --admin-token-env BULKHEAD_ADMIN_TOKEN
    Gateway(cmd::gateway::GatewayArgs),
    /// Roll a change set out in dependency-ordered waves with analysis gates:
    /// blue-green, canary or rolling per service, a failing service rolled
    /// back alone, its dependents held, every transition recorded before it
    /// is acted on (docs/rollouts.md).
    ///
    /// Example: bulkhead rollout plan --services payments,orders --path ./fleet
    #[command(subcommand)]
    Rollout(cmd::rollout::RolloutCommand),
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
    /// Example: bulkhead collector --data /var/lib/bulkhead/traces --query 127.0.0.1:16686 --retention 3d
    Collector(cmd::collector::CollectorArgs),
    /// Show a trace from the collector: a waterfall with the critical path
    /// marked, latency per service, and one line naming the root cause.
    ///
    /// `bulkhead trace search` finds traces (slow, failed, by operation or
    /// attribute). Both read any Jaeger-compatible query API (--collector).
    ///
    /// Exit status: 0 shown, 1 no such trace, 2 could not ask.
    ///
    /// Example: bulkhead trace 4bf92f3577b34da6a3ce929d0e0e4736
    ///
    /// Example: bulkhead trace search --service checkout --error --min-duration 200ms
    Trace(cmd::trace::TraceArgs),
    /// Serve the web console: the fleet graph held in memory and kept current
    /// by watching the fleet's files, HTML pages (fleet, services, impact,
    /// CVEs, templates, policy, rollouts, traces, hosts) and their JSON under /api/.
    ///
    /// Prints `console listening on http://ADDR` once the fleet is loaded.
    /// `cve`, `impact` and `scan` ask a running console with --server URL (or
    /// BULKHEAD_SERVER, or `server =` in bulkhead.toml) instead of scanning.
    /// Actions (promote, pause, resume, abort, undo) are POSTs from its own
    /// pages only, and need the token when one is set (docs/console.md).
    ///
    /// Example: bulkhead console --path ./fleet --listen 127.0.0.1:8080 --collector http://127.0.0.1:16686
    Console(cmd::console::ConsoleArgs),
}

impl Cli {
    pub fn run(self) -> Result<Exit> {
        match self.command {
            Command::Scan(args) => cmd::scan::run(args),
            Command::Impact(command) => cmd::impact::run(command),
            Command::Lab(command) => cmd::lab::run(command),
            Command::Demo(args) => cmd::demo::run(args),
            Command::Template(command) => cmd::template::run(command),
            Command::Patch(command) => cmd::patch::run(command),
            Command::Policy(command) => cmd::policy::run(command),
            Command::Images(command) => cmd::images::run(command),
            Command::Cve(args) => cmd::cve::run(args),
            Command::Cluster(command) => cmd::cluster::run(command),
            Command::Gateway(args) => cmd::gateway::run(args),
            Command::Rollout(command) => cmd::rollout::run(command),
            Command::Collector(args) => cmd::collector::run(args),
            Command::Trace(args) => cmd::trace::run(args),
            Command::Console(args) => cmd::console::run(args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory as _;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The state databases are opened by folder; their crates pick the file name.
    #[test]
    fn the_state_dir_names_the_databases_as_their_crates_open_them() {
        use discover::StateFile;
        assert_eq!(StateFile::PatchDb.name(), hostops::state::DB_FILE);
        assert_eq!(StateFile::RolloutsDb.name(), orchestrator::state::DB_FILE);
    }
}
