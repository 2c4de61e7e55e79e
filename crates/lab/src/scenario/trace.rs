//! Scenario `trace`: "How do you trace a request across 6 services?"
//!
//! One request is made to fail four services deep and another to be slow,
//! by faults injected into the live services through their `/admin/faults`
//! (with the lab's admin token, cleared afterwards). From the `x-trace-id`
//! the ingress returned, `bulkhead trace` shows the waterfall, the critical
//! path, the root cause and the bottleneck; every hop's log lines are read
//! from `DIR/logs` by that id; the gateway's counters give the error rate
//! that showed it. The three are set side by side on this one incident.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::live::{self, Counts, Injected, SETTLE, strings};
use super::{Lab, Report, ScenarioError};

/// Latency injected into the slow service: far above a lab hop's few milliseconds.
const SLOW_MS: u64 = 400;
/// Requests sent while the failure is injected, so the metric has more than one.
const FAILING_REQUESTS: usize = 5;
/// The service name of the gateway's own spans.
const GATEWAY_SERVICE: &str = "bulkhead-gateway";

pub fn run(lab: &mut Lab, report: &mut Report) -> Result<(), ScenarioError> {
    let services = live::services(lab)?;
    let root = services
        .iter()
        .find(|s| !s.public_paths.is_empty())
        .ok_or_else(|| ScenarioError::Missing {
            what: "public service".into(),
            detail: "no live service has a public route".into(),
        })?;
    let route = root.public_paths[0].clone();
    let collector = lab.address("collector_query")?;
    let token = live::admin_token(lab)?;
    let addr_of = |name: &str| {
        services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.addr.clone())
            .ok_or_else(|| ScenarioError::Missing {
                what: format!("live service {name}"),
                detail: "lab.json has no process for it".into(),
            })
    };

    // The chain as the live lab answers it, not as the files say.
    let (_, _, healthy) = live::eventually(&format!("a 200 answer on {route}"), SETTLE, || {
        live::get_ingress(lab, &route)
            .ok()
            .filter(|(status, _, _)| *status == 200)
    })?;
    let chain = live::deepest_chain(&healthy);
    report.evidence("route", &route);
    report.evidence("call_chain", &chain);
    report.check(
        "a request crosses six services",
        chain.len() >= 6,
        format!("{route}: {}", chain.join(" -> ")),
    );
    if chain.len() < 4 {
        return Err(ScenarioError::Failed {
            what: "the lab's longest call chain".into(),
            detail: format!(
                "{} is {} services deep; the scenario fails the fourth: start the lab with --services 6 or more",
                chain.join(" -> "),
                chain.len()
            ),
        });
    }
    let failing = chain[3].clone();
    let slow = if chain.len() > 4 {
        chain[chain.len() - 1].clone()
    } else {
        chain[1].clone()
    };
    report.evidence(
        "injected",
        json!({
            "failing": {"service": failing, "depth": 4, "faults": {"error_rate": 1.0}},
            "slow": {"service": slow, "faults": {"latency_ms": SLOW_MS}},
            "through": "PUT /admin/faults on the running services (bearer token DIR/admin-token)",
        }),
    );

    // 1. The failure, four hops deep.
    let prometheus_before = lab
        .address("prometheus")
        .ok()
        .and_then(|address| prometheus_count(&address, &errors_query(&failing)));
    let before = Counts::read(lab)?;
    let fault = Injected::new(
        &failing,
        &addr_of(&failing)?,
        &token,
        &json!({"error_rate": 1.0}),
    )?;
    let mut answers = Vec::new();
    for _ in 0..FAILING_REQUESTS {
        answers.push(live::get_ingress(lab, &route)?);
    }
    let during = Counts::read(lab)?.since(&before);
    let cleared_at = Instant::now();
    let cleared = fault.clear();
    let (recovered, _, _) = live::get_ingress(lab, &route)?;
    let recovery_ms = cleared_at.elapsed().as_millis();
    report.check(
        "the failure is cleared",
        cleared && recovered == 200,
        format!("faults of {failing} cleared: {cleared}; the next request answered {recovered}"),
    );
    let (status, failed_id, body) = answers[0].clone();
    let origin = body["error"]["origin"]["service"]
        .as_str()
        .unwrap_or_default();
    report.check(
        "the ingress answers the failure",
        answers.iter().all(|(s, _, _)| *s >= 500) && origin == failing,
        format!(
            "statuses {:?}; error.origin {origin:?}",
            answers.iter().map(|a| a.0).collect::<Vec<_>>()
        ),
    );

    // 2. The slow request.
    let fault = Injected::new(
        &slow,
        &addr_of(&slow)?,
        &token,
        &json!({"latency_ms": SLOW_MS}),
    )?;
    let started = Instant::now();
    let (slow_status, slow_id, slow_body) = live::get_ingress(lab, &route)?;
    let slow_ms = started.elapsed().as_millis();
    let slow_cleared = fault.clear();
    report.check(
        "the slow request answers, slowly",
        slow_status == 200 && slow_ms >= u128::from(SLOW_MS) && slow_cleared,
        format!("{slow_status} in {slow_ms} ms; faults of {slow} cleared: {slow_cleared}"),
    );

    // 3. Traces: wait for every hop's spans, then read them as an operator would.
    live::await_trace(&collector, &failed_id, live::expected_spans(&body))?;
    live::await_trace(&collector, &slow_id, live::expected_spans(&slow_body))?;
    let failed_trace = trace(lab, report, &collector, &failed_id)?;
    let slow_trace = trace(lab, report, &collector, &slow_id)?;
    let root_cause = &failed_trace.analysis["root_causes"][0];
    let blamed = root_cause["service"].as_str().unwrap_or_default();
    let propagated = services_only(&strings(&root_cause["propagated_through"]));
    report.check(
        "the trace names the root cause",
        blamed == failing,
        format!(
            "root cause {blamed} ({}), propagated through {}",
            root_cause["message"].as_str().unwrap_or_default(),
            propagated.join(", ")
        ),
    );
    let bottleneck = &slow_trace.analysis["bottlenecks"][0];
    let critical = services_only(
        &slow_trace.analysis["critical_path"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["service"].as_str().map(String::from))
            .collect::<Vec<_>>(),
    );
    report.check(
        "the trace names the bottleneck",
        bottleneck["service"] == slow.as_str() && critical.contains(&slow),
        format!(
            "bottleneck {} ({:.0}% of the critical path)",
            bottleneck["service"],
            bottleneck["share"].as_f64().unwrap_or(0.0) * 100.0
        ),
    );

    // 4. Logs: every hop's lines for the failed request's trace id.
    let logs = live::log_lines(&lab.dir, &failed_id);
    let missing: Vec<&String> = chain[..4]
        .iter()
        .filter(|s| !logs.contains_key(s.as_str()))
        .collect();
    report.check(
        "every hop logged the trace id",
        missing.is_empty(),
        format!(
            "{} processes logged {failed_id}; missing: {missing:?}",
            logs.len()
        ),
    );
    let failing_line = logs
        .get(&failing)
        .and_then(|lines| lines.last())
        .cloned()
        .unwrap_or_default();

    // 5. The metric: the gateway's 5xx share per service while the fault was on.
    let (requests, errors) = during.service(&failing);
    let rate = if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    };
    let erroring: Vec<String> = during
        .0
        .keys()
        .map(|(service, _)| service.clone())
        .filter(|s| during.service(s).1 > 0)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    report.check(
        "the gateway's error rate showed the failing service",
        rate >= 0.5,
        format!("{failing}: {errors} of {requests} requests answered 5xx"),
    );
    let prometheus = prometheus_errors(lab, &failing, prometheus_before, errors);

    report.evidence(
        "failed_request",
        json!({"status": status, "x-trace-id": failed_id, "error": body["error"]}),
    );
    report.evidence(
        "failed_trace",
        json!({
            "trace_id": failed_id,
            "spans": failed_trace.analysis["span_count"],
            "services": failed_trace.analysis["service_count"],
            "root_cause": root_cause,
            "waterfall": failed_trace.waterfall,
        }),
    );
    report.evidence(
        "slow_trace",
        json!({
            "trace_id": slow_id,
            "ms": slow_ms,
            "critical_path": critical,
            "critical_path_ms": slow_trace.analysis["critical_path_nano"].as_u64().unwrap_or(0) / 1_000_000,
            "bottleneck": bottleneck,
            "waterfall": slow_trace.waterfall,
        }),
    );
    report.evidence(
        "logs",
        logs.iter()
            .map(|(name, lines)| {
                (
                    name.clone(),
                    json!({"lines": lines.len(), "last": lines.last()}),
                )
            })
            .collect::<BTreeMap<_, _>>(),
    );
    report.evidence("gateway_counts_during_failure", during.to_json());
    report.evidence(
        "error_rate",
        json!({"service": failing, "rate": rate, "requests": requests, "failed": errors}),
    );
    if let Some(p) = &prometheus {
        report.evidence("prometheus_5xx", p);
    }
    report.evidence("recovery_ms", recovery_ms);

    let hops = chain[..4].join(" -> ");
    report.answers.what_breaks = vec![
        format!(
            "GET {route} answered {status}: {failing} failed 4 services deep ({hops}), and every caller above it answered 502 in turn"
        ),
        format!(
            "a second request took {slow_ms} ms: {slow} added {SLOW_MS} ms, the bottleneck of its critical path ({})",
            critical.join(" -> ")
        ),
    ];
    report.answers.who_is_impacted = vec![
        format!(
            "every request through {route}: it crosses {} services ({})",
            chain.len(),
            chain.join(" -> ")
        ),
        format!(
            "the gateway counted 5xx on {} while the fault was on: every caller of {failing} failed with it",
            erroring.join(", ")
        ),
    ];
    report.answers.how_fast_we_roll_back = vec![
        format!(
            "the fault was cleared through {failing}'s /admin/faults, and the next request answered {recovered} {recovery_ms} ms later"
        ),
        format!(
            "knowing the root cause from one trace id is what makes the rollback targeted: only {failing} needs to move"
        ),
    ];
    report.answers.how_we_monitor = vec![
        format!(
            "metrics: the gateway's bulkhead_gateway_requests_total{{code=\"5xx\"}} gave {failing} an error rate of {:.0}%{}; but {} services erred at once, so the metric says that something broke and where it hurts, not where it started",
            rate * 100.0,
            prometheus.as_ref().map_or(String::new(), |p| format!(
                " (Prometheus: `{}` went from {} to {})",
                p["query"].as_str().unwrap_or_default(),
                p["before"],
                p["after"]
            )),
            erroring.len()
        ),
        format!(
            "traces: `bulkhead trace {failed_id} --collector {collector}` names {blamed} as the root cause (propagated up through {}, each via the gateway), and the slow trace {slow_id} names {slow} the bottleneck: where it started and where the time went",
            propagated.join(", ")
        ),
        format!(
            "logs: `grep {failed_id} {}/logs/*.log` gives {} processes' lines for that one request; {failing}'s says {}: what happened at that hop, found through the trace id",
            lab.dir.display(),
            logs.len(),
            message_of(&failing_line)
        ),
        "together: the metric alerts, the trace locates, the log explains".to_string(),
    ];
    Ok(())
}

/// What `bulkhead trace ID` gave: its analysis and its waterfall.
struct Traced {
    analysis: Value,
    waterfall: String,
}

fn trace(
    lab: &Lab,
    report: &mut Report,
    collector: &str,
    id: &str,
) -> Result<Traced, ScenarioError> {
    let analysis = lab.run_json(report, &["trace", id, "--json", "--collector", collector])?;
    let ran = lab.run(
        report,
        &["trace", id, "--width", "80", "--collector", collector],
    )?;
    if ran.exit != 0 {
        return Err(ran.failed());
    }
    Ok(Traced {
        analysis,
        waterfall: ran.stdout,
    })
}

/// What a JSON log line of a request says: its status and fault, or the line itself.
fn message_of(line: &str) -> String {
    match serde_json::from_str::<Value>(line) {
        Ok(v) if v["status"].is_u64() => {
            let mut text = format!("status {}", v["status"]);
            for key in ["fault", "error", "level"] {
                if let Some(value) = v[key].as_str() {
                    text.push_str(&format!(", {key} {value}"));
                }
            }
            text
        }
        _ => line.chars().take(160).collect(),
    }
}

/// Names in order with the gateway's hops and repeats left out: the services a path crosses.
fn services_only(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if name != GATEWAY_SERVICE && out.last() != Some(name) {
            out.push(name.clone());
        }
    }
    out
}

/// The failing service's 5xx answers the gateway counted since the lab started,
/// as the lab's Prometheus last scraped them (0 before the first one).
fn prometheus_count(address: &str, query: &str) -> Option<f64> {
    let url = format!(
        "{address}/api/v1/query?query={}",
        http_client::encode(query)
    );
    let answer = live::get(&url, Duration::from_secs(5)).ok()?;
    let json: Value = serde_json::from_slice(&answer.body).ok()?;
    if json["status"] != "success" {
        return None;
    }
    Some(
        json["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
    )
}

/// The PromQL query of a service's 5xx count at the gateway.
fn errors_query(service: &str) -> String {
    format!("sum(bulkhead_gateway_requests_total{{service=\"{service}\",code=\"5xx\"}})")
}

/// Waits until the lab's Prometheus (when it runs one) has scraped `errors`
/// more 5xx answers of `service` than `before`.
fn prometheus_errors(lab: &Lab, service: &str, before: Option<f64>, errors: u64) -> Option<Value> {
    let address = lab.address("prometheus").ok()?;
    let before = before?;
    let query = errors_query(service);
    live::eventually("prometheus", Duration::from_secs(10), || {
        let after = prometheus_count(&address, &query)?;
        (after >= before + errors as f64)
            .then(|| json!({"query": query, "before": before, "after": after}))
    })
    .ok()
}
