//! A live local lab: the sample fleet's services, the ingress gateway and the
//! trace collector run as supervised child processes, with steady load.
//!
//! Every address is chosen before any child starts (the gateway's routes name
//! its endpoints, and every service sends its calls through the gateway), and
//! a child is restarted on the same address, so the gateway never needs a new
//! configuration. `DIR/lab.json` records what runs; `lab status` and `lab down`
//! read it, and `lab down` asks the supervisor to stop by writing `DIR/lab.stop`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{self, Workload};
use crate::generate::{self, FleetSpec, GROUND_TRUTH, LabError};

/// The record `lab status` and `lab down` read.
pub const LAB_JSON: &str = "lab.json";
/// Written by `lab down`: the supervisor stops everything when it appears.
pub const STOP_FILE: &str = "lab.stop";
use crate::infra::{self, SERVICE_VERSION};
/// The bearer token of every live service's `/admin/faults`, written at start
/// (mode 0600), so that scenarios inject faults into the running processes.
pub const ADMIN_TOKEN: &str = "admin-token";
/// Highest load the generator is allowed to send, in requests per second.
pub const MAX_RATE: f64 = 200.0;
/// How long a stopping child may drain before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A child that ran this long before dying starts again with the first backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(100);
/// Spans a `lab service` holds while the collector is slow (`--otlp-queue`).
/// The queue is allocated and touched whole at start, about 200 bytes a span,
/// so the default of 4096 cost each of fifty services 0.8 MiB of resident
/// memory; 1024 still holds seconds of the spans the lab's load produces
/// (its batches go out every second, or at 512 spans).
const SPAN_QUEUE: usize = 1024;
/// The environment of the lab's Go programs (Prometheus, docker-registry):
/// the garbage collector runs when the heap has grown by half since the last
/// collection instead of doubled, which keeps their resident memory near what
/// they hold, for a little more collection work.
const GO_ENV: &[(&str, &str)] = &[("GOGC", "50")];

/// What `lab up` runs.
#[derive(Debug, Clone)]
pub struct UpSpec {
    pub dir: PathBuf,
    /// Services in a fleet generated here (ignored when DIR is already a lab).
    pub fleet_services: usize,
    /// Live services, picked from the fleet.
    pub live: usize,
    pub seed: u64,
    /// The ingress address.
    pub listen: SocketAddr,
    /// Load on the public routes, in requests per second (0: none).
    pub rate: f64,
    /// The `bulkhead` executable the children run.
    pub exe: PathBuf,
}

/// Why the lab could not start or be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(
        "{} is not a lab (no {GROUND_TRUTH}) and is not empty: give an empty or new folder, or one `lab init` wrote",
        path.display()
    )]
    NotALab { path: PathBuf },
    #[error("the ingress address {addr} is in use (pick another with --listen): {source}")]
    PortInUse {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error(transparent)]
    Generate(#[from] LabError),
    #[error("no lab runs in {}: {LAB_JSON} is missing", dir.display())]
    NotRunning { dir: PathBuf },
    #[error("a lab already runs in {} (supervisor pid {pid}): stop it with `bulkhead lab down --dir {}`", dir.display(), dir.display())]
    AlreadyRunning { dir: PathBuf, pid: u32 },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> UpError {
    let what = what.into();
    move |source| UpError::Io { what, source }
}

/// One service of the fleet, as the lab needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetService {
    pub name: String,
    pub depends_on: Vec<String>,
    /// Paths of its public routes.
    pub public_paths: Vec<String>,
    /// Its Kubernetes namespace in the fleet's manifests.
    pub namespace: String,
    /// The image its manifests run (the first, when it has sidecars).
    pub image: Option<String>,
}

/// Reads the services of `DIR/ground-truth.json`.
///
/// # Errors
/// An unreadable or malformed ground truth.
pub fn read_fleet(dir: &Path) -> Result<Vec<FleetService>, UpError> {
    let path = dir.join(GROUND_TRUTH);
    let text =
        fs::read_to_string(&path).map_err(io_error(format!("reading {}", path.display())))?;
    let invalid = |detail: String| UpError::Invalid {
        path: path.clone(),
        detail,
    };
    let truth: Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    fleet_of(&truth).map_err(invalid)
}

/// The services of a ground truth.
///
/// # Errors
/// No services list, or a service without a name.
pub fn fleet_of(truth: &Value) -> Result<Vec<FleetService>, String> {
    let services = truth["services"]
        .as_array()
        .ok_or_else(|| "no services list".to_string())?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    services
        .iter()
        .map(|s| {
            let name = s["name"]
                .as_str()
                .ok_or_else(|| "a service without a name".to_string())?;
            let public_paths = s["routes"]
                .as_array()
                .map(|routes| {
                    routes
                        .iter()
                        .filter(|r| r["public"].as_bool() == Some(true))
                        .filter_map(|r| r["path"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            Ok(FleetService {
                name: name.to_string(),
                depends_on: strings(&s["depends_on"]),
                public_paths,
                namespace: s["namespace"].as_str().unwrap_or("default").to_string(),
                image: strings(&s["images"]).into_iter().next(),
            })
        })
        .collect()
}

/// Picks up to `n` services so that one public request crosses as many live
/// services as it can: first the longest call chain from a public service (the
/// fleet's core flow, six services deep), then what that service reaches,
/// breadth first, then the next public service and what it reaches. Calls to
/// services left out are dropped.
pub fn pick_live(fleet: &[FleetService], n: usize) -> Vec<FleetService> {
    let by_name: BTreeMap<&str, &FleetService> =
        fleet.iter().map(|s| (s.name.as_str(), s)).collect();
    fn reach<'a>(by_name: &BTreeMap<&'a str, &'a FleetService>, root: &'a str) -> Vec<&'a str> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([root]);
        while let Some(name) = queue.pop_front() {
            if seen.insert(name) {
                order.push(name);
                if let Some(s) = by_name.get(name) {
                    queue.extend(s.depends_on.iter().map(String::as_str));
                }
            }
        }
        order
    }
    let mut roots: Vec<(Vec<&str>, Vec<&str>)> = fleet
        .iter()
        .filter(|s| !s.public_paths.is_empty())
        .map(|s| (longest_chain(&by_name, &s.name), reach(&by_name, &s.name)))
        .collect();
    roots.sort_by_key(|(chain, reach)| std::cmp::Reverse((chain.len(), reach.len())));
    let mut picked: Vec<&str> = Vec::new();
    let order = roots
        .first()
        .map(|(chain, _)| chain.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(roots.iter().flat_map(|(_, reach)| reach.iter().copied()));
    for name in order {
        if picked.len() == n {
            break;
        }
        if by_name.contains_key(name) && !picked.contains(&name) {
            picked.push(name);
        }
    }
    let live: BTreeSet<&str> = picked.iter().copied().collect();
    picked
        .iter()
        .filter_map(|name| by_name.get(name))
        .map(|s| FleetService {
            name: s.name.clone(),
            depends_on: s
                .depends_on
                .iter()
                .filter(|d| live.contains(d.as_str()))
                .cloned()
                .collect(),
            public_paths: s.public_paths.clone(),
            namespace: s.namespace.clone(),
            image: s.image.clone(),
        })
        .collect()
}

/// The longest call chain from `root` through the fleet's dependencies (an
/// acyclic graph), first service first; ties go to the first dependency listed.
pub fn longest_chain<'a>(
    by_name: &BTreeMap<&'a str, &'a FleetService>,
    root: &'a str,
) -> Vec<&'a str> {
    fn walk<'a>(
        by_name: &BTreeMap<&'a str, &'a FleetService>,
        name: &'a str,
        memo: &mut BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
    ) -> Vec<&'a str> {
        if let Some(known) = memo.get(name) {
            return known.clone();
        }
        // A cycle in a hand-edited fleet ends the chain instead of looping.
        if path.contains(&name) {
            return Vec::new();
        }
        path.push(name);
        let mut best: Vec<&'a str> = Vec::new();
        for dep in by_name.get(name).into_iter().flat_map(|s| &s.depends_on) {
            if let Some((dep, _)) = by_name.get_key_value(dep.as_str()) {
                let chain = walk(by_name, dep, memo, path);
                if chain.len() > best.len() {
                    best = chain;
                }
            }
        }
        path.pop();
        best.insert(0, name);
        memo.insert(name, best.clone());
        best
    }
    walk(by_name, root, &mut BTreeMap::new(), &mut Vec::new())
}

/// The gateway document: the public routes, and one route per service for
/// the calls between services, which name the callee as `Host`. Passive
/// ejection is off: a service's errors (injected by scenarios) must reach its
/// callers, the traces and the rollout gates, not turn into the gateway's 503s
/// once its endpoint is ejected.
pub fn gateway_yaml(
    listen: SocketAddr,
    services: &[FleetService],
    addrs: &BTreeMap<String, SocketAddr>,
) -> String {
    let endpoints: Vec<Endpoint> = services
        .iter()
        .map(|s| Endpoint {
            service: s.name.clone(),
            version: SERVICE_VERSION.into(),
            addr: addrs[&s.name],
        })
        .collect();
    gateway_yaml_with(listen, services, &endpoints, &BTreeMap::new())
}

/// One version of a service the gateway can route to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub service: String,
    pub version: String,
    pub addr: SocketAddr,
}

/// The gateway document with every endpoint of every version, each service
/// selecting `selectors[service]` (a label map in YAML flow form) or its
/// first version.
pub fn gateway_yaml_with(
    listen: SocketAddr,
    services: &[FleetService],
    endpoints: &[Endpoint],
    selectors: &BTreeMap<String, String>,
) -> String {
    let mut out = format!("listeners:\n  - address: {listen}\nroutes:\n");
    for s in services {
        for path in &s.public_paths {
            let _ = writeln!(out, "  - prefix: {path}\n    service: {}", s.name);
        }
        let _ = writeln!(
            out,
            "  - host: {}\n    prefix: /\n    service: {}",
            s.name, s.name
        );
    }
    out.push_str("services:\n");
    for s in services {
        let _ = writeln!(out, "  {}:\n    endpoints:", s.name);
        for e in endpoints.iter().filter(|e| e.service == s.name) {
            let _ = writeln!(
                out,
                "      - {{address: {}, labels: {{app: {}, version: \"{}\"}}}}",
                e.addr, s.name, e.version
            );
        }
        let first = endpoints
            .iter()
            .find(|e| e.service == s.name)
            .map_or(SERVICE_VERSION, |e| e.version.as_str());
        let selector = selectors
            .get(&s.name)
            .cloned()
            .unwrap_or_else(|| format!("{{app: {}, version: \"{first}\"}}", s.name));
        let _ = writeln!(out, "    selector: {selector}\n    ejection: off");
    }
    out
}

/// One supervised child.
#[derive(Debug)]
struct Proc {
    name: String,
    kind: &'static str,
    version: String,
    addr: SocketAddr,
    health: String,
    args: Vec<String>,
    log: PathBuf,
    /// What it runs, when not the `bulkhead` executable.
    program: Option<PathBuf>,
    /// Its working folder (the lab's, for the webhook, which reads the fleet's bulkhead.toml).
    cwd: Option<PathBuf>,
    /// Variables added to its environment.
    env: &'static [(&'static str, &'static str)],
    /// The service a `lab service` process serves (its name is `SERVICE@VERSION` for a new version).
    service: Option<String>,
    /// The length of its log when it last started: what it printed since is after that.
    log_start: u64,
    child: Option<Child>,
    started: Instant,
    restarts: u32,
    last_exit: Option<String>,
    backoff: Duration,
    next_start: Option<Instant>,
}

/// What a child is before it first starts: its name, role, address and command.
#[derive(Default)]
struct ProcSpec {
    name: String,
    kind: &'static str,
    version: String,
    addr: Option<SocketAddr>,
    health: String,
    args: Vec<String>,
    log: PathBuf,
    program: Option<PathBuf>,
    cwd: Option<PathBuf>,
    env: &'static [(&'static str, &'static str)],
    service: Option<String>,
}

impl Proc {
    /// A child not started yet, with no restarts and the first backoff.
    fn new(spec: ProcSpec) -> Proc {
        Proc {
            name: spec.name,
            kind: spec.kind,
            version: spec.version,
            addr: spec.addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
            health: spec.health,
            args: spec.args,
            log: spec.log,
            program: spec.program,
            cwd: spec.cwd,
            env: spec.env,
            service: spec.service,
            log_start: 0,
            child: None,
            started: Instant::now(),
            restarts: 0,
            last_exit: None,
            backoff: FIRST_BACKOFF,
            next_start: None,
        }
    }

    fn start(&mut self, exe: &Path) -> Result<(), UpError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io_error(format!("opening {}", self.log.display())))?;
        let err = log
            .try_clone()
            .map_err(io_error(format!("opening {}", self.log.display())))?;
        self.log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut command = Command::new(self.program.as_deref().unwrap_or(exe));
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let child = command
            .args(&self.args)
            .envs(self.env.iter().copied())
            .stdin(Stdio::null())
            // Its own process group: Ctrl-C reaches the supervisor alone, which
            // then stops the children in order instead of racing their restarts.
            .process_group(0)
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io_error(format!("starting {}", self.name)))?;
        self.child = Some(child);
        self.started = Instant::now();
        self.next_start = None;
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn record(&self, requests_per_s: Option<f64>) -> Value {
        json!({
            "name": self.name,
            "kind": self.kind,
            "service": self.service,
            "requests_per_s": requests_per_s,
            "pid": self.pid(),
            "addr": self.addr.to_string(),
            "health": self.health,
            "version": self.version,
            "log": self.log.display().to_string(),
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        })
    }
}

/// Picks a free loopback port; the listener is kept until every port is picked,
/// so no two children get the same one.
fn reserve(held: &mut Vec<TcpListener>) -> Result<SocketAddr, UpError> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(io_error("picking a free loopback port"))?;
    let addr = listener
        .local_addr()
        .map_err(io_error("picking a free loopback port"))?;
    held.push(listener);
    Ok(addr)
}

/// Makes DIR a lab: generates the fleet in a new or empty folder, reuses a lab.
fn prepare(spec: &UpSpec) -> Result<(), UpError> {
    if spec.dir.join(GROUND_TRUTH).is_file() {
        if let Ok(record) = read_record(&spec.dir)
            && record["state"] == "running"
            && let Some(pid) = supervisor(&record).filter(|&pid| alive(pid))
        {
            return Err(UpError::AlreadyRunning {
                dir: spec.dir.clone(),
                pid,
            });
        }
        return Ok(());
    }
    let empty = match fs::read_dir(&spec.dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => return Err(io_error(format!("reading {}", spec.dir.display()))(e)),
    };
    if !empty {
        return Err(UpError::NotALab {
            path: spec.dir.clone(),
        });
    }
    eprintln!(
        "lab: writing a {}-service sample fleet to {} (seed {})",
        spec.fleet_services,
        spec.dir.display(),
        spec.seed
    );
    generate::write_fleet(
        &spec.dir,
        &FleetSpec {
            services: spec.fleet_services,
            seed: spec.seed,
            git: true,
        },
    )?;
    Ok(())
}

/// Runs the lab in the foreground until `stop` is set or `DIR/lab.stop` appears,
/// then stops every child and waits for it. `announce` gets the addresses once
/// every child has started.
///
/// # Errors
/// DIR is not a lab, the ingress address is taken, or a child cannot be started.
pub fn up(
    spec: &UpSpec,
    stop: &Arc<AtomicBool>,
    announce: &mut dyn FnMut(&str),
) -> Result<(), UpError> {
    let ingress = TcpListener::bind(spec.listen).map_err(|source| UpError::PortInUse {
        addr: spec.listen,
        source,
    })?;
    prepare(spec)?;
    add_snapshot_entry(&spec.dir)?;
    let fleet = read_fleet(&spec.dir)?;
    let live = pick_live(&fleet, spec.live.max(1));
    let listen = ingress
        .local_addr()
        .map_err(io_error("reading the ingress address"))?;
    let mut held = vec![ingress];
    let mut addrs = BTreeMap::new();
    for s in &live {
        addrs.insert(s.name.clone(), reserve(&mut held)?);
    }
    let admin = reserve(&mut held)?;
    let otlp = reserve(&mut held)?;
    let query = reserve(&mut held)?;
    let webhook = reserve(&mut held)?;
    let console = reserve(&mut held)?;
    let prometheus = match on_path("prometheus") {
        Some(program) => Some((program, reserve(&mut held)?)),
        None => None,
    };
    let registry = match on_path("docker-registry") {
        Some(program) => Some((program, reserve(&mut held)?)),
        None => None,
    };
    let logs = spec.dir.join("logs");
    fs::create_dir_all(&logs).map_err(io_error(format!("creating {}", logs.display())))?;
    let _ = fs::remove_file(spec.dir.join(STOP_FILE));
    let requests = spec.dir.join(REQUESTS_DIR);
    let _ = fs::remove_dir_all(&requests);
    fs::create_dir_all(&requests).map_err(io_error(format!("creating {}", requests.display())))?;
    let _ = fs::remove_file(spec.dir.join(infra::WEBHOOK_CA));
    let config = spec.dir.join("gateway.yaml");
    fs::write(&config, gateway_yaml(listen, &live, &addrs))
        .map_err(io_error(format!("writing {}", config.display())))?;
    let policy = infra::write_policies(&spec.dir).map_err(|detail| UpError::Invalid {
        path: spec.dir.join(infra::POLICY_DIR),
        detail,
    })?;
    drop(held);

    let token_file = write_admin_token(&spec.dir)?;
    let version = env!("CARGO_PKG_VERSION").to_string();
    let otlp_url = format!("http://{otlp}");
    let mut procs = vec![Proc::new(ProcSpec {
        name: "collector".into(),
        kind: "collector",
        version: version.clone(),
        addr: Some(query),
        health: format!("http://{query}/healthz"),
        args: vec![
            "collector".into(),
            "--data".into(),
            spec.dir.join("traces").display().to_string(),
            "--otlp-http".into(),
            otlp.to_string(),
            "--no-grpc".into(),
            "--query".into(),
            query.to_string(),
        ],
        log: logs.join("collector.log"),
        ..ProcSpec::default()
    })];
    let service_spec =
        |s: &FleetService, name: String, version: &str, addr: SocketAddr, error_rate: f64| {
            let mut args = vec![
                "lab".into(),
                "service".into(),
                "--name".into(),
                s.name.clone(),
                "--service-version".into(),
                version.to_string(),
                "--listen".into(),
                addr.to_string(),
                "--via".into(),
                listen.to_string(),
                "--otlp-endpoint".into(),
                otlp_url.clone(),
                "--admin-token-file".into(),
                token_file.display().to_string(),
                "--otlp-queue".into(),
                SPAN_QUEUE.to_string(),
            ];
            if error_rate > 0.0 {
                args.push("--error-rate".into());
                args.push(error_rate.to_string());
            }
            if !s.depends_on.is_empty() {
                args.push("--calls".into());
                args.push(
                    s.depends_on
                        .iter()
                        .map(|d| format!("http://{d}/"))
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            ProcSpec {
                log: logs.join(format!("{name}.log")),
                name,
                kind: "service",
                version: version.to_string(),
                addr: Some(addr),
                health: format!("http://{addr}/readyz"),
                args,
                service: Some(s.name.clone()),
                ..ProcSpec::default()
            }
        };
    for s in &live {
        procs.push(Proc::new(service_spec(
            s,
            s.name.clone(),
            SERVICE_VERSION,
            addrs[&s.name],
            0.0,
        )));
    }
    procs.push(Proc::new(ProcSpec {
        name: "gateway".into(),
        kind: "gateway",
        version: version.clone(),
        addr: Some(listen),
        health: format!("http://{admin}/state"),
        args: vec![
            "gateway".into(),
            "--config".into(),
            config.display().to_string(),
            "--admin".into(),
            admin.to_string(),
            "--otlp-endpoint".into(),
            otlp_url.clone(),
        ],
        log: logs.join("gateway.log"),
        ..ProcSpec::default()
    }));
    procs.push(Proc::new(ProcSpec {
        name: "console".into(),
        kind: "console",
        version: version.clone(),
        addr: Some(console),
        health: format!("http://{console}/healthz"),
        args: vec![
            "console".into(),
            "--path".into(),
            spec.dir.display().to_string(),
            "--listen".into(),
            console.to_string(),
            "--collector".into(),
            format!("http://{query}"),
            "--gateway-admin".into(),
            format!("http://{admin}"),
            "--webhook-metrics".into(),
            format!("https://{webhook}/metrics"),
            "--webhook-ca".into(),
            spec.dir.join(infra::WEBHOOK_CA).display().to_string(),
            "--logs".into(),
            logs.display().to_string(),
        ],
        log: logs.join("console.log"),
        ..ProcSpec::default()
    }));
    procs.push(Proc::new(ProcSpec {
        name: "webhook".into(),
        kind: "webhook",
        version: version.clone(),
        addr: Some(webhook),
        // TLS: the supervisor checks that it accepts connections; `policy serve` answers /healthz over HTTPS.
        health: format!("tcp://{webhook}"),
        args: vec![
            "policy".into(),
            "serve".into(),
            "--self-signed".into(),
            "--listen".into(),
            webhook.to_string(),
            "--policy".into(),
            policy.display().to_string(),
            "--allowed-registry".into(),
            "registry.acme.internal/".into(),
        ],
        log: logs.join("webhook.log"),
        cwd: Some(spec.dir.clone()),
        ..ProcSpec::default()
    }));

    if let Some((program, addr)) = &prometheus {
        let config = spec.dir.join("prometheus.yml");
        let targets: Vec<SocketAddr> = live.iter().map(|s| addrs[&s.name]).collect();
        fs::write(&config, prometheus_yml(admin, query, &targets))
            .map_err(io_error(format!("writing {}", config.display())))?;
        procs.push(Proc::new(ProcSpec {
            name: "prometheus".into(),
            kind: "prometheus",
            version: prometheus_version(program),
            addr: Some(*addr),
            health: format!("http://{addr}/-/ready"),
            args: vec![
                format!("--config.file={}", config.display()),
                format!(
                    "--storage.tsdb.path={}",
                    spec.dir.join("prometheus").display()
                ),
                format!("--web.listen-address={addr}"),
                "--log.format=json".into(),
            ],
            log: logs.join("prometheus.log"),
            program: Some(program.clone()),
            env: GO_ENV,
            ..ProcSpec::default()
        }));
    }
    if let Some((program, addr)) = &registry {
        let folder = spec.dir.join("registry");
        fs::create_dir_all(folder.join("storage"))
            .map_err(io_error(format!("creating {}", folder.display())))?;
        let config = folder.join("config.yml");
        fs::write(
            &config,
            infra::registry_config(*addr, &folder.join("storage")),
        )
        .map_err(io_error(format!("writing {}", config.display())))?;
        procs.push(Proc::new(ProcSpec {
            name: "registry".into(),
            kind: "registry",
            version: "distribution".into(),
            addr: Some(*addr),
            health: format!("http://{addr}/v2/"),
            args: vec!["serve".into(), config.display().to_string()],
            log: logs.join("registry.log"),
            program: Some(program.clone()),
            env: GO_ENV,
            ..ProcSpec::default()
        }));
    }
    let prometheus_url = prometheus
        .as_ref()
        .map(|(_, addr)| format!("http://{addr}"));
    let registry_url = registry.as_ref().map(|(_, addr)| format!("http://{addr}"));

    let routes: Vec<String> = live
        .iter()
        .flat_map(|s| s.public_paths.iter().cloned())
        .collect();
    let addresses = json!({
        "public_routes": routes,
        "ingress": format!("http://{listen}"),
        "gateway_admin": format!("http://{admin}"),
        "console": format!("http://{console}"),
        "collector_query": format!("http://{query}"),
        "collector_otlp": format!("http://{otlp}"),
        "prometheus": prometheus_url,
        "registry": registry_url,
        "webhook": format!("https://{webhook}"),
        "webhook_ca": spec.dir.join(infra::WEBHOOK_CA).display().to_string(),
        "hosts_inventory": spec.dir.join(infra::HOSTS_INVENTORY).display().to_string(),
    });
    let missing: Vec<&str> = [
        (prometheus.is_none(), "prometheus"),
        (registry.is_none(), "docker-registry"),
    ]
    .into_iter()
    .filter_map(|(missing, name)| missing.then_some(name))
    .collect();
    let mut started_all = Ok(());
    for p in &mut procs {
        started_all = p.start(&spec.exe);
        if started_all.is_err() {
            break;
        }
    }
    let load = Arc::new(Load::default());
    let generator = (started_all.is_ok() && spec.rate > 0.0 && !routes.is_empty()).then(|| {
        let load = Arc::clone(&load);
        let stop = Arc::clone(stop);
        let rate = spec.rate.min(MAX_RATE);
        let routes = routes.clone();
        std::thread::spawn(move || generate_load(listen, &routes, rate, &load, &stop))
    });
    let lab = Arc::new(Lab {
        dir: spec.dir.clone(),
        services: live.clone(),
        addresses,
        missing: missing.iter().map(|m| (*m).to_string()).collect(),
        gates: if prometheus.is_some() {
            "prometheus"
        } else {
            "gateway"
        },
        load,
        last_write: std::sync::Mutex::new((Instant::now(), 0)),
        counters: std::sync::Mutex::new(BTreeMap::new()),
        rates: std::sync::Mutex::new(None),
        provision: std::sync::Mutex::new(json!({
            "registry": if registry.is_some() { "publishing" } else { "missing" },
            "hosts": "building",
        })),
        images: std::sync::Mutex::new(BTreeMap::new()),
        listen,
        admin,
    });
    // Publishing images and building hosts run beside the lab: readiness does not wait for them.
    let provisioner = started_all.is_ok().then(|| {
        let lab = Arc::clone(&lab);
        let registry_url = registry_url.clone();
        std::thread::spawn(move || provision(&lab, registry_url.as_deref()))
    });
    // Whatever fails from here on, the children are still stopped below.
    let outcome = started_all
        .and_then(|()| lab.write(&procs, "running"))
        .and_then(|()| {
            let mut text = format!(
                "lab running in {}\n  console          http://{console}\n  ingress          http://{listen}\n  gateway admin    http://{admin}\n  collector query  http://{query}\n  prometheus       {}\n  registry         {}\n  webhook          https://{webhook} (CA in {})\n  hosts            {} (dpkg roots, built in the background)\n  rollout gates    {}\n  public routes    {}\n  logs             {}\n",
                spec.dir.display(),
                prometheus_url.as_deref().unwrap_or(PROMETHEUS_MISSING),
                registry_url.as_deref().unwrap_or(REGISTRY_MISSING),
                spec.dir.join(infra::WEBHOOK_CA).display(),
                spec.dir.join(infra::HOSTS_INVENTORY).display(),
                gates_text(prometheus.is_some()),
                routes.join(" "),
                logs.display(),
            );
            if !missing.is_empty() {
                let _ = writeln!(
                    text,
                    "missing: {} (not on PATH; scripts/setup installs them): the lab runs without them",
                    missing.join(", ")
                );
            }
            let _ = writeln!(
                text,
                "{} processes; stop with Ctrl-C or `bulkhead lab down --dir {}`",
                procs.len(),
                spec.dir.display(),
            );
            announce(&text);
            supervise(&spec.exe, &lab, &mut procs, stop, &service_spec)
        });
    stop.store(true, Ordering::SeqCst);
    stop_all(&mut procs);
    if let Some(generator) = generator {
        let _ = generator.join();
    }
    if let Some(provisioner) = provisioner {
        let _ = provisioner.join();
    }
    let _ = fs::remove_file(spec.dir.join(STOP_FILE));
    outcome.and(lab.write(&procs, "stopped"))
}

/// Folder of requests to the running supervisor (new service versions, restarts).
pub const REQUESTS_DIR: &str = "requests";

/// What the lab says when `docker-registry` is not on PATH.
pub const REGISTRY_MISSING: &str =
    "not installed (docker-registry; scripts/setup installs it): no images are published";

/// Which metrics the rollout gates read, in words.
fn gates_text(prometheus: bool) -> &'static str {
    if prometheus {
        "PromQL against the lab's Prometheus"
    } else {
        "the gateway's /metrics (Prometheus is not installed)"
    }
}

/// Publishes the images to the registry and builds the dpkg hosts, recording each outcome.
fn provision(lab: &Lab, registry: Option<&str>) {
    let set = |key: &str, value: Value| {
        if let Ok(mut p) = lab.provision.lock() {
            p[key] = value;
        }
    };
    if let Some(url) = registry {
        match infra::publish(&lab.dir, url, &lab.services) {
            Ok(record) => {
                if let Ok(mut images) = lab.images.lock() {
                    for p in record.images.iter().filter(|p| p.service.is_some()) {
                        images.insert(p.service.clone().unwrap_or_default(), p.reference());
                    }
                }
                set(
                    "registry",
                    json!({"published": record.images.len(), "ms": record.ms}),
                );
                eprintln!(
                    "lab: published {} images to {url} in {} ms ({})",
                    record.images.len(),
                    record.ms,
                    infra::REGISTRY_JSON
                );
            }
            Err(e) => {
                eprintln!("lab: publishing images to {url} failed: {e}");
                set("registry", json!({"error": e}));
            }
        }
    }
    let started = Instant::now();
    match infra::build_hosts(&lab.dir, infra::HOSTS) {
        Ok(inventory) => {
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            set("hosts", json!({"hosts": infra::HOSTS.len(), "ms": ms}));
            eprintln!(
                "lab: {} dpkg hosts ready ({}, {ms} ms)",
                infra::HOSTS.len(),
                inventory.display()
            );
        }
        Err(e) => {
            eprintln!("lab: building the dpkg hosts failed: {e}");
            set("hosts", json!({"error": e}));
        }
    }
}

/// Writes a fresh random admin token to `DIR/admin-token`, readable by its owner only.
fn write_admin_token(dir: &Path) -> Result<PathBuf, UpError> {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_error("reading /dev/urandom for the admin token"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(ADMIN_TOKEN);
    let _ = fs::remove_file(&path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(token.as_bytes()))
        .map_err(io_error(format!("writing {}", path.display())))?;
    Ok(path)
}

/// What the lab says when `prometheus` is not on PATH.
pub const PROMETHEUS_MISSING: &str =
    "not installed (scripts/setup installs it); metrics are on the gateway's /metrics";
/// How often the lab's Prometheus scrapes: short, so rollout gates see changes quickly.
const SCRAPE_INTERVAL: &str = "2s";

/// The first executable file called `name` in PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The version `prometheus --version` prints ("prometheus, version 2.42.0 (...)").
fn prometheus_version(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_whitespace()
                .skip_while(|w| *w != "version")
                .nth(1)
                .map(String::from)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The lab's Prometheus configuration: one static job each for the gateway's
/// admin API, the services and the collector's query API, all on /metrics.
pub fn prometheus_yml(admin: SocketAddr, query: SocketAddr, services: &[SocketAddr]) -> String {
    let mut out = format!(
        "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\nscrape_configs:\n"
    );
    for (job, targets) in [
        ("gateway", vec![admin]),
        ("services", services.to_vec()),
        ("collector", vec![query]),
    ] {
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let _ = writeln!(
            out,
            "  - job_name: {job}\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]",
            targets.join(", ")
        );
    }
    out
}

/// What `lab.json` says besides the processes.
struct Lab {
    dir: PathBuf,
    /// The live services, for the cluster snapshot.
    services: Vec<FleetService>,
    addresses: Value,
    /// Optional programs not on PATH.
    missing: Vec<String>,
    /// Where the rollout gates read metrics: `prometheus` or `gateway`.
    gates: &'static str,
    load: Arc<Load>,
    /// When lab.json was last written and the load sent by then: the rate between writes.
    last_write: std::sync::Mutex<(Instant, u64)>,
    /// Each process's request counter when last read, for its rate.
    counters: std::sync::Mutex<BTreeMap<String, (Instant, f64)>>,
    /// When the counters were last read, and the rates that read gave.
    rates: std::sync::Mutex<Option<(Instant, BTreeMap<String, f64>)>>,
    /// What the background provisioning did (registry, hosts).
    provision: std::sync::Mutex<Value>,
    /// The image each service process runs (by process name), once published.
    images: std::sync::Mutex<BTreeMap<String, String>>,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// How often the supervisor reads every process's request counter for the
/// requests/s of `lab status`: each read is one `/metrics` request per
/// process, which at fifty services was most of an idle lab's work.
const RATES_EVERY: Duration = Duration::from_secs(10);

/// The request counters a process of this kind exposes on `/metrics`, and where.
fn metrics_of(p: &Proc, admin: SocketAddr) -> Option<(String, &'static [&'static str])> {
    match p.kind {
        "service" => Some((
            format!("http://{}/metrics", p.addr),
            &["http_requests_total"],
        )),
        "gateway" => Some((
            format!("http://{admin}/metrics"),
            &["bulkhead_gateway_requests_total"],
        )),
        "collector" => Some((
            format!("http://{}/metrics", p.addr),
            &["collector_ingest_requests_total"],
        )),
        "prometheus" => Some((
            format!("http://{}/metrics", p.addr),
            &["prometheus_http_requests_total"],
        )),
        _ => None,
    }
}

impl Lab {
    /// Requests per second of each process, read again once the last read is
    /// [`RATES_EVERY`] old.
    fn rates(&self, procs: &[Proc]) -> BTreeMap<String, f64> {
        let mut last = self
            .rates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*last {
            Some((at, rates)) if at.elapsed() < RATES_EVERY => rates.clone(),
            _ => {
                let rates = self.read_rates(procs);
                *last = Some((Instant::now(), rates.clone()));
                rates
            }
        }
    }

    /// Requests per second of each process since the last read of its counters.
    fn read_rates(&self, procs: &[Proc]) -> BTreeMap<String, f64> {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rates = BTreeMap::new();
        for p in procs.iter().filter(|p| p.child.is_some()) {
            let Some((url, names)) = metrics_of(p, self.admin) else {
                continue;
            };
            let total = http_client::Url::parse(&url)
                .ok()
                .and_then(|u| {
                    http_client::request("GET", &u, &[], &[], Duration::from_millis(300)).ok()
                })
                .filter(|r| r.status == 200)
                .and_then(|r| infra::requests_total(&String::from_utf8_lossy(&r.body), names));
            let Some(total) = total else { continue };
            let now = Instant::now();
            if let Some((at, before)) = counters.insert(p.name.clone(), (now, total)) {
                let seconds = now.duration_since(at).as_secs_f64();
                if seconds > 0.0 && total >= before {
                    rates.insert(
                        p.name.clone(),
                        ((total - before) / seconds * 10.0).round() / 10.0,
                    );
                }
            }
        }
        rates
    }

    fn write(&self, procs: &[Proc], state: &str) -> Result<(), UpError> {
        let sent = self.load.sent.load(Ordering::Relaxed);
        let requests_per_s = {
            let mut last = self
                .last_write
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (at, before) = *last;
            *last = (Instant::now(), sent);
            let seconds = at.elapsed().as_secs_f64();
            if seconds > 0.0 {
                ((sent - before) as f64 / seconds * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        let rates = if state == "running" {
            self.rates(procs)
        } else {
            BTreeMap::new()
        };
        let provision = self
            .provision
            .lock()
            .map(|p| p.clone())
            .unwrap_or(Value::Null);
        let record = json!({
            "state": state,
            "supervisor": std::process::id(),
            "addresses": self.addresses,
            "missing": self.missing,
            "gates": self.gates,
            "provision": provision,
            "load": {
                "sent": sent,
                "failed": self.load.failed.load(Ordering::Relaxed),
                "requests_per_s": requests_per_s,
            },
            "processes": procs.iter().map(|p| p.record(rates.get(&p.name).copied())).collect::<Vec<_>>(),
        });
        // The snapshot first: a reader that sees lab.json's provisioning done sees its images.
        write_atomic(
            &self.dir.join(cluster::SNAPSHOT),
            &self.snapshot(procs, state == "running"),
        )?;
        write_atomic(&self.dir.join(LAB_JSON), &record)
    }

    /// The live services as Deployments, and each of their processes as a Pod while `running`.
    fn snapshot(&self, procs: &[Proc], running: bool) -> Value {
        let images = self.images.lock().map(|i| i.clone()).unwrap_or_default();
        let workloads: Vec<Workload> = self
            .services
            .iter()
            .flat_map(|s| {
                procs
                    .iter()
                    .filter(|p| p.kind == "service" && p.service.as_deref() == Some(&s.name))
                    .map(|p| Workload {
                        name: s.name.clone(),
                        namespace: s.namespace.clone(),
                        version: p.version.clone(),
                        image: images.get(&p.name).cloned().unwrap_or_else(|| {
                            s.image
                                .clone()
                                .unwrap_or_else(|| format!("{}:{}", s.name, p.version))
                        }),
                        pid: p.pid().filter(|_| running),
                        addr: p.addr.to_string(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        cluster::snapshot(&workloads)
    }

    /// Writes gateway.yaml with every service process as an endpoint, keeping
    /// the selectors the gateway applies now, and has the gateway reload it.
    fn reload_gateway(&self, procs: &[Proc]) -> Result<(), String> {
        let admin = format!("http://{}", self.admin);
        let get = |path: &str| -> Result<Value, String> {
            let url = http_client::Url::parse(&format!("{admin}{path}"))?;
            let r = http_client::request("GET", &url, &[], &[], Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            serde_json::from_slice(&r.body).map_err(|e| format!("{admin}{path}: {e}"))
        };
        let config = get("/config")?;
        let selectors: BTreeMap<String, String> = self
            .services
            .iter()
            .filter_map(|s| {
                let selector =
                    config["config"]["services"][&s.name]["selection"]["selector"].as_object()?;
                let labels: Vec<String> = selector
                    .iter()
                    .map(|(k, v)| format!("{k}: \"{}\"", v.as_str().unwrap_or_default()))
                    .collect();
                Some((s.name.clone(), format!("{{{}}}", labels.join(", "))))
            })
            .collect();
        let endpoints: Vec<Endpoint> = procs
            .iter()
            .filter(|p| p.kind == "service")
            .filter_map(|p| {
                Some(Endpoint {
                    service: p.service.clone()?,
                    version: p.version.clone(),
                    addr: p.addr,
                })
            })
            .collect();
        let path = self.dir.join("gateway.yaml");
        fs::write(
            &path,
            gateway_yaml_with(self.listen, &self.services, &endpoints, &selectors),
        )
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
        let url = http_client::Url::parse(&format!("{admin}/reload"))?;
        let r = http_client::request("POST", &url, &[], &[], Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!(
                "the gateway refused the reload: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ))
        }
    }
}

/// A request to the running supervisor, a JSON file in `DIR/requests/`.
///
/// - `{"start": {"service": S, "version": V, "image": REF, "error_rate": R}}`
///   starts one more `lab service` process for S at version V (named `S@V`),
///   adds it to the gateway as an endpoint labelled `version: V` (the
///   selectors stay), and shows it in the cluster snapshot running REF
///   (optional); a version with `error_rate` (optional, 0 to 1) fails that
///   share of its requests;
/// - `{"stop": "S@V"}` stops an added version and removes it from the
///   gateway (move its traffic away first);
/// - `{"restart": NAME}` stops process NAME; it is started again at once
///   (the webhook re-reads its policy folder so).
///
/// The supervisor answers in `DIR/requests/ID.done` (`{"ok": true}` or `{"error": ...}`).
///
/// # Errors
/// The request cannot be written.
pub fn request(dir: &Path, id: &str, body: &Value) -> Result<PathBuf, UpError> {
    let folder = dir.join(REQUESTS_DIR);
    let path = folder.join(format!("{id}.json"));
    let tmp = folder.join(format!("{id}.json.tmp"));
    fs::write(&tmp, body.to_string())
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(io_error(format!("writing {}", path.display())))?;
    Ok(folder.join(format!("{id}.done")))
}

/// Sends a request and waits for the supervisor's answer.
///
/// # Errors
/// The request cannot be written, the supervisor did not answer within
/// `timeout`, or it answered with an error.
pub fn ask(dir: &Path, id: &str, body: &Value, timeout: Duration) -> Result<(), UpError> {
    let done = request(dir, id, body)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = fs::read_to_string(&done) {
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return match answer["error"].as_str() {
                None if answer["ok"] == true => Ok(()),
                error => Err(UpError::Invalid {
                    path: done,
                    detail: error.unwrap_or("unreadable answer").to_string(),
                }),
            };
        }
        if Instant::now() >= deadline {
            return Err(UpError::Invalid {
                path: done,
                detail: format!("the lab's supervisor did not answer within {timeout:?}"),
            });
        }
        std::thread::sleep(TICK);
    }
}

/// Writes JSON through a temporary file, so that a reader never sees half of it.
fn write_atomic(path: &Path, value: &Value) -> Result<(), UpError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    fs::write(&tmp, text + "\n")
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(io_error(format!("writing {}", path.display())))
}

/// Lists the lab's cluster snapshot in DIR/bulkhead.toml, so `bulkhead cve --path DIR`
/// reads it, and makes its folder.
fn add_snapshot_entry(dir: &Path) -> Result<(), UpError> {
    let folder = dir.join(cluster::SNAPSHOT);
    if let Some(parent) = folder.parent() {
        fs::create_dir_all(parent).map_err(io_error(format!("creating {}", parent.display())))?;
    }
    let path = dir.join("bulkhead.toml");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_error(format!("reading {}", path.display()))(e)),
    };
    match cluster::with_snapshot_entry(&text) {
        Some(text) => {
            fs::write(&path, text).map_err(io_error(format!("writing {}", path.display())))
        }
        None => Ok(()),
    }
}

/// Builds the process of a version of a service; a positive error rate makes
/// it fail that share of its requests (a faulty version).
type ServiceSpec<'a> = dyn Fn(&FleetService, String, &str, SocketAddr, f64) -> ProcSpec + 'a;

/// Watches the children: a dead one is reported and started again after its
/// backoff. Also answers requests, and records the webhook's CA once it printed it.
fn supervise(
    exe: &Path,
    lab: &Lab,
    procs: &mut Vec<Proc>,
    stop: &AtomicBool,
    service_spec: &ServiceSpec<'_>,
) -> Result<(), UpError> {
    let stop_file = lab.dir.join(STOP_FILE);
    let mut last_write = Instant::now();
    let mut ca_pending = false;
    let mut webhook_pid = None;
    while !stop.load(Ordering::SeqCst) && !stop_file.exists() {
        let mut changed = false;
        for p in procs.iter_mut() {
            if let Some(child) = &mut p.child
                && let Ok(Some(status)) = child.try_wait()
            {
                if p.started.elapsed() >= STABLE_AFTER {
                    p.backoff = FIRST_BACKOFF;
                }
                eprintln!(
                    "lab: {} (pid {}) exited ({status}); restarting in {:?}",
                    p.name,
                    child.id(),
                    p.backoff
                );
                p.last_exit = Some(status.to_string());
                if port_taken(p) {
                    // Another program took the port between its pick and the child's start.
                    eprintln!(
                        "lab: {}'s address {} is in use by another process; stop that process, or run `lab down` and `lab up` again to pick free ports",
                        p.name, p.addr
                    );
                    p.last_exit = Some(format!("{status}: its address {} is in use", p.addr));
                }
                p.child = None;
                p.next_start = Some(Instant::now() + p.backoff);
                p.backoff = (p.backoff * 2).min(MAX_BACKOFF);
                changed = true;
            }
            if p.next_start.is_some_and(|at| at <= Instant::now()) {
                p.start(exe)?;
                p.restarts += 1;
                eprintln!(
                    "lab: {} restarted (pid {}, restart {})",
                    p.name,
                    p.pid().unwrap_or_default(),
                    p.restarts
                );
                changed = true;
            }
        }
        changed |= answer_requests(exe, lab, procs, service_spec);
        // A webhook started anew (after a crash or on request) has a new certificate.
        if let Some(p) = procs.iter().find(|p| p.kind == "webhook") {
            if p.pid() != webhook_pid {
                webhook_pid = p.pid();
                ca_pending = p.pid().is_some();
            }
            if ca_pending {
                ca_pending = !record_ca(&lab.dir, p);
            }
        }
        if changed || last_write.elapsed() >= Duration::from_secs(2) {
            lab.write(procs, "running")?;
            last_write = Instant::now();
        }
        std::thread::sleep(TICK);
    }
    Ok(())
}

/// Whether the child's log since it last started says its address is taken.
fn port_taken(p: &Proc) -> bool {
    let Ok(bytes) = fs::read(&p.log) else {
        return false;
    };
    let start = usize::try_from(p.log_start).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]).to_lowercase();
    text.contains("address already in use") || text.contains("address in use")
}

/// Writes the CA the webhook printed since it last started; false while it has not.
fn record_ca(dir: &Path, webhook: &Proc) -> bool {
    let Ok(bytes) = fs::read(&webhook.log) else {
        return false;
    };
    let start = usize::try_from(webhook.log_start)
        .unwrap_or(0)
        .min(bytes.len());
    let Some(pem) = infra::ca_from_log(&String::from_utf8_lossy(&bytes[start..])) else {
        return false;
    };
    let path = dir.join(infra::WEBHOOK_CA);
    let tmp = dir.join(format!("{}.tmp", infra::WEBHOOK_CA));
    fs::write(&tmp, pem)
        .and_then(|()| fs::rename(&tmp, &path))
        .is_ok()
}

/// Carries out the requests waiting in `DIR/requests/`; true when a process was added or stopped.
fn answer_requests(
    exe: &Path,
    lab: &Lab,
    procs: &mut Vec<Proc>,
    service_spec: &ServiceSpec<'_>,
) -> bool {
    let folder = lab.dir.join(REQUESTS_DIR);
    let Ok(entries) = fs::read_dir(&folder) else {
        return false;
    };
    let mut pending: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    pending.sort();
    let mut changed = false;
    for path in pending {
        let request: Value = fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let outcome = answer(exe, lab, procs, service_spec, &request);
        changed |= outcome.is_ok();
        let answer = match outcome {
            Ok(()) => json!({"ok": true}),
            Err(e) => {
                eprintln!("lab: request {}: {e}", path.display());
                json!({"error": e})
            }
        };
        let _ = fs::remove_file(&path);
        let _ = write_atomic(&path.with_extension("done"), &answer);
    }
    changed
}

fn answer(
    exe: &Path,
    lab: &Lab,
    procs: &mut Vec<Proc>,
    service_spec: &ServiceSpec<'_>,
    request: &Value,
) -> Result<(), String> {
    if let Some(name) = request["restart"].as_str() {
        let p = procs
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("no process {name:?}"))?;
        if let Some(mut child) = p.child.take() {
            send_signal(child.id(), "TERM");
            let _ = child.wait();
        }
        p.start(exe).map_err(|e| e.to_string())?;
        p.restarts += 1;
        p.last_exit = Some("restarted on request".into());
        eprintln!(
            "lab: {name} restarted on request (pid {})",
            p.pid().unwrap_or_default()
        );
        return Ok(());
    }
    if let Some(name) = request["stop"].as_str() {
        let at = procs
            .iter()
            .position(|p| p.name == name && p.name.contains('@'))
            .ok_or_else(|| {
                format!("no added version {name:?} (only S@V processes stop on request)")
            })?;
        let mut p = procs.remove(at);
        stop_all(std::slice::from_mut(&mut p));
        eprintln!("lab: {name} stopped on request");
        if let Ok(mut images) = lab.images.lock() {
            images.remove(name);
        }
        return lab.reload_gateway(procs);
    }
    let start = &request["start"];
    let (Some(service), Some(version)) = (start["service"].as_str(), start["version"].as_str())
    else {
        return Err(format!(
            "not a request: {request} (give {{\"start\": {{\"service\", \"version\"}}}}, {{\"stop\": \"S@V\"}} or {{\"restart\": NAME}})"
        ));
    };
    let s = lab
        .services
        .iter()
        .find(|s| s.name == service)
        .ok_or_else(|| format!("{service} is not a live service of the lab"))?;
    let name = format!("{service}@{version}");
    if procs.iter().any(|p| p.name == name) {
        return Err(format!("{name} already runs"));
    }
    let addr = TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("picking a port for {name}: {e}"))?;
    let error_rate = start["error_rate"].as_f64().unwrap_or(0.0);
    let mut p = Proc::new(service_spec(s, name.clone(), version, addr, error_rate));
    p.start(exe).map_err(|e| e.to_string())?;
    eprintln!(
        "lab: started {name} on {addr} (pid {})",
        p.pid().unwrap_or_default()
    );
    procs.push(p);
    if let (Some(image), Ok(mut images)) = (start["image"].as_str(), lab.images.lock()) {
        images.insert(name.clone(), image.to_string());
    }
    lab.reload_gateway(procs)
}

/// Asks every child to stop (SIGTERM), waits for it, and kills what outlives the grace.
fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter() {
        if let Some(pid) = p.pid() {
            send_signal(pid, "TERM");
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for p in procs.iter_mut() {
        let Some(child) = &mut p.child else { continue };
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(TICK),
            }
        }
    }
}

/// A flag set on the first SIGTERM or Ctrl-C; the handlers are installed before it returns.
///
/// # Errors
/// When the handlers cannot be installed.
pub fn stop_on_signal() -> Result<Arc<AtomicBool>, UpError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_error("starting the signal handler"))?;
    let signal = {
        let _context = runtime.enter();
        signals::stop().map_err(io_error("installing the signal handlers"))?
    };
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    std::thread::spawn(move || {
        runtime.block_on(signal);
        set.store(true, Ordering::SeqCst);
    });
    Ok(flag)
}

/// Sends a signal with kill(1): std has no API for signals other than SIGKILL.
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a process with this pid exists (`kill -0`).
pub fn alive(pid: u32) -> bool {
    send_signal(pid, "0")
}

/// Counts of the load generator.
#[derive(Debug, Default)]
struct Load {
    sent: AtomicU64,
    failed: AtomicU64,
}

/// Sends GET requests over the public routes in turn at `rate` per second.
fn generate_load(listen: SocketAddr, routes: &[String], rate: f64, load: &Load, stop: &AtomicBool) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now();
    for route in routes.iter().cycle() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let ok = http_client::Url::parse(&format!("http://{listen}{route}"))
            .ok()
            .and_then(|url| {
                http_client::request("GET", &url, &[], &[], Duration::from_secs(5)).ok()
            })
            .is_some_and(|r| r.status < 500);
        load.sent.fetch_add(1, Ordering::Relaxed);
        if !ok {
            load.failed.fetch_add(1, Ordering::Relaxed);
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Reads `DIR/lab.json`.
///
/// # Errors
/// No lab has run in DIR, or its record is unreadable.
pub fn read_record(dir: &Path) -> Result<Value, UpError> {
    let path = dir.join(LAB_JSON);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(UpError::NotRunning {
                dir: dir.to_owned(),
            });
        }
        Err(e) => return Err(io_error(format!("reading {}", path.display()))(e)),
    };
    serde_json::from_str(&text).map_err(|e| UpError::Invalid {
        path,
        detail: e.to_string(),
    })
}

/// Every recorded process with whether it runs and answers its health check.
///
/// # Errors
/// As [`read_record`].
pub fn status(dir: &Path) -> Result<Value, UpError> {
    let mut record = read_record(dir)?;
    let running = record["state"] == "running";
    if let Some(procs) = record["processes"].as_array_mut() {
        for p in procs {
            let pid = p["pid"].as_u64().and_then(|pid| u32::try_from(pid).ok());
            let is_alive = running && pid.is_some_and(alive);
            let health = if is_alive {
                p["health"].as_str().map_or("unknown".to_string(), probe)
            } else {
                "down".to_string()
            };
            p["alive"] = Value::Bool(is_alive);
            p["healthy"] = Value::Bool(health == "ok");
            p["health_check"] = p["health"].take();
            p["health"] = Value::String(health);
        }
    }
    Ok(record)
}

/// "ok" for a 2xx answer (or, for `tcp://ADDR`, an accepted connection), else what went wrong.
fn probe(url: &str) -> String {
    if let Some(addr) = url.strip_prefix("tcp://") {
        return match addr.parse::<SocketAddr>() {
            Ok(a) => match std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)) {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("{addr}: {e}"),
            },
            Err(e) => format!("{addr}: {e}"),
        };
    }
    let answer = http_client::Url::parse(url).and_then(|u| {
        http_client::request("GET", &u, &[], &[], Duration::from_secs(1)).map_err(|e| e.to_string())
    });
    match answer {
        Ok(r) if (200..300).contains(&r.status) => "ok".to_string(),
        Ok(r) => format!("answered {}", r.status),
        Err(e) => e,
    }
}

fn supervisor(record: &Value) -> Option<u32> {
    record["supervisor"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
}

/// Asks the lab's supervisor to stop, waits until it has stopped every child,
/// then kills any recorded process still alive. Returns the pids it had to kill.
///
/// # Errors
/// As [`read_record`], or the stop file cannot be written.
pub fn down(dir: &Path, timeout: Duration) -> Result<Vec<u32>, UpError> {
    let record = read_record(dir)?;
    let pids = |record: &Value| -> Vec<u32> {
        record["processes"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["pid"].as_u64())
                    .filter_map(|pid| u32::try_from(pid).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut recorded = pids(&record);
    if record["state"] == "running" {
        let stop = dir.join(STOP_FILE);
        File::create(&stop).map_err(io_error(format!("writing {}", stop.display())))?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let now = read_record(dir)?;
            recorded.extend(pids(&now));
            // A supervisor that was killed never writes "stopped".
            if now["state"] != "running" || !supervisor(&now).is_some_and(alive) {
                break;
            }
            std::thread::sleep(TICK);
        }
    }
    recorded.sort_unstable();
    recorded.dedup();
    let killed: Vec<u32> = recorded
        .into_iter()
        .filter(|&pid| alive(pid) && send_signal(pid, "KILL"))
        .collect();
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, deps: &[&str], public: &[&str]) -> FleetService {
        FleetService {
            name: name.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            public_paths: public.iter().map(|p| p.to_string()).collect(),
            namespace: "default".into(),
            image: None,
        }
    }

    #[test]
    fn live_services_start_at_public_ones_and_follow_their_calls() {
        let fleet = vec![
            service("db", &[], &[]),
            service("orders", &["db", "unrelated"], &[]),
            service("unrelated", &[], &[]),
            service("web", &["orders"], &["/web"]),
            service("help", &[], &["/help"]),
        ];
        let live = pick_live(&fleet, 3);
        let names: Vec<&str> = live.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "orders", "db"]);
        assert_eq!(
            live[1].depends_on,
            ["db"],
            "calls to services left out are dropped"
        );
    }

    #[test]
    fn a_new_version_is_one_more_endpoint_and_the_selectors_stay() {
        let live = vec![service("web", &[], &["/web"]), service("db", &[], &[])];
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let endpoints = [
            Endpoint {
                service: "web".into(),
                version: "1.0.0".into(),
                addr: at(7001),
            },
            Endpoint {
                service: "db".into(),
                version: "1.0.0".into(),
                addr: at(7002),
            },
            Endpoint {
                service: "db".into(),
                version: "1.0.1".into(),
                addr: at(7003),
            },
        ];
        let selectors = BTreeMap::from([("db".to_string(), "{version: \"1.0.1\"}".to_string())]);
        test_support::expect_text(
            &gateway_yaml_with(at(8080), &live, &endpoints, &selectors),
            "listeners:\n  - address: 127.0.0.1:8080\nroutes:\n  - prefix: /web\n    service: web\n  - host: web\n    prefix: /\n    service: web\n  - host: db\n    prefix: /\n    service: db\nservices:\n  web:\n    endpoints:\n      - {address: 127.0.0.1:7001, labels: {app: web, version: \"1.0.0\"}}\n    selector: {app: web, version: \"1.0.0\"}\n    ejection: off\n  db:\n    endpoints:\n      - {address: 127.0.0.1:7002, labels: {app: db, version: \"1.0.0\"}}\n      - {address: 127.0.0.1:7003, labels: {app: db, version: \"1.0.1\"}}\n    selector: {version: \"1.0.1\"}\n    ejection: off\n",
        );
    }

    #[test]
    fn a_child_whose_address_is_taken_is_told_apart_from_a_crash() {
        let tmp = test_support::TempDir::new("lab-port-taken");
        let child = |log: &str, text: &str| {
            let path = tmp.join(log);
            fs::write(&path, text).unwrap();
            Proc::new(ProcSpec {
                name: "registry".into(),
                log: path,
                ..ProcSpec::default()
            })
        };
        let taken = child(
            "registry.log",
            "listen tcp 127.0.0.1:5000: bind: address already in use\n",
        );
        assert!(port_taken(&taken));
        let crashed = child("webhook.log", "panicked at src/main.rs\n");
        assert!(!port_taken(&crashed));
    }

    #[test]
    fn the_longest_chain_is_picked_before_breadth() {
        let fleet = vec![
            service("web", &["a", "b", "orders"], &["/web"]),
            service("a", &[], &[]),
            service("b", &[], &[]),
            service("orders", &["pay"], &[]),
            service("pay", &["ledger"], &[]),
            service("ledger", &["db"], &[]),
            service("db", &[], &[]),
        ];
        let live = pick_live(&fleet, 5);
        let names: Vec<&str> = live.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "orders", "pay", "ledger", "db"]);
        assert_eq!(live[0].depends_on, ["orders"]);
    }

    #[test]
    fn a_request_crosses_six_live_services_in_generated_fleets() {
        for (fleet_size, live) in [(100, 12), (12, 6), (100, 50)] {
            let plan = generate::plan(&FleetSpec {
                services: fleet_size,
                seed: 42,
                git: false,
            });
            let truth = serde_json::to_value(&plan.truth).unwrap();
            let picked = pick_live(&fleet_of(&truth).unwrap(), live);
            let by_name: BTreeMap<&str, &FleetService> =
                picked.iter().map(|s| (s.name.as_str(), s)).collect();
            let chain = longest_chain(&by_name, &picked[0].name);
            assert!(
                chain.len() >= 6,
                "{live} of {fleet_size}: {chain:?} from {:?}",
                picked[0].public_paths
            );
            assert!(!picked[0].public_paths.is_empty());
        }
    }

    #[test]
    fn prometheus_scrapes_the_gateway_services_and_collector() {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        test_support::expect_text(
            &prometheus_yml(at(9001), at(9002), &[at(7001), at(7002)]),
            "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\nscrape_configs:\n  - job_name: gateway\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"127.0.0.1:9001\"]\n  - job_name: services\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]\n  - job_name: collector\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"127.0.0.1:9002\"]\n",
        );
    }

    #[test]
    fn the_gateway_routes_public_paths_and_service_hosts() {
        let live = vec![service("web", &["db"], &["/web"]), service("db", &[], &[])];
        let addrs = BTreeMap::from([
            ("web".to_string(), SocketAddr::from(([127, 0, 0, 1], 7001))),
            ("db".to_string(), SocketAddr::from(([127, 0, 0, 1], 7002))),
        ]);
        let yaml = gateway_yaml(SocketAddr::from(([127, 0, 0, 1], 8080)), &live, &addrs);
        test_support::expect_text(
            &yaml,
            "listeners:\n  - address: 127.0.0.1:8080\nroutes:\n  - prefix: /web\n    service: web\n  - host: web\n    prefix: /\n    service: web\n  - host: db\n    prefix: /\n    service: db\nservices:\n  web:\n    endpoints:\n      - {address: 127.0.0.1:7001, labels: {app: web, version: \"1.0.0\"}}\n    selector: {app: web, version: \"1.0.0\"}\n    ejection: off\n  db:\n    endpoints:\n      - {address: 127.0.0.1:7002, labels: {app: db, version: \"1.0.0\"}}\n    selector: {app: db, version: \"1.0.0\"}\n    ejection: off\n",
        );
    }
}
