//! `bulkhead collector`: runs the OTLP collector (OTLP/HTTP and OTLP/gRPC
//! in, the span store, Jaeger's query API out, forwarding to another OTLP
//! endpoint) until SIGTERM or Ctrl-C.

use crate::args::{self, Exit};
use crate::output;
use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Delete spans stored longer ago than this (0s keeps them until --max-store-mb).
    #[arg(long, value_name = "DURATION", default_value = "3d", value_parser = args::duration)]
    retention: Duration,
    #[arg(long, hide = true, value_parser = args::hours, conflicts_with = "retention")]
    retention_hours: Option<Duration>,
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
    /// Forward every committed export, as OTLP/HTTP protobuf, to this endpoint
    /// (Jaeger, Tempo, an OpenTelemetry Collector, another collector), e.g.
    /// http://tempo:4318 (`/v1/traces` is appended). Pair it with a short
    /// --retention to keep only a small local store.
    #[arg(long, value_name = "URL", value_parser = collector::ForwardOptions::new)]
    forward: Option<collector::ForwardOptions>,
    /// Request bodies waiting to be forwarded; past it exports are kept here
    /// but not forwarded, and counted in collector_forward_spans_dropped_total.
    #[arg(long, value_name = "N", default_value_t = 64, requires = "forward")]
    forward_queue_mb: usize,
    /// How long a body the forward target refuses or does not answer is retried
    /// (backoff from 100ms to 5s) before it is dropped and counted.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = args::duration, requires = "forward")]
    forward_retry_for: Duration,
}

pub fn run(args: CollectorArgs) -> Result<Exit> {
    let mut options = collector::Options::local(args.data.clone());
    options.otlp_http = args.otlp_http;
    options.otlp_grpc = (!args.no_grpc).then_some(args.otlp_grpc);
    options.query = args.query;
    let retention = args.retention_hours.unwrap_or(args.retention);
    options.retention = collector::Retention {
        max_age_ms: (!retention.is_zero())
            .then(|| i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)),
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
    if let Some(mut forward) = args.forward.clone() {
        forward.queue_bytes = args.forward_queue_mb.max(1) << 20;
        forward.retry_for = args.forward_retry_for;
        options.forward = Some(forward);
    }
    let mut printed = Ok(());
    collector::run(options, |c| {
        let mut lines = format!("otlp-http listening on http://{}\n", c.otlp_http);
        if let Some(grpc) = c.otlp_grpc {
            lines.push_str(&format!("otlp-grpc listening on http://{grpc}\n"));
        }
        lines.push_str(&format!("query listening on http://{}\n", c.query));
        if let Some(forward) = &args.forward {
            lines.push_str(&format!("forwarding to {}\n", forward.url));
        }
        printed = output::print(&lines);
    })
    .with_context(|| format!("running the collector on {}", args.data.display()))?;
    printed?;
    Ok(Exit::Ran)
}
