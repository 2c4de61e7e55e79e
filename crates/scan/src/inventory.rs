//! The hosts inventory: the machines that host patching rolls over, by name,
//! address and group.
//!
//! Two shapes are read, because both are common in hand-written inventories:
//! a list (`hosts: [{name: web-1, address: ..., groups: [...]}]`) and a map
//! keyed by host name (`hosts: {web-1: {address: ...}}`). Fields other than
//! name, address and groups are left for the patching planner to read.

use crate::yaml::Node;
use model::{Diagnostic, Facts, Host, Provenance};
use std::collections::BTreeMap;

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

/// Reads the hosts of an inventory document.
pub fn hosts(path: &str, doc: &Node) -> Facts {
    let mut facts = Facts::default();
    let Some(hosts) = doc.get("hosts") else {
        return facts;
    };
    let warn = |facts: &mut Facts, node: &Node, message: String| {
        let at = Provenance::new(path, node.line);
        facts.diagnostics.push(Diagnostic::warning_at(&at, message));
    };
    // (name node, fields) in document order.
    let mut entries: Vec<(&Node, &Node)> = Vec::new();
    if let Some(items) = hosts.as_seq() {
        for item in items {
            match item.get("name") {
                Some(name) if item.as_map().is_some() => entries.push((name, item)),
                _ => warn(&mut facts, item, "host has no name; skipped".to_string()),
            }
        }
    } else if let Some(pairs) = hosts.as_map() {
        entries.extend(pairs.iter().map(|(k, v)| (k, v)));
    } else {
        warn(
            &mut facts,
            hosts,
            "hosts is neither a list nor a mapping".to_string(),
        );
    }
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for (name_node, fields) in entries {
        let Some(name) = name_node.string() else {
            warn(
                &mut facts,
                name_node,
                "host has no name; skipped".to_string(),
            );
            continue;
        };
        // The list form's item starts where its fields do; the map form's host
        // starts at its key.
        let line = if hosts.as_seq().is_some() {
            fields.line
        } else {
            name_node.line
        };
        if let Some(first) = seen.get(&name) {
            warn(
                &mut facts,
                name_node,
                format!("host {name} is listed twice (first on line {first}); skipped"),
            );
            continue;
        }
        seen.insert(name.clone(), line);
        facts.hosts.push(Host {
            name,
            address: fields.get("address").and_then(Node::string),
            groups: fields.get("groups").map(Node::strings).unwrap_or_default(),
            at: Provenance::new(path, line),
        });
    }
    facts
}

#[cfg(test)]
mod tests;
