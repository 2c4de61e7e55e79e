//! A hand-written fleet: app repositories with a Dockerfile and a CI file
//! each, and no catalog entries or manifests. Each repository is an app,
//! named after its folder.

use crate::*;
use std::collections::BTreeSet;
use test_support::git;

/// Writes `files` (path, text) into a new git repository at `dir` and commits them.
fn repo(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "initial"]);
}

fn gitlab_ci(reference: &str, inputs: &str) -> String {
    format!(
        "include:\n  - project: platform/ci-templates\n    ref: {reference}\n    file: templates/build.yml\n    inputs:\n{inputs}\nvariables:\n  GIT_DEPTH: \"20\"\n"
    )
}

fn workflow(reference: &str, with: &str) -> String {
    format!(
        "name: ci\non:\n  push:\n    branches: [main]\njobs:\n  build:\n    uses: acme/ci-templates/.github/workflows/build.yml@{reference}\n    with:\n{with}    secrets: inherit\n"
    )
}

const GO_DOCKERFILE: &str = "# syntax=docker/dockerfile:1\nFROM golang:1.22 AS build\nWORKDIR /src\nCOPY . .\nRUN go build -o /app .\n\nFROM gcr.io/distroless/static-debian12\nCOPY --from=build /app /app\nENTRYPOINT [\"/app\"]\n";
const PYTHON_DOCKERFILE: &str =
    "FROM python:3.12-slim\nCOPY . /app\nCMD [\"python\", \"/app/app.py\"]\n";

#[test]
fn app_repositories_without_catalog_or_manifests_are_services_and_template_check_finds_them() {
    let dir = TempDir::new("handwritten");
    // The shared templates, with their release tags, come from a generated fleet.
    let lab = dir.path().join("lab");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(&lab)
            .args(["--services", "3", "--seed", "11"]),
    );
    let root = dir.path().join("fleet");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(
        root.join("bulkhead.toml"),
        "[templates]\nproject = \"platform/ci-templates\"\ngithub = \"acme/ci-templates\"\n\n[reports]\ntrivy = [\"reports\"]\n",
    )
    .expect("write");
    let trivy_report = std::fs::read_to_string(testdata("trivy/dockerfile.json")).expect("fixture");
    // Trivy's report of a Maven repository, as CI would scan the orders repository.
    let pom = std::fs::read_to_string(testdata("trivy/pom.json")).expect("fixture");
    std::fs::create_dir_all(root.join("reports")).expect("mkdir");
    std::fs::write(
        root.join("reports/orders-repo.json"),
        pom.replace("testdata/fixtures/repo/pom", "/builds/acme/orders"),
    )
    .expect("write");
    repo(
        &root.join("orders"),
        &[
            ("Dockerfile", GO_DOCKERFILE),
            (
                ".gitlab-ci.yml",
                &gitlab_ci(
                    "v1.3.0",
                    "      image_name: registry.acme.internal/apps/orders\n      language: go\n",
                ),
            ),
            // A scanner report saved under a Dockerfile-like name is no Dockerfile.
            ("reports/dockerfile.json", &trivy_report),
        ],
    );
    repo(
        &root.join("payments"),
        &[
            ("Dockerfile", GO_DOCKERFILE),
            (
                ".gitlab-ci.yml",
                &gitlab_ci(
                    "v1.4.0",
                    "      image: registry.acme.internal/apps/payments\n      language: go\n",
                ),
            ),
        ],
    );
    repo(
        &root.join("ledger"),
        &[
            ("Dockerfile", PYTHON_DOCKERFILE),
            (
                ".gitlab-ci.yml",
                &gitlab_ci(
                    "v1.4.0",
                    "      image: registry.acme.internal/apps/ledger\n      language: rust\n",
                ),
            ),
        ],
    );
    repo(
        &root.join("search"),
        &[
            ("Dockerfile", GO_DOCKERFILE),
            (
                ".github/workflows/ci.yml",
                &workflow(
                    "v1.3.0",
                    "      image_name: registry.acme.internal/apps/search\n      language: go\n",
                ),
            ),
        ],
    );
    repo(
        &root.join("web"),
        &[
            ("Dockerfile", PYTHON_DOCKERFILE),
            (
                ".github/workflows/ci.yml",
                &workflow(
                    "v1.4.0",
                    "      image: registry.acme.internal/apps/web\n      language: node\n",
                ),
            ),
        ],
    );
    // A folder with neither a Dockerfile nor a CI file is no app.
    std::fs::create_dir_all(root.join("docs")).expect("mkdir");
    std::fs::write(root.join("docs/README.md"), "# How we ship\n").expect("write");

    let scan = scan_json(&root, &dir.path().join("state"));
    let names = service_names(&scan);
    assert_eq!(names, ["ledger", "orders", "payments", "search", "web"]);
    let orders = service(&scan, "orders");
    assert_eq!(orders["repo"], "orders");
    assert_eq!(
        strings(&orders["base_images"]),
        ["gcr.io/distroless/static-debian12"]
    );
    assert_eq!(orders["templates"].as_array().map(Vec::len), Some(1));
    let diagnostics = scan["diagnostics"].to_string();
    assert!(!diagnostics.contains("dockerfile.json"), "{diagnostics}");

    // A library CVE in the repository's pom.xml reaches the app built from it.
    let cve = json(&run_ok(
        bulkhead()
            .args(["cve", "CVE-2020-9548", "--json", "--path"])
            .arg(&root)
            .arg("--state")
            .arg(dir.path().join("state")),
    ));
    let reached: Vec<&str> = cve["cve"]["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["service"].as_str())
        .collect();
    assert_eq!(reached, ["orders"], "{cve}");
    assert_eq!(cve["cve"]["severity"], "critical");
    assert_eq!(
        cve["cve"]["services"][0]["at"]["path"],
        "reports/orders-repo.json"
    );

    let out = bulkhead()
        .args(["template", "check", "v2.0.0", "--json", "--path"])
        .arg(&root)
        .arg("--templates")
        .arg(lab.join("ci-templates"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .expect("run bulkhead");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = json(&String::from_utf8_lossy(&out.stdout));
    let apps = |list: &str| -> BTreeSet<String> {
        check[list]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|a| a["service"].as_str().map(str::to_string))
            .collect()
    };
    // v2.0.0 removes image_name and the rust toolchain.
    assert_eq!(
        apps("breaking"),
        BTreeSet::from(["ledger", "orders", "search"].map(String::from))
    );
    assert_eq!(
        apps("safe"),
        BTreeSet::from(["payments", "web"].map(String::from))
    );
}

#[test]
fn top_level_folders_of_a_monorepo_with_a_dockerfile_or_ci_file_are_apps() {
    let dir = TempDir::new("handwritten-monorepo");
    let root = dir.path().join("monorepo");
    repo(
        &root,
        &[
            ("api/Dockerfile", GO_DOCKERFILE),
            ("api/cmd/tool/Dockerfile", PYTHON_DOCKERFILE),
            ("worker/Dockerfile", PYTHON_DOCKERFILE),
            (
                "worker/.gitlab-ci.yml",
                &gitlab_ci(
                    "v1.4.0",
                    "      image: registry.acme.internal/apps/worker\n",
                ),
            ),
            // Repository-wide CI and documentation make no app.
            (
                ".github/workflows/ci.yml",
                &workflow("v1.4.0", "      image: registry.acme.internal/apps/all\n"),
            ),
            ("docs/README.md", "# How we ship\n"),
            ("Dockerfile", GO_DOCKERFILE),
        ],
    );
    let scan = scan_json(&root, &dir.path().join("state"));
    let names = service_names(&scan);
    assert_eq!(names, ["api", "worker"]);
    let api = service(&scan, "api");
    assert_eq!(api["repo"], "");
    assert_eq!(
        strings(&api["base_images"]),
        [
            "docker.io/library/python:3.12-slim",
            "gcr.io/distroless/static-debian12"
        ]
    );
    assert_eq!(api["templates"].as_array().map(Vec::len), Some(0));
    let worker = service(&scan, "worker");
    assert_eq!(
        strings(&worker["base_images"]),
        ["docker.io/library/python:3.12-slim"]
    );
    assert_eq!(worker["templates"].as_array().map(Vec::len), Some(1));
}

#[test]
fn an_app_repository_joins_the_service_its_gitops_manifests_declare_under_its_name() {
    let dir = TempDir::new("handwritten-gitops");
    let root = dir.path().join("fleet");
    repo(
        &root.join("gitops"),
        &[(
            "apps/orders/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orders\n  namespace: shop\nspec:\n  template:\n    metadata:\n      labels:\n        app: orders\n    spec:\n      containers:\n        - name: orders\n          image: registry.acme.internal/apps/orders:1.4.0\n",
        )],
    );
    repo(
        &root.join("orders"),
        &[
            ("Dockerfile", GO_DOCKERFILE),
            (
                ".gitlab-ci.yml",
                &gitlab_ci(
                    "v1.4.0",
                    "      image: registry.acme.internal/apps/orders\n",
                ),
            ),
        ],
    );
    repo(&root.join("search"), &[("Dockerfile", PYTHON_DOCKERFILE)]);
    let scan = scan_json(&root, &dir.path().join("state"));
    let names = service_names(&scan);
    assert_eq!(names, ["orders", "search"]);
    let orders = service(&scan, "orders");
    // Declared by the manifest, built by its own repository.
    assert_eq!(orders["repo"], "gitops");
    assert_eq!(strings(&orders["workloads"]), ["shop/orders"]);
    assert_eq!(
        strings(&orders["base_images"]),
        ["gcr.io/distroless/static-debian12"]
    );
    assert_eq!(orders["templates"].as_array().map(Vec::len), Some(1));
    assert_eq!(service(&scan, "search")["repo"], "search");
}

/// Apps with neither catalog entry nor manifest of their own take their name
/// from their git remote (the folder is only a clone's name); manifests kept
/// in a GitOps repository under another name join the app whose CI builds
/// their image. SPDX SBOMs then carry a library CVE found in one repository
/// to the image and the directory that list the same package.
#[test]
fn apps_are_named_after_their_remote_and_join_gitops_manifests_by_image() {
    let dir = TempDir::new("handwritten-remote");
    let root = dir.path().join("fleet");
    let deployment = |name: &str, image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n        - name: {name}\n          image: {image}\n"
        )
    };
    repo(
        &root.join("gitops"),
        &[
            (
                "apps/checkout/deployment.yaml",
                &deployment(
                    "checkout",
                    "registry.acme.internal/apps/orders-service:1.4.0",
                ),
            ),
            (
                "apps/payments/deployment.yaml",
                &deployment("payments-api", "registry.acme.internal/apps/payments:2.0.0"),
            ),
        ],
    );
    // Cloned into folders named otherwise; CI names the image it builds.
    repo(
        &root.join("work-1"),
        &[
            ("Dockerfile", GO_DOCKERFILE),
            (
                ".gitlab-ci.yml",
                &gitlab_ci(
                    "v1.4.0",
                    "      image: registry.acme.internal/apps/orders-service\n",
                ),
            ),
        ],
    );
    git(
        &root.join("work-1"),
        &[
            "remote",
            "add",
            "origin",
            "git@gitlab.acme.internal:shop/orders-service.git",
        ],
    );
    // No image in its CI: it joins the manifest whose image ends in its name.
    repo(&root.join("pay"), &[("Dockerfile", GO_DOCKERFILE)]);
    git(
        &root.join("pay"),
        &[
            "remote",
            "add",
            "origin",
            "https://github.com/acme/payments",
        ],
    );
    repo(
        &root.join("ledger-clone"),
        &[("Dockerfile", PYTHON_DOCKERFILE)],
    );
    git(
        &root.join("ledger-clone"),
        &[
            "remote",
            "add",
            "upstream",
            "https://gitlab.acme.internal/acme/ledger.git",
        ],
    );
    // No remote: named after its folder.
    repo(&root.join("search"), &[("Dockerfile", PYTHON_DOCKERFILE)]);
    std::fs::create_dir_all(root.join("sboms")).expect("mkdir");
    std::fs::create_dir_all(root.join("reports")).expect("mkdir");
    for file in ["payments-image.spdx.json", "ledger-directory.spdx.json"] {
        let text = std::fs::read_to_string(testdata(&format!("spdx/{file}"))).expect("fixture");
        std::fs::write(root.join("sboms").join(file), text).expect("write");
    }
    let pom = std::fs::read_to_string(testdata("trivy/pom.json")).expect("fixture");
    std::fs::write(
        root.join("reports/orders-service.json"),
        pom.replace("testdata/fixtures/repo/pom", "/builds/shop/orders-service"),
    )
    .expect("write");
    std::fs::write(
        root.join("bulkhead.toml"),
        "[reports]\ntrivy = [\"reports\"]\nspdx = [\"sboms\"]\n",
    )
    .expect("write");

    let state = dir.path().join("state");
    let scan = scan_json(&root, &state);
    assert_eq!(
        service_names(&scan),
        ["checkout", "ledger", "payments-api", "search"]
    );
    let checkout = service(&scan, "checkout");
    assert_eq!(strings(&checkout["workloads"]), ["shop/checkout"]);
    assert_eq!(
        strings(&checkout["base_images"]),
        ["gcr.io/distroless/static-debian12"]
    );
    assert_eq!(checkout["templates"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        strings(&service(&scan, "payments-api")["base_images"]),
        ["gcr.io/distroless/static-debian12"]
    );
    assert_eq!(service(&scan, "ledger")["repo"], "ledger-clone");
    assert_eq!(service(&scan, "search")["repo"], "search");

    let cve = json(&run_ok(
        bulkhead()
            .args(["cve", "CVE-2020-9548", "--json", "--path"])
            .arg(&root)
            .arg("--state")
            .arg(&state),
    ));
    let reached: Vec<&str> = cve["cve"]["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["service"].as_str())
        .collect();
    // The pom report names the orders-service repository, which is no
    // service's own (checkout's manifests live in gitops); the SBOMs carry
    // its package to the payments image and to the ledger clone, whose
    // directory SBOM names the remote's path.
    assert_eq!(reached, ["ledger", "payments-api"], "{cve}");
}
