use super::*;
use crate::time::Timestamp;

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

fn window(days: &[Weekday], start: &str, end: &str) -> MaintenanceWindow {
    MaintenanceWindow {
        days: days.to_vec(),
        start: TimeOfDay::parse(start).unwrap(),
        end: TimeOfDay::parse(end).unwrap(),
        timezone: "Europe/Berlin".into(),
    }
}

fn berlin() -> Zone {
    Zone::builtin("Europe/Berlin").unwrap()
}

/// The sample fleet's window: weekends 02:00-05:00 Berlin time.
#[test]
fn weekend_night_window_in_berlin() {
    let w = window(&[Weekday::Sat, Weekday::Sun], "02:00", "05:00");
    let z = berlin();
    // Saturday 2025-06-07 02:30 CEST = 00:30Z.
    assert_eq!(
        w.status(&z, at("2025-06-07T00:30:00Z")),
        WindowStatus::Open {
            closes: at("2025-06-07T03:00:00Z")
        }
    );
    // 05:00 local is closed; next opening is Sunday 02:00.
    assert_eq!(
        w.status(&z, at("2025-06-07T03:00:00Z")),
        WindowStatus::Closed {
            opens: Some(at("2025-06-08T00:00:00Z"))
        }
    );
    // Wednesday: next Saturday.
    assert_eq!(
        w.status(&z, at("2025-06-04T12:00:00Z")),
        WindowStatus::Closed {
            opens: Some(at("2025-06-07T00:00:00Z"))
        }
    );
    // In winter the same local window is an hour later in UTC.
    assert_eq!(
        w.status(&z, at("2025-01-11T01:30:00Z")),
        WindowStatus::Open {
            closes: at("2025-01-11T04:00:00Z")
        }
    );
    assert!(matches!(
        w.status(&z, at("2025-01-11T00:30:00Z")),
        WindowStatus::Closed { .. }
    ));
}

#[test]
fn windows_past_midnight_belong_to_the_day_they_open() {
    let w = window(&[Weekday::Sat], "22:00", "02:00");
    let z = Zone::Utc;
    // Sunday 01:00 is inside Saturday's window.
    assert_eq!(
        w.status(&z, at("2025-06-08T01:00:00Z")),
        WindowStatus::Open {
            closes: at("2025-06-08T02:00:00Z")
        }
    );
    // Saturday 01:00 is not (Friday has no window).
    assert!(matches!(
        w.status(&z, at("2025-06-07T01:00:00Z")),
        WindowStatus::Closed { .. }
    ));
}

#[test]
fn equal_start_and_end_is_the_whole_day_and_no_days_is_never() {
    let z = Zone::Utc;
    let all_day = window(&[Weekday::Tue], "00:00", "00:00");
    assert_eq!(
        all_day.status(&z, at("2025-06-03T23:59:00Z")),
        WindowStatus::Open {
            closes: at("2025-06-04T00:00:00Z")
        }
    );
    let never = window(&[], "02:00", "05:00");
    assert_eq!(
        never.status(&z, at("2025-06-03T03:00:00Z")),
        WindowStatus::Closed { opens: None }
    );
}

#[test]
fn a_window_on_the_spring_forward_night_still_opens() {
    // 02:00 local does not exist on 2025-03-30 in Berlin; the window opens at 03:00 CEST.
    let w = window(&[Weekday::Sun], "02:00", "05:00");
    let z = berlin();
    assert_eq!(
        w.status(&z, at("2025-03-30T01:00:00Z")),
        WindowStatus::Open {
            closes: at("2025-03-30T03:00:00Z")
        }
    );
    assert!(WindowStatus::Anytime.allows_patching());
    assert!(!WindowStatus::UnknownZone { zone: "x".into() }.allows_patching());
}

#[test]
fn times_of_day_parse_strictly() {
    assert_eq!(TimeOfDay::parse("02:00"), Some(TimeOfDay(120)));
    assert_eq!(TimeOfDay::parse("24:00"), Some(TimeOfDay(1440)));
    for bad in ["24:01", "2", "02:0", "aa:bb", "-1:00", "02:60"] {
        assert_eq!(TimeOfDay::parse(bad), None, "{bad}");
    }
    assert_eq!(
        window(&[Weekday::Sat, Weekday::Sun], "02:00", "05:00").to_string(),
        "sat,sun 02:00-05:00 Europe/Berlin"
    );
}
