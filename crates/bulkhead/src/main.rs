//! `bulkhead`: change-impact control for microservice fleets.
//!
//! The binary is thin: it parses the command line, calls the library crates
//! and prints. Results go to stdout (`--json` for machines), messages and
//! progress to stderr; exit codes are stable for CI.

mod cli;
mod gateway_cmd;
mod image_cmd;
mod output;
mod patch_cmd;
mod policy_cmd;
mod rollout_cmd;
mod template_cmd;
mod trace_cmd;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            if output::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
