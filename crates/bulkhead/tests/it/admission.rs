//! `bulkhead policy serve`: the admission webhook over real TLS on loopback.
//!
//! Each test starts the binary with `--self-signed --listen 127.0.0.1:0`,
//! reads the bound address and the caBundle from its first two stdout lines
//! (printed after the socket listens, so no retry is needed), and speaks
//! HTTP/1.1 through a rustls client that trusts only that caBundle.
//!
//! Also: `policy export webhook` from that certificate, and `--inventory`
//! reloaded while serving, with the gatekeeper-library's unique Ingress host.

use crate::*;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

/// A running `policy serve`, killed when dropped.
struct Webhook {
    child: Child,
    /// Kept open: the server's later messages must not meet a closed pipe.
    stderr: Mutex<Option<std::process::ChildStderr>>,
    addr: String,
    tls: Arc<rustls::ClientConfig>,
    /// The self-signed certificate the server presents, as PEM.
    cert_pem: Vec<u8>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response: status and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        json(&self.body)
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("caBundle is padded standard base64")
}

impl Webhook {
    fn start(args: &[&str]) -> Webhook {
        let mut child = bulkhead()
            .args([
                "policy",
                "serve",
                "--self-signed",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bulkhead policy serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut stderr = child.stderr.take().expect("stderr");
        let mut line = |prefix: &str| {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read stdout");
            match line.trim_end().strip_prefix(prefix) {
                Some(rest) => rest.to_string(),
                None => {
                    let _ = child.kill();
                    let mut errors = String::new();
                    let _ = stderr.read_to_string(&mut errors);
                    panic!("expected {prefix:?} on stdout, got {line:?}; stderr:\n{errors}")
                }
            }
        };
        let addr = line("listening on https://");
        let pem = base64_decode(&line("caBundle: "));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.expect("PEM certificate")).expect("trust it");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Webhook {
            child,
            stderr: Mutex::new(Some(stderr)),
            addr,
            tls: Arc::new(tls),
            cert_pem: pem,
        }
    }

    /// One request on a new TLS connection to `server_name` (the certificate covers localhost).
    fn request_to(
        &self,
        server_name: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> std::io::Result<Reply> {
        let name = ServerName::try_from(server_name.to_string()).expect("server name");
        let connection =
            rustls::ClientConnection::new(Arc::clone(&self.tls), name).expect("TLS client");
        let tcp = TcpStream::connect(&self.addr)?;
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {server_name}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        stream.flush()?;
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("content-length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        Ok(Reply {
            status,
            body: String::from_utf8(body).expect("utf-8 body"),
        })
    }

    /// The server's stderr lines from now on, read by a thread of their own
    /// (the pipe stays open, so the server never meets a closed pipe).
    fn stderr_lines(&self) -> std::sync::mpsc::Receiver<String> {
        let stderr = self
            .stderr
            .lock()
            .unwrap()
            .take()
            .expect("stderr taken once");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        rx
    }

    fn request(&self, method: &str, path: &str, body: &str) -> Reply {
        self.request_to("localhost", method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn review(&self, review: &Value) -> Value {
        self.request("POST", "/validate", &review.to_string())
            .json()["response"]
            .clone()
    }

    /// `bulkhead_admission_decisions_total` by result.
    fn decisions(&self) -> BTreeMap<String, u64> {
        let reply = self.request("GET", "/metrics", "");
        assert_eq!(reply.status, 200);
        reply
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("bulkhead_admission_decisions_total{result=\""))
            .filter_map(|l| l.split_once("\"} "))
            .map(|(result, n)| (result.to_string(), n.parse().expect("count")))
            .collect()
    }
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// An AdmissionReview v1 creating a Pod with one container running `image`, with limits.
fn pod_review(uid: &str, image: &str, dry_run: bool) -> Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "dryRun": dry_run,
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": "shop"},
                "spec": {"containers": [{
                    "name": "app",
                    "image": image,
                    "resources": {"limits": {"cpu": "1", "memory": "128Mi"}},
                }]},
            },
        },
    })
}

fn strs(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn webhook_allows_denies_warns_and_counts_over_tls() {
    let webhook = Webhook::start(&[]);
    assert_eq!(webhook.request("GET", "/healthz", "").body, "ok\n");

    let pinned = format!("registry.acme.internal/apps/orders:1.4.2@{DIGEST}");
    let allowed = webhook.review(&pod_review("uid-allow", &pinned, false));
    assert_eq!(allowed["uid"], "uid-allow");
    assert_eq!(allowed["allowed"], true);
    assert!(allowed.get("warnings").is_none(), "{allowed}");
    assert!(allowed.get("status").is_none(), "{allowed}");

    let denied = webhook.review(&pod_review("uid-deny", "nginx:latest", false));
    assert_eq!(denied["uid"], "uid-deny");
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["status"]["code"], 403);
    let message = denied["status"]["message"].as_str().expect("message");
    assert!(
        message.contains("[builtin/image-tag]")
            && message.contains("nginx:latest floats on latest"),
        "{message}"
    );

    let warned = webhook.review(&pod_review(
        "uid-warn",
        "registry.acme.internal/apps/orders:1.4.2",
        false,
    ));
    assert_eq!(warned["uid"], "uid-warn");
    assert_eq!(warned["allowed"], true);
    let warnings = strs(&warned["warnings"]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("[builtin/image-digest]")
            && warnings[0].contains("is not pinned by digest"),
        "{warnings:?}"
    );

    // The webhook has no side effects, so a dry run is decided exactly like a real request.
    let dry = webhook.review(&pod_review("uid-dry", "nginx:latest", true));
    assert_eq!(dry["uid"], "uid-dry");
    assert_eq!(dry["allowed"], false);
    assert_eq!(dry["status"], denied["status"]);

    // DELETE carries no object: allowed.
    let mut delete = pod_review("uid-delete", "nginx:latest", false);
    delete["request"]["operation"] = "DELETE".into();
    delete["request"]["object"] = Value::Null;
    assert_eq!(webhook.review(&delete)["allowed"], true);

    assert_eq!(
        webhook.decisions(),
        BTreeMap::from([
            ("allow".to_string(), 3),
            ("deny".to_string(), 2),
            ("error".to_string(), 0),
        ])
    );
    let metrics = webhook.request("GET", "/metrics", "").body;
    assert!(
        metrics
            .lines()
            .any(|l| l == "bulkhead_admission_duration_seconds_count 5"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE bulkhead_admission_duration_seconds histogram"));
}

#[test]
fn malformed_reviews_get_400_with_the_reason() {
    let webhook = Webhook::start(&[]);
    let not_json = webhook.request("POST", "/validate", "{not json");
    assert_eq!(not_json.status, 400);
    assert!(
        not_json
            .body
            .starts_with("malformed AdmissionReview: request body is not JSON"),
        "{}",
        not_json.body
    );

    let mut beta = pod_review("uid-beta", "nginx:1.27", false);
    beta["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let wrong_version = webhook.request("POST", "/", &beta.to_string());
    assert_eq!(wrong_version.status, 400);
    assert!(
        wrong_version.body.contains(
            "expected an admission.k8s.io/v1 AdmissionReview, got apiVersion \"admission.k8s.io/v1beta1\""
        ),
        "{}",
        wrong_version.body
    );

    let mut no_uid = pod_review("", "nginx:1.27", false);
    no_uid["request"]
        .as_object_mut()
        .expect("request")
        .remove("uid");
    let missing = webhook.request("POST", "/validate", &no_uid.to_string());
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.body,
        "malformed AdmissionReview: AdmissionReview request has no uid\n"
    );

    assert_eq!(webhook.request("GET", "/nowhere", "").status, 404);
    assert_eq!(webhook.request("GET", "/validate", "").status, 405);
    assert_eq!(
        webhook.decisions(),
        BTreeMap::from([
            ("allow".to_string(), 0),
            ("deny".to_string(), 0),
            ("error".to_string(), 3),
        ])
    );
}

#[test]
fn certificate_is_only_valid_for_its_hosts() {
    let webhook = Webhook::start(&["--host", "webhook.bulkhead.svc"]);
    let ok = webhook
        .request_to("webhook.bulkhead.svc", "GET", "/healthz", "")
        .expect("the certificate names webhook.bulkhead.svc");
    assert_eq!(ok.status, 200);
    let error = webhook
        .request_to("localhost", "GET", "/healthz", "")
        .expect_err("--host replaces the default names");
    assert!(error.to_string().contains("certificate"), "{error}");
}

/// A Gatekeeper template whose Rego multiplies two ranges of 100,000 numbers:
/// 10^10 steps, far more than any budget allows.
const LOOPING_POLICY: &str = r#"apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: k8sslow}
spec:
  crd: {spec: {names: {kind: K8sSlow}}}
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package k8sslow
      violation[{"msg": "slow"}] {
        n := input.parameters.n
        count([x | a := numbers.range(1, n)[_]; b := numbers.range(1, n)[_]; x := a * b]) > 0
      }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sSlow
metadata: {name: slow}
spec:
  parameters: {n: 100000}
"#;

#[test]
fn a_looping_policy_is_stopped_by_the_budget_and_the_failure_policy_answers() {
    let dir = TempDir::new("admission-loop");
    let policy = dir.path().join("slow.yaml");
    std::fs::write(&policy, LOOPING_POLICY).expect("write policy");
    let policy = policy.to_str().expect("utf-8 path");
    let common = ["--no-builtin", "--policy", policy, "--budget-ms", "50"];
    let review = pod_review("uid-loop", "nginx:1.27", false);

    let closed = Webhook::start(&common);
    let denied = closed.review(&review);
    assert_eq!(denied["uid"], "uid-loop");
    assert_eq!(denied["allowed"], false);
    let message = denied["status"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("bulkhead policy: evaluating")
            && message.contains("the time budget of 50ms ran out"),
        "{message}"
    );
    // The server is not stuck on the loop: the next review is decided too.
    assert_eq!(closed.review(&review)["allowed"], false);
    assert_eq!(closed.decisions()["error"], 2);

    let open = Webhook::start(&[&common[..], &["--fail-open"]].concat());
    let allowed = open.review(&review);
    assert_eq!(allowed["allowed"], true);
    let warnings = strs(&allowed["warnings"]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("the time budget of 50ms ran out")
            && warnings[0].ends_with("allowed (fail-open)"),
        "{warnings:?}"
    );
    assert_eq!(open.decisions()["error"], 1);
}

/// The YAML documents of `text`, as JSON.
fn yaml_documents(text: &str) -> Vec<Value> {
    let (docs, error) = yaml::load(text);
    assert!(error.is_none(), "{error:?}\n{text}");
    docs.iter().map(yaml::Node::to_json).collect()
}

#[test]
fn webhook_export_fills_the_ca_bundle_from_the_serving_certificate() {
    let service = "bulkhead-admission.bulkhead-system.svc";
    let webhook = Webhook::start(&["--host", service]);
    let dir = TempDir::new("webhook-export");
    let cert = dir.path().join("tls.crt");
    std::fs::write(&cert, &webhook.cert_pem).unwrap();
    let export = |extra: &[&str]| {
        bulkhead()
            .args([
                "policy",
                "export",
                "webhook",
                "--image",
                "registry.acme.internal/bulkhead:0.4.0",
            ])
            .arg("--cert")
            .arg(&cert)
            .args(extra)
            .output()
            .expect("run bulkhead")
    };
    let out = export(&["--policy-configmap", "bulkhead-policy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = yaml_documents(&text);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ValidatingWebhookConfiguration",
            "Service",
            "Deployment",
            "PodDisruptionBudget"
        ]
    );
    let hook = &docs[0]["webhooks"][0];
    let ca_bundle = hook["clientConfig"]["caBundle"].as_str().expect("caBundle");
    assert_eq!(base64_decode(ca_bundle), webhook.cert_pem);
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(
        strs(&hook["namespaceSelector"]["matchExpressions"][0]["values"]),
        ["kube-system", "bulkhead-system"]
    );
    assert!(
        text.contains("# failurePolicy Fail (fail closed)"),
        "{text}"
    );
    assert_eq!(docs[1]["metadata"]["namespace"], "bulkhead-system");

    // Another namespace is another Service name, which this certificate does not cover.
    let out = export(&["--namespace", "shop-admission"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not valid for bulkhead-admission.shop-admission.svc"),
        "{stderr}"
    );
    let out = export(&["--timeout", "45s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("whole seconds from 1s to 30s"));
}

/// An AdmissionReview v1 creating `object` (an Ingress) in its namespace.
fn ingress_review(uid: &str, object: &Value) -> Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "namespace": object["metadata"]["namespace"],
            "name": object["metadata"]["name"],
            "operation": "CREATE",
            "object": object,
        },
    })
}

#[test]
fn inventory_objects_deny_until_their_file_is_removed() {
    let library = testdata("gatekeeper-library/library/general/uniqueingresshost");
    let samples = library.join("samples/unique-ingress-host");
    let dir = TempDir::new("webhook-inventory");
    let inventory = dir.path().join("inventory");
    std::fs::create_dir_all(inventory.join("default")).unwrap();
    let existing = inventory.join("default/ingress-host-example.yaml");
    std::fs::copy(samples.join("example_inventory_disallowed.yaml"), &existing).unwrap();
    let (template, constraint) = (
        library.join("template.yaml"),
        samples.join("constraint.yaml"),
    );
    let webhook = Webhook::start(&[
        "--no-builtin",
        "--policy",
        template.to_str().unwrap(),
        "--policy",
        constraint.to_str().unwrap(),
        "--inventory",
        inventory.to_str().unwrap(),
        "--inventory-poll",
        "50ms",
    ]);
    let text = std::fs::read_to_string(samples.join("example_disallowed.yaml")).unwrap();
    let ingress = yaml_documents(&text).remove(0);
    let generation = || {
        let metrics = webhook.request("GET", "/metrics", "").body;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("bulkhead_admission_policy_generation "))
            .and_then(|n| n.parse::<u64>().ok())
            .expect("generation gauge")
    };
    assert_eq!(generation(), 1);
    let denied = webhook.review(&ingress_review("uid-1", &ingress));
    assert_eq!(denied["allowed"], false, "{denied}");
    let message = denied["status"]["message"].as_str().expect("message");
    assert!(
        message
            .contains("ingress host conflicts with an existing ingress <example-host.example.com>"),
        "{message}"
    );

    std::fs::remove_file(&existing).unwrap();
    assert_eq!(
        eventually_or(20, || (generation() == 2).then_some(())),
        Some(())
    );
    let admitted = webhook.review(&ingress_review("uid-2", &ingress));
    assert_eq!(admitted["allowed"], true, "{admitted}");

    // Back again: the next reload denies again.
    let stderr = webhook.stderr_lines();
    std::fs::copy(samples.join("example_inventory_disallowed.yaml"), &existing).unwrap();
    assert_eq!(
        eventually_or(20, || (generation() == 3).then_some(())),
        Some(())
    );
    assert_eq!(
        webhook.review(&ingress_review("uid-3", &ingress))["allowed"],
        false
    );

    // A file that does not parse: reported, and the inventory in force stays.
    std::fs::write(
        inventory.join("broken.yaml"),
        "kind: Ingress\nmetadata: [unclosed\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let refused = std::iter::from_fn(|| {
        stderr
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .ok()
    })
    .find(|l| l.starts_with("inventory not reloaded"))
    .expect("the failed reload is reported on stderr");
    assert!(refused.contains("broken.yaml"), "{refused}");
    assert_eq!(generation(), 3);
    assert_eq!(
        webhook.review(&ingress_review("uid-4", &ingress))["allowed"],
        false
    );
}

/// `--inventory-cluster`: the inventory is a live copy of the fake API
/// server's Ingresses and Namespaces, listed then watched. A conflicting
/// Ingress is denied; deleting it in the cluster (a `DELETED` event) admits
/// the review; after the watch expires (`ERROR` 410) the webhook lists again
/// and sees an Ingress added later; a watch the cluster refuses keeps the
/// inventory in force. Every request it sent is one `cluster rbac` grants.
#[test]
fn cluster_inventory_follows_the_watch_through_deletes_and_expiry() {
    use crate::fake_kube::{Auth, FakeKube};
    let library = testdata("gatekeeper-library/library/general/uniqueingresshost");
    let samples = library.join("samples/unique-ingress-host");
    let read = |name: &str| {
        yaml_documents(&std::fs::read_to_string(samples.join(name)).unwrap()).remove(0)
    };
    let existing = read("example_inventory_disallowed.yaml");
    let namespace = serde_json::json!({"kind": "Namespace", "apiVersion": "v1",
                                       "metadata": {"name": "default"}});
    let fake = FakeKube::start(&[existing.clone(), namespace], Auth::Token("w4tch".into()));
    let dir = TempDir::new("webhook-cluster-inventory");
    let kubeconfig = fake.kubeconfig(dir.path(), &[("prod", "default", "{token: w4tch}".into())]);
    let (template, constraint) = (
        library.join("template.yaml"),
        samples.join("constraint.yaml"),
    );
    let webhook = Webhook::start(&[
        "--no-builtin",
        "--policy",
        template.to_str().unwrap(),
        "--policy",
        constraint.to_str().unwrap(),
        "--inventory-cluster",
        "prod",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--inventory-kinds",
        "namespaces,ingresses",
    ]);
    let stderr = webhook.stderr_lines();
    let ingress = read("example_disallowed.yaml");
    let allowed = |uid: &str| webhook.review(&ingress_review(uid, &ingress))["allowed"] == true;
    let denied = webhook.review(&ingress_review("uid-1", &ingress));
    assert_eq!(denied["allowed"], false, "{denied}");
    let message = denied["status"]["message"].as_str().expect("message");
    assert!(
        message
            .contains("ingress host conflicts with an existing ingress <example-host.example.com>"),
        "{message}"
    );

    // Deleted in the cluster: the watch's DELETED event admits the review.
    fake.delete("Ingress", "default", "ingress-host-example");
    assert_eq!(
        eventually_or(20, || allowed("uid-2").then_some(())),
        Some(())
    );
    let watches: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.verb == "watch" && s.resource == "ingresses")
        .collect();
    assert!(
        watches
            .iter()
            .all(|w| w.query.contains("allowWatchBookmarks=true") && w.status == 200),
        "{watches:?}"
    );
    let lists = |fake: &FakeKube| {
        fake.seen()
            .iter()
            .filter(|s| s.verb == "list" && s.resource == "ingresses")
            .count()
    };
    assert_eq!(lists(&fake), 1, "one list, then the watch");

    // A change elsewhere (a Namespace), then a bookmark: a watch the server
    // closes resumes from the bookmark's version, without a list.
    fake.put(&serde_json::json!({"kind": "Namespace", "metadata": {"name": "shop"}}));
    let bookmarked = fake.bookmark_watches();
    let from_bookmark = format!("resourceVersion={bookmarked}&");
    let resumed = || {
        fake.seen().iter().any(|s| {
            s.verb == "watch" && s.resource == "ingresses" && s.query.contains(&from_bookmark)
        })
    };
    // The stream carries the bookmark before it ends.
    fake.close_watches();
    assert_eq!(eventually_or(20, || resumed().then_some(())), Some(()));
    assert_eq!(lists(&fake), 1, "resumed by watch, not listed again");

    // The history is compacted: the open watch ends with ERROR 410, the
    // webhook lists again and sees an Ingress added since.
    fake.expire_watches();
    let mut later = existing.clone();
    later["metadata"]["name"] = "ingress-host-later".into();
    fake.put(&later);
    assert_eq!(
        eventually_or(20, || (!allowed("uid-3")).then_some(())),
        Some(())
    );
    assert_eq!(
        eventually_or(20, || (lists(&fake) == 2).then_some(())),
        Some(()),
        "listed again after the 410"
    );

    // A watch the cluster refuses: reported, retried, the inventory in force stays.
    fake.forbid("watch", "ingresses");
    fake.expire_watches();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let failed = std::iter::from_fn(|| {
        stderr
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .ok()
    })
    .find(|l| l.starts_with("inventory watch failed"))
    .expect("the failed watch is reported on stderr");
    assert!(
        failed.contains("403 Forbidden") && failed.contains("cannot watch resource \"ingresses\""),
        "{failed}"
    );
    assert!(!allowed("uid-4"), "the inventory in force still denies");

    let rbac = json(&run_ok(bulkhead().args(["cluster", "rbac", "--json"])));
    let role = rbac["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|o| o["kind"] == "ClusterRole")
        .expect("a ClusterRole")
        .clone();
    for seen in fake.seen().iter().filter(|s| s.status != 403) {
        let granted = role["rules"].as_array().expect("rules").iter().any(|rule| {
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
        });
        assert!(granted, "not granted by `cluster rbac`: {seen:?}");
    }
}
