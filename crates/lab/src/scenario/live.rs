//! What the scenarios share to act on the live lab: HTTP to its processes,
//! the live services, the version each is routed to and their calls,
//! injected faults (cleared when dropped), the gateway's per-service counts,
//! traffic to chosen services, traces arriving at the collector, the log
//! lines of a trace, the published images, the webhook over TLS, and
//! waiting for processes.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Lab, ScenarioError, failed};
use crate::infra::{self, RegistryRecord};
use crate::up;

/// How long a scenario waits for something the lab does on its own
/// (spans exported, a process ready) before it gives up.
pub const SETTLE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);

/// One HTTP request to a lab process.
///
/// # Errors
/// A malformed URL, or no answer before `timeout`.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<http_client::Response, ScenarioError> {
    let parsed = http_client::Url::parse(url).map_err(|e| failed(url, e))?;
    http_client::request(method, &parsed, headers, body, timeout)
        .map_err(|e| failed(&format!("{method} {url}"), e.to_string()))
}

/// `GET url`.
///
/// # Errors
/// As [`http`].
pub fn get(url: &str, timeout: Duration) -> Result<http_client::Response, ScenarioError> {
    http("GET", url, &[], &[], timeout)
}

/// The strings of a JSON array (nothing for anything else).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// Polls `probe` every 200 ms until it gives a value, or fails after `within`.
///
/// # Errors
/// `probe` gave nothing in time; the error names `what`.
pub fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, ScenarioError> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(failed(what, format!("not within {within:?}")));
        }
        std::thread::sleep(POLL);
    }
}

/// A fresh folder for a scenario's own files: `DIR/.bulkhead/scenarios/NAME`.
/// The folder above holds a `.ignore` of everything, so that a scan of the
/// lab's fleet never reads a scenario's files, whatever its state folder.
///
/// # Errors
/// The folder cannot be made.
pub fn work_dir(lab: &Lab, name: &str) -> Result<PathBuf, ScenarioError> {
    let scenarios = lab.dir.join(".bulkhead").join("scenarios");
    let work = scenarios.join(name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)
        .and_then(|()| std::fs::write(scenarios.join(".ignore"), "*\n"))
        .map_err(|e| failed(&format!("making {}", work.display()), e.to_string()))?;
    Ok(work)
}

/// A live service of the lab, at the version the gateway routes it to.
#[derive(Debug, Clone)]
pub struct LiveService {
    pub name: String,
    /// The version its selector names (1.0.0 until a rollout moved it).
    pub version: String,
    /// The address of the process running that version.
    pub addr: String,
    /// The live services it calls (through the gateway).
    pub calls: Vec<String>,
    pub public_paths: Vec<String>,
}

/// The lab's live services, in the order `lab up` picked them (the first one
/// starts the longest call chain), with the calls between them, each at the
/// version the gateway routes it to now.
///
/// # Errors
/// The ground truth is unreadable, or the gateway's admin API or lab.json
/// cannot be read.
pub fn services(lab: &Lab) -> Result<Vec<LiveService>, ScenarioError> {
    let record = up::read_record(&lab.dir)?;
    let procs: Vec<&Value> = record["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["kind"] == "service")
        .collect();
    // One process per live service is named after it; other versions are `S@V`.
    let live = procs.iter().filter(|p| p["name"] == p["service"]).count();
    let fleet = up::fleet_of(&lab.truth).map_err(|detail| ScenarioError::Missing {
        what: "fleet in the ground truth".into(),
        detail,
    })?;
    let routed = routed_versions(lab)?;
    let picked = up::pick_live(&fleet, live.max(1));
    Ok(picked
        .into_iter()
        .filter_map(|s| {
            let version = routed.get(&s.name)?.clone();
            let p = procs
                .iter()
                .find(|p| p["service"] == s.name.as_str() && p["version"] == version.as_str())?;
            Some(LiveService {
                addr: p["addr"].as_str().unwrap_or_default().to_string(),
                version,
                name: s.name,
                calls: s.depends_on,
                public_paths: s.public_paths,
            })
        })
        .collect())
}

/// The bearer token of the services' `/admin/faults` (`DIR/admin-token`).
///
/// # Errors
/// The lab was started without one.
pub fn admin_token(lab: &Lab) -> Result<String, ScenarioError> {
    let path = lab.dir.join(up::ADMIN_TOKEN);
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_string())
        .map_err(|e| ScenarioError::Missing {
            what: "admin token".into(),
            detail: format!(
                "{}: {e} (restart the lab with this bulkhead's `lab up`)",
                path.display()
            ),
        })
}

/// Faults injected into one live service; cleared when dropped, whatever
/// happened in between.
pub struct Injected {
    url: String,
    token: String,
}

impl Injected {
    /// Replaces the faults of the service at `addr` (`PUT /admin/faults`).
    ///
    /// # Errors
    /// The service refused them or did not answer.
    pub fn new(
        service: &str,
        addr: &str,
        token: &str,
        faults: &Value,
    ) -> Result<Injected, ScenarioError> {
        let url = format!("http://{addr}/admin/faults");
        let answer = http(
            "PUT",
            &url,
            &[
                http_client::bearer(token),
                ("Content-Type", "application/json".into()),
            ],
            faults.to_string().as_bytes(),
            Duration::from_secs(5),
        )?;
        if answer.status != 200 {
            return Err(failed(
                &format!("injecting {faults} into {service}"),
                format!(
                    "answered {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ),
            ));
        }
        Ok(Injected {
            url,
            token: token.to_string(),
        })
    }

    /// Clears the faults now and says whether the service confirms none is left.
    pub fn clear(self) -> bool {
        self.delete();
        let left = http(
            "GET",
            &self.url,
            &[http_client::bearer(&self.token)],
            &[],
            Duration::from_secs(5),
        )
        .ok()
        .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok());
        left.is_some_and(|faults| {
            faults["error_rate"] == json!(0.0)
                && faults["latency_ms"] == json!(0)
                && faults["fail_calls"].as_array().is_some_and(Vec::is_empty)
        })
    }

    fn delete(&self) {
        let _ = http(
            "DELETE",
            &self.url,
            &[http_client::bearer(&self.token)],
            &[],
            Duration::from_secs(5),
        );
    }
}

impl Drop for Injected {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Requests and 5xx answers the gateway counted, per service and endpoint version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<(String, String), (u64, u64)>);

impl Counts {
    /// Reads `bulkhead_gateway_requests_total` from the gateway's admin `/metrics`.
    ///
    /// # Errors
    /// The gateway did not answer.
    pub fn read(lab: &Lab) -> Result<Counts, ScenarioError> {
        let admin = lab.address("gateway_admin")?;
        let answer = get(&format!("{admin}/metrics"), Duration::from_secs(5))?;
        Ok(Counts::parse(&String::from_utf8_lossy(&answer.body)))
    }

    /// The request counters of a Prometheus text exposition.
    pub fn parse(text: &str) -> Counts {
        let mut counts = BTreeMap::new();
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
                    .unwrap_or_default()
            };
            let n: u64 = value.trim().parse().unwrap_or(0);
            let entry: &mut (u64, u64) = counts
                .entry((label("service"), label("version")))
                .or_default();
            entry.0 += n;
            if label("code") == "5xx" {
                entry.1 += n;
            }
        }
        Counts(counts)
    }

    /// What was counted since `before`.
    pub fn since(&self, before: &Counts) -> Counts {
        Counts(
            self.0
                .iter()
                .map(|(key, (total, errors))| {
                    let (t0, e0) = before.0.get(key).copied().unwrap_or_default();
                    (
                        key.clone(),
                        (total.saturating_sub(t0), errors.saturating_sub(e0)),
                    )
                })
                .filter(|(_, (total, _))| *total > 0)
                .collect(),
        )
    }

    /// Requests and 5xx of one service, all versions together.
    pub fn service(&self, name: &str) -> (u64, u64) {
        self.0
            .iter()
            .filter(|((service, _), _)| service == name)
            .fold((0, 0), |(t, e), (_, (total, errors))| {
                (t + total, e + errors)
            })
    }

    /// `{service: {version: {requests, failed}}}` for a report.
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for ((service, version), (total, errors)) in &self.0 {
            let entry = out
                .entry(service.clone())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            entry[version] = json!({"requests": total, "failed": errors});
        }
        Value::Object(out)
    }
}

/// The services of a lab service's JSON answer along its deepest call chain.
pub fn deepest_chain(body: &Value) -> Vec<String> {
    let mut best: Vec<String> = Vec::new();
    for call in body["downstream"].as_array().into_iter().flatten() {
        let chain = deepest_chain(&call["body"]);
        if chain.len() > best.len() {
            best = chain;
        }
    }
    best.insert(0, body["service"].as_str().unwrap_or_default().to_string());
    best
}

/// How many spans a lab request's trace holds, from its JSON answer: a
/// server span per service that answered, a client span and a gateway span
/// per call, and the ingress gateway's span.
pub fn expected_spans(body: &Value) -> usize {
    fn walk(body: &Value) -> (usize, usize) {
        let mut answered = 1;
        let mut calls = 0;
        for call in body["downstream"].as_array().into_iter().flatten() {
            calls += 1;
            if call["body"].is_object() {
                let (a, c) = walk(&call["body"]);
                answered += a;
                calls += c;
            }
        }
        (answered, calls)
    }
    let (answered, calls) = walk(body);
    answered + 2 * calls + 1
}

/// The spans of a trace the collector holds so far.
pub fn stored_spans(collector: &str, trace_id: &str) -> usize {
    get(
        &format!("{collector}/api/traces/{trace_id}"),
        Duration::from_secs(5),
    )
    .ok()
    .and_then(|answer| serde_json::from_slice::<Value>(&answer.body).ok())
    .and_then(|json| json["data"][0]["spans"].as_array().map(Vec::len))
    .unwrap_or(0)
}

/// Waits until the collector holds all `spans` spans of the trace: every
/// process exports on its own schedule, and an analysis of half a trace
/// would blame the wrong hop.
///
/// # Errors
/// They did not all arrive within [`SETTLE`].
pub fn await_trace(collector: &str, trace_id: &str, spans: usize) -> Result<(), ScenarioError> {
    let mut stored = 0;
    eventually(
        &format!("the {spans} spans of trace {trace_id}"),
        SETTLE,
        || {
            stored = stored_spans(collector, trace_id);
            (stored >= spans).then_some(())
        },
    )
    .map_err(|e| failed(&e.to_string(), format!("the collector holds {stored}")))
}

/// The lines of every log in `DIR/logs` that carry `trace_id`, by process
/// name, every version of a service under the service's name.
pub fn log_lines(dir: &Path, trace_id: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir.join("logs")) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let lines: Vec<String> = text
            .lines()
            .filter(|line| line.contains(trace_id))
            .map(String::from)
            .collect();
        if !lines.is_empty() {
            // `S@V.log` is another version of service S: its lines are S's too.
            let service = name.split('@').next().unwrap_or(name);
            out.entry(service.to_string())
                .or_insert_with(Vec::new)
                .extend(lines);
        }
    }
    out
}

/// Sends GET `path` to the ingress and returns the status, the `x-trace-id`
/// and the JSON body.
///
/// # Errors
/// The ingress did not answer.
pub fn get_ingress(lab: &Lab, path: &str) -> Result<(u16, String, Value), ScenarioError> {
    let ingress = lab.address("ingress")?;
    let answer = get(&format!("{ingress}{path}"), Duration::from_secs(30))?;
    let trace_id = answer.header("x-trace-id").unwrap_or_default().to_string();
    let body = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    Ok((answer.status, trace_id, body))
}

/// The lab's published images, once `lab up` has published them.
///
/// # Errors
/// The lab runs no registry (docker-registry not installed) or did not publish within a minute.
pub fn published(lab: &Lab) -> Result<RegistryRecord, ScenarioError> {
    lab.address("registry")?;
    eventually(
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
    let ca = eventually("the webhook's CA", Duration::from_secs(30), || {
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

/// What the gateway routes each service to now: its selector, from the admin API.
///
/// # Errors
/// The admin API cannot be read.
pub fn selectors(lab: &Lab) -> Result<BTreeMap<String, Value>, ScenarioError> {
    let admin = lab.address("gateway_admin")?;
    let answer = get(&format!("{admin}/config"), Duration::from_secs(5))?;
    let config: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| failed("the gateway's configuration", e.to_string()))?;
    Ok(config["config"]["services"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, s)| (name.clone(), s["selection"]["selector"].clone()))
        .collect())
}

/// The version the gateway routes each service to now (its selector's
/// `version`): 1.0.0 when the lab started, another once a rollout moved it.
///
/// # Errors
/// The admin API cannot be read.
pub fn routed_versions(lab: &Lab) -> Result<BTreeMap<String, String>, ScenarioError> {
    Ok(selectors(lab)?
        .into_iter()
        .filter_map(|(name, selector)| Some((name, selector["version"].as_str()?.to_string())))
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
    eventually(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_counts_sum_status_classes_per_service_and_version() {
        let before = Counts::parse(
            "# TYPE bulkhead_gateway_requests_total counter\nbulkhead_gateway_requests_total{service=\"a\",version=\"1.0.0\",code=\"2xx\"} 10\n",
        );
        let after = Counts::parse(
            "bulkhead_gateway_requests_total{service=\"a\",version=\"1.0.0\",code=\"2xx\"} 14\nbulkhead_gateway_requests_total{service=\"a\",version=\"green\",code=\"5xx\"} 3\nbulkhead_gateway_requests_total{service=\"a\",version=\"green\",code=\"2xx\"} 7\nbulkhead_gateway_request_duration_seconds_count{service=\"a\"} 9\n",
        );
        let delta = after.since(&before);
        assert_eq!(delta.service("a"), (14, 3));
        assert_eq!(
            delta.to_json(),
            json!({"a": {"1.0.0": {"requests": 4, "failed": 0}, "green": {"requests": 10, "failed": 3}}})
        );
    }

    #[test]
    fn a_request_has_a_server_span_per_answer_and_two_spans_per_call() {
        let body = json!({"service": "web", "downstream": [
            {"body": {"service": "a", "downstream": []}},
            {"body": {"service": "b", "downstream": [{"error": "connection refused"}]}},
        ]});
        // 3 answers, 3 calls (one unanswered), the ingress gateway's span.
        assert_eq!(expected_spans(&body), 3 + 2 * 3 + 1);
    }

    #[test]
    fn the_deepest_chain_follows_the_longest_downstream_branch() {
        let body = json!({"service": "web", "downstream": [
            {"body": {"service": "a", "downstream": []}},
            {"body": {"service": "b", "downstream": [{"body": {"service": "c"}}]}},
        ]});
        assert_eq!(deepest_chain(&body), ["web", "b", "c"]);
    }
}
