//! dpkg and apt on a host: pre-checks, package state, saving `.deb`s, the
//! upgrade, the downgrade and the verification.
//!
//! On a local root, dpkg runs with `--root=ROOT --force-script-chrootless`
//! (maintainer scripts run unchrooted with `DPKG_ROOT` set, so the root needs
//! no shell of its own) and apt reads an `APT_CONFIG` file that roots every
//! `Dir` at ROOT, so the machine's own apt configuration is never read.

use crate::host::{Host, HostCmd};
use patch::packages::{
    self, DPKG_QUERY_FORMAT, InstalledPackage, PackageChange, RebootNeed, parse_apt_simulation,
    parse_dpkg_audit, parse_dpkg_query, parse_history, parse_proc_locks, restore_plan,
    state_differences,
};
use patch::{DebSource, HostFacts, SavedDeb};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SHORT: Duration = Duration::from_secs(120);
/// An upgrade of a large host takes long; a hung maintainer script should still end.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(3600);
const HISTORY_LOG: &str = "/var/log/apt/history.log";

/// `dpkg` with the root options of a local root.
fn dpkg(host: &Host) -> HostCmd {
    let cmd = HostCmd::new("dpkg");
    match host.root() {
        Some(r) => cmd
            .arg(format!("--root={}", r.display()))
            .arg("--force-script-chrootless"),
        None => cmd,
    }
}

fn dpkg_query(host: &Host) -> HostCmd {
    let cmd = HostCmd::new("dpkg-query");
    match host.root() {
        Some(r) => cmd.arg(format!("--admindir={}", r.join("var/lib/dpkg").display())),
        None => cmd,
    }
}

/// `apt-get`, non-interactive, with the local root's configuration.
///
/// # Errors
///
/// When the apt configuration file for a local root cannot be written.
fn apt_get(host: &Host) -> Result<HostCmd, String> {
    let mut cmd = HostCmd::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("NEEDRESTART_MODE", "l")
        .env("APT_LISTCHANGES_FRONTEND", "none")
        .args([
            "-q",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ]);
    if let Some(root) = host.root() {
        cmd = cmd.env(
            "APT_CONFIG",
            write_apt_config(host, root)?.display().to_string(),
        );
    }
    Ok(cmd)
}

fn write_apt_config(host: &Host, root: &Path) -> Result<PathBuf, String> {
    let r = root.display();
    let text = format!(
        "// Written by bulkhead: apt rooted at {r}.\n\
         Dir \"{r}/\";\n\
         Dir::State::status \"{r}/var/lib/dpkg/status\";\n\
         Dir::Bin::dpkg \"/usr/bin/dpkg\";\n\
         DPkg::Options {{ \"--root={r}\"; \"--force-script-chrootless\"; }};\n\
         APT::Sandbox::User \"root\";\n"
    );
    std::fs::create_dir_all(&host.work_dir)
        .map_err(|e| format!("creating {}: {e}", host.work_dir.display()))?;
    let path = host.work_dir.join("apt.conf");
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// The packages dpkg knows, sorted.
///
/// # Errors
///
/// When dpkg-query fails.
pub fn installed(host: &Host) -> Result<Vec<InstalledPackage>, String> {
    let out = host.run_ok(
        &dpkg_query(host)
            .arg("-W")
            .arg(format!("-f={DPKG_QUERY_FORMAT}")),
        SHORT,
    )?;
    Ok(parse_dpkg_query(&out.stdout))
}

/// Packages `dpkg --audit` reports as broken.
///
/// # Errors
///
/// When dpkg cannot run.
pub fn audit(host: &Host) -> Result<Vec<String>, String> {
    let out = host
        .run(&dpkg(host).arg("--audit"), SHORT)
        .map_err(|e| e.to_string())?;
    Ok(parse_dpkg_audit(&out.stdout))
}

/// The process holding the dpkg lock, if any (`/proc/locks` against the lock files' inodes).
///
/// # Errors
///
/// When the lock files or `/proc/locks` cannot be read.
pub fn lock_holder(host: &Host) -> Result<Option<u32>, String> {
    let files = ["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock"];
    let mut ids = Vec::new();
    let locks_text = match host.root() {
        Some(_) => {
            use std::os::unix::fs::MetadataExt as _;
            for f in files {
                let path = host.local_path(f).expect("local");
                match std::fs::metadata(&path) {
                    Ok(m) => ids.push((m.dev(), m.ino())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("reading {}: {e}", path.display())),
                }
            }
            std::fs::read_to_string("/proc/locks")
                .map_err(|e| format!("reading /proc/locks: {e}"))?
        }
        None => {
            let script = format!(
                "for f in {}; do [ -e \"$f\" ] && stat -L -c 'ID %D %i' \"$f\"; done; cat /proc/locks",
                files.join(" ")
            );
            let out = host.run_ok(&HostCmd::new("sh").arg("-c").arg(script), SHORT)?;
            for line in out.stdout.lines() {
                if let Some(rest) = line.strip_prefix("ID ") {
                    let mut f = rest.split_whitespace();
                    if let (Some(d), Some(i)) = (f.next(), f.next())
                        && let (Ok(d), Ok(i)) = (u64::from_str_radix(d, 16), i.parse())
                    {
                        ids.push((d, i));
                    }
                }
            }
            out.stdout
        }
    };
    let holder = parse_proc_locks(&locks_text).into_iter().find(|l| {
        ids.iter().any(|&(dev, ino)| {
            let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
            let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
            l.inode == ino && u64::from(l.major) == major && u64::from(l.minor) == minor
        })
    });
    Ok(holder.map(|l| l.pid))
}

/// Pre-checks: the dpkg database is sound, not interrupted, and unlocked.
///
/// # Errors
///
/// Why the host must not be upgraded now.
pub fn precheck(host: &Host) -> Result<String, String> {
    if let Some(pid) = lock_holder(host)? {
        return Err(format!(
            "the dpkg lock is held by process {pid} (another apt or dpkg is running)"
        ));
    }
    let broken = audit(host)?;
    if !broken.is_empty() {
        return Err(format!(
            "dpkg --audit reports broken packages: {} (repair with dpkg --configure -a, or bulkhead patch rollback)",
            broken.join(", ")
        ));
    }
    let pending = match host.local_path("/var/lib/dpkg/updates") {
        Some(dir) => std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0),
        None => host
            .run_ok(
                &HostCmd::new("sh")
                    .arg("-c")
                    .arg("ls /var/lib/dpkg/updates | wc -l"),
                SHORT,
            )?
            .stdout
            .trim()
            .parse()
            .unwrap_or(0),
    };
    if pending > 0 {
        return Err("dpkg was interrupted (journal in /var/lib/dpkg/updates): run dpkg --configure -a first".into());
    }
    Ok("dpkg database sound, lock free".into())
}

/// `apt-get update`.
///
/// # Errors
///
/// apt's message when the lists cannot be refreshed.
pub fn refresh(host: &Host) -> Result<(), String> {
    host.run_ok(&apt_get(host)?.arg("update"), Duration::from_secs(600))
        .map(|_| ())
}

/// What `dist-upgrade` would change (`apt-get --simulate`).
///
/// # Errors
///
/// apt's message when it cannot compute the upgrade.
pub fn simulate(host: &Host) -> Result<Vec<PackageChange>, String> {
    let out = host.run_ok(&apt_get(host)?.args(["-s", "dist-upgrade"]), SHORT)?;
    Ok(parse_apt_simulation(&out.stdout))
}

/// Whether the host needs a reboot: needrestart's batch mode on a live
/// host, else `/var/run/reboot-required`; unknown when neither can tell.
///
/// # Errors
///
/// When the flag files cannot be read.
pub fn reboot_need(host: &Host) -> Result<RebootNeed, String> {
    if host.root().is_none() {
        let out = host.run(
            &HostCmd::new("sh")
                .arg("-c")
                .arg("command -v needrestart >/dev/null && needrestart -b"),
            SHORT,
        );
        if let Ok(o) = out
            && o.success()
        {
            let need = packages::parse_needrestart_batch(&o.stdout);
            if need != RebootNeed::Unknown {
                return Ok(need);
            }
        }
    }
    for flag in ["/var/run/reboot-required", "/run/reboot-required"] {
        if let Some(text) = host.read_file(flag)? {
            let pkgs = host.read_file(&format!("{flag}.pkgs"))?;
            return Ok(packages::reboot_required_file(Some(&text), pkgs.as_deref()));
        }
    }
    // The flag file is written by update-notifier-common / unattended-upgrades hooks;
    // without them, its absence proves nothing.
    let hooks = host
        .read_file("/etc/kernel/postinst.d/update-notifier")?
        .is_some()
        || host
            .read_file("/usr/share/update-notifier/notify-reboot-required")?
            .is_some();
    Ok(if hooks {
        RebootNeed::NotRequired
    } else {
        RebootNeed::Unknown
    })
}

/// What `bulkhead patch plan` shows for a host.
///
/// # Errors
///
/// The first command that failed.
pub fn facts(host: &Host) -> Result<HostFacts, String> {
    refresh(host)?;
    Ok(HostFacts {
        changes: simulate(host)?,
        reboot: reboot_need(host)?,
    })
}

/// apt's cache names files `name_version_arch.deb` with `:` escaped as `%3a`.
fn cache_file_name(name: &str, version: &str, arch: &str) -> String {
    format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// Checks that a `.deb` is the package and version it should be.
fn deb_is(host: &Host, file: &str, name: &str, version: &str) -> bool {
    let cmd = HostCmd::new("dpkg-deb").args(["-f", file, "Package", "Version"]);
    host.run_ok(&cmd, SHORT).is_ok_and(|o| {
        let text = o.stdout;
        text.contains(&format!("Package: {name}\n"))
            && text.contains(&format!("Version: {version}\n"))
    })
}

/// Saves the installed `.deb` of every package the upgrade changes or
/// removes, into `dir` on the host: from apt's cache, else downloaded from a
/// repository that still has the version, else rebuilt from the installed
/// files (repositories drop old versions; that is why this step exists).
///
/// # Errors
///
/// Which packages could not be saved, and why.
pub fn save_debs(
    host: &Host,
    before: &[InstalledPackage],
    changes: &[PackageChange],
    dir: &str,
) -> Result<Vec<SavedDeb>, String> {
    host.run_ok(&HostCmd::new("mkdir").args(["-p", dir]), SHORT)?;
    let mut saved = Vec::new();
    let mut missing = Vec::new();
    for change in changes.iter().filter(|c| c.from.is_some()) {
        let Some(pkg) = before.iter().find(|p| {
            p.name == change.name
                && change
                    .arch
                    .as_ref()
                    .is_none_or(|a| *a == p.arch || p.arch == "all")
        }) else {
            missing.push(format!("{} is not installed", change.name));
            continue;
        };
        let file_name = cache_file_name(&pkg.name, &pkg.version, &pkg.arch);
        let target = format!("{dir}/{file_name}");
        let cached = format!(
            "{}/var/cache/apt/archives/{file_name}",
            host.root_text().trim_end_matches('/')
        );
        let mut source = None;
        if host
            .run_ok(
                &HostCmd::new("cp").args([cached.as_str(), target.as_str()]),
                SHORT,
            )
            .is_ok()
            && deb_is(host, &target, &pkg.name, &pkg.version)
        {
            source = Some(DebSource::Cache);
        }
        if source.is_none() {
            let spec = format!("{}:{}={}", pkg.name, pkg.arch, pkg.version);
            let download = apt_get(host)?
                .cwd(dir.to_string())
                .args(["download", spec.as_str()]);
            if host.run_ok(&download, Duration::from_secs(600)).is_ok()
                && deb_is(host, &target, &pkg.name, &pkg.version)
            {
                source = Some(DebSource::Repository);
            }
        }
        if source.is_none() {
            match crate::repack::repack(host, pkg, &target) {
                Ok(()) if deb_is(host, &target, &pkg.name, &pkg.version) => {
                    source = Some(DebSource::Repacked)
                }
                Ok(()) => missing.push(format!(
                    "{} {}: the rebuilt .deb does not check out",
                    pkg.name, pkg.version
                )),
                Err(e) => missing.push(format!(
                    "{} {}: not in the cache, not in any repository, and not rebuilt ({e})",
                    pkg.name, pkg.version
                )),
            }
        }
        if let Some(source) = source {
            saved.push(SavedDeb {
                name: pkg.name.clone(),
                arch: pkg.arch.clone(),
                version: pkg.version.clone(),
                file: target,
                source,
            });
        }
    }
    if missing.is_empty() {
        Ok(saved)
    } else {
        Err(missing.join("; "))
    }
}

/// Length of apt's history log now, to read only what the upgrade adds.
fn history_len(host: &Host) -> Result<usize, String> {
    Ok(host.read_file(HISTORY_LOG)?.map_or(0, |t| t.len()))
}

/// apt history entries written after `offset` (the whole log when it was rotated).
fn history_since(host: &Host, offset: usize) -> Result<Vec<packages::HistoryEntry>, String> {
    let text = host.read_file(HISTORY_LOG)?.unwrap_or_default();
    let tail = if text.len() >= offset {
        &text[offset..]
    } else {
        &text[..]
    };
    Ok(parse_history(tail))
}

/// Refreshes and runs a non-interactive `dist-upgrade`; the changes come
/// from apt's history log.
///
/// # Errors
///
/// apt's failure, with the `Error:` line of the history log when there is one.
pub fn upgrade(host: &Host) -> Result<(Vec<PackageChange>, RebootNeed), String> {
    refresh(host)?;
    let offset = history_len(host)?;
    let result = host.run_ok(
        &apt_get(host)?.args(["-y", "dist-upgrade"]),
        UPGRADE_TIMEOUT,
    );
    let entries = history_since(host, offset)?;
    let changes: Vec<PackageChange> = entries.iter().flat_map(|e| e.changes.clone()).collect();
    match result {
        Ok(_) => Ok((changes, reboot_need(host)?)),
        Err(e) => {
            let logged = entries
                .iter()
                .filter_map(|e| e.error.clone())
                .collect::<Vec<_>>();
            Err(if logged.is_empty() {
                e
            } else {
                format!("{e} (history.log: {})", logged.join("; "))
            })
        }
    }
}

/// Puts the recorded package versions back: installs the saved `.deb`s of
/// packages whose version or state differs, then purges packages the
/// upgrade added.
///
/// # Errors
///
/// A missing saved `.deb`, or dpkg's failure.
pub fn downgrade(
    host: &Host,
    before: &[InstalledPackage],
    debs: &[SavedDeb],
) -> Result<String, String> {
    let now = installed(host)?;
    let plan = restore_plan(before, &now);
    let mut files = Vec::new();
    for p in &plan.install {
        match debs
            .iter()
            .find(|d| d.name == p.name && d.version == p.version)
        {
            Some(d) => files.push(d.file.clone()),
            None => return Err(format!("no saved .deb for {} {}", p.name, p.version)),
        }
    }
    if !files.is_empty() {
        host.run_ok(
            &dpkg(host)
                .args(["--force-confdef", "--force-confold", "-i"])
                .args(files),
            UPGRADE_TIMEOUT,
        )?;
    }
    if !plan.purge.is_empty() {
        let names: Vec<String> = plan.purge.iter().map(|p| p.name.clone()).collect();
        host.run_ok(&dpkg(host).arg("--purge").args(names), UPGRADE_TIMEOUT)?;
    }
    Ok(format!(
        "reinstalled {}, purged {}",
        plan.install.len(),
        plan.purge.len()
    ))
}

/// The package state equals the recorded one and dpkg's database is sound.
///
/// # Errors
///
/// The differences, one per package.
pub fn verify(host: &Host, before: &[InstalledPackage]) -> Result<String, String> {
    let now = installed(host)?;
    let diff = state_differences(before, &now);
    if !diff.is_empty() {
        return Err(format!(
            "package state differs from the recorded one: {}",
            diff.join("; ")
        ));
    }
    let broken = audit(host)?;
    if !broken.is_empty() {
        return Err(format!("dpkg --audit reports {}", broken.join(", ")));
    }
    Ok(format!("{} packages equal the recorded state", now.len()))
}
