//! Every `traceparent` rule, one table row each. The rows mirror the cases
//! the official W3C test harness (strict level 2) sends.

use super::*;

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

#[test]
fn formatted_values_parse_back() {
    let trace = TraceId::from_hex(TRACE).unwrap();
    let span = SpanId::from_hex("b7ad6b7169203331").unwrap();
    for (flags, expect) in [
        (FLAG_SAMPLED, format!("00-{TRACE}-b7ad6b7169203331-01")),
        (0, format!("00-{TRACE}-b7ad6b7169203331-00")),
        (
            FLAG_SAMPLED | FLAG_RANDOM,
            format!("00-{TRACE}-b7ad6b7169203331-03"),
        ),
    ] {
        let text = format_traceparent(trace, span, flags);
        assert_eq!(text, expect.as_str());
        let back = parse_traceparent(text.as_bytes()).unwrap();
        assert_eq!(
            (back.trace_id, back.parent_id, back.flags),
            (trace, span, flags)
        );
    }
}

#[test]
fn ids_print_as_fixed_width_lowercase_hex() {
    assert_eq!(
        TraceId::new(0xab).unwrap().to_string(),
        format!("{:0>32}", "ab")
    );
    assert_eq!(SpanId::new(u64::MAX).unwrap().hex(), "ffffffffffffffff");
    assert_eq!(TraceId::new(0), None);
    assert_eq!(SpanId::new(0), None);
    assert_eq!(TraceId::from_hex(TRACE).unwrap().hex(), TRACE);
    assert_eq!(TraceId::from_hex(&TRACE[1..]), None);
    assert_eq!(SpanId::from_hex("0000000000000000"), None);
}
