//! From an `ExportTraceServiceRequest` to rows for the store: validates each
//! span, derives the indexed columns, and keeps its encoding.
//!
//! A span is kept as its own protobuf encoding (every field, events and links
//! included): a protobuf request's span bytes as they came, sliced from the
//! body rather than decoded and encoded again (decoding to validate borrows
//! attribute strings from the body instead of allocating them), and a JSON
//! request's spans encoded once. Its resource and scope are kept once per distinct pair and
//! referenced by hash, so a batch of 512 spans from one process stores its
//! resource attributes once. An invalid span is rejected alone and counted in
//! the response's `partial_success`; the rest of the request is stored.

use crate::attrs::QueryString as _;
use crate::attrs::{UNKNOWN_SERVICE, wire_is_error};
use crate::otlp::{self, ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Value, wire};
use bytes::Bytes;
use prost::Message as _;
use std::collections::HashSet;
use std::sync::Arc;

/// Attribute keys indexed for tag queries unless the collector is told otherwise.
///
/// Selective keys only: a tag row per span costs ingest, and an index on
/// `http.request.method=GET` or a 200 status narrows nothing. Failures have
/// their own index (the error column); other keys are matched by scanning.
pub const DEFAULT_INDEXED_TAGS: &[&str] =
    &["http.route", "rpc.method", "peer.service", "db.system"];

/// One span as the store writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_id: Option<[u8; 8]>,
    pub service: Arc<str>,
    pub operation: String,
    pub kind: i32,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub error: bool,
    /// Hash of the resource and scope (see [`ResourceRow`]).
    pub resource: i64,
    /// The span's protobuf encoding (a slice of the request body when it came as protobuf).
    pub blob: Bytes,
    /// [`tag_hash`] of each indexed attribute.
    pub tags: Vec<i64>,
}

/// A resource and scope: `ResourceSpans` holding one `ScopeSpans` without spans.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRow {
    pub hash: i64,
    pub blob: Vec<u8>,
}

/// What one request contributes to the store.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    pub resources: Vec<ResourceRow>,
    pub spans: Vec<SpanRow>,
}

/// The outcome of preparing one request.
#[derive(Debug, Default)]
pub struct Prepared {
    pub batch: Batch,
    pub rejected: i64,
    /// Why the first few spans were rejected.
    pub reasons: Vec<String>,
    /// The trace id (hex) of the first rejected span, for the log line.
    pub first_rejected_trace: Option<String>,
}

impl Prepared {
    /// The `partial_success.error_message` for the response.
    pub fn message(&self) -> String {
        if self.rejected == 0 {
            return String::new();
        }
        let more = self.rejected - self.reasons.len() as i64;
        let mut message = format!(
            "{} span(s) rejected: {}",
            self.rejected,
            self.reasons.join("; ")
        );
        if more > 0 {
            message.push_str(&format!("; and {more} more"));
        }
        message
    }
}

/// FNV-1a: stable across runs and machines, which the stored hashes need.
pub fn fnv1a(parts: &[&[u8]]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// The tag index key of `key=value` (the value as a query string).
pub fn tag_hash(key: &str, value: &str) -> i64 {
    fnv1a(&[key.as_bytes(), value.as_bytes()])
}

/// The request's spans as rows, and the ones it had to reject.
///
/// For requests that arrive as protobuf, [`prepare_protobuf`] does the same
/// without decoding and re-encoding every span.
pub fn prepare(request: ExportTraceServiceRequest, indexed: &HashSet<String>) -> Prepared {
    let wire = wire::ExportTraceServiceRequest {
        resource_spans: request
            .resource_spans
            .into_iter()
            .map(|rs| wire::ResourceSpans {
                resource: rs.resource,
                scope_spans: rs
                    .scope_spans
                    .into_iter()
                    .map(|ss| wire::ScopeSpans {
                        scope: ss.scope,
                        spans: ss
                            .spans
                            .iter()
                            .map(|span| Bytes::from(span.encode_to_vec()))
                            .collect(),
                        schema_url: ss.schema_url,
                    })
                    .collect(),
                schema_url: rs.schema_url,
            })
            .collect(),
    };
    // Spans encoded from decoded messages decode again.
    prepare_wire(wire, indexed).unwrap_or_default()
}

/// [`prepare`] for an `ExportTraceServiceRequest` in protobuf: each span is
/// stored as the bytes it came in (unknown fields included, which decoding
/// skips when the span is read back).
///
/// # Errors
///
/// A body that is not an `ExportTraceServiceRequest` (as decoding it whole
/// would find): the whole request is refused then.
pub fn prepare_protobuf(body: Bytes, indexed: &HashSet<String>) -> Result<Prepared, String> {
    let request = wire::ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())?;
    prepare_wire(request, indexed)
}

fn prepare_wire(
    request: wire::ExportTraceServiceRequest,
    indexed: &HashSet<String>,
) -> Result<Prepared, String> {
    let mut out = Prepared::default();
    let mut seen_resources = HashSet::new();
    // Decoded into again and again: its attribute vector keeps its capacity,
    // so a span costs no allocation for it.
    let mut span = wire::Span::default();
    let indexed = IndexedKeys::new(indexed);
    for rs in request.resource_spans {
        let wire::ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        } = rs;
        let service: Arc<str> = resource
            .as_ref()
            .and_then(|r| otlp::attribute(&r.attributes, "service.name"))
            .map_or_else(
                || UNKNOWN_SERVICE.to_string(),
                |v| match v {
                    Value::String(s) if !s.is_empty() => s.clone(),
                    Value::String(_) => UNKNOWN_SERVICE.to_string(),
                    other => other.to_query_string(),
                },
            )
            .into();
        for ss in scope_spans {
            let wire::ScopeSpans {
                scope,
                spans,
                schema_url: scope_schema_url,
            } = ss;
            let header = ResourceSpans {
                resource: resource.clone(),
                scope_spans: vec![ScopeSpans {
                    scope,
                    spans: Vec::new(),
                    schema_url: scope_schema_url,
                }],
                schema_url: schema_url.clone(),
            };
            let blob = header.encode_to_vec();
            let hash = fnv1a(&[&blob]);
            if seen_resources.insert(hash) {
                out.batch.resources.push(ResourceRow { hash, blob });
            }
            for encoded in spans {
                decode_span(&encoded, &mut span)?;
                match row(&span, &service, hash, &indexed) {
                    Ok(mut row) => {
                        row.blob = encoded;
                        out.batch.spans.push(row);
                    }
                    Err(reason) => {
                        out.rejected += 1;
                        if out.reasons.len() < 3 {
                            out.reasons
                                .push(format!("span {:?}: {reason}", hex(&span.span_id)));
                        }
                        if out.first_rejected_trace.is_none() {
                            out.first_rejected_trace = Some(hex(&span.trace_id));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Decodes one span's encoding into `span` (cleared first, so this is
/// `decode`), with the UTF-8 checks decoding it as [`otlp::Span`] makes.
fn decode_span(encoded: &Bytes, span: &mut wire::Span) -> Result<(), String> {
    span.clear();
    span.merge(encoded.clone()).map_err(|e| e.to_string())?;
    for kv in &span.attributes {
        let key_ok = std::str::from_utf8(&kv.key).is_ok();
        let value_ok = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(wire::Value::String(s)) => std::str::from_utf8(s).is_ok(),
            _ => true,
        };
        if !key_ok || !value_ok {
            return Err(
                "failed to decode Protobuf message: KeyValue: invalid string value: data is not UTF-8 encoded"
                    .into(),
            );
        }
    }
    Ok(())
}

/// The tag-indexed keys as a span's attributes are checked against them:
/// a handful of keys (the usual case) are compared as bytes, which is
/// cheaper per attribute than hashing the key; many go through the set.
enum IndexedKeys<'a> {
    Few(Vec<&'a [u8]>),
    Many(&'a HashSet<String>),
}

impl<'a> IndexedKeys<'a> {
    fn new(indexed: &'a HashSet<String>) -> IndexedKeys<'a> {
        if indexed.len() <= 8 {
            IndexedKeys::Few(indexed.iter().map(|k| k.as_bytes()).collect())
        } else {
            IndexedKeys::Many(indexed)
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        match self {
            IndexedKeys::Few(keys) => keys.contains(&key),
            IndexedKeys::Many(set) => std::str::from_utf8(key).is_ok_and(|k| set.contains(k)),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn row(
    span: &wire::Span,
    service: &Arc<str>,
    resource: i64,
    indexed: &IndexedKeys<'_>,
) -> Result<SpanRow, String> {
    let trace_id: [u8; 16] = span.trace_id[..]
        .try_into()
        .map_err(|_| format!("trace id has {} bytes, want 16", span.trace_id.len()))?;
    if trace_id == [0; 16] {
        return Err("trace id is all zeros".into());
    }
    let span_id: [u8; 8] = span.span_id[..]
        .try_into()
        .map_err(|_| format!("span id has {} bytes, want 8", span.span_id.len()))?;
    if span_id == [0; 8] {
        return Err("span id is all zeros".into());
    }
    let parent_id = match span.parent_span_id.len() {
        0 => None,
        8 => {
            let p: [u8; 8] = span.parent_span_id[..].try_into().unwrap_or([0; 8]);
            (p != [0; 8]).then_some(p)
        }
        n => return Err(format!("parent span id has {n} bytes, want 8 or none")),
    };
    if span.start_time_unix_nano == 0 {
        return Err("start time is missing".into());
    }
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err("end time is before start time".into());
    }
    let start_ns = i64::try_from(span.start_time_unix_nano)
        .map_err(|_| "start time is past the year 2262".to_string())?;
    let duration_ns = i64::try_from(span.end_time_unix_nano - span.start_time_unix_nano)
        .map_err(|_| "duration is too long".to_string())?;
    let tags = span
        .attributes
        .iter()
        .filter_map(|kv| {
            if !indexed.contains(&kv.key) {
                return None;
            }
            let key = std::str::from_utf8(&kv.key).ok()?;
            Some(match kv.value.as_ref()?.value.as_ref()? {
                // The query string of a string value is its bytes (checked UTF-8).
                wire::Value::String(s) => fnv1a(&[key.as_bytes(), s]),
                v => tag_hash(key, &v.to_query_string()),
            })
        })
        .collect();
    Ok(SpanRow {
        trace_id,
        span_id,
        parent_id,
        service: service.clone(),
        operation: span.name.clone(),
        kind: span.kind,
        start_ns,
        duration_ns,
        error: wire_is_error(span),
        resource,
        blob: Bytes::new(),
        tags,
    })
}
