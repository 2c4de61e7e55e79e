//! Maintenance windows: on which days, from when to when, in which zone a
//! host may be patched.

use crate::time::{LocalDateTime, Timestamp, Weekday};
use crate::zone::Zone;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A time of day, minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimeOfDay(pub u32);

impl TimeOfDay {
    /// `HH:MM`, 00:00 to 24:00.
    pub fn parse(text: &str) -> Option<TimeOfDay> {
        let (h, m) = text.trim().split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(TimeOfDay(h * 60 + m))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// Days of the week and a local time range in a zone. The window belongs to
/// the day it opens on: `days: [sat], start: 22:00, end: 02:00` is Saturday
/// 22:00 to Sunday 02:00. `start == end` means the whole day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    pub days: Vec<Weekday>,
    pub start: TimeOfDay,
    pub end: TimeOfDay,
    /// As written in the inventory (an IANA name, `UTC`, an offset or a POSIX rule).
    pub timezone: String,
}

/// Whether a host may be patched at an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum WindowStatus {
    /// The window is open and closes at `closes`.
    Open { closes: Timestamp },
    /// The window is closed; it opens next at `opens` (`None`: never, no days listed).
    Closed { opens: Option<Timestamp> },
    /// The host has no window: it may be patched at any time.
    Anytime,
    /// The window was overridden (`--ignore-window`).
    Ignored,
    /// The window's zone is unknown, so it cannot be evaluated; the host is not patched.
    UnknownZone { zone: String },
}

impl WindowStatus {
    pub fn allows_patching(&self) -> bool {
        matches!(
            self,
            WindowStatus::Open { .. } | WindowStatus::Anytime | WindowStatus::Ignored
        )
    }
}

impl MaintenanceWindow {
    /// The window's occurrences that open on local day `day` (one or none).
    fn occurrence(&self, zone: &Zone, day: i64) -> Option<(Timestamp, Timestamp)> {
        if !self.days.contains(&Weekday::of_day(day)) {
            return None;
        }
        let at = |day: i64, minutes: u32| {
            zone.instant(LocalDateTime::from_local_seconds(
                day * 86_400 + i64::from(minutes) * 60,
            ))
        };
        let open = at(day, self.start.0);
        let close = if self.end > self.start {
            at(day, self.end.0)
        } else {
            at(day + 1, self.end.0)
        };
        Some((open, close))
    }

    /// Whether the window is open at `now`, and when it closes or next opens.
    pub fn status(&self, zone: &Zone, now: Timestamp) -> WindowStatus {
        let today = zone.local(now).day;
        // An occurrence that opened yesterday may still be open (windows past midnight).
        for day in [today - 1, today] {
            if let Some((open, close)) = self.occurrence(zone, day)
                && open <= now
                && now < close
            {
                return WindowStatus::Open { closes: close };
            }
        }
        let opens = (today..=today + 8)
            .filter_map(|day| self.occurrence(zone, day))
            .map(|(open, _)| open)
            .find(|&open| open > now);
        WindowStatus::Closed { opens }
    }
}

impl fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = self.days.iter().map(|d| d.short()).collect();
        write!(
            f,
            "{} {}-{} {}",
            days.join(","),
            self.start,
            self.end,
            self.timezone
        )
    }
}

#[cfg(test)]
mod tests;
