//! The query API: Jaeger's HTTP JSON API (`/api/services`,
//! `/api/services/{service}/operations`, `/api/operations`, `/api/traces`,
//! `/api/traces/{id}`, `/api/dependencies`), our analysis and service-stats
//! endpoints, `/metrics` and `/healthz`.
//!
//! SQLite calls block, so store reads leave the runtime's other tasks to
//! another worker: on a multi-threaded runtime the read runs right here in
//! `block_in_place` (the answer is written by the thread that read it, with no
//! hand-off to another thread and back, each a wake-up that a busy machine
//! can keep waiting); elsewhere on the blocking pool.

use crate::attrs::QueryString as _;
use crate::jaeger;
use crate::json::hex_decode;
use crate::otlp;
use crate::store::{StoredSpan, TraceQuery, now_ms, now_ns};
use crate::{Body, Shared, full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// Search results default to this many traces (as in Jaeger).
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1500;
/// Candidate spans a search reads before it stops.
const SCAN_LIMIT: usize = 200_000;

pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the query API only answers GET",
        );
    }
    let path = req.uri().path().to_string();
    let params = parse_query(req.uri().query().unwrap_or(""));
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(http_client::decode)
        .collect();
    let answer = move |shared: &Shared| {
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        route(shared, &segments, &params)
    };
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    let result = if multi_thread {
        Ok(tokio::task::block_in_place(|| answer(&shared)))
    } else {
        let s = shared.clone();
        tokio::task::spawn_blocking(move || answer(&s)).await
    };
    match result {
        Ok(Ok(response)) => response,
        Ok(Err((status, message))) => error(status, &message),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the query failed"),
    }
}

type Answer = Result<Response<Body>, (StatusCode, String)>;

fn route(shared: &Shared, segments: &[&str], params: &[(String, String)]) -> Answer {
    let store_error = |e: crate::StoreError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let reader = &shared.reader;
    match segments {
        ["healthz"] => Ok(full(StatusCode::OK, "ok\n")),
        ["metrics"] => {
            let mut r = full(StatusCode::OK, shared.metrics.render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(r)
        }
        ["api", "services"] => {
            let services = reader.services().map_err(store_error)?;
            let n = services.len();
            Ok(ok(jaeger::envelope(json!(services), n, None)))
        }
        ["api", "services", service, "operations"] => {
            let mut names: Vec<String> = reader
                .operations(service)
                .map_err(store_error)?
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            names.dedup();
            let n = names.len();
            Ok(ok(jaeger::envelope(json!(names), n, None)))
        }
        ["api", "operations"] => {
            let service = param(params, "service").ok_or((
                StatusCode::BAD_REQUEST,
                "parameter service is required".into(),
            ))?;
            let kind = param(params, "spanKind");
            let ops: Vec<Json> = reader
                .operations(service)
                .map_err(store_error)?
                .into_iter()
                .filter_map(|(name, k)| {
                    let k = crate::attrs::kind_name(k).unwrap_or("");
                    (kind.is_none_or(|want| want.is_empty() || want == k))
                        .then(|| json!({"name": name, "spanKind": k}))
                })
                .collect();
            let n = ops.len();
            Ok(ok(jaeger::envelope(json!(ops), n, None)))
        }
        ["api", "traces", id] => {
            let id = trace_id(id)?;
            let spans = reader.trace(&id).map_err(store_error)?;
            if spans.is_empty() {
                return Ok(not_found_trace());
            }
            Ok(ok(jaeger::envelope(
                json!([jaeger::trace(&id, &spans)]),
                1,
                None,
            )))
        }
        ["api", "traces"] => {
            let query = trace_query(params)?;
            let ids = reader
                .find_traces(&query, &shared.options.indexed_tags, SCAN_LIMIT)
                .map_err(store_error)?;
            let mut traces = Vec::with_capacity(ids.len());
            for id in &ids {
                let spans = reader.trace(id).map_err(store_error)?;
                if !spans.is_empty() {
                    traces.push(jaeger::trace(id, &spans));
                }
            }
            let n = traces.len();
            Ok(ok(jaeger::envelope(Json::Array(traces), n, None)))
        }
        ["api", "dependencies"] => {
            let end_ms = int_param(params, "endTs")?.unwrap_or_else(now_ms);
            let lookback_ms = int_param(params, "lookback")?.unwrap_or(24 * 3600 * 1000);
            let deps = reader
                .dependencies(
                    (end_ms - lookback_ms).saturating_mul(1_000_000),
                    end_ms.saturating_mul(1_000_000),
                )
                .map_err(store_error)?;
            let data: Vec<Json> = deps
                .iter()
                .map(|d| {
                    json!({"parent": d.parent, "child": d.child, "callCount": d.calls,
                           "errorCount": d.errors, "source": "bulkhead"})
                })
                .collect();
            let n = data.len();
            Ok(ok(jaeger::envelope(Json::Array(data), n, None)))
        }
        ["api", "bulkhead", "analysis", id] => {
            let id = trace_id(id)?;
            let spans = reader.trace(&id).map_err(store_error)?;
            if spans.is_empty() {
                return Ok(not_found_trace());
            }
            let trace = traces::assemble(spans.iter().map(to_analysis_span).collect());
            let analysis = traces::analyze(&trace);
            let value = serde_json::to_value(&analysis)
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Ok(ok(value))
        }
        ["api", "bulkhead", "service-stats"] => {
            let service = param(params, "service").filter(|s| !s.is_empty()).ok_or((
                StatusCode::BAD_REQUEST,
                "parameter service is required".into(),
            ))?;
            let lookback_ms = int_param(params, "lookback")?.ok_or((
                StatusCode::BAD_REQUEST,
                "parameter lookback (milliseconds) is required".into(),
            ))?;
            let since = now_ns().saturating_sub(lookback_ms.saturating_mul(1_000_000));
            let rows = reader.server_spans(service, since).map_err(store_error)?;
            Ok(ok(service_stats(service, rows)))
        }
        _ => Err((
            StatusCode::NOT_FOUND,
            "no such endpoint (see docs/tracing.md)".into(),
        )),
    }
}

/// The service-stats answer for `(duration_ns, error)` rows.
pub fn service_stats(service: &str, rows: Vec<(i64, bool)>) -> Json {
    let spans = rows.len();
    let errors = rows.iter().filter(|(_, e)| *e).count();
    let mut durations: Vec<i64> = rows.into_iter().map(|(d, _)| d).collect();
    durations.sort_unstable();
    let pct = |p: f64| -> f64 {
        if durations.is_empty() {
            return 0.0;
        }
        let rank = ((p * durations.len() as f64).ceil() as usize).clamp(1, durations.len());
        durations[rank - 1] as f64 / 1e6
    };
    json!({
        "service": service,
        "spans": spans,
        "errors": errors,
        "error_rate": if spans == 0 { 0.0 } else { errors as f64 / spans as f64 },
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    })
}

/// A stored span as the analysis crate sees it.
pub fn to_analysis_span(stored: &StoredSpan) -> traces::Span {
    let s = &stored.span;
    let id8 = |b: &[u8]| <[u8; 8]>::try_from(b).ok().map(traces::SpanId);
    let status = s.status.clone().unwrap_or_default();
    traces::Span {
        trace_id: traces::TraceId(<[u8; 16]>::try_from(s.trace_id.as_slice()).unwrap_or([0; 16])),
        span_id: id8(&s.span_id).unwrap_or(traces::SpanId([0; 8])),
        parent_span_id: id8(&s.parent_span_id).filter(|p| p.0 != [0; 8]),
        service: stored.service.clone(),
        name: s.name.clone(),
        kind: match s.kind {
            otlp::kind::INTERNAL => traces::SpanKind::Internal,
            otlp::kind::SERVER => traces::SpanKind::Server,
            otlp::kind::CLIENT => traces::SpanKind::Client,
            otlp::kind::PRODUCER => traces::SpanKind::Producer,
            otlp::kind::CONSUMER => traces::SpanKind::Consumer,
            _ => traces::SpanKind::Unspecified,
        },
        start_unix_nano: s.start_time_unix_nano,
        end_unix_nano: s.end_time_unix_nano,
        status: match status.code {
            otlp::status::OK => traces::StatusCode::Ok,
            otlp::status::ERROR => traces::StatusCode::Error,
            _ => traces::StatusCode::Unset,
        },
        status_message: status.message,
        attributes: s
            .attributes
            .iter()
            .filter_map(|kv| {
                Some((
                    kv.key.clone(),
                    kv.value.as_ref()?.value.as_ref()?.to_query_string(),
                ))
            })
            .collect(),
    }
}

fn trace_query(params: &[(String, String)]) -> Result<TraceQuery, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let service = param(params, "service")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("parameter service is required".into()))?
        .to_string();
    let mut tags = Vec::new();
    if let Some(text) = param(params, "tags").filter(|t| !t.is_empty()) {
        let obj: serde_json::Map<String, Json> = serde_json::from_str(text)
            .map_err(|e| bad(format!("tags must be a JSON object of strings: {e}")))?;
        for (k, v) in obj {
            let v = match v {
                Json::String(s) => s,
                other => other.to_string(),
            };
            tags.push((k, v));
        }
    }
    for (k, v) in params.iter().filter(|(k, _)| k == "tag") {
        let (key, value) = v
            .split_once(':')
            .ok_or_else(|| bad(format!("{k}={v}: expected tag=key:value")))?;
        tags.push((key.to_string(), value.to_string()));
    }
    let duration = |name: &str| -> Result<Option<i64>, (StatusCode, String)> {
        param(params, name)
            .filter(|t| !t.is_empty())
            .map(|t| duration_ns(t).map_err(|e| bad(format!("{name}={t}: {e}"))))
            .transpose()
    };
    let end_ns = match int_param(params, "end")? {
        Some(us) => us.saturating_mul(1000),
        None => i64::MAX,
    };
    let start_ns = match int_param(params, "start")? {
        Some(us) => us.saturating_mul(1000),
        None => match duration("lookback")? {
            Some(l) => now_ns().saturating_sub(l),
            None => 0,
        },
    };
    let limit =
        int_param(params, "limit")?.map_or(DEFAULT_LIMIT, |l| (l.max(1) as usize).min(MAX_LIMIT));
    let errors_only = tags.iter().any(|(k, v)| k == "error" && v == "true");
    Ok(TraceQuery {
        service,
        operation: param(params, "operation")
            .filter(|o| !o.is_empty() && *o != "all")
            .map(str::to_string),
        tags,
        min_duration_ns: duration("minDuration")?,
        max_duration_ns: duration("maxDuration")?,
        start_ns,
        end_ns,
        errors_only,
        limit,
    })
}

/// Nanoseconds in a duration as Jaeger's query parameters write them (`250us`,
/// `100ms`, `1.5s`, `2m`, `1h30m`): Go's grammar, which [`yaml::parse_duration`]
/// reads as a subset of the one duration grammar.
fn duration_ns(text: &str) -> Result<i64, String> {
    let d = yaml::parse_duration(text).map_err(|e| e.to_string())?;
    i64::try_from(d.as_nanos()).map_err(|_| format!("{text:?} is too long a duration"))
}

fn trace_id(text: &str) -> Result<[u8; 16], (StatusCode, String)> {
    // Jaeger accepts ids without leading zeros.
    let padded = format!("{text:0>32}");
    hex_decode(&padded)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or((
            StatusCode::BAD_REQUEST,
            format!("{text:?} is not a trace id (up to 32 hex digits)"),
        ))
}

fn not_found_trace() -> Response<Body> {
    let body = json!({"data": null, "total": 0, "limit": 0, "offset": 0,
                      "errors": [{"code": 404, "msg": "trace not found"}]});
    json_response(StatusCode::NOT_FOUND, &body)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn int_param(params: &[(String, String)], name: &str) -> Result<Option<i64>, (StatusCode, String)> {
    param(params, name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse().map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("{name}={v}: expected an integer"),
                )
            })
        })
        .transpose()
}

pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                http_client::decode(&k.replace('+', " ")),
                http_client::decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn json_response(status: StatusCode, value: &Json) -> Response<Body> {
    let mut r = full(status, format!("{value}\n"));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(value: Json) -> Response<Body> {
    json_response(StatusCode::OK, &value)
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"data": null, "total": 0, "limit": 0, "offset": 0,
                "errors": [{"code": status.as_u16(), "msg": message}]}),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_parse_like_go() {
        for (text, ns) in [
            ("250us", 250_000),
            ("100ms", 100_000_000),
            ("1.5s", 1_500_000_000),
            ("2m", 120_000_000_000),
            ("0s", 0),
        ] {
            assert_eq!(super::duration_ns(text), Ok(ns), "{text}");
        }
        for bad in ["", "ms", "10", "1x", "-1s", "200000d"] {
            let err = super::duration_ns(bad).expect_err(bad);
            assert!(err.contains("duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn service_stats_percentiles_and_error_rate() {
        let rows: Vec<(i64, bool)> = (1..=100).map(|ms| (ms * 1_000_000, ms > 95)).collect();
        let v = super::service_stats("orders", rows);
        assert_eq!(v["spans"], 100);
        assert_eq!(v["errors"], 5);
        assert_eq!(v["error_rate"], 0.05);
        assert_eq!(v["p50_ms"], 50.0);
        assert_eq!(v["p99_ms"], 99.0);
        let empty = super::service_stats("idle", Vec::new());
        assert_eq!(empty["error_rate"], 0.0);
        assert_eq!(empty["spans"], 0);
    }

    #[test]
    fn query_strings_decode() {
        let p = super::parse_query("service=a%20b&tags=%7B%22k%22%3A%22v%22%7D&x=1+2");
        assert_eq!(p[0], ("service".into(), "a b".into()));
        assert_eq!(p[1].1, r#"{"k":"v"}"#);
        assert_eq!(p[2].1, "1 2");
    }
}
