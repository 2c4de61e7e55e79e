//! Reads a git repository's checked-out commit straight from `.git`, without
//! spawning git: a fleet of 10,000 repositories must not cost 10,000 processes.

use std::io::Read as _;
use std::path::Path;

/// The commit `HEAD` points at, if it can be read.
pub fn head(repo: &Path) -> Option<String> {
    let git_dir = repo.join(".git");
    let head = read_small(&git_dir.join("HEAD"))?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return is_object_id(head).then(|| head.to_string());
    };
    if let Some(id) = read_small(&git_dir.join(reference)) {
        let id = id.trim();
        return is_object_id(id).then(|| id.to_string());
    }
    let packed = std::fs::read_to_string(git_dir.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (id, name) = line.split_once(' ')?;
        (name == reference && is_object_id(id)).then(|| id.to_string())
    })
}

/// The URL of the `origin` remote in `.git/config`, else of the first remote.
pub fn remote(repo: &Path) -> Option<String> {
    let config = read_small(&repo.join(".git/config"))?;
    remote_in(&config)
}

/// The text of a small file git writes (HEAD, a ref, the config), which
/// ends with a line break: one `read` that returns text ending with one has
/// the whole file. `fs::read_to_string` would also ask the file's size and
/// read again to meet its end, two more system calls for each of the three
/// files of each of 10,000 repositories.
fn read_small(path: &Path) -> Option<String> {
    const ROOM: usize = 4096;
    let mut file = std::fs::File::open(path).ok()?;
    let mut bytes = vec![0; ROOM];
    let first = loop {
        match file.read(&mut bytes) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    };
    bytes.truncate(first);
    if first == 0 || first == ROOM || bytes.last() != Some(&b'\n') {
        file.read_to_end(&mut bytes).ok()?;
    }
    String::from_utf8(bytes).ok()
}

/// [`remote`] on the text of a git config file.
fn remote_in(config: &str) -> Option<String> {
    let mut section: Option<&str> = None;
    let mut first = None;
    for line in config.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            section = header
                .strip_prefix("remote \"")
                .and_then(|h| h.split_once('"'))
                .map(|(name, _)| name);
            continue;
        }
        let Some(name) = section else { continue };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("url") {
            continue;
        }
        let url = value.trim().to_string();
        if name == "origin" {
            return Some(url);
        }
        first.get_or_insert(url);
    }
    first
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use test_support::TempDir;

    /// HEAD through a loose ref, a packed ref and detached (without a final
    /// line break), and a config longer than one read: what git itself would say.
    #[test]
    fn head_and_remote_are_read_whole() {
        let dir = TempDir::new("git-read");
        let id = "0123456789abcdef0123456789abcdef01234567";
        let other = "89abcdef0123456789abcdef0123456789abcdef";
        dir.write("loose/.git/HEAD", "ref: refs/heads/main\n");
        dir.write("loose/.git/refs/heads/main", format!("{id}\n"));
        let padding = format!("[core]\n{}", "\t# a long comment line\n".repeat(400));
        dir.write(
            "loose/.git/config",
            format!("{padding}[remote \"origin\"]\n\turl = git@example.com:shop/a.git\n"),
        );
        dir.write("packed/.git/HEAD", "ref: refs/heads/main\n");
        dir.write(
            "packed/.git/packed-refs",
            format!("# pack-refs with: peeled\n{other} refs/heads/dev\n{id} refs/heads/main\n"),
        );
        dir.write("detached/.git/HEAD", other);
        assert_eq!(super::head(&dir.join("loose")).as_deref(), Some(id));
        assert_eq!(
            super::remote(&dir.join("loose")).as_deref(),
            Some("git@example.com:shop/a.git")
        );
        assert_eq!(super::head(&dir.join("packed")).as_deref(), Some(id));
        assert_eq!(super::head(&dir.join("detached")).as_deref(), Some(other));
        assert_eq!(super::remote(&dir.join("detached")), None);
        assert_eq!(super::head(&dir.join("missing")), None);
    }

    #[test]
    fn the_remote_is_origin_else_the_first() {
        let cases = [
            (
                "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = https://github.com/acme/a.git\n[remote \"origin\"]\n\turl = git@gitlab.acme:shop/orders-service.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
                Some("git@gitlab.acme:shop/orders-service.git"),
            ),
            (
                "[remote \"upstream\"]\n  url=https://github.com/acme/a.git\n[branch \"main\"]\n\tremote = upstream\n",
                Some("https://github.com/acme/a.git"),
            ),
            ("[core]\n\turl = not-a-remote\n", None),
        ];
        for (config, want) in cases {
            assert_eq!(super::remote_in(config).as_deref(), want, "{config}");
        }
    }
}
