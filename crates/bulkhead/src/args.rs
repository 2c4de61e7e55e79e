//! The argument groups every command shares (the fleet and its state
//! directory, the output format, durations, secrets, `--open-pr` and the one
//! way a command publishes a branch through it) and the exit status every
//! command returns. A leaf: command modules use it, it uses none of them.

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use discover::StateDir;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// How a command ended, the same for every command (README.md, "Exit status").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command ran and the answer is "yes" (or there was no question).
    Ran,
    /// 1: the command ran and the answer is "no": a deny, an app that breaks,
    /// a host or service rolled back, a trace not found.
    No,
    /// 2: the command could not run: bad arguments, a missing path, an invalid file.
    CouldNotRun,
    /// 3: the command waits for a person (a manual gate of a rollout).
    Waiting,
}

impl Exit {
    /// `Ran` when `ok`, else `No`.
    pub fn answer(ok: bool) -> Exit {
        if ok { Exit::Ran } else { Exit::No }
    }

    pub fn code(self) -> u8 {
        match self {
            Exit::Ran => 0,
            Exit::No => 1,
            Exit::CouldNotRun => 2,
            Exit::Waiting => 3,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// The fleet a command reads, and where its state is kept.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// The fleet root, holding bulkhead.toml (scanned now; unchanged files come from the state's cache).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub path: PathBuf,
    #[command(flatten)]
    pub state: StateArgs,
}

impl FleetArgs {
    /// Scan this fleet through its state's cache.
    pub fn scan_options(&self) -> discover::ScanOptions {
        discover::ScanOptions {
            paths: vec![self.path.clone()],
            state_dir: self.state.state.clone(),
            use_cache: true,
        }
    }

    /// The state directory for this fleet, without scanning it.
    pub fn state_dir(&self) -> StateDir {
        self.state.resolve(&self.path)
    }
}

/// `--state DIR`, for commands whose fleet root is given another way.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// State directory (default: .bulkhead/ at the fleet root).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

impl StateArgs {
    pub fn resolve(&self, fleet_root: &Path) -> StateDir {
        StateDir::resolve(fleet_root, self.state.as_deref())
    }
}

/// `--format` with `--json` as its shorthand, shared by every reporting command.
#[derive(Debug, Clone, Args)]
pub struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    json: bool,
}

impl FormatArgs {
    pub fn get(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }
}

/// The environment variable naming a console to ask instead of scanning.
pub const SERVER_ENV: &str = "BULKHEAD_SERVER";

/// `--server URL`: ask a running `bulkhead console` instead of scanning.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// A running `bulkhead console` for this fleet, asked instead of scanning
    /// (default: $BULKHEAD_SERVER, else `server =` in bulkhead.toml). When it
    /// does not answer, or serves another fleet, the command scans, with a note.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

impl ServerArgs {
    /// The console's answer to `GET api_path` (path and query), or `None`,
    /// with a note on stderr, when no console is named, none answers, it
    /// serves another folder than `fleet`, or it cannot answer this question.
    pub fn ask(&self, fleet: &Path, api_path: &str) -> Option<String> {
        let url = self
            .server
            .clone()
            .or_else(|| std::env::var(SERVER_ENV).ok().filter(|v| !v.is_empty()))
            .or_else(|| {
                let root = std::fs::canonicalize(fleet).ok()?;
                discover::Config::load(&root).ok()?.server
            })?;
        let url = url.trim_end_matches('/').to_string();
        let get = |path: &str| -> Result<http_client::Response, String> {
            let target = http_client::Url::parse(&format!("{url}{path}"))?;
            http_client::request("GET", &target, &[], b"", Duration::from_secs(10))
                .map_err(|e| e.to_string())
        };
        let fallback = |why: String| {
            eprintln!("note: {why}; scanning instead");
            None
        };
        let status = match get("/api/status") {
            Ok(r) if r.status == 200 => r,
            Ok(r) => return fallback(format!("the console at {url} answered {}", r.status)),
            Err(e) => return fallback(format!("no console answers at {url} ({e})")),
        };
        let root = serde_json::from_slice::<serde_json::Value>(&status.body)
            .ok()
            .and_then(|v| v.get("root").and_then(|r| r.as_str()).map(PathBuf::from));
        let ours = std::fs::canonicalize(fleet).ok();
        if root.is_none() || root != ours {
            return fallback(format!(
                "the console at {url} serves {}, not {}",
                root.map_or("an unknown folder".into(), |r| r.display().to_string()),
                fleet.display()
            ));
        }
        match get(api_path) {
            Ok(r) if r.status == 200 => String::from_utf8(r.body).ok(),
            Ok(r) => fallback(format!(
                "the console at {url} answered {} to {api_path}",
                r.status
            )),
            Err(e) => fallback(format!("asking the console at {url}: {e}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// For a pull-request comment.
    Markdown,
}

impl Format {
    /// The name `--format` and the console's `?format=` take.
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Markdown => "markdown",
        }
    }
}

/// The clap value parser of every time flag: `250ms`, `30s`, `5m`, `1h30m`, `2d`.
pub fn duration(text: &str) -> Result<Duration, String> {
    yaml::parse_duration(text).map_err(|e| e.to_string())
}

/// The value parser of a hidden old spelling that took whole seconds.
pub fn seconds(text: &str) -> Result<Duration, String> {
    whole(text).map(Duration::from_secs)
}

/// The value parser of a hidden old spelling that took milliseconds.
pub fn millis(text: &str) -> Result<Duration, String> {
    whole(text).map(Duration::from_millis)
}

/// The value parser of a hidden old spelling that took hours.
pub fn hours(text: &str) -> Result<Duration, String> {
    whole(text).map(|h| Duration::from_secs(h.saturating_mul(3600)))
}

fn whole(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

/// A secret named by `--…-token-env NAME` or `--…-token-file PATH`, never
/// given on the command line itself, where other users can read it.
pub fn read_secret(flag: &str, env: Option<&str>, file: Option<&Path>) -> Result<Option<String>> {
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(token) if !token.is_empty() => Ok(Some(token)),
            _ => bail!("--{flag}-env {var}: the variable is unset or empty"),
        };
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--{flag}-file {}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            bail!("--{flag}-file {}: the file is empty", path.display());
        }
        return Ok(Some(token.to_string()));
    }
    Ok(None)
}

/// `--open-pr` and how to reach the forge: shared by the commands that
/// commit to the fleet's repositories (`images upgrade`, `template bump`).
#[derive(Debug, Clone, Args)]
pub struct PrArgs {
    /// Push each repository's branch to --remote and open its merge or pull
    /// request, or update the one already open for the branch (with --apply).
    #[arg(long, requires = "apply")]
    pub open_pr: bool,
    /// github, gitlab (REST API) or gitlab-push (push options, no token);
    /// default: from the remote's host (github.com, a host with "gitlab").
    #[arg(long, value_name = "FORGE", value_parser = forge::Kind::parse, requires = "open_pr")]
    pub forge: Option<forge::Kind>,
    /// The forge's API base URL (default: `https://api.github.com` for
    /// github.com, `https://HOST/api/v3` for GitHub Enterprise, `https://HOST/api/v4` for GitLab).
    #[arg(long, value_name = "URL", requires = "open_pr")]
    pub forge_url: Option<String>,
    /// A PEM CA certificate the forge's HTTPS is signed by, besides the system's.
    #[arg(long, value_name = "FILE", requires = "open_pr")]
    pub forge_ca_file: Option<std::path::PathBuf>,
    /// The environment variable holding the forge's API token.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "token_file",
        requires = "open_pr"
    )]
    pub token_env: Option<String>,
    /// A file holding the forge's API token.
    #[arg(long, value_name = "PATH", requires = "open_pr")]
    pub token_file: Option<std::path::PathBuf>,
    /// The git remote each branch is pushed to.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "origin",
        requires = "open_pr"
    )]
    pub remote: String,
    /// The branch the change merges into (default: the repository's current branch).
    #[arg(long, value_name = "BRANCH", requires = "open_pr")]
    pub base: Option<String>,
    /// Tries of each step (push, each API call) before a repository is
    /// reported failed; waits 1s, 2s, 4s... between them, or what the forge's Retry-After asks.
    #[arg(long, value_name = "N", default_value_t = 3, requires = "open_pr")]
    pub attempts: u32,
}

impl PrArgs {
    /// The forge configuration, when --open-pr is given.
    ///
    /// # Errors
    /// An unreadable token or CA file.
    pub fn config(&self) -> Result<Option<forge::Config>> {
        if !self.open_pr {
            return Ok(None);
        }
        let token = read_secret(
            "token",
            self.token_env.as_deref(),
            self.token_file.as_deref(),
        )?;
        let extra = match &self.forge_ca_file {
            Some(path) => std::fs::read(path)
                .with_context(|| format!("--forge-ca-file {}", path.display()))?,
            None => Vec::new(),
        };
        let tls = http_client::Tls::with_pem(&extra).map_err(|e| {
            anyhow::anyhow!(
                "--forge-ca-file {}: {e}",
                self.forge_ca_file
                    .as_deref()
                    .map_or(String::new(), |p| p.display().to_string())
            )
        })?;
        Ok(Some(forge::Config {
            kind: self.forge,
            api: self.forge_url.clone(),
            token,
            tls,
            remote: self.remote.clone(),
            attempts: self.attempts.max(1),
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
        }))
    }
}

/// Publishes `branch` of `repo` (push, then open or update its change) and
/// says what happened in one line per step, for the command's report.
///
/// # Errors
/// The forge's failure, with the retries made before it.
pub fn publish(
    repo: &vcs::Repo,
    config: &forge::Config,
    base: Option<&str>,
    branch: &str,
    title: &str,
    description: &str,
) -> Result<String> {
    let base = match base {
        Some(b) => b.to_string(),
        None => repo.current_branch()?.unwrap_or_else(|| "main".to_string()),
    };
    let change = forge::Change {
        branch: branch.to_string(),
        base,
        title: title.to_string(),
        description: description.to_string(),
    };
    let mut lines = String::new();
    match forge::publish(repo, &change, config) {
        Ok(published) => {
            for retry in &published.retries {
                lines.push_str(&format!("  retried: {retry}\n"));
            }
            let what = match published.action {
                forge::Action::Opened => "opened",
                forge::Action::Updated => "updated",
                forge::Action::Pushed => "pushed with merge request options",
            };
            let number = published.number.map_or(String::new(), |n| format!(" #{n}"));
            let url = published.url.map_or(String::new(), |u| format!(" {u}"));
            lines.push_str(&format!("  {what}{number}{url}\n"));
            Ok(lines)
        }
        Err(failure) => {
            let retries: String = failure
                .retries
                .iter()
                .map(|r| format!("\n  retried: {r}"))
                .collect();
            Err(anyhow::anyhow!("{}{retries}", failure.error))
        }
    }
}
