//! The gateway against real upstream HTTP servers on loopback: routing, the
//! blue -> green switch through the admin API, switching under load, admin auth.

use bytes::Bytes;
use gateway::{Gateway, Options};
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

mod limits;
mod routing;
mod support;
mod telemetry;
mod upstream;
mod wire;

const TOKEN: &str = "s3cret-token";

/// An upstream that answers every request with its name and echoes the `traceparent` it saw.
async fn upstream(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let mut response = Response::new(Full::new(Bytes::from(name)));
                        if let Some(tp) = req.headers().get("traceparent") {
                            response
                                .headers_mut()
                                .insert("x-seen-traceparent", tp.clone());
                        }
                        Ok::<_, Infallible>(response)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Fleet {
    gateway: Gateway,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Fleet {
    /// orders (blue and green, selector blue), catalog (one endpoint), web (catch-all).
    async fn start() -> Fleet {
        let (blue, green, catalog, web) = (
            upstream("blue").await,
            upstream("green").await,
            upstream("catalog").await,
            upstream("web").await,
        );
        let text = format!(
            "listeners:
  - address: 127.0.0.1:0
routes:
  - prefix: /
    service: web
  - prefix: /orders
    service: orders
  - path: /orders/catalog
    service: catalog
  - prefix: /catalog
    service: catalog
  - host: admin.example.com
    prefix: /
    service: catalog
  - prefix: /orders
    headers: {{x-route-to: catalog}}
    service: catalog
  - prefix: /orders
    methods: [DELETE]
    service: web
services:
  orders:
    endpoints:
      - address: {blue}
        labels: {{app: orders, version: blue}}
      - address: {green}
        labels: {{app: orders, version: green}}
    selector: {{app: orders, version: blue}}
  catalog:
    endpoints: [{{address: {catalog}, labels: {{app: catalog}}}}]
    selector: {{app: catalog}}
  web:
    endpoints: [{{address: {web}, labels: {{app: web}}}}]
    selector: {{app: web}}
"
        );
        let config = gateway::parse("gateway.yaml", &text).unwrap();
        let options = Options {
            admin: Some("127.0.0.1:0".parse().unwrap()),
            admin_token: Some(TOKEN.to_string()),
            ..Options::default()
        };
        let gateway = Gateway::bind(config, options).await.unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        Fleet { gateway, client }
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, hyper::HeaderMap, String) {
        let response = self.client.request(req).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    async fn get(&self, host: &str, path: &str) -> (StatusCode, String) {
        let addr = self.gateway.proxy_addrs()[0];
        let req = Request::get(format!("http://{addr}{path}"))
            .header("host", host)
            .body(Full::default())
            .unwrap();
        let (status, _, body) = self.send(req).await;
        (status, body)
    }

    async fn admin(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let addr = self.gateway.admin_addr().unwrap();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let (status, _, body) = self
            .send(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
            .await;
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
        )
    }

    async fn select(&self, service: &str, version: &str) -> u64 {
        let body = format!(r#"{{"app": "{service}", "version": "{version}"}}"#);
        let path = format!("/services/{service}/selector");
        let (status, json) = self.admin(Method::PUT, &path, Some(TOKEN), &body).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json["generation"].as_u64().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_the_documented_precedence() {
    let fleet = Fleet::start().await;
    for (host, path, want) in [
        ("gw", "/", "web"),
        ("gw", "/ordersx", "web"),
        ("gw", "/orders", "blue"),
        ("gw", "/orders/1?x=1", "blue"),
        ("gw", "/orders/catalog", "catalog"),
        ("gw", "/catalog/items", "catalog"),
        ("admin.example.com", "/anything", "catalog"),
        // A longer wildcard prefix beats a host-specific catch-all.
        ("admin.example.com", "/orders/2", "blue"),
    ] {
        assert_eq!(
            fleet.get(host, path).await,
            (StatusCode::OK, want.to_string()),
            "{host} {path}"
        );
    }
    let addr = fleet.gateway.proxy_addrs()[0];
    for (method, header, want) in [
        (Method::GET, Some("catalog"), "catalog"),
        (Method::GET, Some("elsewhere"), "blue"),
        (Method::DELETE, None, "web"),
        (Method::DELETE, Some("catalog"), "catalog"),
    ] {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}/orders/5"));
        if let Some(h) = header {
            req = req.header("x-route-to", h);
        }
        let (status, _, body) = fleet.send(req.body(Full::default()).unwrap()).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, want),
            "{method} {header:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_is_created_at_the_edge_and_passed_upstream() {
    let fleet = Fleet::start().await;
    let addr = fleet.gateway.proxy_addrs()[0];
    let req = Request::get(format!("http://{addr}/orders"))
        .body(Full::default())
        .unwrap();
    let (_, headers, _) = fleet.send(req).await;
    let trace_id = headers["x-trace-id"].to_str().unwrap().to_string();
    let seen = headers["x-seen-traceparent"].to_str().unwrap().to_string();
    assert_eq!(trace_id.len(), 32);
    assert!(
        seen.starts_with(&format!("00-{trace_id}-")) && seen.len() == 55,
        "{seen}"
    );

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = Request::get(format!("http://{addr}/orders"))
        .header("traceparent", incoming)
        .body(Full::default())
        .unwrap();
    let (_, headers, _) = fleet.send(req).await;
    assert_eq!(headers["x-trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let seen = headers["x-seen-traceparent"].to_str().unwrap();
    assert!(
        seen.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && seen != incoming,
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_bearer_token() {
    let fleet = Fleet::start().await;
    for token in [None, Some("wrong"), Some("s3cret-token2"), Some("")] {
        let (status, _) = fleet.admin(Method::GET, "/state", token, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        let (status, _) = fleet
            .admin(
                Method::PUT,
                "/services/orders/selector",
                token,
                r#"{"version":"green"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        fleet.get("gw", "/orders").await.1,
        "blue",
        "a refused change changes nothing"
    );
    let (status, state) = fleet.admin(Method::GET, "/state", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state["generation"], 1);
    let (status, config) = fleet.admin(Method::GET, "/config", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        config["config"]["services"]["orders"].is_object(),
        "{config}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_a_public_address_without_a_token() {
    let config = gateway::parse("gw.yaml", "listeners: []\nroutes: []\nservices: {}\n").unwrap();
    let options = Options {
        admin: Some("0.0.0.0:0".parse().unwrap()),
        ..Options::default()
    };
    let err = Gateway::bind(config, options).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "refusing admin API on non-loopback 0.0.0.0:0 without a token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switch_serves_the_new_pool_as_soon_as_the_call_returns() {
    let fleet = Fleet::start().await;
    assert_eq!(fleet.get("gw", "/orders").await.1, "blue");
    assert_eq!(fleet.select("orders", "green").await, 2);
    for _ in 0..20 {
        assert_eq!(
            fleet.get("gw", "/orders").await,
            (StatusCode::OK, "green".into())
        );
    }
    assert_eq!(fleet.get("gw", "/catalog").await.1, "catalog");
    assert_eq!(fleet.select("orders", "blue").await, 3);
    assert_eq!(fleet.get("gw", "/orders").await.1, "blue");

    // A selector matching nothing is refused, and the generation stays.
    let (status, _) = fleet
        .admin(
            Method::PUT,
            "/services/orders/selector",
            Some(TOKEN),
            r#"{"version":"red"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, state) = fleet.admin(Method::GET, "/state", Some(TOKEN), "").await;
    assert_eq!(state["generation"], 3);
}

/// The switch acceptance test: bounded load while orders' selector flips
/// blue <-> green 1,000 times. No request fails; a request that overlapped no
/// switch gets exactly the version live then, and one that overlapped switches a
/// version live at some moment during it; catalog sees no change at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_back_and_forth_under_load_fails_no_request() {
    const SWITCHES: u64 = 1_000;
    const MAX_REQUESTS_PER_LOADER: usize = 50_000;
    let fleet = Arc::new(Fleet::start().await);
    // Switch k (1-based) starts when `started` becomes k and is live when `done` becomes k;
    // after k switches the version is green for odd k, blue for even k.
    let started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    // Requests that overlapped no switch: checked against exactly one version.
    let exact = Arc::new(AtomicU64::new(0));
    let version_after = |k: u64| if k % 2 == 1 { "green" } else { "blue" };
    let (_, before) = fleet.admin(Method::GET, "/state", Some(TOKEN), "").await;
    let mut loaders = Vec::new();
    for path in ["/orders", "/orders/9", "/catalog", "/"] {
        let (fleet, started, done, finished, exact) = (
            fleet.clone(),
            started.clone(),
            done.clone(),
            finished.clone(),
            exact.clone(),
        );
        loaders.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeMap::<String, usize>::new();
            let mut n = 0;
            // At least a few requests, then until the switching ends, never unbounded.
            while (n < 10 || !finished.load(Ordering::Acquire)) && n < MAX_REQUESTS_PER_LOADER {
                let first = done.load(Ordering::SeqCst);
                let (status, body) = fleet.get("gw", path).await;
                let last = started.load(Ordering::SeqCst);
                assert_eq!(status, StatusCode::OK, "{path} request {n}: {body}");
                if path.starts_with("/orders") {
                    let live: Vec<&str> = (first..=last).map(version_after).collect();
                    assert!(
                        live.contains(&body.as_str()),
                        "{path} answered {body}, live during the request: {live:?}"
                    );
                    if first == last {
                        exact.fetch_add(1, Ordering::SeqCst);
                    }
                }
                *seen.entry(body).or_default() += 1;
                n += 1;
            }
            (path, n, seen)
        }));
    }
    for k in 1..=SWITCHES {
        started.store(k, Ordering::SeqCst);
        assert_eq!(fleet.select("orders", version_after(k)).await, k + 1);
        done.store(k, Ordering::SeqCst);
        if k % 100 == 0 {
            // Hold still until a few requests ran entirely between two switches.
            let target = exact.load(Ordering::SeqCst) + 4;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while exact.load(Ordering::SeqCst) < target {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no request between switches"
                );
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }
    finished.store(true, Ordering::Release);
    let mut orders_requests = 0;
    for loader in loaders {
        let (path, n, seen) = loader.await.unwrap();
        assert!(n >= 10, "{path}: {n} requests");
        match path {
            "/catalog" => assert_eq!(seen.keys().collect::<Vec<_>>(), ["catalog"]),
            "/" => assert_eq!(seen.keys().collect::<Vec<_>>(), ["web"]),
            _ => orders_requests += n,
        }
    }
    assert!(orders_requests >= 20);
    assert!(exact.load(Ordering::SeqCst) >= 40);
    let (_, after) = fleet.admin(Method::GET, "/state", Some(TOKEN), "").await;
    assert_eq!(after["generation"], SWITCHES + 1);
    for untouched in ["catalog", "web"] {
        assert_eq!(
            before["services"][untouched], after["services"][untouched],
            "{untouched} changed"
        );
    }
    assert_ne!(before["services"]["orders"], serde_json::Value::Null);
    assert_eq!(
        fleet.get("gw", "/orders").await.1,
        "blue",
        "an even number of switches ends on blue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_and_drain_through_the_admin_api() {
    let fleet = Fleet::start().await;
    let weights = r#"[{"selector":{"version":"blue"},"weight":1},{"selector":{"version":"green"},"weight":1}]"#;
    let (status, json) = fleet
        .admin(
            Method::PUT,
            "/services/orders/weights",
            Some(TOKEN),
            weights,
        )
        .await;
    assert_eq!(
        (status, json["generation"].as_u64()),
        (StatusCode::OK, Some(2))
    );
    let mut green = 0;
    for _ in 0..100 {
        if fleet.get("gw", "/orders").await.1 == "green" {
            green += 1;
        }
    }
    // Sequential requests walk the weights exactly: one each per cycle of two.
    assert_eq!(green, 50);

    let (_, state) = fleet.admin(Method::GET, "/state", Some(TOKEN), "").await;
    let green_addr = state["services"]["orders"][1]["endpoints"][0]
        .as_str()
        .unwrap()
        .to_string();
    let body = format!(r#"{{"address":"{green_addr}"}}"#);
    let (status, json) = fleet
        .admin(Method::POST, "/services/orders/drain", Some(TOKEN), &body)
        .await;
    assert_eq!(
        (status, json["generation"].as_u64()),
        (StatusCode::OK, Some(3))
    );
    for _ in 0..10 {
        assert_eq!(fleet.get("gw", "/orders").await.1, "blue");
    }
    let (status, _) = fleet
        .admin(Method::POST, "/services/orders/undrain", Some(TOKEN), &body)
        .await;
    assert_eq!(status, StatusCode::OK);
    let answers: Vec<String> = sequential_answers(&fleet, 4).await;
    assert!(answers.iter().any(|a| a == "green"), "{answers:?}");
}

async fn sequential_answers(fleet: &Fleet, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(fleet.get("gw", "/orders").await.1);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_and_no_live_endpoint_is_503() {
    let config = gateway::parse(
        "gw.yaml",
        "listeners: [{address: 127.0.0.1:0}]
routes: [{prefix: /api, service: api}]
services:
  api: {endpoints: [{address: 127.0.0.1:9, labels: {v: a}}], selector: {v: a}}
",
    )
    .unwrap();
    let options = Options {
        admin: Some("127.0.0.1:0".parse().unwrap()),
        admin_token: Some(TOKEN.into()),
        ..Options::default()
    };
    let fleet = Fleet {
        gateway: Gateway::bind(config, options).await.unwrap(),
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    assert_eq!(fleet.get("gw", "/other").await.0, StatusCode::NOT_FOUND);
    let (status, _) = fleet
        .admin(
            Method::POST,
            "/services/api/drain",
            Some(TOKEN),
            r#"{"address":"127.0.0.1:9"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        fleet.get("gw", "/api").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
