//! The W3C trace-context test service protocol end to end.
//!
//! The official harness (w3c/trace-context, `test/test.py`) is Python with
//! aiohttp; this fake plays its part with the same cases at its strictest
//! level: it sends `POST /test` with the case's headers and a list of callback
//! URLs, and checks the `traceparent` / `tracestate` that arrive on each callback.

use super::support::{Service, json_response, request, serve};
use http_body_util::BodyExt as _;
use hyper::HeaderMap;
use lab_service::Config;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use telemetry::parse_traceparent;

const TRACE: &str = "12345678901234567890123456789012";
const PARENT: &str = "1234567890123456";

#[derive(Clone, Debug)]
struct Callback {
    headers: HeaderMap,
    body: Value,
}

struct Harness {
    addr: SocketAddr,
    callbacks: Arc<Mutex<HashMap<String, Callback>>>,
    next: AtomicUsize,
}

impl Harness {
    async fn start() -> Harness {
        let callbacks = Arc::new(Mutex::new(HashMap::new()));
        let sink = Arc::clone(&callbacks);
        let addr = serve(move |req: hyper::Request<hyper::body::Incoming>| {
            let sink = Arc::clone(&sink);
            async move {
                let id = req
                    .uri()
                    .path()
                    .trim_start_matches("/callback/")
                    .to_string();
                let headers = req.headers().clone();
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let body = serde_json::from_slice(&bytes).expect("callback body is JSON");
                sink.lock().unwrap().insert(id, Callback { headers, body });
                json_response(&Value::Null)
            }
        })
        .await;
        Harness {
            addr,
            callbacks,
            next: AtomicUsize::new(0),
        }
    }

    /// Asks the service to call back `count` times with the given `arguments`.
    async fn exchange(
        &self,
        service: &Service,
        headers: &[(&str, &str)],
        count: usize,
        arguments: Value,
    ) -> Vec<Callback> {
        let scope = self.next.fetch_add(1, Ordering::Relaxed);
        let ids: Vec<String> = (0..count).map(|i| format!("{scope}.{i}")).collect();
        let actions: Vec<Value> = ids
            .iter()
            .map(|id| json!({ "url": format!("http://{}/callback/{id}", self.addr), "arguments": arguments }))
            .collect();
        let (status, _, body) = request(
            "POST",
            service.url("/test"),
            headers,
            Some(Value::Array(actions)),
        )
        .await;
        assert_eq!(status, 200, "{headers:?}: {body}");
        // The service answers /test only after its callbacks were answered.
        let callbacks = self.callbacks.lock().unwrap();
        ids.iter()
            .map(|id| {
                callbacks
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| panic!("no callback for {headers:?}"))
            })
            .collect()
    }
}

/// The callback's single, valid, version-00 traceparent: (trace id, parent id).
fn traceparent(callback: &Callback) -> (String, String) {
    let values: Vec<_> = callback.headers.get_all("traceparent").iter().collect();
    assert_eq!(values.len(), 1, "one traceparent expected: {values:?}");
    let text = values[0].to_str().unwrap();
    assert!(text.len() == 55 && text.starts_with("00-"), "{text}");
    let parsed = parse_traceparent(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
    (parsed.trace_id.to_string(), parsed.parent_id.to_string())
}

fn tracestate(callback: &Callback) -> Option<String> {
    let values: Vec<&str> = callback
        .headers
        .get_all("tracestate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trace {
    /// The harness's trace id continues.
    Kept,
    /// A new trace id was started.
    New,
}

/// Request headers, what happens to the trace, the tracestate forwarded.
type Case<'a> = (Vec<(&'a str, String)>, Trace, Option<&'a str>);

#[tokio::test]
async fn every_harness_case() {
    let service = Service::start(Config::new("w3c", "1")).await;
    let harness = Harness::start().await;
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let tp0 = format!("00-{TRACE}-{PARENT}-00");
    let with = str::to_string;
    let bars = |range: std::ops::RangeInclusive<u32>| {
        range
            .map(|i| format!("bar{i:02}={i:02}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let value: String = (0x20u8..=0x7e)
        .filter(|&c| c != b',' && c != b'=')
        .map(char::from)
        .collect();
    let all_chars = format!("{key}={value}");
    let all_chars_vendor = format!("{key}@a-z0-9_-*/={value}");
    let z256 = format!("{}=1", "z".repeat(256));
    let z257 = format!("{}=1", "z".repeat(257));
    let tenant = format!("{}@{}=1", "t".repeat(241), "v".repeat(14));
    let long_tenant = format!("{}@v=1", "t".repeat(242));
    let long_system = format!("t@{}=1", "v".repeat(15));
    let foo_z256 = format!("foo=1,{z256}");
    let foo_tenant = format!("foo=1,{tenant}");
    let foo_long_tenant = format!("foo=1,{long_tenant}");
    let foo_long_system = format!("foo=1,{long_system}");
    let thirty_two = bars(1..=32);
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        (vec![], Trace::New, None),
        (vec![("traceparent", tp.clone())], Trace::Kept, None),
        (vec![("traceparent", format!("00-{}1-{PARENT}-01", &TRACE[..31])), ("traceparent", tp.clone())], Trace::New, None),
        (vec![("trace-parent", tp.clone())], Trace::New, None),
        (vec![("trace.parent", tp.clone())], Trace::New, None),
        (vec![("TraceParent", tp.clone())], Trace::Kept, None),
        (vec![("TRACEPARENT", tp.clone())], Trace::Kept, None),
        (vec![("traceparent", format!("{tp}."))], Trace::New, None),
        (vec![("traceparent", format!("{tp}-what-the-future-will-be-like"))], Trace::New, None),
        (vec![("traceparent", format!("cc-{TRACE}-{PARENT}-01"))], Trace::Kept, None),
        (vec![("traceparent", format!("cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"))], Trace::Kept, None),
        (vec![("traceparent", format!("cc-{TRACE}-{PARENT}-01.what-the-future-will-be-like"))], Trace::New, None),
        (vec![("traceparent", format!("ff-{TRACE}-{PARENT}-01"))], Trace::New, None),
        (vec![("traceparent", format!(".0-{TRACE}-{PARENT}-01"))], Trace::New, None),
        (vec![("traceparent", format!("0.-{TRACE}-{PARENT}-01"))], Trace::New, None),
        (vec![("traceparent", format!("000-{TRACE}-{PARENT}-01"))], Trace::New, None),
        (vec![("traceparent", format!("0000-{TRACE}-{PARENT}-01"))], Trace::New, None),
        (vec![("traceparent", format!("0-{TRACE}-{PARENT}-01"))], Trace::New, None),
        (vec![("traceparent", format!("00-{}-{PARENT}-01", "0".repeat(32)))], Trace::New, None),
        (vec![("traceparent", format!("00-.{}-{PARENT}-01", &TRACE[1..]))], Trace::New, None),
        (vec![("traceparent", format!("00-{}.-{PARENT}-01", &TRACE[..31]))], Trace::New, None),
        (vec![("traceparent", format!("00-{TRACE}3-{PARENT}-01"))], Trace::New, None),
        (vec![("traceparent", format!("00-{}-{PARENT}-01", &TRACE[..31]))], Trace::New, None),
        (vec![("traceparent", format!("00-{TRACE}-0000000000000000-01"))], Trace::New, None),
        (vec![("traceparent", format!("00-{TRACE}-.{}-01", &PARENT[1..]))], Trace::New, None),
        (vec![("traceparent", format!("00-{TRACE}-{}.-01", &PARENT[..15]))], Trace::New, None),
        (vec![("traceparent", format!("00-{TRACE}-{PARENT}7-01"))], Trace::New, None),
        (vec![("traceparent", format!("00-{TRACE}-{}-01", &PARENT[..15]))], Trace::New, None),
        (vec![("traceparent", format!("00-{TRACE}-{PARENT}-.0"))], Trace::New, None),
        (vec![("traceparent", format!("00-{TRACE}-{PARENT}-0."))], Trace::New, None),
        (vec![("traceparent", format!("00-{TRACE}-{PARENT}-001"))], Trace::New, None),
        (vec![("traceparent", format!("00-{TRACE}-{PARENT}-1"))], Trace::New, None),
        (vec![("traceparent", format!(" {tp}"))], Trace::Kept, None),
        (vec![("traceparent", format!("\t{tp}"))], Trace::Kept, None),
        (vec![("traceparent", format!("{tp} "))], Trace::Kept, None),
        (vec![("traceparent", format!("{tp}\t"))], Trace::Kept, None),
        (vec![("traceparent", format!("\t {tp} \t"))], Trace::Kept, None),
        // tracestate
        (vec![("tracestate", with("foo=1"))], Trace::New, None),
        (vec![("tracestate", with("foo=1,bar=2"))], Trace::New, None),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1,bar=2"))], Trace::Kept, Some("foo=1,bar=2")),
        (vec![("traceparent", format!("ff-{TRACE}-{PARENT}-01")), ("tracestate", with("foo=1"))], Trace::New, None),
        (vec![("traceparent", tp0.clone()), ("trace-state", with("foo=1"))], Trace::Kept, None),
        (vec![("traceparent", tp0.clone()), ("trace.state", with("foo=1"))], Trace::Kept, None),
        (vec![("traceparent", tp0.clone()), ("TrAcEsTaTe", with("foo=1"))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with(""))], Trace::Kept, None),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1")), ("tracestate", with(""))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("")), ("tracestate", with("foo=1"))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1,bar=2")), ("tracestate", with("rojo=1,congo=2")), ("tracestate", with("baz=3"))],
            Trace::Kept, Some("foo=1,bar=2,rojo=1,congo=2,baz=3")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1,foo=1"))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1,foo=2"))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1")), ("tracestate", with("foo=1"))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1")), ("tracestate", with("foo=2"))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", all_chars.clone())], Trace::Kept, Some(&all_chars)),
        (vec![("traceparent", tp0.clone()), ("tracestate", all_chars_vendor.clone())], Trace::Kept, Some(&all_chars_vendor)),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1 \t , \t bar=2, \t baz=3"))], Trace::Kept, Some("foo=1,bar=2,baz=3")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1\t \t,\t \tbar=2,\t \tbaz=3"))], Trace::Kept, Some("foo=1,bar=2,baz=3")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with(" foo=1"))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("\tfoo=1"))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1 "))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1\t"))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("\t foo=1 \t"))], Trace::Kept, Some("foo=1")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo =1"))], Trace::Kept, None),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("FOO=1"))], Trace::Kept, None),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo.bar=1"))], Trace::Kept, None),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo@=1,bar=2"))], Trace::Kept, Some("foo@=1,bar=2")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("@foo=1,bar=2"))], Trace::Kept, None),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo@@bar=1,bar=2"))], Trace::Kept, Some("foo@@bar=1,bar=2")),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo@bar@baz=1,bar=2"))], Trace::Kept, Some("foo@bar@baz=1,bar=2")),
        (vec![("traceparent", tp0.clone()), ("tracestate", bars(1..=10)), ("tracestate", bars(11..=20)), ("tracestate", bars(21..=30)), ("tracestate", bars(31..=32))],
            Trace::Kept, Some(&thirty_two)),
        (vec![("traceparent", tp0.clone()), ("tracestate", bars(1..=10)), ("tracestate", bars(11..=20)), ("tracestate", bars(21..=30)), ("tracestate", bars(31..=33))],
            Trace::Kept, None),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1")), ("tracestate", z256.clone())], Trace::Kept, Some(&foo_z256)),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1")), ("tracestate", z257.clone())], Trace::Kept, None),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1")), ("tracestate", tenant.clone())], Trace::Kept, Some(&foo_tenant)),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1")), ("tracestate", long_tenant.clone())], Trace::Kept, Some(&foo_long_tenant)),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=1")), ("tracestate", long_system.clone())], Trace::Kept, Some(&foo_long_system)),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=bar=baz"))], Trace::Kept, None),
        (vec![("traceparent", tp0.clone()), ("tracestate", with("foo=,bar=3"))], Trace::Kept, None),
    ];
    for (headers, trace, expect_state) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let callback = &harness.exchange(&service, &headers, 1, json!([])).await[0];
        let (trace_id, parent_id) = traceparent(callback);
        match trace {
            Trace::Kept => assert_eq!(trace_id, TRACE, "{headers:?}"),
            Trace::New => {
                for (_, value) in &headers {
                    assert!(!value.contains(&trace_id), "{headers:?} kept {trace_id}");
                }
                assert_ne!(&trace_id[..31], &TRACE[..31], "{headers:?}");
            }
        }
        assert_ne!(parent_id, PARENT, "{headers:?}: a new span id is sent");
        assert_eq!(
            tracestate(callback).as_deref(),
            *expect_state,
            "{headers:?}"
        );
        assert_eq!(callback.body, json!([]), "{headers:?}");
    }
    // The service logged one request per case, and why it ignored a context.
    let logged = service.requests_logged();
    assert_eq!(logged.len(), cases.len());
    assert!(
        logged
            .iter()
            .any(|l| l["context_rejected"] == "traceparent: version ff is invalid")
    );
}

#[tokio::test]
async fn multiple_callbacks_share_the_trace_with_new_span_ids() {
    let service = Service::start(Config::new("w3c", "1")).await;
    let harness = Harness::start().await;
    let tp = format!("00-{TRACE}-{PARENT}-01");
    for headers in [
        vec![("traceparent", tp.as_str())],
        vec![],
        vec![(
            "traceparent",
            "00-00000000000000000000000000000000-1234567890123456-01",
        )],
    ] {
        let callbacks = harness.exchange(&service, &headers, 3, json!([])).await;
        let ids: Vec<(String, String)> = callbacks.iter().map(traceparent).collect();
        let traces: std::collections::BTreeSet<&str> =
            ids.iter().map(|(t, _)| t.as_str()).collect();
        let parents: std::collections::BTreeSet<&str> =
            ids.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(traces.len(), 1, "{headers:?}");
        assert_eq!(parents.len(), 3, "{headers:?}");
        if headers.first().is_some_and(|(_, v)| *v == tp) {
            assert!(traces.contains(TRACE));
        }
        assert!(!traces.contains("00000000000000000000000000000000"));
    }
}

#[tokio::test]
async fn arguments_are_posted_as_given() {
    let service = Service::start(Config::new("w3c", "1")).await;
    let harness = Harness::start().await;
    let nested = json!([{ "url": "http://127.0.0.1:9/callback/x", "arguments": [] }]);
    let callback = &harness.exchange(&service, &[], 1, nested.clone()).await[0];
    assert_eq!(callback.body, nested);
    assert_eq!(callback.headers["content-type"], "application/json");
    // A broken request is a 400, not a crash.
    for bad in [json!(42), json!([{ "arguments": [] }])] {
        let (status, _, _) = request("POST", service.url("/test"), &[], Some(bad)).await;
        assert_eq!(status, 400);
    }
}
