//! Temporary folders for tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// A new, empty folder under the system's temporary folder, removed with
/// everything in it when dropped.
///
/// The name holds the caller's label, the process id and a per-process
/// counter, so parallel tests, and test binaries running side by side, never
/// share a folder.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `bulkhead-LABEL-PID-N`; panics if it cannot.
    #[track_caller]
    pub fn new(label: &str) -> TempDir {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("bulkhead-{label}-{}-{n}", std::process::id()));
        // Only a killed earlier process with the same id can have left this
        // folder behind; its contents are not ours to trust.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path()` joined with `relative`.
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }

    /// Writes `contents` to `relative`, creating the folders on the way, and
    /// returns the file's full path.
    #[track_caller]
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Runs git in the folder: see [`git`].
    #[track_caller]
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.path, args)
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs git in `dir` with a fixed identity and branch name, isolated from the
/// user's and the system's configuration and without signing, and returns its
/// trimmed stdout; panics when git fails.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@example.com")
        .env("GIT_COMMITTER_NAME", "Fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@example.com")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running git: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::TempDir;

    #[test]
    fn each_call_gets_its_own_empty_folder_removed_on_drop() {
        let a = TempDir::new("same");
        let b = TempDir::new("same");
        assert_ne!(a.path(), b.path());
        assert_eq!(std::fs::read_dir(a.path()).unwrap().count(), 0);
        let file = a.write("x/y.txt", "hello");
        assert_eq!(file, a.join("x/y.txt"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello");
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists());
        assert!(b.path().is_dir());
    }

    #[test]
    fn parallel_callers_never_share_a_folder() {
        let paths: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| TempDir::new("parallel")))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut unique: Vec<_> = paths.iter().map(|d| d.path().to_path_buf()).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 8);
    }

    #[test]
    fn git_runs_with_a_fixed_identity() {
        let dir = TempDir::new("git");
        dir.git(&["init", "-q"]);
        dir.write("a.txt", "a\n");
        dir.git(&["add", "-A"]);
        dir.git(&["commit", "-q", "-m", "first"]);
        assert_eq!(
            dir.git(&["log", "-1", "--format=%an <%ae> %s"]),
            "Fixture <fixture@example.com> first"
        );
        assert_eq!(dir.git(&["branch", "--show-current"]), "main");
    }
}
