//! The patching inventory: every field host patching needs, read from YAML
//! with line numbers. A bad host is a diagnostic; the others are still read.
//!
//! ```yaml
//! defaults:                       # optional; every host field may sit here
//!   package_manager: apt
//! hosts:
//!   - name: web-1
//!     address: web-1.acme.internal
//!     groups: [web]
//!     maintenance_window: {days: [sat, sun], start: "02:00", end: "05:00", timezone: Europe/Berlin}
//!     package_manager: apt        # apt (dnf is read, not yet patched)
//!     transport: ssh              # or {ssh: {user: admin, port: 22}} or {local: /srv/roots/web-1}
//!     snapshot: {provider: qcow2, image: /var/lib/libvirt/images/web-1.qcow2}
//!     health_checks:
//!       - command: systemctl is-active nginx
//!       - http: http://web-1.acme.internal:8080/healthz
//!         status: 200
//!         timeout: 10s
//! ```

use model::{Diagnostic, Host, Provenance};
use serde::{Deserialize, Serialize};
use yaml::Node;

use crate::time::Weekday;
use crate::window::{MaintenanceWindow, TimeOfDay};

/// Default timeout of one health check, in seconds.
pub const DEFAULT_HEALTH_TIMEOUT_SECS: u64 = 30;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub hosts: Vec<HostSpec>,
    pub diagnostics: Vec<Diagnostic>,
}

/// One host and everything needed to patch it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    pub name: String,
    pub address: Option<String>,
    pub groups: Vec<String>,
    pub window: Option<MaintenanceWindow>,
    pub package_manager: PackageManager,
    pub transport: Transport,
    pub snapshot: Option<SnapshotSpec>,
    pub health_checks: Vec<HealthCheck>,
    pub at: Provenance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Apt,
    Dnf,
}

/// How bulkhead reaches a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Transport {
    /// Through the system `ssh` client (keys and `~/.ssh/config` as usual; `BatchMode=yes`).
    Ssh {
        destination: String,
        port: Option<u16>,
    },
    /// A root directory on this machine (a container or chroot tree, or a test root):
    /// dpkg and apt run with `--root`/`Dir` pointing at it.
    Local { root: String },
}

/// How to snapshot a host before its upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "provider")]
pub enum SnapshotSpec {
    /// `btrfs subvolume snapshot` of `subvolume` into `dir`.
    Btrfs { subvolume: String, dir: String },
    /// An internal qcow2 snapshot (`qemu-img snapshot`) of a disk image on the
    /// machine bulkhead runs on; the VM must be shut down to apply it.
    Qcow2 { image: String },
    /// An LVM snapshot of `volume` (`vg/lv`) sized `size`; restored by merging at next activation.
    Lvm { volume: String, size: String },
    /// Commands run on the machine bulkhead runs on (cloud snapshots, AMIs, virsh...).
    /// `create` prints the snapshot id as its last line; `restore` and
    /// `delete` get it in `BULKHEAD_SNAPSHOT_ID`.
    Command {
        create: String,
        restore: String,
        delete: Option<String>,
    },
}

impl SnapshotSpec {
    pub fn provider(&self) -> &'static str {
        match self {
            SnapshotSpec::Btrfs { .. } => "btrfs",
            SnapshotSpec::Qcow2 { .. } => "qcow2",
            SnapshotSpec::Lvm { .. } => "lvm",
            SnapshotSpec::Command { .. } => "command",
        }
    }
}

/// A check that the host works after its upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HealthCheck {
    /// A shell command run on the host; exit status 0 is healthy.
    Command { command: String, timeout_secs: u64 },
    /// An HTTP GET from the machine bulkhead runs on (plain http only); `status` is expected.
    Http {
        url: String,
        status: u16,
        timeout_secs: u64,
    },
}

impl std::fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthCheck::Command { command, .. } => write!(f, "`{command}`"),
            HealthCheck::Http { url, status, .. } => write!(f, "GET {url} -> {status}"),
        }
    }
}

impl HostSpec {
    /// Where the host is reached, for messages.
    pub fn target(&self) -> String {
        match &self.transport {
            Transport::Ssh { destination, .. } => format!("ssh {destination}"),
            Transport::Local { root } => format!("local root {root}"),
        }
    }
}

impl Inventory {
    /// Makes relative `transport: {local: ...}` roots and qcow2 images
    /// relative to `base` (the inventory file's folder). Btrfs and LVM paths
    /// name things on the host and are left alone.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        let fix = |p: &mut String| {
            if !p.starts_with('/') {
                *p = base.join(&*p).display().to_string();
            }
        };
        for host in &mut self.hosts {
            if let Transport::Local { root } = &mut host.transport {
                fix(root);
            }
            if let Some(SnapshotSpec::Qcow2 { image }) = &mut host.snapshot {
                fix(image);
            }
        }
    }

    pub fn host(&self, name: &str) -> Option<&HostSpec> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// Reads an inventory. `path` goes into provenance and diagnostics.
pub fn parse(path: &str, text: &str) -> Inventory {
    let mut inv = Inventory::default();
    let (docs, error) = yaml::load(text);
    if let Some(e) = error {
        inv.diagnostics
            .push(Diagnostic::error(path, Some(e.line), e.to_string()));
    }
    let Some(doc) = docs.first() else {
        if inv.diagnostics.is_empty() {
            inv.diagnostics
                .push(Diagnostic::error(path, None, "empty inventory"));
        }
        return inv;
    };
    let defaults = doc.get("defaults");
    // Which hosts there are, their names, addresses and groups: the fleet scan's reader.
    let listing = scan::inventory::read(path, doc);
    for (line, message) in listing.problems {
        inv.diagnostics
            .push(Diagnostic::error(path, Some(line), message));
    }
    for scan::inventory::Entry { host, fields } in listing.entries {
        let name = host.name.clone();
        let at = host.at.clone();
        let mut errors = Vec::new();
        let host = read_host(host, fields, defaults, &mut errors);
        let failed = !errors.is_empty();
        for (line, message) in errors {
            inv.diagnostics.push(Diagnostic::error(
                path,
                Some(line),
                format!("host {name}: {message}"),
            ));
        }
        if failed {
            inv.diagnostics.push(Diagnostic::error_at(
                &at,
                format!("host {name} skipped: fix the errors above"),
            ));
        } else {
            inv.hosts.push(host);
        }
    }
    inv
}

type Errors = Vec<(u32, String)>;

/// The patching fields of a host the inventory lists.
fn read_host(host: Host, fields: &Node, defaults: Option<&Node>, errors: &mut Errors) -> HostSpec {
    let Host {
        name,
        address,
        groups,
        at,
    } = host;
    let at = &at;
    let get = |key: &str| {
        fields
            .get(key)
            .or_else(|| defaults.and_then(|d| d.get(key)))
    };
    let window = get("maintenance_window")
        .filter(|n| !n.is_null())
        .and_then(|n| read_window(n, errors));
    let package_manager = match get("package_manager").and_then(Node::as_str) {
        None | Some("apt" | "apt-get" | "dpkg") => PackageManager::Apt,
        Some("dnf" | "yum") => PackageManager::Dnf,
        Some(other) => {
            errors.push((
                line_of(get("package_manager"), at),
                format!("unknown package_manager {other:?} (apt or dnf)"),
            ));
            PackageManager::Apt
        }
    };
    let default_destination = address.clone().unwrap_or_else(|| name.clone());
    let transport = read_transport(get("transport"), &default_destination, at, errors);
    let snapshot = get("snapshot").and_then(|n| read_snapshot(n, errors));
    let health_checks = get("health_checks")
        .map(|n| match n.as_seq() {
            Some(items) => items.iter().filter_map(|i| read_check(i, errors)).collect(),
            None => read_check(n, errors).into_iter().collect(),
        })
        .unwrap_or_default();
    HostSpec {
        name,
        address,
        groups,
        window,
        package_manager,
        transport,
        snapshot,
        health_checks,
        at: at.clone(),
    }
}

fn line_of(node: Option<&Node>, at: &Provenance) -> u32 {
    node.map_or(at.line, |n| n.line)
}

fn read_window(node: &Node, errors: &mut Errors) -> Option<MaintenanceWindow> {
    let mut ok = true;
    let mut days = Vec::new();
    match node.get("days") {
        Some(d) => {
            for text in d.strings() {
                match text.as_str() {
                    "daily" | "all" | "every day" => days.extend(Weekday::ALL),
                    "weekdays" => days.extend(&Weekday::ALL[..5]),
                    "weekend" => days.extend(&Weekday::ALL[5..]),
                    t => match Weekday::parse(t) {
                        Some(day) => days.push(day),
                        None => {
                            errors.push((
                                d.line,
                                format!("unknown day {t:?} (mon..sun, weekdays, weekend, daily)"),
                            ));
                            ok = false;
                        }
                    },
                }
            }
        }
        None => days.extend(Weekday::ALL),
    }
    days.sort();
    days.dedup();
    let mut time = |key: &str| match node.get(key) {
        Some(n) => match n.as_str().and_then(TimeOfDay::parse) {
            Some(t) => Some(t),
            None => {
                errors.push((n.line, format!("{key} must be a time like \"02:00\"")));
                ok = false;
                None
            }
        },
        None => {
            errors.push((node.line, format!("maintenance_window has no {key}")));
            ok = false;
            None
        }
    };
    let start = time("start");
    let end = time("end");
    let timezone = node
        .get("timezone")
        .or_else(|| node.get("tz"))
        .and_then(Node::string)
        .unwrap_or_else(|| "UTC".to_string());
    Some(MaintenanceWindow {
        days,
        start: start?,
        end: end?,
        timezone,
    })
    .filter(|_| ok)
}

fn read_transport(
    node: Option<&Node>,
    default_destination: &str,
    at: &Provenance,
    errors: &mut Errors,
) -> Transport {
    let ssh = |user: Option<String>, port: Option<u16>, address: Option<String>| Transport::Ssh {
        destination: match user {
            Some(u) => format!("{u}@{}", address.as_deref().unwrap_or(default_destination)),
            None => address.unwrap_or_else(|| default_destination.to_string()),
        },
        port,
    };
    let Some(node) = node.filter(|n| !n.is_null()) else {
        return ssh(None, None, None);
    };
    if let Some(text) = node.as_str() {
        return match text {
            "ssh" => ssh(None, None, None),
            "local" => {
                errors.push((
                    node.line,
                    "transport local needs a root: {local: /path/to/root}".into(),
                ));
                ssh(None, None, None)
            }
            other => {
                errors.push((
                    node.line,
                    format!("unknown transport {other:?} (ssh, or {{local: /path}})"),
                ));
                ssh(None, None, None)
            }
        };
    }
    if let Some(local) = node.get("local") {
        return match local
            .as_str()
            .or_else(|| local.get("root").and_then(Node::as_str))
        {
            Some(root) => Transport::Local {
                root: root.to_string(),
            },
            None => {
                errors.push((local.line, "transport local needs a root path".into()));
                ssh(None, None, None)
            }
        };
    }
    if let Some(s) = node.get("ssh") {
        let port = s.get("port").and_then(|p| {
            let parsed = p.as_str().and_then(|t| t.parse::<u16>().ok());
            if parsed.is_none() {
                errors.push((p.line, "ssh port must be a number".into()));
            }
            parsed
        });
        return ssh(
            s.get("user").and_then(Node::string),
            port,
            s.get("address")
                .or_else(|| s.get("host"))
                .and_then(Node::string),
        );
    }
    errors.push((
        line_of(Some(node), at),
        "transport must be ssh, {ssh: {...}} or {local: /path}".into(),
    ));
    ssh(None, None, None)
}

fn read_snapshot(node: &Node, errors: &mut Errors) -> Option<SnapshotSpec> {
    if node.is_null() || node.as_str() == Some("none") {
        return None;
    }
    let field = |key: &str, errors: &mut Errors| -> Option<String> {
        let value = node.get(key).and_then(Node::string);
        if value.is_none() {
            errors.push((node.line, format!("snapshot needs {key}")));
        }
        value
    };
    match node.get("provider").and_then(Node::as_str) {
        Some("btrfs") => Some(SnapshotSpec::Btrfs {
            subvolume: field("subvolume", errors)?,
            dir: node
                .get("dir")
                .and_then(Node::string)
                .unwrap_or_else(|| "/.snapshots".to_string()),
        }),
        Some("qcow2") => Some(SnapshotSpec::Qcow2 {
            image: field("image", errors)?,
        }),
        Some("lvm") => Some(SnapshotSpec::Lvm {
            volume: field("volume", errors)?,
            size: node
                .get("size")
                .and_then(Node::string)
                .unwrap_or_else(|| "2G".to_string()),
        }),
        Some("command") => Some(SnapshotSpec::Command {
            create: field("create", errors)?,
            restore: field("restore", errors)?,
            delete: node.get("delete").and_then(Node::string),
        }),
        other => {
            errors.push((
                node.line,
                format!(
                    "unknown snapshot provider {:?} (btrfs, qcow2, lvm, command, none)",
                    other.unwrap_or("")
                ),
            ));
            None
        }
    }
}

/// Whole seconds in a duration of [`yaml::parse_duration`]'s grammar (`30s`, `2m`, `1m30s`).
///
/// A bare number of seconds (`30`) is still read: inventories accepted it
/// before the grammar was shared, and its error message offered it.
fn duration_secs(node: &Node) -> Result<u64, String> {
    let text = node
        .as_str()
        .ok_or_else(|| format!("timeout must be a duration, not {}", node.shape()))?;
    if let Ok(n) = text.trim().parse::<u64>() {
        return Ok(n);
    }
    let d = yaml::parse_duration(text).map_err(|e| format!("timeout: {e}"))?;
    if d.subsec_nanos() != 0 {
        return Err(format!("timeout {text:?} is not a whole number of seconds"));
    }
    Ok(d.as_secs())
}

fn read_check(node: &Node, errors: &mut Errors) -> Option<HealthCheck> {
    let timeout_secs = match node.get("timeout") {
        Some(t) => match duration_secs(t) {
            Ok(s) if s > 0 => s,
            Ok(_) => {
                errors.push((t.line, "timeout must not be zero".into()));
                return None;
            }
            Err(message) => {
                errors.push((t.line, message));
                return None;
            }
        },
        None => DEFAULT_HEALTH_TIMEOUT_SECS,
    };
    if let Some(command) = node
        .as_str()
        .or_else(|| node.get("command").and_then(Node::as_str))
    {
        return Some(HealthCheck::Command {
            command: command.to_string(),
            timeout_secs,
        });
    }
    if let Some(url) = node.get("http").and_then(Node::as_str) {
        if !url.starts_with("http://") {
            errors.push((node.line, format!("health check URL {url:?} must start with http:// (use a command check with curl for https)")));
            return None;
        }
        let status = match node.get("status") {
            Some(s) => match s.as_str().and_then(|t| t.parse::<u16>().ok()) {
                Some(code @ 100..=599) => code,
                _ => {
                    errors.push((s.line, "status must be an HTTP status code".into()));
                    return None;
                }
            },
            None => 200,
        };
        return Some(HealthCheck::Http {
            url: url.to_string(),
            status,
            timeout_secs,
        });
    }
    errors.push((node.line, "a health check needs command: or http:".into()));
    None
}

#[cfg(test)]
mod tests;
