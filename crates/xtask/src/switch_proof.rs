//! `switch-proof`: flips one service's selector blue <-> green N times under
//! load through a release `bulkhead gateway`, and proves no request failed.
//!
//! Three `bulkhead lab service` processes stand behind the gateway: orders
//! blue and orders green (one service, selector on `version`) and catalog,
//! which no flip touches. Keep-alive clients send GETs to both services for
//! the whole run while one thread flips orders through the admin API,
//! waiting for each call to return. Every answer must be a 200 from the
//! right service; an orders answer that overlapped no flip must come from the
//! version live then, and one that overlapped flips from a version live at
//! some moment during it. The gateway's test suite runs the same proof with
//! 1,000 flips in process; this one runs the binary, with any count.

use crate::process::{gateway, lab_service};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const USAGE: &str =
    "usage: cargo xtask switch-proof [--flips N] [--clients N] [--bulkhead PATH]

  --flips N         selector flips of the orders service (default 10000)
  --clients N       keep-alive clients per service (default 2)
  --bulkhead PATH   run this bulkhead binary instead of building the release one

  Example: cargo xtask switch-proof --flips 10000";

const TOKEN: &str = "switch-proof-token";
const TOKEN_VAR: &str = "BULKHEAD_SWITCH_PROOF_TOKEN";

/// A keep-alive HTTP/1.1 connection that reads `Content-Length` answers.
struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    fn open(addr: &str) -> Result<Connection, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        Ok(Connection {
            stream: BufReader::new(stream),
        })
    }

    /// Sends one request and returns the status and body.
    fn request(&mut self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        write!(
            self.stream.get_mut(),
            "{method} {path} HTTP/1.1\r\nhost: proof\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| format!("sending: {e}"))?;
        let mut line = String::new();
        self.stream
            .read_line(&mut line)
            .map_err(|e| format!("reading the status line: {e}"))?;
        let status = line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            self.stream
                .read_line(&mut line)
                .map_err(|e| format!("reading a header: {e}"))?;
            let field = line.trim_end();
            if field.is_empty() {
                break;
            }
            if let Some((name, value)) = field.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length.ok_or("an answer without Content-Length")?;
        let mut body = vec![0; length];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// After `k` flips orders is green for odd `k`, blue for even.
fn version_after(k: u64) -> &'static str {
    if k % 2 == 1 { "green" } else { "blue" }
}

/// Flip k (1-based) starts when `started` becomes k and is live when `done`
/// becomes k; `exact` counts orders answers that overlapped no flip.
#[derive(Default)]
struct Flips {
    started: AtomicU64,
    done: AtomicU64,
    exact: AtomicU64,
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    requests: u64,
    failed: u64,
    /// Orders answers that overlapped no flip (checked against one version).
    exact: u64,
    first_failure: Option<String>,
}

/// Sends GETs to `path` until `finished`, checking every answer.
fn client(proxy: &str, service: &'static str, flips: &Flips, finished: &AtomicBool) -> Seen {
    let Flips {
        started,
        done,
        exact,
    } = flips;
    let mut seen = Seen::default();
    let mut connection = None;
    while !finished.load(Ordering::Acquire) {
        let first = done.load(Ordering::SeqCst);
        let answer = match connection.as_mut() {
            Some(c) => Connection::request(c, "GET", &format!("/{service}/proof"), ""),
            None => Connection::open(proxy).and_then(|mut c| {
                let answer = c.request("GET", &format!("/{service}/proof"), "");
                connection = Some(c);
                answer
            }),
        };
        let last = started.load(Ordering::SeqCst);
        seen.requests += 1;
        let verdict = match answer {
            Err(e) => {
                connection = None;
                Err(e)
            }
            Ok((200, body)) => {
                let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let (name, version) = (body["service"].as_str(), body["version"].as_str());
                if name != Some(service) {
                    Err(format!("answered by {name:?}"))
                } else if service == "orders" {
                    let live: Vec<&str> = (first..=last).map(version_after).collect();
                    if first == last {
                        seen.exact += 1;
                        exact.fetch_add(1, Ordering::SeqCst);
                    }
                    match version {
                        Some(v) if live.contains(&v) => Ok(()),
                        _ => Err(format!("{version:?} answered; live meanwhile: {live:?}")),
                    }
                } else {
                    Ok(())
                }
            }
            Ok((status, body)) => Err(format!("{status} {body}")),
        };
        if let Err(why) = verdict {
            seen.failed += 1;
            seen.first_failure.get_or_insert(why);
        }
    }
    seen
}

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    let (mut flips, mut clients, mut binary) = (10_000u64, 2usize, None);
    for (flag, value) in crate::flag_pairs(args, USAGE)? {
        match flag {
            "--flips" => flips = crate::count(flag, value)? as u64,
            "--clients" => clients = crate::count(flag, value)?,
            "--bulkhead" => binary = Some(std::path::PathBuf::from(value)),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let bulkhead = match binary {
        Some(path) => path,
        None => crate::build_bulkhead(root)?,
    };
    let dir = std::env::temp_dir().join(format!("bulkhead-switch-proof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = prove(&bulkhead, &dir, flips, clients);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn prove(bulkhead: &Path, dir: &Path, flips: u64, clients: usize) -> Result<(), String> {
    let (_blue, blue) = lab_service(bulkhead, "orders", "blue", &[])?;
    let (_green, green) = lab_service(bulkhead, "orders", "green", &[])?;
    let (_catalog, catalog) = lab_service(bulkhead, "catalog", "v1", &[])?;
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners: [{{address: 127.0.0.1:0}}]
routes: [{{prefix: /orders, service: orders}}, {{prefix: /catalog, service: catalog}}]
services:
  orders:
    endpoints:
      - {{address: {blue}, labels: {{version: blue}}}}
      - {{address: {green}, labels: {{version: green}}}}
    selector: {{version: blue}}
  catalog:
    endpoints: [{{address: {catalog}, labels: {{app: catalog}}}}]
    selector: {{app: catalog}}
"
        ),
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    let (_gateway, proxy, admin) = gateway(bulkhead, &config, TOKEN_VAR, TOKEN)?;

    let counters = Arc::new(Flips::default());
    let finished = Arc::new(AtomicBool::new(false));
    let mut loaders = Vec::new();
    for service in ["orders", "catalog"] {
        for _ in 0..clients {
            let (proxy, counters, finished) = (proxy.clone(), counters.clone(), finished.clone());
            loaders.push((
                service,
                std::thread::spawn(move || client(&proxy, service, &counters, &finished)),
            ));
        }
    }
    let began = Instant::now();
    let mut admin_connection = Connection::open(&admin)?;
    let mut latencies = Vec::with_capacity(usize::try_from(flips).unwrap_or(0));
    let mut flip_error = None;
    for k in 1..=flips {
        counters.started.store(k, Ordering::SeqCst);
        let call = Instant::now();
        let body = format!(r#"{{"version":"{}"}}"#, version_after(k));
        match admin_connection.request("PUT", "/services/orders/selector", &body) {
            Ok((200, _)) => {}
            Ok((status, body)) => {
                flip_error = Some(format!("flip {k}: {status} {body}"));
                break;
            }
            Err(e) => {
                flip_error = Some(format!("flip {k}: {e}"));
                break;
            }
        }
        latencies.push(call.elapsed().as_secs_f64() * 1000.0);
        counters.done.store(k, Ordering::SeqCst);
        if k.is_multiple_of(100) {
            // Hold still until a few answers came entirely between two flips,
            // so the exact check runs all along, not only at the end.
            let target = counters.exact.load(Ordering::SeqCst) + 4;
            let deadline = Instant::now() + Duration::from_secs(10);
            while counters.exact.load(Ordering::SeqCst) < target {
                if Instant::now() > deadline {
                    flip_error = Some(format!("after flip {k}: no answer between flips in 10 s"));
                    break;
                }
                std::thread::yield_now();
            }
            if flip_error.is_some() {
                break;
            }
        }
    }
    let elapsed = began.elapsed();
    finished.store(true, Ordering::Release);
    let mut totals = std::collections::BTreeMap::<&str, Seen>::new();
    for (service, loader) in loaders {
        let seen = loader.join().map_err(|_| "a client panicked")?;
        let total = totals.entry(service).or_default();
        total.requests += seen.requests;
        total.failed += seen.failed;
        total.exact += seen.exact;
        if total.first_failure.is_none() {
            total.first_failure = seen.first_failure;
        }
    }
    if let Some(e) = flip_error {
        return Err(e);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{flips} selector flips in {:.1} s ({:.0}/s), admin call p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        elapsed.as_secs_f64(),
        flips as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!("| service | requests | failed | answers checked against one version |");
    println!("|---|---:|---:|---:|");
    let mut failed = 0;
    for (service, seen) in &totals {
        println!(
            "| {service} ({}) | {} | {} | {} |",
            if *service == "orders" {
                "flipped"
            } else {
                "untouched"
            },
            seen.requests,
            seen.failed,
            if *service == "orders" {
                seen.exact.to_string()
            } else {
                "all".into()
            }
        );
        if let Some(why) = &seen.first_failure {
            println!("  first {service} failure: {why}");
        }
        failed += seen.failed;
    }
    let ends_on = if flips.is_multiple_of(2) {
        "blue"
    } else {
        "green"
    };
    let (_, body) = Connection::open(&proxy)?.request("GET", "/orders/last", "")?;
    if !body.contains(&format!(r#""version":"{ends_on}""#)) {
        return Err(format!(
            "after {flips} flips orders should be {ends_on}: {body}"
        ));
    }
    if failed > 0 {
        return Err(format!("{failed} requests failed"));
    }
    Ok(())
}
