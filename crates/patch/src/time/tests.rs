use super::*;

#[test]
fn weekdays_follow_the_calendar() {
    assert_eq!(Weekday::of_day(0), Weekday::Thu);
    assert_eq!(Weekday::of_day(days_from_civil(2025, 6, 7)), Weekday::Sat);
    assert_eq!(Weekday::of_day(-1), Weekday::Wed);
    assert_eq!(Weekday::Sun.index_from_sunday(), 0);
    assert_eq!(Weekday::parse("Saturday"), Some(Weekday::Sat));
    assert_eq!(Weekday::parse("SAT"), Some(Weekday::Sat));
    assert_eq!(Weekday::parse("satur"), None);
    assert_eq!(Weekday::parse("x"), None);
}

#[test]
fn rfc3339_parses_offsets_and_fractions() {
    let t = Timestamp::parse_rfc3339("2025-06-07T02:30:00+02:00").unwrap();
    assert_eq!(t.to_rfc3339(), "2025-06-07T00:30:00Z");
    assert_eq!(t.to_rfc3339_with_offset(7200), "2025-06-07T02:30:00+02:00");
    assert_eq!(
        Timestamp::parse_rfc3339("1970-01-01T00:00:00Z").unwrap(),
        Timestamp(0)
    );
    assert_eq!(
        Timestamp::parse_rfc3339("1970-01-01T00:00:01.999Z").unwrap(),
        Timestamp(1)
    );
    assert_eq!(
        Timestamp::parse_rfc3339("1970-01-01T00:00:00-05:30").unwrap(),
        Timestamp(5 * 3600 + 1800)
    );
    assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59Z");
}

#[test]
fn rfc3339_rejects_what_it_cannot_read() {
    for bad in [
        "2025-06-07",
        "2025-06-07T02:30:00",
        "2025-02-30T00:00:00Z",
        "2025-13-01T00:00:00Z",
        "2025-06-07T24:00:00Z",
        "2025-06-07T02:30:00+2:00",
        "2025-06-07T02:30:00.Z",
        "yesterday at noon, roughly",
    ] {
        let e = Timestamp::parse_rfc3339(bad).unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{bad}: {e}");
    }
}
