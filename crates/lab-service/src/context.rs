//! Trace context propagation: W3C Trace Context (`traceparent`, `tracestate`)
//! and Zipkin B3 (single `b3` header and multi `X-B3-*` headers).
//!
//! This module is pure: header values in, typed values out. The W3C parsers
//! are `telemetry`'s (W3C Trace Context level 2, at the official test
//! harness's strictest level); this module applies its processing rules:
//!
//! - a `traceparent` that fails to parse (or appears twice) restarts the trace:
//!   a new trace id, and the incoming `tracestate` is dropped with it;
//! - a `tracestate` with any invalid member or more than 32 members is
//!   discarded whole (the harness expects that, not a partial list); a
//!   duplicated key keeps the list, with the key's first member;
//! - future versions (`01`..`fe`) are forwarded as version `00`.
//!
//! B3 is read only when no `traceparent` header is present at all, so that the
//! W3C rules stay exact whenever a W3C context was sent.

use hyper::HeaderMap;
pub use telemetry::{FLAG_SAMPLED, SpanId, TraceId, TraceState};
use telemetry::{parse_lower_hex, parse_traceparent, trim_ows};

/// B3 sampling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// `0`: do not sample.
    Deny,
    /// `1`: sample.
    Accept,
    /// `d` (or `X-B3-Flags: 1`): sample and force recording.
    Debug,
    /// Absent: the receiver decides.
    Defer,
}

impl Sampling {
    fn w3c_flags(self) -> u8 {
        match self {
            Sampling::Deny => 0,
            // This service records every trace, so a deferred decision is "yes".
            Sampling::Accept | Sampling::Debug | Sampling::Defer => FLAG_SAMPLED,
        }
    }

    fn parse(value: &[u8]) -> Option<Sampling> {
        match value {
            b"0" | b"false" => Some(Sampling::Deny),
            b"1" | b"true" => Some(Sampling::Accept),
            b"d" => Some(Sampling::Debug),
            _ => None,
        }
    }
}

/// A B3 context: 64-bit trace ids are left-padded with zeros to 128 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct B3 {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub sampling: Sampling,
}

/// What a single `b3` header holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum B3Single {
    Context(B3),
    /// The sampling-only form (`b3: 0`, `b3: 1`, `b3: d`).
    SamplingOnly(Sampling),
}

/// Why a B3 header set was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum B3Error {
    #[error("trace id is not 16 or 32 lowercase hex digits, or is all zeros")]
    TraceId,
    #[error("span id is not 16 lowercase hex digits, or is all zeros")]
    SpanId,
    #[error("parent span id is not 16 lowercase hex digits, or is all zeros")]
    ParentSpanId,
    #[error("sampling state is not 0, 1 or d")]
    Sampling,
    #[error("too many fields")]
    Fields,
    #[error("X-B3-TraceId and X-B3-SpanId must come together")]
    Incomplete,
}

fn b3_trace_id(hex: &[u8]) -> Result<TraceId, B3Error> {
    if hex.len() != 16 && hex.len() != 32 {
        return Err(B3Error::TraceId);
    }
    parse_lower_hex(hex)
        .and_then(TraceId::new)
        .ok_or(B3Error::TraceId)
}

fn b3_span_id(hex: &[u8], error: B3Error) -> Result<SpanId, B3Error> {
    if hex.len() != 16 {
        return Err(error);
    }
    parse_lower_hex(hex)
        .and_then(|v| SpanId::new(v as u64))
        .ok_or(error)
}

/// Parses a single `b3` header: `{TraceId}-{SpanId}[-{Sampling}[-{ParentSpanId}]]`
/// or the sampling-only form.
///
/// # Errors
///
/// Malformed or all-zero ids, an unknown sampling state, extra fields.
pub fn parse_b3_single(value: &[u8]) -> Result<B3Single, B3Error> {
    let value = trim_ows(value);
    let fields: Vec<&[u8]> = value.split(|&c| c == b'-').collect();
    if fields.len() == 1 {
        return Sampling::parse(fields[0])
            .map(B3Single::SamplingOnly)
            .ok_or(B3Error::Sampling);
    }
    if fields.len() > 4 {
        return Err(B3Error::Fields);
    }
    let trace_id = b3_trace_id(fields[0])?;
    let span_id = b3_span_id(fields[1], B3Error::SpanId)?;
    let sampling = match fields.get(2) {
        None => Sampling::Defer,
        Some(s) => Sampling::parse(s).ok_or(B3Error::Sampling)?,
    };
    let parent_span_id = fields
        .get(3)
        .map(|p| b3_span_id(p, B3Error::ParentSpanId))
        .transpose()?;
    Ok(B3Single::Context(B3 {
        trace_id,
        span_id,
        parent_span_id,
        sampling,
    }))
}

/// The multi-header B3 values of a request, as received.
#[derive(Clone, Copy, Debug, Default)]
pub struct B3Multi<'a> {
    pub trace_id: Option<&'a [u8]>,
    pub span_id: Option<&'a [u8]>,
    pub parent_span_id: Option<&'a [u8]>,
    pub sampled: Option<&'a [u8]>,
    pub flags: Option<&'a [u8]>,
}

/// Parses the `X-B3-*` headers; `Ok(None)` when neither id header is present.
///
/// # Errors
///
/// One id header without the other, malformed ids, an unknown sampling state.
pub fn parse_b3_multi(headers: &B3Multi<'_>) -> Result<Option<B3>, B3Error> {
    let (trace_id, span_id) = match (headers.trace_id, headers.span_id) {
        (None, None) => return Ok(None),
        (Some(t), Some(s)) => (t, s),
        _ => return Err(B3Error::Incomplete),
    };
    let trace_id = b3_trace_id(trim_ows(trace_id))?;
    let span_id = b3_span_id(trim_ows(span_id), B3Error::SpanId)?;
    let parent_span_id = headers
        .parent_span_id
        .map(|p| b3_span_id(trim_ows(p), B3Error::ParentSpanId))
        .transpose()?;
    let sampling = if headers.flags.map(trim_ows) == Some(b"1") {
        Sampling::Debug
    } else {
        match headers.sampled {
            None => Sampling::Defer,
            Some(s) => Sampling::parse(trim_ows(s)).ok_or(B3Error::Sampling)?,
        }
    };
    Ok(Some(B3 {
        trace_id,
        span_id,
        parent_span_id,
        sampling,
    }))
}

/// Where an incoming context came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    W3c,
    B3Single,
    B3Multi,
}

/// The remote parent of a request's server span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub flags: u8,
    pub source: Source,
}

/// Everything a request says about its trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// `None`: start a new trace.
    pub parent: Option<RemoteParent>,
    /// Forwarded only with a W3C parent; empty otherwise.
    pub trace_state: TraceState,
    /// Flags for a new trace (from a B3 sampling-only header, else sampled).
    pub new_trace_flags: u8,
    /// Why an incoming context was ignored, for the log.
    pub rejected: Option<String>,
}

/// Reads the trace context of a request: W3C when a `traceparent` header is
/// present (valid or not), else B3 single, else B3 multi.
pub fn extract(headers: &HeaderMap) -> Extracted {
    let mut out = Extracted {
        parent: None,
        trace_state: TraceState::default(),
        new_trace_flags: FLAG_SAMPLED,
        rejected: None,
    };
    let mut traceparents = headers.get_all("traceparent").iter();
    if let Some(first) = traceparents.next() {
        if traceparents.next().is_some() {
            out.rejected = Some("traceparent: more than one header".to_string());
            return out;
        }
        match parse_traceparent(first.as_bytes()) {
            Ok(tp) => {
                out.parent = Some(RemoteParent {
                    trace_id: tp.trace_id,
                    span_id: tp.parent_id,
                    flags: tp.flags,
                    source: Source::W3c,
                });
                match TraceState::parse(headers.get_all("tracestate").iter().map(|v| v.as_bytes()))
                {
                    Ok(ts) => out.trace_state = ts,
                    Err(e) => out.rejected = Some(format!("tracestate: {e}")),
                }
            }
            Err(e) => out.rejected = Some(format!("traceparent: {e}")),
        }
        return out;
    }
    let b3 = if let Some(single) = headers.get("b3") {
        match parse_b3_single(single.as_bytes()) {
            Ok(B3Single::Context(b3)) => Some((b3, Source::B3Single)),
            Ok(B3Single::SamplingOnly(s)) => {
                out.new_trace_flags = s.w3c_flags();
                None
            }
            Err(e) => {
                out.rejected = Some(format!("b3: {e}"));
                None
            }
        }
    } else {
        let get = |name: &str| headers.get(name).map(|v| v.as_bytes());
        let multi = B3Multi {
            trace_id: get("x-b3-traceid"),
            span_id: get("x-b3-spanid"),
            parent_span_id: get("x-b3-parentspanid"),
            sampled: get("x-b3-sampled"),
            flags: get("x-b3-flags"),
        };
        match parse_b3_multi(&multi) {
            Ok(b3) => b3.map(|b3| (b3, Source::B3Multi)),
            Err(e) => {
                out.rejected = Some(format!("x-b3: {e}"));
                None
            }
        }
    };
    if let Some((b3, source)) = b3 {
        out.parent = Some(RemoteParent {
            trace_id: b3.trace_id,
            span_id: b3.span_id,
            flags: b3.sampling.w3c_flags(),
            source,
        });
    }
    out
}

/// The context this service sends to a downstream: the client span is the
/// downstream's parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub traceparent: String,
    pub tracestate: Option<String>,
    pub b3: String,
}

/// The headers for a call made from `parent_span` (the server span) through
/// `client_span`.
pub fn outgoing(
    trace_id: TraceId,
    parent_span: SpanId,
    client_span: SpanId,
    flags: u8,
    trace_state: &TraceState,
) -> Outgoing {
    let sampled = if flags & FLAG_SAMPLED != 0 { '1' } else { '0' };
    Outgoing {
        traceparent: telemetry::format_traceparent(trace_id, client_span, flags).to_string(),
        tracestate: trace_state.header_value(),
        b3: format!("{trace_id}-{client_span}-{sampled}-{parent_span}"),
    }
}

#[cfg(test)]
mod tests;
