//! The resident fleet graph: the fleet scanned once, kept in memory, and
//! refreshed from file change events (inotify through `notify`), walking
//! again only the repositories that changed.

use crate::pages::template_check::Checked;
use crate::web::Fail;
use discover::{Progress, Resident, ScanOptions, ScanOutcome};
use model::Fleet;
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// Events arriving within this long of the first are handled together:
/// an editor's save or a checkout is many events.
const SETTLE: Duration = Duration::from_millis(25);

/// Folders whose changes never matter to the fleet graph, and are not watched.
const UNWATCHED: [&str; 3] = [".git", "node_modules", "vendor"];

/// One version of the fleet, as the pages and the API read it.
#[derive(Debug)]
pub struct Graph {
    /// Counts up by one per refresh.
    pub generation: u64,
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub config: discover::Config,
    pub fleet: Fleet,
    pub stats: discover::ScanStats,
    pub inputs: images::Inputs,
    /// Service name -> index in `fleet.services`.
    pub index: HashMap<String, usize>,
    /// Service index -> indexes of the services that call it directly.
    pub callers: Vec<Vec<usize>>,
    /// Milliseconds the scan or refresh that made this graph took.
    pub load_ms: f64,
    /// When this graph was made (Unix ms).
    pub loaded_at_ms: i64,
    /// Computed on first use: the built-in policies over every service.
    pub policy: OnceLock<Result<policy::Outcome, String>>,
    /// CVE answers asked of this graph, by id.
    cves: Mutex<HashMap<String, Arc<crate::pages::CveEntry>>>,
    /// Template release checks of this graph, by release, wave size and soak
    /// in seconds: a check reads the templates repository with git and
    /// checks every app, so it is done once per fleet version.
    template_checks: Mutex<BTreeMap<(String, usize, u64), Arc<Checked>>>,
}

impl Graph {
    fn new(outcome: ScanOutcome, generation: u64, load_ms: f64) -> Graph {
        let inputs = discover::load_image_inputs(&outcome);
        let fleet = outcome.fleet;
        let index: HashMap<String, usize> = fleet
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let mut callers = vec![Vec::new(); fleet.services.len()];
        for (i, s) in fleet.services.iter().enumerate() {
            for dep in &s.depends_on {
                if let Some(&j) = index.get(dep) {
                    callers[j].push(i);
                }
            }
        }
        Graph {
            generation,
            root: outcome.root,
            state_dir: outcome.state_dir.path().to_path_buf(),
            config: outcome.config,
            fleet,
            stats: outcome.stats,
            inputs,
            index,
            callers,
            load_ms,
            loaded_at_ms: clock::now_ms(),
            policy: OnceLock::new(),
            cves: Mutex::new(HashMap::new()),
            template_checks: Mutex::new(BTreeMap::new()),
        }
    }

    /// The check of a template release with these plan options, made by
    /// `make` the first time it is asked of this graph.
    ///
    /// # Errors
    /// What `make` returns; a failed check is not kept.
    pub fn template_check(
        &self,
        (version, options): (&str, &templates::PlanOptions),
        make: impl FnOnce() -> Result<Checked, Fail>,
    ) -> Result<Arc<Checked>, Fail> {
        let key = (
            version.to_string(),
            options.wave_size,
            options.soak.as_secs(),
        );
        let lock = || {
            self.template_checks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(found) = lock().get(&key) {
            return Ok(found.clone());
        }
        let checked = Arc::new(make()?);
        lock().insert(key, checked.clone());
        Ok(checked)
    }

    /// The entry for a CVE, made by `make` the first time it is asked of
    /// this graph (`None`: nothing to keep, asked again next time).
    pub fn cve(
        &self,
        id: &str,
        make: impl FnOnce(&str) -> Option<crate::pages::CveEntry>,
    ) -> Option<Arc<crate::pages::CveEntry>> {
        let lock = || {
            self.cves
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(entry) = lock().get(id) {
            return Some(entry.clone());
        }
        let entry = Arc::new(make(id)?);
        let mut cves = lock();
        // A bound on what one graph keeps: ids asked are few, but anyone may ask.
        if cves.len() >= 64 {
            cves.clear();
        }
        cves.insert(id.to_string(), entry.clone());
        Some(entry)
    }

    pub fn service(&self, name: &str) -> Option<&model::Service> {
        self.index.get(name).map(|&i| &self.fleet.services[i])
    }

    pub fn query(&self) -> images::CveQuery<'_> {
        images::CveQuery {
            fleet: &self.fleet,
            catalog: &self.inputs.catalog,
            running: &self.inputs.running,
        }
    }

    /// The built-in policy bundle's findings over every service, computed once per graph.
    pub fn policy(&self) -> &Result<policy::Outcome, String> {
        self.policy.get_or_init(|| {
            let config = policy::BundleConfig {
                approved_base_prefixes: self.config.images.approved_registries.clone(),
                ..policy::BundleConfig::default()
            };
            let mut policies = policy::Policies::new()
                .with_builtin(&config)
                .map_err(|e| e.to_string())?;
            let mut outcome = policy::Outcome::default();
            for service in &self.fleet.services {
                outcome.extend(policies.check_service(&self.fleet, service));
            }
            policy::sort_findings(&mut outcome.findings);
            Ok(outcome)
        })
    }
}

/// The current graph, swapped whole on each refresh.
#[derive(Debug)]
pub struct Current {
    graph: RwLock<Arc<Graph>>,
    /// The last refresh that failed (an invalid bulkhead.toml), until one succeeds.
    pub error: RwLock<Option<String>>,
}

impl Current {
    pub fn get(&self) -> Arc<Graph> {
        self.graph
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Swaps in a new graph, then computes its policy findings in the
    /// background, so the first request for them does not wait. The old
    /// graph is freed after the lock is released: freeing a 10,000-service
    /// fleet takes long enough that requests would queue behind it.
    fn set(&self, graph: Graph) {
        let graph = Arc::new(graph);
        let old = std::mem::replace(
            &mut *self
                .graph
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            graph.clone(),
        );
        warm(graph);
        drop(old);
    }
}

/// Computes a graph's policy findings, then the check of each template
/// release with the default plan options, on a thread of their own: a first
/// visit to the templates page then finds its check done, as later ones do.
fn warm(graph: Arc<Graph>) {
    let _ = std::thread::Builder::new()
        .name("graph-warm".into())
        .spawn(move || {
            let _ = graph.policy();
            // A fleet without a templates repository has nothing to check;
            // the page says why when asked.
            let Ok(repo) = crate::pages::template_check::open(&graph) else {
                return;
            };
            let options = templates::PlanOptions::default();
            for release in repo.releases.all().iter().rev() {
                let _ = graph.template_check((&release.tag, &options), || {
                    repo.check(&graph, &release.tag, &options)
                });
            }
        });
}

/// Scans the fleet and starts watching it; the returned graph stays current
/// until the process ends.
///
/// # Errors
/// When the scan cannot run (a missing root, an invalid bulkhead.toml) or
/// the file watcher cannot start.
pub fn load(options: &ScanOptions) -> Result<Arc<Current>, String> {
    let started = Instant::now();
    let (resident, outcome) =
        Resident::load(options, &Progress::default()).map_err(|e| e.to_string())?;
    let graph = Graph::new(outcome, 1, started.elapsed().as_secs_f64() * 1000.0);
    let graph = Arc::new(graph);
    let current = Arc::new(Current {
        graph: RwLock::new(graph.clone()),
        error: RwLock::new(None),
    });
    warm(graph);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, EventKind::Access(_))
        {
            let _ = tx.send(event);
        }
    })
    .map_err(|e| format!("starting the file watcher: {e}"))?;
    let state_dir = resident.state_dir().path().to_path_buf();
    watch_tree(&mut watcher, resident.root(), &state_dir);
    let refreshed = current.clone();
    std::thread::Builder::new()
        .name("fleet-watch".into())
        .spawn(move || refresh_loop(resident, watcher, rx, &refreshed, &state_dir))
        .map_err(|e| format!("starting the refresh thread: {e}"))?;
    Ok(current)
}

/// Watches `dir` and every folder below it, one watch per folder, skipping
/// `.git`, `vendor/`, `node_modules/` and the state directory: a recursive
/// watch would also cover every `.git/objects` folder, hundreds per repository.
fn watch_tree(watcher: &mut notify::RecommendedWatcher, dir: &Path, state_dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if watcher.watch(&dir, RecursiveMode::NonRecursive).is_err() {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !UNWATCHED.iter().any(|u| entry.file_name() == *u) && path != state_dir {
                stack.push(path);
            }
        }
    }
}

/// Files the scan never reads (logs, databases, lab records, temporary
/// files): their changes cannot change the fleet, and a fleet folder that also
/// holds running programs' files changes them many times a second. Folders,
/// the scan's own files, `bulkhead.toml` and ignore files always count; so
/// does a vanished path without an extension, which may have been a folder.
fn cannot_change_the_fleet(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if scan::FileKind::of(name).is_some()
        || matches!(name, "bulkhead.toml" | ".gitignore" | ".ignore")
    {
        return false;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => !meta.is_dir(),
        Err(_) => name.contains('.'),
    }
}

fn refresh_loop(
    mut resident: Resident,
    mut watcher: notify::RecommendedWatcher,
    events: Receiver<notify::Event>,
    current: &Current,
    state_dir: &Path,
) {
    let mut generation = current.get().generation;
    loop {
        let Ok(first) = events.recv() else {
            return;
        };
        let started = Instant::now();
        let mut changed: BTreeMap<PathBuf, ()> = BTreeMap::new();
        let mut take = |event: notify::Event, watcher: &mut notify::RecommendedWatcher| {
            for path in event.paths {
                if path.starts_with(state_dir) || cannot_change_the_fleet(&path) {
                    continue;
                }
                // A new folder (a new repository, a checkout) is watched as it appears.
                if matches!(event.kind, EventKind::Create(_)) && path.is_dir() {
                    watch_tree(watcher, &path, state_dir);
                }
                changed.insert(path, ());
            }
        };
        take(first, &mut watcher);
        let deadline = Instant::now() + SETTLE;
        loop {
            match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(event) => take(event, &mut watcher),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let changed: Vec<PathBuf> = changed.into_keys().collect();
        match resident.refresh(&changed, &Progress::default()) {
            Ok(Some(outcome)) => {
                generation += 1;
                let parsed = outcome.stats.files_parsed;
                let load_ms = started.elapsed().as_secs_f64() * 1000.0;
                current.set(Graph::new(outcome, generation, load_ms));
                eprintln!(
                    "console: generation {generation}: {} changed path(s), {parsed} file(s) parsed, in {:.0} ms",
                    changed.len(),
                    started.elapsed().as_secs_f64() * 1000.0
                );
                *current
                    .error
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
            Ok(None) => {}
            Err(e) => {
                *current
                    .error
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cannot_change_the_fleet;

    #[test]
    fn only_changes_to_files_the_scan_reads_refresh_the_fleet() {
        let dir = test_support::TempDir::new("console-watch");
        std::fs::create_dir_all(dir.path().join("repo-a/deploy")).unwrap();
        for file in [
            "repo-a/Dockerfile",
            "repo-a/deploy/app.yaml",
            "lab.json",
            "logs.log",
        ] {
            std::fs::write(dir.path().join(file), "x").unwrap();
        }
        let cases = [
            ("repo-a/Dockerfile", false),
            ("repo-a/deploy/app.yaml", false),
            ("repo-a", false),
            ("bulkhead.toml", false),
            ("lab.json", true),
            ("logs.log", true),
            ("gone-folder", false),
            ("lab.json.tmp", true),
        ];
        for (path, ignored) in cases {
            assert_eq!(
                cannot_change_the_fleet(&dir.path().join(path)),
                ignored,
                "{path}"
            );
        }
    }
}
