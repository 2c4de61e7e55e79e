//! Reaching a host: a local root directory, or SSH through the system client.
//!
//! Only the local-root transport is exercised by the tests (there is no SSH
//! server here); SSH wraps the same commands in `ssh -o BatchMode=yes HOST --`.

use crate::exec::{self, CmdOutput, ExecError, shell_quote};
use patch::{HostSpec, Transport};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A command to run on a host.
#[derive(Debug, Clone, Default)]
pub struct HostCmd {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
}

impl HostCmd {
    pub fn new(program: &str) -> HostCmd {
        HostCmd {
            program: program.to_string(),
            ..HostCmd::default()
        }
    }
    pub fn arg(mut self, a: impl Into<String>) -> HostCmd {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> HostCmd {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, k: &str, v: impl Into<String>) -> HostCmd {
        self.env.push((k.to_string(), v.into()));
        self
    }
    pub fn cwd(mut self, dir: impl Into<String>) -> HostCmd {
        self.cwd = Some(dir.into());
        self
    }
    /// The command as one shell line (for messages and SSH).
    pub fn line(&self) -> String {
        let mut words = Vec::new();
        if let Some(d) = &self.cwd {
            words.push(format!("cd {} &&", shell_quote(d)));
        }
        if !self.env.is_empty() {
            words.push("env".into());
            words.extend(
                self.env
                    .iter()
                    .map(|(k, v)| format!("{k}={}", shell_quote(v))),
            );
        }
        words.push(shell_quote(&self.program));
        words.extend(self.args.iter().map(|a| shell_quote(a)));
        words.join(" ")
    }
}

/// One host, reachable for commands and file reads, with a work folder for this run.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub transport: Transport,
    /// On this machine: apt configuration (local roots) and saved `.deb`s.
    pub work_dir: PathBuf,
    /// On the host: where `.deb`s are saved (the work dir for local roots).
    pub host_work_dir: String,
}

impl Host {
    pub fn new(spec: &HostSpec, work_dir: PathBuf, run_id: i64) -> Host {
        let host_work_dir = match &spec.transport {
            Transport::Local { .. } => work_dir.display().to_string(),
            Transport::Ssh { .. } => format!("/var/cache/bulkhead/run-{run_id}"),
        };
        Host {
            name: spec.name.clone(),
            transport: spec.transport.clone(),
            work_dir,
            host_work_dir,
        }
    }

    /// The local root directory, for the local transport.
    pub fn root(&self) -> Option<&Path> {
        match &self.transport {
            Transport::Local { root } => Some(Path::new(root)),
            Transport::Ssh { .. } => None,
        }
    }

    /// The root as maintainer scripts and health checks see it (`BULKHEAD_ROOT`).
    pub fn root_text(&self) -> String {
        self.root()
            .map_or_else(|| "/".to_string(), |r| r.display().to_string())
    }

    /// A host path (`/var/log/apt/history.log`) as a local path under the root.
    pub fn local_path(&self, host_path: &str) -> Option<PathBuf> {
        self.root()
            .map(|r| r.join(host_path.trim_start_matches('/')))
    }

    /// The `std::process::Command` that runs `cmd` on the host.
    pub fn command(&self, cmd: &HostCmd) -> Command {
        match &self.transport {
            Transport::Local { .. } => {
                let mut c = Command::new(&cmd.program);
                c.args(&cmd.args).envs(cmd.env.iter().map(|(k, v)| (k, v)));
                if let Some(d) = &cmd.cwd {
                    c.current_dir(d);
                }
                c
            }
            Transport::Ssh { destination, port } => {
                let mut c = Command::new("ssh");
                c.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]);
                if let Some(p) = port {
                    c.arg("-p").arg(p.to_string());
                }
                c.arg(destination).arg("--").arg(cmd.line());
                c
            }
        }
    }

    /// Runs a command on the host.
    ///
    /// # Errors
    ///
    /// When it cannot start or times out.
    pub fn run(&self, cmd: &HostCmd, timeout: Duration) -> Result<CmdOutput, ExecError> {
        exec::run(&mut self.command(cmd), timeout)
    }

    /// Runs a command and insists on exit status 0; the error names the command and its output.
    ///
    /// # Errors
    ///
    /// A message with the command line, exit status and last output lines.
    pub fn run_ok(&self, cmd: &HostCmd, timeout: Duration) -> Result<CmdOutput, String> {
        let out = self.run(cmd, timeout).map_err(|e| e.to_string())?;
        if out.success() {
            Ok(out)
        } else {
            Err(format!(
                "{} exited with {}: {}",
                short_line(cmd),
                out.code.map_or("a signal".to_string(), |c| c.to_string()),
                out.tail()
            ))
        }
    }

    /// Reads a text file on the host; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    ///
    /// When it exists but cannot be read.
    pub fn read_file(&self, host_path: &str) -> Result<Option<String>, String> {
        match self.local_path(host_path) {
            Some(p) => match std::fs::read(&p) {
                Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("reading {}: {e}", p.display())),
            },
            None => {
                let cmd = HostCmd::new("sh").arg("-c").arg(format!(
                    "if [ -e {p} ]; then echo present; cat {p}; else echo absent; fi",
                    p = shell_quote(host_path)
                ));
                let out = self.run_ok(&cmd, Duration::from_secs(60))?;
                Ok(out.stdout.strip_prefix("present\n").map(str::to_string))
            }
        }
    }
}

fn short_line(cmd: &HostCmd) -> String {
    let mut words = vec![cmd.program.as_str()];
    words.extend(
        cmd.args
            .iter()
            .filter(|a| {
                !a.starts_with("--root=")
                    && !a.starts_with("--admindir=")
                    && !a.starts_with("--force-script")
            })
            .map(String::as_str)
            .take(6),
    );
    words.join(" ")
}
