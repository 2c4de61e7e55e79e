//! Resolving a time zone name: the host's zone database (the POSIX rule at
//! the end of each TZif file), else the built-in table.

use patch::Zone;
use patch::zone::PosixTz;
use std::path::PathBuf;

/// `UTC`, offsets and POSIX rules parse directly; an IANA name is looked up
/// in `$TZDIR` or `/usr/share/zoneinfo`, then in [`Zone::builtin`].
pub fn resolve(name: &str) -> Option<Zone> {
    if let Ok(zone) = Zone::parse(name) {
        return Some(zone);
    }
    from_database(name).or_else(|| Zone::builtin(name))
}

fn from_database(name: &str) -> Option<Zone> {
    let safe = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
    if !safe {
        return None;
    }
    let dir = std::env::var_os("TZDIR")
        .map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
    let bytes = std::fs::read(dir.join(name)).ok()?;
    if !bytes.starts_with(b"TZif") || bytes.get(4).is_none_or(|v| *v < b'2') {
        return None;
    }
    // Version 2+ files end with "\n<POSIX TZ rule>\n".
    let text = bytes.strip_suffix(b"\n")?;
    let start = text.iter().rposition(|b| *b == b'\n')? + 1;
    let rule = std::str::from_utf8(&text[start..]).ok()?;
    let rule = PosixTz::parse(rule).ok()?;
    Some(Zone::Rule {
        name: name.to_string(),
        rule,
    })
}
