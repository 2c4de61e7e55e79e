//! The change and its impact report: the four answers every change must have
//! before it ships, with their evidence, plus the plan that carries it out.
//!
//! Every change kind (template release, image update, CVE, service upgrade,
//! host patch) produces this one shape, rendered as a table for a terminal,
//! JSON for machines, or Markdown for a pull-request comment.

use crate::diagnostic::Provenance;
use crate::fleet::{Owner, Tier};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// What is being changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Change {
    /// A new version of a shared CI template.
    TemplateRelease {
        template: String,
        from: Option<String>,
        to: String,
    },
    /// A base or app image moves to another tag or digest.
    ImageUpdate { image: String, to: String },
    /// A vulnerability to remediate.
    Cve { id: String },
    /// One or more services are upgraded together.
    ServiceUpgrade {
        services: Vec<String>,
        to_version: Option<String>,
    },
    /// Hosts get package updates.
    HostPatch {
        hosts: Vec<String>,
        packages: Vec<String>,
    },
}

impl Change {
    /// A one-line title for the change.
    pub fn title(&self) -> String {
        match self {
            Change::TemplateRelease { template, from, to } => match from {
                Some(from) => format!("template {template} {from} -> {to}"),
                None => format!("template {template} -> {to}"),
            },
            Change::ImageUpdate { image, to } => format!("image {image} -> {to}"),
            Change::Cve { id } => format!("remediate {id}"),
            Change::ServiceUpgrade {
                services,
                to_version,
            } => {
                let to = to_version
                    .as_deref()
                    .map(|v| format!(" to {v}"))
                    .unwrap_or_default();
                format!("upgrade {}{to}", services.join(", "))
            }
            Change::HostPatch { hosts, packages } => {
                format!(
                    "patch {} host(s): {}",
                    hosts.len(),
                    if packages.is_empty() {
                        "all updates".to_string()
                    } else {
                        packages.join(", ")
                    }
                )
            }
        }
    }
}

/// One reason behind an answer, with where it was read when it came from a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub statement: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Provenance>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Breaking,
    Risky,
    Safe,
}

/// "What breaks?": one artefact or behaviour that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub subject: String,
    pub risk: Risk,
    pub summary: String,
    pub evidence: Vec<Evidence>,
}

/// Why a service is in the blast radius.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ImpactReason {
    /// The service itself is changed.
    Changed,
    /// It calls a changed service, `distance` hops away, through `via`.
    Calls { distance: u32, via: String },
    /// It runs or builds on the changed artefact.
    Uses { artefact: String },
}

/// "Who is impacted?": one service with its owner, tier and exposure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactedService {
    pub service: String,
    pub owner: Option<Owner>,
    pub tier: Option<Tier>,
    pub reason: ImpactReason,
    /// `host/path` of public routes that reach it.
    pub public_routes: Vec<String>,
    pub evidence: Vec<Evidence>,
}

/// "How fast can I roll back?"
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub action: String,
    /// The expected time to roll back, when it is known.
    pub expected_seconds: Option<f64>,
    /// Whether `expected_seconds` was measured (true) or estimated (false).
    pub measured: bool,
    pub evidence: Vec<Evidence>,
}

/// "How do I monitor impact?": one signal to watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub name: String,
    pub services: Vec<String>,
    /// What proves it is safe, such as `error rate < 1% over 5m`.
    pub threshold: String,
}

/// One step of a wave, with its own rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub target: String,
    pub action: String,
    pub rollback: String,
}

/// A group of steps done together, then checked by its gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    pub name: String,
    pub steps: Vec<Step>,
    /// What must hold before the next wave starts.
    pub gate: String,
}

/// Ordered waves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub waves: Vec<Wave>,
}

/// The answer to "if I change this, what happens?", the same shape for every change kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpactReport {
    pub change: Change,
    pub what_breaks: Vec<Finding>,
    pub who_is_impacted: Vec<ImpactedService>,
    pub rollback: Rollback,
    pub monitoring: Vec<Signal>,
    pub plan: Plan,
    /// Services the change provably does not reach.
    pub untouched: Vec<String>,
}

/// Renders the report for a terminal.
pub fn render_table(report: &ImpactReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Change: {}", report.change.title());
    let _ = writeln!(out, "\n1. What breaks?");
    if report.what_breaks.is_empty() {
        let _ = writeln!(out, "   nothing found");
    }
    for finding in &report.what_breaks {
        let _ = writeln!(
            out,
            "   [{}] {}: {}",
            risk_name(finding.risk),
            finding.subject,
            finding.summary
        );
        for e in &finding.evidence {
            let _ = writeln!(out, "       {}", evidence_line(e));
        }
    }
    let _ = writeln!(
        out,
        "\n2. Who is impacted? ({} service(s))",
        report.who_is_impacted.len()
    );
    let rows: Vec<Vec<String>> = report
        .who_is_impacted
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                s.owner.as_ref().map_or("-".into(), ToString::to_string),
                s.tier.map_or("-".into(), |t| t.to_string()),
                reason_text(&s.reason),
                if s.public_routes.is_empty() {
                    "-".into()
                } else {
                    s.public_routes.join(" ")
                },
            ]
        })
        .collect();
    out.push_str(&indent(
        &table(&["SERVICE", "OWNER", "TIER", "WHY", "PUBLIC ROUTES"], &rows),
        "   ",
    ));
    let _ = writeln!(out, "   untouched: {} service(s)", report.untouched.len());
    let _ = writeln!(out, "\n3. How fast can I roll back?");
    let _ = writeln!(
        out,
        "   {} ({})",
        report.rollback.action,
        seconds_text(&report.rollback)
    );
    for e in &report.rollback.evidence {
        let _ = writeln!(out, "       {}", evidence_line(e));
    }
    let _ = writeln!(out, "\n4. How do I monitor impact?");
    for signal in &report.monitoring {
        let _ = writeln!(
            out,
            "   {}: {} [{}]",
            signal.name,
            signal.threshold,
            signal.services.join(", ")
        );
    }
    if !report.plan.waves.is_empty() {
        let _ = writeln!(out, "\nPlan:");
        for wave in &report.plan.waves {
            let targets: Vec<&str> = wave.steps.iter().map(|s| s.target.as_str()).collect();
            let _ = writeln!(
                out,
                "   {}: {} — gate: {}",
                wave.name,
                targets.join(", "),
                wave.gate
            );
        }
    }
    out
}

/// Renders the report as Markdown for a pull-request comment.
pub fn render_markdown(report: &ImpactReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## bulkhead impact: {}\n", report.change.title());
    let _ = writeln!(out, "### 1. What breaks?\n");
    if report.what_breaks.is_empty() {
        let _ = writeln!(out, "Nothing found.\n");
    }
    for finding in &report.what_breaks {
        let _ = writeln!(
            out,
            "- **{}** `{}`: {}",
            risk_name(finding.risk),
            finding.subject,
            md_escape(&finding.summary)
        );
        for e in &finding.evidence {
            let _ = writeln!(out, "  - {}", md_escape(&evidence_line(e)));
        }
    }
    let _ = writeln!(
        out,
        "\n### 2. Who is impacted? ({} services)\n",
        report.who_is_impacted.len()
    );
    if !report.who_is_impacted.is_empty() {
        let _ = writeln!(
            out,
            "| service | owner | tier | why | public routes |\n|---|---|---|---|---|"
        );
        for s in &report.who_is_impacted {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                s.service,
                s.owner.as_ref().map_or("—".into(), |o| md_escape(&o.0)),
                s.tier.map_or("—".into(), |t| t.to_string()),
                md_escape(&reason_text(&s.reason)),
                if s.public_routes.is_empty() {
                    "—".into()
                } else {
                    s.public_routes
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            );
        }
    }
    let _ = writeln!(out, "\nUntouched: {} services.\n", report.untouched.len());
    let _ = writeln!(
        out,
        "### 3. How fast can I roll back?\n\n{} ({})\n",
        md_escape(&report.rollback.action),
        seconds_text(&report.rollback)
    );
    let _ = writeln!(out, "### 4. How do I monitor impact?\n");
    for signal in &report.monitoring {
        let _ = writeln!(
            out,
            "- {}: {} ({})",
            md_escape(&signal.name),
            md_escape(&signal.threshold),
            signal.services.join(", ")
        );
    }
    if !report.plan.waves.is_empty() {
        let _ = writeln!(out, "\n### Plan\n");
        for (i, wave) in report.plan.waves.iter().enumerate() {
            let targets: Vec<String> = wave
                .steps
                .iter()
                .map(|s| format!("`{}`", s.target))
                .collect();
            let _ = writeln!(
                out,
                "{}. **{}**: {} — gate: {}",
                i + 1,
                md_escape(&wave.name),
                targets.join(", "),
                md_escape(&wave.gate)
            );
        }
    }
    out
}

/// Lays out rows under headers in aligned columns, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

fn risk_name(risk: Risk) -> &'static str {
    match risk {
        Risk::Breaking => "breaking",
        Risk::Risky => "risky",
        Risk::Safe => "safe",
    }
}

fn reason_text(reason: &ImpactReason) -> String {
    match reason {
        ImpactReason::Changed => "changed".to_string(),
        ImpactReason::Calls { distance: 1, via } => format!("calls {via}"),
        ImpactReason::Calls { distance, via } => format!("calls {via} ({distance} hops)"),
        ImpactReason::Uses { artefact } => format!("uses {artefact}"),
    }
}

fn seconds_text(rollback: &Rollback) -> String {
    match (rollback.expected_seconds, rollback.measured) {
        (Some(s), true) => format!("measured {s:.3} s"),
        (Some(s), false) => format!("estimated {s:.0} s"),
        (None, _) => "time not known".to_string(),
    }
}

fn evidence_line(e: &Evidence) -> String {
    match &e.at {
        Some(at) => format!("{} ({at})", e.statement),
        None => e.statement.clone(),
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
