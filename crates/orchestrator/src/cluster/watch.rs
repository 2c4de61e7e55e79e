//! A live copy of some kinds' objects in every namespace, kept as client-go's
//! reflector keeps an informer's cache: one paged list, then a watch from the
//! list's `resourceVersion` (`?watch=1&allowWatchBookmarks=true`) whose
//! newline-delimited JSON events (`ADDED`, `MODIFIED`, `DELETED`,
//! `BOOKMARK`, `ERROR`) are applied as they arrive. A `BOOKMARK` only moves
//! the version on; an `ERROR` 410 Gone (the version fell out of the API
//! server's window) lists again from scratch; a watch the server closes
//! resumes from the last version seen; any other failure waits, with a
//! bounded exponential backoff, and tries again. The copy in force stays
//! until a newer one replaces it: a failure never empties it.
//!
//! The admission webhook keeps the referential data of Gatekeeper
//! constraints (`data.inventory`) with it (`policy serve --inventory-cluster`).

use super::{ClusterError, Connection, Resource, error, listed, status_error};
use http_body_util::BodyExt as _;
use kube::core::WatchEvent;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The kinds a copy can hold: the ones Gatekeeper's referential constraints
/// look up (the library's unique Ingress host and Service selector, the
/// namespaces of `namespaceSelector`s) and the workloads.
pub const KINDS: [Resource; 10] = [
    Resource {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
    },
    Resource {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
    },
    Resource {
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingresses",
        kind: "Ingress",
    },
    super::WORKLOADS[0],
    super::WORKLOADS[1],
    super::WORKLOADS[2],
    super::WORKLOADS[3],
    super::WORKLOADS[4],
    super::WORKLOADS[5],
    Resource {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
    },
];

/// The kinds copied when none are named (plurals of [`KINDS`]).
pub const DEFAULT_KINDS: [&str; 5] = ["namespaces", "services", "ingresses", "pods", "deployments"];

/// How long the API server keeps one watch open before closing it
/// (`timeoutSeconds`); the watch then resumes from the last version.
const WATCH_SECONDS: u64 = 290;
/// How long past that the client waits for the server to close it.
const WATCH_GRACE: Duration = Duration::from_secs(30);
/// The first wait after a failure; each further failure doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// A watch closed sooner than this is retried after the backoff.
const MIN_WATCH: Duration = Duration::from_secs(1);
/// The longest wait between tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The [`KINDS`] entry of `plural`.
///
/// # Errors
/// A plural that is not one of them (the message lists those).
pub fn kind(plural: &str) -> Result<Resource, String> {
    KINDS
        .iter()
        .find(|k| k.plural == plural)
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = KINDS.iter().map(|k| k.plural).collect();
            format!(
                "{plural}: not a kind the inventory copies (one of {})",
                known.join(", ")
            )
        })
}

/// What a copy reports while it follows the cluster.
#[derive(Debug)]
pub enum Report<'a> {
    /// The copy changed: every object it holds now, and what changed.
    Changed {
        objects: Vec<&'a Value>,
        what: String,
    },
    /// A list or watch failed; the copy in force stays. `failures` counts
    /// every failure so far; `retry` is the wait before the next try.
    Failed {
        error: ClusterError,
        failures: u64,
        retry: Duration,
    },
}

/// Where one kind's watch ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The server closed it (its `timeoutSeconds`): resume from the last version.
    Closed,
    /// An `ERROR` event with 410 Gone: list again.
    Gone,
}

/// A live copy of some kinds' objects, keyed by `namespace/name`.
pub struct Mirror {
    kinds: Vec<Resource>,
    objects: Mutex<Vec<BTreeMap<String, Value>>>,
    failures: Mutex<u64>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

fn key(object: &Value) -> String {
    let meta = &object["metadata"];
    format!(
        "{}/{}",
        meta["namespace"].as_str().unwrap_or_default(),
        meta["name"].as_str().unwrap_or_default()
    )
}

type Reporter = dyn Fn(Report<'_>) + Send + Sync;

impl Mirror {
    /// Lists each of `kinds` once through `connection`: the copy's first
    /// state, and the version each kind's watch starts from.
    ///
    /// # Errors
    /// As [`Connection::list`], for the first kind that cannot be listed.
    pub fn list(
        connection: &Connection,
        kinds: Vec<Resource>,
        page_size: u32,
    ) -> Result<(Mirror, Vec<String>), ClusterError> {
        let mut objects = Vec::new();
        let mut versions = Vec::new();
        for resource in &kinds {
            let (items, version) = connection.list_at(resource, page_size)?;
            objects.push(items.into_iter().map(|o| (key(&o), o)).collect());
            versions.push(version);
        }
        Ok((
            Mirror {
                kinds,
                objects: Mutex::new(objects),
                failures: Mutex::new(0),
            },
            versions,
        ))
    }

    /// How many objects of each kind (plural) the copy holds.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        self.kinds
            .iter()
            .zip(objects.iter())
            .map(|(k, o)| (k.plural, o.len()))
            .collect()
    }

    /// Every object the copy holds, kind by kind.
    pub fn with_objects<T>(&self, f: impl FnOnce(Vec<&Value>) -> T) -> T {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        f(objects.iter().flat_map(BTreeMap::values).collect())
    }

    /// Follows every kind from `versions` (as [`Mirror::list`] returned
    /// them), one thread each, for the life of the process. Each thread
    /// opens its own connection with `open`, and again after a failure (an
    /// exec plugin's token may have expired). Every change is reported,
    /// under the copy's lock so that reports arrive in the order the
    /// changes were made.
    ///
    /// # Errors
    /// A thread that cannot be started.
    pub fn follow(
        self: &Arc<Self>,
        versions: Vec<String>,
        open: Arc<dyn Fn() -> Result<Connection, ClusterError> + Send + Sync>,
        page_size: u32,
        report: Arc<Reporter>,
    ) -> std::io::Result<()> {
        for (index, version) in versions.into_iter().enumerate() {
            let (mirror, open, report) = (self.clone(), open.clone(), report.clone());
            std::thread::Builder::new()
                .name(format!("watch-{}", self.kinds[index].plural))
                .spawn(move || mirror.follow_kind(index, version, &*open, page_size, &*report))?;
        }
        Ok(())
    }

    fn follow_kind(
        &self,
        index: usize,
        mut version: String,
        open: &(dyn Fn() -> Result<Connection, ClusterError> + Send + Sync),
        page_size: u32,
        report: &Reporter,
    ) {
        let resource = self.kinds[index];
        let mut connection: Option<Connection> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = std::time::Instant::now();
            let result = (|| {
                let connection = match &mut connection {
                    Some(connection) => connection,
                    None => connection.insert(open()?),
                };
                if version.is_empty() {
                    let (items, listed_at) = connection.list_at(&resource, page_size)?;
                    let count = items.len();
                    self.change(
                        index,
                        |objects| {
                            *objects = items.into_iter().map(|o| (key(&o), o)).collect();
                            format!("{} listed again: {count} objects", resource.plural)
                        },
                        report,
                    );
                    version = listed_at;
                }
                connection.watch(&resource, &mut version, |events| {
                    self.apply(index, events, report);
                })
            })();
            match result {
                // A server that closes watches at once would otherwise be
                // asked again and again without a pause.
                Ok(Ended::Closed) if started.elapsed() < MIN_WATCH => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Ok(Ended::Closed) => backoff = FIRST_BACKOFF,
                Ok(Ended::Gone) => {
                    backoff = FIRST_BACKOFF;
                    version.clear();
                }
                Err(error) => {
                    let failures = {
                        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                        *failures += 1;
                        *failures
                    };
                    report(Report::Failed {
                        error,
                        failures,
                        retry: backoff,
                    });
                    connection = None;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Applies one batch of watch events of kind `index` and reports it.
    fn apply(&self, index: usize, events: Vec<WatchEvent<Value>>, report: &Reporter) {
        let resource = self.kinds[index];
        self.change(
            index,
            |objects| {
                let mut what = Vec::new();
                for event in events {
                    match event {
                        WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                            let object = listed(&object, &resource);
                            what.push(format!("{} {}", resource.kind, key(&object)));
                            objects.insert(key(&object), object);
                        }
                        WatchEvent::Deleted(object) => {
                            what.push(format!("{} {} deleted", resource.kind, key(&object)));
                            objects.remove(&key(&object));
                        }
                        WatchEvent::Bookmark(_) | WatchEvent::Error(_) => {}
                    }
                }
                what.join(", ")
            },
            report,
        );
    }

    /// Edits the objects of kind `index` and reports the copy, under its lock.
    fn change(
        &self,
        index: usize,
        edit: impl FnOnce(&mut BTreeMap<String, Value>) -> String,
        report: &Reporter,
    ) {
        let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let what = edit(&mut objects[index]);
        report(Report::Changed {
            objects: objects.iter().flat_map(BTreeMap::values).collect(),
            what,
        });
    }
}

impl Connection {
    /// Watches `resource` in every namespace from `version`, handing each
    /// batch of `ADDED`, `MODIFIED` and `DELETED` events (those of one read)
    /// to `on_events` and moving `version` on with every event and
    /// `BOOKMARK`, until the server closes the watch or sends an `ERROR`.
    ///
    /// # Errors
    /// A failed request, an answer other than 200, a line that is not a
    /// watch event, an `ERROR` event other than 410, or a watch the server
    /// kept open past its `timeoutSeconds`.
    fn watch(
        &self,
        resource: &Resource,
        version: &mut String,
        mut on_events: impl FnMut(Vec<WatchEvent<Value>>),
    ) -> Result<Ended, ClusterError> {
        let target = format!(
            "{}?watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}",
            resource.path(),
            http_client::encode(version)
        );
        let bad = error(format!("watching {}", resource.plural));
        let request = hyper::Request::get(&target)
            .header("accept", "application/json")
            .body(kube::client::Body::empty())
            .map_err(|e| bad(e.to_string()))?;
        let stream = async {
            let response = self
                .client
                .send(request)
                .await
                .map_err(|e| bad(super::tls_hint(super::chain(e), self.client_certificate)))?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            if status != 200 {
                let body = body
                    .collect_bytes()
                    .await
                    .map_err(|e| bad(super::chain(e)))?;
                return Err(bad(status_error(&super::Answer {
                    status,
                    retry_after: None,
                    body: body.to_vec(),
                })));
            }
            let mut pending: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| bad(super::chain(e)))?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                pending.extend_from_slice(data);
                let mut events = Vec::new();
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let event: WatchEvent<Value> = serde_json::from_slice(&line)
                        .map_err(|e| bad(format!("not a watch event: {e}")))?;
                    match event {
                        WatchEvent::Error(status) => {
                            if !events.is_empty() {
                                on_events(events);
                            }
                            if status.code == 410 {
                                return Ok(Ended::Gone);
                            }
                            return Err(bad(format!(
                                "{} {}: {}",
                                status.code, status.reason, status.message
                            )));
                        }
                        WatchEvent::Bookmark(bookmark) => {
                            *version = bookmark.metadata.resource_version;
                        }
                        WatchEvent::Added(ref o)
                        | WatchEvent::Modified(ref o)
                        | WatchEvent::Deleted(ref o) => {
                            if let Some(at) = o["metadata"]["resourceVersion"].as_str() {
                                *version = at.to_string();
                            }
                            events.push(event);
                        }
                    }
                }
                if !events.is_empty() {
                    on_events(events);
                }
            }
            Ok(Ended::Closed)
        };
        self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(WATCH_SECONDS) + WATCH_GRACE, stream)
                .await
                .unwrap_or_else(|_| {
                    Err(bad("the server kept the watch open past its timeout".into()))
                })
        })
    }
}
