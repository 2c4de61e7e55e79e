//! The executor against a fake Kubernetes API server: no real API server can
//! run on these machines, so a small hyper server on loopback stands in. It
//! keeps one Service and one HTTPRoute, answers GET and merge-patch PATCH the
//! way the API server does (RFC 7386, `resourceVersion` conflicts), and
//! records every request so the test can check exactly what kube-rs sent.

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

/// Starts the fake on a free loopback port; returns its URL.
fn start(fake: Arc<Mutex<Fake>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
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
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
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
                                let (status, value) =
                                    handle(&fake, &method, &target, headers, &body);
                                let mut response =
                                    Response::new(Full::new(Bytes::from(value.to_string())));
                                *response.status_mut() = status;
                                response
                                    .headers_mut()
                                    .insert("content-type", "application/json".parse().unwrap());
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
    });
    format!("http://{addr}")
}

fn fixture() -> (Arc<Mutex<Fake>>, KubernetesExecutor) {
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
    let fake = Arc::new(Mutex::new(fake));
    let url = start(fake.clone());
    let executor = KubernetesExecutor::new(&url, "shop", Some("s3cret".into())).unwrap();
    (fake, executor)
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
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2);
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
