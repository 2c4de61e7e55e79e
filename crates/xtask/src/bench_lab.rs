//! `bench-lab`: how fast and how light the live lab is (release build).
//!
//! For each lab size, a fleet is generated first (untimed, `lab init`), then
//! `bulkhead lab up --rate 0` is timed from its start until `lab status`
//! reports every process healthy. With the lab idle (no load, its start-up work
//! done), its CPU use is read from /proc/PID/task/*/schedstat of the
//! supervisor and every child over a window, and its resident memory summed over the same processes.
//! The lab's memory is the sum of the proportional set sizes (PSS): a page
//! several processes share is divided between them, so the sum counts it once
//! and is the memory the lab takes from the machine. The sum of VmRSS is
//! printed beside it; it counts the pages of the one `bulkhead` binary, which
//! every lab service maps, once per process, so it overstates the lab.
//! Then `bulkhead lab tour` runs on a new folder and its wall time is
//! reported with how many scenarios passed. Every wait has a deadline and
//! every lab is stopped with `lab down`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USAGE: &str =
    "usage: cargo xtask bench-lab [--sizes N,N] [--idle-seconds S] [--scenarios LIST]

  --sizes N,N        live services of the labs measured (default 12,50)
  --idle-seconds S   window of the idle CPU measurement (default 10)
  --scenarios LIST   scenarios of the timed `lab tour` (default: all)";

/// Targets of the issue, printed next to the measurements.
const READY_TARGETS: [(usize, f64); 2] = [(12, 10.0), (50, 30.0)];
const RSS_TARGET_MIB: f64 = 600.0;
const TOUR_TARGET_S: f64 = 300.0;
const IDLE_TARGET_PERCENT: f64 = 5.0;
const READY_DEADLINE: Duration = Duration::from_secs(180);

struct Options {
    sizes: Vec<usize>,
    idle_seconds: u64,
    scenarios: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        sizes: vec![12, 50],
        idle_seconds: 10,
        scenarios: None,
    };
    for (flag, value) in crate::flag_pairs(args, USAGE)? {
        match flag {
            "--sizes" => {
                options.sizes = value
                    .split(',')
                    .map(|n| crate::count(flag, n))
                    .collect::<Result<_, _>>()?;
            }
            "--idle-seconds" => options.idle_seconds = crate::count(flag, value)? as u64,
            "--scenarios" => options.scenarios = Some(value.to_string()),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// A running `lab up`, stopped with `lab down` when dropped.
struct LabUp {
    child: Child,
    bulkhead: PathBuf,
    dir: PathBuf,
}

impl Drop for LabUp {
    fn drop(&mut self) {
        let _ = Command::new(&self.bulkhead)
            .args(["lab", "down", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status(bulkhead: &Path, dir: &Path) -> Option<serde_json::Value> {
    let out = Command::new(bulkhead)
        .args(["lab", "status", "--json", "--dir"])
        .arg(dir)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Waits for the work `lab up` does after readiness: publishing the images,
/// building the hosts (both recorded under `provision` in lab.json) and the
/// console's policy findings (its `/api/policy` answers once they exist).
fn settle(bulkhead: &Path, dir: &Path, ready: &serde_json::Value) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let provision = status(bulkhead, dir).map(|s| s["provision"].clone());
        let done = provision.as_ref().is_some_and(|p| {
            ["registry", "hosts"]
                .iter()
                .all(|k| !matches!(p[k].as_str(), Some("publishing" | "building")))
        });
        if done {
            break;
        }
        if started.elapsed() > READY_DEADLINE {
            return Err(format!(
                "the lab's provisioning did not finish: {provision:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(console) = ready["addresses"]["console"].as_str() {
        let addr = console.trim_start_matches("http://");
        let (code, _) = crate::bench_console::get(addr, "/api/policy")?;
        if code != 200 {
            return Err(format!(
                "the lab's console answered /api/policy with {code}"
            ));
        }
    }
    Ok(())
}

/// The supervisor's pid and every recorded child's, each with its kind
/// (`supervisor`, `service`, `gateway`, ...). The load generator is a thread
/// of the supervisor.
fn pids(status: &serde_json::Value) -> Vec<(u32, String)> {
    let mut pids: Vec<(u32, String)> = status["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let pid = u32::try_from(p["pid"].as_u64()?).ok()?;
            Some((pid, p["kind"].as_str().unwrap_or("?").to_string()))
        })
        .collect();
    pids.extend(
        status["supervisor"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .map(|p| (p, "supervisor".to_string())),
    );
    pids
}

/// CPU time of every thread of a process, in seconds, from
/// /proc/PID/task/*/schedstat: nanoseconds, where /proc/PID/stat counts
/// 10 ms ticks, which over fifty mostly idle processes made the idle figure
/// swing by a percent of a core from one run to the next.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    nanos as f64 / 1e9
}

/// What the processes of one kind hold and use.
#[derive(Default)]
struct Kind {
    count: usize,
    rss_kib: u64,
    pss_kib: u64,
    cpu_seconds: f64,
}

/// What one lab size measured.
struct Measured {
    services: usize,
    processes: usize,
    ready: Duration,
    rss_kib: u64,
    pss_kib: u64,
    idle_percent: f64,
    /// The length of the idle window.
    window_seconds: f64,
    /// By process kind, largest resident memory first.
    kinds: Vec<(String, Kind)>,
}

fn measure(
    bulkhead: &Path,
    work: &Path,
    services: usize,
    idle_seconds: u64,
) -> Result<Measured, String> {
    let dir = work.join(format!("lab-{services}"));
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("generating the fleet of the {services}-service lab ...");
    crate::run(
        Command::new(bulkhead)
            .args(["lab", "init"])
            .arg(&dir)
            .args(["--services", "100"])
            .stdout(Stdio::null()),
    )?;
    eprintln!("starting lab up with {services} live services ...");
    let started = Instant::now();
    let child = Command::new(bulkhead)
        .args(["lab", "up", "--listen", "127.0.0.1:0", "--rate", "0"])
        .args(["--services", &services.to_string(), "--dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting lab up: {e}"))?;
    let mut lab = LabUp {
        child,
        bulkhead: bulkhead.to_path_buf(),
        dir: dir.clone(),
    };
    let ready_status = loop {
        if let Ok(Some(exit)) = lab.child.try_wait() {
            return Err(format!("lab up exited before it was ready: {exit}"));
        }
        if let Some(s) = status(bulkhead, &dir)
            && s["state"] == "running"
            && s["processes"]
                .as_array()
                .is_some_and(|ps| !ps.is_empty() && ps.iter().all(|p| p["healthy"] == true))
        {
            break s;
        }
        if started.elapsed() > READY_DEADLINE {
            return Err(format!(
                "the {services}-service lab was not ready within {READY_DEADLINE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ready = started.elapsed();
    let pids = pids(&ready_status);

    // Idle: once the start-up work beside readiness is done (images published,
    // dpkg hosts built, the console's first graph and policy findings), read
    // CPU time over the window.
    settle(bulkhead, &dir, &ready_status)?;

    let before: Vec<f64> = pids.iter().map(|(pid, _)| cpu_seconds(*pid)).collect();
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_seconds));
    let used: Vec<f64> = pids
        .iter()
        .zip(&before)
        .map(|((pid, _), before)| cpu_seconds(*pid) - before)
        .collect();
    let seconds = window.elapsed().as_secs_f64();

    let mut by_kind: std::collections::BTreeMap<String, Kind> = Default::default();
    for ((pid, kind), used) in pids.iter().zip(&used) {
        let kib = |file: &str, field: &str| {
            crate::bench_lab_service::proc_kib(*pid, file, field).unwrap_or(0)
        };
        let k = by_kind.entry(kind.clone()).or_default();
        k.count += 1;
        k.rss_kib += kib("status", "VmRSS");
        k.pss_kib += kib("smaps_rollup", "Pss");
        k.cpu_seconds += used;
    }
    let mut kinds: Vec<(String, Kind)> = by_kind.into_iter().collect();
    kinds.sort_by_key(|(_, k)| std::cmp::Reverse(k.rss_kib));
    let measured = Measured {
        services,
        processes: pids.len(),
        ready,
        rss_kib: kinds.iter().map(|(_, k)| k.rss_kib).sum(),
        pss_kib: kinds.iter().map(|(_, k)| k.pss_kib).sum(),
        idle_percent: used.iter().sum::<f64>() / seconds * 100.0,
        window_seconds: seconds,
        kinds,
    };
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(measured)
}

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    let options = parse(args)?;
    let bulkhead = crate::build_bulkhead(root)?;
    let work = std::env::temp_dir().join(format!("bulkhead-bench-lab-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    let mut labs = Vec::new();
    for &size in &options.sizes {
        labs.push(measure(&bulkhead, &work, size, options.idle_seconds)?);
    }

    eprintln!("running lab tour ...");
    let tour_dir = work.join("tour");
    let mut tour = Command::new(&bulkhead);
    tour.args(["lab", "tour", "--json", "--dir"])
        .arg(&tour_dir)
        .stderr(Stdio::null());
    if let Some(list) = &options.scenarios {
        tour.args(["--scenarios", list]);
    }
    let started = Instant::now();
    let out = tour
        .output()
        .map_err(|e| format!("running lab tour: {e}"))?;
    let tour_time = started.elapsed();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("lab tour printed no JSON report ({e}): exit {}", out.status))?;
    let steps = report["scenarios"].as_array().cloned().unwrap_or_default();
    let passed = steps.iter().filter(|s| s["passed"] == true).count();
    let per_scenario: Vec<String> = steps
        .iter()
        .map(|s| {
            format!(
                "{} {} {:.1} s",
                s["scenario"].as_str().unwrap_or("?"),
                if s["passed"] == true { "ok" } else { "FAILED" },
                s["seconds"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    let _ = std::fs::remove_dir_all(&work);

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("| what | measured | target |");
    println!("|---|---|---|");
    for lab in &labs {
        let target = READY_TARGETS
            .iter()
            .find(|(n, _)| *n == lab.services)
            .map_or("-".to_string(), |(_, s)| format!("< {s:.0} s"));
        println!(
            "| lab up ready, {} services ({} processes) | {:.2} s | {target} |",
            lab.services,
            lab.processes,
            lab.ready.as_secs_f64()
        );
    }
    for lab in &labs {
        let target = if lab.services == 50 {
            format!("< {RSS_TARGET_MIB:.0} MiB")
        } else {
            "-".into()
        };
        println!(
            "| resident memory of the whole lab, {} services | {:.0} MiB PSS summed (VmRSS summed: {:.0} MiB) | {target} |",
            lab.services,
            mib(lab.pss_kib),
            mib(lab.rss_kib)
        );
    }
    for lab in &labs {
        println!(
            "| idle CPU, {} services, no load, over {} s | {:.2}% of one core | < {IDLE_TARGET_PERCENT:.0}% |",
            lab.services, options.idle_seconds, lab.idle_percent
        );
    }
    println!(
        "| lab tour wall time ({passed} of {} scenarios passed: {}) | {:.1} s | < {TOUR_TARGET_S:.0} s |",
        steps.len(),
        per_scenario.join(", "),
        tour_time.as_secs_f64()
    );
    for lab in &labs {
        println!(
            "\nby process kind, {} services (idle; the load generator is a thread of the supervisor):\n",
            lab.services
        );
        println!("| kind | processes | VmRSS total | VmRSS mean | PSS total | idle CPU |");
        println!("|---|---|---|---|---|---|");
        for (name, k) in &lab.kinds {
            println!(
                "| {name} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2}% |",
                k.count,
                mib(k.rss_kib),
                mib(k.rss_kib) / k.count as f64,
                mib(k.pss_kib),
                k.cpu_seconds / lab.window_seconds * 100.0
            );
        }
    }
    Ok(())
}
