//! `bulkhead scan`: read a fleet into the graph and print what it holds.

use crate::args::{Exit, Format, FormatArgs, StateArgs};
use crate::output;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Folders to scan, like --path (default: the current folder).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The fleet root, holding bulkhead.toml. Repeatable; positional PATHs add to it.
    #[arg(long = "path", value_name = "DIR")]
    path: Vec<PathBuf>,
    #[command(flatten)]
    state: StateArgs,
    /// Output format; json is docs/scan-json.md.
    #[command(flatten)]
    format: FormatArgs,
    /// Parse every file again instead of reusing facts of unchanged files.
    #[arg(long)]
    no_cache: bool,
}

pub fn run(args: ScanArgs) -> Result<Exit> {
    let mut paths = args.path;
    paths.extend(args.paths);
    let outcome = output::scan(&discover::ScanOptions {
        paths,
        state_dir: args.state.state,
        use_cache: !args.no_cache,
    })?;
    match args.format.get() {
        Format::Json => output::print_json(&output::ScanJson::new(&outcome))?,
        Format::Table => output::print(&output::scan_table(&outcome))?,
        Format::Markdown => output::print(&format!("```\n{}```\n", output::scan_table(&outcome)))?,
    }
    Ok(Exit::Ran)
}
