//! `bulkhead console` end to end: a generated fleet checked page by page
//! against its ground truth in headless Chromium, links followed, a file
//! edit seen through the API, the CLI answered through the console, the
//! safety checks, and a rollout aborted by clicking in the page.

use super::browser::Browser;
use super::rollout::{
    Lab, Running, TOKEN, TOKEN_VAR, phase, spawn_lines, specs, start_collector, status_json,
    wait_for,
};
use super::{TempDir, bulkhead, eventually_or, http_exchange, json, run_ok};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Stdio;

/// A running console; its address.
struct Console {
    _process: Running,
    addr: String,
}

impl Console {
    fn start(fleet: &Path, extra: &[&str]) -> Console {
        let (process, lines) = spawn_lines(
            bulkhead()
                .args(["console", "--listen", "127.0.0.1:0", "--path"])
                .arg(fleet)
                .args(extra)
                .env(TOKEN_VAR, TOKEN),
            1,
        );
        let addr = lines[0]
            .strip_prefix("console listening on http://")
            .unwrap_or_else(|| panic!("console line: {}", lines[0]))
            .to_string();
        Console {
            _process: process,
            addr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> (u16, String) {
        request(&self.addr, "GET", path, &[], "")
    }

    fn api(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        json(&body)
    }
}

/// One HTTP/1.1 request with the given extra headers, as a form post; the
/// status and body.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut all = vec![("host", addr)];
    all.extend_from_slice(headers);
    all.push(("content-type", "application/x-www-form-urlencoded"));
    http_exchange(addr, method, path, &all, body)
}

/// A generated fleet and its ground truth.
fn generated(dir: &TempDir, services: usize) -> (std::path::PathBuf, Value) {
    let fleet = dir.path().join("fleet");
    run_ok(bulkhead().args(["lab", "init"]).arg(&fleet).args([
        "--services",
        &services.to_string(),
        "--seed",
        "11",
    ]));
    let truth = json(&std::fs::read_to_string(fleet.join("ground-truth.json")).unwrap());
    (fleet, truth)
}

fn set(values: impl IntoIterator<Item = impl Into<String>>) -> BTreeSet<String> {
    values.into_iter().map(Into::into).collect()
}

fn names(list: &Value) -> BTreeSet<String> {
    set(list.as_array().unwrap().iter().filter_map(|v| v.as_str()))
}

#[test]
fn every_page_shows_the_ground_truth_in_a_real_browser() {
    let dir = TempDir::new("console-pages");
    let (fleet, truth) = generated(&dir, 40);
    let (_collector, otlp, query) = start_collector(&dir.path().join("traces"));
    let otlp = otlp
        .strip_prefix("http://")
        .expect("otlp-http address")
        .to_string();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let logs = lab_logs(&dir, trace_id);
    let console = Console::start(
        &fleet,
        &["--collector", &query, "--logs", logs.to_str().unwrap()],
    );
    let mut browser = Browser::start();
    let services = truth["services"].as_array().unwrap();

    // Fleet: every service, with its owner and tier.
    browser.goto(&console.url("/"));
    let rows = browser.eval(
        "Array.from(document.querySelectorAll('#services tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent.trim()))",
    );
    let shown: BTreeMap<String, (String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                (
                    r[1].as_str().unwrap().to_string(),
                    r[2].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (String, String)> = services
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                (
                    s["owner"].as_str().unwrap().to_string(),
                    s["tier"].to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(shown, expected);
    assert_eq!(
        browser.texts("svg.graph").len(),
        1,
        "the dependency graph is drawn"
    );

    // A service: its callees are its dependencies, its callers those that depend on it.
    let busy = services
        .iter()
        .max_by_key(|s| s["depends_on"].as_array().map_or(0, Vec::len))
        .unwrap();
    let name = busy["name"].as_str().unwrap();
    browser.goto(&console.url(&format!("/services/{name}")));
    assert_eq!(browser.texts("h1"), [format!("Service {name}")]);
    let page = console.api(&format!("/api/services/{name}"));
    assert_eq!(names(&page["callees"]), names(&busy["depends_on"]));
    let callers: BTreeSet<String> = services
        .iter()
        .filter(|s| {
            s["depends_on"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d == name)
        })
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names(&page["callers"]), callers);
    let anchors = browser.eval("Array.from(document.querySelectorAll('ul.files a')).map(a => a.getAttribute('href')).filter(h => h.includes('#L')).length");
    assert!(anchors.as_u64().unwrap() > 0, "files link to their lines");

    // The CVE page lists exactly the ground truth's services.
    let cve = truth["critical_cve"]["id"].as_str().unwrap();
    browser.goto(&console.url(&format!("/cve/{cve}")));
    let listed = set(browser.texts("#cve-services tbody tr td:first-child"));
    assert_eq!(listed, names(&truth["critical_cve"]["services"]));

    // Templates: apps per pinned version, as planted.
    browser.goto(&console.url("/templates"));
    assert!(
        !browser.texts("svg.chart").is_empty(),
        "the adoption chart is drawn"
    );
    let mut planted: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in services {
        let t = &s["template"];
        if let (Some(source), Some(version)) = (t["source"].as_str(), t["version"].as_str()) {
            *planted
                .entry((source.to_string(), version.to_string()))
                .or_default() += 1;
        }
    }
    let adoption = console.api("/api/templates");
    let sources: BTreeSet<&str> = planted.keys().map(|(s, _)| s.as_str()).collect();
    let mut counted: BTreeMap<(String, String), usize> = BTreeMap::new();
    for t in adoption["templates"].as_array().unwrap() {
        let source = t["source"].as_str().unwrap();
        if !sources.contains(source) {
            continue;
        }
        for v in t["versions"].as_array().unwrap() {
            counted.insert(
                (
                    source.to_string(),
                    v["version"].as_str().unwrap().to_string(),
                ),
                v["apps"].as_u64().unwrap() as usize,
            );
        }
    }
    assert_eq!(counted, planted);

    // Hosts: the inventory's hosts.
    browser.goto(&console.url("/hosts"));
    assert_eq!(
        set(browser.texts("#hosts tbody tr td:first-child")),
        names(&truth["hosts"])
    );

    // Policy: findings about the fleet's own services, by rule.
    browser.goto(&console.url("/policy"));
    let all: BTreeSet<String> = expected.keys().cloned().collect();
    for subject in browser.texts("#policy tbody tr td:nth-child(3)") {
        let service = subject.strip_prefix("service ").unwrap_or(&subject);
        assert!(all.contains(service), "a finding about {subject}");
    }
    assert!(!browser.texts("svg.chart").is_empty());

    // Impact, rollouts (none yet) and traces (none stored) render too.
    browser.goto(&console.url(&format!("/impact?services={name}")));
    assert_eq!(browser.texts("h1"), [format!("Impact: upgrade {name}")]);
    browser.goto(&console.url("/rollouts"));
    assert!(browser.texts("main p")[0].contains("No rollout"));
    browser.goto(&console.url(&format!("/traces?service={name}")));
    assert_eq!(browser.texts("#traces tbody tr").len(), 0);

    // A trace: storefront calls payments, which fails.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let span = |service: &str,
                id: &str,
                parent: &str,
                name: &str,
                from_ms: u64,
                to_ms: u64,
                error: bool| {
        format!(
            r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace_id}","spanId":"{id}","parentSpanId":"{parent}","name":"{name}","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"{}","endTimeUnixNano":"{}","status":{{"code":{},"message":"{}"}}}}]}}]}}"#,
            now + from_ms * 1_000_000,
            now + to_ms * 1_000_000,
            if error { 2 } else { 0 },
            if error { "card declined" } else { "" },
        )
    };
    let body = format!(
        r#"{{"resourceSpans":[{},{}]}}"#,
        span(
            "storefront",
            "00f067aa0ba902b7",
            "",
            "GET /checkout",
            0,
            100,
            true
        ),
        span(
            "payments",
            "00f067aa0ba902b8",
            "00f067aa0ba902b7",
            "POST /charge",
            10,
            90,
            true
        ),
    );
    let (status, answer) = {
        let mut stream = std::net::TcpStream::connect(&otlp).unwrap();
        write!(stream, "POST /v1/traces HTTP/1.1\r\nhost: {otlp}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        (response[9..12].to_string(), response)
    };
    assert_eq!(status, "200", "{answer}");
    browser.goto(&console.url("/traces?service=storefront"));
    assert_eq!(browser.texts("#traces tbody tr td:first-child"), [trace_id]);
    browser.click(&format!("#traces a[href=\"/traces/{trace_id}\"]"));
    let trace_url = console.url(&format!("/traces/{trace_id}"));
    browser.wait_loaded(|href| href == trace_url);
    let cause = browser.texts("p.root-cause");
    assert!(cause[0].contains("payments"), "{cause:?}");
    assert_eq!(browser.texts("svg.waterfall g.span").len(), 2);
    assert_eq!(browser.texts("svg.waterfall g.root-cause").len(), 1);
    // The trace's log lines, from every process's file, in the order they were written.
    let rows = browser.eval(
        "Array.from(document.querySelectorAll('#logs tbody tr')).map(r => [r.cells[0].textContent, r.cells[1].textContent, r.cells[2].textContent])",
    );
    assert_eq!(
        rows,
        serde_json::json!([
            ["2026-01-02T03:04:05.090Z", "storefront", ""],
            ["2026-01-02T03:04:05.100Z", "storefront", "info"],
            ["2026-01-02T03:04:05.150Z", "payments", "error"],
            ["2026-01-02T03:04:05.190Z", "storefront", "error"],
        ])
    );

    // A template release checked against every app: the planted breaking apps, and
    // waves made only of apps that are safe on it.
    browser.goto(&console.url("/templates?version=v2.0.0"));
    let breaking = set(browser.texts("#breaking tbody tr td:first-child"));
    let planted: BTreeSet<String> = services
        .iter()
        .filter(|s| s["breaks_on_v2"] == true)
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!planted.is_empty());
    assert_eq!(breaking, planted);
    let representatives = set(browser.texts("#representatives tbody tr td:first-child"));
    assert!(!representatives.is_empty());
    let check = console.api("/api/templates?version=v2.0.0");
    assert_eq!(check["check"]["version"], "v2.0.0");
    let waves = check["plan"]["waves"].as_array().unwrap();
    assert_eq!(
        browser.texts("#waves tbody tr").len(),
        waves.len(),
        "a row per wave"
    );
    for wave in waves {
        for app in wave["apps"].as_array().unwrap() {
            let name = app["service"].as_str().unwrap();
            assert!(!planted.contains(name), "{name} breaks, yet is in a wave");
        }
    }
    let (status, body) = console.get("/templates?version=v9.9.9");
    assert_eq!(status, 400);
    assert!(
        body.contains("version=v9.9.9: no release of ci-templates"),
        "{body}"
    );
    let (status, body) = console.get("/templates?version=v2.0.0&soak=soon");
    assert_eq!(status, 400);
    assert!(body.contains("soak=soon"), "{body}");

    // Every page's JSON mirror answers.
    for path in [
        "/api/fleet",
        "/api/cve",
        "/api/templates",
        "/api/policy",
        "/api/rollouts",
        "/api/hosts",
        "/api/impact",
        "/api/status",
        "/api/scan",
    ] {
        console.api(path);
    }
}

/// A folder of logs as the lab writes them, one JSON-lines file per process:
/// four lines of `trace_id` across the gateway and two services, and others
/// around them.
fn lab_logs(dir: &TempDir, trace_id: &str) -> std::path::PathBuf {
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let line = |ts: &str, level: &str, service: &str, trace: &str| {
        format!(
            "{{\"ts\":\"2026-01-02T03:04:{ts}Z\",\"level\":\"{level}\",\"event\":\"request_finished\",\"service\":\"{service}\",\"version\":\"blue\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,\"duration_ms\":1.5,\"trace_id\":\"{trace}\",\"span_id\":\"00f067aa0ba902b7\"}}\n"
        )
    };
    let other = "0af7651916cd43dd8448eb211c80319c";
    std::fs::write(
        logs.join("storefront.log"),
        [
            line("05.050", "info", "storefront", other),
            line("05.100", "info", "storefront", trace_id),
            line("05.190", "error", "storefront", trace_id),
        ]
        .concat(),
    )
    .unwrap();
    std::fs::write(
        logs.join("payments.log"),
        [
            line("05.150", "error", "payments", trace_id),
            line("05.160", "info", "payments", other),
        ]
        .concat(),
    )
    .unwrap();
    // The gateway's access log writes `time`, and no level or event.
    std::fs::write(
        logs.join("gateway.log"),
        format!(
            "gateway listening\n{{\"time\":\"2026-01-02T03:04:05.090Z\",\"trace_id\":\"{trace_id}\",\"method\":\"GET\",\"path\":\"/checkout\",\"service\":\"storefront\",\"status\":200}}\n"
        ),
    )
    .unwrap();
    logs
}

#[test]
fn links_lead_from_the_fleet_through_a_service_to_its_impact() {
    let dir = TempDir::new("console-links");
    let (fleet, truth) = generated(&dir, 30);
    let services = truth["services"].as_array().unwrap();
    // A service others call, so its impact reaches beyond itself.
    let called = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .find(|n| {
            services
                .iter()
                .any(|s| s["depends_on"].as_array().unwrap().iter().any(|d| d == n))
        })
        .expect("a called service");
    let console = Console::start(&fleet, &[]);
    let mut browser = Browser::start();
    browser.goto(&console.url("/"));
    browser.click(&format!("#services a[href=\"/services/{called}\"]"));
    let service_url = console.url(&format!("/services/{called}"));
    browser.wait_loaded(|href| href == service_url);
    browser.click(&format!("a[href=\"/impact?services={called}\"]"));
    let impact_url = console.url(&format!("/impact?services={called}"));
    browser.wait_loaded(|href| href == impact_url);
    let impacted = set(browser.texts("#impacted tbody tr td:first-child"));
    assert!(impacted.contains(called));
    for caller in services.iter().filter(|s| {
        s["depends_on"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == called)
    }) {
        assert!(
            impacted.contains(caller["name"].as_str().unwrap()),
            "{} calls {called}",
            caller["name"]
        );
    }
    let markdown = browser.eval("document.querySelector('textarea.markdown').value");
    assert!(markdown.as_str().unwrap().contains(called));
}

#[test]
fn a_dockerfile_edit_shows_in_the_api() {
    let dir = TempDir::new("console-watch");
    let (fleet, truth) = generated(&dir, 20);
    let console = Console::start(&fleet, &[]);
    let service = &truth["services"][0];
    let name = service["name"].as_str().unwrap();
    let dockerfile = fleet
        .join(service["repo"].as_str().unwrap())
        .join("Dockerfile");
    let before = console.api(&format!("/api/services/{name}"))["service"]["base_images"].clone();
    assert_eq!(before[0].as_str(), service["base_image"].as_str());
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let old = service["base_image"].as_str().unwrap();
    let new = "registry.acme.internal/base/debian-13:2026.01";
    std::fs::write(&dockerfile, text.replace(old, new)).unwrap();
    let seen = eventually_or(10, || {
        let now = console.api(&format!("/api/services/{name}"))["service"]["base_images"].clone();
        (now[0] == new).then_some(now)
    });
    assert!(seen.is_some(), "the new base shows in the API");
    assert!(console.api("/api/status")["generation"].as_u64().unwrap() > 1);
}

#[test]
fn the_cli_asks_the_console_and_prints_what_a_scan_prints() {
    let dir = TempDir::new("console-cli");
    let (fleet, truth) = generated(&dir, 30);
    let console = Console::start(&fleet, &[]);
    let server = console.url("");
    let cve = truth["critical_cve"]["id"].as_str().unwrap();
    let service = truth["services"][0]["name"].as_str().unwrap();
    let commands: Vec<Vec<String>> = vec![
        vec!["cve".into(), cve.into(), "--json".into()],
        vec![
            "cve".into(),
            cve.into(),
            "--format".into(),
            "markdown".into(),
        ],
        vec!["cve".into(), cve.into()],
        vec!["impact".into(), "services".into(), service.into()],
        vec![
            "impact".into(),
            "services".into(),
            service.into(),
            "--json".into(),
        ],
        vec![
            "impact".into(),
            "image".into(),
            "registry.acme.internal/base/debian-12".into(),
            "--json".into(),
        ],
    ];
    for args in &commands {
        let scanned = run_ok(bulkhead().args(args).arg("--path").arg(&fleet));
        let asked = bulkhead()
            .args(args)
            .arg("--path")
            .arg(&fleet)
            .args(["--server", &server])
            .output()
            .unwrap();
        assert!(asked.status.success(), "{args:?}");
        assert_eq!(
            String::from_utf8(asked.stdout).unwrap(),
            scanned,
            "{args:?}"
        );
        assert!(
            !String::from_utf8_lossy(&asked.stderr).contains("scanning instead"),
            "{args:?} asked the console"
        );
        let by_env = bulkhead()
            .args(args)
            .arg("--path")
            .arg(&fleet)
            .env("BULKHEAD_SERVER", &server)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(by_env.stdout).unwrap(),
            scanned,
            "{args:?} with BULKHEAD_SERVER"
        );
    }
    // scan: the same fleet; only the counts of files read this time differ.
    let totals = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.contains(" parsed, "))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let scanned = run_ok(bulkhead().arg("scan").arg(&fleet));
    let asked = run_ok(bulkhead().args(["scan", "--server", &server]).arg(&fleet));
    assert_eq!(totals(&asked), totals(&scanned));
    assert!(scanned.contains("30 services"), "{scanned}");
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("stats");
        v
    };
    let scanned = json(&run_ok(
        bulkhead().args(["scan", "--json", "--path"]).arg(&fleet),
    ));
    let asked = json(&run_ok(
        bulkhead()
            .args(["scan", "--json", "--server", &server, "--path"])
            .arg(&fleet),
    ));
    assert_eq!(strip(asked), strip(scanned));

    // No console there: the command scans, and says so.
    let out = bulkhead()
        .args([
            "cve",
            cve,
            "--json",
            "--server",
            "http://127.0.0.1:9",
            "--path",
        ])
        .arg(&fleet)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no console answers at http://127.0.0.1:9")
    );
    let scanned = run_ok(
        bulkhead()
            .args(["cve", cve, "--json", "--path"])
            .arg(&fleet),
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), scanned);
}

#[test]
fn bad_requests_get_clear_answers() {
    let dir = TempDir::new("console-bad");
    let (fleet, _) = generated(&dir, 10);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "console-secret\n").unwrap();
    let console = Console::start(&fleet, &["--token-file", token_file.to_str().unwrap()]);
    let addr = console.addr.clone();

    let (status, body) = console.get("/?page=abc");
    assert_eq!(status, 400);
    assert!(body.contains("page=abc: expected a page number"), "{body}");
    let (status, body) = console.get("/impact?services=a&colour=red");
    assert_eq!(status, 400);
    assert!(
        body.contains("unknown query parameter &quot;colour&quot;"),
        "{body}"
    );
    let (status, body) = console.get("/traces/zz");
    assert_eq!(status, 400, "{body}");
    for path in [
        "/services/no-such-service",
        "/cve/CVE-1999-0001",
        "/impact?services=no-such-service",
    ] {
        let (status, body) = console.get(path);
        assert_eq!(status, 404, "{path}");
        assert!(
            body.contains("<input name=\"q\""),
            "{path} has a search box: {body}"
        );
    }
    let (status, body) = console.get("/api/services/no-such-service");
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["status"], 404);

    // Actions: the token (401), the same origin and the CSRF token (403).
    let csrf = {
        let (_, page) = console.get("/login");
        let at = page.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
        page[at..at + 32].to_string()
    };
    let origin = format!("http://{addr}");
    let form = format!("csrf={csrf}");
    let (status, _) = request(
        &addr,
        "POST",
        "/rollouts/1/abort",
        &[("origin", &origin)],
        &form,
    );
    assert_eq!(status, 401, "no token");
    let (status, _) = request(
        &addr,
        "POST",
        "/rollouts/1/abort",
        &[
            ("origin", "http://evil.example"),
            ("authorization", "Bearer console-secret"),
        ],
        &form,
    );
    assert_eq!(status, 403, "cross-site");
    let (status, _) = request(
        &addr,
        "POST",
        "/rollouts/1/abort",
        &[("authorization", "Bearer console-secret")],
        &form,
    );
    assert_eq!(status, 403, "no origin at all");
    let (status, _) = request(
        &addr,
        "POST",
        "/rollouts/1/abort",
        &[
            ("origin", &origin),
            ("authorization", "Bearer console-secret"),
        ],
        "csrf=0000",
    );
    assert_eq!(status, 403, "stale CSRF token");
    let (status, body) = request(
        &addr,
        "POST",
        "/rollouts/1/abort",
        &[
            ("origin", &origin),
            ("authorization", "Bearer console-secret"),
        ],
        &form,
    );
    assert_eq!(
        status, 404,
        "all checks pass, and there is no rollout 1: {body}"
    );

    // Beyond loopback only with a token.
    let out = bulkhead()
        .args(["console", "--listen", "0.0.0.0:0", "--path"])
        .arg(&fleet)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("is not a loopback address: give --token-file")
    );
}

/// A rollout against live processes: a gateway, blue and green lab services,
/// the orchestrator driving it; "Abort" clicked in the console's page sends
/// the gateway's selector back to blue.
#[test]
fn abort_clicked_in_the_page_routes_back_to_the_stable_pool() {
    let lab = Lab::start(
        "console-rollout",
        &[("base", &[]), ("other", &[])],
        &specs(&["base"], &[], &["base"]),
        &[],
        None,
    );
    let state = lab.dir.path().join("state");
    let mut driver = lab
        .rollout_start(&state, "base")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&lab, &state, "base analysing on green", |s| {
        s["driver"].is_u64() && phase(s, "base") == "analyzing"
    });
    assert_eq!(lab.version_of("base").1, "green");

    let admin = format!("http://{}", lab.admin);
    let console = Console::start(
        &lab.fleet(),
        &[
            "--state",
            state.to_str().unwrap(),
            "--gateway-admin",
            &admin,
            "--gateway-admin-token-env",
            TOKEN_VAR,
        ],
    );
    let mut browser = Browser::start();
    browser.goto(&console.url("/rollouts"));
    browser.click("#rollouts a[href=\"/rollouts/1\"]");
    let page = console.url("/rollouts/1");
    browser.wait_loaded(|href| href == page);
    assert_eq!(browser.texts("#rollout-status"), ["running"]);
    browser.click("button[data-action=\"abort:base\"]");
    browser.wait_loaded(|href| href == page);
    let aborted = eventually_or(30, || {
        let status = status_json(&lab, &state);
        (phase(&status, "base") == "aborted").then_some(status)
    });
    assert!(aborted.is_some(), "the abort reached the driver");
    assert_eq!(lab.version_of("base"), (200, "blue".to_string()));
    let pools = json(&lab.routing()["base"]);
    let selectors: Vec<&str> = pools
        .as_array()
        .expect("pools")
        .iter()
        .filter(|p| p["weight"].as_u64() != Some(0))
        .filter_map(|p| p["selector"].as_str())
        .collect();
    assert_eq!(
        selectors,
        ["version=blue"],
        "the gateway's selector is back: {pools}"
    );
    let shown = eventually_or(10, || {
        browser.goto(&page);
        let phases = browser.texts("#waves .phase");
        (phases == ["aborted"]).then_some(phases)
    });
    assert!(shown.is_some(), "the page shows the abort");
    // The service page shows the gateway's live pools.
    browser.goto(&console.url("/services/base"));
    let live = browser.texts("#live tbody tr td:first-child");
    assert_eq!(live, ["version=blue"]);
    // Traffic through the gateway shows as points on the service's charts, and on the rollout's.
    let sampled = eventually_or(30, || {
        assert_eq!(lab.version_of("base").0, 200);
        let traffic = console.api("/api/services/base/traffic");
        let busy = traffic["versions"].as_array()?.iter().any(|v| {
            v["version"] == "blue"
                && v["points"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["rps"].as_f64() > Some(0.0)))
        });
        busy.then_some(traffic)
    });
    assert!(sampled.is_some(), "the sampler saw blue's requests");
    browser.goto(&console.url("/services/base"));
    assert_eq!(
        browser.texts("#traffic svg.line").len(),
        3,
        "requests/s, error % and p99 charts"
    );
    let points = browser.eval(
        "Array.from(document.querySelectorAll('#traffic svg.line polyline[data-series=blue]')).map(l => Number(l.dataset.points))",
    );
    let points: Vec<u64> = points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(points.len(), 3, "blue on every chart");
    assert!(points.iter().all(|p| *p > 0), "{points:?}");
    assert!(
        browser
            .texts("#traffic-versions tbody tr td:first-child")
            .contains(&"blue".to_string())
    );
    browser.goto(&page);
    assert_eq!(
        browser.texts("#rollout-traffic svg.line").len(),
        3,
        "the rollout's service has its traffic charts"
    );
    browser.goto(&console.url("/services/base"));
    // The part refreshes itself: blue's count of points grows without a reload.
    let blue_points = |browser: &mut Browser| {
        browser.eval(
            "Number(Array.from(document.querySelectorAll('#traffic-versions tbody tr')).find(r => r.cells[0].textContent === 'blue').cells[4].textContent)",
        ).as_u64().unwrap()
    };
    let before = blue_points(&mut browser);
    let grew = eventually_or(20, || (blue_points(&mut browser) > before).then_some(()));
    assert!(grew.is_some(), "the traffic part was fetched again");
    let _ = driver.wait();
}

/// The policy page shows what a real admission webhook decided, scraped over
/// TLS from its /metrics with the CA it printed.
#[test]
fn the_policy_page_counts_the_webhooks_decisions() {
    use base64::Engine as _;
    let dir = TempDir::new("console-admission");
    let (fleet, _) = generated(&dir, 10);
    let (_webhook, lines) = spawn_lines(
        bulkhead().args([
            "policy",
            "serve",
            "--self-signed",
            "--listen",
            "127.0.0.1:0",
        ]),
        2,
    );
    let addr = lines[0]
        .strip_prefix("listening on https://")
        .unwrap()
        .to_string();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(lines[1].strip_prefix("caBundle: ").unwrap())
        .unwrap();
    let ca = dir.path().join("webhook-ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let metrics = format!("https://{addr}/metrics");
    let console = Console::start(
        &fleet,
        &[
            "--webhook-metrics",
            &metrics,
            "--webhook-ca",
            ca.to_str().unwrap(),
        ],
    );
    let tls = http_client::Tls::with_pem(&pem).unwrap();
    let review = |image: &str| {
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop",
                "operation": "CREATE",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
                    "spec": {"containers": [{"name": "app", "image": image,
                        "resources": {"limits": {"cpu": "1", "memory": "128Mi"}}}]}},
            },
        });
        let url = http_client::Url::parse(&format!("https://{addr}/validate")).unwrap();
        let response = http_client::request_with(
            "POST",
            &url,
            &[("content-type", "application/json".to_string())],
            body.to_string().as_bytes(),
            std::time::Duration::from_secs(10),
            Some(&tls),
        )
        .unwrap();
        json(&String::from_utf8(response.body).unwrap())["response"]["allowed"].clone()
    };
    let pinned = "registry.acme.internal/apps/orders:1.4.2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    // The sampler needs a scrape before the reviews to see them as a rate.
    let scraped = eventually_or(30, || {
        let a = console.api("/api/policy/admission");
        a["totals"].is_object().then_some(a)
    });
    assert!(scraped.is_some(), "the console scraped the webhook");
    for _ in 0..3 {
        assert_eq!(review(pinned), true);
    }
    for _ in 0..2 {
        assert_eq!(review("nginx:latest"), false);
    }
    let seen = eventually_or(30, || {
        let a = console.api("/api/policy/admission");
        let moved = a["points"]
            .as_array()?
            .iter()
            .any(|p| p["per_sec"]["deny"].as_f64() > Some(0.0));
        (a["totals"]["allow"] == 3.0 && a["totals"]["deny"] == 2.0 && moved).then_some(a)
    });
    assert!(seen.is_some(), "the decisions reached the console");
    let mut browser = Browser::start();
    browser.goto(&console.url("/policy"));
    let rows = browser.eval(
        "Array.from(document.querySelectorAll('#decisions tbody tr')).map(r => [r.cells[0].textContent, r.cells[1].textContent])",
    );
    assert_eq!(
        rows,
        serde_json::json!([["allow", "3"], ["deny", "2"], ["error", "0"]])
    );
    let deny_points = browser.eval(
        "Number(document.querySelector('#admission svg.line polyline[data-series=deny]').dataset.points)",
    );
    assert!(deny_points.as_u64().unwrap() > 0, "the chart has points");
}
