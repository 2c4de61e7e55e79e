//! `traceparent` (W3C Trace Context level 2): ids, the parser and the formatter.
//!
//! The parser follows the processing rules the official W3C test harness
//! checks at its strictest level: future versions (`01`..`fe`) are parsed by
//! their version-00 prefix, version `ff` is invalid, ids are lowercase hex and
//! not all zero, and unknown flag bits are cleared. Nothing here allocates:
//! the gateway parses and formats one per request.

use std::fmt;

/// A 128-bit trace id, never all zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

/// A 64-bit span id, never all zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(u64);

impl TraceId {
    /// `None` for zero, which W3C reserves as invalid.
    pub fn new(value: u128) -> Option<TraceId> {
        (value != 0).then_some(TraceId(value))
    }

    /// Exactly 32 lowercase hex digits, not all zero.
    pub fn from_hex(hex: &str) -> Option<TraceId> {
        (hex.len() == 32)
            .then(|| parse_lower_hex(hex.as_bytes()))
            .flatten()
            .and_then(TraceId::new)
    }

    pub fn get(self) -> u128 {
        self.0
    }

    /// The 32 lowercase hex digits, held inline.
    pub fn hex(self) -> Text<32> {
        Text(hex_digits(self.0))
    }
}

impl SpanId {
    /// `None` for zero, which W3C reserves as invalid.
    pub fn new(value: u64) -> Option<SpanId> {
        (value != 0).then_some(SpanId(value))
    }

    /// Exactly 16 lowercase hex digits, not all zero.
    pub fn from_hex(hex: &str) -> Option<SpanId> {
        (hex.len() == 16)
            .then(|| parse_lower_hex(hex.as_bytes()))
            .flatten()
            .and_then(|v| SpanId::new(v as u64))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// The 16 lowercase hex digits, held inline.
    pub fn hex(self) -> Text<16> {
        Text(hex_digits(u128::from(self.0)))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// The low `N` hex digits of `value`, lowercase.
fn hex_digits<const N: usize>(value: u128) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, digit) in out.iter_mut().enumerate() {
        let shift = 4 * (N - 1 - i);
        *digit = b"0123456789abcdef"[((value >> shift) & 0xf) as usize];
    }
    out
}

/// Fixed-length ASCII text held inline, so an id or a header value costs no
/// allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Text<const N: usize>([u8; N]);

impl<const N: usize> Text<N> {
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> std::ops::Deref for Text<N> {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq<&str> for Text<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The `sampled` bit of `trace-flags`.
pub const FLAG_SAMPLED: u8 = 0x01;
/// The level-2 `random` bit of `trace-flags` (the trace id's right 7 bytes are random).
pub const FLAG_RANDOM: u8 = 0x02;

/// A parsed `traceparent` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub version: u8,
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    /// The flags understood and forwarded; unknown bits are cleared, as the
    /// specification asks.
    pub flags: u8,
}

/// Why a `traceparent` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceParentError {
    TooShort,
    Version,
    VersionFf,
    Separator,
    TraceId,
    ParentId,
    Flags,
    TrailingData,
    FutureSuffix,
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceParentError::TooShort => "shorter than 55 characters",
            TraceParentError::Version => "version is not two lowercase hex digits",
            TraceParentError::VersionFf => "version ff is invalid",
            TraceParentError::Separator => "a field separator is missing",
            TraceParentError::TraceId => "trace-id is not 32 lowercase hex digits, or is all zeros",
            TraceParentError::ParentId => {
                "parent-id is not 16 lowercase hex digits, or is all zeros"
            }
            TraceParentError::Flags => "trace-flags is not two lowercase hex digits",
            TraceParentError::TrailingData => "version 00 must be exactly 55 characters",
            TraceParentError::FutureSuffix => "a future version's extra fields must start with '-'",
        })
    }
}

impl std::error::Error for TraceParentError {}

/// Parses one `traceparent` header value (surrounding spaces and tabs allowed).
///
/// # Errors
///
/// Any deviation from the version-00 format, version `ff`, all-zero ids,
/// uppercase hex, and for version 00 any trailing characters.
pub fn parse_traceparent(value: &[u8]) -> Result<TraceParent, TraceParentError> {
    let v = trim_ows(value);
    if v.len() < 55 {
        return Err(TraceParentError::TooShort);
    }
    let version = parse_lower_hex(&v[0..2]).ok_or(TraceParentError::Version)? as u8;
    if version == 0xff {
        return Err(TraceParentError::VersionFf);
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return Err(TraceParentError::Separator);
    }
    let trace_id = parse_lower_hex(&v[3..35])
        .and_then(TraceId::new)
        .ok_or(TraceParentError::TraceId)?;
    let parent_id = parse_lower_hex(&v[36..52])
        .and_then(|p| SpanId::new(p as u64))
        .ok_or(TraceParentError::ParentId)?;
    let flags = parse_lower_hex(&v[53..55]).ok_or(TraceParentError::Flags)? as u8;
    let flags = if version == 0 {
        if v.len() != 55 {
            return Err(TraceParentError::TrailingData);
        }
        flags & (FLAG_SAMPLED | FLAG_RANDOM)
    } else {
        if v.len() > 55 && v[55] != b'-' {
            return Err(TraceParentError::FutureSuffix);
        }
        // Of a future version's flags only `sampled` is known to mean the same.
        flags & FLAG_SAMPLED
    };
    Ok(TraceParent {
        version,
        trace_id,
        parent_id,
        flags,
    })
}

/// The version-00 `traceparent` value `00-{trace_id}-{span_id}-{flags}`.
pub fn format_traceparent(trace_id: TraceId, span_id: SpanId, flags: u8) -> Text<55> {
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    out[3..35].copy_from_slice(&trace_id.hex().0);
    out[35] = b'-';
    out[36..52].copy_from_slice(&span_id.hex().0);
    out[52] = b'-';
    out[53..].copy_from_slice(&hex_digits::<2>(u128::from(flags)));
    Text(out)
}

/// `v` without the spaces and tabs (HTTP's optional whitespace) around it.
pub fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// 1 to 32 lowercase hex digits: W3C and B3 both forbid uppercase.
pub fn parse_lower_hex(hex: &[u8]) -> Option<u128> {
    if hex.is_empty() || hex.len() > 32 {
        return None;
    }
    let mut value: u128 = 0;
    for &c in hex {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

#[cfg(test)]
mod tests;
