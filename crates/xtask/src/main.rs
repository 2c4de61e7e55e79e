//! Project automation, run as `cargo xtask <task>`.
//!
//! `bench-scan`: generates a sample fleet with `bulkhead lab init`, then times a
//! full `bulkhead scan` (no cache) against ripgrep finding `^FROM` lines in the
//! same tree, and prints both times and their ratio. The target is a full parse
//! within 2x ripgrep's time. Both tools run warm (one untimed run each first),
//! and the median of several runs is reported.
//!
//! `bench-lab`: the live lab's ready time at 12 and 50 services, its resident
//! memory and idle CPU, and the wall time of `lab tour` (see `bench_lab.rs`).
//!
//! `bench-lab-service`: the resident memory of idle `bulkhead lab service`
//! instances and the requests/s one of them serves (see `bench_lab_service.rs`).
//!
//! `bench-policy`: admission latency (p50/p99/max, reviews/s) of `bulkhead
//! policy serve` at 200 concurrent reviews over TLS on loopback, and the time
//! of `bulkhead policy check` over a 10,000-service fleet (see `bench_policy.rs`).
//!
//! `bench-policy-check`: `bulkhead policy check` of a 10,000-service fleet,
//! cold and with nothing changed, against regorus called per manifest file
//! (see `bench_policy_check.rs`).
//!
//! `bench-gateway`: requests/s and p99 of `bulkhead gateway` against nginx and
//! HAProxy routing the same paths to one upstream, and against the upstream
//! direct, all driven by wrk (see `bench_gateway.rs`).
//!
//! `bench-collector`: OTLP/HTTP ingest spans/s per core of `bulkhead collector`
//! and trace-by-id p99 with 10 million spans stored (see `bench_collector.rs`).
//!
//! `bench-console`: `bulkhead cve --server` through a running console against
//! `git grep`, page render times, a file change reaching the API, the
//! console's RSS (see `bench_console.rs`). `screenshots`: the console's main
//! pages as PNGs in docs/console/ (see `screenshots.rs`).
//!
//! `bench-cve`: `bulkhead cve <planted id>` (whole command and the query
//! itself) against `git grep` for the affected base image names over every
//! repository of the fleet (see `bench_cve.rs`).
//!
//! `switch-proof`: flips a service's selector N times (10,000 by default)
//! through a release gateway under load and proves no request failed (see
//! `switch_proof.rs`).
//!
//! `fuzz`: a mutation fuzzer over every parser that reads outside input, seeded
//! from `testdata/fuzz/` (see `fuzz.rs`).

mod bench_collector;
mod bench_console;
mod bench_cve;
mod bench_gateway;
mod bench_lab;
mod bench_lab_service;
mod bench_policy;
mod bench_policy_check;
mod bench_rollout;
mod fuzz;
mod process;
mod screenshots;
mod switch_proof;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo xtask bench-scan [--services N] [--runs N] [--dir DIR]

  --services N   services in the generated fleet (default 10000)
  --runs N       timed runs of each tool; the median is reported (default 5)
  --dir DIR      reuse (or create) the fleet in DIR instead of a temporary folder";

/// A task's name, its usage, and what runs it (with its arguments and the
/// repository's root).
type Task = (
    &'static str,
    &'static str,
    fn(&[String], &Path) -> Result<(), String>,
);

const TASKS: [Task; 13] = [
    ("bench-scan", USAGE, |args, _| bench_scan(args)),
    (
        "bench-collector",
        bench_collector::USAGE,
        bench_collector::run,
    ),
    ("bench-console", bench_console::USAGE, bench_console::run),
    ("screenshots", screenshots::USAGE, screenshots::run),
    ("bench-lab", bench_lab::USAGE, bench_lab::run),
    (
        "bench-lab-service",
        bench_lab_service::USAGE,
        bench_lab_service::run,
    ),
    ("bench-policy", bench_policy::USAGE, bench_policy::run),
    (
        "bench-policy-check",
        bench_policy_check::USAGE,
        bench_policy_check::run,
    ),
    ("bench-cve", bench_cve::USAGE, bench_cve::run),
    ("bench-gateway", bench_gateway::USAGE, bench_gateway::run),
    ("bench-rollout", bench_rollout::USAGE, bench_rollout::run),
    ("fuzz", fuzz::USAGE, fuzz::run),
    ("switch-proof", switch_proof::USAGE, switch_proof::run),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wants_help = |rest: &[String]| rest.iter().any(|a| a == "-h" || a == "--help");
    let result = match args.first().map(String::as_str) {
        Some("-h" | "--help") | None => {
            let usages: Vec<&str> = TASKS.iter().map(|(_, usage, _)| *usage).collect();
            println!("{}", usages.join("\n\n"));
            Ok(())
        }
        Some(name) => match TASKS.iter().find(|(task, _, _)| *task == name) {
            Some((_, usage, _)) if wants_help(&args[1..]) => {
                println!("{usage}");
                Ok(())
            }
            Some((_, _, run)) => run(&args[1..], &root),
            None => {
                let names: Vec<&str> = TASKS.iter().map(|(task, _, _)| *task).collect();
                Err(format!(
                    "unknown task {name:?}; the tasks are {} (`cargo xtask --help` for each one's options)",
                    names.join(", ")
                ))
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    services: usize,
    runs: usize,
    dir: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        services: 10_000,
        runs: 5,
        dir: None,
    };
    for (flag, value) in flag_pairs(args, USAGE)? {
        match flag {
            "--services" => options.services = count(flag, value)?,
            "--runs" => options.runs = count(flag, value)?,
            "--dir" => options.dir = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn bench_scan(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bulkhead = build_bulkhead(&root)?;
    let rg = which("rg").ok_or("ripgrep (rg) is not installed: run scripts/setup")?;

    let work = std::env::temp_dir().join(format!("bulkhead-bench-{}", std::process::id()));
    let fleet = options.dir.clone().unwrap_or_else(|| work.join("fleet"));
    if !fleet.join("ground-truth.json").exists() {
        eprintln!(
            "generating a {}-service fleet in {} ...",
            options.services,
            fleet.display()
        );
        let started = Instant::now();
        run(Command::new(&bulkhead)
            .args(["lab", "init"])
            .arg(&fleet)
            .args(["--services", &options.services.to_string()])
            .stdout(Stdio::null()))?;
        eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
    }
    let state = work.join("state");

    let mut scan = Command::new(&bulkhead);
    scan.arg("scan")
        .arg(&fleet)
        .arg("--no-cache")
        .arg("--state")
        .arg(&state)
        .stdout(Stdio::null());
    let mut grep = Command::new(&rg);
    grep.args(["--no-messages", "-c", "^FROM"])
        .arg(&fleet)
        .stdout(Stdio::null());
    let files = count_files(&fleet);

    let rg_time = median(&mut grep, options.runs)?;
    let scan_time = median(&mut scan, options.runs)?;
    let ratio = scan_time.as_secs_f64() / rg_time.as_secs_f64();
    println!(
        "fleet: {} services, {files} files under {}",
        options.services,
        fleet.display()
    );
    println!("| what | median of {} runs |", options.runs);
    println!("|---|---|");
    println!("| rg '^FROM' (baseline) | {:.3} s |", rg_time.as_secs_f64());
    println!(
        "| bulkhead scan --no-cache | {:.3} s |",
        scan_time.as_secs_f64()
    );
    println!("| ratio (target <= 2.0) | {ratio:.2}x |");
    if options.dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        let _ = std::fs::remove_dir_all(&state);
    }
    Ok(())
}

/// Splits `--flag value` pairs; every option of every task takes a value.
pub(crate) fn flag_pairs<'a>(
    args: &'a [String],
    usage: &str,
) -> Result<Vec<(&'a str, &'a str)>, String> {
    args.chunks(2)
        .map(|pair| match pair {
            [flag, value] => Ok((flag.as_str(), value.as_str())),
            [flag] => Err(format!("{flag} needs a value\n{usage}")),
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// A count given to `flag`: a whole number, at least 1.
pub(crate) fn count(flag: &str, value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .map(|n| n.max(1))
        .map_err(|e| format!("{flag}: {e}"))
}

/// Builds the release `bulkhead` binary and returns its path (honouring `CARGO_TARGET_DIR`).
pub(crate) fn build_bulkhead(root: &Path) -> Result<PathBuf, String> {
    let mut cargo = Command::new(env!("CARGO"));
    // `cargo run` gave this process the xtask package's variables; build scripts
    // that watch them (ring's does) would see them change between this build and
    // a plain `cargo build`, and rebuild every time.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
        {
            cargo.env_remove(&*name);
        }
    }
    let status = cargo
        .args(["build", "--release", "--quiet", "-p", "bulkhead"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("running cargo build: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --release -p bulkhead failed: {status}"
        ));
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release/bulkhead"))
}

/// User and system CPU seconds used so far by process `pid` (all its threads)
/// and, with `children`, by its child processes too (nginx's workers), from /proc.
pub(crate) fn cpu_times(pid: u32, children: bool) -> Result<(f64, f64), String> {
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    // Fields after the parenthesised command name: ppid is 2nd, utime and stime 12th and 13th.
    let stat = |pid: &str| -> Option<(u32, f64, f64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        Some((
            fields.get(1)?.parse().ok()?,
            fields.get(11)?.parse().ok()?,
            fields.get(12)?.parse().ok()?,
        ))
    };
    let (_, mut user, mut sys) =
        stat(&pid.to_string()).ok_or_else(|| format!("no /proc/{pid}/stat"))?;
    if children {
        let entries = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some((ppid, u, s)) = name.to_str().and_then(stat)
                && ppid == pid
            {
                user += u;
                sys += s;
            }
        }
    }
    Ok((user / hz, sys / hz))
}

/// Runs once untimed (to warm the page cache), then `runs` timed runs; returns the median.
fn median(cmd: &mut Command, runs: usize) -> Result<Duration, String> {
    run(cmd)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        run(cmd)?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

pub(crate) fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("running {cmd:?}: {e}"))?;
    // ripgrep exits 1 when nothing matched: still a completed run.
    if status.success()
        || (status.code() == Some(1) && cmd.get_program().to_string_lossy().ends_with("rg"))
    {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn count_files(dir: &Path) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) => count += 1,
                Err(_) => {}
            }
        }
    }
    count
}
