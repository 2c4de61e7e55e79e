use super::*;

#[test]
fn renders_the_prometheus_text_format() {
    let metrics = Metrics::default();
    metrics.request(200, Duration::from_millis(3));
    metrics.request(200, Duration::from_millis(40));
    metrics.request(502, Duration::from_secs(60));
    metrics.downstream_error();
    metrics.fault(FaultKind::Error);
    metrics.fault(FaultKind::Call);
    metrics.fault(FaultKind::Call);
    metrics.spans_exported(7);
    metrics.spans_dropped(2);
    metrics.export_failed();
    let expect = r#"# HELP lab_service_info The service's name and version.
# TYPE lab_service_info gauge
lab_service_info{service="orders",version="2.0.0-\"green\""} 1
# HELP http_requests_total Requests served (health, readiness, metrics and admin excluded), by status code.
# TYPE http_requests_total counter
http_requests_total{code="200"} 2
http_requests_total{code="502"} 1
# HELP http_request_duration_seconds Time from request head to response head.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.001"} 0
http_request_duration_seconds_bucket{le="0.0025"} 0
http_request_duration_seconds_bucket{le="0.005"} 1
http_request_duration_seconds_bucket{le="0.01"} 1
http_request_duration_seconds_bucket{le="0.025"} 1
http_request_duration_seconds_bucket{le="0.05"} 2
http_request_duration_seconds_bucket{le="0.1"} 2
http_request_duration_seconds_bucket{le="0.25"} 2
http_request_duration_seconds_bucket{le="0.5"} 2
http_request_duration_seconds_bucket{le="1"} 2
http_request_duration_seconds_bucket{le="2.5"} 2
http_request_duration_seconds_bucket{le="5"} 2
http_request_duration_seconds_bucket{le="10"} 2
http_request_duration_seconds_bucket{le="30"} 2
http_request_duration_seconds_bucket{le="+Inf"} 3
http_request_duration_seconds_sum 60.043
http_request_duration_seconds_count 3
# HELP downstream_errors_total Downstream calls that failed or answered with a status other than 2xx.
# TYPE downstream_errors_total counter
downstream_errors_total 1
# HELP faults_injected_total Injected faults, by kind.
# TYPE faults_injected_total counter
faults_injected_total{kind="error"} 1
faults_injected_total{kind="latency"} 0
faults_injected_total{kind="call"} 2
# HELP spans_exported_total Spans accepted by the OTLP collector.
# TYPE spans_exported_total counter
spans_exported_total 7
# HELP spans_dropped_total Spans dropped because the export queue was full, or the export failed.
# TYPE spans_dropped_total counter
spans_dropped_total 2
# HELP otlp_export_failures_total OTLP export requests that failed.
# TYPE otlp_export_failures_total counter
otlp_export_failures_total 1
"#;
    assert_eq!(metrics.render("orders", "2.0.0-\"green\""), expect);
    assert_eq!(metrics.spans_dropped_total(), 2);
}

#[test]
fn out_of_range_status_codes_are_not_counted() {
    let metrics = Metrics::default();
    metrics.request(999, Duration::ZERO);
    let text = metrics.render("a", "1");
    assert!(!text.contains("http_requests_total{"), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_count 1"),
        "{text}"
    );
}
