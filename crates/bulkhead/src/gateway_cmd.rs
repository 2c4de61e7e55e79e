//! `bulkhead gateway`: reads the routing file and runs the gateway until Ctrl-C.

use crate::output;
use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The routing file: listeners, routes and services (docs/gateway.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Where the admin API listens (port 0 picks one); without it there is no admin API.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// The environment variable holding the admin API's bearer token; required
    /// when --admin is not a loopback address.
    #[arg(long, value_name = "VAR")]
    admin_token_env: Option<String>,
}

pub fn run(args: GatewayArgs) -> Result<ExitCode> {
    let path = args.config.display().to_string();
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {path}"))?;
    let config = gateway::parse(&path, &text)?;
    let admin_token = match &args.admin_token_env {
        Some(var) => match std::env::var(var) {
            Ok(token) if !token.is_empty() => Some(token),
            _ => bail!("--admin-token-env {var}: the variable is unset or empty"),
        },
        None => None,
    };
    let options = gateway::Options {
        admin: args.admin,
        admin_token,
        access_log: true,
    };
    let mut printed = Ok(());
    gateway::run(config, options, |gw| {
        let mut lines = String::new();
        for addr in gw.proxy_addrs() {
            lines.push_str(&format!("proxy listening on http://{addr}\n"));
        }
        if let Some(addr) = gw.admin_addr() {
            lines.push_str(&format!("admin listening on http://{addr}\n"));
        }
        printed = output::print(&lines);
    })?;
    printed?;
    Ok(ExitCode::SUCCESS)
}
