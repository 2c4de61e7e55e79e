//! `bulkhead demo`: the sample fleet, its scan, and one impact answer, in one go.

use crate::args::Exit;
use crate::output;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of services in the sample fleet.
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Keep the generated fleet in this folder instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

pub fn run(args: DemoArgs) -> Result<Exit> {
    let (dir, _temp) = match args.keep {
        Some(dir) => (dir, None),
        None => {
            let temp = output::TempDir::new("bulkhead-demo")?;
            (temp.path().join("fleet"), Some(temp))
        }
    };
    super::lab::write_fleet(&dir, args.services, 42)?;
    let outcome = output::scan(&discover::ScanOptions {
        paths: vec![dir],
        state_dir: None,
        use_cache: true,
    })?;
    output::print(&output::fleet_summary(&outcome))?;
    let Some(target) = output::most_called_service(&outcome.fleet) else {
        return Ok(Exit::Ran);
    };
    output::print(&format!("\n$ bulkhead impact services {target}\n\n"))?;
    let report = impact::services(&outcome.fleet, &[target])?;
    output::print(&model::report::render_table(&report))?;
    Ok(Exit::Ran)
}
