//! Reads a git repository's checked-out commit straight from `.git`, without
//! spawning git: a fleet of 10,000 repositories must not cost 10,000 processes.

use std::path::Path;

/// The commit `HEAD` points at, if it can be read.
pub fn head(repo: &Path) -> Option<String> {
    let git_dir = repo.join(".git");
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return is_object_id(head).then(|| head.to_string());
    };
    if let Ok(id) = std::fs::read_to_string(git_dir.join(reference)) {
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
    let config = std::fs::read_to_string(repo.join(".git/config")).ok()?;
    remote_in(&config)
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
