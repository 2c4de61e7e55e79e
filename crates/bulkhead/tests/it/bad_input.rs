//! Bad input never stops a scan: each bad file gives a diagnostic with its path
//! (and line where there is one), and the rest of the fleet is still reported.

use crate::*;
use std::os::unix::fs::{PermissionsExt as _, symlink};

const GOOD_CATALOG: &str = "apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: orders
  labels:
    tier: \"2\"
spec:
  type: service
  owner: group:team-orders
  lifecycle: production
";

const GOOD_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
spec:
  template:
    metadata:
      labels:
        app: orders
    spec:
      containers:
        - name: orders
          image: registry.acme.internal/apps/orders:1.2.3
          env:
            - name: PAYMENTS_URL
              value: http://payments:8080/
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments
spec:
  template:
    metadata:
      labels:
        app: payments
    spec:
      containers:
        - name: payments
          image: registry.acme.internal/apps/payments:2.0.0
---
apiVersion: v1
kind: Service
metadata:
  name: payments
spec:
  selector:
    app: payments
";

fn write(root: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("write");
    path
}

/// A fleet with one good service and one bad file of each kind.
fn bad_fleet(root: &Path) -> PathBuf {
    write(root, "orders/catalog-info.yaml", GOOD_CATALOG.as_bytes());
    write(root, "orders/deploy/k8s.yaml", GOOD_DEPLOYMENT.as_bytes());
    write(
        root,
        "orders/Dockerfile",
        b"FROM registry.acme.internal/base/go:1.22\n",
    );
    write(
        root,
        "broken/k8s.yaml",
        b"apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n  labels: {\n",
    );
    write(
        root,
        "binary/Dockerfile",
        b"\x7fELF\x02\x01\x01\x00\x00\x00FROM alpine\x00\x00",
    );
    write(
        root,
        "latin1/catalog-info.yaml",
        b"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: caf\xe9\n",
    );
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    write(root, "bomb/bomb.yaml", bomb.as_bytes());
    let big_line = "# padding line for a very large manifest file ...........................\n";
    write(
        root,
        "huge/big.yaml",
        big_line
            .repeat(50 * 1024 * 1024 / big_line.len() + 1)
            .as_bytes(),
    );
    std::fs::create_dir_all(root.join("loop")).expect("mkdir");
    symlink("b", root.join("loop/a")).expect("symlink");
    symlink("a", root.join("loop/b")).expect("symlink");
    symlink(root.join("loop"), root.join("loop/back-to-parent")).expect("symlink");
    symlink("/etc/hostname", root.join("escape.yaml")).expect("symlink");
    let status = Command::new("mkfifo")
        .arg(root.join("fifo-catalog-info.yaml"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let unreadable = write(root, "secret/Dockerfile", b"FROM alpine:3.20\n");
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    unreadable
}

/// The scan command, run as an unprivileged user when we are root: root reads
/// mode-000 files, and the point is to see what happens when a file cannot be read.
fn unprivileged_scan(root: &Path, unreadable: &Path) -> Command {
    let privileged = std::fs::read(unreadable).is_ok();
    let mut cmd = if privileged {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_bulkhead"),
        ]);
        c
    } else {
        bulkhead()
    };
    cmd.arg("scan").arg(root).arg("--json");
    cmd
}

#[test]
fn every_bad_file_is_a_diagnostic_and_the_fleet_is_still_reported() {
    let dir = TempDir::new("bad-input");
    let unreadable = bad_fleet(dir.path());
    let out = run_ok(&mut unprivileged_scan(dir.path(), &unreadable));
    let scan = json(&out);

    let orders = service(&scan, "orders");
    assert_eq!(orders["owner"], "team-orders");
    assert_eq!(orders["tier"], 2);
    assert_eq!(strings(&orders["depends_on"]), ["payments"]);
    assert_eq!(
        strings(&orders["base_images"]),
        ["registry.acme.internal/base/go:1.22"]
    );

    let diagnostics: Vec<(String, Option<u64>, String)> = scan["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap_or("").to_string(),
                d["line"].as_u64(),
                d["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expect = |path: &str, line: Option<u64>, fragment: &str| {
        assert!(
            diagnostics.iter().any(|(p, l, m)| p == path
                && (line.is_none() || *l == line)
                && m.contains(fragment)),
            "no diagnostic for {path} ({line:?}) containing {fragment:?} in {diagnostics:#?}"
        );
    };
    expect("broken/k8s.yaml", Some(5), "invalid YAML");
    expect("binary/Dockerfile", None, "binary file");
    expect("latin1/catalog-info.yaml", Some(4), "not valid UTF-8");
    expect("bomb/bomb.yaml", None, "alias bomb");
    expect("huge/big.yaml", None, "over the 8388608-byte limit");
    expect("loop/a", None, "symlink loop");
    expect("loop/b", None, "symlink loop");
    expect("escape.yaml", None, "outside the fleet root");
    expect("fifo-catalog-info.yaml", None, "not a regular file");
    expect("secret/Dockerfile", None, "cannot read");
    // A symlink to a folder inside the root is scanned under its real path only.
    assert!(
        !diagnostics
            .iter()
            .any(|(p, _, _)| p == "loop/back-to-parent"),
        "{diagnostics:#?}"
    );
}

#[test]
fn invalid_configuration_stops_the_scan_with_the_line() {
    let dir = TempDir::new("bad-config");
    write(
        dir.path(),
        "bulkhead.toml",
        b"[images]\napproved_registries = [\"a/\"]\nbase_repo = 3\n",
    );
    let out = bulkhead()
        .arg("scan")
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bulkhead.toml: invalid configuration") && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[test]
fn rescan_reads_only_changed_files() {
    let dir = TempDir::new("rescan");
    let state = TempDir::new("rescan-state");
    write(
        dir.path(),
        "orders/catalog-info.yaml",
        GOOD_CATALOG.as_bytes(),
    );
    write(
        dir.path(),
        "orders/deploy/k8s.yaml",
        GOOD_DEPLOYMENT.as_bytes(),
    );
    write(
        dir.path(),
        "orders/Dockerfile",
        b"FROM registry.acme.internal/base/go:1.22\n",
    );
    let first = scan_json(dir.path(), state.path());
    assert_eq!(first["stats"]["files_parsed"], 3);
    let second = scan_json(dir.path(), state.path());
    assert_eq!(second["stats"]["files_parsed"], 0);
    assert_eq!(second["stats"]["files_from_cache"], 3);
    assert_eq!(second["services"], first["services"]);
    write(dir.path(), "orders/Dockerfile", b"FROM registry.acme.internal/base/go:1.23@sha256:1111111111111111111111111111111111111111111111111111111111111111\n");
    let third = scan_json(dir.path(), state.path());
    assert_eq!(third["stats"]["files_parsed"], 1);
    assert_eq!(
        strings(&service(&third, "orders")["base_images"]),
        [
            "registry.acme.internal/base/go:1.23@sha256:1111111111111111111111111111111111111111111111111111111111111111"
        ]
    );
}

/// A rescan that finds every file unchanged moves the cached facts into the
/// fleet and leaves the cache file as it was; one that finds a file gone
/// writes the cache again without it. Each answers what a scan without a
/// cache answers.
#[test]
fn an_unchanged_rescan_keeps_the_cache_and_a_deleted_file_leaves_it() {
    let dir = TempDir::new("rescan-same");
    let state = TempDir::new("rescan-same-state");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(dir.path().join("fleet"))
            .args(["--services", "8"]),
    );
    let fleet = dir.path().join("fleet");
    let without_stats = |mut report: Value| {
        report.as_object_mut().expect("an object").remove("stats");
        report
    };
    let fresh = |n: &str| without_stats(scan_json(&fleet, &dir.path().join(n)));
    let cache_file = state.path().join("scan-cache.bin");
    let first = scan_json(&fleet, state.path());
    let written = std::fs::metadata(&cache_file)
        .and_then(|m| m.modified())
        .expect("cache written");
    let second = scan_json(&fleet, state.path());
    assert_eq!(second["stats"]["files_parsed"], 0);
    assert_eq!(without_stats(second), without_stats(first));
    assert_eq!(
        std::fs::metadata(&cache_file)
            .and_then(|m| m.modified())
            .expect("cache"),
        written,
        "an unchanged scan does not rewrite the cache"
    );

    let dockerfile = std::fs::read_dir(fleet.join("services"))
        .expect("services")
        .map(|e| e.expect("entry").path().join("Dockerfile"))
        .find(|p| p.is_file())
        .expect("a Dockerfile");
    let rel = dockerfile
        .strip_prefix(&fleet)
        .expect("under the fleet")
        .display()
        .to_string();
    // The cache writes each path as its length (one byte below 128) and its bytes.
    let key = [
        &[u8::try_from(rel.len()).expect("a short path")][..],
        rel.as_bytes(),
    ]
    .concat();
    let cached = || {
        let cache = std::fs::read(&cache_file).expect("cache");
        cache.windows(key.len()).any(|w| w == key)
    };
    assert!(cached(), "{rel} is in the cache");
    std::fs::remove_file(&dockerfile).expect("rm");
    let third = scan_json(&fleet, state.path());
    assert_eq!(third["stats"]["files_parsed"], 0);
    assert_eq!(without_stats(third), fresh("fresh-after-delete"));
    assert!(!cached(), "{rel} left the cache");
    assert_eq!(
        without_stats(scan_json(&fleet, state.path())),
        fresh("fresh-again")
    );
}
