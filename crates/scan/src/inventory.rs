//! The hosts inventory: the machines that host patching rolls over, by name,
//! address and group.
//!
//! Two shapes are read, because both are common in hand-written inventories:
//! a list (`hosts: [{name: web-1, address: ..., groups: [...]}]`) and a map
//! keyed by host name (`hosts: {web-1: {address: ...}}`). Fields other than
//! name, address and groups are left to host patching, which reads each
//! entry's mapping from [`read`].

use model::{Diagnostic, Facts, Host, Provenance};
use std::collections::BTreeMap;
use yaml::Node;

/// Whether a document with a `hosts:` key is an inventory rather than, say, a
/// CI file or an Ansible play that merely mentions hosts: `hosts` must be a
/// non-empty list of mappings at least one of which has a `name`, or a
/// non-empty map whose values are mappings (or empty, for a bare host name).
pub fn looks_like_inventory(doc: &Node) -> bool {
    let Some(hosts) = doc.get("hosts") else {
        return false;
    };
    if let Some(items) = hosts.as_seq() {
        return items.iter().all(|item| item.as_map().is_some())
            && items.iter().any(|item| item.get("name").is_some());
    }
    match hosts.as_map() {
        Some(pairs) => {
            !pairs.is_empty()
                && pairs
                    .iter()
                    .all(|(_, v)| v.as_map().is_some() || v.is_null())
        }
        None => false,
    }
}

/// One host of an inventory: what the fleet knows of it, and its mapping
/// (a null node for a bare name) for readers of further fields.
#[derive(Debug)]
pub struct Entry<'a> {
    pub host: Host,
    pub fields: &'a Node,
}

/// The hosts an inventory document lists, in document order, and the
/// entries it skipped as `(line, message)`; each caller decides how grave a
/// skipped entry is.
#[derive(Debug, Default)]
pub struct Listing<'a> {
    pub entries: Vec<Entry<'a>>,
    pub problems: Vec<(u32, String)>,
}

/// Reads the hosts of an inventory document: the one reader of `hosts.yaml`
/// for the fleet scan and for host patching.
///
/// A host's `groups` may come from the document's `defaults:`; its `address`
/// names one machine and never does.
pub fn read<'a>(path: &str, doc: &'a Node) -> Listing<'a> {
    let mut listing = Listing::default();
    let no_name = "host has no name; skipped";
    // (name, line the host starts on, fields) in document order.
    let mut named: Vec<(String, u32, &Node)> = Vec::new();
    match doc.get("hosts") {
        Some(hosts) if hosts.as_seq().is_some() => {
            for item in hosts.as_seq().unwrap_or_default() {
                match item.get("name").and_then(Node::string) {
                    Some(name) if item.as_map().is_some() => named.push((name, item.line, item)),
                    _ => listing.problems.push((item.line, no_name.to_string())),
                }
            }
        }
        // The map form's host starts at its key.
        Some(hosts) if hosts.as_map().is_some() => {
            for (key, fields) in hosts.as_map().unwrap_or_default() {
                match key.string() {
                    Some(name) => named.push((name, key.line, fields)),
                    None => listing.problems.push((key.line, no_name.to_string())),
                }
            }
        }
        Some(other) => listing.problems.push((
            other.line,
            "hosts is neither a list nor a mapping".to_string(),
        )),
        None => listing
            .problems
            .push((doc.line, "no hosts: key".to_string())),
    }
    let defaults = doc.get("defaults");
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for (name, line, fields) in named {
        if let Some(first) = seen.get(&name) {
            listing.problems.push((
                line,
                format!("host {name} is listed twice (first on line {first}); skipped"),
            ));
            continue;
        }
        seen.insert(name.clone(), line);
        let groups = fields
            .get("groups")
            .or_else(|| defaults.and_then(|d| d.get("groups")))
            .map(Node::strings)
            .unwrap_or_default();
        listing.entries.push(Entry {
            host: Host {
                name,
                address: fields.get("address").and_then(Node::string),
                groups,
                at: Provenance::new(path, line),
            },
            fields,
        });
    }
    listing
}

/// The fleet's facts of an inventory document: its hosts, and a warning for
/// each entry skipped (the fleet scan reads on; patching treats them as errors).
pub fn hosts(path: &str, doc: &Node) -> Facts {
    let listing = read(path, doc);
    Facts {
        hosts: listing.entries.into_iter().map(|e| e.host).collect(),
        diagnostics: listing
            .problems
            .into_iter()
            .map(|(line, message)| Diagnostic::warning(path, Some(line), message))
            .collect(),
        ..Facts::default()
    }
}

#[cfg(test)]
mod tests;
