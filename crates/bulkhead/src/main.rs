//! `bulkhead`: change-impact control for microservice fleets.
//!
//! The binary is thin: it parses the command line, calls the library crates
//! and prints. Results go to stdout (`--json` for machines), messages and
//! progress to stderr; exit codes (`args::Exit`) are stable for CI.

mod args;
mod cli;
mod cmd;
mod output;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use args::Exit;
use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let outcome = match cmd::lab::service_only(&argv) {
        Some(outcome) => outcome,
        None => cli::Cli::parse_from(argv).run(),
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(e) => {
            if output::is_broken_pipe(&e) {
                return Exit::Ran.into();
            }
            eprintln!("error: {e:#}");
            Exit::CouldNotRun.into()
        }
    }
}
