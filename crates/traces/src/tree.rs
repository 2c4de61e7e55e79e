//! Trace assembly: spans into a forest that every later step can walk
//! without recursion, repaired where the data is broken.
//!
//! Repairs, each reported as a [`Warning`]:
//! - spans of another trace id are kept (the most common id names the trace);
//! - a duplicate span id keeps its first copy;
//! - an end before the start becomes a zero-length span;
//! - a span whose parent is not in the trace becomes an extra root;
//! - a parent chain that loops is cut at its earliest-starting span, which becomes a root;
//! - clock skew: a child's interval is clipped into its parent's (clipped)
//!   interval as Jaeger's critical path does; a child wholly outside it is
//!   left out of timing, with its subtree.

use crate::span::{Span, SpanId, SpanKind, TraceId};
use serde::Serialize;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

/// Warnings kept per trace; the rest are counted in one [`WarningKind::Omitted`]
/// entry, so a broken 100,000-span trace does not carry 100,000 messages.
const MAX_WARNINGS: usize = 100;

/// What assembly had to repair.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A span carries a trace id other than the trace's.
    ForeignTraceId,
    /// A second span with an id already seen; it was ignored.
    DuplicateSpanId,
    /// A span's parent is not in the trace; the span is shown as a root.
    MissingParent,
    /// A span's parent chain loops; the loop was cut here.
    Cycle,
    /// A span ends before it starts; it was given zero length.
    EndBeforeStart,
    /// A span starts before its parent (clock skew); its start was clipped.
    StartsBeforeParent,
    /// A span lies wholly outside its parent's interval; it and its subtree are
    /// left out of the critical path and self time.
    OutsideParent,
    /// More warnings than are kept; `message` says how many were left out.
    Omitted,
}

/// One repair made while assembling, with the span it concerns.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Warning {
    pub kind: WarningKind,
    pub span_id: Option<SpanId>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A trace's spans arranged as a forest.
///
/// Spans are addressed by their index in [`Trace::spans`], which is ordered by
/// start time, then span id. Children lists follow the same order.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    trace_id: Option<TraceId>,
    spans: Vec<Span>,
    parent: Vec<Option<usize>>,
    /// The span names a parent id that no span in the trace has.
    parent_missing: Vec<bool>,
    /// Children of span `i` are `child_list[child_start[i]..child_start[i + 1]]`.
    child_start: Vec<usize>,
    child_list: Vec<usize>,
    roots: Vec<usize>,
    preorder: Vec<usize>,
    depth: Vec<usize>,
    /// The span's interval clipped into its parent's; `None` when it lies
    /// outside (or under a span that does).
    clipped: Vec<Option<(u64, u64)>>,
    /// False for a CONSUMER child of a PRODUCER: the producer does not wait for it.
    blocking: Vec<bool>,
    warnings: Vec<Warning>,
    omitted_warnings: usize,
}

impl Trace {
    /// The trace's id: the one most spans carry (the smallest on a tie).
    pub fn trace_id(&self) -> Option<TraceId> {
        self.trace_id
    }

    /// The spans, deduplicated, ordered by start time then span id.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// What assembly repaired.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Spans without a parent in the trace (the real root, orphans, spans
    /// where a cycle was cut), by start time then span id.
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    pub fn parent(&self, span: usize) -> Option<usize> {
        self.parent[span]
    }

    /// Whether the span names a parent that is not in the trace (an orphan
    /// root). A root whose parent is present had its parent loop cut.
    pub fn is_orphan(&self, span: usize) -> bool {
        self.parent_missing[span]
    }

    /// Children by start time, then span id.
    pub fn children(&self, span: usize) -> &[usize] {
        &self.child_list[self.child_start[span]..self.child_start[span + 1]]
    }

    /// Every span once, parents before children, siblings by start time: the
    /// waterfall's order.
    pub fn preorder(&self) -> &[usize] {
        &self.preorder
    }

    /// 0 for roots.
    pub fn depth(&self, span: usize) -> usize {
        self.depth[span]
    }

    /// The span's interval after clock-skew clipping, or `None` when it was
    /// left out of timing.
    pub fn clipped(&self, span: usize) -> Option<(u64, u64)> {
        self.clipped[span]
    }

    /// Whether the span's parent waits for it (all but a CONSUMER under a PRODUCER).
    /// Roots count as blocking.
    pub fn is_blocking(&self, span: usize) -> bool {
        self.blocking[span]
    }

    /// Earliest start and latest end over all spans.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        let start = self.spans.iter().map(|s| s.start_unix_nano).min()?;
        let end = self.spans.iter().map(|s| s.end_unix_nano).max()?;
        Some((start, end))
    }

    fn warn(&mut self, kind: WarningKind, span_id: Option<SpanId>, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(Warning {
                kind,
                span_id,
                message,
            });
        } else {
            self.omitted_warnings += 1;
        }
    }
}

/// Arranges the spans of one trace as a forest. Never fails: what it has to
/// repair is listed in [`Trace::warnings`]. Runs in O(n log n) without recursion.
pub fn assemble(spans: Vec<Span>) -> Trace {
    let mut trace = Trace {
        trace_id: dominant_trace_id(&spans),
        ..Trace::default()
    };
    let spans = deduplicate(spans, &mut trace);
    trace.spans = spans;
    let n = trace.spans.len();

    let index: HashMap<SpanId, usize> = trace
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    trace.parent = vec![None; n];
    trace.parent_missing = vec![false; n];
    for i in 0..n {
        let Some(parent_id) = trace.spans[i].parent_span_id else {
            continue;
        };
        match index.get(&parent_id) {
            Some(&p) if p != i => trace.parent[i] = Some(p),
            Some(_) => {
                let id = trace.spans[i].span_id;
                trace.warn(
                    WarningKind::Cycle,
                    Some(id),
                    format!("span {id} names itself as its parent; shown as a root"),
                );
            }
            None => {
                trace.parent_missing[i] = true;
                let id = trace.spans[i].span_id;
                trace.warn(
                    WarningKind::MissingParent,
                    Some(id),
                    format!("span {id}: parent {parent_id} is not in the trace; shown as a root"),
                );
            }
        }
    }
    cut_cycles(&mut trace);
    link_children(&mut trace);
    walk_preorder(&mut trace);
    clip_intervals(&mut trace);
    if trace.omitted_warnings > 0 {
        let count = trace.omitted_warnings;
        trace.warnings.push(Warning {
            kind: WarningKind::Omitted,
            span_id: None,
            message: format!("{count} more warnings not shown"),
        });
    }
    trace
}

fn dominant_trace_id(spans: &[Span]) -> Option<TraceId> {
    let mut counts: HashMap<TraceId, usize> = HashMap::new();
    for span in spans {
        *counts.entry(span.trace_id).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|(a_id, a), (b_id, b)| a.cmp(b).then(b_id.cmp(a_id)))
        .map(|(id, _)| id)
}

/// Drops later copies of a span id, repairs inverted intervals, warns about
/// foreign trace ids, and sorts by start time then span id.
fn deduplicate(spans: Vec<Span>, trace: &mut Trace) -> Vec<Span> {
    let mut seen: HashMap<SpanId, ()> = HashMap::with_capacity(spans.len());
    let mut kept = Vec::with_capacity(spans.len());
    for mut span in spans {
        let id = span.span_id;
        match seen.entry(id) {
            Entry::Occupied(_) => {
                trace.warn(
                    WarningKind::DuplicateSpanId,
                    Some(id),
                    format!("span id {id} appears more than once; kept the first copy"),
                );
                continue;
            }
            Entry::Vacant(slot) => {
                slot.insert(());
            }
        }
        if Some(span.trace_id) != trace.trace_id {
            let (theirs, ours) = (span.trace_id, trace.trace_id.unwrap_or(span.trace_id));
            trace.warn(
                WarningKind::ForeignTraceId,
                Some(id),
                format!("span {id} belongs to trace {theirs}, not {ours}; kept"),
            );
        }
        if span.end_unix_nano < span.start_unix_nano {
            trace.warn(
                WarningKind::EndBeforeStart,
                Some(id),
                format!("span {id} ends before it starts; treated as zero length"),
            );
            span.end_unix_nano = span.start_unix_nano;
        }
        kept.push(span);
    }
    kept.sort_by_key(|s| (s.start_unix_nano, s.span_id));
    kept
}

/// Each span has at most one parent, so every loop is a simple cycle that a
/// walk up the parent links finds; it is cut at its earliest-starting span.
/// Each span is walked once: linear.
fn cut_cycles(trace: &mut Trace) {
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let n = trace.spans.len();
    let mut state = vec![NEW; n];
    let mut path = Vec::new();
    for start in 0..n {
        if state[start] != NEW {
            continue;
        }
        let mut current = start;
        loop {
            match state[current] {
                DONE => break,
                ON_PATH => {
                    let from = path.iter().rposition(|&s| s == current).unwrap_or(0);
                    let members = &path[from..];
                    let cut = members.iter().copied().min().unwrap_or(current);
                    let size = members.len();
                    trace.parent[cut] = None;
                    let id = trace.spans[cut].span_id;
                    trace.warn(
                        WarningKind::Cycle,
                        Some(id),
                        format!("span {id}: its parent chain loops back to it through {size} spans; shown as a root"),
                    );
                    break;
                }
                _ => {}
            }
            state[current] = ON_PATH;
            path.push(current);
            match trace.parent[current] {
                Some(p) => current = p,
                None => break,
            }
        }
        for &s in &path {
            state[s] = DONE;
        }
        path.clear();
    }
}

fn link_children(trace: &mut Trace) {
    let n = trace.spans.len();
    let mut counts = vec![0usize; n + 1];
    for p in trace.parent.iter().flatten() {
        counts[*p + 1] += 1;
    }
    for i in 0..n {
        counts[i + 1] += counts[i];
    }
    trace.child_start = counts.clone();
    trace.child_list = vec![0; counts[n]];
    // Spans are visited in (start, span id) order, so each list comes out sorted.
    for i in 0..n {
        match trace.parent[i] {
            Some(p) => {
                trace.child_list[counts[p]] = i;
                counts[p] += 1;
            }
            None => trace.roots.push(i),
        }
    }
}

fn walk_preorder(trace: &mut Trace) {
    let n = trace.spans.len();
    trace.depth = vec![0; n];
    trace.preorder = Vec::with_capacity(n);
    let mut stack: Vec<usize> = trace.roots.iter().rev().copied().collect();
    while let Some(span) = stack.pop() {
        trace.preorder.push(span);
        let depth = trace.depth[span] + 1;
        let (from, to) = (trace.child_start[span], trace.child_start[span + 1]);
        for k in (from..to).rev() {
            let child = trace.child_list[k];
            trace.depth[child] = depth;
            stack.push(child);
        }
    }
}

/// Jaeger's `sanitizeOverFlowingChildren`, in preorder so every parent is
/// clipped before its children. A CONSUMER under a PRODUCER is not waited
/// for, so it keeps its own interval and is timed like a root.
fn clip_intervals(trace: &mut Trace) {
    let n = trace.spans.len();
    trace.clipped = vec![None; n];
    trace.blocking = vec![true; n];
    for k in 0..n {
        let i = trace.preorder[k];
        let span = &trace.spans[i];
        let own = (span.start_unix_nano, span.end_unix_nano);
        let Some(p) = trace.parent[i] else {
            trace.clipped[i] = Some(own);
            continue;
        };
        let parent = &trace.spans[p];
        if parent.kind == SpanKind::Producer && span.kind == SpanKind::Consumer {
            trace.blocking[i] = false;
            trace.clipped[i] = Some(own);
            continue;
        }
        let Some((p_start, p_end)) = trace.clipped[p] else {
            continue;
        };
        let (start, end) = own;
        let inside = if start >= p_start {
            start < p_end
        } else {
            end > p_start
        };
        let (id, parent_id) = (span.span_id, parent.span_id);
        if !inside {
            trace.warn(
                WarningKind::OutsideParent,
                Some(id),
                format!("span {id} lies outside its parent {parent_id}'s interval (clock skew?); left out of the critical path and self time"),
            );
            continue;
        }
        if start < parent.start_unix_nano {
            let by = parent.start_unix_nano - start;
            trace.warn(
                WarningKind::StartsBeforeParent,
                Some(id),
                format!("span {id} starts {by}ns before its parent {parent_id} (clock skew?); clipped to the parent"),
            );
        }
        trace.clipped[i] = Some((start.max(p_start), end.min(p_end)));
    }
}
