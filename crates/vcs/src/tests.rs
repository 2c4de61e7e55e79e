//! Against the real git binary, in throw-away repositories.

use super::*;

use test_support::TempDir as Scratch;

/// The repository under test, isolated from the user's global git configuration.
fn open(s: &Scratch) -> Repo {
    Repo::open(s.path())
        .expect("open")
        .with_env("GIT_CONFIG_GLOBAL", "/dev/null")
}

fn repo_with_history() -> Scratch {
    let s = Scratch::new("history");
    s.git(&["init", "-q"]);
    s.write("templates/build.yml", "one\n");
    s.git(&["add", "-A"]);
    s.git(&["commit", "-q", "-m", "first"]);
    s.git(&["tag", "v1.0.0"]);
    s.write("templates/build.yml", "two\r\nno newline");
    s.write("README.md", "read me\n");
    s.git(&["add", "-A"]);
    s.git(&["commit", "-q", "-m", "second"]);
    s.git(&["tag", "-a", "v1.1.0", "-m", "annotated"]);
    s.git(&["tag", "latest"]);
    s
}

#[test]
fn tags_are_peeled_to_their_commits() {
    let s = repo_with_history();
    let repo = open(&s);
    let tags = repo.tags().expect("tags");
    let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["latest", "v1.0.0", "v1.1.0"]);
    let head = s.git(&["rev-parse", "HEAD"]);
    let first = s.git(&["rev-parse", "HEAD~1"]);
    assert_eq!(tags[0].commit, head);
    assert_eq!(tags[1].commit, first);
    // The annotated tag reports the commit, not the tag object.
    assert_eq!(tags[2].commit, head);
}

#[test]
fn show_returns_exact_bytes_and_none_for_missing_files() {
    let s = repo_with_history();
    let repo = open(&s);
    assert_eq!(
        repo.show("v1.0.0", "templates/build.yml").expect("show"),
        Some(b"one\n".to_vec())
    );
    assert_eq!(
        repo.show("v1.1.0", "templates/build.yml").expect("show"),
        Some(b"two\r\nno newline".to_vec())
    );
    assert_eq!(repo.show("v1.0.0", "README.md").expect("show"), None);
    let many = repo
        .show_many("v1.1.0", &["README.md", "nope.yml", "templates/build.yml"])
        .expect("show many");
    assert_eq!(
        many,
        [
            Some(b"read me\n".to_vec()),
            None,
            Some(b"two\r\nno newline".to_vec())
        ]
    );
    let mut files = repo.files("v1.1.0").expect("files");
    files.sort();
    assert_eq!(files, ["README.md", "templates/build.yml"]);
}

#[test]
fn resolve_and_current_branch() {
    let s = repo_with_history();
    let repo = open(&s);
    assert_eq!(
        repo.resolve("v1.1.0").expect("resolve"),
        Some(s.git(&["rev-parse", "HEAD"]))
    );
    assert_eq!(repo.resolve("no-such-rev").expect("resolve"), None);
    assert_eq!(repo.current_branch().expect("branch"), Some("main".into()));
    s.git(&["checkout", "-q", "--detach"]);
    assert_eq!(repo.current_branch().expect("branch"), None);
}

#[test]
fn commit_on_new_branch_leaves_the_working_copy_alone() {
    let s = repo_with_history();
    // A dirty working tree and a staged change must survive untouched.
    s.write("README.md", "local edit\n");
    s.write("staged.txt", "staged\n");
    s.git(&["add", "staged.txt"]);
    let repo = open(&s);
    let head = s.git(&["rev-parse", "HEAD"]);
    let commit = repo
        .commit_on_new_branch(
            "HEAD",
            "bulkhead/test",
            &[FileChange {
                path: "templates/build.yml".into(),
                content: b"three\n".to_vec(),
            }],
            "subject\n\nbody\n",
        )
        .expect("commit");
    assert_eq!(s.git(&["rev-parse", "bulkhead/test"]), commit);
    assert_eq!(s.git(&["rev-parse", "bulkhead/test~1"]), head);
    assert_eq!(s.git(&["rev-parse", "HEAD"]), head, "HEAD did not move");
    assert_eq!(repo.current_branch().expect("branch"), Some("main".into()));
    assert_eq!(
        std::fs::read_to_string(s.path().join("README.md")).expect("read"),
        "local edit\n"
    );
    assert_eq!(s.git(&["diff", "--cached", "--name-only"]), "staged.txt");
    assert_eq!(
        repo.show("bulkhead/test", "templates/build.yml")
            .expect("show"),
        Some(b"three\n".to_vec())
    );
    // Only that file changed.
    assert_eq!(
        s.git(&["diff", "--name-only", "HEAD", "bulkhead/test"]),
        "templates/build.yml"
    );
    assert_eq!(
        repo.message("bulkhead/test").expect("message").trim_end(),
        "subject\n\nbody"
    );
    // The repository has no identity configured: the fallback signs the commit.
    assert_eq!(
        s.git(&["log", "-1", "--format=%an <%ae>", "bulkhead/test"]),
        "bulkhead <bulkhead@localhost>"
    );
}

#[test]
fn an_existing_branch_is_never_overwritten() {
    let s = repo_with_history();
    let repo = open(&s);
    s.git(&["branch", "taken"]);
    let before = s.git(&["rev-parse", "taken"]);
    let change = FileChange {
        path: "README.md".into(),
        content: b"x\n".to_vec(),
    };
    let err = repo
        .commit_on_new_branch("HEAD", "taken", &[change], "m")
        .expect_err("branch exists");
    assert!(
        err.to_string().contains("update-ref refs/heads/taken"),
        "{err}"
    );
    assert_eq!(s.git(&["rev-parse", "taken"]), before);
}

#[test]
fn the_repository_identity_is_used_when_there_is_one() {
    let s = repo_with_history();
    s.git(&["config", "user.name", "Platform Team"]);
    s.git(&["config", "user.email", "platform@example.com"]);
    let repo = open(&s);
    let change = FileChange {
        path: "README.md".into(),
        content: b"x\n".to_vec(),
    };
    repo.commit_on_new_branch("HEAD", "b", &[change], "m")
        .expect("commit");
    assert_eq!(
        s.git(&["log", "-1", "--format=%an <%ae>", "b"]),
        "Platform Team <platform@example.com>"
    );
}

#[test]
fn errors_name_the_command_and_the_repository() {
    let s = Scratch::new("not-a-repo");
    let err = Repo::open(s.path()).expect_err("not a repo");
    assert!(matches!(err, GitError::NotARepository { .. }), "{err}");
    let r = repo_with_history();
    let repo = open(&r);
    let err = repo.files("no-such-rev").expect_err("bad rev");
    let text = err.to_string();
    assert!(text.contains("git ls-tree"), "{text}");
    assert!(text.contains(&r.path().display().to_string()), "{text}");
}
