//! `bench-policy-check`: `bulkhead policy check` over a generated fleet, cold
//! (a new state directory: the scan parses every file, every rule runs) and
//! with nothing changed (the same state again), against a baseline measured
//! in the same run.
//!
//! Neither `conftest` nor `opa` is packaged in Debian, PyPI, npm or crates.io,
//! so the baseline is the Rego engine bulkhead embeds (regorus) called the
//! way a shell loop calls `opa eval` on each file: for every Kubernetes
//! manifest of the fleet, a new engine loads the built-in bundle, reads the
//! file, and evaluates the manifest rules on each of its objects, on one
//! thread. It checks less than `policy check` does (no service rules, no
//! fleet graph), so the ratio flatters the baseline. Each tool runs `--runs`
//! times, interleaved, and the medians are reported; each run's times and
//! CPU (user + system, from `/proc/self/stat`) go to stderr as it ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const USAGE: &str =
    "usage: cargo xtask bench-policy-check [--services N] [--runs N] [--dir DIR]

  --services N   services in the generated fleet (default 10000)
  --runs N       timed runs of each measure; the median is reported (default 3)
  --dir DIR      reuse (or create) the fleet in DIR instead of a temporary folder";

/// The bundle's rule over one Kubernetes object.
const MANIFEST_RULE: &str = "data.bulkhead.manifest.findings";

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    let mut services = 10_000;
    let mut runs = 3;
    let mut dir = None;
    for (flag, value) in crate::flag_pairs(args, USAGE)? {
        match flag {
            "--services" => services = crate::count(flag, value)?,
            "--runs" => runs = crate::count(flag, value)?,
            "--dir" => dir = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let bulkhead = crate::build_bulkhead(root)?;
    let work = std::env::temp_dir().join(format!("bulkhead-bench-check-{}", std::process::id()));
    let fleet = dir.clone().unwrap_or_else(|| work.join("fleet"));
    if !fleet.join("ground-truth.json").exists() {
        eprintln!(
            "generating a {services}-service fleet in {} ...",
            fleet.display()
        );
        crate::run(
            Command::new(&bulkhead)
                .args(["lab", "init"])
                .arg(&fleet)
                .args(["--services", &services.to_string()])
                .stdout(Stdio::null()),
        )?;
    }
    let result = measure(&bulkhead, &fleet, &work, runs);
    let _ = std::fs::remove_dir_all(&work);
    let m = result?;
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "fleet: {} services, {} manifest files under {}",
        m.services,
        m.manifests,
        fleet.display()
    );
    println!("| what | median of {runs} runs | ratio to baseline |");
    println!("|---|---|---|");
    println!(
        "| baseline: regorus per manifest file, one thread ({} findings) | {:.3} s | 1.00x |",
        m.baseline_findings,
        secs(m.baseline)
    );
    println!(
        "| bulkhead policy check, cold (new state; target <= 1.0 s) | {:.3} s | {:.2}x |",
        secs(m.cold),
        secs(m.cold) / secs(m.baseline)
    );
    println!(
        "| bulkhead policy check, nothing changed (target <= 0.3 s) | {:.3} s | {:.2}x |",
        secs(m.warm),
        secs(m.warm) / secs(m.baseline)
    );
    println!("| bulkhead findings | {} |  |", m.findings);
    Ok(())
}

struct Measured {
    baseline: Duration,
    cold: Duration,
    warm: Duration,
    services: u64,
    manifests: usize,
    baseline_findings: usize,
    findings: String,
}

fn measure(bulkhead: &Path, fleet: &Path, work: &Path, runs: usize) -> Result<Measured, String> {
    let manifests = manifest_files(fleet);
    let mut baseline = Vec::new();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut baseline_findings = 0;
    let mut report = serde_json::Value::Null;
    let hz = clock_ticks();
    for run in 0..runs {
        let started = Instant::now();
        let cpu = cpu_seconds(hz, Whose::Own);
        baseline_findings = naive(&manifests)?;
        let baseline_cpu = cpu_seconds(hz, Whose::Own) - cpu;
        baseline.push(started.elapsed());
        let state = work.join(format!("state-{run}"));
        let cpu = cpu_seconds(hz, Whose::Children);
        let (took, out) = check(bulkhead, fleet, &state)?;
        let cold_cpu = cpu_seconds(hz, Whose::Children) - cpu;
        cold.push(took);
        let cpu = cpu_seconds(hz, Whose::Children);
        let (took, again) = check(bulkhead, fleet, &state)?;
        let warm_cpu = cpu_seconds(hz, Whose::Children) - cpu;
        warm.push(took);
        eprintln!(
            "run {}: baseline {:.3} s ({baseline_cpu:.2} s CPU), cold {:.3} s ({cold_cpu:.2} s CPU), nothing changed {:.3} s ({warm_cpu:.2} s CPU)",
            run + 1,
            baseline[run].as_secs_f64(),
            cold[run].as_secs_f64(),
            took.as_secs_f64(),
        );
        if again != out {
            return Err("a check with nothing changed answered differently".into());
        }
        report = serde_json::from_str(&out).map_err(|e| format!("policy check JSON: {e}"))?;
    }
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let summary = &report["summary"];
    Ok(Measured {
        baseline: median(baseline),
        cold: median(cold),
        warm: median(warm),
        services: summary["services"].as_u64().unwrap_or(0),
        manifests: manifests.len(),
        baseline_findings,
        findings: format!("{} deny, {} warn", summary["deny"], summary["warn"]),
    })
}

/// Clock ticks per second, for the CPU times of `/proc/self/stat`.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// Whose CPU time [`cpu_seconds`] reads.
enum Whose {
    /// This process's own (the in-process baseline).
    Own,
    /// Its children that were waited for (each `policy check`).
    Children,
}

/// User plus system CPU seconds so far, from `/proc/self/stat`.
fn cpu_seconds(hz: f64, whose: Whose) -> f64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are the 12th and 13th fields after the command name, cutime and cstime the 14th and 15th.
    let at = match whose {
        Whose::Own => 11,
        Whose::Children => 13,
    };
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(at) + ticks(at + 1)) / hz
}

/// One `policy check --format json`: its time and its report.
pub(crate) fn check(
    bulkhead: &Path,
    fleet: &Path,
    state: &Path,
) -> Result<(Duration, String), String> {
    let started = Instant::now();
    let out = Command::new(bulkhead)
        .args(["policy", "check"])
        .arg(fleet)
        .arg("--state")
        .arg(state)
        .args(["--format", "json"])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("running bulkhead policy check: {e}"))?;
    let took = started.elapsed();
    // 1 means a deny was found, which the generated fleet plants on purpose.
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(format!("bulkhead policy check failed: {}", out.status));
    }
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The fleet's Kubernetes manifests, as a file-by-file tool finds them: YAML
/// files (outside `.git`) holding `apiVersion:` and `kind:`, except catalog entries.
fn manifest_files(fleet: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![fleet.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            match entry.file_type() {
                Ok(t) if t.is_dir() && name != ".git" => stack.push(path),
                Ok(t) if t.is_file() => {
                    let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
                    if yaml
                        && name != "catalog-info.yaml"
                        && std::fs::read_to_string(&path)
                            .is_ok_and(|t| t.contains("apiVersion:") && t.contains("kind:"))
                    {
                        found.push(path);
                    }
                }
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// The baseline: per file, a new engine, the bundle loaded, each object evaluated.
fn naive(files: &[PathBuf]) -> Result<usize, String> {
    let mut findings = 0;
    for file in files {
        let mut engine = regorus::Engine::new();
        for (name, text) in policy::builtin::SOURCES {
            engine
                .add_policy((*name).to_string(), (*text).to_string())
                .map_err(|e| format!("{name}: {e}"))?;
        }
        engine
            .add_data(regorus::Value::from(serde_json::json!({
                "bulkhead": { "config": policy::BundleConfig::default() }
            })))
            .map_err(|e| e.to_string())?;
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let (documents, _) = yaml::load(&text);
        for doc in documents {
            let object = doc.to_json();
            if object.get("kind").is_none() {
                continue;
            }
            engine.set_input(regorus::Value::from(
                serde_json::json!({ "object": object, "siblings": [] }),
            ));
            let answer = engine
                .eval_rule(MANIFEST_RULE.to_string())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            for level in ["deny", "warn"] {
                findings += answer[level].as_set().map_or(0, |s| s.len());
            }
        }
    }
    Ok(findings)
}
