//! `bulkhead rollout` end to end, with real processes on loopback: a real
//! `bulkhead gateway`, a blue and a green `bulkhead lab service` per service,
//! client load through the gateway, and the orchestrator as its own process
//! (killed with SIGKILL in the crash tests); the GitOps executor on real git,
//! and the Kubernetes executor through a kubeconfig against a fake API server.

use super::{TempDir, bulkhead, http_request as http, json, run_ok};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const TOKEN_VAR: &str = "BULKHEAD_IT_ROLLOUT_TOKEN";
pub(crate) const TOKEN: &str = "rollout-test-token";

/// Kills the process when the test ends, pass or fail.
pub(crate) struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a process whose stdout is a stream of lines; returns it and the
/// first line, and keeps draining the rest so the process never blocks on a full pipe.
pub(crate) fn spawn_lines(
    cmd: &mut std::process::Command,
    lines_wanted: usize,
) -> (Running, Vec<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                // Nobody listens any more: keep draining.
                continue;
            }
        }
    });
    let running = Running(child);
    let first: Vec<String> = (0..lines_wanted)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("the process printed its address")
        })
        .collect();
    (running, first)
}

/// Starts `bulkhead collector` on free ports with its data in `data`; returns
/// it, its OTLP/HTTP endpoint (`http://HOST:PORT`) and its query address.
pub(crate) fn start_collector(data: &Path) -> (Running, String, String) {
    let (collector, lines) = spawn_lines(
        bulkhead().args(["collector", "--data"]).arg(data).args([
            "--otlp-http",
            "127.0.0.1:0",
            "--no-grpc",
            "--query",
            "127.0.0.1:0",
        ]),
        2,
    );
    let address = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {lines:?}"))
            .to_string()
    };
    let otlp = address("otlp-http listening on ");
    let query = address("query listening on ");
    (collector, otlp, query)
}

/// A `bulkhead lab service`, exporting its spans to `otlp` when given.
fn lab_service(
    name: &str,
    version: &str,
    error_rate: f64,
    otlp: Option<&str>,
) -> (Running, String) {
    let mut cmd = bulkhead();
    cmd.args([
        "lab",
        "service",
        "--name",
        name,
        "--service-version",
        version,
        "--threads",
        "1",
        "--seed",
        "7",
        "--error-rate",
        &error_rate.to_string(),
    ]);
    if let Some(endpoint) = otlp {
        cmd.args(["--otlp-endpoint", endpoint, "--otlp-interval", "100ms"]);
    }
    let (running, lines) = spawn_lines(&mut cmd, 1);
    let first = json(&lines[0]);
    (running, first["addr"].as_str().expect("addr").to_string())
}

/// A fleet on disk (catalog entries with their dependencies), rollout specs
/// for the changed services, and the live processes: a gateway and a blue
/// and a green upstream per service.
pub(crate) struct Lab {
    pub(crate) dir: TempDir,
    services: Vec<String>,
    _upstreams: Vec<Running>,
    _gateway: Running,
    proxy: String,
    pub(crate) admin: String,
}

impl Lab {
    /// `services`: (name, dependencies); `specs`: the rollout documents;
    /// `bad`: services whose green fails at this rate; `otlp`: where the
    /// upstreams send their spans.
    pub(crate) fn start(
        name: &str,
        services: &[(&str, &[&str])],
        specs: &str,
        bad: &[(&str, f64)],
        otlp: Option<&str>,
    ) -> Lab {
        let dir = TempDir::new(name);
        let fleet = dir.path().join("fleet");
        for (service, deps) in services {
            let folder = fleet.join("services").join(service);
            std::fs::create_dir_all(&folder).unwrap();
            let deps: String = deps
                .iter()
                .map(|d| format!("    - component:{d}\n"))
                .collect();
            std::fs::write(
                folder.join("catalog-info.yaml"),
                format!(
                    "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {service}\nspec:\n  type: service\n  lifecycle: production\n  owner: group:shop\n  dependsOn:\n{deps}"
                ),
            )
            .unwrap();
        }
        std::fs::create_dir_all(fleet.join("rollouts")).unwrap();
        std::fs::write(fleet.join("rollouts/rollouts.yaml"), specs).unwrap();

        let mut upstreams = Vec::new();
        let mut config = String::from("listeners: [{address: 127.0.0.1:0}]\nroutes:\n");
        for (service, _) in services {
            config.push_str(&format!("  - {{prefix: /{service}, service: {service}}}\n"));
        }
        config.push_str("services:\n");
        // When the upstreams' spans are what a gate judges, the gateway must keep
        // calling a failing green: passive ejection would take it out after five
        // 5xx answers and answer 503 itself, and the trace store would get no
        // span of it to judge (the gateway's own metrics gate sees those 503s).
        let ejection = if otlp.is_some() {
            "    ejection: off\n"
        } else {
            ""
        };
        for (service, _) in services {
            let rate = bad
                .iter()
                .find(|(b, _)| b == service)
                .map_or(0.0, |(_, r)| *r);
            let (blue, blue_addr) = lab_service(service, "blue", 0.0, otlp);
            let (green, green_addr) = lab_service(service, "green", rate, otlp);
            upstreams.push(blue);
            upstreams.push(green);
            config.push_str(&format!(
                "  {service}:\n    endpoints:\n      - {{address: {blue_addr}, labels: {{version: blue}}}}\n      - {{address: {green_addr}, labels: {{version: green}}}}\n    selector: {{version: blue}}\n{ejection}"
            ));
        }
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, config).unwrap();
        let (gateway, lines) = spawn_lines(
            bulkhead()
                .args(["gateway", "--config"])
                .arg(&config_path)
                .args(["--admin", "127.0.0.1:0", "--admin-token-env", TOKEN_VAR])
                .env(TOKEN_VAR, TOKEN),
            2,
        );
        let proxy = lines[0]
            .strip_prefix("proxy listening on http://")
            .expect("proxy line")
            .to_string();
        let admin = lines[1]
            .strip_prefix("admin listening on http://")
            .expect("admin line")
            .to_string();
        Lab {
            dir,
            services: services.iter().map(|(s, _)| s.to_string()).collect(),
            _upstreams: upstreams,
            _gateway: gateway,
            proxy,
            admin,
        }
    }

    pub(crate) fn fleet(&self) -> std::path::PathBuf {
        self.dir.path().join("fleet")
    }

    /// The gateway's live pools by service, each as the exact JSON text it serves.
    pub(crate) fn routing(&self) -> BTreeMap<String, String> {
        let (status, body) = http(&self.admin, "GET", "/state", Some(TOKEN), "");
        assert_eq!(status, 200, "{body}");
        json(&body)["services"]
            .as_object()
            .expect("services")
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }

    fn select(&self, service: &str, version: &str) {
        let (status, body) = http(
            &self.admin,
            "PUT",
            &format!("/services/{service}/selector"),
            Some(TOKEN),
            &format!(r#"{{"version":"{version}"}}"#),
        );
        assert_eq!(status, 200, "{body}");
    }

    /// The version that answers the next request to `service`.
    pub(crate) fn version_of(&self, service: &str) -> (u16, String) {
        let (status, body) = http(&self.proxy, "GET", &format!("/{service}/probe"), None, "");
        let version = json(&body)["version"].as_str().unwrap_or("").to_string();
        (status, version)
    }

    /// `bulkhead rollout SUBCOMMAND --state STATE`, with the admin token in the environment.
    pub(crate) fn rollout(
        &self,
        subcommand: &str,
        state: &std::path::Path,
    ) -> std::process::Command {
        let mut cmd = bulkhead();
        cmd.args(["rollout", subcommand])
            .env(TOKEN_VAR, TOKEN)
            .arg("--state")
            .arg(state);
        cmd
    }

    /// `bulkhead rollout start` of `services` (comma-separated) in the lab's
    /// fleet through its gateway's admin API.
    pub(crate) fn rollout_start(
        &self,
        state: &std::path::Path,
        services: &str,
    ) -> std::process::Command {
        let mut cmd = self.rollout("start", state);
        cmd.args(["--services", services, "--path"])
            .arg(self.fleet())
            .args([
                "--gateway-admin",
                &format!("http://{}", self.admin),
                "--admin-token-env",
                TOKEN_VAR,
            ]);
        cmd
    }
}

/// Blue-green rollouts for `changed`, promoted automatically unless named in
/// `manual`, with a gateway error-rate gate after the switch: measurements
/// one second apart (2, or 60 for the services in `slow`), failed by one
/// measurement at or above 5%.
pub(crate) fn specs(changed: &[&str], manual: &[&str], slow: &[&str]) -> String {
    let mut specs = String::new();
    for (name, count) in [("error-rate", 2), ("slow-error-rate", 60)] {
        specs.push_str(&format!(
            "---
apiVersion: bulkhead.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{name: {name}}}
spec:
  metrics:
    - name: error-rate
      interval: 1s
      count: {count}
      successCondition: result < 0.05
      failureLimit: 0
      provider: {{gateway: {{metric: error-rate}}}}
"
        ));
    }
    for service in changed {
        specs.push_str(&format!(
            "---
apiVersion: bulkhead.dev/v1alpha1
kind: Rollout
metadata: {{name: {service}}}
spec:
  service: {service}
  strategy:
    blueGreen:
      autoPromotionEnabled: {}
      scaleDownDelaySeconds: 0
      postPromotionAnalysis: {{templates: [{{templateName: {}}}]}}
",
            !manual.contains(service),
            if slow.contains(service) {
                "slow-error-rate"
            } else {
                "error-rate"
            }
        ));
    }
    specs
}

/// One answered request of the client load.
#[derive(Debug, Clone)]
struct Sample {
    start_us: i64,
    service: String,
    status: u16,
    version: String,
}

/// Client load through the gateway: `threads` clients cycling over the
/// services until stopped, bounded by a request count and a deadline.
struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(proxy: &str, services: &[String], threads: usize) -> Load {
        const MAX_REQUESTS_PER_THREAD: usize = 200_000;
        let deadline = Instant::now() + Duration::from_secs(180);
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|t| {
                let (stop, samples) = (stop.clone(), samples.clone());
                let (proxy, services) = (proxy.to_string(), services.to_vec());
                std::thread::spawn(move || {
                    for n in 0..MAX_REQUESTS_PER_THREAD {
                        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                            return;
                        }
                        let service = &services[(n + t) % services.len()];
                        let start_us = orchestrator::state::now_us();
                        let (status, body) =
                            http(&proxy, "GET", &format!("/{service}/load"), None, "");
                        let version = serde_json::from_str::<Value>(&body)
                            .ok()
                            .and_then(|v| v["version"].as_str().map(str::to_string))
                            .unwrap_or_default();
                        samples.lock().unwrap().push(Sample {
                            start_us,
                            service: service.clone(),
                            status,
                            version,
                        });
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            threads,
        }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load thread");
        }
        Arc::try_unwrap(self.samples)
            .expect("threads ended")
            .into_inner()
            .unwrap()
    }
}

pub(crate) fn status_json(lab: &Lab, state: &std::path::Path) -> Value {
    json(&run_ok(lab.rollout("status", state).arg("--json")))
}

pub(crate) fn phase(status: &Value, service: &str) -> String {
    status["rollout"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == service)
        .unwrap_or_else(|| panic!("{service} not in the status"))["phase"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The shop: five providers, three mid-tier services, two front ends, and
/// two services outside the change set. `payments`' green fails 70% of requests.
const SHOP: &[(&str, &[&str])] = &[
    ("catalog", &[]),
    ("inventory", &[]),
    ("payments", &[]),
    ("shipping", &[]),
    ("users", &[]),
    ("checkout", &["payments", "inventory"]),
    ("orders", &["users", "shipping"]),
    ("search", &["catalog"]),
    ("web", &["checkout", "catalog"]),
    ("mobile", &["orders"]),
    ("reviews", &["catalog"]),
    ("ads", &[]),
];
const SHOP_CHANGED: &[&str] = &[
    "catalog",
    "inventory",
    "payments",
    "shipping",
    "users",
    "checkout",
    "orders",
    "search",
    "web",
    "mobile",
];

#[test]
fn a_bad_service_is_rolled_back_alone_and_its_dependents_held() {
    let lab = Lab::start(
        "rollout-e2e",
        SHOP,
        &specs(SHOP_CHANGED, &[], &[]),
        &[("payments", 0.7)],
        None,
    );
    let state = lab.dir.path().join("state");
    let before = lab.routing();
    let load = Load::start(&lab.proxy, &lab.services, 2);
    let out = lab
        .rollout_start(&state, &SHOP_CHANGED.join(","))
        .args(["--executor", "gateway"])
        .output()
        .unwrap();
    let samples = load.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a rollback exits 1:\n{stderr}");
    println!("{stderr}");
    let after = lab.routing();

    // The outcome per service.
    let status = status_json(&lab, &state);
    assert_eq!(status["status"], "finished");
    assert_eq!(phase(&status, "payments"), "rolled-back");
    for held in ["checkout", "web"] {
        assert_eq!(phase(&status, held), "held", "{held}");
    }
    let promoted: BTreeSet<&str> = [
        "catalog",
        "inventory",
        "shipping",
        "users",
        "orders",
        "search",
        "mobile",
    ]
    .into();
    for service in &promoted {
        assert_eq!(phase(&status, service), "promoted", "{service}:\n{stderr}");
    }
    assert_eq!(status["rollout"]["promoted"], promoted.len());

    // The gateway agrees: promoted on green, the rest on blue; the next request proves it.
    for service in SHOP_CHANGED {
        let want = if promoted.contains(service) {
            "green"
        } else {
            "blue"
        };
        assert_eq!(
            lab.version_of(service),
            (200, want.to_string()),
            "{service}"
        );
    }

    // Outside the change set: byte-identical routing, and the rollout's own report agrees.
    for outside in ["reviews", "ads"] {
        assert_eq!(before[outside], after[outside], "{outside}");
    }
    assert_eq!(status["untouched"]["services"], 2);
    assert_eq!(status["untouched"]["identical"], true);

    // The rollback: decided by the analysis, timed from the recorded decision
    // to the admin call returning.
    let rollbacks = status["rollbacks"].as_array().unwrap();
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    assert_eq!(rollbacks[0]["service"], "payments");
    assert_eq!(rollbacks[0]["trigger"], "analysis failed");
    let rolled_back_at = rollbacks[0]["done_us"].as_i64().unwrap();
    println!(
        "rollback time (gate decision -> traffic on blue): {:.2} ms",
        rollbacks[0]["millis"].as_f64().unwrap()
    );

    // Clients saw errors only from payments, only between its switch to
    // green and the rollback, and every payments request started after the
    // rollback landed on blue.
    let db_switch = switch_time(&status, "payments");
    let errors: Vec<&Sample> = samples.iter().filter(|s| s.status >= 500).collect();
    assert!(!errors.is_empty(), "the bad green answered some requests");
    for e in &errors {
        assert_eq!(e.service, "payments", "{e:?}");
        assert!(
            e.start_us >= db_switch,
            "{e:?} before the switch at {db_switch}"
        );
        assert!(
            e.start_us <= rolled_back_at,
            "{e:?} after the rollback at {rolled_back_at}"
        );
    }
    let after_rollback: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.service == "payments" && s.start_us > rolled_back_at)
        .collect();
    assert!(
        !after_rollback.is_empty(),
        "load went on after the rollback"
    );
    assert!(
        after_rollback
            .iter()
            .all(|s| s.status == 200 && s.version == "blue")
    );
}

/// When the orchestrator recorded the order to switch `service` to green
/// (the admin call comes after).
fn switch_time(status: &Value, service: &str) -> i64 {
    status["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["actions"].as_array().unwrap().iter().any(|a| {
                a["type"] == "set_selector"
                    && a["service"] == service
                    && a["selector"]["version"] == "green"
            })
        })
        .map(|t| t["at_us"].as_i64().unwrap())
        .min()
        .unwrap_or_else(|| panic!("{service} was never switched to green"))
}

/// `base`'s green is bad, so `api` (which calls it) is held; `solo` and its
/// caller `solo-client` promote; `other` stays outside the change set.
const SMALL: &[(&str, &[&str])] = &[
    ("base", &[]),
    ("api", &["base"]),
    ("solo", &[]),
    ("solo-client", &["solo"]),
    ("other", &[]),
];
const SMALL_CHANGED: &[&str] = &["base", "api", "solo", "solo-client"];

/// Runs `start` (killed by a test hook when `kill` is given), then `resume`
/// when it was killed; returns the final status.
fn start_and_resume(lab: &Lab, state: &std::path::Path, kill: Option<(&str, usize)>) -> Value {
    use std::os::unix::process::ExitStatusExt as _;
    let mut start = lab.rollout_start(state, &SMALL_CHANGED.join(","));
    if let Some((hook, n)) = kill {
        start.env(hook, n.to_string());
    }
    let out = start.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if kill.is_some() {
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{kill:?}: killed by its hook\n{stderr}"
        );
        // Killed: the database holds the state; actions may be open.
        let resumed = lab.rollout("resume", state).output().unwrap();
        let resume_err = String::from_utf8_lossy(&resumed.stderr);
        assert_eq!(
            resumed.status.code(),
            Some(1),
            "{kill:?}: resume finishes with a rollback\nstart:\n{stderr}\nresume:\n{resume_err}"
        );
    } else {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
    }
    status_json(lab, state)
}

fn assert_consistent(lab: &Lab, status: &Value, before: &BTreeMap<String, String>, case: &str) {
    assert_eq!(status["status"], "finished", "{case}");
    assert_eq!(
        status["open_actions"], 0,
        "{case}: every recorded action performed"
    );
    let want = [
        ("base", "rolled-back", "blue"),
        ("api", "held", "blue"),
        ("solo", "promoted", "green"),
        ("solo-client", "promoted", "green"),
    ];
    for (service, phase_wanted, version) in want {
        assert_eq!(phase(status, service), phase_wanted, "{case}: {service}");
        assert_eq!(
            lab.version_of(service),
            (200, version.to_string()),
            "{case}: {service}"
        );
    }
    assert_eq!(lab.routing()["other"], before["other"], "{case}");
    assert_eq!(status["untouched"]["identical"], true, "{case}");
    let rollbacks = status["rollbacks"].as_array().unwrap();
    assert!(
        rollbacks.iter().any(|r| r["service"] == "base"),
        "{case}: the rollback is recorded: {rollbacks:?}"
    );
}

/// The orchestrator is killed (SIGKILL, through its test hooks) right after
/// each transition is committed and right after each routing action, before
/// it is marked done; `bulkhead rollout resume` always reaches the same
/// consistent, fully recorded end state.
#[test]
fn a_killed_rollout_resumes_to_a_consistent_recorded_state() {
    let lab = Lab::start(
        "rollout-crash",
        SMALL,
        &specs(SMALL_CHANGED, &[], &[]),
        &[("base", 0.9)],
        None,
    );
    let before = lab.routing();
    let load = Load::start(&lab.proxy, &lab.services, 2);

    let clean = lab.dir.path().join("state-clean");
    let status = start_and_resume(&lab, &clean, None);
    assert_consistent(&lab, &status, &before, "uninterrupted");
    let transitions = status["transitions"].as_array().unwrap().len();
    let routing_actions: usize = status["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["actions"].as_array().unwrap())
        .filter(|a| a["type"] == "set_selector" || a["type"] == "set_weights")
        .count();
    assert!(transitions >= 4 && routing_actions >= 4, "{status}");

    let cases = (1..=transitions)
        .map(|n| ("BULKHEAD_ROLLOUT_TEST_KILL_AFTER_TRANSITION", n))
        .chain((1..=routing_actions).map(|n| ("BULKHEAD_ROLLOUT_TEST_KILL_AFTER_ACTION", n)));
    for (hook, n) in cases {
        for service in SMALL_CHANGED {
            lab.select(service, "blue");
        }
        let state = lab.dir.path().join(format!("state-{hook}-{n}"));
        let status = start_and_resume(&lab, &state, Some((hook, n)));
        assert_consistent(&lab, &status, &before, &format!("{hook}={n}"));
    }
    let samples = load.finish();
    assert!(
        samples
            .iter()
            .all(|s| s.status < 500 || s.service == "base")
    );
}

/// The plan of 10 changed services in the generated 100-service fleet is
/// the same on every run and in any input order, and no changed service is
/// in an earlier wave than a changed service it depends on (directly or
/// through unchanged services).
#[test]
fn the_plan_is_deterministic_and_respects_dependencies() {
    let dir = TempDir::new("rollout-plan");
    let fleet = dir.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(&fleet)
            .args(["--services", "100"]),
    );
    let scan = super::scan_json(&fleet, &dir.path().join("scan-state"));
    let deps: BTreeMap<String, Vec<String>> = scan["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                super::strings(&s["depends_on"]),
            )
        })
        .collect();
    let names: Vec<&String> = deps.keys().collect();
    let changed: Vec<String> = names.iter().step_by(10).map(|s| s.to_string()).collect();
    assert_eq!(changed.len(), 10);

    let plan = |order: &[String], state: &str| {
        run_ok(
            bulkhead()
                .args(["rollout", "plan", "--services", &order.join(","), "--path"])
                .arg(&fleet)
                .arg("--state")
                .arg(dir.path().join(state))
                .args(["--format", "json"]),
        )
    };
    let first = plan(&changed, "a");
    let reversed: Vec<String> = changed.iter().rev().cloned().collect();
    assert_eq!(first, plan(&reversed, "b"), "same plan in any order");
    assert_eq!(first, plan(&changed, "a"), "same plan on every run");

    let plan = json(&first);
    let mut wave_of = BTreeMap::new();
    for (index, wave) in plan["waves"].as_array().unwrap().iter().enumerate() {
        for service in super::strings(&wave["services"]) {
            wave_of.insert(service, index);
        }
    }
    assert_eq!(wave_of.len(), 10);
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(s) = stack.pop() {
            for d in deps.get(&s).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    };
    let mut ordered_pairs = 0;
    for consumer in &changed {
        let below = reaches(consumer);
        for provider in &changed {
            if provider != consumer
                && below.contains(provider)
                && !reaches(provider).contains(consumer)
            {
                ordered_pairs += 1;
                assert!(
                    wave_of[provider] < wave_of[consumer],
                    "{provider} (wave {}) must go before its consumer {consumer} (wave {})",
                    wave_of[provider] + 1,
                    wave_of[consumer] + 1
                );
            }
        }
    }
    assert!(
        ordered_pairs > 0,
        "the change set has dependencies to order"
    );
}

/// Polls the rollout's status until `done` holds, for at most 60 seconds.
pub(crate) fn wait_for(
    lab: &Lab,
    state: &std::path::Path,
    what: &str,
    done: impl Fn(&Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The database appears before the driver writes the rollout into it;
        // until then `rollout status` has nothing to show and fails.
        let out = lab.rollout("status", state).arg("--json").output().unwrap();
        let status = if out.status.success() {
            json(&String::from_utf8_lossy(&out.stdout))
        } else {
            Value::Null
        };
        if !status.is_null() && done(&status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Operators act on a rollout from other processes: `pause` and `abort`
/// reach the running driver through the database inbox; `resume`,
/// `promote` and `undo` act themselves when no driver runs.
#[test]
fn operators_act_on_a_running_or_stopped_rollout() {
    let changed = ["base", "solo"];
    let lab = Lab::start(
        "rollout-ops",
        &[("base", &[]), ("solo", &[]), ("other", &[])],
        &specs(&changed, &["solo"], &["base"]),
        &[],
        None,
    );
    let before = lab.routing();
    let load = Load::start(&lab.proxy, &lab.services, 1);
    let state = lab.dir.path().join("state");
    let driver = lab
        .rollout_start(&state, "base,solo")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        &lab,
        &state,
        "base analysing, solo awaiting promotion",
        |s| s["driver"].is_u64() && phase(s, "base") == "analyzing" && phase(s, "solo") == "paused",
    );
    assert_eq!(lab.version_of("base").1, "green");

    // The driver applies both; each command returns once it has.
    run_ok(&mut lab.rollout("pause", &state));
    assert_eq!(status_json(&lab, &state)["rollout"]["paused"], true);
    run_ok(lab.rollout("abort", &state).arg("base"));
    assert_eq!(lab.version_of("base"), (200, "blue".to_string()));

    // Nothing moves without a human now: the driver stops with status 3.
    let out = driver.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = status_json(&lab, &state);
    assert_eq!(phase(&status, "base"), "aborted");
    assert!(status["driver"].is_null());

    // resume lifts the pause; solo still waits for its promotion.
    let resumed = lab.rollout("resume", &state).output().unwrap();
    assert_eq!(resumed.status.code(), Some(3));
    assert_eq!(lab.version_of("solo").1, "blue");
    // promote switches it and drives its analysis to the end.
    let promoted = lab.rollout("promote", &state).arg("solo").output().unwrap();
    assert_eq!(
        promoted.status.code(),
        Some(1),
        "finished, base aborted: {}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    assert_eq!(lab.version_of("solo"), (200, "green".to_string()));
    let status = status_json(&lab, &state);
    assert_eq!(phase(&status, "solo"), "promoted");
    assert_eq!(status["untouched"]["identical"], true);

    // undo takes the promoted service back to its stable pool.
    run_ok(lab.rollout("undo", &state).arg("solo"));
    assert_eq!(lab.version_of("solo"), (200, "blue".to_string()));
    let status = status_json(&lab, &state);
    let triggers: Vec<(&str, &str)> = status["rollbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap(),
                r["trigger"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(triggers, [("base", "abort"), ("solo", "undo")]);
    assert_eq!(lab.routing()["other"], before["other"]);
    assert!(load.finish().iter().all(|s| s.status == 200));
}

/// Bad input is refused with status 2 and a message naming what is wrong,
/// with file and line for specs; nothing is started.
#[test]
fn bad_rollout_input_gets_clear_errors() {
    let dir = TempDir::new("rollout-bad");
    let fleet = dir.path().join("fleet");
    let folder = fleet.join("services/orders");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("catalog-info.yaml"),
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: orders\nspec:\n  type: service\n",
    )
    .unwrap();
    std::fs::create_dir_all(fleet.join("rollouts")).unwrap();
    std::fs::write(
        fleet.join("rollouts/orders.yaml"),
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nmetadata: {name: orders}\nspec:\n  service: orders\n  strategy:\n    blueGreen:\n      autoPromotion: true\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let fails = |args: &[&str], wanted: &str| {
        let out = bulkhead()
            .arg("rollout")
            .args(args)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(wanted),
            "{args:?}: want {wanted:?} in {stderr}"
        );
    };
    let path = fleet.to_str().unwrap();
    fails(
        &["plan", "--path", path],
        "name the changed services with --services",
    );
    fails(
        &["plan", "--services", "orders", "--path", path],
        "orders.yaml:8: spec.strategy.blueGreen: unknown field `autoPromotion`",
    );
    std::fs::remove_file(fleet.join("rollouts/orders.yaml")).unwrap();
    fails(
        &["plan", "--services", "orders,nope", "--path", path],
        "unknown service(s): nope",
    );
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, "{}").unwrap();
    fails(
        &["start", "--plan", plan_file.to_str().unwrap()],
        "is not a rollout plan (write one with `bulkhead rollout plan --format json`)",
    );
    fails(
        &[
            "start",
            "--services",
            "orders",
            "--path",
            path,
            "--gateway-admin",
            "http://127.0.0.1:1",
        ],
        "gateway: connecting to http://127.0.0.1:1/state: ",
    );
    fails(
        &[
            "start",
            "--services",
            "orders",
            "--path",
            path,
            "--executor",
            "gitops",
        ],
        "--executor gitops needs --repo DIR",
    );
    fails(
        &["abort"],
        "has no rollout yet: start one with `bulkhead rollout start`",
    );
    fails(&["status", "--rollout", "7"], "rollout 7 does not exist");
}

/// `--from-ref A --to-ref B` plans the services whose manifests changed
/// between two commits of a monorepo (real git).
#[test]
fn the_change_set_can_come_from_two_git_refs() {
    let dir = TempDir::new("rollout-refs");
    let repo = dir.path().join("mono");
    let git = |args: &[&str]| {
        crate::git_in(&repo, args);
    };
    let write = |service: &str, image: &str| {
        let folder = repo.join("services").join(service);
        std::fs::create_dir_all(folder.join("deploy")).unwrap();
        std::fs::write(
            folder.join("catalog-info.yaml"),
            format!("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {service}\nspec:\n  type: service\n"),
        )
        .unwrap();
        std::fs::write(
            folder.join("deploy/k8s.yaml"),
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {service}\nspec:\n  template:\n    metadata:\n      labels: {{app: {service}}}\n    spec:\n      containers:\n        - name: app\n          image: {image}\n"),
        )
        .unwrap();
    };
    std::fs::create_dir_all(&repo).unwrap();
    git(&["init", "-q"]);
    for service in ["orders", "payments", "search"] {
        write(service, &format!("registry.example/{service}:1.0"));
    }
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "v1"]);
    git(&["tag", "v1"]);
    write("payments", "registry.example/payments:1.1");
    write("search", "registry.example/search:1.1");
    git(&["commit", "-q", "-am", "v2"]);

    let plan = json(&run_ok(
        bulkhead()
            .args([
                "rollout",
                "plan",
                "--from-ref",
                "v1",
                "--to-ref",
                "HEAD",
                "--path",
            ])
            .arg(&repo)
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--json"),
    ));
    assert_eq!(super::strings(&plan["services"]), ["payments", "search"]);
}

/// The GitOps executor through the CLI: each switch is one commit on the
/// branch a GitOps controller syncs (real git), a Service outside the change
/// set keeps its manifest, and `undo` is one more commit.
#[test]
fn the_gitops_executor_commits_each_switch() {
    let dir = TempDir::new("rollout-gitops");
    let repo = dir.path().join("manifests");
    let git = |args: &[&str]| crate::git_in(&repo, args);
    std::fs::create_dir_all(repo.join("rollouts")).unwrap();
    for (service, deps) in [
        ("orders", "[component:payments]"),
        ("payments", "[]"),
        ("search", "[]"),
    ] {
        let folder = repo.join("services").join(service);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("catalog-info.yaml"),
            format!("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {service}\nspec:\n  type: service\n  dependsOn: {deps}\n"),
        )
        .unwrap();
        std::fs::write(
            folder.join("service.yaml"),
            format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {service}\nspec:\n  selector:\n    app: {service}\n    version: blue  # the live pool\n  ports: [{{port: 8080}}]\n"),
        )
        .unwrap();
    }
    let mut specs = String::new();
    for service in ["orders", "payments"] {
        specs.push_str(&format!(
            "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {service}}}\nspec:\n  service: {service}\n  strategy:\n    blueGreen: {{autoPromotionEnabled: true, scaleDownDelaySeconds: 0}}\n"
        ));
    }
    std::fs::write(repo.join("rollouts/rollouts.yaml"), specs).unwrap();
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "manifests"]);

    let state = dir.path().join("state");
    let rollout = |args: &[&str]| {
        let mut cmd = bulkhead();
        cmd.arg("rollout").args(args).arg("--state").arg(&state);
        cmd
    };
    let repo_text = repo.to_str().unwrap();
    let out = rollout(&[
        "start",
        "--services",
        "orders,payments",
        "--executor",
        "gitops",
        "--path",
        repo_text,
        "--repo",
        repo_text,
    ])
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Providers first: payments, then orders.
    assert_eq!(
        git(&["log", "--format=%s", "main"]),
        "rollout: orders: select version=green\nrollout: payments: select version=green\nmanifests"
    );
    assert_eq!(
        git(&["show", "main:services/payments/service.yaml"]),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: payments\nspec:\n  selector:\n    app: payments\n    version: green  # the live pool\n  ports: [{port: 8080}]"
    );
    let status = json(&run_ok(&mut rollout(&["status", "--json"])));
    assert_eq!(status["untouched"]["services"], 1);
    assert_eq!(status["untouched"]["identical"], true);

    run_ok(&mut rollout(&["undo", "payments"]));
    assert_eq!(
        git(&["log", "-1", "--format=%s", "main"]),
        "rollout: payments: select version=blue"
    );
    assert!(
        git(&["show", "main:services/payments/service.yaml"])
            .contains("version: blue  # the live pool")
    );
    // Resuming a finished rollout performs nothing again: no new commit.
    let count = git(&["rev-list", "--count", "main"]);
    let _ = rollout(&["resume"]).output().unwrap();
    assert_eq!(git(&["rev-list", "--count", "main"]), count);
}

/// The trace store as the gate: the upstreams export spans to a real
/// `bulkhead collector`, the analysis reads its per-service error rate, and
/// the failing green is rolled back on it.
#[test]
fn the_trace_store_gates_a_rollout() {
    let data = TempDir::new("rollout-traces-data");
    let (_collector, otlp, query) = start_collector(data.path());
    let specs = format!(
        "apiVersion: bulkhead.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{name: traced-errors}}
spec:
  metrics:
    - name: traced-error-rate
      interval: 2s
      count: 3
      successCondition: result < 0.05
      failureLimit: 0
      provider: {{traces: {{address: '{query}', metric: error-rate}}}}
---
apiVersion: bulkhead.dev/v1alpha1
kind: Rollout
metadata: {{name: pay}}
spec:
  service: pay
  strategy:
    blueGreen:
      scaleDownDelaySeconds: 0
      postPromotionAnalysis: {{templates: [{{templateName: traced-errors}}]}}
"
    );
    let lab = Lab::start(
        "rollout-traces",
        &[("pay", &[]), ("other", &[])],
        &specs,
        &[("pay", 0.8)],
        Some(&otlp),
    );
    // Enough traffic, and windows long enough, that each measurement's error
    // rate rests on many spans even with the whole suite running beside it:
    // a window of one or two spans can pass a green that fails 80% of requests.
    let load = Load::start(&lab.proxy, &lab.services, 4);
    // The gate measures what reached the collector, so it starts only once the
    // services' spans flow there (bounded wait): on a loaded machine the first
    // exports can lag, and windows without a span are errors, not verdicts.
    let mut last = String::new();
    let flowing = crate::eventually_or(60, || {
        let (_, body) = http(
            query.trim_start_matches("http://"),
            "GET",
            "/api/bulkhead/service-stats?service=pay&lookback=2000",
            None,
            "",
        );
        let spans = json(&body)["spans"].as_i64().unwrap_or(0);
        last = body;
        (spans > 0).then_some(())
    });
    assert!(
        flowing.is_some(),
        "no recent span of pay reached the collector within 60 s: {last}"
    );
    let state = lab.dir.path().join("state");
    let out = lab.rollout_start(&state, "pay").output().unwrap();
    load.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stderr}\n{}",
        status_json(&lab, &state)
    );
    let status = status_json(&lab, &state);
    assert_eq!(phase(&status, "pay"), "rolled-back", "{stderr}");
    let analysis = &status["rollout"]["services"][0]["analyses"][0];
    assert_eq!(analysis["verdict"], "failed", "{analysis}");
    assert!(
        analysis["findings"][0]
            .as_str()
            .is_some_and(|f| f.starts_with("traced-error-rate on pay: ")),
        "{analysis}"
    );
    assert_eq!(lab.version_of("pay"), (200, "blue".to_string()));
}

/// The Kubernetes executor through the CLI and a kubeconfig, as kubectl
/// would reach the cluster: HTTPS with the kubeconfig's CA, its user's
/// token, its context's namespace. A wrong token stops the start with the
/// API server's answer.
#[test]
fn the_kubernetes_executor_reaches_the_cluster_through_a_kubeconfig() {
    use crate::fake_kube::{Auth, FakeKube};
    let dir = TempDir::new("rollout-kubeconfig");
    let fleet = dir.path().join("fleet");
    std::fs::create_dir_all(fleet.join("rollouts")).unwrap();
    let mut specs = String::new();
    for (service, deps) in [
        ("orders", "[component:payments]"),
        ("payments", "[]"),
        ("search", "[]"),
    ] {
        let folder = fleet.join("services").join(service);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("catalog-info.yaml"),
            format!("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {service}\nspec:\n  type: service\n  dependsOn: {deps}\n"),
        )
        .unwrap();
        specs.push_str(&format!(
            "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {service}}}\nspec:\n  service: {service}\n  strategy:\n    blueGreen: {{autoPromotionEnabled: true, scaleDownDelaySeconds: 0}}\n"
        ));
    }
    std::fs::write(fleet.join("rollouts/rollouts.yaml"), specs).unwrap();
    let services: Vec<serde_json::Value> = ["orders", "payments", "search"]
        .iter()
        .map(|name| {
            serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"selector": {"app": name, "version": "blue"}, "ports": [{"port": 8080}]}})
        })
        .collect();
    let cluster = FakeKube::start(&services, Auth::Token("k8s-t0ken".into()));
    let kubeconfig = |token: &str| {
        let folder = dir.path().join(format!("kubeconfig-{token}"));
        std::fs::create_dir_all(&folder).unwrap();
        cluster.kubeconfig(&folder, &[("lab", "shop", format!("{{token: {token}}}"))])
    };
    let selector =
        |name: &str| cluster.object("Service", "shop", name).unwrap()["spec"]["selector"].clone();
    let start = |config: &Path, state: &str| {
        bulkhead()
            .args([
                "rollout",
                "start",
                "--services",
                "orders,payments",
                "--executor",
                "kubernetes",
            ])
            .arg("--kubeconfig")
            .arg(config)
            .arg("--path")
            .arg(&fleet)
            .arg("--state")
            .arg(dir.path().join(state))
            .output()
            .unwrap()
    };
    let refused = start(&kubeconfig("wrong"), "state-refused");
    assert_ne!(refused.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Unauthorized"), "{stderr}");
    assert_eq!(selector("orders")["version"], "blue");

    let out = start(&kubeconfig("k8s-t0ken"), "state");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, version) in [
        ("orders", "green"),
        ("payments", "green"),
        ("search", "blue"),
    ] {
        assert_eq!(
            selector(name),
            serde_json::json!({"app": name, "version": version}),
            "{name}"
        );
    }
}
