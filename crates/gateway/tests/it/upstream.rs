//! Upstream behaviour against real loopback servers: pooled connections, timeouts,
//! retries, passive ejection, active health checks, forwarding headers.

use crate::support::{Gw, Reply, Upstream, dead_address, eventually, raw};
use hyper::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn one_service(endpoints: &str, extra: &str) -> String {
    format!(
        "listeners: [{{address: 127.0.0.1:0}}]
routes: [{{prefix: /, service: app}}]
services:
  app:
    endpoints: {endpoints}
    selector: {{app: x}}
{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_reused() {
    let up = Upstream::start("a").await;
    let gw = Gw::start(&one_service(
        &format!("[{{address: {}, labels: {{app: x}}}}]", up.addr),
        "",
    ))
    .await;
    for _ in 0..50 {
        assert_eq!(gw.get("/x").await, (StatusCode::OK, "a".into()));
    }
    let connections = up.connections.load(Ordering::SeqCst);
    // Sequential requests ride one pooled connection; a second may be opened when a
    // request races the first connection's return to the pool, never one per request.
    assert!(
        (1..=2).contains(&connections),
        "{connections} connections for 50 requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_gets_504_and_counts_a_timeout() {
    let up = Upstream::with("slow", |_| Reply::After(Duration::from_secs(3))).await;
    let gw = Gw::start(&one_service(
        &format!(
            "[{{address: {}, labels: {{app: x, version: v1}}}}]",
            up.addr
        ),
        "    request_timeout: 200ms\n",
    ))
    .await;
    let (status, body) = gw.get("/x").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        body,
        format!("upstream {} sent no response within 200ms\n", up.addr)
    );
    assert_eq!(
        gw.metric("bulkhead_gateway_upstream_errors_total{service=\"app\",kind=\"timeout\"}")
            .await,
        1.0
    );
    assert_eq!(
        gw.metric("bulkhead_gateway_requests_total{service=\"app\",version=\"v1\",code=\"5xx\"}")
            .await,
        1.0,
        "the endpoint was chosen: the 504 counts under its version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_on_another_endpoint_when_connecting_fails() {
    let live = Upstream::start("live").await;
    let dead = dead_address();
    let gw = Gw::start(&one_service(
        &format!(
            "[{{address: {dead}, labels: {{app: x}}}}, {{address: {}, labels: {{app: x, version: v2}}}}]",
            live.addr
        ),
        "    ejection: off\n",
    ))
    .await;
    // Round-robin sends every GET to the dead endpoint first; each is retried on the live one.
    for _ in 0..6 {
        assert_eq!(gw.get("/x").await, (StatusCode::OK, "live".into()));
    }
    let connect_errors = "bulkhead_gateway_upstream_errors_total{service=\"app\",kind=\"connect\"}";
    assert_eq!(gw.metric(connect_errors).await, 6.0);
    assert_eq!(
        gw.metric("bulkhead_gateway_requests_total{service=\"app\",version=\"v2\",code=\"2xx\"}")
            .await,
        6.0
    );

    // A POST with a body is not idempotent: the one that lands on the dead endpoint fails.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let req = hyper::Request::post(format!("http://{}/x", gw.proxy()))
            .body(http_body_util::Full::new(bytes::Bytes::from("payload")))
            .unwrap();
        let (status, _, body) = gw.send(req).await;
        if status == StatusCode::BAD_GATEWAY {
            assert!(
                body.starts_with(&format!("upstream {dead} failed (connect): ")),
                "{body}"
            );
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_GATEWAY]);
    assert_eq!(gw.metric(connect_errors).await, 7.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_left_answers_502_503_with_a_clear_body() {
    let dead = dead_address();
    let gw = Gw::start(&one_service(
        &format!("[{{address: {dead}, labels: {{app: x}}}}]"),
        "    ejection: {consecutive_failures: 1, duration: 1m}\n",
    ))
    .await;
    let (status, body) = gw.get("/x").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("(connect)"), "{body}");
    // One failure ejected the only endpoint.
    assert_eq!(
        gw.get("/x").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "service app: every live endpoint is ejected or failing health checks\n".into()
        )
    );
    let state = gw.admin_json("GET", "/state", "").await;
    assert_eq!(state["down"]["app"][dead.to_string()], "ejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_eject_an_endpoint() {
    let bad = Upstream::with("bad", |_| Reply::Status(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let good = Upstream::start("good").await;
    let gw = Gw::start(&one_service(
        &format!(
            "[{{address: {}, labels: {{app: x}}}}, {{address: {}, labels: {{app: x}}}}]",
            bad.addr, good.addr
        ),
        "    ejection: {consecutive_failures: 2, duration: 1m}\n",
    ))
    .await;
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(gw.get("/x").await.1);
    }
    // bad, good, bad (second failure: ejected), then good only.
    assert_eq!(
        answers.iter().filter(|a| *a == "bad").count(),
        2,
        "{answers:?}"
    );
    assert_eq!(bad.requests(), 2);
    let state = gw.admin_json("GET", "/state", "").await;
    assert_eq!(state["down"]["app"][bad.addr.to_string()], "ejected");
    // Ejection is health, not configuration: the pools still list the endpoint.
    assert_eq!(
        state["services"]["app"][0]["endpoints"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_take_an_endpoint_out_and_bring_it_back() {
    let sick = Arc::new(AtomicBool::new(false));
    let flag = sick.clone();
    let a = Upstream::with("a", move |seen| {
        if seen.path == "/healthz" && flag.load(Ordering::SeqCst) {
            Reply::Status(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            Reply::Status(StatusCode::OK)
        }
    })
    .await;
    let b = Upstream::start("b").await;
    let gw = Gw::start(&one_service(
        &format!(
            "[{{address: {}, labels: {{app: x}}}}, {{address: {}, labels: {{app: x}}}}]",
            a.addr, b.addr
        ),
        "    health: {path: /healthz, interval: 100ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 2}\n",
    ))
    .await;
    eventually(Duration::from_secs(10), "first health checks", || async {
        a.seen.lock().unwrap().iter().any(|s| s.path == "/healthz")
    })
    .await;
    sick.store(true, Ordering::SeqCst);
    eventually(Duration::from_secs(10), "a marked down", || async {
        gw.admin_json("GET", "/state", "").await["down"]["app"][a.addr.to_string()]
            == "failing_health_checks"
    })
    .await;
    for _ in 0..10 {
        assert_eq!(gw.get("/x").await.1, "b");
    }
    sick.store(false, Ordering::SeqCst);
    eventually(Duration::from_secs(10), "a back", || async {
        gw.admin_json("GET", "/state", "").await["down"]
            .as_object()
            .is_some_and(serde_json::Map::is_empty)
    })
    .await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(gw.get("/x").await.1);
    }
    assert!(answers.contains(&"a".to_string()), "{answers:?}");
    // Checks carry their own user agent, so upstream logs can tell them apart.
    let check = a
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.path == "/healthz")
        .cloned()
        .unwrap();
    assert_eq!(check.headers["user-agent"], "bulkhead-gateway-health");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_both_ways_and_forwarding_headers_set() {
    let up = Upstream::with("a", |_| {
        Reply::Headers(vec![
            ("keep-alive", "timeout=5"),
            ("x-internal", "1"),
            ("connection", "x-internal"),
            ("x-kept", "yes"),
        ])
    })
    .await;
    let gw = Gw::start(&one_service(
        &format!("[{{address: {}, labels: {{app: x}}}}]", up.addr),
        "",
    ))
    .await;
    let addr = gw.proxy();
    let response = tokio::task::spawn_blocking(move || {
        raw(
            addr,
            b"GET /x?q=1 HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close, x-secret\r\n\
X-Secret: 1\r\nKeep-Alive: timeout=9\r\nProxy-Authorization: Basic Zm9v\r\nTE: trailers\r\n\
X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nForwarded: for=203.0.113.9\r\nX-App: kept\r\n\r\n",
            Duration::from_secs(10),
        )
    })
    .await
    .unwrap();
    let seen = up.last();
    for gone in ["x-secret", "keep-alive", "proxy-authorization", "te"] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the upstream"
        );
    }
    assert_eq!(seen.path, "/x");
    assert_eq!(seen.headers["x-app"], "kept");
    assert_eq!(seen.headers["host"], "shop.example.com");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(
        seen.headers["forwarded"],
        "for=203.0.113.9, for=127.0.0.1;proto=http;host=\"shop.example.com\""
    );
    let head = response
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-kept: yes"), "{head}");
    assert!(!head.contains("x-internal"), "{head}");
    assert!(!head.contains("keep-alive"), "{head}");
}
