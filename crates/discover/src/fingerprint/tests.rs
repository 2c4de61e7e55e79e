//! The fingerprint walk meets exactly the files the scan reads, and every
//! change a scan would see changes the digest, both walked again and
//! rechecked by stats from the last walk's list, while a change it would not
//! see leaves the digest as it was.

use crate::{FleetStats, ScanOptions, StatWalk, scan, state};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use test_support::TempDir;

const ID_1: &str = "0123456789abcdef0123456789abcdef01234567";
const ID_2: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// A small fleet: two repositories, files the scan reads and files it leaves out
/// (unrecognised, ignored, excluded, vendored, in `node_modules` or the state directory).
fn fleet(dir: &TempDir) -> PathBuf {
    let files = [
        ("bulkhead.toml", "[scan]\nexclude = [\"excluded/\"]\n"),
        (".gitignore", "ignored/\n"),
        ("svc/a/Dockerfile", "FROM debian:12\n"),
        (
            "svc/a/deploy/k8s.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n",
        ),
        ("svc/a/.git/HEAD", "ref: refs/heads/main\n"),
        ("svc/a/.git/refs/heads/main", &format!("{ID_1}\n")),
        (
            "svc/a/.git/config",
            "[remote \"origin\"]\n\turl = git@example.com:shop/a.git\n",
        ),
        (
            "svc/b/catalog-info.yaml",
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: b\n",
        ),
        ("svc/b/.git/HEAD", "ref: refs/heads/main\n"),
        (
            "svc/b/.git/packed-refs",
            &format!("{ID_2} refs/heads/main\n"),
        ),
        ("svc/b/README.md", "# b\n"),
        ("ignored/Dockerfile", "FROM scratch\n"),
        ("excluded/k8s.yaml", "kind: Service\n"),
        ("svc/a/vendor/x/Dockerfile", "FROM scratch\n"),
        ("svc/a/node_modules/y/k8s.yaml", "kind: Service\n"),
        (".bulkhead/old.yaml", "kind: Service\n"),
    ];
    for (rel, text) in files {
        dir.write(format!("fleet/{rel}"), text);
    }
    let root = dir.join("fleet");
    age(&root);
    root
}

/// The time [`age`] sets next, in seconds after the epoch.
/// The time in seconds after the epoch that the next [`age`] sets.
static AGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_600_000_000);

/// Sets the mtime of every file and folder written in the last minute to a time long
/// past (another at each call, so that an aged change still moves the
/// mtime), as a fleet checked out long before the scan: a fingerprint of
/// it is settled. Files older than that are left alone (setting a time
/// changes the ctime, which the digest holds).
fn age(path: &Path) {
    age_at(
        path,
        AGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    );
}

fn age_at(path: &Path, at: u64) {
    let recent = SystemTime::now() - Duration::from_secs(60);
    let metadata = std::fs::symlink_metadata(path).expect("metadata");
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir").flatten() {
            age_at(&entry.path(), at);
        }
    }
    if !metadata.is_symlink() && metadata.modified().expect("mtime") > recent {
        set_mtime(path, SystemTime::UNIX_EPOCH + Duration::from_secs(at));
    }
}

fn set_mtime(path: &Path, at: SystemTime) {
    std::fs::File::open(path)
        .and_then(|f| f.set_modified(at))
        .expect("set mtime");
}

/// One change to a fleet, made when called.
type Change<'a> = Box<dyn Fn() + 'a>;

fn options(root: &Path) -> ScanOptions {
    ScanOptions {
        paths: vec![root.to_path_buf()],
        state_dir: None,
        use_cache: true,
    }
}

fn walk(root: &Path) -> StatWalk {
    FleetStats::locate(&options(root)).expect("locate").walk()
}

fn recheck(root: &Path, watch: &str) -> String {
    FleetStats::locate(&options(root))
        .expect("locate")
        .recheck(watch)
}

/// The digest of a walk, after checking that a recheck of its list agrees.
fn digest(root: &Path) -> StatWalk {
    let walked = walk(root);
    assert!(walked.settled, "an aged fleet gives a settled fingerprint");
    assert_eq!(
        recheck(root, &walked.watch),
        walked.digest,
        "a recheck of an unchanged fleet"
    );
    walked
}

/// Every file the scan read (the cache's entries) moves the digest when
/// touched; no file it left out does, and neither does a file only the walk
/// reads whose change leaves the walked set as it was.
#[test]
fn the_digest_follows_the_files_the_scan_reads_and_no_others() {
    let dir = TempDir::new("fingerprint-files");
    let root = fleet(&dir);
    let outcome = scan(&options(&root), &crate::Progress::default()).expect("scan");
    let read: Vec<String> = state::load_cache(outcome.state_dir.path())
        .entries
        .into_keys()
        .collect();
    assert_eq!(
        read,
        [
            "svc/a/Dockerfile",
            "svc/a/deploy/k8s.yaml",
            "svc/b/catalog-info.yaml"
        ]
    );
    let mut before = digest(&root);
    let mut later = 3000;
    let mut touch = |rel: &str| {
        later -= 1;
        set_mtime(
            &root.join(rel),
            SystemTime::now() - Duration::from_secs(later),
        );
        digest(&root)
    };
    let watched = [
        "svc/a/Dockerfile",
        "svc/a/deploy/k8s.yaml",
        "svc/b/catalog-info.yaml",
        ".gitignore",
        "svc/a/.git/HEAD",
        "svc/a/.git/refs/heads/main",
        "svc/a/.git/config",
        "svc/b/.git/packed-refs",
    ];
    for rel in watched {
        let after = touch(rel);
        assert_ne!(after.digest, before.digest, "touching {rel}");
        assert_ne!(
            recheck(&root, &before.watch),
            before.digest,
            "touching {rel}, rechecked"
        );
        before = after;
    }
    for rel in [
        "svc/b/README.md",
        "ignored/Dockerfile",
        "excluded/k8s.yaml",
        "svc/a/vendor/x/Dockerfile",
        "svc/a/node_modules/y/k8s.yaml",
        ".bulkhead/old.yaml",
        ".bulkhead/scan-cache.bin",
        "bulkhead.toml",
    ] {
        assert_eq!(touch(rel).digest, before.digest, "touching {rel}");
    }
}

/// One change at a time, each of which a scan would answer differently to:
/// the digest moves every time, and comes back settled once the change is old.
#[test]
fn every_change_a_scan_would_see_moves_the_digest() {
    let dir = TempDir::new("fingerprint-changes");
    let root = fleet(&dir);
    let replace = |rel: &str, text: &str| {
        // Written beside and renamed over, as editors and git save: a new inode.
        let tmp = root.join(format!("{rel}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, root.join(rel)).expect("rename");
    };
    let old = SystemTime::now() - Duration::from_secs(7200);
    let changes: Vec<(&str, Change)> = vec![
        (
            "same-size content, written in place",
            Box::new(|| {
                std::fs::write(root.join("svc/a/Dockerfile"), "FROM debian:13\n").expect("write")
            }),
        ),
        (
            "same-size content with the mtime set back",
            Box::new(|| {
                let path = root.join("svc/a/Dockerfile");
                let mtime = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .expect("mtime");
                replace("svc/a/Dockerfile", "FROM debian:14\n");
                set_mtime(&path, mtime);
            }),
        ),
        (
            "a touch",
            Box::new(|| set_mtime(&root.join("svc/a/deploy/k8s.yaml"), old)),
        ),
        (
            "a file added",
            Box::new(|| {
                dir.write("fleet/svc/b/Dockerfile", "FROM alpine:3\n");
            }),
        ),
        (
            "a file removed",
            Box::new(|| std::fs::remove_file(root.join("svc/b/Dockerfile")).expect("rm")),
        ),
        (
            "a file renamed",
            Box::new(|| {
                std::fs::rename(
                    root.join("svc/a/deploy/k8s.yaml"),
                    root.join("svc/a/deploy/svc.yaml"),
                )
                .expect("rename")
            }),
        ),
        (
            "a commit on the checked-out branch",
            Box::new(|| replace("svc/a/.git/refs/heads/main", &format!("{ID_2}\n"))),
        ),
        (
            "a packed ref moved",
            Box::new(|| {
                replace(
                    "svc/b/.git/packed-refs",
                    &format!("{ID_1} refs/heads/main\n"),
                )
            }),
        ),
        (
            "another branch checked out",
            Box::new(|| replace("svc/a/.git/HEAD", "ref: refs/heads/dev\n")),
        ),
        (
            "a detached HEAD",
            Box::new(|| replace("svc/b/.git/HEAD", &format!("{ID_1}\n"))),
        ),
        (
            "a remote changed",
            Box::new(|| {
                replace(
                    "svc/a/.git/config",
                    "[remote \"origin\"]\n\turl = git@example.com:shop/z.git\n",
                )
            }),
        ),
        (
            "an exclude file created in a repository",
            Box::new(|| {
                dir.write("fleet/svc/a/.git/info/exclude", "Dockerfile\n");
            }),
        ),
        (
            "an exclude file changed",
            Box::new(|| replace("svc/a/.git/info/exclude", "deploy/\n")),
        ),
        (
            "a file no longer ignored",
            Box::new(|| replace(".gitignore", "other/\n")),
        ),
        (
            "an exclude pattern",
            Box::new(|| replace("bulkhead.toml", "[scan]\nexclude = [\"svc/b/\"]\n")),
        ),
        (
            "a symlink",
            Box::new(|| {
                std::os::unix::fs::symlink("/nowhere", root.join("svc/a/link.yaml"))
                    .expect("symlink")
            }),
        ),
        (
            "a repository added",
            Box::new(|| {
                dir.write("fleet/svc/c/.git/HEAD", "ref: refs/heads/main\n");
            }),
        ),
    ];
    let mut before = digest(&root);
    assert_eq!(digest(&root).digest, before.digest, "nothing changed");
    for (what, change) in changes {
        change();
        let recent = walk(&root);
        assert!(
            !recent.settled || recent.digest != before.digest,
            "{what}: a fingerprint taken at once is either not kept or moved"
        );
        assert_ne!(
            recheck(&root, &before.watch),
            before.digest,
            "{what}, rechecked at once"
        );
        age(&root);
        assert_ne!(
            recheck(&root, &before.watch),
            before.digest,
            "{what}, rechecked"
        );
        let after = digest(&root);
        assert_ne!(after.digest, before.digest, "{what}");
        before = after;
    }
}

/// A file written just before the walk leaves the fingerprint unsettled:
/// another write within its timestamp's granularity could go unseen.
#[test]
fn a_file_written_just_now_leaves_the_fingerprint_unsettled() {
    let dir = TempDir::new("fingerprint-settle");
    let root = fleet(&dir);
    assert!(walk(&root).settled);
    std::fs::write(root.join("svc/a/Dockerfile"), "FROM debian:13\n").expect("write");
    assert!(!walk(&root).settled);
    set_mtime(
        &root.join("svc/a/Dockerfile"),
        SystemTime::now() + Duration::from_secs(60),
    );
    assert!(!walk(&root).settled, "an mtime in the future");
    age(&root);
    assert!(walk(&root).settled);
    dir.write("fleet/svc/a/deploy/extra.yaml", "kind: Service\n");
    assert!(!walk(&root).settled, "a folder changed just now");
}
