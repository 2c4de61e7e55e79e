//! `bench-console`: the resident fleet graph of `bulkhead console` on a
//! 10,000-service fleet. Times `bulkhead cve <planted id> --server URL` as a
//! whole command against the `git grep` sweep of `bench-cve` (the baseline,
//! run here too), each page's render time as the console serves it, the time
//! from a Dockerfile edit to the new base in the API, and the console's RSS.

use crate::bench_cve::{
    FleetOptions, generate_fleet, grep_sweep, median, planted_names, repositories,
};
use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USAGE: &str =
    "usage: cargo xtask bench-console [--dir DIR] [--services N] [--runs N] [--grep-runs N]

  --dir DIR        reuse the fleet in DIR or generate it there (one Dockerfile
                   is edited and restored; default: a temporary folder)
  --services N     services in a generated fleet (default 10000)
  --runs N         timed runs of each command and page; medians are reported (default 5)
  --grep-runs N    timed runs of the git grep sweep (default 1: it is slow)";

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    crate::bench_cve::run_fleet_bench(args, root, USAGE, "bench-console", bench)
}

/// Starts `bulkhead console` on `fleet`; its address and the load time it reports.
pub(crate) fn start_console(
    bulkhead: &Path,
    fleet: &Path,
    state: &Path,
) -> Result<(Child, String), String> {
    let mut child = Command::new(bulkhead)
        .args(["console", "--listen", "127.0.0.1:0", "--path"])
        .arg(fleet)
        .arg("--state")
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting bulkhead console: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .and_then(Result::ok)
        .ok_or("bulkhead console printed no address")?;
    let addr = first
        .strip_prefix("console listening on http://")
        .ok_or_else(|| format!("unexpected first line: {first}"))?
        .to_string();
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Ok((child, addr))
}

/// `GET path` on a fresh connection: the status and body.
pub(crate) fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        std::net::TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("reading {path}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{path}: not HTTP"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

fn json(text: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what}: {e}"))
}

fn bench(options: &FleetOptions, bulkhead: &Path, work: &Path) -> Result<(), String> {
    let fleet = options.dir.clone().unwrap_or_else(|| work.join("fleet"));
    generate_fleet(bulkhead, &fleet, options.services)?;
    let truth = json(
        &std::fs::read_to_string(fleet.join("ground-truth.json")).map_err(|e| e.to_string())?,
        "ground-truth.json",
    )?;
    let planted = &truth["critical_cve"];
    let (id, names) = planted_names(planted)?;
    let services = truth["services"]
        .as_array()
        .ok_or("ground truth has no services")?;

    eprintln!(
        "starting the console (a cold scan of {} services) ...",
        services.len()
    );
    let started = Instant::now();
    let (child, addr) = start_console(bulkhead, &fleet, &work.join("state"))?;
    let console = crate::process::Process(child);
    let load_s = started.elapsed().as_secs_f64();
    let server = format!("http://{addr}");
    // The console computes the policy findings in the background once loaded:
    // wait for them, so they do not share the CPU with what is timed.
    // On a busy machine that takes longer than one request's read timeout: ask again.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(900);
    loop {
        match get(&addr, "/api/policy") {
            Ok((200, _)) => break,
            Ok((status, _)) => return Err(format!("/api/policy answered {status}")),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => {}
        }
    }
    let policy_s = started.elapsed().as_secs_f64();

    // The whole command, through the resident graph.
    let mut cve = Command::new(bulkhead);
    cve.args(["cve", &id, "--json", "--server", &server, "--path"])
        .arg(&fleet)
        .stderr(Stdio::null());
    let mut whole = Vec::new();
    let mut found = 0;
    for _ in 0..=options.runs {
        let started = Instant::now();
        let out = cve
            .output()
            .map_err(|e| format!("running bulkhead cve: {e}"))?;
        whole.push(started.elapsed().as_secs_f64() * 1000.0);
        if !out.status.success() {
            return Err(format!("bulkhead cve --server failed: {}", out.status));
        }
        found =
            json(&String::from_utf8_lossy(&out.stdout), "bulkhead cve --json")?["cve"]["services"]
                .as_array()
                .map_or(0, Vec::len);
    }
    // The first run warmed the page cache for the binary.
    whole.remove(0);

    let repos = repositories(&fleet)?;
    eprintln!("git grep over {} repositories ...", repos.len());
    let mut grep = Vec::new();
    let mut grep_hits = 0;
    for _ in 0..options.grep_runs {
        let started = Instant::now();
        grep_hits = grep_sweep(&repos, &names)?;
        grep.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    // Pages, as the browser asks for them.
    let busy = services
        .iter()
        .max_by_key(|s| s["depends_on"].as_array().map_or(0, Vec::len))
        .and_then(|s| s["name"].as_str())
        .ok_or("no service")?
        .to_string();
    let last_page = services.len().div_ceil(100);
    let pages = [
        "/".to_string(),
        format!("/?page={last_page}"),
        "/?q=team-payments".to_string(),
        format!("/?focus={busy}"),
        format!("/services/{busy}"),
        format!("/impact?services={busy}"),
        format!("/cve/{id}"),
        format!("/impact?cve={id}"),
        "/templates".to_string(),
        "/templates?version=v2.0.0".to_string(),
        "/policy".to_string(),
        "/hosts".to_string(),
        "/rollouts".to_string(),
        "/api/fleet".to_string(),
        format!("/api/cve/{id}"),
    ];
    let mut rows = Vec::new();
    for page in &pages {
        let mut times = Vec::new();
        let mut first_ms = 0.0;
        for run in 0..=options.runs {
            let started = Instant::now();
            let (status, body) = get(&addr, page)?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if status != 200 {
                return Err(format!(
                    "{page} answered {status}: {}",
                    body.chars().take(300).collect::<String>()
                ));
            }
            if run == 0 {
                first_ms = ms;
            } else {
                times.push(ms);
            }
        }
        rows.push((page.clone(), first_ms, median(&mut times)));
    }

    // A changed file, until the API shows it.
    let victim = services
        .iter()
        .find(|s| s["base_image"].as_str().is_some())
        .ok_or("no service with a base image")?;
    let name = victim["name"].as_str().unwrap_or_default();
    let dockerfile = fleet
        .join(victim["repo"].as_str().unwrap_or_default())
        .join("Dockerfile");
    let original = std::fs::read_to_string(&dockerfile)
        .map_err(|e| format!("{}: {e}", dockerfile.display()))?;
    let base = victim["base_image"].as_str().unwrap_or_default();
    let new_base = "registry.acme.internal/base/debian-13:2026.01";
    let started = Instant::now();
    std::fs::write(&dockerfile, original.replace(base, new_base)).map_err(|e| e.to_string())?;
    let deadline = started + Duration::from_secs(30);
    let seen_ms = loop {
        let (_, body) = get(&addr, &format!("/api/services/{name}"))?;
        if json(&body, "/api/services")?["service"]["base_images"][0] == new_base {
            break started.elapsed().as_secs_f64() * 1000.0;
        }
        if Instant::now() > deadline {
            std::fs::write(&dockerfile, &original).map_err(|e| e.to_string())?;
            return Err("the edit did not show in the API within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    std::fs::write(&dockerfile, &original).map_err(|e| e.to_string())?;

    let rss = std::fs::read_to_string(format!("/proc/{}/status", console.0.id()))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0);

    let whole_ms = median(&mut whole);
    let grep_ms = median(&mut grep);
    println!(
        "fleet: {} services, {} repositories under {}; {id}",
        services.len(),
        repos.len(),
        fleet.display()
    );
    println!(
        "services found: bulkhead {found}, git grep {grep_hits} repositories, ground truth {}",
        planted["services"].as_array().map_or(0, Vec::len)
    );
    println!(
        "console: loaded in {load_s:.1} s (cold scan, its own state), policy findings {policy_s:.1} s later; RSS {rss:.0} MiB with the fleet loaded\n"
    );
    println!(
        "| what | median | git grep / this |\n|---|---|---|\n\
         | git grep -l -F (baseline, {} run(s), sequential) | {grep_ms:.1} ms | 1.0x |\n\
         | bulkhead cve --server, whole command ({} runs; target < 50 ms, >= 500x) | {whole_ms:.1} ms | {:.0}x |\n\
         | a changed Dockerfile shows in the API (target < 1 s) | {seen_ms:.0} ms | |\n",
        options.grep_runs,
        options.runs,
        grep_ms / whole_ms.max(0.001),
    );
    println!(
        "| page (target < 100 ms) | first | median of {} |\n|---|---|---|",
        options.runs
    );
    for (page, first, med) in rows {
        println!("| {page} | {first:.1} ms | {med:.1} ms |");
    }
    Ok(())
}
