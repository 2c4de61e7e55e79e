//! `bulkhead cve` and `bulkhead images` end to end: on generated fleets
//! (checked against their ground truth), with real git repositories for the
//! upgrade commits and a real `docker-registry` on loopback for inspection.

use crate::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn lab_fleet(name: &str) -> (TempDir, PathBuf, Value) {
    let dir = TempDir::new(name);
    let root = dir.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(&root)
            .args(["--services", "60", "--seed", "7"]),
    );
    let truth = json(&std::fs::read_to_string(root.join("ground-truth.json")).expect("truth"));
    (dir, root, truth)
}

fn in_fleet(cmd: &mut Command, dir: &TempDir, root: &Path) -> String {
    run_ok(
        cmd.arg("--path")
            .arg(root)
            .arg("--state")
            .arg(dir.path().join("state")),
    )
}

#[test]
fn cve_returns_exactly_the_ground_truth_services_with_their_evidence() {
    let (dir, root, truth) = lab_fleet("cve");
    let id = truth["critical_cve"]["id"].as_str().expect("planted CVE");
    let out = json(&in_fleet(
        bulkhead().args(["cve", id, "--json"]),
        &dir,
        &root,
    ));
    let got: BTreeSet<String> = out["cve"]["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| s["service"].as_str().expect("name").to_string())
        .collect();
    let expected: BTreeSet<String> = truth["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| s["critical_cve"] == true)
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    assert_eq!(
        strings(&truth["critical_cve"]["services"])
            .into_iter()
            .collect::<BTreeSet<_>>(),
        expected
    );
    // The OS base introduced it; the language bases inherit it.
    let introduced: BTreeSet<&str> = out["cve"]["introduced"]
        .as_array()
        .expect("introduced")
        .iter()
        .map(|i| i["image"].as_str().expect("image"))
        .collect();
    assert_eq!(
        introduced,
        BTreeSet::from([truth["critical_cve"]["os_base"].as_str().expect("os base")])
    );
    let images: BTreeSet<String> = out["cve"]["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_string())
        .collect();
    for base in strings(&truth["critical_cve"]["language_bases"]) {
        assert!(images.contains(&base), "{base} inherits the CVE");
    }
    // Every impacted service names the Dockerfile line and its workloads.
    for s in out["cve"]["services"].as_array().expect("services") {
        let at = s["at"]["path"].as_str().expect("FROM provenance");
        assert!(at.ends_with("Dockerfile"), "{at}");
        assert!(
            !s["workloads"].as_array().expect("workloads").is_empty(),
            "{s}"
        );
    }
    // The report: same services, plan starts with the base rebuild, then a canary.
    let report = &out["report"];
    assert_eq!(report["change"]["kind"], "cve");
    assert_eq!(
        report["who_is_impacted"].as_array().expect("who").len(),
        expected.len()
    );
    let waves = report["plan"]["waves"].as_array().expect("waves");
    assert_eq!(waves[0]["name"], "rebuild base images");
    assert_eq!(waves[1]["name"], "canary");
    let planned: usize = waves[1..]
        .iter()
        .map(|w| w["steps"].as_array().expect("steps").len())
        .sum();
    assert_eq!(planned, expected.len());
    // Markdown for a PR comment.
    let md = in_fleet(
        bulkhead().args(["cve", id, "--format", "markdown"]),
        &dir,
        &root,
    );
    assert!(
        md.starts_with(&format!("## bulkhead impact: remediate {id}")),
        "{md}"
    );
    // An unknown CVE reaches nobody.
    let none = json(&in_fleet(
        bulkhead().args(["cve", "CVE-1999-0001", "--json"]),
        &dir,
        &root,
    ));
    assert_eq!(none["cve"]["services"].as_array().map(Vec::len), Some(0));
    assert_eq!(none.get("timings"), None, "timings only when asked");
    // --timings (for `cargo xtask bench-cve`) adds where the time went, same answer.
    let timed = json(&in_fleet(
        bulkhead().args(["cve", id, "--json", "--timings"]),
        &dir,
        &root,
    ));
    assert_eq!(timed["cve"], out["cve"]);
    for key in ["load_ms", "query_ms"] {
        assert!(timed["timings"][key].as_f64().is_some(), "{timed:?}");
    }
}

#[test]
fn every_final_from_is_classified_as_the_ground_truth_says() {
    let (dir, root, truth) = lab_fleet("check");
    let output = bulkhead()
        .args(["images", "check", "--json", "--path"])
        .arg(&root)
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(1),
        "the fleet has unpinned bases"
    );
    let checks = json(&String::from_utf8_lossy(&output.stdout));
    let froms = checks["froms"].as_array().expect("froms");
    let mut checked = 0;
    for service in truth["services"].as_array().expect("services") {
        let name = service["name"].as_str().expect("name");
        let finals: Vec<&Value> = froms
            .iter()
            .filter(|f| f["service"] == name && f["role"] == "final" && f["base_repo"] == false)
            .collect();
        assert_eq!(finals.len(), 1, "{name}: {finals:?}");
        let f = finals[0];
        assert_eq!(f["image"], service["base_image"], "{name}");
        assert_eq!(f["pinning"], service["base_pinning"], "{name}");
        assert_eq!(f["approved"], service["base_registry_approved"], "{name}");
        let problems: Vec<&str> = f["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .filter_map(|p| p["kind"].as_str())
            .collect();
        assert_eq!(
            problems.contains(&"unapproved-registry"),
            service["base_registry_approved"] == false,
            "{name}"
        );
        let expected_pin_problem = match service["base_pinning"].as_str() {
            Some("tag") => Some("tag-only"),
            Some("latest") => Some("latest"),
            Some("none") => Some("no-tag"),
            _ => None,
        };
        if let Some(p) = expected_pin_problem {
            assert!(problems.contains(&p), "{name}: {problems:?}");
        }
        checked += 1;
    }
    assert_eq!(checked, 60);
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn upgrade_commits_change_only_the_from_reference() {
    let (dir, root, truth) = lab_fleet("upgrade");
    let to = "registry.acme.internal/base/go-1.22:2024.11@sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let users: Vec<&Value> = truth["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| {
            s["base_image"]
                .as_str()
                .is_some_and(|b| b.starts_with("registry.acme.internal/base/go-1.22"))
        })
        .collect();
    assert!(!users.is_empty());
    let dry = in_fleet(
        bulkhead().args(["images", "upgrade", "--to", to]),
        &dir,
        &root,
    );
    assert_eq!(
        dry.lines().filter(|l| l.contains(" -> ")).count(),
        users.len(),
        "{dry}"
    );
    let applied = in_fleet(
        bulkhead().args(["images", "upgrade", "--to", to, "--apply"]),
        &dir,
        &root,
    );
    assert_eq!(
        applied.matches("committed").count(),
        users.len(),
        "{applied}"
    );
    for service in users {
        let repo = root.join(service["repo"].as_str().expect("repo"));
        let branch = "bulkhead/base-go-1.22-2024.11";
        let before = git(&repo, &["show", "HEAD:Dockerfile"]);
        let after = git(&repo, &["show", &format!("{branch}:Dockerfile")]);
        let changed: Vec<(&str, &str)> = before
            .split_inclusive('\n')
            .zip(after.split_inclusive('\n'))
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            before.split_inclusive('\n').count(),
            after.split_inclusive('\n').count()
        );
        assert_eq!(changed.len(), 1, "{}: {changed:?}", service["name"]);
        let (old, new) = changed[0];
        assert!(old.starts_with("FROM ") || old.starts_with("ARG "), "{old}");
        assert_eq!(
            old.replace(service["base_image"].as_str().expect("base"), to),
            new
        );
        // Only the Dockerfile changed, in one commit on top of HEAD.
        assert_eq!(
            git(&repo, &["diff", "--name-only", "HEAD", branch]).trim(),
            "Dockerfile"
        );
        assert_eq!(
            git(&repo, &["rev-parse", &format!("{branch}~1")]),
            git(&repo, &["rev-parse", "HEAD"])
        );
    }
}

/// A `docker-registry` on loopback, storage in `dir`; killed on drop.
struct Registry(std::process::Child, String);

impl Registry {
    fn start(dir: &Path) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("registry.yml"), config).expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("registry.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/setup installs it)");
        let registry = Registry(child, format!("127.0.0.1:{port}"));
        let client = registry::Client::new(&format!("http://{}", registry.1))
            .expect("url")
            .with_timeout(std::time::Duration::from_secs(2));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while client.ping().is_err() {
            assert!(std::time::Instant::now() < deadline, "registry not ready");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn push(
    client: &registry::Client,
    repo: &str,
    tag: &str,
    layers: &[&[u8]],
    annotations: serde_json::Value,
) -> (String, Vec<String>) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| registry::sha256_digest(l).to_string())
        .collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).to_string();
    let config_digest = client.push_blob(repo, config.as_bytes()).expect("config");
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": registry::OCI_LAYER, "digest": client.push_blob(repo, l).expect("layer").to_string(), "size": l.len()}))
        .collect();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": registry::OCI_MANIFEST,
        "config": {"mediaType": registry::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers, "annotations": annotations})
    .to_string();
    let digest = client
        .push_manifest(repo, tag, registry::OCI_MANIFEST, manifest.as_bytes())
        .expect("manifest");
    (digest.to_string(), diff_ids)
}

#[test]
fn inspect_finds_the_base_by_annotation_and_by_diff_ids_prefix_in_a_real_registry() {
    let dir = TempDir::new("registry");
    let registry = Registry::start(dir.path());
    let host = registry.1.clone();
    let client = registry::Client::new(&format!("http://{host}")).expect("url");
    let (base_digest, base_ids) = push(
        &client,
        "base/debian-12",
        "2024.10",
        &[b"debian rootfs"],
        serde_json::json!({}),
    );
    let (_, app_ids) = push(
        &client,
        "apps/orders",
        "1.0",
        &[b"debian rootfs", b"orders binary"],
        serde_json::json!({}),
    );
    push(
        &client,
        "apps/billing",
        "2.0",
        &[b"debian rootfs", b"billing binary"],
        serde_json::json!({
            "org.opencontainers.image.base.name": format!("{host}/base/debian-12:2024.10"),
            "org.opencontainers.image.base.digest": base_digest,
        }),
    );
    assert!(app_ids.starts_with(&base_ids));
    // The fleet knows the base from its Trivy report (its layers), not from annotations.
    let fleet = dir.path().join("fleet");
    std::fs::create_dir_all(fleet.join("reports")).expect("mkdir");
    std::fs::write(
        fleet.join("bulkhead.toml"),
        "[reports]\ntrivy = [\"reports\"]\n",
    )
    .expect("toml");
    std::fs::write(
        fleet.join("reports/debian-12.json"),
        serde_json::json!({"SchemaVersion": 2, "ArtifactName": format!("{host}/base/debian-12:2024.10"),
            "Metadata": {"DiffIDs": base_ids, "RepoDigests": [format!("{host}/base/debian-12@{base_digest}")]},
            "Results": []})
        .to_string(),
    )
    .expect("report");
    let state = dir.path().join("state");
    let inspect = |reference: &str| {
        json(&run_ok(
            bulkhead()
                .args(["images", "inspect", reference, "--json", "--path"])
                .arg(&fleet)
                .arg("--state")
                .arg(&state),
        ))
    };
    let orders = inspect(&format!("{host}/apps/orders:1.0"));
    assert_eq!(orders["base"], format!("{host}/base/debian-12"));
    assert_eq!(orders["base_via"], "diff_ids prefix");
    assert_eq!(strings(&orders["diff_ids"]), app_ids);
    let billing = inspect(&format!("{host}/apps/billing:2.0"));
    assert_eq!(
        billing["base"],
        format!("{host}/base/debian-12:2024.10@{base_digest}")
    );
    assert_eq!(billing["base_via"], "annotation");
    let base = inspect(&format!("{host}/base/debian-12:2024.10"));
    assert_eq!(base["digest"], base_digest, "tag -> digest");
    assert_eq!(base["base"], Value::Null);
    // A missing tag is a clear error naming the image.
    let out = bulkhead()
        .args([
            "images",
            "inspect",
            &format!("{host}/apps/orders:9.9"),
            "--path",
        ])
        .arg(&fleet)
        .arg("--state")
        .arg(&state)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("apps/orders:9.9") && stderr.contains("404"),
        "{stderr}"
    );
}

#[test]
fn audit_classifies_every_image_and_counts_criticals_only_on_the_cve_lineage() {
    let dir = TempDir::new("audit");
    let root = dir.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(&root)
            .args(["--services", "30"]),
    );
    let truth = json(&std::fs::read_to_string(root.join("ground-truth.json")).expect("truth"));
    let out = json(&in_fleet(
        bulkhead().args(["images", "audit", "--json"]),
        &dir,
        &root,
    ));
    assert_eq!(out["schema"], "bulkhead.images-audit/v1");
    let rows = out["images"].as_array().expect("images");
    let pinning_of = |image: &str| -> BTreeSet<String> {
        rows.iter()
            .filter(|r| r["image"] == image)
            .map(|r| r["pinning"].as_str().unwrap_or("-").to_string())
            .collect()
    };
    let latest = strings(&truth["latest_images"]);
    assert!(!latest.is_empty());
    for image in &latest {
        // `:latest` written out, or no tag at all (which pulls latest).
        let class = if image.ends_with(":latest") {
            "latest"
        } else {
            "none"
        };
        assert_eq!(
            pinning_of(image),
            BTreeSet::from([class.to_string()]),
            "{image}"
        );
    }
    let unpinned = strings(&truth["unpinned_images"]);
    assert!(!unpinned.is_empty());
    for image in &unpinned {
        let classes = pinning_of(image);
        assert!(!classes.is_empty(), "{image} is missing from the audit");
        assert!(
            classes
                .iter()
                .all(|c| ["tag", "latest", "none"].contains(&c.as_str())),
            "{image}: {classes:?}"
        );
    }
    // Every kind of reference is there: final and builder FROMs, workload containers.
    let kinds: BTreeSet<&str> = rows.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["builder-from", "final-from", "workload"])
    );
    // Criticals exactly where the lineage reaches the OS base that carries the CVE.
    let os_base = truth["critical_cve"]["os_base"].as_str().expect("os base");
    let mut with_criticals = 0;
    for r in rows {
        let on_it = strings(&r["lineage"]).iter().any(|n| n == os_base);
        let critical = r["critical"].as_u64().expect("critical");
        assert_eq!(critical > 0, on_it, "{r}");
        with_criticals += usize::from(on_it);
    }
    assert!(with_criticals > 0);
    // The app image of every service the CVE reaches carries it (sidecars are
    // other builds: they do not inherit the service's base).
    for service in truth["services"].as_array().expect("services") {
        let name = service["name"].as_str().expect("name");
        for image in strings(&service["images"])
            .into_iter()
            .filter(|i| i.contains(&format!("/{name}:")) || i.contains(&format!("/{name}@")))
        {
            // By repository (the lab's registry has no port): a kustomize
            // `images:` override may change the tag, and its `newName` the
            // repository the workload runs.
            let repo = |i: &str| i.split([':', '@']).next().map(str::to_string);
            let deployed = service["kustomize_images"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|k| repo(&image).as_deref() == k["name"].as_str())
                .and_then(|k| k["new_name"].as_str().map(str::to_string))
                .or_else(|| repo(&image));
            let row = rows
                .iter()
                .find(|r| {
                    r["kind"] == "workload"
                        && r["service"] == name
                        && r["image"].as_str().and_then(repo) == deployed
                })
                .unwrap_or_else(|| panic!("{image} is missing from the audit"));
            assert_eq!(
                row["critical"].as_u64().expect("critical") > 0,
                service["critical_cve"] == true,
                "{row}"
            );
        }
    }
    // The table and Markdown forms say the same.
    let table = in_fleet(bulkhead().args(["images", "audit"]), &dir, &root);
    assert!(
        table.contains(&format!("{} image reference(s)", rows.len())),
        "{table}"
    );
    let md = in_fleet(
        bulkhead().args(["images", "audit", "--format", "markdown"]),
        &dir,
        &root,
    );
    assert!(md.starts_with("```\nAT"), "{md}");
}

/// `registry/repository` of a reference without a registry port (the lab's).
fn image_name(reference: &str) -> String {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name.to_string(),
        _ => no_digest.to_string(),
    }
}

#[test]
fn impact_image_lists_exactly_the_services_built_on_each_os_base() {
    let (dir, root, truth) = lab_fleet("impact-image");
    let catalog =
        json(&std::fs::read_to_string(root.join("base-images/images.json")).expect("images.json"));
    let entries = catalog.as_array().expect("catalog");
    let parent: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_string(),
                image_name(e["base"].as_str().expect("base")),
            )
        })
        .collect();
    let published: BTreeSet<&str> = parent.iter().map(|(n, _)| n.as_str()).collect();
    // OS bases: published images whose own base is upstream.
    let os_bases: Vec<&str> = parent
        .iter()
        .filter(|(_, base)| !published.contains(base.as_str()))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(os_bases.len() >= 3, "{os_bases:?}");
    let mut seen = 0;
    for os in os_bases {
        // The OS base and every published image whose chain reaches it.
        let on_it: BTreeSet<&str> = parent
            .iter()
            .filter(|(name, _)| {
                let mut current = name.as_str();
                for _ in 0..8 {
                    if current == os {
                        return true;
                    }
                    match parent.iter().find(|(n, _)| n == current) {
                        Some((_, base)) => current = base,
                        None => return false,
                    }
                }
                false
            })
            .map(|(n, _)| n.as_str())
            .collect();
        let expected: BTreeSet<String> = truth["services"]
            .as_array()
            .expect("services")
            .iter()
            .filter(|s| {
                on_it.contains(image_name(s["base_image"].as_str().expect("base")).as_str())
            })
            .map(|s| s["name"].as_str().expect("name").to_string())
            .collect();
        let out = json(&in_fleet(
            bulkhead().args(["impact", "image", os, "--json"]),
            &dir,
            &root,
        ));
        let services = out["image"]["services"].as_array().expect("services");
        let got: BTreeSet<String> = services
            .iter()
            .map(|s| s["service"].as_str().expect("service").to_string())
            .collect();
        assert_eq!(got, expected, "{os}");
        seen += got.len();
        // Each one with its Dockerfile line.
        for s in services {
            assert!(
                s["at"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("Dockerfile"))
                    && s["at"]["line"].as_u64().is_some_and(|l| l > 0),
                "{s}"
            );
        }
        // Ranked: internet-facing first, then by tier.
        let keys: Vec<(bool, u64)> = services
            .iter()
            .map(|s| {
                (
                    s["public_routes"].as_array().is_none_or(Vec::is_empty),
                    s["tier"].as_u64().unwrap_or(10),
                )
            })
            .collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{os}: {keys:?}");
        let report = &out["report"];
        assert_eq!(report["change"]["kind"], "image_update");
        assert_eq!(report["change"]["image"], os);
        assert_eq!(
            report["who_is_impacted"].as_array().map(Vec::len),
            Some(expected.len())
        );
        let images: BTreeSet<&str> = out["image"]["images"]
            .as_array()
            .expect("images")
            .iter()
            .filter_map(|i| i["name"].as_str())
            .collect();
        assert_eq!(images, on_it, "{os}");
        // The derived bases are rebuilt first; the OS base itself is the change.
        let waves = report["plan"]["waves"].as_array().expect("waves");
        if on_it.len() > 1 {
            let rebuilt: BTreeSet<&str> = waves[0]["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .filter_map(|s| s["target"].as_str())
                .collect();
            let derived: BTreeSet<&str> = on_it.iter().copied().filter(|n| *n != os).collect();
            assert_eq!(rebuilt, derived);
        }
        let planned: usize = waves
            .iter()
            .filter(|w| w["name"] != "rebuild base images")
            .map(|w| w["steps"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(planned, expected.len());
    }
    assert!(seen > 0);
    // Table form for humans.
    let table = in_fleet(
        bulkhead().args(["impact", "image", "registry.acme.internal/base/debian-12"]),
        &dir,
        &root,
    );
    assert!(
        table.starts_with("Change: image registry.acme.internal/base/debian-12 -> a new build"),
        "{table}"
    );
}

/// Every line that differs between `before` and `after` (same line count).
fn changed_lines<'a>(before: &'a str, after: &'a str) -> Vec<(&'a str, &'a str)> {
    assert_eq!(
        before.split_inclusive('\n').count(),
        after.split_inclusive('\n').count()
    );
    before
        .split_inclusive('\n')
        .zip(after.split_inclusive('\n'))
        .filter(|(a, b)| a != b)
        .collect()
}

#[test]
fn upgrade_from_an_exact_reference_rewrites_froms_and_manifest_image_fields() {
    let (dir, root, truth) = lab_fleet("upgrade-from");
    let services = truth["services"].as_array().expect("services");
    // FROMs: only the services on exactly this reference move, not those on a digest of it.
    let from = "registry.acme.internal/base/go-1.22:2024.10";
    let to = "registry.acme.internal/base/go-1.22:2024.11@sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let exact = services.iter().filter(|s| s["base_image"] == from).count();
    let near = services
        .iter()
        .filter(|s| {
            s["base_image"]
                .as_str()
                .is_some_and(|b| b.starts_with(from) && b != from)
        })
        .count();
    assert!(exact > 0 && near > 0, "exact {exact}, near {near}");
    let dry = in_fleet(
        bulkhead().args(["images", "upgrade", "--from", from, "--to", to]),
        &dir,
        &root,
    );
    let edits: Vec<&str> = dry.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(edits.len(), exact, "{dry}");
    assert!(edits.iter().all(|l| l.contains("Dockerfile:")), "{dry}");

    // Manifests: a pinned sidecar image, moved in every workload that runs it.
    let sidecar = services
        .iter()
        .flat_map(|s| strings(&s["images"]))
        .find(|i| i.contains("/platform/"))
        .expect("a sidecar image in the lab fleet");
    let users: Vec<&Value> = services
        .iter()
        .filter(|s| strings(&s["images"]).contains(&sidecar))
        .collect();
    assert!(!users.is_empty());
    let new = format!(
        "{}:9.9.9@sha256:2222222222222222222222222222222222222222222222222222222222222222",
        sidecar.split(':').next().expect("name")
    );
    let applied = in_fleet(
        bulkhead().args([
            "images", "upgrade", "--from", &sidecar, "--to", &new, "--apply",
        ]),
        &dir,
        &root,
    );
    assert_eq!(
        applied.matches("committed").count(),
        users.len(),
        "{applied}"
    );
    let branch = "bulkhead/base-otel-agent-9.9.9";
    for service in users {
        let repo = root.join(service["repo"].as_str().expect("repo"));
        let files = git(&repo, &["diff", "--name-only", "HEAD", branch]);
        assert!(!files.trim().is_empty(), "{}", service["name"]);
        for file in files.lines() {
            assert!(!file.ends_with("Dockerfile"), "{file}");
            let before = git(&repo, &["show", &format!("HEAD:{file}")]);
            let after = git(&repo, &["show", &format!("{branch}:{file}")]);
            let changed = changed_lines(&before, &after);
            assert!(!changed.is_empty(), "{file}");
            for (old, new_line) in changed {
                assert!(old.trim_start().starts_with("image:"), "{old}");
                assert_eq!(old.replace(&sidecar, &new), new_line);
            }
        }
        // No image field still on the old reference.
        let rest = Command::new("git")
            .current_dir(&repo)
            .args(["grep", "-c", "-F", &sidecar, branch])
            .output()
            .expect("git grep");
        assert_eq!(rest.status.code(), Some(1), "{rest:?}");
    }
}

/// Two real repositories: one deploying with a Kustomize overlay that pins
/// the image, one with a Helm chart whose values pin it; a third reference
/// in a plain manifest.
const YAML_FLEET: &[(&str, &str)] = &[
    (
        "orders/deploy/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: orders}\nspec:\n  selector: {matchLabels: {app: orders}}\n  template:\n    metadata: {labels: {app: orders}}\n    spec:\n      containers:\n        - name: orders\n          image: registry.acme.internal/apps/orders:1.0.0\n",
    ),
    (
        "orders/deploy/base/kustomization.yaml",
        "resources: [deployment.yaml]\n",
    ),
    (
        "orders/deploy/overlays/prod/kustomization.yaml",
        "resources: [../../base]\nimages:\n  # pinned by the release pipeline\n  - name: registry.acme.internal/apps/orders\n    newTag: \"1.4.2\"\n  - name: redis\n    newTag: \"7\"\n",
    ),
    (
        "billing/chart/Chart.yaml",
        "apiVersion: v2\nname: billing\nversion: 0.1.0\n",
    ),
    (
        "billing/chart/values.yaml",
        "image:\n  repository: registry.acme.internal/apps/orders\n  tag: 1.4.2 # the orders client image\n  pullPolicy: IfNotPresent\n",
    ),
    (
        "billing/chart/values-staging.yaml",
        "image:\n  repository: registry.acme.internal/apps/billing\n  tag: 2.0.0\n",
    ),
];

#[test]
fn upgrade_moves_kustomize_images_and_helm_values_in_real_repositories() {
    let dir = TempDir::new("upgrade-yaml");
    let root = dir.path().join("fleet");
    for (path, text) in YAML_FLEET {
        dir.write(Path::new("fleet").join(path), text);
    }
    for repo in ["orders", "billing"] {
        let repo = root.join(repo);
        test_support::git(&repo, &["init", "-q"]);
        test_support::git(&repo, &["add", "-A"]);
        test_support::git(&repo, &["commit", "-q", "-m", "first"]);
    }
    let to = "registry.acme.internal/apps/orders:1.5.0@sha256:2222222222222222222222222222222222222222222222222222222222222222";
    let dry = in_fleet(
        bulkhead().args(["images", "upgrade", "--to", to]),
        &dir,
        &root,
    );
    let edits: BTreeSet<&str> = dry.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(
        edits,
        BTreeSet::from([
            format!("orders/deploy/overlays/prod/kustomization.yaml:4: registry.acme.internal/apps/orders:1.4.2 -> {to}").as_str(),
            format!("billing/chart/values.yaml:2: registry.acme.internal/apps/orders:1.4.2 -> {to}").as_str(),
        ]),
        "{dry}"
    );
    in_fleet(
        bulkhead().args(["images", "upgrade", "--to", to, "--apply"]),
        &dir,
        &root,
    );
    let branch = "bulkhead/base-orders-1.5.0";
    let at_branch = |repo: &str, file: &str| {
        test_support::git(&root.join(repo), &["show", &format!("{branch}:{file}")])
    };
    assert_eq!(
        at_branch("orders", "deploy/overlays/prod/kustomization.yaml"),
        "resources: [../../base]\nimages:\n  # pinned by the release pipeline\n  - name: registry.acme.internal/apps/orders\n    newTag: \"1.5.0\"\n    digest: sha256:2222222222222222222222222222222222222222222222222222222222222222\n  - name: redis\n    newTag: \"7\""
    );
    assert_eq!(
        at_branch("billing", "chart/values.yaml"),
        "image:\n  repository: registry.acme.internal/apps/orders\n  tag: 1.5.0@sha256:2222222222222222222222222222222222222222222222222222222222222222 # the orders client image\n  pullPolicy: IfNotPresent"
    );
    for (repo, files) in [
        ("orders", "deploy/overlays/prod/kustomization.yaml"),
        ("billing", "chart/values.yaml"),
    ] {
        let repo = root.join(repo);
        assert_eq!(
            test_support::git(&repo, &["diff", "--name-only", "HEAD", branch]),
            files
        );
        assert_eq!(test_support::git(&repo, &["status", "--porcelain"]), "");
        let message = test_support::git(&repo, &["log", "-1", "--format=%B", branch]);
        assert!(
            message.starts_with(&format!("Move the base image to {to}")),
            "{message}"
        );
    }
}
