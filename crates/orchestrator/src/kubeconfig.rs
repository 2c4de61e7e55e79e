//! A kubeconfig read as `kubectl` reads it, for the Kubernetes executor:
//! the context (`--context`, else `current-context`), its cluster's server and
//! CA, its user's bearer token, client certificate or exec credential plugin,
//! and its namespace.
//!
//! Read with the workspace's YAML loader; certificates and keys come inline
//! (`*-data`, base64) or from files relative to the kubeconfig's folder.

use base64::Engine as _;
use std::path::{Path, PathBuf};
use yaml::Node;

/// What the executor needs to reach one cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `https://host:port` (or `http://`).
    pub server: String,
    /// PEM certificates the server's certificate must chain to; `None`: the system's.
    pub ca_pem: Option<Vec<u8>>,
    pub auth: Auth,
    /// The context's name (`in-cluster` for a pod's service account).
    pub context: String,
    /// The context's namespace, when it names one.
    pub namespace: Option<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .field("context", &self.context)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// How the user authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Token(String),
    /// PEM certificate chain and private key.
    ClientCertificate {
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
    },
    /// `client.authentication.k8s.io` exec plugin: run for each new client.
    Exec {
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
}

impl std::fmt::Debug for Auth {
    /// Names the kind only: tokens and keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Token(_) => "Auth::Token",
            Auth::ClientCertificate { .. } => "Auth::ClientCertificate",
            Auth::Exec { .. } => "Auth::Exec",
        })
    }
}

/// Why a kubeconfig cannot be used, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KubeconfigError {
    pub path: String,
    pub message: String,
}

/// Reads the context `context` (default: `current-context`) of the
/// kubeconfig `text`, found at `path` (files it names are relative to its
/// folder); `read` reads those files.
///
/// # Errors
/// YAML that does not parse, a context, cluster or user that is missing, or
/// base64 or files that cannot be read.
pub fn resolve(
    path: &Path,
    text: &str,
    context: Option<&str>,
    read: &dyn Fn(&Path) -> Result<Vec<u8>, String>,
) -> Result<Cluster, KubeconfigError> {
    let shown = path.display().to_string();
    let error = |line: Option<u32>, message: String| KubeconfigError {
        path: match line {
            Some(line) => format!("{shown}:{line}"),
            None => shown.clone(),
        },
        message,
    };
    let (docs, yaml_error) = yaml::load(text);
    if let Some(e) = yaml_error {
        return Err(error(Some(e.line), e.message));
    }
    let Some(doc) = docs.first() else {
        return Err(error(None, "empty kubeconfig".into()));
    };
    let name = match context {
        Some(c) => c.to_string(),
        None => doc
            .get("current-context")
            .and_then(Node::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| error(None, "no current-context: give --context".into()))?
            .to_string(),
    };
    let named = |list: &str, wanted: &str| -> Result<&Node, KubeconfigError> {
        doc.get(list)
            .and_then(Node::as_seq)
            .unwrap_or_default()
            .iter()
            .find(|e| e.get("name").and_then(Node::as_str) == Some(wanted))
            .and_then(|e| e.get(list.trim_end_matches('s')))
            .ok_or_else(|| {
                error(
                    Some(doc.line),
                    format!("no {} named {wanted:?}", list.trim_end_matches('s')),
                )
            })
    };
    let ctx = named("contexts", &name)?;
    let field = |node: &Node, key: &str| node.get(key).and_then(Node::as_str).map(str::to_string);
    let cluster_name = field(ctx, "cluster")
        .ok_or_else(|| error(Some(ctx.line), format!("context {name:?} names no cluster")))?;
    let cluster = named("clusters", &cluster_name)?;
    let server = field(cluster, "server").ok_or_else(|| {
        error(
            Some(cluster.line),
            format!("cluster {cluster_name:?} has no server"),
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    // Inline base64 (`KEY-data`) or a file (`KEY`), relative to the kubeconfig.
    let material = |node: &Node, key: &str| -> Result<Option<Vec<u8>>, KubeconfigError> {
        if let Some(data) = node.get(&format!("{key}-data")) {
            let text = data.as_str().unwrap_or_default();
            return base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map(Some)
                .map_err(|e| error(Some(data.line), format!("{key}-data is not base64: {e}")));
        }
        match node.get(key) {
            Some(file) => {
                let file = PathBuf::from(file.as_str().unwrap_or_default());
                let file = if file.is_absolute() {
                    file
                } else {
                    dir.join(file)
                };
                read(&file)
                    .map(Some)
                    .map_err(|e| error(Some(node.line), format!("{key} {}: {e}", file.display())))
            }
            None => Ok(None),
        }
    };
    let ca_pem = material(cluster, "certificate-authority")?;
    if let Some(insecure) = cluster
        .get("insecure-skip-tls-verify")
        .filter(|v| v.as_str() == Some("true"))
    {
        return Err(error(
            Some(insecure.line),
            "insecure-skip-tls-verify is refused: give the cluster's certificate-authority".into(),
        ));
    }
    let auth = match field(ctx, "user") {
        None => Auth::None,
        Some(user_name) => {
            let user = named("users", &user_name)?;
            if let Some(token) = field(user, "token") {
                Auth::Token(token)
            } else if let Some(file) = field(user, "tokenFile") {
                let bytes = read(&dir.join(&file))
                    .map_err(|e| error(Some(user.line), format!("tokenFile {file}: {e}")))?;
                Auth::Token(String::from_utf8_lossy(&bytes).trim().to_string())
            } else if let Some(exec) = user.get("exec") {
                let command = field(exec, "command")
                    .ok_or_else(|| error(Some(exec.line), "exec has no command".into()))?;
                let args = exec.get("args").map(Node::strings).unwrap_or_default();
                let env = exec
                    .get("env")
                    .and_then(Node::as_seq)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|e| {
                        Some((field(e, "name")?, field(e, "value").unwrap_or_default()))
                    })
                    .collect();
                Auth::Exec { command, args, env }
            } else {
                match (
                    material(user, "client-certificate")?,
                    material(user, "client-key")?,
                ) {
                    (Some(cert_pem), Some(key_pem)) => {
                        Auth::ClientCertificate { cert_pem, key_pem }
                    }
                    (None, None) => Auth::None,
                    _ => {
                        return Err(error(
                            Some(user.line),
                            format!(
                                "user {user_name:?} has a client certificate without its key, or a key without its certificate"
                            ),
                        ));
                    }
                }
            }
        }
    };
    Ok(Cluster {
        server: server.trim_end_matches('/').to_string(),
        ca_pem,
        auth,
        context: name,
        namespace: field(ctx, "namespace"),
    })
}

/// The kubeconfig `kubectl` reads when given none: the first file of
/// `KUBECONFIG` (a list; later files only add contexts, which bulkhead does
/// not merge), else `~/.kube/config`.
pub fn default_path(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(first) = env("KUBECONFIG")
        .as_deref()
        .and_then(|list| list.split(':').find(|p| !p.is_empty()))
    {
        return PathBuf::from(first);
    }
    PathBuf::from(env("HOME").unwrap_or_default()).join(".kube/config")
}

/// Where a pod's service account is mounted.
pub const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The cluster a pod runs in, as client-go's in-cluster configuration reads
/// it: `KUBERNETES_SERVICE_HOST` and `_PORT` from `env`, the service
/// account's `token`, `ca.crt` and `namespace` from `dir`, read with `read`.
///
/// # Errors
/// Outside a pod (no `KUBERNETES_SERVICE_HOST`), or an unreadable token or CA.
pub fn in_cluster(
    env: &dyn Fn(&str) -> Option<String>,
    dir: &Path,
    read: &dyn Fn(&Path) -> Result<Vec<u8>, String>,
) -> Result<Cluster, KubeconfigError> {
    let error = |message: String| KubeconfigError {
        path: dir.display().to_string(),
        message,
    };
    let host = env("KUBERNETES_SERVICE_HOST")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| error("not in a pod: KUBERNETES_SERVICE_HOST is unset".into()))?;
    let port = env("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let file = |name: &str| read(&dir.join(name)).map_err(|e| error(format!("{name}: {e}")));
    let token = String::from_utf8_lossy(&file("token")?).trim().to_string();
    let namespace = file("namespace")
        .ok()
        .map(|n| String::from_utf8_lossy(&n).trim().to_string())
        .filter(|n| !n.is_empty());
    Ok(Cluster {
        server: format!("https://{host}:{port}"),
        ca_pem: Some(file("ca.crt")?),
        auth: Auth::Token(token),
        context: "in-cluster".into(),
        namespace,
    })
}

/// Runs an exec credential plugin and returns the token of the
/// `ExecCredential` it prints (`status.token`).
///
/// # Errors
/// A plugin that cannot run, fails, or prints no token.
pub fn exec_token(
    command: &str,
    args: &[String],
    env: &[(String, String)],
    dir: &Path,
) -> Result<String, String> {
    let out = std::process::Command::new(command)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(
            "KUBERNETES_EXEC_INFO",
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#,
        )
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running the exec plugin {command}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the exec plugin {command} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let credential: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("the exec plugin {command} printed no ExecCredential JSON: {e}"))?;
    credential["status"]["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("the exec plugin {command} gave no status.token"))
}

#[cfg(test)]
mod tests;
