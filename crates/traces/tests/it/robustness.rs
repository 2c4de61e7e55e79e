//! Broken and large input: no panic, no endless loop, no deep recursion.
//!
//! The large cases (10,000 spans, a 100,000-span chain and a 100,000-child
//! fan-out) check results, not time; a quadratic or recursive step would show
//! as a test that overflows its 2 MiB stack or runs for hours.

use crate::fixture::{Fixture, MS};
use std::collections::HashSet;
use traces::{Analysis, Span, SpanId, SpanKind, StatusCode, Trace, TraceId, WarningKind};

fn everything(spans: Vec<Span>) -> (Trace, Analysis) {
    let trace = traces::assemble(spans);
    let analysis = traces::analyze(&trace);
    traces::render_waterfall(&trace, &analysis, 120);
    traces::render_service_table(&analysis);
    traces::root_cause_line(&analysis);
    (trace, analysis)
}

fn kinds(trace: &Trace) -> Vec<WarningKind> {
    trace.warnings().iter().map(|w| w.kind).collect()
}

/// Invariants of any assembled trace: every span exactly once in preorder,
/// children deeper than parents, and each root's critical path tiling the
/// root's interval without gaps or overlaps.
fn check_invariants(trace: &Trace, analysis: &Analysis) {
    let n = trace.len();
    let seen: HashSet<usize> = trace.preorder().iter().copied().collect();
    assert_eq!((seen.len(), trace.preorder().len()), (n, n));
    for i in 0..n {
        if let Some(p) = trace.parent(i) {
            assert_eq!(trace.depth(i), trace.depth(p) + 1);
        }
    }
    let roots_total: u64 = trace
        .roots()
        .iter()
        .map(|&r| {
            let s = &trace.spans()[r];
            s.end_unix_nano - s.start_unix_nano
        })
        .sum();
    assert_eq!(analysis.critical_path_nano, roots_total);
    assert_eq!(analysis.spans.len(), n);
}

#[test]
fn empty_input_gives_an_empty_analysis() {
    let (trace, analysis) = everything(Vec::new());
    assert!(trace.is_empty());
    assert_eq!(analysis.span_count, 0);
    assert!(analysis.critical_path.is_empty() && analysis.bottlenecks.is_empty());
    assert_eq!(
        traces::render_waterfall(&trace, &analysis, 80),
        "empty trace: no spans\n"
    );
    assert_eq!(traces::render_service_table(&analysis), "no spans\n");
    assert_eq!(traces::root_cause_line(&analysis), "no error");
}

#[test]
fn zero_duration_and_inverted_spans_do_not_break_anything() {
    let fixture = Fixture::parse(
        "
        root  -     web  GET:/    server    0    0
        a     root  web  cache    internal  0    0
        b     -     api  list     server   10    4    # ends before it starts
        c     b     api  SELECT   client   10   10
        ",
    );
    let (trace, analysis) = everything(fixture.spans.clone());
    assert_eq!(
        kinds(&trace),
        [
            WarningKind::EndBeforeStart,
            WarningKind::OutsideParent,
            WarningKind::OutsideParent
        ]
    );
    assert_eq!(analysis.critical_path_nano, 0);
    assert!(analysis.bottlenecks.is_empty());
    let b = analysis.spans.iter().find(|t| t.service == "api").unwrap();
    assert_eq!(b.end_unix_nano, b.start_unix_nano);
    check_invariants(&trace, &analysis);
}

#[test]
fn duplicates_cycles_and_foreign_ids_are_repaired_with_warnings() {
    let fixture = Fixture::parse(
        "
        root  -     web  GET:/   server    0  100
        a     b     web  one     internal 10   20   # a and b are each other's parent
        b     a     web  two     internal 12   18
        c     c     web  self    internal 30   40   # its own parent
        d     root  api  Fetch   server   50   60
        d     root  api  Fetch   server   50   70   # a second copy, different end
        e     root  api  Other   server   70   80   trace=9
        ",
    );
    let (trace, analysis) = everything(fixture.spans.clone());
    let mut found = kinds(&trace);
    found.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        found,
        [
            WarningKind::Cycle,
            WarningKind::Cycle,
            WarningKind::DuplicateSpanId,
            WarningKind::ForeignTraceId
        ]
    );
    let d = analysis
        .spans
        .iter()
        .find(|t| t.operation == "Fetch")
        .unwrap();
    assert_eq!(
        d.end_unix_nano - d.start_unix_nano,
        10 * MS,
        "the first copy is kept"
    );
    let roots: Vec<&str> = trace
        .roots()
        .iter()
        .map(|&i| fixture.name(trace.spans()[i].span_id))
        .collect();
    // The a-b loop is cut at its earlier span, a.
    assert_eq!(roots, ["root", "a", "c"]);
    assert_eq!(trace.trace_id(), Some(crate::fixture::trace_id(1)));
    check_invariants(&trace, &analysis);
}

/// A deterministic pseudo-random generator, so the large trace is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

fn span(i: u64, parent: Option<u64>, service: &str, start: u64, end: u64, error: bool) -> Span {
    Span {
        trace_id: TraceId([7; 16]),
        span_id: SpanId((i + 1).to_be_bytes()),
        parent_span_id: parent.map(|p| SpanId((p + 1).to_be_bytes())),
        service: service.to_owned(),
        name: format!("op{}", i % 7),
        kind: if i.is_multiple_of(2) {
            SpanKind::Server
        } else {
            SpanKind::Client
        },
        start_unix_nano: start,
        end_unix_nano: end,
        status: if error {
            StatusCode::Error
        } else {
            StatusCode::Unset
        },
        status_message: String::new(),
        attributes: vec![("peer.service".into(), format!("svc{}", (i + 1) % 6))],
    }
}

#[test]
fn ten_thousand_random_spans_keep_the_invariants() {
    let mut rng = Lcg(42);
    let mut spans: Vec<Span> = Vec::new();
    let mut intervals: Vec<(u64, u64)> = vec![(0, 10_000_000)];
    spans.push(span(0, None, "svc0", 0, 10_000_000, false));
    for i in 1..10_000u64 {
        let parent = rng.next(i);
        let (p_start, p_end) = intervals[parent as usize];
        // Mostly inside the parent, sometimes skewed past either edge.
        let skew = rng.next(10) == 0;
        let start = p_start + rng.next(p_end - p_start + 1);
        let start = if skew {
            start.saturating_sub(rng.next(1_000))
        } else {
            start
        };
        let end = start + rng.next(p_end - start + 1) + if skew { rng.next(1_000) } else { 0 };
        intervals.push((start, end));
        let service = format!("svc{}", rng.next(6));
        spans.push(span(
            i,
            Some(parent),
            &service,
            start,
            end,
            rng.next(20) == 0,
        ));
    }
    // Shuffle: assembly must not depend on input order.
    for i in (1..spans.len()).rev() {
        spans.swap(i, rng.next(i as u64 + 1) as usize);
    }
    let (trace, analysis) = everything(spans.clone());
    check_invariants(&trace, &analysis);
    assert_eq!(trace.roots().len(), 1);
    assert_eq!(analysis.critical_path_nano, 10_000_000);
    // Segments tile the root's interval.
    let mut at = 0;
    for segment in &analysis.critical_path {
        assert_eq!(segment.start_unix_nano, at);
        at = segment.end_unix_nano;
    }
    assert_eq!(at, 10_000_000);
    // Every instant of the root is some span's self time; parallel children
    // make the sum larger. No span's self time exceeds its duration.
    let self_total: u64 = analysis.spans.iter().map(|t| t.self_nano).sum();
    assert!(self_total >= 10_000_000, "{self_total}");
    for t in &analysis.spans {
        assert!(t.self_nano <= t.end_unix_nano - t.start_unix_nano);
    }
    assert!(!analysis.root_causes.is_empty());
    // Same analysis whatever the input order.
    spans.reverse();
    assert_eq!(traces::analyze(&traces::assemble(spans)), analysis);
}

#[test]
fn a_hundred_thousand_span_chain_needs_no_deep_stack() {
    let n = 100_000u64;
    let spans: Vec<Span> = (0..n)
        .map(|i| {
            let service = if i.is_multiple_of(2) { "even" } else { "odd" };
            span(
                i,
                i.checked_sub(1),
                service,
                i,
                2 * n - i,
                i == n - 1 || i > n - 100,
            )
        })
        .collect();
    let (trace, analysis) = everything(spans);
    check_invariants(&trace, &analysis);
    assert_eq!(
        trace.depth(trace.preorder()[(n - 1) as usize]),
        (n - 1) as usize
    );
    assert_eq!(analysis.critical_path.len() as u64, 2 * n - 1);
    let cause = &analysis.root_causes[0];
    assert!(!cause.reached_root);
    assert_eq!(cause.span_id, SpanId(n.to_be_bytes()));
    assert_eq!(
        cause.propagated_through,
        ["even", "odd"].repeat(32)[..64].to_vec()
    );
}

#[test]
fn a_hundred_thousand_parallel_children_stay_linear() {
    let n = 100_000u64;
    let mut spans = vec![span(0, None, "root", 0, 4 * n, false)];
    // Overlapping children: each ends after the next one starts, so the walk
    // back must skip nearly every child for every step.
    spans.extend((1..n).map(|i| span(i, Some(0), "leaf", 2 * i, 2 * i + 3, false)));
    let (trace, analysis) = everything(spans);
    check_invariants(&trace, &analysis);
    assert_eq!(analysis.spans[0].self_nano, 4 * n - (2 * (n - 1) + 3 - 2));
}

#[test]
fn extreme_timestamps_do_not_overflow() {
    let spans = vec![
        span(0, None, "a", 0, u64::MAX, true),
        span(1, Some(0), "b", 0, u64::MAX, false),
        span(2, Some(0), "c", 1, u64::MAX, true),
        span(3, None, "d", 0, u64::MAX, false),
        span(4, Some(99), "e", u64::MAX, 0, false),
    ];
    let (trace, analysis) = everything(spans);
    assert_eq!(trace.roots().len(), 3);
    assert_eq!(analysis.critical_path_nano, u64::MAX);
    assert_eq!(analysis.duration_nano, u64::MAX);
}
