//! A fake that stands in for the Kubernetes API server, which cannot run on
//! these machines: HTTPS (over `fake_tls`), a bearer token or a client
//! certificate signed by the cluster's CA, and the API's paths and answers
//! as a real API server gives them: `*List` objects with `resourceVersion`
//! and `continue` (plus `remainingItemCount`), items without `kind` and
//! `apiVersion`, JSON merge patches under `resourceVersion` (409 on a
//! stale one), and `Status` objects for 401, 403, 404, 409, 410 (an expired
//! continue token) and 429 (with `Retry-After`). Watches
//! (`?watch=1&resourceVersion=RV`) stream newline-delimited events over
//! chunked HTTP as the API server does: the events after RV from its history,
//! a `BOOKMARK` when `allowWatchBookmarks=true`, then each change as it
//! happens (and bookmarks, [`FakeKube::bookmark_watches`]); a watch ends
//! at [`FakeKube::close_watches`] as at its `timeoutSeconds`;
//! [`FakeKube::expire_watches`] compacts the history and ends every
//! open watch with an `ERROR` event carrying `410 Expired`. It records every
//! request as the verb and resource RBAC would check, with the status it
//! answered. A PATCH that changes an object's `spec` moves its `generation`
//! on. Tests play the controllers ([`FakeKube::control`]: the Deployment
//! controller, Argo CD's application controller) and other writers
//! ([`FakeKube::race_patches`]).

use super::fake_tls::{Reply, TlsServer};
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

/// One request as RBAC sees it, and the status it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub query: String,
    pub status: u16,
}

/// Kinds the fake serves: (kind, API group, version, plural).
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("Pod", "", "v1", "pods"),
    ("Service", "", "v1", "services"),
    ("Namespace", "", "v1", "namespaces"),
    ("ConfigMap", "", "v1", "configmaps"),
    ("Ingress", "networking.k8s.io", "v1", "ingresses"),
    ("Deployment", "apps", "v1", "deployments"),
    ("StatefulSet", "apps", "v1", "statefulsets"),
    ("DaemonSet", "apps", "v1", "daemonsets"),
    ("Job", "batch", "v1", "jobs"),
    ("CronJob", "batch", "v1", "cronjobs"),
    ("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes"),
    ("Application", "argoproj.io", "v1alpha1", "applications"),
];

/// (API group, plural).
type Collection = (String, String);

/// A controller's step on one object of its kind.
type Controller = Box<dyn FnMut(&mut Value) + Send>;

#[derive(Default)]
struct State {
    /// (group, plural) -> "namespace/name" -> object, as stored (with kind and apiVersion).
    objects: BTreeMap<(String, String), BTreeMap<String, Value>>,
    resource_version: u64,
    seen: Vec<Seen>,
    /// Plurals whose next list page with a continue token answers 410 (once each).
    expire: BTreeSet<String>,
    /// Plurals whose next list answers 429 (once each).
    throttle: BTreeSet<String>,
    /// (verb, plural) the caller may not do: 403.
    forbidden: BTreeSet<(String, String)>,
    /// Every change since the last compaction: (resourceVersion, (group, plural), event line).
    history: Vec<(u64, Collection, String)>,
    /// Watches from a version below this one get `410 Expired`.
    compacted: u64,
    /// Open watches: (group, plural), whether they take bookmarks, and where their events go.
    watchers: Vec<(Collection, bool, Sender<Vec<u8>>)>,
    /// Kind -> the controller that moves an object of it on each time it is read.
    controllers: BTreeMap<String, Controller>,
    /// Kind -> how many of its next PATCHes lose a race to another writer.
    races: BTreeMap<String, usize>,
    /// (kind, the object as a PATCH left it), in order.
    patched: Vec<(String, Value)>,
}

/// How clients prove who they are.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer TOKEN`.
    Token(String),
    /// A client certificate signed by the fake's CA (the TLS handshake refuses others).
    ClientCertificate,
}

/// The fake API server, stopped when dropped.
pub struct FakeKube {
    server: TlsServer,
    state: Arc<Mutex<State>>,
    /// The client certificate and key the CA signed, PEM (with [`Auth::ClientCertificate`]).
    pub client_pem: Option<(String, String)>,
}

fn kind_of(kind: &str) -> (&'static str, &'static str, &'static str) {
    let (_, group, version, plural) = KINDS
        .iter()
        .find(|k| k.0 == kind)
        .unwrap_or_else(|| panic!("the fake serves no {kind}"));
    (group, version, plural)
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// A `BOOKMARK` event at `version` for a watch of `collection`.
fn bookmark((group, plural): &Collection, version: u64) -> Vec<u8> {
    let (kind, _, api, _) = KINDS
        .iter()
        .find(|k| k.1 == group && k.3 == plural)
        .expect("a known kind");
    let event = json!({"type": "BOOKMARK", "object": {
        "kind": kind, "apiVersion": api_version(group, api),
        "metadata": {"resourceVersion": version.to_string(), "creationTimestamp": null}}});
    format!("{event}\n").into_bytes()
}

/// The `ERROR` event that ends a watch whose version was compacted away.
fn expired_event(since: u64, now: u64) -> Vec<u8> {
    let event = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
        "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {since} ({now})"),
        "reason": "Expired", "code": 410}});
    format!("{event}\n").into_bytes()
}

fn status(code: u16, reason: &str, message: String, details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "details": details, "code": code})
}

/// RFC 7386, as the API server applies `application/merge-patch+json`.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// What a request path names.
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (String::new(), version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (group.to_string(), version.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => (plural.to_string(), None),
        [plural, name] => (plural.to_string(), Some(name.to_string())),
        _ => return None,
    };
    Some(Target {
        group,
        version,
        namespace,
        plural,
        name,
    })
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2F", "/")
                .replace("%2B", "+")
        })
    })
}

impl State {
    fn handle(&mut self, method: &str, target: &str, authorized: bool, body: Value) -> Reply {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let Some(target) = parse_path(path) else {
            return Reply::Json(
                404,
                String::new(),
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource".into(),
                    json!({}),
                ),
            );
        };
        let verb = match (method, &target.name) {
            ("GET", None) if query_value(query, "watch").is_some() => "watch",
            ("GET", None) => "list",
            ("GET", Some(_)) => "get",
            ("PATCH", _) => "patch",
            ("PUT", _) => "update",
            ("POST", _) => "create",
            ("DELETE", _) => "delete",
            _ => "unknown",
        };
        let reply = if verb == "watch" {
            self.watch(&target, query, authorized)
        } else {
            let (code, extra, answer) = self.answer(verb, &target, query, authorized, body);
            Reply::Json(code, extra, answer)
        };
        self.seen.push(Seen {
            verb: verb.to_string(),
            group: target.group,
            resource: target.plural,
            namespace: target.namespace,
            query: query.to_string(),
            status: match &reply {
                Reply::Json(code, _, _) => *code,
                Reply::Stream(_) => 200,
            },
        });
        reply
    }

    /// A watch of a whole collection: the history after `resourceVersion`,
    /// a bookmark if asked for, then every change until the watch expires.
    fn watch(&mut self, target: &Target, query: &str, authorized: bool) -> Reply {
        let known = KINDS
            .iter()
            .any(|k| k.1 == target.group && k.3 == target.plural && k.2 == target.version);
        let forbidden = self
            .forbidden
            .contains(&("watch".to_string(), target.plural.clone()));
        if !authorized || forbidden || !known || target.namespace.is_some() {
            let (code, extra, answer) =
                self.answer("watch", target, query, authorized, Value::Null);
            return Reply::Json(code, extra, answer);
        }
        let key = (target.group.clone(), target.plural.clone());
        let since: u64 = query_value(query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.resource_version);
        let (events, stream) = channel();
        if since < self.compacted {
            let _ = events.send(expired_event(since, self.resource_version));
            return Reply::Stream(stream);
        }
        for (at, of, line) in &self.history {
            if *at > since && *of == key {
                let _ = events.send(line.clone().into_bytes());
            }
        }
        let bookmarks = query_value(query, "allowWatchBookmarks").as_deref() == Some("true");
        if bookmarks {
            let _ = events.send(bookmark(&key, self.resource_version));
        }
        self.watchers.push((key, bookmarks, events));
        Reply::Stream(stream)
    }

    /// Stores `object` (or removes it, for `DELETED`) at the next
    /// resourceVersion, and tells the watches of its kind.
    fn change(&mut self, kind: &str, event: &str, object: &Value) -> Value {
        let (group, version, plural) = kind_of(kind);
        let key = (group.to_string(), plural.to_string());
        let meta = &object["metadata"];
        let id = format!(
            "{}/{}",
            meta["namespace"].as_str().unwrap_or_default(),
            meta["name"].as_str().expect("name")
        );
        self.resource_version += 1;
        let mut object = object.clone();
        object["kind"] = kind.into();
        object["apiVersion"] = api_version(group, version).into();
        object["metadata"]["resourceVersion"] = self.resource_version.to_string().into();
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] =
                format!("00000000-0000-4000-8000-{:012}", self.resource_version).into();
        }
        let objects = self.objects.entry(key.clone()).or_default();
        if event == "DELETED" {
            objects.remove(&id);
        } else {
            objects.insert(id, object.clone());
        }
        let line = format!("{}\n", json!({"type": event, "object": object}));
        self.history
            .push((self.resource_version, key.clone(), line.clone()));
        self.watchers
            .retain(|(of, _, events)| *of != key || events.send(line.clone().into_bytes()).is_ok());
        object
    }

    fn answer(
        &mut self,
        verb: &str,
        target: &Target,
        query: &str,
        authorized: bool,
        body: Value,
    ) -> (u16, String, Value) {
        let (group, version, plural) = (&target.group, &target.version, &target.plural);
        let (namespace, name) = (target.namespace.as_deref(), target.name.as_deref());
        if !authorized {
            return (
                401,
                String::new(),
                status(401, "Unauthorized", "Unauthorized".into(), json!({})),
            );
        }
        let group_shown = if group.is_empty() {
            String::new()
        } else {
            format!(".{group}")
        };
        if self
            .forbidden
            .contains(&(verb.to_string(), plural.to_string()))
        {
            let scope = match namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_string(),
            };
            return (
                403,
                String::new(),
                status(
                    403,
                    "Forbidden",
                    format!(
                        "{plural}{group_shown} is forbidden: User \"system:serviceaccount:ops:bulkhead\" cannot {verb} resource \"{plural}\" in API group \"{group}\" {scope}"
                    ),
                    json!({"kind": plural, "group": group}),
                ),
            );
        }
        let Some(kind) = KINDS
            .iter()
            .find(|k| k.1 == group && k.3 == plural && k.2 == version)
        else {
            return (
                404,
                String::new(),
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource".into(),
                    json!({}),
                ),
            );
        };
        let key = (group.to_string(), plural.to_string());
        match (verb, name) {
            ("list", None) => {
                if self.throttle.remove(plural) {
                    return (
                        429,
                        "Retry-After: 1\r\n".into(),
                        status(
                            429,
                            "TooManyRequests",
                            "Too many requests, please try again later.".into(),
                            json!({"retryAfterSeconds": 1}),
                        ),
                    );
                }
                let continued = query_value(query, "continue");
                if continued.is_some() && self.expire.remove(plural) {
                    return (
                        410,
                        String::new(),
                        json!({"kind": "Status", "apiVersion": "v1",
                        "metadata": {"continue": continued}, "status": "Failure",
                        "message": "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                        "reason": "Expired", "code": 410}),
                    );
                }
                let start = continued
                    .and_then(|token| base64::engine::general_purpose::STANDARD.decode(token).ok())
                    .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                    .and_then(|token| token["start"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let limit: usize = query_value(query, "limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(usize::MAX);
                let all: Vec<(&String, &Value)> = self
                    .objects
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| namespace.is_none_or(|ns| k.starts_with(&format!("{ns}/"))))
                    .filter(|(k, _)| k.as_str() >= start.as_str())
                    .collect();
                let page: Vec<Value> = all
                    .iter()
                    .take(limit)
                    .map(|(_, object)| {
                        let mut item = (*object).clone();
                        let fields = item.as_object_mut().expect("an object");
                        fields.remove("kind");
                        fields.remove("apiVersion");
                        item
                    })
                    .collect();
                let mut metadata = json!({"resourceVersion": self.resource_version.to_string()});
                if let Some((next, _)) = all.get(limit) {
                    let token =
                        json!({"v": "meta.k8s.io/v1", "rv": self.resource_version, "start": next});
                    metadata["continue"] = base64::engine::general_purpose::STANDARD
                        .encode(token.to_string())
                        .into();
                    metadata["remainingItemCount"] = (all.len() - limit).into();
                }
                let api_version = if group.is_empty() {
                    version.to_string()
                } else {
                    format!("{group}/{version}")
                };
                (
                    200,
                    String::new(),
                    json!({"kind": format!("{}List", kind.0), "apiVersion": api_version,
                                            "metadata": metadata, "items": page}),
                )
            }
            (_, Some(name)) => {
                let id = format!("{}/{name}", namespace.unwrap_or_default());
                if verb == "patch" {
                    self.lose_race(kind.0, &key, &id);
                }
                let Some(object) = self.objects.get_mut(&key).and_then(|o| o.get_mut(&id)) else {
                    return (
                        404,
                        String::new(),
                        status(
                            404,
                            "NotFound",
                            format!("{plural}{group_shown} \"{name}\" not found"),
                            json!({"name": name, "group": group, "kind": plural}),
                        ),
                    );
                };
                match verb {
                    "get" => {
                        let Some(step) = self.controllers.get_mut(kind.0) else {
                            return (200, String::new(), object.clone());
                        };
                        let before = object.clone();
                        step(object);
                        if *object == before {
                            return (200, String::new(), before);
                        }
                        let object = object.clone();
                        (200, String::new(), self.change(kind.0, "MODIFIED", &object))
                    }
                    "patch" => {
                        let want = &body["metadata"]["resourceVersion"];
                        if !want.is_null() && *want != object["metadata"]["resourceVersion"] {
                            return (
                                409,
                                String::new(),
                                status(
                                    409,
                                    "Conflict",
                                    format!(
                                        "Operation cannot be fulfilled on {plural}{group_shown} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                                    ),
                                    json!({"name": name, "group": group, "kind": plural}),
                                ),
                            );
                        }
                        let spec = object["spec"].clone();
                        merge(object, &body);
                        if object["spec"] != spec {
                            let generation = object["metadata"]["generation"].as_u64();
                            object["metadata"]["generation"] = (generation.unwrap_or(1) + 1).into();
                        }
                        let object = object.clone();
                        let stored = self.change(kind.0, "MODIFIED", &object);
                        self.patched.push((kind.0.to_string(), stored.clone()));
                        (200, String::new(), stored)
                    }
                    _ => (
                        405,
                        String::new(),
                        status(
                            405,
                            "MethodNotAllowed",
                            format!("{verb} is not supported"),
                            json!({}),
                        ),
                    ),
                }
            }
            _ => (
                405,
                String::new(),
                status(
                    405,
                    "MethodNotAllowed",
                    format!("{verb} is not supported"),
                    json!({}),
                ),
            ),
        }
    }

    /// Another writer changes the object `id` first when the next PATCH of
    /// `kind` is to lose a race: the patch's resourceVersion is then stale.
    fn lose_race(&mut self, kind: &str, key: &Collection, id: &str) {
        let Some(left) = self.races.get_mut(kind).filter(|left| **left > 0) else {
            return;
        };
        *left -= 1;
        if let Some(object) = self.objects.get(key).and_then(|o| o.get(id)).cloned() {
            self.change(kind, "MODIFIED", &object);
        }
    }
}

/// A CA, and a server certificate for 127.0.0.1 and a client certificate it
/// signed: (server config requiring a client certificate, CA PEM, client cert PEM, client key PEM).
fn client_certificate_tls() -> (Arc<rustls::ServerConfig>, String, String, String) {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubernetes");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let server_key = rcgen::KeyPair::generate().expect("key");
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&server_key, &ca)
        .expect("server certificate");
    let client_key = rcgen::KeyPair::generate().expect("key");
    let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bulkhead");
    client_params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "bulkhead:readers");
    let client = client_params
        .signed_by(&client_key, &ca)
        .expect("client certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("CA root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server.der().clone(), ca.der().clone()],
            PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes()).expect("key"),
        )
        .expect("server config");
    (
        Arc::new(config),
        ca.pem(),
        client.pem(),
        client_key.serialize_pem(),
    )
}

impl Drop for FakeKube {
    /// Ends the open watches: their streams finish.
    fn drop(&mut self) {
        self.state.lock().expect("lock").watchers.clear();
    }
}

impl FakeKube {
    /// Serves `objects` (each with `kind`, `apiVersion` and `metadata`).
    pub fn start(objects: &[Value], auth: Auth) -> FakeKube {
        let mut state = State {
            resource_version: 1000,
            ..State::default()
        };
        for object in objects {
            let (group, _, plural) = kind_of(object["kind"].as_str().expect("kind"));
            let meta = &object["metadata"];
            let id = format!(
                "{}/{}",
                meta["namespace"].as_str().unwrap_or_default(),
                meta["name"].as_str().expect("name")
            );
            let mut object = object.clone();
            object["metadata"]["resourceVersion"] = state.resource_version.to_string().into();
            object["metadata"]["uid"] =
                format!("00000000-0000-4000-8000-{:012}", state.resource_version).into();
            object["metadata"]["managedFields"] =
                json!([{"manager": "kubectl-client-side-apply", "operation": "Update"}]);
            state.resource_version += 1;
            state
                .objects
                .entry((group.to_string(), plural.to_string()))
                .or_default()
                .insert(id, object);
        }
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let (server, client_pem) = match auth {
            Auth::Token(token) => {
                let wanted = format!("Bearer {token}");
                (
                    TlsServer::start_replying(None, move |method, target, header, body| {
                        let authorized =
                            header("authorization").as_deref() == Some(wanted.as_str());
                        shared
                            .lock()
                            .expect("lock")
                            .handle(method, target, authorized, body)
                    }),
                    None,
                )
            }
            Auth::ClientCertificate => {
                let (tls, ca_pem, cert, key) = client_certificate_tls();
                (
                    TlsServer::start_replying(
                        Some((tls, ca_pem)),
                        move |method, target, _, body| {
                            // The handshake admitted only certificates the CA signed.
                            shared
                                .lock()
                                .expect("lock")
                                .handle(method, target, true, body)
                        },
                    ),
                    Some((cert, key)),
                )
            }
        };
        FakeKube {
            server,
            state,
            client_pem,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.server.addr)
    }

    /// The CA that signed the server's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.server.ca_pem
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("lock").seen.clone()
    }

    /// The object `kind` `namespace/name` as stored now.
    pub fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let (group, _, plural) = kind_of(kind);
        let state = self.state.lock().expect("lock");
        state
            .objects
            .get(&(group.to_string(), plural.to_string()))?
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    /// Creates `object` (with `kind` and `metadata`), or replaces the one of
    /// that name: an `ADDED` or `MODIFIED` event for the watches of its kind.
    pub fn put(&self, object: &Value) {
        let kind = object["kind"].as_str().expect("kind");
        let meta = &object["metadata"];
        let exists = self
            .object(
                kind,
                meta["namespace"].as_str().unwrap_or_default(),
                meta["name"].as_str().expect("name"),
            )
            .is_some();
        let event = if exists { "MODIFIED" } else { "ADDED" };
        self.state.lock().expect("lock").change(kind, event, object);
    }

    /// Deletes the object `kind` `namespace/name`: a `DELETED` event.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let object = self
            .object(kind, namespace, name)
            .expect("the object exists");
        self.state
            .lock()
            .expect("lock")
            .change(kind, "DELETED", &object);
    }

    /// Sends every open watch that takes bookmarks a `BOOKMARK` at the
    /// current resourceVersion, as the API server does about once a minute.
    /// Returns that version.
    pub fn bookmark_watches(&self) -> u64 {
        let mut state = self.state.lock().expect("lock");
        let now = state.resource_version;
        state
            .watchers
            .retain(|(of, bookmarks, events)| !bookmarks || events.send(bookmark(of, now)).is_ok());
        now
    }

    /// Ends every open watch without an event, as the API server does at a
    /// watch's `timeoutSeconds`.
    pub fn close_watches(&self) {
        self.state.lock().expect("lock").watchers.clear();
    }

    /// Compacts the history, as etcd does: every open watch ends with an
    /// `ERROR` event carrying 410 Expired, and so does every later watch
    /// from a version before now.
    pub fn expire_watches(&self) {
        let mut state = self.state.lock().expect("lock");
        state.compacted = state.resource_version;
        state.history.clear();
        let now = state.resource_version;
        for (_, _, events) in state.watchers.drain(..) {
            let _ = events.send(expired_event(now, now));
        }
    }

    /// The next list page of `plural` asked with a continue token answers 410 Expired.
    pub fn expire_next_continue(&self, plural: &str) {
        self.state
            .lock()
            .expect("lock")
            .expire
            .insert(plural.to_string());
    }

    /// The next list of `plural` answers 429 with `Retry-After: 1`.
    pub fn throttle_next_list(&self, plural: &str) {
        self.state
            .lock()
            .expect("lock")
            .throttle
            .insert(plural.to_string());
    }

    /// `verb` on `plural` answers 403 from now on.
    pub fn forbid(&self, verb: &str, plural: &str) {
        self.state
            .lock()
            .expect("lock")
            .forbidden
            .insert((verb.to_string(), plural.to_string()));
    }

    /// Runs `step` on an object of `kind` each time one is read, before the
    /// answer, as its controller would have moved it on since the last read.
    /// A change is stored at a new resourceVersion, as a status update is.
    pub fn control(&self, kind: &str, step: impl FnMut(&mut Value) + Send + 'static) {
        self.state
            .lock()
            .expect("lock")
            .controllers
            .insert(kind.to_string(), Box::new(step));
    }

    /// The next `patches` PATCHes of `kind` each lose a race: another writer
    /// changes the object first, so a patch that carries the
    /// resourceVersion it read gets 409 Conflict.
    pub fn race_patches(&self, kind: &str, patches: usize) {
        self.state
            .lock()
            .expect("lock")
            .races
            .insert(kind.to_string(), patches);
    }

    /// Each object of `kind` as a PATCH left it since the last call, in order.
    pub fn take_patched(&self, kind: &str) -> Vec<Value> {
        let mut state = self.state.lock().expect("lock");
        let (taken, kept) = std::mem::take(&mut state.patched)
            .into_iter()
            .partition(|(of, _)| of == kind);
        state.patched = kept;
        taken.into_iter().map(|(_, object)| object).collect()
    }

    /// Writes a kubeconfig in `dir` whose cluster is this fake and whose
    /// contexts are `contexts`: (name, namespace, user fields as YAML flow).
    pub fn kubeconfig(&self, dir: &Path, contexts: &[(&str, &str, String)]) -> PathBuf {
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let mut text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {}\nclusters:\n  - name: fake\n    cluster:\n      server: {}\n      certificate-authority-data: {}\ncontexts:\n",
            contexts[0].0,
            self.url(),
            b64(self.ca_pem())
        );
        for (name, namespace, _) in contexts {
            text.push_str(&format!(
                "  - name: {name}\n    context: {{cluster: fake, user: {name}-user, namespace: {namespace}}}\n"
            ));
        }
        text.push_str("users:\n");
        for (name, _, user) in contexts {
            text.push_str(&format!("  - name: {name}-user\n    user: {user}\n"));
        }
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// The user fields of a kubeconfig for this fake's client certificate.
    pub fn client_certificate_user(&self) -> String {
        let (cert, key) = self.client_pem.as_ref().expect("a client-certificate fake");
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        format!(
            "{{client-certificate-data: {}, client-key-data: {}}}",
            b64(cert),
            b64(key)
        )
    }
}
