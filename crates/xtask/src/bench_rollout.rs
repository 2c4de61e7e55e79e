//! `bench-rollout`: how fast a failing service is back on its stable pool.
//!
//! A release `bulkhead gateway` fronts one service with a healthy blue and a
//! green that fails every request, each a `bulkhead lab service`. Each run
//! resets the service to blue and runs `bulkhead rollout start`: the switch
//! to green, a one-second gateway error-rate gate that fails, and the
//! rollback. The rollback time is what the orchestrator records: from the
//! decision (committed to the state database) to the gateway's admin call
//! returning, after which the next request goes to blue — each run checks
//! that it does. The baseline is the bare switch: the same admin call made
//! directly, as often. The table gives medians and maxima with the ratio of
//! rollback to bare switch, i.e. what durability and orchestration add.

use crate::process::{gateway, lab_service};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const USAGE: &str = "usage: cargo xtask bench-rollout [--runs N]

  --runs N   rollouts to run, each with one rollback (default 20)";

const TOKEN: &str = "bench-rollout-token";
const TOKEN_VAR: &str = "BULKHEAD_BENCH_ROLLOUT_TOKEN";

/// One HTTP/1.1 request; returns the status and body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response {response:?}"))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

fn select(admin: &str, version: &str) -> Result<(), String> {
    let (status, body) = http(
        admin,
        "PUT",
        "/services/pay/selector",
        &format!(r#"{{"version":"{version}"}}"#),
    )?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("switch to {version}: {status} {body}"))
    }
}

fn median_and_max(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[values.len() - 1])
}

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    let mut runs = 20;
    for (flag, value) in crate::flag_pairs(args, USAGE)? {
        match flag {
            "--runs" => runs = crate::count(flag, value)?,
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let bulkhead = crate::build_bulkhead(root)?;
    let dir = std::env::temp_dir().join(format!("bulkhead-bench-rollout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = bench(&bulkhead, &dir, runs);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(bulkhead: &Path, dir: &Path, runs: usize) -> Result<(), String> {
    let fleet = dir.join("fleet");
    let write = |path: &Path, text: &str| {
        std::fs::create_dir_all(path.parent().expect("parent"))
            .and_then(|()| std::fs::write(path, text))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(
        &fleet.join("services/pay/catalog-info.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: pay\nspec:\n  type: service\n",
    )?;
    write(
        &fleet.join("rollouts/pay.yaml"),
        "apiVersion: bulkhead.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-rate}
spec:
  metrics:
    - {name: error-rate, interval: 1s, count: 1, successCondition: result < 0.05, failureLimit: 0, provider: {gateway: {metric: error-rate}}}
---
apiVersion: bulkhead.dev/v1alpha1
kind: Rollout
metadata: {name: pay}
spec:
  service: pay
  strategy:
    blueGreen:
      scaleDownDelaySeconds: 0
      postPromotionAnalysis: {templates: [{templateName: error-rate}]}
",
    )?;
    let (_blue, blue) = lab_service(bulkhead, "pay", "blue", &["--error-rate", "0"])?;
    let (_green, green) = lab_service(bulkhead, "pay", "green", &["--error-rate", "1"])?;
    let config = dir.join("gateway.yaml");
    write(
        &config,
        &format!(
            "listeners: [{{address: 127.0.0.1:0}}]\nroutes: [{{prefix: /pay, service: pay}}]\nservices:\n  pay:\n    endpoints:\n      - {{address: {blue}, labels: {{version: blue}}}}\n      - {{address: {green}, labels: {{version: green}}}}\n    selector: {{version: blue}}\n"
        ),
    )?;
    let (_gateway, proxy, admin) = gateway(bulkhead, &config, TOKEN_VAR, TOKEN)?;

    // The gate needs traffic to judge: one client thread, until the runs end.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, proxy) = (stop.clone(), proxy.clone());
        let deadline = Instant::now() + Duration::from_secs(30 + 5 * runs as u64);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let _ = http(&proxy, "GET", "/pay/load", "");
            }
        })
    };

    let mut bare = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        select(&admin, "green")?;
        bare.push(started.elapsed().as_secs_f64() * 1000.0);
        select(&admin, "blue")?;
    }
    let mut rollback = Vec::with_capacity(runs);
    for run in 0..runs {
        select(&admin, "blue")?;
        let state = dir.join(format!("state-{run}"));
        let out = Command::new(bulkhead)
            .args(["rollout", "start", "--services", "pay", "--path"])
            .arg(&fleet)
            .arg("--state")
            .arg(&state)
            .args([
                "--gateway-admin",
                &format!("http://{admin}"),
                "--admin-token-env",
                TOKEN_VAR,
            ])
            .env(TOKEN_VAR, TOKEN)
            .output()
            .map_err(|e| format!("running bulkhead rollout: {e}"))?;
        if out.status.code() != Some(1) {
            return Err(format!(
                "run {run}: expected a rollback (exit 1), got {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let (_, body) = http(&proxy, "GET", "/pay/probe", "")?;
        if !body.contains(r#""version":"blue""#) {
            return Err(format!(
                "run {run}: the next request was not on blue: {body}"
            ));
        }
        let status = Command::new(bulkhead)
            .args(["rollout", "status", "--json", "--state"])
            .arg(&state)
            .output()
            .map_err(|e| format!("running bulkhead rollout status: {e}"))?;
        let status: serde_json::Value = serde_json::from_slice(&status.stdout)
            .map_err(|e| format!("run {run}: status is not JSON: {e}"))?;
        let millis = status["rollbacks"][0]["millis"]
            .as_f64()
            .ok_or_else(|| format!("run {run}: no rollback recorded: {status}"))?;
        rollback.push(millis);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.join();

    let (bare_median, bare_max) = median_and_max(bare);
    let (median, max) = median_and_max(rollback);
    println!("rollback time, {runs} runs, release build, loopback\n");
    println!("| measure | median ms | max ms | ratio (median) |");
    println!("|---|---:|---:|---:|");
    println!("| bare switch: admin PUT selector | {bare_median:.2} | {bare_max:.2} | 1.00 |");
    println!(
        "| rollout rollback: gate decision recorded -> traffic on blue | {median:.2} | {max:.2} | {:.2} |",
        median / bare_median
    );
    Ok(())
}
