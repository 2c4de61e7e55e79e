//! `policy check`'s outcome cache (`policy-cache.json` in the state
//! directory): the outcome of each service and manifest file, keyed by a hash
//! of everything that decides it, the policies (bundle configuration and
//! sources, constraint files, the time budget, the tool version) and the
//! input itself (the service's rule input, or the file's path and text, plus
//! the whole fleet's manifests when constraints read them as inventory).
//! A changed input or policy has another key and is evaluated again; an
//! outcome with an evaluation error is never kept.

use discover::StateFile;
use policy::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

/// Bumped when keys or outcomes change meaning.
/// 2: keys hash the policies' key, not the policies' bytes.
const FORMAT: u32 = 2;

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

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Cache {
    format: u32,
    tool_version: String,
    entries: HashMap<String, Outcome>,
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

    /// Saves the outcomes of this run only, so entries of inputs that are gone do not pile up.
    pub fn save(
        dir: &Path,
        entries: HashMap<String, Outcome>,
    ) -> Result<(), discover::DiscoverError> {
        let cache = Cache {
            format: FORMAT,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            entries,
        };
        discover::state::save_cache_file(dir, StateFile::PolicyCache, &cache)
    }
}
