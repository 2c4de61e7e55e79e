use super::{format_duration, parse_duration};
use std::time::Duration;

#[test]
fn accepted_texts_and_their_values() {
    let cases: &[(&str, Duration)] = &[
        ("250ms", Duration::from_millis(250)),
        ("30s", Duration::from_secs(30)),
        ("5m", Duration::from_secs(300)),
        ("1h30m", Duration::from_secs(5400)),
        ("2d", Duration::from_secs(172_800)),
        ("1.5s", Duration::from_millis(1500)),
        (".5s", Duration::from_millis(500)),
        ("250us", Duration::from_micros(250)),
        ("250µs", Duration::from_micros(250)),
        ("7ns", Duration::from_nanos(7)),
        ("1d2h3m4s5ms", Duration::new(93_784, 5_000_000)),
        (" 10s ", Duration::from_secs(10)),
        ("0s", Duration::ZERO),
        ("0.000000001s", Duration::from_nanos(1)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration(text).as_ref(), Ok(want), "{text}");
    }
}

#[test]
fn refused_texts_say_why() {
    let cases: &[(&str, &str)] = &[
        ("", "it is empty"),
        ("30", "a number without a unit"),
        ("s", "a unit without a number"),
        ("10x", "unknown unit"),
        ("10 s", "unknown unit"),
        ("30s5m", "units must go from largest to smallest"),
        ("1m1m", "units must go from largest to smallest"),
        ("1.2.3s", "not a number"),
        ("-5s", "a unit without a number"),
        ("99999999999999999999999999d", "too long"),
    ];
    for (text, reason) in cases {
        let err = parse_duration(text).expect_err(text).to_string();
        assert!(err.contains(reason), "{text}: {err}");
        assert!(
            err.contains("1h30m"),
            "{text}: the error shows the grammar: {err}"
        );
    }
}

#[test]
fn formatting_reads_back() {
    let cases = [
        ("250ms", "250ms"),
        ("30s", "30s"),
        ("5m", "5m"),
        ("1h30m", "1h30m"),
        ("24h", "24h"),
        ("2d", "48h"),
        ("1d2h3m4s5ms", "26h3m4s5ms"),
        ("0s", "0s"),
        ("7ns", "7ns"),
    ];
    for (text, formatted) in cases {
        let d = parse_duration(text).unwrap();
        assert_eq!(format_duration(d), formatted);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}
