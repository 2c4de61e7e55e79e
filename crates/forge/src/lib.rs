//! Merge requests and pull requests: pushes a branch to its repository's
//! remote with real `git push`, then opens its change, or updates the one
//! already open for that branch, on the forge.
//!
//! - GitHub: the REST API. An open pull request is looked up with
//!   `GET /repos/{owner}/{repo}/pulls?head={owner}:{branch}&state=open`,
//!   updated with `PATCH /repos/{owner}/{repo}/pulls/{number}`, else opened
//!   with `POST /repos/{owner}/{repo}/pulls`.
//! - GitLab: the REST API (`/projects/{path}/merge_requests`, looked up by
//!   `source_branch`, updated with `PUT`), or push options alone
//!   (`merge_request.create`, `.target`, `.title`, `.description`), which
//!   need no token but carry no line breaks: the description is one line.
//!
//! Re-running updates: the same branch is pushed again (only over the
//! remote's branch as this repository last saw it, `--force-with-lease`), and
//! the change open for it gets the new title and description instead of a
//! second one being opened. Rate limits (429, or GitHub's 403 with no
//! requests remaining), server errors and unreachable hosts are retried with
//! exponential backoff, honouring `Retry-After`; a refused token (401), a
//! missing repository (404) or a rejected push is not retried. Every retry is
//! noted in the outcome, so the caller can report it.

use http_client::{HttpError, Tls, Url};
use serde_json::{Value, json};
use std::time::Duration;

/// Which forge, and how the change is opened there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GitHub's REST API (github.com or GitHub Enterprise Server).
    GitHub,
    /// GitLab's REST API.
    GitLab,
    /// GitLab push options: no API call, no token.
    GitLabPush,
}

impl Kind {
    /// Reads `github`, `gitlab` or `gitlab-push`.
    ///
    /// # Errors
    /// Any other name.
    pub fn parse(name: &str) -> Result<Kind, String> {
        match name {
            "github" => Ok(Kind::GitHub),
            "gitlab" => Ok(Kind::GitLab),
            "gitlab-push" => Ok(Kind::GitLabPush),
            other => Err(format!(
                "forge {other:?} is not github, gitlab or gitlab-push"
            )),
        }
    }

    /// The forge a remote URL's host names: github.com is GitHub, a host
    /// with `gitlab` in its name is GitLab (REST).
    pub fn guess(remote_url: &str) -> Option<Kind> {
        let host = RemotePath::parse(remote_url)?.host?;
        if host == "github.com" {
            Some(Kind::GitHub)
        } else if host.contains("gitlab") {
            Some(Kind::GitLab)
        } else {
            None
        }
    }
}

/// How to reach the forge.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: guessed from the remote's host ([`Kind::guess`]).
    pub kind: Option<Kind>,
    /// The REST API's base URL (`https://api.github.com`,
    /// `https://gitlab.example.com/api/v4`); `None`: derived from the remote's host.
    pub api: Option<String>,
    /// The API token (GitHub: a bearer token; GitLab: `PRIVATE-TOKEN`).
    pub token: Option<String>,
    /// What `https://` trusts.
    pub tls: Tls,
    /// The git remote pushed to (`origin`).
    pub remote: String,
    /// Tries per step (push, each API call), at least 1.
    pub attempts: u32,
    /// The wait after a first failure; it doubles after each further one.
    pub backoff: Duration,
    /// One API request's deadline.
    pub timeout: Duration,
}

/// The change to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The local branch holding the commits; pushed under the same name.
    pub branch: String,
    /// The branch the change is to merge into.
    pub base: String,
    pub title: String,
    /// Markdown.
    pub description: String,
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub action: Action,
    /// The change's web page, when the forge said.
    pub url: Option<String>,
    /// The pull request's number or the merge request's iid.
    pub number: Option<u64>,
    /// One line per failed attempt that was retried.
    pub retries: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Opened,
    Updated,
    /// Pushed with GitLab push options: GitLab opens the merge request, or
    /// updates the one open for the branch.
    Pushed,
}

/// Why publishing failed, after the retries noted in `retries`.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failure {
    pub error: ForgeError,
    pub retries: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("no remote {remote:?} in {repo}")]
    NoRemote { remote: String, repo: String },
    #[error("remote URL {url:?}: {reason}")]
    Remote { url: String, reason: String },
    #[error("git push: {0}")]
    Push(vcs::GitError),
    #[error("{method} {url} answered {status}: {message}")]
    Api {
        method: &'static str,
        url: String,
        status: u16,
        message: String,
        /// Seconds the forge asked to wait (Retry-After, or GitHub's rate limit reset).
        retry_after: Option<u64>,
    },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{0} needs an API token (--token-env or --token-file)")]
    NoToken(&'static str),
}

impl ForgeError {
    fn retryable(&self) -> bool {
        match self {
            ForgeError::Api {
                status,
                message,
                retry_after,
                ..
            } => {
                *status == 429
                    || *status >= 500
                    || (*status == 403 && (message.contains("rate limit") || retry_after.is_some()))
            }
            ForgeError::Http(_) => true,
            ForgeError::Push(vcs::GitError::Failed { stderr, .. }) => {
                !(stderr.contains("[rejected]")
                    || stderr.contains("[remote rejected]")
                    || stderr.contains("stale info")
                    || stderr.contains("declined"))
            }
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ForgeError::Api { retry_after, .. } => retry_after.map(Duration::from_secs),
            _ => None,
        }
    }
}

/// The longest wait between two attempts, whatever the forge asks.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Runs `step` until it succeeds, fails for good, or runs out of attempts,
/// noting each retry in `retries`.
fn with_retry<T>(
    config: &Config,
    what: &str,
    retries: &mut Vec<String>,
    mut step: impl FnMut() -> Result<T, ForgeError>,
) -> Result<T, ForgeError> {
    let mut wait = config.backoff;
    let mut attempt = 1;
    loop {
        match step() {
            Ok(v) => return Ok(v),
            Err(e) if e.retryable() && attempt < config.attempts.max(1) => {
                let pause = e.retry_after().unwrap_or(wait).min(MAX_WAIT);
                retries.push(format!(
                    "{what}: attempt {attempt} failed ({e}); retrying in {}s",
                    pause.as_secs_f64()
                ));
                std::thread::sleep(pause);
                wait = (wait * 2).min(MAX_WAIT);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Pushes `change.branch` of `repo` and opens or updates its change.
///
/// # Errors
/// A [`Failure`] with the step's error and the retries made before it.
pub fn publish(repo: &vcs::Repo, change: &Change, config: &Config) -> Result<Published, Failure> {
    let mut retries = Vec::new();
    match publish_inner(repo, change, config, &mut retries) {
        Ok((action, url, number)) => Ok(Published {
            action,
            url,
            number,
            retries,
        }),
        Err(error) => Err(Failure { error, retries }),
    }
}

type Opened = (Action, Option<String>, Option<u64>);

fn publish_inner(
    repo: &vcs::Repo,
    change: &Change,
    config: &Config,
    retries: &mut Vec<String>,
) -> Result<Opened, ForgeError> {
    let remote_url = repo
        .remote_url(&config.remote)
        .map_err(ForgeError::Push)?
        .ok_or_else(|| ForgeError::NoRemote {
            remote: config.remote.clone(),
            repo: repo.root().display().to_string(),
        })?;
    let kind = match config.kind.or_else(|| Kind::guess(&remote_url)) {
        Some(kind) => kind,
        None => {
            return Err(ForgeError::Remote {
                url: remote_url,
                reason: "cannot tell the forge from the host; give --forge".into(),
            });
        }
    };
    let path = RemotePath::parse(&remote_url).ok_or_else(|| ForgeError::Remote {
        url: remote_url.clone(),
        reason: "no owner/repository path in it".into(),
    })?;
    let options = match kind {
        Kind::GitLabPush => vec![
            "merge_request.create".to_string(),
            format!("merge_request.target={}", change.base),
            format!("merge_request.title={}", one_line(&change.title)),
            format!(
                "merge_request.description={}",
                one_line(&change.description)
            ),
        ],
        Kind::GitHub | Kind::GitLab => Vec::new(),
    };
    if kind != Kind::GitLabPush && config.token.is_none() {
        return Err(ForgeError::NoToken(match kind {
            Kind::GitHub => "GitHub",
            _ => "GitLab",
        }));
    }
    let said = with_retry(config, "git push", retries, || {
        repo.push(&config.remote, &change.branch, &options)
            .map_err(ForgeError::Push)
    })?;
    if kind == Kind::GitLabPush {
        return Ok((Action::Pushed, link_in(&said), None));
    }
    let base = match (&config.api, path.host.as_deref(), kind) {
        (Some(api), _, _) => api.clone(),
        (None, Some("github.com"), Kind::GitHub) => "https://api.github.com".to_string(),
        (None, Some(host), Kind::GitHub) => format!("https://{host}/api/v3"),
        (None, Some(host), _) => format!("https://{host}/api/v4"),
        (None, None, _) => {
            return Err(ForgeError::Remote {
                url: remote_url,
                reason: "a local remote: give --forge-url".into(),
            });
        }
    };
    let base = Url::parse(base.trim_end_matches('/')).map_err(|reason| ForgeError::Remote {
        url: base.clone(),
        reason,
    })?;
    let client = Client { base, config, kind };
    if kind == Kind::GitHub {
        client.github(&path, change, retries)
    } else {
        client.gitlab(&path, change, retries)
    }
}

/// The first `https://` link among the remote's messages (GitLab prints the
/// merge request's).
fn link_in(said: &str) -> Option<String> {
    said.split_whitespace()
        .find(|w| w.starts_with("https://") || w.starts_with("http://"))
        .map(str::to_string)
}

/// Push options carry no line breaks: lines joined with " / ", at most 1000 characters.
fn one_line(text: &str) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    joined.chars().take(1000).collect()
}

/// Where a remote URL points: its host (none for a local path) and the
/// repository path on it, without `.git`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath {
    pub host: Option<String>,
    /// `owner/repo`, or `group/subgroup/repo` on GitLab.
    pub path: String,
}

impl RemotePath {
    /// Reads `https://host/owner/repo.git`, `ssh://git@host/owner/repo.git`,
    /// `git@host:owner/repo.git`, or a local path (`/srv/git/owner/repo.git`,
    /// `file:///...`), whose last two components are taken.
    pub fn parse(url: &str) -> Option<RemotePath> {
        let (host, path) = if let Some(rest) = url.strip_prefix("file://") {
            (None, rest)
        } else if let Some((_, rest)) = url.split_once("://") {
            let (authority, path) = rest.split_once('/')?;
            let host = authority.rsplit('@').next()?;
            let host = host.split(':').next()?;
            (Some(host.to_string()), path)
        } else if let Some((authority, path)) = url.split_once(':')
            && !url.starts_with('/')
            && !authority.contains('/')
        {
            (authority.rsplit('@').next().map(str::to_string), path)
        } else {
            (None, url)
        };
        let path = path.trim_matches('/').trim_end_matches(".git");
        let path = if host.is_none() {
            let mut parts: Vec<&str> = path.rsplit('/').take(2).collect();
            parts.reverse();
            parts.join("/")
        } else {
            path.to_string()
        };
        (path.contains('/') && !path.starts_with('/')).then_some(RemotePath { host, path })
    }

    fn owner(&self) -> &str {
        self.path.split('/').next().unwrap_or_default()
    }
}

/// One forge API, with the retries of every call.
struct Client<'a> {
    base: Url,
    config: &'a Config,
    kind: Kind,
}

impl Client<'_> {
    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
        retries: &mut Vec<String>,
    ) -> Result<Value, ForgeError> {
        let mut url = self.base.clone();
        url.target = format!("{}{path}", self.base.target.trim_end_matches('/'));
        let token = self.config.token.clone().unwrap_or_default();
        let mut headers = vec![("Accept", "application/json".to_string())];
        match self.kind {
            Kind::GitHub => {
                headers.push(http_client::bearer(&token));
                headers.push(("X-GitHub-Api-Version", "2022-11-28".to_string()));
            }
            Kind::GitLab | Kind::GitLabPush => headers.push(("PRIVATE-TOKEN", token)),
        }
        let payload = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        if body.is_some() {
            headers.push(("Content-Type", "application/json".to_string()));
        }
        let what = format!("{method} {url}");
        with_retry(self.config, &what, retries, || {
            let response = http_client::request_with(
                method,
                &url,
                &headers,
                &payload,
                self.config.timeout,
                Some(&self.config.tls),
            )?;
            let json: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            if (200..300).contains(&response.status) {
                return Ok(json);
            }
            let message = json
                .get("message")
                .or_else(|| json.get("error"))
                .map(|m| match m {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&response.body).trim().to_string());
            let retry_after = response
                .header("Retry-After")
                .and_then(|v| v.trim().parse().ok())
                .or_else(|| {
                    // GitHub's primary rate limit: 403 or 429, no requests left until the reset.
                    if response.header("x-ratelimit-remaining") != Some("0") {
                        return None;
                    }
                    let reset: i64 = response.header("x-ratelimit-reset")?.trim().parse().ok()?;
                    u64::try_from(reset - clock::now_ms() / 1000).ok()
                });
            Err(ForgeError::Api {
                method,
                url: url.to_string(),
                status: response.status,
                message,
                retry_after,
            })
        })
    }

    fn github(
        &self,
        remote: &RemotePath,
        change: &Change,
        retries: &mut Vec<String>,
    ) -> Result<Opened, ForgeError> {
        let head = format!("{}:{}", remote.owner(), change.branch);
        let body = json!({
            "title": change.title,
            "body": change.description,
            "base": change.base,
        });
        self.open_or_update(
            &Requests {
                collection: format!("/repos/{}/pulls", remote.path),
                open_query: format!("head={}&state=open", http_client::encode(&head)),
                update_method: "PATCH",
                id: "number",
                branch: "head",
                url: "html_url",
            },
            change,
            body,
            retries,
        )
    }

    fn gitlab(
        &self,
        remote: &RemotePath,
        change: &Change,
        retries: &mut Vec<String>,
    ) -> Result<Opened, ForgeError> {
        let body = json!({
            "title": change.title,
            "description": change.description,
            "target_branch": change.base,
        });
        self.open_or_update(
            &Requests {
                collection: format!(
                    "/projects/{}/merge_requests",
                    http_client::encode(&remote.path)
                ),
                open_query: format!(
                    "source_branch={}&state=opened",
                    http_client::encode(&change.branch)
                ),
                update_method: "PUT",
                id: "iid",
                branch: "source_branch",
                url: "web_url",
            },
            change,
            body,
            retries,
        )
    }

    /// Updates the change request open for the branch with `body`, or opens
    /// one (`body` and the branch) when there is none.
    fn open_or_update(
        &self,
        requests: &Requests,
        change: &Change,
        body: Value,
        retries: &mut Vec<String>,
    ) -> Result<Opened, ForgeError> {
        let collection = &requests.collection;
        let open = self.call(
            "GET",
            &format!("{collection}?{}", requests.open_query),
            None,
            retries,
        )?;
        let existing = open
            .as_array()
            .and_then(|a| a.first())
            .and_then(|request| request.get(requests.id))
            .and_then(Value::as_u64);
        let (action, answer) = match existing {
            Some(id) => (
                Action::Updated,
                self.call(
                    requests.update_method,
                    &format!("{collection}/{id}"),
                    Some(&body),
                    retries,
                )?,
            ),
            None => {
                let mut create = body;
                create[requests.branch] = change.branch.clone().into();
                (
                    Action::Opened,
                    self.call("POST", collection, Some(&create), retries)?,
                )
            }
        };
        Ok((
            action,
            answer
                .get(requests.url)
                .and_then(Value::as_str)
                .map(str::to_string),
            answer.get(requests.id).and_then(Value::as_u64).or(existing),
        ))
    }
}

/// How a forge's API names its change requests (GitHub's pull requests,
/// GitLab's merge requests): where they live and which fields say what.
struct Requests {
    /// The collection's path; one request is `{collection}/{id}`.
    collection: String,
    /// The query that lists the open ones for the branch.
    open_query: String,
    /// The method that updates one.
    update_method: &'static str,
    /// The field of a request's number.
    id: &'static str,
    /// The field naming the branch to merge, given when opening.
    branch: &'static str,
    /// The field of a request's web page.
    url: &'static str,
}

#[cfg(test)]
mod tests;
