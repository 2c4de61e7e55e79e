//! Health checks: a command on the host, or an HTTP GET.

use crate::host::{Host, HostCmd};
use patch::HealthCheck;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// Runs every check; the error names each failing one.
///
/// # Errors
///
/// One line per failing check.
pub fn run_checks(host: &Host, checks: &[HealthCheck]) -> Result<String, String> {
    let mut failures = Vec::new();
    for check in checks {
        let result = match check {
            HealthCheck::Command {
                command,
                timeout_secs,
            } => command_check(host, command, Duration::from_secs(*timeout_secs)),
            HealthCheck::Http {
                url,
                status,
                timeout_secs,
            } => match http_get(url, Duration::from_secs(*timeout_secs)) {
                Ok((got, _)) if got == *status => Ok(()),
                Ok((got, body)) => Err(format!(
                    "HTTP {got}, expected {status}: {}",
                    body.chars().take(200).collect::<String>().trim()
                )),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            failures.push(format!("{check}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(format!("{} check(s) passed", checks.len()))
    } else {
        Err(failures.join("; "))
    }
}

fn command_check(host: &Host, command: &str, timeout: Duration) -> Result<(), String> {
    let cmd = HostCmd::new("sh")
        .arg("-c")
        .arg(command)
        .env("BULKHEAD_HOST", host.name.clone())
        .env("BULKHEAD_ROOT", host.root_text());
    let out = host.run(&cmd, timeout).map_err(|e| e.to_string())?;
    if out.success() {
        Ok(())
    } else {
        Err(format!(
            "exit {}: {}",
            out.code.map_or("signal".into(), |c| c.to_string()),
            out.tail()
        ))
    }
}

/// A minimal HTTP/1.1 GET (`Connection: close`); returns the status and body.
///
/// # Errors
///
/// A malformed URL, a connection or read failure, or an unreadable response.
pub fn http_get(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr_text = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = addr_text
        .to_socket_addrs()
        .map_err(|e| format!("resolving {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: bulkhead-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut response)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    let code = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("{addr} did not answer HTTP: {status_line:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
