//! Every traceparent / tracestate / B3 rule, one table row each. The W3C rows
//! mirror the cases the official W3C test harness (strict level 2) sends.

use super::*;
use hyper::header::{HeaderName, HeaderValue};

const TRACE: &str = "12345678901234567890123456789012";
const PARENT: &str = "1234567890123456";

fn b3(trace: &str, span: &str, parent: Option<&str>, sampling: Sampling) -> B3 {
    B3 {
        trace_id: TraceId::from_hex(trace).unwrap(),
        span_id: SpanId::from_hex(span).unwrap(),
        parent_span_id: parent.map(|p| SpanId::from_hex(p).unwrap()),
        sampling,
    }
}

#[test]
fn b3_single_header_rules() {
    let check = |value: &str, expect: Result<B3Single, B3Error>| {
        assert_eq!(parse_b3_single(value.as_bytes()), expect, "b3 {value:?}");
    };
    let t128 = "80f198ee56343ba864fe8b2a57d3eff7";
    let span = "e457b5a2e4d86bd1";
    let parent = "05e3ac9a4f6e3b90";
    check(
        &format!("{t128}-{span}-1-{parent}"),
        Ok(B3Single::Context(b3(
            t128,
            span,
            Some(parent),
            Sampling::Accept,
        ))),
    );
    check(
        &format!("{t128}-{span}"),
        Ok(B3Single::Context(b3(t128, span, None, Sampling::Defer))),
    );
    check(
        &format!("{t128}-{span}-d"),
        Ok(B3Single::Context(b3(t128, span, None, Sampling::Debug))),
    );
    check(
        &format!("{t128}-{span}-0"),
        Ok(B3Single::Context(b3(t128, span, None, Sampling::Deny))),
    );
    // 64-bit trace ids are left-padded to 128 bits.
    check(
        &format!("64fe8b2a57d3eff7-{span}-1"),
        Ok(B3Single::Context(b3(
            "000000000000000064fe8b2a57d3eff7",
            span,
            None,
            Sampling::Accept,
        ))),
    );
    check("0", Ok(B3Single::SamplingOnly(Sampling::Deny)));
    check("1", Ok(B3Single::SamplingOnly(Sampling::Accept)));
    check("d", Ok(B3Single::SamplingOnly(Sampling::Debug)));
    check("x", Err(B3Error::Sampling));
    check(&format!("{t128}-{span}-x"), Err(B3Error::Sampling));
    check(
        &format!("{}-{span}-1", "0".repeat(32)),
        Err(B3Error::TraceId),
    );
    check(&format!("{}-{span}-1", &t128[..20]), Err(B3Error::TraceId));
    check(
        &format!("{}-{span}-1", t128.to_uppercase()),
        Err(B3Error::TraceId),
    );
    check(
        &format!("{t128}-{}-1", "0".repeat(16)),
        Err(B3Error::SpanId),
    );
    check(&format!("{t128}-{}-1", &span[..15]), Err(B3Error::SpanId));
    check(&format!("{t128}-{span}-1-xyz"), Err(B3Error::ParentSpanId));
    check(&format!("{t128}-{span}-1-{parent}-x"), Err(B3Error::Fields));
}

#[test]
fn b3_multi_header_rules() {
    let t64 = "463ac35c9f6413ad";
    let span = "a2fb4a1d1a96d312";
    let parent = "0020000000000001";
    let multi = |trace, span, parent, sampled, flags| B3Multi {
        trace_id: trace,
        span_id: span,
        parent_span_id: parent,
        sampled,
        flags,
    };
    let check = |headers: B3Multi<'_>, expect: Result<Option<B3>, B3Error>| {
        assert_eq!(parse_b3_multi(&headers), expect, "{headers:?}");
    };
    let padded = "0000000000000000463ac35c9f6413ad";
    check(
        multi(
            Some(t64.as_bytes()),
            Some(span.as_bytes()),
            Some(parent.as_bytes()),
            Some(b"1"),
            None,
        ),
        Ok(Some(b3(padded, span, Some(parent), Sampling::Accept))),
    );
    check(
        multi(
            Some(t64.as_bytes()),
            Some(span.as_bytes()),
            None,
            Some(b"0"),
            None,
        ),
        Ok(Some(b3(padded, span, None, Sampling::Deny))),
    );
    check(
        multi(
            Some(t64.as_bytes()),
            Some(span.as_bytes()),
            None,
            Some(b"true"),
            None,
        ),
        Ok(Some(b3(padded, span, None, Sampling::Accept))),
    );
    // X-B3-Flags: 1 is debug, which implies sampled.
    check(
        multi(
            Some(t64.as_bytes()),
            Some(span.as_bytes()),
            None,
            Some(b"0"),
            Some(b"1"),
        ),
        Ok(Some(b3(padded, span, None, Sampling::Debug))),
    );
    check(
        multi(
            Some(t64.as_bytes()),
            Some(span.as_bytes()),
            None,
            None,
            None,
        ),
        Ok(Some(b3(padded, span, None, Sampling::Defer))),
    );
    check(multi(None, None, None, Some(b"1"), None), Ok(None));
    check(
        multi(Some(t64.as_bytes()), None, None, None, None),
        Err(B3Error::Incomplete),
    );
    check(
        multi(None, Some(span.as_bytes()), None, None, None),
        Err(B3Error::Incomplete),
    );
    check(
        multi(Some(b"xyz"), Some(span.as_bytes()), None, None, None),
        Err(B3Error::TraceId),
    );
    check(
        multi(
            Some(t64.as_bytes()),
            Some(span.as_bytes()),
            None,
            Some(b"2"),
            None,
        ),
        Err(B3Error::Sampling),
    );
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// `expect`: the parent's (trace id, span id, flags, source), the forwarded
/// tracestate, and whether a rejection was noted.
fn check_extract(
    pairs: &[(&str, &str)],
    parent: Option<(&str, &str, u8, Source)>,
    tracestate: Option<&str>,
    rejected: bool,
) {
    let got = extract(&headers(pairs));
    let got_parent = got.parent.map(|p| {
        (
            p.trace_id.to_string(),
            p.span_id.to_string(),
            p.flags,
            p.source,
        )
    });
    let parent = parent.map(|(t, s, f, src)| (t.to_string(), s.to_string(), f, src));
    assert_eq!(got_parent, parent, "{pairs:?}");
    assert_eq!(
        got.trace_state.header_value().as_deref(),
        tracestate,
        "{pairs:?}"
    );
    assert_eq!(
        got.rejected.is_some(),
        rejected,
        "{pairs:?}: {:?}",
        got.rejected
    );
}

#[test]
fn extraction_follows_the_processing_rules() {
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let w3c = Some((TRACE, PARENT, 1, Source::W3c));
    check_extract(&[], None, None, false);
    check_extract(&[("traceparent", &tp)], w3c, None, false);
    // Header names are case-insensitive (HeaderMap lowercases them).
    check_extract(
        &[("TraceParent", &tp), ("TRACESTATE", "foo=1")],
        w3c,
        Some("foo=1"),
        false,
    );
    check_extract(
        &[
            ("traceparent", &tp),
            ("tracestate", "foo=1"),
            ("tracestate", "bar=2"),
        ],
        w3c,
        Some("foo=1,bar=2"),
        false,
    );
    // Two traceparent headers: a new trace.
    check_extract(
        &[("traceparent", &tp), ("traceparent", &tp)],
        None,
        None,
        true,
    );
    // Wrong names are not trace context.
    check_extract(&[("trace-parent", &tp)], None, None, false);
    check_extract(
        &[("traceparent", &tp), ("trace-state", "foo=1")],
        w3c,
        None,
        false,
    );
    // An invalid traceparent drops the tracestate with it.
    check_extract(
        &[
            ("traceparent", &format!("ff-{TRACE}-{PARENT}-01")),
            ("tracestate", "foo=1"),
        ],
        None,
        None,
        true,
    );
    // A tracestate without a traceparent is not forwarded.
    check_extract(&[("tracestate", "foo=1")], None, None, false);
    // An invalid tracestate is discarded; the trace continues.
    check_extract(
        &[("traceparent", &tp), ("tracestate", "foo=1,@bar=2")],
        w3c,
        None,
        true,
    );
    // B3 single, then B3 multi, only without a traceparent.
    let b3_trace = "80f198ee56343ba864fe8b2a57d3eff7";
    check_extract(
        &[(
            "b3",
            &format!("{b3_trace}-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90"),
        )],
        Some((b3_trace, "e457b5a2e4d86bd1", 0, Source::B3Single)),
        None,
        false,
    );
    check_extract(
        &[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("X-B3-SpanId", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
        ],
        Some((
            "0000000000000000463ac35c9f6413ad",
            "a2fb4a1d1a96d312",
            1,
            Source::B3Multi,
        )),
        None,
        false,
    );
    check_extract(
        &[
            ("traceparent", &tp),
            ("b3", &format!("{b3_trace}-e457b5a2e4d86bd1-1")),
        ],
        w3c,
        None,
        false,
    );
    check_extract(&[("b3", "garbage")], None, None, true);
    check_extract(&[("x-b3-traceid", "463ac35c9f6413ad")], None, None, true);
    // The sampling-only form starts a new trace with that decision.
    let got = extract(&headers(&[("b3", "0")]));
    assert_eq!((got.parent, got.new_trace_flags), (None, 0));
}

#[test]
fn outgoing_headers_carry_the_client_span() {
    let trace = TraceId::from_hex(TRACE).unwrap();
    let server = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let client = SpanId::from_hex("b7ad6b7169203331").unwrap();
    let ts = TraceState::parse([&b"foo=1"[..]]).unwrap();
    let out = outgoing(trace, server, client, FLAG_SAMPLED, &ts);
    assert_eq!(
        out,
        Outgoing {
            traceparent: format!("00-{TRACE}-b7ad6b7169203331-01"),
            tracestate: Some("foo=1".into()),
            b3: format!("{TRACE}-b7ad6b7169203331-1-00f067aa0ba902b7"),
        }
    );
    let out = outgoing(trace, server, client, 0, &TraceState::default());
    assert_eq!(out.traceparent, format!("00-{TRACE}-b7ad6b7169203331-00"));
    assert_eq!(out.tracestate, None);
    assert!(out.b3.contains("-0-"));
    // What this service sends, it parses back.
    let back = parse_traceparent(out.traceparent.as_bytes()).unwrap();
    assert_eq!((back.trace_id, back.parent_id), (trace, client));
}
