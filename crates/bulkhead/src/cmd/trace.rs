//! `bulkhead trace`: reads a trace, or searches them, through the
//! collector's query API (any Jaeger-compatible one works).

use crate::args::{self, Exit, Format};
use crate::output;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde_json::Value as Json;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TraceArgs {
    #[command(subcommand)]
    command: Option<TraceCommand>,
    /// The trace id (32 hex digits, as in logs and traceparent headers).
    id: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
    /// Width of the waterfall in columns.
    #[arg(long, value_name = "N", default_value_t = 100)]
    width: usize,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// The collector's query API (any Jaeger-compatible query API works too).
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:16686",
        global = true
    )]
    collector: String,
    /// Output format (markdown fences the table for a comment).
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
    /// Same as --format json.
    #[arg(long, global = true, conflicts_with = "format")]
    json: bool,
}

impl CommonArgs {
    fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }
}

#[derive(Debug, Subcommand)]
enum TraceCommand {
    /// Find traces of a service: slow ones, failed ones, by operation or attribute.
    ///
    /// Lists the most recent matching traces with their root operation,
    /// duration, span count and errors; `bulkhead trace ID` shows one.
    ///
    /// Example: bulkhead trace search --service checkout --min-duration 500ms --error
    Search(SearchArgs),
}

#[derive(Debug, Args)]
struct SearchArgs {
    /// The service that has a matching span.
    #[arg(long)]
    service: String,
    /// Only spans of this operation (span name).
    #[arg(long)]
    operation: Option<String>,
    /// Only spans at least this long (250us, 100ms, 1.5s, 2m).
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    min_duration: Option<Duration>,
    /// Only spans at most this long.
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    max_duration: Option<Duration>,
    /// Only spans that failed (status Error, or HTTP status >= 500).
    #[arg(long)]
    error: bool,
    /// Only spans with this attribute, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// Only traces from this far back (30m, 1h, 2d).
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    lookback: Option<Duration>,
    /// At most this many traces, most recent first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

pub fn run(args: TraceArgs) -> Result<Exit> {
    match (args.command, args.id) {
        (Some(TraceCommand::Search(search)), _) => trace_search(&args.common, search),
        (None, Some(id)) => trace_show(&args.common, &id, args.width),
        (None, None) => {
            bail!("give a trace id (bulkhead trace ID) or a subcommand (bulkhead trace search)")
        }
    }
}

fn trace_show(common: &CommonArgs, id: &str, width: usize) -> Result<Exit> {
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{id:?} is not a trace id: expected up to 32 hex digits");
    }
    let (status, body) = get(&common.collector, &format!("/api/traces/{id}"))?;
    if status == 404 {
        eprintln!("trace {id} not found at {}", common.collector);
        return Ok(Exit::No);
    }
    let json = api_json(status, &body, &common.collector)?;
    let Some(trace) = json.get("data").and_then(|d| d.get(0)) else {
        bail!("{}: the answer holds no trace", common.collector);
    };
    let spans = telemetry::jaeger::spans(trace);
    let trace = traces::assemble(spans);
    let analysis = traces::analyze(&trace);
    if common.format() == Format::Json {
        output::print_json(&analysis)?;
    } else {
        let mut text = traces::render_waterfall(&trace, &analysis, width.max(40));
        text.push('\n');
        text.push_str(&traces::render_service_table(&analysis));
        text.push('\n');
        text.push_str(&traces::root_cause_line(&analysis));
        if !text.ends_with('\n') {
            text.push('\n');
        }
        output::print(&fence(text, common.format()))?;
    }
    Ok(Exit::Ran)
}

fn trace_search(common: &CommonArgs, args: SearchArgs) -> Result<Exit> {
    let mut query = vec![
        ("service".to_string(), args.service.clone()),
        ("limit".to_string(), args.limit.to_string()),
    ];
    if let Some(op) = &args.operation {
        query.push(("operation".into(), op.clone()));
    }
    for (flag, value) in [
        ("minDuration", &args.min_duration),
        ("maxDuration", &args.max_duration),
        ("lookback", &args.lookback),
    ] {
        if let Some(v) = value {
            // Microseconds: every Jaeger-compatible API reads Go's `us`, not every one reads `d`.
            query.push((flag.into(), format!("{}us", v.as_micros())));
        }
    }
    let mut tags = serde_json::Map::new();
    for tag in &args.tags {
        let Some((k, v)) = tag.split_once('=') else {
            bail!("--tag {tag}: expected KEY=VALUE");
        };
        tags.insert(k.to_string(), Json::from(v));
    }
    if args.error {
        tags.insert("error".into(), Json::from("true"));
    }
    if !tags.is_empty() {
        query.push(("tags".into(), Json::Object(tags).to_string()));
    }
    let path = format!(
        "/api/traces?{}",
        query
            .iter()
            .map(|(k, v)| format!("{k}={}", http_client::encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    );
    let (status, body) = get(&common.collector, &path)?;
    let json = api_json(status, &body, &common.collector)?;
    let rows: Vec<Json> = json
        .get("data")
        .and_then(Json::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(summary)
        .collect();
    if common.format() == Format::Json {
        output::print_json(&rows)?;
        return Ok(Exit::Ran);
    }
    if rows.is_empty() {
        eprintln!("no traces of {} match", args.service);
        return Ok(Exit::Ran);
    }
    let mut text = format!(
        "{:<32}  {:<40}  {:>10}  {:>5}  {:>6}\n",
        "TRACE", "ROOT", "DURATION", "SPANS", "ERRORS"
    );
    for r in &rows {
        let root = format!(
            "{} {}",
            r["root_service"].as_str().unwrap_or(""),
            r["root_operation"].as_str().unwrap_or("")
        );
        text.push_str(&format!(
            "{:<32}  {:<40}  {:>10}  {:>5}  {:>6}\n",
            r["trace_id"].as_str().unwrap_or(""),
            truncate(&root, 40),
            traces::format_duration(r["duration_us"].as_u64().unwrap_or(0) * 1000),
            r["spans"],
            r["errors"],
        ));
    }
    output::print(&fence(text, common.format()))?;
    Ok(Exit::Ran)
}

/// One search result for the table and `--json`.
fn summary(trace: &Json) -> Json {
    let spans = telemetry::jaeger::spans(trace);
    let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0);
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id).collect();
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none_or(|p| !ids.contains(&p)))
        .min_by_key(|s| s.start_unix_nano);
    serde_json::json!({
        "trace_id": trace.get("traceID").and_then(Json::as_str).unwrap_or(""),
        "root_service": root.map_or("", |s| s.service.as_str()),
        "root_operation": root.map_or("", |s| s.name.as_str()),
        "start_unix_micros": start / 1000,
        "duration_us": (end - start) / 1000,
        "spans": spans.len(),
        "errors": spans.iter().filter(|s| traces::is_error(s)).count(),
    })
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width - 1).collect();
    s.push('…');
    s
}

/// A table as it prints in `format`: fenced for markdown, so columns stay aligned.
fn fence(text: String, format: Format) -> String {
    if format == Format::Markdown {
        format!("```\n{text}```\n")
    } else {
        text
    }
}

fn api_json(status: u16, body: &[u8], base: &str) -> Result<Json> {
    let json: Json = serde_json::from_slice(body)
        .with_context(|| format!("{base} answered {status} with a body that is not JSON"))?;
    if status != 200 {
        let message = json
            .pointer("/errors/0/msg")
            .and_then(Json::as_str)
            .unwrap_or("no message");
        bail!("{base} answered {status}: {message}");
    }
    Ok(json)
}

/// A blocking HTTP/1.1 GET; returns the status and body.
fn get(base: &str, path: &str) -> Result<(u16, Vec<u8>)> {
    let url = http_client::Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .map_err(|e| anyhow::anyhow!("--collector: {e}"))?;
    // The HTTP error names the URL and its cause in its message.
    let response = http_client::request(
        "GET",
        &url,
        &[("Accept", "application/json".to_string())],
        b"",
        Duration::from_secs(60),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((response.status, response.body))
}
