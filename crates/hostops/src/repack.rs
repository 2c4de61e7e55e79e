//! Rebuilding the `.deb` of an installed package from its files, as
//! `dpkg-repack` does, for when no repository has the version any more.
//!
//! On a local root this is done here: the control fields from `dpkg-query
//! -s` (without the database-only ones), the maintainer scripts from
//! `/var/lib/dpkg/info`, the conffiles, and every listed file, then
//! `dpkg-deb --build`. Limitations, as with dpkg-repack: files are owned by
//! root in the rebuilt package, and conffiles carry their current
//! (possibly locally edited) content. Over SSH the host's `dpkg-repack` is used.

use crate::host::{Host, HostCmd};
use patch::InstalledPackage;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(600);
/// Fields the dpkg database adds that a package's control file must not have.
const DATABASE_FIELDS: &[&str] = &["Status", "Config-Version", "Conffiles"];
const INFO_FILES: &[&str] = &[
    "preinst",
    "postinst",
    "prerm",
    "postrm",
    "config",
    "templates",
    "triggers",
    "shlibs",
    "symbols",
];

/// Rebuilds `pkg` into the `.deb` file `target` (a path on the host).
///
/// # Errors
///
/// What could not be read or built.
pub fn repack(host: &Host, pkg: &InstalledPackage, target: &str) -> Result<(), String> {
    let Some(root) = host.root() else {
        let dir = Path::new(target)
            .parent()
            .map_or(".".into(), |p| p.display().to_string());
        let cmd = HostCmd::new("dpkg-repack")
            .arg(format!("{}:{}", pkg.name, pkg.arch))
            .cwd(dir);
        host.run_ok(&cmd, TIMEOUT)?;
        return Ok(());
    };
    let admindir = root.join("var/lib/dpkg");
    let qualified = format!("{}:{}", pkg.name, pkg.arch);
    let query = |args: &[&str]| {
        let cmd = HostCmd::new("dpkg-query")
            .arg(format!("--admindir={}", admindir.display()))
            .args(args.iter().copied());
        host.run_ok(&cmd, TIMEOUT).map(|o| o.stdout)
    };
    let status = query(&["-s", &qualified])?;
    if !status.contains("Status: install ok installed") {
        return Err(format!(
            "{qualified} is not fully installed, so its files cannot be trusted"
        ));
    }
    let build = Path::new(target).with_extension("build");
    let _ = std::fs::remove_dir_all(&build);
    let debian = build.join("DEBIAN");
    std::fs::create_dir_all(&debian).map_err(|e| format!("creating {}: {e}", debian.display()))?;
    std::fs::write(
        debian.join("control"),
        control_without_database_fields(&status),
    )
    .map_err(|e| format!("writing control: {e}"))?;
    let conffiles: Vec<String> = query(&["-W", "-f=${Conffiles}", &qualified])?
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // " /etc/x md5 [obsolete|remove-on-upgrade]": only live conffiles.
            (words.len() == 2).then(|| words[0].to_string())
        })
        .collect();
    if !conffiles.is_empty() {
        std::fs::write(debian.join("conffiles"), conffiles.join("\n") + "\n")
            .map_err(|e| format!("writing conffiles: {e}"))?;
    }
    for info in INFO_FILES {
        for name in [
            format!("{}.{info}", pkg.name),
            format!("{qualified}.{info}"),
        ] {
            let from = admindir.join("info").join(&name);
            if from.exists() {
                std::fs::copy(&from, debian.join(info))
                    .map_err(|e| format!("copying {}: {e}", from.display()))?;
            }
        }
    }
    for line in query(&["-L", &qualified])?.lines() {
        // Diversion notes ("diverted by ...") are not paths.
        if !line.starts_with('/') || line == "/." {
            continue;
        }
        let from = root.join(line.trim_start_matches('/'));
        let to = build.join(line.trim_start_matches('/'));
        let meta = match std::fs::symlink_metadata(&from) {
            Ok(m) => m,
            Err(e) => return Err(format!("{line} of {qualified} is gone ({e})")),
        };
        if meta.is_dir() {
            std::fs::create_dir_all(&to).map_err(|e| format!("creating {}: {e}", to.display()))?;
            let _ = std::fs::set_permissions(
                &to,
                std::fs::Permissions::from_mode(meta.permissions().mode()),
            );
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&from)
                .map_err(|e| format!("reading link {}: {e}", from.display()))?;
            std::os::unix::fs::symlink(link, &to)
                .map_err(|e| format!("linking {}: {e}", to.display()))?;
        } else {
            std::fs::copy(&from, &to).map_err(|e| format!("copying {}: {e}", from.display()))?;
        }
    }
    let result = host.run_ok(
        &HostCmd::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(build.display().to_string())
            .arg(target),
        TIMEOUT,
    );
    let _ = std::fs::remove_dir_all(&build);
    result.map(|_| ())
}

fn control_without_database_fields(status: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in status.lines() {
        if line.starts_with([' ', '\t']) {
            if !skipping {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        let field = line.split(':').next().unwrap_or_default();
        skipping = DATABASE_FIELDS.contains(&field) || line.trim().is_empty();
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
