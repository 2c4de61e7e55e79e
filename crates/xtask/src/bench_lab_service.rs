//! `bench-lab-service`: how light `bulkhead lab service` is.
//!
//! Starts N idle instances (release build) and reads each one's resident memory
//! (`VmRSS` in /proc/PID/status, and the proportional set size from
//! /proc/PID/smaps_rollup, which shares the binary's pages among instances), then drives one instance with keep-alive
//! HTTP/1.1 connections on loopback and reports requests per second, first
//! with no downstream and then as the front of a two-service chain. Every load
//! loop is bounded by a request count and a deadline; only loopback is used.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const USAGE: &str = "usage: cargo xtask bench-lab-service [--instances N] [--requests N] [--connections N] [--seconds S]

  --instances N     idle instances whose resident memory is measured (default 50)
  --requests N      requests per throughput run, at most (default 200000)
  --connections N   keep-alive client connections (default 4)
  --seconds S       time limit of each throughput run (default 10)

The instances inherit the environment: MIMALLOC_ARENA_EAGER_COMMIT=0, for
example, shows what mimalloc's eagerly committed arena costs each one.";

struct Options {
    instances: usize,
    requests: usize,
    connections: usize,
    seconds: u64,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        instances: 50,
        requests: 200_000,
        connections: 4,
        seconds: 10,
    };
    for (flag, value) in crate::flag_pairs(args, USAGE)? {
        let number = || crate::count(flag, value);
        match flag {
            "--instances" => options.instances = number()?,
            "--requests" => options.requests = number()?,
            "--connections" => options.connections = number()?,
            "--seconds" => options.seconds = number()? as u64,
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// A service process, killed when dropped.
struct Instance {
    child: Child,
    addr: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn start(bulkhead: &Path, name: &str, calls: Option<&str>) -> Result<Instance, String> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new(bulkhead);
    cmd.args([
        "lab",
        "service",
        "--name",
        name,
        "--service-version",
        "1.0.0",
    ])
    .args(["--listen", &addr])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(calls) = calls {
        cmd.args(["--calls", calls]);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bulkhead.display()))?;
    let mut instance = Instance { child, addr };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = instance.child.try_wait() {
            return Err(format!("{name} exited at start: {status}"));
        }
        if get_once(&instance.addr, "/readyz").is_ok_and(|s| s == 200) {
            return Ok(instance);
        }
        if Instant::now() > deadline {
            return Err(format!("{name} was not ready within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get_once(addr: &str, path: &str) -> std::io::Result<u16> {
    let stream = TcpStream::connect(addr)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    request(&mut writer, &mut reader, addr, path)
}

/// One keep-alive request; returns the status after reading the whole body.
fn request(
    writer: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    addr: &str,
    path: &str,
) -> std::io::Result<u16> {
    write!(writer, "GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n")?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}

/// Requests/s over `connections` keep-alive connections, bounded by `total` and `limit`.
fn load(
    addr: &str,
    total: usize,
    connections: usize,
    limit: Duration,
) -> Result<(usize, f64), String> {
    let issued = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (issued, failed, addr) =
                (Arc::clone(&issued), Arc::clone(&failed), addr.to_string());
            std::thread::spawn(move || -> std::io::Result<usize> {
                let stream = TcpStream::connect(&addr)?;
                stream.set_nodelay(true)?;
                let mut reader = BufReader::new(stream.try_clone()?);
                let mut writer = stream;
                let mut done = 0;
                while issued.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                    if request(&mut writer, &mut reader, &addr, "/")? != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut done = 0;
    for thread in threads {
        done += thread
            .join()
            .map_err(|_| "a load thread panicked".to_string())?
            .map_err(|e| format!("load connection: {e}"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} of {done} requests did not answer 200"));
    }
    Ok((done, done as f64 / elapsed))
}

/// A `Name:   123 kB` field of a /proc file, in KiB.
pub(crate) fn proc_kib(pid: u32, file: &str, field: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in {path}"))
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    proc_kib(pid, "status", "VmRSS")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    let options = parse(args)?;
    let bulkhead = crate::build_bulkhead(root)?;

    eprintln!("starting {} idle instances ...", options.instances);
    let mut instances = Vec::with_capacity(options.instances);
    for i in 0..options.instances {
        instances.push(start(&bulkhead, &format!("svc{i}"), None)?);
    }
    let rss: Vec<u64> = instances
        .iter()
        .map(|i| rss_kib(i.child.id()))
        .collect::<Result<_, _>>()?;
    let pss: Vec<u64> = instances
        .iter()
        .map(|i| proc_kib(i.child.id(), "smaps_rollup", "Pss"))
        .collect::<Result<_, _>>()?;
    let anon: Vec<u64> = instances
        .iter()
        .map(|i| proc_kib(i.child.id(), "status", "RssAnon"))
        .collect::<Result<_, _>>()?;
    let n = rss.len() as u64;
    let total: u64 = rss.iter().sum();
    let (min, max) = (
        rss.iter().min().copied().unwrap_or(0),
        rss.iter().max().copied().unwrap_or(0),
    );

    let limit = Duration::from_secs(options.seconds);
    let single = &instances[0];
    eprintln!("load on one instance ...");
    let (done, rate) = load(&single.addr, options.requests, options.connections, limit)?;
    let rss_loaded = rss_kib(single.child.id())?;
    drop(instances);

    let back = start(&bulkhead, "back", None)?;
    let front = start(&bulkhead, "front", Some(&format!("http://{}/", back.addr)))?;
    eprintln!("load on a two-service chain ...");
    let (chain_done, chain_rate) = load(&front.addr, options.requests, options.connections, limit)?;

    println!(
        "bulkhead lab service, release build, {} cores, {} keep-alive connections, logs to /dev/null, no OTLP export",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        options.connections
    );
    println!("| what | result |");
    println!("|---|---|");
    println!(
        "| resident memory (VmRSS), {n} idle instances | {:.1} MiB each on average (min {:.1}, max {:.1}), {:.0} MiB in all |",
        mib(total / n),
        mib(min),
        mib(max),
        mib(total)
    );
    println!(
        "| of which anonymous (RssAnon) | {:.1} MiB each on average |",
        mib(anon.iter().sum::<u64>() / n)
    );
    println!(
        "| proportional set size (Pss: shared binary pages split) | {:.1} MiB each, {:.0} MiB in all |",
        mib(pss.iter().sum::<u64>() / n),
        mib(pss.iter().sum())
    );
    println!(
        "| resident memory after the load run | {:.1} MiB |",
        mib(rss_loaded)
    );
    println!("| one instance, no downstream | {rate:.0} requests/s ({done} requests) |");
    println!(
        "| front -> back chain (each request is 2 hops) | {chain_rate:.0} requests/s ({chain_done} requests) |"
    );
    Ok(())
}
