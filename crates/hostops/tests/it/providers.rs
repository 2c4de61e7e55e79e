//! Snapshot providers, lock detection, health checks, zones and the state
//! database, each against the real thing.

use super::*;
use hostops::host::Host;
use hostops::snapshot::Snapshots;
use patch::{Effective, HealthCheck, SnapshotSpec};
use std::io::{BufRead as _, Read as _, Write as _};
use std::process::Command;

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn local_host(name: &str, root: &Path, work: &Path) -> Host {
    let spec = patch::inventory::parse(
        "h.yaml",
        &format!(
            "hosts:\n  - name: {name}\n    transport: {{local: {}}}\n",
            root.display()
        ),
    );
    Host::new(&spec.hosts[0], work.to_path_buf(), 1)
}

/// qcow2 internal snapshots with the real qemu-img: create, list, apply, delete.
#[test]
fn qcow2_snapshots_are_created_listed_applied_and_deleted() {
    let temp = TempDir::new("qcow2");
    let image = temp.path().join("disk.qcow2");
    sh(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("1M"));
    let io = |cmd: &str| {
        Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", cmd])
            .arg(&image)
            .output()
            .unwrap()
    };
    assert!(io("write -P 0xaa 0 64k").status.success());
    let spec = SnapshotSpec::Qcow2 {
        image: image.display().to_string(),
    };
    let host = local_host("vm-1", temp.path(), temp.path());
    let snaps = Snapshots {
        spec: &spec,
        host: &host,
    };
    let id = snaps.create("bulkhead-run1-vm-1").unwrap();
    assert_eq!(snaps.list().unwrap(), ["bulkhead-run1-vm-1"]);
    assert!(io("write -P 0xbb 0 64k").status.success());
    let changed = io("read -P 0xaa 0 64k");
    assert!(
        String::from_utf8_lossy(&changed.stdout).contains("Pattern verification failed"),
        "the disk changed"
    );
    assert_eq!(snaps.restore(&id).unwrap(), Effective::AtNextBoot);
    let restored = io("read -P 0xaa 0 64k");
    let text = String::from_utf8_lossy(&restored.stdout);
    assert!(
        restored.status.success() && !text.contains("failed"),
        "{text}"
    );
    snaps.delete(&id).unwrap();
    assert!(snaps.list().unwrap().is_empty());
    assert!(snaps.restore("no-such-snapshot").is_err());
}

/// Why a btrfs file system cannot be had here, or `None` when one can be mounted at `mnt`.
fn btrfs_unavailable(image: &Path, mnt: &Path) -> Option<String> {
    let is_root = sh(Command::new("id").arg("-u")).trim() == "0";
    if !is_root {
        return Some("not running as root: mounting needs CAP_SYS_ADMIN".into());
    }
    for tool in ["mkfs.btrfs", "btrfs", "mount", "umount"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Some(format!(
                "{tool} is not installed (apt-get install btrfs-progs)"
            ));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control: loop devices are unavailable in this sandbox".into());
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.lines().any(|l| l.trim_end().ends_with("btrfs")) {
        return Some("the kernel does not list btrfs in /proc/filesystems".into());
    }
    std::fs::File::create(image)
        .and_then(|f| f.set_len(128 << 20))
        .ok()?;
    let mkfs = Command::new("mkfs.btrfs")
        .arg("-q")
        .arg(image)
        .output()
        .ok()?;
    if !mkfs.status.success() {
        return Some(format!(
            "mkfs.btrfs failed: {}",
            String::from_utf8_lossy(&mkfs.stderr).trim()
        ));
    }
    std::fs::create_dir_all(mnt).ok()?;
    let mount = Command::new("mount")
        .args(["-o", "loop"])
        .arg(image)
        .arg(mnt)
        .output()
        .ok()?;
    if !mount.status.success() {
        return Some(format!(
            "mount -o loop failed: {}",
            String::from_utf8_lossy(&mount.stderr).trim()
        ));
    }
    None
}

struct Unmount<'a>(&'a Path);
impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).output();
    }
}

/// btrfs subvolume snapshots on a loop-mounted file system; skipped, with
/// the exact reason, where loop devices or btrfs are not available.
#[test]
fn btrfs_subvolumes_are_snapshotted_and_swapped_back() {
    let temp = TempDir::new("btrfs");
    let mnt = temp.path().join("mnt");
    if let Some(reason) = btrfs_unavailable(&temp.path().join("fs.img"), &mnt) {
        eprintln!("skipping the btrfs snapshot test: {reason}");
        assert!(!reason.is_empty());
        return;
    }
    let _unmount = Unmount(&mnt);
    let data = mnt.join("data");
    sh(Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(&data));
    std::fs::write(data.join("file"), "before").unwrap();
    let spec = SnapshotSpec::Btrfs {
        subvolume: data.display().to_string(),
        dir: mnt.join("snaps").display().to_string(),
    };
    let host = local_host("box", &mnt, temp.path());
    let snaps = Snapshots {
        spec: &spec,
        host: &host,
    };
    let id = snaps.create("bulkhead-run1-box").unwrap();
    assert_eq!(snaps.list().unwrap(), std::slice::from_ref(&id));
    std::fs::write(data.join("file"), "after").unwrap();
    assert_eq!(snaps.restore(&id).unwrap(), Effective::Now);
    assert_eq!(
        std::fs::read_to_string(data.join("file")).unwrap(),
        "before"
    );
    std::fs::write(data.join("file"), "writable again").unwrap();
    snaps.delete(&id).unwrap();
}

/// A real dpkg holding its lock (its postinst waits on a FIFO) is found
/// through /proc/locks, and the pre-check refuses the host.
#[test]
fn a_running_dpkg_is_seen_holding_the_lock() {
    let temp = TempDir::new("lock");
    let bed = Testbed::new(&temp.path().join("bed")).unwrap();
    let repo = bed.repo("r", &[]).unwrap();
    let root = bed.root("box", &repo, BASE).unwrap();
    let pkg = temp.path().join("blocker");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::write(pkg.join("DEBIAN/control"), "Package: blocker\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t.invalid>\nDescription: waits\n").unwrap();
    std::fs::write(
        pkg.join("DEBIAN/postinst"),
        "#!/bin/sh\necho ready > \"$READY\"\nread line < \"$RELEASE\"\n",
    )
    .unwrap();
    sh(Command::new("chmod")
        .arg("755")
        .arg(pkg.join("DEBIAN/postinst")));
    let deb = temp.path().join("blocker.deb");
    sh(Command::new("dpkg-deb")
        .args(["-Zgzip", "--root-owner-group", "--build"])
        .arg(&pkg)
        .arg(&deb));
    let (ready, release) = (temp.path().join("ready"), temp.path().join("release"));
    sh(Command::new("mkfifo").arg(&ready).arg(&release));
    let host = local_host("box", &root, &temp.path().join("work"));
    assert_eq!(hostops::apt::lock_holder(&host).unwrap(), None);
    let mut dpkg = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "-i"])
        .arg(&deb)
        .env("READY", &ready)
        .env("RELEASE", &release)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Opening the FIFO blocks until the postinst writes: dpkg then holds its lock.
    let mut line = String::new();
    std::io::BufReader::new(std::fs::File::open(&ready).unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    assert_eq!(hostops::apt::lock_holder(&host).unwrap(), Some(dpkg.id()));
    let refusal = hostops::apt::precheck(&host).unwrap_err();
    assert!(
        refusal.contains(&format!("the dpkg lock is held by process {}", dpkg.id())),
        "{refusal}"
    );
    writeln!(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&release)
            .unwrap(),
        "go"
    )
    .unwrap();
    assert!(dpkg.wait().unwrap().success());
    assert_eq!(hostops::apt::lock_holder(&host).unwrap(), None);
    hostops::apt::precheck(&host).unwrap();
}

/// One HTTP answer from a loopback listener.
fn serve_once(response: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        stream.write_all(response.as_bytes()).unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });
    (url, handle)
}

#[test]
fn http_checks_speak_http_1_1_over_loopback() {
    let (url, server) =
        serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    let (status, body) =
        hostops::health::http_get(&url, std::time::Duration::from_secs(10)).unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));
    let request = server.join().unwrap();
    assert!(
        request.starts_with("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:"),
        "{request}"
    );

    let temp = TempDir::new("http");
    let host = local_host("box", temp.path(), temp.path());
    let (url, server) =
        serve_once("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\ndown");
    let checks = [HealthCheck::Http {
        url: url.clone(),
        status: 200,
        timeout_secs: 10,
    }];
    let e = hostops::health::run_checks(&host, &checks).unwrap_err();
    assert_eq!(e, format!("GET {url} -> 200: HTTP 503, expected 200: down"));
    server.join().unwrap();
    // Nobody listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(
        hostops::health::http_get(
            &format!("http://127.0.0.1:{port}/"),
            std::time::Duration::from_secs(5)
        )
        .is_err()
    );
    assert!(
        hostops::health::http_get(
            "https://example.invalid/",
            std::time::Duration::from_secs(1)
        )
        .unwrap_err()
        .contains("only http://")
    );
}

#[test]
fn command_checks_see_the_host_root_and_time_out() {
    let temp = TempDir::new("cmd");
    std::fs::write(temp.path().join("marker"), "ok\n").unwrap();
    let host = local_host("box", temp.path(), temp.path());
    let check = |command: &str, timeout_secs| HealthCheck::Command {
        command: command.into(),
        timeout_secs,
    };
    hostops::health::run_checks(
        &host,
        &[check(
            r#"grep -qx ok "$BULKHEAD_ROOT/marker" && test "$BULKHEAD_HOST" = box"#,
            10,
        )],
    )
    .unwrap();
    let e =
        hostops::health::run_checks(&host, &[check("echo broken >&2; exit 3", 10)]).unwrap_err();
    assert_eq!(e, "`echo broken >&2; exit 3`: exit 3: broken");
    // A check that would hang is killed at its timeout (it waits on a FIFO nobody writes).
    let fifo = temp.path().join("never");
    sh(Command::new("mkfifo").arg(&fifo));
    let e =
        hostops::health::run_checks(&host, &[check(&format!("read x < {}", fifo.display()), 1)])
            .unwrap_err();
    assert!(e.contains("did not finish within 1s"), "{e}");
}

#[test]
fn zones_come_from_the_system_database_or_the_built_in_table() {
    let berlin = hostops::zoneinfo::resolve("Europe/Berlin").unwrap();
    assert_eq!(berlin.offset_at(at("2025-07-01T00:00:00Z")), 7200);
    assert_eq!(berlin.offset_at(at("2025-12-01T00:00:00Z")), 3600);
    if Path::new("/usr/share/zoneinfo/America/Sao_Paulo").exists() {
        // Not in the built-in table's DST list: read from the TZif footer.
        let z = hostops::zoneinfo::resolve("America/Sao_Paulo").unwrap();
        assert_eq!(z.offset_at(at("2025-07-01T00:00:00Z")), -3 * 3600);
        let kathmandu = hostops::zoneinfo::resolve("Asia/Kathmandu").unwrap();
        assert_eq!(
            kathmandu.offset_at(at("2025-07-01T00:00:00Z")),
            5 * 3600 + 45 * 60
        );
    } else {
        eprintln!(
            "no /usr/share/zoneinfo (tzdata not installed): only the built-in zones were checked"
        );
    }
    assert_eq!(hostops::zoneinfo::resolve("UTC"), Some(patch::Zone::Utc));
    assert_eq!(hostops::zoneinfo::resolve("../../etc/passwd"), None);
    assert_eq!(hostops::zoneinfo::resolve("Mars/Olympus"), None);
}

#[test]
fn the_state_database_is_sqlite_in_wal_mode_and_keeps_events_in_order() {
    let temp = TempDir::new("db");
    let db = StateDb::open(&temp.path().join("state")).unwrap();
    let inv = patch::inventory::parse("h.yaml", "hosts:\n  - name: a\n");
    let plan = patch::plan::plan(&inv, &options("1", 0), &|_| None, &BTreeMap::new()).unwrap();
    let id = db.create_run(&plan).unwrap();
    let started = patch::Event::Started {
        host: "a".into(),
        step: patch::Step::Precheck,
    };
    db.append(id, &started).unwrap();
    db.append(
        id,
        &patch::Event::Failed {
            host: "a".into(),
            step: patch::Step::Precheck,
            reason: "x".into(),
        },
    )
    .unwrap();
    drop(db);
    let db = StateDb::open(&temp.path().join("state")).unwrap();
    let events = db.events(id).unwrap();
    assert_eq!(events.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(events[0].event, started);
    assert_eq!(db.plan(id).unwrap(), plan);
    assert!(matches!(
        db.load(id).unwrap().0.host_state("a"),
        Some(HostState::Aborted { .. })
    ));
    let mode = sh(Command::new("sh").arg("-c").arg(format!(
        "head -c 20 {} | od -An -c | tr -d ' \\n'",
        db.path().display()
    )));
    assert!(mode.starts_with("SQLiteformat3"), "{mode}");
    assert!(
        temp.path().join("state/patch.db-wal").exists(),
        "WAL mode keeps a -wal file beside the database"
    );
    assert!(matches!(
        db.plan(99),
        Err(hostops::StateError::NoSuchRun { run: 99, .. })
    ));
}
