use super::{civil_from_days, days_from_civil, rfc3339_millis};
use std::time::{Duration, UNIX_EPOCH};

#[test]
fn timestamps_are_rfc3339_utc_with_milliseconds() {
    let check = |secs: u64, millis: u64, expect: &str| {
        let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
        assert_eq!(rfc3339_millis(t), expect, "{secs}");
    };
    check(0, 0, "1970-01-01T00:00:00.000Z");
    check(951_782_400, 5, "2000-02-29T00:00:00.005Z");
    check(1_544_712_660, 999, "2018-12-13T14:51:00.999Z");
    check(4_102_444_799, 0, "2099-12-31T23:59:59.000Z");
}

#[test]
fn civil_round_trips_across_eras_and_leap_days() {
    for (y, m, d) in [
        (1970, 1, 1),
        (2000, 2, 29),
        (2024, 12, 31),
        (1900, 3, 1),
        (2100, 2, 28),
        (1969, 12, 31),
    ] {
        let days = days_from_civil(y, m, d);
        assert_eq!(civil_from_days(days), (y, m, d));
    }
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(
        days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
        2
    );
}
