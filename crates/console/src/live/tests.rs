use super::*;

/// Two scrapes of a gateway one second apart, as its `/metrics` renders them:
/// orders' green answered 100 requests in that second, 5 of them 5xx, most
/// under 10 ms and two slow ones; blue had no new request.
const BEFORE: &str = r#"# TYPE bulkhead_gateway_requests_total counter
bulkhead_gateway_requests_total{service="orders",version="blue",code="2xx"} 40
bulkhead_gateway_requests_total{service="orders",version="green",code="2xx"} 10
bulkhead_gateway_requests_total{service="",version="",code="4xx"} 3
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="0.01"} 10
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="0.1"} 10
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="+Inf"} 10
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="blue",le="0.01"} 40
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="blue",le="+Inf"} 40
"#;

const AFTER: &str = r#"bulkhead_gateway_requests_total{service="orders",version="blue",code="2xx"} 40
bulkhead_gateway_requests_total{service="orders",version="green",code="2xx"} 105
bulkhead_gateway_requests_total{service="orders",version="green",code="5xx"} 5
bulkhead_gateway_requests_total{service="",version="",code="4xx"} 9
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="0.01"} 108
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="0.1"} 110
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="green",le="+Inf"} 110
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="blue",le="0.01"} 40
bulkhead_gateway_request_duration_seconds_bucket{service="orders",version="blue",le="+Inf"} 40
"#;

fn totals(text: &str) -> HashMap<(String, String), Totals> {
    gateway_totals(&parse_text(text))
}

fn key(s: &str, v: &str) -> (String, String) {
    (s.to_string(), v.to_string())
}

#[test]
fn a_point_is_the_rate_error_share_and_p99_between_two_scrapes() {
    let (before, after) = (totals(BEFORE), totals(AFTER));
    assert!(
        !after.contains_key(&key("", "")),
        "unrouted requests have no series"
    );
    let green = point(
        &before[&key("orders", "green")],
        &after[&key("orders", "green")],
        1.0,
        7,
    );
    assert_eq!(green.at_ms, 7);
    assert_eq!(green.rps, 100.0);
    assert_eq!(green.error_pct, Some(5.0));
    // 99 of 100 at or under 10 ms: the 99th falls in (10 ms, 100 ms], interpolated.
    let p99 = green.p99_ms.unwrap();
    assert!((p99 - 55.0).abs() < 1e-6, "{p99}");
    let blue = point(
        &before[&key("orders", "blue")],
        &after[&key("orders", "blue")],
        1.0,
        7,
    );
    assert_eq!((blue.rps, blue.error_pct, blue.p99_ms), (0.0, None, None));
}

#[test]
fn a_restarted_gateway_counts_from_zero() {
    let (before, after) = (totals(AFTER), totals(BEFORE));
    let p = point(
        &before[&key("orders", "green")],
        &after[&key("orders", "green")],
        2.0,
        0,
    );
    assert_eq!(p.rps, 5.0);
    assert_eq!(p.error_pct, Some(0.0));
    // All ten at or under 10 ms, interpolated from zero.
    assert!((p.p99_ms.unwrap() - 9.9).abs() < 1e-6, "{p:?}");
}

#[test]
fn the_feed_keeps_busy_series_within_the_window() {
    let mut feed = GatewayFeed::new("http://gw/metrics");
    feed.add(0, 1_000, totals(BEFORE));
    assert!(feed.series.is_empty(), "one scrape gives no rate yet");
    feed.add(1_000, 2_000, totals(AFTER));
    let orders = feed.of_service("orders");
    assert_eq!(orders.len(), 1, "blue had no traffic: {orders:?}");
    assert_eq!(orders[0].0, "green");
    assert_eq!(orders[0].1.back().unwrap().rps, 100.0);
    assert!(feed.of_service("order").is_empty());
    // Quiet for the whole window (and the scrapes a rate spans): the series goes.
    for i in 0..(KEEP + RATE_OVER) as u64 {
        feed.add(2_000 + i * 1_000, 3_000, totals(AFTER));
    }
    assert!(feed.of_service("orders").is_empty());
}

#[test]
fn a_series_the_gateway_no_longer_counts_goes_after_the_window() {
    let mut feed = GatewayFeed::new("http://gw/metrics");
    feed.add(0, 0, totals(BEFORE));
    feed.add(1_000, 0, totals(AFTER));
    for i in 0..KEEP as u64 - 1 {
        feed.add(2_000 + i * 1_000, 0, HashMap::new());
        assert_eq!(feed.of_service("orders").len(), 1, "kept in the window");
    }
    feed.add(1_000_000, 0, HashMap::new());
    assert!(feed.of_service("orders").is_empty());
}

#[test]
fn a_rate_spans_the_last_scrapes() {
    let mut feed = GatewayFeed::new("http://gw/metrics");
    let text = |n: u64| {
        totals(&format!(
            "bulkhead_gateway_requests_total{{service=\"a\",version=\"v1\",code=\"2xx\"}} {n}\n"
        ))
    };
    // Two requests a second, seen by scrapes at uneven moments: 2, 0, 4, 2, 2 more.
    for (i, n) in [0, 2, 2, 6, 8, 10, 12].into_iter().enumerate() {
        feed.add(i as u64 * 1_000, i as i64, text(n));
    }
    let rates: Vec<f64> = feed.of_service("a")[0].1.iter().map(|p| p.rps).collect();
    // From the first scrape while fewer than five came before, then over the last five seconds.
    assert_eq!(rates, [2.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
}

#[test]
fn webhook_decisions_per_second_by_result() {
    let before = "bulkhead_admission_decisions_total{result=\"allow\"} 10\n\
                  bulkhead_admission_decisions_total{result=\"deny\"} 2\n\
                  bulkhead_admission_duration_seconds_bucket{le=\"0.001\"} 12\n\
                  bulkhead_admission_duration_seconds_bucket{le=\"+Inf\"} 12\n";
    let after = "bulkhead_admission_decisions_total{result=\"allow\"} 14\n\
                 bulkhead_admission_decisions_total{result=\"deny\"} 6\n\
                 bulkhead_admission_duration_seconds_bucket{le=\"0.001\"} 20\n\
                 bulkhead_admission_duration_seconds_bucket{le=\"+Inf\"} 20\n";
    let mut feed = WebhookFeed::new("https://webhook/metrics");
    feed.add(0, 0, webhook_totals(&parse_text(before)));
    feed.add(2_000, 0, webhook_totals(&parse_text(after)));
    let points: Vec<&DecisionPoint> = feed.points().collect();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].per_sec["allow"], 2.0);
    assert_eq!(points[0].per_sec["deny"], 2.0);
    assert!((points[0].p99_ms.unwrap() - 0.99).abs() < 1e-9);
    assert_eq!(feed.latest().unwrap().0["deny"], 6.0);
}
