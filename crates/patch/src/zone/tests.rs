use super::*;
use crate::time::Timestamp;

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn berlin() -> Zone {
    Zone::Rule {
        name: "Europe/Berlin".into(),
        rule: PosixTz::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap(),
    }
}

#[test]
fn central_european_time_switches_on_the_last_sundays() {
    let z = berlin();
    assert_eq!(z.offset_at(at("2025-01-15T12:00:00Z")), 3600);
    assert_eq!(z.offset_at(at("2025-07-15T12:00:00Z")), 7200);
    // 2025-03-30 01:00 UTC clocks go 02:00 -> 03:00 local.
    assert_eq!(z.offset_at(at("2025-03-30T00:59:59Z")), 3600);
    assert_eq!(z.offset_at(at("2025-03-30T01:00:00Z")), 7200);
    // 2025-10-26 01:00 UTC clocks go 03:00 -> 02:00 local.
    assert_eq!(z.offset_at(at("2025-10-26T00:59:59Z")), 7200);
    assert_eq!(z.offset_at(at("2025-10-26T01:00:00Z")), 3600);
}

#[test]
fn southern_hemisphere_daylight_time_spans_new_year() {
    let z = Zone::builtin("Australia/Sydney").unwrap();
    assert_eq!(z.offset_at(at("2025-01-15T00:00:00Z")), 11 * 3600);
    assert_eq!(z.offset_at(at("2025-06-15T00:00:00Z")), 10 * 3600);
    assert_eq!(z.offset_at(at("2025-12-31T20:00:00Z")), 11 * 3600);
}

#[test]
fn us_rules_use_the_second_and_first_sundays() {
    let z = Zone::builtin("America/New_York").unwrap();
    // 2025-03-09 07:00 UTC (02:00 EST) clocks spring forward.
    assert_eq!(z.offset_at(at("2025-03-09T06:59:59Z")), -5 * 3600);
    assert_eq!(z.offset_at(at("2025-03-09T07:00:00Z")), -4 * 3600);
    assert_eq!(z.offset_at(at("2025-11-02T05:59:59Z")), -4 * 3600);
    assert_eq!(z.offset_at(at("2025-11-02T06:00:00Z")), -5 * 3600);
}

#[test]
fn local_times_in_gaps_and_overlaps_have_one_answer() {
    let z = berlin();
    let local = |text: &str| z.local(at(text));
    // 02:30 on 2025-03-30 does not exist in Berlin: read with CET, it is 03:30 CEST.
    let gap = LocalDateTime::from_local_seconds(at("2025-03-30T02:30:00Z").0);
    assert_eq!(z.instant(gap), at("2025-03-30T01:30:00Z"));
    // 02:30 on 2025-10-26 happens twice: the earlier one is chosen.
    let twice = LocalDateTime::from_local_seconds(at("2025-10-26T02:30:00Z").0);
    assert_eq!(z.instant(twice), at("2025-10-26T00:30:00Z"));
    assert_eq!(local("2025-06-07T00:30:00Z").iso(), "2025-06-07T02:30:00");
}

#[test]
fn names_offsets_and_rules_parse() {
    assert_eq!(Zone::parse("UTC").unwrap(), Zone::Utc);
    assert_eq!(Zone::parse("Etc/UTC").unwrap(), Zone::Utc);
    assert_eq!(Zone::parse("+02:00").unwrap(), Zone::Fixed { offset: 7200 });
    assert_eq!(
        Zone::parse("UTC-0530").unwrap(),
        Zone::Fixed { offset: -19800 }
    );
    assert_eq!(Zone::parse("UTC+2").unwrap(), Zone::Fixed { offset: 7200 });
    assert_eq!(Zone::parse("+00:00").unwrap(), Zone::Utc);
    let india = Zone::parse("IST-5:30").unwrap();
    assert_eq!(india.offset_at(Timestamp(0)), 19800);
    let bracketed = PosixTz::parse("<+08>-8").unwrap();
    assert_eq!(
        (bracketed.std_abbrev.as_str(), bracketed.std_offset),
        ("+08", 8 * 3600)
    );
    let julian = PosixTz::parse("XXX3YYY,J60/2,300").unwrap();
    assert!(julian.dst.is_some());
    assert_eq!(Zone::Fixed { offset: -19800 }.to_string(), "UTC-05:30");
}

#[test]
fn bad_zones_say_why() {
    for bad in [
        "Mars/Olympus",
        "+25:00",
        "AB1",
        "CET-1CEST,M13.5.0,M10.5.0",
        "CET-1CEST,M3.5.0",
        "CET-1 junk",
    ] {
        let e = Zone::parse(bad).unwrap_err();
        assert!(e.to_string().starts_with("unknown time zone"), "{bad}: {e}");
    }
    assert!(Zone::builtin("Europe/Berlin").is_some());
    assert!(Zone::builtin("Atlantis/Capital").is_none());
}
