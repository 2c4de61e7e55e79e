//! What a request leaves behind: trace context upstream, OTLP spans at a real
//! loopback collector, the access log, Prometheus metrics, reloads.

use crate::support::{Gw, Upstream, dead_address, eventually};
use bytes::Bytes;
use gateway::{AccessLog, Options, OtlpOptions};
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config(upstream: SocketAddr) -> String {
    format!(
        "listeners: [{{address: 127.0.0.1:0}}]
routes:
  - {{name: orders, prefix: /orders, service: orders}}
services:
  orders:
    endpoints: [{{address: {upstream}, labels: {{app: orders, version: blue}}}}]
    selector: {{app: orders}}
"
    )
}

/// An OTLP/HTTP receiver that keeps every JSON body posted to `/v1/traces`.
async fn collector() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            if path == "/v1/traces" {
                                kept.lock()
                                    .unwrap()
                                    .push(serde_json::from_slice(&body).unwrap());
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("{}"))))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, bodies)
}

fn spans(bodies: &Mutex<Vec<Value>>) -> Vec<Value> {
    bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    let value = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map_or(&Value::Null, |a| &a["value"]);
    value
        .get("stringValue")
        .or_else(|| value.get("intValue"))
        .unwrap_or(&Value::Null)
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Every `traceparent` case of W3C Trace Context at the edge, through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_cases_at_the_edge() {
    let up = Upstream::start("orders").await;
    let gw = Gw::start(&config(up.addr)).await;
    let valid = format!("00-{TRACE}-{PARENT}-01");
    let restarted = [
        vec![],
        vec![format!("00-{}-{PARENT}-01", TRACE.to_uppercase())],
        vec![format!("00-{}-{PARENT}-01", "0".repeat(32))],
        vec![format!("00-{TRACE}-{}-01", "0".repeat(16))],
        vec![format!("ff-{TRACE}-{PARENT}-01")],
        vec![format!("00-{TRACE}-{PARENT}-01-garbage")],
        vec![format!("00-{TRACE}-{PARENT}-1")],
        vec![format!("00-{}-{PARENT}-01", &TRACE[..31])],
        vec![format!("00-{TRACE}-{}-01", &PARENT[..15])],
        vec![format!("00-{TRACE}-{PARENT}-0g")],
        vec![valid.clone(), valid.clone()],
    ];
    for values in &restarted {
        let mut req = Request::get(format!("http://{}/orders/1", gw.proxy()))
            .header("tracestate", "vendor=kept");
        for v in values {
            req = req.header("traceparent", v.as_str());
        }
        let (status, headers, _) = gw.send(req.body(Full::default()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let seen = up.last();
        let trace_id = headers["x-trace-id"].to_str().unwrap();
        assert_ne!(trace_id, TRACE, "{values:?}");
        let sent = seen.headers["traceparent"].to_str().unwrap();
        assert!(
            sent.starts_with(&format!("00-{trace_id}-"))
                && sent.ends_with("-03")
                && sent.len() == 55,
            "{values:?}: {sent}"
        );
        assert!(
            !seen.headers.contains_key("tracestate"),
            "{values:?}: tracestate kept"
        );
    }

    for (incoming, flags) in [
        (valid.clone(), "01"),
        (format!("00-{TRACE}-{PARENT}-00"), "00"),
        // A later version may append fields: parsed by its version-00 prefix, sent as 00.
        (
            format!("cc-{TRACE}-{PARENT}-01-what-the-future-holds"),
            "01",
        ),
    ] {
        let req = Request::get(format!("http://{}/orders/1", gw.proxy()))
            .header("traceparent", incoming.as_str())
            .header("tracestate", "congo=t61rcWkgMzE, ,rojo=00f067aa0ba902b7")
            .header("tracestate", "b@vendor=x");
        let (_, headers, _) = gw.send(req.body(Full::default()).unwrap()).await;
        assert_eq!(headers["x-trace-id"], TRACE);
        let seen = up.last();
        let sent = seen.headers["traceparent"].to_str().unwrap();
        let span_id = &sent[36..52];
        assert_eq!(sent, format!("00-{TRACE}-{span_id}-{flags}"), "{incoming}");
        assert_ne!(span_id, PARENT);
        // Several tracestate headers are combined in order, empty members dropped.
        assert_eq!(
            seen.headers["tracestate"],
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,b@vendor=x"
        );
    }

    // An invalid tracestate is discarded whole; the trace itself continues.
    let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    for bad in [
        "UPPER=1".to_string(),
        "@a=1,b=2".to_string(),
        "a=tab\tinside".to_string(),
        "a=x=y".to_string(),
        members.join(","),
    ] {
        let req = Request::get(format!("http://{}/orders/1", gw.proxy()))
            .header("traceparent", valid.as_str())
            .header("tracestate", bad.as_str());
        let (_, headers, _) = gw.send(req.body(Full::default()).unwrap()).await;
        assert_eq!(headers["x-trace-id"], TRACE);
        assert!(!up.last().headers.contains_key("tracestate"), "{bad:?}");
    }
    // A duplicated key keeps the list with the key's first member.
    for (dup, kept) in [
        (vec!["a=1,a=2"], "a=1"),
        (vec!["a=1", "b@=2,a=3"], "a=1,b@=2"),
    ] {
        let mut req = Request::get(format!("http://{}/orders/1", gw.proxy()))
            .header("traceparent", valid.as_str());
        for value in &dup {
            req = req.header("tracestate", *value);
        }
        gw.send(req.body(Full::default()).unwrap()).await;
        assert_eq!(up.last().headers["tracestate"], kept, "{dup:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_kept_or_generated_and_returned() {
    let up = Upstream::start("orders").await;
    let gw = Gw::start(&config(up.addr)).await;
    let (_, headers, _) = gw
        .send(
            Request::get(format!("http://{}/orders", gw.proxy()))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    let id = headers["x-request-id"].to_str().unwrap().to_string();
    let parts: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(parts, [8, 4, 4, 4, 12], "{id}");
    assert_eq!(&id[14..15], "4", "a version-4 UUID: {id}");
    assert_eq!(up.last().headers["x-request-id"], id.as_str());
    let (_, headers, _) = gw
        .send(
            Request::get(format!("http://{}/orders", gw.proxy()))
                .header("x-request-id", "client-chosen-42")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(headers["x-request-id"], "client-chosen-42");
    assert_eq!(up.last().headers["x-request-id"], "client-chosen-42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_span_per_request_reaches_the_collector() {
    let up = Upstream::start("orders").await;
    let (collector, bodies) = collector().await;
    let otlp = OtlpOptions {
        interval: Duration::from_millis(50),
        ..OtlpOptions::new(format!("http://{collector}"))
    };
    let gw = Gw::start_with(
        &config(up.addr),
        Options {
            otlp: Some(otlp),
            ..Options::default()
        },
    )
    .await;
    let req = Request::post(format!("http://{}/orders/7", gw.proxy()))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "congo=t61rcWkgMzE")
        .body(Full::new(Bytes::from("hello")))
        .unwrap();
    assert_eq!(gw.send(req).await.0, StatusCode::OK);
    let upstream_parent = up.last().headers["traceparent"].to_str().unwrap()[36..52].to_string();
    assert_eq!(gw.get("/nowhere").await.0, StatusCode::NOT_FOUND);
    eventually(
        Duration::from_secs(10),
        "two spans at the collector",
        || async { spans(&bodies).len() == 2 },
    )
    .await;
    let all = spans(&bodies);
    let span = all.iter().find(|s| s["traceId"] == TRACE).unwrap();
    assert_eq!(
        span["spanId"],
        upstream_parent.as_str(),
        "the upstream's parent is the gateway span"
    );
    assert_eq!(span["parentSpanId"], PARENT);
    assert_eq!(span["traceState"], "congo=t61rcWkgMzE");
    assert_eq!(span["kind"], 2);
    assert_eq!(span["name"], "POST orders");
    assert_eq!(attribute(span, "http.route"), "orders");
    assert_eq!(attribute(span, "http.response.status_code"), "200");
    assert_eq!(attribute(span, "http.request.body.size"), "5");
    assert_eq!(attribute(span, "bulkhead.version"), "blue");
    assert_eq!(
        attribute(span, "server.port"),
        up.addr.port().to_string().as_str()
    );
    let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 0 && end >= start);
    let resource = &bodies.lock().unwrap()[0]["resourceSpans"][0]["resource"];
    assert_eq!(attribute(resource, "service.name"), "bulkhead-gateway");
    let unrouted = all.iter().find(|s| s["traceId"] != TRACE).unwrap();
    assert_eq!(unrouted["name"], "GET");
    assert!(unrouted.get("parentSpanId").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_for_an_unreachable_collector_are_dropped_and_counted() {
    let up = Upstream::start("orders").await;
    let otlp = OtlpOptions {
        interval: Duration::from_millis(20),
        ..OtlpOptions::new(format!("http://{}", dead_address()))
    };
    let gw = Gw::start_with(
        &config(up.addr),
        Options {
            otlp: Some(otlp),
            ..Options::default()
        },
    )
    .await;
    for _ in 0..5 {
        assert_eq!(gw.get("/orders").await.0, StatusCode::OK);
    }
    eventually(Duration::from_secs(10), "five dropped spans", || async {
        gw.metric("bulkhead_gateway_spans_dropped_total").await == 5.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_complete_line_per_request() {
    let up = Upstream::start("orders").await;
    let dir = test_support::TempDir::new("gw-access");
    let file = dir.join("access.log");
    let gw = Gw::start_with(
        &config(up.addr),
        Options {
            access_log: AccessLog::File(file.clone()),
            ..Options::default()
        },
    )
    .await;
    let req = Request::put(format!("http://{}/orders/3?x=1", gw.proxy()))
        .header("x-request-id", "rid-1")
        .body(Full::new(Bytes::from("0123456789")))
        .unwrap();
    assert_eq!(gw.send(req).await.0, StatusCode::OK);
    let read = || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(10), "the access-log line", || async {
        read().len() == 1
    })
    .await;
    let line = read().remove(0);
    for (key, want) in [
        ("method", "PUT"),
        ("path", "/orders/3"),
        ("route", "orders"),
        ("service", "orders"),
        ("version", "blue"),
        ("pool", "app=orders"),
        ("request_id", "rid-1"),
        ("client", "127.0.0.1"),
    ] {
        assert_eq!(line[key], want, "{key}: {line}");
    }
    assert_eq!(line["upstream"], up.addr.to_string());
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes_in"], 10);
    assert_eq!(line["bytes_out"], 6, "the body \"orders\"");
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
    assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
    let time = line["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_service_version_and_class() {
    let up = Upstream::start("orders").await;
    let gw = Gw::start(&config(up.addr)).await;
    for _ in 0..3 {
        assert_eq!(gw.get("/orders").await.0, StatusCode::OK);
    }
    assert_eq!(gw.get("/nowhere").await.0, StatusCode::NOT_FOUND);
    let (status, text) = gw.admin("GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "# TYPE bulkhead_gateway_requests_total counter",
        "bulkhead_gateway_requests_total{service=\"orders\",version=\"blue\",code=\"2xx\"} 3",
        "bulkhead_gateway_requests_total{service=\"\",version=\"\",code=\"4xx\"} 1",
        "# TYPE bulkhead_gateway_request_duration_seconds histogram",
        "bulkhead_gateway_request_duration_seconds_bucket{service=\"orders\",version=\"blue\",le=\"+Inf\"} 3",
        "bulkhead_gateway_request_duration_seconds_count{service=\"orders\",version=\"blue\"} 3",
        "bulkhead_gateway_upstream_errors_total{service=\"orders\",kind=\"connect\"} 0",
        "bulkhead_gateway_config_generation 1",
        "bulkhead_gateway_spans_dropped_total 0",
        "# TYPE bulkhead_gateway_open_connections gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Buckets are cumulative.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.starts_with("bulkhead_gateway_request_duration_seconds_bucket{service=\"orders\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    gw.admin_json("PUT", "/services/orders/selector", r#"{"version":"blue"}"#)
        .await;
    assert_eq!(gw.metric("bulkhead_gateway_config_generation").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_whole_file_or_nothing() {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let dir = test_support::TempDir::new("gw-reload");
    let file = dir.join("gateway.yaml");
    let write = |version: &str, extra: &str| {
        std::fs::write(
            &file,
            format!(
                "listeners: [{{address: 127.0.0.1:0}}]
routes: [{{prefix: /orders, service: orders}}]
services:
  orders:
    endpoints:
      - {{address: {}, labels: {{version: blue}}}}
      - {{address: {}, labels: {{version: green}}}}
    selector: {{version: {version}}}
{extra}",
                blue.addr, green.addr
            ),
        )
        .unwrap();
    };
    write("blue", "");
    let text = std::fs::read_to_string(&file).unwrap();
    let gw = Gw::start_with(
        &text,
        Options {
            config_path: Some(file.clone()),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(gw.get("/orders").await.1, "blue");
    write("green", "");
    let answer = gw.admin_json("POST", "/reload", "").await;
    assert_eq!(answer["generation"], 2);
    assert_eq!(gw.get("/orders").await.1, "green");

    write("blue", "  oops: [\n");
    let (status, body) = gw.admin("POST", "/reload", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = serde_json::from_str::<Value>(&body).unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.starts_with(&format!("{}:", file.display())),
        "{error}"
    );
    write("blue", "    oops: 1\n");
    let (status, body) = gw.admin("POST", "/reload", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body.contains("gateway.yaml:9: unknown service field `oops`"),
        "{body}"
    );
    assert_eq!(
        gw.get("/orders").await.1,
        "green",
        "a bad file changes nothing"
    );
    assert_eq!(gw.admin_json("GET", "/state", "").await["generation"], 2);
}
