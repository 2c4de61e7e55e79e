//! The state directory: [`StateDir`] names every file bulkhead keeps between
//! runs, and this module reads and writes the scan cache, the per-file facts
//! that make rescans cheap. Later commands (impact, cve, template, policy) scan
//! again through it, so they see the fleet as it is now at the cost of a stat
//! per file.
//!
//! The scan cache is binary ([`model::binary`]): a header naming the format
//! and the bulkhead version that wrote it, then every file's path, size,
//! mtime and facts, sorted by path. Every scan writes it, `--no-cache` too, so
//! it must be cheap to write: at 10,000 services it is 20 MB where the JSON it
//! replaced (`scan-cache.json`, format 3) was 34 MB, and encoding it takes a
//! fifth of the instructions serialising the JSON took.
//!
//! The cache is written to a temporary name and renamed into place, so a killed
//! scan leaves the previous cache intact rather than half a file. It is derived
//! data: it is not fsynced, and a cache that does not decode whole, or was
//! written by another format or version, is ignored.

use model::Facts;
use model::binary::{Binary, Decoder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The state directory's name under the fleet root.
pub const DEFAULT_DIR: &str = ".bulkhead";
/// Bumped whenever the cached facts change shape or meaning, so an old cache is ignored rather than misread.
/// 2: template pins carry `uses` (jobs, stages, outputs and secrets relied on).
/// 3: files are classified by content as well as name (a report saved as `dockerfile.json` holds no facts).
/// 4: binary, in `scan-cache.bin`.
const CACHE_FORMAT: u32 = 4;
/// The scan cache's first bytes, before its format number.
const CACHE_MAGIC: &[u8] = b"bulkhead scan cache\n";
/// Where formats 1 to 3 kept the scan cache, as JSON: removed when the cache is saved.
const LEGACY_SCAN_CACHE: &str = "scan-cache.json";

/// Whether losing a state file loses anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Derived from the fleet or the hosts and rebuilt when missing, corrupt or
    /// of another format: deleting it costs time, never an answer.
    Cache,
    /// The only copy of what happened (a release tag's first commit, a saved
    /// plan, a run's steps): deleting it loses history a later command needs.
    Record,
}

/// Every file and folder bulkhead keeps in a state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFile {
    /// `scan-cache.bin`: the facts of each file, reused while its size and mtime are unchanged.
    ScanCache,
    /// `policy-cache.json`: `policy check` outcomes, keyed by a hash of the policies and of each input.
    PolicyCache,
    /// `template-tags.json`: the commit each templates release tag pointed at when first read.
    TemplateTags,
    /// `template-plan-VERSION.json`: the saved adoption plan of a templates release.
    TemplatePlans,
    /// `patch.db`: host patching runs, every step recorded before it runs (SQLite, WAL).
    PatchDb,
    /// `runs/RUN/HOST/`: the .debs saved before a host's upgrade, for its rollback.
    PatchRuns,
    /// `facts/HOST/`: each host's work folder while `patch plan` asks what it would upgrade.
    PatchFacts,
    /// `rollouts.db`: rollouts, every transition recorded before it is acted on (SQLite, WAL).
    RolloutsDb,
}

impl StateFile {
    /// All of them, in the order `docs` and `ARCHITECTURE.md` list them.
    pub const ALL: [StateFile; 8] = [
        StateFile::ScanCache,
        StateFile::PolicyCache,
        StateFile::TemplateTags,
        StateFile::TemplatePlans,
        StateFile::PatchDb,
        StateFile::PatchRuns,
        StateFile::PatchFacts,
        StateFile::RolloutsDb,
    ];

    /// The name in the state directory (for template plans, the prefix of each plan's name).
    pub fn name(self) -> &'static str {
        match self {
            StateFile::ScanCache => "scan-cache.bin",
            StateFile::PolicyCache => "policy-cache.json",
            StateFile::TemplateTags => "template-tags.json",
            StateFile::TemplatePlans => "template-plan-",
            StateFile::PatchDb => "patch.db",
            StateFile::PatchRuns => "runs",
            StateFile::PatchFacts => "facts",
            StateFile::RolloutsDb => "rollouts.db",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            StateFile::ScanCache | StateFile::PolicyCache | StateFile::PatchFacts => Kind::Cache,
            StateFile::TemplateTags
            | StateFile::TemplatePlans
            | StateFile::PatchDb
            | StateFile::PatchRuns
            | StateFile::RolloutsDb => Kind::Record,
        }
    }
}

/// A fleet's state directory, resolved one way for every command: the
/// `--state DIR` given, else `.bulkhead/` at the fleet root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir(PathBuf);

impl StateDir {
    /// `given`, or `DEFAULT_DIR` under `fleet_root`.
    pub fn resolve(fleet_root: &Path, given: Option<&Path>) -> StateDir {
        StateDir(given.map_or_else(|| fleet_root.join(DEFAULT_DIR), Path::to_path_buf))
    }

    /// The folder itself: the SQLite state databases are opened by folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Where `file` lives (for template plans, use [`StateDir::template_plan`]).
    pub fn file(&self, file: StateFile) -> PathBuf {
        self.0.join(file.name())
    }

    /// The saved adoption plan of one templates release.
    pub fn template_plan(&self, version: &str) -> PathBuf {
        let safe: String = version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.0
            .join(format!("{}{safe}.json", StateFile::TemplatePlans.name()))
    }
}

/// What a previous scan learned from each file.
#[derive(Debug, Default)]
pub struct Cache {
    pub(crate) entries: BTreeMap<String, CacheEntry>,
}

impl Cache {
    /// A cache of these entries.
    pub(crate) fn with_entries(entries: BTreeMap<String, CacheEntry>) -> Self {
        Cache { entries }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub size: u64,
    pub mtime_ns: u128,
    pub facts: Facts,
}

impl Binary for CacheEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        self.size.encode(out);
        self.mtime_ns.encode(out);
        self.facts.encode(out);
    }
    fn decode(input: &mut Decoder<'_>) -> Option<Self> {
        Some(CacheEntry {
            size: u64::decode(input)?,
            mtime_ns: u128::decode(input)?,
            facts: Facts::decode(input)?,
        })
    }
}

/// Loads the cache; a missing, unreadable or outdated cache is an empty one.
pub fn load_cache(dir: &Path) -> Cache {
    std::fs::read(dir.join(StateFile::ScanCache.name()))
        .ok()
        .and_then(|bytes| decode(&bytes))
        .map(Cache::with_entries)
        .unwrap_or_default()
}

/// The scan cache's bytes for these entries, in two parts to write one after
/// the other: each half of the entries is encoded on a thread of its own, as
/// a one-shot scan waits for the encoding before it builds the graph.
pub(crate) fn encode(entries: &BTreeMap<String, CacheEntry>) -> [Vec<u8>; 2] {
    let encode_all = |part: &mut Vec<u8>,
                      half: &mut dyn Iterator<Item = (&String, &CacheEntry)>| {
        for (path, entry) in half {
            path.encode(part);
            entry.encode(part);
        }
    };
    let half = entries.len() / 2;
    std::thread::scope(|s| {
        let second = s.spawn(|| {
            let mut part = Vec::new();
            encode_all(&mut part, &mut entries.iter().skip(half));
            part
        });
        let mut first = Vec::new();
        first.extend_from_slice(CACHE_MAGIC);
        CACHE_FORMAT.encode(&mut first);
        env!("CARGO_PKG_VERSION").to_string().encode(&mut first);
        // As `BTreeMap::encode` writes a map: its length, then each key and value.
        (entries.len() as u64).encode(&mut first);
        encode_all(&mut first, &mut entries.iter().take(half));
        let second = second
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        [first, second]
    })
}

/// The entries of a scan cache's bytes; `None` unless this format and version wrote them, whole.
pub(crate) fn decode(bytes: &[u8]) -> Option<BTreeMap<String, CacheEntry>> {
    let mut input = Decoder::new(bytes);
    if input.take(CACHE_MAGIC.len())? != CACHE_MAGIC
        || u32::decode(&mut input)? != CACHE_FORMAT
        || String::decode(&mut input)? != env!("CARGO_PKG_VERSION")
    {
        return None;
    }
    let entries = BTreeMap::decode(&mut input)?;
    input.is_empty().then_some(entries)
}

/// Writes the scan cache's bytes (from [`encode`]) in place of the previous cache.
pub(crate) fn save(dir: &Path, parts: &[Vec<u8>]) -> Result<(), crate::DiscoverError> {
    ensure_dir(dir)?;
    // An older version's cache is never read again: free its space.
    let _ = std::fs::remove_file(dir.join(LEGACY_SCAN_CACHE));
    write_atomically(&dir.join(StateFile::ScanCache.name()), |w| {
        parts.iter().try_for_each(|part| w.write_all(part))
    })
}

/// Writes a cache file of the state directory (not the scan cache, which
/// [`crate::scan`] keeps): atomically, creating the directory and its `.gitignore`.
///
/// # Errors
/// When the directory or the file cannot be written.
pub fn save_cache_file(
    dir: &Path,
    file: StateFile,
    value: &impl Serialize,
) -> Result<(), crate::DiscoverError> {
    ensure_dir(dir)?;
    write_atomically(&dir.join(file.name()), |w| {
        serde_json::to_writer(w, value).map_err(std::io::Error::from)
    })
}

/// Reads a cache file of the state directory; missing or unreadable is `None`.
pub fn load_cache_file<T: serde::de::DeserializeOwned>(dir: &Path, file: StateFile) -> Option<T> {
    std::fs::read(dir.join(file.name()))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

fn ensure_dir(dir: &Path) -> Result<(), crate::DiscoverError> {
    let io = |action, path: PathBuf| {
        move |source| crate::DiscoverError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir.to_path_buf()))?;
    // The state is derived data: keep it out of the fleet's own git history.
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "*\n").map_err(io("writing", ignore.clone()))?;
    }
    Ok(())
}

/// Writes a file through `write` under a temporary name, then renames it into place.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), crate::DiscoverError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| crate::DiscoverError::Io {
            action,
            path,
            source,
        }
    };
    let file = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    let mut writer = std::io::BufWriter::new(file);
    write(&mut writer).map_err(io("writing", &tmp))?;
    writer
        .into_inner()
        .map_err(|e| io("writing", &tmp)(e.into_error()))?;
    std::fs::rename(&tmp, path).map_err(io("renaming", path))
}

#[cfg(test)]
mod tests {
    use super::{CACHE_FORMAT, CACHE_MAGIC, Kind, LEGACY_SCAN_CACHE, StateDir, StateFile};
    use crate::{Progress, Resident, ScanOptions, scan};
    use model::binary::Binary;
    use std::path::Path;
    use test_support::TempDir;

    /// A fleet with every kind of file the cache holds facts of, and a binary Dockerfile (a diagnostic).
    fn fleet(dir: &TempDir) -> ScanOptions {
        dir.write(
            "fleet/orders/catalog-info.yaml",
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: orders\n  labels:\n    tier: \"1\"\nspec:\n  type: service\n  lifecycle: production\n  owner: group:shop\n  dependsOn:\n    - component:payments\n",
        );
        dir.write(
            "fleet/orders/Dockerfile",
            "ARG BASE=debian:12\nFROM golang:1.22 AS build\nFROM ${BASE}\nCOPY --from=build /x /x\n",
        );
        dir.write(
            "fleet/orders/.gitlab-ci.yml",
            "include:\n  - project: platform/ci-templates\n    ref: v1.2.0\n    file: build.yml\n    inputs:\n      image: shop/orders\n      replicas: 2\n",
        );
        dir.write(
            "fleet/orders/deploy/app.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orders\n  namespace: shop\nspec:\n  template:\n    metadata:\n      labels:\n        app: orders\n    spec:\n      containers:\n        - name: orders\n          image: registry.acme.internal/shop/orders:1.0\n          env:\n            - name: PAYMENTS\n              value: http://payments:8080\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: orders\n  namespace: shop\nspec:\n  type: LoadBalancer\n  selector:\n    app: orders\n",
        );
        dir.write("fleet/legacy/Dockerfile", b"FROM \0\x01\x02 binary");
        ScanOptions {
            paths: vec![dir.join("fleet")],
            state_dir: Some(dir.join("state")),
            use_cache: false,
        }
    }

    #[test]
    fn the_saved_cache_holds_the_facts_the_walk_found() {
        let dir = TempDir::new("cache-round-trip");
        let options = fleet(&dir);
        let (resident, loaded) = Resident::load(&options, &Progress::default()).unwrap();
        let cached = super::load_cache(&dir.join("state"));
        assert_eq!(cached.entries.len(), 5);
        assert_eq!(cached.entries, resident.cache.entries);
        assert!(
            cached
                .entries
                .values()
                .any(|e| !e.facts.diagnostics.is_empty()),
            "the broken file's diagnostic is cached too"
        );

        // The one-shot scan moves the facts into the fleet; the resident copies them.
        let scanned = scan(&options, &Progress::default()).unwrap();
        assert_eq!(scanned.fleet, loaded.fleet);
        assert_eq!(scanned.stats, loaded.stats);
        assert_eq!(
            super::load_cache(&dir.join("state")).entries,
            cached.entries
        );

        let rescanned = scan(
            &ScanOptions {
                use_cache: true,
                ..options
            },
            &Progress::default(),
        )
        .unwrap();
        assert_eq!(rescanned.stats.files_parsed, 0);
        assert_eq!(rescanned.stats.files_from_cache, 5);
        assert_eq!(rescanned.fleet, loaded.fleet);
    }

    #[test]
    fn a_cache_of_another_format_or_version_or_damaged_is_no_cache() {
        let dir = TempDir::new("cache-foreign");
        let options = ScanOptions {
            use_cache: true,
            ..fleet(&dir)
        };
        let fresh = scan(&options, &Progress::default()).unwrap();
        let file = dir.join("state").join(StateFile::ScanCache.name());
        let good = std::fs::read(&file).unwrap();
        let entries = super::load_cache(&dir.join("state")).entries;
        let written_by = |format: u32, version: &str| {
            let mut bytes = CACHE_MAGIC.to_vec();
            format.encode(&mut bytes);
            version.to_string().encode(&mut bytes);
            entries.encode(&mut bytes);
            bytes
        };
        assert_eq!(written_by(CACHE_FORMAT, env!("CARGO_PKG_VERSION")), good);
        let foreign = [
            ("an older format", written_by(3, env!("CARGO_PKG_VERSION"))),
            (
                "a newer format",
                written_by(CACHE_FORMAT + 1, env!("CARGO_PKG_VERSION")),
            ),
            ("another version", written_by(CACHE_FORMAT, "0.0.0-other")),
            ("cut short", good[..good.len() - 1].to_vec()),
            ("with bytes after it", [&good[..], &[0]].concat()),
            ("empty", Vec::new()),
            (
                "the JSON of format 3",
                br#"{"format":3,"tool_version":"0.0.0","entries":{}}"#.to_vec(),
            ),
        ];
        for (what, bytes) in foreign {
            std::fs::write(&file, bytes).unwrap();
            assert!(
                super::load_cache(&dir.join("state")).entries.is_empty(),
                "{what}"
            );
            let rescanned = scan(&options, &Progress::default()).unwrap();
            assert_eq!(rescanned.stats.files_parsed, 5, "{what}");
            assert_eq!(rescanned.fleet, fresh.fleet, "{what}");
            assert_eq!(std::fs::read(&file).unwrap(), good, "{what}: rewritten");
        }
    }

    #[test]
    fn saving_the_cache_removes_an_older_versions_json_cache() {
        let dir = TempDir::new("cache-legacy");
        let options = fleet(&dir);
        let legacy = dir.write(
            Path::new("state").join(LEGACY_SCAN_CACHE),
            r#"{"format":3,"tool_version":"0.0.0","entries":{}}"#,
        );
        scan(&options, &Progress::default()).unwrap();
        assert!(!legacy.exists());
        assert!(
            dir.join("state")
                .join(StateFile::ScanCache.name())
                .is_file()
        );
    }

    #[test]
    fn the_state_dir_is_given_or_at_the_fleet_root_and_names_every_file() {
        let root = Path::new("/fleet");
        let default = StateDir::resolve(root, None);
        assert_eq!(default.path(), Path::new("/fleet/.bulkhead"));
        let given = StateDir::resolve(root, Some(Path::new("/var/state")));
        assert_eq!(
            given.file(StateFile::RolloutsDb),
            Path::new("/var/state/rollouts.db")
        );
        assert_eq!(
            default.template_plan("v2.0.0/../x"),
            Path::new("/fleet/.bulkhead/template-plan-v2.0.0_.._x.json")
        );
        let table: Vec<(&str, Kind)> = StateFile::ALL
            .iter()
            .map(|f| (f.name(), f.kind()))
            .collect();
        assert_eq!(
            table,
            [
                ("scan-cache.bin", Kind::Cache),
                ("policy-cache.json", Kind::Cache),
                ("template-tags.json", Kind::Record),
                ("template-plan-", Kind::Record),
                ("patch.db", Kind::Record),
                ("runs", Kind::Record),
                ("facts", Kind::Cache),
                ("rollouts.db", Kind::Record),
            ]
        );
    }
}
