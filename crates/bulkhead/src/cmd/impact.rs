//! `bulkhead impact`: the four answers for a change to services or to a base image.

use crate::args::{Exit, FleetArgs, Format, FormatArgs, ServerArgs};
use crate::output;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use model::ImageRef;
use serde::Serialize;

#[derive(Debug, Subcommand)]
pub enum ImpactCommand {
    /// Blast radius of changing one or more services together.
    ///
    /// Lists every transitive caller with its owner and tier, the public routes
    /// that reach them, the services provably untouched, how to roll back and
    /// what to watch, and waves ordered providers-first.
    ///
    /// Example: bulkhead impact services payments,orders --path ./fleet --format markdown
    Services(ServicesArgs),
    /// Blast radius of changing a base image: every image built on it, the
    /// services built on those (Dockerfile file:line), their workloads,
    /// running containers and public routes, ranked by exposure and tier,
    /// with the rebuild and rollout plan.
    ///
    /// Example: bulkhead impact image registry.acme.internal/base/debian-12 --path ./fleet
    Image(ImageArgs),
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Service names, comma-separated.
    #[arg(value_delimiter = ',', required = true)]
    names: Vec<String>,
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    format: FormatArgs,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The image that changes (registry/repository; a tag or digest is ignored).
    reference: String,
    /// What it changes to, for the report's title and plan (default: "a new build").
    #[arg(long, value_name = "REF")]
    to: Option<String>,
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    format: FormatArgs,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(command: ImpactCommand) -> Result<Exit> {
    match command {
        ImpactCommand::Services(args) => services(args),
        ImpactCommand::Image(args) => image(args),
    }
}

fn services(args: ServicesArgs) -> Result<Exit> {
    let asked = format!(
        "/api/impact?services={}&format={}",
        http_client::encode(&args.names.join(",")),
        args.format.get().name()
    );
    if let Some(answer) = args.server.ask(&args.fleet.path, &asked) {
        output::print(&answer)?;
        return Ok(Exit::Ran);
    }
    let outcome = output::scan(&args.fleet.scan_options())?;
    let report = impact::services(&outcome.fleet, &args.names)?;
    output::print_report(&report, args.format.get())?;
    Ok(Exit::Ran)
}

fn image(args: ImageArgs) -> Result<Exit> {
    let reference = ImageRef::parse(&args.reference)
        .with_context(|| format!("image reference {:?}", args.reference))?;
    let asked = format!(
        "/api/impact?image={}{}&format={}",
        http_client::encode(&args.reference),
        args.to.as_deref().map_or(String::new(), |to| format!(
            "&to={}",
            http_client::encode(to)
        )),
        args.format.get().name()
    );
    if let Some(answer) = args.server.ask(&args.fleet.path, &asked) {
        output::print(&answer)?;
        return Ok(Exit::Ran);
    }
    let loaded = super::images::Loaded::load(&args.fleet)?;
    if loaded.inputs.catalog.get(&reference.name()).is_none()
        && !loaded.fleet.services.iter().any(|s| {
            s.base_images
                .iter()
                .chain(&s.images)
                .any(|i| i.name() == reference.name())
        })
    {
        eprintln!(
            "note: no base image catalog entry, scanner report, FROM or workload names {}",
            reference.name()
        );
    }
    let answer = impact::image(loaded.query(), &reference);
    let to = args.to.as_deref().unwrap_or("a new build");
    let report = impact::image_report(&answer, &loaded.fleet, &loaded.inputs.catalog, to);
    eprintln!(
        "{}: {} image(s), {} service(s)",
        answer.id,
        answer.images.len(),
        answer.services.len()
    );
    match args.format.get() {
        Format::Json => output::print_json(&ImageJson {
            schema: "bulkhead.impact-image/v1",
            image: &answer,
            report: &report,
        })?,
        format => output::print_report(&report, format)?,
    }
    Ok(Exit::Ran)
}

#[derive(Serialize)]
struct ImageJson<'a> {
    schema: &'static str,
    image: &'a images::CveAnswer,
    report: &'a model::ImpactReport,
}
