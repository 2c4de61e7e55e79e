//! The routing file as a whole: one gateway document (no `kind`) and any
//! number of Gateway API `HTTPRoute` documents, separated by `---`.
//!
//! Above both readers: [`crate::config`] reads the gateway document and
//! [`crate::httproute`] adds each route document to the configuration it built.

use crate::config::{self, Config, ConfigError, Reader};
use crate::httproute;

/// Parses a configuration file's text; `path` only names the file in errors.
///
/// # Errors
///
/// The first problem found, with its line: bad YAML, a missing or malformed field, a
/// route naming an unknown service, an empty selector, weights summing to zero, an
/// `HTTPRoute` the gateway cannot honour.
pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
    let p = Reader { path };
    let (mut config, route_docs) = config::gateway_document(&p, text)?;
    for doc in &route_docs {
        httproute::add(&p, doc, &mut config)?;
    }
    Ok(config)
}
