use super::*;

#[test]
fn remote_urls_name_their_host_and_repository() {
    for (url, host, path) in [
        (
            "https://github.com/acme/orders.git",
            Some("github.com"),
            "acme/orders",
        ),
        (
            "https://github.com/acme/orders",
            Some("github.com"),
            "acme/orders",
        ),
        (
            "https://oauth2:t0k@gitlab.acme.internal:8443/platform/shop/orders.git",
            Some("gitlab.acme.internal"),
            "platform/shop/orders",
        ),
        (
            "ssh://git@gitlab.acme.internal/platform/orders.git",
            Some("gitlab.acme.internal"),
            "platform/orders",
        ),
        (
            "git@github.com:acme/orders.git",
            Some("github.com"),
            "acme/orders",
        ),
        ("/srv/git/acme/orders.git", None, "acme/orders"),
        ("file:///srv/git/acme/orders.git/", None, "acme/orders"),
    ] {
        assert_eq!(
            RemotePath::parse(url),
            Some(RemotePath {
                host: host.map(str::to_string),
                path: path.to_string()
            }),
            "{url}"
        );
    }
    assert_eq!(RemotePath::parse("https://github.com/orders"), None);
    assert_eq!(RemotePath::parse("orders"), None);
}

#[test]
fn the_forge_is_named_or_guessed_from_the_host() {
    assert_eq!(Kind::parse("github"), Ok(Kind::GitHub));
    assert_eq!(Kind::parse("gitlab"), Ok(Kind::GitLab));
    assert_eq!(Kind::parse("gitlab-push"), Ok(Kind::GitLabPush));
    assert_eq!(
        Kind::parse("gitea"),
        Err("forge \"gitea\" is not github, gitlab or gitlab-push".into())
    );
    assert_eq!(
        Kind::guess("git@github.com:acme/orders.git"),
        Some(Kind::GitHub)
    );
    assert_eq!(
        Kind::guess("https://gitlab.acme.internal/a/b.git"),
        Some(Kind::GitLab)
    );
    assert_eq!(Kind::guess("https://git.acme.internal/a/b.git"), None);
    assert_eq!(Kind::guess("/srv/git/a/b.git"), None);
}

#[test]
fn push_options_get_one_line() {
    assert_eq!(
        one_line("# Impact\n\n| a | b |\n  - orders  \n"),
        "# Impact / | a | b | / - orders"
    );
    assert_eq!(one_line(&"x".repeat(5000)).len(), 1000);
}

#[test]
fn rate_limits_and_outages_are_retried_refusals_are_not() {
    let api = |status: u16, message: &str, retry_after: Option<u64>| ForgeError::Api {
        method: "POST",
        url: "https://api.github.com/repos/a/b/pulls".into(),
        status,
        message: message.into(),
        retry_after,
    };
    for (error, retried) in [
        (api(429, "slow down", Some(1)), true),
        (api(502, "bad gateway", None), true),
        (api(403, "API rate limit exceeded for user", None), true),
        (
            api(403, "Resource not accessible by integration", None),
            false,
        ),
        (api(401, "Bad credentials", None), false),
        (api(422, "Validation Failed", None), false),
        (api(404, "Not Found", None), false),
    ] {
        assert_eq!(error.retryable(), retried, "{error}");
    }
    let push = |stderr: &str| {
        ForgeError::Push(vcs::GitError::Failed {
            command: "git push".into(),
            repo: "r".into(),
            status: "exit status: 1".into(),
            stderr: stderr.into(),
        })
    };
    assert!(!push("! [remote rejected] b -> b (pre-receive hook declined)").retryable());
    assert!(push("fatal: unable to access 'https://x/': Could not resolve host").retryable());
    assert_eq!(
        api(429, "", Some(7)).retry_after(),
        Some(Duration::from_secs(7))
    );
}
