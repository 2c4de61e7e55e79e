//! A thin wrapper over the `git` command line, with typed errors that name
//! the command and the repository.
//!
//! Why the CLI and not a library: it is the git every user already has, it
//! honours their configuration (identity, hooks are not run by plumbing,
//! signing is left alone), and plans made here can be replayed by hand.
//!
//! Every command runs with `GIT_CONFIG_NOSYSTEM=1` (no machine-wide
//! configuration changing the output), `LC_ALL=C` (stable messages) and
//! without inherited `GIT_DIR`/`GIT_WORK_TREE`/`GIT_INDEX_FILE`, which would
//! point it at another repository. Commits are made with plumbing on a
//! private index, so the user's working tree, index and checked-out branch
//! are never touched.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Identity used for commits when the repository configures none.
const FALLBACK_NAME: &str = "bulkhead";
const FALLBACK_EMAIL: &str = "bulkhead@localhost";

/// What went wrong running git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run `{command}` in {repo}: {source}")]
    Spawn {
        command: String,
        repo: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed in {repo} ({status}): {stderr}")]
    Failed {
        command: String,
        repo: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("{repo} is not a git repository")]
    NotARepository { repo: PathBuf },
    #[error("`{command}` in {repo} printed something unexpected: {detail}")]
    Output {
        command: String,
        repo: PathBuf,
        detail: String,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A tag and the commit it points at (annotated tags are peeled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRef {
    pub name: String,
    pub commit: String,
}

/// A file to write in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// `/`-separated, relative to the repository root.
    pub path: String,
    pub content: Vec<u8>,
}

/// One git repository.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
    env: Vec<(String, String)>,
}

impl Repo {
    /// Opens the repository whose working tree is `root`.
    ///
    /// # Errors
    /// When `root` is not the top of a git working tree, or git cannot run.
    pub fn open(root: &Path) -> Result<Repo, GitError> {
        let repo = Repo {
            root: root.to_path_buf(),
            env: Vec::new(),
        };
        match repo.run(&["rev-parse", "--show-toplevel"], None, &[]) {
            Ok(top) => {
                let top = String::from_utf8_lossy(&top).trim().to_string();
                let same = std::fs::canonicalize(&top).ok() == std::fs::canonicalize(root).ok();
                if same {
                    Ok(repo)
                } else {
                    Err(GitError::NotARepository {
                        repo: root.to_path_buf(),
                    })
                }
            }
            Err(GitError::Failed { .. }) => Err(GitError::NotARepository {
                repo: root.to_path_buf(),
            }),
            Err(e) => Err(e),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Sets an environment variable for every git command on this repository
    /// (`GIT_CONFIG_GLOBAL=/dev/null` isolates it from the user's configuration).
    #[must_use]
    pub fn with_env(mut self, key: &str, value: &str) -> Repo {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Every tag with the commit it points at, sorted by name.
    ///
    /// # Errors
    /// When git fails.
    pub fn tags(&self) -> Result<Vec<TagRef>, GitError> {
        let args = [
            "for-each-ref",
            "--format=%(refname:strip=2)%00%(objectname)%00%(*objectname)",
            "refs/tags",
        ];
        let out = self.text(&args, None)?;
        let mut tags: Vec<TagRef> = out
            .lines()
            .filter_map(|line| {
                let mut parts = line.split('\0');
                let name = parts.next()?.to_string();
                let object = parts.next()?;
                let peeled = parts.next().unwrap_or("");
                let commit = if peeled.is_empty() { object } else { peeled };
                Some(TagRef {
                    name,
                    commit: commit.to_string(),
                })
            })
            .collect();
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tags)
    }

    /// The commit a revision names, or `None` when it names none.
    ///
    /// # Errors
    /// When git cannot run.
    pub fn resolve(&self, rev: &str) -> Result<Option<String>, GitError> {
        let spec = format!("{rev}^{{commit}}");
        match self.text(&["rev-parse", "--verify", "--quiet", &spec], None) {
            Ok(id) => Ok(Some(id.trim().to_string())),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The branch checked out, or `None` on a detached HEAD.
    ///
    /// # Errors
    /// When git cannot run.
    pub fn current_branch(&self) -> Result<Option<String>, GitError> {
        match self.text(&["symbolic-ref", "--quiet", "--short", "HEAD"], None) {
            Ok(name) => Ok(Some(name.trim().to_string())),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The content of `path` at `rev` (`git show REV:PATH`, raw bytes, no
    /// filters), or `None` when the file does not exist there.
    ///
    /// # Errors
    /// When the revision does not exist or git fails.
    pub fn show(&self, rev: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        Ok(self.show_many(rev, &[path])?.pop().flatten())
    }

    /// The contents of several files at `rev` with one git process; `None` for a missing file.
    ///
    /// # Errors
    /// When git fails.
    pub fn show_many(&self, rev: &str, paths: &[&str]) -> Result<Vec<Option<Vec<u8>>>, GitError> {
        let mut input = String::new();
        for path in paths {
            input.push_str(&format!("{rev}:{path}\n"));
        }
        let args = ["cat-file", "--batch"];
        let out = self.run(&args, Some(input.as_bytes()), &[])?;
        let bad = |detail: String| GitError::Output {
            command: "git cat-file --batch".to_string(),
            repo: self.root.clone(),
            detail,
        };
        let mut rest = &out[..];
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let end = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| bad(format!("no header for {path}")))?;
            let header = String::from_utf8_lossy(&rest[..end]).to_string();
            rest = &rest[end + 1..];
            if header.ends_with(" missing") || header.ends_with(" ambiguous") {
                files.push(None);
                continue;
            }
            let mut fields = header.split(' ');
            let (_, kind, size) = (fields.next(), fields.next(), fields.next());
            let size: usize = size
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(format!("bad header {header:?}")))?;
            if rest.len() < size + 1 {
                return Err(bad(format!("{path}: truncated content")));
            }
            if kind == Some("blob") {
                files.push(Some(rest[..size].to_vec()));
            } else {
                files.push(None);
            }
            rest = &rest[size + 1..];
        }
        Ok(files)
    }

    /// Every file path at `rev`.
    ///
    /// # Errors
    /// When the revision does not exist or git fails.
    pub fn files(&self, rev: &str) -> Result<Vec<String>, GitError> {
        let out = self.run(&["ls-tree", "-r", "-z", "--name-only", rev], None, &[])?;
        Ok(out
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).to_string())
            .collect())
    }

    /// The full message of a commit.
    ///
    /// # Errors
    /// When git fails.
    pub fn message(&self, rev: &str) -> Result<String, GitError> {
        self.text(&["log", "-1", "--format=%B", rev, "--"], None)
    }

    /// Creates `branch` at a new commit on top of `base` that writes `changes`,
    /// and returns the commit id. The working tree, the index and the checked
    /// out branch are left alone, so a dirty working copy is no obstacle.
    ///
    /// # Errors
    /// When the branch already exists (it is never overwritten), `base` does
    /// not exist, or a git command fails.
    pub fn commit_on_new_branch(
        &self,
        base: &str,
        branch: &str,
        changes: &[FileChange],
        message: &str,
    ) -> Result<String, GitError> {
        let base = self.resolve(base)?.ok_or_else(|| GitError::Failed {
            command: format!("git rev-parse {base}"),
            repo: self.root.clone(),
            status: "unknown revision".to_string(),
            stderr: format!("{base} names no commit"),
        })?;
        let git_dir = self.text(&["rev-parse", "--absolute-git-dir"], None)?;
        let index =
            PathBuf::from(git_dir.trim()).join(format!("bulkhead-index-{}", std::process::id()));
        // The empty old value makes git refuse if the branch exists: never overwrite one.
        let result = self.commit_with_index(&index, &base, branch, "", changes, message);
        let _ = std::fs::remove_file(&index);
        result
    }

    /// Adds a commit that writes `changes` on top of the existing `branch`
    /// and moves the branch to it, and returns the commit id. Like
    /// [`Repo::commit_on_new_branch`] it leaves the working tree and index
    /// alone; the move is a compare-and-swap, so a concurrent commit on the
    /// branch makes this fail instead of being lost.
    ///
    /// # Errors
    /// When the branch does not exist, moved meanwhile, or a git command fails.
    pub fn commit_on_branch(
        &self,
        branch: &str,
        changes: &[FileChange],
        message: &str,
    ) -> Result<String, GitError> {
        let base = self.branch_tip(branch)?;
        let index = self.scratch_path("index")?;
        let result = self.commit_with_index(&index, &base, branch, &base, changes, message);
        let _ = std::fs::remove_file(&index);
        result
    }

    /// The URL of `remote`, when it is configured.
    ///
    /// # Errors
    /// When git fails.
    pub fn remote_url(&self, remote: &str) -> Result<Option<String>, GitError> {
        match self.text(&["remote", "get-url", remote], None) {
            Ok(url) => Ok(Some(url.trim().to_string())),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Pushes `branch` to the branch of the same name on `remote`, sending
    /// each of `options` as a push option (`git push -o`, which GitLab reads
    /// as `merge_request.create` and friends). The push replaces the remote
    /// branch only if it still is where this repository last saw it
    /// (`--force-with-lease`), so a re-run updates its own branch and never
    /// overwrites someone else's commits. Returns what the remote said
    /// (`remote:` lines), for a link to the change.
    ///
    /// # Errors
    /// A remote that refuses (a hook, a protected branch, authentication) or
    /// cannot be reached: the error holds git's message.
    pub fn push(&self, remote: &str, branch: &str, options: &[String]) -> Result<String, GitError> {
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        let mut args = vec!["push", "--force-with-lease"];
        for option in options {
            args.push("-o");
            args.push(option);
        }
        args.push(remote);
        args.push(&refspec);
        let output = self.run_output(&args, None, &[])?;
        Ok(String::from_utf8_lossy(&output.stderr)
            .lines()
            .filter_map(|l| l.strip_prefix("remote:"))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// The commits reachable from `rev` whose message contains `text`
    /// (fixed string), newest first: each id with its full message.
    ///
    /// # Errors
    /// When git fails.
    pub fn log_grep(&self, rev: &str, text: &str) -> Result<Vec<(String, String)>, GitError> {
        let grep = format!("--grep={text}");
        let out = self.text(
            &[
                "log",
                "--fixed-strings",
                &grep,
                "--format=%H%x00%B%x1e",
                rev,
                "--",
            ],
            None,
        )?;
        Ok(out
            .split('\x1e')
            .filter_map(|entry| {
                let (id, message) = entry.trim_start_matches('\n').split_once('\0')?;
                Some((id.to_string(), message.trim_end().to_string()))
            })
            .collect())
    }

    /// Adds a `git revert` of `commit` on top of `branch` and moves the branch
    /// to it, returning the new commit. The revert runs in a temporary
    /// worktree, so the repository's own working tree and index are left
    /// alone; the move is a compare-and-swap as in [`Repo::commit_on_branch`].
    ///
    /// # Errors
    /// When the revert conflicts, the branch moved meanwhile, or git fails.
    pub fn revert_on_branch(&self, branch: &str, commit: &str) -> Result<String, GitError> {
        let reference = format!("refs/heads/{branch}");
        let base = self.branch_tip(branch)?;
        let tree = self.scratch_path("revert")?;
        let tree_text = tree.to_string_lossy().to_string();
        self.run(
            &["worktree", "add", "--detach", "--quiet", &tree_text, &base],
            None,
            &[],
        )?;
        let identity = self.identity_env()?;
        let identity: Vec<(&str, &std::ffi::OsStr)> = identity
            .iter()
            .map(|(k, v)| (*k, std::ffi::OsStr::new(v.as_str())))
            .collect();
        let result = self
            .run(
                &["-C", &tree_text, "revert", "--no-edit", commit],
                None,
                &identity,
            )
            .and_then(|_| self.text(&["-C", &tree_text, "rev-parse", "HEAD"], None))
            .and_then(|new| {
                let new = new.trim().to_string();
                self.run(&["update-ref", &reference, &new, &base], None, &[])?;
                Ok(new)
            });
        let _ = self.run(&["worktree", "remove", "--force", &tree_text], None, &[]);
        result
    }

    /// The commit `branch` points at; a missing branch is an error that names it.
    fn branch_tip(&self, branch: &str) -> Result<String, GitError> {
        let reference = format!("refs/heads/{branch}");
        self.resolve(&reference)?.ok_or_else(|| GitError::Failed {
            command: format!("git rev-parse {reference}"),
            repo: self.root.clone(),
            status: "unknown revision".to_string(),
            stderr: format!("no branch {branch}"),
        })
    }

    /// A path in the repository's git directory for this process's scratch
    /// `what` (an index, a worktree), which no other process uses.
    fn scratch_path(&self, what: &str) -> Result<PathBuf, GitError> {
        let git_dir = self.text(&["rev-parse", "--absolute-git-dir"], None)?;
        Ok(PathBuf::from(git_dir.trim()).join(format!("bulkhead-{what}-{}", std::process::id())))
    }

    fn commit_with_index(
        &self,
        index: &Path,
        base: &str,
        branch: &str,
        expected_old: &str,
        changes: &[FileChange],
        message: &str,
    ) -> Result<String, GitError> {
        let index_env = [("GIT_INDEX_FILE", index.as_os_str())];
        self.run(&["read-tree", base], None, &index_env)?;
        for change in changes {
            let blob = self.run(
                &["hash-object", "-w", "--no-filters", "--stdin"],
                Some(&change.content),
                &[],
            )?;
            let blob = String::from_utf8_lossy(&blob).trim().to_string();
            // Keep the file's mode (an executable stays executable).
            let listed = self.text(&["ls-tree", base, "--", &change.path], None)?;
            let mode = listed
                .split_whitespace()
                .next()
                .filter(|m| m.starts_with("100"))
                .unwrap_or("100644")
                .to_string();
            let info = format!("{mode},{blob},{}", change.path);
            self.run(
                &["update-index", "--add", "--cacheinfo", &info],
                None,
                &index_env,
            )?;
        }
        let tree = self.run(&["write-tree"], None, &index_env)?;
        let tree = String::from_utf8_lossy(&tree).trim().to_string();
        let identity = self.identity_env()?;
        let identity: Vec<(&str, &std::ffi::OsStr)> = identity
            .iter()
            .map(|(k, v)| (*k, std::ffi::OsStr::new(v.as_str())))
            .collect();
        let commit = self.run(
            &["commit-tree", &tree, "-p", base, "-F", "-"],
            Some(message.as_bytes()),
            &identity,
        )?;
        let commit = String::from_utf8_lossy(&commit).trim().to_string();
        let reference = format!("refs/heads/{branch}");
        self.run(
            &["update-ref", &reference, &commit, expected_old],
            None,
            &[],
        )?;
        Ok(commit)
    }

    /// Author and committer for a commit: nothing when the repository (or the
    /// user's global configuration) has an identity, a fallback otherwise.
    fn identity_env(&self) -> Result<Vec<(&'static str, String)>, GitError> {
        let has = |key: &str| -> Result<bool, GitError> {
            match self.text(&["config", "--get", key], None) {
                Ok(v) => Ok(!v.trim().is_empty()),
                Err(GitError::Failed { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        };
        let mut env = Vec::new();
        let set_by_env = |k: &str| std::env::var_os(k).is_some();
        if !has("user.name")? && !set_by_env("GIT_AUTHOR_NAME") {
            env.push(("GIT_AUTHOR_NAME", FALLBACK_NAME.to_string()));
            env.push(("GIT_COMMITTER_NAME", FALLBACK_NAME.to_string()));
        }
        if !has("user.email")? && !set_by_env("GIT_AUTHOR_EMAIL") {
            env.push(("GIT_AUTHOR_EMAIL", FALLBACK_EMAIL.to_string()));
            env.push(("GIT_COMMITTER_EMAIL", FALLBACK_EMAIL.to_string()));
        }
        Ok(env)
    }

    fn text(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, GitError> {
        let out = self.run(args, stdin, &[])?;
        String::from_utf8(out).map_err(|e| GitError::Output {
            command: shown(args),
            repo: self.root.clone(),
            detail: e.to_string(),
        })
    }

    /// Runs git in the repository and returns its stdout.
    fn run(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<Vec<u8>, GitError> {
        self.run_output(args, stdin, env).map(|o| o.stdout)
    }

    /// Runs git; the whole output of a command that succeeded.
    fn run_output(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<std::process::Output, GitError> {
        let mut command = Command::new("git");
        command
            .current_dir(&self.root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let spawn_error = |source| GitError::Spawn {
            command: shown(args),
            repo: self.root.clone(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        // Feed stdin from a thread: a large batch would otherwise fill the pipes both ways.
        let output = std::thread::scope(|s| {
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                s.spawn(move || {
                    let _ = pipe.write_all(input);
                });
            }
            child.wait_with_output()
        })
        .map_err(spawn_error)?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(GitError::Failed {
                command: shown(args),
                repo: self.root.clone(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }
}

fn shown(args: &[&str]) -> String {
    format!("git {}", args.join(" "))
}

#[cfg(test)]
mod tests;
