//! `tracestate` (W3C Trace Context level 2): list members, the combined list
//! of a request's headers, and the value forwarded downstream.
//!
//! A `tracestate` with any invalid member, a duplicated key or more than 32
//! members is discarded whole (the W3C test harness expects that, not a
//! partial list). Parsing borrows from the header values; only the forwarded
//! value and [`TraceState`] (which outlives the request's headers) allocate.

use std::fmt;

/// The W3C limit on `tracestate` list members.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Why a `tracestate` was discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceStateError<'a> {
    /// More than [`MAX_TRACESTATE_MEMBERS`] list members (how many).
    TooManyMembers(usize),
    /// A member with an invalid key or value, or without `=`.
    Member(&'a str),
    /// A key that an earlier member already has.
    DuplicateKey(&'a str),
    /// A header value that is not text.
    NotText,
}

impl fmt::Display for TraceStateError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceStateError::TooManyMembers(n) => {
                write!(f, "more than {MAX_TRACESTATE_MEMBERS} list members ({n})")
            }
            TraceStateError::Member(member) => write!(f, "invalid list member {member:?}"),
            TraceStateError::DuplicateKey(key) => write!(f, "duplicated key {key:?}"),
            TraceStateError::NotText => f.write_str("not visible ASCII text"),
        }
    }
}

impl std::error::Error for TraceStateError<'_> {}

/// Combines every `tracestate` header value of a request, in order, into one
/// list of `(key, value)` members borrowed from the values.
///
/// Empty headers and empty list members are allowed and skipped; spaces and
/// tabs around members are ignored.
///
/// # Errors
///
/// Any invalid member, a duplicated key, more than 32 members, or a value
/// that is not text: the caller discards the whole `tracestate`.
pub fn parse_tracestate<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<(&'a str, &'a str)>, TraceStateError<'a>> {
    let mut members = Vec::new();
    for value in values {
        let text = std::str::from_utf8(value).map_err(|_| TraceStateError::NotText)?;
        push_members(text, &mut members)?;
    }
    if members.len() > MAX_TRACESTATE_MEMBERS {
        return Err(TraceStateError::TooManyMembers(members.len()));
    }
    Ok(members)
}

/// The header value to forward: `k=v` members joined by `,` (`None` when
/// empty: an empty header is not sent).
pub fn tracestate_value<K: AsRef<str>, V: AsRef<str>>(members: &[(K, V)]) -> Option<String> {
    if members.is_empty() {
        return None;
    }
    let len = members
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 2)
        .sum();
    let mut out = String::with_capacity(len);
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k.as_ref());
        out.push('=');
        out.push_str(v.as_ref());
    }
    Some(out)
}

/// A `tracestate` list that owns its members: ordered, unique keys, at most 32.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceState {
    members: Vec<(String, String)>,
}

impl TraceState {
    /// [`parse_tracestate`], keeping the members beyond the headers' lifetime.
    ///
    /// # Errors
    ///
    /// As [`parse_tracestate`].
    pub fn parse<'a>(
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<TraceState, TraceStateError<'a>> {
        Ok(TraceState {
            members: parse_tracestate(values)?
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> &[(String, String)] {
        &self.members
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The header value to forward (`None` when empty: an empty header is not sent).
    pub fn header_value(&self) -> Option<String> {
        tracestate_value(&self.members)
    }
}

/// Appends the members of one `tracestate` header value to `members`, in order.
fn push_members<'a>(
    text: &'a str,
    members: &mut Vec<(&'a str, &'a str)>,
) -> Result<(), TraceStateError<'a>> {
    for member in text.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let (key, val) = member
            .split_once('=')
            .filter(|(k, v)| valid_key(k) && valid_value(v))
            .ok_or(TraceStateError::Member(member))?;
        if members.iter().any(|(k, _)| *k == key) {
            return Err(TraceStateError::DuplicateKey(key));
        }
        members.push((key, val));
    }
    Ok(())
}

fn key_char(c: u8) -> bool {
    matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

/// `simple-key = lcalpha 0*255(keychar)` or `tenant-id "@" system-id` with
/// `tenant-id = (lcalpha / DIGIT) 0*240(keychar)` and `system-id = lcalpha 0*13(keychar)`.
fn valid_key(key: &str) -> bool {
    let part = |b: &[u8], max: usize, digit_first: bool| {
        (1..=max).contains(&b.len())
            && (b[0].is_ascii_lowercase() || (digit_first && b[0].is_ascii_digit()))
            && b.iter().copied().all(key_char)
    };
    match key.split_once('@') {
        None => part(key.as_bytes(), 256, false),
        Some((tenant, system)) => {
            part(tenant.as_bytes(), 241, true) && part(system.as_bytes(), 14, false)
        }
    }
}

/// `value = 0*255(chr) nblk-chr`: printable ASCII without `,` and `=`, spaces
/// allowed inside but not at the end.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    (1..=256).contains(&b.len())
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

#[cfg(test)]
mod tests;
