//! `bulkhead gateway`: reads the routing file and runs the gateway until SIGTERM or Ctrl-C.

use crate::args::{self, Exit};
use crate::output;
use anyhow::{Context as _, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The routing file: listeners, limits, routes and services, and any Gateway API
    /// HTTPRoute documents (docs/gateway.md). `POST /reload` on the admin API re-reads it.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Where the admin API listens (port 0 picks one); without it there is no admin API.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// The environment variable holding the admin API's bearer token; a token
    /// (from it or --admin-token-file) is required when --admin is not a loopback address.
    #[arg(long, value_name = "NAME", conflicts_with = "admin_token_file")]
    admin_token_env: Option<String>,
    /// A file holding the admin API's bearer token.
    #[arg(long, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,
    /// Where the JSON access log goes: `-` for stdout, `off`, or a file to append to.
    #[arg(long, value_name = "PATH", default_value = "-")]
    access_log: String,
    /// Export one span per request by OTLP/HTTP to this collector,
    /// e.g. http://127.0.0.1:4318 (`/v1/traces` is appended).
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// The OTLP/HTTP encoding: http/json or http/protobuf (smaller; what
    /// Jaeger, Tempo and the OpenTelemetry Collector expect by default).
    #[arg(long, value_name = "PROTOCOL", default_value = "http/json", value_parser = telemetry::otlp::Protocol::parse)]
    otlp_protocol: telemetry::otlp::Protocol,
    /// Worker threads serving connections, each with its own upstream connection
    /// pools; 0 runs one per CPU.
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
}

pub fn run(args: GatewayArgs) -> Result<Exit> {
    let path = args.config.display().to_string();
    let text = std::fs::read_to_string(&args.config).with_context(|| format!("reading {path}"))?;
    let config = gateway::parse(&path, &text)?;
    let admin_token = args::read_secret(
        "admin-token",
        args.admin_token_env.as_deref(),
        args.admin_token_file.as_deref(),
    )?;
    let access_log = match args.access_log.as_str() {
        "-" => gateway::AccessLog::Stdout,
        "off" => gateway::AccessLog::Off,
        file => gateway::AccessLog::File(file.into()),
    };
    let options = gateway::Options {
        admin: args.admin,
        admin_token,
        access_log,
        otlp: args.otlp_endpoint.map(|endpoint| gateway::OtlpOptions {
            protocol: args.otlp_protocol,
            ..gateway::OtlpOptions::new(endpoint)
        }),
        config_path: Some(args.config.clone()),
        workers: args.workers,
    };
    let mut printed = Ok(());
    let drained = gateway::run(config, options, |gw| {
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
    if !drained {
        eprintln!("gateway: stopped with requests still in flight after the drain timeout");
        return Ok(Exit::No);
    }
    Ok(Exit::Ran)
}
