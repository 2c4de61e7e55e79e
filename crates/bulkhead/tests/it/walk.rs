//! What the walk reads and what it leaves alone: .gitignore, vendored code,
//! configured excludes, and several roots at once.

use crate::*;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
spec:
  template:
    metadata:
      labels:
        app: NAME
    spec:
      containers:
        - name: NAME
          image: registry.acme.internal/apps/NAME:1.0.0
";

fn deployment(root: &Path, rel: &str, name: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, DEPLOYMENT.replace("NAME", name)).expect("write");
}

fn names(scan: &Value) -> Vec<String> {
    scan["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn ignored_vendored_and_excluded_files_are_not_read() {
    let dir = TempDir::new("walk-ignore");
    let root = dir.path();
    deployment(root, "orders/deploy.yaml", "orders");
    deployment(root, "orders/generated/deploy.yaml", "generated");
    deployment(root, "orders/vendor/lib/deploy.yaml", "vendored");
    deployment(root, "web/node_modules/pkg/deploy.yaml", "node-module");
    deployment(root, "archive/old/deploy.yaml", "archived");
    deployment(root, ".hidden-but-read/deploy.yaml", "hidden");
    std::fs::write(root.join("orders/.gitignore"), "generated/\n").expect("write");
    std::fs::write(
        root.join("bulkhead.toml"),
        "[scan]\nexclude = [\"archive/**\"]\n",
    )
    .expect("write");
    let scan = scan_json(root, &root.join("state"));
    assert_eq!(names(&scan), ["hidden", "orders"]);
}

#[test]
fn several_roots_are_scanned_as_one_fleet() {
    let dir = TempDir::new("walk-roots");
    deployment(dir.path(), "team-a/orders/deploy.yaml", "orders");
    deployment(dir.path(), "team-b/payments/deploy.yaml", "payments");
    deployment(dir.path(), "team-c/unrelated/deploy.yaml", "unrelated");
    let out = run_ok(
        bulkhead()
            .arg("scan")
            .arg(dir.path().join("team-a"))
            .arg(dir.path().join("team-b"))
            .arg("--json")
            .arg("--state")
            .arg(dir.path().join("state")),
    );
    let scan = json(&out);
    assert_eq!(names(&scan), ["orders", "payments"]);
    // Provenance is relative to the folder that holds both roots.
    assert_eq!(
        service(&scan, "orders")["declared_at"][0]["path"],
        "team-a/orders/deploy.yaml"
    );
}
