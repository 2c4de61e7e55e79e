//! Child processes of the benchmarks: killed when dropped, their first
//! stdout lines read with a deadline, `bulkhead lab service` instances.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A process killed when dropped; its stdout is drained by a thread.
pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and returns it with its first `n` stdout lines.
pub(crate) fn start(cmd: &mut Command, n: usize) -> Result<(Process, Vec<String>), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {cmd:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let process = Process(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let lines = (0..n)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(30))
                .map_err(|_| format!("{cmd:?} printed no address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((process, lines))
}

/// Starts `bulkhead lab service --name NAME --service-version VERSION
/// --threads 1` with `extra` arguments; the process and its address.
pub(crate) fn lab_service(
    bulkhead: &Path,
    name: &str,
    version: &str,
    extra: &[&str],
) -> Result<(Process, String), String> {
    let (process, lines) = start(
        Command::new(bulkhead)
            .args([
                "lab",
                "service",
                "--name",
                name,
                "--service-version",
                version,
                "--threads",
                "1",
            ])
            .args(extra),
        1,
    )?;
    let addr = serde_json::from_str::<serde_json::Value>(&lines[0])
        .ok()
        .and_then(|v| v["addr"].as_str().map(str::to_string))
        .ok_or_else(|| format!("unexpected first line {:?}", lines[0]))?;
    Ok((process, addr))
}

/// Starts `bulkhead gateway --config CONFIG` with its admin API on a free
/// port, the bearer token `token` read from `token_var`; the process, the
/// proxy address and the admin address.
pub(crate) fn gateway(
    bulkhead: &Path,
    config: &Path,
    token_var: &str,
    token: &str,
) -> Result<(Process, String, String), String> {
    let (process, lines) = start(
        Command::new(bulkhead)
            .arg("gateway")
            .arg("--config")
            .arg(config)
            .args(["--admin", "127.0.0.1:0", "--admin-token-env", token_var])
            .env(token_var, token),
        2,
    )?;
    let address = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::to_string)
            .ok_or_else(|| format!("no {prefix:?} in {lines:?}"))
    };
    let proxy = address("proxy listening on http://")?;
    let admin = address("admin listening on http://")?;
    Ok((process, proxy, admin))
}
