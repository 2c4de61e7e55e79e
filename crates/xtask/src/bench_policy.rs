//! `bench-policy`: admission latency of `bulkhead policy serve` and the time of
//! `bulkhead policy check` over a 10,000-service fleet.
//!
//! Admission: the release binary serves `--self-signed` on loopback; the
//! client trusts the printed caBundle and keeps `--concurrency` TLS
//! connections (HTTP/1.1 keep-alive), each with one review in flight at a
//! time (a closed loop), so that many reviews are outstanding at once.
//! Reviews rotate through an allowed, a denied and a warned Pod, 1,024
//! distinct reviews of each (own uid and Pod name, as a ReplicaSet's pods
//! have), and every response is checked for the expected decision and the
//! echoed uid. The request bodies are built before the timed run, so the
//! client's CPU goes to TLS and HTTP, as an API server's would, and not to
//! formatting JSON. A latency is measured from sending a request to having
//! read its whole response, on the client. The same run at concurrency 1
//! gives the time of one review alone. The client shares the machine's
//! cores with the server, as a sidecar load test would, so the table shows
//! the CPU time (user + system) each side spent per review: together they
//! bound the throughput of the cores. Each run is bounded by a request
//! count and a deadline.
//!
//! Check: `bulkhead policy check FLEET --format json`, with a new state
//! directory (cold: the scan parses every file) and then again with that
//! state (warm: the scan cache is reused).

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_rustls::TlsConnector;

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

    let server = Webhook::start(&bulkhead)?;
    // A worker per core, as a client elsewhere would have: a single client
    // thread (tried) measured a longer tail, since while it is descheduled no
    // response is read at all.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting tokio: {e}"))?;
    let deadline = Duration::from_secs(options.seconds);
    let reviews = Arc::new(reviews());
    let alone = runtime.block_on(load(
        &server,
        &reviews,
        1,
        options.requests.min(2_000),
        deadline,
    ))?;
    let loaded = runtime.block_on(load(
        &server,
        &reviews,
        options.concurrency,
        options.requests,
        deadline,
    ))?;
    let counted = runtime.block_on(decisions_total(&server))?;
    drop(server);

    println!(
        "bulkhead policy, release build, {cores} cores shared by client and server, loopback, TLS 1.3 (rustls, ring)"
    );
    println!("| measure | value |");
    println!("|---|---|");
    for (name, run) in [
        ("admission, concurrency 1", &alone),
        (
            &*format!("admission, concurrency {}", options.concurrency),
            &loaded,
        ),
    ] {
        println!(
            "| {name}: reviews (errors) | {} ({}) |",
            run.latencies.len(),
            run.errors
        );
        println!("| {name}: p50 | {:.2} ms |", ms(run.percentile(0.50)));
        println!("| {name}: p99 | {:.2} ms |", ms(run.percentile(0.99)));
        println!("| {name}: max | {:.2} ms |", ms(run.percentile(1.0)));
        println!("| {name}: throughput | {:.0} reviews/s |", run.throughput());
        println!(
            "| {name}: server CPU/review | {:.0} us |",
            run.per_review(run.server_cpu)
        );
        println!(
            "| {name}: client CPU/review | {:.0} us |",
            run.per_review(run.client_cpu)
        );
    }
    println!("| server-side decisions counted (/metrics) | {counted} |");
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
    let p99 = ms(loaded.percentile(0.99));
    println!(
        "admission p99 at concurrency {}: {p99:.2} ms (target < 5 ms: {})",
        options.concurrency,
        if p99 < 5.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `bulkhead policy serve --self-signed` on a free loopback port, killed when dropped.
struct Webhook {
    child: Child,
    addr: String,
    tls: TlsConnector,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Webhook {
    fn start(bulkhead: &Path) -> Result<Webhook, String> {
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
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
            roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Webhook {
            child,
            addr,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let value = |c: u8| -> Result<u32, String> {
        Ok(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("caBundle is not base64: {:?}", char::from(c))),
        }))
    };
    let mut out = Vec::new();
    for chunk in text.trim_end_matches('=').as_bytes().chunks(4) {
        let mut n = 0;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    Ok(out)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(server: &Webhook) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(&server.addr)
        .await
        .map_err(|e| format!("connecting to {}: {e}", server.addr))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = server
        .tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn send(sender: &mut Sender, path: &str, body: Bytes) -> Result<Bytes, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection closed: {e}"))?;
    let method = if body.is_empty() { "GET" } else { "POST" };
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, "localhost")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{path}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    Ok(bytes)
}

/// The server's `bulkhead_admission_decisions_total`, all results.
async fn decisions_total(server: &Webhook) -> Result<u64, String> {
    let mut sender = connect(server).await?;
    let text = send(&mut sender, "/metrics", Bytes::new()).await?;
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with("bulkhead_admission_decisions_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

/// Distinct reviews per decision kind: each review has its own uid and Pod
/// name, as the pods of a ReplicaSet do, and the uid must come back.
const VARIANTS: usize = 1024;

/// One review to send: the whole HTTP/1.1 request body, prepared before the
/// timed run, and what its response must contain.
struct Review {
    body: Bytes,
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
            Review {
                body: Bytes::from(review),
                uid,
                expected,
            }
        })
        .collect()
}

/// Whether `haystack` contains `needle` (responses are a few hundred bytes).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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

/// User + system CPU seconds of a process so far.
fn cpu(pid: u32) -> Result<f64, String> {
    crate::cpu_times(pid, false).map(|(user, sys)| user + sys)
}

/// `concurrency` connections send reviews until `requests` were sent or `limit` passed.
async fn load(
    server: &Webhook,
    reviews: &Arc<Vec<Review>>,
    concurrency: usize,
    requests: usize,
    limit: Duration,
) -> Result<Run, String> {
    let mut senders = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        senders.push(connect(server).await?);
    }
    // Warm-up, untimed: one review per connection, all in flight together.
    let mut warm = tokio::task::JoinSet::new();
    for (i, mut sender) in senders.into_iter().enumerate() {
        let body = reviews[i % reviews.len()].body.clone();
        warm.spawn(async move { send(&mut sender, "/validate", body).await.map(|_| sender) });
    }
    let mut senders = Vec::with_capacity(concurrency);
    while let Some(joined) = warm.join_next().await {
        senders.push(joined.map_err(|e| e.to_string())??);
    }

    let (server_pid, client_pid) = (server.child.id(), std::process::id());
    let (server_before, client_before) = (cpu(server_pid)?, cpu(client_pid)?);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let mut workers = tokio::task::JoinSet::new();
    for mut sender in senders {
        let reviews = Arc::clone(reviews);
        let next = Arc::clone(&next);
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(requests / concurrency + 1);
            let mut errors = 0;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests || Instant::now() >= deadline {
                    break;
                }
                let review = &reviews[n % reviews.len()];
                let sent = Instant::now();
                match send(&mut sender, "/validate", review.body.clone()).await {
                    Ok(answer) => {
                        latencies.push(sent.elapsed());
                        if !contains(&answer, review.expected)
                            || !contains(&answer, review.uid.as_bytes())
                        {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        });
    }
    let mut run = Run {
        latencies: Vec::with_capacity(requests),
        errors: 0,
        elapsed: Duration::ZERO,
        server_cpu: 0.0,
        client_cpu: 0.0,
    };
    while let Some(joined) = workers.join_next().await {
        let (latencies, errors) = joined.map_err(|e| e.to_string())?;
        run.latencies.extend(latencies);
        run.errors += errors;
    }
    run.elapsed = started.elapsed();
    run.server_cpu = cpu(server_pid)? - server_before;
    run.client_cpu = cpu(client_pid)? - client_before;
    run.latencies.sort_unstable();
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
    let timed = || -> Result<(Duration, String), String> {
        let started = Instant::now();
        let out = Command::new(bulkhead)
            .args(["policy", "check"])
            .arg(&fleet)
            .arg("--state")
            .arg(&state)
            .args(["--format", "json"])
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("running bulkhead policy check: {e}"))?;
        let took = started.elapsed();
        // 1 means a deny was found, which the generated fleet plants on purpose.
        if !matches!(out.status.code(), Some(0 | 1)) {
            return Err(format!("bulkhead policy check failed: {}", out.status));
        }
        Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
    };
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
