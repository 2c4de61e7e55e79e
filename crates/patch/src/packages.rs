//! Package states and the text the package tools print, parsed: `dpkg-query`,
//! `apt-get --simulate`, `/var/log/apt/history.log`, `dpkg --audit`,
//! `/proc/locks`, `needrestart -b`.
//!
//! All of it is pure: `hostops` runs the tools and hands the text here.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The `dpkg-query -f` format [`parse_dpkg_query`] reads.
pub const DPKG_QUERY_FORMAT: &str =
    "${Package}\t${Architecture}\t${Version}\t${db:Status-Abbrev}\n";

/// One package as the dpkg database records it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstalledPackage {
    pub name: String,
    pub arch: String,
    pub version: String,
    /// dpkg's two-letter abbreviation: `ii` installed, `iF` half-configured,
    /// `iU` unpacked, `rc` config files only...
    pub status: String,
}

impl InstalledPackage {
    pub fn key(&self) -> (String, String) {
        (self.name.clone(), self.arch.clone())
    }
    /// Whether dpkg calls it installed and configured.
    pub fn is_ok(&self) -> bool {
        self.status == "ii"
    }
}

impl fmt::Display for InstalledPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} {} [{}]",
            self.name, self.arch, self.version, self.status
        )
    }
}

/// Reads `dpkg-query -W -f` output in [`DPKG_QUERY_FORMAT`]; sorted by name and arch.
pub fn parse_dpkg_query(text: &str) -> Vec<InstalledPackage> {
    let mut out: Vec<InstalledPackage> = text
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let (name, arch, version, status) = (f.next()?, f.next()?, f.next()?, f.next()?);
            (!name.is_empty()).then(|| InstalledPackage {
                name: name.to_string(),
                arch: arch.to_string(),
                version: version.to_string(),
                status: status.trim().to_string(),
            })
        })
        .collect();
    out.sort();
    out
}

/// A package that changes: installed (`from` none), removed (`to` none), or
/// moved between versions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageChange {
    pub name: String,
    pub arch: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl fmt::Display for PackageChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.from, &self.to) {
            (Some(a), Some(b)) => write!(f, "{} {a} -> {b}", self.name),
            (None, Some(b)) => write!(f, "{} (new) {b}", self.name),
            (Some(a), None) => write!(f, "{} {a} (removed)", self.name),
            (None, None) => write!(f, "{}", self.name),
        }
    }
}

impl PackageChange {
    /// Whether this looks like a kernel package (a reboot is needed to run it).
    pub fn is_kernel(&self) -> bool {
        is_kernel_package(&self.name)
    }
}

/// Kernel images and modules on Debian/Ubuntu and RPM distributions.
pub fn is_kernel_package(name: &str) -> bool {
    name.starts_with("linux-image-")
        || name.starts_with("linux-modules-")
        || name.starts_with("linux-signed-image")
        || matches!(
            name,
            "kernel" | "kernel-core" | "kernel-modules" | "kernel-default"
        )
}

/// Reads the `Inst`/`Remv`/`Purg` lines of `apt-get --simulate` (`-s`) output.
pub fn parse_apt_simulation(text: &str) -> Vec<PackageChange> {
    let mut out = Vec::new();
    for line in text.lines() {
        let (verb, rest) = match line.split_once(' ') {
            Some(v) => v,
            None => continue,
        };
        if !matches!(verb, "Inst" | "Remv" | "Purg") {
            continue;
        }
        let mut words = rest.splitn(2, ' ');
        let full_name = words.next().unwrap_or_default();
        let rest = words.next().unwrap_or_default();
        let (name, name_arch) = match full_name.split_once(':') {
            Some((n, a)) => (n.to_string(), Some(a.to_string())),
            None => (full_name.to_string(), None),
        };
        let from = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .map(|(v, _)| v.to_string());
        let paren = rest.find('(').and_then(|i| {
            let inner = &rest[i + 1..];
            inner.find(')').map(|j| &inner[..j])
        });
        let (to, arch) = match (verb, paren) {
            ("Inst", Some(p)) => {
                let version = p.split_whitespace().next().map(str::to_string);
                let arch = p
                    .rsplit_once('[')
                    .and_then(|(_, a)| a.strip_suffix(']'))
                    .map(str::to_string);
                (version, arch)
            }
            _ => (None, None),
        };
        out.push(PackageChange {
            name,
            arch: name_arch.or(arch),
            from,
            to,
        });
    }
    out
}

/// One transaction of `/var/log/apt/history.log`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub start: String,
    pub end: Option<String>,
    pub commandline: Option<String>,
    pub changes: Vec<PackageChange>,
    /// The `Error:` line apt writes when dpkg failed.
    pub error: Option<String>,
}

/// Reads `/var/log/apt/history.log`: blank-line separated `Start-Date:` blocks.
pub fn parse_history(text: &str) -> Vec<HistoryEntry> {
    let mut out: Vec<HistoryEntry> = Vec::new();
    let mut current: Option<HistoryEntry> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        let value = value.trim();
        match key {
            "Start-Date" => {
                out.extend(current.take());
                current = Some(HistoryEntry {
                    start: value.to_string(),
                    ..HistoryEntry::default()
                });
            }
            _ => {
                let Some(entry) = current.as_mut() else {
                    continue;
                };
                match key {
                    "End-Date" => entry.end = Some(value.to_string()),
                    "Commandline" => entry.commandline = Some(value.to_string()),
                    "Error" => entry.error = Some(value.to_string()),
                    "Install" | "Upgrade" | "Downgrade" | "Remove" | "Purge" | "Reinstall" => {
                        entry.changes.extend(history_packages(key, value));
                    }
                    _ => {}
                }
            }
        }
    }
    out.extend(current);
    out
}

/// `a:amd64 (1.0, 1.1), b:all (2.0, automatic)` under the given verb.
fn history_packages(verb: &str, value: &str) -> Vec<PackageChange> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find(" (") {
        let full = rest[..open].trim().trim_start_matches(", ").trim();
        let Some(close) = rest[open..].find(')') else {
            break;
        };
        let inner = &rest[open + 2..open + close];
        rest = &rest[open + close + 1..];
        let (name, arch) = match full.split_once(':') {
            Some((n, a)) => (n.to_string(), Some(a.to_string())),
            None => (full.to_string(), None),
        };
        let versions: Vec<&str> = inner
            .split(", ")
            .map(str::trim)
            .filter(|v| *v != "automatic")
            .collect();
        let (from, to) = match verb {
            "Install" => (None, versions.first()),
            "Upgrade" | "Downgrade" => (versions.first(), versions.get(1)),
            "Reinstall" => (versions.first(), versions.first()),
            _ => (versions.first(), None),
        };
        out.push(PackageChange {
            name,
            arch,
            from: from.map(|s| s.to_string()),
            to: to.map(|s| s.to_string()),
        });
    }
    out
}

/// The packages `dpkg --audit` complains about (its output is empty when the
/// database is sound; its exit status does not say).
pub fn parse_dpkg_audit(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with(' ') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// One lock from `/proc/locks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcLock {
    /// `POSIX`, `OFDLCK` or `FLOCK`.
    pub kind: String,
    pub pid: u32,
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

/// Reads `/proc/locks` (`1: POSIX  ADVISORY  WRITE 1234 fe:00:10274410 0 EOF`);
/// blocked waiters (`->` lines) are skipped.
pub fn parse_proc_locks(text: &str) -> Vec<ProcLock> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(1) == Some(&"->") || f.len() < 6 {
                return None;
            }
            let mut dev = f[5].split(':');
            let major = u32::from_str_radix(dev.next()?, 16).ok()?;
            let minor = u32::from_str_radix(dev.next()?, 16).ok()?;
            let inode = dev.next()?.parse().ok()?;
            Some(ProcLock {
                kind: f[1].to_string(),
                pid: f[4].parse().ok()?,
                major,
                minor,
                inode,
            })
        })
        .collect()
}

/// Whether a host needs a reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RebootNeed {
    Required {
        reasons: Vec<String>,
    },
    NotRequired,
    /// Neither needrestart nor `/var/run/reboot-required` can tell.
    Unknown,
}

impl fmt::Display for RebootNeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebootNeed::Required { reasons } if reasons.is_empty() => f.write_str("required"),
            RebootNeed::Required { reasons } => write!(f, "required ({})", reasons.join(", ")),
            RebootNeed::NotRequired => f.write_str("not required"),
            RebootNeed::Unknown => f.write_str("unknown"),
        }
    }
}

/// Reads `needrestart -b` output: `NEEDRESTART-KSTA: 3` (0 unknown, 1 current,
/// 2 ABI-compatible update pending, 3 version update pending) and the kernels.
pub fn parse_needrestart_batch(text: &str) -> RebootNeed {
    let fields: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    match fields.get("NEEDRESTART-KSTA").copied() {
        Some("1") => RebootNeed::NotRequired,
        Some("2" | "3") => RebootNeed::Required {
            reasons: vec![format!(
                "kernel {} running, {} installed",
                fields.get("NEEDRESTART-KCUR").unwrap_or(&"?"),
                fields.get("NEEDRESTART-KEXP").unwrap_or(&"?")
            )],
        },
        _ => RebootNeed::Unknown,
    }
}

/// The reboot need from `/var/run/reboot-required` and its `.pkgs` list
/// (`None` when the flag file is absent).
pub fn reboot_required_file(flag: Option<&str>, pkgs: Option<&str>) -> RebootNeed {
    match flag {
        Some(_) => RebootNeed::Required {
            reasons: pkgs
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        },
        None => RebootNeed::NotRequired,
    }
}

/// What turns `now` back into `before`: packages to install from saved
/// `.deb`s (wrong version, wrong state, or missing) and packages to purge
/// (not there before).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    pub install: Vec<InstalledPackage>,
    pub purge: Vec<InstalledPackage>,
}

impl RestorePlan {
    pub fn is_empty(&self) -> bool {
        self.install.is_empty() && self.purge.is_empty()
    }
}

pub fn restore_plan(before: &[InstalledPackage], now: &[InstalledPackage]) -> RestorePlan {
    let now_by_key: BTreeMap<_, _> = now.iter().map(|p| (p.key(), p)).collect();
    let before_by_key: BTreeMap<_, _> = before.iter().map(|p| (p.key(), p)).collect();
    RestorePlan {
        install: before
            .iter()
            .filter(|b| b.is_ok() && now_by_key.get(&b.key()).is_none_or(|n| n != b))
            .cloned()
            .collect(),
        purge: now
            .iter()
            .filter(|n| !before_by_key.contains_key(&n.key()) && n.status != "un")
            .cloned()
            .collect(),
    }
}

/// Lines describing how `now` differs from `before`; empty when equal.
pub fn state_differences(before: &[InstalledPackage], now: &[InstalledPackage]) -> Vec<String> {
    let now_by_key: BTreeMap<_, _> = now.iter().map(|p| (p.key(), p)).collect();
    let before_by_key: BTreeMap<_, _> = before.iter().map(|p| (p.key(), p)).collect();
    let mut out = Vec::new();
    for b in before {
        match now_by_key.get(&b.key()) {
            None => out.push(format!("{b} is missing")),
            Some(n) if *n != b => out.push(format!(
                "{} is {} [{}], was {} [{}]",
                b.name, n.version, n.status, b.version, b.status
            )),
            Some(_) => {}
        }
    }
    for n in now {
        if !before_by_key.contains_key(&n.key()) {
            out.push(format!("{n} was not installed"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
