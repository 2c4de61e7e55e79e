//! Traces from the collector's query API (any Jaeger-compatible one): search
//! by service, error and minimum duration, and one trace's waterfall with its
//! critical path, root cause, bottlenecks and service graph (the `traces` crate's analysis).

use crate::Ctx;
use crate::graph::Graph;
use crate::svg;
use crate::web::{Fail, Page, Query, enc, esc, table};
use serde::Serialize;
use serde_json::{Value as Json, json};
use std::fmt::Write as _;
use std::time::Duration;

/// One trace in a search result.
#[derive(Debug, Serialize)]
pub struct TraceRow {
    pub trace_id: String,
    pub root: String,
    pub duration: String,
    pub duration_nano: u64,
    pub spans: usize,
    pub errors: usize,
}

fn get(collector: &str, path: &str) -> Result<(u16, Json), String> {
    let url = http_client::Url::parse(&format!("{}{path}", collector.trim_end_matches('/')))?;
    let response = http_client::request("GET", &url, &[], b"", Duration::from_secs(5))
        .map_err(|e| format!("collector: {e}"))?;
    let json = serde_json::from_slice(&response.body).unwrap_or(Json::Null);
    Ok((response.status, json))
}

fn analyse(trace: &Json) -> (traces::Trace, traces::Analysis) {
    let trace = traces::assemble(telemetry::jaeger::spans(trace));
    let analysis = traces::analyze(&trace);
    (trace, analysis)
}

fn row(trace: &Json) -> TraceRow {
    let (assembled, analysis) = analyse(trace);
    let root = assembled
        .roots()
        .first()
        .map(|&i| &assembled.spans()[i])
        .map_or("-".to_string(), |s| format!("{} {}", s.service, s.name));
    TraceRow {
        trace_id: trace
            .get("traceID")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
        root,
        duration: traces::format_duration(analysis.duration_nano),
        duration_nano: analysis.duration_nano,
        spans: analysis.span_count,
        errors: analysis.error_count,
    }
}

fn find(collector: &str, params: &[(&str, String)]) -> Result<Vec<TraceRow>, String> {
    let path = format!(
        "/api/traces?{}",
        params
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&")
    );
    let (status, json) = get(collector, &path)?;
    if status != 200 {
        return Err(format!("collector answered {status} to {path}"));
    }
    Ok(json
        .get("data")
        .and_then(Json::as_array)
        .map(|traces| traces.iter().map(row).collect())
        .unwrap_or_default())
}

/// The service's latest traces.
pub fn recent(collector: &str, service: &str) -> Result<Vec<TraceRow>, String> {
    find(
        collector,
        &[("service", service.to_string()), ("limit", "10".into())],
    )
}

pub fn rows_table(rows: &[TraceRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!(
                    "<a href=\"/traces/{}\">{}</a>",
                    enc(&r.trace_id),
                    esc(&r.trace_id)
                ),
                esc(&r.root),
                format!(
                    "<span data-sort=\"{}\">{}</span>",
                    r.duration_nano,
                    esc(&r.duration)
                ),
                r.spans.to_string(),
                r.errors.to_string(),
            ]
        })
        .collect();
    table(
        "traces",
        &["TRACE", "ROOT", "DURATION", "SPANS", "ERRORS"],
        &rows,
    )
}

fn needs_collector() -> Fail {
    Fail::BadRequest(
        "this console was started without --collector URL: traces are not available".into(),
    )
}

pub fn search(ctx: &Ctx, graph: &Graph, query: &Query) -> Result<Page, Fail> {
    query.only(&["service", "error", "min_duration", "limit"])?;
    let service = query.get("service");
    let error = match query.get("error") {
        None | Some("0" | "false" | "no") => false,
        Some("1" | "true" | "yes" | "on") => true,
        Some(other) => return Err(Fail::BadRequest(format!("error={other}: expected 1 or 0"))),
    };
    let min = query
        .get("min_duration")
        .map(|d| {
            yaml::parse_duration(d).map_err(|e| Fail::BadRequest(format!("min_duration={d}: {e}")))
        })
        .transpose()?;
    let limit: usize = match query.get("limit") {
        None => 20,
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=1500).contains(n))
            .ok_or_else(|| Fail::BadRequest(format!("limit={l}: expected 1 to 1500")))?,
    };
    let mut html = format!(
        "<form action=\"/traces\"><input name=\"service\" value=\"{}\" placeholder=\"service\" aria-label=\"service\" list=\"service-names\">\
         <label><input type=\"checkbox\" name=\"error\" value=\"1\"{}> errors only</label>\
         <input name=\"min_duration\" value=\"{}\" placeholder=\"min duration (250ms)\" aria-label=\"minimum duration\"> <button>Search</button></form>\
         <datalist id=\"service-names\">{}</datalist>",
        esc(service.unwrap_or("")),
        if error { " checked" } else { "" },
        esc(query.get("min_duration").unwrap_or("")),
        graph
            .fleet
            .services
            .iter()
            .take(2000)
            .map(|s| format!("<option value=\"{}\">", esc(&s.name)))
            .collect::<String>(),
    );
    let collector = ctx
        .options
        .collector
        .as_deref()
        .ok_or_else(needs_collector)?;
    let Some(service) = service else {
        html.push_str("<p>Pick a service to search its traces.</p>");
        return Ok(Page::new("Traces", html, json!({"traces": []})));
    };
    let mut params = vec![
        ("service", service.to_string()),
        ("limit", limit.to_string()),
    ];
    if let Some(min) = min {
        params.push(("minDuration", format!("{}us", min.as_micros())));
    }
    if error {
        params.push(("tags", json!({"error": "true"}).to_string()));
    }
    let rows = find(collector, &params).map_err(Fail::Upstream)?;
    html.push_str(&rows_table(&rows));
    Ok(Page::new(
        format!("Traces of {service}"),
        html,
        json!({"traces": rows}),
    ))
}

pub fn show(ctx: &Ctx, id: &str, query: &Query) -> Result<Page, Fail> {
    query.only(&[])?;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Fail::BadRequest(format!(
            "{id:?} is not a trace id (1 to 32 hex digits)"
        )));
    }
    let logs = ctx
        .options
        .logs
        .as_deref()
        .map(|dir| super::logs::search(dir, id));
    let has_lines = matches!(&logs, Some(Ok(found)) if !found.lines.is_empty());
    let (logs_html, logs_json) = log_lines(logs);
    let trace = match ctx.options.collector.as_deref() {
        None if ctx.options.logs.is_none() => return Err(needs_collector()),
        None => None,
        Some(collector) => {
            let (status, json) =
                get(collector, &format!("/api/traces/{id}")).map_err(Fail::Upstream)?;
            json.get("data")
                .and_then(|d| d.get(0))
                .filter(|_| status == 200)
                .cloned()
        }
    };
    let Some(trace) = trace else {
        if !has_lines {
            return Err(Fail::not_found(
                format!("the collector has no trace {id}, and no log line names it"),
                "",
            ));
        }
        let html = format!(
            "<p class=\"note\">{}</p>{logs_html}",
            if ctx.options.collector.is_some() {
                "The collector has no spans of this trace; its log lines follow."
            } else {
                "Start the console with --collector URL to see the trace's spans; its log lines follow."
            }
        );
        return Ok(Page::new(
            format!("Trace {id}"),
            html,
            json!({"trace_id": id, "analysis": null, "logs": logs_json}),
        ));
    };
    let trace = &trace;
    let (_, analysis) = analyse(trace);
    let mut html = format!(
        "<p class=\"summary\">{} spans, {} services, {} errors, {} long; critical path {}.</p><p class=\"root-cause\">{}</p>",
        analysis.span_count,
        analysis.service_count,
        analysis.error_count,
        traces::format_duration(analysis.duration_nano),
        traces::format_duration(analysis.critical_path_nano),
        esc(&traces::root_cause_line(&analysis)),
    );
    let _ = write!(
        html,
        "<div class=\"scroll\">{}</div>",
        svg::waterfall(&analysis)
    );
    html.push_str("<h2>Bottlenecks</h2>");
    let rows: Vec<Vec<String>> = analysis
        .bottlenecks
        .iter()
        .map(|b| {
            vec![
                esc(&b.service),
                esc(&b.operation),
                traces::format_duration(b.critical_nano),
                format!("{:.0}%", b.share * 100.0),
            ]
        })
        .collect();
    html.push_str(&table(
        "bottlenecks",
        &["SERVICE", "OPERATION", "ON THE CRITICAL PATH", "SHARE"],
        &rows,
    ));
    html.push_str("<h2>Service graph</h2>");
    let mut nodes: Vec<String> = analysis
        .services
        .iter()
        .map(|s| s.service.clone())
        .collect();
    nodes.sort();
    let edges: Vec<(String, String)> = analysis
        .dependencies
        .iter()
        .map(|d| (d.parent.clone(), d.child.clone()))
        .collect();
    let _ = write!(
        html,
        "<div class=\"scroll\">{}</div>",
        svg::dependency_graph(&nodes, &edges, None)
    );
    html.push_str(&logs_html);
    Ok(Page::new(
        format!("Trace {id}"),
        html,
        json!({"trace_id": id, "analysis": analysis, "logs": logs_json}),
    ))
}

/// The trace's log lines section, and its JSON.
fn log_lines(found: Option<Result<super::logs::Found, String>>) -> (String, Json) {
    let mut html = String::from("<h2>Log lines</h2>");
    let found = match found {
        None => {
            html.push_str(
                "<p>Start the console with --logs DIR (the lab's logs folder) to see the trace's log lines.</p>",
            );
            return (html, Json::Null);
        }
        Some(Err(e)) => {
            let _ = write!(html, "<p class=\"error\">{}</p>", esc(&e));
            return (html, json!({"error": e}));
        }
        Some(Ok(found)) => found,
    };
    let rows: Vec<Vec<String>> = found
        .lines
        .iter()
        .map(|l| {
            vec![
                esc(&l.ts),
                esc(&l.service),
                esc(&l.level),
                esc(&l.event),
                esc(&l.file),
                format!("<code>{}</code>", esc(&l.line)),
            ]
        })
        .collect();
    html.push_str(&table(
        "logs",
        &["TIME", "SERVICE", "LEVEL", "EVENT", "FILE", "LINE"],
        &rows,
    ));
    if !found.truncated_files.is_empty() || found.skipped_files > 0 || found.more {
        let _ = write!(
            html,
            "<p class=\"note\">Searched the last {} MiB of each log file{}{}{}.</p>",
            super::logs::TAIL_BYTES >> 20,
            if found.truncated_files.is_empty() {
                String::new()
            } else {
                format!(
                    "; older lines of {} were not read",
                    esc(&found.truncated_files.join(", "))
                )
            },
            if found.skipped_files > 0 {
                format!("; {} older file(s) were not searched", found.skipped_files)
            } else {
                String::new()
            },
            if found.more {
                format!(
                    "; only the first {} lines are shown",
                    super::logs::MAX_LINES
                )
            } else {
                String::new()
            },
        );
    }
    (html, serde_json::to_value(&found).unwrap_or(Json::Null))
}
