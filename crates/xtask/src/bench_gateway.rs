//! `bench-gateway`: bulkhead gateway against nginx and HAProxy as path-routing proxies.
//!
//! One upstream serves every run: an nginx with one worker that answers every path
//! with a small fixed body (the cheapest upstream to be had, so the proxies' own
//! cost shows). In front of it, in turn, nginx, HAProxy and `bulkhead gateway`
//! route the same paths (`/api/orders/`, `/api/users/`, `/`) to it over keep-alive
//! connections, each with two workers/threads. wrk drives the upstream directly
//! and then each proxy with the same settings, in turn, for `--rounds` rounds, and
//! the table gives each target's median requests/s, p99 latency and CPU time per
//! request, with ratios against nginx and against the direct run.
//!
//! bulkhead runs as it would in production: trace ids created at the edge and the
//! JSON access log written to a file. nginx and HAProxy run with their access logs
//! off, which only favours them. Every process runs in the foreground as the
//! current user on loopback ports, from configs written to a temporary folder, and
//! is killed at the end.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USAGE: &str =
    "usage: cargo xtask bench-gateway [--rounds N] [--seconds S] [--threads N] [--connections N] [--workers N]

  --rounds N        rounds over all targets; the table gives each target's median (default 3)
  --seconds S       duration of each wrk run (default 10)
  --threads N       wrk threads (default 2)
  --connections N   wrk keep-alive connections (default 64)
  --workers N       worker processes/threads of each proxy (default 2)

Needs nginx, haproxy and wrk (scripts/setup installs them).";

struct Options {
    rounds: usize,
    seconds: usize,
    threads: usize,
    connections: usize,
    workers: usize,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        rounds: 3,
        seconds: 10,
        threads: 2,
        connections: 64,
        workers: 2,
    };
    for (flag, value) in crate::flag_pairs(args, USAGE)? {
        let number = || crate::count(flag, value);
        match flag {
            "--rounds" => options.rounds = number()?.max(1),
            "--seconds" => options.seconds = number()?,
            "--threads" => options.threads = number()?,
            "--connections" => options.connections = number()?,
            "--workers" => options.workers = number()?,
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// A server process, killed when dropped.
struct Server {
    name: &'static str,
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Stops a server: SIGTERM first, since nginx's master stops its workers on
/// it, where SIGKILL would orphan them, still serving and holding whatever the
/// bench's process inherited (such as a lock file descriptor).
pub(crate) fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub(crate) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Starts `cmd` and waits until `GET path` on `port` answers 200.
fn start(name: &'static str, mut cmd: Command, port: u16, log: &Path) -> Result<Server, String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting {name}: {e}"))?;
    let mut server = Server { name, child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{name} exited at start: {status}\n{log}"));
        }
        if get_status(port, "/api/orders/1").is_ok_and(|s| s == 200) {
            return Ok(server);
        }
        if Instant::now() > deadline {
            return Err(format!("{name} was not ready on port {port} within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response {response:?}")))
}

/// The shared upstream: nginx, one worker, a fixed body on every path.
fn upstream_config(dir: &Path, port: u16) -> String {
    format!(
        "daemon off;
worker_processes 1;
pid {dir}/upstream.pid;
error_log {dir}/upstream-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp;
  proxy_temp_path {dir}/tmp;
  fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp;
  scgi_temp_path {dir}/tmp;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{ return 200 \"hello from upstream\\n\"; }}
  }}
}}
",
        dir = dir.display()
    )
}

fn nginx_config(dir: &Path, port: u16, upstream: u16, workers: usize) -> String {
    format!(
        "daemon off;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp;
  proxy_temp_path {dir}/tmp;
  fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp;
  scgi_temp_path {dir}/tmp;
  keepalive_requests 1000000;
  upstream orders {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  upstream users {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  upstream web {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    proxy_http_version 1.1;
    proxy_set_header Connection \"\";
    location /api/orders/ {{ proxy_pass http://orders; }}
    location /api/users/ {{ proxy_pass http://users; }}
    location / {{ proxy_pass http://web; }}
  }}
}}
",
        dir = dir.display()
    )
}

fn haproxy_config(port: u16, upstream: u16, workers: usize) -> String {
    format!(
        "global
  nbthread {workers}
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend proxy
  bind 127.0.0.1:{port}
  acl orders path_beg /api/orders/
  acl users path_beg /api/users/
  use_backend orders if orders
  use_backend users if users
  default_backend web
backend orders
  server s1 127.0.0.1:{upstream}
backend users
  server s1 127.0.0.1:{upstream}
backend web
  server s1 127.0.0.1:{upstream}
"
    )
}

fn bulkhead_config(port: u16, upstream: u16) -> String {
    format!(
        "listeners: [{{address: 127.0.0.1:{port}}}]
routes:
  - {{prefix: /api/orders/, service: orders}}
  - {{prefix: /api/users/, service: users}}
  - {{prefix: /, service: web}}
services:
  orders:
    endpoints: [{{address: 127.0.0.1:{upstream}, labels: {{app: orders, version: blue}}}}]
    selector: {{app: orders, version: blue}}
  users:
    endpoints: [{{address: 127.0.0.1:{upstream}, labels: {{app: users, version: blue}}}}]
    selector: {{app: users}}
  web:
    endpoints: [{{address: 127.0.0.1:{upstream}, labels: {{app: web}}}}]
    selector: {{app: web}}
"
    )
}

/// One wrk run's result.
struct Measured {
    requests_per_sec: f64,
    requests: u64,
    p99: Duration,
    errors: u64,
    /// The target's user and system CPU time per request, in microseconds.
    cpu_us: (f64, f64),
}

fn wrk(port: u16, options: &Options, seconds: usize) -> Result<Measured, String> {
    let out = Command::new("wrk")
        .args([
            "-t",
            &options.threads.to_string(),
            "-c",
            &options.connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            &format!("http://127.0.0.1:{port}/api/orders/42"),
        ])
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let requests_per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    // "123456 requests in 10.00s, 15.2MB read"
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .ok_or_else(|| format!("no request count in wrk output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        // wrk writes `1.23ms`, `850.00us`, `1.02s`: all in the one duration grammar.
        .and_then(|v| yaml::parse_duration(v).ok())
        .ok_or_else(|| format!("no 99% latency in wrk output:\n{text}"))?;
    // "Non-2xx or 3xx responses: N" and "Socket errors: connect A, read B, write C, timeout D".
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += n.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(list) = line.strip_prefix("Socket errors:") {
            errors += list
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Ok(Measured {
        requests_per_sec,
        requests,
        p99,
        errors,
        cpu_us: (0.0, 0.0),
    })
}

pub(crate) fn need(tool: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|p| p.join(tool).is_file())
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|p| Path::new(p).join(tool).is_file())
    });
    if found {
        Ok(())
    } else {
        Err(format!("{tool} not found; run scripts/setup"))
    }
}

/// nginx and haproxy live in /usr/sbin, which a user's PATH may lack.
pub(crate) fn program(tool: &str) -> PathBuf {
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|p| Path::new(p).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(tool))
}

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    let options = parse(args)?;
    for tool in ["nginx", "haproxy", "wrk"] {
        need(tool)?;
    }
    let bulkhead = crate::build_bulkhead(root)?;
    let dir = std::env::temp_dir().join(format!("bulkhead-bench-gateway-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tmp")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = bench(&options, &bulkhead, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn bench(options: &Options, bulkhead: &Path, dir: &Path) -> Result<(), String> {
    let upstream_port = free_port()?;
    write(
        &dir.join("upstream.conf"),
        &upstream_config(dir, upstream_port),
    )?;
    let mut cmd = Command::new(program("nginx"));
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("upstream.conf"));
    let upstream = start("upstream", cmd, upstream_port, &dir.join("upstream.log"))?;

    let nginx_port = free_port()?;
    write(
        &dir.join("nginx.conf"),
        &nginx_config(dir, nginx_port, upstream_port, options.workers),
    )?;
    let haproxy_port = free_port()?;
    write(
        &dir.join("haproxy.cfg"),
        &haproxy_config(haproxy_port, upstream_port, options.workers),
    )?;
    let bulkhead_port = free_port()?;
    write(
        &dir.join("gateway.yaml"),
        &bulkhead_config(bulkhead_port, upstream_port),
    )?;

    println!(
        "wrk: {} threads, {} connections, {} s per run, GET /api/orders/42; proxies with {} workers; {} rounds",
        options.threads, options.connections, options.seconds, options.workers, options.rounds
    );
    const TARGETS: [&str; 4] = ["direct", "nginx", "haproxy", "bulkhead"];
    let mut runs: Vec<Vec<Measured>> = TARGETS.iter().map(|_| Vec::new()).collect();
    // Targets take turns, round after round, so a burst of load from elsewhere on
    // the machine hurts one run of each rather than every run of one; each
    // proxy runs alone, so no idle process competes for the cores.
    for round in 1..=options.rounds {
        for (i, name) in TARGETS.into_iter().enumerate() {
            let server = match name {
                "direct" => None,
                "nginx" => {
                    let mut cmd = Command::new(program("nginx"));
                    cmd.arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf"));
                    Some(start("nginx", cmd, nginx_port, &dir.join("nginx.log"))?)
                }
                "haproxy" => {
                    let mut cmd = Command::new(program("haproxy"));
                    cmd.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
                    Some(start(
                        "haproxy",
                        cmd,
                        haproxy_port,
                        &dir.join("haproxy.log"),
                    )?)
                }
                _ => {
                    let mut cmd = Command::new(bulkhead);
                    cmd.args(["gateway", "--config"])
                        .arg(dir.join("gateway.yaml"))
                        .arg("--access-log")
                        .arg(dir.join("access.log"))
                        .args(["--workers", &options.workers.to_string()]);
                    Some(start(
                        "bulkhead",
                        cmd,
                        bulkhead_port,
                        &dir.join("bulkhead.log"),
                    )?)
                }
            };
            let measured = measure(server.as_ref().unwrap_or(&upstream), options)?;
            println!(
                "round {round}: {name:<9} {:>8.0} req/s, p99 {:.2} ms",
                measured.requests_per_sec,
                measured.p99.as_secs_f64() * 1000.0
            );
            runs[i].push(measured);
        }
    }
    let rows: Vec<(&str, Measured)> = TARGETS
        .into_iter()
        .zip(runs)
        .map(|(name, runs)| (name, median(runs)))
        .collect();
    let logged = std::fs::read_to_string(dir.join("access.log"))
        .map(|t| t.lines().count())
        .unwrap_or(0);

    let nginx = rows[1].1.requests_per_sec;
    let direct = rows[0].1.requests_per_sec;
    println!(
        "\nMedians of {} rounds (errors: the sum over them):",
        options.rounds
    );
    println!(
        "\n| {:<9} | {:>10} | {:>9} | {:>8} | {:>9} | {:>6} | {:>16} |",
        "target", "req/s", "p99", "vs nginx", "vs direct", "errors", "CPU/req user+sys"
    );
    println!(
        "|-----------|-----------:|----------:|---------:|----------:|-------:|-----------------:|"
    );
    for (name, m) in &rows {
        let (user, sys) = m.cpu_us;
        println!(
            "| {:<9} | {:>10.0} | {:>7.2}ms | {:>7.2}x | {:>8.2}x | {:>6} | {:>5.1}+{:>4.1} us |",
            name,
            m.requests_per_sec,
            m.p99.as_secs_f64() * 1000.0,
            m.requests_per_sec / nginx,
            m.requests_per_sec / direct,
            m.errors,
            user,
            sys
        );
    }
    let bulkhead = &rows[3].1;
    println!(
        "\nbulkhead wrote {logged} access-log lines. Targets: >= 1.0x nginx req/s ({}), p99 <= nginx ({}), >= 0.5x direct ({}).",
        verdict(bulkhead.requests_per_sec >= nginx),
        verdict(bulkhead.p99 <= rows[1].1.p99),
        verdict(bulkhead.requests_per_sec >= 0.5 * direct),
    );
    Ok(())
}

/// Each figure's median over the runs (the upper one of an even count);
/// errors are summed, since any error matters.
fn median(runs: Vec<Measured>) -> Measured {
    fn mid<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    }
    Measured {
        requests_per_sec: mid(runs.iter().map(|m| m.requests_per_sec).collect()),
        requests: mid(runs.iter().map(|m| m.requests).collect()),
        p99: mid(runs.iter().map(|m| m.p99).collect()),
        errors: runs.iter().map(|m| m.errors).sum(),
        cpu_us: (
            mid(runs.iter().map(|m| m.cpu_us.0).collect()),
            mid(runs.iter().map(|m| m.cpu_us.1).collect()),
        ),
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// A 2 s warm-up run (pools filled, caches hot), then the measured run, with
/// the CPU time the target (and its worker processes) spent on it.
fn measure(server: &Server, options: &Options) -> Result<Measured, String> {
    let fail = |e: String| format!("{}: {e}", server.name);
    wrk(server.port, options, 2).map_err(fail)?;
    let pid = server.child.id();
    let before = crate::cpu_times(pid, true).map_err(fail)?;
    let mut measured = wrk(server.port, options, options.seconds).map_err(fail)?;
    let after = crate::cpu_times(pid, true).map_err(fail)?;
    let requests = measured.requests.max(1) as f64;
    measured.cpu_us = (
        (after.0 - before.0) * 1e6 / requests,
        (after.1 - before.1) * 1e6 / requests,
    );
    Ok(measured)
}
