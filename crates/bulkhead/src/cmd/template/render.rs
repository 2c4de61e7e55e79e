//! Tables and Markdown for `bulkhead template` (JSON is the types themselves).

use model::report::table;
use std::fmt::Write as _;
use templates::adoption::AdoptionReport;
use templates::{AppCheck, Bump, FleetCheck, InterfaceChange};

/// The verdict under a diff.
#[derive(Debug)]
pub struct DiffVerdict<'a> {
    pub old: &'a str,
    pub new: &'a str,
    pub required: Bump,
    /// `None` when NEW is no release.
    pub actual: Option<Bump>,
    /// NEW is a later release than OLD.
    pub newer: bool,
    pub under: bool,
    pub suggested: Option<&'a str>,
    pub moved: Vec<String>,
}

impl DiffVerdict<'_> {
    fn sentence(&self) -> String {
        let required = format!("required release step: {}", self.required);
        match (self.actual, self.newer) {
            (None, _) => match self.suggested {
                Some(next) => format!("{required}; {} is no release: tag it {next}", self.new),
                None => format!("{required}; {} is no release", self.new),
            },
            (Some(_), false) => format!(
                "{required}; {} is not a later release than {}: no step to judge",
                self.new, self.old
            ),
            (Some(actual), true) if self.under => format!(
                "{required}, but {} -> {} is a {actual} step: UNDER-BUMPED; release it as {} instead",
                self.old,
                self.new,
                self.suggested.unwrap_or("a bigger version")
            ),
            (Some(actual), true) => format!(
                "{required}; {} -> {} is a {actual} step: ok",
                self.old, self.new
            ),
        }
    }
}

fn at(change: &InterfaceChange) -> String {
    change
        .at
        .as_ref()
        .map_or_else(|| change.file.clone(), ToString::to_string)
}

pub fn diff_table(repo: &str, changes: &[InterfaceChange], verdict: &DiffVerdict<'_>) -> String {
    let mut out = format!(
        "{repo} {} -> {}: {} change(s)\n\n",
        verdict.old,
        verdict.new,
        changes.len()
    );
    if !changes.is_empty() {
        let rows: Vec<Vec<String>> = changes
            .iter()
            .map(|c| vec![c.severity.to_string(), at(c), c.reason.clone()])
            .collect();
        out.push_str(&table(&["SEVERITY", "WHERE", "CHANGE"], &rows));
        out.push('\n');
    }
    let _ = writeln!(out, "{}", verdict.sentence());
    for moved in &verdict.moved {
        let _ = writeln!(out, "MOVED TAG: {moved}");
    }
    out
}

pub fn diff_markdown(repo: &str, changes: &[InterfaceChange], verdict: &DiffVerdict<'_>) -> String {
    let mut out = format!(
        "## bulkhead template diff: {repo} {} -> {}\n\n",
        verdict.old, verdict.new
    );
    if changes.is_empty() {
        out.push_str("No interface change.\n\n");
    } else {
        out.push_str("| severity | where | change |\n|---|---|---|\n");
        for c in changes {
            let _ = writeln!(
                out,
                "| **{}** | `{}` | {} |",
                c.severity,
                at(c),
                md(&c.reason)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}", md(&verdict.sentence()));
    for moved in &verdict.moved {
        let _ = writeln!(out, "\n**Moved tag:** {}", md(moved));
    }
    out
}

fn owner(app: &AppCheck) -> String {
    app.owner.as_ref().map_or("-".into(), ToString::to_string)
}

fn tier(app: &AppCheck) -> String {
    app.tier.map_or("-".into(), |t| t.to_string())
}

pub fn check_table(check: &FleetCheck) -> String {
    let breaking: Vec<&AppCheck> = check.breaking().collect();
    let safe: Vec<&AppCheck> = check.safe().collect();
    let mut out = format!(
        "{} {}: {} app(s) would break, {} safe, {} not using the template\n",
        check.template,
        check.version,
        breaking.len(),
        safe.len(),
        check.not_using.len()
    );
    if !breaking.is_empty() {
        out.push_str("\nWould break:\n");
        let mut rows = Vec::new();
        for app in &breaking {
            for (i, p) in app.problems.iter().enumerate() {
                let first = i == 0;
                let cell = |s: String| if first { s } else { String::new() };
                rows.push(vec![
                    cell(app.service.clone()),
                    cell(owner(app)),
                    cell(tier(app)),
                    cell(app.current_versions().join(",")),
                    p.message.clone(),
                    p.at.to_string(),
                ]);
            }
        }
        out.push_str(&indent(&table(
            &["SERVICE", "OWNER", "TIER", "ON", "WHY", "WHERE"],
            &rows,
        )));
    }
    if !safe.is_empty() {
        out.push_str("\nSafe:\n");
        let rows: Vec<Vec<String>> = safe
            .iter()
            .map(|app| {
                vec![
                    app.service.clone(),
                    owner(app),
                    tier(app),
                    app.current_versions().join(","),
                ]
            })
            .collect();
        out.push_str(&indent(&table(&["SERVICE", "OWNER", "TIER", "ON"], &rows)));
    }
    out
}

pub fn check_markdown(check: &FleetCheck) -> String {
    let breaking: Vec<&AppCheck> = check.breaking().collect();
    let safe: Vec<&AppCheck> = check.safe().collect();
    let mut out = format!(
        "## bulkhead template check: {} {}\n\n{} app(s) would break, {} safe, {} not using the template.\n",
        check.template,
        check.version,
        breaking.len(),
        safe.len(),
        check.not_using.len()
    );
    if !breaking.is_empty() {
        out.push_str(
            "\n### Would break\n\n| service | owner | tier | on | why |\n|---|---|---|---|---|\n",
        );
        for app in &breaking {
            let why: Vec<String> = app
                .problems
                .iter()
                .map(|p| format!("{} (`{}`)", md(&p.message), p.at))
                .collect();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                app.service,
                md(&owner(app)),
                tier(app),
                app.current_versions().join(", "),
                why.join("<br>")
            );
        }
    }
    if !safe.is_empty() {
        let names: Vec<String> = safe.iter().map(|a| format!("`{}`", a.service)).collect();
        let _ = writeln!(out, "\n### Safe\n\n{}", names.join(", "));
    }
    out
}

/// What each representative covers, under the plan's impact report.
pub fn plan_coverage(plan: &templates::AdoptionPlan) -> String {
    let mut out = format!(
        "\nRepresentatives cover {} combination(s) of template file, input, value class and language:\n",
        plan.combinations
    );
    for app in plan
        .waves
        .iter()
        .flat_map(|w| &w.apps)
        .filter(|a| !a.covers.is_empty())
    {
        let _ = writeln!(out, "   {}: {}", app.service, app.covers.join("; "));
    }
    if !plan.blocked.is_empty() {
        let names: Vec<&str> = plan.blocked.iter().map(|a| a.service.as_str()).collect();
        let _ = writeln!(
            out,
            "Blocked until fixed ({}): {} (bulkhead template check {} says why)",
            names.len(),
            names.join(", "),
            plan.version
        );
    }
    if !plan.unpinned.is_empty() {
        let _ = writeln!(
            out,
            "Unpinned (pin {} by hand): {}",
            plan.version,
            plan.unpinned.join(", ")
        );
    }
    if !plan.already.is_empty() {
        let _ = writeln!(out, "Already on {}: {}", plan.version, plan.already.len());
    }
    out
}

pub fn adoption_table(report: &AdoptionReport) -> String {
    let mut out = format!(
        "{}: {} app(s); latest {}; supported lines: {} (window N-{})\n\n",
        report.template,
        report.apps,
        report.latest.as_deref().unwrap_or("none"),
        report.supported_lines.join(", "),
        report.window
    );
    let rows: Vec<Vec<String>> = report
        .versions
        .iter()
        .map(|v| {
            vec![
                v.version.clone(),
                v.apps.to_string(),
                match v.supported {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "not a release".into(),
                },
            ]
        })
        .collect();
    out.push_str(&table(&["VERSION", "APPS", "SUPPORTED"], &rows));
    if report.stragglers.is_empty() {
        out.push_str("\nNo stragglers.\n");
        return out;
    }
    let _ = writeln!(out, "\nStragglers ({}):", report.stragglers.len());
    let rows: Vec<Vec<String>> = report
        .stragglers
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                s.owner.as_ref().map_or("-".into(), ToString::to_string),
                s.tier.map_or("-".into(), |t| t.to_string()),
                s.versions.join(","),
                s.reason.clone(),
            ]
        })
        .collect();
    out.push_str(&indent(&table(
        &["SERVICE", "OWNER", "TIER", "ON", "WHY"],
        &rows,
    )));
    let owners: Vec<String> = report
        .straggler_owners
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o.owner
                    .as_ref()
                    .map_or("(no owner)".into(), ToString::to_string),
                o.stragglers
            )
        })
        .collect();
    let _ = writeln!(out, "By owner: {}", owners.join(", "));
    out
}

pub fn adoption_markdown(report: &AdoptionReport) -> String {
    let mut out = format!(
        "## bulkhead template adoption: {}\n\n{} app(s); latest `{}`; supported lines: {}.\n\n| version | apps | supported |\n|---|---|---|\n",
        report.template,
        report.apps,
        report.latest.as_deref().unwrap_or("none"),
        report.supported_lines.join(", ")
    );
    for v in &report.versions {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            v.version,
            v.apps,
            match v.supported {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "not a release",
            }
        );
    }
    if !report.stragglers.is_empty() {
        out.push_str("\n### Stragglers\n\n| service | owner | on | why |\n|---|---|---|---|\n");
        for s in &report.stragglers {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                s.service,
                s.owner.as_ref().map_or("—".into(), |o| md(&o.0)),
                s.versions.join(", "),
                md(&s.reason)
            );
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}

fn md(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
