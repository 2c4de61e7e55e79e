//! Services run in-process on loopback, each on its own port, talking real
//! HTTP to each other and to fakes this file writes: a W3C test harness (the
//! official one is Python; this one checks the same rules) and an OTLP
//! collector. The chain of real processes is in `crates/bulkhead/tests/it`.

mod support;
mod w3c;

use lab_service::{CallMode, Config, Faults, OtlpConfig, Protocol};
use serde_json::{Value, json};
use std::time::Duration;
use support::{Collector, Downstream, Service, get, json_response, request, serve};

#[tokio::test]
async fn answers_with_its_name_version_and_downstream_results() {
    let c = Service::start(Config::new("c", "3.0.0")).await;
    let mut b = Config::new("b", "2.0.0");
    b.calls = vec![c.url("/")];
    let b = Service::start(b).await;
    let (status, headers, body) = get(&b.url("/orders/42"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"], "b");
    assert_eq!(body["version"], "2.0.0");
    let trace_id = body["trace_id"].as_str().unwrap();
    assert_eq!(headers["x-trace-id"], trace_id);
    let downstream = &body["downstream"][0];
    assert_eq!(downstream["url"], c.url("/").as_str());
    assert_eq!(downstream["status"], 200);
    assert_eq!(downstream["body"]["service"], "c");
    assert_eq!(downstream["body"]["trace_id"], trace_id);
    assert!(downstream["duration_ms"].as_f64().is_some());
    // One log line per request, each with the trace id; the listening line first.
    let lines = b.log.lines();
    assert_eq!(lines[0]["event"], "listening");
    assert_eq!(lines[0]["addr"], b.addr.to_string());
    let requests = b.requests_logged();
    assert_eq!(requests.len(), 1, "{lines:?}");
    let line = &requests[0];
    for field in [
        "ts",
        "level",
        "service",
        "version",
        "method",
        "path",
        "status",
        "duration_ms",
        "trace_id",
        "span_id",
    ] {
        assert!(!line[field].is_null(), "{field} missing in {line}");
    }
    assert_eq!(
        (&line["path"], &line["status"], &line["trace_id"]),
        (&json!("/orders/42"), &json!(200), &json!(trace_id))
    );
    assert_eq!(c.requests_logged()[0]["trace_id"], trace_id);
    assert_eq!(
        c.requests_logged()[0]["parent_span_id"]
            .as_str()
            .map(str::len),
        Some(16)
    );
}

#[tokio::test]
async fn a_failing_downstream_is_named_with_the_service_that_failed_first() {
    let mut c = Config::new("c", "3.0.0");
    c.faults.error_rate = 1.0;
    let c = Service::start(c).await;
    let mut b = Config::new("b", "2.0.0");
    b.calls = vec![c.url("/")];
    let b = Service::start(b).await;
    let mut a = Config::new("a", "1.0.0");
    a.calls = vec![b.url("/")];
    let a = Service::start(a).await;
    let (status, _, body) = get(&a.url("/"), &[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["error"]["origin"],
        json!({ "service": "c", "version": "3.0.0" })
    );
    assert_eq!(body["error"]["downstream"], b.url("/").as_str());
    assert_eq!(body["downstream"][0]["status"], 502);
    assert_eq!(
        body["downstream"][0]["body"]["downstream"][0]["status"],
        500
    );
    // A downstream that is not there is its own origin.
    let gone = Downstream::closed_port_url().await;
    let mut lonely = Config::new("lonely", "1");
    lonely.calls = vec![gone.clone()];
    let lonely = Service::start(lonely).await;
    let (status, _, body) = get(&lonely.url("/"), &[]).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["origin"], json!({ "url": gone.as_str() }));
    assert!(
        body["downstream"][0]["error"]
            .as_str()
            .unwrap()
            .contains("onnect"),
        "{body}"
    );
}

#[tokio::test]
async fn parallel_calls_all_happen_and_the_failing_one_is_reported() {
    let ok1 = Service::start(Config::new("ok1", "1")).await;
    let mut bad = Config::new("bad", "1");
    bad.faults.error_rate = 1.0;
    let bad = Service::start(bad).await;
    let ok2 = Service::start(Config::new("ok2", "1")).await;
    let mut a = Config::new("a", "1");
    a.calls = vec![ok1.url("/"), bad.url("/"), ok2.url("/")];
    a.call_mode = CallMode::Parallel;
    let a = Service::start(a).await;
    let (status, _, body) = get(&a.url("/"), &[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["origin"]["service"], "bad");
    let statuses: Vec<&Value> = body["downstream"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["status"])
        .collect();
    assert_eq!(statuses, [&json!(200), &json!(500), &json!(200)]);
    for s in [&ok1, &bad, &ok2] {
        assert_eq!(s.requests_logged().len(), 1);
    }
    // Sequential calls stop at the first failure.
    let mut seq = Config::new("seq", "1");
    seq.calls = vec![ok1.url("/"), bad.url("/"), ok2.url("/")];
    let seq = Service::start(seq).await;
    let (status, _, body) = get(&seq.url("/"), &[]).await;
    assert_eq!(status, 502);
    assert_eq!(body["downstream"].as_array().unwrap().len(), 2);
    assert_eq!(ok2.requests_logged().len(), 1);
}

#[tokio::test]
async fn a_cycle_in_the_calls_ends_after_32_hops() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = Config::new("ouroboros", "1");
    config.listen = port;
    config.calls = vec![format!("http://{port}/").parse().unwrap()];
    let service = Service::start(config).await;
    let (status, _, body) = get(&service.url("/"), &[]).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["origin"]["service"], "ouroboros");
    let mut depth = 0;
    let mut hop = &body;
    while let Some(next) = hop.pointer("/downstream/0/body") {
        hop = next;
        depth += 1;
    }
    assert_eq!(depth, 32);
    assert_eq!(
        hop["error"]["message"],
        "more than 32 hops: is there a cycle in --calls?"
    );
    let statuses: Vec<Value> = service
        .requests_logged()
        .iter()
        .map(|l| l["status"].clone())
        .collect();
    assert_eq!(statuses.len(), 33);
    assert_eq!(statuses[0], 508, "the innermost finishes first");
}

#[tokio::test]
async fn calls_via_a_gateway_connect_to_it_and_name_the_callee_as_host() {
    let gateway = serve(|req| async move {
        let host = req
            .headers()
            .get("host")
            .map(|h| h.to_str().unwrap().to_string());
        json_response(&json!({ "host": host, "path": req.uri().to_string() }))
    })
    .await;
    let mut a = Config::new("a", "1");
    a.calls = vec!["http://orders/api?x=1".parse().unwrap()];
    a.via = Some(gateway);
    let a = Service::start(a).await;
    let (status, _, body) = get(&a.url("/"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let call = &body["downstream"][0];
    assert_eq!(call["url"], "http://orders/api?x=1");
    assert_eq!(
        call["body"],
        json!({ "host": "orders", "path": "/api?x=1" })
    );
}

#[tokio::test]
async fn a_failed_call_fault_fails_without_calling() {
    let target = Service::start(Config::new("target", "1")).await;
    let mut a = Config::new("a", "1");
    a.calls = vec![target.url("/")];
    a.faults.fail_calls = vec![target.url("/").to_string()];
    let a = Service::start(a).await;
    let (status, _, body) = get(&a.url("/"), &[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["error"]["origin"],
        json!({ "service": "a", "version": "1" })
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("injected fault"),
        "{body}"
    );
    assert!(target.requests_logged().is_empty());
    assert_eq!(a.requests_logged()[0]["fault"], "call");
    let metrics = a.metrics().await;
    assert!(
        metrics.contains("faults_injected_total{kind=\"call\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("downstream_errors_total 1"), "{metrics}");
}

#[tokio::test]
async fn faults_repeat_with_a_seed() {
    let statuses = |seed| async move {
        let mut config = Config::new("dice", "1");
        config.seed = Some(seed);
        config.faults.error_rate = 0.5;
        let service = Service::start(config).await;
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(get(&service.url("/"), &[]).await.0.as_u16());
        }
        let trace_ids: Vec<Value> = service
            .requests_logged()
            .iter()
            .map(|l| l["trace_id"].clone())
            .collect();
        (statuses, trace_ids)
    };
    let (first, first_ids) = statuses(42).await;
    let (second, second_ids) = statuses(42).await;
    assert_eq!(first, second);
    assert_eq!(first_ids, second_ids, "seeded ids repeat too");
    assert!(first.contains(&200) && first.contains(&500), "{first:?}");
    let (other, _) = statuses(43).await;
    assert_ne!(first, other);
}

#[tokio::test]
async fn the_admin_endpoint_is_off_without_a_token() {
    let service = Service::start(Config::new("a", "1")).await;
    let (status, _, body) = request(
        "GET",
        &service.url("/admin/faults"),
        &[("authorization", "Bearer x")],
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--admin-token"),
        "{body}"
    );
}

#[tokio::test]
async fn the_admin_endpoint_changes_faults_with_the_right_token() {
    let mut config = Config::new("a", "1");
    config.admin_token = lab_service::AdminToken::new("s3cret");
    let service = Service::start(config).await;
    let url = service.url("/admin/faults");
    let url = url.as_str();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cre"),
        Some("Basic s3cret"),
        Some("Bearer "),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (status, headers, _) =
            request("PUT", url, &headers, Some(json!({ "error_rate": 1.0 }))).await;
        assert_eq!(status, 401, "{auth:?}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    assert_eq!(
        get(&service.url("/"), &[]).await.0,
        200,
        "unauthorized calls changed nothing"
    );
    let auth = [("authorization", "Bearer s3cret")];
    let (status, _, body) = request(
        "PUT",
        url,
        &auth,
        Some(json!({ "error_rate": 1.0, "not_ready": true })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["error_rate"], 1.0);
    let (status, _, body) = get(&service.url("/"), &[]).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["origin"]["service"], "a");
    assert_eq!(get(&service.url("/readyz"), &[]).await.0, 503);
    assert_eq!(get(&service.url("/healthz"), &[]).await.0, 200);
    let (_, _, body) = request("GET", url, &[("authorization", "bearer s3cret")], None).await;
    assert_eq!(body["not_ready"], true);
    // Invalid faults are refused and change nothing.
    for bad in [
        json!({ "error_rate": 2.0 }),
        json!({ "eror_rate": 0.0 }),
        json!([1]),
        json!({ "fail_calls": ["http://127.0.0.1:1/"] }),
    ] {
        let (status, _, body) = request("PUT", url, &auth, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(get(&service.url("/"), &[]).await.0, 500);
    let (status, _, _) = request("DELETE", url, &auth, None).await;
    assert_eq!(status, 200);
    assert_eq!(get(&service.url("/"), &[]).await.0, 200);
    assert_eq!(get(&service.url("/readyz"), &[]).await.0, 200);
    assert_eq!(
        request("GET", &service.url("/admin/other"), &auth, None)
            .await
            .0,
        404
    );
    assert_eq!(request("PATCH", url, &auth, None).await.0, 405);
    let updates = service
        .log
        .lines()
        .iter()
        .filter(|l| l["event"] == "faults_updated")
        .count();
    assert_eq!(updates, 2);
}

#[tokio::test]
async fn metrics_count_requests_by_status_and_duration() {
    let mut config = Config::new("m", "1");
    config.admin_token = lab_service::AdminToken::new("t");
    let service = Service::start(config).await;
    for _ in 0..3 {
        assert_eq!(get(&service.url("/"), &[]).await.0, 200);
    }
    let auth = [("authorization", "Bearer t")];
    request(
        "PUT",
        &service.url("/admin/faults"),
        &auth,
        Some(json!({ "error_rate": 1.0 })),
    )
    .await;
    assert_eq!(get(&service.url("/"), &[]).await.0, 500);
    // Probes and metrics are not application requests.
    get(&service.url("/healthz"), &[]).await;
    get(&service.url("/readyz"), &[]).await;
    let (status, headers, _) = get(&service.url("/metrics"), &[]).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = service.metrics().await;
    for expect in [
        "lab_service_info{service=\"m\",version=\"1\"} 1",
        "http_requests_total{code=\"200\"} 3",
        "http_requests_total{code=\"500\"} 1",
        "http_request_duration_seconds_bucket{le=\"+Inf\"} 4",
        "http_request_duration_seconds_count 4",
        "faults_injected_total{kind=\"error\"} 1",
        "spans_dropped_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == expect),
            "{expect} missing in\n{text}"
        );
    }
    assert_eq!(service.requests_logged().len(), 4);
}

#[tokio::test]
async fn latency_faults_delay_the_answer_and_are_counted() {
    let mut config = Config::new("slow", "1");
    config.faults.latency_ms = 20;
    let service = Service::start(config).await;
    let (status, _, _) = get(&service.url("/"), &[]).await;
    assert_eq!(status, 200);
    let line = &service.requests_logged()[0];
    // The duration is what the service measured around its own sleep.
    assert!(line["duration_ms"].as_f64().unwrap() >= 20.0, "{line}");
    assert_eq!(line["fault"], "latency");
    assert!(
        service
            .metrics()
            .await
            .contains("faults_injected_total{kind=\"latency\"} 1")
    );
}

#[tokio::test]
async fn spans_reach_the_collector_with_the_incoming_context() {
    spans_reach_the_collector(Protocol::HttpJson, "application/json").await;
}

#[tokio::test]
async fn spans_reach_the_collector_as_protobuf() {
    spans_reach_the_collector(Protocol::HttpProtobuf, "application/x-protobuf").await;
}

async fn spans_reach_the_collector(protocol: Protocol, content_type: &str) {
    let collector = Collector::start().await;
    let otlp = |config: &mut Config| {
        let mut otlp = OtlpConfig::new(collector.url());
        otlp.protocol = protocol;
        // Only the shutdown flush sends: the test waits on nothing but the flush.
        otlp.interval = Duration::from_secs(3600);
        config.otlp = Some(otlp);
    };
    let mut b = Config::new("b", "2");
    otlp(&mut b);
    let b = Service::start(b).await;
    let mut a = Config::new("a", "1");
    a.calls = vec![b.url("/")];
    otlp(&mut a);
    let a = Service::start(a).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{trace}-00f067aa0ba902b7-01");
    let (status, _, body) = get(
        &a.url("/"),
        &[("traceparent", &tp), ("tracestate", "congo=t61rcWkgMzE")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["trace_id"], trace);
    // B3 multi headers continue a 64-bit trace, padded to 128 bits.
    let (_, _, body) = get(
        &a.url("/"),
        &[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
        ],
    )
    .await;
    assert_eq!(body["trace_id"], "0000000000000000463ac35c9f6413ad");
    // A caller that does not sample gets no spans recorded, but its context goes on.
    let unsampled = format!("00-{}-00f067aa0ba902b7-00", "a".repeat(32));
    let (_, _, body) = get(&a.url("/"), &[("traceparent", &unsampled)]).await;
    assert_eq!(body["downstream"][0]["body"]["trace_id"], "a".repeat(32));
    a.stop().await;
    b.stop().await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let of_trace: Vec<_> = spans.iter().filter(|s| s.trace_id == trace).collect();
    assert_eq!(of_trace.len(), 3);
    let a_server = of_trace
        .iter()
        .find(|s| s.service == "a" && s.kind == 2)
        .unwrap();
    let a_client = of_trace
        .iter()
        .find(|s| s.service == "a" && s.kind == 3)
        .unwrap();
    let b_server = of_trace
        .iter()
        .find(|s| s.service == "b" && s.kind == 2)
        .unwrap();
    assert_eq!(a_server.parent.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(a_client.parent.as_deref(), Some(a_server.span_id.as_str()));
    assert_eq!(b_server.parent.as_deref(), Some(a_client.span_id.as_str()));
    assert_eq!(b_server.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(b_server.version, "2");
    let b3_server = spans
        .iter()
        .find(|s| s.service == "a" && s.kind == 2 && s.trace_id != trace)
        .unwrap();
    assert_eq!(b3_server.parent.as_deref(), Some("a2fb4a1d1a96d312"));
    let types = collector.content_types();
    assert!(
        !types.is_empty() && types.iter().all(|t| t == content_type),
        "{types:?}"
    );
}

#[tokio::test]
async fn a_stalled_collector_costs_spans_not_requests() {
    let stalled = Downstream::stalled().await;
    let mut config = Config::new("a", "1");
    let mut otlp = OtlpConfig::new(stalled.url());
    otlp.queue = 2;
    otlp.batch_size = 1;
    otlp.interval = Duration::from_millis(1);
    otlp.timeout = Duration::from_secs(600);
    config.otlp = Some(otlp);
    let service = Service::start(config).await;
    for _ in 0..20 {
        assert_eq!(get(&service.url("/"), &[]).await.0, 200);
    }
    // One span is stuck in the exporter's request, two wait in the queue.
    let text = service.metrics().await;
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("spans_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((17..=18).contains(&dropped), "{text}");
}

#[tokio::test]
async fn shutdown_lets_open_requests_finish() {
    let held = Downstream::held().await;
    let mut config = Config::new("a", "1");
    config.calls = vec![held.url()];
    let service = Service::start(config).await;
    let url = service.url("/");
    let pending = tokio::spawn(async move { get(&url, &[]).await });
    held.wait_for_request().await;
    let log = service.log.clone();
    let stopped = tokio::spawn(service.stop());
    support::wait_until("shutdown to start", || {
        log.lines().iter().any(|l| l["event"] == "shutdown_started")
    })
    .await;
    // The listener is closed once shutdown starts; the open request is not.
    assert!(
        tokio::net::TcpStream::connect(listening_addr(&log))
            .await
            .is_err()
    );
    held.release();
    let (status, _, body) = pending.await.unwrap();
    assert_eq!(status, 200, "{body}");
    stopped.await.unwrap();
    let log = log.lines();
    let events: Vec<&str> = log.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(
        events,
        [
            "listening",
            "shutdown_started",
            "request_finished",
            "server_stopped"
        ]
    );
    assert_eq!(log[3]["drained"], true);
}

fn listening_addr(log: &lab_service::LogBuffer) -> String {
    log.lines()[0]["addr"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn invalid_configs_are_refused() {
    let mut config = Config::new("a", "1");
    config.faults = Faults {
        error_rate: 7.0,
        ..Faults::default()
    };
    let err = lab_service::Server::bind(config).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid faults: error_rate must be between 0.0 and 1.0, got 7"
    );
    let taken = Service::start(Config::new("a", "1")).await;
    let mut config = Config::new("b", "1");
    config.listen = taken.addr;
    let err = lab_service::Server::bind(config).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("binding {}: ", taken.addr)),
        "{err}"
    );
}
