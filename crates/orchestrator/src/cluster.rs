//! A live cluster read through its kubeconfig: the workloads of every
//! namespace (pods, deployments, statefulsets, daemonsets, jobs, cronjobs),
//! listed in pages as `kubectl get -A -o json` lists them, and written in the
//! `List` shape kubectl prints, so a live read and a saved snapshot of the
//! same cluster are one input to `images` (which parses both).
//!
//! Paging follows client-go's pager: `limit` and `continue`; a `410 Gone`
//! (the continue token expired while paging) restarts that kind's list from
//! the top, and a `429 Too Many Requests` waits for its `Retry-After`.
//! Also here: the dry run of a rollout's patches ([`diff`]) and the RBAC
//! rules bulkhead needs on a cluster ([`rbac`]), and a live copy of some
//! kinds kept by list and watch ([`watch`]).

pub mod diff;
pub mod rbac;
pub mod watch;

use crate::kubeconfig::{self, Auth};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// One kind of object the snapshot lists, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// The API group, empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
}

impl Resource {
    /// The collection's path, `/api/v1/pods` or `/apis/apps/v1/deployments`.
    pub fn path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}/{}", self.version, self.plural)
        } else {
            format!("/apis/{}/{}/{}", self.group, self.version, self.plural)
        }
    }

    /// The `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// What a snapshot lists, in the order it lists them.
pub const WORKLOADS: [Resource; 6] = [
    Resource {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        kind: "StatefulSet",
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        kind: "DaemonSet",
    },
    Resource {
        group: "batch",
        version: "v1",
        plural: "jobs",
        kind: "Job",
    },
    Resource {
        group: "batch",
        version: "v1",
        plural: "cronjobs",
        kind: "CronJob",
    },
];

/// kubectl's `--chunk-size` default.
pub const DEFAULT_PAGE_SIZE: u32 = 500;
/// How often one kind's list starts over after its continue token expired.
const MAX_RESTARTS: u32 = 5;
/// How many `429`s one kind's list waits out before giving up.
const MAX_THROTTLED: u32 = 10;
/// The longest `Retry-After` honoured; a longer one is clamped to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why a cluster could not be read; the message names the kubeconfig, the
/// context or the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct ClusterError {
    pub what: String,
    pub detail: String,
}

fn error(what: impl Into<String>) -> impl Fn(String) -> ClusterError {
    let what = what.into();
    move |detail| ClusterError {
        what: what.clone(),
        detail,
    }
}

/// A client for one kubeconfig context, with the runtime it runs on.
pub struct Connection {
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    /// The context read (`in-cluster` for a pod's service account).
    pub context: String,
    /// The context's namespace, else `default`.
    pub namespace: String,
    /// Whether the user authenticates with a client certificate.
    client_certificate: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("context", &self.context)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// The answer to one request: status, `Retry-After` in seconds, body.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

impl Connection {
    /// Connects as `kubectl --kubeconfig PATH --context CONTEXT` would: the
    /// context (default: the current one), its cluster's server and CA, its
    /// user's token, client certificate or exec plugin. The path
    /// [`crate::kubernetes::IN_CLUSTER`] means the pod's own service account.
    ///
    /// # Errors
    /// A kubeconfig that cannot be read or used, or an exec plugin that fails.
    pub fn open(path: &Path, context: Option<&str>) -> Result<Connection, ClusterError> {
        let bad = error(path.display().to_string());
        let read = |file: &Path| std::fs::read(file).map_err(|e| e.to_string());
        let cluster = if path == Path::new(crate::kubernetes::IN_CLUSTER) {
            let env = |name: &str| std::env::var(name).ok();
            kubeconfig::in_cluster(&env, Path::new(kubeconfig::SERVICE_ACCOUNT), &read)
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| bad(format!("reading: {e}")))?;
            kubeconfig::resolve(path, &text, context, &read)
        }
        .map_err(|e| ClusterError {
            what: e.path,
            detail: e.message,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let token = match &cluster.auth {
            Auth::Token(token) => Some(token.clone()),
            Auth::Exec { command, args, env } => {
                Some(kubeconfig::exec_token(command, args, env, dir).map_err(&bad)?)
            }
            Auth::None | Auth::ClientCertificate { .. } => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("starting the client runtime: {e}")))?;
        let namespace = cluster
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let client = {
            let _guard = runtime.enter();
            if cluster.server.starts_with("http://") {
                plain_client(&cluster.server, token, &namespace).map_err(&bad)?
            } else {
                kube::Client::new(
                    crate::kubernetes::tls::api(&cluster, token).map_err(&bad)?,
                    namespace.clone(),
                )
            }
        };
        Ok(Connection {
            runtime,
            client,
            context: cluster.context,
            namespace,
            client_certificate: matches!(cluster.auth, Auth::ClientCertificate { .. }),
        })
    }

    /// The client and the runtime it runs on, for the Kubernetes executor.
    pub(crate) fn into_client(self) -> (tokio::runtime::Runtime, kube::Client) {
        (self.runtime, self.client)
    }

    /// Connects to a plain `http://` API server (`kubectl proxy`), with a
    /// bearer token when given, in `namespace`.
    ///
    /// # Errors
    /// A URL that does not parse, or a client that cannot be built.
    pub fn plain(
        url: &str,
        token: Option<String>,
        namespace: &str,
    ) -> Result<Connection, ClusterError> {
        let bad = error(url.to_string());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("starting the client runtime: {e}")))?;
        let client = {
            let _guard = runtime.enter();
            plain_client(url, token, namespace).map_err(&bad)?
        };
        Ok(Connection {
            runtime,
            client,
            context: url.to_string(),
            namespace: namespace.to_string(),
            client_certificate: false,
        })
    }

    /// One GET of `target` (path and query), its status, `Retry-After` and body.
    fn get(&self, target: &str) -> Result<Answer, String> {
        let request = hyper::Request::get(target)
            .header("accept", "application/json")
            .body(kube::client::Body::empty())
            .map_err(|e| e.to_string())?;
        self.runtime.block_on(async {
            let response = self
                .client
                .send(request)
                .await
                .map_err(|e| tls_hint(chain(e), self.client_certificate))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let body = response
                .into_body()
                .collect_bytes()
                .await
                .map_err(chain)?
                .to_vec();
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        })
    }

    /// GETs one object (`target` is its path) as JSON.
    ///
    /// # Errors
    /// A failed request, or an answer other than 200 (named with the API
    /// server's `Status` message).
    pub fn get_json(&self, target: &str) -> Result<Value, ClusterError> {
        let bad = error(format!("GET {target}"));
        let answer = self.get(target).map_err(&bad)?;
        if answer.status != 200 {
            return Err(bad(status_error(&answer)));
        }
        serde_json::from_slice(&answer.body).map_err(|e| bad(format!("not JSON: {e}")))
    }

    /// As [`Connection::get_json`], `None` on 404.
    ///
    /// # Errors
    /// As [`Connection::get_json`], for every answer but 200 and 404.
    pub fn get_json_opt(&self, target: &str) -> Result<Option<Value>, ClusterError> {
        let bad = error(format!("GET {target}"));
        let answer = self.get(target).map_err(&bad)?;
        match answer.status {
            404 => Ok(None),
            200 => serde_json::from_slice(&answer.body)
                .map(Some)
                .map_err(|e| bad(format!("not JSON: {e}"))),
            _ => Err(bad(status_error(&answer))),
        }
    }

    /// Every object of `resource` in every namespace, page by page, with
    /// `kind` and `apiVersion` set on each (list items carry neither) and
    /// `metadata.managedFields` left out, as kubectl prints them.
    ///
    /// # Errors
    /// A failed request, an answer other than 200 (after restarts for 410 and
    /// waits for 429), or one that is not a list.
    pub fn list(&self, resource: &Resource, page_size: u32) -> Result<Vec<Value>, ClusterError> {
        self.list_at(resource, page_size).map(|(items, _)| items)
    }

    /// As [`Connection::list`], with the list's `resourceVersion`: the point
    /// a watch of the same kind resumes from.
    ///
    /// # Errors
    /// As [`Connection::list`].
    pub fn list_at(
        &self,
        resource: &Resource,
        page_size: u32,
    ) -> Result<(Vec<Value>, String), ClusterError> {
        let path = resource.path();
        let bad = error(format!("listing {}", resource.plural));
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        let (mut restarts, mut throttled) = (0, 0);
        loop {
            let mut target = format!("{path}?limit={page_size}");
            if let Some(token) = &token {
                target.push_str("&continue=");
                target.push_str(&http_client::encode(token));
            }
            let answer = self.get(&target).map_err(&bad)?;
            match answer.status {
                200 => {}
                410 if token.is_some() && restarts < MAX_RESTARTS => {
                    // The token outlived the server's compaction window: the
                    // pages read so far may be inconsistent with the next
                    // ones, so the list starts again.
                    restarts += 1;
                    items.clear();
                    token = None;
                    continue;
                }
                429 if throttled < MAX_THROTTLED => {
                    throttled += 1;
                    std::thread::sleep(retry_after(&answer));
                    continue;
                }
                _ => return Err(bad(status_error(&answer))),
            }
            let page: Value = serde_json::from_slice(&answer.body)
                .map_err(|e| bad(format!("the answer is not JSON: {e}")))?;
            let Some(objects) = page["items"].as_array() else {
                return Err(bad("the answer has no items".into()));
            };
            for object in objects {
                items.push(listed(object, resource));
            }
            token = page["metadata"]["continue"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                // Every page of one list is served at the first page's version.
                let version = page["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                return Ok((items, version));
            }
        }
    }

    /// The workloads of every namespace ([`WORKLOADS`]) as one `List`.
    ///
    /// # Errors
    /// As [`Connection::list`], for the first kind that cannot be listed.
    pub fn snapshot(&self, page_size: u32) -> Result<Snapshot, ClusterError> {
        let mut items = Vec::new();
        let mut counts = Vec::new();
        for resource in &WORKLOADS {
            let listed = self.list(resource, page_size)?;
            counts.push((resource.plural, listed.len()));
            items.extend(listed);
        }
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "metadata": { "resourceVersion": "" },
            "items": items,
        });
        Ok(Snapshot {
            context: self.context.clone(),
            text: kubectl_json(&list),
            counts,
        })
    }
}

/// A cluster's workloads as `kubectl get ... -A -o json` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The kubeconfig context read: the cluster's name in answers.
    pub context: String,
    /// The `List`, JSON indented as kubectl indents it, ending in a newline.
    pub text: String,
    /// How many objects of each kind (plural) it holds.
    pub counts: Vec<(&'static str, usize)>,
}

/// Reads the workloads of the cluster of `context` in the kubeconfig at `path`.
///
/// # Errors
/// As [`Connection::open`] and [`Connection::snapshot`].
pub fn snapshot(
    path: &Path,
    context: Option<&str>,
    page_size: u32,
) -> Result<Snapshot, ClusterError> {
    Connection::open(path, context)?.snapshot(page_size)
}

/// JSON as kubectl prints it: keys sorted, four spaces, a final newline.
pub fn kubectl_json(value: &Value) -> String {
    use serde::Serialize as _;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut serializer)
        .expect("a JSON value serializes");
    let mut text = String::from_utf8(out).expect("JSON is UTF-8");
    text.push('\n');
    text
}

/// A list item as kubectl prints it.
fn listed(object: &Value, resource: &Resource) -> Value {
    let mut object = object.clone();
    if let Some(fields) = object.as_object_mut() {
        fields.insert("apiVersion".into(), resource.api_version().into());
        fields.insert("kind".into(), resource.kind.into());
    }
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    object
}

/// How long a `429` asks to wait: `Retry-After`, else the `Status`'s
/// `details.retryAfterSeconds`, else one second.
fn retry_after(answer: &Answer) -> Duration {
    let from_status = || {
        serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|s| s["details"]["retryAfterSeconds"].as_u64())
    };
    Duration::from_secs(answer.retry_after.or_else(from_status).unwrap_or(1)).min(MAX_RETRY_AFTER)
}

/// `403 Forbidden: pods is forbidden: ...`, from the API server's `Status`.
fn status_error(answer: &Answer) -> String {
    let status: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let reason = status["reason"].as_str().unwrap_or_default();
    let message = status["message"].as_str().unwrap_or_default();
    let mut text = format!("{} {}", answer.status, reason_phrase(answer.status));
    if !message.is_empty() {
        text.push_str(": ");
        text.push_str(message);
    } else if !reason.is_empty() {
        text.push_str(": ");
        text.push_str(reason);
    }
    match answer.status {
        401 => text.push_str(" (the credentials were refused: renew the token or certificate)"),
        403 => text.push_str(" (grant the rules `bulkhead cluster rbac` prints)"),
        _ => {}
    }
    text
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// An error with its causes: kube and hyper wrap the TLS alert that says
/// why a connection failed several levels down.
fn chain(e: impl std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// A TLS failure with what it means for the kubeconfig: the server refused
/// the client certificate (it sends an alert), or its own certificate is
/// not one the kubeconfig's CA signed.
fn tls_hint(text: String, client_certificate: bool) -> String {
    if client_certificate && text.contains("received fatal alert") {
        format!(
            "{text} (the API server refused the client certificate: give the user one the cluster's CA signed)"
        )
    } else if text.contains("invalid peer certificate") {
        format!(
            "{text} (the server's certificate does not chain to the kubeconfig's certificate-authority)"
        )
    } else {
        text
    }
}

/// A client for a plain `http://` server (`kubectl proxy`).
fn plain_client(
    server: &str,
    token: Option<String>,
    namespace: &str,
) -> Result<kube::Client, String> {
    let uri: hyper::Uri = server
        .parse()
        .map_err(|e| format!("server {server}: {e}"))?;
    let mut config = kube::Config::new(uri);
    config.default_namespace = namespace.to_string();
    if let Some(token) = token {
        // AuthInfo keeps the token in a secret type; JSON builds it without that type's crate.
        config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
            .map_err(|e| format!("token: {e}"))?;
    }
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
