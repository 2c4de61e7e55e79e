//! Every traceparent / tracestate / B3 rule, one table row each. The W3C rows
//! mirror the cases the official W3C test harness (strict level 2) sends.

use super::*;
use hyper::header::{HeaderName, HeaderValue};

const TRACE: &str = "12345678901234567890123456789012";
const PARENT: &str = "1234567890123456";

/// `expect`: `Ok((trace_id, parent_id, flags))` or the error.
fn check_traceparent(value: &str, expect: Result<(&str, &str, u8), TraceParentError>) {
    let got = parse_traceparent(value.as_bytes())
        .map(|tp| (tp.trace_id.to_string(), tp.parent_id.to_string(), tp.flags));
    let expect = expect.map(|(t, p, f)| (t.to_string(), p.to_string(), f));
    assert_eq!(got, expect, "traceparent {value:?}");
}

#[test]
fn traceparent_rules() {
    use TraceParentError as E;
    let ok = Ok((TRACE, PARENT, 1));
    check_traceparent(&format!("00-{TRACE}-{PARENT}-01"), ok);
    check_traceparent(&format!("00-{TRACE}-{PARENT}-00"), Ok((TRACE, PARENT, 0)));
    // Surrounding spaces and tabs are OWS, not part of the value.
    check_traceparent(&format!(" 00-{TRACE}-{PARENT}-01"), ok);
    check_traceparent(&format!("\t00-{TRACE}-{PARENT}-01"), ok);
    check_traceparent(&format!("00-{TRACE}-{PARENT}-01 "), ok);
    check_traceparent(&format!("\t 00-{TRACE}-{PARENT}-01 \t"), ok);
    // Version 00 is exactly 55 characters.
    check_traceparent(&format!("00-{TRACE}-{PARENT}-01."), Err(E::TrailingData));
    check_traceparent(
        &format!("00-{TRACE}-{PARENT}-01-what-the-future-will-be-like"),
        Err(E::TrailingData),
    );
    // Future versions: parsed by their 00 prefix, extra fields after a '-'.
    check_traceparent(&format!("cc-{TRACE}-{PARENT}-01"), ok);
    check_traceparent(
        &format!("cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"),
        ok,
    );
    check_traceparent(
        &format!("cc-{TRACE}-{PARENT}-01.what-the-future-will-be-like"),
        Err(E::FutureSuffix),
    );
    // Only `sampled` survives from a future version's flags.
    check_traceparent(&format!("01-{TRACE}-{PARENT}-ff"), ok);
    // Unknown flag bits are cleared, sampled and random kept.
    check_traceparent(&format!("00-{TRACE}-{PARENT}-ff"), Ok((TRACE, PARENT, 3)));
    check_traceparent(&format!("ff-{TRACE}-{PARENT}-01"), Err(E::VersionFf));
    check_traceparent(&format!(".0-{TRACE}-{PARENT}-01"), Err(E::Version));
    check_traceparent(&format!("0.-{TRACE}-{PARENT}-01"), Err(E::Version));
    check_traceparent(&format!("0A-{TRACE}-{PARENT}-01"), Err(E::Version));
    check_traceparent(&format!("000-{TRACE}-{PARENT}-01"), Err(E::Separator));
    check_traceparent(&format!("0000-{TRACE}-{PARENT}-01"), Err(E::Separator));
    check_traceparent(&format!("0-{TRACE}-{PARENT}-01"), Err(E::TooShort));
    check_traceparent(
        &format!("00-{}-{PARENT}-01", "0".repeat(32)),
        Err(E::TraceId),
    );
    check_traceparent(
        &format!("00-.2345678901234567890123456789012-{PARENT}-01"),
        Err(E::TraceId),
    );
    check_traceparent(
        &format!("00-1234567890123456789012345678901.-{PARENT}-01"),
        Err(E::TraceId),
    );
    // Uppercase hex is not hex here.
    check_traceparent(
        &format!("00-{}-{PARENT}-01", TRACE.replace('1', "A")),
        Err(E::TraceId),
    );
    check_traceparent(
        &format!("00-4BF92F3577B34DA6A3CE929D0E0E4736-{PARENT}-01"),
        Err(E::TraceId),
    );
    check_traceparent(
        &format!("00-123456789012345678901234567890123-{PARENT}-01"),
        Err(E::Separator),
    );
    check_traceparent(
        &format!("00-1234567890123456789012345678901-{PARENT}-01"),
        Err(E::TooShort),
    );
    check_traceparent(&format!("00-{TRACE}-0000000000000000-01"), Err(E::ParentId));
    check_traceparent(&format!("00-{TRACE}-.234567890123456-01"), Err(E::ParentId));
    check_traceparent(&format!("00-{TRACE}-123456789012345.-01"), Err(E::ParentId));
    check_traceparent(&format!("00-{TRACE}-00F067AA0BA902B7-01"), Err(E::ParentId));
    check_traceparent(
        &format!("00-{TRACE}-12345678901234567-01"),
        Err(E::Separator),
    );
    check_traceparent(&format!("00-{TRACE}-123456789012345-01"), Err(E::TooShort));
    check_traceparent(&format!("00-{TRACE}-{PARENT}-.0"), Err(E::Flags));
    check_traceparent(&format!("00-{TRACE}-{PARENT}-0."), Err(E::Flags));
    check_traceparent(&format!("00-{TRACE}-{PARENT}-0F"), Err(E::Flags));
    check_traceparent(&format!("00-{TRACE}-{PARENT}-001"), Err(E::TrailingData));
    check_traceparent(&format!("00-{TRACE}-{PARENT}-1"), Err(E::TooShort));
    check_traceparent("", Err(E::TooShort));
    // Non-ASCII must not panic on a char boundary.
    check_traceparent(&format!("é-{TRACE}-{PARENT}-01"), Err(E::Version));
    check_traceparent(&format!("00-{TRACE}-{PARENT}-é"), Err(E::Flags));
}

/// `expect`: `Ok(members)` or the error.
fn check_tracestate(headers: &[&str], expect: Result<&[(&str, &str)], TraceStateError>) {
    let got = parse_tracestate(headers.iter().map(|h| h.as_bytes()));
    let expect = expect.map(|members| TraceState {
        members: members
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    });
    assert_eq!(got, expect, "tracestate {headers:?}");
}

#[test]
fn tracestate_rules() {
    use TraceStateError as E;
    let foo: &[(&str, &str)] = &[("foo", "1")];
    check_tracestate(&["foo=1"], Ok(foo));
    check_tracestate(&["foo=1,bar=2"], Ok(&[("foo", "1"), ("bar", "2")]));
    // Several headers combine in order.
    check_tracestate(
        &["foo=1,bar=2", "rojo=1,congo=2", "baz=3"],
        Ok(&[
            ("foo", "1"),
            ("bar", "2"),
            ("rojo", "1"),
            ("congo", "2"),
            ("baz", "3"),
        ]),
    );
    // Empty headers and empty members are allowed.
    check_tracestate(&[""], Ok(&[]));
    check_tracestate(&["foo=1", ""], Ok(foo));
    check_tracestate(&["", "foo=1"], Ok(foo));
    check_tracestate(&["foo=1,,"], Ok(foo));
    check_tracestate(&[" , foo=1 ,\t"], Ok(foo));
    // Optional whitespace around members.
    check_tracestate(
        &["foo=1 \t , \t bar=2, \t baz=3"],
        Ok(&[("foo", "1"), ("bar", "2"), ("baz", "3")]),
    );
    check_tracestate(&["\t foo=1 \t"], Ok(foo));
    // Every allowed key and value character.
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let value: String = (0x20u8..=0x7e)
        .filter(|&c| c != b',' && c != b'=')
        .map(char::from)
        .collect();
    check_tracestate(&[&format!("{key}={value}")], Ok(&[(key, &value)]));
    let vendor_key = format!("{key}@a-z0-9_-*/");
    check_tracestate(
        &[&format!("{vendor_key}={value}")],
        Ok(&[(&vendor_key, &value)]),
    );
    // Spaces inside a value are fine, but not at its end (that is OWS, trimmed).
    check_tracestate(&["foo=a b"], Ok(&[("foo", "a b")]));
    check_tracestate(&["foo= 1"], Ok(&[("foo", " 1")]));
    // Duplicated keys discard the whole list, also across headers.
    check_tracestate(&["foo=1,foo=1"], Err(E::DuplicateKey("foo".into())));
    check_tracestate(&["foo=1,foo=2"], Err(E::DuplicateKey("foo".into())));
    check_tracestate(&["foo=1", "foo=2"], Err(E::DuplicateKey("foo".into())));
    // Invalid keys.
    check_tracestate(&["foo =1"], Err(E::Member("foo =1".into())));
    check_tracestate(&["FOO=1"], Err(E::Member("FOO=1".into())));
    check_tracestate(&["foo.bar=1"], Err(E::Member("foo.bar=1".into())));
    check_tracestate(&["1foo=1"], Err(E::Member("1foo=1".into())));
    check_tracestate(&["foo@=1,bar=2"], Err(E::Member("foo@=1".into())));
    check_tracestate(&["@foo=1,bar=2"], Err(E::Member("@foo=1".into())));
    check_tracestate(&["foo@@bar=1,bar=2"], Err(E::Member("foo@@bar=1".into())));
    check_tracestate(
        &["foo@bar@baz=1,bar=2"],
        Err(E::Member("foo@bar@baz=1".into())),
    );
    check_tracestate(&["foo@1bar=1"], Err(E::Member("foo@1bar=1".into())));
    check_tracestate(&["1tenant@vendor=1"], Ok(&[("1tenant@vendor", "1")]));
    // Invalid values.
    check_tracestate(&["foo=bar=baz"], Err(E::Member("foo=bar=baz".into())));
    check_tracestate(&["foo=,bar=3"], Err(E::Member("foo=".into())));
    check_tracestate(&["foo"], Err(E::Member("foo".into())));
    check_tracestate(&["foo=\u{7f}"], Err(E::Member("foo=\u{7f}".into())));
    check_tracestate(&["foo=é"], Err(E::Member("foo=é".into())));
    // Key length limits: 256 simple; 241 tenant and 14 system.
    let z256 = "z".repeat(256);
    check_tracestate(
        &["foo=1", &format!("{z256}=1")],
        Ok(&[("foo", "1"), (&z256, "1")]),
    );
    let z257 = format!("{}=1", "z".repeat(257));
    check_tracestate(&["foo=1", &z257], Err(E::Member(z257.clone())));
    let tenant = format!("{}@{}", "t".repeat(241), "v".repeat(14));
    check_tracestate(
        &["foo=1", &format!("{tenant}=1")],
        Ok(&[("foo", "1"), (&tenant, "1")]),
    );
    let long_tenant = format!("{}@v=1", "t".repeat(242));
    check_tracestate(
        &["foo=1", &long_tenant],
        Err(E::Member(long_tenant.clone())),
    );
    let long_system = format!("t@{}=1", "v".repeat(15));
    check_tracestate(
        &["foo=1", &long_system],
        Err(E::Member(long_system.clone())),
    );
    // Value length limit: 256.
    let v256 = "v".repeat(256);
    check_tracestate(&[&format!("foo={v256}")], Ok(&[("foo", &v256)]));
    let v257 = format!("foo={}", "v".repeat(257));
    check_tracestate(&[&v257], Err(E::Member(v257.clone())));
    // At most 32 members.
    let members =
        |n: usize| -> Vec<String> { (1..=n).map(|i| format!("bar{i:02}={i:02}")).collect() };
    let headers: Vec<String> = members(32).chunks(10).map(|c| c.join(",")).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    assert_eq!(
        parse_tracestate(headers.iter().map(|h| h.as_bytes())).map(|t| t.members().len()),
        Ok(32)
    );
    let headers: Vec<String> = members(33).chunks(10).map(|c| c.join(",")).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    check_tracestate(&headers, Err(E::TooManyMembers(33)));
    // Not text.
    assert_eq!(parse_tracestate([&[0xffu8][..]]), Err(E::NotText));
}

#[test]
fn tracestate_header_value_round_trips() {
    let ts = parse_tracestate([&b" foo=1 ,\tbar=a b "[..]]).unwrap();
    assert_eq!(ts.header_value().as_deref(), Some("foo=1,bar=a b"));
    assert_eq!(ts.get("bar"), Some("a b"));
    assert_eq!(TraceState::default().header_value(), None);
}

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
        &[("traceparent", &tp), ("tracestate", "foo=1,foo=2")],
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
    let ts = parse_tracestate([&b"foo=1"[..]]).unwrap();
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
