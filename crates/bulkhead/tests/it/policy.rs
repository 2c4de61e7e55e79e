//! `bulkhead policy`: the built-in bundle on a generated fleet against its
//! ground truth, on the online-boutique manifests, the SARIF and JUnit
//! outputs, and gator suites through `policy verify`.

use crate::*;
use model::ImageRef;
use std::collections::BTreeSet;
use std::time::Duration;

fn canonical(image: &str) -> String {
    ImageRef::parse(image).map_or_else(|_| image.to_string(), |i| i.to_string())
}

fn policy_json(args: &[&str], path: &Path, state: &Path) -> (Value, i32) {
    let out = bulkhead()
        .args(["policy", "check"])
        .arg(path)
        .arg("--state")
        .arg(state)
        .args(["--format", "json"])
        .args(args)
        .output()
        .expect("run bulkhead");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    (json(&text), out.status.code().unwrap_or(-1))
}

fn images_of(findings: &[Value], policy: &str) -> BTreeSet<String> {
    findings
        .iter()
        .filter(|f| f["policy"] == policy)
        .filter_map(|f| f["image"].as_str().map(canonical))
        .collect()
}

#[test]
fn bundle_finds_exactly_the_planted_violations_of_a_generated_fleet() {
    let dir = TempDir::new("policy-lab");
    let fleet = dir.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(&fleet)
            .args(["--services", "40"]),
    );
    let truth = json(&std::fs::read_to_string(fleet.join("ground-truth.json")).expect("truth"));
    let (report, code) = policy_json(&[], &fleet, &dir.path().join("state"));
    assert_eq!(code, 1, "planted violations deny");
    assert_eq!(report["diagnostics"], json(r#"[]"#));
    let findings = report["findings"].as_array().expect("findings");
    for f in findings {
        let at = &f["at"];
        assert!(
            at["path"].as_str().is_some_and(|p| !p.is_empty())
                && at["line"].as_u64().is_some_and(|l| l > 0),
            "{f}"
        );
    }

    let planted = |key: &str| -> BTreeSet<String> {
        strings(&truth[key]).iter().map(|i| canonical(i)).collect()
    };
    assert_eq!(
        images_of(findings, "builtin/image-tag"),
        planted("latest_images")
    );
    assert_eq!(
        images_of(findings, "builtin/image-digest"),
        planted("unpinned_images")
    );

    let services = truth["services"].as_array().expect("services");
    let unapproved: BTreeSet<String> = services
        .iter()
        .filter(|s| s["base_registry_approved"] == false)
        .map(|s| canonical(s["base_image"].as_str().expect("base")))
        .collect();
    assert_eq!(images_of(findings, "builtin/approved-base"), unapproved);

    // The templates repository's newest release is v2.0.0; window 1 leaves v0.x outside.
    let outside: BTreeSet<String> = services
        .iter()
        .filter(|s| {
            s["template"]["version"]
                .as_str()
                .is_some_and(|v| v.trim_start_matches('v').starts_with("0."))
        })
        .map(|s| {
            s["ci_file"]
                .as_str()
                .map(|f| format!("{}/{f}", s["repo"].as_str().unwrap_or("")))
                .unwrap_or_default()
        })
        .collect();
    let flagged: BTreeSet<String> = findings
        .iter()
        .filter(|f| f["policy"] == "builtin/template-window")
        .filter_map(|f| f["at"]["path"].as_str().map(str::to_string))
        .collect();
    assert_eq!(flagged, outside);

    // Every finding on an image points at the line that writes it.
    for f in findings.iter().filter(|f| f["image"].is_string()) {
        let path = fleet.join(f["at"]["path"].as_str().expect("path"));
        let text = std::fs::read_to_string(&path).expect("file");
        let line = text
            .lines()
            .nth(f["at"]["line"].as_u64().expect("line") as usize - 1)
            .expect("line exists");
        let image = f["image"].as_str().expect("image");
        let short = image
            .rsplit('/')
            .next()
            .unwrap_or(image)
            .split(['@', ':'])
            .next()
            .unwrap_or(image);
        // A Dockerfile may write the base through an ARG: the finding is on its FROM line.
        let from_line = line.trim_start().to_ascii_uppercase().starts_with("FROM ");
        assert!(line.contains(short) || from_line, "{f}: line {line:?}");
    }
    // Catalog metadata is complete in the generated fleet.
    assert!(
        !findings
            .iter()
            .any(|f| f["policy"] == "builtin/catalog-metadata")
    );
}

#[test]
fn boutique_manifests_have_unpinned_images_and_no_catalog() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/online-boutique");
    let dir = TempDir::new("policy-boutique");
    let (report, code) = policy_json(&[], &fixture, &dir.path().join("state"));
    assert_eq!(code, 1);
    let findings = report["findings"].as_array().expect("findings");
    let untagged: Vec<&Value> = findings
        .iter()
        .filter(|f| f["policy"] == "builtin/image-tag" && f["image"] == "paymentservice")
        .collect();
    assert_eq!(untagged.len(), 1);
    assert_eq!(
        untagged[0]["at"]["path"],
        "kubernetes-manifests/paymentservice.yaml"
    );
    assert_eq!(untagged[0]["at"]["line"], 46);
    // busybox is pinned by digest; redis:alpine has a tag but no digest.
    assert!(
        !images_of(findings, "builtin/image-tag")
            .iter()
            .any(|i| i.contains("busybox") || i.contains("redis"))
    );
    assert!(images_of(findings, "builtin/image-digest").contains("docker.io/library/redis:alpine"));
    assert!(
        findings
            .iter()
            .any(|f| f["policy"] == "builtin/catalog-metadata")
    );
}

#[test]
fn sarif_and_junit_outputs_are_well_formed() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/online-boutique/kubernetes-manifests/cartservice.yaml");
    let run = |format: &str, strict: bool| {
        let mut cmd = bulkhead();
        cmd.args(["policy", "check"])
            .arg(&fixture)
            .args(["--format", format]);
        if strict {
            cmd.arg("--strict");
        }
        let out = cmd.output().expect("run");
        (
            String::from_utf8(out.stdout).expect("utf-8"),
            out.status.code(),
        )
    };
    let (sarif, code) = run("sarif", false);
    assert_eq!(code, Some(1));
    let sarif = json(&sarif);
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert!(!results.is_empty());
    for r in results {
        assert!(["error", "warning"].contains(&r["level"].as_str().unwrap_or("")));
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(
            loc["artifactLocation"]["uri"]
                .as_str()
                .is_some_and(|u| u.ends_with("cartservice.yaml"))
        );
        assert!(loc["region"]["startLine"].as_u64().is_some_and(|l| l > 0));
        let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .expect("rules");
        assert!(rules.iter().any(|rule| rule["id"] == r["ruleId"]));
    }
    let (xml, _) = run("junit", false);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "));
    assert!(xml.trim_end().ends_with("</testsuites>"));
    assert_eq!(xml.matches("<testcase ").count(), results.len());
    assert!(xml.contains("<failure type=\"deny\""));
    assert!(xml.contains("<system-out>warn: "));
    let (strict_xml, _) = run("junit", true);
    assert!(strict_xml.contains("<failure type=\"warn\""));
}

#[test]
fn warnings_fail_only_with_strict() {
    let dir = TempDir::new("policy-strict");
    let file = dir.path().join("pod.yaml");
    std::fs::write(&file, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: c\n      image: registry.acme.internal/apps/a:1.0\n      resources: {limits: {memory: 64Mi}}\n").expect("write");
    let code = |strict: bool| {
        let mut cmd = bulkhead();
        cmd.args(["policy", "check"]).arg(&file);
        if strict {
            cmd.arg("--strict");
        }
        cmd.output().expect("run").status.code()
    };
    assert_eq!(code(false), Some(0));
    assert_eq!(code(true), Some(1));
}

fn gatekeeper_testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policy/testdata/gatekeeper")
        .join(rel)
}

#[test]
fn verify_runs_gator_suites_with_exit_codes() {
    let ok = run_ok(
        bulkhead()
            .args(["policy", "verify"])
            .arg(gatekeeper_testdata("suite.yaml")),
    );
    assert_eq!(ok.matches("    --- PASS: ").count(), 11, "{ok}");
    assert!(
        ok.contains("--- PASS: allowed-repos\n") && ok.contains("--- PASS: required-labels\n"),
        "{ok}"
    );
    assert!(
        ok.lines().last().is_some_and(|l| l.starts_with("ok\t")),
        "{ok}"
    );

    let out = bulkhead()
        .args(["policy", "verify"])
        .arg(gatekeeper_testdata("failing-suite.yaml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.contains("    --- FAIL: wrong-expectation\n")
            && text.contains("    --- PASS: acme-image-allowed\n"),
        "{text}"
    );

    let out = bulkhead()
        .args(["policy", "verify", "/nonexistent/suite.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn gatekeeper_constraints_run_in_check_with_the_object_line() {
    let dir = TempDir::new("policy-gk");
    let policies = dir.path().join("gk");
    std::fs::create_dir_all(&policies).expect("mkdir");
    for f in ["allowedrepos-template.yaml", "allowedrepos-constraint.yaml"] {
        std::fs::copy(gatekeeper_testdata(f), policies.join(f)).expect("copy");
    }
    let (report, code) = {
        let out = bulkhead()
            .args([
                "policy",
                "check",
                "--no-builtin",
                "--format",
                "json",
                "--policy",
            ])
            .arg(&policies)
            .arg(gatekeeper_testdata("samples/pod-evil.yaml"))
            .output()
            .expect("run");
        (
            json(&String::from_utf8(out.stdout).expect("utf-8")),
            out.status.code(),
        )
    };
    assert_eq!(code, Some(1));
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 2);
    assert!(
        findings
            .iter()
            .all(|f| f["policy"] == "K8sAllowedRepos/repo-is-acme" && f["at"]["line"] == 1)
    );

    // A constraint without its template is an error, not a silent pass.
    std::fs::remove_file(policies.join("allowedrepos-template.yaml")).expect("rm");
    let out = bulkhead()
        .args(["policy", "check", "--policy"])
        .arg(&policies)
        .arg(gatekeeper_testdata("samples/pod-evil.yaml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no ConstraintTemplate defines kind K8sAllowedRepos")
    );
}

#[test]
fn admit_and_kyverno_export() {
    let dir = TempDir::new("policy-admit");
    let review = dir.path().join("review.json");
    std::fs::write(&review, r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"abc","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"shop","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"nginx:latest","resources":{"limits":{"cpu":"1"}}}]}}}}"#).expect("write");
    let out = bulkhead()
        .args(["policy", "admit"])
        .arg(&review)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let response = json(&String::from_utf8(out.stdout).expect("utf-8"));
    assert_eq!(response["response"]["uid"], "abc");
    assert_eq!(response["response"]["allowed"], false);
    assert!(
        response["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("floats on latest"))
    );

    let yaml = run_ok(bulkhead().args([
        "policy",
        "export",
        "kyverno",
        "--allowed-registry",
        "registry.acme.internal/apps/",
    ]));
    assert_eq!(yaml.matches("kind: ClusterPolicy").count(), 4);
    assert!(yaml.contains("registry.acme.internal/apps/*"));
}

/// `policy check` gives Gatekeeper constraints every manifest it reads as
/// `data.inventory`: an Ingress host taken in another repository is found
/// before either reaches a cluster. The template and constraint are the
/// gatekeeper-library's own.
#[test]
fn a_uniqueness_constraint_holds_across_the_manifests_of_a_check() {
    let dir = TempDir::new("policy-inventory");
    let policies = dir.path().join("gk");
    std::fs::create_dir_all(&policies).expect("mkdir");
    let library = testdata("gatekeeper-library/library/general/uniqueingresshost");
    std::fs::copy(
        library.join("template.yaml"),
        policies.join("template.yaml"),
    )
    .expect("copy");
    std::fs::copy(
        library.join("samples/unique-ingress-host/constraint.yaml"),
        policies.join("constraint.yaml"),
    )
    .expect("copy");
    let ingress = |name: &str, namespace: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  rules:\n  - host: shop.example.com\n    http:\n      paths:\n      - pathType: Prefix\n        path: /\n        backend:\n          service:\n            name: {name}\n            port:\n              number: 80\n"
        )
    };
    let orders = dir.path().join("orders-ingress.yaml");
    let payments = dir.path().join("payments-ingress.yaml");
    std::fs::write(&orders, ingress("orders", "shop")).expect("write");
    std::fs::write(&payments, ingress("payments", "billing")).expect("write");
    let check = |files: &[&Path]| {
        let out = bulkhead()
            .args(["policy", "check", "--no-builtin", "--json", "--policy"])
            .arg(&policies)
            .args(files)
            .output()
            .expect("run");
        let report = json(&String::from_utf8(out.stdout).expect("utf-8"));
        let mut flagged: Vec<String> = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| f["at"]["path"].as_str().unwrap_or("").to_string())
            .collect();
        flagged.sort();
        (out.status.code(), flagged)
    };
    // Alone, a host is unique: the object is not compared with itself.
    assert_eq!(check(&[&orders]), (Some(0), vec![]));
    // Together, each Ingress sees the other one's host.
    let (code, flagged) = check(&[&orders, &payments]);
    assert_eq!(code, Some(1));
    assert_eq!(
        flagged,
        vec![orders.display().to_string(), payments.display().to_string()]
    );
}

/// The outcome cache: a second check answers from `policy-cache.json` (shown
/// by an outcome planted in it), and a changed manifest, Dockerfile or policy
/// is evaluated again, answering exactly what a check without a cache answers.
#[test]
fn policy_check_reuses_outcomes_only_for_unchanged_inputs_and_policies() {
    let dir = TempDir::new("policy-cache");
    let fleet = dir.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(&fleet)
            .args(["--services", "12"]),
    );
    let state = dir.path().join("state");
    let fresh = |n: &str, args: &[&str]| policy_json(args, &fleet, &dir.path().join(n)).0;
    let first = policy_json(&[], &fleet, &state).0;
    assert_eq!(first, fresh("fresh-1", &[]));
    assert!(first["findings"].as_array().is_some_and(|f| !f.is_empty()));

    // Plant a marker in every kept outcome: a run that shows it took it from the cache.
    let cache_file = state.join("policy-cache.json");
    let planted = std::fs::read_to_string(&cache_file)
        .expect("cache")
        .replace("\"message\":\"", "\"message\":\"CACHED ");
    std::fs::write(&cache_file, planted).expect("write");
    let cached = policy_json(&[], &fleet, &state).0;
    let messages = |report: &Value| -> Vec<String> {
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| f["message"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert!(messages(&cached).iter().all(|m| m.starts_with("CACHED ")));

    // Change one manifest and one Dockerfile: theirs are evaluated again, the rest stay cached.
    let services = fleet.join("services");
    let mut names: Vec<_> = std::fs::read_dir(&services)
        .expect("services")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("deploy/k8s.yaml").is_file() && p.join("Dockerfile").is_file())
        .collect();
    names.sort();
    let manifest = names[0].join("deploy/k8s.yaml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let image_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("image:"))
        .expect("an image line");
    std::fs::write(
        &manifest,
        text.replace(image_line, "        image: nginx:latest"),
    )
    .expect("write");
    let dockerfile = names[1].join("Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).expect("dockerfile");
    std::fs::write(
        &dockerfile,
        format!("{text}\nFROM evil.example/base:latest\n"),
    )
    .expect("write");
    let changed = policy_json(&[], &fleet, &state).0;
    let truth = fresh("fresh-2", &[]);
    assert_ne!(truth, first, "the edits change the answer");
    let uncached = |report: &Value| -> Vec<Value> {
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| !f["message"].as_str().unwrap_or("").starts_with("CACHED "))
            .cloned()
            .collect()
    };
    let edited = |f: &Value| {
        let path = f["at"]["path"].as_str().unwrap_or("");
        let service = f["subject"].as_str().unwrap_or("");
        let rel = |p: &Path| p.strip_prefix(&fleet).expect("under").display().to_string();
        path == rel(&manifest)
            || service
                == format!(
                    "service {}",
                    names[1].file_name().expect("name").to_string_lossy()
                )
    };
    let recomputed = uncached(&changed);
    assert!(!recomputed.is_empty());
    assert!(recomputed.iter().all(edited), "{recomputed:?}");
    let want: Vec<Value> = truth["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| edited(f))
        .cloned()
        .collect();
    assert_eq!(recomputed, want);

    // Another policy configuration: nothing is taken from the cache.
    let flag = ["--allowed-registry", "registry.acme.internal/apps/"];
    let other = policy_json(&flag, &fleet, &state).0;
    assert_eq!(other, fresh("fresh-3", &flag));
}

/// The time [`age`] sets next, in seconds after the epoch.
/// The time in seconds after the epoch that the next [`age`] sets.
static AGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_600_000_000);

/// Sets the mtime of every file and folder under `path` written in the last minute to a
/// time long past (another at each call, so that an aged change
/// still moves the mtime), as a fleet checked out long before it is checked:
/// the check then keeps its report. Older files are left as they are.
fn age(path: &Path) {
    age_at(
        path,
        AGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    );
}

fn age_at(path: &Path, at: u64) {
    let recent = std::time::SystemTime::now() - Duration::from_secs(60);
    let metadata = std::fs::symlink_metadata(path).expect("metadata");
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir").flatten() {
            age_at(&entry.path(), at);
        }
    }
    if !metadata.is_symlink() && metadata.modified().expect("mtime") > recent {
        set_mtime(path, at);
    }
}

/// Sets a file's mtime to `secs` after the epoch (an open for reading
/// suffices to its owner, so git's read-only objects take it too).
fn set_mtime(path: &Path, secs: u64) {
    std::fs::File::open(path)
        .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs)))
        .expect("set mtime");
}

/// One change to a fleet, made when called.
type Change<'a> = Box<dyn Fn() + 'a>;

/// `policy check` in every format: each output and exit status.
fn check_outputs(fleet: &Path, state: &Path, args: &[&str]) -> Vec<(String, String, Option<i32>)> {
    ["json", "table", "sarif", "junit"]
        .iter()
        .map(|format| {
            let out = bulkhead()
                .args(["policy", "check"])
                .arg(fleet)
                .arg("--state")
                .arg(state)
                .args(["--format", format])
                .args(args)
                .output()
                .expect("run bulkhead");
            let text = String::from_utf8(out.stdout).expect("utf-8");
            (format.to_string(), text, out.status.code())
        })
        .collect()
}

/// Marks every finding of the report kept in `state` ("KEPT ") and empties
/// the outcomes: a check that prints the mark answered from the kept report,
/// and one that does not evaluated every rule again.
fn mark_kept_report(state: &Path) {
    let file = state.join("policy-cache.json");
    let mut cache = json(&std::fs::read_to_string(&file).expect("policy cache"));
    let findings = cache["last"]["report"]["findings"]
        .as_array_mut()
        .expect("a kept report");
    assert!(!findings.is_empty());
    for f in findings {
        f["message"] = Value::from(format!("KEPT {}", f["message"].as_str().expect("message")));
    }
    cache["entries"] = serde_json::json!({});
    std::fs::write(&file, cache.to_string()).expect("write");
}

/// The kept report: with nothing changed, a check prints the report kept by
/// the last one, in every format, byte for byte as a check from scratch; after
/// any one change to what the scan reads, to a repository's commit, to the
/// configuration or to the policies, it answers exactly as a check from scratch.
#[test]
fn policy_check_answers_from_its_kept_report_only_while_nothing_changed() {
    let dir = TempDir::new("policy-kept");
    let fleet = dir.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(&fleet)
            .args(["--services", "12"]),
    );
    age(&fleet);
    let state = dir.path().join("state");
    let fresh = std::cell::Cell::new(0);
    let from_scratch = |args: &[&str]| {
        fresh.set(fresh.get() + 1);
        check_outputs(
            &fleet,
            &dir.path().join(format!("fresh-{}", fresh.get())),
            args,
        )
    };
    let first = check_outputs(&fleet, &state, &[]);
    assert_eq!(first, from_scratch(&[]));
    assert!(state.join("policy-cache.json").is_file());
    // Each format again, now from the kept report: the same bytes and exit status.
    assert_eq!(check_outputs(&fleet, &state, &[]), first);

    let services = fleet.join("services");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&services)
        .expect("services")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("deploy/k8s.yaml").is_file() && p.join(".git/HEAD").is_file())
        .collect();
    names.sort();
    let manifest = names[0].join("deploy/k8s.yaml");
    let same_size = |text: &str| {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("image:"))
            .expect("an image line");
        let last = line.chars().last().expect("a character");
        let other = if last == '0' { '1' } else { '0' };
        text.replace(line, &format!("{}{other}", &line[..line.len() - 1]))
    };
    // (what, the check's flags, whether the answer moves if that is sure, the change)
    let changes: Vec<(&str, Vec<&str>, Option<bool>, Change)> = vec![
        (
            "a manifest's content, same size, written in place",
            vec![],
            None,
            Box::new(|| {
                let text = std::fs::read_to_string(&manifest).expect("manifest");
                std::fs::write(&manifest, same_size(&text)).expect("write");
                set_mtime(&manifest, 1_550_000_000);
            }),
        ),
        (
            "a Dockerfile touched",
            vec![],
            Some(false),
            Box::new(|| set_mtime(&names[1].join("Dockerfile"), 1_500_000_000)),
        ),
        (
            "a manifest added",
            vec![],
            Some(true),
            Box::new(|| {
                // Another Deployment, of an image from Docker Hub, tagged latest.
                let extra = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: extra\n  namespace: data\nspec:\n  template:\n    spec:\n      containers:\n        - name: extra\n          image: nginx:latest\n";
                std::fs::write(names[2].join("deploy/extra.yaml"), extra).expect("write");
            }),
        ),
        (
            "a manifest removed",
            vec![],
            Some(true),
            Box::new(|| std::fs::remove_file(names[3].join("deploy/k8s.yaml")).expect("rm")),
        ),
        (
            "a manifest renamed",
            vec![],
            Some(true),
            Box::new(|| {
                std::fs::rename(
                    names[2].join("deploy/extra.yaml"),
                    names[2].join("deploy/other.yaml"),
                )
                .expect("rename")
            }),
        ),
        (
            "a commit that moves HEAD",
            vec![],
            None,
            Box::new(|| {
                git_in(&names[5], &["commit", "--allow-empty", "-q", "-m", "moved"]);
            }),
        ),
        (
            "a new templates release",
            vec![],
            Some(true),
            Box::new(|| {
                let templates = fleet.join("ci-templates");
                git_in(&templates, &["tag", "v99.0.0"]);
            }),
        ),
        (
            "bulkhead.toml's approved base images",
            vec![],
            Some(true),
            Box::new(|| {
                let path = fleet.join("bulkhead.toml");
                let text = std::fs::read_to_string(&path).expect("config");
                std::fs::write(
                    &path,
                    text.replace("registry.acme.internal/base/", "registry.acme.internal/"),
                )
                .expect("write");
            }),
        ),
        (
            "a policy flag",
            vec!["--allowed-registry", "registry.acme.internal/apps/"],
            Some(true),
            Box::new(|| {}),
        ),
    ];
    let mut before = first;
    for (what, args, moves, change) in changes {
        // The kept report answers while nothing changed ...
        mark_kept_report(&state);
        let kept = check_outputs(&fleet, &state, &[]);
        assert!(
            kept.iter().all(|(_, text, _)| text.contains("KEPT ")),
            "{what}: the kept report answers an unchanged fleet"
        );
        change();
        age(&fleet);
        // ... and after a change, the check answers as one from scratch.
        let after = check_outputs(&fleet, &state, &args);
        let truth = from_scratch(&args);
        assert_eq!(after, truth, "{what}");
        if let Some(moves) = moves {
            assert_eq!(after != before, moves, "{what}: the answer moves");
        }
        before = after;
    }
}
