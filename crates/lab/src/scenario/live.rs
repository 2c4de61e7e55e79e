//! What the cve, enforce and patch scenarios share to reach the running
//! lab: its published images, the gateway's per-service counts, traffic to
//! chosen services, the webhook over TLS, waiting for processes.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Lab, ScenarioError};
use crate::infra::{self, RegistryRecord};
use crate::up;

fn failed(what: &str, detail: impl Into<String>) -> ScenarioError {
    ScenarioError::Failed {
        what: what.to_string(),
        detail: detail.into(),
    }
}

/// Polls `probe` every 100 ms until it gives a value, or fails after `within`.
pub fn poll<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, ScenarioError> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(failed(what, format!("not within {within:?}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lab's published images, once `lab up` has published them.
///
/// # Errors
/// The lab runs no registry (docker-registry not installed) or did not publish within a minute.
pub fn published(lab: &Lab) -> Result<RegistryRecord, ScenarioError> {
    lab.address("registry")?;
    poll(
        "the lab's images in its registry",
        Duration::from_secs(60),
        // Done once lab.json says so: the cluster snapshot then shows the published digests.
        || {
            let record = up::read_record(&lab.dir).ok()?;
            record["provision"]["registry"]["published"].as_u64()?;
            RegistryRecord::read(&lab.dir).ok()
        },
    )
}

/// The lab's webhook address (`HOST:PORT`) and CA, once it has printed one.
///
/// # Errors
/// The lab names no webhook or its CA did not appear within 30 s.
pub fn webhook(lab: &Lab) -> Result<(String, String), ScenarioError> {
    let url = lab.address("webhook")?;
    let addr = url.trim_start_matches("https://").to_string();
    let ca = poll("the webhook's CA", Duration::from_secs(30), || {
        std::fs::read_to_string(lab.dir.join(infra::WEBHOOK_CA)).ok()
    })?;
    Ok((addr, ca))
}

/// An AdmissionReview v1 request creating `object` (a Deployment).
pub fn review(uid: &str, object: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": object["metadata"]["namespace"].as_str().unwrap_or("default"),
            "operation": "CREATE",
            "userInfo": {"username": "lab-scenario"},
            "object": object,
            "dryRun": false,
        }
    })
}

/// A Deployment of one container running `image`, with limits (so only the image is judged).
pub fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "lab"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": name,
                    "image": image,
                    "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                }]},
            },
        },
    })
}

/// Sends a Deployment of `image` to the webhook over TLS: (allowed, message).
///
/// # Errors
/// The webhook cannot be reached or answers no AdmissionReview.
pub fn admit(
    addr: &str,
    ca: &str,
    uid: &str,
    image: &str,
) -> Result<(bool, String), ScenarioError> {
    let body = review(uid, &deployment(uid, image)).to_string();
    let (status, answer) = infra::post_tls(addr, ca, "/validate", body.as_bytes())
        .map_err(|e| failed("the admission webhook", e))?;
    let answer: Value = serde_json::from_slice(&answer).map_err(|e| {
        failed(
            "the admission webhook",
            format!("answered {status} without JSON: {e}"),
        )
    })?;
    let response = &answer["response"];
    let allowed = response["allowed"]
        .as_bool()
        .ok_or_else(|| failed("the admission webhook", format!("no decision: {answer}")))?;
    let message = response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok((allowed, message))
}

/// Per service, (answered, failed) requests from the gateway's `/metrics`.
///
/// # Errors
/// The gateway's admin API cannot be read.
pub fn gateway_counts(lab: &Lab) -> Result<BTreeMap<String, (f64, f64)>, ScenarioError> {
    let admin = lab.address("gateway_admin")?;
    let url = http_client::Url::parse(&format!("{admin}/metrics"))
        .map_err(|e| failed("the gateway's metrics", e))?;
    let r = http_client::request("GET", &url, &[], &[], Duration::from_secs(5))
        .map_err(|e| failed("the gateway's metrics", e.to_string()))?;
    let text = String::from_utf8_lossy(&r.body);
    let mut counts: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("bulkhead_gateway_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        let (Some(service), Some(code), Ok(n)) =
            (label("service"), label("code"), value.trim().parse::<f64>())
        else {
            continue;
        };
        let entry = counts.entry(service).or_default();
        entry.0 += n;
        if code == "5xx" {
            entry.1 += n;
        }
    }
    Ok(counts)
}

/// What the gateway routes each service to now: its selector, from the admin API.
///
/// # Errors
/// The admin API cannot be read.
pub fn selectors(lab: &Lab) -> Result<BTreeMap<String, Value>, ScenarioError> {
    let admin = lab.address("gateway_admin")?;
    let url = http_client::Url::parse(&format!("{admin}/config"))
        .map_err(|e| failed("the gateway's configuration", e))?;
    let r = http_client::request("GET", &url, &[], &[], Duration::from_secs(5))
        .map_err(|e| failed("the gateway's configuration", e.to_string()))?;
    let config: Value = serde_json::from_slice(&r.body)
        .map_err(|e| failed("the gateway's configuration", e.to_string()))?;
    Ok(config["config"]["services"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, s)| (name.clone(), s["selection"]["selector"].clone()))
        .collect())
}

/// Requests through the ingress to chosen services (by `Host`, as the
/// services call each other), so that each one's gate always has traffic.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    /// Starts about `rate` requests per second spread over `services`.
    pub fn start(ingress: &str, services: &[String], rate: f64) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let addr = ingress.trim_start_matches("http://").to_string();
        let services = services.to_vec();
        let thread = {
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            std::thread::spawn(move || {
                let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
                for service in services.iter().cycle() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let _ = get_by_host(&addr, service);
                    sent.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(interval);
                }
            })
        };
        Traffic {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.sent.load(Ordering::Relaxed)
    }
}

/// `GET /` to `addr` with `Host: host`; the status.
fn get_by_host(addr: &str, host: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: bulkhead-lab-scenario\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits until the lab's process `name` runs and answers its health check.
///
/// # Errors
/// It did not within 30 s.
pub fn wait_healthy(lab: &Lab, name: &str) -> Result<Value, ScenarioError> {
    poll(
        &format!("process {name} healthy"),
        Duration::from_secs(30),
        || {
            let status = up::status(&lab.dir).ok()?;
            status["processes"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == name && p["healthy"] == true)
                .cloned()
        },
    )
}
