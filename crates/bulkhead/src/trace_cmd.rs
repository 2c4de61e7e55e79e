//! `bulkhead collector` (runs the OTLP collector and its query API) and
//! `bulkhead trace` (reads a trace or searches them through that API).

use crate::output;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde_json::Value as Json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct CollectorArgs {
    /// Where the span store lives (created if missing): DIR/spans.db, SQLite in WAL mode.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// OTLP/HTTP: POST /v1/traces, protobuf or JSON, gzip accepted (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318")]
    otlp_http: SocketAddr,
    /// OTLP/gRPC (h2c): TraceService/Export (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4317")]
    otlp_grpc: SocketAddr,
    /// Run without the OTLP/gRPC listener.
    #[arg(long)]
    no_grpc: bool,
    /// The query API: Jaeger's /api/..., /api/bulkhead/..., /metrics (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:16686")]
    query: SocketAddr,
    /// Delete spans stored longer ago than this (0 keeps them until --max-store-mb).
    #[arg(long, value_name = "N", default_value_t = 72)]
    retention_hours: u64,
    /// Delete the oldest spans while the store's live data is larger than this (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 10_240)]
    max_store_mb: u64,
    /// Largest export request accepted, compressed and after gunzip (413 past it).
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_body_mb: usize,
    /// Spans that may wait for the store writer; past it exports get 429 / UNAVAILABLE.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    queue_spans: usize,
    /// Export requests read and decoded at once; past it exports get 429 / UNAVAILABLE.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_inflight: usize,
    /// Span attribute keys with a tag index, comma-separated (other keys are
    /// still searchable, by reading the service's spans in the time range).
    #[arg(long, value_name = "KEYS", value_delimiter = ',')]
    index_tags: Option<Vec<String>>,
    /// fsync every group commit, so acknowledged spans survive power loss too
    /// (without it they survive the collector being killed, not the machine).
    #[arg(long)]
    fsync: bool,
}

pub fn collector(args: CollectorArgs) -> Result<ExitCode> {
    let mut options = collector::Options::local(args.data.clone());
    options.otlp_http = args.otlp_http;
    options.otlp_grpc = (!args.no_grpc).then_some(args.otlp_grpc);
    options.query = args.query;
    options.retention = collector::Retention {
        max_age_ms: (args.retention_hours > 0).then(|| args.retention_hours as i64 * 3_600_000),
        max_bytes: (args.max_store_mb > 0).then(|| args.max_store_mb as i64 * 1024 * 1024),
    };
    if args.max_body_mb == 0 || args.queue_spans == 0 || args.max_inflight == 0 {
        bail!("--max-body-mb, --queue-spans and --max-inflight must be at least 1");
    }
    options.max_body_bytes = args.max_body_mb << 20;
    options.queue_spans = args.queue_spans;
    options.max_inflight = args.max_inflight;
    if let Some(keys) = args.index_tags {
        options.indexed_tags = keys.into_iter().filter(|k| !k.is_empty()).collect();
    }
    options.fsync = args.fsync;
    let mut printed = Ok(());
    collector::run(options, |c| {
        let mut lines = format!("otlp-http listening on http://{}\n", c.otlp_http);
        if let Some(grpc) = c.otlp_grpc {
            lines.push_str(&format!("otlp-grpc listening on http://{grpc}\n"));
        }
        lines.push_str(&format!("query listening on http://{}\n", c.query));
        printed = output::print(&lines);
    })
    .with_context(|| format!("running the collector on {}", args.data.display()))?;
    printed?;
    Ok(ExitCode::SUCCESS)
}

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
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
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
    #[arg(long, value_name = "DURATION")]
    min_duration: Option<String>,
    /// Only spans at most this long.
    #[arg(long, value_name = "DURATION")]
    max_duration: Option<String>,
    /// Only spans that failed (status Error, or HTTP status >= 500).
    #[arg(long)]
    error: bool,
    /// Only spans with this attribute, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// Only traces from this far back (1h, 30m, 2d is 48h).
    #[arg(long, value_name = "DURATION")]
    lookback: Option<String>,
    /// At most this many traces, most recent first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

pub fn trace(args: TraceArgs) -> Result<ExitCode> {
    match (args.command, args.id) {
        (Some(TraceCommand::Search(search)), _) => trace_search(&args.common, search),
        (None, Some(id)) => trace_show(&args.common, &id, args.width),
        (None, None) => {
            bail!("give a trace id (bulkhead trace ID) or a subcommand (bulkhead trace search)")
        }
    }
}

fn trace_show(common: &CommonArgs, id: &str, width: usize) -> Result<ExitCode> {
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{id:?} is not a trace id: expected up to 32 hex digits");
    }
    let (status, body) = get(&common.collector, &format!("/api/traces/{id}"))?;
    if status == 404 {
        eprintln!("trace {id} not found at {}", common.collector);
        return Ok(ExitCode::from(1));
    }
    let json = api_json(status, &body, &common.collector)?;
    let Some(trace) = json.get("data").and_then(|d| d.get(0)) else {
        bail!("{}: the answer holds no trace", common.collector);
    };
    let spans = telemetry::jaeger::spans(trace);
    let trace = traces::assemble(spans);
    let analysis = traces::analyze(&trace);
    if common.json {
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
        output::print(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn trace_search(common: &CommonArgs, args: SearchArgs) -> Result<ExitCode> {
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
            let v = if flag == "lookback" {
                days_to_hours(v)
            } else {
                v.clone()
            };
            query.push((flag.into(), v));
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
    if common.json {
        output::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no traces of {} match", args.service);
        return Ok(ExitCode::SUCCESS);
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
    output::print(&text)?;
    Ok(ExitCode::SUCCESS)
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

/// `2d` is not a Go duration; the API takes hours.
fn days_to_hours(text: &str) -> String {
    match text.strip_suffix('d').and_then(|n| n.parse::<u64>().ok()) {
        Some(days) => format!("{}h", days * 24),
        None => text.to_string(),
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
