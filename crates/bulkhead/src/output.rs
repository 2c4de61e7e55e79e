//! Everything the binary prints goes through here: tables, JSON, progress.

use anyhow::Result;
use discover::ScanOutcome;
use model::report::table;
use model::{Fleet, Pinning, Severity};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Diagnostics shown under the scan table; `--json` has them all.
const DIAGNOSTICS_SHOWN: usize = 30;

pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

pub fn print_json(value: &impl Serialize) -> Result<()> {
    // Standard output flushes at every newline, and pretty JSON has one per
    // field: buffered, a 10,000-service scan is a few hundred writes, not millions.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// An impact report in the chosen format.
pub fn print_report(report: &model::ImpactReport, format: crate::args::Format) -> Result<()> {
    match format {
        crate::args::Format::Table => print(&model::report::render_table(report)),
        crate::args::Format::Json => print_json(report),
        crate::args::Format::Markdown => print(&model::report::render_markdown(report)),
    }
}

/// Whether the error is stdout closing under us (`bulkhead scan | head`): not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Scans a fleet with the progress line on stderr; a state that could not be saved is a warning.
pub fn scan(options: &discover::ScanOptions) -> Result<ScanOutcome> {
    let outcome = with_progress(|progress| discover::scan(options, progress))?;
    if let Some(e) = &outcome.state_error {
        eprintln!("warning: scan state not saved ({e}); the next scan reads every file again");
    }
    Ok(outcome)
}

/// Runs `work` while a progress line on stderr (when it is a terminal) counts files.
fn with_progress<T>(work: impl FnOnce(&discover::Progress) -> T) -> T {
    let progress = discover::Progress::default();
    if !std::io::stderr().is_terminal() {
        return work(&progress);
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let shown = &progress;
    std::thread::scope(|s| {
        s.spawn(move || {
            while done_rx.recv_timeout(Duration::from_millis(100)).is_err() {
                eprint!(
                    "\rscanning: {} files, {} parsed",
                    shown.files(),
                    shown.parsed()
                );
            }
            eprint!("\r\x1b[2K");
        });
        let result = work(&progress);
        let _ = done_tx.send(());
        result
    })
}

/// `--json` output of `bulkhead scan`; the schema is documented in docs/scan-json.md.
#[derive(Debug, Serialize)]
pub struct ScanJson<'a> {
    schema: &'static str,
    root: String,
    stats: &'a discover::ScanStats,
    services: &'a [model::Service],
    routes: &'a [model::Route],
    repos: &'a [model::Repo],
    images: &'a [model::Image],
    hosts: &'a [model::Host],
    diagnostics: &'a [model::Diagnostic],
}

impl<'a> ScanJson<'a> {
    pub fn new(outcome: &'a ScanOutcome) -> Self {
        let fleet = &outcome.fleet;
        ScanJson {
            schema: "bulkhead.scan/v1",
            root: outcome.root.display().to_string(),
            stats: &outcome.stats,
            services: &fleet.services,
            routes: &fleet.routes,
            repos: &fleet.repos,
            images: &fleet.images,
            hosts: &fleet.hosts,
            diagnostics: &fleet.diagnostics,
        }
    }
}

/// The human view of a scan: one row per service, then the diagnostics.
pub fn scan_table(outcome: &ScanOutcome) -> String {
    let fleet = &outcome.fleet;
    let per_repo = diagnostics_per_repo(fleet);
    let rows: Vec<Vec<String>> = fleet
        .services
        .iter()
        .map(|s| {
            let templates: Vec<String> = s
                .templates
                .iter()
                .filter(|t| t.version.is_some())
                .map(|t| format!("{}@{}", t.source, t.version.as_deref().unwrap_or("")))
                .collect();
            vec![
                s.name.clone(),
                s.owner.as_ref().map_or("-".into(), ToString::to_string),
                s.tier.map_or("-".into(), |t| t.to_string()),
                s.base_images.first().map_or("-".into(), short_image),
                if templates.is_empty() {
                    "-".into()
                } else {
                    templates.join(" ")
                },
                format!(
                    "{}{}",
                    s.depends_on.len(),
                    if s.unresolved_dependencies.is_empty() {
                        String::new()
                    } else {
                        format!(" (+{} unresolved)", s.unresolved_dependencies.len())
                    }
                ),
                s.repo
                    .as_ref()
                    .and_then(|r| per_repo.get(r.as_str()))
                    .map_or("-".into(), ToString::to_string),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "SERVICE",
            "OWNER",
            "TIER",
            "BASE IMAGE",
            "TEMPLATE PINS",
            "DEPS",
            "DIAGS",
        ],
        &rows,
    );
    out.push('\n');
    out.push_str(&totals_line(outcome));
    if !fleet.diagnostics.is_empty() {
        out.push_str("\nDiagnostics:\n");
        for d in fleet.diagnostics.iter().take(DIAGNOSTICS_SHOWN) {
            out.push_str(&format!("  {d}\n"));
        }
        if fleet.diagnostics.len() > DIAGNOSTICS_SHOWN {
            out.push_str(&format!(
                "  ... and {} more (bulkhead scan --json lists them all)\n",
                fleet.diagnostics.len() - DIAGNOSTICS_SHOWN
            ));
        }
    }
    out
}

fn totals_line(outcome: &ScanOutcome) -> String {
    let fleet = &outcome.fleet;
    let count = |sev| {
        fleet
            .diagnostics
            .iter()
            .filter(|d| d.severity == sev)
            .count()
    };
    format!(
        "{} services, {} repositories, {} files ({} parsed, {} unchanged since the last scan), {} diagnostics ({} errors, {} warnings)\n",
        fleet.services.len(),
        outcome.stats.repos,
        outcome.stats.files_considered,
        outcome.stats.files_parsed,
        outcome.stats.files_from_cache,
        fleet.diagnostics.len(),
        count(Severity::Error),
        count(Severity::Warning),
    )
}

/// A fleet-wide summary: counts, image pinning, template versions, owners.
pub fn fleet_summary(outcome: &ScanOutcome) -> String {
    let fleet = &outcome.fleet;
    let mut out = totals_line(outcome);
    let mut pinning: BTreeMap<Pinning, usize> = BTreeMap::new();
    for s in &fleet.services {
        for b in &s.base_images {
            *pinning.entry(b.pinning()).or_default() += 1;
        }
    }
    out.push_str("\nBase images by pinning: ");
    out.push_str(
        &pinning
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    for s in &fleet.services {
        for t in s
            .templates
            .iter()
            .filter(|t| t.version.is_some() && t.source.contains("ci-templates"))
        {
            *versions
                .entry(
                    t.version
                        .clone()
                        .unwrap_or_default()
                        .trim_start_matches('v')
                        .to_string(),
                )
                .or_default() += 1;
        }
    }
    out.push_str("\nCI template pins: ");
    out.push_str(
        &versions
            .iter()
            .map(|(v, n)| format!("{v} x{n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for s in &fleet.services {
        *owners
            .entry(
                s.owner
                    .as_ref()
                    .map_or("(none)".into(), ToString::to_string),
            )
            .or_default() += 1;
    }
    out.push_str(&format!("\nOwners: {} teams", owners.len()));
    let public = fleet
        .services
        .iter()
        .filter(|s| s.public_routes().next().is_some())
        .count();
    out.push_str(&format!("\nServices with public routes: {public}\n"));
    out
}

/// The service with the most transitive callers: the most instructive impact question.
pub fn most_called_service(fleet: &Fleet) -> Option<String> {
    fleet
        .services
        .iter()
        .max_by_key(|s| {
            (
                fleet.transitive_callers(&[s.name.as_str()]).len(),
                std::cmp::Reverse(s.name.clone()),
            )
        })
        .map(|s| s.name.clone())
}

/// How many diagnostics are about files inside each repository (the deepest
/// one holding the file). Each diagnostic looks up its path's folders, deepest
/// first, so the cost grows with the diagnostics, not diagnostics times repositories.
fn diagnostics_per_repo(fleet: &Fleet) -> BTreeMap<&str, usize> {
    let repos: HashSet<&str> = fleet.repos.iter().map(|r| r.path.as_str()).collect();
    let mut counts = BTreeMap::new();
    for d in &fleet.diagnostics {
        let repo = d
            .path
            .rmatch_indices('/')
            .find_map(|(slash, _)| repos.get(&d.path[..slash]));
        if let Some(repo) = repo {
            *counts.entry(*repo).or_default() += 1;
        }
    }
    counts
}

fn short_image(image: &model::ImageRef) -> String {
    let full = image.familiar();
    match full.split_once("@sha256:") {
        Some((name, hex)) => format!("{name}@sha256:{}…", &hex[..hex.len().min(12)]),
        None => full,
    }
}

/// A temporary folder removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::diagnostics_per_repo;
    use model::{Diagnostic, Fleet, Repo};
    use std::collections::BTreeMap;

    #[test]
    fn diagnostics_count_under_the_deepest_repository_holding_their_file() {
        let repo = |path: &str| Repo {
            path: path.into(),
            git: true,
            head: None,
            remote: None,
        };
        let paths = [
            "a/Dockerfile",
            "a/deploy/x.yaml",
            "a/nested/Dockerfile",
            "a/nested/deep/ci.yml",
            "ab/Dockerfile",
            "a",
            "top.yaml",
            "b/c/d.yaml",
            "b/Dockerfile",
        ];
        let fleet = Fleet {
            repos: ["", "a", "a/nested", "ab", "b/c"].map(repo).to_vec(),
            diagnostics: paths
                .iter()
                .map(|p| Diagnostic::warning(*p, None, "x"))
                .collect(),
            ..Fleet::default()
        };
        let expected: BTreeMap<&str, usize> =
            [("a", 2), ("a/nested", 2), ("ab", 1), ("b/c", 1)].into();
        assert_eq!(diagnostics_per_repo(&fleet), expected);
    }
}
