//! `--open-pr` end to end: real `git push` to real bare repositories
//! (`receive.advertisePushOptions` on, hooks recording the push options or
//! refusing the push), and a fake GitHub and GitLab over TLS.

use crate::fake_tls::TlsServer;
use crate::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Stands in for GitHub's REST API (`/repos/{owner}/{repo}/pulls`: list by
/// `head`, create, update) and GitLab's (`/api/v4/projects/{path}/merge_requests`:
/// list by `source_branch`, create, update), which cannot run here. It speaks
/// HTTPS with a certificate from the helper `policy serve --self-signed`
/// uses, and answers as they do: 201 with the created object, 200 with
/// lists and updates, 401 with their messages for a wrong token, 422
/// (GitHub) or 409 (GitLab) for a second open change on one branch, and,
/// while `throttle` is above zero, 429 with `Retry-After: 1`.
struct FakeForge {
    server: TlsServer,
    state: Arc<Mutex<ForgeState>>,
}

#[derive(Default)]
struct ForgeState {
    token: String,
    throttle: u32,
    /// (method, path and query, body) of every request that passed authentication.
    requests: Vec<(String, String, Value)>,
    /// Open changes: (project path, number, the change as answered).
    changes: Vec<(String, u64, Value)>,
}

impl FakeForge {
    fn start(token: &str, throttle: u32) -> FakeForge {
        let state = Arc::new(Mutex::new(ForgeState {
            token: token.to_string(),
            throttle,
            ..ForgeState::default()
        }));
        let s = state.clone();
        let server = TlsServer::start(move |method, target, header, body| {
            answer(&s, method, target, header, body)
        });
        FakeForge { server, state }
    }

    fn url(&self) -> String {
        format!("https://{}", self.server.addr)
    }

    fn requests(&self) -> Vec<(String, String, Value)> {
        self.state.lock().unwrap().requests.clone()
    }

    fn changes(&self) -> Vec<(String, u64, Value)> {
        self.state.lock().unwrap().changes.clone()
    }
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The forge's answer: status, extra header lines, JSON body.
fn answer(
    state: &Mutex<ForgeState>,
    method: &str,
    target: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: Value,
) -> (u16, String, Value) {
    let mut s = state.lock().unwrap();
    let gitlab = target.starts_with("/api/v4/");
    let presented = if gitlab {
        header("private-token")
    } else {
        header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
    };
    if presented.as_deref() != Some(s.token.as_str()) {
        return if gitlab {
            (401, String::new(), json!({"message": "401 Unauthorized"}))
        } else {
            (
                401,
                String::new(),
                json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
            )
        };
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return (
            429,
            "Retry-After: 1\r\n".into(),
            json!({"message": "API rate limit exceeded"}),
        );
    }
    s.requests
        .push((method.to_string(), target.to_string(), body.clone()));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect();
    let param = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
    let segments: Vec<String> = path.split('/').skip(1).map(decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let base = format!("https://forge.example/{}", segments.join("/"));
    match (gitlab, method, segments.as_slice()) {
        (false, "GET", ["repos", owner, repo, "pulls"]) => {
            let project = format!("{owner}/{repo}");
            let head = param("head").unwrap_or_default();
            let open: Vec<Value> = s
                .changes
                .iter()
                .filter(|(p, _, c)| {
                    *p == project
                        && format!("{owner}:{}", c["head"]["ref"].as_str().unwrap_or("")) == head
                })
                .map(|(_, _, c)| c.clone())
                .collect();
            (200, String::new(), Value::Array(open))
        }
        (false, "POST", ["repos", owner, repo, "pulls"]) => {
            let project = format!("{owner}/{repo}");
            let head = body["head"].as_str().unwrap_or_default().to_string();
            if s.changes
                .iter()
                .any(|(p, _, c)| *p == project && c["head"]["ref"] == head.as_str())
            {
                return (
                    422,
                    String::new(),
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {owner}:{head}.")}]}),
                );
            }
            let number = s.changes.len() as u64 + 1;
            let pull = json!({
                "number": number,
                "state": "open",
                "html_url": format!("https://github.example/{project}/pull/{number}"),
                "title": body["title"],
                "body": body["body"],
                "head": {"ref": head},
                "base": {"ref": body["base"]},
            });
            s.changes.push((project, number, pull.clone()));
            (201, String::new(), pull)
        }
        (false, "PATCH", ["repos", owner, repo, "pulls", number]) => {
            let project = format!("{owner}/{repo}");
            let number: u64 = number.parse().unwrap_or(0);
            match s
                .changes
                .iter_mut()
                .find(|(p, n, _)| *p == project && *n == number)
            {
                Some((_, _, pull)) => {
                    pull["title"] = body["title"].clone();
                    pull["body"] = body["body"].clone();
                    (200, String::new(), pull.clone())
                }
                None => (404, String::new(), json!({"message": "Not Found"})),
            }
        }
        (true, "GET", ["api", "v4", "projects", project, "merge_requests"]) => {
            let branch = param("source_branch").unwrap_or_default();
            let open: Vec<Value> = s
                .changes
                .iter()
                .filter(|(p, _, c)| p == project && c["source_branch"] == branch.as_str())
                .map(|(_, _, c)| c.clone())
                .collect();
            (200, String::new(), Value::Array(open))
        }
        (true, "POST", ["api", "v4", "projects", project, "merge_requests"]) => {
            let branch = body["source_branch"].as_str().unwrap_or_default();
            if let Some((_, iid, _)) = s
                .changes
                .iter()
                .find(|(p, _, c)| p == project && c["source_branch"] == branch)
            {
                return (
                    409,
                    String::new(),
                    json!({"message": [format!("Another open merge request already exists for this source branch: !{iid}")]}),
                );
            }
            let iid = s.changes.len() as u64 + 1;
            let mr = json!({
                "iid": iid,
                "state": "opened",
                "web_url": format!("https://gitlab.example/{project}/-/merge_requests/{iid}"),
                "title": body["title"],
                "description": body["description"],
                "source_branch": branch,
                "target_branch": body["target_branch"],
            });
            s.changes.push((project.to_string(), iid, mr.clone()));
            (201, String::new(), mr)
        }
        (true, "PUT", ["api", "v4", "projects", project, "merge_requests", iid]) => {
            let iid: u64 = iid.parse().unwrap_or(0);
            match s
                .changes
                .iter_mut()
                .find(|(p, n, _)| p == project && *n == iid)
            {
                Some((_, _, mr)) => {
                    mr["title"] = body["title"].clone();
                    mr["description"] = body["description"].clone();
                    (200, String::new(), mr.clone())
                }
                None => (404, String::new(), json!({"message": "404 Not found"})),
            }
        }
        _ => (
            404,
            String::new(),
            json!({"message": format!("Not Found: {base}")}),
        ),
    }
}

/// Two repositories (`acme/orders`, `acme/billing`) referencing one image,
/// each cloned from a bare repository with push options advertised and a
/// hook that records them; `refuse` names a repository whose hook rejects every push.
struct Fleet {
    dir: TempDir,
    root: PathBuf,
}

const FLEET: &[(&str, &str)] = &[
    (
        "orders/deploy/kustomization.yaml",
        "resources: [deployment.yaml]\nimages:\n  - name: registry.acme.internal/apps/orders\n    newTag: \"1.4.2\"\n",
    ),
    (
        "orders/deploy/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: orders}\nspec:\n  template:\n    spec:\n      containers:\n        - name: orders\n          image: registry.acme.internal/apps/orders:1.4.2\n",
    ),
    (
        "billing/chart/Chart.yaml",
        "apiVersion: v2\nname: billing\nversion: 0.1.0\n",
    ),
    (
        "billing/chart/values.yaml",
        "image:\n  repository: registry.acme.internal/apps/orders\n  tag: 1.4.2\n",
    ),
];

const TO: &str = "registry.acme.internal/apps/orders:1.5.0";
const BRANCH: &str = "bulkhead/base-orders-1.5.0";

impl Fleet {
    fn new(name: &str, refuse: Option<&str>) -> Fleet {
        let dir = TempDir::new(name);
        let root = dir.path().join("fleet");
        for (path, text) in FLEET {
            dir.write(Path::new("fleet").join(path), text);
        }
        for repo in ["orders", "billing"] {
            let bare = dir.path().join(format!("remotes/acme/{repo}.git"));
            std::fs::create_dir_all(&bare).unwrap();
            test_support::git(&bare, &["init", "-q", "--bare", "-b", "main"]);
            test_support::git(&bare, &["config", "receive.advertisePushOptions", "true"]);
            let hook = if refuse == Some(repo) {
                "#!/bin/sh\necho \"GL-HOOK-ERR: pushing to this project is not allowed\" >&2\nexit 1\n"
                    .to_string()
            } else {
                "#!/bin/sh\nenv | grep '^GIT_PUSH_OPTION' | sort > push-options\n".to_string()
            };
            let hook_path = bare.join("hooks/pre-receive");
            std::fs::write(&hook_path, hook).unwrap();
            std::process::Command::new("chmod")
                .arg("+x")
                .arg(&hook_path)
                .status()
                .expect("chmod");
            let work = root.join(repo);
            test_support::git(&work, &["init", "-q", "-b", "main"]);
            test_support::git(&work, &["add", "-A"]);
            test_support::git(&work, &["commit", "-q", "-m", "first"]);
            test_support::git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        }
        Fleet { dir, root }
    }

    fn bare(&self, repo: &str) -> PathBuf {
        self.dir.path().join(format!("remotes/acme/{repo}.git"))
    }

    /// `images upgrade --to TO --apply --open-pr` with `extra`, the token in FORGE_TOKEN.
    fn upgrade(&self, token: &str, extra: &[&str]) -> Output {
        bulkhead()
            .args(["images", "upgrade", "--to", TO, "--apply", "--open-pr"])
            .args(["--token-env", "FORGE_TOKEN"])
            .args(extra)
            .arg("--path")
            .arg(&self.root)
            .arg("--state")
            .arg(self.dir.path().join("state"))
            .env("FORGE_TOKEN", token)
            .output()
            .expect("run bulkhead")
    }

    fn ca_file(&self, forge: &FakeForge) -> String {
        let path = self.dir.path().join("forge-ca.pem");
        std::fs::write(&path, &forge.server.ca_pem).unwrap();
        path.display().to_string()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn github_pull_requests_are_opened_then_updated_and_a_bad_token_fails_each_repository() {
    let fleet = Fleet::new("forge-github", None);
    let forge = FakeForge::start("t0ken", 1);
    let ca = fleet.ca_file(&forge);
    let github = [
        "--forge",
        "github",
        "--forge-url",
        &forge.url(),
        "--forge-ca-file",
        &ca,
    ];

    let first = fleet.upgrade("t0ken", &github);
    let stdout = text(&first.stdout);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{stdout}{}",
        text(&first.stderr)
    );
    assert_eq!(stdout.matches("  opened #").count(), 2, "{stdout}");
    assert!(
        stdout.contains("answered 429: API rate limit exceeded); retrying in 1s"),
        "{stdout}"
    );
    for repo in ["orders", "billing"] {
        assert_eq!(
            test_support::git(&fleet.bare(repo), &["rev-parse", BRANCH]),
            test_support::git(&fleet.root.join(repo), &["rev-parse", BRANCH]),
            "{repo}: the branch reached its remote"
        );
    }
    let changes = forge.changes();
    let projects: BTreeSet<&str> = changes.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(projects, BTreeSet::from(["acme/orders", "acme/billing"]));
    for (_, _, pull) in &changes {
        assert_eq!(pull["head"]["ref"], BRANCH);
        assert_eq!(pull["base"]["ref"], "main");
        assert_eq!(pull["title"], format!("Move the base image to {TO}"));
        let body = pull["body"].as_str().unwrap();
        assert!(body.contains(&format!("references to `{TO}`")), "{body}");
    }
    let orders = changes.iter().find(|(p, _, _)| p == "acme/orders").unwrap();
    assert!(
        orders.2["body"].as_str().unwrap().contains("## "),
        "the impact report of the orders service: {}",
        orders.2["body"]
    );

    // Again: the same branches, the same pull requests, updated rather than opened twice.
    let again = fleet.upgrade("t0ken", &github);
    let stdout = text(&again.stdout);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{stdout}{}",
        text(&again.stderr)
    );
    assert_eq!(
        stdout.matches("already holds this change").count(),
        2,
        "{stdout}"
    );
    assert_eq!(stdout.matches("  updated #").count(), 2, "{stdout}");
    assert_eq!(forge.changes().len(), 2);
    let methods: Vec<String> = forge
        .requests()
        .iter()
        .map(|(m, p, _)| format!("{m} {}", p.split('?').next().unwrap_or_default()))
        .collect();
    assert_eq!(
        methods
            .iter()
            .filter(|m| m.starts_with("PATCH /repos/acme/"))
            .count(),
        2,
        "{methods:?}"
    );
    assert_eq!(methods.iter().filter(|m| m.starts_with("POST ")).count(), 2);

    // A refused token: each repository fails on its own, not retried, exit 1.
    let refused = fleet.upgrade("wrong", &github);
    let stdout = text(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{stdout}");
    assert_eq!(
        stdout.matches("answered 401: Bad credentials").count(),
        2,
        "{stdout}"
    );
    assert!(!stdout.contains("retrying"), "{stdout}");
    assert!(text(&refused.stderr).contains("2 repositor(ies) failed"));

    // Without the forge's CA the TLS handshake fails, naming the URL.
    let untrusted = fleet.upgrade(
        "t0ken",
        &[
            "--forge",
            "github",
            "--forge-url",
            &forge.url(),
            "--attempts",
            "1",
        ],
    );
    let stdout = text(&untrusted.stdout);
    assert_eq!(untrusted.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("{}/repos/acme/", forge.url())),
        "{stdout}"
    );
}

#[test]
fn gitlab_merge_requests_by_api_and_by_push_options_and_a_rejected_push_stops_one_repository() {
    let fleet = Fleet::new("forge-gitlab", Some("billing"));
    let forge = FakeForge::start("glpat-t0ken", 0);
    let ca = fleet.ca_file(&forge);
    let api = format!("{}/api/v4", forge.url());

    let pushed = fleet.upgrade("unused", &["--forge", "gitlab-push", "--attempts", "2"]);
    let stdout = text(&pushed.stdout);
    assert_eq!(pushed.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("pushed with merge request options"),
        "{stdout}"
    );
    let recorded = std::fs::read_to_string(fleet.bare("orders").join("push-options")).unwrap();
    let options: Vec<&str> = recorded.lines().collect();
    assert_eq!(options[0], "GIT_PUSH_OPTION_0=merge_request.create");
    assert_eq!(options[1], "GIT_PUSH_OPTION_1=merge_request.target=main");
    assert_eq!(
        options[2],
        format!("GIT_PUSH_OPTION_2=merge_request.title=Move the base image to {TO}")
    );
    assert!(
        options[3].starts_with(
            "GIT_PUSH_OPTION_3=merge_request.description=bulkhead images upgrade moves"
        )
    );
    assert_eq!(options[4], "GIT_PUSH_OPTION_COUNT=4");
    // billing's remote refuses: reported with the hook's words, not retried, orders unaffected.
    let billing = stdout
        .lines()
        .find(|l| l.starts_with("billing: failed"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        billing.contains("pre-receive hook declined") || stdout.contains("GL-HOOK-ERR"),
        "{stdout}"
    );
    assert!(!stdout.contains("retrying"), "{stdout}");
    assert!(test_support::git(&fleet.bare("billing"), &["branch", "--list", BRANCH]).is_empty());

    // The REST API: opened once, then updated.
    let rest = [
        "--forge",
        "gitlab",
        "--forge-url",
        api.as_str(),
        "--forge-ca-file",
        ca.as_str(),
    ];
    let opened = fleet.upgrade("glpat-t0ken", &rest);
    let stdout = text(&opened.stdout);
    assert!(
        stdout.contains("  opened #1 https://gitlab.example/acme/orders/-/merge_requests/1"),
        "{stdout}"
    );
    let updated = fleet.upgrade("glpat-t0ken", &rest);
    let stdout = text(&updated.stdout);
    assert!(
        stdout.contains("  updated #1 https://gitlab.example/acme/orders/-/merge_requests/1"),
        "{stdout}"
    );
    let changes = forge.changes();
    assert_eq!(changes.len(), 1, "one merge request for orders");
    assert_eq!(changes[0].2["source_branch"], BRANCH);
    assert_eq!(changes[0].2["target_branch"], "main");
    assert!(
        forge
            .requests()
            .iter()
            .any(|(m, p, _)| m == "PUT" && p == "/api/v4/projects/acme%2Forders/merge_requests/1"),
        "{:?}",
        forge.requests()
    );
}

#[test]
fn template_bump_opens_one_pull_request_per_app_and_updates_them_on_a_rerun() {
    let dir = TempDir::new("forge-template");
    let root = dir.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(&root)
            .args(["--services", "60", "--seed", "11"]),
    );
    let plan = json(&run_ok(
        bulkhead()
            .args([
                "template",
                "plan",
                "v2.0.0",
                "--json",
                "--wave-size",
                "3",
                "--path",
            ])
            .arg(&root),
    ));
    let truth = json(&std::fs::read_to_string(root.join("ground-truth.json")).unwrap());
    let wave1: Vec<String> = plan["plan"]["waves"][0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["target"].as_str().map(str::to_string))
        .collect();
    let repos: BTreeSet<String> = wave1
        .iter()
        .filter_map(|name| {
            truth["services"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == name.as_str())?["repo"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(!repos.is_empty());
    for repo in &repos {
        let bare = dir.path().join(format!("remotes/acme/{repo}.git"));
        std::fs::create_dir_all(&bare).unwrap();
        test_support::git(&bare, &["init", "-q", "--bare"]);
        test_support::git(
            &root.join(repo),
            &["remote", "add", "origin", bare.to_str().unwrap()],
        );
    }
    let forge = FakeForge::start("t0ken", 0);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &forge.server.ca_pem).unwrap();
    let bump = || {
        bulkhead()
            .args([
                "template",
                "bump",
                "v2.0.0",
                "--wave",
                "1",
                "--apply",
                "--open-pr",
            ])
            .args([
                "--forge",
                "github",
                "--forge-url",
                &forge.url(),
                "--token-env",
                "FORGE_TOKEN",
            ])
            .arg("--forge-ca-file")
            .arg(&ca)
            .arg("--path")
            .arg(&root)
            .env("FORGE_TOKEN", "t0ken")
            .output()
            .expect("run bulkhead")
    };
    let first = bump();
    let stdout = text(&first.stdout);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{stdout}{}",
        text(&first.stderr)
    );
    assert_eq!(
        stdout.matches("  opened #").count(),
        repos.len(),
        "{stdout}"
    );
    let changes = forge.changes();
    assert_eq!(changes.len(), repos.len());
    for (project, _, pull) in &changes {
        assert_eq!(pull["head"]["ref"], "bulkhead/template-v2.0.0", "{project}");
        assert!(
            pull["title"].as_str().unwrap().starts_with("ci: adopt "),
            "{pull}"
        );
        let body = pull["body"].as_str().unwrap();
        assert!(body.contains("```diff\n--- a/"), "{body}");
        assert!(body.contains("## bulkhead impact"), "{body}");
        // The project is the remote path's last two components.
        let repo = repos
            .iter()
            .find(|r| format!("acme/{r}").ends_with(project.as_str()))
            .unwrap_or_else(|| panic!("{project} is none of {repos:?}"));
        assert_eq!(
            test_support::git(
                &dir.path().join(format!("remotes/acme/{repo}.git")),
                &["rev-parse", "bulkhead/template-v2.0.0"]
            ),
            test_support::git(&root.join(repo), &["rev-parse", "bulkhead/template-v2.0.0"]),
        );
    }
    let again = bump();
    let stdout = text(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.matches("  updated #").count(),
        repos.len(),
        "{stdout}"
    );
    assert_eq!(forge.changes().len(), repos.len());
}
