//! The executor against a fake Kubernetes API server: no real API server can
//! run on these machines, so a small hyper server on loopback stands in. It
//! keeps one Service and one HTTPRoute, answers GET and merge-patch PATCH the
//! way the API server does (RFC 7386, `resourceVersion` conflicts: 409 with
//! a `Status`, and a writer racing the executor on demand), and records every
//! request so the test can check exactly what kube-rs sent.

use super::*;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    method: String,
    target: String,
    content_type: String,
    authorization: String,
    body: Value,
}

#[derive(Debug, Default)]
struct Fake {
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    /// The next PATCHes of the route that another writer beats: it changes
    /// the route first, so the patch's resourceVersion is stale.
    conflicts: usize,
}

const SERVICE_PATH: &str = "/api/v1/namespaces/shop/services/orders";
const ROUTE_PATH: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/orders";

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

fn handle(
    fake: &Mutex<Fake>,
    method: &str,
    target: &str,
    headers: (String, String),
    body: &[u8],
) -> (StatusCode, Value) {
    let mut fake = fake.lock().unwrap();
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    fake.requests.push(Recorded {
        method: method.to_string(),
        target: target.to_string(),
        content_type: headers.0,
        authorization: headers.1,
        body: body.clone(),
    });
    let path = target.split('?').next().unwrap_or_default();
    if method == "GET" && path == "/api/v1/namespaces/shop/services" {
        let prefix = format!("{path}/");
        let items: Vec<Value> = fake
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect();
        return (
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {"resourceVersion": "9"}, "items": items}),
        );
    }
    if method == "PATCH" && path == ROUTE_PATH && fake.conflicts > 0 {
        fake.conflicts -= 1;
        let route = fake.objects.get_mut(path).expect("the route");
        let have = route["metadata"]["resourceVersion"].as_str().unwrap_or("0");
        let next = have.parse::<u64>().unwrap_or(0) + 1;
        route["metadata"]["resourceVersion"] = json!(next.to_string());
    }
    let Some(object) = fake.objects.get_mut(path) else {
        return (
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{path} not found")}),
        );
    };
    match method {
        "GET" => (StatusCode::OK, object.clone()),
        "PATCH" => {
            let have = object["metadata"]["resourceVersion"].clone();
            let want = &body["metadata"]["resourceVersion"];
            if !want.is_null() && *want != have {
                return (
                    StatusCode::CONFLICT,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
                );
            }
            merge(object, &body);
            let next = have.as_str().unwrap_or("0").parse::<u64>().unwrap_or(0) + 1;
            object["metadata"]["resourceVersion"] = json!(next.to_string());
            (StatusCode::OK, object.clone())
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, Value::Null),
    }
}

/// Serves one connection of the fake.
async fn serve_connection<IO>(io: IO, fake: Arc<Mutex<Fake>>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let fake = fake.clone();
        async move {
            let method = req.method().to_string();
            let target = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let header = |name| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let headers = (header("content-type"), header("authorization"));
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let (status, value) = handle(&fake, &method, &target, headers, &body);
            let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let io = hyper_util::rt::TokioIo::new(io);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// Starts the fake on a free loopback port, over TLS when `tls` is given;
/// returns its URL.
fn start_with(fake: Arc<Mutex<Fake>>, tls: Option<Arc<rustls::ServerConfig>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let fake = fake.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(stream, fake).await;
                            }
                        }
                        None => serve_connection(stream, fake).await,
                    }
                });
            }
        });
    });
    format!("{scheme}://{addr}")
}

fn start(fake: Arc<Mutex<Fake>>) -> String {
    start_with(fake, None)
}

fn objects() -> Fake {
    let mut fake = Fake::default();
    fake.objects.insert(
        SERVICE_PATH.to_string(),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "orders", "namespace": "shop", "resourceVersion": "7"},
               "spec": {"selector": {"app": "orders", "version": "blue"}, "ports": [{"port": 8080}]}}),
    );
    fake.objects.insert(
        ROUTE_PATH.to_string(),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "orders", "namespace": "shop", "resourceVersion": "3"},
               "spec": {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/orders"}}],
                                   "backendRefs": [{"name": "orders-blue", "port": 8080, "weight": 100},
                                                   {"name": "orders-green", "port": 8080, "weight": 0}]}]}}),
    );
    fake
}

fn fixture() -> (Arc<Mutex<Fake>>, KubernetesExecutor) {
    let fake = Arc::new(Mutex::new(objects()));
    let url = start(fake.clone());
    let executor = KubernetesExecutor::new(&url, "shop", Some("s3cret".into())).unwrap();
    (fake, executor)
}

/// A self-signed certificate for 127.0.0.1: the server's configuration and the PEM to trust.
fn certificate() -> (Arc<rustls::ServerConfig>, String) {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    (Arc::new(config), cert.pem())
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A kubeconfig with two contexts on one HTTPS cluster: `token` (a bearer
/// token) and `plugin` (an exec credential plugin, `plugin.sh` beside it).
fn kubeconfig(dir: &std::path::Path, server: &str, ca_pem: &str) -> std::path::PathBuf {
    let plugin = dir.join("plugin.sh");
    std::fs::write(
        &plugin,
        "#!/bin/sh\nprintf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"%s\"}}' \"$PLUGIN_TOKEN\"\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&plugin)
        .status()
        .unwrap();
    let path = dir.join("config");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
current-context: token
clusters:
  - name: lab
    cluster:
      server: {server}
      certificate-authority-data: {ca}
contexts:
  - name: token
    context: {{cluster: lab, user: deployer, namespace: shop}}
  - name: plugin
    context: {{cluster: lab, user: sso, namespace: shop}}
users:
  - name: deployer
    user: {{token: s3cret}}
  - name: sso
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1
        command: ./plugin.sh
        env: [{{name: PLUGIN_TOKEN, value: fr0m-plugin}}]
",
            ca = base64(ca_pem.as_bytes())
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_kubeconfig_context_reaches_the_api_server_over_tls_with_its_credentials() {
    let dir = test_support::TempDir::new("kubeconfig");
    let fake = Arc::new(Mutex::new(objects()));
    let (tls, ca_pem) = certificate();
    let url = start_with(fake.clone(), Some(tls));
    let config = kubeconfig(dir.path(), &url, &ca_pem);
    for (context, authorization) in [
        (None, "Bearer s3cret"),
        (Some("plugin"), "Bearer fr0m-plugin"),
    ] {
        let mut executor = KubernetesExecutor::from_kubeconfig(&config, context, None)
            .unwrap_or_else(|e| panic!("{context:?}: {e}"));
        executor
            .set_selector("orders", &labels(&[("version", "green")]))
            .unwrap();
        let routing = executor.routing().unwrap();
        assert_eq!(routing["orders"], r#"{"app":"orders","version":"green"}"#);
        let fake = fake.lock().unwrap();
        let last = fake.requests.last().unwrap();
        assert_eq!(last.authorization, authorization, "{context:?}");
    }
    // A server whose certificate the kubeconfig's CA did not sign is refused.
    let (other, _) = certificate();
    let impostor = start_with(Arc::new(Mutex::new(objects())), Some(other));
    let config = kubeconfig(dir.path(), &impostor, &ca_pem);
    let mut executor = KubernetesExecutor::from_kubeconfig(&config, None, None).unwrap();
    let err = executor
        .set_selector("orders", &labels(&[("version", "green")]))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("patching Service shop/orders: "), "{err}");
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn selector_switch_is_a_merge_patch_of_the_service() {
    let (fake, mut executor) = fixture();
    executor
        .set_selector("orders", &labels(&[("version", "green")]))
        .unwrap();
    // Again, as after a crash: the same patch, the same result.
    executor
        .set_selector("orders", &labels(&[("version", "green")]))
        .unwrap();
    let routing = executor.routing().unwrap();
    assert_eq!(routing["orders"], r#"{"app":"orders","version":"green"}"#);

    let fake = fake.lock().unwrap();
    let patches: Vec<&Recorded> = fake
        .requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.target.starts_with(SERVICE_PATH))
        .collect();
    assert_eq!(patches.len(), 2);
    // The route named after the service follows: every weight on the
    // selected pool, patched once (the second time it already is).
    let route_patches: Vec<&Recorded> = fake
        .requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.target.starts_with(ROUTE_PATH))
        .collect();
    assert_eq!(route_patches.len(), 1);
    assert_eq!(
        route_patches[0].body["spec"]["rules"][0]["backendRefs"],
        json!([{"name": "orders-blue", "port": 8080, "weight": 0},
               {"name": "orders-green", "port": 8080, "weight": 100}])
    );
    assert!(
        patches[0].target.starts_with(&format!("{SERVICE_PATH}?")),
        "{}",
        patches[0].target
    );
    assert!(
        patches[0].target.contains("fieldManager=bulkhead-rollout"),
        "{}",
        patches[0].target
    );
    assert_eq!(patches[0].content_type, "application/merge-patch+json");
    assert_eq!(patches[0].authorization, "Bearer s3cret");
    assert_eq!(
        patches[0].body,
        json!({"spec": {"selector": {"version": "green"}}})
    );
}

#[test]
fn weights_patch_the_http_route_backends_under_its_resource_version() {
    let (fake, mut executor) = fixture();
    let pools = [
        WeightedPool {
            selector: labels(&[("version", "blue")]),
            weight: 90,
        },
        WeightedPool {
            selector: labels(&[("version", "green")]),
            weight: 10,
        },
    ];
    executor.set_weights("orders", &pools).unwrap();
    let fake_now = fake.lock().unwrap();
    let patch = fake_now
        .requests
        .iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert!(patch.target.starts_with(ROUTE_PATH), "{}", patch.target);
    assert_eq!(patch.body["metadata"]["resourceVersion"], "3");
    let route = &fake_now.objects[ROUTE_PATH];
    let weights: Vec<(String, u64)> = route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weights,
        [
            ("orders-blue".to_string(), 90),
            ("orders-green".to_string(), 10)
        ]
    );
    // The match the route had is kept.
    assert_eq!(
        route["spec"]["rules"][0]["matches"][0]["path"]["value"],
        "/orders"
    );
    drop(fake_now);

    let missing = [WeightedPool {
        selector: labels(&[("version", "canary")]),
        weight: 5,
    }];
    let err = executor.set_weights("orders", &missing).unwrap_err();
    assert_eq!(
        err.to_string(),
        "HTTPRoute shop/orders has no backendRef named orders-canary"
    );
}

#[test]
fn api_errors_name_the_object() {
    let (_fake, mut executor) = fixture();
    let err = executor
        .set_selector("payments", &labels(&[("version", "green")]))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("patching Service shop/payments: "),
        "{text}"
    );
    assert!(text.contains("not found"), "{text}");
    assert!(KubernetesExecutor::new("https://10.0.0.1", "shop", None).is_err());
}

/// A patch that loses a race (409 Conflict) is retried on the route read
/// again, up to [`CONFLICT_ATTEMPTS`] attempts; then the error says so.
#[test]
fn a_conflict_is_read_again_and_retried_a_bounded_number_of_times() {
    let pools = [
        WeightedPool {
            selector: labels(&[("version", "blue")]),
            weight: 50,
        },
        WeightedPool {
            selector: labels(&[("version", "green")]),
            weight: 50,
        },
    ];
    for (conflicts, outcome) in [
        (0, Ok(1)),
        (2, Ok(3)),
        (CONFLICT_ATTEMPTS - 1, Ok(CONFLICT_ATTEMPTS)),
        (
            CONFLICT_ATTEMPTS,
            Err("patching HTTPRoute shop/orders: still 409 Conflict after 5 attempts, each on the route read again (another writer keeps changing it)".to_string()),
        ),
    ] {
        let (fake, mut executor) = fixture();
        fake.lock().unwrap().conflicts = conflicts;
        let result = executor.set_weights("orders", &pools);
        let fake = fake.lock().unwrap();
        let patches = fake
            .requests
            .iter()
            .filter(|r| r.method == "PATCH")
            .count();
        let versions: Vec<&Value> = fake
            .requests
            .iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| &r.body["metadata"]["resourceVersion"])
            .collect();
        // Each attempt carries the version it read: 3, then the racer's 4, 5, ...
        let expected: Vec<Value> = (0..patches).map(|i| json!((3 + i).to_string())).collect();
        assert_eq!(versions, expected.iter().collect::<Vec<_>>(), "{conflicts} conflicts");
        match outcome {
            Ok(n) => {
                result.unwrap_or_else(|e| panic!("{conflicts} conflicts: {e}"));
                assert_eq!(patches, n, "{conflicts} conflicts");
                assert_eq!(
                    fake.objects[ROUTE_PATH]["spec"]["rules"][0]["backendRefs"][1]["weight"],
                    50
                );
            }
            Err(start) => {
                let err = result.unwrap_err().to_string();
                assert!(err.starts_with(&start), "{err}");
                assert!(err.contains("409"), "{err}");
                assert_eq!(patches, CONFLICT_ATTEMPTS);
                assert_eq!(
                    fake.objects[ROUTE_PATH]["spec"]["rules"][0]["backendRefs"][1]["weight"],
                    0
                );
            }
        }
    }
}

/// A Deployment's rollout status, read as `kubectl rollout status` reads it.
#[test]
fn deployment_progress_reads_the_status_as_kubectl_does() {
    let deployment = |generation: i64, status: Value| -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "orders", "generation": generation},
            "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    };
    let progressing =
        |reason: &str| json!([{"type": "Progressing", "status": "True", "reason": reason}]);
    let cases = [
        (
            deployment(
                5,
                json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
            ),
            Progress::Waiting("waiting for the controller to observe the new spec".into()),
        ),
        (
            deployment(
                5,
                json!({"observedGeneration": 5, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3, "conditions": progressing("ReplicaSetUpdated")}),
            ),
            Progress::Waiting("1 of 3 new replicas updated".into()),
        ),
        (
            deployment(
                5,
                json!({"observedGeneration": 5, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
            ),
            Progress::Waiting("1 old replicas are pending termination".into()),
        ),
        (
            deployment(
                5,
                json!({"observedGeneration": 5, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
            ),
            Progress::Waiting("2 of 3 updated replicas available".into()),
        ),
        (
            deployment(
                5,
                json!({"observedGeneration": 5, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "conditions": progressing("NewReplicaSetAvailable")}),
            ),
            Progress::Done,
        ),
        (
            deployment(
                5,
                json!({"observedGeneration": 5, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 0,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                "message": "ReplicaSet \"orders-7c9\" has timed out progressing."}]}),
            ),
            Progress::Failed(
                "ProgressDeadlineExceeded: ReplicaSet \"orders-7c9\" has timed out progressing."
                    .into(),
            ),
        ),
    ];
    for (deployment, want) in cases {
        assert_eq!(
            deployment_progress(&deployment),
            want,
            "{:?}",
            deployment.status
        );
    }
}
