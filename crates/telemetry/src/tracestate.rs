//! `tracestate` (W3C Trace Context level 2): list members, the combined list
//! of a request's headers, and the value forwarded downstream.
//!
//! The rules are the specification's (`spec/20-http_request_header_format.md`
//! of w3c/trace-context):
//! - a key is a lowercase letter or digit, then up to 255 of
//!   `a-z 0-9 _ - * / @` (so `foo@`, `foo@@bar` and `t@v` are keys);
//! - a value is 1 to 256 printable ASCII characters without `,` and `=`,
//!   not ending in a space;
//! - a list that cannot be parsed (any invalid member) or that has more than
//!   32 members is discarded whole, which the specification allows and the
//!   W3C test harness expects;
//! - a duplicated key does not make the list invalid: it is inherited, with
//!   the first member of that key kept and later ones dropped (the
//!   specification allows keeping or dropping them; dropping keeps keys unique).
//!
//! Parsing borrows from the header values; only the forwarded value and
//! [`TraceState`] (which outlives the request's headers) allocate.

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
            TraceStateError::NotText => f.write_str("not visible ASCII text"),
        }
    }
}

impl std::error::Error for TraceStateError<'_> {}

/// Combines every `tracestate` header value of a request, in order, into one
/// list of `(key, value)` members borrowed from the values.
///
/// Empty headers and empty list members are allowed and skipped; spaces and
/// tabs around members are ignored; a member whose key an earlier member
/// already has is dropped.
///
/// # Errors
///
/// Any invalid member, more than 32 members, or a value that is not text:
/// the caller discards the whole `tracestate`.
pub fn parse_tracestate<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<(&'a str, &'a str)>, TraceStateError<'a>> {
    let mut members = Vec::new();
    let mut seen = 0;
    for value in values {
        let text = std::str::from_utf8(value).map_err(|_| TraceStateError::NotText)?;
        push_members(text, &mut members, &mut seen)?;
    }
    if seen > MAX_TRACESTATE_MEMBERS {
        return Err(TraceStateError::TooManyMembers(seen));
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

/// Appends the members of one `tracestate` header value to `members`, in
/// order, counting every non-empty member received in `seen` (duplicates
/// included: they are members of the list as sent).
fn push_members<'a>(
    text: &'a str,
    members: &mut Vec<(&'a str, &'a str)>,
    seen: &mut usize,
) -> Result<(), TraceStateError<'a>> {
    for member in text.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        *seen += 1;
        // Past the limit the list is refused anyway: only count, so that a
        // long header costs no more than one pass over its bytes.
        if *seen > MAX_TRACESTATE_MEMBERS {
            continue;
        }
        let (key, val) = member
            .split_once('=')
            .filter(|(k, v)| valid_key(k) && valid_value(v))
            .ok_or(TraceStateError::Member(member))?;
        // At most 32 members are kept, so this scan stays short.
        if !members.iter().any(|(k, _)| *k == key) {
            members.push((key, val));
        }
    }
    Ok(())
}

/// `key = (lcalpha / DIGIT) 0*255(keychar)` with
/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    (1..=256).contains(&b.len())
        && matches!(b[0], b'a'..=b'z' | b'0'..=b'9')
        && b.iter()
            .all(|&c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'))
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
