//! `bench-policy`: admission latency of `bulkhead policy serve` and the time of
//! `bulkhead policy check` over a 10,000-service fleet.
//!
//! Admission: the release binary serves `--self-signed` on loopback; the
//! client trusts the printed caBundle and keeps `--concurrency` TLS
//! connections (HTTP/1.1 keep-alive), each with one review in flight at a
//! time (a closed loop), so that many reviews are outstanding at once.
//! Reviews rotate through an allowed, a denied and a warned Pod, 1,024
//! distinct reviews of each (own uid and Pod name, as a ReplicaSet's pods
//! have), and every response must be a 200 whose body holds the expected
//! decision and the echoed uid. A latency is measured from sending a request
//! to having read its whole response, on the client. The same run at
//! concurrency 1 gives the time of one review alone. The table shows the CPU
//! time (user + system) each side spent per review: together they bound the
//! throughput of the cores. Each run is bounded by a request count and a
//! deadline.
//!
//! The baseline is nginx (a worker per core, TLS 1.3, access log off)
//! answering every request with the same AdmissionReview response: it parses
//! no JSON and decides nothing, so it is the floor of any webhook measured
//! the same way on the same cores, and the ratio column says how far above
//! that floor bulkhead is. The same client, the same reviews and the same
//! concurrency run against it first; only its answers' status is checked.
//!
//! The client is this module's own small HTTP/1.1 client, lean on purpose:
//! it shares the machine's cores with the server, so every microsecond of CPU
//! it spends per review is taken from the server's (an API server calling a
//! webhook runs on other machines). Each connection is one task that owns its
//! TLS stream (tokio-rustls). The whole request of each distinct review
//! (request line, headers, JSON body) is built before the timed run and sent
//! with one write; the response is read into a buffer the connection reuses
//! until its head (parsed with `httparse`) and its Content-Length body are in,
//! and bytes past it are kept for the next one. A response without a
//! Content-Length (a chunked one, say) is an error. So per review the client
//! spends its CPU on TLS and two system calls, a write and a read, and not on
//! formatting JSON, header maps or waking a second task per connection.
//!
//! Check: `bulkhead policy check FLEET --format json`, with a new state
//! directory (cold: the scan parses every file) and then again with that
//! state (warm: the scan cache is reused).

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const USAGE: &str =
    "usage: cargo xtask bench-policy [--concurrency N] [--requests N] [--seconds S] [--fleet DIR]

  --concurrency N   reviews in flight at once, one per TLS connection (default 200)
  --requests N      timed reviews per run, at most (default 20000)
  --seconds S       time limit of each admission run (default 30)
  --fleet DIR       fleet for `policy check` (default /tmp/bench-fleet; generated
                    with 10000 services when it has no ground-truth.json);
                    `--fleet none` measures admission only";

struct Options {
    concurrency: usize,
    requests: usize,
    seconds: u64,
    /// `None`: admission only.
    fleet: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        concurrency: 200,
        requests: 20_000,
        seconds: 30,
        fleet: Some(PathBuf::from("/tmp/bench-fleet")),
    };
    for (flag, value) in crate::flag_pairs(args, USAGE)? {
        let number = || crate::count(flag, value);
        match flag {
            "--concurrency" => options.concurrency = number()?,
            "--requests" => options.requests = number()?,
            "--seconds" => options.seconds = number()? as u64,
            "--fleet" => options.fleet = (value != "none").then(|| PathBuf::from(value)),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    let options = parse(args)?;
    let bulkhead = crate::build_bulkhead(root)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    crate::bench_gateway::need("nginx")?;
    crate::bench_gateway::need("openssl")?;
    // A worker per core, as a client elsewhere would have: a single client
    // thread (tried) measured a longer tail, since while it is descheduled no
    // response is read at all. A single-threaded runtime per core (tried too)
    // spent more client CPU per review than one work-stealing runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting tokio: {e}"))?;
    let deadline = Duration::from_secs(options.seconds);
    let reviews = Arc::new(reviews());
    let measure = |server: &Target| -> Result<[Run; 2], String> {
        let alone = runtime.block_on(load(
            server,
            &reviews,
            1,
            options.requests.min(2_000),
            deadline,
        ))?;
        let loaded = runtime.block_on(load(
            server,
            &reviews,
            options.concurrency,
            options.requests,
            deadline,
        ))?;
        Ok([alone, loaded])
    };
    let dir = std::env::temp_dir().join(format!(
        "bulkhead-bench-policy-nginx-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(dir.join("tmp")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let baseline = Target::nginx(&dir, cores).and_then(|nginx| measure(&nginx));
    let _ = std::fs::remove_dir_all(&dir);
    let baseline = baseline?;
    let server = Target::bulkhead(&bulkhead)?;
    let ours = measure(&server)?;
    let counted = runtime.block_on(decisions_total(&server))?;
    drop(server);

    println!(
        "admission webhook, release build, {cores} cores shared by client and server, loopback, TLS 1.3 \
         (client: rustls with ring). Baseline: nginx, {cores} workers, answering every review with the \
         same constant response (no parsing, no policy): the floor of any webhook on this machine."
    );
    println!("| measure | nginx, constant answer | bulkhead policy serve | bulkhead / nginx |");
    println!("|---|---:|---:|---:|");
    for (i, concurrency) in [1, options.concurrency].into_iter().enumerate() {
        let (base, run) = (&baseline[i], &ours[i]);
        let name = format!("concurrency {concurrency}");
        let row = |what: &str, unit: &str, value: &dyn Fn(&Run) -> f64, digits: usize| {
            let (b, r) = (value(base), value(run));
            println!(
                "| {name}: {what} | {b:.digits$} {unit} | {r:.digits$} {unit} | {:.2}x |",
                r / b.max(1e-9)
            );
        };
        println!(
            "| {name}: reviews (errors) | {} ({}) | {} ({}) | |",
            base.latencies.len(),
            base.errors,
            run.latencies.len(),
            run.errors
        );
        row("p50", "ms", &|r| ms(r.percentile(0.50)), 2);
        row("p90", "ms", &|r| ms(r.percentile(0.90)), 2);
        row("p99", "ms", &|r| ms(r.percentile(0.99)), 2);
        row("max", "ms", &|r| ms(r.percentile(1.0)), 2);
        row("throughput", "reviews/s", &Run::throughput, 0);
        row(
            "server CPU/review",
            "us",
            &|r| r.per_review(r.server_cpu),
            0,
        );
        row(
            "client CPU/review",
            "us",
            &|r| r.per_review(r.client_cpu),
            0,
        );
    }
    println!("| server-side decisions counted (/metrics) | | {counted} | |");
    let loaded = &ours[1];
    // The admission table is out before the long `policy check` runs.
    if let Some(fleet) = &options.fleet {
        let check = bench_check(&bulkhead, fleet)?;
        println!(
            "| policy check, {} services / {} manifest files: cold (new state) | {:.2} s |",
            check.services,
            check.manifest_files,
            check.cold.as_secs_f64()
        );
        println!(
            "| policy check: warm (scan cache) | {:.2} s |",
            check.warm.as_secs_f64()
        );
        println!(
            "| policy check: findings | {} deny, {} warn |",
            check.deny, check.warn
        );
    }
    // Little's law: with N reviews always in flight, the mean latency is N / throughput,
    // so a p99 under 5 ms needs at least N / 5 ms reviews per second from these cores.
    let needed = options.concurrency as f64 / 0.005;
    println!(
        "{} in flight at {:.0} reviews/s: mean {:.2} ms by Little's law ({:.0} us of CPU per review, client and server); < 5 ms needs {needed:.0} reviews/s, {:.0} us of CPU per review",
        options.concurrency,
        loaded.throughput(),
        options.concurrency as f64 / loaded.throughput().max(1e-9) * 1e3,
        cores as f64 / loaded.throughput().max(1e-9) * 1e6,
        cores as f64 / needed * 1e6,
    );
    let verdict = |p99: f64| if p99 < 5.0 { "met" } else { "NOT met" };
    let (p99, floor) = (
        ms(loaded.percentile(0.99)),
        ms(baseline[1].percentile(0.99)),
    );
    println!(
        "admission p99 at concurrency {}: {p99:.2} ms (target < 5 ms: {}); nginx's constant answer: {floor:.2} ms (target {})",
        options.concurrency,
        verdict(p99),
        verdict(floor),
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A server under test on a free loopback port, stopped when dropped.
struct Target {
    child: Child,
    addr: String,
    tls: TlsConnector,
    /// Whether its answers are decisions to check; the baseline's constant
    /// answer is checked for its status only.
    decides: bool,
}

impl Drop for Target {
    fn drop(&mut self) {
        crate::bench_gateway::terminate(&mut self.child);
    }
}

impl Target {
    /// `bulkhead policy serve --self-signed`, trusted through the caBundle it prints.
    fn bulkhead(bulkhead: &Path) -> Result<Target, String> {
        let mut child = Command::new(bulkhead)
            .args([
                "policy",
                "serve",
                "--self-signed",
                "--listen",
                "127.0.0.1:0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bulkhead.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = |prefix: &str| -> Result<String, String> {
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .map_err(|e| format!("reading the server's stdout: {e}"))?;
            line.trim_end()
                .strip_prefix(prefix)
                .map(str::to_string)
                .ok_or_else(|| format!("expected {prefix:?} from policy serve, got {line:?}"))
        };
        let addr = line("listening on https://")?;
        let pem = base64_decode(&line("caBundle: ")?)?;
        Ok(Target {
            child,
            addr,
            tls: trusting(&pem)?,
            decides: true,
        })
    }

    /// The baseline: nginx with a worker per core, TLS 1.3 with a fresh
    /// self-signed certificate, answering every request with the same
    /// AdmissionReview response and deciding nothing.
    fn nginx(dir: &Path, workers: usize) -> Result<Target, String> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running openssl: {e}"))?;
        if !made.status.success() {
            return Err(format!(
                "openssl could not make a certificate: {}",
                String::from_utf8_lossy(&made.stderr)
            ));
        }
        let port = crate::bench_gateway::free_port()?;
        let config = dir.join("nginx.conf");
        crate::bench_gateway::write(
            &config,
            &format!(
                "daemon off;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} ssl reuseport;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    location / {{
      default_type application/json;
      return 200 '{CONSTANT_ANSWER}';
    }}
  }}
}}
",
                dir = dir.display(),
                cert = cert.display(),
                key = key.display(),
            ),
        )?;
        let mut child = Command::new(crate::bench_gateway::program("nginx"))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting nginx: {e}"))?;
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default();
                return Err(format!("nginx exited at start: {status}\n{log}"));
            }
            if Instant::now() > deadline {
                crate::bench_gateway::terminate(&mut child);
                return Err(format!("nginx was not listening on {addr} within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let pem = std::fs::read(&cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        Ok(Target {
            child,
            addr,
            tls: trusting(&pem)?,
            decides: false,
        })
    }
}

/// What the baseline answers to every request.
const CONSTANT_ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"7c0e0000000a-5f3a-4d1b-9e2c-0000b16c3b0a","allowed":true}}"#;

/// A TLS client that trusts the certificates of `pem` only.
fn trusting(pem: &[u8]) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("caBundle is not base64: {e}"))
}

/// The largest response a connection takes (`/metrics` is the largest, a few KiB).
const MAX_RESPONSE: usize = 16 << 20;

/// One keep-alive HTTP/1.1 connection over TLS, owned by the one task that uses it.
struct Connection {
    tls: TlsStream<TcpStream>,
    /// What was read from the server: `buf[..filled]`, of which `buf[..used]`
    /// belongs to the response returned last.
    buf: Vec<u8>,
    filled: usize,
    used: usize,
}

/// What a response head says.
struct Head {
    len: usize,
    status: u16,
    content_length: usize,
}

impl Connection {
    async fn open(server: &Target) -> Result<Connection, String> {
        let tcp = TcpStream::connect(&server.addr)
            .await
            .map_err(|e| format!("connecting to {}: {e}", server.addr))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = server
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        Ok(Connection {
            tls,
            buf: vec![0; 4096],
            filled: 0,
            used: 0,
        })
    }

    /// Sends `request`, a whole HTTP/1.1 request, with one write and returns
    /// the body of its response, which must be a 200 with Content-Length.
    async fn exchange(&mut self, request: &[u8]) -> Result<&[u8], String> {
        // Bytes past the previous response are the start of this one.
        if self.used > 0 {
            self.buf.copy_within(self.used..self.filled, 0);
            self.filled -= self.used;
            self.used = 0;
        }
        let what = || {
            let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
            String::from_utf8_lossy(line).into_owned()
        };
        self.tls
            .write_all(request)
            .await
            .map_err(|e| format!("{}: sending: {e}", what()))?;
        self.tls
            .flush()
            .await
            .map_err(|e| format!("{}: sending: {e}", what()))?;
        let head = loop {
            if let Some(head) =
                parse_head(&self.buf[..self.filled]).map_err(|e| format!("{}: {e}", what()))?
            {
                break head;
            }
            self.fill().await.map_err(|e| format!("{}: {e}", what()))?;
        };
        let end = head.len + head.content_length;
        if end > MAX_RESPONSE {
            return Err(format!(
                "{}: a response of {end} bytes, more than {MAX_RESPONSE}",
                what()
            ));
        }
        while self.filled < end {
            self.fill().await.map_err(|e| format!("{}: {e}", what()))?;
        }
        self.used = end;
        let body = &self.buf[head.len..end];
        if head.status != 200 {
            return Err(format!(
                "{}: HTTP {}: {}",
                what(),
                head.status,
                String::from_utf8_lossy(body)
            ));
        }
        Ok(body)
    }

    /// Reads what the server sent next, growing the buffer when it is full.
    async fn fill(&mut self) -> Result<(), String> {
        if self.filled == self.buf.len() {
            if self.buf.len() >= MAX_RESPONSE {
                return Err(format!("a response head of more than {MAX_RESPONSE} bytes"));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        match self.tls.read(&mut self.buf[self.filled..]).await {
            Ok(0) => Err("the server closed the connection before the whole response".into()),
            Ok(n) => {
                self.filled += n;
                Ok(())
            }
            Err(e) => Err(format!("reading the response: {e}")),
        }
    }
}

/// The head at the start of `bytes`, `None` while it is incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let mut content_length = None;
    for header in response.headers.iter() {
        let value = || String::from_utf8_lossy(header.value);
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "the response has Transfer-Encoding: {}; this client reads Content-Length bodies only",
                value()
            ));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("the response has Content-Length: {}", value()))?;
            if content_length.is_some_and(|m| m != n) {
                return Err("the response has two different Content-Lengths".into());
            }
            content_length = Some(n);
        }
    }
    Ok(Some(Head {
        len,
        status: response.code.unwrap_or_default(),
        content_length: content_length.ok_or(
            "the response has no Content-Length; this client reads Content-Length bodies only",
        )?,
    }))
}

/// The server's `bulkhead_admission_decisions_total`, all results.
async fn decisions_total(server: &Target) -> Result<u64, String> {
    let mut connection = Connection::open(server).await?;
    let text = connection
        .exchange(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    Ok(String::from_utf8_lossy(text)
        .lines()
        .filter(|l| l.starts_with("bulkhead_admission_decisions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

/// Distinct reviews per decision kind: each review has its own uid and Pod
/// name, as the pods of a ReplicaSet do, and the uid must come back.
const VARIANTS: usize = 1024;

/// One review to send: the whole HTTP/1.1 request, prepared before the timed
/// run, and what its response must contain.
struct Review {
    request: Vec<u8>,
    uid: String,
    expected: &'static [u8],
}

/// Allowed, denied and warned Pods in turn, [`VARIANTS`] of each.
fn reviews() -> Vec<Review> {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let kinds = [
        (
            format!("registry.acme.internal/apps/orders:1.4.2@{digest}"),
            &b"\"allowed\":true"[..],
        ),
        ("nginx:latest".to_string(), &b"\"allowed\":false"[..]),
        (
            "registry.acme.internal/apps/orders:1.4.2".to_string(),
            &b"\"allowed\":true"[..],
        ),
    ];
    (0..VARIANTS * kinds.len())
        .map(|n| {
            let (image, expected) = &kinds[n % kinds.len()];
            let uid = format!("7c0e{n:08x}-5f3a-4d1b-9e2c-{:012x}", n.wrapping_mul(2_654_435_761));
            let pod = format!("orders-7d9f8c{:04x}-{:05x}", n % 7, n.wrapping_mul(40_503) & 0xfffff);
            let review = format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"{uid}","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"namespace":"shop","operation":"CREATE","userInfo":{{"username":"system:serviceaccount:kube-system:replicaset-controller"}},"object":{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{pod}","generateName":"orders-7d9f8c-","namespace":"shop","uid":"{uid}","labels":{{"app":"orders","version":"v1","pod-template-hash":"7d9f8c"}},"ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"orders-7d9f8c","uid":"0b6c2f7e-31aa-4c55-8d5e-2f0f3c1d9a10","controller":true}}]}},"spec":{{"containers":[{{"name":"app","image":"{image}","ports":[{{"containerPort":8080}}],"resources":{{"limits":{{"cpu":"500m","memory":"256Mi"}},"requests":{{"cpu":"100m","memory":"128Mi"}}}}}}]}}}}}}}}"#
            );
            let mut request = format!(
                "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                review.len()
            )
            .into_bytes();
            request.extend_from_slice(review.as_bytes());
            Review {
                request,
                uid,
                expected,
            }
        })
        .collect()
}

/// Whether `haystack` contains `needle` (responses are a few hundred bytes;
/// comparing first bytes before slices keeps this off the client's profile).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, _)) = needle.split_first() else {
        return true;
    };
    haystack
        .windows(needle.len())
        .any(|w| w[0] == first && w == needle)
}

struct Run {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
    /// CPU seconds (user + system) the server and the client spent in the timed part.
    server_cpu: f64,
    client_cpu: f64,
}

impl Run {
    fn percentile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank =
            ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1]
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Microseconds of CPU per review.
    fn per_review(&self, cpu: f64) -> f64 {
        cpu * 1e6 / self.latencies.len().max(1) as f64
    }
}

/// User + system CPU seconds of a process so far, with its children's
/// (nginx's workers) when `children`.
fn cpu(pid: u32, children: bool) -> Result<f64, String> {
    crate::cpu_times(pid, children).map(|(user, sys)| user + sys)
}

/// `concurrency` connections send reviews until `requests` were sent or `limit` passed.
async fn load(
    server: &Target,
    reviews: &Arc<Vec<Review>>,
    concurrency: usize,
    requests: usize,
    limit: Duration,
) -> Result<Run, String> {
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(Connection::open(server).await?);
    }
    // Warm-up, untimed: one review per connection, all in flight together.
    let mut warm = tokio::task::JoinSet::new();
    for (i, mut connection) in connections.into_iter().enumerate() {
        let reviews = Arc::clone(reviews);
        warm.spawn(async move {
            let review = &reviews[i % reviews.len()];
            connection.exchange(&review.request).await?;
            Ok::<_, String>(connection)
        });
    }
    let mut connections = Vec::with_capacity(concurrency);
    while let Some(joined) = warm.join_next().await {
        connections.push(joined.map_err(|e| e.to_string())??);
    }

    let (server_pid, client_pid) = (server.child.id(), std::process::id());
    let (server_before, client_before) = (cpu(server_pid, true)?, cpu(client_pid, false)?);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let mut workers = tokio::task::JoinSet::new();
    for mut connection in connections {
        let reviews = Arc::clone(reviews);
        let next = Arc::clone(&next);
        let decides = server.decides;
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(requests / concurrency + 1);
            let mut errors = 0;
            let mut first_error = None;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                if n >= requests || sent >= deadline {
                    break;
                }
                let review = &reviews[n % reviews.len()];
                match connection.exchange(&review.request).await {
                    Ok(body) => {
                        latencies.push(sent.elapsed());
                        if decides
                            && (!contains(body, review.expected)
                                || !contains(body, review.uid.as_bytes()))
                        {
                            errors += 1;
                            first_error.get_or_insert_with(|| {
                                format!(
                                    "review {} wants {} and its uid, got {}",
                                    review.uid,
                                    String::from_utf8_lossy(review.expected),
                                    String::from_utf8_lossy(body)
                                )
                            });
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                        break;
                    }
                }
            }
            (latencies, errors, first_error)
        });
    }
    let mut run = Run {
        latencies: Vec::with_capacity(requests),
        errors: 0,
        elapsed: Duration::ZERO,
        server_cpu: 0.0,
        client_cpu: 0.0,
    };
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        let (latencies, errors, error) = joined.map_err(|e| e.to_string())?;
        run.latencies.extend(latencies);
        run.errors += errors;
        first_error = first_error.or(error);
    }
    run.elapsed = started.elapsed();
    run.server_cpu = cpu(server_pid, true)? - server_before;
    run.client_cpu = cpu(client_pid, false)? - client_before;
    run.latencies.sort_unstable();
    if let Some(error) = first_error {
        eprintln!(
            "{} errors at concurrency {concurrency}, the first: {error}",
            run.errors
        );
    }
    Ok(run)
}

struct CheckTimes {
    cold: Duration,
    warm: Duration,
    services: u64,
    manifest_files: u64,
    deny: u64,
    warn: u64,
}

fn bench_check(bulkhead: &Path, fleet: &Path) -> Result<CheckTimes, String> {
    let work = std::env::temp_dir().join(format!("bulkhead-bench-policy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let result = check_in(bulkhead, fleet, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn check_in(bulkhead: &Path, fleet: &Path, work: &Path) -> Result<CheckTimes, String> {
    let fleet = if fleet.join("ground-truth.json").exists() {
        fleet.to_path_buf()
    } else {
        let generated = work.join("fleet");
        eprintln!(
            "{} has no fleet: generating 10000 services in {} (a few minutes) ...",
            fleet.display(),
            generated.display()
        );
        let status = Command::new(bulkhead)
            .args(["lab", "init"])
            .arg(&generated)
            .args(["--services", "10000"])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("running bulkhead lab init: {e}"))?;
        if !status.success() {
            return Err(format!("bulkhead lab init failed: {status}"));
        }
        generated
    };
    let state = work.join("state");
    let timed = || crate::bench_policy_check::check(bulkhead, &fleet, &state);
    let (cold, report) = timed()?;
    let (warm, _) = timed()?;
    let field = |name: &str| -> u64 {
        let key = format!("\"{name}\": ");
        report
            .find(&key)
            .map(|at| &report[at + key.len()..])
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0)
    };
    Ok(CheckTimes {
        cold,
        warm,
        services: field("services"),
        manifest_files: field("manifest_files"),
        deny: field("deny"),
        warn: field("warn"),
    })
}

#[cfg(test)]
mod tests {
    use super::{contains, parse_head};

    /// Response heads in, what the client makes of them out.
    #[test]
    fn parses_response_heads() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"uid\":\"7\"}",
                "HTTP 200, head 71 bytes, body 12 bytes",
            ),
            (
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\n",
                "HTTP 403, head 45 bytes, body 5 bytes",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
                "HTTP 200, head 57 bytes, body 0 bytes",
            ),
            ("HTTP/1.1 200 OK\r\ncontent-len", "incomplete"),
            ("", "incomplete"),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                "the response has Transfer-Encoding: chunked; this client reads Content-Length bodies only",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n",
                "the response has no Content-Length; this client reads Content-Length bodies only",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                "the response has two different Content-Lengths",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "the response has Content-Length: -1",
            ),
            (
                "HTTP/1.1 2000 OK\r\n\r\n",
                "malformed response head: invalid response status",
            ),
        ];
        for (input, expected) in cases {
            let got = match parse_head(input.as_bytes()) {
                Ok(Some(head)) => format!(
                    "HTTP {}, head {} bytes, body {} bytes",
                    head.status, head.len, head.content_length
                ),
                Ok(None) => "incomplete".to_string(),
                Err(e) => e,
            };
            assert_eq!(got, expected, "{input:?}");
        }
    }

    #[test]
    fn finds_needles() {
        let body = br#"{"response":{"uid":"7c0e-1","allowed":false}}"#;
        for (needle, expected) in [
            (&b"\"allowed\":false"[..], true),
            (b"\"allowed\":true", false),
            (b"7c0e-1", true),
            (b"7c0e-2", false),
            (b"}}", true),
            (b"", true),
        ] {
            assert_eq!(
                contains(body, needle),
                expected,
                "{}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}
