//! W3C Trace Context at the edge: keep a valid incoming trace, start one otherwise.
//!
//! `tracestate` follows the processing rules of Trace Context level 2: it is only
//! read when `traceparent` is valid; several headers are combined in order; empty
//! members are skipped; a member with an invalid key or value, a duplicated key, or
//! more than 32 members discards the whole list (the gateway adds no member of its own).

use crate::h1::Fields;
use std::cell::Cell;
use std::hash::{BuildHasher as _, Hasher as _};

/// Fixed-length ASCII text held inline, so an id costs no allocation per request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize>([u8; N]);

impl<const N: usize> Text<N> {
    /// `text` when it is exactly `N` ASCII bytes.
    fn new(text: &[u8]) -> Option<Text<N>> {
        if !text.is_ascii() {
            return None;
        }
        text.try_into().ok().map(Text)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> std::ops::Deref for Text<N> {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> std::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> std::fmt::Display for Text<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq<&str> for Text<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

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
    let span_id = random_id::<16>();
    let mut values = headers.values("traceparent");
    let incoming = match (values.next(), values.next()) {
        (Some(v), None) => std::str::from_utf8(v).ok().and_then(parse),
        _ => None,
    };
    match incoming {
        Some((trace_id, parent, flags)) => Trace {
            traceparent: traceparent(&trace_id, &span_id, flags),
            trace_id,
            span_id,
            parent_span_id: Some(parent),
            tracestate: tracestate(headers),
            continued: true,
        },
        None => {
            let trace_id = random_id::<32>();
            Trace {
                traceparent: traceparent(&trace_id, &span_id, *b"03"),
                trace_id,
                span_id,
                parent_span_id: None,
                tracestate: None,
                continued: false,
            }
        }
    }
}

/// `00-{trace_id}-{span_id}-{flags}`.
fn traceparent(trace_id: &Text<32>, span_id: &Text<16>, flags: [u8; 2]) -> Text<55> {
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    out[3..35].copy_from_slice(&trace_id.0);
    out[35] = b'-';
    out[36..52].copy_from_slice(&span_id.0);
    out[52] = b'-';
    out[53..].copy_from_slice(&flags);
    Text(out)
}

/// Every `tracestate` header combined into one valid list, or `None` (none sent,
/// only empty members, or invalid: then the whole list is discarded).
fn tracestate(headers: &impl Fields) -> Option<String> {
    let mut members = Vec::new();
    for value in headers.values("tracestate") {
        let text = std::str::from_utf8(value).ok()?;
        telemetry::push_members(text, &mut members).ok()?;
    }
    if members.is_empty() || members.len() > telemetry::MAX_TRACESTATE_MEMBERS {
        return None;
    }
    Some(
        members
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
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

/// `(trace_id, parent_id, flags)` of a valid `traceparent`.
fn parse(value: &str) -> Option<(Text<32>, Text<16>, [u8; 2])> {
    let b = value.as_bytes();
    let lower_hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let (version, trace, parent, flags) = (&b[0..2], &b[3..35], &b[36..52], &b[53..55]);
    if !lower_hex(version)
        || version == b"ff"
        || !lower_hex(trace)
        || !lower_hex(parent)
        || !lower_hex(flags)
    {
        return None;
    }
    // Version 00 has exactly these fields; a later version may append `-...`.
    if (version == b"00" && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
        return None;
    }
    if trace.iter().all(|&c| c == b'0') || parent.iter().all(|&c| c == b'0') {
        return None;
    }
    Some((Text::new(trace)?, Text::new(parent)?, [flags[0], flags[1]]))
}

/// `N` random lowercase hex digits (16 or 32), never all zero.
fn random_id<const N: usize>() -> Text<N> {
    loop {
        let mut out = [b'0'; N];
        for chunk in out.chunks_mut(16) {
            let word = random_u64();
            for (i, digit) in chunk.iter_mut().enumerate() {
                *digit = hex_digit(word >> ((15 - i) * 4));
            }
        }
        if out.iter().any(|&d| d != b'0') {
            return Text(out);
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
