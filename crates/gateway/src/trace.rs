//! W3C Trace Context at the edge: keep a valid incoming trace, start one otherwise.

use hyper::header::HeaderMap;
use std::cell::Cell;
use std::hash::{BuildHasher as _, Hasher as _};

/// The trace a request carries upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The gateway's span id, 16 lowercase hex digits: the upstream request's parent.
    pub span_id: String,
    /// The `traceparent` value sent upstream.
    pub traceparent: String,
    /// False when the trace was started here (any incoming `tracestate` is then dropped).
    pub continued: bool,
}

/// Reads `traceparent` from the request headers; a missing, duplicate or invalid one
/// starts a new trace with random ids and the sampled and random-trace-id flags.
pub fn at_edge(headers: &HeaderMap) -> Trace {
    let span_id = hex_nonzero(1);
    let mut values = headers.get_all("traceparent").iter();
    let incoming = match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok().and_then(parse),
        _ => None,
    };
    match incoming {
        Some((trace_id, flags)) => Trace {
            traceparent: format!("00-{trace_id}-{span_id}-{flags}"),
            trace_id,
            span_id,
            continued: true,
        },
        None => {
            let trace_id = hex_nonzero(2);
            Trace {
                traceparent: format!("00-{trace_id}-{span_id}-03"),
                trace_id,
                span_id,
                continued: false,
            }
        }
    }
}

/// `(trace_id, flags)` of a valid `traceparent`.
fn parse(value: &str) -> Option<(String, String)> {
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
    Some((value[3..35].to_string(), value[53..55].to_string()))
}

/// `words` random 64-bit words as lowercase hex, never all zero.
fn hex_nonzero(words: usize) -> String {
    loop {
        let parts: Vec<u64> = (0..words).map(|_| random_u64()).collect();
        if parts.iter().any(|&w| w != 0) {
            return parts.iter().map(|w| format!("{w:016x}")).collect();
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
        assert_eq!(t.traceparent, format!("00-{}-{}-01", t.trace_id, t.span_id));
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
            assert_eq!(t.traceparent, format!("00-{}-{}-03", t.trace_id, t.span_id));
        }
        assert_ne!(
            at_edge(&headers(&[])).trace_id,
            at_edge(&headers(&[])).trace_id
        );
    }
}
