//! `bulkhead lab up`, `status` and `down`: a small live lab becomes healthy,
//! answers through the gateway across several services in one trace, restarts
//! a killed service, shows its running workloads to `cve`, and leaves no
//! process behind.

use crate::{TempDir, bulkhead, eventually_or, run_ok};
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::Duration;

const READY_WITHIN: Duration = Duration::from_secs(60);

/// Stops the lab if a test fails half-way, so no process outlives it.
pub(crate) struct Running {
    pub(crate) child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = bulkhead()
            .args(["lab", "down", "--dir"])
            .arg(&self.dir)
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn status(dir: &std::path::Path) -> Value {
    let out = run_ok(
        bulkhead()
            .args(["lab", "status", "--json", "--dir"])
            .arg(dir),
    );
    serde_json::from_str(&out).expect("status --json is JSON")
}

/// Polls `lab status --json` until `done` holds, or fails after READY_WITHIN.
pub(crate) fn wait_for(dir: &std::path::Path, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    eventually_or(READY_WITHIN.as_secs(), || {
        if !dir.join("lab.json").is_file() {
            return None;
        }
        last = status(dir);
        done(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("{what} within {READY_WITHIN:?}: {last:#}"))
}

/// Starts `lab up` in `dir` on any free ingress port, with `args` for size and load.
pub(crate) fn start_lab(dir: &std::path::Path, args: &[&str]) -> Running {
    let child = bulkhead()
        .args(["lab", "up"])
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lab up");
    Running {
        child,
        dir: dir.to_path_buf(),
    }
}

pub(crate) fn all_healthy(status: &Value) -> bool {
    status["state"] == "running"
        && status["processes"]
            .as_array()
            .is_some_and(|ps| !ps.is_empty() && ps.iter().all(|p| p["healthy"] == true))
}

pub(crate) fn pids(status: &Value) -> Vec<u64> {
    status["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["pid"].as_u64())
        .collect()
}

pub(crate) fn alive(pid: u64) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Services a response passed through, all carrying `trace_id`, depth first.
fn hops(body: &Value, trace_id: &str, seen: &mut Vec<String>) {
    assert_eq!(
        body["trace_id"], trace_id,
        "one trace across every hop: {body}"
    );
    seen.push(body["service"].as_str().unwrap_or_default().to_string());
    for call in body["downstream"].as_array().into_iter().flatten() {
        hops(&call["body"], trace_id, seen);
    }
}

/// The lab's collector holds the request's trace with a span of every
/// service it crossed.
fn the_collector_holds_the_trace_of_every_hop(ready: &Value, trace_id: &str, seen: &[String]) {
    let collector = ready["addresses"]["collector_query"].as_str().unwrap();
    let url = http_client::Url::parse(&format!("{collector}/api/traces/{trace_id}")).unwrap();
    let mut traced = std::collections::BTreeSet::new();
    let every_hop = eventually_or(READY_WITHIN.as_secs(), || {
        let answer = http_client::request("GET", &url, &[], &[], Duration::from_secs(5)).ok()?;
        let trace: Value = serde_json::from_slice(&answer.body).ok()?;
        traced = trace["data"][0]["processes"]
            .as_object()?
            .values()
            .filter_map(|p| p["serviceName"].as_str().map(String::from))
            .collect();
        seen.iter().all(|s| traced.contains(s)).then_some(())
    });
    assert!(
        every_hop.is_some(),
        "trace {trace_id} has spans of {seen:?}: {traced:?}"
    );
}

/// How many services deep a response's call chain goes.
fn depth(body: &Value) -> usize {
    1 + body["downstream"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|call| depth(&call["body"]))
        .max()
        .unwrap_or(0)
}

/// `bulkhead cve` on the lab names, for every live service the planted
/// critical CVE reaches, its running pod from the lab's cluster snapshot.
fn running_workloads_are_in_the_cve_answer(dir: &std::path::Path, processes: &[Value]) {
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground-truth.json")).unwrap())
            .unwrap();
    let cve = truth["critical_cve"]["id"].as_str().unwrap();
    let reached: Vec<&str> = truth["critical_cve"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let live: Vec<(&str, u64)> = processes
        .iter()
        .filter(|p| p["kind"] == "service" && reached.contains(&p["name"].as_str().unwrap()))
        .map(|p| (p["name"].as_str().unwrap(), p["pid"].as_u64().unwrap()))
        .collect();
    assert!(
        !live.is_empty(),
        "the CVE reaches a live service: {reached:?}"
    );
    let out = run_ok(bulkhead().args(["cve", cve, "--json", "--path"]).arg(dir));
    let answer: Value = serde_json::from_str(&out).expect("cve --json is JSON");
    for (name, pid) in live {
        let service = answer["cve"]["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .unwrap_or_else(|| panic!("{cve} names {name}: {answer:#}"));
        let pod = format!("/{name}-{pid}");
        assert!(
            service["running"].as_array().unwrap().iter().any(|r| r
                .as_str()
                .unwrap()
                .starts_with("lab/")
                && r.as_str().unwrap().contains(&pod)),
            "{name}'s running pod {pod} in cluster lab: {service:#}"
        );
    }
}

/// With `prometheus` on PATH the lab runs it, and its gateway target comes up;
/// without it the lab records none.
fn prometheus_scrapes_the_gateway_when_installed(ready: &Value) {
    let installed = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("prometheus").is_file()));
    let address = &ready["addresses"]["prometheus"];
    if !installed {
        assert_eq!(*address, Value::Null, "no prometheus on PATH");
        return;
    }
    let url = format!(
        "{}/api/v1/targets",
        address.as_str().expect("prometheus address")
    );
    let url = http_client::Url::parse(&url).unwrap();
    let mut targets = Value::Null;
    let gateway_up = eventually_or(READY_WITHIN.as_secs(), || {
        targets = http_client::request("GET", &url, &[], &[], Duration::from_secs(5))
            .ok()
            .and_then(|r| serde_json::from_slice(&r.body).ok())
            .unwrap_or(Value::Null);
        targets["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["labels"]["job"] == "gateway" && t["health"] == "up")
            .then_some(())
    });
    assert!(
        gateway_up.is_some(),
        "prometheus's gateway target up within {READY_WITHIN:?}: {targets:#}"
    );
}

#[test]
fn a_live_lab_answers_across_services_restarts_a_killed_one_and_stops_clean() {
    let tmp = TempDir::new("lab-up");
    let dir = tmp.join("lab");
    let mut lab = start_lab(
        &dir,
        &["--fleet-size", "12", "--services", "6", "--rate", "5"],
    );

    let ready = wait_for(&dir, "every process healthy", all_healthy);
    let processes = ready["processes"].as_array().unwrap();
    assert_eq!(
        processes.iter().filter(|p| p["kind"] == "service").count(),
        6
    );
    let kinds: &[&str] = if ready["addresses"]["prometheus"].is_string() {
        &["gateway", "collector", "prometheus"]
    } else {
        &["gateway", "collector"]
    };
    for kind in kinds {
        assert!(processes.iter().any(|p| p["kind"] == *kind), "{kind} runs");
    }
    for p in processes {
        let log = std::path::PathBuf::from(p["log"].as_str().unwrap());
        assert!(log.starts_with(dir.join("logs")), "{log:?}");
    }
    // The console serves the lab's fleet: a live service has its page in the API.
    let console = ready["addresses"]["console"].as_str().unwrap();
    let service = processes.iter().find(|p| p["kind"] == "service").unwrap()["name"]
        .as_str()
        .unwrap();
    let url = http_client::Url::parse(&format!("{console}/api/services/{service}")).unwrap();
    let page = http_client::request("GET", &url, &[], &[], Duration::from_secs(10)).unwrap();
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    assert!(
        String::from_utf8_lossy(&page.body).contains(service),
        "the console's page of {service}"
    );
    for kind in ["registry", "webhook", "console"] {
        assert!(
            processes.iter().any(|p| p["kind"] == kind),
            "{kind} runs: {ready:#}"
        );
    }
    assert!(ready["addresses"]["registry"].is_string(), "{ready:#}");
    // Requests per second come from each process's counters between two writes of lab.json.
    wait_for(&dir, "the gateway's requests/s under load", |s| {
        s["processes"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["kind"] == "gateway" && p["requests_per_s"].as_f64().is_some_and(|r| r > 0.0)
            })
        })
    });

    running_workloads_are_in_the_cve_answer(&dir, processes);
    prometheus_scrapes_the_gateway_when_installed(&ready);

    let again = bulkhead()
        .args(["lab", "up", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("a lab already runs in"), "{stderr}");

    let ingress = ready["addresses"]["ingress"].as_str().unwrap();
    let route = ready["addresses"]["public_routes"][0].as_str().unwrap();
    let url = http_client::Url::parse(&format!("{ingress}{route}")).unwrap();
    let answer = http_client::request("GET", &url, &[], &[], Duration::from_secs(10)).unwrap();
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let trace_id = answer.header("x-trace-id").expect("x-trace-id").to_string();
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    let mut seen = Vec::new();
    hops(&body, &trace_id, &mut seen);
    assert!(
        depth(&body) >= 6,
        "the first public route's request crosses six services, one calling the next: {seen:?}"
    );
    the_collector_holds_the_trace_of_every_hop(&ready, &trace_id, &seen);

    let victim = processes.iter().find(|p| p["kind"] == "service").unwrap();
    let (name, old_pid) = (victim["name"].clone(), victim["pid"].as_u64().unwrap());
    run_ok(std::process::Command::new("kill").args(["-KILL", &old_pid.to_string()]));
    let restarted = wait_for(&dir, "the killed service restarted and healthy", |s| {
        all_healthy(s)
            && s["processes"].as_array().unwrap().iter().any(|p| {
                p["name"] == name && p["restarts"] == 1 && p["pid"].as_u64() != Some(old_pid)
            })
    });
    let record = restarted["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap();
    assert!(
        record["last_exit"].as_str().unwrap().contains("SIGKILL"),
        "{record}"
    );

    let mut recorded = pids(&ready);
    recorded.extend(pids(&restarted));
    run_ok(bulkhead().args(["lab", "down", "--dir"]).arg(&dir));
    let exit = lab.child.wait().unwrap();
    assert!(exit.success(), "lab up exits 0 after lab down: {exit}");
    let survivors: Vec<u64> = recorded.into_iter().filter(|&pid| alive(pid)).collect();
    assert!(
        survivors.is_empty(),
        "still alive after lab down: {survivors:?}"
    );
    assert_eq!(status(&dir)["state"], "stopped");
}

#[test]
fn sigterm_stops_the_lab_and_every_child() {
    let tmp = TempDir::new("lab-up-sigterm");
    let dir = tmp.join("lab");
    let mut lab = start_lab(
        &dir,
        &["--fleet-size", "8", "--services", "3", "--rate", "0"],
    );
    let ready = wait_for(&dir, "every process healthy", all_healthy);
    let recorded = pids(&ready);
    run_ok(std::process::Command::new("kill").args(["-TERM", &lab.child.id().to_string()]));
    let exit = lab.child.wait().unwrap();
    assert!(exit.success(), "lab up exits 0 on SIGTERM: {exit}");
    let survivors: Vec<u64> = recorded.into_iter().filter(|&pid| alive(pid)).collect();
    assert!(
        survivors.is_empty(),
        "still alive after SIGTERM: {survivors:?}"
    );
    assert_eq!(status(&dir)["state"], "stopped");
}

#[test]
fn lab_up_and_lab_tour_refuse_a_folder_that_is_not_a_lab() {
    // (command, what stderr also says): the tour passes on what lab up said.
    let rows: [(&[&str], &str); 2] = [
        (&["lab", "up", "--listen", "127.0.0.1:0"], "is not a lab"),
        (&["lab", "tour", "--scenarios", "trace"], "exited"),
    ];
    for (args, says) in rows {
        let tmp = TempDir::new("lab-not-a-lab");
        tmp.write("notes.txt", "mine\n");
        let out = bulkhead()
            .args(args)
            .arg("--dir")
            .arg(tmp.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("is not a lab"), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!tmp.join("lab.json").exists(), "{args:?}");
    }
}

#[test]
fn lab_up_names_a_taken_ingress_port() {
    let tmp = TempDir::new("lab-up-port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = bulkhead()
        .args(["lab", "up", "--listen", &addr, "--dir"])
        .arg(tmp.join("lab"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{addr} is in use")), "{stderr}");
}
