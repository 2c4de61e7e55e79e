//! Lab scenarios: each one carries a change out for real against a running lab,
//! answers the four questions (what breaks, who is impacted, how fast we roll
//! back, how we monitor it) with the evidence it measured, and checks its own
//! outcome against the fleet's ground truth.
//!
//! A scenario drives the lab the way a platform engineer would: it runs this
//! same `bulkhead` executable's commands as child processes ([`Lab::run`]) and
//! talks to the lab's processes over HTTP. Every command it ran is kept in the
//! report's steps, so the report doubles as a runbook.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::generate::GROUND_TRUTH;
use crate::up::{self, UpError};

/// The interval between a rollout gate's measurements, unless told otherwise.
pub const DEFAULT_GATE_INTERVAL: Duration = Duration::from_secs(2);

/// The scenarios, in the order `lab tour` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Cve,
    Pipeline,
    TenServices,
    Trace,
    Enforce,
    Patch,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Cve,
        Scenario::Pipeline,
        Scenario::TenServices,
        Scenario::Trace,
        Scenario::Enforce,
        Scenario::Patch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Cve => "cve",
            Scenario::Pipeline => "pipeline",
            Scenario::TenServices => "ten-services",
            Scenario::Trace => "trace",
            Scenario::Enforce => "enforce",
            Scenario::Patch => "patch",
        }
    }

    /// The question of the brief this scenario answers by doing it.
    pub fn question(self) -> &'static str {
        match self {
            Scenario::Cve => "A CVE is found in a base image. What do you do?",
            Scenario::Pipeline => {
                "A shared pipeline was updated. How do you prevent breaking 80 apps?"
            }
            Scenario::TenServices => "10 services were upgraded. How do you isolate the impact?",
            Scenario::Trace => "How do you trace a request across 6 services?",
            Scenario::Enforce => "How do you enforce image versions across the company?",
            Scenario::Patch => "How do you patch Linux hosts with rollback?",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|c| c.name()).collect();
                format!("unknown scenario {s:?}: one of {}", names.join(", "))
            })
    }
}

/// A step of a scenario that could not be carried out: `what`, and why.
pub(crate) fn failed(what: &str, detail: impl Into<String>) -> ScenarioError {
    ScenarioError::Failed {
        what: what.to_string(),
        detail: detail.into(),
    }
}

/// Why a scenario could not run to the end (a failed check is not an error:
/// it is recorded in the report, which then does not pass).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Lab(#[from] UpError),
    #[error(
        "the lab in {} is not running (state {state}): start it with `bulkhead lab up --dir {}`",
        dir.display(),
        dir.display()
    )]
    NotRunning { dir: PathBuf, state: String },
    #[error("`bulkhead {command}` could not be started: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`bulkhead {command}` exited {exit}: {stderr}")]
    Command {
        command: String,
        exit: i32,
        stderr: String,
    },
    #[error("`bulkhead {command}` printed no JSON: {detail}")]
    NotJson { command: String, detail: String },
    #[error("the lab has no {what}: {detail}")]
    Missing { what: String, detail: String },
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
}

/// A running lab, as a scenario sees it.
#[derive(Debug, Clone)]
pub struct Lab {
    pub dir: PathBuf,
    /// The `bulkhead` executable the scenario's commands run.
    pub exe: PathBuf,
    /// `DIR/lab.json` when the scenario started.
    pub record: Value,
    /// `DIR/ground-truth.json`.
    pub truth: Value,
    /// The interval between the measurements of a rollout gate.
    pub gate_interval: Duration,
}

impl Lab {
    /// The lab running in `dir`.
    ///
    /// # Errors
    /// No lab runs there, or its records are unreadable.
    pub fn open(dir: &Path, exe: &Path) -> Result<Self, ScenarioError> {
        let record = up::read_record(dir)?;
        let state = record["state"].as_str().unwrap_or("unknown");
        let supervisor = record["supervisor"]
            .as_u64()
            .and_then(|pid| u32::try_from(pid).ok());
        if state != "running" || !supervisor.is_some_and(up::alive) {
            return Err(ScenarioError::NotRunning {
                dir: dir.to_owned(),
                state: state.to_string(),
            });
        }
        let path = dir.join(GROUND_TRUTH);
        let truth = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .map_err(|detail| ScenarioError::Missing {
                what: GROUND_TRUTH.to_string(),
                detail,
            })?;
        Ok(Lab {
            dir: dir.to_owned(),
            exe: exe.to_owned(),
            record,
            truth,
            gate_interval: DEFAULT_GATE_INTERVAL,
        })
    }

    /// One of the addresses `lab up` printed (`ingress`, `gateway_admin`, ...).
    ///
    /// # Errors
    /// The lab does not run that part (for example Prometheus is not installed).
    pub fn address(&self, key: &str) -> Result<String, ScenarioError> {
        self.record["addresses"][key]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ScenarioError::Missing {
                what: key.replace('_', " "),
                detail: format!("lab.json names no address {key:?}"),
            })
    }

    /// Re-reads `DIR/lab.json`, for pids and versions that change while the scenario runs.
    ///
    /// # Errors
    /// As [`up::read_record`].
    pub fn refresh(&mut self) -> Result<(), ScenarioError> {
        self.record = up::read_record(&self.dir)?;
        Ok(())
    }

    /// Runs `bulkhead ARGS` in the lab's folder and records it as a step of the report,
    /// whatever its exit code.
    ///
    /// # Errors
    /// The executable cannot be started.
    pub fn run(&self, report: &mut Report, args: &[&str]) -> Result<Ran, ScenarioError> {
        let command = args.join(" ");
        let started = Instant::now();
        let output = Command::new(&self.exe)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|source| ScenarioError::Spawn {
                command: command.clone(),
                source,
            })?;
        let ran = Ran {
            command,
            exit: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        report.steps.push(Step {
            command: format!("bulkhead {}", ran.command),
            exit: ran.exit,
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        Ok(ran)
    }

    /// Runs `bulkhead ARGS`, which must exit 0 or 1 (an answer), and parses its JSON output.
    ///
    /// # Errors
    /// It could not run (exit 2 or worse), or printed no JSON.
    pub fn run_json(&self, report: &mut Report, args: &[&str]) -> Result<Value, ScenarioError> {
        let ran = self.run(report, args)?;
        if ran.exit != 0 && ran.exit != 1 {
            return Err(ran.failed());
        }
        ran.json()
    }
}

/// What one command printed.
#[derive(Debug, Clone)]
pub struct Ran {
    pub command: String,
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Its standard output as JSON.
    ///
    /// # Errors
    /// The output is not JSON.
    pub fn json(&self) -> Result<Value, ScenarioError> {
        serde_json::from_str(&self.stdout).map_err(|e| ScenarioError::NotJson {
            command: self.command.clone(),
            detail: e.to_string(),
        })
    }

    /// The error that says this command failed.
    pub fn failed(&self) -> ScenarioError {
        ScenarioError::Command {
            command: self.command.clone(),
            exit: self.exit,
            stderr: self.stderr.trim().to_string(),
        }
    }
}

/// The four answers to "if I change this, how do I make sure it does not break the fleet?".
#[derive(Debug, Clone, Default, Serialize)]
pub struct Answers {
    pub what_breaks: Vec<String>,
    pub who_is_impacted: Vec<String>,
    pub how_fast_we_roll_back: Vec<String>,
    pub how_we_monitor: Vec<String>,
}

/// One command the scenario ran.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub command: String,
    pub exit: i32,
    pub ms: u64,
}

/// One fact the scenario checked against the ground truth or the live lab.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// What a scenario did, answered, measured and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub question: &'static str,
    pub passed: bool,
    pub seconds: f64,
    pub answers: Answers,
    /// Measured facts, by name (counts, timings, ids, names).
    pub evidence: BTreeMap<String, Value>,
    pub checks: Vec<Check>,
    pub steps: Vec<Step>,
}

impl Report {
    pub fn new(scenario: Scenario) -> Self {
        Report {
            scenario,
            question: scenario.question(),
            passed: false,
            seconds: 0.0,
            answers: Answers::default(),
            evidence: BTreeMap::new(),
            checks: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// Records a check; the report passes only when every check holds.
    pub fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            ok,
            detail: detail.into(),
        });
    }

    pub fn evidence(&mut self, name: &str, value: impl Serialize) {
        self.evidence.insert(
            name.to_string(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
    }

    /// The report as text: the question, the four answers, the evidence and the checks.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "scenario {}: {}\n{}\n",
            self.scenario,
            if self.passed { "PASSED" } else { "FAILED" },
            self.question
        );
        let answers = [
            ("What breaks", &self.answers.what_breaks),
            ("Who is impacted", &self.answers.who_is_impacted),
            ("How fast we roll back", &self.answers.how_fast_we_roll_back),
            ("How we monitor it", &self.answers.how_we_monitor),
        ];
        for (title, lines) in answers {
            let _ = writeln!(out, "\n{title}");
            for line in lines {
                let _ = writeln!(out, "  - {line}");
            }
        }
        let _ = writeln!(out, "\nEvidence");
        for (name, value) in &self.evidence {
            let _ = writeln!(out, "  {name}: {value}");
        }
        let _ = writeln!(out, "\nChecks");
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "  {mark} {}: {}", c.name, c.detail);
        }
        let _ = writeln!(out, "\nSteps ({:.1} s)", self.seconds);
        for s in &self.steps {
            let _ = writeln!(out, "  {} -> exit {} ({} ms)", s.command, s.exit, s.ms);
        }
        out
    }
}

/// Runs one scenario against the lab and seals its report.
///
/// # Errors
/// The scenario could not run to the end; checks that fail are in the report instead.
pub fn run(scenario: Scenario, lab: &mut Lab) -> Result<Report, ScenarioError> {
    let started = Instant::now();
    let mut report = Report::new(scenario);
    match scenario {
        Scenario::Cve => cve::run(lab, &mut report)?,
        Scenario::Pipeline => pipeline::run(lab, &mut report)?,
        Scenario::TenServices => ten_services::run(lab, &mut report)?,
        Scenario::Trace => trace::run(lab, &mut report)?,
        Scenario::Enforce => enforce::run(lab, &mut report)?,
        Scenario::Patch => patch::run(lab, &mut report)?,
    }
    report.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    report.passed = !report.checks.is_empty() && report.checks.iter().all(|c| c.ok);
    Ok(report)
}

mod cve;
mod enforce;
mod live;
mod patch;
mod pipeline;
mod ten_services;
mod trace;
