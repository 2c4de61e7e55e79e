//! Telemetry pieces that the gateway and the demo service share: W3C trace
//! context (`traceparent` ids, parser and formatter; `tracestate` lists), OTLP
//! spans and their JSON and protobuf encodings, the OTLP trace messages
//! (which the collector decodes too), and the span export queue; and Jaeger's
//! query API JSON read back into the analysis crate's spans, for `bulkhead trace`.
//!
//! No file, socket or process: the trace context and encodings are text and
//! values in, values out. The export queue's worker is a thread that sends
//! through the caller's [`Transport`] (the socket is the caller's) and reads
//! the monotonic clock only to time its batches.

pub mod export;
pub mod jaeger;
pub mod otlp;
pub mod proto;
mod traceparent;
mod tracestate;

pub use export::{Batching, Exporter, SpanQueue, Transport};
pub use traceparent::{
    FLAG_RANDOM, FLAG_SAMPLED, SpanId, Text, TraceId, TraceParent, TraceParentError,
    format_traceparent, parse_lower_hex, parse_traceparent, trim_ows,
};
pub use tracestate::{
    MAX_TRACESTATE_MEMBERS, TraceState, TraceStateError, parse_tracestate, tracestate_value,
};
