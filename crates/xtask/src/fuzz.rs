//! `cargo xtask fuzz`: a mutation fuzzer for every parser that reads outside
//! input, on the stable toolchain and in this process.
//!
//! Each target is one parser entry point and a seed folder under
//! `testdata/fuzz/` (real files, see its README). An input is a seed with one
//! to four mutations stacked (bit flips, interesting bytes, deletions,
//! duplicated or repeated ranges, tokens of the target's grammar, splices of
//! two seeds), at most `--max-len` bytes. Every call runs under
//! `catch_unwind`, so a panic is a finding, not the end of the run.
//!
//! Findings, each saved as `KIND-TARGET-HASH` in `--out` (with a `.txt` that
//! says why):
//! - `crash`: the parser panicked (one file per panic location);
//! - `slow`: one call took over 1 s, twice (the second run tells a slow
//!   parser from a machine that was busy elsewhere);
//! - `hang`: one call ran over 10 s; a watchdog thread saves it and ends the run;
//! - `memory`: the process's peak resident memory grew by more than
//!   `--max-mem` during one call. The peak (VmHWM) is read after every call
//!   that took over 5 ms and every 1,000 calls, and reset after each reading:
//!   memory a call fills takes time to touch, so a fast call cannot hold much.
//!
//! The time is split evenly over the targets; each prints its executions, and
//! the run ends with the process's peak resident memory. Exit 1 when anything
//! was found.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const USAGE: &str = "usage: cargo xtask fuzz [--minutes N | --seconds N] [--target NAME] [--seed N] [--out DIR] [--max-len BYTES] [--max-mem BYTES] [--list] [--replay FILE]

  Mutates the seed corpus in testdata/fuzz/<target>/ and calls each parser in
  this process: a panic, a call over 1 s and a call holding over --max-mem
  bytes are findings, saved in --out. Exit 1 when anything was found.

  --minutes N     time for the whole run, split over the targets (default 1)
  --seconds N     the same in seconds (CI's short pass)
  --target NAME   fuzz one target (repeatable); --list prints them
  --seed N        the random seed (default: the clock); the same seed and
                  time do not give the same inputs, the same seed and
                  executions do
  --out DIR       where findings go (default target/fuzz-findings)
  --max-len N     the largest input in bytes (default 65536)
  --max-mem N     the most resident memory one call may add, in bytes
                  (default 268435456)
  --replay FILE   run the --target on FILE once (repeatable), timed: a
                  finding, checked again

  Example: cargo xtask fuzz --minutes 10 --target yaml --target dockerfile";

/// A call over this long is a finding.
const SLOW: Duration = Duration::from_secs(1);
/// A call over this long never ends as far as the run is concerned.
const HANG: Duration = Duration::from_secs(10);
/// A call at least this long has its memory measured.
const MEASURED: Duration = Duration::from_millis(5);

/// Runs a slow input again: a call slowed by a busy machine (another
/// process, swapping) is fast the second time, a slow parser is not.
fn slow_again(target: &mut Target, input: &[u8]) -> bool {
    let call = Instant::now();
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    call.elapsed() > SLOW
}

/// Peak resident memory since the last [`reset_peak_rss`], in KiB (Linux's VmHWM).
fn peak_rss_kib() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts a new peak: writing 5 to clear_refs resets VmHWM to the current RSS.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// What the worker runs now, for the watchdog and the allocator.
#[derive(Default)]
struct Current {
    target: &'static str,
    input: Vec<u8>,
    /// Milliseconds since the run started when this call began; 0 between calls.
    started_ms: u64,
}

struct Options {
    duration: Duration,
    targets: Vec<String>,
    seed: u64,
    out: PathBuf,
    max_len: usize,
    max_mem: usize,
    list: bool,
    /// Inputs to run once each, timed, instead of fuzzing (one `--target`).
    replay: Vec<PathBuf>,
}

fn parse(args: &[String], root: &Path) -> Result<Options, String> {
    let mut options = Options {
        duration: Duration::from_secs(60),
        targets: Vec::new(),
        seed: u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos())
                % u128::from(u64::MAX),
        )
        .unwrap_or(1),
        out: root.join("target/fuzz-findings"),
        max_len: 64 * 1024,
        max_mem: 256 << 20,
        list: false,
        replay: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        if flag == "--list" {
            options.list = true;
            continue;
        }
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value:?}"))
        };
        match flag.as_str() {
            "--minutes" => options.duration = Duration::from_secs(number()? * 60),
            "--seconds" => options.duration = Duration::from_secs(number()?),
            "--target" => options.targets.push(value.clone()),
            "--replay" => options.replay.push(PathBuf::from(value)),
            "--seed" => options.seed = number()?,
            "--out" => options.out = PathBuf::from(value),
            "--max-len" => options.max_len = usize::try_from(number()?).unwrap_or(usize::MAX),
            "--max-mem" => options.max_mem = usize::try_from(number()?).unwrap_or(usize::MAX),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// xorshift64*: fast, and enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }
}

/// Bytes that often sit at a grammar's edges.
const INTERESTING: &[u8] = b"\0\xff\n\r\t \"':-{}[]\\#&*%!|>,=;@$`\x80\xc3";

/// A parser entry point, fed one input per call.
type Parser = Box<dyn FnMut(&[u8])>;

/// One parser entry point and what it is fed.
struct Target {
    name: &'static str,
    /// Tokens of its grammar, inserted whole.
    dictionary: &'static [&'static str],
    run: Parser,
}

const YAML: &[&str] = &[
    "- ",
    ": ",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "? ",
    "|\n",
    "|-\n",
    ">+\n",
    "---\n",
    "...\n",
    "{",
    "}",
    "[",
    "]",
    "'",
    "\"",
    "%YAML 1.2\n",
    "%TAG ! tag:x,2000:\n",
    "\t",
    "#",
    "\\u0000",
    "\n  ",
    "\n    - ",
    "~",
    "null",
    "0x",
    ".inf",
    "1e999",
    "2001-12-14t21:59:43.10-05:00",
];
const DOCKERFILE: &[&str] = &[
    "FROM ",
    "ARG ",
    " AS ",
    "\\\n",
    "${",
    "}",
    ":-",
    "# syntax=docker/dockerfile:1\n",
    "# escape=`\n",
    "COPY --from=",
    "RUN ",
    "@sha256:",
    ":latest",
    "$",
    "--platform=$BUILDPLATFORM ",
    "<<EOF\n",
    "\nEOF\n",
    "ONBUILD ",
    "scratch",
    "\n",
];
const JSON: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "null",
    "\"",
    ":",
    ",",
    "\\u0000",
    "\\ud800",
    "1e999",
    "-0",
    "true",
    "[[[[",
    "\"Results\": null",
    "\"Vulnerabilities\": []",
    "\"ArtifactType\": \"repository\"",
    "18446744073709551616",
    "\"\"",
];
const HTTP: &[&str] = &[
    "\r\n",
    ": ",
    "Host: a\r\n",
    "Content-Length: 5\r\n",
    "Transfer-Encoding: chunked\r\n",
    "\r\n\r\n",
    " HTTP/1.1\r\n",
    " HTTP/1.0\r\n",
    "0\r\n\r\n",
    "ffffffffffffffff\r\n",
    ";ext=1",
    "\n",
    "Expect: 100-continue\r\n",
    "Connection: close\r\n",
    "http://a",
    " ",
    "\0",
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
    "tracestate: a=b,c@d=e\r\n",
    "content-length: 99999999999999999999\r\n",
];
const TRACE: &[&str] = &[
    "-",
    "00",
    "ff",
    "01",
    "00000000000000000000000000000000",
    "0000000000000000",
    ",",
    "=",
    "@",
    " ",
    "\t",
    "a",
    "Z",
    "*",
    "/",
    "\n",
];
const TOML: &[&str] = &[
    "[",
    "]",
    "=",
    "\"",
    "'''",
    "[[",
    "]]",
    "\n",
    "#",
    "{",
    "}",
    ".",
    "inf",
    "nan",
    "\"\"\"",
    "[scan]\n",
    "[reports]\n",
    "[cluster]\n",
    "\\u0000",
    "1979-05-27T07:32:00Z",
];
const PROTOBUF: &[&str] = &[
    "\n", "\x12", "\x1a", "\"", "\u{7f}", "\u{80}", "\0", "\x08", "\x11", "\x21", "\x2a",
];

fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(input)
}

/// Every target, with its parser. State a parser needs (compiled policies) is built here, once.
fn targets(root: &Path) -> Result<Vec<Target>, String> {
    use scan::FileKind;
    let scan_as = |path: &'static str, kind: FileKind| -> Parser {
        Box::new(move |input| {
            let text = text(input);
            let _ = FileKind::of_text(path, &text);
            let _ = scan::parse(path, kind, &text);
        })
    };
    let report = |format: images::ReportFormat| -> Parser {
        Box::new(move |input| {
            let _ = images::reports::parse(format, "report.json", &text(input));
        })
    };
    let indexed: std::collections::HashSet<String> = ["http.route", "error"]
        .into_iter()
        .map(String::from)
        .collect();
    let indexed_json = indexed.clone();
    let mut policies = admission_policies(root)?;
    Ok(vec![
        Target {
            name: "dockerfile",
            dictionary: DOCKERFILE,
            run: scan_as("svc/Dockerfile", FileKind::Dockerfile),
        },
        Target {
            name: "yaml",
            dictionary: YAML,
            run: Box::new(|input| {
                let (docs, _) = yaml::load(&text(input));
                for doc in &docs {
                    let _ = doc.to_json();
                }
            }),
        },
        Target {
            name: "gitlab",
            dictionary: YAML,
            run: scan_as("svc/.gitlab-ci.yml", FileKind::GitlabCi),
        },
        Target {
            name: "github",
            dictionary: YAML,
            run: scan_as("svc/.github/workflows/ci.yml", FileKind::GithubWorkflow),
        },
        Target {
            name: "kube",
            dictionary: YAML,
            run: scan_as("svc/k8s/deploy.yaml", FileKind::Yaml),
        },
        Target {
            name: "catalog",
            dictionary: YAML,
            run: scan_as("svc/catalog-info.yaml", FileKind::Yaml),
        },
        Target {
            name: "hosts",
            dictionary: YAML,
            run: Box::new(|input| {
                let text = text(input);
                let _ = scan::parse("inventory/hosts.yaml", FileKind::Yaml, &text);
                let _ = patch::inventory::parse("inventory/hosts.yaml", &text);
            }),
        },
        Target {
            name: "trivy",
            dictionary: JSON,
            run: report(images::ReportFormat::Trivy),
        },
        Target {
            name: "cyclonedx",
            dictionary: JSON,
            run: report(images::ReportFormat::CycloneDx),
        },
        Target {
            name: "grype",
            dictionary: JSON,
            run: report(images::ReportFormat::Grype),
        },
        Target {
            name: "spdx",
            dictionary: JSON,
            run: report(images::ReportFormat::Spdx),
        },
        Target {
            name: "base-catalog",
            dictionary: JSON,
            run: Box::new(|input| {
                let _ = images::bases::parse_catalog(
                    "base-images/images.json",
                    "base-images",
                    &text(input),
                );
            }),
        },
        Target {
            name: "cluster",
            dictionary: JSON,
            run: Box::new(|input| {
                let _ = images::cluster::parse_snapshot("cluster/prod.json", "prod", &text(input));
            }),
        },
        Target {
            name: "otlp-json",
            dictionary: JSON,
            run: Box::new(move |input| {
                if let Ok(request) = collector::json::decode_request(input) {
                    let _ = collector::ingest::prepare(request, &indexed_json);
                }
            }),
        },
        Target {
            name: "otlp-protobuf",
            dictionary: PROTOBUF,
            run: Box::new(move |input| {
                let _ = collector::ingest::prepare_protobuf(
                    bytes::Bytes::copy_from_slice(input),
                    &indexed,
                );
            }),
        },
        Target {
            name: "gateway-head",
            dictionary: HTTP,
            run: Box::new(|input| {
                let _ = gateway::read_request(input);
            }),
        },
        Target {
            name: "webhook-head",
            dictionary: HTTP,
            run: Box::new(|input| {
                let _ = admission::read_request(input);
            }),
        },
        Target {
            name: "traceparent",
            dictionary: TRACE,
            run: Box::new(|input| {
                let _ = telemetry::parse_traceparent(input);
            }),
        },
        Target {
            name: "tracestate",
            dictionary: TRACE,
            run: Box::new(|input| {
                let _ = telemetry::parse_tracestate(input.split(|&b| b == b'\n'));
            }),
        },
        Target {
            name: "admission-review",
            dictionary: JSON,
            run: Box::new(move |input| {
                let _ = policy::admission::decide(
                    &mut policies,
                    input,
                    policy::admission::FailurePolicy::Closed,
                );
            }),
        },
        Target {
            name: "gateway-config",
            dictionary: YAML,
            run: Box::new(|input| {
                let _ = gateway::parse("gateway.yaml", &text(input));
            }),
        },
        Target {
            name: "rollout",
            dictionary: YAML,
            run: Box::new(|input| {
                let _ = rollout::Specs::parse("rollouts.yaml", &text(input));
            }),
        },
        Target {
            name: "bulkhead-toml",
            dictionary: TOML,
            run: Box::new(|input| {
                let _ = discover::Config::parse(&text(input));
            }),
        },
    ])
}

/// The built-in bundle and one Gatekeeper template with its constraint, as
/// `policy serve` would load them, with a 1 s evaluation budget.
fn admission_policies(root: &Path) -> Result<policy::Policies, String> {
    let dir = root.join("crates/policy/testdata/gatekeeper");
    let mut set = policy::GatekeeperSet::new();
    for file in ["allowedrepos-template.yaml", "allowedrepos-constraint.yaml"] {
        let path = dir.join(file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let diagnostics = set.add_yaml(file, &text);
        if !diagnostics.is_empty() {
            return Err(format!("{file}: {diagnostics:?}"));
        }
    }
    policy::Policies::new()
        .with_budget(Duration::from_secs(1))
        .with_builtin(&policy::BundleConfig::default())
        .map(|p| p.with_gatekeeper(set))
        .map_err(|e| format!("the built-in policies: {e}"))
}

fn seeds(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    let seeds: Vec<Vec<u8>> = names
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect::<Result<_, _>>()?;
    if seeds.is_empty() {
        return Err(format!("{}: no seeds", dir.display()));
    }
    Ok(seeds)
}

fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One random change to `input`.
fn mutate(input: &mut Vec<u8>, rng: &mut Rng, dictionary: &[&str], seeds: &[Vec<u8>]) {
    let len = input.len();
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 if len > 0 => {
            let from = rng.below(len);
            let to = (from + 1 + rng.below(32)).min(len);
            input.drain(from..to);
        }
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            input.splice(at..at, bytes);
        }
        4 if len > 0 => {
            let from = rng.below(len);
            let to = (from + 1 + rng.below(64)).min(len);
            let piece = input[from..to].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, piece);
        }
        5 | 6 if !dictionary.is_empty() => {
            let token = dictionary[rng.below(dictionary.len())].as_bytes();
            let at = rng.below(len + 1);
            input.splice(at..at, token.iter().copied());
        }
        7 if len > 0 => {
            // A short piece many times over: deep nesting, long lines, many fields.
            let from = rng.below(len);
            let to = (from + 1 + rng.below(8)).min(len);
            let piece = input[from..to].to_vec();
            let times = 1 + rng.below(2000);
            let at = rng.below(len + 1);
            input.splice(
                at..at,
                piece.iter().copied().cycle().take(piece.len() * times),
            );
        }
        8 => {
            let other = &seeds[rng.below(seeds.len())];
            let at = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
        9 if len > 0 => input.truncate(rng.below(len)),
        _ => {
            let numbers: [&[u8]; 6] = [
                b"18446744073709551616",
                b"-1",
                b"0",
                b"9223372036854775807",
                b"1e309",
                b"4294967296",
            ];
            let at = rng.below(len + 1);
            input.splice(at..at, numbers[rng.below(numbers.len())].iter().copied());
        }
    }
}

/// What one target's run found.
#[derive(Default)]
struct Tally {
    executions: u64,
    findings: Vec<String>,
    /// The most resident memory one call added, in bytes.
    peak_call_bytes: usize,
    /// The process's highest peak resident memory seen, in KiB.
    peak_rss_kib: usize,
}

fn save(out: &Path, kind: &str, target: &str, input: &[u8], why: &str) -> String {
    let name = format!("{kind}-{target}-{:016x}", hash(input));
    let path = out.join(&name);
    let _ = std::fs::write(&path, input);
    let _ = std::fs::write(path.with_extension("txt"), format!("{why}\n"));
    format!("{kind}: {} ({why})", path.display())
}

thread_local! {
    /// The last panic's message and location, set by the hook the run installs.
    static PANIC: std::cell::RefCell<Option<(String, String)>> = const { std::cell::RefCell::new(None) };
}

#[allow(clippy::too_many_arguments)]
fn fuzz_target(
    target: &mut Target,
    seeds: &[Vec<u8>],
    options: &Options,
    budget: Duration,
    rng: &mut Rng,
    current: &Mutex<Current>,
    started: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut seen_panics = BTreeSet::new();
    let deadline = Instant::now() + budget;
    let mut previous: Option<Vec<u8>> = None;
    // Seeds first, unchanged: they must pass as they are.
    let mut queue: Vec<Vec<u8>> = seeds.to_vec();
    reset_peak_rss();
    let mut baseline = peak_rss_kib().unwrap_or(0);
    loop {
        let input = if let Some(seed) = queue.pop() {
            seed
        } else {
            if Instant::now() >= deadline {
                break;
            }
            // Half the time build on the last input, so changes accumulate.
            let mut input = match previous.take() {
                Some(p) if rng.below(2) == 0 => p,
                _ => seeds[rng.below(seeds.len())].clone(),
            };
            for _ in 0..=rng.below(4) {
                mutate(&mut input, rng, target.dictionary, seeds);
            }
            input.truncate(options.max_len);
            input
        };
        {
            let mut c = current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            c.target = target.name;
            c.input.clear();
            c.input.extend_from_slice(&input);
            c.started_ms = u64::try_from(started.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
        }
        let call = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        let took = call.elapsed();
        let held = if took >= MEASURED || tally.executions % 1000 == 0 {
            let reading = peak_rss_kib().unwrap_or(0);
            tally.peak_rss_kib = tally.peak_rss_kib.max(reading);
            let peak = reading.saturating_sub(baseline) * 1024;
            reset_peak_rss();
            baseline = peak_rss_kib().unwrap_or(0);
            peak
        } else {
            0
        };
        current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .started_ms = 0;
        tally.executions += 1;
        tally.peak_call_bytes = tally.peak_call_bytes.max(held);
        if result.is_err() {
            let (message, location) = PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| ("a panic".into(), "unknown".into()));
            if seen_panics.insert(location.clone()) {
                let why = format!("panicked at {location}: {message}");
                tally
                    .findings
                    .push(save(&options.out, "crash", target.name, &input, &why));
            }
        } else if took > SLOW && slow_again(target, &input) {
            let why = format!("one call took {took:?}, and as long again");
            tally
                .findings
                .push(save(&options.out, "slow", target.name, &input, &why));
        } else if held > options.max_mem {
            let why = format!("resident memory grew by {held} bytes during one call");
            tally
                .findings
                .push(save(&options.out, "memory", target.name, &input, &why));
        }
        previous = Some(input);
    }
    tally
}

pub fn run(args: &[String], root: &Path) -> Result<(), String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let options = parse(args, root)?;
    let mut all = targets(root)?;
    if options.list {
        for t in &all {
            println!("{}", t.name);
        }
        return Ok(());
    }
    if !options.targets.is_empty() {
        for name in &options.targets {
            if !all.iter().any(|t| t.name == name) {
                return Err(format!("unknown target {name:?}; --list prints them"));
            }
        }
        all.retain(|t| options.targets.iter().any(|n| n == t.name));
    }
    if !options.replay.is_empty() {
        let [target] = all.as_mut_slice() else {
            return Err("--replay needs exactly one --target".into());
        };
        for file in &options.replay {
            let input = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let call = Instant::now();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
            println!(
                "{}: {} bytes, {:?}, {}",
                file.display(),
                input.len(),
                call.elapsed(),
                if result.is_ok() {
                    "returned"
                } else {
                    "panicked"
                }
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    let current = Arc::new(Mutex::new(Current::default()));
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map_or_else(|| "unknown".to_string(), ToString::to_string);
        PANIC.with(|p| *p.borrow_mut() = Some((message, location)));
    }));
    let started = Instant::now();
    watchdog(current.clone(), options.out.clone(), started);
    println!(
        "fuzz: {} targets, {:?} each, seed {}, findings in {}",
        all.len(),
        options.duration / u32::try_from(all.len()).unwrap_or(1),
        options.seed,
        options.out.display()
    );
    let budget = options.duration / u32::try_from(all.len().max(1)).unwrap_or(1);
    let mut rng = Rng(options.seed | 1);
    let (mut executions, mut findings) = (0u64, Vec::new());
    // The process's peak over the run (each target resets it for its calls).
    let mut peak_rss = peak_rss_kib().unwrap_or(0);
    for target in &mut all {
        let seeds = seeds(&root.join("testdata/fuzz").join(target.name))?;
        let tally = fuzz_target(
            target, &seeds, &options, budget, &mut rng, &current, started,
        );
        println!(
            "{:<17} {:>9} executions {:>8.0}/s  {} seeds  peak call +{:>6} KiB  {} findings",
            target.name,
            tally.executions,
            tally.executions as f64 / budget.as_secs_f64().max(0.001),
            seeds.len(),
            tally.peak_call_bytes / 1024,
            tally.findings.len()
        );
        peak_rss = peak_rss.max(tally.peak_rss_kib);
        executions += tally.executions;
        findings.extend(tally.findings);
    }
    let _ = std::panic::take_hook();
    println!(
        "total: {executions} executions in {:.1} s, peak RSS {} KiB, {} findings",
        started.elapsed().as_secs_f64(),
        peak_rss,
        findings.len()
    );
    for f in &findings {
        println!("  {f}");
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(format!("{} findings", findings.len()))
    }
}

/// Ends the run, saving the input, when one call runs past [`HANG`].
fn watchdog(current: Arc<Mutex<Current>>, out: PathBuf, started: Instant) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let c = current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if c.started_ms != 0 && now.saturating_sub(c.started_ms) > HANG.as_millis() as u64 {
                let why = format!("one call ran over {HANG:?}");
                let saved = save(&out, "hang", c.target, &c.input, &why);
                let _ = std::io::stdout().flush();
                eprintln!("fuzz: {saved}");
                std::process::exit(1);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(out: &Path) -> Options {
        Options {
            duration: Duration::from_secs(1),
            targets: Vec::new(),
            seed: 7,
            out: out.to_path_buf(),
            max_len: 1024,
            max_mem: 256 << 20,
            list: false,
            replay: Vec::new(),
        }
    }

    /// A parser that panics on one byte is found, saved once per panic
    /// location with its message, and the run goes on to its deadline.
    #[test]
    fn a_panicking_parser_is_a_finding_saved_with_its_input() {
        let out = std::env::temp_dir().join(format!("xtask-fuzz-test-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let mut target = Target {
            name: "toy",
            dictionary: &["!"],
            run: Box::new(|input| assert!(!input.contains(&b'!'), "a bang")),
        };
        std::panic::set_hook(Box::new(|info| {
            PANIC.with(|p| {
                *p.borrow_mut() = Some((
                    info.payload()
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .unwrap_or_default(),
                    info.location().map(ToString::to_string).unwrap_or_default(),
                ));
            });
        }));
        let tally = fuzz_target(
            &mut target,
            &[b"hello".to_vec()],
            &options(&out),
            Duration::from_millis(300),
            &mut Rng(7),
            &Mutex::new(Current::default()),
            Instant::now(),
        );
        let _ = std::panic::take_hook();
        assert!(tally.executions > 10, "{}", tally.executions);
        assert_eq!(tally.findings.len(), 1, "{:?}", tally.findings);
        let saved: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let input = saved.iter().find(|p| p.extension().is_none()).unwrap();
        assert!(std::fs::read(input).unwrap().contains(&b'!'));
        let why = std::fs::read_to_string(input.with_extension("txt")).unwrap();
        assert!(why.contains("a bang"), "{why}");
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn every_target_has_a_seed_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for target in targets(&root).unwrap() {
            let seeds = seeds(&root.join("testdata/fuzz").join(target.name)).unwrap();
            assert!(!seeds.is_empty(), "{}", target.name);
        }
    }
}
