//! What an assembled trace says: its critical path, self time per span and
//! service, the bottleneck ranking and the error's root cause.
//!
//! Every pass is a loop over [`Trace::preorder`] or a walk with an explicit
//! cursor, so a 100,000-span chain costs no stack and the whole analysis is
//! O(n log n).

use crate::deps::{DependencyLink, dependencies};
use crate::span::{SpanId, SpanKind, TraceId, http_status, is_error};
use crate::tree::{Trace, Warning};
use serde::Serialize;
use std::collections::BTreeMap;

/// How far up a root cause's erroring ancestors are listed.
const MAX_CHAIN: usize = 64;

/// A stretch of the critical path spent in one span.
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct Segment {
    pub span_id: SpanId,
    pub service: String,
    pub operation: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

/// Timing facts of one span.
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct SpanTiming {
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub service: String,
    pub operation: String,
    /// 0 for roots.
    pub depth: usize,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// Time in this span not covered by a child it waits for (after clipping).
    pub self_nano: u64,
    /// Time of this span on the critical path.
    pub critical_nano: u64,
    pub error: bool,
}

/// Latency of one service in the trace.
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct ServiceLatency {
    pub service: String,
    pub span_count: usize,
    pub error_count: usize,
    /// Sum of its spans' self time.
    pub self_nano: u64,
    /// Its time on the critical path.
    pub critical_nano: u64,
}

/// A service ranked by its time on the critical path.
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct Bottleneck {
    pub service: String,
    /// Its operation with the most time on the critical path.
    pub operation: String,
    pub critical_nano: u64,
    /// `critical_nano` over the critical path's length (the root span's
    /// duration when the trace has one root), 0 to 1.
    pub share: f64,
}

/// Whom a root cause blames.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// The failing span's own service.
    Span,
    /// The peer a failing CLIENT span called, which reported no server span.
    Peer,
}

/// An error that did not come from below: an error span with no erroring
/// descendants.
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct RootCause {
    pub span_id: SpanId,
    /// The failing span's service and operation.
    pub service: String,
    pub operation: String,
    /// The service held responsible: `service`, or the called peer.
    pub blamed_service: String,
    pub blame: Blame,
    /// Status message, else the HTTP status, else empty.
    pub message: String,
    /// Whether every ancestor failed too, up to a root: the request failed
    /// because of this error.
    pub reached_root: bool,
    /// Services of the consecutive erroring ancestors, nearest first, repeats
    /// collapsed (at most 64 spans up).
    pub propagated_through: Vec<String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

/// Everything the analysis found in one trace.
#[derive(Clone, PartialEq, Debug, Default, Serialize)]
pub struct Analysis {
    pub trace_id: Option<TraceId>,
    /// Earliest start over all spans.
    pub start_unix_nano: u64,
    /// Latest end minus earliest start over all spans.
    pub duration_nano: u64,
    pub span_count: usize,
    pub service_count: usize,
    pub error_count: usize,
    /// In time order; walked from every root.
    pub critical_path: Vec<Segment>,
    /// Sum of the critical path's segments.
    pub critical_path_nano: u64,
    /// In waterfall order (parents before children, siblings by start time).
    pub spans: Vec<SpanTiming>,
    /// By time on the critical path, then self time, then name.
    pub services: Vec<ServiceLatency>,
    /// Services on the critical path, most time first.
    pub bottlenecks: Vec<Bottleneck>,
    /// Most likely first (see `docs/tracing-analysis.md`).
    pub root_causes: Vec<RootCause>,
    pub dependencies: Vec<DependencyLink>,
    pub warnings: Vec<Warning>,
}

/// Analyses an assembled trace. Never fails; an empty trace gives an empty analysis.
pub fn analyze(trace: &Trace) -> Analysis {
    let spans = trace.spans();
    let n = spans.len();
    let error: Vec<bool> = spans.iter().map(is_error).collect();
    let self_nano = self_times(trace);
    let path = critical_path(trace);
    let mut critical = vec![0u64; n];
    for &(i, start, end) in &path {
        critical[i] += end - start;
    }
    // Saturating: spans with absurd timestamps (0 to u64::MAX) must not overflow.
    let critical_path_nano = critical.iter().fold(0u64, |sum, &t| sum.saturating_add(t));
    let (start, end) = trace.bounds().unwrap_or((0, 0));

    let mut by_service: BTreeMap<&str, ServiceLatency> = BTreeMap::new();
    let mut on_path_by_operation: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (i, span) in spans.iter().enumerate() {
        let entry = by_service
            .entry(span.service.as_str())
            .or_insert_with(|| ServiceLatency {
                service: span.service.clone(),
                span_count: 0,
                error_count: 0,
                self_nano: 0,
                critical_nano: 0,
            });
        entry.span_count += 1;
        entry.error_count += usize::from(error[i]);
        entry.self_nano = entry.self_nano.saturating_add(self_nano[i]);
        entry.critical_nano = entry.critical_nano.saturating_add(critical[i]);
        if critical[i] > 0 {
            let total = on_path_by_operation
                .entry((span.service.as_str(), span.name.as_str()))
                .or_default();
            *total = total.saturating_add(critical[i]);
        }
    }
    let mut services: Vec<ServiceLatency> = by_service.into_values().collect();
    services.sort_by(|a, b| {
        b.critical_nano
            .cmp(&a.critical_nano)
            .then(b.self_nano.cmp(&a.self_nano))
            .then(a.service.cmp(&b.service))
    });
    let bottlenecks = services
        .iter()
        .filter(|s| s.critical_nano > 0)
        .map(|s| {
            let operation = on_path_by_operation
                .range((s.service.as_str(), "")..)
                .take_while(|((service, _), _)| *service == s.service)
                .max_by(|(a_key, a), (b_key, b)| a.cmp(b).then(b_key.cmp(a_key)))
                .map(|((_, op), _)| (*op).to_owned())
                .unwrap_or_default();
            Bottleneck {
                service: s.service.clone(),
                operation,
                critical_nano: s.critical_nano,
                share: s.critical_nano as f64 / critical_path_nano.max(1) as f64,
            }
        })
        .collect();

    let timings = trace
        .preorder()
        .iter()
        .map(|&i| {
            let span = &spans[i];
            SpanTiming {
                span_id: span.span_id,
                parent_span_id: span.parent_span_id,
                service: span.service.clone(),
                operation: span.name.clone(),
                depth: trace.depth(i),
                start_unix_nano: span.start_unix_nano,
                end_unix_nano: span.end_unix_nano,
                self_nano: self_nano[i],
                critical_nano: critical[i],
                error: error[i],
            }
        })
        .collect();

    Analysis {
        trace_id: trace.trace_id(),
        start_unix_nano: start,
        duration_nano: end - start,
        span_count: n,
        service_count: services.len(),
        error_count: error.iter().filter(|&&e| e).count(),
        critical_path: path
            .iter()
            .map(|&(i, start, end)| Segment {
                span_id: spans[i].span_id,
                service: spans[i].service.clone(),
                operation: spans[i].name.clone(),
                start_unix_nano: start,
                end_unix_nano: end,
            })
            .collect(),
        critical_path_nano,
        spans: timings,
        services,
        bottlenecks,
        root_causes: root_causes(trace, &error),
        dependencies: dependencies(spans),
        warnings: trace.warnings().to_vec(),
    }
}

/// A span's clipped duration minus the union of its blocking children's
/// clipped intervals. Children are sorted by start and their clipped starts
/// keep that order, so one sweep per span merges the union.
fn self_times(trace: &Trace) -> Vec<u64> {
    (0..trace.len())
        .map(|i| {
            let Some((start, end)) = trace.clipped(i) else {
                return 0;
            };
            let mut covered = 0u64;
            let mut run: Option<(u64, u64)> = None;
            for &child in trace.children(i) {
                if !trace.is_blocking(child) {
                    continue;
                }
                let Some((c_start, c_end)) = trace.clipped(child) else {
                    continue;
                };
                run = match run {
                    Some((r_start, r_end)) if c_start <= r_end => Some((r_start, r_end.max(c_end))),
                    Some((r_start, r_end)) => {
                        covered += r_end - r_start;
                        Some((c_start, c_end))
                    }
                    None => Some((c_start, c_end)),
                };
            }
            if let Some((r_start, r_end)) = run {
                covered += r_end - r_start;
            }
            (end - start).saturating_sub(covered)
        })
        .collect()
}

/// Jaeger UI's critical path, walked from every root: start at the root's
/// end; take the last-finishing child; descend into it; when a span has no
/// child finishing before the current point, its time back to its start is
/// on the path and the walk returns to the parent at that start, looking for
/// a child that finished strictly before it. Returns (span, start, end)
/// segments in time order, zero-length ones left out.
///
/// Each span's candidates are sorted once by end (latest first); the point
/// only moves backwards, so a per-span cursor never revisits a child.
fn critical_path(trace: &Trace) -> Vec<(usize, u64, u64)> {
    let n = trace.len();
    let mut candidates: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, list) in candidates.iter_mut().enumerate() {
        if trace.clipped(i).is_none() {
            continue;
        }
        list.extend(
            trace
                .children(i)
                .iter()
                .copied()
                .filter(|&c| trace.is_blocking(c) && trace.clipped(c).is_some()),
        );
        // Stable: equal ends keep start order, as Jaeger's stable sort does.
        list.sort_by_key(|&c| std::cmp::Reverse(end_of(trace, c)));
    }
    let mut cursor = vec![0usize; n];
    let mut segments = Vec::new();
    for &root in trace.roots() {
        let first = segments.len();
        let mut current = root;
        let mut point: Option<u64> = None;
        while let Some((start, end)) = trace.clipped(current) {
            let limit = point.unwrap_or(end);
            let list = &candidates[current];
            if let Some(p) = point {
                while cursor[current] < list.len() && end_of(trace, list[cursor[current]]) >= p {
                    cursor[current] += 1;
                }
            }
            if let Some(&child) = list.get(cursor[current]) {
                let child_end = end_of(trace, child);
                if child_end < limit {
                    segments.push((current, child_end, limit));
                }
                cursor[current] += 1;
                current = child;
                point = None;
                continue;
            }
            if start < limit {
                segments.push((current, start, limit));
            }
            match trace.parent(current) {
                Some(parent) => {
                    point = Some(start);
                    current = parent;
                }
                None => break,
            }
        }
        segments[first..].reverse();
    }
    segments.sort_by_key(|&(i, start, end)| (start, end, i));
    segments
}

fn end_of(trace: &Trace, span: usize) -> u64 {
    trace.clipped(span).map_or(0, |(_, end)| end)
}

/// Error spans with no erroring descendants, most likely cause first.
fn root_causes(trace: &Trace, error: &[bool]) -> Vec<RootCause> {
    let spans = trace.spans();
    let n = spans.len();
    let mut error_below = vec![false; n];
    for &i in trace.preorder().iter().rev() {
        if let Some(p) = trace.parent(i)
            && (error[i] || error_below[i])
        {
            error_below[p] = true;
        }
    }
    // reached_root[i]: i and all its ancestors failed.
    let mut reached_root = vec![false; n];
    let mut erroring_ancestors = vec![0usize; n];
    for &i in trace.preorder() {
        match trace.parent(i) {
            None => reached_root[i] = error[i],
            Some(p) => {
                reached_root[i] = error[i] && reached_root[p];
                erroring_ancestors[i] = if error[p] {
                    erroring_ancestors[p] + 1
                } else {
                    0
                };
            }
        }
    }
    let mut causes: Vec<(usize, RootCause)> = (0..n)
        .filter(|&i| error[i] && !error_below[i])
        .map(|i| (i, root_cause(trace, i, error, reached_root[i])))
        .collect();
    causes.sort_by(|(a, a_cause), (b, b_cause)| {
        b_cause
            .reached_root
            .cmp(&a_cause.reached_root)
            .then(erroring_ancestors[*b].cmp(&erroring_ancestors[*a]))
            .then(a_cause.end_unix_nano.cmp(&b_cause.end_unix_nano))
            .then(a.cmp(b))
    });
    causes.into_iter().map(|(_, cause)| cause).collect()
}

fn root_cause(trace: &Trace, i: usize, error: &[bool], reached_root: bool) -> RootCause {
    let spans = trace.spans();
    let span = &spans[i];
    let answered = trace
        .children(i)
        .iter()
        .any(|&c| spans[c].kind == SpanKind::Server || spans[c].service != span.service);
    let peer = ["peer.service", "server.address", "net.peer.name"]
        .iter()
        .find_map(|key| span.attribute(key).filter(|v| !v.is_empty()));
    let (blame, blamed_service) = match peer {
        Some(peer) if span.kind == SpanKind::Client && !answered => (Blame::Peer, peer.to_owned()),
        _ => (Blame::Span, span.service.clone()),
    };
    let message = if !span.status_message.is_empty() {
        span.status_message.clone()
    } else if let Some(code) = http_status(span) {
        format!("HTTP {code}")
    } else {
        String::new()
    };
    let mut propagated_through: Vec<String> = Vec::new();
    let mut current = trace.parent(i);
    for _ in 0..MAX_CHAIN {
        let Some(p) = current else { break };
        if !error[p] {
            break;
        }
        if propagated_through.last() != Some(&spans[p].service) {
            propagated_through.push(spans[p].service.clone());
        }
        current = trace.parent(p);
    }
    RootCause {
        span_id: span.span_id,
        service: span.service.clone(),
        operation: span.name.clone(),
        blamed_service,
        blame,
        message,
        reached_root,
        propagated_through,
        start_unix_nano: span.start_unix_nano,
        end_unix_nano: span.end_unix_nano,
    }
}
