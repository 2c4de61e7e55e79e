//! Backstage catalog entities (`catalog-info.yaml`): who owns a service, how
//! critical it is, which system it belongs to and what it depends on.
//!
//! Backstage has no tier field, so teams put it in a label or an annotation;
//! all the usual places are read, and a value that is not a tier is reported
//! rather than guessed at, since the tier orders rollout waves.

use model::{CatalogEntity, Diagnostic, Facts, Provenance, Tier};
use yaml::Node;

/// Where a tier may be written, in order of precedence.
const TIER_KEYS: [(&str, &str); 3] = [
    ("labels", "tier"),
    ("annotations", "bulkhead.io/tier"),
    ("annotations", "tier"),
];

/// Reads one entity document (`apiVersion: backstage.io/v1alpha1`).
pub fn entity(path: &str, doc: &Node) -> Facts {
    let mut facts = Facts::default();
    let at = Provenance::new(path, doc.line);
    let Some(kind) = doc.get("kind").and_then(Node::as_str) else {
        facts.diagnostics.push(Diagnostic::warning_at(
            &at,
            "catalog entity has no kind; skipped",
        ));
        return facts;
    };
    let Some(name) = doc.at(&["metadata", "name"]).and_then(Node::as_str) else {
        facts.diagnostics.push(Diagnostic::warning_at(
            &at,
            format!("catalog {kind} has no metadata.name; skipped"),
        ));
        return facts;
    };
    let spec = |key: &str| doc.at(&["spec", key]).and_then(Node::string);
    let tier = tier(path, doc, name, &mut facts.diagnostics);
    facts.catalog.push(CatalogEntity {
        kind: kind.to_string(),
        name: name.to_string(),
        namespace: doc.at(&["metadata", "namespace"]).and_then(Node::string),
        spec_type: spec("type"),
        owner: spec("owner"),
        lifecycle: spec("lifecycle"),
        system: spec("system"),
        tier,
        depends_on: doc
            .at(&["spec", "dependsOn"])
            .map(Node::strings)
            .unwrap_or_default(),
        at,
    });
    facts
}

/// The first tier written in [`TIER_KEYS`] order; a later one that disagrees is reported.
fn tier(path: &str, doc: &Node, name: &str, diagnostics: &mut Vec<Diagnostic>) -> Option<u8> {
    let mut chosen: Option<(Tier, String)> = None;
    for (section, key) in TIER_KEYS {
        let Some(node) = doc.at(&["metadata", section, key]) else {
            continue;
        };
        let Some(text) = node.as_str() else {
            continue;
        };
        let at = Provenance::new(path, node.line);
        let place = format!("{section} {key}");
        match (Tier::parse(text), &chosen) {
            (None, _) => diagnostics.push(Diagnostic::warning_at(
                &at,
                format!("{name}: tier {text} is not a tier (1-9)"),
            )),
            (Some(tier), None) => chosen = Some((tier, place)),
            (Some(tier), Some((first, first_place))) if tier != *first => {
                diagnostics.push(Diagnostic::warning_at(
                    &at,
                    format!(
                        "{name}: {place} says tier {tier} but {first_place} says tier {first}; using {first}"
                    ),
                ));
            }
            (Some(_), Some(_)) => {}
        }
    }
    chosen.map(|(tier, _)| tier.0)
}

#[cfg(test)]
mod tests;
