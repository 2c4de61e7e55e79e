//! `bench-cve`: how fast `bulkhead cve ID` answers compared with `git grep`.
//!
//! Generates (or reuses) a sample fleet, warms the scan cache in a state
//! directory of its own (never inside the fleet, which may be read-only or
//! shared), then times the release binary's `bulkhead cve <planted id> --json
//! --timings` (whole command, and the query itself as the command reports it)
//! against the baseline a person would run: `git grep -l -F` for the affected
//! base image names (the OS base and the language bases built on it, taken from
//! the ground truth, so the baseline is handed the lineage for free) in every
//! repository of the fleet, one after the other. Medians are reported.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub const USAGE: &str =
    "usage: cargo xtask bench-cve [--dir DIR] [--services N] [--runs N] [--grep-runs N]

  --dir DIR        reuse the fleet in DIR (read only) or generate it there
                   (default: a temporary folder)
  --services N     services in a generated fleet (default 10000)
  --runs N         timed runs of bulkhead cve; the median is reported (default 5)
  --grep-runs N    timed runs of the git grep sweep (default 1: it is slow)";

/// The options every fleet benchmark (`bench-cve`, `bench-console`) takes.
pub(crate) struct FleetOptions {
    pub(crate) dir: Option<PathBuf>,
    pub(crate) services: usize,
    pub(crate) runs: usize,
    pub(crate) grep_runs: usize,
}

fn parse(args: &[String], usage: &str) -> Result<FleetOptions, String> {
    let mut options = FleetOptions {
        dir: None,
        services: 10_000,
        runs: 5,
        grep_runs: 1,
    };
    for (flag, value) in crate::flag_pairs(args, usage)? {
        let number = || crate::count(flag, value);
        match flag {
            "--dir" => options.dir = Some(PathBuf::from(value)),
            "--services" => options.services = number()?,
            "--runs" => options.runs = number()?,
            "--grep-runs" => options.grep_runs = number()?,
            other => return Err(format!("unknown option {other:?}\n{usage}")),
        }
    }
    Ok(options)
}

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    run_fleet_bench(args, root, USAGE, "bench-cve", bench)
}

/// Parses `args`, builds the release binary and runs `bench` with it in a
/// fresh temporary folder named after `task`, removed afterwards.
pub(crate) fn run_fleet_bench(
    args: &[String],
    root: &Path,
    usage: &str,
    task: &str,
    bench: fn(&FleetOptions, &Path, &Path) -> Result<(), String>,
) -> Result<(), String> {
    let options = parse(args, usage)?;
    let bulkhead = crate::build_bulkhead(root)?;
    let work = std::env::temp_dir().join(format!("bulkhead-{task}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let result = bench(&options, &bulkhead, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Generates a fleet of `services` in `fleet` with `bulkhead lab init`,
/// unless one (its ground truth) is there already.
pub(crate) fn generate_fleet(bulkhead: &Path, fleet: &Path, services: usize) -> Result<(), String> {
    if fleet.join("ground-truth.json").exists() {
        return Ok(());
    }
    eprintln!(
        "generating a {services}-service fleet in {} ...",
        fleet.display()
    );
    let started = Instant::now();
    let status = Command::new(bulkhead)
        .args(["lab", "init"])
        .arg(fleet)
        .args(["--services", &services.to_string()])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("running bulkhead lab init: {e}"))?;
    if !status.success() {
        return Err(format!("bulkhead lab init failed: {status}"));
    }
    eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The planted CVE's id and the base image names it affects: the OS base and
/// the language bases built on it (the ground truth's `critical_cve`).
pub(crate) fn planted_names(planted: &Value) -> Result<(String, Vec<String>), String> {
    let id = planted["id"]
        .as_str()
        .ok_or("ground truth has no critical_cve.id")?
        .to_string();
    let mut names: Vec<String> = planted["os_base"]
        .as_str()
        .map(str::to_string)
        .into_iter()
        .collect();
    names.extend(
        planted["language_bases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string)),
    );
    Ok((id, names))
}

fn bench(options: &FleetOptions, bulkhead: &Path, work: &Path) -> Result<(), String> {
    let fleet = options.dir.clone().unwrap_or_else(|| work.join("fleet"));
    let truth_path = fleet.join("ground-truth.json");
    generate_fleet(bulkhead, &fleet, options.services)?;
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(&truth_path)
            .map_err(|e| format!("reading {}: {e}", truth_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", truth_path.display()))?;
    let planted = &truth["critical_cve"];
    let (id, names) = planted_names(planted)?;
    let services = truth["services"].as_array().map_or(0, Vec::len);
    let expected = planted["services"].as_array().map_or(0, Vec::len);

    // The scan cache lives in our own state folder: the fleet is only read.
    let state = work.join("state");
    let mut cve = Command::new(bulkhead);
    cve.args(["cve", &id, "--json", "--timings", "--path"])
        .arg(&fleet)
        .arg("--state")
        .arg(&state)
        .stderr(Stdio::null());
    eprintln!("warming the scan cache in {} ...", state.display());
    let warm = run_cve(&mut cve)?;
    let found = warm.services;

    let mut whole = Vec::with_capacity(options.runs);
    let mut query = Vec::with_capacity(options.runs);
    let mut load = Vec::with_capacity(options.runs);
    for _ in 0..options.runs {
        let started = Instant::now();
        let outcome = run_cve(&mut cve)?;
        whole.push(started.elapsed().as_secs_f64() * 1000.0);
        query.push(outcome.query_ms);
        load.push(outcome.load_ms);
    }

    let repos = repositories(&fleet)?;
    eprintln!(
        "git grep over {} repositories for {} names ...",
        repos.len(),
        names.len()
    );
    let mut grep_times = Vec::with_capacity(options.grep_runs);
    let mut grep_hits = 0;
    for _ in 0..options.grep_runs {
        let started = Instant::now();
        grep_hits = grep_sweep(&repos, &names)?;
        grep_times.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    let whole_ms = median(&mut whole);
    let query_ms = median(&mut query);
    let load_ms = median(&mut load);
    let grep_ms = median(&mut grep_times);
    println!(
        "fleet: {services} services, {} repositories under {}; {id} ({} affected base names)",
        repos.len(),
        fleet.display(),
        names.len()
    );
    println!(
        "services found: bulkhead {found}, git grep {grep_hits} repositories, ground truth {expected}"
    );
    println!(
        "| what | median | git grep / this |\n|---|---|---|\n\
         | git grep -l -F (baseline, {} run(s), sequential) | {:.1} ms | 1.0x |\n\
         | bulkhead cve, whole command ({} runs, cache warm) | {whole_ms:.1} ms | {:.0}x |\n\
         |   of which scan + load | {load_ms:.1} ms | |\n\
         | bulkhead cve, the query itself (target < 50 ms) | {query_ms:.2} ms | {:.0}x |",
        options.grep_runs,
        grep_ms,
        options.runs,
        grep_ms / whole_ms,
        grep_ms / query_ms.max(0.001),
    );
    Ok(())
}

struct CveOutcome {
    services: usize,
    load_ms: f64,
    query_ms: f64,
}

fn run_cve(cmd: &mut Command) -> Result<CveOutcome, String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", out.status));
    }
    let json: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("bulkhead cve --json printed invalid JSON: {e}"))?;
    let number = |key: &str| {
        json["timings"][key]
            .as_f64()
            .ok_or_else(|| format!("bulkhead cve --json --timings has no timings.{key}"))
    };
    Ok(CveOutcome {
        services: json["cve"]["services"].as_array().map_or(0, Vec::len),
        load_ms: number("load_ms")?,
        query_ms: number("query_ms")?,
    })
}

/// Every git repository of the fleet: its top-level folders and `services/*`.
pub(crate) fn repositories(fleet: &Path) -> Result<Vec<PathBuf>, String> {
    let mut repos = Vec::new();
    for dir in [fleet.to_path_buf(), fleet.join("services")] {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.join(".git").exists() {
                repos.push(path);
            }
        }
    }
    repos.sort();
    Ok(repos)
}

/// `git grep -l -F -e NAME...` in each repository; returns how many matched.
pub(crate) fn grep_sweep(repos: &[PathBuf], names: &[String]) -> Result<usize, String> {
    let mut hits = 0;
    for repo in repos {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(repo).args(["grep", "-l", "-F"]);
        for name in names {
            cmd.arg("-e").arg(name);
        }
        let out = cmd
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("running git grep in {}: {e}", repo.display()))?;
        match out.status.code() {
            // Skip the base images repository itself: it defines the names.
            Some(0) if !out.stdout.is_empty() && !repo.ends_with("base-images") => hits += 1,
            Some(0 | 1) => {}
            _ => {
                return Err(format!(
                    "git grep in {} failed: {}",
                    repo.display(),
                    out.status
                ));
            }
        }
    }
    Ok(hits)
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
