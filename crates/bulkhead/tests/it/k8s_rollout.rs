//! Rollouts on a cluster through the CLI: a canary by an HTTPRoute's
//! backendRef weights (with 409 conflicts on the way), a rolling update by a
//! Deployment's image (watching its rollout status), and GitOps commits that
//! an Argo CD Application must sync and report healthy (rolled back with a
//! `git revert` when it turns Degraded).

use crate::{TempDir, bulkhead, git_in, json, run_ok};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const TOKEN: &str = "r0llout-t0ken";
const NS: &str = "shop";

/// What the fake cluster holds and has seen.
#[derive(Default)]
struct Cluster {
    /// Objects by API path (`/api/v1/namespaces/shop/services/orders`).
    objects: BTreeMap<String, Value>,
    /// The next PATCHes of an HTTPRoute that lose a race: another writer
    /// changes the route first, so the patch's resourceVersion is stale.
    conflicts: usize,
    /// Each HTTPRoute's weights after every change, `name:weight,...`.
    weights: Vec<String>,
    /// Images the Deployment controller cannot make available.
    broken_images: Vec<String>,
    /// Argo CD's GitOps repository (a bare repository) and branch.
    gitops: Option<(PathBuf, String)>,
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// RFC 7386 JSON merge patch, as the API server applies `application/merge-patch+json`.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn bump(object: &mut Value, field: &str) {
    let n: u64 = match &object["metadata"][field] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    };
    object["metadata"][field] = if field == "generation" {
        json!(n + 1)
    } else {
        json!((n + 1).to_string())
    };
}

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

/// Stands in for the Kubernetes API server, which cannot run here, and for
/// Argo CD's application controller: over TLS (`fake_tls`) with a bearer
/// token (401 `Status` otherwise), it keeps objects by path, answers GET
/// (404 `Status` for an unknown object) and JSON merge patches (the
/// `resourceVersion` moving on every change; a patch carrying a stale one
/// gets 409 Conflict `Status`), lists Services, and plays the controllers on
/// later reads: the Deployment controller rolls a new template out, Argo CD
/// syncs the repository's new commits.
fn fake_cluster(cluster: Arc<Mutex<Cluster>>) -> crate::fake_tls::TlsServer {
    crate::fake_tls::TlsServer::start(move |method, target, header, body| {
        if header("authorization").as_deref() != Some(&format!("Bearer {TOKEN}")) {
            return (
                401,
                String::new(),
                status(401, "Unauthorized", "Unauthorized"),
            );
        }
        let mut cluster = cluster.lock().unwrap();
        let cluster = &mut *cluster;
        let path = target.split('?').next().unwrap_or_default().to_string();
        if method == "GET" && path == format!("/api/v1/namespaces/{NS}/services") {
            let prefix = format!("{path}/");
            let items: Vec<Value> = cluster
                .objects
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v.clone())
                .collect();
            return (
                200,
                String::new(),
                json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {"resourceVersion": "900"}, "items": items}),
            );
        }
        let broken = cluster.broken_images.clone();
        let gitops = cluster.gitops.clone();
        let is_route = path.contains("/httproutes/");
        if is_route && method == "PATCH" && cluster.conflicts > 0 {
            cluster.conflicts -= 1;
            if let Some(route) = cluster.objects.get_mut(&path) {
                bump(route, "resourceVersion");
            }
        }
        let Some(object) = cluster.objects.get_mut(&path) else {
            let name = path.rsplit('/').next().unwrap_or_default();
            return (
                404,
                String::new(),
                status(404, "NotFound", &format!("\"{name}\" not found")),
            );
        };
        match method {
            "GET" => {
                if path.contains("/deployments/") {
                    deployment_controller(object, &broken);
                }
                if let (true, Some((repo, branch))) = (path.contains("/applications/"), &gitops) {
                    argocd_controller(object, repo, branch, &broken);
                }
                (200, String::new(), object.clone())
            }
            "PATCH" => {
                let want = &body["metadata"]["resourceVersion"];
                if !want.is_null() && *want != object["metadata"]["resourceVersion"] {
                    let kind = object["kind"].as_str().unwrap_or("object").to_string();
                    return (
                        409,
                        String::new(),
                        status(
                            409,
                            "Conflict",
                            &format!(
                                "Operation cannot be fulfilled on {kind}: the object has been modified; please apply your changes to the latest version and try again"
                            ),
                        ),
                    );
                }
                let template_before = object["spec"]["template"].clone();
                merge(object, &body);
                bump(object, "resourceVersion");
                if object["spec"]["template"] != template_before {
                    bump(object, "generation");
                }
                let answer = object.clone();
                if is_route {
                    cluster.weights.push(route_weights(&answer));
                }
                (200, String::new(), answer)
            }
            _ => (
                405,
                String::new(),
                status(405, "MethodNotAllowed", "method not allowed"),
            ),
        }
    })
}

fn service(name: &str) -> (String, Value) {
    (
        format!("/api/v1/namespaces/{NS}/services/{name}"),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": NS, "resourceVersion": "11"},
               "spec": {"selector": {"app": name, "version": "blue"}, "ports": [{"port": 8080}]}}),
    )
}

fn http_route(name: &str) -> (String, Value) {
    (
        format!("/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/{name}"),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": name, "namespace": NS, "resourceVersion": "21", "generation": 1},
               "spec": {"parentRefs": [{"name": "edge"}],
                        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": format!("/{name}")}}],
                                   "backendRefs": [{"name": format!("{name}-blue"), "port": 8080, "weight": 100},
                                                   {"name": format!("{name}-green"), "port": 8080, "weight": 0}]}]}}),
    )
}

fn deployment(name: &str, image: &str) -> (String, Value) {
    (
        format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": NS, "resourceVersion": "31", "generation": 4},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": "app", "image": image}]}}},
               "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3,
                          "availableReplicas": 3, "readyReplicas": 3}}),
    )
}

fn application(name: &str) -> (String, Value) {
    (
        format!("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/{name}"),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
               "metadata": {"name": name, "namespace": "argocd", "resourceVersion": "41"},
               "spec": {"source": {"repoURL": "https://git.example/shop.git", "path": ".", "targetRevision": "main"},
                        "destination": {"namespace": NS}},
               "status": {"sync": {"status": "Synced", "revision": "none"}, "health": {"status": "Healthy"}}}),
    )
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

fn kubeconfig(dir: &Path, server: &crate::fake_tls::TlsServer) -> PathBuf {
    use base64::Engine as _;
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: prod\nclusters:\n- name: prod\n  cluster:\n    server: https://{}\n    certificate-authority-data: {}\ncontexts:\n- name: prod\n  context: {{cluster: prod, user: deployer, namespace: {NS}}}\nusers:\n- name: deployer\n  user: {{token: {TOKEN}}}\n",
            server.addr,
            base64::engine::general_purpose::STANDARD.encode(&server.ca_pem)
        ),
    )
    .unwrap();
    path
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
    let cluster = Arc::new(Mutex::new(Cluster {
        objects: [service("orders"), http_route("orders"), service("search")]
            .into_iter()
            .collect(),
        conflicts: 2,
        ..Cluster::default()
    }));
    let server = fake_cluster(cluster.clone());
    let config = kubeconfig(dir.path(), &server);
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
    assert_eq!(
        cluster.lock().unwrap().weights,
        ["orders-blue:75,orders-green:25"]
    );
    let (code, stderr) = rollout(&state, &["promote", "--path", root_text]);
    assert_eq!(code, Some(0), "{stderr}");
    {
        let cluster = cluster.lock().unwrap();
        assert_eq!(
            cluster.weights,
            [
                "orders-blue:75,orders-green:25",
                "orders-blue:50,orders-green:50",
                "orders-blue:0,orders-green:100"
            ]
        );
        let selector = &cluster.objects[&service("orders").0]["spec"]["selector"];
        assert_eq!(selector, &json!({"app": "orders", "version": "green"}));
        assert_eq!(
            cluster.objects[&service("search").0]["spec"]["selector"]["version"],
            "blue"
        );
    }

    // Every patch of the next step loses its race: the step fails, and so
    // does the rollback's own route patch; both are recorded.
    cluster
        .lock()
        .unwrap()
        .objects
        .extend([service("orders"), http_route("orders")]);
    cluster.lock().unwrap().weights.clear();
    let state = dir.path().join("state-conflicts");
    let (code, stderr) = rollout(&state, &start);
    assert_eq!(code, Some(3), "{stderr}");
    cluster.lock().unwrap().conflicts = 1000;
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
    assert_eq!(
        cluster.lock().unwrap().weights,
        ["orders-blue:75,orders-green:25"]
    );

    // Once the other writer stops, resume finishes the rollback.
    cluster.lock().unwrap().conflicts = 0;
    let (code, stderr) = rollout(&state, &["resume", "--path", root_text]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(phase_and_detail(&state, "orders").0, "rolled-back");
    assert_eq!(
        cluster.lock().unwrap().weights,
        [
            "orders-blue:75,orders-green:25",
            "orders-blue:100,orders-green:0"
        ]
    );
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
    let cluster = Arc::new(Mutex::new(Cluster {
        objects: [
            service("payments"),
            deployment("payments", "registry.example/payments:1.0"),
        ]
        .into_iter()
        .collect(),
        broken_images: vec!["registry.example/payments:1.2".to_string()],
        ..Cluster::default()
    }));
    let server = fake_cluster(cluster.clone());
    let config = kubeconfig(dir.path(), &server);
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
    let image_now = || {
        let cluster = cluster.lock().unwrap();
        let d = &cluster.objects[&deployment("payments", "").0];
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
    let patches = |cluster: &Cluster| {
        cluster.objects[&deployment("payments", "").0]["metadata"]["generation"].clone()
    };
    let generation = patches(&cluster.lock().unwrap());
    let (code, stderr) = rollout(&state, &["resume", "--path", root.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(phase_and_detail(&state, "payments").0, "promoted");
    assert_eq!(
        patches(&cluster.lock().unwrap()),
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

    let cluster = Arc::new(Mutex::new(Cluster {
        objects: [application("shop")].into_iter().collect(),
        broken_images: vec!["registry.example/shop:1.2".to_string()],
        gitops: Some((remote.clone(), "main".to_string())),
        ..Cluster::default()
    }));
    let server = fake_cluster(cluster.clone());
    let config = kubeconfig(dir.path(), &server);
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
    let app = || cluster.lock().unwrap().objects[&application("shop").0]["status"].clone();

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
