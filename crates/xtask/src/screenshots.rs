//! `screenshots`: writes PNG screenshots of the console's main pages into
//! docs/console/ (shown in docs/console.md), taken by headless Chromium from
//! a console over a generated sample fleet.

use crate::bench_console::{get, start_console};
use std::path::Path;
use std::process::{Command, Stdio};

pub const USAGE: &str = "usage: cargo xtask screenshots [--services N]

  --services N   services in the generated fleet (default 60)";

/// The pages shot: (file name, path; SERVICE and CVE are filled in).
const PAGES: [(&str, &str); 7] = [
    ("fleet.png", "/"),
    ("service.png", "/services/SERVICE"),
    ("impact.png", "/impact?services=SERVICE"),
    ("cve.png", "/cve/CVE"),
    ("templates.png", "/templates?version=v2.0.0"),
    ("policy.png", "/policy"),
    ("hosts.png", "/hosts"),
];

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    let mut services = 60;
    for (flag, value) in crate::flag_pairs(args, USAGE)? {
        match flag {
            "--services" => services = crate::count(flag, value)?,
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let bulkhead = crate::build_bulkhead(root)?;
    let work = std::env::temp_dir().join(format!("bulkhead-screenshots-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let result = shoot(&bulkhead, &work, services, &root.join("docs/console"));
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn shoot(bulkhead: &Path, work: &Path, services: usize, out: &Path) -> Result<(), String> {
    let fleet = work.join("fleet");
    let status = Command::new(bulkhead)
        .args(["lab", "init"])
        .arg(&fleet)
        .args(["--services", &services.to_string(), "--seed", "42"])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("running bulkhead lab init: {e}"))?;
    if !status.success() {
        return Err(format!("bulkhead lab init failed: {status}"));
    }
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fleet.join("ground-truth.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let cve = truth["critical_cve"]["id"]
        .as_str()
        .unwrap_or("CVE-2023-38545");
    let service = truth["services"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .max_by_key(|s| s["depends_on"].as_array().map_or(0, Vec::len))
        })
        .and_then(|s| s["name"].as_str())
        .ok_or("no service in the ground truth")?;
    let (child, addr) = start_console(bulkhead, &fleet, &work.join("state"))?;
    let mut console = child;
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let result = (|| {
        for (file, path) in PAGES {
            let path = path.replace("SERVICE", service).replace("CVE", cve);
            let (status, _) = get(&addr, &path)?;
            if status != 200 {
                return Err(format!("{path} answered {status}"));
            }
            let target = out.join(file);
            let shot = Command::new("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--window-size=1280,1000",
                ])
                .arg(format!(
                    "--user-data-dir={}",
                    work.join("profile").display()
                ))
                .arg(format!("--screenshot={}", target.display()))
                .arg(format!("http://{addr}{path}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("running chromium (scripts/setup installs it): {e}"))?;
            if !shot.success() || !target.exists() {
                return Err(format!("chromium could not shoot {path}: {shot}"));
            }
            println!("{} <- {path}", target.display());
        }
        Ok(())
    })();
    let _ = console.kill();
    let _ = console.wait();
    result
}
