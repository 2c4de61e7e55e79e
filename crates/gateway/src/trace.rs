//! W3C Trace Context at the edge: keep a valid incoming trace, start one otherwise.
//!
//! `tracestate` follows the processing rules of Trace Context level 2: it is only
//! read when `traceparent` is valid; several headers are combined in order; empty
//! members are skipped; a member with an invalid key or value, or more than 32
//! members, discards the whole list; a duplicated key keeps the list with the key's
//! first member (the gateway adds no member of its own).

use crate::h1::Fields;
use std::cell::Cell;
use std::hash::{BuildHasher as _, Hasher as _};
pub use telemetry::Text;
use telemetry::{FLAG_RANDOM, FLAG_SAMPLED, SpanId, TraceId};

/// The trace a request carries upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// 32 lowercase hex digits.
    pub trace_id: Text<32>,
    /// The gateway's span id, 16 lowercase hex digits: the upstream request's parent.
    pub span_id: Text<16>,
    /// The caller's span id, when the trace was continued.
    pub parent_span_id: Option<Text<16>>,
    /// The `traceparent` value sent upstream.
    pub traceparent: Text<55>,
    /// The `tracestate` value sent upstream, if any.
    pub tracestate: Option<String>,
    /// False when the trace was started here (any incoming `tracestate` is then dropped).
    pub continued: bool,
}

/// Reads `traceparent` from the request headers; a missing, duplicate or invalid one
/// starts a new trace with random ids and the sampled and random-trace-id flags.
pub fn at_edge(headers: &impl Fields) -> Trace {
    let span_id = random_span_id();
    let mut values = headers.values("traceparent");
    let incoming = match (values.next(), values.next()) {
        (Some(v), None) => telemetry::parse_traceparent(v).ok(),
        _ => None,
    };
    match incoming {
        Some(parent) => Trace {
            traceparent: telemetry::format_traceparent(parent.trace_id, span_id, parent.flags),
            trace_id: parent.trace_id.hex(),
            span_id: span_id.hex(),
            parent_span_id: Some(parent.parent_id.hex()),
            tracestate: tracestate(headers),
            continued: true,
        },
        None => {
            let trace_id = random_trace_id();
            Trace {
                traceparent: telemetry::format_traceparent(
                    trace_id,
                    span_id,
                    FLAG_SAMPLED | FLAG_RANDOM,
                ),
                trace_id: trace_id.hex(),
                span_id: span_id.hex(),
                parent_span_id: None,
                tracestate: None,
                continued: false,
            }
        }
    }
}

/// Every `tracestate` header combined into one valid list, or `None` (none sent,
/// only empty members, or invalid: then the whole list is discarded).
fn tracestate(headers: &impl Fields) -> Option<String> {
    let members = telemetry::parse_tracestate(headers.values("tracestate")).ok()?;
    telemetry::tracestate_value(&members)
}

/// A random version-4 UUID, for requests that come without `x-request-id`.
pub fn request_id() -> String {
    let (a, b) = (random_u64(), random_u64());
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let mut out = String::with_capacity(36);
    push_hex(&mut out, a >> 32, 8);
    out.push('-');
    push_hex(&mut out, a >> 16, 4);
    out.push('-');
    push_hex(&mut out, a, 4);
    out.push('-');
    push_hex(&mut out, b >> 48, 4);
    out.push('-');
    push_hex(&mut out, b, 12);
    out
}

/// The low `digits` hex digits of `word`, lowercase.
fn push_hex(out: &mut String, word: u64, digits: u32) {
    for shift in (0..digits).rev() {
        out.push(char::from(hex_digit(word >> (shift * 4))));
    }
}

/// The lowercase hex digit of `word`'s lowest four bits.
fn hex_digit(word: u64) -> u8 {
    b"0123456789abcdef"[(word & 0xf) as usize]
}

/// A random trace id (never zero: zero is invalid).
fn random_trace_id() -> TraceId {
    loop {
        let value = (u128::from(random_u64()) << 64) | u128::from(random_u64());
        if let Some(id) = TraceId::new(value) {
            return id;
        }
    }
}

/// A random span id (never zero: zero is invalid).
fn random_span_id() -> SpanId {
    loop {
        if let Some(id) = SpanId::new(random_u64()) {
            return id;
        }
    }
}

/// splitmix64 per thread, seeded from the standard library's random hash keys:
/// unpredictable enough for trace ids, and no lock on the request path.
fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(std::process::id() as usize);
            h.finish()
        });
    }
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::HeaderMap;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("traceparent", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn valid_traceparent_keeps_its_trace_and_gets_a_new_parent() {
        let t = at_edge(&headers(&[
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ]));
        assert!(t.continued);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        assert_eq!(
            t.traceparent.as_str(),
            format!("00-{}-{}-01", t.trace_id, t.span_id)
        );
    }

    #[test]
    fn missing_or_invalid_traceparent_starts_a_new_trace() {
        for bad in [
            &[][..],
            &["00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"],
            &["00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
            &["00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"],
            &["ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
            &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"],
            &["00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"],
            &[
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ],
        ] {
            let t = at_edge(&headers(bad));
            assert!(!t.continued, "{bad:?}");
            assert_eq!(t.trace_id.len(), 32);
            assert_ne!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(
                t.traceparent.as_str(),
                format!("00-{}-{}-03", t.trace_id, t.span_id)
            );
        }
        assert_ne!(
            at_edge(&headers(&[])).trace_id,
            at_edge(&headers(&[])).trace_id
        );
    }

    #[test]
    fn request_ids_are_version_4_uuids() {
        for _ in 0..100 {
            let id = request_id();
            let b = id.as_bytes();
            assert_eq!(b.len(), 36, "{id}");
            for (i, &c) in b.iter().enumerate() {
                if [8, 13, 18, 23].contains(&i) {
                    assert_eq!(c, b'-', "{id}");
                } else {
                    assert!(matches!(c, b'0'..=b'9' | b'a'..=b'f'), "{id}");
                }
            }
            assert_eq!(b[14], b'4', "{id}");
            assert!(matches!(b[19], b'8' | b'9' | b'a' | b'b'), "{id}");
        }
        assert_ne!(request_id(), request_id());
    }
}
