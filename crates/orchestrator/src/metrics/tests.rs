use super::*;

const BEFORE: &str = r#"# HELP bulkhead_gateway_requests_total Requests answered.
# TYPE bulkhead_gateway_requests_total counter
bulkhead_gateway_requests_total{service="orders",version="blue",code="2xx"} 100
bulkhead_gateway_requests_total{service="orders",version="green",code="2xx"} 10
bulkhead_gateway_requests_total{service="orders",version="green",code="5xx"} 0
bulkhead_gateway_requests_total{service="cart",version="blue",code="2xx"} 7
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="0.005"} 5
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="0.01"} 10
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="+Inf"} 10
"#;

const AFTER: &str = r#"bulkhead_gateway_requests_total{service="orders",version="blue",code="2xx"} 100
bulkhead_gateway_requests_total{service="orders",version="green",code="2xx"} 70
bulkhead_gateway_requests_total{service="orders",version="green",code="5xx"} 40
bulkhead_gateway_requests_total{service="cart",version="blue",code="2xx"} 7
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="0.005"} 55
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="0.01"} 105
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="+Inf"} 110
"#;

#[test]
fn parses_labels_with_escapes_and_special_values() {
    let samples = parse_text(
        "a_total{path=\"/x\\\"y\",le=\"+Inf\"} 3 1700000000\nb NaN\nc{} +Inf\n# comment\nbroken{\n",
    );
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].labels["path"], "/x\"y");
    assert_eq!(samples[0].value, 3.0);
    assert!(samples[1].value.is_nan());
    assert_eq!(samples[2].value, f64::INFINITY);
}

#[test]
fn error_rate_is_the_5xx_share_of_the_window() {
    let (before, after) = (Scrape::from_text(BEFORE), Scrape::from_text(AFTER));
    // green: 60 more 2xx, 40 more 5xx.
    assert_eq!(
        error_rate(&before, &after, "orders", Some("green")).unwrap(),
        0.4
    );
    // all versions: blue had no new requests.
    assert_eq!(error_rate(&before, &after, "orders", None).unwrap(), 0.4);
    assert!(matches!(
        error_rate(&before, &after, "cart", None),
        Err(MetricsError::NoTraffic { .. })
    ));
    // A restarted gateway (counters reset) counts from zero.
    assert_eq!(
        error_rate(&after, &before, "orders", Some("green")).unwrap(),
        0.0
    );
}

#[test]
fn latency_quantile_interpolates_within_the_bucket() {
    let (before, after) = (Scrape::from_text(BEFORE), Scrape::from_text(AFTER));
    // Window: 50 in (0, 5ms], 45 in (5ms, 10ms], 5 above 10ms; 100 requests.
    let p50 = latency_quantile_ms(&before, &after, "orders", Some("green"), 0.5).unwrap();
    assert!((p50 - 5.0).abs() < 1e-9, "{p50}");
    let p90 = latency_quantile_ms(&before, &after, "orders", Some("green"), 0.9).unwrap();
    assert!((p90 - (5.0 + 5.0 * 40.0 / 45.0)).abs() < 1e-9, "{p90}");
    // Above the last finite bound: that bound, as histogram_quantile answers.
    let p99 = latency_quantile_ms(&before, &after, "orders", Some("green"), 0.99).unwrap();
    assert!((p99 - 10.0).abs() < 1e-9, "{p99}");
}

#[test]
fn scrapes_the_gateway_with_its_token() {
    let server = crate::testutil::Server::start(|_| (200, AFTER.to_string()));
    let scrape = Scrape::take(&format!("{}/metrics", server.url()), Some("t0k")).unwrap();
    assert_eq!(scrape, Scrape::from_text(AFTER));
    let sent = server.requests.lock().unwrap()[0].clone();
    assert!(sent.starts_with("GET /metrics HTTP/1.1"), "{sent}");
    assert!(sent.contains("Authorization: Bearer t0k"), "{sent}");

    let refusing = crate::testutil::Server::start(|_| (401, "no".to_string()));
    let err = Scrape::take(&refusing.url(), None).unwrap_err();
    assert!(err.to_string().ends_with("HTTP 401: no"), "{err}");
}

/// Against a server answering the collector's documented format (the
/// collector is another crate's process; its own tests cover the endpoint).
#[test]
fn reads_the_trace_store_service_stats() {
    let server = crate::testutil::Server::start(|head| {
        if head.starts_with("GET /api/bulkhead/service-stats?service=pay%20ments&lookback=2000 ") {
            (
                200,
                r#"{"service":"pay ments","spans":40,"errors":10,"error_rate":0.25,"p50_ms":3.5,"p99_ms":41.0}"#
                    .to_string(),
            )
        } else {
            (404, "{}".to_string())
        }
    });
    let stats = trace_stats(&server.url(), "pay ments", Duration::from_secs(2)).unwrap();
    assert_eq!(
        (stats.spans, stats.error_rate, stats.p99_ms),
        (40, 0.25, 41.0)
    );
    let err = trace_stats(&server.url(), "other", Duration::from_secs(2)).unwrap_err();
    assert!(err.to_string().contains("HTTP 404"), "{err}");
}

/// A real Prometheus (Debian's `prometheus`, installed by scripts/setup)
/// scraping a metrics endpoint on loopback, queried through its HTTP API.
#[test]
fn queries_a_real_prometheus() {
    let target = crate::testutil::Server::start(|_| {
        (
            200,
            "# TYPE bulkhead_test_total counter\nbulkhead_test_total{service=\"orders\"} 42\n"
                .to_string(),
        )
    });
    let dir = crate::testutil::Scratch::new("prometheus");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: test\n    static_configs: [{{targets: ['{}']}}]\n",
            target.addr
        ),
    )
    .unwrap();
    // Prometheus cannot report a port it picked: take a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus is installed (scripts/setup)");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Kill(child);
    let address = format!("http://127.0.0.1:{port}");
    let query = "sum(bulkhead_test_total{service=\"orders\"})";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let value = loop {
        match prometheus_query(&address, query) {
            Ok(v) => break v,
            Err(e) => assert!(std::time::Instant::now() < deadline, "no answer: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(value, 42.0);
    assert_eq!(
        prometheus_query(&address, "scalar(vector(0.25))").unwrap(),
        0.25
    );
    let empty = prometheus_query(&address, "bulkhead_test_total{service=\"none\"}").unwrap_err();
    assert!(empty.to_string().contains("returned no sample"), "{empty}");
    let bad = prometheus_query(&address, "sum(").unwrap_err();
    assert!(bad.to_string().contains("bad_data"), "{bad}");
}
