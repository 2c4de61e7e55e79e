//! Synthetic packages, local apt repositories and host roots: the real
//! dpkg/apt world the tests, the rollback benchmark and a curious user can
//! patch without a fleet.
//!
//! Packages (all `Architecture: all`, built with `dpkg-deb`):
//!
//! | package | version | behaviour |
//! |---|---|---|
//! | demo | 1.0, 1.1 | good: `/usr/share/demo/health` says `ok`; postinst records itself under `$DPKG_ROOT/var/lib/demo` |
//! | demo | 1.2 | postinst exits 1: dpkg leaves it half-configured |
//! | demo | 1.3 | installs fine, but its health file says `broken` ([`HEALTH_COMMAND`] fails) |
//! | libdemo | 1.0, 1.1 | a library demo depends on; demo >= 1.1 needs libdemo 1.1 |
//! | demo-extras | 1.1 | new in 1.1: an upgrade installs it, a rollback must purge it |
//!
//! A root is the smallest tree dpkg and apt work in: the dpkg database,
//! apt's folders, and a `sources.list` naming a `file:` repository
//! (`[trusted=yes]`, built with `apt-ftparchive`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The health check the test packages are made for: passes for 1.0-1.2, fails for 1.3.
pub const HEALTH_COMMAND: &str = r#"grep -qx ok "$BULKHEAD_ROOT/usr/share/demo/health""#;

/// Every package version the testbed builds.
pub const PACKAGES: &[(&str, &str)] = &[
    ("libdemo", "1.0"),
    ("libdemo", "1.1"),
    ("demo", "1.0"),
    ("demo", "1.1"),
    ("demo", "1.2"),
    ("demo", "1.3"),
    ("demo-extras", "1.1"),
];

#[derive(Debug)]
pub struct Testbed {
    pub dir: PathBuf,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn chmod(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

impl Testbed {
    /// Builds every package into `dir/pool`.
    ///
    /// # Errors
    ///
    /// When dpkg-deb fails or a file cannot be written.
    pub fn new(dir: &Path) -> Result<Testbed, String> {
        let tb = Testbed {
            dir: dir.to_path_buf(),
        };
        std::fs::create_dir_all(tb.dir.join("pool"))
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        for (name, version) in PACKAGES {
            tb.build(name, version)?;
        }
        Ok(tb)
    }

    /// The `.deb` of a package version.
    pub fn deb(&self, name: &str, version: &str) -> PathBuf {
        self.dir
            .join("pool")
            .join(format!("{name}_{version}_all.deb"))
    }

    fn build(&self, name: &str, version: &str) -> Result<(), String> {
        let src = self.dir.join("src").join(format!("{name}_{version}"));
        let _ = std::fs::remove_dir_all(&src);
        let depends = match (name, version) {
            ("demo", "1.0") => "libdemo (>= 1.0)",
            ("demo", _) => "libdemo (>= 1.1), demo-extras",
            _ => "",
        };
        let mut control = format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: bulkhead tests <tests@bulkhead.invalid>\nSection: misc\nPriority: optional\n"
        );
        if !depends.is_empty() {
            control.push_str(&format!("Depends: {depends}\n"));
        }
        control.push_str(&format!("Description: bulkhead test package {name} {version}\n synthetic, built by hostops::testbed\n"));
        write(&src.join("DEBIAN/control"), &control)?;
        write(
            &src.join(format!("usr/share/{name}/version")),
            &format!("{version}\n"),
        )?;
        if name == "demo" {
            let health = if version == "1.3" { "broken" } else { "ok" };
            write(&src.join("usr/share/demo/health"), &format!("{health}\n"))?;
            write(
                &src.join("etc/demo/demo.conf"),
                &format!("# demo configuration\nversion = {version}\n"),
            )?;
            write(&src.join("DEBIAN/conffiles"), "/etc/demo/demo.conf\n")?;
            let fail = if version == "1.2" {
                "echo 'demo 1.2: postinst fails on purpose' >&2\nexit 1\n"
            } else {
                ""
            };
            let postinst = format!(
                "#!/bin/sh\nset -e\nmkdir -p \"$DPKG_ROOT/var/lib/demo\"\necho \"{version} $1\" >> \"$DPKG_ROOT/var/lib/demo/configured\"\n{fail}exit 0\n"
            );
            write(&src.join("DEBIAN/postinst"), &postinst)?;
            chmod(&src.join("DEBIAN/postinst"), 0o755)?;
        }
        run(Command::new("dpkg-deb")
            .args(["-Zgzip", "--root-owner-group", "--build"])
            .arg(&src)
            .arg(self.deb(name, version)))?;
        Ok(())
    }

    /// A `file:` repository holding the given package versions.
    ///
    /// # Errors
    ///
    /// When apt-ftparchive fails.
    pub fn repo(&self, name: &str, packages: &[(&str, &str)]) -> Result<PathBuf, String> {
        let repo = self.dir.join("repos").join(name);
        let _ = std::fs::remove_dir_all(&repo);
        std::fs::create_dir_all(&repo).map_err(|e| format!("creating {}: {e}", repo.display()))?;
        for (n, v) in packages {
            let deb = self.deb(n, v);
            std::fs::copy(&deb, repo.join(deb.file_name().expect("file name")))
                .map_err(|e| format!("copying {}: {e}", deb.display()))?;
        }
        let packages_index = run(Command::new("apt-ftparchive")
            .arg("packages")
            .arg(".")
            .current_dir(&repo))?;
        write(&repo.join("Packages"), &packages_index)?;
        let release = run(Command::new("apt-ftparchive")
            .arg("release")
            .arg(".")
            .current_dir(&repo))?;
        write(&repo.join("Release"), &release)?;
        Ok(repo)
    }

    /// A host root using `repo`, with the given package versions installed.
    ///
    /// # Errors
    ///
    /// When the tree cannot be made or dpkg fails.
    pub fn root(
        &self,
        name: &str,
        repo: &Path,
        installed: &[(&str, &str)],
    ) -> Result<PathBuf, String> {
        let root = self.dir.join("hosts").join(name);
        let _ = std::fs::remove_dir_all(&root);
        for d in [
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
            "var/lib/dpkg/alternatives",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/log/apt",
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "etc/apt/sources.list.d",
            "etc/apt/trusted.gpg.d",
            "var/run",
            "tmp",
        ] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| format!("creating {d}: {e}"))?;
        }
        write(&root.join("var/lib/dpkg/status"), "")?;
        write(&root.join("var/lib/dpkg/available"), "")?;
        point_at(&root, repo)?;
        if !installed.is_empty() {
            let mut cmd = Command::new("dpkg");
            cmd.arg(format!("--root={}", root.display()))
                .args(["--force-script-chrootless", "-i"]);
            for (n, v) in installed {
                cmd.arg(self.deb(n, v));
            }
            run(&mut cmd)?;
        }
        Ok(root)
    }
}

/// Makes a root's only apt source the repository `repo`.
///
/// # Errors
///
/// When sources.list cannot be written.
pub fn point_at(root: &Path, repo: &Path) -> Result<(), String> {
    write(
        &root.join("etc/apt/sources.list"),
        &format!("deb [trusted=yes] file:{} ./\n", repo.display()),
    )
}

/// `dpkg-query -W` of a root: the exact text the acceptance compares.
///
/// # Errors
///
/// When dpkg-query fails.
pub fn dpkg_query_w(root: &Path) -> Result<String, String> {
    run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .arg("-W"))
}

/// `dpkg --audit` of a root (empty when sound).
///
/// # Errors
///
/// When dpkg cannot run.
pub fn dpkg_audit(root: &Path) -> Result<String, String> {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg("--audit"))
}
