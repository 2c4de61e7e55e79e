//! Gateway API `HTTPRoute` input end to end: header routing and weighted backends.

use crate::support::{Gw, Upstream};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use std::collections::BTreeMap;
use std::sync::Arc;

async fn fleet() -> (Gw, [Upstream; 3]) {
    let (stable, canary, web) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
        Upstream::start("web").await,
    );
    let yaml = format!(
        "listeners: [{{address: 127.0.0.1:0}}]
services:
  orders-stable:
    endpoints: [{{address: {s}, labels: {{app: orders, version: stable}}}}]
    selector: {{app: orders, version: stable}}
  orders-canary:
    endpoints: [{{address: {c}, labels: {{app: orders, version: canary}}}}]
    selector: {{app: orders, version: canary}}
  web:
    endpoints: [{{address: {w}, labels: {{app: web}}}}]
    selector: {{app: web}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: orders
spec:
  parentRefs:
    - name: bulkhead
  rules:
    - matches:
        - path: {{type: PathPrefix, value: /orders}}
          headers:
            - {{name: x-canary, value: always}}
      backendRefs:
        - {{name: orders-canary, port: 8080}}
    - matches:
        - path: {{type: PathPrefix, value: /orders}}
      backendRefs:
        - {{name: orders-stable, port: 8080, weight: 80}}
        - {{name: orders-canary, port: 8080, weight: 20}}
    - matches:
        - path: {{type: Exact, value: /}}
          method: GET
      backendRefs:
        - {{name: web, port: 80}}
",
        s = stable.addr,
        c = canary.addr,
        w = web.addr
    );
    (Gw::start(&yaml).await, [stable, canary, web])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_header_matches_route_before_weighted_backends() {
    let (gw, _upstreams) = fleet().await;
    for _ in 0..10 {
        let req = Request::get(format!("http://{}/orders/1", gw.proxy()))
            .header("x-canary", "always")
            .body(Full::<Bytes>::default())
            .unwrap();
        assert_eq!(gw.send(req).await.2, "canary");
    }
    assert_eq!(gw.get("/").await, (StatusCode::OK, "web".into()));
    let req = Request::post(format!("http://{}/", gw.proxy()))
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(
        gw.send(req).await.0,
        StatusCode::NOT_FOUND,
        "only GET / is routed"
    );
    assert_eq!(gw.get("/ordersx").await.0, StatusCode::NOT_FOUND);
}

/// 2,000 concurrent requests over an 80/20 split: the canary's share must be
/// 20% within ±3 percentage points (the split is exact per cycle of 100 picks,
/// so only requests cut off mid-cycle can move it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_backends_split_traffic_within_tolerance() {
    const REQUESTS: usize = 2_000;
    const TASKS: usize = 8;
    let (gw, _upstreams) = fleet().await;
    let gw = Arc::new(gw);
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let mut counts = BTreeMap::<String, usize>::new();
            for _ in 0..REQUESTS / TASKS {
                let (status, body) = gw.get("/orders").await;
                assert_eq!(status, StatusCode::OK);
                *counts.entry(body).or_default() += 1;
            }
            counts
        }));
    }
    let mut total = BTreeMap::<String, usize>::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    assert_eq!(total.values().sum::<usize>(), REQUESTS);
    let canary = total.get("canary").copied().unwrap_or(0) as f64 / REQUESTS as f64;
    assert!(
        (canary - 0.20).abs() <= 0.03,
        "canary share {canary}: {total:?}"
    );

    // The rule's backends are one service, `orders.1`: its weights change like any canary.
    let answer = gw
        .admin_json(
            "PUT",
            "/services/orders.1/weights",
            r#"[{"selector":{"app":"orders","version":"stable"},"weight":0},{"selector":{"app":"orders","version":"canary"},"weight":1}]"#,
        )
        .await;
    assert_eq!(answer["generation"], 2);
    for _ in 0..10 {
        assert_eq!(gw.get("/orders").await.1, "canary");
    }
}
