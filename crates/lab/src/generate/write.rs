//! The I/O half of the generator: writes a planned fleet to disk and records repo history with
//! the real `git` binary, isolated from the user's git configuration so that commit hashes
//! depend on the plan alone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{Commit, FileEntry, FleetSpec, GROUND_TRUTH, RepoPlan, Summary, plan};

/// Why writing a fleet failed; every variant names the path or command involved.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("target directory {path} is not empty; refusing to write a fleet into it")]
    NotEmpty { path: PathBuf },
    #[error("target {path} exists and is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("cannot inspect {path}: {source}")]
    Inspect { path: PathBuf, source: io::Error },
    #[error("cannot create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("git executable not found on PATH")]
    GitNotFound,
    #[error("cannot run `{command}` in {dir}: {source}")]
    Spawn {
        command: String,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("`{command}` failed in {dir} ({status}): {stderr}")]
    Git {
        command: String,
        dir: PathBuf,
        status: String,
        stderr: String,
    },
}

/// Generates the fleet described by `spec` under `dir`, which must be missing or empty.
pub fn write_fleet(dir: &Path, spec: &FleetSpec) -> Result<Summary, LabError> {
    prepare_target(dir)?;
    let fleet = plan(spec);
    for file in &fleet.files {
        write_file(dir, file)?;
    }
    let git = if spec.git { Some(Git::find()?) } else { None };
    write_repos(dir, &fleet.repos, git.as_ref())?;
    Ok(Summary {
        services: fleet.truth.services.len(),
        repos: fleet.repos.len(),
        files: fleet.files.len() + fleet.repos.iter().map(RepoPlan::file_count).sum::<usize>(),
        ground_truth: dir.join(GROUND_TRUTH),
    })
}

fn prepare_target(dir: &Path) -> Result<(), LabError> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(LabError::NotADirectory {
            path: dir.to_owned(),
        }),
        Ok(_) => {
            let mut entries = fs::read_dir(dir).map_err(|source| LabError::Inspect {
                path: dir.to_owned(),
                source,
            })?;
            match entries.next() {
                None => Ok(()),
                Some(_) => Err(LabError::NotEmpty {
                    path: dir.to_owned(),
                }),
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|source| LabError::CreateDir {
                path: dir.to_owned(),
                source,
            })
        }
        Err(source) => Err(LabError::Inspect {
            path: dir.to_owned(),
            source,
        }),
    }
}

fn write_file(root: &Path, file: &FileEntry) -> Result<(), LabError> {
    let path = root.join(&file.path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| LabError::CreateDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    fs::write(&path, &file.content).map_err(|source| LabError::Write { path, source })
}

/// Creates the repos on 2-4 worker threads; most of the time goes into spawning `git`, which
/// parallelises well. On failure the workers stop early and the error of the first failing
/// repo (in plan order) is returned, so the reported error does not depend on scheduling.
fn write_repos(root: &Path, repos: &[RepoPlan], git: Option<&Git>) -> Result<(), LabError> {
    let workers = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(2, 4)
        .min(repos.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut errors: Vec<(usize, LabError)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut errors = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(repo) = repos.get(index) else { break };
                        if let Err(error) = write_repo(root, repo, git) {
                            failed.store(true, Ordering::Relaxed);
                            errors.push((index, error));
                        }
                    }
                    errors
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| match handle.join() {
                Ok(errors) => errors,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    errors.sort_by_key(|(index, _)| *index);
    match errors.into_iter().next() {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}

fn write_repo(root: &Path, repo: &RepoPlan, git: Option<&Git>) -> Result<(), LabError> {
    let dir = root.join(&repo.path);
    fs::create_dir_all(&dir).map_err(|source| LabError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    if let Some(git) = git {
        // No template directory: sample hooks are noise, and copying them costs time at 10k repos.
        git.run(&dir, &["init", "-q", "--template="], "")?;
    }
    for commit in &repo.commits {
        for file in &commit.files {
            write_file(&dir, file)?;
        }
        if let Some(git) = git {
            git.commit(&dir, commit)?;
        }
    }
    Ok(())
}

/// The `git` binary, resolved once.
#[derive(Debug)]
struct Git {
    /// Absolute path: with a bare name and a child environment that sets PATH, std cannot use
    /// posix_spawn and falls back to fork, which made 10,000 repos twice as slow.
    program: PathBuf,
}

impl Git {
    fn find() -> Result<Self, LabError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join("git"))
            .find(|candidate| candidate.is_file())
            .map(|program| Self { program })
            .ok_or(LabError::GitNotFound)
    }

    fn commit(&self, dir: &Path, commit: &Commit) -> Result<(), LabError> {
        self.run(dir, &["add", "-A"], &commit.date)?;
        self.run(
            dir,
            &["commit", "-q", "--no-verify", "-m", &commit.message],
            &commit.date,
        )?;
        if let Some(tag) = &commit.tag {
            match &tag.message {
                Some(message) => {
                    self.run(dir, &["tag", "-a", &tag.name, "-m", message], &commit.date)?;
                }
                None => self.run(dir, &["tag", &tag.name], &commit.date)?,
            }
        }
        Ok(())
    }

    /// Runs `git` with a fixed identity, fixed dates and no user or system configuration, so
    /// that the resulting object hashes depend only on the arguments and the files.
    fn run(&self, dir: &Path, args: &[&str], date: &str) -> Result<(), LabError> {
        let mut command = Command::new(&self.program);
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
            .envs([
                ("GIT_CONFIG_NOSYSTEM", "1"),
                ("GIT_CONFIG_GLOBAL", "/dev/null"),
                ("LC_ALL", "C"),
                ("GIT_AUTHOR_NAME", "Bulkhead Lab"),
                ("GIT_AUTHOR_EMAIL", "lab@acme.example"),
                ("GIT_AUTHOR_DATE", date),
                ("GIT_COMMITTER_NAME", "Bulkhead Lab"),
                ("GIT_COMMITTER_EMAIL", "lab@acme.example"),
                ("GIT_COMMITTER_DATE", date),
            ])
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "tag.gpgsign=false",
                "-c",
                "core.autocrlf=false",
                // Auto gc/maintenance would fork background work after every commit.
                "-c",
                "gc.auto=0",
                "-c",
                "maintenance.auto=false",
            ])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let shown = || format!("git {}", args.join(" "));
        let output = command.output().map_err(|source| LabError::Spawn {
            command: shown(),
            dir: dir.to_owned(),
            source,
        })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(LabError::Git {
                command: shown(),
                dir: dir.to_owned(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }
}
