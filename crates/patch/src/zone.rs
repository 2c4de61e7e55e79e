//! Time zones: UTC, fixed offsets, and POSIX `TZ` rules (the rule strings
//! that end every modern TZif file, such as `CET-1CEST,M3.5.0,M10.5.0/3`).
//!
//! Why not a time-zone crate: a maintenance window needs only the zone's
//! *current* rule, and every IANA zone file on a Linux host ends with exactly
//! that rule as a POSIX `TZ` string. `hostops` reads it from
//! `/usr/share/zoneinfo`; [`Zone::builtin`] knows the common zones for
//! machines without tzdata. The limitation, documented in docs/patching.md:
//! historical offsets (before the zone's last rule change) are not modelled,
//! which does not matter for windows in the present and future.

use crate::time::{
    LocalDateTime, Timestamp, Weekday, days_from_civil, days_in_month, is_leap_year,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A time zone: how far local time is from UTC at a given instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Zone {
    Utc,
    /// A constant offset, in seconds east of UTC.
    Fixed {
        offset: i32,
    },
    /// A POSIX `TZ` rule; `name` is what the inventory said (an IANA name or the rule itself).
    Rule {
        name: String,
        rule: PosixTz,
    },
}

/// A parsed POSIX `TZ` string. Offsets are seconds *east* of UTC (POSIX
/// writes them west: `CET-1` is UTC+1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTz {
    pub text: String,
    pub std_abbrev: String,
    pub std_offset: i32,
    pub dst: Option<DstRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DstRule {
    pub abbrev: String,
    pub offset: i32,
    pub start: Transition,
    pub end: Transition,
}

/// When daylight saving time starts or ends, in the local time then in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub date: TransitionDate,
    /// Seconds after local midnight; may be negative or past 24h (RFC 8536 extension).
    pub time: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TransitionDate {
    /// `Jn`: day 1..=365, February 29 never counted.
    JulianNoLeap { day: u16 },
    /// `n`: day 0..=365, February 29 counted.
    ZeroBased { day: u16 },
    /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (5 = last) of month `m`.
    MonthWeekDay { month: u8, week: u8, weekday: u8 },
}

/// A zone name or rule that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {name:?}: {reason}")]
pub struct ZoneError {
    pub name: String,
    pub reason: String,
}

impl Zone {
    /// Parses what needs no zone database: `UTC`, `Z`, `Etc/UTC`, `GMT`,
    /// offsets (`+02:00`, `-0530`, `UTC+2`), and POSIX rules (`CET-1CEST,M3.5.0,M10.5.0/3`).
    ///
    /// # Errors
    ///
    /// When the text is none of those.
    pub fn parse(text: &str) -> Result<Zone, ZoneError> {
        let t = text.trim();
        let fail = |reason: &str| ZoneError {
            name: text.to_string(),
            reason: reason.to_string(),
        };
        if matches!(
            t,
            "UTC"
                | "utc"
                | "Z"
                | "GMT"
                | "Etc/UTC"
                | "Etc/GMT"
                | "Etc/Universal"
                | "UCT"
                | "Universal"
                | "Zulu"
        ) {
            return Ok(Zone::Utc);
        }
        let offset_text = t
            .strip_prefix("UTC")
            .or_else(|| t.strip_prefix("GMT"))
            .unwrap_or(t);
        if offset_text.starts_with(['+', '-']) {
            let offset = parse_offset(offset_text).ok_or_else(|| fail("bad offset"))?;
            return Ok(if offset == 0 {
                Zone::Utc
            } else {
                Zone::Fixed { offset }
            });
        }
        if t.contains('/') {
            return Err(fail(
                "not in the zone database here and not a built-in zone; give a POSIX TZ rule or an offset like +01:00",
            ));
        }
        let rule = PosixTz::parse(t).map_err(|reason| fail(&reason))?;
        Ok(Zone::Rule {
            name: t.to_string(),
            rule,
        })
    }

    /// The zones most inventories name, for machines without a zone database.
    pub fn builtin(name: &str) -> Option<Zone> {
        const CET: &str = "CET-1CEST,M3.5.0,M10.5.0/3";
        const EET: &str = "EET-2EEST,M3.5.0/3,M10.5.0/4";
        let rule = match name {
            "Europe/Berlin" | "Europe/Paris" | "Europe/Amsterdam" | "Europe/Brussels"
            | "Europe/Madrid" | "Europe/Rome" | "Europe/Vienna" | "Europe/Zurich"
            | "Europe/Stockholm" | "Europe/Oslo" | "Europe/Copenhagen" | "Europe/Warsaw"
            | "Europe/Prague" | "Europe/Budapest" | "Europe/Luxembourg" => CET,
            "Europe/London" | "Europe/Lisbon" => "GMT0BST,M3.5.0/1,M10.5.0",
            "Europe/Helsinki" | "Europe/Athens" | "Europe/Kyiv" | "Europe/Kiev" | "Europe/Riga"
            | "Europe/Vilnius" | "Europe/Tallinn" | "Europe/Sofia" | "Europe/Bucharest" => EET,
            "America/New_York" | "America/Toronto" | "US/Eastern" => "EST5EDT,M3.2.0,M11.1.0",
            "America/Chicago" | "US/Central" => "CST6CDT,M3.2.0,M11.1.0",
            "America/Denver" | "US/Mountain" => "MST7MDT,M3.2.0,M11.1.0",
            "America/Phoenix" => "MST7",
            "America/Los_Angeles" | "US/Pacific" => "PST8PDT,M3.2.0,M11.1.0",
            "America/Sao_Paulo" => "<-03>3",
            "Asia/Tokyo" => "JST-9",
            "Asia/Seoul" => "KST-9",
            "Asia/Shanghai" | "Asia/Hong_Kong" => "CST-8",
            "Asia/Singapore" => "<+08>-8",
            "Asia/Kolkata" | "Asia/Calcutta" => "IST-5:30",
            "Asia/Dubai" => "<+04>-4",
            "Australia/Sydney" | "Australia/Melbourne" => "AEST-10AEDT,M10.1.0,M4.1.0/3",
            "Australia/Brisbane" => "AEST-10",
            "Pacific/Auckland" => "NZST-12NZDT,M9.5.0,M4.1.0/3",
            _ => return Zone::parse(name).ok(),
        };
        Some(Zone::Rule {
            name: name.to_string(),
            rule: PosixTz::parse(rule).expect("built-in rules parse"),
        })
    }

    /// The offset from UTC, in seconds east, in force at `t`.
    pub fn offset_at(&self, t: Timestamp) -> i32 {
        match self {
            Zone::Utc => 0,
            Zone::Fixed { offset } => *offset,
            Zone::Rule { rule, .. } => rule.offset_at(t),
        }
    }

    /// The local date and time at `t`.
    pub fn local(&self, t: Timestamp) -> LocalDateTime {
        LocalDateTime::from_local_seconds(t.0 + i64::from(self.offset_at(t)))
    }

    /// The instant a local time names. In a gap (clocks jump forward) the
    /// local time is read with the offset before the jump, which lands after
    /// it; in an overlap (clocks go back) the earlier instant is chosen.
    pub fn instant(&self, local: LocalDateTime) -> Timestamp {
        let secs = local.local_seconds();
        let offsets: Vec<i32> = match self {
            Zone::Utc => vec![0],
            Zone::Fixed { offset } => vec![*offset],
            Zone::Rule { rule, .. } => {
                let mut o = vec![rule.std_offset];
                if let Some(dst) = &rule.dst {
                    o.push(dst.offset);
                }
                o
            }
        };
        let valid = offsets
            .iter()
            .map(|&o| Timestamp(secs - i64::from(o)))
            .filter(|&t| self.local(t) == local)
            .min();
        valid.unwrap_or_else(|| {
            let before = offsets.iter().copied().min().unwrap_or(0);
            Timestamp(secs - i64::from(before))
        })
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Utc => f.write_str("UTC"),
            Zone::Fixed { offset } => {
                let sign = if *offset < 0 { '-' } else { '+' };
                let a = offset.unsigned_abs();
                write!(f, "UTC{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
            }
            Zone::Rule { name, .. } => f.write_str(name),
        }
    }
}

/// `+02:00`, `-0530`, `+2`, `+02` -> seconds east.
fn parse_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 18 && m < 60 && !rest.is_empty()).then_some(sign * (h * 3600 + m * 60))
}

impl PosixTz {
    /// Parses a POSIX `TZ` string with the RFC 8536 extensions (hours up to 167, negative times).
    ///
    /// # Errors
    ///
    /// A reason when the string is not a POSIX `TZ` rule.
    pub fn parse(text: &str) -> Result<PosixTz, String> {
        let mut p = Cursor {
            s: text.as_bytes(),
            i: 0,
        };
        let std_abbrev = p.abbrev()?;
        let std_offset = -p
            .posix_time()
            .ok_or("expected the standard offset after the name")?;
        let mut dst = None;
        if !p.done() && p.peek() != Some(b',') {
            let abbrev = p.abbrev()?;
            let offset = if !p.done() && p.peek() != Some(b',') {
                -p.posix_time().ok_or("bad daylight saving offset")?
            } else {
                std_offset + 3600
            };
            // Without rules POSIX leaves the dates to the implementation; US rules are the usual default.
            let (start, end) = if p.eat(b',') {
                let start = p.transition()?;
                if !p.eat(b',') {
                    return Err("expected ',' and the end of daylight saving time".into());
                }
                (start, p.transition()?)
            } else {
                (
                    Transition {
                        date: TransitionDate::MonthWeekDay {
                            month: 3,
                            week: 2,
                            weekday: 0,
                        },
                        time: 7200,
                    },
                    Transition {
                        date: TransitionDate::MonthWeekDay {
                            month: 11,
                            week: 1,
                            weekday: 0,
                        },
                        time: 7200,
                    },
                )
            };
            dst = Some(DstRule {
                abbrev,
                offset,
                start,
                end,
            });
        }
        if !p.done() {
            return Err(format!("unexpected text at byte {}", p.i));
        }
        Ok(PosixTz {
            text: text.to_string(),
            std_abbrev,
            std_offset,
            dst,
        })
    }

    /// The offset in force at `t`, in seconds east.
    pub fn offset_at(&self, t: Timestamp) -> i32 {
        let Some(dst) = &self.dst else {
            return self.std_offset;
        };
        let local_std = t.0 + i64::from(self.std_offset);
        let (year, _, _) = crate::time::civil_from_days(local_std.div_euclid(86_400));
        // DST may span New Year (southern hemisphere): then it ends the year after it starts.
        let spans_new_year =
            dst.start.utc_seconds(year, self.std_offset) > dst.end.utc_seconds(year, dst.offset);
        for y in [year - 1, year, year + 1] {
            let start = dst.start.utc_seconds(y, self.std_offset);
            let end = dst
                .end
                .utc_seconds(y + i64::from(spans_new_year), dst.offset);
            if (start..end).contains(&t.0) {
                return dst.offset;
            }
        }
        self.std_offset
    }
}

impl Transition {
    /// The instant of this transition in `year`, given the offset in force before it.
    fn utc_seconds(&self, year: i64, offset_before: i32) -> i64 {
        let day = match self.date {
            TransitionDate::JulianNoLeap { day } => {
                let mut d = i64::from(day) - 1;
                if is_leap_year(year) && day >= 60 {
                    d += 1;
                }
                days_from_civil(year, 1, 1) + d
            }
            TransitionDate::ZeroBased { day } => days_from_civil(year, 1, 1) + i64::from(day),
            TransitionDate::MonthWeekDay {
                month,
                week,
                weekday,
            } => {
                let first = days_from_civil(year, u32::from(month), 1);
                let first_wd = Weekday::of_day(first).index_from_sunday() as i64;
                let mut d = first
                    + (i64::from(weekday) - first_wd).rem_euclid(7)
                    + 7 * (i64::from(week) - 1);
                let last = first + i64::from(days_in_month(year, u32::from(month))) - 1;
                while d > last {
                    d -= 7;
                }
                d
            }
        };
        day * 86_400 + i64::from(self.time) - i64::from(offset_before)
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn abbrev(&mut self) -> Result<String, String> {
        let start = self.i;
        if self.eat(b'<') {
            while self.peek().is_some_and(|c| c != b'>') {
                self.i += 1;
            }
            if !self.eat(b'>') {
                return Err("unterminated <...> zone abbreviation".into());
            }
            return Ok(String::from_utf8_lossy(&self.s[start + 1..self.i - 1]).into_owned());
        }
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        if self.i - start < 3 {
            return Err("expected a zone abbreviation of at least three letters".into());
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn number(&mut self) -> Option<i32> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }
    /// `[+-]hh[:mm[:ss]]` in seconds.
    fn posix_time(&mut self) -> Option<i32> {
        let sign = if self.eat(b'-') {
            -1
        } else {
            self.eat(b'+');
            1
        };
        let h = self.number()?;
        let mut secs = h * 3600;
        if self.eat(b':') {
            secs += self.number()? * 60;
            if self.eat(b':') {
                secs += self.number()?;
            }
        }
        (h <= 167).then_some(sign * secs)
    }
    fn transition(&mut self) -> Result<Transition, String> {
        let date = if self.eat(b'M') {
            let month = self.number().ok_or("bad month in Mm.w.d")?;
            let week =
                if self.eat(b'.') { self.number() } else { None }.ok_or("bad week in Mm.w.d")?;
            let weekday =
                if self.eat(b'.') { self.number() } else { None }.ok_or("bad day in Mm.w.d")?;
            if !(1..=12).contains(&month) || !(1..=5).contains(&week) || weekday > 6 {
                return Err("Mm.w.d out of range".into());
            }
            TransitionDate::MonthWeekDay {
                month: month as u8,
                week: week as u8,
                weekday: weekday as u8,
            }
        } else if self.eat(b'J') {
            let day = self
                .number()
                .filter(|d| (1..=365).contains(d))
                .ok_or("bad Jn day")?;
            TransitionDate::JulianNoLeap { day: day as u16 }
        } else {
            let day = self
                .number()
                .filter(|d| (0..=365).contains(d))
                .ok_or("bad transition date")?;
            TransitionDate::ZeroBased { day: day as u16 }
        };
        let time = if self.eat(b'/') {
            self.posix_time().ok_or("bad transition time")?
        } else {
            7200
        };
        Ok(Transition { date, time })
    }
}

#[cfg(test)]
mod tests;
