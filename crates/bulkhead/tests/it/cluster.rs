//! Live clusters through a kubeconfig, end to end through the CLI, against
//! the fake Kubernetes API server (`fake_kube`): `cluster snapshot` pages
//! through every workload kind (restarting on 410, waiting out 429), `cve`
//! and `images audit` answer the same from `--cluster` as from the saved
//! snapshot, client certificates and exec plugins authenticate, `rollout
//! start --dry-run` prints `kubectl diff`s and patches nothing, and `cluster
//! rbac` grants every request the fake saw.

use super::fake_kube::{Auth, FakeKube, Seen};
use super::{TempDir, bulkhead, json, run_ok};
use serde_json::{Value, json};
use std::path::Path;

const CVE: &str = "CVE-2023-38545";

/// The workloads of a cluster running `services` (name, namespace, image):
/// a Deployment and a Pod each (two for the first), plus one of each other
/// kind, and a DaemonSet running the OS base directly.
fn workloads(services: &[(String, String, String)], os_base: &str) -> Vec<Value> {
    let digest = |n: usize| format!("sha256:{n:064x}");
    let mut objects = Vec::new();
    for (index, (name, namespace, image)) in services.iter().enumerate() {
        objects.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image}]}}}}));
        for replica in 0..if index == 0 { 2 } else { 1 } {
            let repository = image.split(['@', ':']).next().unwrap_or(image);
            objects.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-7d9f8b-{replica}x"), "namespace": namespace,
                             "labels": {"app": name},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-7d9f8b")}]},
                "spec": {"containers": [{"name": name, "image": image}]},
                "status": {"phase": "Running", "containerStatuses": [{"name": name, "image": image, "ready": true,
                    "imageID": format!("docker-pullable://{repository}@{}", digest(index + 1))}]}}));
        }
    }
    objects.extend([
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "node-agent", "namespace": "kube-system", "labels": {"app": "node-agent"}},
            "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": format!("{os_base}:12.5")}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "cache", "namespace": "ops", "labels": {"app": "cache"}},
            "spec": {"template": {"spec": {"containers": [{"name": "redis", "image": "docker.io/library/redis:7.2"}]}}}}),
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate-1", "namespace": "ops"},
            "spec": {"template": {"spec": {"containers": [{"name": "migrate", "image": "registry.acme.internal/tools/migrate:3"}]}}}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "backup", "namespace": "ops"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec":
                {"containers": [{"name": "backup", "image": "registry.acme.internal/tools/backup:1.4"}]}}}}}}),
    ]);
    objects
}

/// A sample fleet and the cluster that runs its CVE-affected services.
fn fleet_and_cluster(dir: &TempDir) -> (std::path::PathBuf, Vec<Value>) {
    let fleet = dir.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init", "--services", "8"])
            .arg(&fleet),
    );
    let truth = json(&std::fs::read_to_string(fleet.join("ground-truth.json")).expect("truth"));
    let affected: Vec<&str> = truth["critical_cve"]["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let services: Vec<(String, String, String)> = truth["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| affected.contains(&s["name"].as_str().unwrap_or_default()))
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_string(),
                s["namespace"].as_str().expect("namespace").to_string(),
                s["images"][0].as_str().expect("image").to_string(),
            )
        })
        .collect();
    assert!(!services.is_empty());
    let os_base = truth["critical_cve"]["os_base"].as_str().expect("os base");
    (fleet, workloads(&services, os_base))
}

fn with_cluster_config(fleet: &Path, section: &str) {
    let toml = fleet.join("bulkhead.toml");
    let text = std::fs::read_to_string(&toml).expect("bulkhead.toml");
    let base = text
        .split("\n[cluster]\n")
        .next()
        .unwrap_or(&text)
        .to_string();
    std::fs::write(&toml, format!("{base}\n[cluster]\n{section}")).expect("write");
}

fn lists(seen: &[Seen], plural: &str) -> Vec<(bool, u16)> {
    seen.iter()
        .filter(|s| s.verb == "list" && s.resource == plural)
        .map(|s| (s.query.contains("continue="), s.status))
        .collect()
}

fn fails(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("run bulkhead");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The live read and the saved snapshot of one cluster are one input:
/// `cve` and `images audit` give the same answers from `--cluster`,
/// `[cluster] contexts` and `[cluster] snapshots`. The snapshot pages
/// (`--chunk-size 2`), restarts the pods list when its continue token
/// expires, and waits out a 429 on deployments.
#[test]
fn a_live_cluster_answers_as_its_saved_snapshot() {
    let dir = TempDir::new("cluster-live");
    let (fleet, objects) = fleet_and_cluster(&dir);
    let fake = FakeKube::start(&objects, Auth::Token("r3ader".into()));
    let kubeconfig = fake.kubeconfig(
        dir.path(),
        &[("prod", "default", "{token: r3ader}".to_string())],
    );
    fake.expire_next_continue("pods");
    fake.throttle_next_list("deployments");
    std::fs::create_dir_all(fleet.join("clusters")).expect("mkdir");
    let saved = fleet.join("clusters/prod.json");
    let out = bulkhead()
        .args([
            "cluster",
            "snapshot",
            "--context",
            "prod",
            "--chunk-size",
            "2",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("-o")
        .arg(&saved)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let pods = objects.iter().filter(|o| o["kind"] == "Pod").count();
    assert!(pods > 2, "the pods take several pages");
    assert!(stderr.contains(&format!("prod: {pods} pods, ")), "{stderr}");
    let seen = fake.seen();
    // Pages of two; the second page's token expired once: the list started again.
    let pod_lists = lists(&seen, "pods");
    assert_eq!(pod_lists[..3], [(false, 200), (true, 410), (false, 200)]);
    assert!(
        pod_lists[3..]
            .iter()
            .all(|&(more, code)| more && code == 200)
    );
    assert_eq!(pod_lists.len(), 3 + pods.div_ceil(2) - 1);
    assert_eq!(
        lists(&seen, "deployments")[..2],
        [(false, 429), (false, 200)]
    );
    assert!(seen.iter().all(|s| s.query.contains("limit=2")));

    let snapshot = json(&std::fs::read_to_string(&saved).expect("snapshot"));
    assert_eq!(snapshot["kind"], "List");
    let items = snapshot["items"].as_array().expect("items");
    assert_eq!(items.len(), objects.len());
    let kinds: Vec<&str> = items.iter().filter_map(|i| i["kind"].as_str()).collect();
    let mut order = kinds.clone();
    order.dedup();
    assert_eq!(
        order,
        [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob"
        ]
    );
    for item in items {
        assert!(item["apiVersion"].is_string(), "{item}");
        assert!(item["metadata"]["managedFields"].is_null(), "{item}");
        assert!(item["metadata"]["resourceVersion"].is_string(), "{item}");
    }

    // The saved snapshot's answers, with its path where a live read names its context.
    let answer = |args: &[&str], config: &str, cluster: bool| {
        with_cluster_config(&fleet, config);
        let mut cmd = bulkhead();
        cmd.args(args).arg("--json").arg("--path").arg(&fleet);
        if cluster {
            cmd.args(["--cluster", "prod"])
                .arg("--kubeconfig")
                .arg(&kubeconfig);
        }
        run_ok(&mut cmd).replace("\"clusters/prod.json", "\"live:prod")
    };
    let kubeconfig_entry = format!("kubeconfig = {:?}\n", kubeconfig.display().to_string());
    for args in [&["cve", CVE][..], &["images", "audit"]] {
        let from_file = answer(args, "snapshots = [\"clusters/prod.json\"]\n", false);
        let live = answer(args, "", true);
        let configured = answer(
            args,
            &format!("contexts = [\"prod\"]\n{kubeconfig_entry}"),
            false,
        );
        let (from_file, live, configured) = (json(&from_file), json(&live), json(&configured));
        if args[0] == "cve" {
            assert_eq!(from_file, live, "cve");
            assert_eq!(from_file, configured, "cve");
            let running = from_file["cve"]["running_images"]
                .as_array()
                .expect("running images");
            assert!(
                running
                    .iter()
                    .any(|r| r["kind"] == "DaemonSet" && r["cluster"] == "prod"),
                "the OS base runs directly: {running:?}"
            );
            let services = from_file["cve"]["services"].as_array().expect("services");
            assert!(
                services
                    .iter()
                    .all(|s| s["running"].as_array().is_some_and(|r| !r.is_empty())),
                "every affected service runs in prod: {services:?}"
            );
        } else {
            // Rows are sorted by place, and the places differ: compare them as sets.
            let rows = |v: &Value| {
                let mut rows: Vec<String> = v["images"]
                    .as_array()
                    .expect("images")
                    .iter()
                    .map(Value::to_string)
                    .collect();
                rows.sort();
                rows
            };
            assert_eq!(rows(&from_file), rows(&live), "images audit");
            assert_eq!(rows(&from_file), rows(&configured), "images audit");
            let running = from_file["images"]
                .as_array()
                .expect("images")
                .iter()
                .filter(|r| r["kind"] == "running")
                .count();
            assert_eq!(running, objects.len(), "one container per object");
        }
    }
}

/// A client certificate the cluster's CA signed authenticates, from the
/// kubeconfig's `client-certificate-data` and `client-key-data`; another
/// certificate fails with an error that names the TLS refusal. Without the
/// right to list cronjobs, the API server's 403 is shown with the way out.
#[test]
fn client_certificates_authenticate_and_refusals_are_clear() {
    let dir = TempDir::new("cluster-cert");
    let objects = workloads(
        &[(
            "orders".into(),
            "shop".into(),
            "registry.acme.internal/apps/orders:1.0".into(),
        )],
        "registry.acme.internal/base/debian-12",
    );
    let fake = FakeKube::start(&objects, Auth::ClientCertificate);
    let stranger = {
        use base64::Engine as _;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["bulkhead".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let b64 = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
        format!(
            "{{client-certificate-data: {}, client-key-data: {}}}",
            b64(cert.pem()),
            b64(key.serialize_pem())
        )
    };
    let kubeconfig = fake.kubeconfig(
        dir.path(),
        &[
            ("admin", "shop", fake.client_certificate_user()),
            ("stranger", "shop", stranger),
        ],
    );
    let text = run_ok(
        bulkhead()
            .args(["cluster", "snapshot", "-o", "-"])
            .arg("--kubeconfig")
            .arg(&kubeconfig),
    );
    let listed = json(&text);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(objects.len())
    );
    assert_eq!(fake.seen().len(), 6, "one list per kind");

    let before = fake.seen().len();
    let stderr = fails(
        bulkhead()
            .args(["cluster", "snapshot", "--context", "stranger", "-o", "-"])
            .arg("--kubeconfig")
            .arg(&kubeconfig),
    );
    assert!(
        stderr.contains("reading the cluster of context stranger")
            && stderr.contains("listing pods")
            && stderr.contains("received fatal alert: UnknownCA (the API server refused the client certificate: give the user one the cluster's CA signed)"),
        "{stderr}"
    );
    assert_eq!(fake.seen().len(), before, "no request got through");

    fake.forbid("list", "cronjobs");
    let stderr = fails(
        bulkhead()
            .args(["cluster", "snapshot", "-o"])
            .arg(dir.path().join("never.json"))
            .arg("--kubeconfig")
            .arg(&kubeconfig),
    );
    assert!(
        stderr.contains("listing cronjobs: 403 Forbidden: cronjobs.batch is forbidden: User \"system:serviceaccount:ops:bulkhead\" cannot list resource \"cronjobs\" in API group \"batch\" at the cluster scope (grant the rules `bulkhead cluster rbac` prints)"),
        "{stderr}"
    );
    assert!(!dir.path().join("never.json").exists());
}

/// An exec credential plugin (a script printing an ExecCredential) gives
/// the token; a token the API server refuses is its 401.
#[test]
fn exec_plugins_give_the_token_and_a_refused_one_is_a_401() {
    let dir = TempDir::new("cluster-exec");
    let objects = workloads(&[], "registry.acme.internal/base/debian-12");
    let fake = FakeKube::start(&objects, Auth::Token("fr0m-plugin".into()));
    let plugin = dir.path().join("credential.sh");
    std::fs::write(
        &plugin,
        "#!/bin/sh\n# Speaks the client.authentication.k8s.io exec protocol.\ncase \"$KUBERNETES_EXEC_INFO\" in *ExecCredential*) ;; *) exit 1 ;; esac\nprintf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%s\",\"expirationTimestamp\":\"2030-01-01T00:00:00Z\"}}' \"$1\"\n",
    )
    .expect("plugin");
    run_ok(std::process::Command::new("chmod").arg("+x").arg(&plugin));
    let exec = |token: &str| {
        format!(
            "{{exec: {{apiVersion: client.authentication.k8s.io/v1, command: ./credential.sh, args: [{token}], interactiveMode: Never}}}}"
        )
    };
    let kubeconfig = fake.kubeconfig(
        dir.path(),
        &[
            ("sso", "ops", exec("fr0m-plugin")),
            ("stale", "ops", exec("expired")),
        ],
    );
    let listed = json(&run_ok(
        bulkhead()
            .args(["cluster", "snapshot", "-o", "-", "--context", "sso"])
            .arg("--kubeconfig")
            .arg(&kubeconfig),
    ));
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(objects.len())
    );
    let stderr = fails(
        bulkhead()
            .args(["cluster", "snapshot", "-o", "-", "--context", "stale"])
            .arg("--kubeconfig")
            .arg(&kubeconfig),
    );
    assert!(
        stderr
            .contains("listing pods: 401 Unauthorized: Unauthorized (the credentials were refused"),
        "{stderr}"
    );
}

/// `rollout start --dry-run` prints each patch as `kubectl diff` would and
/// changes nothing; a real start then patches. Every request the fake saw,
/// through every command here, is one the `cluster rbac` rules grant.
#[test]
fn dry_run_prints_kubectl_diffs_and_rbac_grants_every_request() {
    let dir = TempDir::new("cluster-dry-run");
    let fleet = dir.path().join("fleet");
    std::fs::create_dir_all(fleet.join("rollouts")).expect("mkdir");
    let mut specs = String::new();
    for (service, strategy) in [
        (
            "orders",
            "canary: {steps: [{setWeight: 25}, {setWeight: 50}]}",
        ),
        (
            "payments",
            "blueGreen: {autoPromotionEnabled: true, scaleDownDelaySeconds: 0}",
        ),
        ("search", "rolling: {batchSize: 100%}"),
    ] {
        let folder = fleet.join("services").join(service);
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(
            folder.join("catalog-info.yaml"),
            format!("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {service}\nspec:\n  type: service\n"),
        )
        .expect("catalog");
        specs.push_str(&format!(
            "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {service}}}\nspec:\n  service: {service}\n  strategy:\n    {strategy}\n"
        ));
    }
    std::fs::write(fleet.join("rollouts/rollouts.yaml"), specs).expect("specs");
    let mut objects = workloads(
        &[
            (
                "orders".into(),
                "shop".into(),
                "registry.acme.internal/apps/orders:1.0".into(),
            ),
            (
                "search".into(),
                "shop".into(),
                "registry.acme.internal/apps/search:1.0".into(),
            ),
        ],
        "registry.acme.internal/base/debian-12",
    );
    for name in ["orders", "payments", "search"] {
        objects.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": {"app": name, "version": "blue"}, "ports": [{"port": 8080}]}}));
    }
    objects.push(json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"parentRefs": [{"name": "public"}],
                 "rules": [{"backendRefs": [{"name": "orders-blue", "port": 8080, "weight": 100},
                                            {"name": "orders-green", "port": 8080, "weight": 0}]}]}}));
    let fake = FakeKube::start(&objects, Auth::Token("dep1oy".into()));
    let kubeconfig = fake.kubeconfig(
        dir.path(),
        &[
            ("prod", "shop", "{token: dep1oy}".to_string()),
            ("staging", "shop-staging", "{token: dep1oy}".to_string()),
        ],
    );
    let start = |extra: &[&str]| {
        bulkhead()
            .args([
                "rollout",
                "start",
                "--services",
                "orders,payments",
                "--executor",
                "kubernetes",
            ])
            .args(extra)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--path")
            .arg(&fleet)
            .output()
            .expect("run")
    };
    let out = start(&["--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        fake.seen().iter().all(|s| s.verb != "patch"),
        "a dry run patches nothing"
    );
    assert!(
        !fleet.join(".bulkhead/rollouts.db").exists(),
        "nor records a rollout"
    );
    // The canary's route at 25% then 50%, then its Service switched and
    // the route all on green; the blue-green Service switched.
    let route = "diff -u -N LIVE/gateway.networking.k8s.io.v1.HTTPRoute.shop.orders MERGED/gateway.networking.k8s.io.v1.HTTPRoute.shop.orders\n";
    assert_eq!(stdout.matches(route).count(), 3, "{stdout}");
    assert!(
        stdout.contains("-      weight: 50\n+      weight: 0\n     - name: orders-green\n       port: 8080\n-      weight: 50\n+      weight: 100\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("     - name: orders-blue\n       port: 8080\n-      weight: 100\n+      weight: 75\n     - name: orders-green\n       port: 8080\n-      weight: 0\n+      weight: 25\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-      weight: 75\n+      weight: 50\n"),
        "{stdout}"
    );
    for service in ["orders", "payments"] {
        let diff = format!(
            "diff -u -N LIVE/v1.Service.shop.{service} MERGED/v1.Service.shop.{service}\n--- LIVE/v1.Service.shop.{service}\n+++ MERGED/v1.Service.shop.{service}\n"
        );
        assert!(stdout.contains(&diff), "{stdout}");
    }
    assert!(
        stdout.contains("-    version: blue\n+    version: green\n"),
        "{stdout}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    // A rolling update by image: the Deployment's container image.
    let out = bulkhead()
        .args([
            "rollout",
            "start",
            "--services",
            "search",
            "--executor",
            "kubernetes",
        ])
        .args([
            "--image",
            "search=registry.acme.internal/apps/search:2.0",
            "--dry-run",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--path")
        .arg(&fleet)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("diff -u -N LIVE/apps.v1.Deployment.shop.search MERGED/apps.v1.Deployment.shop.search\n")
            && stdout.contains("-      - image: registry.acme.internal/apps/search:1.0\n+      - image: registry.acme.internal/apps/search:2.0\n"),
        "{stdout}"
    );
    assert!(fake.seen().iter().all(|s| s.verb != "patch"));

    // The same rollout for real patches what the dry run showed.
    let out = start(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fake.object("Service", "shop", "payments")
            .expect("payments")["spec"]["selector"]["version"],
        "green"
    );
    // A read of every namespace too, then every request must be granted.
    run_ok(
        bulkhead()
            .args(["cluster", "snapshot", "-o", "-"])
            .arg("--kubeconfig")
            .arg(&kubeconfig),
    );
    let rbac = json(&run_ok(bulkhead().args([
        "cluster",
        "rbac",
        "--namespace",
        "shop",
        "--json",
    ])));
    let items = rbac["items"].as_array().expect("items");
    let grants = |seen: &Seen| {
        items.iter().any(|object| {
            let scope_ok = match object["kind"].as_str() {
                Some("ClusterRole") => true,
                Some("Role") => {
                    seen.namespace.as_deref() == object["metadata"]["namespace"].as_str()
                }
                _ => false,
            };
            scope_ok
                && object["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| {
                        let has = |field: &str, value: &str| {
                            rule[field]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|v| v == value)
                        };
                        has("apiGroups", &seen.group)
                            && has("resources", &seen.resource)
                            && has("verbs", &seen.verb)
                    })
        })
    };
    let seen = fake.seen();
    let verbs: std::collections::BTreeSet<(&str, &str)> = seen
        .iter()
        .map(|s| (s.verb.as_str(), s.resource.as_str()))
        .collect();
    for wanted in [
        ("get", "services"),
        ("patch", "services"),
        ("list", "services"),
        ("get", "httproutes"),
        ("patch", "httproutes"),
        ("list", "pods"),
        ("list", "cronjobs"),
    ] {
        assert!(
            verbs.contains(&wanted),
            "the tests sent {wanted:?}: {verbs:?}"
        );
    }
    for request in &seen {
        assert!(
            grants(request),
            "not granted by `cluster rbac`: {request:?}"
        );
    }
    // Bindings name the service account in the Role's namespace.
    let binding = items
        .iter()
        .find(|o| o["kind"] == "RoleBinding")
        .expect("binding");
    assert_eq!(binding["subjects"][0]["namespace"], "shop");
    let yaml = run_ok(bulkhead().args(["cluster", "rbac", "--namespace", "shop"]));
    assert!(
        yaml.contains("kind: ClusterRole\n") && yaml.contains("\n---\n"),
        "{yaml}"
    );
    // A namespace without the objects (another Role's business): the API server's 404, nothing patched.
    let out = start(&["--dry-run", "--context", "staging"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/namespaces/shop-staging/")
            && stderr.contains(": 404 Not Found: ")
            && stderr.contains(" not found"),
        "{stderr}"
    );
    let patches = |seen: &[Seen]| seen.iter().filter(|s| s.verb == "patch").count();
    assert_eq!(patches(&fake.seen()), patches(&seen));
}
