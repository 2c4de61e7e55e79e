//! `bulkhead console`: the web console over the resident fleet graph, until
//! SIGTERM or Ctrl-C (docs/console.md).

use crate::args::{self, Exit, FleetArgs};
use crate::output;
use anyhow::{Context as _, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Where the pages and the API listen (port 0 picks one). Beyond loopback
    /// only with --token-file (or --token-env).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A collector's query API (or any Jaeger-compatible one), for the traces pages.
    #[arg(long, value_name = "URL")]
    collector: Option<String>,
    /// The gateway's admin API, for each service's live routing.
    #[arg(long, value_name = "URL")]
    gateway_admin: Option<String>,
    /// The environment variable holding the gateway admin API's bearer token.
    #[arg(long, value_name = "NAME", conflicts_with = "gateway_admin_token_file")]
    gateway_admin_token_env: Option<String>,
    /// A file holding the gateway admin API's bearer token.
    #[arg(long, value_name = "PATH")]
    gateway_admin_token_file: Option<PathBuf>,
    /// The admission webhook's metrics (https://HOST:PORT/metrics of
    /// `bulkhead policy serve`), for its decisions on the policy page.
    #[arg(long, value_name = "URL")]
    webhook_metrics: Option<String>,
    /// The CA (PEM) the webhook's certificate is checked against; read again
    /// at every scrape, since a restarted self-signed webhook has a new one.
    #[arg(long, value_name = "PATH", requires = "webhook_metrics")]
    webhook_ca: Option<PathBuf>,
    /// A folder of JSON-lines logs, one file per process (a lab's DIR/logs):
    /// a trace's page shows the lines that carry its trace_id.
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
    /// A file holding the console's token: every action (promote, abort, ...)
    /// then needs it, as `Authorization: Bearer` or through the login page.
    #[arg(long, value_name = "PATH", conflicts_with = "token_env")]
    token_file: Option<PathBuf>,
    /// The environment variable holding the console's token.
    #[arg(long, value_name = "NAME")]
    token_env: Option<String>,
}

pub fn run(args: ConsoleArgs) -> Result<Exit> {
    let token = args::read_secret(
        "token",
        args.token_env.as_deref(),
        args.token_file.as_deref(),
    )?;
    let gateway_token = args::read_secret(
        "gateway-admin-token",
        args.gateway_admin_token_env.as_deref(),
        args.gateway_admin_token_file.as_deref(),
    )?;
    for (flag, url) in [
        ("--collector", &args.collector),
        ("--gateway-admin", &args.gateway_admin),
        ("--webhook-metrics", &args.webhook_metrics),
    ] {
        if let Some(url) = url {
            http_client::Url::parse(url).map_err(|e| anyhow::anyhow!("{flag} {url}: {e}"))?;
        }
    }
    if let Some(dir) = &args.logs
        && !dir.is_dir()
    {
        anyhow::bail!("--logs {}: no such folder", dir.display());
    }
    let options = console::Options {
        scan: args.fleet.scan_options(),
        listen: args.listen,
        collector: args.collector,
        gateway_admin: args.gateway_admin,
        gateway_token,
        webhook_metrics: args.webhook_metrics,
        webhook_ca: args.webhook_ca,
        logs: args.logs,
        token,
    };
    let mut printed = Ok(());
    console::run(options, |c| {
        let graph = c.ctx.current.get();
        printed = output::print(&format!(
            "console listening on http://{}\n{} services loaded in {:.0} ms; watching {}\n",
            c.address,
            graph.fleet.services.len(),
            graph.load_ms,
            graph.root.display()
        ));
    })
    .with_context(|| format!("running the console for {}", args.fleet.path.display()))?;
    printed?;
    Ok(Exit::Ran)
}
