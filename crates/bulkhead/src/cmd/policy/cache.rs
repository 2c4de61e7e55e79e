//! `policy check`'s outcome cache (`policy-cache.json` in the state
//! directory): the outcome of each service and manifest file, keyed by a hash
//! of everything that decides it, the policies (bundle configuration and
//! sources, constraint files, the time budget, the tool version) and the
//! input itself (the service's rule input, or the file's path and text, plus
//! the whole fleet's manifests when constraints read them as inventory).
//! A changed input or policy has another key and is evaluated again; an
//! outcome with an evaluation error is never kept.
//!
//! Beside the outcomes it keeps the last whole report of a fleet check,
//! under a hash of the policies and of the fleet's stat fingerprint
//! ([`discover::FleetStats`]), with the list of what that fingerprint
//! statted: a check that stats that list again and finds the same hash, with
//! the same policies, prints that report without scanning or evaluating. It
//! is read on its own, the outcomes skipped unparsed into values.

use discover::StateFile;
use policy::Outcome;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

/// Bumped when keys or outcomes change meaning.
/// 2: keys hash the policies' key, not the policies' bytes.
/// 3: the last report is kept with the key of the fleet and policies it answers.
const FORMAT: u32 = 3;

/// Keys are 128 bits: two SipHash passes under different domain tags. A
/// collision would answer a changed input wrongly, so 64 bits are not enough
/// margin for fleets checked many times. A Rust release that changes std's
/// hasher only turns every key into a miss.
pub(crate) fn key(parts: &[&[u8]]) -> String {
    let half = |tag: u8| {
        let mut h = std::hash::DefaultHasher::new();
        tag.hash(&mut h);
        for part in parts {
            part.hash(&mut h);
        }
        h.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}

/// The cache as the full check reads it (the kept report is skipped).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Cache {
    format: u32,
    tool_version: String,
    entries: HashMap<String, Outcome>,
}

/// A report kept under the key of what it answers, with the list of what
/// [`discover::FleetStats::recheck`] stats to tell whether that is unchanged.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Kept<W, R> {
    pub key: String,
    pub watch: W,
    pub report: R,
}

impl Cache {
    /// The cache of `dir`; missing, unreadable or of another format is empty.
    pub fn load(dir: &Path) -> Cache {
        discover::state::load_cache_file::<Cache>(dir, StateFile::PolicyCache)
            .filter(|c| c.format == FORMAT && c.tool_version == env!("CARGO_PKG_VERSION"))
            .unwrap_or_default()
    }

    pub fn get(&self, key: &str) -> Option<&Outcome> {
        self.entries.get(key)
    }

    /// The report kept in `dir`, if any.
    pub fn kept_report<R: DeserializeOwned>(dir: &Path) -> Option<Kept<String, R>> {
        /// The cache as the kept report's reader reads it (the outcomes are skipped).
        #[derive(Deserialize)]
        struct Head<R> {
            format: u32,
            tool_version: String,
            last: Option<Kept<String, R>>,
        }
        discover::state::load_cache_file::<Head<R>>(dir, StateFile::PolicyCache)
            .filter(|c| c.format == FORMAT && c.tool_version == env!("CARGO_PKG_VERSION"))
            .and_then(|c| c.last)
    }

    /// Saves the outcomes of this run only, so entries of inputs that are gone
    /// do not pile up, and the report with its key when it is to be kept.
    pub fn save<R: Serialize>(
        dir: &Path,
        entries: HashMap<String, Outcome>,
        last: Option<(&str, &str, &R)>,
    ) -> Result<(), discover::DiscoverError> {
        #[derive(Serialize)]
        struct CacheOut<'a, R> {
            format: u32,
            tool_version: &'a str,
            last: Option<Kept<&'a str, &'a R>>,
            entries: HashMap<String, Outcome>,
        }
        let cache = CacheOut {
            format: FORMAT,
            tool_version: env!("CARGO_PKG_VERSION"),
            last: last.map(|(key, watch, report)| Kept {
                key: key.to_string(),
                watch,
                report,
            }),
            entries,
        };
        discover::state::save_cache_file(dir, StateFile::PolicyCache, &cache)
    }
}
