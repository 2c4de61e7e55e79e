//! Service dependencies from cross-service parent/child pairs, computed
//! straight from spans (no batch job): the collector can call it on any set
//! of spans, one trace or a time window of many.

use crate::span::{Span, SpanId, SpanKind, TraceId, is_error};
use serde::Serialize;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Calls from one service to another.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct DependencyLink {
    /// The calling service.
    pub parent: String,
    /// The called service.
    pub child: String,
    pub call_count: u64,
    /// Calls whose child span failed (see [`is_error`]).
    pub error_count: u64,
}

impl DependencyLink {
    /// `error_count / call_count`, 0 to 1.
    pub fn error_rate(&self) -> f64 {
        self.error_count as f64 / self.call_count.max(1) as f64
    }
}

/// The dependency links among `spans`, sorted by parent then child.
///
/// Each span whose parent is present (same trace id) and belongs to another
/// service is one call from the parent's service to the span's. A CLIENT
/// span with `peer.service` that has no child from the called side (no SERVER
/// child, no child of another service) is one call to that peer: the callee
/// never reported a span, typically because it was down, and dropping the
/// edge would hide exactly the failing dependency. Duplicate spans count once.
pub fn dependencies<'a>(spans: impl IntoIterator<Item = &'a Span>) -> Vec<DependencyLink> {
    let mut by_id: HashMap<(TraceId, SpanId), &Span> = HashMap::new();
    let mut order: Vec<&Span> = Vec::new();
    for span in spans {
        if let Entry::Vacant(slot) = by_id.entry((span.trace_id, span.span_id)) {
            slot.insert(span);
            order.push(span);
        }
    }
    let mut links: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    let mut answered: HashSet<(TraceId, SpanId)> = HashSet::new();
    for span in &order {
        let Some(parent_id) = span.parent_span_id else {
            continue;
        };
        let Some(parent) = by_id.get(&(span.trace_id, parent_id)) else {
            continue;
        };
        if span.kind == SpanKind::Server || span.service != parent.service {
            answered.insert((span.trace_id, parent_id));
        }
        if span.service != parent.service {
            let link = links
                .entry((parent.service.as_str(), span.service.as_str()))
                .or_default();
            link.0 += 1;
            link.1 += u64::from(is_error(span));
        }
    }
    for span in &order {
        if span.kind != SpanKind::Client || answered.contains(&(span.trace_id, span.span_id)) {
            continue;
        }
        let Some(peer) = span.attribute("peer.service") else {
            continue;
        };
        if peer.is_empty() || peer == span.service {
            continue;
        }
        let link = links.entry((span.service.as_str(), peer)).or_default();
        link.0 += 1;
        link.1 += u64::from(is_error(span));
    }
    links
        .into_iter()
        .map(
            |((parent, child), (call_count, error_count))| DependencyLink {
                parent: parent.to_owned(),
                child: child.to_owned(),
                call_count,
                error_count,
            },
        )
        .collect()
}
