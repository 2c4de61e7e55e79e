//! `bulkhead cve ID`: which images, services, workloads and public routes a
//! vulnerability reaches, with the emergency plan. Reads no file itself: the
//! scan and the image inputs come from `discover`, the answer from `images`.

use super::images::Loaded;
use crate::args::{Exit, FleetArgs, Format, FormatArgs, ServerArgs};
use crate::output;
use anyhow::Result;
use clap::Args;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct CveArgs {
    /// The vulnerability id (CVE-2023-38545, GHSA-...).
    id: String,
    /// Add "timings" (scan and load, query, in milliseconds) to the JSON output.
    #[arg(long)]
    timings: bool,
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    format: FormatArgs,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    cluster: super::cluster::ClusterArgs,
}

pub fn run(args: CveArgs) -> Result<Exit> {
    let asked = format!(
        "/api/cve/{}?format={}{}",
        http_client::encode(&args.id),
        args.format.get().name(),
        if args.timings { "&timings=1" } else { "" }
    );
    // The console reads no live cluster: --cluster is answered here.
    let console = if args.cluster.contexts.is_empty() {
        args.server.ask(&args.fleet.path, &asked)
    } else {
        None
    };
    if let Some(answer) = console {
        eprintln!(
            "{}: answered by the console from its resident fleet graph",
            args.id
        );
        output::print(&answer)?;
        return Ok(Exit::Ran);
    }
    let loading = Instant::now();
    let loaded = Loaded::load_live(&args.fleet, &args.cluster)?;
    let load_ms = loading.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let answer = images::cve::cve(loaded.query(), &args.id);
    let report = images::cve::impact_report(&answer, &loaded.fleet);
    let query_ms = started.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "{}: {} image(s), {} service(s); answered in {query_ms:.2} ms after the scan",
        answer.id,
        answer.images.len(),
        answer.services.len(),
    );
    if answer.introduced.is_empty() {
        eprintln!(
            "note: no scanner report lists {}; reports read: {}",
            args.id,
            loaded.inputs.catalog.reports.len()
        );
    }
    match args.format.get() {
        Format::Json => output::print_json(&images::cve::CveDocument {
            schema: images::cve::CVE_SCHEMA,
            cve: &answer,
            report: &report,
            timings: args
                .timings
                .then_some(images::cve::CveTimings { load_ms, query_ms }),
        })?,
        format => output::print_report(&report, format)?,
    }
    Ok(Exit::Ran)
}
