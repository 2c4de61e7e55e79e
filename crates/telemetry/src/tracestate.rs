//! `tracestate` list members (W3C Trace Context level 2).

/// The W3C limit on `tracestate` list members.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Why a `tracestate` header value cannot be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberError<'a> {
    /// A member with an invalid key or value, or without `=`.
    Invalid(&'a str),
    /// A key that an earlier member already has.
    DuplicateKey(&'a str),
}

/// Appends the members of one `tracestate` header value to `members`, in order.
///
/// Empty list members are skipped; spaces and tabs around members are ignored.
/// The member limit is the caller's to check, once every header is read.
///
/// # Errors
///
/// An invalid member or a duplicated key: the whole `tracestate` is discarded.
pub fn push_members<'a>(
    text: &'a str,
    members: &mut Vec<(&'a str, &'a str)>,
) -> Result<(), MemberError<'a>> {
    for member in text.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let (key, val) = member
            .split_once('=')
            .filter(|(k, v)| valid_key(k) && valid_value(v))
            .ok_or(MemberError::Invalid(member))?;
        if members.iter().any(|(k, _)| *k == key) {
            return Err(MemberError::DuplicateKey(key));
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
