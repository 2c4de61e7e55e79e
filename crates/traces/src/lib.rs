//! Tracing's pure half (`collector` is its I/O edge): trace analysis, spans in, a tree, its critical path, latency per
//! service, bottlenecks, the error's root cause and service dependencies out,
//! plus their terminal rendering. The algorithms are described in
//! `docs/tracing-analysis.md`.
//!
//! No I/O: the collector decodes and stores spans, the CLI prints; this crate
//! only computes.

mod analysis;
mod deps;
mod render;
mod span;
mod tree;

pub use analysis::{
    Analysis, Blame, Bottleneck, RootCause, Segment, ServiceLatency, SpanTiming, analyze,
};
pub use deps::{DependencyLink, dependencies};
pub use render::{format_duration, render_service_table, render_waterfall, root_cause_line};
pub use span::{
    ParseIdError, Span, SpanId, SpanKind, StatusCode, TraceId, UNKNOWN_SERVICE, is_error,
};
pub use tree::{Trace, Warning, WarningKind, assemble};
