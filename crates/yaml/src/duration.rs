//! The one duration grammar of bulkhead's files, flags and query parameters.
//!
//! A duration is one or more `NUMBER UNIT` parts, largest unit first:
//! `250ms`, `30s`, `5m`, `1h30m`, `2d`, `1.5s`. Units are `ns`, `us` (or
//! `µs`), `ms`, `s`, `m`, `h` and `d`. This is Go's `time.ParseDuration`
//! grammar without the sign, plus days, so Jaeger's query parameters
//! (`minDuration=250us`) and Argo Rollouts' intervals read the same way.
//! A bare number is refused: `30` could be seconds or milliseconds.

use std::fmt;
use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a duration ({}; write e.g. 250ms, 30s, 5m, 1h30m or 2d)",
            self.text, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Parses `250ms`, `30s`, `5m`, `1h30m`, `2d` or `1.5s` (surrounding spaces ignored).
///
/// # Errors
/// A missing or unknown unit, a bare number, units out of order (`30s5m`),
/// or a value beyond `Duration::MAX`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        text: text.to_string(),
        reason,
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(fail("it is empty"));
    }
    let mut total: u128 = 0;
    let mut last_scale = u128::MAX;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(fail("a unit without a number"));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        if unit.is_empty() {
            return Err(fail("a number without a unit"));
        }
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, scale)| scale)
            .ok_or_else(|| fail("unknown unit"))?;
        if scale >= last_scale {
            return Err(fail("units must go from largest to smallest, each once"));
        }
        last_scale = scale;
        total = total
            .checked_add(scaled(number, scale).map_err(fail)?)
            .ok_or_else(|| fail("too long"))?;
        rest = tail;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| fail("too long"))?;
    // The remainder of a division by 10^9 always fits in u32.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// `number` (digits with at most one `.`) times `scale` nanoseconds, exactly:
/// decimal digits beyond a nanosecond are dropped, never rounded through a float.
fn scaled(number: &str, scale: u128) -> Result<u128, &'static str> {
    const TOO_LONG: &str = "too long";
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err("not a number");
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| TOO_LONG)?
    };
    let mut value = whole.checked_mul(scale).ok_or(TOO_LONG)?;
    let mut place = scale;
    for digit in fraction.bytes() {
        place /= 10;
        value = value
            .checked_add(u128::from(digit - b'0') * place)
            .ok_or(TOO_LONG)?;
    }
    Ok(value)
}

/// A text `parse_duration` reads back as `duration`, largest unit first:
/// `1h30m`, `250ms`, `0s`. Like Go's, it stops at hours (`24h`, `48h`): a
/// soak of `24h` reads back as written, and days are for typing, not reading.
pub fn format_duration(duration: Duration) -> String {
    let mut nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (name, scale) in UNITS.iter().rev() {
        if *name == "µs" || *name == "d" {
            continue;
        }
        let n = nanos / scale;
        if n > 0 {
            out.push_str(&format!("{n}{name}"));
            nanos -= n * scale;
        }
    }
    out
}

#[cfg(test)]
mod tests;
