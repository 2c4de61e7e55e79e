//! `bench-collector`: OTLP ingest throughput and trace-by-id latency of
//! `bulkhead collector` (release build).
//!
//! Ingest: the collector runs pinned to one core (`taskset`, when present)
//! and keep-alive HTTP/1.1 clients post OTLP/HTTP protobuf requests of
//! `--batch` spans, each span with ten attributes, every request with fresh
//! trace ids. Reported: spans/s of wall time and spans per second of the
//! collector's own CPU time (utime + stime from /proc), which is the
//! per-core figure whatever the client costs the machine.
//!
//! Trace by id: a store of `--stored` spans is filled directly through the
//! store API (`collector::Writer`, the same code the writer thread runs, but
//! without HTTP, to save time), then a collector serves it and the client
//! times `GET /api/traces/{id}` for random stored traces, one request at a time.
//!
//! Baselines, in the same run (in this process, not pinned): the same span bytes
//! written by a minimal SQLite insert loop (one row per span keyed by trace
//! id, a cached prepared statement, WAL with `synchronous=NORMAL` as the
//! collector, a transaction per group as large as the collector's group
//! commits were on average) and appended to a plain file (one `write` per
//! group: the floor of any log-structured segment store). Both start from
//! spans already cut out of the request, so they cost neither HTTP nor
//! decoding; the ratio says what the collector's whole path costs against a
//! bare store write.
//! Every load loop is bounded by a count and a deadline; only loopback is used.

use collector::otlp::{
    AnyValue, ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans, Span, Value,
};
use prost::Message as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const USAGE: &str = "usage: cargo xtask bench-collector [--spans N] [--batch N] [--connections N] [--seconds S] [--stored N] [--lookups N] [--dir DIR] [--bulkhead PATH]

  --spans N        spans posted in the ingest run, at most (default 3000000)
  --batch N        spans per export request (default 512)
  --connections N  keep-alive client connections (default 4)
  --seconds S      time limit of the ingest run (default 60)
  --stored N       spans in the store for the trace-by-id run (default 10000000; 0 skips that run)
  --lookups N      trace-by-id requests timed (default 2000)
  --dir DIR        keep the filled store in DIR, and reuse it when it already holds --stored spans
  --bulkhead PATH  time this bulkhead binary instead of building the workspace's (to compare two builds)

Reports spans/s per core (spans / collector user+sys CPU seconds), the CPU per
span, and the same for two baselines run in the same run (same span bytes): a
minimal SQLite insert loop and a plain file append of the same span bytes.

Targets: >= 200,000 spans/s per core; trace-by-id p99 < 2 ms with 10 million spans stored.";

/// Spans per trace in both runs: a request through a dozen or so hops.
const TRACE_SPANS: usize = 16;
const SERVICES: [&str; 8] = [
    "frontend", "checkout", "cart", "payments", "shipping", "currency", "catalog", "ads",
];

struct Options {
    spans: usize,
    batch: usize,
    connections: usize,
    seconds: u64,
    stored: usize,
    lookups: usize,
    dir: Option<PathBuf>,
    bulkhead: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        spans: 3_000_000,
        batch: 512,
        connections: 4,
        seconds: 60,
        stored: 10_000_000,
        lookups: 2000,
        dir: None,
        bulkhead: None,
    };
    for (flag, value) in crate::flag_pairs(args, USAGE)? {
        match flag {
            "--spans" => o.spans = crate::count(flag, value)?,
            "--batch" => o.batch = crate::count(flag, value)?,
            "--connections" => o.connections = crate::count(flag, value)?,
            "--seconds" => o.seconds = crate::count(flag, value)? as u64,
            "--stored" => {
                o.stored = value.parse().map_err(|e| format!("{flag}: {e}"))?;
            }
            "--lookups" => o.lookups = crate::count(flag, value)?,
            "--dir" => o.dir = Some(PathBuf::from(value)),
            "--bulkhead" => o.bulkhead = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

/// Trace number `n`'s id: a scrambled half, so ids are spread over the
/// index as random W3C trace ids are, and `n` itself.
fn trace_id(n: u64) -> [u8; 16] {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mut id = [0; 16];
    id[..8].copy_from_slice(&z.to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

/// One export request of `n` spans of one service, in traces of [`TRACE_SPANS`]
/// numbered from `first_trace`; with `marker`, every trace id is [`MARKER`] and zeros.
fn request(first_trace: u64, n: usize, service: &str, marker: bool) -> ExportTraceServiceRequest {
    let base = 1_780_000_000_000_000_000u64 + first_trace * 1_000_000;
    let spans = (0..n)
        .map(|i| {
            let trace = first_trace + (i / TRACE_SPANS) as u64;
            let trace_id = if marker {
                let mut id = MARKER.to_vec();
                id.extend_from_slice(&[0; 8]);
                id
            } else {
                trace_id(trace).to_vec()
            };
            let in_trace = (i % TRACE_SPANS) as u64;
            let span_id = (in_trace + 1).to_be_bytes().to_vec();
            let parent = if in_trace == 0 {
                Vec::new()
            } else {
                in_trace.to_be_bytes().to_vec()
            };
            let start = base + in_trace * 1_000_000;
            Span {
                trace_id,
                span_id,
                parent_span_id: parent,
                name: format!("GET /api/v1/items/{{id}}/{}", i % 7),
                kind: if in_trace.is_multiple_of(2) { 2 } else { 3 },
                start_time_unix_nano: start,
                end_time_unix_nano: start + 3_000_000 + (i as u64 % 50) * 100_000,
                attributes: vec![
                    kv("http.request.method", Value::String("GET".into())),
                    kv("http.route", Value::String("/api/v1/items/{id}".into())),
                    kv(
                        "http.response.status_code",
                        Value::Int(if i % 97 == 0 { 503 } else { 200 }),
                    ),
                    kv(
                        "url.path",
                        Value::String(format!("/api/v1/items/{}", i * 7919 % 100_000)),
                    ),
                    kv(
                        "server.address",
                        Value::String(format!("{service}.shop.svc")),
                    ),
                    kv("server.port", Value::Int(8080)),
                    kv("network.protocol.version", Value::String("1.1".into())),
                    kv(
                        "user_agent.original",
                        Value::String("shop-client/2.3 (linux; amd64)".into()),
                    ),
                    kv(
                        "client.address",
                        Value::String(format!("10.1.{}.{}", i % 250, i % 200)),
                    ),
                    kv("app.request.bytes", Value::Int(512 + i as i64 % 4096)),
                ],
                ..Span::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::String(service.into())),
                    kv("service.version", Value::String("1.4.2".into())),
                    kv("host.name", Value::String(format!("{service}-7d9f8-abcde"))),
                ],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// A request body whose trace ids can be renewed in place: the offset of
/// every span's trace id, in span order.
struct Template {
    body: Vec<u8>,
    offsets: Vec<usize>,
}

const MARKER: [u8; 8] = [0x5a, 0xa5, 0x5a, 0xa5, 0x5a, 0xa5, 0x5a, 0xa5];

impl Template {
    fn new(batch: usize, service: &str) -> Template {
        let body = request(0, batch, service, true).encode_to_vec();
        let offsets = body
            .windows(8)
            .enumerate()
            .filter(|(_, w)| *w == MARKER)
            .map(|(i, _)| i)
            .collect();
        Template { body, offsets }
    }

    /// Request number `n`: traces numbered from `n` times the traces per request, new each call.
    fn render(&self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.body);
        let first = n * self.offsets.len().div_ceil(TRACE_SPANS) as u64;
        for (i, &at) in self.offsets.iter().enumerate() {
            let id = trace_id(first + (i / TRACE_SPANS) as u64);
            out[at..at + 16].copy_from_slice(&id);
        }
    }
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a collector; returns it with its OTLP/HTTP and query addresses.
fn start(bulkhead: &Path, data: &Path, pin: bool) -> Result<(Process, String, String), String> {
    let mut cmd = if pin && which("taskset") {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(bulkhead);
        c
    } else {
        Command::new(bulkhead)
    };
    cmd.arg("collector")
        .arg("--data")
        .arg(data)
        .args([
            "--otlp-http",
            "127.0.0.1:0",
            "--no-grpc",
            "--query",
            "127.0.0.1:0",
        ])
        .args(["--retention", "0s", "--max-store-mb", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Process(
        cmd.spawn()
            .map_err(|e| format!("starting the collector: {e}"))?,
    );
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = |prefix: &str| -> Result<String, String> {
        let line = lines
            .next()
            .ok_or("the collector exited before listening")?
            .map_err(|e| e.to_string())?;
        line.strip_prefix(prefix)
            .map(str::to_string)
            .ok_or_else(|| format!("unexpected line {line:?}"))
    };
    let http = addr("otlp-http listening on http://")?;
    let query = addr("query listening on http://")?;
    Ok((child, http, query))
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// A keep-alive HTTP/1.1 connection; `send` returns the status.
struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        Ok(Conn { reader, stream })
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream
            .write_all(head.as_bytes())
            .and_then(|()| self.stream.write_all(body))
            .map_err(|e| format!("sending: {e}"))?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = 0;
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().map_err(|_| format!("bad length {v:?}"))?;
            }
        }
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| e.to_string())?;
        Ok((status, body))
    }
}

/// The collector's user plus system CPU seconds so far.
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    crate::cpu_times(pid, false).map(|(user, sys)| user + sys)
}

fn metric(query: &str, name: &str) -> Result<f64, String> {
    let (_, body) = Conn::open(query)?.send("GET", "/metrics", "text/plain", b"")?;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| format!("metric {name} missing"))
}

struct Ingest {
    spans: usize,
    refused: usize,
    wall: Duration,
    cpu: f64,
    commits: f64,
    /// Wall seconds the writer thread spent in group commits.
    commit_seconds: f64,
}

fn ingest(bulkhead: &Path, o: &Options) -> Result<Ingest, String> {
    let dir = std::env::temp_dir().join(format!("bench-collector-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = (|| {
        let (collector, http, query) = start(bulkhead, &dir, true)?;
        let pid = collector.0.id();
        let requests = o.spans.div_ceil(o.batch);
        let next = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(o.seconds);
        let cpu_before = cpu_seconds(pid)?;
        let started = Instant::now();
        let workers: Vec<_> = (0..o.connections)
            .map(|w| {
                let http = http.clone();
                let next = next.clone();
                let refused = refused.clone();
                let template = Template::new(o.batch, SERVICES[w % SERVICES.len()]);
                std::thread::spawn(move || -> Result<usize, String> {
                    let mut conn = Conn::open(&http)?;
                    let mut body = Vec::new();
                    let mut sent = 0;
                    while Instant::now() < deadline {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= requests {
                            break;
                        }
                        template.render(n as u64, &mut body);
                        let (status, answer) =
                            conn.send("POST", "/v1/traces", "application/x-protobuf", &body)?;
                        match status {
                            200 => sent += 1,
                            429 | 503 => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            other => {
                                return Err(format!(
                                    "ingest answered {other}: {}",
                                    String::from_utf8_lossy(&answer)
                                ));
                            }
                        }
                    }
                    Ok(sent)
                })
            })
            .collect();
        let mut ok_requests = 0;
        for w in workers {
            ok_requests += w.join().map_err(|_| "a client thread panicked")??;
        }
        let wall = started.elapsed();
        let cpu = cpu_seconds(pid)? - cpu_before;
        let accepted = metric(&query, "collector_spans_accepted_total")? as usize;
        if accepted != ok_requests * o.batch {
            return Err(format!(
                "the collector counts {accepted} accepted spans but {} were acknowledged",
                ok_requests * o.batch
            ));
        }
        Ok(Ingest {
            spans: accepted,
            refused: refused.load(Ordering::Relaxed),
            wall,
            cpu,
            commits: metric(&query, "collector_store_commits_total")?,
            commit_seconds: metric(&query, "collector_store_commit_seconds_total")?,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// CPU seconds of the two baselines: the minimal SQLite insert loop, then the file append.
struct Baselines {
    sqlite: f64,
    append: f64,
    group: usize,
}

/// Writes `spans` spans, in groups of `group`, with the bytes of one request of
/// `batch` spans cycled and each span keyed by the trace id the clients sent it
/// under; returns the CPU seconds this process spent.
fn baselines(spans: usize, group: usize, batch: usize) -> Result<Baselines, String> {
    let body = request(0, batch, SERVICES[0], false).encode_to_vec();
    let blobs: Vec<bytes::Bytes> =
        collector::otlp::wire::ExportTraceServiceRequest::decode(body.as_slice())
            .map_err(|e| e.to_string())?
            .resource_spans
            .into_iter()
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect();
    let key = |k: usize| {
        let span_id = ((k % TRACE_SPANS) as u64 + 1).to_be_bytes();
        (trace_id((k / TRACE_SPANS) as u64), span_id)
    };
    let dir = std::env::temp_dir().join(format!("bench-collector-floor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pid = std::process::id();
    let result = (|| {
        let e = |e: rusqlite::Error| format!("baseline SQLite: {e}");
        let mut conn = rusqlite::Connection::open(dir.join("spans.db")).map_err(e)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(e)?;
        conn.execute_batch(
            "CREATE TABLE spans(id INTEGER PRIMARY KEY, trace_id BLOB NOT NULL, \
             span_id BLOB NOT NULL, span BLOB NOT NULL); \
             CREATE INDEX spans_trace ON spans(trace_id);",
        )
        .map_err(e)?;
        let before = cpu_seconds(pid)?;
        let mut written = 0;
        while written < spans {
            let n = group.min(spans - written);
            let tx = conn.transaction().map_err(e)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO spans(trace_id, span_id, span) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(e)?;
                for k in written..written + n {
                    let (trace, span) = key(k);
                    insert
                        .execute((&trace[..], &span[..], &blobs[k % blobs.len()][..]))
                        .map_err(e)?;
                }
            }
            tx.commit().map_err(e)?;
            written += n;
        }
        let sqlite = cpu_seconds(pid)? - before;
        drop(conn);
        let path = dir.join("spans.log");
        let mut file =
            std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let before = cpu_seconds(pid)?;
        let mut buf = Vec::new();
        let mut written = 0;
        while written < spans {
            let n = group.min(spans - written);
            buf.clear();
            for k in written..written + n {
                let (trace, span) = key(k);
                let blob = &blobs[k % blobs.len()];
                buf.extend_from_slice(&trace);
                buf.extend_from_slice(&span);
                buf.extend_from_slice(&(blob.len() as u32).to_le_bytes());
                buf.extend_from_slice(blob);
            }
            file.write_all(&buf)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            written += n;
        }
        let append = cpu_seconds(pid)? - before;
        Ok(Baselines {
            sqlite,
            append,
            group,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Fills `dir` with `stored` spans through the store API; returns the traces written.
fn fill(dir: &Path, stored: usize) -> Result<(u64, Duration), String> {
    let traces = stored.div_ceil(TRACE_SPANS) as u64;
    let started = Instant::now();
    let mut writer = collector::Writer::open(dir, false).map_err(|e| e.to_string())?;
    let indexed = collector::Options::local(dir.to_path_buf()).indexed_tags;
    let per_request = 512;
    let mut group = Vec::new();
    let mut written = 0;
    let mut last_report = Instant::now();
    while written < stored {
        let n = per_request.min(stored - written);
        let first_trace = (written / TRACE_SPANS) as u64;
        let service = SERVICES[(written / per_request) % SERVICES.len()];
        let prepared =
            collector::ingest::prepare(request(first_trace, n, service, false), &indexed);
        group.push(prepared.batch);
        written += n;
        if group.len() == 64 || written >= stored {
            let refs: Vec<_> = group.iter().collect();
            writer.write(&refs).map_err(|e| e.to_string())?;
            group.clear();
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("  {written} of {stored} spans stored ...");
            last_report = Instant::now();
        }
    }
    Ok((traces, started.elapsed()))
}

/// p50, p99 and max of some timed requests.
struct Latency {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Latency {
    fn of(mut times: Vec<Duration>) -> Result<Latency, String> {
        times.sort();
        let max = *times.last().ok_or("no requests timed")?;
        let pct =
            |p: f64| times[((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
        Ok(Latency {
            p50: pct(0.5),
            p99: pct(0.99),
            max,
        })
    }
}

struct Lookups {
    traces: Latency,
    /// `GET /healthz`, interleaved with the trace lookups: no store read.
    health: Latency,
    count: usize,
    store_bytes: u64,
    fill: Option<Duration>,
    /// Bytes the collector read from the disk (not the page cache) meanwhile.
    disk_read: u64,
}

/// `read_bytes` of /proc/PID/io: what the process made the disk read (0 when unknown).
fn disk_reads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("read_bytes: ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn lookups(bulkhead: &Path, o: &Options) -> Result<Lookups, String> {
    let (dir, temporary) = match &o.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("bench-collector-store-{}", std::process::id())),
            true,
        ),
    };
    let result = (|| {
        let existing = if dir.join(collector::store::DB_FILE).exists() {
            collector::Writer::open(&dir, false)
                .and_then(|w| w.reader().span_count())
                .map_err(|e| e.to_string())? as usize
        } else {
            0
        };
        let (traces, fill) = if existing == o.stored {
            eprintln!("reusing the {existing} spans in {}", dir.display());
            (o.stored.div_ceil(TRACE_SPANS) as u64, None)
        } else {
            if existing > 0 {
                return Err(format!(
                    "{} holds {existing} spans, not {}; use another --dir",
                    dir.display(),
                    o.stored
                ));
            }
            eprintln!(
                "filling the store with {} spans through the store API ...",
                o.stored
            );
            let (traces, took) = fill(&dir, o.stored)?;
            (traces, Some(took))
        };
        let store_bytes = collector::Writer::open(&dir, false)
            .map_err(|e| e.to_string())?
            .disk_bytes() as u64;
        let (collector, _, query) = start(bulkhead, &dir, false)?;
        let read_before = disk_reads(collector.0.id());
        let mut conn = Conn::open(&query)?;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut times = Vec::with_capacity(o.lookups);
        let mut health = Vec::with_capacity(o.lookups);
        let deadline = Instant::now() + Duration::from_secs(300);
        // A few untimed requests first: the page cache and the connection pool warm up.
        for i in 0..(o.lookups + 50) {
            if Instant::now() > deadline {
                break;
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let hex: String = trace_id(seed % traces)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let started = Instant::now();
            let (status, body) = conn.send(
                "GET",
                &format!("/api/traces/{hex}"),
                "application/json",
                b"",
            )?;
            let took = started.elapsed();
            if status != 200 {
                return Err(format!(
                    "trace {hex}: {status} {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            // The same request path without a store read, under the same load.
            let started = Instant::now();
            let (status, _) = conn.send("GET", "/healthz", "text/plain", b"")?;
            let health_took = started.elapsed();
            if status != 200 {
                return Err(format!("/healthz: {status}"));
            }
            if i >= 50 {
                times.push(took);
                health.push(health_took);
            }
        }
        let disk_read = disk_reads(collector.0.id()).saturating_sub(read_before);
        Ok(Lookups {
            disk_read,
            count: times.len(),
            traces: Latency::of(times)?,
            health: Latency::of(health)?,
            store_bytes,
            fill,
        })
    })();
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let o = parse(args)?;
    let bulkhead = match &o.bulkhead {
        Some(path) => path.clone(),
        None => crate::build_bulkhead(root)?,
    };
    eprintln!(
        "ingest: up to {} spans in requests of {} ...",
        o.spans, o.batch
    );
    let i = ingest(&bulkhead, &o)?;
    let group = (i.spans as f64 / i.commits.max(1.0)).round() as usize;
    eprintln!(
        "baselines: the same {} spans, {group} per write ...",
        i.spans
    );
    let b = baselines(i.spans, group.clamp(1, 32_768), o.batch)?;
    let l = if o.stored == 0 {
        None
    } else {
        Some(lookups(&bulkhead, &o)?)
    };
    let wall_rate = i.spans as f64 / i.wall.as_secs_f64();
    let per_core = |cpu: f64| i.spans as f64 / cpu.max(1e-9);
    let micros = |cpu: f64| cpu * 1e6 / i.spans.max(1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "bulkhead collector, release build, {} cores; collector pinned to one core: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if which("taskset") {
            "yes (taskset -c 1)"
        } else {
            "no (taskset missing)"
        }
    );
    println!("| what | spans/s per core | CPU per span | collector's ratio |");
    println!("|---|---|---|---|");
    println!(
        "| **collector**: OTLP/HTTP protobuf, {} spans (10 attributes each) in requests of {}, {} connections; {:.2} CPU s | **{:.0}** | {:.2} µs | target >= 200000: {:.2}x |",
        i.spans,
        o.batch,
        o.connections,
        i.cpu,
        per_core(i.cpu),
        micros(i.cpu),
        per_core(i.cpu) / 200_000.0
    );
    println!(
        "| baseline: minimal SQLite insert loop, same span bytes, {} spans per transaction; {:.2} CPU s | {:.0} | {:.2} µs | {:.2}x |",
        b.group,
        b.sqlite,
        per_core(b.sqlite),
        micros(b.sqlite),
        b.sqlite / i.cpu.max(1e-9)
    );
    println!(
        "| baseline: plain file append, same span bytes, one write per {} spans; {:.2} CPU s | {:.0} | {:.2} µs | {:.2}x |",
        b.group,
        b.append,
        per_core(b.append),
        micros(b.append),
        b.append / i.cpu.max(1e-9)
    );
    println!();
    println!("| what | result |");
    println!("|---|---|");
    println!("| collector ingest, wall clock | {wall_rate:.0} spans/s |");
    println!(
        "| wall time per span in group commits (the store's part; more than CPU time when other work shares the collector's core) | {:.2} µs |",
        i.commit_seconds * 1e6 / i.spans.max(1) as f64
    );
    println!(
        "| group commits / requests refused with 429 | {:.0} commits ({:.0} spans each) / {} |",
        i.commits,
        i.spans as f64 / i.commits.max(1.0),
        i.refused
    );
    let Some(l) = l else {
        return Ok(());
    };
    match l.fill {
        Some(took) => println!(
            "| store filled directly through the store API (no HTTP) | {} spans in {:.0} s ({:.0} spans/s) |",
            o.stored,
            took.as_secs_f64(),
            o.stored as f64 / took.as_secs_f64()
        ),
        None => println!("| store reused from --dir | {} spans |", o.stored),
    }
    println!(
        "| store size on disk | {:.2} GiB ({:.0} bytes/span) |",
        l.store_bytes as f64 / (1u64 << 30) as f64,
        l.store_bytes as f64 / o.stored as f64
    );
    println!(
        "| GET /api/traces/{{id}} ({TRACE_SPANS} spans each), {} random traces, one at a time | p50 {:.2} ms, **p99 {:.2} ms**, max {:.2} ms (target p99 < 2 ms: {:.2}x) |",
        l.count,
        ms(l.traces.p50),
        ms(l.traces.p99),
        ms(l.traces.max),
        2.0 / ms(l.traces.p99).max(1e-9)
    );
    println!(
        "| baseline: GET /healthz, interleaved with those on the same connection (the same HTTP path and machine, no store read) | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; trace-by-id p99 is {:.2}x its p99 |",
        ms(l.health.p50),
        ms(l.health.p99),
        ms(l.health.max),
        ms(l.traces.p99) / ms(l.health.p99).max(1e-9)
    );
    println!(
        "| read from the disk by the collector during the lookups (store pages the page cache no longer held) | {:.1} MiB, {:.1} KiB per trace |",
        l.disk_read as f64 / (1u64 << 20) as f64,
        l.disk_read as f64 / 1024.0 / (l.count + 50).max(1) as f64
    );
    Ok(())
}
