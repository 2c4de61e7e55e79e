//! `lab tour`: the lab's non-interactive main job. It starts a lab (`lab up`
//! as a child process), waits until every process answers its health check,
//! runs the scenarios one after the other, stops the lab (`lab down`), and
//! gathers one report. A scenario that cannot run to the end counts as failed,
//! and the tour goes on with the next one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::scenario::{self, Lab, Report, Scenario};
use crate::up::{self, UpError};

/// What `lab tour` runs.
#[derive(Debug, Clone)]
pub struct TourSpec {
    pub dir: PathBuf,
    /// The `bulkhead` executable: `lab up` and the scenarios' commands.
    pub exe: PathBuf,
    /// Arguments of `lab up` besides `--dir` (size, seed, listen, rate).
    pub up_args: Vec<String>,
    pub scenarios: Vec<Scenario>,
    pub gate_interval: Duration,
    /// How long the lab may take to become healthy.
    pub ready_timeout: Duration,
}

/// Why the tour could not run its scenarios at all.
#[derive(Debug, thiserror::Error)]
pub enum TourError {
    #[error("starting `bulkhead lab up`: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("`bulkhead lab up --dir {}` exited ({status}) before the lab was ready; its messages are above", dir.display())]
    UpExited {
        dir: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("the lab in {} was not healthy within {timeout:?}: {unhealthy}", dir.display())]
    NotReady {
        dir: PathBuf,
        timeout: Duration,
        unhealthy: String,
    },
    #[error(transparent)]
    Lab(#[from] UpError),
}

/// One scenario's outcome in the tour.
#[derive(Debug, Clone, Serialize)]
pub struct TourStep {
    pub scenario: Scenario,
    pub passed: bool,
    pub seconds: f64,
    /// Why it could not run to the end, when it could not.
    pub error: Option<String>,
    pub report: Option<Report>,
}

/// The tour's one report.
#[derive(Debug, Clone, Serialize)]
pub struct TourReport {
    pub passed: bool,
    pub dir: PathBuf,
    /// From `lab up` to every health check green.
    pub ready_seconds: f64,
    pub seconds: f64,
    pub processes: usize,
    pub scenarios: Vec<TourStep>,
    /// Recorded pids still alive after the lab stopped (none, when all went well).
    pub survivors: Vec<u32>,
}

/// The running `lab up`; dropping it stops the lab and waits for it.
struct Running {
    child: Child,
    dir: PathBuf,
}

impl Running {
    /// `lab down`: the supervisor stops every child; returns pids that outlived it.
    fn stop(&mut self) -> Vec<u32> {
        let recorded = recorded_pids(&self.dir);
        let _ = up::down(&self.dir, Duration::from_secs(30));
        let _ = self.child.wait();
        recorded.into_iter().filter(|&pid| up::alive(pid)).collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

fn recorded_pids(dir: &Path) -> Vec<u32> {
    up::read_record(dir)
        .ok()
        .and_then(|r| {
            r["processes"].as_array().map(|ps| {
                ps.iter()
                    .filter_map(|p| p["pid"].as_u64())
                    .filter_map(|pid| u32::try_from(pid).ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn secs(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 10.0).round() / 10.0
}

/// Runs the tour; `progress` gets one line as each stage starts and ends.
///
/// # Errors
/// The lab could not start or did not become healthy in time (it is stopped).
pub fn run(spec: &TourSpec, progress: &mut dyn FnMut(&str)) -> Result<TourReport, TourError> {
    let started = Instant::now();
    let child = Command::new(&spec.exe)
        .args(["lab", "up", "--dir"])
        .arg(&spec.dir)
        .args(&spec.up_args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(TourError::Spawn)?;
    let mut lab_up = Running {
        child,
        dir: spec.dir.clone(),
    };
    let processes = wait_ready(spec, &mut lab_up)?;
    let ready_seconds = secs(started);
    progress(&format!(
        "tour: the lab in {} is ready: {processes} processes healthy in {ready_seconds:.1} s",
        spec.dir.display()
    ));

    let mut steps = Vec::new();
    for &name in &spec.scenarios {
        progress(&format!("tour: scenario {name}..."));
        let began = Instant::now();
        let outcome = Lab::open(&spec.dir, &spec.exe).and_then(|mut lab| {
            lab.gate_interval = spec.gate_interval;
            scenario::run(name, &mut lab)
        });
        let step = match outcome {
            Ok(report) => TourStep {
                scenario: name,
                passed: report.passed,
                seconds: report.seconds,
                error: None,
                report: Some(report),
            },
            Err(e) => TourStep {
                scenario: name,
                passed: false,
                seconds: secs(began),
                error: Some(e.to_string()),
                report: None,
            },
        };
        progress(&format!(
            "tour: scenario {name} {} in {:.1} s",
            if step.passed { "passed" } else { "FAILED" },
            step.seconds
        ));
        steps.push(step);
    }
    let survivors = lab_up.stop();
    progress("tour: the lab is stopped");
    Ok(TourReport {
        passed: !steps.is_empty() && steps.iter().all(|s| s.passed) && survivors.is_empty(),
        dir: spec.dir.clone(),
        ready_seconds,
        seconds: secs(started),
        processes,
        scenarios: steps,
        survivors,
    })
}

/// Polls the lab's status until every recorded process answers its health check.
fn wait_ready(spec: &TourSpec, lab_up: &mut Running) -> Result<usize, TourError> {
    let deadline = Instant::now() + spec.ready_timeout;
    let mut unhealthy = String::from("no lab.json yet");
    loop {
        if let Ok(Some(status)) = lab_up.child.try_wait() {
            return Err(TourError::UpExited {
                dir: spec.dir.clone(),
                status,
            });
        }
        if let Ok(status) = up::status(&spec.dir)
            && status["state"] == "running"
            && let Some(procs) = status["processes"].as_array()
        {
            let sick: Vec<String> = procs
                .iter()
                .filter(|p| p["healthy"] != true)
                .map(|p| format!("{} ({})", p["name"].as_str().unwrap_or("?"), p["health"]))
                .collect();
            if sick.is_empty() && !procs.is_empty() {
                return Ok(procs.len());
            }
            unhealthy = sick.join(", ");
        }
        if Instant::now() >= deadline {
            lab_up.stop();
            return Err(TourError::NotReady {
                dir: spec.dir.clone(),
                timeout: spec.ready_timeout,
                unhealthy,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl TourReport {
    /// The report as text: a line per scenario, then each one's four answers.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "lab tour: {} ({} of {} scenarios passed, {:.1} s; lab ready in {:.1} s with {} processes)\n\n",
            if self.passed { "PASSED" } else { "FAILED" },
            self.scenarios.iter().filter(|s| s.passed).count(),
            self.scenarios.len(),
            self.seconds,
            self.ready_seconds,
            self.processes
        );
        for s in &self.scenarios {
            let _ = writeln!(
                out,
                "  {} {:<13} {:>6.1} s  {}",
                if s.passed { "ok  " } else { "FAIL" },
                s.scenario.name(),
                s.seconds,
                s.scenario.question()
            );
        }
        if !self.survivors.is_empty() {
            let _ = writeln!(
                out,
                "\nprocesses still alive after the lab stopped: {:?}",
                self.survivors
            );
        }
        for s in &self.scenarios {
            let _ = writeln!(out, "\n== {}: {}", s.scenario.name(), s.scenario.question());
            if let Some(e) = &s.error {
                let _ = writeln!(out, "  could not run: {e}");
            }
            let Some(report) = &s.report else { continue };
            let answers = [
                ("What breaks", &report.answers.what_breaks),
                ("Who is impacted", &report.answers.who_is_impacted),
                (
                    "How fast we roll back",
                    &report.answers.how_fast_we_roll_back,
                ),
                ("How we monitor it", &report.answers.how_we_monitor),
            ];
            for (title, lines) in answers {
                let _ = writeln!(out, "{title}");
                for line in lines {
                    let _ = writeln!(out, "  - {line}");
                }
            }
            for c in report.checks.iter().filter(|c| !c.ok) {
                let _ = writeln!(out, "  FAIL {}: {}", c.name, c.detail);
            }
        }
        out
    }
}
