//! Rollouts on a cluster through the CLI: a canary by an HTTPRoute's
//! backendRef weights (with 409 conflicts on the way), a rolling update by a
//! Deployment's image (watching its rollout status), and GitOps commits that
//! an Argo CD Application must sync and report healthy (rolled back with a
//! `git revert` when it turns Degraded). The cluster is `fake_kube`, with
//! this file playing the Deployment controller and Argo CD's application
//! controller.

use crate::fake_kube::{Auth, FakeKube};
use crate::{TempDir, bulkhead, git_in, json, run_ok};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const TOKEN: &str = "r0llout-t0ken";
const NS: &str = "shop";

fn route_weights(route: &Value) -> String {
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| format!("{}:{}", b["name"].as_str().unwrap_or(""), b["weight"]))
        .collect::<Vec<_>>()
        .join(",")
}

/// One step of the Deployment controller on a read: it observes the new
/// generation, brings one more replica to the new template, and makes
/// updated replicas available, unless the image is broken: then, after its
/// replicas were updated, the Progressing condition says ProgressDeadlineExceeded.
fn deployment_controller(d: &mut Value, broken: &[String]) {
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    let wanted = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let status = &mut d["status"];
    if status["observedGeneration"].as_i64() != Some(generation) {
        status["observedGeneration"] = json!(generation);
        status["updatedReplicas"] = json!(0);
        status["replicas"] = json!(wanted + 1);
        status["conditions"] =
            json!([{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]);
        return;
    }
    let updated = status["updatedReplicas"].as_i64().unwrap_or(0);
    if updated < wanted {
        status["updatedReplicas"] = json!(updated + 1);
        if !broken.contains(&image) {
            status["availableReplicas"] = json!(updated + 1);
        }
        return;
    }
    if broken.contains(&image) {
        status["availableReplicas"] = json!(0);
        status["conditions"] = json!([{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": format!("ReplicaSet has timed out progressing: {image} never became available")}]);
    } else {
        status["replicas"] = json!(wanted);
        status["availableReplicas"] = json!(wanted);
        status["conditions"] =
            json!([{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]);
    }
}

/// One step of Argo CD's application controller on a read: when the
/// branch's head in the repository moved past what the Application synced,
/// the first read shows it OutOfSync and Progressing at the old revision;
/// the next one synced at the head, Degraded when a manifest at the head
/// names a broken image, otherwise Healthy.
fn argocd_controller(app: &mut Value, repo: &Path, branch: &str, broken: &[String]) {
    let head = git_in(repo, &["rev-parse", &format!("refs/heads/{branch}")]);
    let status = &mut app["status"];
    if status["sync"]["revision"] == head.as_str() {
        return;
    }
    if status["sync"]["status"] != "OutOfSync" {
        status["sync"]["status"] = json!("OutOfSync");
        status["health"] = json!({"status": "Progressing"});
        return;
    }
    let degraded = broken.iter().find(|image| {
        std::process::Command::new("git")
            .current_dir(repo)
            .args(["grep", "-q", "-F", image.as_str(), &head])
            .status()
            .unwrap()
            .success()
    });
    status["sync"] = json!({"status": "Synced", "revision": head});
    status["health"] = match degraded {
        Some(image) => json!({"status": "Degraded",
            "message": format!("Deployment shop: {image} exceeded its progress deadline")}),
        None => json!({"status": "Healthy"}),
    };
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": NS},
           "spec": {"selector": {"app": name, "version": "blue"}, "ports": [{"port": 8080}]}})
}

fn http_route(name: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": name, "namespace": NS, "generation": 1},
           "spec": {"parentRefs": [{"name": "edge"}],
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": format!("/{name}")}}],
                               "backendRefs": [{"name": format!("{name}-blue"), "port": 8080, "weight": 100},
                                               {"name": format!("{name}-green"), "port": 8080, "weight": 0}]}]}})
}

fn deployment(name: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": NS, "generation": 4},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "app", "image": image}]}}},
           "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3,
                      "availableReplicas": 3, "readyReplicas": 3}})
}

fn application(name: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
           "metadata": {"name": name, "namespace": "argocd"},
           "spec": {"source": {"repoURL": "https://git.example/shop.git", "path": ".", "targetRevision": "main"},
                    "destination": {"namespace": NS}},
           "status": {"sync": {"status": "Synced", "revision": "none"}, "health": {"status": "Healthy"}}})
}

/// A fleet of `services` (`name` with the services it depends on), each
/// with `strategy` (YAML under `strategy:`), in `root`.
fn fleet(root: &Path, services: &[(&str, &str)], strategy: &str) {
    std::fs::create_dir_all(root.join("rollouts")).unwrap();
    let mut specs = String::new();
    for (name, deps) in services {
        let folder = root.join("services").join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("catalog-info.yaml"),
            format!("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: service\n  dependsOn: [{deps}]\n"),
        )
        .unwrap();
        specs.push_str(&format!(
            "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {name}}}\nspec:\n  service: {name}\n  strategy:\n    {strategy}\n"
        ));
    }
    std::fs::write(root.join("rollouts/rollouts.yaml"), specs).unwrap();
}

/// A kubeconfig in `dir` for `cluster`, with the rollout's token and namespace.
fn kubeconfig(dir: &Path, cluster: &FakeKube) -> PathBuf {
    cluster.kubeconfig(dir, &[("prod", NS, format!("{{token: {TOKEN}}}"))])
}

/// The cluster holding `objects`, its Deployment controller unable to make
/// `broken` images available.
fn cluster(objects: &[Value], broken: &[&str]) -> FakeKube {
    let cluster = FakeKube::start(objects, Auth::Token(TOKEN.into()));
    let broken: Vec<String> = broken.iter().map(|image| image.to_string()).collect();
    cluster.control("Deployment", move |d| deployment_controller(d, &broken));
    cluster
}

/// `bulkhead rollout ARGS --state STATE`, its exit code and stderr.
fn rollout(state: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = bulkhead()
        .arg("rollout")
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn phase_and_detail(state: &Path, service: &str) -> (String, String) {
    let status = json(&run_ok(
        bulkhead()
            .args(["rollout", "status", "--json", "--state"])
            .arg(state),
    ));
    let s = status["rollout"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == service)
        .unwrap_or_else(|| panic!("{service} in {status}"))
        .clone();
    (
        s["phase"].as_str().unwrap_or("").to_string(),
        s["reason"].as_str().unwrap_or("").to_string(),
    )
}

/// A canary on the cluster moves the HTTPRoute's backendRef weights step by
/// step, the last step puts every weight on the new pool (and the Service's
/// selector on it); a patch that loses a race (409) is read again and
/// retried. When conflicts persist, the step fails with a clear error, the
/// rollback is recorded as needing attention, and `resume` finishes it once
/// the route can be written again.
#[test]
fn a_canary_moves_the_httproute_weights_and_survives_conflicts() {
    let dir = TempDir::new("k8s-canary");
    let root = dir.path().join("fleet");
    fleet(
        &root,
        &[("orders", "")],
        "canary: {steps: [{setWeight: 25}, {pause: {}}, {setWeight: 50}]}",
    );
    let cluster = cluster(
        &[service("orders"), http_route("orders"), service("search")],
        &[],
    );
    cluster.race_patches("HTTPRoute", 2);
    let weights = || -> Vec<String> {
        cluster
            .take_patched("HTTPRoute")
            .iter()
            .map(route_weights)
            .collect()
    };
    let selector =
        |name: &str| cluster.object("Service", NS, name).unwrap()["spec"]["selector"].clone();
    let config = kubeconfig(dir.path(), &cluster);
    let config = config.to_str().unwrap();
    let root_text = root.to_str().unwrap();

    // Two lost races on the first step, then the canary's manual pause.
    let state = dir.path().join("state");
    let start = [
        "start",
        "--services",
        "orders",
        "--executor",
        "kubernetes",
        "--kubeconfig",
        config,
        "--path",
        root_text,
    ];
    let (code, stderr) = rollout(&state, &start);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(weights(), ["orders-blue:75,orders-green:25"]);
    let (code, stderr) = rollout(&state, &["promote", "--path", root_text]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        weights(),
        [
            "orders-blue:50,orders-green:50",
            "orders-blue:0,orders-green:100"
        ]
    );
    assert_eq!(
        selector("orders"),
        json!({"app": "orders", "version": "green"})
    );
    assert_eq!(selector("search")["version"], "blue");

    // Every patch of the next step loses its race: the step fails, and so
    // does the rollback's own route patch; both are recorded.
    cluster.put(&service("orders"));
    cluster.put(&http_route("orders"));
    let state = dir.path().join("state-conflicts");
    let (code, stderr) = rollout(&state, &start);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(weights(), ["orders-blue:75,orders-green:25"]);
    cluster.race_patches("HTTPRoute", 1000);
    let (code, stderr) = rollout(&state, &["promote", "--path", root_text]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("HTTPRoute shop/orders: still 409 Conflict after 5 attempts"),
        "{stderr}"
    );
    let (phase, detail) = phase_and_detail(&state, "orders");
    assert_eq!(phase, "needs-attention", "{detail}");
    assert!(
        detail.contains("rolling orders back to version=blue failed"),
        "{detail}"
    );
    assert_eq!(weights(), Vec::<String>::new());

    // Once the other writer stops, resume finishes the rollback.
    cluster.race_patches("HTTPRoute", 0);
    let (code, stderr) = rollout(&state, &["resume", "--path", root_text]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(phase_and_detail(&state, "orders").0, "rolled-back");
    assert_eq!(weights(), ["orders-blue:100,orders-green:0"]);
}

/// A rolling update by image patches the Deployment's container and waits
/// for its rollout status; an image that never becomes available ends in
/// ProgressDeadlineExceeded and the previous image is patched back; a
/// driver killed after the patch is resumed without a second one.
#[test]
fn a_rolling_update_replaces_the_deployment_image_and_rolls_back_a_stuck_one() {
    let dir = TempDir::new("k8s-rolling");
    let root = dir.path().join("fleet");
    fleet(&root, &[("payments", "")], "rolling: {batchSize: 100%}");
    let cluster = cluster(
        &[
            service("payments"),
            deployment("payments", "registry.example/payments:1.0"),
        ],
        &["registry.example/payments:1.2"],
    );
    let config = kubeconfig(dir.path(), &cluster);
    let start = |state: &str, image: &str| {
        rollout(
            &dir.path().join(state),
            &[
                "start",
                "--services",
                "payments",
                "--executor",
                "kubernetes",
                "--kubeconfig",
                config.to_str().unwrap(),
                "--path",
                root.to_str().unwrap(),
                "--image",
                &format!("payments={image}"),
            ],
        )
    };
    let deployment = || cluster.object("Deployment", NS, "payments").unwrap();
    let image_now = || {
        let d = deployment();
        (
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_string(),
            d["status"]["availableReplicas"].clone(),
        )
    };

    let (code, stderr) = start("state", "registry.example/payments:1.1");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "payments: image registry.example/payments:1.0 -> registry.example/payments:1.1"
        ),
        "{stderr}"
    );
    assert_eq!(
        image_now(),
        ("registry.example/payments:1.1".to_string(), json!(3))
    );
    assert_eq!(
        phase_and_detail(&dir.path().join("state"), "payments").0,
        "promoted"
    );

    let (code, stderr) = start("state-stuck", "registry.example/payments:1.2");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("Deployment shop/payments did not roll out registry.example/payments:1.2: ProgressDeadlineExceeded"),
        "{stderr}"
    );
    assert_eq!(
        phase_and_detail(&dir.path().join("state-stuck"), "payments").0,
        "rolled-back"
    );
    assert_eq!(
        image_now(),
        ("registry.example/payments:1.1".to_string(), json!(3))
    );

    // Killed right after the Deployment rolled out, before the step was
    // recorded done: resume performs it again, which finds it done.
    let state = dir.path().join("state-killed");
    let killed = bulkhead()
        .args([
            "rollout",
            "start",
            "--services",
            "payments",
            "--executor",
            "kubernetes",
            "--image",
            "payments=registry.example/payments:1.3",
            "--kubeconfig",
        ])
        .arg(&config)
        .arg("--path")
        .arg(&root)
        .arg("--state")
        .arg(&state)
        .env(orchestrator::driver::KILL_AFTER_ACTION_ENV, "1")
        .output()
        .unwrap();
    assert_eq!(
        killed.status.code(),
        None,
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    assert_eq!(
        image_now(),
        ("registry.example/payments:1.3".to_string(), json!(3))
    );
    let generation = deployment()["metadata"]["generation"].clone();
    let (code, stderr) = rollout(&state, &["resume", "--path", root.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(phase_and_detail(&state, "payments").0, "promoted");
    assert_eq!(
        deployment()["metadata"]["generation"],
        generation,
        "no second patch"
    );

    // A strategy that moves traffic between pools takes no image.
    fleet(
        &root,
        &[("payments", "")],
        "blueGreen: {scaleDownDelaySeconds: 0}",
    );
    let (code, stderr) = start("state-bg", "registry.example/payments:1.3");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "payments uses the blue-green strategy: only rolling replaces the image in place"
        ),
        "{stderr}"
    );
}

/// GitOps with Argo CD: one commit per wave moves the images in a plain
/// manifest, a kustomization and Helm values, is pushed to the remote Argo
/// CD syncs from, and the step waits for the Application to be Synced at
/// that commit and Healthy. An image that leaves it Degraded fails the wave
/// and is rolled back by a `git revert` of that commit, pushed and synced.
#[test]
fn gitops_waits_for_argo_cd_and_reverts_a_degraded_wave() {
    let dir = TempDir::new("k8s-argocd");
    let work = dir.path().join("manifests");
    fleet(
        &work,
        &[("shop", ""), ("cart", "")],
        "rolling: {batchSize: 100%}",
    );
    let write = |path: &str, text: &str| {
        let file = work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    };
    write(
        "deploy/shop.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: registry.example/shop:1.0  # pinned by the release\n",
    );
    write(
        "charts/shop/Chart.yaml",
        "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
    );
    write(
        "charts/shop/values.yaml",
        "image:\n  repository: registry.example/shop\n  tag: \"1.0\"\n",
    );
    write(
        "deploy/cart/kustomization.yaml",
        "resources: [deployment.yaml]\nimages:\n  - name: registry.example/cart\n    newTag: \"1.0\"\n",
    );
    write(
        "deploy/cart/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: cart}\nspec:\n  template:\n    spec:\n      containers: [{name: app, image: registry.example/cart}]\n",
    );
    git_in(&work, &["init", "-q"]);
    git_in(&work, &["add", "."]);
    git_in(&work, &["commit", "-q", "-m", "manifests"]);
    let remote = dir.path().join("remote.git");
    git_in(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            remote.to_str().unwrap(),
        ],
    );
    git_in(
        &work,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    git_in(&work, &["fetch", "-q", "origin"]);

    let cluster = cluster(&[application("shop")], &[]);
    let broken = ["registry.example/shop:1.2".to_string()];
    let repo = remote.clone();
    cluster.control("Application", move |app| {
        argocd_controller(app, &repo, "main", &broken)
    });
    let config = kubeconfig(dir.path(), &cluster);
    let start = |state: &str, services: &str, images: &[&str]| {
        let mut args: Vec<String> = [
            "start",
            "--services",
            services,
            "--executor",
            "gitops",
            "--remote",
            "origin",
            "--argocd-app",
            "shop",
            "--kubeconfig",
            config.to_str().unwrap(),
            "--path",
            work.to_str().unwrap(),
            "--repo",
            work.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for image in images {
            args.push("--image".into());
            args.push(image.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rollout(&dir.path().join(state), &args)
    };
    let show = |path: &str| git_in(&remote, &["show", &format!("main:{path}")]);
    let app = || cluster.object("Application", "argocd", "shop").unwrap()["status"].clone();

    let (code, stderr) = start(
        "state",
        "shop,cart",
        &[
            "shop=registry.example/shop:1.1",
            "cart=registry.example/cart:1.1",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        git_in(&remote, &["log", "--format=%s", "main"]),
        "rollout: images cart registry.example/cart:1.1, shop registry.example/shop:1.1\nmanifests"
    );
    let message = git_in(&remote, &["log", "-1", "--format=%b", "main"]);
    assert!(
        message.ends_with("Bulkhead-Image: cart registry.example/cart:1.0 -> registry.example/cart:1.1\nBulkhead-Image: shop registry.example/shop:1.0 -> registry.example/shop:1.1"),
        "{message}"
    );
    assert!(
        show("deploy/shop.yaml")
            .contains("image: registry.example/shop:1.1  # pinned by the release")
    );
    assert_eq!(
        show("charts/shop/values.yaml"),
        "image:\n  repository: registry.example/shop\n  tag: \"1.1\""
    );
    assert!(show("deploy/cart/kustomization.yaml").contains("newTag: \"1.1\""));
    let head = git_in(&remote, &["rev-parse", "main"]);
    assert_eq!(
        app(),
        json!({"sync": {"status": "Synced", "revision": head}, "health": {"status": "Healthy"}})
    );

    let (code, stderr) = start(
        "state-degraded",
        "shop",
        &["shop=registry.example/shop:1.2"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("Argo CD Application argocd/shop: Degraded at"),
        "{stderr}"
    );
    assert_eq!(
        phase_and_detail(&dir.path().join("state-degraded"), "shop").0,
        "rolled-back"
    );
    assert_eq!(
        git_in(&remote, &["log", "--format=%s", "-3", "main"]),
        "Revert \"rollout: images shop registry.example/shop:1.2\"\nrollout: images shop registry.example/shop:1.2\nrollout: images cart registry.example/cart:1.1, shop registry.example/shop:1.1"
    );
    assert_eq!(
        show("charts/shop/values.yaml"),
        "image:\n  repository: registry.example/shop\n  tag: \"1.1\""
    );
    let head = git_in(&remote, &["rev-parse", "main"]);
    assert_eq!(
        app(),
        json!({"sync": {"status": "Synced", "revision": head}, "health": {"status": "Healthy"}})
    );
}
