//! Instants, civil dates and RFC 3339, without a date-time crate.
//!
//! Patching needs little of a calendar: an instant, the local date and time
//! in a zone with a known offset, and the weekday. The day-number
//! conversions are the `yaml` crate's civil-date grammar.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Seconds since 1970-01-01T00:00:00Z (leap seconds ignored, as Unix does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// `mon`, `Monday`, `MON`...; `None` for anything else.
    pub fn parse(text: &str) -> Option<Weekday> {
        let lower = text.trim().to_ascii_lowercase();
        let short = lower.get(..3)?;
        let day = Weekday::ALL.into_iter().find(|d| d.short() == short)?;
        let full = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ][day.index_from_monday() as usize];
        (lower.len() == 3 || lower == full).then_some(day)
    }

    pub fn short(self) -> &'static str {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][self.index_from_monday() as usize]
    }

    /// 0 for Monday ... 6 for Sunday.
    pub fn index_from_monday(self) -> u32 {
        self as u32
    }

    /// 0 for Sunday ... 6 for Saturday (POSIX `TZ` rules count this way).
    pub fn index_from_sunday(self) -> u32 {
        (self.index_from_monday() + 1) % 7
    }

    /// The weekday of a day number (days since 1970-01-01, a Thursday).
    pub fn of_day(days: i64) -> Weekday {
        Weekday::ALL[(days + 3).rem_euclid(7) as usize]
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

pub use yaml::time::{civil_from_days, days_from_civil};

pub fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap_year(year) => 29,
        _ => 28,
    }
}

/// A malformed RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {text:?}: {reason} (expected like 2025-06-07T02:30:00+02:00)")]
pub struct TimestampError {
    pub text: String,
    pub reason: &'static str,
}

impl Timestamp {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`; fractions are dropped.
    ///
    /// # Errors
    ///
    /// When the text is not an RFC 3339 date-time with an offset.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimestampError> {
        let fail = |reason| TimestampError {
            text: text.to_string(),
            reason,
        };
        let b = text.trim().as_bytes();
        if b.len() < 20 {
            return Err(fail("too short"));
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let s = std::str::from_utf8(&b[range]).map_err(|_| fail("not ASCII"))?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(fail("expected digits"));
            }
            s.parse().map_err(|_| fail("expected digits"))
        };
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return Err(fail("expected YYYY-MM-DDTHH:MM:SS"));
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(fail("expected HH:MM:SS"));
        }
        let (year, month, day) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(fail("no such date"));
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(fail("no such time"));
        }
        let mut rest = &b[19..];
        if rest.first() == Some(&b'.') {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(fail("empty fraction"));
            }
            rest = &rest[1 + digits..];
        }
        let offset = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return Err(fail("bad offset"));
                }
                let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
                let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
                if h > 23 || m > 59 {
                    return Err(fail("bad offset"));
                }
                let secs = h * 3600 + m * 60;
                if *sign == b'-' { -secs } else { secs }
            }
            _ => return Err(fail("expected Z or an offset like +02:00")),
        };
        let local =
            days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second.min(59);
        Ok(Timestamp(local - offset))
    }

    /// RFC 3339 in UTC, like `2025-06-07T00:30:00Z`.
    pub fn to_rfc3339(self) -> String {
        let l = LocalDateTime::from_local_seconds(self.0);
        format!("{}Z", l.iso())
    }

    /// RFC 3339 with the given offset (seconds east of UTC), like `2025-06-07T02:30:00+02:00`.
    pub fn to_rfc3339_with_offset(self, offset: i32) -> String {
        let l = LocalDateTime::from_local_seconds(self.0 + i64::from(offset));
        let sign = if offset < 0 { '-' } else { '+' };
        let abs = offset.unsigned_abs();
        format!("{}{sign}{:02}:{:02}", l.iso(), abs / 3600, abs % 3600 / 60)
    }

    /// The Unix epoch plus `millis` milliseconds, rounded down to the second.
    pub fn from_unix_millis(millis: i64) -> Timestamp {
        Timestamp(millis.div_euclid(1000))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A wall-clock date and time, with no zone attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalDateTime {
    /// Days since 1970-01-01.
    pub day: i64,
    /// Seconds since midnight, 0..86400.
    pub second_of_day: u32,
}

impl LocalDateTime {
    /// From seconds since 1970-01-01T00:00:00 local time.
    pub fn from_local_seconds(secs: i64) -> LocalDateTime {
        LocalDateTime {
            day: secs.div_euclid(86_400),
            second_of_day: secs.rem_euclid(86_400) as u32,
        }
    }

    pub fn local_seconds(self) -> i64 {
        self.day * 86_400 + i64::from(self.second_of_day)
    }

    pub fn weekday(self) -> Weekday {
        Weekday::of_day(self.day)
    }

    /// `YYYY-MM-DDTHH:MM:SS`.
    pub fn iso(self) -> String {
        let (y, m, d) = civil_from_days(self.day);
        let s = self.second_of_day;
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            s / 3600,
            s % 3600 / 60,
            s % 60
        )
    }
}

#[cfg(test)]
mod tests;
